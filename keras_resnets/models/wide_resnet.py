"""Wide residual networks for CIFAR (Zagoruyko & Komodakis 2016).

WRN-d-k: a 3x3 stem of 16 channels, three stages of n = (d - 4) / 6
pre-activation basic blocks of widths 16k, 32k, 64k (strides 1, 2, 2), a
final BN-ReLU, global average pooling and a classifier, as the authors' code.
A block is the full pre-activation basic unit of `blocks.units` plus dropout
(`wide_config`): BN-ReLU, 3x3 conv (stride), BN-ReLU, dropout, 3x3 conv,
added to the shortcut: the input itself, or a 1x1 convolution of the
pre-activated input where the shape changes.
"""

from __future__ import annotations

import dataclasses
import functools

import keras

from keras_resnets import blocks
from keras_resnets.layers.stochastic_depth import stochastic_depth_schedule
from keras_resnets.models.application import (
    check_depth,
    stochastic_depth_options,
    with_application_arguments,
)
from keras_resnets.models.builder import build_model, stage_info
from keras_resnets.models.registry import RATE, Family, Option, Row, register_rows
from keras_resnets.utils import check_fraction, check_int
from keras_resnets.weights import build_in_stored_layout

WRN2016 = "Zagoruyko & Komodakis 2016"


@dataclasses.dataclass(frozen=True)
class WideResNetSpec:
    """One CIFAR Wide ResNet, WRN-depth-width.

    Attributes:
        depth: weighted layers, 6n + 4.
        width: widening factor k; stage widths are 16k, 32k, 64k.
        default_size: default input size (32).
        default_classes: default number of classes (10).
    """

    depth: int
    width: int
    default_size: int = 32
    default_classes: int = 10

    @property
    def blocks_per_stage(self) -> int:
        return (self.depth - 4) // 6

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(base * self.width for base in (16, 32, 64))

    @property
    def total_stride(self) -> int:
        return 4


def wide_resnet_spec(depth: int = 28, width: int = 10) -> WideResNetSpec:
    """The spec of WRN-depth-width; ValueError naming `depth` or `width` when invalid."""
    check_depth(depth, step=6, extra=4, layout="a CIFAR Wide ResNet (3 stages of n blocks)")
    return WideResNetSpec(depth, check_int("width", width))


def wide_config(dropout_rate: float = 0.0) -> blocks.UnitConfig:
    """A wide block: the full pre-activation basic unit plus dropout between its convolutions.

    Projection shortcuts (no BN, reading the pre-activated input) where the
    shape changes, as the authors' code.
    """
    return blocks.UnitConfig(
        block="basic", unit="full_preactivation", shortcut="projection", dropout_rate=dropout_rate
    )


def wide_block(
    x,
    filters: int,
    *,
    strides: int,
    name: str,
    dropout_rate: float = 0.0,
    wrap_branch=None,
    stochastic_depth: dict | None = None,
):
    """One wide basic block: `blocks.residual_sum` of the `wide_config` unit.

    Layers `{name}_bn1`, `_relu1`, `_conv1` (3x3, stride), `_bn2`, `_relu2`,
    (`_dropout`), `_conv2`, (`_shortcut`), `_add`.

    Args:
        x: input tensor (NHWC).
        filters: output channels.
        strides: the block's stride.
        name: layer name prefix.
        dropout_rate: dropout between the two convolutions (0 for none).
        wrap_branch: optional `wrap_branch(branch, x, name) -> tensor` that
            applies the branch function (as `blocks.residual_unit`'s hook).
        stochastic_depth: None, or the `StochasticDepth` arguments that gate
            this block (see `blocks.residual_add`). The gated branch is the
            whole residual function: with an identity shortcut it starts with
            `{name}_bn1`/`_relu1` (skipped with the block); with a projection
            the pre-activation feeds both paths and stays outside.

    Returns:
        `{name}_add`: shortcut + branch (no activation after the addition).
    """
    return blocks.residual_sum(
        x,
        filters,
        strides=strides,
        name=name,
        config=wide_config(dropout_rate),
        stochastic_depth=stochastic_depth,
        wrap_branch=wrap_branch,
    )


