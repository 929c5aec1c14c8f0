"""Residual units as plain functions over Keras tensors.

Every function takes a tensor and a `name` prefix and returns a tensor; the
layers it creates are named `{name}_conv1`, `{name}_bn1`, `{name}_relu1`,
..., `{name}_shortcut`, `{name}_add`, `{name}_out`, so weights convert by
name and features can be taken by name.

Strided convolutions pad explicitly (`{name}_padN` then `padding="valid"`),
as torchvision does, so converted PyTorch weights give identical outputs.
"""

from __future__ import annotations

import keras

from keras_resnets.layers import GroupedConv2D, ZeroPadShortcut
from keras_resnets.utils import check_choice

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # PyTorch's momentum=0.1

SHORTCUTS = ("zero_pad", "projection", "all_projection")
# ResNeXt's three equivalent forms of the aggregated bottleneck (Xie et al.
# 2017, Figure 3): "a" C paths summed, "b" C paths concatenated before the
# last 1x1 convolution, "c" one grouped convolution.
FORMS = ("a", "b", "c")


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
    implementation: str = "auto",
):
    """A square convolution with torchvision's padding (kernel_size // 2).

    Stride-1 convolutions use `padding="same"`; strided ones pad explicitly
    with a `ZeroPadding2D` named `{name}_pad` and use `padding="valid"`.
    With `groups > 1` the layer is a `GroupedConv2D` (same name, same kernel
    layout as `Conv2D(groups=...)`) computed as `implementation` says.
    """
    pad = kernel_size // 2
    if strides > 1 and pad:
        x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same" if pad else "valid"
    if groups > 1:
        return GroupedConv2D(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            groups=groups,
            use_bias=use_bias,
            implementation=implementation,
            kernel_initializer=kernel_initializer(),
            name=name,
        )(x)
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
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


