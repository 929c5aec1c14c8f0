"""Callbacks of the trainer: resumable backups, the NaN stop, LR and image logging.

`StepBackup` is this trainer's `BackupAndRestore`. Keras's own
`keras.callbacks.BackupAndRestore` restarts an interrupted epoch from its
first batch (so a resumed run takes more optimizer steps than an
uninterrupted one) and writes its files in place (a kill during the write
leaves a broken backup). `StepBackup` saves the whole training state (every
variable training changes: weights, BatchNormalization statistics, seed
generator states, optimizer variables and iterations, the loss scale; see
`training_state`) and the step in ONE file, written to a temporary name and renamed, so
the backup on disk is always complete; with the trainer's step-indexed input
pipeline a resumed run continues from exactly the saved step. The previous
backup is kept beside it (`previous_backup`): a backup that cannot be read
(`CorruptBackup`, naming the file) sends `load_latest_state` one save back.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import zipfile

import keras
import numpy as np

from keras_resnets.utils import atomic_write, atomic_write_text


class CorruptBackup(OSError):
    """A backup file cannot be read (truncated, empty, overwritten); the message names it."""


def previous_backup(path: str) -> str:
    """Where `save_state` keeps the backup it replaces: `state.npz` -> `state.prev.npz`."""
    root, extension = os.path.splitext(path)
    return f"{root}.prev{extension}"


def _all_finite(arrays) -> bool:
    return all(np.all(np.isfinite(a)) for a in arrays if np.issubdtype(a.dtype, np.floating))


def training_state(model: keras.Model) -> list[tuple[str, keras.Variable]]:
    """Every variable that training changes, each once, in a fixed order, named.

    A generic walk over what Keras tracks, not a list of special cases:

    - `model.variables`: the weights, the BatchNormalization statistics and
      the state of every `keras.random.SeedGenerator` in the model
      (StochasticDepth draws, Dropout masks), nested sub-models included;
    - `model.optimizer.variables`: the iteration count, the slots (momentum,
      Adam moments) and, under a mixed precision policy, the
      `LossScaleOptimizer`'s loss scale and step counter with its inner
      optimizer's variables.

    Metric variables are left out: `fit` resets them at the start of every
    epoch, and a resumed run starts a new `fit`.

    Args:
        model: a compiled model whose optimizer is built.

    Returns:
        `(name, variable)` pairs; the name is `"model/<path>"` or
        `"optimizer/<path>"`.
    """
    entries: list[tuple[str, keras.Variable]] = []
    seen: set[int] = set()
    groups = [("model", model.variables)]
    if getattr(model, "optimizer", None) is not None:
        groups.append(("optimizer", model.optimizer.variables))
    for kind, variables in groups:
        for variable in variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                entries.append((f"{kind}/{variable.path}", variable))
    return entries


def _global_seed_generator():
    """Keras's global `SeedGenerator` (unseeded `keras.random` calls), if one exists.

    Private Keras API (there is no public one); setup.cfg caps Keras for it,
    see tests/test_keras_private.py.
    """
    from keras.src.backend.common import global_state
    from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR

    return global_state.get_global_attribute(GLOBAL_SEED_GENERATOR)


def _framework_rng_state() -> dict:
    """Generator states outside Keras's variables that the model's layers draw from.

    On PyTorch an unseeded `keras.layers.Dropout` draws its masks from
    torch's global generator (not from its `SeedGenerator`); unseeded
    `keras.random` calls draw from Keras's global `SeedGenerator`.
    """
    arrays = {}
    generator = _global_seed_generator()
    if generator is not None:
        arrays["rng_keras_global"] = np.asarray(keras.ops.convert_to_numpy(generator.state))
    if keras.backend.backend() == "torch":
        import torch

        arrays["rng_torch_cpu"] = torch.get_rng_state().numpy()
        if torch.cuda.is_available():
            for i, state in enumerate(torch.cuda.get_rng_state_all()):
                arrays[f"rng_torch_cuda{i}"] = state.numpy()
    return arrays


def _restore_framework_rng_state(data: dict) -> None:
    if "rng_keras_global" in data:
        from keras.src.random.seed_generator import global_seed_generator

        global_seed_generator().state.assign(data["rng_keras_global"])
    if keras.backend.backend() == "torch" and "rng_torch_cpu" in data:
        import torch

        torch.set_rng_state(torch.from_numpy(data["rng_torch_cpu"].copy()))
        cuda = sorted(k for k in data if k.startswith("rng_torch_cuda"))
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(
                [torch.from_numpy(data[k].copy()) for k in cuda][: torch.cuda.device_count()]
            )


def _signature(entries) -> list[list]:
    """What must match between a backup and a model: each variable's own name
    (not its path: models and optimizers built twice in one process get
    numbered names), shape and dtype, in order."""
    return [[v.name, list(v.shape), str(v.dtype)] for _, v in entries]


def save_state(
    path: str, model: keras.Model, step: int, history: dict, keep_previous: bool = True
) -> None:
    """Save the whole training state, the step and the history in one `.npz`, atomically.

    The backup it replaces is kept as `previous_backup(path)` (unless
    `keep_previous` is False), renamed just before the new one is: a kill
    between the two renames leaves the previous backup, which
    `load_latest_state` takes.

    The state is `training_state(model)` (weights, BN statistics, seed
    generator states, optimizer variables and iterations, loss-scale state)
    plus the random generators outside it (`_framework_rng_state`), with a
    manifest of the variables' names, shapes and dtypes that `load_state`
    checks.
    """
    entries = training_state(model)
    arrays = {
        f"v{i}": np.asarray(keras.ops.convert_to_numpy(v)) for i, (_, v) in enumerate(entries)
    }
    arrays.update(_framework_rng_state())
    record = {
        "step": int(step),
        "history": history,
        "variables": _signature(entries),
        "paths": [name for name, _ in entries],
    }
    arrays["meta"] = np.frombuffer(json.dumps(record).encode(), dtype=np.uint8)

    with atomic_write(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        if keep_previous and os.path.exists(path):
            os.replace(path, previous_backup(path))


def _damaged(path: str, reason: str) -> CorruptBackup:
    error = CorruptBackup(
        f"Backup {path} is damaged and cannot be read ({reason}); it was truncated or "
        f"overwritten outside the trainer. --resume goes back to {previous_backup(path)} "
        "(one save earlier) when it exists; otherwise start again with --overwrite or "
        "choose another --output-dir."
    )
    error.reason = reason
    return error


def _read_backup(path: str) -> tuple[dict, dict]:
    """`(record, arrays)` of a state file, every array read (so a damaged one is found).

    Raises:
        FileNotFoundError: no such file.
        CorruptBackup: the file is not a whole backup, naming it and what to do.
    """
    try:
        with np.load(path) as data:
            arrays = {name: data[name] for name in data.files}
        if "meta" not in arrays:
            raise KeyError("it has no metadata (no `meta` entry)")
        meta = json.loads(bytes(arrays.pop("meta")).decode())
        if not isinstance(meta, dict) or not {"step", "history"} <= set(meta):
            raise KeyError("its metadata has no step or history")
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        reason = error.args[0] if isinstance(error, KeyError) else f"{type(error).__name__}"
        if isinstance(error, ValueError) and "pickle" in str(error):
            reason = "it is not an .npz archive"
        elif not isinstance(error, KeyError):
            reason = f"{reason}: {error}"
        raise _damaged(path, reason) from error
    return meta, arrays


def read_meta(path: str) -> dict:
    """The `{"step", "history", "variables", "paths"}` record of a state file.

    Raises:
        CorruptBackup: the file cannot be read, naming it.
    """
    return _read_backup(path)[0]


def load_state(path: str, model: keras.Model) -> dict:
    """Restore what `save_state` wrote into `model` (and its optimizer).

    Every variable of `training_state(model)` is restored, or none is: the
    backup's list of variables (names, shapes, dtypes) must be the model's.

    Returns:
        The `{"step", "history", "variables", "paths"}` record.

    Raises:
        CorruptBackup: the file cannot be read (truncated, empty, damaged),
            naming it; nothing is restored.
        ValueError: the file does not hold this model's training state
            (another recipe or model, or a backup written before the whole
            state was saved), naming the file and the first difference.
    """
    entries = training_state(model)
    meta, data = _read_backup(path)
    saved = meta.get("variables")
    if saved is None:
        raise ValueError(
            f"Backup {path} holds only the weights and the optimizer (written by an "
            "older keras_resnets without the seed generator states), so a resumed run "
            "could not repeat the uninterrupted one. Start a fresh run in another "
            "--output-dir."
        )
    expected = _signature(entries)
    if saved != expected:
        paths = meta.get("paths", [entry[0] for entry in saved])
        here = [name for name, _ in entries]
        index = next(
            (i for i, (a, b) in enumerate(zip(saved, expected, strict=False)) if a != b),
            min(len(saved), len(expected)),
        )
        first = (
            f"variable {index}: {paths[index] if index < len(paths) else 'none'} "
            f"{saved[index][1:] if index < len(saved) else ''} in the backup, "
            f"{here[index] if index < len(here) else 'none'} "
            f"{expected[index][1:] if index < len(expected) else ''} here"
        )
        raise ValueError(
            f"Backup {path} does not match this model/optimizer (different recipe?): "
            f"{len(saved)} variables in the backup, {len(expected)} in the model and "
            f"its optimizer; first difference at {first}. Start a fresh run in another "
            "--output-dir."
        )
    missing = [f"v{i}" for i in range(len(entries)) if f"v{i}" not in data]
    if missing:
        raise _damaged(path, f"{missing[0]} of its {len(entries)} variables is missing")
    for i, (_, variable) in enumerate(entries):
        variable.assign(data[f"v{i}"])
    _restore_framework_rng_state(data)
    return meta


def load_latest_state(path: str, model: keras.Model) -> tuple[dict, str]:
    """Restore the newest readable backup: `path`, else `previous_backup(path)`, saying so.

    Returns:
        `(record, the file restored)`.

    Raises:
        CorruptBackup: neither can be read (naming `path`).
        FileNotFoundError: there is no backup.
        ValueError: the backup is another model's (`load_state`).
    """
    previous = previous_backup(path)
    try:
        return load_state(path, model), path
    except (CorruptBackup, FileNotFoundError) as error:
        if not os.path.exists(previous):
            raise
        problem = error if isinstance(error, CorruptBackup) else f"There is no {path}."
    try:
        meta = load_state(previous, model)
    except CorruptBackup as second:
        raise CorruptBackup(
            f"Neither backup can be read: {problem} And {previous} is damaged too "
            f"({getattr(second, 'reason', second)}). Start again with "
            "--overwrite or choose another --output-dir."
        ) from second
    print(
        f"{problem}\nResuming from the previous backup {previous} (step {meta['step']}).",
        file=sys.stderr,
    )
    return meta, previous


def trim_log(log_path: str, epochs: int) -> int:
    """Keep only the rows of epochs before `epochs` in a `CSVLogger` file; return how many went.

    A run killed after writing an epoch's row but before its backup repeats
    that epoch on resume: the row written then is the one that counts.
    """
    if not os.path.exists(log_path):
        return 0
    with open(log_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows or "epoch" not in rows[0]:
        return 0
    column = rows[0].index("epoch")
    kept = [rows[0]] + [
        row
        for row in rows[1:]
        if len(row) > column and row[column].isdigit() and int(row[column]) < epochs
    ]
    if len(kept) == len(rows):
        return 0
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(kept)
    atomic_write_text(log_path, out.getvalue())
    return len(rows) - len(kept)


class StepBackup(keras.callbacks.Callback):
    """Save the full training state every epoch and every `every_steps` steps.

    Also keeps `checkpoint.keras` (the model of the last finished epoch) and
    never saves a state whose loss or weights are not finite, so after a NaN
    stop the last good state stays on disk.

    Args:
        backup_path: the state file (`backup/state.npz`).
        checkpoint_path: the `.keras` file saved at each epoch end (or None).
        base_model: the functional model to save as `.keras` (the trained
            model may be a `FitModel` sharing its layers).
        steps_per_epoch: steps of a full epoch.
        every_epoch: save at each epoch end.
        every_steps: also save every this many steps (None: never).
        history: the history of the run so far (on resume), extended by
            `on_epoch_end`.
        write: False on non-chief workers (they never write files).

    Example:
        >>> cb = StepBackup("run/backup/state.npz", "run/checkpoint.keras", model, 390)
    """

    def __init__(
        self,
        backup_path: str,
        checkpoint_path: str | None,
        base_model: keras.Model,
        steps_per_epoch: int,
        every_epoch: bool = True,
        every_steps: int | None = None,
        history: dict | None = None,
        write: bool = True,
    ):
        super().__init__()
        self.backup_path = backup_path
        self.checkpoint_path = checkpoint_path
        self.base_model = base_model
        self.steps_per_epoch = steps_per_epoch
        self.every_epoch = every_epoch
        self.every_steps = every_steps
        self.history = {k: list(v) for k, v in (history or {}).items()}
        self.write = write
        self.last_saved_step: int | None = None

    def _step(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _save(self, logs) -> None:
        if not self.write:
            return
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            return
        if not _all_finite(self.model.get_weights()):
            return
        step = self._step()
        # A second save at the same step (every_steps at an epoch's end) keeps
        # the previous backup one save back, not at this step.
        keep = self.last_saved_step != step
        save_state(self.backup_path, self.model, step, self.history, keep_previous=keep)
        self.last_saved_step = step

    def on_train_batch_end(self, batch, logs=None):
        if self.every_steps and self._step() % self.every_steps == 0:
            self._save(logs)

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        if not self.every_epoch and self._step() % self.steps_per_epoch:
            return
        self._save(logs)
        loss = (logs or {}).get("loss")
        finite = loss is None or math.isfinite(float(loss))
        if self.write and self.checkpoint_path and finite and self.last_saved_step == self._step():
            with atomic_write(self.checkpoint_path) as tmp:
                self.base_model.save(tmp)


class TorchStepSeed(keras.callbacks.Callback):
    """On PyTorch, seed torch's global generator from `(seed, step)` before every step.

    An unseeded `keras.layers.Dropout` on PyTorch draws its masks from
    torch's global generator, which Keras's torch trainer also advances
    whenever it starts iterating the data (once per epoch, and once more
    before the first epoch of each `fit` call). Restoring the generator's
    saved state therefore does not put a resumed run on the uninterrupted
    run's draws. Seeding it from the step instead makes the draws of step s
    depend only on `(seed, s)`, as the trainer's input pipeline does, so a
    resumed run repeats them exactly.

    Args:
        seed: the run's seed (`train.seed`).
    """

    def __init__(self, seed: int):
        super().__init__()
        self.seed = int(seed)

    def on_train_batch_begin(self, batch, logs=None):
        import torch

        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        torch.manual_seed((self.seed * 1_000_003 + step) % 2**63)


class StopOnNaN(keras.callbacks.Callback):
    """Stop training when the loss becomes NaN or infinite, with a clear message.

    Attributes:
        stopped_step: the optimizer step at which the loss was not finite
            (None while training is healthy).
    """

    def __init__(self):
        super().__init__()
        self.stopped_step: int | None = None
        self.stopped_loss: float | None = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.stopped_step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
            self.stopped_loss = float(loss)
            self.model.stop_training = True


class StopAtStep(keras.callbacks.Callback):
    """Stop `fit` once the optimizer has taken `target` steps (mid-epoch if need be).

    Args:
        target: the optimizer step to stop at.
    """

    def __init__(self, target: int):
        super().__init__()
        self.target = target

    def on_train_batch_end(self, batch, logs=None):
        if int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) >= self.target:
            self.model.stop_training = True


class LearningRateLogger(keras.callbacks.Callback):
    """Add the current learning rate to the epoch logs (CSV and TensorBoard see it)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            lr = self.model.optimizer.learning_rate
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(lr))


class ImageLogger(keras.callbacks.Callback):
    """Write a grid of training images (one batch, de-normalised) to TensorBoard.

    Args:
        log_dir: TensorBoard directory (`<output>/tensorboard`).
        images: a batch of normalised images `(n, h, w, c)`.
        mean / std: the normalisation to undo.
        max_images: how many to write.
    """

    def __init__(self, log_dir: str, images, mean, std, max_images: int = 16):
        super().__init__()
        self.log_dir = log_dir
        self.images = np.asarray(images[:max_images], np.float32) * np.asarray(std) + np.asarray(
            mean
        )

    def on_train_begin(self, logs=None):
        import tensorflow as tf

        writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "images"))
        with writer.as_default():
            tf.summary.image(
                "training_batch",
                np.clip(self.images, 0.0, 1.0),
                step=0,
                max_outputs=len(self.images),
            )
        writer.close()
