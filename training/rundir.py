"""The output directory of a training run: one run at a time, its outputs, its leftovers.

- `hold(output_dir)`: an exclusive, non-blocking `filelock.FileLock` on
  `<output_dir>/.lock` for the whole run, with the holder (pid, host, start
  time) in `<output_dir>/.lock.json`; a second run in the directory (also
  with `--resume` or `--overwrite`) gets `OutputDirectoryBusy` naming the
  holder before it touches a file. The lock is the operating system's
  (`flock`): a killed run's lock goes with its process.
- `OUTPUTS`: what a run writes there; `--overwrite` clears exactly these
  (`clear_outputs`), and `check_inputs` refuses a run whose input (the
  `--transfer-from` model, the recipe file, the data folder) is one of them.
- `remove_leftovers`: the hidden temporaries a kill leaves
  (`utils.atomic_write`'s and the export's), removed when a run starts.
- `default_output_dir`: `runs/<recipe>`, or `runs/<recipe>-transfer` for a
  run that starts from a trained model, so a transfer never lands in the
  directory of the model it starts from.

See docs/training.md ("Runs that survive").
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import json
import os
import shutil
import socket
from collections.abc import Iterator

__all__ = [
    "LOCK_FILE",
    "OUTPUTS",
    "check_inputs",
    "clear_outputs",
    "default_output_dir",
    "hold",
    "remove_leftovers",
]

LOCK_FILE = ".lock"
HOLDER_FILE = ".lock.json"

#: Everything a run writes in its output directory (files and folders).
OUTPUTS = (
    "config.yaml",
    "metrics.json",
    "model.keras",
    "checkpoint.keras",
    "log.csv",
    "backup",
    "saved_model",
    "tensorboard",
)

#: The files written through `utils.atomic_write` (relative to the output directory).
_ATOMIC_FILES = (
    "config.yaml",
    "metrics.json",
    "model.keras",
    "checkpoint.keras",
    "log.csv",
    "backup/state.npz",
    "backup/state.prev.npz",
)


def default_output_dir(recipe: str, transfer_from: str | None = None) -> str:
    """`runs/<recipe>`, or `runs/<recipe>-transfer` when the run starts from a trained model."""
    name = os.path.splitext(os.path.basename(recipe))[0]
    return os.path.join("runs", name + ("-transfer" if transfer_from else ""))


def _holder() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _describe_holder(output_dir: str) -> str:
    try:
        with open(os.path.join(output_dir, HOLDER_FILE), encoding="utf-8") as handle:
            holder = json.load(handle)
        return f"pid {holder['pid']} on host {holder['host']}, started {holder['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not said who it is yet"


@contextlib.contextmanager
def hold(output_dir: str) -> Iterator[None]:
    """Hold `output_dir`'s lock for the block (creating the directory).

    Raises:
        OutputDirectoryBusy: another process holds it; the message names the
            holder (pid, host, start time) and the lock file.
    """
    from filelock import FileLock, Timeout

    from keras_resnets.utils import OutputDirectoryBusy, atomic_write_text

    os.makedirs(output_dir, exist_ok=True)
    lock_path = os.path.join(output_dir, LOCK_FILE)
    lock = FileLock(lock_path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise OutputDirectoryBusy(
            f"{output_dir} is in use by another run ({_describe_holder(output_dir)}; lock "
            f"{lock_path}). Wait for it to finish or stop it, or choose another --output-dir."
        ) from None
    holder_path = os.path.join(output_dir, HOLDER_FILE)
    try:
        atomic_write_text(holder_path, json.dumps(_holder()))
        yield
    finally:
        with contextlib.suppress(OSError):
            os.remove(holder_path)
        lock.release()


def remove_leftovers(output_dir: str) -> list[str]:
    """Remove the hidden temporaries a killed run left in `output_dir`; return them.

    Only the run's own: `utils.atomic_write`'s temporaries of the files the
    run writes (`.model.keras.<random>.tmp.keras`, `backup/.state.npz.*`, ...)
    and the export's (`saved_model/.<version>.tmp-*`, `saved_model/.old-*`).
    Call it while holding the directory (`hold`): a live run's temporaries
    are not leftovers.
    """
    from keras_resnets.export import temporary_patterns
    from keras_resnets.utils import temporary_pattern

    patterns = [temporary_pattern(os.path.join(output_dir, name)) for name in _ATOMIC_FILES]
    patterns += temporary_patterns(os.path.join(output_dir, "saved_model"))
    removed = []
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
            removed.append(path)
    return removed


def _inside(path: str, directory: str) -> bool:
    path, directory = os.path.realpath(path), os.path.realpath(directory)
    return path == directory or path.startswith(directory + os.sep)


def check_inputs(output_dir: str, inputs: dict[str, str | None]) -> None:
    """Refuse a run one of whose inputs is one of its outputs (`OUTPUTS`).

    Args:
        output_dir: the run's output directory.
        inputs: `{"--transfer-from": path, ...}`: what the run reads, by
            the flag or key that names it (None: not used).

    Raises:
        ValueError: an input is (or lies in) an output of the run, which the
            run (or `--overwrite`) would replace or delete.
    """
    for flag, path in inputs.items():
        if not path:
            continue
        for name in OUTPUTS:
            if _inside(path, os.path.join(output_dir, name)):
                raise ValueError(
                    f"{flag} {path} is the {name} of the run in {output_dir}, which this run "
                    "would replace (and --overwrite would delete): choose another "
                    "--output-dir (a run with --transfer-from defaults to "
                    "runs/<recipe>-transfer)."
                )


def clear_outputs(output_dir: str) -> list[str]:
    """Delete the previous run's outputs (`OUTPUTS`) in `output_dir`; return them.

    Nothing else in the directory is touched: call `check_inputs` first, so
    no input of the new run is among them.
    """
    removed = []
    for name in OUTPUTS:
        path = os.path.join(output_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
        else:
            continue
        removed.append(path)
    return removed
