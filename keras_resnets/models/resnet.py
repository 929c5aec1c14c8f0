"""ResNet v1 (He et al. 2015) and the plain baselines, ImageNet and CIFAR.

Variants are rows of data (`ResNetSpec`); one function, `build_resnet`,
turns a spec and the user's options into a model through the shared
`build_model`.
"""

from __future__ import annotations

import dataclasses

import keras

from keras_resnets import blocks
from keras_resnets.layers.stochastic_depth import (
    STOCHASTIC_DEPTH_DOC,
    STOCHASTIC_DEPTH_OPTIONS,
    stochastic_depth_schedule,
)
from keras_resnets.models.builder import application_builder, build_model, stage_info
from keras_resnets.models.registry import register_model
from keras_resnets.utils import check_choice, check_int, find_layer, iter_layers
from keras_resnets.weights.pretrained import available_weights

HE2015 = "He et al. 2015"

__all__ = [
    "CifarResNet",
    "Plain18",
    "Plain20",
    "Plain32",
    "Plain34",
    "Plain44",
    "Plain56",
    "Plain110",
    "ResNet18",
    "ResNet20",
    "ResNet32",
    "ResNet34",
    "ResNet44",
    "ResNet50",
    "ResNet56",
    "ResNet101",
    "ResNet110",
    "ResNet152",
    "ResNet200",
    "ResNet1202",
]


