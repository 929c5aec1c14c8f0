"""Network stems: the first layers, before the stages.

Layers are named `stem_conv`, `stem_bn`, `stem_relu` (and `stem_pad`,
`stem_pool_pad`, `stem_pool` on ImageNet).
"""

from __future__ import annotations

import keras

from keras_resnets.blocks.conv_bn import batch_norm, conv, kernel_initializer, relu


def imagenet_stem(x, filters: int = 64):
    """7x7/2 convolution, BN, ReLU, 3x3/2 max pool (output stride 4; He et al. 2015).

    Pre-activation networks use it too (fb.resnet.torch's `preresnet`): the
    first unit then skips its pre-activation.

    Args:
        x: input tensor (NHWC).
        filters: channels of the convolution (default 64).

    Returns:
        The stem's output, `filters` channels at 1/4 of the resolution.
    """
    x = keras.layers.ZeroPadding2D(3, name="stem_pad")(x)
    x = keras.layers.Conv2D(
        filters,
        7,
        strides=2,
        use_bias=False,
        kernel_initializer=kernel_initializer(),
        name="stem_conv",
    )(x)
    x = batch_norm(x, name="stem_bn")
    x = relu(x, name="stem_relu")
    # Zero padding before max pooling is exact here: the input is >= 0 after ReLU.
    x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)


def cifar_stem(x, filters: int = 16, *, activate: bool = True):
    """3x3 convolution, BN, ReLU (He et al. 2015, CIFAR networks).

    Args:
        x: input tensor (NHWC).
        filters: channels of the convolution (default 16).
        activate: False keeps the convolution alone (`stem_conv`): the first
            pre-activation unit (or dense layer) activates it.

    Returns:
        The stem's output, `filters` channels at full resolution.
    """
    x = conv(x, filters, 3, name="stem_conv")
    if activate:
        x = batch_norm(x, name="stem_bn")
        x = relu(x, name="stem_relu")
    return x
