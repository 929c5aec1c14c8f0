"""Grouped 2D convolution with a choice of implementation (ResNeXt's form C).

TensorFlow's native grouped convolution on CPU has a very slow backward pass
(a 3x3, 256-channel, 32-group convolution on a 32x28x28 batch took about 24 s
for forward + backward, against about 30 ms as 32 convolutions on channel
slices; see docs/resnext.md and `benchmarks/grouped_conv.py`). On GPUs
the native (cuDNN) grouped convolution is the fast one. `GroupedConv2D`
therefore keeps ONE kernel variable in the native layout
`(kh, kw, in_channels / groups, filters)` and computes it in one of three
ways:

- `"native"`: one grouped `keras.ops.conv`, forward and gradient (the
  backend's own kernels);
- `"split"`: one `keras.ops.conv` per group on channel slices, concatenated;
- `"custom_gradient"` (TensorFlow only): one grouped `tf.nn.conv2d` forward
  (fast on the CPU) with a hand-written gradient that avoids TensorFlow's
  slow grouped gradient kernels (`_tf_grouped_conv.py`).

Weights, checkpoints and conversions do not depend on the implementation.

`implementation="auto"` (the default) follows the global setting
(`set_grouped_conv_implementation`), whose own default `"auto"` resolves when
the layer is built to what `auto_implementation()` says for the backend and
device (the one place that rule is written).
"""

from __future__ import annotations

import os

import keras
from keras import ops

from keras_resnets.utils import check_bool, check_choice, check_positive_int, is_int

IMPLEMENTATIONS = ("auto", "native", "split", "custom_gradient")
_ENV_VAR = "KERAS_RESNETS_GROUPED_CONV"
_GLOBAL = {"implementation": "auto"}


def set_grouped_conv_implementation(implementation: str) -> None:
    """Set how `GroupedConv2D` layers built from now on with `"auto"` compute.

    Layers given an explicit implementation keep it.
    The environment variable `KERAS_RESNETS_GROUPED_CONV` sets the initial
    value at import time.

    Args:
        implementation: `"auto"` (`auto_implementation()`), `"native"` (one
            grouped convolution), `"split"` (one convolution per group on
            channel slices, concatenated) or `"custom_gradient"` (TensorFlow
            only: one grouped convolution with a hand-written gradient).

    Example:
        >>> keras_resnets.layers.set_grouped_conv_implementation("native")
        >>> keras_resnets.layers.get_grouped_conv_implementation()
        'native'
        >>> keras_resnets.layers.set_grouped_conv_implementation("auto")
    """
    check_choice("implementation", implementation, IMPLEMENTATIONS)
    _GLOBAL["implementation"] = implementation


def get_grouped_conv_implementation() -> str:
    """Return the global setting (one of `IMPLEMENTATIONS`).

    Returns:
        The value last given to `set_grouped_conv_implementation` (or the
        `KERAS_RESNETS_GROUPED_CONV` environment variable, default `"auto"`).
    """
    return _GLOBAL["implementation"]


def _tensorflow_has_gpu() -> bool:
    import tensorflow as tf  # only reached on the TensorFlow backend

    return bool(tf.config.list_logical_devices("GPU"))


def _jax_on_cpu() -> bool:
    import jax  # only reached on the JAX backend

    return jax.default_backend() == "cpu"