def basic_block(
    x,
    filters: int,
    *,
    strides: int,
    name: str,
    shortcut_option: str = "projection",
    residual: bool = True,
    epsilon: float = BN_EPSILON,
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

    Returns:
        The block's output tensor.
    """
    in_channels = x.shape[-1]
    branch = conv(x, filters, 3, strides=strides, name=f"{name}_conv1")
    branch = batch_norm(branch, name=f"{name}_bn1", epsilon=epsilon)
    branch = relu(branch, name=f"{name}_relu1")
    branch = conv(branch, filters, 3, name=f"{name}_conv2")
    branch = batch_norm(branch, name=f"{name}_bn2", epsilon=epsilon)
    short = None
    if residual:
        kind = shortcut_kind(shortcut_option, in_channels, filters, strides)
        short = shortcut(x, filters, strides=strides, kind=kind, name=name, epsilon=epsilon)
    return merge(branch, short, name=name, residual=residual)


def bottleneck_branch(
    x,
    filters: int,
    *,
    strides: int,
    name: str,
    expansion: int = 4,
    width: int | None = None,
    groups: int = 1,
    stride_in_1x1: bool = False,
    epsilon: float = BN_EPSILON,
    form: str = "c",
    implementation: str = "auto",
):
    """The residual branch of a bottleneck: 1x1 reduce, 3x3, 1x1 expand, BN.

    With `groups > 1` (ResNeXt, Xie et al. 2017, Figure 3) the branch
    aggregates `groups` paths of `width / groups` channels in one of three
    equivalent forms, which compute the same function of the same weights
    (`keras_resnets.models.resnext.convert_form` copies weights between them):

    - `"c"` (default): one grouped 3x3 convolution (`GroupedConv2D`). Layers
      `{name}_conv1`, `_bn1`, `_relu1`, `_conv2`, `_bn2`, `_relu2`, `_conv3`,
      `_bn3`, exactly as a ResNet bottleneck.
    - `"b"`: `groups` paths `{name}_path{p}_conv1`/`_bn1`/`_relu1`/`_conv2`/
      `_bn2`/`_relu2`, concatenated (`{name}_concat`), then `{name}_conv3`,
      `{name}_bn3`.
    - `"a"`: each path also has its own `{name}_path{p}_conv3`
      (`width / groups` -> output channels); the paths are summed
      (`{name}_sum`) and normalised by `{name}_bn3`.

    With `groups == 1` every form is the plain bottleneck (form "c" names).

    Args:
        x: input tensor (NHWC).
        filters: base width; the output has `filters * expansion` channels.
        strides: stride of the 3x3 convolution (or of the first 1x1 with
            `stride_in_1x1`).
        name: layer name prefix.
        expansion: output channels per base channel.
        width: channels of the inner 3x3 (default `filters`).
        groups: cardinality (groups of the 3x3 convolution).
        stride_in_1x1: put the stride on the first 1x1 convolution.
        epsilon: BatchNormalization epsilon.
        form: `"a"`, `"b"` or `"c"`.
        implementation: `GroupedConv2D` implementation for form "c".

    Returns:
        The branch output (before the addition), `filters * expansion` channels.
    """
    check_choice("form", form, FORMS)
    out_channels = filters * expansion
    width = filters if width is None else width
    if groups > 1 and width % groups:
        raise ValueError(
            f"`groups`={groups} must divide the bottleneck width {width} of block {name!r}."
        )
    s1, s3 = (strides, 1) if stride_in_1x1 else (1, strides)
    if groups == 1 or form == "c":
        branch = conv(x, width, 1, strides=s1, name=f"{name}_conv1")
        branch = batch_norm(branch, name=f"{name}_bn1", epsilon=epsilon)
        branch = relu(branch, name=f"{name}_relu1")
        branch = conv(
            branch,
            width,
            3,
            strides=s3,
            groups=groups,
            implementation=implementation,
            name=f"{name}_conv2",
        )
        branch = batch_norm(branch, name=f"{name}_bn2", epsilon=epsilon)
        branch = relu(branch, name=f"{name}_relu2")
        branch = conv(branch, out_channels, 1, name=f"{name}_conv3")
        return batch_norm(branch, name=f"{name}_bn3", epsilon=epsilon)
    path_width = width // groups
    paths = []
    for index in range(1, groups + 1):
        prefix = f"{name}_path{index}"
        path = conv(x, path_width, 1, strides=s1, name=f"{prefix}_conv1")
        path = batch_norm(path, name=f"{prefix}_bn1", epsilon=epsilon)
        path = relu(path, name=f"{prefix}_relu1")
        path = conv(path, path_width, 3, strides=s3, name=f"{prefix}_conv2")
        path = batch_norm(path, name=f"{prefix}_bn2", epsilon=epsilon)
        path = relu(path, name=f"{prefix}_relu2")
        if form == "a":
            path = conv(path, out_channels, 1, name=f"{prefix}_conv3")
        paths.append(path)
    if form == "a":
        branch = keras.layers.Add(name=f"{name}_sum")(paths)
    else:
        branch = keras.layers.Concatenate(name=f"{name}_concat")(paths)
        branch = conv(branch, out_channels, 1, name=f"{name}_conv3")
    return batch_norm(branch, name=f"{name}_bn3", epsilon=epsilon)


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
    form: str = "c",
    implementation: str = "auto",
):
    """1x1 reduce, 3x3, 1x1 expand (He et al. 2015, Figure 5 right).

    The stride sits on the 3x3 convolution as in torchvision ("v1.5"), or
    on the first 1x1 with `stride_in_1x1=True` (the original Caffe model).
    The block is `merge(bottleneck_branch(x), shortcut(x))`.

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
        form: ResNeXt form `"a"`, `"b"` or `"c"` (see `bottleneck_branch`).
        implementation: `GroupedConv2D` implementation (`"auto"`,
            `"native"`, `"split"`).

    Returns:
        The block's output tensor.
    """
    in_channels = x.shape[-1]
    out_channels = filters * expansion
    branch = bottleneck_branch(
        x,
        filters,
        strides=strides,
        name=name,
        expansion=expansion,
        width=width,
        groups=groups,
        stride_in_1x1=stride_in_1x1,
        epsilon=epsilon,
        form=form,
        implementation=implementation,
    )
    short = None
    if residual:
        kind = shortcut_kind(shortcut_option, in_channels, out_channels, strides)
        short = shortcut(x, out_channels, strides=strides, kind=kind, name=name, epsilon=epsilon)
    return merge(branch, short, name=name, residual=residual)


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
