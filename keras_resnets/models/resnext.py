"""ResNeXt (Xie et al. 2017) and the ImageNet Wide ResNets, as ResNet specs.

A ResNeXt is a ResNet whose bottleneck 3x3 convolution is split into
`cardinality` groups of `base_width` channels (at the first stage; doubling
with each stage): a `ResNetSpec` with `cardinality` and `base_width` set,
built by the same `build_resnet`. Wide ResNet-50-2/101-2 are the same
bottlenecks with one group of twice the width (`base_width=128`), as
torchvision defines them.

The bottleneck comes in the paper's three equivalent forms (`form="a"`,
`"b"`, `"c"`; see `keras_resnets.blocks.resnext`); `copy_form_weights` (defined
there, importable from here) copies the weights of a model in one form into a
model in another.
"""

from __future__ import annotations

import dataclasses

import keras

from keras_resnets import blocks
from keras_resnets.blocks.resnext import copy_form_weights  # noqa: F401 (public here too)
from keras_resnets.layers.grouped_conv import IMPLEMENTATIONS
from keras_resnets.layers.stochastic_depth import STOCHASTIC_DEPTH_DOC, STOCHASTIC_DEPTH_OPTIONS
from keras_resnets.models.builder import application_builder
from keras_resnets.models.registry import register_alias, register_model
from keras_resnets.models.resnet import ResNetSpec, build_resnet
from keras_resnets.utils import check_choice, check_int

XIE2017 = "Xie et al. 2017"
WRN2016 = "Zagoruyko & Komodakis 2016"

__all__ = [
    "CifarResNeXt",
    "ResNeXt29_8x64d",
    "ResNeXt29_16x64d",
    "ResNeXt50",
    "ResNeXt50_32x4d",
    "ResNeXt101",
    "ResNeXt101_32x4d",
    "ResNeXt101_32x8d",
    "ResNeXt101_64x4d",
    "WideResNet50_2",
    "WideResNet101_2",
    "copy_form_weights",
]


def _imagenet(depths, cardinality, base_width) -> ResNetSpec:
    return ResNetSpec(
        block="bottleneck",
        depths=tuple(depths),
        widths=(64, 128, 256, 512),
        stem="imagenet",
        default_size=224,
        default_classes=1000,
        shortcut="projection",
        cardinality=cardinality,
        base_width=base_width,
    )


def cifar_resnext_spec(depth: int, cardinality: int, base_width: int) -> ResNetSpec:
    """The spec of the authors' CIFAR ResNeXt of `depth` = 9n + 2 layers.

    As the authors' Torch code (`models/resnext.lua`, post-activation
    bottlenecks): a 3x3 stem of 64 channels + BN + ReLU, three stages of n
    bottlenecks with outputs 256/512/1024 and inner width
    `cardinality * base_width * 2**stage`, stride 2 on the 3x3 convolution of
    stages 2 and 3, projection shortcuts where the shape changes.
    """
    check_int("depth", depth, minimum=11)
    if (depth - 2) % 9:
        valid = ", ".join(str(9 * n + 2) for n in range(1, 7))
        raise ValueError(
            f"`depth` must be 9n + 2 for CIFAR ResNeXts (3 stages of n bottlenecks), got "
            f"{depth}; valid depths are {valid}, ..."
        )
    n = (depth - 2) // 9
    return ResNetSpec(
        block="bottleneck",
        depths=(n, n, n),
        widths=(64, 128, 256),
        stem="cifar",
        default_size=32,
        default_classes=10,
        shortcut="projection",
        first_stage=1,
        stem_width=64,
        cardinality=cardinality,
        base_width=base_width,
    )


def _resnext_spec(spec: ResNetSpec, cardinality, base_width) -> ResNetSpec:
    cardinality = spec.cardinality if cardinality is None else cardinality
    base_width = spec.base_width if base_width is None else base_width
    check_int("cardinality", cardinality)
    check_int("base_width", base_width)
    spec = dataclasses.replace(spec, cardinality=cardinality, base_width=base_width)
    smallest = spec.widths[0] * base_width // 64
    if smallest < 1:
        raise ValueError(
            f"`base_width`={base_width} gives {smallest} channels per group at the first "
            f"stage (base width {spec.widths[0]} * base_width // 64); use base_width >= "
            f"{-(-64 // spec.widths[0])}."
        )
    return spec


