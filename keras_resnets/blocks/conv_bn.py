"""Convolution, BatchNormalization and ReLU with the package's conventions.

Every layer is named by the caller; strided convolutions pad explicitly
(`{name}_pad`, then `padding="valid"`) as torchvision does, so converted
PyTorch weights give identical outputs.
"""

from __future__ import annotations

import keras

from keras_resnets.layers import GroupedConv2D

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # PyTorch's momentum=0.1


def kernel_initializer():
    """He-normal initialisation on fan-out, as torchvision's ResNets."""
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal"
    )


def conv(
    x,
    filters: int,
    kernel_size: int,
    *,
    strides: int = 1,
    name: str,
    groups: int = 1,
    implementation: str = "auto",
):
    """A square convolution without bias, with torchvision's padding (kernel_size // 2).

    Stride-1 convolutions use `padding="same"`; strided ones pad explicitly
    with a `ZeroPadding2D` named `{name}_pad` and use `padding="valid"`.

    Args:
        x: input tensor (NHWC).
        filters: output channels.
        kernel_size: side of the square kernel.
        strides: the stride (default 1).
        name: the convolution's layer name.
        groups: with `groups > 1` the layer is a `GroupedConv2D` (same name,
            same kernel layout as `Conv2D(groups=...)`).
        implementation: how a `GroupedConv2D` computes (its
            `implementation`; `"auto"` is resolved by that layer).

    Returns:
        The convolution's output tensor.
    """
    pad = kernel_size // 2
    if strides > 1 and pad:
        x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same" if pad else "valid"
    options = dict(
        strides=strides,
        padding=padding,
        use_bias=False,
        kernel_initializer=kernel_initializer(),
        name=name,
    )
    if groups > 1:
        return GroupedConv2D(
            filters, kernel_size, groups=groups, implementation=implementation, **options
        )(x)
    return keras.layers.Conv2D(filters, kernel_size, **options)(x)


def batch_norm(x, *, name: str, zero_gamma: bool = False):
    """BatchNormalization with PyTorch's epsilon (1e-5) and momentum (0.1, Keras's 0.9).

    `zero_gamma=True` initialises gamma to 0 (the last BN of a residual
    branch under `zero_init_residual`).
    """
    return keras.layers.BatchNormalization(
        epsilon=BN_EPSILON,
        momentum=BN_MOMENTUM,
        gamma_initializer="zeros" if zero_gamma else "ones",
        name=name,
    )(x)


def relu(x, *, name: str):
    """A named ReLU activation layer."""
    return keras.layers.Activation("relu", name=name)(x)
