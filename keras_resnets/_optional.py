"""Optional dependencies: which extra installs each one, and a lazy import that says so.

The core install (`pip install keras_resnets`) is what the models need: Keras,
NumPy, h5py and safetensors, plus one Keras backend of the user's choice. Every
other package is imported only inside the function that needs it, through
`require`, so a missing one is an `ImportError` naming the extra to install
instead of a bare `ModuleNotFoundError`. `EXTRAS` is the one table of which
extra (in `setup.cfg`) provides which module; `tests/test_packaging.py` checks
the two agree.
"""

from __future__ import annotations

import importlib
import types

#: Import name -> (distribution on PyPI, the `keras_resnets[...]` extra that installs it).
EXTRAS: dict[str, tuple[str, str]] = {
    "tensorflow": ("tensorflow", "tensorflow"),
    "jax": ("jax", "jax"),
    "torch": ("torch", "torch"),
    "yaml": ("pyyaml", "train"),
    "sklearn": ("scikit-learn", "train"),
    "tensorflow_datasets": ("tensorflow-datasets", "data"),
    "keras_tuner": ("keras-tuner", "tune"),
    "tensorflow_serving": ("tensorflow-serving-api", "serving"),
    "matplotlib": ("matplotlib", "analysis"),
}


def install_hint(module: str, extra: str | None = None) -> str:
    """The pip command that installs the optional `module` (a key of `EXTRAS`).

    Args:
        module: top-level import name, e.g. `"tensorflow"`.
        extra: the extra to name instead of the table's (a command that needs a
            wider set, e.g. `"analysis"` for scikit-learn's digits).

    Returns:
        `"pip install 'keras_resnets[<extra>]'"`.

    Raises:
        ValueError: `module` is not an optional dependency.
    """
    if module not in EXTRAS:
        raise ValueError(
            f"`module` must be an optional dependency ({', '.join(sorted(EXTRAS))}), "
            f"got {module!r}."
        )
    return f"pip install 'keras_resnets[{extra or EXTRAS[module][1]}]'"


def require(module: str, purpose: str, *, extra: str | None = None) -> types.ModuleType:
    """Import an optional dependency, or raise an `ImportError` naming its extra.

    Args:
        module: the import name, e.g. `"tensorflow"` or `"tensorflow_serving.apis"`;
            its top-level package must be a key of `EXTRAS`.
        purpose: what needs it, for the message (`"Exporting a SavedModel"`).
        extra: the extra to name instead of the table's.

    Returns:
        The imported module.

    Raises:
        ImportError: the module is not installed; the message names the
            distribution and `pip install 'keras_resnets[<extra>]'`.
        ValueError: the top-level package is not an optional dependency.

    Example:
        >>> tf = require("tensorflow", "Exporting a SavedModel")  # doctest: +SKIP
    """
    root = module.split(".")[0]
    hint = install_hint(root, extra)
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{purpose} needs `{EXTRAS[root][0]}`, which is not installed "
            f"(import {module!r} failed: {exc}). Install it with: {hint}"
        ) from exc
