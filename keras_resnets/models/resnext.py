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
from keras_resnets.layers.stochastic_depth import STOCHASTIC_DEPTH_DOC
from keras_resnets.models.application import (
    check_depth,
    check_options,
    stochastic_depth_options,
    with_application_arguments,
)
from keras_resnets.models.registry import Family, Option, Row, register_rows
from keras_resnets.models.resnet import (
    ResNetSpec,
    build_resnet,
    resnet_options,
    resnet_spec,
    trick_options,
    trick_options_doc,
)
from keras_resnets.utils import check_choice, check_int

XIE2017 = "Xie et al. 2017"
WRN2016 = "Zagoruyko & Komodakis 2016"


def resnext_spec(
    depths, cardinality: int, base_width: int, widths=None, stem: str = "imagenet", **tricks
) -> ResNetSpec:
    """The spec of an ImageNet ResNeXt (torchvision layout) from its arguments.

    `stem` and `tricks` (`downsample`, `attention`, ...) are `resnet_spec`'s
    (SE-ResNeXt is `attention="se"`).
    """
    return resnet_spec(
        depths,
        widths,
        "bottleneck",
        stem,
        cardinality=cardinality,
        base_width=base_width,
        **tricks,
    )


def cifar_resnext_spec(depth: int = 29, cardinality: int = 8, base_width: int = 64) -> ResNetSpec:
    """The spec of the authors' CIFAR ResNeXt of `depth` = 9n + 2 layers.

    As the authors' Torch code (`models/resnext.lua`, post-activation
    bottlenecks): a 3x3 stem of 64 channels + BN + ReLU, three stages of n
    bottlenecks with outputs 256/512/1024 and inner width
    `cardinality * base_width * 2**stage`, stride 2 on the 3x3 convolution of
    stages 2 and 3, projection shortcuts where the shape changes.
    """
    layout = "CIFAR ResNeXts (3 stages of n bottlenecks)"
    n = check_depth(depth, step=9, extra=2, layout=layout)
    return resnet_spec(
        (n, n, n),
        (64, 128, 256),
        "bottleneck",
        "cifar",
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


def _generic_options(spec: ResNetSpec) -> dict[str, Option]:
    """What the generic builders take: every option of `build_resnet` and `build_resnext`."""
    return {**resnext_options(spec), **resnet_options(spec)}


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


def resnext_options(spec: ResNetSpec) -> dict[str, Option]:
    """The options of a ResNeXt / Wide ResNet builder, with defaults and search values.

    The three forms compute the same function and the implementations the
    same values, so a search tries neither.
    """
    return {
        "cardinality": Option(spec.cardinality, kind=int, minimum=1),
        "base_width": Option(spec.base_width, kind=int, minimum=1),
        "form": Option("c", blocks.FORMS),
        "implementation": Option("auto", IMPLEMENTATIONS),
        "shortcut": Option(
            "projection", ("projection", "all_projection"), ("projection", "all_projection")
        ),
        "stride_in_1x1": Option(False, (False, True), (False, True), kind=bool),
        **trick_options(spec),
        **stochastic_depth_options(),
    }


def _resnext_options_doc(spec: ResNetSpec) -> str:
    doc = _OPTIONS_DOC.format(cardinality=spec.cardinality, base_width=spec.base_width)
    return doc + trick_options_doc(spec) + STOCHASTIC_DEPTH_DOC


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


def _imagenet(name, depths, card, width, num_params, *aliases) -> Row:
    summary = _IMAGENET.format(card=card, inner=card * width)
    arguments = {"depths": depths, "cardinality": card, "base_width": width}
    title = f"ResNeXt-{3 * sum(depths) + 2} ({card}x{width}d)"
    slow = num_params > 40_000_000
    return Row(name, arguments, num_params, title, summary, slow=slow, aliases=aliases)


def _wide(name, depths, num_params) -> Row:
    arguments = {"depths": depths, "cardinality": 1, "base_width": 128}
    depth = 3 * sum(depths) + 2
    summary = _WIDE.format(depth=depth)
    title = f"Wide ResNet-{depth}-2"
    wide = {"family": "Wide ResNet", "paper": WRN2016, "slow": num_params > 40_000_000}
    return Row(name, arguments, num_params, title, summary, **wide)


def _cifar(card: int, width: int, num_params: int) -> Row:
    inner = card * width
    summary = _CIFAR.format(card=card, inner=inner, inner2=2 * inner, inner4=4 * inner)
    name = f"ResNeXt29_{card}x{width}d"
    arguments = {"cardinality": card, "base_width": width}
    title = f"CIFAR ResNeXt-29 ({card}x{width}d)"
    return Row(name, arguments, num_params, title, summary, slow=num_params > 40_000_000)


# Each row: name, the arguments of `ResNeXt` that make it, its exact trainable count.
RESNEXT_ROWS = (
    _imagenet("ResNeXt50", (3, 4, 6, 3), 32, 4, 25_028_904, "ResNeXt50_32x4d"),
    _imagenet("ResNeXt101", (3, 4, 23, 3), 32, 4, 44_177_704, "ResNeXt101_32x4d"),
    _imagenet("ResNeXt101_32x8d", (3, 4, 23, 3), 32, 8, 88_791_336),
    _imagenet("ResNeXt101_64x4d", (3, 4, 23, 3), 64, 4, 83_455_272),
    _wide("WideResNet50_2", (3, 4, 6, 3), 68_883_240),
    _wide("WideResNet101_2", (3, 4, 23, 3), 126_886_696),
)
# Each row: name, the arguments of `CifarResNeXt` that make it, its exact trainable count.
CIFAR_RESNEXT_ROWS = (
    _cifar(8, 64, 34_426_698),
    _cifar(16, 64, 68_155_210),
)


@with_application_arguments(classes=1000)
def ResNeXt(
    depths=(3, 4, 6, 3),
    cardinality: int = 32,
    base_width: int = 4,
    widths=None,
    *,
    application: dict,
    **options,
) -> keras.Model:
    """An ImageNet ResNeXt of any stage depths, cardinality and base width.

    The generic builder behind `ResNeXt50` ... and the ImageNet Wide ResNets:
    `ResNeXt101_32x8d()` is `ResNeXt((3, 4, 23, 3), cardinality=32,
    base_width=8)` and `WideResNet50_2()` is `ResNeXt(cardinality=1,
    base_width=128)` (torchvision's `groups` and `width_per_group`).

    Args:
        depths: bottlenecks per stage (default ResNeXt-50's `(3, 4, 6, 3)`).
        cardinality: groups of each 3x3 convolution (default 32).
        base_width: channels per group at the first stage (default 4); a
            bottleneck of base width w has an inner width of
            `(w * base_width // 64) * cardinality`.
        widths: base width per stage (default 64, 128, 256, ...).
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation: as for `ResNeXt50`.
        name: the model name (default `"resnext{layers}_{cardinality}x{base_width}d"`).
        **options: `form`, `implementation`, `shortcut`, `stride_in_1x1`,
            `stem`, `downsample`, `attention`, `zero_init_residual`,
            `drop_path_rate`, `stochastic_depth_mode`, `stochastic_depth_scale`,
            `stochastic_depth_seed` as for `ResNeXt50`; `unit`,
            `shortcut_variant` and `gate_bias` as for `ResNet50` (the
            paper's ResNeXt is `unit="original"`, the only unit of forms a/b).

    Returns:
        A functional `keras.Model`.

    Raises:
        ValueError: bad `depths`/`widths`, `cardinality`/`base_width` not
            positive integers, or a bad option value.

    Example:
        >>> model = keras_resnets.ResNeXt((2, 2, 2, 2), cardinality=8, base_width=8)
    """
    spec = resnext_spec(depths, cardinality, base_width, widths)
    layers = 3 * sum(spec.depths) + 2
    application["name"] = application["name"] or f"resnext{layers}_{cardinality}x{base_width}d"
    options = check_options("ResNeXt", options, _generic_options(spec))
    model_name = f"ResNeXt(depths={spec.depths})"
    return build_resnext(spec, model_name=model_name, **application, **options)


@with_application_arguments(classes=10)
def CifarResNeXt(
    depth: int = 29,
    cardinality: int = 8,
    base_width: int = 64,
    *,
    application: dict,
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
        **options: the options of `ResNeXt` (`form`, `unit`, stochastic
            depth, ...).

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
    options = check_options("CifarResNeXt", options, _generic_options(spec))
    application["name"] = application["name"] or f"resnext{depth}_{cardinality}x{base_width}d"
    model_name = f"CifarResNeXt(depth={depth})"
    return build_resnext(spec, model_name=model_name, **application, **options)


# label, paper, generic builder, spec, build, options, options_doc (see `Family`)
RESNEXT = Family(
    "ResNeXt", XIE2017, ResNeXt, resnext_spec, build_resnext, resnext_options, _resnext_options_doc
)
CIFAR_RESNEXT = dataclasses.replace(
    RESNEXT,
    generic=CifarResNeXt,
    spec=cifar_resnext_spec,
    architecture=lambda spec: {
        "cardinality": Option(spec.cardinality, search=(4, 8, 16), kind=int, minimum=1)
    },
)

BUILDERS = {
    **register_rows(RESNEXT, RESNEXT_ROWS),
    **register_rows(CIFAR_RESNEXT, CIFAR_RESNEXT_ROWS),
}
globals().update(BUILDERS)  # ResNeXt50, ..., ResNeXt29_16x64d: the rows' builders

__all__ = ["CifarResNeXt", "ResNeXt", "copy_form_weights", *BUILDERS]
