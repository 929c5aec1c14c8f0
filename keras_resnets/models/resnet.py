"""ResNet v1 (He et al. 2015) and the plain baselines, ImageNet and CIFAR.

Two generic builders take the architecture as arguments: `ResNet(depths=,
widths=, block=, stem=)` (as keras-hub's `stackwise_*` arguments or timm's
`ResNet(block, layers)`) and `CifarResNet(depth=)` (He et al.'s 6n + 2
layout). The named models are rows of `RESNET_ROWS` and
`CIFAR_RESNET_ROWS` calling them, registered by `register_rows`; one
function, `build_resnet`, turns a `ResNetSpec` and the user's options into a
model through the shared `build_model`.

Over 500 lines because `build_resnet` serves every ResNet-shaped family
(v1, pre-activation, ResNeXt, the plain nets) and checks its options'
combinations here, with their docstring entries; `resnet_body` belongs to
the blocks and may move there.
"""

from __future__ import annotations

import dataclasses
import functools

import keras

from keras_resnets import blocks
from keras_resnets.layers.stochastic_depth import STOCHASTIC_DEPTH_DOC, stochastic_depth_schedule
from keras_resnets.models.application import (
    check_depth,
    check_options,
    stochastic_depth_options,
    with_application_arguments,
)
from keras_resnets.models.builder import build_model, stage_info
from keras_resnets.models.registry import Family, Option, Row, register_rows
from keras_resnets.utils import (
    check_bool,
    check_choice,
    check_int,
    check_number,
    is_int,
)
from keras_resnets.weights import build_in_stored_layout
from keras_resnets.weights.pretrained import available_weights

HE2015 = "He et al. 2015"


