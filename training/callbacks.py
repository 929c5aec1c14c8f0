"""Callbacks of the trainer: resumable backups, the NaN stop, LR and image logging.

`StepBackup` is this trainer's `BackupAndRestore`. Keras's own
`keras.callbacks.BackupAndRestore` restarts an interrupted epoch from its
first batch (so a resumed run takes more optimizer steps than an
uninterrupted one) and writes its files in place (a kill during the write
leaves a broken backup). `StepBackup` saves the model weights, the optimizer
state and the step in ONE file, written to a temporary name and renamed, so
the backup on disk is always complete; with the trainer's step-indexed input
pipeline a resumed run continues from exactly the saved step.
"""

from __future__ import annotations

import json
import math
import os
import tempfile

import keras
import numpy as np


def atomic_write(path: str, write) -> None:
    """Write a file through `write(tmp_path)` and rename it into place.

    The temporary file sits in the same directory (same file system), so
    `os.replace` is atomic: readers see the old file or the new one, never a
    half-written one.

    Args:
        path: final path.
        write: function taking the temporary path and writing the file.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    base = os.path.basename(path)
    suffix = ".keras" if base.endswith(".keras") else os.path.splitext(base)[1]
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp" + suffix, dir=directory)
    os.close(fd)
    os.remove(tmp)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str, text: str) -> None:
    """Write a text file atomically (see `atomic_write`)."""

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write)


def _all_finite(arrays) -> bool:
    return all(np.all(np.isfinite(a)) for a in arrays if np.issubdtype(a.dtype, np.floating))


def _optimizer_variables(optimizer):
    return list(optimizer.variables)


def save_state(path: str, model: keras.Model, step: int, history: dict) -> None:
    """Save weights, optimizer state, step and history in one `.npz`, atomically."""
    arrays = {f"w{i}": np.asarray(v) for i, v in enumerate(model.get_weights())}
    for i, v in enumerate(_optimizer_variables(model.optimizer)):
        arrays[f"o{i}"] = np.asarray(keras.ops.convert_to_numpy(v))
    arrays["meta"] = np.frombuffer(
        json.dumps({"step": int(step), "history": history}).encode(), dtype=np.uint8
    )

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)


def read_meta(path: str) -> dict:
    """The `{"step", "history"}` record of a state file."""
    with np.load(path) as data:
        return json.loads(bytes(data["meta"]).decode())


def load_state(path: str, model: keras.Model) -> dict:
    """Restore what `save_state` wrote into `model` (and its optimizer).

    Returns:
        The `{"step", "history"}` record.

    Raises:
        ValueError: the file does not match the model, naming the file.
    """
    with np.load(path) as data:
        weights = [data[f"w{i}"] for i in range(len(model.weights))]
        opt_vars = _optimizer_variables(model.optimizer)
        names = [k for k in data.files if k.startswith("o")]
        if len(names) != len(opt_vars) or f"w{len(model.weights)}" in data.files:
            raise ValueError(
                f"Backup {path} does not match this model/optimizer (different recipe?). "
                "Start a fresh run in another --output-dir."
            )
        try:
            model.set_weights(weights)
        except ValueError as error:
            raise ValueError(f"Backup {path} does not match this model: {error}") from error
        for i, v in enumerate(opt_vars):
            v.assign(data[f"o{i}"])
        meta = json.loads(bytes(data["meta"]).decode())
    return meta


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
        save_state(self.backup_path, self.model, step, self.history)
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
            atomic_write(self.checkpoint_path, self.base_model.save)


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
