"""Residual units as plain functions over Keras tensors.

Every function takes a tensor and a `name` prefix and returns a tensor; the
layers it creates are named `{name}_conv1`, `{name}_bn1`, `{name}_relu1`,
..., `{name}_shortcut`, `{name}_add`, `{name}_out`, so weights convert by
name and features can be taken by name.

Strided convolutions pad explicitly (`{name}_padN` then `padding="valid"`),
as torchvision does, so converted PyTorch weights give identical outputs.
"""

from __future__ import annotations

from collections.abc import Callable

import keras

from keras_resnets.layers import StochasticDepth, ZeroPadShortcut

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # PyTorch's momentum=0.1

SHORTCUTS = ("zero_pad", "projection", "all_projection")


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
    use_bias: bool = False,
):
    """A square convolution with torchvision's padding (kernel_size // 2).

    Stride-1 convolutions use `padding="same"`; strided ones pad explicitly
    with a `ZeroPadding2D` named `{name}_pad` and use `padding="valid"`.
    """
    pad = kernel_size // 2
    if strides > 1 and pad:
        x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same" if pad else "valid"
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        groups=groups,
        use_bias=use_bias,
        kernel_initializer=kernel_initializer(),
        name=name,
    )(x)


def batch_norm(x, *, name: str, epsilon: float = BN_EPSILON, gamma_zero: bool = False):
    """BatchNormalization with PyTorch's epsilon and momentum."""
    return keras.layers.BatchNormalization(
        epsilon=epsilon,
        momentum=BN_MOMENTUM,
        gamma_initializer="zeros" if gamma_zero else "ones",
        name=name,
    )(x)


def relu(x, *, name: str):
    """A named ReLU activation layer."""
    return keras.layers.Activation("relu", name=name)(x)


def shortcut_kind(option: str, in_channels: int, out_channels: int, strides: int) -> str:
    """Which shortcut a block gets under the paper's option A/B/C.

    Returns `"identity"`, `"zero_pad"` or `"projection"`.
    """
    if option == "all_projection":
        return "projection"
    if strides == 1 and in_channels == out_channels:
        return "identity"
    if option == "zero_pad" and out_channels >= in_channels:
        return "zero_pad"
    return "projection"


def shortcut(x, filters: int, *, strides: int, kind: str, name: str, epsilon: float = BN_EPSILON):
    """The shortcut path: identity, option A zero padding, or 1x1 conv + BN."""
    if kind == "identity":
        return x
    if kind == "zero_pad":
        return ZeroPadShortcut(filters, strides, name=f"{name}_shortcut")(x)
    x = conv(x, filters, 1, strides=strides, name=f"{name}_shortcut")
    return batch_norm(x, name=f"{name}_shortcut_bn", epsilon=epsilon)


def merge(branch, short, *, name: str, residual: bool = True):
    """Add the branch to the shortcut (if `residual`) and apply the final ReLU."""
    x = keras.layers.Add(name=f"{name}_add")([short, branch]) if residual else branch
    return relu(x, name=f"{name}_out")


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


def basic_block(
    x,
    filters: int,
    *,
    strides: int,
    name: str,
    shortcut_option: str = "projection",
    residual: bool = True,
    epsilon: float = BN_EPSILON,
    stochastic_depth: dict | None = None,
):
    """Two 3x3 convolutions (He et al. 2015, Figure 2 left).

    Args:
        x: input tensor (NHWC).
        filters: output channels.
        strides: stride of the first convolution (and the shortcut).
        name: layer name prefix, e.g. `"stage2_block1"`.
        shortcut_option: `"zero_pad"` (A), `"projection"` (B) or
            `"all_projection"` (C).
        residual: False builds the plain baseline unit (no shortcut).
        epsilon: BatchNormalization epsilon.
        stochastic_depth: None, or the `StochasticDepth` arguments that
            gate this block (see `residual_add`).

    Returns:
        The block's output tensor.
    """
    in_channels = x.shape[-1]

    def branch_fn(t):
        t = conv(t, filters, 3, strides=strides, name=f"{name}_conv1")
        t = batch_norm(t, name=f"{name}_bn1", epsilon=epsilon)
        t = relu(t, name=f"{name}_relu1")
        t = conv(t, filters, 3, name=f"{name}_conv2")
        return batch_norm(t, name=f"{name}_bn2", epsilon=epsilon)

    if not residual:
        return relu(branch_fn(x), name=f"{name}_out")
    kind = shortcut_kind(shortcut_option, in_channels, filters, strides)

    def shortcut_fn(t):
        return shortcut(t, filters, strides=strides, kind=kind, name=name, epsilon=epsilon)

    x = residual_add(x, branch_fn, shortcut_fn, name=name, stochastic_depth=stochastic_depth)
    return relu(x, name=f"{name}_out")