def build_resnext(
    spec: ResNetSpec,
    *,
    model_name: str,
    cardinality: int | None = None,
    base_width: int | None = None,
    form: str = "c",
    implementation: str = "auto",
    **kwargs,
) -> keras.Model:
    """Build a ResNeXt / Wide ResNet from `spec` with the user's options.

    Args:
        spec: the variant's `ResNetSpec` (bottleneck blocks).
        model_name: registry name, for errors.
        cardinality: overrides `spec.cardinality`.
        base_width: overrides `spec.base_width`.
        form: `"a"`, `"b"` or `"c"` (see `keras_resnets.blocks.resnext`).
        implementation: `GroupedConv2D` implementation for form "c".
        **kwargs: the keras.applications arguments and `shortcut`,
            `stride_in_1x1`, passed to `build_resnet`.

    Returns:
        A functional `keras.Model`.
    """
    check_choice("form", form, blocks.FORMS)
    check_choice("implementation", implementation, IMPLEMENTATIONS)
    spec = _resnext_spec(spec, cardinality, base_width)
    return build_resnet(
        spec, model_name=model_name, form=form, implementation=implementation, **kwargs
    )


_OPTIONS_DOC = """    cardinality: groups of each 3x3 convolution (default {cardinality}).
    base_width: channels per group at the first stage (default {base_width});
        the inner width of a bottleneck of base width w is
        `(w * base_width // 64) * cardinality`.
    form: the paper's equivalent block forms: `"c"` (default, one grouped
        convolution), `"b"` (separate paths concatenated) or `"a"` (separate
        paths summed). Same function for the same weights; see
        `copy_form_weights`. Only "c" is practical for training.
    implementation: how the grouped convolutions compute: `"auto"`
        (default: the global setting, itself
        `keras_resnets.layers.grouped_conv.auto_implementation()`),
        `"native"`, `"split"` or `"custom_gradient"` (TensorFlow only). The
        weights are the same whichever is used.
    shortcut: `"projection"` (default) or `"all_projection"`.
    stride_in_1x1: put each stage's stride on the first 1x1 convolution.
"""


_OPTIONS = ("cardinality", "base_width", "form", "implementation", "shortcut", "stride_in_1x1")


def _make_builder(model_name: str, spec: ResNetSpec, title: str, summary: str):
    return application_builder(
        model_name,
        spec,
        build_resnext,
        title=title,
        summary=summary,
        options=(*_OPTIONS, *STOCHASTIC_DEPTH_OPTIONS),
        options_doc=_OPTIONS_DOC.format(cardinality=spec.cardinality, base_width=spec.base_width)
        + STOCHASTIC_DEPTH_DOC,
    )


def _define(model_name, spec, title, summary, num_params, family="ResNeXt", paper=XIE2017):
    builder = _make_builder(model_name, spec, title, summary)
    return register_model(
        family=family,
        input_size=spec.default_size,
        num_params=num_params,
        paper=paper,
        slow=num_params > 40_000_000,
    )(builder)


_IMAGENET = (
    "ImageNet layout as torchvision: ResNet's 7x7/2 stem and stages, bottlenecks "
    "whose 3x3 convolution (carrying the stride) is a {card}-group `GroupedConv2D` "
    "of {inner} channels at the first stage, projection shortcuts where the shape changes."
)
_WIDE = (
    "ImageNet layout as torchvision's wide_resnet: ResNet-{depth}'s bottlenecks with "
    "an inner 3x3 convolution twice as wide (128/256/512/1024 channels)."
)
_CIFAR = (
    "CIFAR layout of the authors' Torch code: 3x3 stem of 64 channels, three stages "
    "of 3 post-activation bottlenecks (outputs 256/512/1024) with {card}-group 3x3 "
    "convolutions of {inner}/{inner2}/{inner4} channels, global average pool, classifier."
)

