"""`run()`: one training run, as `python -m training.train` does it.

Keras's own `model.fit` inside a `tf.distribute` strategy (or a Keras
distribution on JAX/PyTorch), with the step-indexed input pipeline,
resumable backups, a NaN stop, CSV and TensorBoard logs, and a fully
resolved `config.yaml`, `metrics.json` and `model.keras` in the output
directory. See docs/training.md.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import io
import json
import math
import os
import platform
import sys
import time
from typing import Any

from training import config as config_lib
from training import rundir
from training.options import resolve

__all__ = ["check_model", "run"]


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


def _dump_yaml(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def _exported_version(output_dir: str, weights_sha256: str) -> str | None:
    """The version directory the previous run in `output_dir` exported, if it holds these weights.

    A finished run resumed with `--export` has the same weights: its export
    is not written a second time.
    """
    try:
        with open(os.path.join(output_dir, "metrics.json"), encoding="utf-8") as handle:
            previous = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(previous, dict):
        return None
    path = previous.get("export_version_path")
    if previous.get("weights_sha256") == weights_sha256 and path and os.path.isdir(path):
        return path
    return None


def _inputs(recipe: str, cfg: dict) -> dict:
    """The files a run reads, by flag (`rundir.check_inputs`)."""
    return {
        "--transfer-from": cfg["transfer"]["from"],
        "--recipe": recipe if os.path.isfile(recipe) else None,
        "--data-dir": cfg["data"]["data_dir"],
    }


def check_model(cfg: dict) -> None:
    """Refuse an unknown `model.name` or a bad `model.options` value before any data loads.

    A registered model's options are checked against its `Option`s (what its
    builder runs); the generic builders (`ResNet`, `CifarResNet`, ...) check
    theirs when the model is built. With `transfer.from`, the model file is
    checked instead: a missing file is a usage error (`ValueError`), one that
    is not a `.keras` archive (truncated, corrupt) an `OSError`.
    """
    source = cfg["transfer"]["from"]
    if source is not None:
        from keras_resnets.utils import check_keras_file

        check_keras_file("`transfer.from` (--transfer-from) file", source)
        return
    import keras_resnets
    from keras_resnets.models.application import check_options

    name = cfg["model"]["name"]
    if name in keras_resnets.list_models():
        try:
            check_options(
                name, dict(cfg["model"]["options"]), keras_resnets.models.model_info(name).options
            )
        except (TypeError, ValueError) as error:
            raise ValueError(f"`model.options` of {name!r}: {error}") from error
    elif not (name[:1].isupper() and callable(getattr(keras_resnets, name, None))):
        keras_resnets.models.model_info(name)  # raises with the closest names


def _one_run_per_directory(function):
    """Run `function` holding its output directory's lock (`rundir.hold`).

    The recipe and flags are checked first (a usage error touches nothing);
    the chief holds the lock (the other workers of a multi-worker run never
    write there), removes the temporaries a killed run left, then runs.
    """

    @functools.wraps(function)
    def wrapper(recipe, *, output_dir, overrides=None, **flags):
        with contextlib.redirect_stdout(io.StringIO()):  # the run says it again
            cfg = resolve(recipe, overrides=overrides, **flags)
        if isinstance(output_dir, os.PathLike):
            output_dir = os.fspath(output_dir)
        if not isinstance(output_dir, str) or not output_dir:
            raise ValueError(f"`output_dir` must be a directory path, got {output_dir!r}.")
        from keras_resnets.utils import output_dir_flag

        try:  # a file, or a path under one: what the other commands' --output-dir refuse
            output_dir_flag(output_dir)
        except argparse.ArgumentTypeError as error:
            raise ValueError(f"`output_dir` (--output-dir) {error}.") from None
        # an input that is one of the run's outputs first: that refusal says the most
        rundir.check_inputs(os.path.abspath(output_dir), _inputs(recipe, cfg))
        check_model(cfg)
        from training.distribute import worker_info

        if not worker_info()[2]:
            return function(recipe, output_dir=output_dir, overrides=overrides, **flags)
        output_dir = os.path.abspath(output_dir)
        with rundir.hold(output_dir):
            for path in rundir.remove_leftovers(output_dir):
                print(f"removed {path}, left by a run that was stopped while writing it")
            return function(recipe, output_dir=output_dir, overrides=overrides, **flags)

    return wrapper


def _check_resume_budget(backup_path: str, total_steps: int) -> None:
    """Refuse `--resume` with a budget the backup is already past (before anything is written).

    A damaged backup is left to `load_latest_state`, which falls back or names it.
    """
    from training import callbacks as cb

    try:
        step = int(cb.read_meta(backup_path)["step"])
    except (OSError, KeyError, ValueError):
        return
    if step > total_steps:
        raise ValueError(
            f"--resume: the backup {backup_path} is at step {step}, past this run's "
            f"{total_steps} steps: resume with the budget the run was started with "
            "(its config.yaml), or start again with --overwrite or another --output-dir."
        )


@_one_run_per_directory
def run(recipe: str, *, output_dir: str, overrides: dict | None = None, **flags) -> dict:
    """Run a training like `python -m training.train` and return its results.

    Args:
        recipe: a recipe name (`training.config.list_recipes()`) or YAML path.
        output_dir: where the run writes everything.
        overrides: dotted-key overrides, as `--set key=value`.
        **flags: the command line's flags as keywords, one per row of
            `training.flags.FLAG_TABLE`: `model` (replacing the recipe's,
            and its options), `dataset` (digits, folder, cifar10, cifar100,
            svhn_cropped, imagenette, imagenet2012), `epochs` (replaces an
            iteration budget), `batch_size` (global; the learning rate
            follows the linear scaling rule, see docs/training.md),
            `data_dir`, `strategy`, `mixed_precision`, `jit_compile`,
            `resume`, `overwrite`, `export`, `save_every_steps`,
            `skip_bad_images`, `seed`, `verbose` ("auto", "bar", "line",
            "quiet"), `cpu_devices`, `transfer_from`, `freeze_until`,
            `new_classes`. NumPy scalars (`seed=np.int64(1)`) and path-like
            values (`pathlib.Path`, also for `output_dir`) are taken as the
            Python values they stand for, in `overrides` too.

    Returns:
        A dict with `"history"` (Keras `History.history`: per-epoch `loss`,
        `accuracy`, `val_loss`, `val_accuracy`, `learning_rate`),
        `"test_accuracy"`, `"test_loss"`, `"output_dir"`, `"model_path"` (the
        saved `.keras`), `"steps"` (optimizer steps taken in total),
        `"status"` (`"completed"` or `"nan_loss"`), `"config"` (resolved)
        and `"seconds"`; with `export`, `"export_path"` (`saved_model/`) and
        `"export_version_path"` (the version written, or the previous run's
        export of the same weights, not written again).

    Raises:
        ValueError: bad recipe, key, model, data set or flag value, an
            output directory holding another run (without `resume` or
            `overwrite`), an input of the run (`transfer_from`, the recipe
            file, `data_dir`) that is one of its outputs.
        OutputDirectoryBusy: another run holds `output_dir` (its lock).
        DataError: data that cannot train (`training.data.check_source`:
            an empty split, one class, a batch larger than the training set).
        CorruptBackup: `resume` and neither backup can be read.

    Example:
        >>> result = run("digits_resnet20", epochs=1, output_dir="runs/try")
        >>> result["test_accuracy"]
    """
    start_time = time.time()
    cfg = resolve(recipe, overrides=overrides, **flags)
    resume = bool(flags.get("resume"))
    export = None
    if flags.get("export"):
        from keras_resnets import export_saved_model as export
    output_dir = os.path.abspath(output_dir)
    backup_path = os.path.join(output_dir, "backup", "state.npz")
    rundir.check_inputs(output_dir, _inputs(recipe, cfg))
    from training.callbacks import previous_backup
    from training.distribute import worker_info

    has_backup = any(os.path.exists(p) for p in (backup_path, previous_backup(backup_path)))
    if has_backup and not resume and not flags.get("overwrite"):
        raise ValueError(
            f"{output_dir} already holds a run ({backup_path}). Pass --resume to continue "
            "it, --overwrite to start again there (deleting its outputs: "
            f"{', '.join(rundir.OUTPUTS)}), or choose another --output-dir."
        )
    if flags.get("overwrite") and not resume and worker_info()[2]:  # the chief's to clear
        removed = rundir.clear_outputs(output_dir)
        if removed:
            print(f"--overwrite: deleted the previous run's {', '.join(removed)}")
    if resume and not has_backup:
        print(f"--resume: no backup in {output_dir}; starting from the beginning.")
        resume = False

    import keras

    from keras_resnets.utils import atomic_write, atomic_write_text
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
    from training.train import build_training_model

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
    data_lib.check_source(source, global_batch)  # DataError before anything is built
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
    if resume:
        _check_resume_budget(backup_path, total_steps)
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
            base = build_training_model(cfg, source.num_classes, source.channels)
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
            meta, restored = cb.load_latest_state(backup_path, net)
            start_step, history = int(meta["step"]), meta["history"]
            say(f"resumed from {restored} at step {start_step} of {total_steps}")
            if is_chief:
                # Rows of epochs after the backup (a kill between an epoch's row and
                # its backup) are written again by the resumed run.
                cb.trim_log(os.path.join(output_dir, "log.csv"), len(history.get("loss", [])))

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
        digest = hashlib.sha256(b"".join(w.tobytes() for w in base.get_weights()))
        result["weights_sha256"] = digest.hexdigest()
        if result["status"] == "completed" and export is not None and is_chief:
            result["export_path"] = os.path.join(output_dir, "saved_model")
            exported = _exported_version(output_dir, result["weights_sha256"])
            if exported is not None:
                say(f"--export: {exported} already holds this model; not exporting it again")
            else:
                # Serve with the trainer's normalisation and evaluation crop.
                exported = export(
                    base,
                    result["export_path"],
                    # preprocessing: the model's own (base.preprocessing).
                    class_names=source.class_names,
                    crop_fraction=224 / 256 if cfg["data"]["augmentation"] == "imagenet" else None,
                )
            result["export_version_path"] = exported
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
