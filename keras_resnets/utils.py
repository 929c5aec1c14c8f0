"""Small helpers shared by the package and the trainer.

Argument checks (`check_choice`, `check_int`, `check_bool`, `check_number`,
`check_fraction`: NumPy scalars pass wherever the Python type does, bools
never pass for numbers), the commands' typed flags (`int_flag`,
`int_list_flag`, `float_flag`, `output_dir_flag`: argparse `type=` functions
that name the flag), the walk
over nested layers (`iter_layers`, `find_layer`) and `atomic_write`, the one
way every writer in `keras_resnets/` and `training/` puts a file in place.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import glob
import math
import numbers
import os
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator

import numpy as np


def check_choice(argument: str, value, allowed: Iterable):
    """Return the one of `allowed` that `value` equals; else `ValueError` naming `argument`.

    A bool matches only a bool (`1 in (False, True)` holds in Python, not
    here); NumPy scalars (`np.str_`, `np.bool_`) match their Python values,
    and the Python value is returned.
    """
    allowed = tuple(allowed)
    for choice in allowed:
        try:
            if is_bool(value) == is_bool(choice) and bool(value == choice):
                return choice
        except (TypeError, ValueError):  # an array: no truth value
            continue
    listed = ", ".join(repr(a) for a in allowed)
    raise ValueError(f"Unknown `{argument}` {value!r}: allowed values are {listed}.")


def is_bool(value) -> bool:
    """True for `True`/`False` and NumPy's `np.bool_` (what config loaders give)."""
    return isinstance(value, (bool, np.bool_))


def is_int(value) -> bool:
    """True for an integer (Python or NumPy, `np.int64(3)`), False for a bool."""
    return isinstance(value, numbers.Integral) and not is_bool(value)


def is_number(value) -> bool:
    """True for a real number (Python or NumPy, `np.float32(0.1)`), False for a bool."""
    return isinstance(value, numbers.Real) and not is_bool(value)


def check_int(
    argument: str,
    value,
    minimum: int | None = 1,
    maximum: int | None = None,
    *,
    optional: bool = False,
) -> int | None:
    """Return `value` as a Python int; `ValueError` naming `argument` unless an int in range.

    NumPy integers are accepted wherever an int is (`np.int64(10)`); bools are
    not. None for `minimum` or `maximum`: no bound; None as `value` only when
    `optional`.
    """
    if value is None and optional:
        return None
    ok = is_int(value)
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        what = f"an integer {interval(minimum, maximum)}".rstrip()
        raise ValueError(f"`{argument}` must be {what}{' or None' * optional}, got {value!r}.")
    return int(value)


def check_positive_int(argument: str, value) -> int:
    """Return `value` as a Python int; `ValueError` naming `argument` unless >= 1 (layers')."""
    if not is_int(value) or value < 1:
        raise ValueError(f"`{argument}` must be a positive integer, got {value!r}.")
    return int(value)


def check_bool(argument: str, value) -> bool:
    """Return `value` as a Python bool; `ValueError` naming `argument` unless True/False.

    `np.bool_` is accepted; `1`, `"no"` and None are not (a switch is a bool).
    """
    if not is_bool(value):
        raise ValueError(f"`{argument}` must be True or False, got {value!r}.")
    return bool(value)


def interval(minimum=None, maximum=None, *, low_open=False, high_open=False) -> str:
    """Words for a range: `"in [0, 1)"`, `">= 1"`, `"> 0"`, `"0.0"`, or `""` without bounds."""
    if minimum is not None and minimum == maximum and not (low_open or high_open):
        return f"{minimum}"
    if minimum is not None and maximum is not None:
        return f"in {'(' if low_open else '['}{minimum}, {maximum}{')' if high_open else ']'}"
    if minimum is not None:
        return f"{'>' if low_open else '>='} {minimum}"
    if maximum is not None:
        return f"{'<' if high_open else '<='} {maximum}"
    return ""