@with_application_arguments(classes=10)
def WideResNet(
    depth: int = 28,
    width: int = 10,
    *,
    dropout_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    stochastic_depth_mode: str = "batch",
    stochastic_depth_scale: str | None = None,
    stochastic_depth_seed: int | None = None,
    application: dict,
) -> keras.Model:
    """A CIFAR Wide ResNet WRN-depth-width (Zagoruyko & Komodakis 2016).

    Args:
        depth: number of weighted layers, 6n + 4 (10, 16, 22, 28, 34, 40...).
        width: widening factor k; stage widths are 16k, 32k, 64k.
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name: as for `ResNet20`.
        dropout_rate: dropout between the two convolutions of each block
            (the paper's best CIFAR results use 0.3; default 0).
        drop_path_rate, stochastic_depth_mode, stochastic_depth_scale,
            stochastic_depth_seed: stochastic depth, as for `ResNet110`
            (docs/stochastic_depth.md); the linear rule runs over all 3n
            blocks. Default off.

    Returns:
        A functional `keras.Model`.

    Raises:
        ValueError: `depth` is not 6n + 4, `width` is not a positive integer,
            or `dropout_rate` is not in [0, 1).

    Example:
        >>> model = keras_resnets.WideResNet(depth=16, width=4)
    """
    spec = wide_resnet_spec(depth, width)
    application["name"] = application["name"] or f"wrn_{depth}_{width}"
    return build_wide_resnet(
        spec,
        model_name=f"WideResNet(depth={depth}, width={width})",
        **application,
        dropout_rate=dropout_rate,
        drop_path_rate=drop_path_rate,
        stochastic_depth_mode=stochastic_depth_mode,
        stochastic_depth_scale=stochastic_depth_scale,
        stochastic_depth_seed=stochastic_depth_seed,
    )


def build_wide_resnet(
    spec: WideResNetSpec,
    *,
    model_name: str,
    dropout_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    stochastic_depth_mode: str = "batch",
    stochastic_depth_scale: str | None = None,
    stochastic_depth_seed: int | None = None,
    **application,
) -> keras.Model:
    """Build a CIFAR Wide ResNet from its spec (`application`: keras.applications arguments)."""
    n = spec.blocks_per_stage
    dropout_rate = check_fraction("dropout_rate", dropout_rate, low=0.0, high=1.0)
    model = build_in_stored_layout(
        functools.partial(
            build_wide_resnet,
            spec,
            model_name=model_name,
            dropout_rate=dropout_rate,
            stochastic_depth_mode=stochastic_depth_mode,
            stochastic_depth_scale=stochastic_depth_scale,
            stochastic_depth_seed=stochastic_depth_seed,
        ),
        drop_path_rate=drop_path_rate,
        pretrained=False,
        can_nest=True,
        application=application,
    )
    if model is not None:
        return model
    schedule = iter(
        stochastic_depth_schedule(
            3 * n,
            drop_path_rate,
            mode=stochastic_depth_mode,
            scale=stochastic_depth_scale,
            seed=stochastic_depth_seed,
        )
    )

    config = wide_config(dropout_rate)

    def body(x):
        x = blocks.cifar_stem(x, 16, activate=False)
        feature_info = [stage_info("stem", x, 1)]
        for stage, width in enumerate(spec.widths):
            for index in range(n):
                strides = 2 if stage > 0 and index == 0 else 1
                x = blocks.residual_sum(
                    x,
                    width,
                    strides=strides,
                    name=f"stage{stage + 1}_block{index + 1}",
                    config=config,
                    stochastic_depth=next(schedule),
                )
            feature_info.append(stage_info(f"stage{stage + 1}", x, 2**stage))
        x = blocks.batch_norm(x, name="post_bn")
        return blocks.relu(x, name="post_relu"), feature_info

    return build_model(body=body, spec=spec, model_name=model_name, **application)


_OPTIONS_DOC = """    dropout_rate: dropout inside each block (default 0; the paper's 3.89%
        uses 0.3).
    drop_path_rate, stochastic_depth_mode, stochastic_depth_scale,
        stochastic_depth_seed: stochastic depth, as for `WideResNet`.
"""


def wide_resnet_options(spec: WideResNetSpec) -> dict[str, Option]:
    """The options of a Wide ResNet builder, with defaults and search values."""
    return {"dropout_rate": Option(0.0, search=(0.0, 0.3), **RATE), **stochastic_depth_options()}


def _architecture(spec: WideResNetSpec) -> dict[str, Option]:
    return {
        "depth": Option(spec.depth, search=(16, 22, 28), kind=int, minimum=10),
        "width": Option(spec.width, search=(2, 4, 8), kind=int, minimum=1),
    }


# Each row: name, the arguments of `WideResNet` that make it, its exact trainable count.
WIDE_RESNET_ROWS = (
    Row(
        "WideResNet28_10",
        {"depth": 28, "width": 10},
        36_479_194,
        "CIFAR Wide ResNet-28-10 (Zagoruyko & Komodakis 2016)",
        "`WideResNet(depth=28, width=10)`: four pre-activation basic blocks per stage "
        "at widths 160/320/640; 4.00% CIFAR-10 error in the paper (3.89% with "
        "dropout 0.3).",
        slow=True,
    ),
)

# label, paper, generic builder, spec, build, options, options_doc (see `Family`)
WIDE_RESNET = Family(
    "Wide ResNet", WRN2016, WideResNet, wide_resnet_spec, build_wide_resnet, wide_resnet_options
)
WIDE_RESNET = dataclasses.replace(
    WIDE_RESNET, options_doc=_OPTIONS_DOC, architecture=_architecture, example="dropout_rate=0.3"
)

BUILDERS = register_rows(WIDE_RESNET, WIDE_RESNET_ROWS)
globals().update(BUILDERS)  # WideResNet28_10: the row's builder

__all__ = ["WideResNet", *BUILDERS]