@dataclasses.dataclass(frozen=True)
class ResNetSpec:
    """One ResNet variant.

    Attributes:
        block: `"basic"` or `"bottleneck"`.
        depths: blocks per stage.
        widths: base width per stage (bottleneck output is 4x).
        stem: `"imagenet"` (7x7/2 + max pool) or `"cifar"` (3x3).
        default_size: default input size.
        default_classes: default number of classes.
        shortcut: default shortcut option (`"zero_pad"`, `"projection"`,
            `"all_projection"`).
        residual: False for the plain baselines.
        first_stage: index of the first stage in layer names (ImageNet
            stages are `stage2`..`stage5` as C2..C5; CIFAR `stage1`..`stage3`).
        stem_width: channels of the stem convolution.
        cardinality: groups of each bottleneck's 3x3 convolution (ResNeXt;
            1 for ResNet).
        base_width: channels per group at the first stage, for a base width
            of 64 (ResNeXt's "d"; 64 with cardinality 1 is ResNet, 128 is
            Wide ResNet-50-2). A bottleneck of base width `w` has an inner
            width of `(w * base_width // 64) * cardinality`, as torchvision.
        unit: the residual unit (`blocks.UNITS`): `"original"` for v1,
            `"full_preactivation"` for the pre-activation networks.
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
    stem_width: int = 64
    unit: str = "original"
    cardinality: int = 1
    base_width: int = 64

    def inner_width(self, width: int) -> int:
        """Channels of the 3x3 convolution of a bottleneck of base width `width`."""
        return (width * self.base_width // 64) * self.cardinality

    @property
    def total_stride(self) -> int:
        stem_stride = 4 if self.stem == "imagenet" else 1
        return stem_stride * 2 ** (len(self.depths) - 1)


def _imagenet(block, depths, residual=True):
    return ResNetSpec(
        block=block,
        depths=tuple(depths),
        widths=(64, 128, 256, 512),
        stem="imagenet",
        default_size=224,
        default_classes=1000,
        shortcut="projection",
        residual=residual,
    )


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
    layers_per_block = 2 if block == "basic" else 3
    step = 3 * layers_per_block
    check_int(argument, depth, minimum=step + 2)
    if (depth - 2) % step:
        valid = ", ".join(str(step * n + 2) for n in range(1, 8))
        raise ValueError(
            f"`{argument}` must be {step}n + 2 for CIFAR ResNets with {block} blocks "
            f"(3 stages of n blocks of {layers_per_block} layers), got {depth}; "
            f"valid depths are {valid}, ..."
        )
    n = (depth - 2) // step
    return ResNetSpec(
        block=block,
        depths=(n, n, n),
        widths=(16, 32, 64),
        stem="cifar",
        default_size=32,
        default_classes=10,
        shortcut="zero_pad" if block == "basic" else "projection",
        residual=residual,
        first_stage=1,
        stem_width=16,
        unit=unit,
    )


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
    )
    schedule = iter(stochastic_depth or [None] * sum(spec.depths))
    is_preact = config.unit in blocks.PREACT_UNITS
    imagenet = spec.stem == "imagenet"

    def body(x):
        if imagenet:
            x = blocks.imagenet_stem(x, spec.stem_width)
        else:
            x = blocks.cifar_stem(x, spec.stem_width, activate=not is_preact)
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


def _check_pretrained_options(model_name: str, weights: str, **options) -> None:
    """Pretrained weights fit the default layers: refuse options that change them."""
    changed = [f"{key}={value!r}" for key, (value, default) in options.items() if value != default]
    if changed:
        raise ValueError(
            f"`weights={weights!r}` are for {model_name} with its default options; "
            f"{', '.join(changed)} changes its layers. Build the default model with the "
            "weights (for ResNeXt forms 'a'/'b', then copy them with `copy_form_weights`)."
        )


def build_resnet(
    spec: ResNetSpec,
    *,
    model_name: str,
    include_top: bool = True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes: int | None = None,
    classifier_activation="softmax",
    name: str | None = None,
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
) -> keras.Model:
    """Build a ResNet (any residual unit), ResNeXt or plain network from its spec."""
    shortcut = spec.shortcut if shortcut is None else shortcut
    unit = spec.unit if unit is None else unit
    check_choice("shortcut", shortcut, blocks.SHORTCUTS)
    check_choice("unit", unit, blocks.UNITS)
    check_choice("shortcut_variant", shortcut_variant, blocks.SHORTCUT_VARIANTS)
    schedule = stochastic_depth_schedule(
        sum(spec.depths),
        drop_path_rate,
        mode=stochastic_depth_mode,
        scale=stochastic_depth_scale,
        seed=stochastic_depth_seed,
    )
    if drop_path_rate and not spec.residual:
        raise ValueError(
            f"`drop_path_rate` must be 0 for {model_name}: a plain network has no "
            f"shortcuts, so a dropped block would cut the network; got {drop_path_rate!r}."
        )
    if drop_path_rate and shortcut_variant not in blocks.ADDITIVE_VARIANTS:
        raise ValueError(
            f"`drop_path_rate` must be 0 with `shortcut_variant={shortcut_variant!r}`: "
            "stochastic depth keeps the shortcut of a dropped block, which needs an "
            f"additive variant ({', '.join(repr(v) for v in blocks.ADDITIVE_VARIANTS)}); "
            f"got {drop_path_rate!r}."
        )
    if not isinstance(gate_bias, (int, float)) or isinstance(gate_bias, bool):
        raise ValueError(f"`gate_bias` must be a number, got {gate_bias!r}.")
    if shortcut_variant != "identity" and not spec.residual:
        raise ValueError(
            f"`shortcut_variant={shortcut_variant!r}` needs a residual network; "
            f"{model_name} is a plain network without shortcuts."
        )
    if not isinstance(stride_in_1x1, bool):
        raise ValueError(f"`stride_in_1x1` must be True or False, got {stride_in_1x1!r}.")
    if stride_in_1x1 and spec.block != "bottleneck":
        raise ValueError(
            "`stride_in_1x1=True` applies to bottleneck networks only; "
            f"{model_name} uses basic blocks."
        )
    if isinstance(weights, str) and weights in available_weights(model_name):
        _check_pretrained_options(
            model_name,
            weights,
            shortcut=(shortcut, spec.shortcut),
            stride_in_1x1=(stride_in_1x1, False),
            unit=(unit, spec.unit),
            shortcut_variant=(shortcut_variant, "identity"),
            form=(form, "c"),
        )
    if drop_path_rate and isinstance(weights, str) and weights in available_weights(model_name):
        # Pretrained weights are stored for the flat graph: load them into the
        # flat network, then copy them by name into the stochastic-depth one.
        common = dict(
            model_name=model_name,
            include_top=include_top,
            pooling=pooling,
            classes=classes,
            classifier_activation=classifier_activation,
            name=name,
            shortcut=shortcut,
            stride_in_1x1=stride_in_1x1,
            unit=unit,
            shortcut_variant=shortcut_variant,
            gate_bias=gate_bias,
            form=form,
            implementation=implementation,
        )
        shape = input_shape if input_tensor is None else tuple(input_tensor.shape[1:])
        flat = build_resnet(spec, weights=weights, input_shape=shape, **common)
        model = build_resnet(
            spec,
            input_tensor=input_tensor,
            input_shape=input_shape,
            drop_path_rate=drop_path_rate,
            stochastic_depth_mode=stochastic_depth_mode,
            stochastic_depth_scale=stochastic_depth_scale,
            stochastic_depth_seed=stochastic_depth_seed,
            **common,
        )
        for layer in iter_layers(flat):
            if layer.weights:
                find_layer(model, layer.name).set_weights(layer.get_weights())
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
        ),
        name=name or model_name.lower(),
        model_name=model_name,
        default_size=spec.default_size,
        min_size=spec.total_stride,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=spec.default_classes if classes is None else classes,
        classifier_activation=classifier_activation,
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

_STRIDE_DOC = """    stride_in_1x1: put each stage's stride on the first 1x1 convolution
        (the original Caffe model) instead of the 3x3 (torchvision, default).
