"""Distribution strategies, and the fix that lets `model.fit` run multi-worker.

`get_strategy(name)` maps the `--strategy` flag to a `tf.distribute`
strategy. `FitModel` is a small `keras.Model` subclass that fixes the two
places where Keras 3's TensorFlow trainer breaks under
`MultiWorkerMirroredStrategy` (keras-team/keras issue 20585):

1. Before the first batch, `fit` builds the model symbolically from one batch
   and gets that batch by `strategy.reduce("MEAN", per_replica_batch)` in
   eager mode, which the collective (multi-worker) strategy rejects
   (`Attempt to convert a value (PerReplica...)`). Only the shapes and dtypes
   of that batch matter, so `FitModel` takes the first replica's local value
   instead.
2. Each step reduces the per-replica logs (scalar loss and metric values)
   with `strategy.reduce("MEAN", value, axis=0)` on the multi-worker path,
   which fails for scalars (`Invalid reduction dimension 0 for input with 0
   dimensions`). `FitModel`'s `train_step`/`test_step` return the logs as
   shape-`(1,)` tensors under a multi-worker strategy, so the reduction along
   axis 0 is the mean over all replicas, as on one machine; the result is a
   scalar again.

A third difference is not a crash but would leave the workers with different
models: Keras creates the BatchNormalization moving statistics with
`aggregation="none"`, so each worker keeps the statistics of its own
replicas. Under a multi-worker strategy `FitModel` averages them over all
replicas after each step (one small all-reduce), so every worker holds the
same weights, bit for bit.

Fix 1 overrides Keras's private `_maybe_symbolic_build`; setup.cfg caps
Keras for it (tests/test_keras_private.py). Everything else is Keras's own `fit`: callbacks, checkpoints, metrics and
progress bars are unchanged. On one machine `FitModel` behaves exactly like
`keras.Model`.
"""

from __future__ import annotations

import json
import os

import keras

from training.config import STRATEGIES  # the one list of names (the recipe schema's)


def configure_cpu_devices(count: int | None) -> None:
    """Split the CPU into `count` logical devices (to try MirroredStrategy on CPU).

    Must run before TensorFlow initialises its devices.

    Args:
        count: number of logical CPU devices; None or 1 does nothing.

    Raises:
        ValueError: `count` below 1, or TensorFlow already initialised.
    """
    if count is None or count == 1:
        return
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"`cpu_devices` must be a positive integer, got {count!r}.")
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError as error:
        if len(tf.config.list_logical_devices("CPU")) != count:
            raise ValueError(
                f"`cpu_devices={count}` must be set before TensorFlow starts (a fresh process)."
            ) from error


def get_strategy(name: str = "auto"):
    """Return the `tf.distribute` strategy for a `--strategy` value.

    Args:
        name: `"auto"` (MirroredStrategy with several GPUs, OneDeviceStrategy
            with one, the default strategy on CPU), `"default"`,
            `"one_device"` (first GPU, else CPU), `"mirrored"` (all local GPUs,
            or all logical CPU devices), `"multi_worker"`
            (MultiWorkerMirroredStrategy from `TF_CONFIG`) or `"tpu"`.

    Returns:
        A `tf.distribute.Strategy`.

    Raises:
        ValueError: unknown name, `multi_worker` without `TF_CONFIG`, `tpu`
            without a TPU.

    Example:
        >>> strategy = get_strategy("mirrored")
        >>> strategy.num_replicas_in_sync
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {', '.join(STRATEGIES)}, got {name!r}.")
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "strategy='multi_worker' reads the cluster from the TF_CONFIG environment "
                "variable, which is not set."
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.NotFoundError) as error:
            raise ValueError(f"strategy='tpu' but no TPU was found: {error}") from error
        return tf.distribute.TPUStrategy(resolver)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        if len(gpus) > 1:
            return tf.distribute.MirroredStrategy()
        if len(gpus) == 1:
            return tf.distribute.OneDeviceStrategy(gpus[0].name)
        return tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        device = gpus[0].name if gpus else tf.config.list_logical_devices("CPU")[0].name
        return tf.distribute.OneDeviceStrategy(device)
    # mirrored
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


def is_multi_worker(strategy) -> bool:
    """True for a collective strategy spanning several workers."""
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
        strategy.extended._in_multi_worker_mode()
    )


def worker_info() -> tuple[int, int, bool]:
    """`(task_index, num_workers, is_chief)` from `TF_CONFIG` (0, 1, True without it)."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    cluster = config.get("cluster", {})
    task = config.get("task", {})
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
    chief = kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)
    return index, max(workers, 1), chief


