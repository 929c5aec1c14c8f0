"""Highway networks (Srivastava et al. 2015) in the CIFAR ResNet layout.

A highway layer is one transform H (3x3 conv + BN + ReLU) whose output is
mixed with its carried input by a learned gate: `y = H(x) T(x) + x (1 - T(x))`
(`keras_resnets.layers.Highway`). ResNet is the special case with both gates
held open (`y = H(x) + x`), the plain network the case with the carry closed
(`y = H(x)`).
"""

from __future__ import annotations

import keras

from keras_resnets import blocks
from keras_resnets.layers.highway import default_transform_bias
from keras_resnets.models.builder import application_builder, build_model, stage_info
from keras_resnets.models.registry import register_model
from keras_resnets.models.resnet import ResNetSpec
from keras_resnets.utils import check_choice, check_int

SRIVASTAVA2015 = "Srivastava et al. 2015"

__all__ = ["CifarHighwayNet", "HighwayNet19", "HighwayNet32"]


def highway_spec(depth: int, argument: str = "depth") -> ResNetSpec:
    """The layout of a `depth`-layer CIFAR highway network.

    `depth` counts the stem convolution, the highway layers and the
    classifier, so there are `depth - 2` highway layers, split over the three
    stages (widths 16/32/64) as evenly as possible, later stages taking the
    remainder: 19 layers give (5, 6, 6), 32 layers (10, 10, 10).
    """
    check_int(argument, depth, minimum=5)
    layers = depth - 2
    base, extra = divmod(layers, 3)
    depths = tuple(base + (1 if stage >= 3 - extra else 0) for stage in range(3))
    return ResNetSpec(
        block="highway",
        depths=depths,
        widths=(16, 32, 64),
        stem="cifar",
        default_size=32,
        default_classes=10,
        shortcut="zero_pad",
        first_stage=1,
        stem_width=16,
    )


def highway_body(
    spec: ResNetSpec,
    *,
    coupled: bool,
    transform_bias: float,
    carry_bias: float | None,
    gate_kernel_size: int,
    shortcut: str,
):
    """Return `body(x) -> (features, feature_info)`: the CIFAR stem and the highway stages."""

    def body(x):
        x = blocks.cifar_stem(x, spec.stem_width)
        feature_info = [stage_info("stem", x, 1)]
        for stage_index, (depth, width) in enumerate(zip(spec.depths, spec.widths, strict=True)):
            for layer_index in range(depth):
                x = blocks.highway_layer(
                    x,
                    width,
                    strides=2 if stage_index > 0 and layer_index == 0 else 1,
                    name=f"stage{stage_index + spec.first_stage}_block{layer_index + 1}",
                    shortcut=shortcut,
                    coupled=coupled,
                    transform_bias=transform_bias,
                    carry_bias=carry_bias,
                    kernel_size=gate_kernel_size,
                )
            stage = f"stage{stage_index + spec.first_stage}"
            feature_info.append(stage_info(stage, x, 2**stage_index))
        return x, feature_info

    return body


def _number_or_none(argument, value):
    if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        raise ValueError(f"`{argument}` must be a number or None, got {value!r}.")
    return None if value is None else float(value)


def CifarHighwayNet(
    depth: int = 32,
    include_top: bool = True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes: int = 10,
    classifier_activation="softmax",
    name: str | None = None,
    coupled: bool = True,
    transform_bias: float | None = None,
    carry_bias: float | None = None,
    gate_kernel_size: int = 3,
    shortcut: str = "zero_pad",
) -> keras.Model:
    """A CIFAR highway network of `depth` layers in the ResNet stage layout.

    A 3x3 stem (16 channels, BN, ReLU), `depth - 2` highway layers in three
    stages at widths 16/32/64 (the first layer of stages 2 and 3 has stride
    2 and carries its input through the option A zero-padded shortcut), global
    average pooling and a dense classifier. Each highway layer is one 3x3
    conv + BN + ReLU transform H gated by `Highway` (3x3 gate convolutions).

    Args:
        depth: total layers (stem + highway layers + classifier), at least 5.
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name: as for `ResNet20`.
        coupled: True: `y = H T + x (1 - T)`; False: a separate carry gate,
            `y = H T + x C`.
        transform_bias: initial transform-gate bias; default by depth as
            Srivastava et al.: -1 up to 10 layers, -2 up to 20, -3 beyond.
        carry_bias: initial carry-gate bias with `coupled=False` (default
            `-transform_bias`).
        gate_kernel_size: kernel size of the gate convolutions (3).
        shortcut: how the carry changes shape at stage transitions:
            `"zero_pad"` (option A, default) or `"projection"` (1x1 conv + BN).

    Returns:
        A functional `keras.Model`.

    Example:
        >>> model = keras_resnets.CifarHighwayNet(depth=14, coupled=False)
    """
    spec = highway_spec(depth)
    check_choice("shortcut", shortcut, ("zero_pad", "projection"))
    if not isinstance(coupled, bool):
        raise ValueError(f"`coupled` must be True or False, got {coupled!r}.")
    transform_bias = _number_or_none("transform_bias", transform_bias)
    if transform_bias is None:
        transform_bias = default_transform_bias(depth)
    carry_bias = _number_or_none("carry_bias", carry_bias)
    check_int("gate_kernel_size", gate_kernel_size)
    if gate_kernel_size % 2 == 0:
        raise ValueError(f"`gate_kernel_size` must be odd, got {gate_kernel_size}.")
    return build_model(
        body=highway_body(
            spec,
            coupled=coupled,
            transform_bias=transform_bias,
            carry_bias=carry_bias,
            gate_kernel_size=gate_kernel_size,
            shortcut=shortcut,
        ),
        name=name or f"highway{depth}",
        model_name=f"CifarHighwayNet(depth={depth})",
        default_size=spec.default_size,
        min_size=spec.total_stride,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
    )


_OPTIONS_DOC = """    coupled, transform_bias, carry_bias, gate_kernel_size, shortcut: as for
        `CifarHighwayNet`.
"""


def _define(depth: int, num_params: int):
    model_name = f"HighwayNet{depth}"
    spec = highway_spec(depth)

    def build(spec, *, model_name, name, **kwargs):
        return CifarHighwayNet(depth, name=name or model_name.lower(), **kwargs)

    builder = application_builder(
        model_name,
        spec,
        build,
        title=f"CIFAR highway network of {depth} layers (Srivastava et al. 2015)",
        summary=(
            f"A 3x3 stem, {depth - 2} highway layers in stages of {spec.depths} at widths "
            "16/32/64, global average pooling and a dense classifier; transform-gate bias "
            f"{default_transform_bias(depth):g} by default. See `CifarHighwayNet`."
        ),
        options=("coupled", "transform_bias", "carry_bias", "gate_kernel_size", "shortcut"),
        options_doc=_OPTIONS_DOC,
        example="coupled=False",
    )
    return register_model(
        family="Highway",
        input_size=32,
        num_params=num_params,
        paper=SRIVASTAVA2015,
    )(builder)


HighwayNet19 = _define(19, 556_042)
HighwayNet32 = _define(32, 949_114)
