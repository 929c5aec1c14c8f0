"""Split attention, the 3x3 convolution of ResNeSt (Zhang et al. 2020).

`SplitAttention` is timm's `SplitAttn` (timm/layers/split_attn.py, itself
adapted from the authors' code, github.com/zhanghang1989/ResNeSt) as one
Keras layer, with timm's sub-layer names so that timm's checkpoints convert
by name. `make_divisible` is timm's channel rounding, which sizes the
attention's bottleneck here and the Squeeze-and-Excitation bottleneck in
`blocks/`.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_resnets.layers.grouped_conv import IMPLEMENTATIONS, GroupedConv2D
from keras_resnets.utils import check_choice, check_number, check_positive_int, is_int

STRIDES = (1, 2)
# The constructor's arguments that `get_config` saves as they are.
_CONFIG = (
    "filters",
    "kernel_size",
    "strides",
    "radix",
    "cardinality",
    "reduction_ratio",
    "min_reduction_channels",
    "reduction_divisor",
    "implementation",
    "epsilon",
    "momentum",
)


def make_divisible(
    value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9
) -> int:
    """`value` rounded to the nearest multiple of `divisor` (timm's `make_divisible`).

    `max(min_value, int(value + divisor / 2) // divisor * divisor)`, plus one
    `divisor` where that is below `round_limit * value` (rounding down lost
    more than 10% by default; `round_limit=0` never adds).

    Args:
        value: the channel count to round (a float: channels times a ratio).
        divisor: the multiple wanted (default 8).
        min_value: the smallest result (default `divisor`).
        round_limit: see above (default 0.9).

    Returns:
        An int, a multiple of `divisor` unless `min_value` is not.

    Example:
        >>> make_divisible(64 * 2 * 0.25, min_value=32), make_divisible(20.0)
        (32, 24)
    """
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return rounded


@keras.saving.register_keras_serializable(package="keras_resnets")
class SplitAttention(keras.layers.Layer):
    """Split-attention convolution (ResNeSt: Zhang et al. 2020, timm's `SplitAttn`).

    Zhang et al. (2020), "ResNeSt: Split-Attention Networks"
    (arXiv:2004.08955); computed as timm's `SplitAttn` (timm 1.0.x,
    `timm/layers/split_attn.py`, with BatchNorm and ReLU). With `R = radix`,
    `K = cardinality` and `C = filters`:

    1. `conv`: a `kernel_size` convolution, `strides`, zero padding
       `kernel_size // 2` on each side (explicit where strided, as PyTorch),
       no bias, `K * R` groups, to `C * R` channels; `bn0`; ReLU. Its
       channels are R splits of C (split `r` is channels `r*C .. r*C + C-1`).
    2. The splits summed (R > 1), then the global spatial mean: `(B, C)`.
    3. `fc1`: 1x1 convolution with bias, K groups, to
       `D = make_divisible(C_in * R * reduction_ratio, reduction_divisor,
       min_reduction_channels)` channels; `bn1`; ReLU. `fc2`: 1x1
       convolution with bias, K groups, to `C * R` channels, in the order
       (cardinal group, split, channel).
    4. Attention: for R > 1, a softmax over the R splits of each channel
       (timm's `RadixSoftmax`, computed in float32); for R = 1 a sigmoid.
    5. Output: the attention-weighted sum of the R splits (R = 1: the conv
       output times its gate).

    With `radix=1, cardinality=1` this is a convolution followed by a
    Squeeze-and-Excitation gate on its own output.

    Sub-layers (found by `keras_resnets.utils.sublayers`, named as timm's
    `conv2.conv`, `conv2.bn0`, `conv2.fc1`, `conv2.bn1`, `conv2.fc2` when the
    layer is named `{unit}_conv2`): `{name}_conv` (a `GroupedConv2D` with
    `implementation` when it has more than one group, else a `Conv2D`;
    kernel `(k, k, C_in / (K*R), C*R)`), `{name}_bn0` (`C*R`), `{name}_fc1`
    (kernel `(1, 1, C / K, D)`, bias `D`), `{name}_bn1` (`D`), `{name}_fc2`
    (kernel `(1, 1, D / K, C*R)`, bias `C*R`). `fc1`, `bn1` and `fc2` are
    made when the layer is built (D depends on `C_in`). Trainable
    parameters, as timm's: `k*k*C_in*C/K + (C/K + 3)*D + (D/K + 3)*C*R`
    (43,488 for `C_in = C = 64`, R = 2, K = 1, k = 3: D = 32).

    Args:
        filters: output channels `C` (positive; a multiple of
            `cardinality`).
        kernel_size: side of the square kernel, an odd positive int
            (default 3).
        strides: 1 (default) or 2.
        radix: the number of splits `R` (>= 1; default 2; ResNeSt uses 2).
        cardinality: the number of cardinal groups `K` (>= 1; default 1).
        reduction_ratio: attention channels per input channel and split, a
            number > 0 (default 0.25, timm's `rd_ratio`).
        min_reduction_channels: the fewest attention channels (default 32,
            as timm).
        reduction_divisor: attention channels are a multiple of this
            (default 8, timm's `rd_divisor`).
        implementation: how the grouped convolutions compute: `"auto"`
            (default), `"native"`, `"split"` or `"custom_gradient"` (see
            `GroupedConv2D`).
        epsilon: BatchNormalization epsilon (default 1e-5, PyTorch's).
        momentum: BatchNormalization momentum (default 0.9, PyTorch's 0.1).
        kernel_initializer: the three convolutions' kernel initializer;
            None (default): He-normal on fan-out, as
            `keras_resnets.blocks.kernel_initializer()` (biases start at 0).
        name: the layer's name, the prefix of its sub-layers' names.
        **kwargs: other `keras.layers.Layer` arguments (`dtype`, ...).

    Input shape:
        `(batch, height, width, C_in)`, `C_in` known and a multiple of
        `cardinality * radix`.

    Output shape:
        `(batch, ceil(height / strides), ceil(width / strides), filters)`.

    Raises:
        ValueError: a bad argument (named, with its value and what is
            allowed); at build, `C_in` not a multiple of
            `cardinality * radix`, or `D` not a multiple of `cardinality`.

    Example:
        >>> import numpy as np
        >>> layer = SplitAttention(64, radix=2, name="stage2_block1_conv2")
        >>> layer(np.ones((2, 8, 8, 64), "float32")).shape
        (2, 8, 8, 64)
        >>> [sub.name for sub in keras_resnets.utils.sublayers(layer)]  # doctest: +NORMALIZE_WHITESPACE
        ['stage2_block1_conv2_conv', 'stage2_block1_conv2_bn0', 'stage2_block1_conv2_fc1',
         'stage2_block1_conv2_bn1', 'stage2_block1_conv2_fc2']
        >>> layer.count_params()  # 43,488 trainable + 2 * (128 + 32) moving statistics
        43808
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        strides: int = 1,
        *,
        radix: int = 2,
        cardinality: int = 1,
        reduction_ratio: float = 0.25,
        min_reduction_channels: int = 32,
        reduction_divisor: int = 8,
        implementation: str = "auto",
        epsilon: float = 1e-5,
        momentum: float = 0.9,
        kernel_initializer=None,
        name: str | None = None,
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        filters = check_positive_int("filters", filters)
        if not is_int(kernel_size) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"`kernel_size` must be an odd positive integer (padding kernel_size // 2 "
                f"on each side keeps the size, as PyTorch), got {kernel_size!r}."
            )
        self.radix = check_positive_int("radix", radix)
        self.cardinality = check_positive_int("cardinality", cardinality)
        if filters % self.cardinality:
            raise ValueError(
                f"`filters`={filters} must be a multiple of `cardinality`={self.cardinality} "
                f"(the convolution's filters * radix = {filters * self.radix} channels "
                f"are split into cardinality * radix = {self.cardinality * self.radix} groups)."
            )
        self.filters = filters
        self.kernel_size = int(kernel_size)
        self.strides = check_choice("strides", strides, STRIDES)
        self.reduction_ratio = check_number(
            "reduction_ratio", reduction_ratio, minimum=0, low_open=True
        )
        self.min_reduction_channels = check_positive_int(
            "min_reduction_channels", min_reduction_channels
        )
        self.reduction_divisor = check_positive_int("reduction_divisor", reduction_divisor)
        self.implementation = check_choice("implementation", implementation, IMPLEMENTATIONS)
        self.epsilon = check_number("epsilon", epsilon, minimum=0, low_open=True)
        self.momentum = check_number("momentum", momentum, minimum=0, maximum=1, high_open=True)
        if kernel_initializer is None:
            # Imported here: keras_resnets.blocks imports this package.
            from keras_resnets.blocks.conv_bn import kernel_initializer as he_fan_out

            kernel_initializer = he_fan_out()
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.input_spec = keras.layers.InputSpec(ndim=4)
        self.conv = self._conv(
            filters * self.radix, self.kernel_size, self.cardinality * self.radix, "conv"
        )
        self.bn0 = self._bn("bn0")

    def _conv(self, filters: int, kernel_size: int, groups: int, suffix: str, use_bias=False):
        options = dict(
            padding="same" if self.strides == 1 else "valid",
            strides=self.strides,
            use_bias=use_bias,
            # A copy each: Keras warns that one unseeded instance called twice
            # gives the same values each time.
            kernel_initializer=keras.initializers.get(
                keras.initializers.serialize(self.kernel_initializer)
            ),
            name=f"{self.name}_{suffix}",
            dtype=self.dtype_policy,
        )
        if kernel_size == 1:
            options.update(padding="valid", strides=1)
        if groups > 1:
            return GroupedConv2D(
                filters, kernel_size, groups=groups, implementation=self.implementation, **options
            )
        return keras.layers.Conv2D(filters, kernel_size, **options)

    def _bn(self, suffix: str):
        return keras.layers.BatchNormalization(
            epsilon=self.epsilon,
            momentum=self.momentum,
            name=f"{self.name}_{suffix}",
            dtype=self.dtype_policy,
        )

    def attention_channels(self, in_channels: int) -> int:
        """`D`, the channels of `fc1` for `in_channels` input channels (see the class)."""
        return make_divisible(
            in_channels * self.radix * self.reduction_ratio,
            self.reduction_divisor,
            self.min_reduction_channels,
        )

    def build(self, input_shape):
        batch, _, _, in_channels = input_shape
        groups = self.cardinality * self.radix
        if in_channels is None or in_channels % groups:
            raise ValueError(
                f"SplitAttention {self.name!r}: the input channels ({in_channels}) must be "
                f"known and a multiple of cardinality * radix = {groups}."
            )
        attention = self.attention_channels(in_channels)
        if attention % self.cardinality:
            raise ValueError(
                f"SplitAttention {self.name!r}: its {attention} attention channels "
                f"(reduction_ratio={self.reduction_ratio}, reduction_divisor="
                f"{self.reduction_divisor}, min_reduction_channels="
                f"{self.min_reduction_channels}) are not a multiple of "
                f"`cardinality`={self.cardinality}."
            )
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: in_channels})
        self.fc1 = self._conv(attention, 1, self.cardinality, "fc1", use_bias=True)
        self.bn1 = self._bn("bn1")
        self.fc2 = self._conv(self.filters * self.radix, 1, self.cardinality, "fc2", use_bias=True)
        padded = self._padded_shape(input_shape)
        self.conv.build(padded)
        self.bn0.build(self.conv.compute_output_shape(padded))
        self.fc1.build((batch, 1, 1, self.filters))
        self.bn1.build((batch, 1, 1, attention))
        self.fc2.build((batch, 1, 1, attention))

    def call(self, inputs, training=None):
        x = inputs
        pad = self.kernel_size // 2
        if self.strides > 1 and pad:
            x = ops.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        x = ops.relu(self.bn0(self.conv(x), training=training))
        splits = ops.split(x, self.radix, axis=-1) if self.radix > 1 else [x]
        gap = ops.mean(sum(splits[1:], splits[0]), axis=(1, 2), keepdims=True)
        gap = ops.relu(self.bn1(self.fc1(gap), training=training))
        logits = ops.cast(self.fc2(gap), "float32")  # (B, 1, 1, K * R * C/K)
        if self.radix == 1:
            return x * ops.cast(ops.sigmoid(logits), x.dtype)
        per_group = self.filters // self.cardinality
        logits = ops.reshape(logits, (-1, self.cardinality, self.radix, per_group))
        weights = ops.softmax(logits, axis=2)
        # (B, K, R, C/K) -> R tensors (B, 1, 1, C), channel c = k * C/K + j.
        weights = ops.reshape(
            ops.transpose(weights, (0, 2, 1, 3)), (-1, 1, 1, self.radix, self.filters)
        )
        weights = ops.cast(weights, x.dtype)
        return sum(
            (split * weights[..., r, :] for r, split in enumerate(splits[1:], 1)),
            splits[0] * weights[..., 0, :],
        )

    def _padded_shape(self, input_shape):
        """The shape `conv` sees: the input with the explicit padding of a strided layer."""
        batch, height, width, channels = input_shape
        pad = 2 * (self.kernel_size // 2) if self.strides > 1 else 0
        height, width = (None if s is None else s + pad for s in (height, width))
        return (batch, height, width, channels)

    def compute_output_shape(self, input_shape):
        return (*self.conv.compute_output_shape(self._padded_shape(input_shape))[:3], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({key: getattr(self, key) for key in _CONFIG})
        config["kernel_initializer"] = keras.initializers.serialize(self.kernel_initializer)
        return config
