"""The gated merge of Highway networks (Srivastava et al. 2015).

One layer covers the highway layer and the gated shortcuts of He et al.
(2016, Table 1): it receives the transform output `h = H(x)` and the carried
input `x` (the shortcut, same shape) and returns

    coupled=True:   y = h * T + x * (1 - T)
    coupled=False:  y = h * T + x * C

with `T = sigmoid(conv(x) + b_T)` and `C = sigmoid(conv(x) + b_C)`. With
`transform_gate=False` the transform gate is fixed at 1 (`y = h + x * C`,
He et al.'s "shortcut-only gating").
"""

from __future__ import annotations

import keras
from keras import ops

from keras_resnets.utils import check_bool, check_number, is_int


def default_transform_bias(depth: int) -> float:
    """Srivastava et al.'s rule for the transform-gate bias: more negative when deeper.

    Args:
        depth: the number of layers of the network.

    Returns:
        -1.0 up to 10 layers, -2.0 up to 20, -3.0 beyond.
    """
    if depth <= 10:
        return -1.0
    if depth <= 20:
        return -2.0
    return -3.0


@keras.saving.register_keras_serializable(package="keras_resnets")
class Highway(keras.layers.Layer):
    """Highway gate: `y = h * T(x) + x * (1 - T(x))` (or `x * C(x)`).

    Call it on `[h, x]`: `h` is the transform branch's output `H(x)` and `x`
    the carried input (the unit's shortcut), of the same shape. The gates are
    `kernel_size` x `kernel_size` convolutions of `x` with a bias, through a
    sigmoid.

    Args:
        coupled: True (Srivastava et al.): the carry gate is `1 - T`.
            False: a separate carry gate `C(x)` with its own weights.
        transform_bias: initial bias of the transform gate `T`. Negative
            values start the layer close to carrying its input
            (`default_transform_bias(depth)`: -1, -2 or -3).
        carry_bias: initial bias of the carry gate `C` (with
            `coupled=False`); default `-transform_bias`, so that `C` starts
            near `1 - T`.
        transform_gate: False fixes `T = 1` (only the carry is gated;
            needs `coupled=False`).
        kernel_size: size of the gate convolutions (1 or 3, odd).
        kernel_initializer: initializer of the gate kernels.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, ...).

    Example:
        >>> import numpy as np
        >>> layer = Highway(transform_bias=-2.0)
        >>> x = np.ones((1, 4, 4, 8), "float32")
        >>> layer([2 * x, x]).shape
        (1, 4, 4, 8)
    """

    def __init__(
        self,
        coupled: bool = True,
        transform_bias: float = -1.0,
        carry_bias: float | None = None,
        transform_gate: bool = True,
        kernel_size: int = 1,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        coupled = check_bool("coupled", coupled)
        transform_gate = check_bool("transform_gate", transform_gate)
        if coupled and not transform_gate:
            raise ValueError(
                "`transform_gate=False` (T fixed at 1) needs `coupled=False`: a coupled "
                "carry gate 1 - T would then be 0 and the layer would carry nothing."
            )
        if not is_int(kernel_size) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"`kernel_size` must be a positive odd integer, got {kernel_size!r}.")
        self.coupled = coupled
        self.transform_bias = check_number("transform_bias", transform_bias)
        if carry_bias is None:
            carry_bias = -self.transform_bias
        self.carry_bias = check_number("carry_bias", carry_bias)
        self.transform_gate = transform_gate
        self.kernel_size = int(kernel_size)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
            raise ValueError(
                "Highway is called on a list [h, x] (transform output, carried input), "
                f"got input shape {input_shape!r}."
            )
        h_shape, x_shape = (tuple(s) for s in input_shape)
        if h_shape[1:] != x_shape[1:]:
            raise ValueError(
                f"Highway needs h and x of the same shape, got {h_shape} and {x_shape}."
            )
        channels = x_shape[-1]
        kernel_shape = (self.kernel_size, self.kernel_size, channels, channels)
        if self.transform_gate:
            self.transform_kernel = self.add_weight(
                name="transform_kernel", shape=kernel_shape, initializer=self.kernel_initializer
            )
            self.transform_bias_weight = self.add_weight(
                name="transform_bias",
                shape=(channels,),
                initializer=keras.initializers.Constant(self.transform_bias),
            )
        if not self.coupled:
            self.carry_kernel = self.add_weight(
                name="carry_kernel", shape=kernel_shape, initializer=self.kernel_initializer
            )
            self.carry_bias_weight = self.add_weight(
                name="carry_bias",
                shape=(channels,),
                initializer=keras.initializers.Constant(self.carry_bias),
            )
        self.built = True

    def _gate(self, x, kernel, bias):
        z = ops.conv(x, ops.cast(kernel, x.dtype), strides=1, padding="same")
        return ops.sigmoid(z + ops.cast(bias, x.dtype))

    def gates(self, x):
        """Return `(T, C)` for the carried input `x` (`C = 1 - T` when coupled)."""
        if self.transform_gate:
            t = self._gate(x, self.transform_kernel, self.transform_bias_weight)
        else:
            t = ops.ones_like(x)
        if self.coupled:
            return t, 1.0 - t
        return t, self._gate(x, self.carry_kernel, self.carry_bias_weight)

    def call(self, inputs):
        h, x = inputs
        t, c = self.gates(x)
        if not self.transform_gate:
            return h + x * c
        return h * t + x * c

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "coupled": self.coupled,
                "transform_bias": self.transform_bias,
                "carry_bias": self.carry_bias,
                "transform_gate": self.transform_gate,
                "kernel_size": self.kernel_size,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
