"""Small helpers shared by builders and layers: argument checks, nested layer look-up."""

from __future__ import annotations

from collections.abc import Iterable

import keras


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


def check_fraction(argument: str, value, *, low: float, high: float, closed_high=False) -> float:
    """Raise `ValueError` unless `low <= value < high` (or `<= high` if `closed_high`)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = low <= value <= high if closed_high else low <= value < high
    if not ok:
        bracket = "]" if closed_high else ")"
        raise ValueError(f"`{argument}` must be in [{low}, {high}{bracket}, got {value!r}.")
    return float(value)


def find_layer(model, name: str):
    """Return the layer called `name` in `model` or in any model nested in it.

    `model.get_layer` only sees the top level. With stochastic depth on, each
    block's branch is a sub-model (`{block}_branch`) owned by the block's
    `StochasticDepth` layer (`{block}_add`), so its convolutions and
    BatchNormalization layers sit one level down; this finds them by the same
    names as in the flat model.

    Args:
        model: a `keras.Model` (or any layer with sub-layers).
        name: the layer name, e.g. `"stage1_block1_conv1"`.

    Returns:
        The layer.

    Raises:
        ValueError: no layer of that name exists at any depth.

    Example:
        >>> model = keras_resnets.ResNet20(drop_path_rate=0.5)
        >>> find_layer(model, "stage1_block1_conv1").name
        'stage1_block1_conv1'
    """
    pending = [model]
    while pending:
        layer = pending.pop(0)
        if layer is not model and layer.name == name:
            return layer
        pending.extend(getattr(layer, "layers", ()))
        branch = getattr(layer, "branch", None)  # StochasticDepth's sub-model
        if isinstance(branch, keras.layers.Layer):
            pending.append(branch)
    raise ValueError(f"No layer named {name!r} in model {model.name!r} or its sub-models.")