"""


_OPTIONS = ("shortcut", "unit", "shortcut_variant", "gate_bias")


def _make_builder(model_name: str, spec: ResNetSpec, title: str, summary: str):
    # Plain networks take the stochastic-depth options too, so that asking
    # for it gets the ValueError that explains why a plain net cannot.
    options = list(_OPTIONS)
    options_doc = _SHORTCUT_DOC.format(default=spec.shortcut) + _UNIT_DOC.format(default=spec.unit)
    if spec.block == "bottleneck":
        options.append("stride_in_1x1")
        options_doc += _STRIDE_DOC
    options += STOCHASTIC_DEPTH_OPTIONS
    if spec.residual:
        options_doc += STOCHASTIC_DEPTH_DOC
    return application_builder(
        model_name,
        spec,
        build_resnet,
        title=title,
        summary=summary,
        options=options,
        options_doc=options_doc,
    )


def _define(model_name, spec, title, summary, num_params, slow=False):
    family = "ResNet v1" if spec.residual else "Plain"
    builder = _make_builder(model_name, spec, title, summary)
    return register_model(
        family=family,
        input_size=spec.default_size,
        num_params=num_params,
        paper=HE2015,
        slow=slow,
    )(builder)


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

ResNet18 = _define(
    "ResNet18", _imagenet("basic", (2, 2, 2, 2)), "ResNet-18", _IMAGENET_SUMMARY, 11_689_512
)
ResNet34 = _define(
    "ResNet34", _imagenet("basic", (3, 4, 6, 3)), "ResNet-34", _IMAGENET_SUMMARY, 21_797_672
)
ResNet50 = _define(
    "ResNet50", _imagenet("bottleneck", (3, 4, 6, 3)), "ResNet-50", _IMAGENET_SUMMARY, 25_557_032
)
ResNet101 = _define(
    "ResNet101", _imagenet("bottleneck", (3, 4, 23, 3)), "ResNet-101", _IMAGENET_SUMMARY, 44_549_160
)
ResNet152 = _define(
    "ResNet152",
    _imagenet("bottleneck", (3, 8, 36, 3)),
    "ResNet-152",
    _IMAGENET_SUMMARY,
    60_192_808,
    slow=True,
)
ResNet200 = _define(
    "ResNet200",
    _imagenet("bottleneck", (3, 24, 36, 3)),
    "ResNet-200",
    _IMAGENET_SUMMARY,
    64_673_832,
    slow=True,
)
Plain18 = _define(
    "Plain18",
    _imagenet("basic", (2, 2, 2, 2), residual=False),
    "Plain-18",
    _IMAGENET_SUMMARY + _PLAIN_SUMMARY,
    11_515_688,
)
Plain34 = _define(
    "Plain34",
    _imagenet("basic", (3, 4, 6, 3), residual=False),
    "Plain-34",
    _IMAGENET_SUMMARY + _PLAIN_SUMMARY,
    21_623_848,
)

ResNet20 = _define(
    "ResNet20", cifar_spec(20), "CIFAR ResNet-20", _CIFAR_SUMMARY.format(n=3), 269_722
)
ResNet32 = _define(
    "ResNet32", cifar_spec(32), "CIFAR ResNet-32", _CIFAR_SUMMARY.format(n=5), 464_154
)
ResNet44 = _define(
    "ResNet44", cifar_spec(44), "CIFAR ResNet-44", _CIFAR_SUMMARY.format(n=7), 658_586
)
ResNet56 = _define(
    "ResNet56", cifar_spec(56), "CIFAR ResNet-56", _CIFAR_SUMMARY.format(n=9), 853_018
)
ResNet110 = _define(
    "ResNet110", cifar_spec(110), "CIFAR ResNet-110", _CIFAR_SUMMARY.format(n=18), 1_727_962
)
ResNet1202 = _define(
    "ResNet1202",
    cifar_spec(1202),
    "CIFAR ResNet-1202",
    _CIFAR_SUMMARY.format(n=200),
    19_421_274,
    slow=True,
)
Plain20 = _define(
    "Plain20",
    cifar_spec(20, residual=False),
    "CIFAR Plain-20",
    _CIFAR_SUMMARY.format(n=3) + _PLAIN_SUMMARY,
    269_722,
)
Plain32 = _define(
    "Plain32",
    cifar_spec(32, residual=False),
    "CIFAR Plain-32",
    _CIFAR_SUMMARY.format(n=5) + _PLAIN_SUMMARY,
    464_154,
)
Plain44 = _define(
    "Plain44",
    cifar_spec(44, residual=False),
    "CIFAR Plain-44",
    _CIFAR_SUMMARY.format(n=7) + _PLAIN_SUMMARY,
    658_586,
)
Plain56 = _define(
    "Plain56",
    cifar_spec(56, residual=False),
    "CIFAR Plain-56",
    _CIFAR_SUMMARY.format(n=9) + _PLAIN_SUMMARY,
    853_018,
)
Plain110 = _define(
    "Plain110",
    cifar_spec(110, residual=False),
    "CIFAR Plain-110",
    _CIFAR_SUMMARY.format(n=18) + _PLAIN_SUMMARY,
    1_727_962,
)


def CifarResNet(
    depth: int = 20,
    include_top: bool = True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes: int = 10,
    classifier_activation="softmax",
    name: str | None = None,
    residual: bool = True,
    block: str = "basic",
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
    prefix = "resnet" if residual else "plain"
    return build_resnet(
        spec,
        model_name=f"CifarResNet(depth={depth})",
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name or f"{prefix}{depth}",
        **options,
    )
