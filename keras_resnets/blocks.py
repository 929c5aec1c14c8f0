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

from keras_resnets.layers import GroupedConv2D, Highway, StochasticDepth, ZeroPadShortcut
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


def shortcut(
    x,
    filters: int,
    *,
    strides: int,
    kind: str,
    name: str,
    epsilon: float = BN_EPSILON,
    normalize: bool = True,
):
    """The shortcut path: identity, option A zero padding, or 1x1 conv + BN.

    `normalize=False` leaves the BN out of the projection (pre-activation
    units: the projection reads the activated input and the next unit
    normalises the sum).
    """
    if kind == "identity":
        return x
    if kind == "zero_pad":
        return ZeroPadShortcut(filters, strides, name=f"{name}_shortcut")(x)
    x = conv(x, filters, 1, strides=strides, name=f"{name}_shortcut")
    if not normalize:
        return x
    return batch_norm(x, name=f"{name}_shortcut_bn", epsilon=epsilon)


def merge(branch, short, *, name: str, residual: bool = True):
    """Add the branch to the shortcut (if `residual`) and apply the final ReLU."""
    x = keras.layers.Add(name=f"{name}_add")([short, branch]) if residual else branch
    return relu(x, name=f"{name}_out")


# ---- residual units: branch computation + shortcut + merge ---------------------

UNITS = (
    "original",
    "bn_after_addition",
    "relu_before_addition",
    "relu_only_preactivation",
    "full_preactivation",
)
PREACT_UNITS = ("relu_only_preactivation", "full_preactivation")
SHORTCUT_VARIANTS = (
    "identity",
    "constant_scaling",
    "exclusive_gating",
    "shortcut_only_gating",
    "conv_shortcut",
    "dropout_shortcut",
)
# Shortcut variants whose merge is a plain addition: the ones stochastic
# depth can gate (a dropped block passes the shortcut alone).
ADDITIVE_VARIANTS = ("identity", "conv_shortcut", "dropout_shortcut")
GATE_BIAS = -6.0
SHORTCUT_DROPOUT = 0.5


def _conv_plan(block, filters, *, strides, expansion, width, groups, stride_in_1x1):
    """(filters, kernel, strides, groups) of each convolution of a unit's branch."""
    if block == "basic":
        return [(filters, 3, strides, 1), (filters, 3, 1, 1)]
    width = filters if width is None else width
    s1, s3 = (strides, 1) if stride_in_1x1 else (1, strides)
    return [(width, 1, s1, 1), (width, 3, s3, groups), (filters * expansion, 1, 1, 1)]


def preactivation(
    x, *, unit: str, name: str, index: int | None = None, epsilon: float = BN_EPSILON
):
    """The activation a pre-activation unit puts before its convolution `index`.

    `"full_preactivation"`: BN then ReLU (`{name}_bn{index}`,
    `{name}_relu{index}`); `"relu_only_preactivation"`: ReLU only. With
    `index=None` the layers are `{name}_bn`, `{name}_relu` (the networks'
    final `post_bn`, `post_relu`).
    """
    suffix = "" if index is None else str(index)
    if unit == "full_preactivation":
        x = batch_norm(x, name=f"{name}_bn{suffix}", epsilon=epsilon)
    return relu(x, name=f"{name}_relu{suffix}")