def bottleneck_block(
    x,
    filters: int,
    *,
    strides: int,
    name: str,
    shortcut_option: str = "projection",
    residual: bool = True,
    expansion: int = 4,
    width: int | None = None,
    groups: int = 1,
    stride_in_1x1: bool = False,
    epsilon: float = BN_EPSILON,
    stochastic_depth: dict | None = None,
):
    """1x1 reduce, 3x3, 1x1 expand (He et al. 2015, Figure 5 right).

    The stride sits on the 3x3 convolution as in torchvision ("v1.5"), or
    on the first 1x1 with `stride_in_1x1=True` (the original Caffe model).

    Args:
        x: input tensor (NHWC).
        filters: the block's base width; the output has `filters * expansion`
            channels.
        strides: the block's stride.
        name: layer name prefix.
        shortcut_option: `"zero_pad"`, `"projection"` or `"all_projection"`.
        residual: False builds the plain unit.
        expansion: output channels per base channel (4).
        width: channels of the inner 3x3 (defaults to `filters`); ResNeXt and
            Wide ResNet set it.
        groups: groups of the 3x3 convolution (ResNeXt's cardinality).
        stride_in_1x1: put the stride on the first 1x1 convolution.
        epsilon: BatchNormalization epsilon.
        stochastic_depth: None, or the `StochasticDepth` arguments that
            gate this block (see `residual_add`).

    Returns:
        The block's output tensor.
    """
    in_channels = x.shape[-1]
    out_channels = filters * expansion
    width = filters if width is None else width
    s1, s3 = (strides, 1) if stride_in_1x1 else (1, strides)

    def branch_fn(t):
        t = conv(t, width, 1, strides=s1, name=f"{name}_conv1")
        t = batch_norm(t, name=f"{name}_bn1", epsilon=epsilon)
        t = relu(t, name=f"{name}_relu1")
        t = conv(t, width, 3, strides=s3, groups=groups, name=f"{name}_conv2")
        t = batch_norm(t, name=f"{name}_bn2", epsilon=epsilon)
        t = relu(t, name=f"{name}_relu2")
        t = conv(t, out_channels, 1, name=f"{name}_conv3")
        return batch_norm(t, name=f"{name}_bn3", epsilon=epsilon)

    if not residual:
        return relu(branch_fn(x), name=f"{name}_out")
    kind = shortcut_kind(shortcut_option, in_channels, out_channels, strides)

    def shortcut_fn(t):
        return shortcut(t, out_channels, strides=strides, kind=kind, name=name, epsilon=epsilon)

    x = residual_add(x, branch_fn, shortcut_fn, name=name, stochastic_depth=stochastic_depth)
    return relu(x, name=f"{name}_out")


def imagenet_stem(x, filters: int = 64, *, epsilon: float = BN_EPSILON, preact: bool = False):
    """7x7/2 convolution, BN, ReLU, 3x3/2 max pool (output stride 4).

    With `preact=True` (pre-activation networks) the BN-ReLU is left to the
    first unit, as in He et al. (2016), and only conv + pool remain.
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
    if not preact:
        x = batch_norm(x, name="stem_bn", epsilon=epsilon)
        x = relu(x, name="stem_relu")
    # Zero padding before max pooling is exact here: the input is >= 0 after
    # ReLU. (Pre-activation stems pool raw conv outputs; see the v2 family.)
    x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)


def cifar_stem(x, filters: int = 16, *, epsilon: float = BN_EPSILON, preact: bool = False):
    """3x3 convolution, BN, ReLU (He et al. 2015, CIFAR networks).

    With `preact=True` only the convolution remains.
    """
    x = conv(x, filters, 3, name="stem_conv")
    if not preact:
        x = batch_norm(x, name="stem_bn", epsilon=epsilon)
        x = relu(x, name="stem_relu")
    return x