def check_number(
    argument: str,
    value,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    optional: bool = False,
) -> float | None:
    """Return `value` as a Python float; `ValueError` naming `argument` unless finite, in range.

    Any real number, NumPy's included, is accepted; NaN, infinities and bools
    are not; None only when `optional`. `low_open`/`high_open` exclude the bound.
    """
    if value is None and optional:
        return None
    ok = is_number(value) and math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if low_open else value >= minimum
    if ok and maximum is not None:
        ok = value < maximum if high_open else value <= maximum
    if not ok:
        bounds = interval(minimum, maximum, low_open=low_open, high_open=high_open)
        what = bounds or "a finite number"
        raise ValueError(f"`{argument}` must be {what}{' or None' * optional}, got {value!r}.")
    return float(value)


def check_fraction(argument: str, value, *, low: float, high: float, closed_high=False) -> float:
    """Return `value` as a float; `ValueError` unless `low <= value < high` (`<=` if closed).

    NumPy numbers are accepted; NaN and bools are not (see `check_number`).
    """
    return check_number(argument, value, minimum=low, maximum=high, high_open=not closed_high)


def iter_layers(model):
    """Yield every layer of `model`, nested ones included, depth first.

    Functional models list only their top-level layers; blocks such as
    `DenseBlock` hold their own sub-layers (`block1_layer3_conv2`, ...).
    This walks both, so weights can be matched by name.

    Args:
        model: a `keras.Model` or layer.

    Returns:
        A generator of `keras.layers.Layer`, each once, in the order of
        Keras's own (private) `_flatten_layers` walk (a Sequential's own
        `InputLayer` left out, as `Sequential.layers` leaves it).

    Example:
        >>> names = [layer.name for layer in iter_layers(keras_resnets.DenseNet121())]
        >>> "block1_layer3_conv2" in names
        True
    """
    # Keras's own walk order: a queue of the top-level layers, each
    # layer's children pushed to its front in reverse (`extendleft`).
    seen = set()
    queue = collections.deque(sublayers(model))
    while queue:
        layer = queue.popleft()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer
        queue.extendleft(sublayers(layer))


def sublayers(layer) -> list:
    """The layers `layer` holds directly (not recursively), in the order Keras tracks them.

    A model lists them in `layers`; any other layer (a `DenseBlock`, a
    `StochasticDepth` with its branch) holds them as attributes or lists of
    them, which is what Keras's (private) layer tracking records too; this
    reads them through the layer's public attributes only (on PyTorch,
    where a layer attribute is a torch submodule, through `named_children`;
    tested equal to Keras's walk on every backend).

    Args:
        layer: a `keras.layers.Layer` or `keras.Model`.

    Returns:
        A list of `keras.layers.Layer` (empty for a leaf layer).
    """
    import keras

    if isinstance(layer, keras.Model):
        return list(layer.layers)
    attributes = dict(vars(layer))
    if hasattr(layer, "named_children"):  # PyTorch backend: layers are torch submodules
        attributes.update(layer.named_children())
    found: dict[int, keras.layers.Layer] = {}
    for name, value in attributes.items():
        if name.startswith("_"):  # Keras's own bookkeeping (`_layers`, `_tracker`, ...)
            continue
        values = list(value.values()) if isinstance(value, dict) else value
        values = values if isinstance(values, (list, tuple)) else [values]
        for item in values:
            if isinstance(item, keras.layers.Layer):
                found.setdefault(id(item), item)
    return list(found.values())


def _temporary_affixes(path: str) -> tuple[str, str]:
    """`atomic_write`'s temporary name for `path`: `.<name>.<random>.tmp<suffix>`."""
    base = os.path.basename(path)
    suffix = ".weights.h5" if base.endswith(".weights.h5") else os.path.splitext(base)[1]
    return f".{base}.", ".tmp" + suffix


