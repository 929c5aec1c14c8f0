"""The model registry: every public builder with its metadata.

The metadata (trainable parameter count, default input size, paper) is what
the README's model table is generated from, and the tests build every
registered model and assert its trainable count equals `num_params`.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable

import keras


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """Metadata of one registered builder.

    Attributes:
        name: the public builder name (`"ResNet50"`).
        builder: the builder function.
        family: family label used in docs (`"ResNet v1"`).
        input_size: default square input size (224 or 32).
        num_params: exact trainable parameter count with the default
            arguments (no conv bias before BatchNormalization).
        paper: short reference (`"He et al. 2015"`).
        slow: True for the largest models (built once per test session).
    """

    name: str
    builder: Callable[..., keras.Model]
    family: str
    input_size: int
    num_params: int
    paper: str
    slow: bool = False


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    *, family: str, input_size: int, num_params: int, paper: str, slow: bool = False
) -> Callable[[Callable[..., keras.Model]], Callable[..., keras.Model]]:
    """Decorator adding a builder to the registry under its function name."""

    def wrap(builder: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        name = builder.__name__
        if name in _REGISTRY:
            raise ValueError(f"Model {name!r} is registered twice.")
        _REGISTRY[name] = ModelInfo(name, builder, family, input_size, num_params, paper, slow)
        return builder

    return wrap


def register_alias(alias: str, name: str) -> None:
    """Register `alias` as another name for the already registered `name`."""
    info = _REGISTRY[name]
    _REGISTRY[alias] = dataclasses.replace(info, name=alias)


def list_models() -> list[str]:
    """Return the names of all registered builders, sorted.

    Returns:
        A sorted list of names accepted by `get_model`.

    Example:
        >>> "ResNet50" in keras_resnets.list_models()
        True
    """
    return sorted(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    """Return the `ModelInfo` of a registered builder (see `get_model` for errors)."""
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a string, got {type(name).__name__}: {name!r}.")
    if name not in _REGISTRY:
        lowered = {key.lower(): key for key in _REGISTRY}
        if name.lower() in lowered:
            close = [lowered[name.lower()]]
        else:
            close = [
                lowered[key]
                for key in difflib.get_close_matches(name.lower(), list(lowered), n=5, cutoff=0.5)
            ]
        hint = f" Closest names: {', '.join(close)}." if close else ""
        raise ValueError(
            f"Unknown model name {name!r}.{hint} `keras_resnets.list_models()` lists all "
            f"{len(_REGISTRY)} models."
        )
    return _REGISTRY[name]


def get_model(name: str, **kwargs) -> keras.Model:
    """Build a registered model by name.

    Args:
        name: one of `list_models()`, e.g. `"ResNet50"`.
        **kwargs: passed to the builder (`include_top`, `weights`,
            `input_shape`, `classes`, family options...).

    Returns:
        A functional `keras.Model`.

    Raises:
        ValueError: the name is unknown; the message lists the closest names.

    Example:
        >>> model = keras_resnets.get_model("ResNet20", classes=100)
    """
    return model_info(name).builder(**kwargs)


def model_table() -> str:
    """The model zoo as a Markdown table (name, family, params, input, paper)."""
    lines = [
        "| model | family | trainable params | input | paper |",
        "|---|---|---:|---|---|",
    ]
    for name in list_models():
        info = _REGISTRY[name]
        size = info.input_size
        lines.append(
            f"| `{name}` | {info.family} | {info.num_params:,} | {size}x{size}x3 | {info.paper} |"
        )
    return "\n".join(lines)
