"""Small argument-checking helpers shared by builders and layers."""

from __future__ import annotations

from collections.abc import Iterable


def check_choice(argument: str, value, allowed: Iterable) -> None:
    """Raise `ValueError` naming `argument` unless `value` is one of `allowed`."""
    allowed = tuple(allowed)
    if value not in allowed:
        listed = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"Unknown `{argument}` {value!r}: allowed values are {listed}.")


def check_int(argument: str, value, minimum: int = 1) -> int:
    """Raise `ValueError` naming `argument` unless `value` is an int >= `minimum`."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"`{argument}` must be an integer >= {minimum}, got {value!r}.")
    return value


def check_positive_int(argument: str, value) -> int:
    """Raise `ValueError` naming `argument` unless `value` is an int >= 1 (layers' wording)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{argument}` must be a positive integer, got {value!r}.")
    return value


def check_bool(argument: str, value) -> bool:
    """Raise `ValueError` naming `argument` unless `value` is True or False."""
    if not isinstance(value, bool):
        raise ValueError(f"`{argument}` must be True or False, got {value!r}.")
    return value


def check_fraction(argument: str, value, *, low: float, high: float, closed_high=False) -> float:
    """Raise `ValueError` unless `low <= value < high` (or `<= high` if `closed_high`)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = low <= value <= high if closed_high else low <= value < high
    if not ok:
        bracket = "]" if closed_high else ")"
        raise ValueError(f"`{argument}` must be in [{low}, {high}{bracket}, got {value!r}.")
    return float(value)


def iter_layers(model):
    """Yield every layer of `model`, nested ones included, depth first.

    Functional models list only their top-level layers; blocks such as
    `DenseBlock` hold their own sub-layers (`block1_layer3_conv2`, ...).
    This walks both, so weights can be matched by name.

    Args:
        model: a `keras.Model` or layer.

    Returns:
        A generator of `keras.layers.Layer`, each once, in model order.

    Example:
        >>> names = [layer.name for layer in iter_layers(keras_resnets.DenseNet121())]
        >>> "block1_layer3_conv2" in names
        True
    """
    seen = set()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if id(layer) not in seen:
            seen.add(id(layer))
            yield layer


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