def temporary_pattern(path: str | os.PathLike) -> str:
    """A `glob` pattern matching the temporaries `atomic_write(path)` makes (a kill leaves them).

    Example:
        >>> temporary_pattern("runs/demo/model.keras")
        'runs/demo/.model.keras.*.tmp.keras'
    """
    path = os.fspath(path)
    prefix, suffix = _temporary_affixes(path)
    return os.path.join(glob.escape(os.path.dirname(path)), glob.escape(prefix) + "*" + suffix)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path next to `path`; rename it onto `path` on success.

    Every file the package and the trainer write goes through this: the
    temporary file sits in the same directory (same file system), so the
    final `os.replace` is atomic and readers see the old file or the new one,
    never a half-written one. The file gets the mode of any new file
    (0666 less the umask, usually 0644), not the 0600 of a temporary file.
    If the block raises, the temporary file is removed and `path` is left as
    it was. The temporary name keeps `path`'s suffix (`.keras`,
    `.weights.h5`, ...), which Keras's savers check.

    Args:
        path: the final path; its directory is created if missing.

    Yields:
        The temporary path to write (it does not exist yet).

    Example:
        >>> with atomic_write("runs/demo/model.keras") as tmp:  # doctest: +SKIP
        ...     model.save(tmp)
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    prefix, suffix = _temporary_affixes(path)
    fd, temporary = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    os.close(fd)
    os.remove(temporary)
    try:
        yield temporary
        if os.path.isfile(temporary):
            # Whatever made the temporary file (a writer may create it as mkstemp
            # does, 0600), the final file gets a new file's usual mode.
            os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_keras_file(what: str, path: str) -> str:
    """Return `path` if it is a `.keras` archive Keras can open; else name it.

    Keras's loader reports a truncated or corrupt archive as "File not
    found"; the commands that load a user's `.keras` say what is wrong.

    Args:
        what: how the message names the file (`"model file"`, `"--model file"`).
        path: the path given.

    Raises:
        ValueError: no such file (a usage error).
        OSError: the file is not a zip archive (truncated, corrupt).
    """
    if not os.path.isfile(path):
        raise ValueError(f"{what} {path!r} does not exist")
    if not zipfile.is_zipfile(path):
        raise OSError(
            f"{what} {path!r} is not a .keras archive (truncated or corrupt?); save the model again"
        )
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a UTF-8 text file through `atomic_write`."""
    with atomic_write(path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)


#: The exit status of every command of the package and the trainer
#: (`python -m training.train`, `training.export`, `training.tune`,
#: `keras_resnets.analysis`, `keras_resnets.convert`, ...), declared once;
#: docs/training.md lists them with what a user does after each.
EXIT_CODES = {
    "completed": 0,  # the command did what it was asked
    "error": 1,  # an unexpected error (a bug): Python's traceback, please report it
    "usage": 2,  # a bad flag, recipe key, value or path: nothing was started
    "nan_loss": 3,  # training stopped: the loss was not finite (the last good backup is kept)
    "data": 4,  # the data cannot train or evaluate (`DataError`): split, counts, classes
    "io": 5,  # a file could not be read or written (`OSError`, a corrupt backup)
    "busy": 6,  # another run holds the output directory (`OutputDirectoryBusy`)
}


class DataError(ValueError):
    """The data set cannot train or evaluate a model (no images, one class, ...).

    The message says what was found (split, counts, classes) and what to
    change. Commands exit with `EXIT_CODES["data"]`.
    """


class OutputDirectoryBusy(RuntimeError):
    """Another run holds the output directory's lock; the message names it.

    Commands exit with `EXIT_CODES["busy"]`.
    """


def exit_status(error: BaseException | str) -> int:
    """The exit status (`EXIT_CODES`) a command returns for `error`.

    `DataError` -> data, `OutputDirectoryBusy` -> busy, `OSError` -> io, and
    anything else (a `ValueError`/`TypeError` of bad input, a message) -> usage.
    """
    if isinstance(error, DataError):
        return EXIT_CODES["data"]
    if isinstance(error, OutputDirectoryBusy):
        return EXIT_CODES["busy"]
    if isinstance(error, OSError):
        return EXIT_CODES["io"]
    return EXIT_CODES["usage"]


def cli_error(error: BaseException | str) -> int:
    """Print `error: <message>` to stderr and return its exit status (`exit_status`)."""
    print(f"error: {error}", file=sys.stderr)
    return exit_status(error)


def int_flag(minimum: int = 1, maximum: int | None = None):
    """An argparse `type=`: an integer >= `minimum` (and <= `maximum`, if given).

    A bad value is an `argparse.ArgumentTypeError`, which argparse reports as
    `error: argument --flag: must be an integer >= 1, got '0'` (exit 2).

    Example:
        >>> parser.add_argument("--batch-size", type=int_flag(1), default=64)
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except (TypeError, ValueError):
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}")
        return value

    allowed = (
        f"an integer >= {minimum}" if maximum is None else f"an integer in [{minimum}, {maximum}]"
    )
    parse.__name__ = allowed
    parse.bounds = (minimum, maximum)  # for `--help` writers and tests
    return parse


