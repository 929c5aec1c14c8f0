"""Network stems: the first layers, before the stages.

Layers are named `stem_conv`, `stem_bn`, `stem_relu` (and `stem_pad`,
`stem_pool_pad`, `stem_pool` on ImageNet). The deep stems of the bag of
tricks (He et al. 2019) have three convolutions, `stem_conv1`...`stem_conv3`
with `stem_bn1`...`stem_bn3` and `stem_relu1`...`stem_relu3`; ResNet-RS
replaces the max pool by a strided convolution (`stem_pool_conv`,
`stem_pool_bn`, `stem_pool_relu`).
"""

from __future__ import annotations

import keras

from keras_resnets.blocks.conv_bn import batch_norm, conv, kernel_initializer, relu

STEMS = ("imagenet", "deep", "deep_tiered", "cifar")
STEM_POOLS = ("max", "conv")


def stem_widths(stem: str, width: int) -> tuple[int, ...]:
    """Channels of each convolution of an ImageNet-style `stem` of base `width`.

    `"imagenet"`: `(width,)`; `"deep"` (ResNet-C): `(width, width, 2 * width)`;
    `"deep_tiered"` (timm's "t"): `(3 * (width // 4), width, 2 * width)`.
    """
    if stem == "deep":
        return (width, width, 2 * width)
    if stem == "deep_tiered":
        return (3 * (width // 4), width, 2 * width)
    return (width,)


def stem_pool(x, pool: str = "max"):
    """The stem's stride-2 reduction: 3x3/2 max pool, or (`"conv"`) 3x3/2 conv + BN + ReLU.

    The convolution (ResNet-RS, Bello et al. 2021; timm's
    `replace_stem_pool`) keeps the channels.
    """
    if pool == "conv":
        x = conv(x, x.shape[-1], 3, strides=2, name="stem_pool_conv")
        x = batch_norm(x, name="stem_pool_bn")
        return relu(x, name="stem_pool_relu")
    # Zero padding before max pooling is exact here: the input is >= 0 after ReLU.
    x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)


def deep_stem(x, widths: tuple[int, int, int], *, pool: str = "max"):
    """Three 3x3 convolutions (the first of stride 2), each with BN and ReLU, then `stem_pool`.

    The bag of tricks' ResNet-C stem (He et al. 2019), `stem_widths("deep",
    32)` = 32-32-64 as timm's `stem_type="deep"`; output stride 4.

    Args:
        x: input tensor (NHWC).
        widths: channels of the three convolutions.
        pool: `"max"` or `"conv"` (see `stem_pool`).

    Returns:
        The stem's output, `widths[-1]` channels at 1/4 of the resolution.
    """
    for index, width in enumerate(widths, start=1):
        x = conv(x, width, 3, strides=2 if index == 1 else 1, name=f"stem_conv{index}")
        x = batch_norm(x, name=f"stem_bn{index}")
        x = relu(x, name=f"stem_relu{index}")
    return stem_pool(x, pool)


def imagenet_stem(x, filters: int = 64, *, pool: str = "max"):
    """7x7/2 convolution, BN, ReLU, 3x3/2 max pool (output stride 4; He et al. 2015).

    Pre-activation networks use it too (fb.resnet.torch's `preresnet`): the
    first unit then skips its pre-activation.

    Args:
        x: input tensor (NHWC).
        filters: channels of the convolution (default 64).
        pool: `"max"` (default) or `"conv"` (see `stem_pool`).

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
    return stem_pool(x, pool)


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
