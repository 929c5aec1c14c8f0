"""Channel attention at the end of a residual branch: Squeeze-and-Excitation and ECA.

Both rescale each channel of the branch by a gate in (0, 1) computed from
the channel's global mean, before the branch meets the shortcut (timm's
`Bottleneck`/`BasicBlock` put their `se` there):

- `"se"`: Squeeze-and-Excitation (Hu et al. 2018, "Squeeze-and-Excitation
  Networks"): global mean, a 1x1 convolution with bias to `rd` channels and
  ReLU, a 1x1 convolution with bias back to C channels and a sigmoid.
  `rd = reduction_channels(C, ratio)` as timm's `SEModule` (ratio 1/16 in
  SE-ResNet, 0.25 in ResNet-RS). Layers `{name}_se_squeeze`,
  `{name}_se_reduce`, `{name}_se_expand`, `{name}_se_excite`, as
  keras.applications' EfficientNet.
- `"eca"`: Efficient Channel Attention (Wang et al. 2020, "ECA-Net"): global
  mean, one 1-D convolution across the channels (kernel `eca_kernel_size(C)`,
  no bias) and a sigmoid: k weights per unit. Layers `{name}_eca_squeeze`,
  `{name}_eca_reshape`, `{name}_eca_conv`, `{name}_eca_gate`,
  `{name}_eca_excite`.
"""

from __future__ import annotations

import math

import keras

ATTENTIONS = (None, "se", "eca")
SE_RATIO = 1.0 / 16
SE_DIVISOR = 8


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit=0.9):
    """`value` rounded to the nearest multiple of `divisor` (timm's `make_divisible`).

    Never below `min_value` (default `divisor`); one `divisor` more where
    rounding down lost more than `1 - round_limit` of `value`.
    """
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return rounded


def reduction_channels(channels: int, ratio: float = SE_RATIO) -> int:
    """Channels of an SE block's bottleneck: `channels * ratio`, a multiple of 8 (>= 8)."""
    return make_divisible(channels * ratio, SE_DIVISOR, round_limit=0.0)


def eca_kernel_size(channels: int, gamma: int = 2, beta: int = 1) -> int:
    """ECA's adaptive kernel size: the odd number nearest `(log2(C) + beta) / gamma`, >= 3."""
    t = int(abs(math.log(channels, 2) + beta) / gamma)
    return max(t if t % 2 else t + 1, 3)


def squeeze_excite(x, *, ratio: float = SE_RATIO, name: str):
    """Squeeze-and-Excitation (Hu et al. 2018) on `x` (NHWC); returns the rescaled `x`."""
    channels = x.shape[-1]
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_squeeze")(x)
    s = keras.layers.Conv2D(
        reduction_channels(channels, ratio), 1, activation="relu", name=f"{name}_se_reduce"
    )(s)
    s = keras.layers.Conv2D(channels, 1, activation="sigmoid", name=f"{name}_se_expand")(s)
    return keras.layers.Multiply(name=f"{name}_se_excite")([x, s])


def efficient_channel_attention(x, *, name: str):
    """ECA (Wang et al. 2020) on `x` (NHWC); returns the rescaled `x`."""
    channels = x.shape[-1]
    s = keras.layers.GlobalAveragePooling2D(name=f"{name}_eca_squeeze")(x)
    s = keras.layers.Reshape((channels, 1), name=f"{name}_eca_reshape")(s)
    s = keras.layers.Conv1D(
        1,
        eca_kernel_size(channels),
        padding="same",
        use_bias=False,
        activation="sigmoid",
        name=f"{name}_eca_conv",
    )(s)
    s = keras.layers.Reshape((1, 1, channels), name=f"{name}_eca_gate")(s)
    return keras.layers.Multiply(name=f"{name}_eca_excite")([x, s])


def channel_attention(x, attention: str | None, *, ratio: float | None = None, name: str):
    """Apply `attention` (one of `ATTENTIONS`) to a branch's output `x`.

    Args:
        x: the branch output (NHWC).
        attention: None (returns `x`), `"se"` or `"eca"`.
        ratio: the SE reduction ratio (default 1/16); must be None for ECA.
        name: the unit's layer-name prefix.
    """
    if attention is None:
        return x
    if attention == "se":
        return squeeze_excite(x, ratio=SE_RATIO if ratio is None else ratio, name=name)
    return efficient_channel_attention(x, name=name)
