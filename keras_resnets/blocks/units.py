"""Residual units: the five orderings of He et al. (2016, Figure 4), basic and bottleneck.

A unit is branch F + shortcut h, merged, then what the ordering puts after
the addition. `ORDERINGS` is the one table saying where BatchNormalization
and ReLU go; every unit is built from it by `residual_unit`. The choices
that are the same for every unit of a network (block type, ordering,
shortcut option and variant, ResNeXt form, dropout...) travel together as
one `UnitConfig`, built once by the network's body.

Layers are `{name}_conv{i}`, `{name}_bn{i}`, `{name}_relu{i}` (i counts the
branch's convolutions), `{name}_shortcut`, `{name}_add`, `{name}_out`, so
weights convert by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras

from keras_resnets.blocks import shortcuts
from keras_resnets.blocks.attention import ATTENTIONS, channel_attention
from keras_resnets.blocks.conv_bn import batch_norm, conv, relu
from keras_resnets.blocks.resnext import FORMS, path_branch
from keras_resnets.layers.grouped_conv import IMPLEMENTATIONS
from keras_resnets.layers.split_attention import SplitAttention
from keras_resnets.utils import check_choice, check_fraction


@dataclasses.dataclass(frozen=True)
class Ordering:
    """Where one unit puts BN and ReLU (`"bn"`, `"relu"` in order).

    Attributes:
        before: before every convolution of the branch (pre-activation).
        after: after each convolution but the last.
        after_last: after the branch's last convolution.
        after_add: after the addition (`"relu"` is `{name}_out`; without
            it `{name}_out` is an `Identity`).
    """

    before: tuple[str, ...]
    after: tuple[str, ...]
    after_last: tuple[str, ...]
    after_add: tuple[str, ...]


# He et al. 2016, Figure 4 (a)-(e).
ORDERINGS = {
    "original": Ordering((), ("bn", "relu"), ("bn",), ("relu",)),
    "bn_after_addition": Ordering((), ("bn", "relu"), (), ("bn", "relu")),
    "relu_before_addition": Ordering((), ("bn", "relu"), ("bn", "relu"), ()),
    "relu_only_preactivation": Ordering(("relu",), ("bn",), ("bn",), ()),
    "full_preactivation": Ordering(("bn", "relu"), (), (), ()),
}
UNITS = tuple(ORDERINGS)
PREACT_UNITS = tuple(unit for unit, order in ORDERINGS.items() if order.before)
# The units whose branch ends in BatchNormalization: those `zero_init_residual` takes.
BN_LAST_UNITS = tuple(unit for unit, order in ORDERINGS.items() if "bn" in order.after_last)


@dataclasses.dataclass(frozen=True)
class UnitConfig:
    """The choices shared by every unit of a network.

    Attributes:
        block: `"basic"` (two 3x3) or `"bottleneck"` (1x1, 3x3, 1x1).
        unit: the ordering, one of `UNITS` (He et al. 2016, Figure 4).
        shortcut: option `"zero_pad"` (A), `"projection"` (B) or
            `"all_projection"` (C) (He et al. 2015).
        shortcut_variant: one of `SHORTCUT_VARIANTS` (He et al. 2016, Table 1).
        gate_bias: initial bias of the gate of the two gating variants.
        residual: False builds plain units (no shortcut).
        expansion: bottleneck output channels per base channel (4).
        groups: groups of the bottleneck's 3x3 convolution (ResNeXt's
            cardinality; 1 for ResNet).
        stride_in_1x1: bottleneck stride on the first 1x1 convolution (the
            original Caffe model) instead of the 3x3 (torchvision).
        form: ResNeXt form of a grouped bottleneck, `"a"`, `"b"` or `"c"`
            (see `keras_resnets.blocks.resnext`); "a"/"b" need
            `unit="original"`.
        implementation: `GroupedConv2D` implementation of grouped
            convolutions (one of its `IMPLEMENTATIONS`).
        dropout_rate: dropout before the branch's last convolution
            (`{name}_dropout`; Wide ResNets); 0 for none.
        downsample: how a strided projection shortcut reduces the
            resolution, `"conv"` or `"avg"` (ResNet-D; `shortcuts.DOWNSAMPLES`).
        attention: channel attention at the end of the branch: None,
            `"se"` or `"eca"` (`blocks.attention`).
        attention_ratio: the SE reduction ratio (None: 1/16).
        radix: 0 for a plain 3x3 convolution in a bottleneck; >= 1 makes it
            a `SplitAttention` layer of that radix (ResNeSt).
        avd: ResNeSt's "average downsampling": the 3x3 convolution keeps
            stride 1 and a 3x3/2 average pool follows it (`{name}_avd`);
            needs `radix` >= 1 and `stride_in_1x1=False`.
        zero_init_residual: the branch's last BatchNormalization starts
            with gamma 0, so each unit starts as its shortcut (He et al.
            2019; Goyal et al. 2017); needs a unit whose branch ends in BN.

    Raises:
        ValueError: a field outside its allowed values (the message names it).
    """

    block: str = "basic"
    unit: str = "original"
    shortcut: str = "projection"
    shortcut_variant: str = "identity"
    gate_bias: float = shortcuts.GATE_BIAS
    residual: bool = True
    expansion: int = 4
    groups: int = 1
    stride_in_1x1: bool = False
    form: str = "c"
    implementation: str = "auto"
    dropout_rate: float = 0.0
    downsample: str = "conv"
    attention: str | None = None
    attention_ratio: float | None = None
    radix: int = 0
    avd: bool = False
    zero_init_residual: bool = False

    def __post_init__(self):
        check_choice("block", self.block, ("basic", "bottleneck"))
        check_choice("unit", self.unit, UNITS)
        check_choice("shortcut", self.shortcut, shortcuts.SHORTCUTS)
        check_choice("shortcut_variant", self.shortcut_variant, shortcuts.SHORTCUT_VARIANTS)
        check_choice("form", self.form, FORMS)
        check_choice("implementation", self.implementation, IMPLEMENTATIONS)
        check_fraction("dropout_rate", self.dropout_rate, low=0.0, high=1.0)
        check_choice("downsample", self.downsample, shortcuts.DOWNSAMPLES)
        check_choice("attention", self.attention, ATTENTIONS)
        if self.zero_init_residual and self.unit not in BN_LAST_UNITS:
            raise ValueError(
                f"`zero_init_residual=True` zeroes the last BatchNormalization of each branch; "
                f"`unit`={self.unit!r} ends its branch without one. Use a unit whose branch "
                f"ends in BN ({', '.join(repr(u) for u in BN_LAST_UNITS)})."
            )
        if self.radix and (self.block != "bottleneck" or self.unit != "original"):
            raise ValueError(
                f"`radix`={self.radix} (split attention, ResNeSt) replaces the 3x3 convolution "
                "of a bottleneck with `unit='original'`; got "
                f"block={self.block!r}, unit={self.unit!r}."
            )
        if self.avd and not self.radix:
            raise ValueError(
                "`avd=True` (ResNeSt's average downsampling) moves the stride of the "
                "split-attention 3x3 convolution to an average pool; it needs `radix` >= 1, "
                f"got radix={self.radix!r}."
            )
        if self.avd and self.stride_in_1x1:
            raise ValueError(
                "`avd=True` pools after the 3x3 convolution in place of its stride; "
                "`stride_in_1x1=True` puts the stride on the first 1x1 instead. Use one of "
                "them, got avd=True, stride_in_1x1=True."
            )
        if self.zero_init_residual and self.separate_paths:
            raise ValueError(
                f"`zero_init_residual=True` needs `form='c'`; form {self.form!r} ends its "
                "branch in the paths' own layers."
            )
        if self.radix and self.separate_paths:
            raise ValueError(f"`radix`={self.radix} needs `form='c'`, got {self.form!r}.")
        if self.separate_paths and self.unit != "original":
            raise ValueError(
                f"`form`={self.form!r} (separate paths) is built for `unit='original'` only, "
                f"got `unit`={self.unit!r}; use form 'c'."
            )

    @property
    def separate_paths(self) -> bool:
        """True for ResNeXt forms "a"/"b" of a grouped bottleneck."""
        return self.block == "bottleneck" and self.groups > 1 and self.form != "c"

    def out_channels(self, filters: int) -> int:
        """Output channels of a unit given `filters` (see `residual_unit`)."""
        return filters if self.block == "basic" else filters * self.expansion

    def convolutions(self, filters: int, width: int, strides: int) -> list[tuple]:
        """(channels, kernel, strides, groups) of each convolution of the branch."""
        if self.block == "basic":
            return [(filters, 3, strides, 1), (filters, 3, 1, 1)]
        s1, s3 = (strides, 1) if self.stride_in_1x1 else (1, strides)
        out = filters * self.expansion
        return [(width, 1, s1, 1), (width, 3, s3, self.groups), (out, 1, 1, 1)]


def _apply(x, layers: tuple[str, ...], *, name: str, suffix: str, zero_gamma: bool = False):
    for layer in layers:
        if layer == "bn":
            x = batch_norm(x, name=f"{name}_bn{suffix}", zero_gamma=zero_gamma)
        else:
            x = relu(x, name=f"{name}_relu{suffix}")
    return x


def _split_attention(x, channels: int, strides: int, groups: int, *, config, name: str):
    """ResNeSt's 3x3 stage: a `SplitAttention` layer `{name}_conv2`, then the avd pool.

    With `avd` the convolution keeps stride 1 and a 3x3/2 average pool
    (zero padding 1, counted in the mean: torch's `AvgPool2d(3, 2, 1)`)
    reduces the resolution after it.
    """
    pooled = config.avd and strides > 1
    x = SplitAttention(
        channels,
        3,
        strides=1 if pooled else strides,
        radix=config.radix,
        cardinality=groups,
        implementation=config.implementation,
        name=f"{name}_conv2",
    )(x)
    if pooled:
        x = keras.layers.ZeroPadding2D(1, name=f"{name}_avd_pad")(x)
        x = keras.layers.AveragePooling2D(3, strides=strides, name=f"{name}_avd")(x)
    return x


def preactivation(x, *, unit: str, name: str, index: int | None = None):
    """The layers `unit` puts before its convolution `index` (`ORDERINGS[unit].before`).

    `"full_preactivation"`: BN then ReLU (`{name}_bn{index}`,
    `{name}_relu{index}`); `"relu_only_preactivation"`: ReLU only; other
    units: nothing. With `index=None` the layers are `{name}_bn`,
    `{name}_relu` (the networks' final `post_bn`, `post_relu`).
    """
    return _apply(x, ORDERINGS[unit].before, name=name, suffix="" if index is None else str(index))


def unit_branch(
    filters: int,
    *,
    strides: int,
    name: str,
    config: UnitConfig | None = None,
    width: int | None = None,
    preactivate: bool = True,
    **options,
) -> Callable:
    """Return `branch(x)`, the residual function F of one unit, as one callable.

    The branch holds every layer of F (and nothing of the shortcut or the
    merge), so it can be wrapped as a whole, e.g. by stochastic depth.

    Args:
        filters: as for `residual_unit`.
        strides: the unit's stride.
        name: layer name prefix.
        config: the network's `UnitConfig` (default: `UnitConfig(**options)`).
        width: channels of a bottleneck's 3x3 convolution (default `filters`).
        preactivate: for pre-activation units, whether the branch
            starts with the pre-activation (False when it is shared with the
            shortcut and applied before the split, or the input is already
            activated).
        **options: `UnitConfig` fields, when `config` is not given.

    Returns:
        A function mapping the unit's input tensor to the branch output.

    Raises:
        ValueError: `groups` does not divide the bottleneck width.
    """
    config = UnitConfig(**options) if config is None else config
    width = filters if width is None else width
    if config.block == "bottleneck" and width % config.groups:
        raise ValueError(
            f"`groups`={config.groups} must divide the bottleneck width {width} of block {name!r}."
        )
    order = ORDERINGS[config.unit]
    plan = config.convolutions(filters, width, strides)

    def branch(x):
        x = _branch_layers(x)
        return channel_attention(x, config.attention, ratio=config.attention_ratio, name=name)

    def _branch_layers(x):
        if config.separate_paths:
            return path_branch(
                x,
                config.out_channels(filters),
                paths=config.groups,
                path_width=width // config.groups,
                strides=strides,
                stride_in_1x1=config.stride_in_1x1,
                name=name,
                summed=config.form == "a",
            )
        for index, (channels, kernel, stride, groups) in enumerate(plan, start=1):
            last = index == len(plan)
            if index > 1 or preactivate:
                x = _apply(x, order.before, name=name, suffix=str(index))
            if last and config.dropout_rate:
                x = keras.layers.Dropout(config.dropout_rate, name=f"{name}_dropout")(x)
            if config.radix and kernel == 3:
                x = _split_attention(x, channels, stride, groups, config=config, name=name)
                continue
            x = conv(
                x,
                channels,
                kernel,
                strides=stride,
                groups=groups,
                implementation=config.implementation,
                name=f"{name}_conv{index}",
            )
            layers = order.after_last if last else order.after
            zero = last and config.zero_init_residual
            x = _apply(x, layers, name=name, suffix=str(index), zero_gamma=zero)
        return x

    return branch


def residual_sum(
    x,
    filters: int,
    *,
    strides: int,
    name: str,
    config: UnitConfig,
    width: int | None = None,
    preactivate: bool = True,
    stochastic_depth: dict | None = None,
    wrap_branch: Callable | None = None,
):
    """Branch F, shortcut h and their merge: a unit up to its addition.

    Arguments as for `residual_unit`. Returns the merged tensor (`{name}_add`
    or `{name}_gate`; the branch alone for plain units), before what
    `ORDERINGS[config.unit].after_add` puts after it.
    """
    out_channels = config.out_channels(filters)
    short_type = None
    if config.residual:
        short_type = shortcuts.shortcut_type(config.shortcut, x.shape[-1], out_channels, strides)
    is_preact = config.unit in PREACT_UNITS
    shared = is_preact and preactivate and short_type not in (None, "identity")
    if shared:
        x = preactivation(x, unit=config.unit, name=name, index=1)
    branch_fn = unit_branch(
        filters,
        strides=strides,
        name=name,
        config=config,
        width=width,
        preactivate=preactivate and not shared,
    )
    if wrap_branch is not None:
        inner_branch = branch_fn

        def branch_fn(t):
            return wrap_branch(inner_branch, t, name)

    def shortcut_fn(t):
        return shortcuts.shortcut_path(
            t,
            out_channels,
            strides=strides,
            name=name,
            shortcut_type=short_type,
            variant=config.shortcut_variant,
            normalize=not is_preact,
            downsample=config.downsample,
        )

    if stochastic_depth is not None:
        if not config.residual or config.shortcut_variant not in shortcuts.ADDITIVE_VARIANTS:
            raise ValueError(
                "Stochastic depth drops a unit's branch and keeps its shortcut, so it "
                f"needs a residual unit with an additive shortcut variant "
                f"({', '.join(shortcuts.ADDITIVE_VARIANTS)}); got residual={config.residual}, "
                f"shortcut_variant={config.shortcut_variant!r} in {name!r}."
            )
        return shortcuts.residual_add(
            x, branch_fn, shortcut_fn, name=name, stochastic_depth=stochastic_depth
        )
    if not config.residual:
        return branch_fn(x)
    branch = branch_fn(x)
    return shortcuts.merge(
        branch,
        shortcut_fn(x),
        variant=config.shortcut_variant,
        gate_bias=config.gate_bias,
        name=name,
    )


def residual_unit(
    x,
    filters: int,
    *,
    strides: int,
    name: str,
    config: UnitConfig | None = None,
    width: int | None = None,
    preactivate: bool = True,
    stochastic_depth: dict | None = None,
    wrap_branch: Callable | None = None,
    **options,
):
    """One residual unit: branch F, shortcut h, merge, what follows the addition.

    The five orderings of He et al. (2016, Figure 4), for basic and
    bottleneck blocks (`ORDERINGS`):

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

    Args:
        x: input tensor (NHWC).
        filters: as keras.applications' blocks: the output channels of a
            basic unit, the base width of a bottleneck (whose output has
            `filters * expansion` channels).
        strides: the unit's stride.
        name: layer name prefix, e.g. `"stage2_block1"`.
        config: the network's `UnitConfig`, built once by its body; default
            `UnitConfig(**options)`.
        width: channels of a bottleneck's 3x3 convolution (default
            `filters`; ResNeXt and Wide ResNet-50-2 set it).
        preactivate: False skips the first pre-activation of a
            pre-activation unit (its input is already activated, e.g. after
            an ImageNet stem).
        stochastic_depth: None, or the `StochasticDepth` arguments that gate
            this unit (see `residual_add`); needs a residual unit whose
            shortcut variant is additive (`ADDITIVE_VARIANTS`).
        wrap_branch: optional `wrap_branch(branch, x, name) -> tensor` that
            applies the branch function to `x` (default `branch(x)`); the
            hook through which the whole branch can be wrapped.
        **options: `UnitConfig` fields (`block`, `unit`, `shortcut`,
            `shortcut_variant`, `gate_bias`, `residual`, `expansion`,
            `groups`, `stride_in_1x1`, `form`, `implementation`,
            `dropout_rate`), when `config` is not given.

    Returns:
        The unit's output tensor, produced by the layer `{name}_out`.

    Raises:
        ValueError: an option outside its allowed values, `groups` not
            dividing the width, or stochastic depth on a unit that cannot
            drop its branch.
    """
    config = UnitConfig(**options) if config is None else config
    y = residual_sum(
        x,
        filters,
        strides=strides,
        name=name,
        config=config,
        width=width,
        preactivate=preactivate,
        stochastic_depth=stochastic_depth,
        wrap_branch=wrap_branch,
    )
    after_add = ORDERINGS[config.unit].after_add
    if "bn" in after_add:
        last = len(config.convolutions(filters, filters, strides))
        y = batch_norm(y, name=f"{name}_bn{last}")
    if "relu" in after_add:
        return relu(y, name=f"{name}_out")
    return keras.layers.Identity(name=f"{name}_out")(y)


def basic_block(x, filters: int, *, strides: int, name: str, **options):
    """Two 3x3 convolutions (He et al. 2015, Figure 2 left): `residual_unit(block="basic")`.

    Args:
        x: input tensor (NHWC).
        filters: output channels.
        strides: stride of the first convolution (and the shortcut).
        name: layer name prefix, e.g. `"stage2_block1"`.
        **options: the other arguments of `residual_unit` and `UnitConfig`
            fields (`shortcut`, `residual`, `unit`, ...).

    Returns:
        The block's output tensor.
    """
    return residual_unit(x, filters, strides=strides, name=name, block="basic", **options)


def bottleneck_block(x, filters: int, *, strides: int, name: str, **options):
    """1x1 reduce, 3x3, 1x1 expand (He et al. 2015, Figure 5 right).

    The stride sits on the 3x3 convolution as in torchvision ("v1.5"), or
    on the first 1x1 with `stride_in_1x1=True` (the original Caffe model).

    Args:
        x: input tensor (NHWC).
        filters: the block's base width; the output has `filters * expansion`
            channels.
        strides: the block's stride.
        name: layer name prefix.
        **options: `width`, `groups` (ResNeXt's cardinality),
            `stride_in_1x1`, `form`, ... as for `residual_unit`.

    Returns:
        The block's output tensor.
    """
    return residual_unit(x, filters, strides=strides, name=name, block="bottleneck", **options)