def unit_branch(
    filters: int,
    *,
    strides: int,
    name: str,
    block: str = "basic",
    unit: str = "original",
    preactivate_input: bool = True,
    expansion: int = 4,
    width: int | None = None,
    groups: int = 1,
    stride_in_1x1: bool = False,
    epsilon: float = BN_EPSILON,
    form: str = "c",
    implementation: str = "auto",
):
    """Return `branch(x)`, the residual function F of one unit, as one callable.

    The branch holds every layer of F (and nothing of the shortcut or the
    merge), so it can be wrapped as a whole, e.g. by stochastic depth.

    Args:
        filters: output channels (basic) or base width (bottleneck).
        strides: the unit's stride.
        name: layer name prefix.
        block: `"basic"` (two 3x3) or `"bottleneck"` (1x1, 3x3, 1x1).
        unit: one of `UNITS` (He et al. 2016, Figure 4).
        preactivate_input: for pre-activation units, whether the branch
            starts with the pre-activation (False when it is shared with the
            shortcut and applied before the split, or the input is already
            activated).
        expansion, width, groups, stride_in_1x1: bottleneck options, as in
            `bottleneck_block`.
        epsilon: BatchNormalization epsilon.
        form: ResNeXt form of a grouped bottleneck (`groups > 1`): `"c"`
            (one grouped convolution), `"a"` or `"b"` (separate paths; see
            `bottleneck_branch`; `"original"` units only).
        implementation: `GroupedConv2D` implementation of grouped
            convolutions (one of `GroupedConv2D`'s `IMPLEMENTATIONS`).

    Returns:
        A function mapping the unit's input tensor to the branch output.
    """
    check_choice("form", form, FORMS)
    width = filters if width is None else width
    if block == "bottleneck" and groups > 1 and width % groups:
        raise ValueError(
            f"`groups`={groups} must divide the bottleneck width {width} of block {name!r}."
        )
    separate_paths = block == "bottleneck" and groups > 1 and form != "c"
    if separate_paths and unit != "original":
        raise ValueError(
            f"`form`={form!r} (separate paths) is built for `unit='original'` only, got "
            f"`unit`={unit!r}; use form 'c'."
        )
    plan = _conv_plan(
        block,
        filters,
        strides=strides,
        expansion=expansion,
        width=width,
        groups=groups,
        stride_in_1x1=stride_in_1x1,
    )
    last = len(plan)

    def branch(x):
        if separate_paths:
            return _path_branch(
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
            )
        for index, (channels, kernel, stride, conv_groups) in enumerate(plan, start=1):
            if unit in PREACT_UNITS and (index > 1 or preactivate_input):
                x = preactivation(x, unit=unit, name=name, index=index, epsilon=epsilon)
            x = conv(
                x,
                channels,
                kernel,
                strides=stride,
                groups=conv_groups,
                implementation=implementation,
                name=f"{name}_conv{index}",
            )
            if unit == "full_preactivation":
                continue
            if unit == "bn_after_addition" and index == last:
                continue  # its BN follows the addition
            x = batch_norm(x, name=f"{name}_bn{index}", epsilon=epsilon)
            if unit in ("original", "bn_after_addition") and index < last:
                x = relu(x, name=f"{name}_relu{index}")
            elif unit == "relu_before_addition":
                x = relu(x, name=f"{name}_relu{index}")
        return x

    return branch


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
    """The branch of an original (post-activation) bottleneck, in any ResNeXt form.

    With `groups > 1` (ResNeXt, Xie et al. 2017, Figure 3) the branch
    aggregates `groups` paths of `width / groups` channels in one of three
    equivalent forms, which compute the same function of the same weights
    (`keras_resnets.copy_form_weights` copies weights between them):

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
        strides: the block's stride.
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
    return unit_branch(
        filters,
        strides=strides,
        name=name,
        block="bottleneck",
        expansion=expansion,
        width=width,
        groups=groups,
        stride_in_1x1=stride_in_1x1,
        epsilon=epsilon,
        form=form,
        implementation=implementation,
    )(x)


def _path_branch(
    x, filters, *, strides, name, expansion, width, groups, stride_in_1x1, epsilon, form
):
    """Forms "a" and "b" of a ResNeXt bottleneck branch (see `bottleneck_branch`)."""
    out_channels = filters * expansion
    s1, s3 = (strides, 1) if stride_in_1x1 else (1, strides)
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


def _variant_shortcut(x, out_channels, *, kind, strides, variant, name, epsilon, normalize):
    if variant == "conv_shortcut":
        # He et al. 2016, Figure 2(e): a 1x1 convolution on every shortcut,
        # linear, so initialised to preserve variance (Glorot), no BN.
        return keras.layers.Conv2D(
            out_channels,
            1,
            strides=strides,
            use_bias=False,
            kernel_initializer="glorot_uniform",
            name=f"{name}_shortcut",
        )(x)
    short = shortcut(
        x,
        out_channels,
        strides=strides,
        kind=kind,
        name=name,
        epsilon=epsilon,
        normalize=normalize,
    )
    if variant == "dropout_shortcut":
        # Keras's dropout rescales by 1/(1 - p) in training; the paper's
        # dropout shortcut is "statistically a scale of 0.5": mask in training,
        # 0.5 at inference. Rescaling by 0.5 after inverted dropout gives that.
        short = keras.layers.Dropout(SHORTCUT_DROPOUT, name=f"{name}_shortcut_dropout")(short)
        short = keras.layers.Rescaling(1.0 - SHORTCUT_DROPOUT, name=f"{name}_shortcut_scale")(short)
    return short


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


def _combine(branch, short, *, variant, gate_bias, name):
    if variant == "constant_scaling":
        return keras.layers.Average(name=f"{name}_add")([short, branch])
    if variant == "exclusive_gating":
        return Highway(coupled=True, transform_bias=gate_bias, name=f"{name}_gate")([branch, short])
    if variant == "shortcut_only_gating":
        # y = F + (1 - g) x with g = sigmoid(conv + b_g): the carry gate
        # C = 1 - g is a sigmoid with bias -b_g.
        return Highway(
            coupled=False, transform_gate=False, carry_bias=-gate_bias, name=f"{name}_gate"
        )([branch, short])
    return keras.layers.Add(name=f"{name}_add")([short, branch])


def residual_unit(
    x,
    filters: int,
    *,
    strides: int,
    name: str,
    block: str = "basic",
    unit: str = "original",
    shortcut_option: str = "projection",
    shortcut_variant: str = "identity",
    gate_bias: float = GATE_BIAS,
    residual: bool = True,
    preactivate: bool = True,
    expansion: int = 4,
    width: int | None = None,
    groups: int = 1,
    stride_in_1x1: bool = False,
    epsilon: float = BN_EPSILON,
    wrap_branch=None,
    stochastic_depth: dict | None = None,
    form: str = "c",
    implementation: str = "auto",
):
    """One residual unit: branch F, shortcut h, merge, post-merge activation.

    The five units of He et al. (2016, Figure 4), for basic and bottleneck
    blocks:

    - `"original"`: `relu(h(x) + BN(conv(...)))` (He et al. 2015);
    - `"bn_after_addition"`: `relu(BN(h(x) + conv(...)))`;
    - `"relu_before_addition"`: `h(x) + relu(BN(conv(...)))`;
    - `"relu_only_preactivation"`: `h(x) + BN(conv(relu(...)))`;
    - `"full_preactivation"`: `h(x) + conv(relu(BN(...)))`.

    Pre-activation units whose shortcut is not the identity (projection or
    zero padding where the shape changes) apply the first pre-activation
    before the split, so the shortcut sees the activated input, and their
    projections have no BN, as in the authors' code (He et al.'s
    resnet-1k-layers) and keras.applications' ResNetV2; identity shortcuts
    always carry the raw input.

    The shortcut variants of He et al. (2016, Table 1): `"identity"` (plain
    addition), `"constant_scaling"` (`0.5 h + 0.5 F`), `"exclusive_gating"`
    (`g F + (1 - g) h`, `g` a 1x1-conv sigmoid gate with bias `gate_bias`),
    `"shortcut_only_gating"` (`F + (1 - g) h`), `"conv_shortcut"` (a 1x1
    convolution on every shortcut), `"dropout_shortcut"` (dropout 0.5 on the
    shortcut, scaled by 0.5 at inference).

    Args:
        x: input tensor (NHWC).
        filters: output channels (basic) or base width (bottleneck; the
            output has `filters * expansion` channels).
        strides: the unit's stride.
        name: layer name prefix, e.g. `"stage2_block1"`.
        block: `"basic"` or `"bottleneck"`.
        unit: one of `UNITS`.
        shortcut_option: `"zero_pad"` (A), `"projection"` (B) or
            `"all_projection"` (C).
        shortcut_variant: one of `SHORTCUT_VARIANTS`.
        gate_bias: initial bias of the gate `g` of the gating variants.
        residual: False builds the plain unit (no shortcut).
        preactivate: False skips the first pre-activation of a
            pre-activation unit (its input is already activated, e.g. after
            an ImageNet stem).
        expansion, width, groups, stride_in_1x1: bottleneck options.
        epsilon: BatchNormalization epsilon.
        wrap_branch: optional `wrap_branch(branch, x, name) -> tensor` that
            applies the branch function to `x` (default `branch(x)`); the
            hook through which the whole branch can be wrapped.
        stochastic_depth: None, or the `StochasticDepth` arguments that gate
            this unit (see `residual_add`); needs a residual unit whose
            shortcut variant is additive (`ADDITIVE_VARIANTS`).
        form: ResNeXt form of a grouped bottleneck (see `unit_branch`).
        implementation: `GroupedConv2D` implementation (see `unit_branch`).

    Returns:
        The unit's output tensor, produced by the layer `{name}_out`.
    """
    in_channels = x.shape[-1]
    out_channels = filters if block == "basic" else filters * expansion
    kind = None
    if residual:
        kind = shortcut_kind(shortcut_option, in_channels, out_channels, strides)
    shared = unit in PREACT_UNITS and preactivate and kind not in (None, "identity")
    if shared:
        x = preactivation(x, unit=unit, name=name, index=1, epsilon=epsilon)
    branch_fn = unit_branch(
        filters,
        strides=strides,
        name=name,
        block=block,
        unit=unit,
        preactivate_input=preactivate and not shared,
        expansion=expansion,
        width=width,
        groups=groups,
        stride_in_1x1=stride_in_1x1,
        epsilon=epsilon,
        form=form,
        implementation=implementation,
    )
    if wrap_branch is not None:
        inner_branch = branch_fn

        def branch_fn(t):
            return wrap_branch(inner_branch, t, name)

    if stochastic_depth is not None:
        if not residual or shortcut_variant not in ADDITIVE_VARIANTS:
            raise ValueError(
                "Stochastic depth drops a unit's branch and keeps its shortcut, so it "
                f"needs a residual unit with an additive shortcut variant "
                f"({', '.join(ADDITIVE_VARIANTS)}); got residual={residual}, "
                f"shortcut_variant={shortcut_variant!r} in {name!r}."
            )

        def shortcut_fn(t):
            return _variant_shortcut(
                t,
                out_channels,
                kind=kind,
                strides=strides,
                variant=shortcut_variant,
                name=name,
                epsilon=epsilon,
                normalize=unit not in PREACT_UNITS,
            )

        y = residual_add(x, branch_fn, shortcut_fn, name=name, stochastic_depth=stochastic_depth)
    elif residual:
        branch = branch_fn(x)
        short = _variant_shortcut(
            x,
            out_channels,
            kind=kind,
            strides=strides,
            variant=shortcut_variant,
            name=name,
            epsilon=epsilon,
            normalize=unit not in PREACT_UNITS,
        )
        y = _combine(branch, short, variant=shortcut_variant, gate_bias=gate_bias, name=name)
    else:
        y = branch_fn(x)
    if unit == "bn_after_addition":
        last = 2 if block == "basic" else 3
        y = batch_norm(y, name=f"{name}_bn{last}", epsilon=epsilon)
    if unit in ("original", "bn_after_addition"):
        return relu(y, name=f"{name}_out")
    return keras.layers.Identity(name=f"{name}_out")(y)


def basic_block(
    x,
    filters: int,
    *,
    strides: int,
    name: str,
    shortcut_option: str = "projection",
    residual: bool = True,
    epsilon: float = BN_EPSILON,
    **unit_options,
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
        **unit_options: `unit`, `shortcut_variant`, `gate_bias`,
            `preactivate`, `wrap_branch`, `stochastic_depth` (see
            `residual_unit`).

    Returns:
        The block's output tensor.
    """
    return residual_unit(
        x,
        filters,
        strides=strides,
        name=name,
        block="basic",
        shortcut_option=shortcut_option,
        residual=residual,
        epsilon=epsilon,
        **unit_options,
    )


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
    **unit_options,
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
        **unit_options: `unit`, `shortcut_variant`, `gate_bias`,
            `preactivate`, `wrap_branch`, `stochastic_depth` (see
            `residual_unit`).
            `preactivate`, `wrap_branch`, `form` (ResNeXt's "a", "b", "c"),
            `implementation` (of `GroupedConv2D`); see `residual_unit`.

    Returns:
        The block's output tensor.
    """
    return residual_unit(
        x,
        filters,
        strides=strides,
        name=name,
        block="bottleneck",
        shortcut_option=shortcut_option,
        residual=residual,
        expansion=expansion,
        width=width,
        groups=groups,
        stride_in_1x1=stride_in_1x1,
        epsilon=epsilon,
        **unit_options,
    )


def highway_layer(
    x,
    filters: int,
    *,
    strides: int,
    name: str,
    coupled: bool = True,
    transform_bias: float = -1.0,
    carry_bias: float | None = None,
    gate_kernel_size: int = 3,
    shortcut_option: str = "zero_pad",
    epsilon: float = BN_EPSILON,
):
    """One highway layer (Srivastava et al. 2015): `y = H(x) T + x (1 - T)`.

    H is one 3x3 convolution + BN + ReLU (`{name}_conv1`, `_bn1`, `_relu1`);
    the carried input is the unit's shortcut (identity, or option A / B where
    the shape changes); the gates are `gate_kernel_size` convolutions of the
    carried input inside the `Highway` layer `{name}_gate`.

    Args:
        x: input tensor (NHWC).
        filters: output channels.
        strides: stride of H and of the shortcut.
        name: layer name prefix.
        coupled: True: carry gate `1 - T`; False: a separate carry gate.
        transform_bias: initial transform-gate bias.
        carry_bias: initial carry-gate bias (`coupled=False`).
        gate_kernel_size: kernel size of the gate convolutions.
        shortcut_option: how the carry changes shape (`"zero_pad"`,
            `"projection"`).
        epsilon: BatchNormalization epsilon.

    Returns:
        The layer's output tensor, produced by `{name}_out`.
    """
    kind = shortcut_kind(shortcut_option, x.shape[-1], filters, strides)
    h = conv(x, filters, 3, strides=strides, name=f"{name}_conv1")
    h = batch_norm(h, name=f"{name}_bn1", epsilon=epsilon)
    h = relu(h, name=f"{name}_relu1")
    carry = shortcut(x, filters, strides=strides, kind=kind, name=name, epsilon=epsilon)
    y = Highway(
        coupled=coupled,
        transform_bias=transform_bias,
        carry_bias=carry_bias,
        kernel_size=gate_kernel_size,
        name=f"{name}_gate",
    )([h, carry])
    return keras.layers.Identity(name=f"{name}_out")(y)


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