ResNeXt50 = _define(
    "ResNeXt50",
    _imagenet((3, 4, 6, 3), 32, 4),
    "ResNeXt-50 (32x4d)",
    _IMAGENET.format(card=32, inner=128),
    25_028_904,
)
ResNeXt101 = _define(
    "ResNeXt101",
    _imagenet((3, 4, 23, 3), 32, 4),
    "ResNeXt-101 (32x4d)",
    _IMAGENET.format(card=32, inner=128),
    44_177_704,
)
ResNeXt101_32x8d = _define(
    "ResNeXt101_32x8d",
    _imagenet((3, 4, 23, 3), 32, 8),
    "ResNeXt-101 (32x8d)",
    _IMAGENET.format(card=32, inner=256),
    88_791_336,
)
ResNeXt101_64x4d = _define(
    "ResNeXt101_64x4d",
    _imagenet((3, 4, 23, 3), 64, 4),
    "ResNeXt-101 (64x4d)",
    _IMAGENET.format(card=64, inner=256),
    83_455_272,
)
WideResNet50_2 = _define(
    "WideResNet50_2",
    _imagenet((3, 4, 6, 3), 1, 128),
    "Wide ResNet-50-2",
    _WIDE.format(depth=50),
    68_883_240,
    family="Wide ResNet",
    paper=WRN2016,
)
WideResNet101_2 = _define(
    "WideResNet101_2",
    _imagenet((3, 4, 23, 3), 1, 128),
    "Wide ResNet-101-2",
    _WIDE.format(depth=101),
    126_886_696,
    family="Wide ResNet",
    paper=WRN2016,
)
ResNeXt29_8x64d = _define(
    "ResNeXt29_8x64d",
    cifar_resnext_spec(29, 8, 64),
    "CIFAR ResNeXt-29 (8x64d)",
    _CIFAR.format(card=8, inner=512, inner2=1024, inner4=2048),
    34_426_698,
)
ResNeXt29_16x64d = _define(
    "ResNeXt29_16x64d",
    cifar_resnext_spec(29, 16, 64),
    "CIFAR ResNeXt-29 (16x64d)",
    _CIFAR.format(card=16, inner=1024, inner2=2048, inner4=4096),
    68_155_210,
)

ResNeXt50_32x4d = ResNeXt50
ResNeXt101_32x4d = ResNeXt101
register_alias("ResNeXt50_32x4d", "ResNeXt50")
register_alias("ResNeXt101_32x4d", "ResNeXt101")


def CifarResNeXt(
    depth: int = 29,
    cardinality: int = 8,
    base_width: int = 64,
    include_top: bool = True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes: int = 10,
    classifier_activation="softmax",
    name: str | None = None,
    **options,
) -> keras.Model:
    """A CIFAR ResNeXt of any depth 9n + 2, cardinality and base width.

    The authors' CIFAR layout (see `ResNeXt29_8x64d`).

    Args:
        depth: number of weighted layers, 9n + 2 (11, 20, 29, 38, ...).
        cardinality: groups of each 3x3 convolution.
        base_width: channels per group at the first stage (doubling per stage).
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name: as for `ResNet20`.
        **options: `form`, `implementation`, `shortcut`, `stride_in_1x1`,
            `drop_path_rate`, `stochastic_depth_mode`, `stochastic_depth_scale`,
            `stochastic_depth_seed` as for `ResNeXt29_8x64d`.

    Returns:
        A functional `keras.Model`.

    Raises:
        ValueError: `depth` is not 9n + 2, or cardinality/base_width are not
            positive integers.

    Example:
        >>> model = keras_resnets.CifarResNeXt(depth=29, cardinality=4, base_width=32)
    """
    check_int("cardinality", cardinality)
    check_int("base_width", base_width)
    spec = cifar_resnext_spec(depth, cardinality, base_width)
    return build_resnext(
        spec,
        model_name=f"CifarResNeXt(depth={depth})",
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name or f"resnext{depth}_{cardinality}x{base_width}d",
        **options,
    )