#: `--seed`: NumPy's seeds (`keras.utils.set_random_seed` seeds NumPy too).
seed_flag = int_flag(0, int(np.iinfo(np.uint32).max))


def int_list_flag(minimum: int = 1):
    """An argparse `type=`: comma-separated integers >= `minimum` (`"8,14,20"`), at least one."""
    item = int_flag(minimum)

    def parse(text: str) -> list[int]:
        parts = [part.strip() for part in text.split(",")]
        try:
            if not any(parts):
                raise argparse.ArgumentTypeError("")
            return [item(part) for part in parts]
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"must be comma-separated integers >= {minimum} (e.g. 8,14,20), got {text!r}"
            ) from None

    parse.__name__ = f"integers >= {minimum}"
    parse.bounds = (minimum, None)
    return parse


def float_flag(low: float, high: float, *, closed_low: bool = True, closed_high: bool = False):
    """An argparse `type=`: a number in the interval from `low` to `high` (NaN never is)."""
    interval = f"{'[' if closed_low else '('}{low:g}, {high:g}{']' if closed_high else ')'}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            value = math.nan
        above = value >= low if closed_low else value > low
        below = value <= high if closed_high else value < high
        if not (above and below):
            raise argparse.ArgumentTypeError(f"must be a number in {interval}, got {text!r}")
        return value

    parse.__name__ = f"number in {interval}"
    parse.interval = (low, high, closed_low, closed_high)
    return parse


def output_dir_flag(text: str) -> str:
    """An argparse `type=` for `--output-dir`: a directory path, not a file or under one."""
    if not text:
        raise argparse.ArgumentTypeError("must be a directory path, got ''")
    path = os.path.abspath(text)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)  # the nearest part of the path that exists
    if not os.path.isdir(path):
        why = "is a file" if path == os.path.abspath(text) else f"is under the file {path!r}"
        raise argparse.ArgumentTypeError(f"{text!r} {why}: pass a directory")
    return text


def find_layer(model, name: str):
    """Return the layer called `name` anywhere in `model` (nested ones included).

    `model.get_layer` only sees the top level. Layers inside a `DenseBlock`,
    or inside the `{block}_branch` sub-model that a `StochasticDepth` layer
    (`{block}_add`) owns when `drop_path_rate > 0`, are found by the same
    names as in the flat model.

    Args:
        model: a `keras.Model`.
        name: the layer name, e.g. `"block1_layer3_conv2"`.

    Returns:
        The `keras.layers.Layer`.

    Raises:
        ValueError: no layer has that name.

    Example:
        >>> conv = find_layer(keras_resnets.DenseNet121(), "block1_layer3_conv2")
    """
    for layer in iter_layers(model):
        if layer.name == name:
            return layer
    raise ValueError(f"No layer named {name!r} in model {model.name!r}.")