def auto_implementation() -> str:
    """The implementation `"auto"` stands for on this backend and device.

    `"custom_gradient"` on TensorFlow without a GPU, `"split"` on JAX on the
    CPU, `"native"` otherwise (PyTorch, any backend on a GPU).

    Measured side by side (benchmarks/grouped_conv.py,
    benchmarks/resnext_vs_resnet.py, docs/backends.md): on the CPU,
    TensorFlow's and XLA's (JAX's) grouped-convolution gradients are hundreds
    of times slower than the split form; on TensorFlow the custom gradient
    beats split (its forward convolution is 2-3x faster); PyTorch's CPU
    kernel and cuDNN on GPUs are fast natively.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow" and not _tensorflow_has_gpu():
        return "custom_gradient"
    if backend == "jax" and _jax_on_cpu():
        return "split"
    return "native"


def resolve_implementation(implementation: str = "auto") -> str:
    """Resolve `"auto"` (per layer, then global) to a concrete implementation.

    Args:
        implementation: a layer's setting.

    Returns:
        `"native"`, `"split"` or `"custom_gradient"`: the setting itself if
        explicit; else the global setting if explicit; else
        `auto_implementation()`.

    Raises:
        ValueError: an unknown implementation, or `"custom_gradient"` on a
            backend other than TensorFlow.
    """
    check_choice("implementation", implementation, IMPLEMENTATIONS)
    if implementation == "auto":
        implementation = get_grouped_conv_implementation()
    if implementation == "auto":
        return auto_implementation()
    if implementation == "custom_gradient" and keras.backend.backend() != "tensorflow":
        raise ValueError(
            "`implementation`='custom_gradient' is written for the TensorFlow backend; "
            f"this is the {keras.backend.backend()!r} backend. Use 'auto', 'native' or "
            "'split'."
        )
    return implementation


_env_value = os.environ.get(_ENV_VAR)
if _env_value:
    if _env_value not in IMPLEMENTATIONS:
        raise ValueError(
            f"Environment variable {_ENV_VAR}={_env_value!r} is not one of "
            f"{', '.join(repr(i) for i in IMPLEMENTATIONS)}."
        )
    _GLOBAL["implementation"] = _env_value


def _pair(argument: str, value) -> tuple[int, int]:
    if is_int(value):
        value = (value, value)
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(is_int(v) and v >= 1 for v in value)
    ):
        raise ValueError(
            f"`{argument}` must be a positive integer or a pair of them, got {value!r}."
        )
    return tuple(int(v) for v in value)


@keras.saving.register_keras_serializable(package="keras_resnets")
class GroupedConv2D(keras.layers.Layer):
    """2D convolution split into `groups` independent groups of channels.

    Each of the `groups` groups of `in_channels / groups` input channels is
    convolved with its own `filters / groups` filters, and the results are
    concatenated (Krizhevsky et al. 2012; ResNeXt's form C). The single
    kernel variable has the native layout `(kh, kw, in_channels / groups,
    filters)`, as `keras.layers.Conv2D(groups=...)`, whatever the
    implementation, so weights move freely between implementations, devices
    and `keras.layers.Conv2D`.

    Args:
        filters: number of output channels, a multiple of `groups`.
        kernel_size: an int or a pair `(kh, kw)`.
        strides: an int or a pair.
        padding: `"valid"` or `"same"`.
        groups: number of groups; must divide the input channels and
            `filters`.
        use_bias: whether to add a bias (default True, as `Conv2D`).
        implementation: `"auto"` (default), `"native"`, `"split"` or
            `"custom_gradient"` (TensorFlow only); see
            `set_grouped_conv_implementation`. `"auto"` is resolved when the
            layer is built and is what `get_config` saves, so a loaded model
            picks the implementation of the device it is loaded on.
        kernel_initializer, bias_initializer: initializers.
        kernel_regularizer, bias_regularizer: regularizers.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`...).

    Example:
        >>> import numpy as np
        >>> layer = GroupedConv2D(64, 3, padding="same", groups=32)
        >>> layer(np.ones((2, 8, 8, 64), "float32")).shape
        (2, 8, 8, 64)
        >>> tuple(layer.kernel.shape)
        (3, 3, 2, 64)
    """

    def __init__(
        self,
        filters: int,
        kernel_size,
        strides=1,
        padding: str = "valid",
        groups: int = 1,
        use_bias: bool = True,
        implementation: str = "auto",
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        filters = check_positive_int("filters", filters)
        groups = check_positive_int("groups", groups)
        if filters % groups:
            raise ValueError(
                f"`groups`={groups} must divide `filters`={filters} (each group gets "
                "filters / groups output channels)."
            )
        padding = check_choice("padding", padding, ("valid", "same"))
        implementation = check_choice("implementation", implementation, IMPLEMENTATIONS)
        use_bias = check_bool("use_bias", use_bias)
        self.filters = filters
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.strides = _pair("strides", strides)
        self.padding = padding
        self.groups = groups
        self.use_bias = use_bias
        self.implementation = implementation
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.input_spec = keras.layers.InputSpec(ndim=4)
        self.resolved_implementation: str | None = None

    def build(self, input_shape):
        in_channels = input_shape[-1]
        if in_channels is None:
            raise ValueError("GroupedConv2D needs a known number of input channels.")
        if in_channels % self.groups:
            raise ValueError(
                f"`groups`={self.groups} must divide the input channels ({in_channels}) of "
                f"layer {self.name!r}."
            )
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: in_channels})
        self.kernel = self.add_weight(
            name="kernel",
            shape=(*self.kernel_size, in_channels // self.groups, self.filters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.filters,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
            )
        # With one group both implementations are the same single convolution.
        self.resolved_implementation = (
            "native" if self.groups == 1 else resolve_implementation(self.implementation)
        )

    def _conv(self, x, kernel):
        return ops.conv(x, kernel, strides=self.strides, padding=self.padding)

    def call(self, inputs):
        kernel = ops.cast(self.kernel, inputs.dtype)
        if self.resolved_implementation == "native":
            outputs = self._conv(inputs, kernel)
        elif self.resolved_implementation == "custom_gradient":
            from keras_resnets.layers._tf_grouped_conv import grouped_conv2d

            outputs = grouped_conv2d(inputs, kernel, self.strides, self.padding, self.groups)
        else:
            # `split` (not strided slices): its gradient is one concatenation,
            # where slices would each scatter into a full-size zero tensor.
            xs = ops.split(inputs, self.groups, axis=-1)
            ks = ops.split(kernel, self.groups, axis=-1)
            outputs = ops.concatenate(
                [self._conv(x, k) for x, k in zip(xs, ks, strict=True)], axis=-1
            )
        if self.bias is not None:
            outputs = outputs + ops.cast(self.bias, outputs.dtype)
        return outputs

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape

        def out(size, k, s):
            if size is None:
                return None
            if self.padding == "same":
                return -(-size // s)
            return (size - k) // s + 1

        return (
            batch,
            out(height, self.kernel_size[0], self.strides[0]),
            out(width, self.kernel_size[1], self.strides[1]),
            self.filters,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "groups": self.groups,
                "use_bias": self.use_bias,
                "implementation": self.implementation,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            }
        )
        return config
