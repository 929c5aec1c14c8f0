"""Train a model from a recipe: `python -m training.train --recipe NAME`.

The trainer is Keras's own `model.fit` inside a `tf.distribute` strategy,
with a step-indexed input pipeline, resumable backups, a NaN stop, CSV and
TensorBoard logs, and a fully resolved `config.yaml`, `metrics.json` and
`model.keras` in the output directory. See docs/training.md.

Example:
    python -m training.train --recipe digits_resnet20
    python -m training.train --recipe cifar10_resnet110 --strategy mirrored
    python -m training.train --list-recipes
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import sys
import time
from typing import Any

from keras_resnets.utils import atomic_write, atomic_write_text
from training import config as config_lib

#: `KERAS_RESNETS_SMOKE=1` (any value but empty or 0): every run takes the small
#: budget below, whatever the recipe and flags say, and says so. For checking
#: that a command works (tests/test_docs.py runs the docs' commands with it),
#: never for results.
SMOKE_ENV = "KERAS_RESNETS_SMOKE"
SMOKE_BUDGET = {
    "train.epochs": 1,
    "train.iterations": None,
    "train.steps_per_epoch": 2,
    "train.batch_size": 8,
    "train.per_replica_batch_size": None,
    "data.train_subset": 64,
    "data.test_subset": 32,
}


def smoke_budget() -> bool:
    """Whether `KERAS_RESNETS_SMOKE` asks for the small budget."""
    return os.environ.get(SMOKE_ENV, "").strip() not in ("", "0")


# Flags that `run()` accepts besides its named arguments (the CLI maps to them).
FLAGS = {
    "data_dir": None,
    "strategy": None,
    "mixed_precision": None,
    "jit_compile": None,
    "resume": False,
    "overwrite": False,
    "export": False,
    "save_every_steps": None,
    "skip_bad_images": None,
    "seed": None,
    "verbose": None,
    "cpu_devices": None,
    "transfer_from": None,
    "freeze_until": None,
    "new_classes": None,
}


def resolve(
    recipe: str,
    *,
    model: str | None = None,
    dataset: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    overrides: dict | None = None,
    **flags,
) -> dict:
    """The recipe with command-line choices applied (before data and devices are known).

    Args:
        recipe: recipe name or YAML path.
        model, dataset, epochs, batch_size: shortcuts for the matching
            `--set` keys (`epochs` replaces an iteration budget).
        overrides: dotted-key overrides (`{"optimizer.learning_rate": 0.05}`).
        **flags: see `run`.

    Returns:
        The config dict (validated).

    Raises:
        ValueError: unknown recipe, key or value (naming the key); TypeError
            for an unknown flag.
    """
    unknown = sorted(set(flags) - set(FLAGS))
    if unknown:
        raise TypeError(
            f"Unknown training flag(s) {', '.join(unknown)}. Allowed: {', '.join(sorted(FLAGS))}."
        )
    cfg = config_lib.load_recipe(recipe)
    cli: dict[str, Any] = {}
    if model is not None:
        cli["model.name"] = model
        if model != cfg["model"]["name"]:
            cli["model.options"] = {}
            cfg["model"]["options"] = {}
    if dataset is not None:
        cli["data.dataset"] = dataset
    if epochs is not None:
        cli["train.epochs"] = epochs
        cli["train.iterations"] = None
    if batch_size is not None:
        cli["train.batch_size"] = batch_size
    mapping = {
        "data_dir": "data.data_dir",
        "strategy": "runtime.strategy",
        "mixed_precision": "runtime.mixed_precision",
        "jit_compile": "runtime.jit_compile",
        "save_every_steps": "checkpoint.every_steps",
        "skip_bad_images": "data.skip_bad_images",
        "seed": "train.seed",
        "verbose": "runtime.verbose",
        "cpu_devices": "runtime.cpu_devices",
        "transfer_from": "transfer.from",
        "freeze_until": "transfer.freeze_until",
        "new_classes": "transfer.new_classes",
    }
    for flag, key in mapping.items():
        if flags.get(flag) is not None:
            cli[key] = flags[flag]
    cfg = config_lib.apply_overrides(cfg, cli, "command line")
    cfg = config_lib.apply_overrides(cfg, overrides, "--set")
    if smoke_budget():
        budget = dict(SMOKE_BUDGET)
        for key in ("data.train_subset", "data.test_subset"):
            section, name = key.split(".")
            if cfg[section][name] is not None:
                budget[key] = min(cfg[section][name], budget[key])
        cfg = config_lib.apply_overrides(cfg, budget, SMOKE_ENV)
        print(
            f"{SMOKE_ENV}={os.environ[SMOKE_ENV]}: small budget, not a real run: "
            + ", ".join(f"{k}={v}" for k, v in budget.items())
        )
    cfg["recipe"] = recipe
    train = cfg["train"]
    if (train["epochs"] is None) == (train["iterations"] is None):
        raise ValueError(
            f"Recipe {recipe!r}: set exactly one of train.epochs and train.iterations "
            f"(got epochs={train['epochs']!r}, iterations={train['iterations']!r})."
        )
    for key in ("epochs", "iterations", "batch_size"):
        if train[key] is not None and train[key] < 1:
            raise ValueError(f"`train.{key}` must be a positive integer, got {train[key]!r}.")
    transfer = cfg["transfer"]
    if transfer["from"] is None:
        for key in ("freeze_until", "new_classes"):
            if transfer[key] is not None:
                raise ValueError(
                    f"`transfer.{key}` (--{key.replace('_', '-')}) needs `transfer.from` "
                    "(--transfer-from PATH.keras), the trained model to start from."
                )
    if transfer["new_classes"] is not None and transfer["new_classes"] < 1:
        raise ValueError(
            f"`transfer.new_classes` must be a positive integer, got {transfer['new_classes']!r}."
        )
    return cfg


def build_model(cfg: dict, num_classes: int, channels: int):
    """Build the recipe's model, or load the one to transfer from.

    With `transfer.from` (`--transfer-from PATH.keras`) the trained model is
    loaded instead, given a new classifier (`--new-classes N`) and frozen up
    to a stage (`--freeze-until STAGE`); see docs/transfer_learning.md.
    Otherwise the recipe's model is built (names are checked here, lazily).

    Args:
        cfg: resolved config (`model.name`, `model.options`, `data.image_size`).
        num_classes: classifier width.
        channels: input channels.

    Returns:
        A functional `keras.Model`.

    Raises:
        ValueError: unknown model name (with the closest names) or an option
            the builder does not take.
    """
    import keras_resnets

    transfer = cfg["transfer"]
    if transfer["from"] is not None:
        from training.transfer import transfer_model

        return transfer_model(
            transfer["from"],
            num_classes=num_classes,
            channels=channels,
            image_size=cfg["data"]["image_size"],
            new_classes=transfer["new_classes"],
            freeze_until=transfer["freeze_until"],
            freeze_batchnorm=transfer["freeze_batchnorm"],
        )
    name = cfg["model"]["name"]
    options = dict(cfg["model"]["options"])
    size = cfg["data"]["image_size"]
    if name in keras_resnets.list_models():
        builder = keras_resnets.get_model
        args: tuple = (name,)
    elif name[:1].isupper() and callable(getattr(keras_resnets, name, None)):
        builder, args = getattr(keras_resnets, name), ()
    else:
        keras_resnets.models.model_info(name)  # raises with the closest names
        raise AssertionError  # pragma: no cover
    try:
        return builder(*args, classes=num_classes, input_shape=(size, size, channels), **options)
    except TypeError as error:
        raise ValueError(
            f"Model {name!r} does not accept the recipe's options {options}: {error}"
        ) from error


def _with_preprocessing(model, source):
    """`model` as a `keras_resnets.Network` carrying the run's normalisation.

    Pixels in [0, 255] become `(pixels / 255 - mean) / std`, as the input
    pipelines normalise. A model that is not a `Network` (a transferred one)
    is wrapped in one (same layers and weights).
    """
    from keras_resnets.models.network import Network

    if not isinstance(model, Network):
        model = Network(inputs=model.inputs, outputs=model.outputs, name=model.name)
    model.preprocessing = {
        "scale": 1.0 / 255.0,
        "mean": [float(v) for v in source.mean],
        "std": [float(v) for v in source.std],
    }
    return model


def _mixed_precision_policy(enabled: bool) -> tuple[str, str]:
    """The dtype policy for `--mixed-precision` and why."""
    import tensorflow as tf

    if not enabled:
        return "float32", "mixed precision off"
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16", "GPU: float16 compute with loss scaling"
    flags = ""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    for flag in ("amx_bf16", "avx512_bf16"):
        if flag in flags:
            return "mixed_bfloat16", f"CPU reports {flag}: bfloat16 compute, float32 weights"
    return "float32", "the CPU has no bfloat16 support (no avx512_bf16/amx_bf16): float32"


BACKENDS = ("tensorflow", "jax", "torch")


def select_backend(backend: str) -> None:
    """Make `backend` the Keras backend of this process (`--backend`).

    Must run before Keras is imported; the trainer imports it lazily, so
    the command line can choose.

    Raises:
        ValueError: unknown backend, or Keras already imported with another.
    """
    if backend not in BACKENDS:
        raise ValueError(
            f"Unknown `backend` {backend!r}: allowed values are "
            + ", ".join(repr(b) for b in BACKENDS)
            + "."
        )
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != backend:
            raise ValueError(
                f"`backend` {backend!r} was asked for, but Keras is already imported with the "
                f"{current!r} backend; set KERAS_BACKEND={backend} before starting Python."
            )
        return
    os.environ["KERAS_BACKEND"] = backend


def _dump_yaml(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def run(
    recipe: str,
    *,
    model: str | None = None,
    dataset: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    output_dir: str,
    overrides: dict | None = None,
    **flags,
) -> dict:
    """Run a training like `python -m training.train` and return its results.

    Args:
        recipe: a recipe name (`training.config.list_recipes()`) or YAML path.
        model: model name (`--model`), replacing the recipe's (and its options).
        dataset: data set (`--dataset`): digits, folder, cifar10, cifar100,
            svhn_cropped, imagenette, imagenet2012.
        epochs: train for this many epochs (replaces an iteration budget).
        batch_size: global batch size; the learning rate follows the linear
            scaling rule (see docs/training.md).
        output_dir: where the run writes everything.
        overrides: dotted-key overrides, as `--set key=value`.
        **flags: `data_dir`, `strategy`, `mixed_precision`, `jit_compile`,
            `resume`, `overwrite`, `export`, `save_every_steps`,
            `skip_bad_images`, `seed`, `verbose` ("auto", "bar", "line",
            "quiet"), `cpu_devices`.

    Returns:
        A dict with `"history"` (Keras `History.history`: per-epoch `loss`,
        `accuracy`, `val_loss`, `val_accuracy`, `learning_rate`),
        `"test_accuracy"`, `"test_loss"`, `"output_dir"`, `"model_path"` (the
        saved `.keras`), `"steps"` (optimizer steps taken in total),
        `"status"` (`"completed"` or `"nan_loss"`), `"config"` (resolved)
        and `"seconds"`.

    Raises:
        ValueError: bad recipe, key, model, data set or flag value, an
            output directory holding another run (without `resume` or
            `overwrite`).

    Example:
        >>> result = run("digits_resnet20", epochs=1, output_dir="runs/try")
        >>> result["test_accuracy"]
    """
    start_time = time.time()
    cfg = resolve(
        recipe,
        model=model,
        dataset=dataset,
        epochs=epochs,
        batch_size=batch_size,
        overrides=overrides,
        **flags,
    )
    resume = bool(flags.get("resume"))
    export = None
    if flags.get("export"):
        from keras_resnets import export_saved_model as export
    if not isinstance(output_dir, str) or not output_dir:
        raise ValueError(f"`output_dir` must be a directory path, got {output_dir!r}.")
    output_dir = os.path.abspath(output_dir)
    backup_path = os.path.join(output_dir, "backup", "state.npz")
    if os.path.exists(backup_path) and not resume and not flags.get("overwrite"):
        raise ValueError(
            f"{output_dir} already holds a run ({backup_path}). Pass --resume to continue "
            "it, --overwrite to start again there, or choose another --output-dir."
        )
    if flags.get("overwrite") and not resume:
        for old in ("backup/state.npz", "checkpoint.keras", "model.keras", "metrics.json"):
            if os.path.exists(os.path.join(output_dir, old)):
                os.remove(os.path.join(output_dir, old))
    if resume and not os.path.exists(backup_path):
        print(f"--resume: no backup in {output_dir}; starting from the beginning.")
        resume = False

    import keras

    from training import distribute

    backend = keras.backend.backend()
    if backend == "tensorflow":
        distribute.configure_cpu_devices(cfg["runtime"]["cpu_devices"])
        strategy = distribute.get_strategy(cfg["runtime"]["strategy"])
    else:
        strategy = distribute.keras_distribution_strategy(cfg["runtime"]["strategy"])

    import tensorflow as tf

    from training import callbacks as cb
    from training import data as data_lib
    from training.optim import RecipeSchedule, make_optimizer

    worker_index, num_workers, is_chief = distribute.worker_info()
    if backend != "tensorflow" or not distribute.is_multi_worker(strategy):
        num_workers, is_chief = 1, True
    replicas = strategy.num_replicas_in_sync
    if backend != "tensorflow":
        strategy_name = strategy.name
    elif isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        strategy_name = "MultiWorkerMirroredStrategy"
    else:
        strategy_name = type(strategy).__name__.lstrip("_")
    seed = cfg["train"]["seed"]
    keras.utils.set_random_seed(seed)
    if cfg["train"]["deterministic"]:
        tf.config.experimental.enable_op_determinism()

    source = data_lib.load_source(cfg["data"], seed=seed)
    train_cfg = cfg["train"]
    if train_cfg["per_replica_batch_size"]:
        global_batch = train_cfg["per_replica_batch_size"] * replicas
    else:
        global_batch = train_cfg["batch_size"]
    if global_batch % replicas:
        raise ValueError(
            f"The global batch size {global_batch} must be a multiple of the {replicas} replicas."
        )
    steps_per_epoch = train_cfg["steps_per_epoch"] or max(1, source.train.size // global_batch)
    if train_cfg["iterations"] is not None:
        total_steps = train_cfg["iterations"]
    else:
        total_steps = train_cfg["epochs"] * steps_per_epoch
    total_epochs = math.ceil(total_steps / steps_per_epoch)

    opt_cfg, sched = cfg["optimizer"], cfg["schedule"]
    reference_batch = (
        opt_cfg["reference_batch_size"] or config_lib.load_recipe(recipe)["train"]["batch_size"]
    )
    scale = global_batch / reference_batch if opt_cfg["scale_with_batch"] else 1.0
    learning_rate = opt_cfg["learning_rate"] * scale
    unit = {"epochs": steps_per_epoch, "iterations": 1, "fraction": total_steps}[sched["unit"]]
    boundaries = [int(round(b * unit)) for b in sched["boundaries"]]
    warmup = sched["warmup_steps"] * (steps_per_epoch if sched["warmup_unit"] == "epochs" else 1)
    warmup_lr = sched["warmup_learning_rate"]
    schedule = RecipeSchedule(
        learning_rate,
        sched["name"],
        boundaries,
        sched["factor"],
        total_steps,
        warmup,
        sched["warmup_mode"],
        None if warmup_lr is None else warmup_lr * scale,
    )

    policy, policy_reason = _mixed_precision_policy(cfg["runtime"]["mixed_precision"])
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    jit = cfg["runtime"]["jit_compile"]
    verbose = cfg["runtime"]["verbose"]
    if verbose == "auto":
        verbose = "bar" if sys.stdout.isatty() else "line"
    fit_verbose = {"bar": 1, "line": 2, "quiet": 0}[verbose] if is_chief else 0
    say = print if (verbose != "quiet" and is_chief) else (lambda *a, **k: None)

    resolved = dict(cfg)
    resolved["resolved"] = {
        "num_classes": source.num_classes,
        "class_names": source.class_names,
        "train_examples": source.train.size,
        "validation_examples": source.validation.size if source.validation else 0,
        "test_examples": source.test.size,
        "splits": dict(source.splits),
        "skipped_files": source.skipped_files,
        "normalization": {"mean": list(source.mean), "std": list(source.std)},
        "strategy": strategy_name,
        "replicas": replicas,
        "workers": num_workers,
        "global_batch_size": global_batch,
        "per_replica_batch_size": global_batch // replicas,
        "learning_rate": learning_rate,
        "learning_rate_scale": scale,
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total_steps,
        "epochs": total_epochs,
        "boundaries_steps": boundaries,
        "warmup_steps": warmup,
        "dtype_policy": policy,
        "dtype_policy_reason": policy_reason,
        "jit_compile": jit,
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "backend": backend,
        },
    }
    if is_chief:
        os.makedirs(output_dir, exist_ok=True)
        atomic_write_text(os.path.join(output_dir, "config.yaml"), _dump_yaml(resolved))
    say(
        f"{cfg['model']['name']} on {source.name}: {source.train.size} training images, "
        f"{source.num_classes} classes; backend {backend}; {strategy_name} with "
        f"{replicas} replica(s), "
        f"global batch {global_batch}, lr {learning_rate:g} (x{scale:g}), {total_steps} steps "
        f"= {total_epochs} epochs of {steps_per_epoch}; precision {policy} ({policy_reason}); "
        f"jit_compile={jit}"
    )
    say("data: " + "; ".join(f"{key} = {note}" for key, note in source.splits.items()))
    if source.skipped_files:
        say(f"skipped {len(source.skipped_files)} unreadable image(s) (--skip-bad-images)")

    try:
        with strategy.scope():
            base = build_model(cfg, source.num_classes, source.channels)
            # The normalisation the model is trained with travels with it (in
            # model.keras and checkpoint.keras): the export serves it by default.
            base = _with_preprocessing(base, source)
            # FitModel carries the tf.distribute multi-worker fixes; the other
            # backends train the functional model itself.
            model_class = distribute.FitModel if backend == "tensorflow" else keras.Model
            net = model_class(inputs=base.inputs, outputs=base.outputs, name=base.name)
            net.compile(
                optimizer=make_optimizer(opt_cfg, schedule),
                loss=keras.losses.SparseCategoricalCrossentropy(),
                metrics=["accuracy"],
                jit_compile=jit,
            )
            net.optimizer.build(net.trainable_variables)
        history: dict = {}
        start_step = 0
        if resume:
            meta = cb.load_state(backup_path, net)
            start_step, history = int(meta["step"]), meta["history"]
            say(f"resumed from {backup_path} at step {start_step} of {total_steps}")

        backup = cb.StepBackup(
            backup_path,
            os.path.join(output_dir, "checkpoint.keras"),
            base,
            steps_per_epoch,
            every_epoch=cfg["checkpoint"]["every_epoch"],
            every_steps=cfg["checkpoint"]["every_steps"],
            history=history,
            write=is_chief,
        )
        nan_stop = cb.StopOnNaN()
        callbacks: list = [nan_stop, cb.LearningRateLogger()]
        if backend == "torch":
            callbacks.insert(0, cb.TorchStepSeed(seed))
        if is_chief:
            callbacks.append(
                keras.callbacks.CSVLogger(os.path.join(output_dir, "log.csv"), append=resume)
            )
            if cfg["runtime"]["tensorboard"]:
                tb_dir = os.path.join(output_dir, "tensorboard")
                callbacks.append(
                    keras.callbacks.TensorBoard(tb_dir, update_freq="epoch", write_graph=False)
                )
                if cfg["runtime"]["tensorboard_images"] and not resume:
                    batch = next(
                        iter(
                            data_lib.train_dataset(source, cfg["data"], min(global_batch, 16), seed)
                        )
                    )
                    callbacks.append(
                        cb.ImageLogger(tb_dir, batch[0].numpy(), source.mean, source.std)
                    )
        callbacks.append(backup)
        val_ds = (
            data_lib.eval_dataset(source, source.validation, cfg["data"], global_batch)
            if source.validation is not None
            else None
        )
        # One fit call, or two when resuming mid-epoch: the first ends with
        # that epoch, so every later epoch starts at a multiple of
        # steps_per_epoch exactly as in an uninterrupted run.
        stopper = cb.StopAtStep(total_steps)
        callbacks.insert(1, stopper)
        step = start_step
        while step < total_steps and nan_stop.stopped_step is None:
            epoch = step // steps_per_epoch
            stopper.target = min((epoch + 1) * steps_per_epoch, total_steps)
            if step % steps_per_epoch == 0:
                stopper.target = total_steps
            train_ds = data_lib.train_dataset(source, cfg["data"], global_batch, seed, step)
            net.fit(
                train_ds,
                epochs=total_epochs,
                initial_epoch=epoch,
                steps_per_epoch=steps_per_epoch,
                validation_data=val_ds,
                callbacks=callbacks,
                shuffle=False,
                verbose=fit_verbose,
            )
            previous, step = step, int(keras.ops.convert_to_numpy(net.optimizer.iterations))
            if step == previous:
                break
        history = backup.history
        result: dict[str, Any] = {
            "history": history,
            "output_dir": output_dir,
            "config": resolved,
            "steps": step,
        }
        if nan_stop.stopped_step is not None:
            last_good = backup.last_saved_step
            if last_good is None and os.path.exists(backup_path):
                last_good = cb.read_meta(backup_path)["step"]
            checkpoint = os.path.join(output_dir, "checkpoint.keras")
            message = (
                f"Training stopped at step {nan_stop.stopped_step}: the loss is "
                f"{nan_stop.stopped_loss}. The last good state "
                + (
                    f"(step {last_good}) is kept in {backup_path}"
                    if last_good is not None
                    else "does not exist (the loss was never finite at a save)"
                )
                + ". Lower the learning rate (--set optimizer.learning_rate=...) or add warm-up."
            )
            print(message, file=sys.stderr)
            result.update(
                status="nan_loss",
                message=message,
                last_good_step=last_good,
                test_accuracy=None,
                test_loss=None,
                model_path=checkpoint if os.path.exists(checkpoint) else None,
            )
        else:
            test_ds = data_lib.eval_dataset(source, source.test, cfg["data"], global_batch)
            test_loss, test_accuracy = net.evaluate(test_ds, verbose=0)
            model_path = os.path.join(output_dir, "model.keras")
            if is_chief:
                with atomic_write(model_path) as tmp:
                    base.save(tmp)
            result.update(
                status="completed",
                test_accuracy=float(test_accuracy),
                test_loss=float(test_loss),
                model_path=model_path,
            )
            if export is not None and is_chief:
                result["export_path"] = os.path.join(output_dir, "saved_model")
                # Serve with the trainer's normalisation and evaluation crop.
                export(
                    base,
                    result["export_path"],
                    # preprocessing: the model's own (base.preprocessing).
                    class_names=source.class_names,
                    crop_fraction=224 / 256 if cfg["data"]["augmentation"] == "imagenet" else None,
                )
        digest = hashlib.sha256(b"".join(w.tobytes() for w in base.get_weights()))
        result["weights_sha256"] = digest.hexdigest()
        if num_workers > 1:
            print(f"worker {worker_index}: final weights sha256 {result['weights_sha256']}")
        result["seconds"] = time.time() - start_time
        if is_chief:
            metrics = {k: v for k, v in result.items() if k != "config"}
            atomic_write_text(
                os.path.join(output_dir, "metrics.json"), json.dumps(metrics, indent=2)
            )
        if result["status"] == "completed":
            say(
                f"{cfg['model']['name']} on {source.name}: test accuracy "
                f"{result['test_accuracy']:.4f} on {source.test.size} images after {step} steps "
                f"in {result['seconds']:.0f} s; model saved to {result['model_path']}"
            )
        return result
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Train a keras_resnets model from a recipe (docs/training.md).",
    )
    parser.add_argument("--recipe", help="recipe name (see --list-recipes) or YAML path")
    parser.add_argument("--list-recipes", action="store_true", help="list recipes and exit")
    parser.add_argument("--model", help="model name, replacing the recipe's")
    parser.add_argument("--dataset", help="digits, folder, cifar10, cifar100, svhn_cropped, ...")
    parser.add_argument("--data-dir", help="TFDS data dir / manual dir, or the image folder")
    parser.add_argument("--epochs", type=int, help="train for N epochs (replaces iterations)")
    parser.add_argument("--batch-size", type=int, help="global batch size (lr scales with it)")
    parser.add_argument("--output-dir", help="default: runs/<recipe>")
    parser.add_argument("--strategy", choices=list(config_lib.SCHEMA["runtime"]["strategy"][2]))
    parser.add_argument("--mixed-precision", action="store_true", default=None)
    parser.add_argument("--jit-compile", action="store_true", default=None)
    parser.add_argument("--resume", action="store_true", help="continue from the backup")
    parser.add_argument("--overwrite", action="store_true", help="start again in a used dir")
    parser.add_argument("--export", action="store_true", help="also write a SavedModel")
    parser.add_argument("--save-every-steps", type=int, help="also back up every N steps")
    parser.add_argument("--skip-bad-images", action="store_true", default=None)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--cpu-devices", type=int, help="split the CPU into N logical devices")
    parser.add_argument("--verbose", choices=["auto", "bar", "line", "quiet"])
    parser.add_argument(
        "--backend",
        choices=list(BACKENDS),
        help="Keras backend (default: $KERAS_BACKEND, else tensorflow); see docs/backends.md",
    )
    parser.add_argument(
        "--transfer-from", metavar="PATH", help="start from this trained .keras model"
    )
    parser.add_argument(
        "--freeze-until",
        metavar="STAGE",
        help="with --transfer-from: freeze the stem and stages up to STAGE (stem, stageN, all)",
    )
    parser.add_argument(
        "--new-classes",
        type=int,
        metavar="N",
        help="with --transfer-from: replace the classifier with one of N classes",
    )
    parser.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a recipe key (repeatable)"
    )
    return parser


def list_recipes_table() -> str:
    """One line per recipe: name and description."""
    lines = []
    for name in config_lib.list_recipes():
        lines.append(f"{name:40s} {config_lib.load_recipe(name)['description']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (0 ok, 1 NaN stop, 2 bad input)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list_recipes:
        print(list_recipes_table())
        return 0
    if not args.recipe:
        parser.error("--recipe is required (or --list-recipes)")
    if args.backend:
        try:
            select_backend(args.backend)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    if args.cpu_devices:
        from training.distribute import configure_cpu_devices

        configure_cpu_devices(args.cpu_devices)
    output_dir = args.output_dir or os.path.join(
        "runs", os.path.splitext(os.path.basename(args.recipe))[0]
    )
    try:
        result = run(
            args.recipe,
            model=args.model,
            dataset=args.dataset,
            epochs=args.epochs,
            batch_size=args.batch_size,
            output_dir=output_dir,
            overrides=config_lib.parse_set_flags(args.set),
            data_dir=args.data_dir,
            strategy=args.strategy,
            mixed_precision=args.mixed_precision,
            jit_compile=args.jit_compile,
            resume=args.resume,
            overwrite=args.overwrite,
            export=args.export,
            save_every_steps=args.save_every_steps,
            skip_bad_images=args.skip_bad_images,
            seed=args.seed,
            cpu_devices=args.cpu_devices,
            verbose=args.verbose,
            transfer_from=args.transfer_from,
            freeze_until=args.freeze_until,
            new_classes=args.new_classes,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0 if result["status"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