class FitModel(keras.Model):
    """`keras.Model` with the multi-worker fixes described in the module docstring.

    Build it from a functional model's graph:
    `FitModel(inputs=model.inputs, outputs=model.outputs, name=model.name)`;
    the two share their layers and weights, so save the plain functional
    model (it needs no custom class to load).

    Example:
        >>> with strategy.scope():
        ...     base = keras_resnets.ResNet20()
        ...     model = FitModel(inputs=base.inputs, outputs=base.outputs)
    """

    def _multi_worker(self) -> bool:
        strategy = getattr(self, "_distribute_strategy", None)
        return strategy is not None and is_multi_worker(strategy)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if not self._multi_worker() or iterator is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        import tensorflow as tf

        for _, _, it in iterator:
            batch = next(it)
            data_batch = keras.tree.map_structure(
                lambda x: (
                    self._distribute_strategy.experimental_local_results(x)[0]
                    if isinstance(x, tf.distribute.DistributedValues)
                    else x
                ),
                batch,
            )
            break
        with self._distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def _as_vectors(self, logs):
        if not self._multi_worker():
            return logs
        import tensorflow as tf

        return {
            key: tf.reshape(value, (1,)) if getattr(value, "shape", None) == () else value
            for key, value in logs.items()
        }

    def train_step(self, data):
        logs = super().train_step(data)
        if self._multi_worker():
            self._sync_non_trainable()
        return self._as_vectors(logs)

    def _sync_non_trainable(self):
        """Average the BatchNormalization moving statistics over all replicas."""
        import tensorflow as tf

        context = tf.distribute.get_replica_context()
        for variable in self.non_trainable_variables:
            if "float" in str(variable.dtype):
                variable.assign(context.all_reduce("MEAN", tf.identity(variable.value)))

    def test_step(self, data):
        return self._as_vectors(super().test_step(data))


class KerasDistribution:
    """What the trainer needs of a strategy, on the JAX and PyTorch backends.

    `tf.distribute` strategies drive TensorFlow only. On JAX, several local
    devices train data-parallel through Keras's own distribution API
    (`keras.distribution.DataParallel`, set globally); on PyTorch, and on
    JAX with one device, training runs on the default device.

    Attributes:
        name: what the run log and config.yaml report.
        num_replicas_in_sync: devices the global batch is split over.
    """

    def __init__(self, name: str, replicas: int):
        self.name = name
        self.num_replicas_in_sync = replicas

    def scope(self):
        import contextlib

        return contextlib.nullcontext()


def keras_distribution_strategy(name: str = "auto") -> KerasDistribution:
    """The `--strategy` for the JAX and PyTorch backends.

    Args:
        name: `"auto"` or `"default"`. `"auto"` on JAX with several devices
            sets `keras.distribution.DataParallel` over all of them.

    Returns:
        A `KerasDistribution`.

    Raises:
        ValueError: a `tf.distribute` strategy (`one_device`, `mirrored`,
            `multi_worker`, `tpu`) on a backend other than TensorFlow.
    """
    import keras

    backend = keras.backend.backend()
    if name not in ("auto", "default"):
        raise ValueError(
            f"--strategy {name!r} is a tf.distribute strategy and needs the TensorFlow backend; "
            f"the backend is {backend!r}. Use --strategy auto (on JAX: data-parallel over all "
            "local devices with keras.distribution.DataParallel) or default."
        )
    if backend == "jax" and name == "auto":
        devices = keras.distribution.list_devices()
        if len(devices) > 1:
            keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
            return KerasDistribution(f"keras.distribution.DataParallel ({backend})", len(devices))
    return KerasDistribution(f"single device ({backend})", 1)
