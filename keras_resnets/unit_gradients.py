"""Gradient flow through deep stacks of residual units at initialisation.

He et al. (2016) argue that a clean identity path lets the gradient reach any
depth: with full pre-activation units the gradient at a stack's input stays
of the order of the gradient at its output, while units that put a BN or
ReLU, a scaling or a gate on the shortcut path make it explode or vanish.
`gradient_norm_ratio` measures that on a stack of identical basic units.

    python -m keras_resnets.unit_gradients --units 200 --seeds 0 1 2 3 4   # the docs table

The ratio is a product of 200 Jacobians, so it depends on the random draw of
the initial weights (and, for `dropout_shortcut`, of the dropout masks): one
seed gives one draw. For a fixed seed it is reproducible in one environment
(the same value in every process, with 1, 2 or 4 threads and with oneDNN on
or off, to 1e-6 relative), but which draw a seed gives is up to Keras and
TensorFlow (the initialisers draw their seeds from Python's `random`, then
from TensorFlow's stateless generators), so another Keras or TensorFlow
version is another draw. `main(--seeds ...)` measures how much the ratio moves
between draws; that spread, not the seed-0 value, is what can be compared
across machines.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

import keras
import numpy as np

from keras_resnets import blocks
from keras_resnets._optional import require
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
    tf = require("tensorflow", "`unit_gradients` (gradients through `tf.GradientTape`)")

    rng = np.random.default_rng(seed)
    shape = (batch_size, *model.input_shape[1:])
    x = tf.constant(rng.standard_normal(shape).astype("float32"))
    r = tf.constant(rng.standard_normal(shape).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(model(x, training=True) * r)
    grad = tape.gradient(loss, x)
    return float(tf.norm(grad) / tf.norm(r))


def _configs() -> list[tuple[str, dict]]:
    configs = [(f"unit={u!r}", dict(unit=u)) for u in blocks.UNITS]
    configs.append(("plain (no shortcut)", dict(residual=False)))
    configs += [
        (f"shortcut_variant={v!r}", dict(shortcut_variant=v)) for v in blocks.SHORTCUT_VARIANTS[1:]
    ]
    return configs


def measure(num_units: int, seed: int = 0, **options) -> float:
    """`gradient_norm_ratio` of a fresh `unit_stack(num_units, **options)` drawn with `seed`.

    `keras.utils.set_random_seed(seed)` is called first, so the weights (and
    the dropout masks) are the same draw in every process of one environment.
    """
    keras.utils.set_random_seed(seed)
    return gradient_norm_ratio(unit_stack(num_units, **options), seed=seed)


def variant_table(num_units: int = 200, seed: int = 0) -> list[tuple[str, float]]:
    """Gradient-norm ratios of every unit, the plain stack and every shortcut variant."""
    return [(label, measure(num_units, seed, **options)) for label, options in _configs()]


def spread(ratios: Sequence[float]) -> dict:
    """Summary of one row's ratios over several seeds.

    Args:
        ratios: the ratio measured with each seed (the first is reported as
            `first`); `inf` (float32 overflow) and 0 (underflow) are counted
            but left out of the statistics.

    Returns:
        `{"first", "geomean", "log10_sd", "min", "max", "overflowed"}`: the
        geometric mean, the sample standard deviation of log10(ratio), the
        extremes of the finite positive ratios, and how many were not.
        Statistics are `nan` when fewer than two ratios are finite.

    Example:
        >>> spread([10.0, 1000.0])["geomean"]
        100.0
    """
    ratios = [float(r) for r in ratios]
    if not ratios:
        raise ValueError("`ratios` must hold at least one ratio, got none.")
    logs = [math.log10(r) for r in ratios if 0 < r < math.inf]
    nan = float("nan")
    if len(logs) < 2:
        geomean = 10 ** logs[0] if logs else nan
        return {
            "first": ratios[0],
            "geomean": geomean,
            "log10_sd": nan,
            "min": geomean,
            "max": geomean,
            "overflowed": len(ratios) - len(logs),
        }
    mean = sum(logs) / len(logs)
    sd = math.sqrt(sum((v - mean) ** 2 for v in logs) / (len(logs) - 1))
    return {
        "first": ratios[0],
        "geomean": 10**mean,
        "log10_sd": sd,
        "min": 10 ** min(logs),
        "max": 10 ** max(logs),
        "overflowed": len(ratios) - len(logs),
    }


def format_row(label: str, summary: dict) -> str:
    """One Markdown row of the docs table (`main` prints these)."""

    def g(value: float) -> str:
        return "-" if math.isnan(value) else f"{value:.3g}"

    span = "-" if math.isnan(summary["min"]) else f"{g(summary['min'])} - {g(summary['max'])}"
    return (
        f"| `{label}` | {g(summary['first'])} | {g(summary['geomean'])} | "
        f"{g(summary['log10_sd'])} | {span} | {summary['overflowed']} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=200)
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        help="seeds of the weights, input and probe; the first is the 'seed' column",
    )
    args = parser.parse_args(argv)
    if args.units < 1:
        parser.error(f"--units must be at least 1, got {args.units}")
    first = args.seeds[0]
    print(
        f"| {args.units} basic units, 16 channels, at init | seed {first} | geometric mean | "
        f"sd of log10 | min - max | inf of {len(args.seeds)} |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for label, options in _configs():
        ratios = [measure(args.units, seed, **options) for seed in args.seeds]
        print(format_row(label, spread(ratios)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
