"""Gradient flow through deep stacks of residual units at initialisation.

He et al. (2016) argue that a clean identity path lets the gradient reach any
depth: with full pre-activation units the gradient at a stack's input stays
of the order of the gradient at its output, while units that put a BN or
ReLU, a scaling or a gate on the shortcut path make it explode or vanish.
`gradient_norm_ratio` measures that on a stack of identical basic units.

    python -m keras_resnets.unit_gradients --units 200   # the docs table
"""

from __future__ import annotations

import argparse

import keras
import numpy as np

from keras_resnets import blocks
from keras_resnets.models.builder import _ensure_recursion_limit


def unit_stack(
    num_units: int,
    *,
    unit: str = "original",
    shortcut_variant: str = "identity",
    residual: bool = True,
    channels: int = 16,
    size: int = 8,
) -> keras.Model:
    """A stack of `num_units` stride-1 basic units, as they sit in a network.

    Pre-activation stacks end with the unit's activation (`post_bn` +
    `post_relu` for full pre-activation, `post_relu` for ReLU-only), as the
    pre-activation networks do before pooling.

    Args:
        num_units: number of units.
        unit: one of `blocks.UNITS`.
        shortcut_variant: one of `blocks.SHORTCUT_VARIANTS`.
        residual: False stacks the plain units (no shortcut).
        channels: width of every unit.
        size: height and width of the input.

    Returns:
        A functional `keras.Model` from `(size, size, channels)` to the same
        shape.

    Example:
        >>> stack = unit_stack(10, unit="full_preactivation")
    """
    _ensure_recursion_limit()
    inputs = keras.Input((size, size, channels), name="input")
    x = inputs
    for index in range(num_units):
        x = blocks.residual_unit(
            x,
            channels,
            strides=1,
            name=f"unit{index + 1}",
            unit=unit,
            shortcut_variant=shortcut_variant,
            residual=residual,
        )
    if unit in blocks.PREACT_UNITS:
        x = blocks.preactivation(x, unit=unit, name="post")
    return keras.Model(inputs, x, name=f"{unit}_{shortcut_variant}_stack")


def gradient_norm_ratio(model: keras.Model, *, batch_size: int = 8, seed: int = 0) -> float:
    """`||dL/dx_in|| / ||dL/dx_out||` for `L = sum(output * r)`, `r` random.

    The stack runs in training mode (BatchNormalization uses the batch's
    statistics, as in the first training step); input and `r` are standard
    normal.

    Args:
        model: a model whose output has the input's shape (`unit_stack`).
        batch_size: examples in the batch.
        seed: seed of the input and of `r`.

    Returns:
        The ratio of the gradient norms (inf or 0 when it over/underflows).
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    shape = (batch_size, *model.input_shape[1:])
    x = tf.constant(rng.standard_normal(shape).astype("float32"))
    r = tf.constant(rng.standard_normal(shape).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(model(x, training=True) * r)
    grad = tape.gradient(loss, x)
    return float(tf.norm(grad) / tf.norm(r))


def variant_table(num_units: int = 200, seed: int = 0) -> list[tuple[str, float]]:
    """Gradient-norm ratios of every unit, the plain stack and every shortcut variant."""
    rows = []
    configs = [(f"unit={u!r}", dict(unit=u)) for u in blocks.UNITS]
    configs.append(("plain (no shortcut)", dict(residual=False)))
    configs += [
        (f"shortcut_variant={v!r}", dict(shortcut_variant=v)) for v in blocks.SHORTCUT_VARIANTS[1:]
    ]
    for label, options in configs:
        keras.utils.set_random_seed(seed)
        rows.append((label, gradient_norm_ratio(unit_stack(num_units, **options), seed=seed)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"| {args.units} basic units, 16 channels, at init | input / output gradient norm |")
    print("|---|---:|")
    for label, ratio in variant_table(args.units, args.seed):
        print(f"| `{label}` | {ratio:.3g} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