@dataclasses.dataclass(frozen=True)
class ResNetSpec:
    """One ResNet variant.

    Attributes:
        block: `"basic"` or `"bottleneck"`.
        depths: blocks per stage.
        widths: base width per stage (bottleneck output is 4x).
        stem: `"imagenet"` (7x7/2 + max pool), `"deep"` (ResNet-C: three
            3x3 convolutions), `"deep_tiered"` (timm's "t") or `"cifar"` (3x3).
        default_size: default input size.
        default_classes: default number of classes.
        shortcut: default shortcut option (`"zero_pad"`, `"projection"`,
            `"all_projection"`).
        residual: False for the plain baselines.
        first_stage: index of the first stage in layer names (ImageNet
            stages are `stage2`..`stage5` as C2..C5; CIFAR `stage1`..`stage3`).
        stem_width: channels of the stem's first convolution; None: the
            first stage's width (`"imagenet"`, `"cifar"`) or half of it (the
            deep stems, whose last convolution is twice as wide).
        cardinality: groups of each bottleneck's 3x3 convolution (ResNeXt;
            1 for ResNet).
        base_width: channels per group at the first stage, for a base width
            of 64 (ResNeXt's "d"; 64 with cardinality 1 is ResNet, 128 is
            Wide ResNet-50-2). A bottleneck of base width `w` has an inner
            width of `(w * base_width // 64) * cardinality`, as torchvision.
        unit: the residual unit (`blocks.UNITS`): `"original"` for v1,
            `"full_preactivation"` for the pre-activation networks.
        stem_pool: the ImageNet stem's reduction, `"max"` (3x3/2 max
            pool) or `"conv"` (3x3/2 conv + BN + ReLU, ResNet-RS).
        downsample: `"conv"` or `"avg"` (ResNet-D), see `blocks.shortcuts`.
        attention: None, `"se"` or `"eca"` at the end of every branch.
        attention_ratio: the SE reduction ratio (None: 1/16).
        radix: split-attention radix of the 3x3 convolutions (0: none; ResNeSt).
        avd: ResNeSt's average-pool downsampling after the 3x3 convolution.
    """

    block: str
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    stem: str
    default_size: int
    default_classes: int
    shortcut: str
    residual: bool = True
    first_stage: int = 2
    stem_width: int | None = None
    unit: str = "original"
    cardinality: int = 1
    base_width: int = 64
    stem_pool: str = "max"
    downsample: str = "conv"
    attention: str | None = None
    attention_ratio: float | None = None
    radix: int = 0
    avd: bool = False

    @property
    def imagenet(self) -> bool:
        """True for the ImageNet-style stems (output stride 4)."""
        return self.stem != "cifar"

    def stem_widths(self) -> tuple[int, ...]:
        """Channels of each stem convolution (`blocks.stem_widths`)."""
        deep = self.stem in ("deep", "deep_tiered")
        width = self.stem_width or (self.widths[0] // 2 if deep else self.widths[0])
        return blocks.stem_widths(self.stem, width)

    def inner_width(self, width: int) -> int:
        """Channels of the 3x3 convolution of a bottleneck of base width `width`."""
        return (width * self.base_width // 64) * self.cardinality

    @property
    def total_stride(self) -> int:
        stem_stride = 4 if self.imagenet else 1
        return stem_stride * 2 ** (len(self.depths) - 1)


def _check_sizes(argument: str, values, length: int | None = None) -> tuple[int, ...]:
    """A non-empty tuple of positive integers (of `length` when given), else ValueError."""
    ok = isinstance(values, (tuple, list)) and len(values) > 0
    ok = ok and all(is_int(v) and v >= 1 for v in values)
    if not ok or (length is not None and len(values) != length):
        size = f"{length} " if length is not None else ""
        raise ValueError(
            f"`{argument}` must be a tuple of {size}positive integers (one per stage), "
            f"got {values!r}."
        )
    return tuple(int(v) for v in values)


def resnet_spec(
    depths,
    widths=None,
    block: str = "basic",
    stem: str = "imagenet",
    *,
    residual: bool = True,
    unit: str = "original",
    cardinality: int = 1,
    base_width: int = 64,
    stem_width: int | None = None,
    stem_pool: str = "max",
    downsample: str = "conv",
    attention: str | None = None,
    attention_ratio: float | None = None,
    radix: int = 0,
    avd: bool = False,
) -> ResNetSpec:
    """The spec of a ResNet from its architecture arguments (see `ResNet`).

    The stem is as wide as the first stage; the defaults follow the stem:
    ImageNet (224x224, 1000 classes, projection shortcuts, stages named
    `stage2`...) or CIFAR (32x32, 10 classes, stages named `stage1`...;
    option A shortcuts with basic blocks, projection with bottlenecks).

    Raises:
        ValueError: naming the argument, for a bad block, stem, depths or widths.
    """
    check_choice("block", block, ("basic", "bottleneck"))
    check_choice("stem", stem, blocks.STEMS)
    check_choice("unit", unit, blocks.UNITS)
    check_choice("stem_pool", stem_pool, blocks.STEM_POOLS)
    check_choice("downsample", downsample, blocks.DOWNSAMPLES)
    check_choice("attention", attention, blocks.ATTENTIONS)
    if attention_ratio is not None:
        attention_ratio = check_number(
            "attention_ratio", attention_ratio, minimum=0.0, maximum=1.0, low_open=True
        )
        if attention != "se":
            raise ValueError(
                f"`attention_ratio` is the SE reduction ratio; it needs `attention='se'`, "
                f"got attention={attention!r}."
            )
    if stem == "cifar" and (stem_pool != "max" or stem_width is not None):
        raise ValueError(
            "`stem_pool` and `stem_width` belong to the ImageNet-style stems; "
            f"the CIFAR stem is one 3x3 convolution (got stem_pool={stem_pool!r}, "
            f"stem_width={stem_width!r})."
        )
    residual = check_bool("residual", residual)
    depths = _check_sizes("depths", depths)
    first = 16 if stem == "cifar" else 64
    if widths is None:
        widths = tuple(first * 2**index for index in range(len(depths)))
    widths = _check_sizes("widths", widths, len(depths))
    imagenet = stem != "cifar"
    spec = ResNetSpec(
        block=block,
        depths=depths,
        widths=widths,
        stem=stem,
        default_size=224 if imagenet else 32,
        default_classes=1000 if imagenet else 10,
        shortcut="zero_pad" if not imagenet and block == "basic" else "projection",
        residual=residual,
        first_stage=2 if imagenet else 1,
        stem_width=None if stem_width is None else check_int("stem_width", stem_width, 4),
        unit=unit,
        cardinality=check_int("cardinality", cardinality),
        base_width=check_int("base_width", base_width),
        stem_pool=stem_pool,
        downsample=downsample,
        attention=attention,
        attention_ratio=attention_ratio,
        radix=check_int("radix", radix, 0),
        avd=check_bool("avd", avd),
    )
    return _check_stem(spec)


def cifar_spec(
    depth: int,
    residual: bool = True,
    argument: str = "depth",
    *,
    block: str = "basic",
    unit: str = "original",
) -> ResNetSpec:
    """The spec of He et al.'s CIFAR network of `depth` layers.

    Basic blocks: `depth` = 6n + 2, widths 16/32/64, option A shortcuts
    (He et al. 2015). Bottleneck blocks: `depth` = 9n + 2, base widths
    16/32/64 with outputs 64/128/256, projection shortcuts where the shape
    changes (He et al. 2016's ResNet-164 and ResNet-1001).
    """
    check_choice("block", block, ("basic", "bottleneck"))
    per_block = 2 if block == "basic" else 3
    layout = f"CIFAR ResNets with {block} blocks (3 stages of n blocks of {per_block} layers)"
    n = check_depth(depth, step=3 * per_block, extra=2, layout=layout, argument=argument, shown=7)
    return resnet_spec((n, n, n), block=block, stem="cifar", residual=residual, unit=unit)


def resnet_body(
    spec: ResNetSpec,
    *,
    shortcut: str,
    stride_in_1x1: bool = False,
    form: str = "c",
    implementation: str = "auto",
    unit: str | None = None,
    shortcut_variant: str = "identity",
    gate_bias: float = blocks.GATE_BIAS,
    stochastic_depth: list[dict | None] | None = None,
    zero_init_residual: bool = False,
):
    """Return `body(x) -> (features, feature_info)`: the stem and all stages of `spec`.

    `feature_info` records the stem and each stage (its last block's output)
    as they are built (`stage_info`).

    `stochastic_depth` holds one entry per block of the network, in order
    (see `stochastic_depth_schedule`); None builds every block flat.

    With a pre-activation `unit`, a CIFAR stem is the convolution alone (the
    first unit activates it) and the network ends with the unit's activation
    (`post_bn`, `post_relu`) before pooling; an ImageNet stem keeps its
    BN-ReLU before max pooling and the first unit skips its pre-activation,
    as in the authors' Torch code (fb.resnet.torch `preresnet`).

    `form` and `implementation` apply to grouped bottlenecks (ResNeXt); see
    `blocks.resnext`. The per-network choices become one `blocks.UnitConfig`.
    """
    config = blocks.UnitConfig(
        block=spec.block,
        unit=spec.unit if unit is None else unit,
        shortcut=shortcut,
        shortcut_variant=shortcut_variant,
        gate_bias=gate_bias,
        residual=spec.residual,
        groups=spec.cardinality,
        stride_in_1x1=stride_in_1x1,
        form=form,
        implementation=implementation,
        downsample=spec.downsample,
        attention=spec.attention,
        attention_ratio=spec.attention_ratio,
        radix=spec.radix,
        avd=spec.avd,
        zero_init_residual=zero_init_residual,
    )
    schedule = iter(stochastic_depth or [None] * sum(spec.depths))
    is_preact = config.unit in blocks.PREACT_UNITS
    imagenet = spec.imagenet

    def body(x):
        widths = spec.stem_widths()
        if spec.stem == "imagenet":
            x = blocks.imagenet_stem(x, widths[0], pool=spec.stem_pool)
        elif imagenet:
            x = blocks.deep_stem(x, widths, pool=spec.stem_pool)
        else:
            x = blocks.cifar_stem(x, widths[0], activate=not is_preact)
        # An activated stem (any ImageNet stem, a post-activation CIFAR stem)
        # feeds the first unit, which then skips its pre-activation.
        stem_activates = imagenet or not is_preact
        reduction = 4 if imagenet else 1
        feature_info = [stage_info("stem", x, reduction)]
        for stage_index, (depth, width) in enumerate(zip(spec.depths, spec.widths, strict=True)):
            if stage_index > 0:
                reduction *= 2
            stage = f"stage{stage_index + spec.first_stage}"
            for block_index in range(depth):
                first = block_index == 0
                x = blocks.residual_unit(
                    x,
                    width,
                    strides=2 if stage_index > 0 and first else 1,
                    name=f"{stage}_block{block_index + 1}",
                    config=config,
                    width=spec.inner_width(width),
                    preactivate=not (stem_activates and stage_index == 0 and first),
                    stochastic_depth=next(schedule),
                )
            feature_info.append(stage_info(stage, x, reduction))
        if is_preact:
            x = blocks.preactivation(x, unit=config.unit, name="post")
        return x, feature_info

    return body


_FROM_SPEC = object()  # `attention` not given: the spec's (None is a value: no attention)


def _with_tricks(spec: ResNetSpec, **tricks) -> ResNetSpec:
    """`spec` with the options `stem`, `downsample`, `attention` given by the caller.

    A deep stem is built from the spec's `stem_width` (default half the
    first stage's width), so `ResNet50(stem="deep")` is timm's 32-32-64 stem.

    Raises:
        ValueError: an ImageNet stem asked of a CIFAR network, or the
            reverse; SE's `attention_ratio` kept without SE.
    """
    if not tricks:
        return spec
    stem = tricks.get("stem", spec.stem)
    if (stem == "cifar") != (spec.stem == "cifar"):
        raise ValueError(
            f"`stem`={stem!r} does not fit this network's layout (stem {spec.stem!r}): the "
            "ImageNet stems (imagenet, deep, deep_tiered) reduce the resolution 4x, the CIFAR "
            "one keeps it."
        )
    spec = dataclasses.replace(spec, **tricks)
    if spec.attention != "se" and spec.attention_ratio is not None:
        spec = dataclasses.replace(spec, attention_ratio=None)
    return _check_stem(spec)


def _check_stem(spec: ResNetSpec) -> ResNetSpec:
    """Refuse a stem with a convolution of no channels (a tiered stem of width < 4)."""
    widths = spec.stem_widths()
    if min(widths) < 1:
        raise ValueError(
            f"`stem={spec.stem!r}` with `stem_width`={spec.stem_width!r} (first stage width "
            f"{spec.widths[0]}) gives stem convolutions of {widths} channels; pass a "
            "`stem_width` of at least 4."
        )
    return spec


def _check_pretrained_options(model_name: str, weights: str, **options) -> None:
    """Pretrained weights fit the default layers: refuse options that change them."""
    changed = [f"{key}={value!r}" for key, (value, default) in options.items() if value != default]
    if changed:
        form = options.get("form", ("c", "c"))[0] != "c"
        hint = " (for ResNeXt forms 'a'/'b', then copy them with `copy_form_weights`)" * form
        raise ValueError(
            f"`weights={weights!r}` are for {model_name} with its default options; "
            f"{', '.join(changed)} changes its layers. Build the default model with the "
            f"weights{hint}."
        )


def build_resnet(
    spec: ResNetSpec,
    *,
    model_name: str,
    shortcut: str | None = None,
    stride_in_1x1: bool = False,
    unit: str | None = None,
    shortcut_variant: str = "identity",
    gate_bias: float = blocks.GATE_BIAS,
    drop_path_rate: float = 0.0,
    stochastic_depth_mode: str = "batch",
    stochastic_depth_scale: str | None = None,
    stochastic_depth_seed: int | None = None,
    form: str = "c",
    implementation: str = "auto",
    stem: str | None = None,
    downsample: str | None = None,
    attention=_FROM_SPEC,
    zero_init_residual: bool = False,
    **application,
) -> keras.Model:
    """Build a ResNet (any residual unit), ResNeXt or plain network from its spec.

    `application` holds the keras.applications arguments (`build_model`);
    the options are those of `resnet_options` (plus `form` and
    `implementation` for grouped bottlenecks). `stem`, `downsample` and
    `attention` replace the spec's (their defaults).
    """
    tricks = {key: value for key, value in (("stem", stem), ("downsample", downsample)) if value}
    if attention is not _FROM_SPEC:
        tricks["attention"] = attention
    row_spec, spec = spec, _with_tricks(spec, **tricks)
    zero_init_residual = check_bool("zero_init_residual", zero_init_residual)
    shortcut = spec.shortcut if shortcut is None else shortcut
    unit = spec.unit if unit is None else unit
    check_choice("shortcut", shortcut, blocks.SHORTCUTS)
    check_choice("unit", unit, blocks.UNITS)
    check_choice("shortcut_variant", shortcut_variant, blocks.SHORTCUT_VARIANTS)
    if spec.downsample == "avg" and shortcut == "zero_pad" and spec.block == "basic":
        raise ValueError(
            "`downsample='avg'` changes the projection shortcuts; with basic blocks and "
            "`shortcut='zero_pad'` (option A) this network has none. Use "
            "shortcut='projection'."
        )
    if not spec.residual and (spec.downsample != "conv" or zero_init_residual):
        raise ValueError(
            f"{_PLAIN_TRICKS_NOTE} Got downsample={spec.downsample!r}, "
            f"zero_init_residual={zero_init_residual!r}."
        )
    schedule = stochastic_depth_schedule(
        sum(spec.depths),
        drop_path_rate,
        mode=stochastic_depth_mode,
        scale=stochastic_depth_scale,
        seed=stochastic_depth_seed,
    )
    if drop_path_rate and shortcut_variant not in blocks.ADDITIVE_VARIANTS:
        raise ValueError(
            f"`drop_path_rate` must be 0 with `shortcut_variant={shortcut_variant!r}`: "
            "stochastic depth keeps the shortcut of a dropped block, which needs an "
            f"additive variant ({', '.join(repr(v) for v in blocks.ADDITIVE_VARIANTS)}); "
            f"got {drop_path_rate!r}."
        )
    gate_bias = check_number("gate_bias", gate_bias)
    stride_in_1x1 = check_bool("stride_in_1x1", stride_in_1x1)
    if stride_in_1x1 and spec.block != "bottleneck":
        raise ValueError(
            "`stride_in_1x1=True` applies to bottleneck networks only; "
            f"{model_name} uses basic blocks."
        )
    weights = application.get("weights")
    pretrained = isinstance(weights, str) and weights in available_weights(model_name)
    if pretrained:
        _check_pretrained_options(
            model_name,
            weights,
            shortcut=(shortcut, spec.shortcut),
            stride_in_1x1=(stride_in_1x1, False),
            unit=(unit, spec.unit),
            shortcut_variant=(shortcut_variant, "identity"),
            form=(form, "c"),
            stem=(spec.stem, row_spec.stem),
            downsample=(spec.downsample, row_spec.downsample),
            attention=(spec.attention, row_spec.attention),
        )
    # Weights stored in the other nesting (pretrained ones are flat) load
    # through a network of their own layout, copied by name.
    model = build_in_stored_layout(
        functools.partial(
            build_resnet,
            spec,
            model_name=model_name,
            shortcut=shortcut,
            stride_in_1x1=stride_in_1x1,
            unit=unit,
            shortcut_variant=shortcut_variant,
            gate_bias=gate_bias,
            stochastic_depth_mode=stochastic_depth_mode,
            stochastic_depth_scale=stochastic_depth_scale,
            stochastic_depth_seed=stochastic_depth_seed,
            form=form,
            implementation=implementation,
            zero_init_residual=zero_init_residual,
        ),
        drop_path_rate=drop_path_rate,
        pretrained=pretrained,
        can_nest=spec.residual and shortcut_variant in blocks.ADDITIVE_VARIANTS,
        application=application,
    )
    if model is not None:
        return model
    return build_model(
        body=resnet_body(
            spec,
            shortcut=shortcut,
            stride_in_1x1=stride_in_1x1,
            unit=unit,
            shortcut_variant=shortcut_variant,
            gate_bias=float(gate_bias),
            stochastic_depth=schedule,
            form=form,
            implementation=implementation,
            zero_init_residual=zero_init_residual,
        ),
        spec=spec,
        model_name=model_name,
        **application,
    )


_SHORTCUT_DOC = """    shortcut: `"zero_pad"` (option A: identity, stride-2 subsampling and
        zero-padded channels, no weights), `"projection"` (option B: 1x1 conv
        + BN where the shape changes) or `"all_projection"` (option C: on
        every block). Default `"{default}"`.
"""

_UNIT_DOC = """    unit: the residual unit of He et al. (2016, Figure 4): `"original"`,
        `"bn_after_addition"`, `"relu_before_addition"`,
        `"relu_only_preactivation"` or `"full_preactivation"`. Default
        `"{default}"`.
    shortcut_variant: He et al. (2016, Table 1): `"identity"` (default),
        `"constant_scaling"`, `"exclusive_gating"`, `"shortcut_only_gating"`,
        `"conv_shortcut"` or `"dropout_shortcut"`.
    gate_bias: initial bias of the gate g of the two gating variants
        (default -6).
"""

_TRICKS_DOC = """    stem: `"imagenet"` (7x7/2 convolution), `"deep"` (ResNet-C: three 3x3
        convolutions {deep}, He et al. 2019) or `"deep_tiered"` ({tiered},
        timm's "t"). Default `"{stem}"`.
    downsample: `"conv"` (a strided 1x1 projection) or `"avg"` (ResNet-D:
        a 2x2/2 average pool, then a 1x1 projection; He et al. 2019).
        Default `"{downsample}"`.
"""
_ATTENTION_DOC = """    attention: None, `"se"` (Squeeze-and-Excitation, Hu et al. 2018) or
        `"eca"` (ECA, Wang et al. 2020) at the end of every residual branch.
        Default {attention!r}.
    zero_init_residual: start each branch's last BatchNormalization with
        gamma 0 (He et al. 2019; needs a unit whose branch ends in BN).
        Default False.
"""

_STRIDE_DOC = """    stride_in_1x1: put each stage's stride on the first 1x1 convolution
        (the original Caffe model) instead of the 3x3 (torchvision, default).
"""


_SPLIT_UNIT_NOTE = "Split attention (ResNeSt) is built into the original unit only."
_PLAIN_VARIANT_NOTE = "A shortcut variant needs a residual network: a plain one has no shortcuts."


def resnet_options(spec: ResNetSpec) -> dict[str, Option]:
    """The options of a ResNet builder, with their defaults, choices and search values.

    Plain networks take the stochastic-depth options and `shortcut_variant`
    too, with only the values that keep them plain (`drop_path_rate` 0,
    `"identity"`), so that asking for more gets the ValueError that explains
    why a plain net cannot; a search does not try them (nor the shortcut
    choices, which a plain net lacks).
    """
    residual = spec.residual
    options = {
        "shortcut": Option(spec.shortcut, blocks.SHORTCUTS, blocks.SHORTCUTS if residual else ()),
        "unit": Option("original", ("original",), note=_SPLIT_UNIT_NOTE)
        if spec.radix
        else Option(spec.unit, blocks.UNITS, blocks.UNITS),
        "shortcut_variant": Option("identity", blocks.SHORTCUT_VARIANTS, blocks.ADDITIVE_VARIANTS)
        if residual
        else Option("identity", ("identity",), note=_PLAIN_VARIANT_NOTE),
        "gate_bias": Option(blocks.GATE_BIAS, kind=float),
    }
    if spec.block == "bottleneck" and spec.avd:
        options["stride_in_1x1"] = Option(False, (False,), note=_AVD_STRIDE_NOTE)
    elif spec.block == "bottleneck":
        options["stride_in_1x1"] = Option(False, (False, True), (False, True), kind=bool)
    return {**options, **trick_options(spec), **stochastic_depth_options(search=residual)}


_AVD_STRIDE_NOTE = "ResNeSt's avd pool takes the stride after the 3x3 convolution."


def trick_options(spec: ResNetSpec) -> dict[str, Option]:
    """`stem` (ImageNet layouts), `downsample`, `attention`, `zero_init_residual`.

    Their defaults are the spec's: `ResNet50D(downsample="conv")` is
    ResNet-50 with the deep stem.
    """
    options = {}
    if spec.imagenet:
        stems = tuple(stem for stem in blocks.STEMS if stem != "cifar")
        options["stem"] = Option(spec.stem, stems, stems)
    if not spec.residual:
        options["downsample"] = Option("conv", ("conv",), note=_PLAIN_TRICKS_NOTE)
    else:
        # Option A with basic blocks has no projection for "avg" to change: not searched.
        projections = spec.block == "bottleneck" or spec.shortcut != "zero_pad"
        search = blocks.DOWNSAMPLES if projections else ()
        options["downsample"] = Option(spec.downsample, blocks.DOWNSAMPLES, search)
    options["attention"] = Option(spec.attention, blocks.ATTENTIONS, blocks.ATTENTIONS)
    if not spec.residual:
        options["zero_init_residual"] = Option(False, (False,), note=_PLAIN_TRICKS_NOTE)
    elif spec.unit in blocks.units.BN_LAST_UNITS:
        options["zero_init_residual"] = Option(False, (False, True), kind=bool)
    else:
        options["zero_init_residual"] = Option(False, (False,), note=_ZERO_INIT_NOTE)
    return options


_ZERO_INIT_NOTE = "A pre-activation branch ends in a convolution, not in BatchNormalization."
_PLAIN_TRICKS_NOTE = (
    "A plain network has no shortcuts: no projection for `downsample` to change, and "
    "`zero_init_residual` would zero its only path."
)


def resnet_options_doc(spec: ResNetSpec) -> str:
    """The `Args:` entries of `resnet_options(spec)`."""
    doc = _SHORTCUT_DOC.format(default=spec.shortcut) + _UNIT_DOC.format(default=spec.unit)
    if spec.block == "bottleneck":
        doc += _STRIDE_DOC
    return doc + trick_options_doc(spec) + (STOCHASTIC_DEPTH_DOC if spec.residual else "")


def trick_options_doc(spec: ResNetSpec) -> str:
    """The `Args:` entries of `trick_options(spec)`."""
    width = spec.stem_width or spec.widths[0] // 2  # the deep stems' base width
    deep, tiered = ("-".join(map(str, blocks.stem_widths(s, width))) for s in blocks.STEMS[1:3])
    doc = _TRICKS_DOC.format(stem=spec.stem, downsample=spec.downsample, deep=deep, tiered=tiered)
    if not spec.imagenet:  # no `stem` option: keep the downsample entry only
        doc = doc[doc.index("    downsample:") :]
    return doc + _ATTENTION_DOC.format(attention=spec.attention)


def cifar_architecture(spec: ResNetSpec) -> dict[str, Option]:
    """`CifarResNet`'s `depth`, with the depths a search tries (6n + 2 or 9n + 2)."""
    per_block = 2 if spec.block == "basic" else 3
    depth = 3 * per_block * spec.depths[0] + 2
    search = (8, 14, 20, 32) if spec.block == "basic" else (11, 20, 29)
    return {"depth": Option(depth, search=search, kind=int, minimum=3 * per_block + 2)}


_IMAGENET_SUMMARY = (
    "ImageNet layout as torchvision: 7x7/2 stem and max pool, stride on the 3x3 "
    "convolution, projection shortcuts where the shape changes, no convolution bias "
    "before BatchNormalization (epsilon 1e-5)."
)
_CIFAR_SUMMARY = (
    "He et al.'s CIFAR network: a 3x3 stem and three stages of {n} basic blocks at "
    "widths 16/32/64, global average pooling and a dense classifier."
)
_PLAIN_SUMMARY = (
    " The plain baseline: the same layers with no shortcuts, for the degradation experiment."
)


def _imagenet_row(name: str, depths, num_params: int, **arguments) -> Row:
    slow = num_params > 60_000_000  # ResNet-152 and ResNet-200
    layers = (3 if arguments.get("block") == "bottleneck" else 2) * sum(depths) + 2
    arguments = {"depths": depths, **arguments}
    if arguments.get("residual", True):
        return Row(name, arguments, num_params, f"ResNet-{layers}", _IMAGENET_SUMMARY, slow=slow)
    summary = _IMAGENET_SUMMARY + _PLAIN_SUMMARY
    return Row(name, arguments, num_params, f"Plain-{layers}", summary, family="Plain")


# Each row: name, the arguments of `ResNet` that make it, its exact trainable count.
RESNET_ROWS = (
    _imagenet_row("ResNet18", (2, 2, 2, 2), 11_689_512),
    _imagenet_row("ResNet34", (3, 4, 6, 3), 21_797_672),
    _imagenet_row("ResNet50", (3, 4, 6, 3), 25_557_032, block="bottleneck"),
    _imagenet_row("ResNet101", (3, 4, 23, 3), 44_549_160, block="bottleneck"),
    _imagenet_row("ResNet152", (3, 8, 36, 3), 60_192_808, block="bottleneck"),
    _imagenet_row("ResNet200", (3, 24, 36, 3), 64_673_832, block="bottleneck"),
    _imagenet_row("Plain18", (2, 2, 2, 2), 11_515_688, residual=False),
    _imagenet_row("Plain34", (3, 4, 6, 3), 21_623_848, residual=False),
)


def _cifar_row(name: str, depth: int, num_params: int, residual: bool = True, slow=False) -> Row:
    summary = _CIFAR_SUMMARY.format(n=(depth - 2) // 6)
    kind = "ResNet" if residual else "Plain"
    return Row(
        name,
        {"depth": depth} if residual else {"depth": depth, "residual": False},
        num_params,
        f"CIFAR {kind}-{depth}",
        summary if residual else summary + _PLAIN_SUMMARY,
        slow=slow,
        family=None if residual else "Plain",
    )


# Each row: name, the `depth` of `CifarResNet` that makes it, its exact trainable count.
CIFAR_RESNET_ROWS = (
    _cifar_row("ResNet20", 20, 269_722),
    _cifar_row("ResNet32", 32, 464_154),
    _cifar_row("ResNet44", 44, 658_586),
    _cifar_row("ResNet56", 56, 853_018),
    _cifar_row("ResNet110", 110, 1_727_962),
    _cifar_row("ResNet1202", 1202, 19_421_274, slow=True),
    _cifar_row("Plain20", 20, 269_722, residual=False),
    _cifar_row("Plain32", 32, 464_154, residual=False),
    _cifar_row("Plain44", 44, 658_586, residual=False),
    _cifar_row("Plain56", 56, 853_018, residual=False),
    _cifar_row("Plain110", 110, 1_727_962, residual=False),
)


@with_application_arguments(classes=None)
def ResNet(
    depths,
    widths=None,
    block: str = "basic",
    stem: str = "imagenet",
    *,
    residual: bool = True,
    stem_width: int | None = None,
    stem_pool: str = "max",
    attention_ratio: float | None = None,
    radix: int = 0,
    avd: bool = False,
    application: dict,
    **options,
) -> keras.Model:
    """A ResNet of any stage depths and widths (He et al. 2015).

    The generic builder behind `ResNet18` ... `ResNet200`, `Plain18`/`34` and
    the pre-activation `ResNet50V2` ...: `ResNet50()` is
    `ResNet(depths=(3, 4, 6, 3), block="bottleneck")`. As keras-hub's
    `stackwise_num_blocks`/`stackwise_num_filters` or timm's
    `ResNet(block, layers)`.

    Args:
        depths: blocks per stage, e.g. `(2, 2, 2, 2)`; stage `i` after the
            first halves the resolution.
        widths: width per stage (a bottleneck's output is 4x); default 64,
            128, 256, ... with the ImageNet stem, 16, 32, 64, ... with the
            CIFAR one.
        block: `"basic"` (two 3x3 convolutions) or `"bottleneck"`
            (1x1-3x3-1x1).
        stem: `"imagenet"` (7x7/2 conv and 3x3/2 max pool; 224x224 inputs,
            1000 classes, projection shortcuts, stages named `stage2`...),
            `"deep"` / `"deep_tiered"` (three 3x3 convolutions, the bag of
            tricks' ResNet-C and timm's "t"; otherwise as `"imagenet"`) or
            `"cifar"` (one 3x3 conv; 32x32, 10 classes, option A shortcuts
            with basic blocks, stages named `stage1`...). The 7x7 and CIFAR
            stems are as wide as the first stage; the deep stems end twice
            as wide as `stem_width`.
        include_top, weights, input_tensor, input_shape, pooling,
            classifier_activation: as for `ResNet50`.
        classes: default 1000 (ImageNet stem) or 10 (CIFAR stem).
        name: the model name (default `"resnet{layers}"` or `"plain{layers}"`).
        residual: False builds the plain baseline (no shortcuts).
        stem_width: channels of the stem's first convolution (default: the
            first stage's width; half of it for the deep stems, so 32-32-64;
            ResNeSt-101/200/269 use 64).
        stem_pool: `"max"` (3x3/2 max pool) or `"conv"` (a 3x3/2 convolution
            with BN and ReLU in its place, ResNet-RS; Bello et al. 2021).
        attention_ratio: the SE block's reduction ratio with
            `attention="se"` (default 1/16; ResNet-RS 0.25).
        radix: 0, or the split-attention radix of every bottleneck's 3x3
            convolution (a `SplitAttention` layer; ResNeSt uses 2; Zhang et
            al. 2020).
        avd: with `radix`, move each strided bottleneck's stride from the
            3x3 convolution to a 3x3/2 average pool after it (ResNeSt); a
            ValueError without `radix` or with `stride_in_1x1=True`.
        **options: `shortcut`, `unit`, `shortcut_variant`, `gate_bias`,
            `stride_in_1x1` (bottlenecks), `stem` is the argument above,
            `downsample`, `attention`, `zero_init_residual`,
            `drop_path_rate`, `stochastic_depth_mode`,
            `stochastic_depth_scale`, `stochastic_depth_seed`, as for
            `ResNet50`.

    Returns:
        A functional `keras.Model`.

    Raises:
        ValueError: `depths`/`widths` are not tuples of positive integers of
            the same length, an unknown `block`/`stem`, or a bad option value.
        TypeError: an unknown option.

    Example:
        >>> resnet26 = keras_resnets.ResNet(depths=(2, 2, 2, 2), block="bottleneck")
        >>> small = keras_resnets.ResNet((1, 1, 1), widths=(8, 16, 32), stem="cifar")
        >>> resnet26d = keras_resnets.ResNet(
        ...     (2, 2, 2, 2), block="bottleneck", stem="deep", downsample="avg")
    """
    spec = resnet_spec(
        depths,
        widths,
        block,
        stem,
        residual=residual,
        stem_width=stem_width,
        stem_pool=stem_pool,
        attention=options.get("attention"),
        attention_ratio=attention_ratio,
        radix=radix,
        avd=avd,
    )
    layers = (2 if spec.block == "basic" else 3) * sum(spec.depths) + 2
    application["name"] = application["name"] or f"{'resnet' if residual else 'plain'}{layers}"
    options = check_options("ResNet", options, resnet_options(spec))
    model_name = f"ResNet(depths={spec.depths})"
    return build_resnet(spec, model_name=model_name, **application, **options)


@with_application_arguments(classes=10)
def CifarResNet(
    depth: int = 20,
    *,
    residual: bool = True,
    block: str = "basic",
    application: dict,
    **options,
) -> keras.Model:
    """A CIFAR ResNet (or plain network) of any depth 6n + 2 (or 9n + 2).

    Args:
        depth: number of weighted layers: 6n + 2 with basic blocks (20, 32,
            44, 56, 110, ...), 9n + 2 with bottleneck blocks (164, 1001, ...).
        residual: False builds the plain baseline of the same depth.
        block: `"basic"` (widths 16/32/64, option A shortcuts) or
            `"bottleneck"` (outputs 64/128/256, projection shortcuts).
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name: as for `ResNet20`.
        **options: `shortcut`, `unit`, `shortcut_variant`, `gate_bias`,
            `drop_path_rate`, `stochastic_depth_mode`, `stochastic_depth_scale`
            and `stochastic_depth_seed` as for `ResNet110`; `stride_in_1x1`
            with bottleneck blocks.

    Returns:
        A functional `keras.Model`.

    Raises:
        ValueError: `depth` does not fit the block (the message lists valid
            depths), or an option has an unknown value.

    Example:
        >>> model = keras_resnets.CifarResNet(depth=74)
        >>> r164 = keras_resnets.CifarResNet(164, block="bottleneck", unit="full_preactivation")
    """
    spec = cifar_spec(depth, residual=residual, block=block)
    options = check_options("CifarResNet", options, resnet_options(spec))
    application["name"] = application["name"] or f"{'resnet' if residual else 'plain'}{depth}"
    return build_resnet(spec, model_name=f"CifarResNet(depth={depth})", **application, **options)


# label, paper, generic builder, spec, build, options, options_doc (see `Family`)
RESNET = Family(
    "ResNet v1", HE2015, ResNet, resnet_spec, build_resnet, resnet_options, resnet_options_doc
)
CIFAR_RESNET = dataclasses.replace(
    RESNET, generic=CifarResNet, spec=cifar_spec, architecture=cifar_architecture
)

BUILDERS = {
    **register_rows(RESNET, RESNET_ROWS),
    **register_rows(CIFAR_RESNET, CIFAR_RESNET_ROWS),
}
globals().update(BUILDERS)  # ResNet18, ..., Plain110: the rows' builders

__all__ = ["CifarResNet", "ResNet", *BUILDERS]
