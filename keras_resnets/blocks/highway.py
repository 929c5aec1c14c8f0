"""The highway layer of Srivastava et al. (2015) as a unit over Keras tensors."""

from __future__ import annotations

import keras

from keras_resnets.blocks.conv_bn import batch_norm, conv, relu
from keras_resnets.blocks.shortcuts import shortcut_path, shortcut_type
from keras_resnets.layers import Highway


def highway_layer(x, filters: int, *, strides: int, name: str, shortcut: str = "zero_pad", **gate):
    """One highway layer: `y = H(x) T + x (1 - T)`.

    H is one 3x3 convolution + BN + ReLU (`{name}_conv1`, `_bn1`, `_relu1`);
    the carried input is the unit's shortcut (identity, or option A / B where
    the shape changes); the gates are convolutions of the carried input inside
    the `Highway` layer `{name}_gate`.

    Args:
        x: input tensor (NHWC).
        filters: output channels.
        strides: stride of H and of the shortcut.
        name: layer name prefix.
        shortcut: how the carry changes shape: `"zero_pad"` (option A,
            default) or `"projection"` (B).
        **gate: the `Highway` layer's options: `coupled` (True: carry gate
            `1 - T`), `transform_bias`, `carry_bias`, `kernel_size` (of the
            gate convolutions).

    Returns:
        The layer's output tensor, produced by `{name}_out`.
    """
    short_type = shortcut_type(shortcut, x.shape[-1], filters, strides)
    h = conv(x, filters, 3, strides=strides, name=f"{name}_conv1")
    h = batch_norm(h, name=f"{name}_bn1")
    h = relu(h, name=f"{name}_relu1")
    carry = shortcut_path(x, filters, strides=strides, name=name, shortcut_type=short_type)
    y = Highway(name=f"{name}_gate", **gate)([h, carry])
    return keras.layers.Identity(name=f"{name}_out")(y)
