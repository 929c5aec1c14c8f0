"""Highway networks (Srivastava et al. 2015) in the CIFAR ResNet layout.

A highway layer is one transform H (3x3 conv + BN + ReLU) whose output is
mixed with its carried input by a learned gate: `y = H(x) T(x) + x (1 - T(x))`
(`keras_resnets.layers.Highway`). ResNet is the special case with both gates
held open (`y = H(x) + x`), the plain network the case with the carry closed
(`y = H(x)`).
"""

from __future__ import annotations

import dataclasses

import keras

from keras_resnets import blocks
from keras_resnets.layers.highway import default_transform_bias
from keras_resnets.models.application import with_application_arguments
from keras_resnets.models.builder import build_model, stage_info
from keras_resnets.models.registry import Family, Option, Row, check_values, register_rows
from keras_resnets.utils import check_int

SRIVASTAVA2015 = "Srivastava et al. 2015"


@dataclasses.dataclass(frozen=True)
class HighwaySpec:
    """One CIFAR highway network.

    Attributes:
        depth: total layers (stem + highway layers + classifier).
        depths: highway layers per stage.
        widths: channels per stage (16/32/64).
        stem_width: channels of the stem convolution.
        first_stage: index of the first stage in layer names.
        default_size: default input size (32).
        default_classes: default number of classes (10).
    """

    depth: int
    depths: tuple[int, ...]
    widths: tuple[int, ...] = (16, 32, 64)
    stem_width: int = 16
    first_stage: int = 1
    default_size: int = 32
    default_classes: int = 10

    @property
    def total_stride(self) -> int:
        return 2 ** (len(self.depths) - 1)


def highway_spec(depth: int, argument: str = "depth") -> HighwaySpec:
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
    return HighwaySpec(depth, depths)


def highway_body(
    spec: HighwaySpec,
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


@with_application_arguments(classes=10)
def CifarHighwayNet(
    depth: int = 32,
    *,
    coupled: bool = True,
    transform_bias: float | None = None,
    carry_bias: float | None = None,
    gate_kernel_size: int = 3,
    shortcut: str = "zero_pad",
    application: dict,
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
    application["name"] = application["name"] or f"highway{depth}"
    gates = {"coupled": coupled, "transform_bias": transform_bias, "carry_bias": carry_bias}
    options = {**gates, "gate_kernel_size": gate_kernel_size, "shortcut": shortcut}
    model_name = f"CifarHighwayNet(depth={depth})"
    return build_highway(spec, model_name=model_name, **application, **options)


def build_highway(
    spec: HighwaySpec,
    *,
    model_name: str,
    coupled: bool = True,
    transform_bias: float | None = None,
    carry_bias: float | None = None,
    gate_kernel_size: int = 3,
    shortcut: str = "zero_pad",
    **application,
) -> keras.Model:
    """Build a highway network from its spec (see `CifarHighwayNet` for the options)."""
    # The types and ranges are `highway_options`'s (also what the tests draw from).
    gates = check_values(
        highway_options(spec),
        coupled=coupled,
        transform_bias=transform_bias,
        carry_bias=carry_bias,
        gate_kernel_size=gate_kernel_size,
        shortcut=shortcut,
    )
    coupled, transform_bias, carry_bias, gate_kernel_size, shortcut = gates.values()
    if transform_bias is None:
        transform_bias = default_transform_bias(spec.depth)
    if gate_kernel_size % 2 == 0:
        raise ValueError(f"`gate_kernel_size` must be odd, got {gate_kernel_size}.")
    gates = {"coupled": coupled, "transform_bias": transform_bias, "carry_bias": carry_bias}
    body = highway_body(spec, **gates, gate_kernel_size=gate_kernel_size, shortcut=shortcut)
    return build_model(body=body, spec=spec, model_name=model_name, **application)


_OPTIONS_DOC = """    coupled, transform_bias, carry_bias, gate_kernel_size, shortcut: as for
        `CifarHighwayNet`.
"""


def highway_options(spec: HighwaySpec) -> dict[str, Option]:
    """The options of a highway builder, with defaults, choices and search values."""
    return {
        "coupled": Option(True, (True, False), (True, False), kind=bool),
        "transform_bias": Option(None, search=(-1.0, -2.0, -3.0), kind=float, optional=True),
        "carry_bias": Option(None, kind=float, optional=True),
        # Odd as well (a centred gate); `build_highway` says so.
        "gate_kernel_size": Option(3, search=(1, 3), kind=int, minimum=1),
        "shortcut": Option("zero_pad", ("zero_pad", "projection"), ("zero_pad", "projection")),
    }


def _architecture(spec: HighwaySpec) -> dict[str, Option]:
    return {"depth": Option(spec.depth, search=(14, 19, 32), kind=int, minimum=5)}


def _row(depth: int, num_params: int) -> Row:
    spec = highway_spec(depth)
    summary = (
        f"A 3x3 stem, {depth - 2} highway layers in stages of {spec.depths} at widths "
        "16/32/64, global average pooling and a dense classifier; transform-gate bias "
        f"{default_transform_bias(depth):g} by default. See `CifarHighwayNet`."
    )
    title = f"CIFAR highway network of {depth} layers (Srivastava et al. 2015)"
    return Row(f"HighwayNet{depth}", {"depth": depth}, num_params, title, summary)


# Each row: name, the `depth` of `CifarHighwayNet` that makes it, its exact trainable count.
HIGHWAY_ROWS = (_row(19, 556_042), _row(32, 949_114))

# label, paper, generic builder, spec, build, options, options_doc (see `Family`)
HIGHWAY = Family(
    "Highway", SRIVASTAVA2015, CifarHighwayNet, highway_spec, build_highway, highway_options
)
HIGHWAY = dataclasses.replace(
    HIGHWAY, options_doc=_OPTIONS_DOC, architecture=_architecture, example="coupled=False"
)

BUILDERS = register_rows(HIGHWAY, HIGHWAY_ROWS)
globals().update(BUILDERS)  # HighwayNet19, HighwayNet32: the rows' builders

__all__ = ["CifarHighwayNet", *BUILDERS]
