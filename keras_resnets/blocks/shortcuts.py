"""The shortcut path of a residual unit and how it meets the branch.

Three names, three ideas (the builders' public options keep them):

- `shortcut`: the paper's option for shape changes (He et al. 2015, Table
  3): `"zero_pad"` (A), `"projection"` (B), `"all_projection"` (C);
- `shortcut_type`: what one unit gets under that option: `"identity"`,
  `"zero_pad"` or `"projection"` (`shortcut_type()`);
- `shortcut_variant`: the shortcut and merge of He et al. (2016, Table 1),
  one of `SHORTCUT_VARIANTS`.
"""

from __future__ import annotations

from collections.abc import Callable

import keras

from keras_resnets.blocks.conv_bn import batch_norm, conv
from keras_resnets.layers import Highway, StochasticDepth, ZeroPadShortcut

SHORTCUTS = ("zero_pad", "projection", "all_projection")
SHORTCUT_VARIANTS = (
    "identity",
    "constant_scaling",
    "exclusive_gating",
    "shortcut_only_gating",
    "conv_shortcut",
    "dropout_shortcut",
)
# Shortcut variants whose merge is a plain addition: the ones stochastic
# depth can gate (a dropped block passes the shortcut alone).
ADDITIVE_VARIANTS = ("identity", "conv_shortcut", "dropout_shortcut")
# How a projection shortcut reduces the resolution: a strided 1x1 convolution
# (He et al. 2015) or ResNet-D's 2x2 average pool before a stride-1 one (He et
# al. 2019), which reads every input position instead of one in four.
DOWNSAMPLES = ("conv", "avg")
GATE_BIAS = -6.0
SHORTCUT_DROPOUT = 0.5


def shortcut_type(shortcut: str, in_channels: int, out_channels: int, strides: int) -> str:
    """Which shortcut a unit gets under the paper's option A/B/C (`shortcut`).

    Returns:
        `"identity"` where the shape is kept (options A and B),
        `"zero_pad"` where option A changes the shape (more channels),
        `"projection"` otherwise (and everywhere under option C).
    """
    if shortcut == "all_projection":
        return "projection"
    if strides == 1 and in_channels == out_channels:
        return "identity"
    if shortcut == "zero_pad" and out_channels >= in_channels:
        return "zero_pad"
    return "projection"


def shortcut_path(
    x,
    channels: int,
    *,
    strides: int,
    name: str,
    shortcut_type: str,
    variant: str = "identity",
    normalize: bool = True,
    downsample: str = "conv",
):
    """The shortcut h(x) of a unit with `channels` output channels.

    `shortcut_type` `"identity"` returns `x`; `"zero_pad"` is option A's
    `ZeroPadShortcut` (`{name}_shortcut`, no weights); `"projection"` a 1x1
    convolution `{name}_shortcut` followed by `{name}_shortcut_bn` unless
    `normalize=False` (pre-activation units: the projection reads the
    activated input and the next unit normalises the sum). The `variant`
    `"conv_shortcut"` replaces it by a 1x1 convolution on every unit (He et
    al. 2016, Figure 2(e): linear, Glorot-initialised, no BN);
    `"dropout_shortcut"` follows it by dropout 0.5 (`{name}_shortcut_dropout`)
    and a 0.5 scale (`{name}_shortcut_scale`): Keras's dropout rescales by
    1/(1 - p) in training, and the paper's dropout shortcut is
    "statistically a scale of 0.5" (mask in training, 0.5 at inference).

    With `downsample="avg"` (ResNet-D) a strided projection is a 2x2/2
    average pool `{name}_shortcut_pool` (ceil mode, padding not counted, as
    timm's `AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)`) and a
    stride-1 1x1 convolution.
    """
    if variant == "conv_shortcut":
        return keras.layers.Conv2D(
            channels,
            1,
            strides=strides,
            use_bias=False,
            kernel_initializer="glorot_uniform",
            name=f"{name}_shortcut",
        )(x)
    if shortcut_type == "zero_pad":
        x = ZeroPadShortcut(channels, strides, name=f"{name}_shortcut")(x)
    elif shortcut_type == "projection":
        if downsample == "avg" and strides > 1:
            x = keras.layers.AveragePooling2D(
                2, strides=strides, padding="same", name=f"{name}_shortcut_pool"
            )(x)
            strides = 1
        x = conv(x, channels, 1, strides=strides, name=f"{name}_shortcut")
        if normalize:
            x = batch_norm(x, name=f"{name}_shortcut_bn")
    if variant == "dropout_shortcut":
        x = keras.layers.Dropout(SHORTCUT_DROPOUT, name=f"{name}_shortcut_dropout")(x)
        x = keras.layers.Rescaling(1.0 - SHORTCUT_DROPOUT, name=f"{name}_shortcut_scale")(x)
    return x


def merge(branch, short, *, variant: str, gate_bias: float, name: str):
    """Branch F meets shortcut h as `variant` says (He et al. 2016, Table 1).

    `"constant_scaling"`: `0.5 h + 0.5 F` (`{name}_add`, an `Average`);
    `"exclusive_gating"`: `g F + (1 - g) h`; `"shortcut_only_gating"`:
    `F + (1 - g) h`, with `g` a 1x1-conv sigmoid gate of bias `gate_bias`
    (the `Highway` layer `{name}_gate`); every other variant: `h + F`
    (`{name}_add`).
    """
    if variant == "constant_scaling":
        return keras.layers.Average(name=f"{name}_add")([short, branch])
    if variant == "exclusive_gating":
        return Highway(coupled=True, transform_bias=gate_bias, name=f"{name}_gate")([branch, short])
    if variant == "shortcut_only_gating":
        # y = F + (1 - g) x with g = sigmoid(conv + b_g): the carry gate
        # C = 1 - g is a sigmoid with bias -b_g.
        return Highway(
            coupled=False, transform_gate=False, carry_bias=-gate_bias, name=f"{name}_gate"
        )([branch, short])
    return keras.layers.Add(name=f"{name}_add")([short, branch])


def residual_add(
    x,
    branch_fn: Callable,
    shortcut_fn: Callable,
    *,
    name: str,
    stochastic_depth: dict | None = None,
):
    """`shortcut_fn(x) + branch_fn(x)`, the addition named `{name}_add`.

    Without stochastic depth the branch's layers are built inline (a flat
    graph) and the addition is a `keras.layers.Add`. With it, the branch is
    built as a functional sub-model named `{name}_branch` (its layers keep
    their usual names) and `{name}_add` is a `StochasticDepth` layer that owns
    it, so a dropped block skips the branch.

    Args:
        x: the block's input to the branch.
        branch_fn: builds the residual branch on a tensor.
        shortcut_fn: builds the shortcut on `x` (may return `x` itself).
        name: the block's layer-name prefix.
        stochastic_depth: None, or the keyword arguments of `StochasticDepth`
            (`survival_probability`, `mode`, `scale`, `seed`).

    Returns:
        The sum, before any final activation.
    """
    if stochastic_depth is None:
        branch = branch_fn(x)
        short = shortcut_fn(x)
        return keras.layers.Add(name=f"{name}_add")([short, branch])
    inputs = keras.Input(shape=tuple(x.shape[1:]), dtype=x.dtype, name=f"{name}_branch_input")
    branch = keras.Model(inputs, branch_fn(inputs), name=f"{name}_branch")
    short = shortcut_fn(x)
    gate = StochasticDepth(branch, name=f"{name}_add", **stochastic_depth)
    return gate(x if short is x else [x, short])
