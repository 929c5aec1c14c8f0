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

import types

import keras

from keras_resnets import blocks
from keras_resnets.layers.stochastic_depth import (
    STOCHASTIC_DEPTH_OPTIONS,
    stochastic_depth_schedule,
)
from keras_resnets.models.builder import application_builder, build_model, stage_info
from keras_resnets.models.registry import register_model
from keras_resnets.utils import check_fraction, check_int

WRN2016 = "Zagoruyko & Komodakis 2016"

__all__ = ["WideResNet", "WideResNet28_10"]


def _check_depth(depth: int) -> int:
    check_int("depth", depth, minimum=10)
    if (depth - 4) % 6:
        valid = ", ".join(str(6 * n + 4) for n in range(1, 7))
        raise ValueError(
            f"`depth` must be 6n + 4 for a CIFAR Wide ResNet (3 stages of n blocks), got "
            f"{depth}; valid depths are {valid}, ..."
        )
    return (depth - 4) // 6


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


def WideResNet(
    depth: int = 28,
    width: int = 10,
    include_top: bool = True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes: int = 10,
    classifier_activation="softmax",
    name: str | None = None,
    dropout_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    stochastic_depth_mode: str = "batch",
    stochastic_depth_scale: str | None = None,
    stochastic_depth_seed: int | None = None,
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
    n = _check_depth(depth)
    check_int("width", width)
    dropout_rate = check_fraction("dropout_rate", dropout_rate, low=0.0, high=1.0)
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
        for stage, base in enumerate((16, 32, 64)):
            for index in range(n):
                strides = 2 if stage > 0 and index == 0 else 1
                x = blocks.residual_sum(
                    x,
                    base * width,
                    strides=strides,
                    name=f"stage{stage + 1}_block{index + 1}",
                    config=config,
                    stochastic_depth=next(schedule),
                )
            feature_info.append(stage_info(f"stage{stage + 1}", x, 2**stage))
        x = blocks.batch_norm(x, name="post_bn")
        return blocks.relu(x, name="post_relu"), feature_info

    return build_model(
        body=body,
        name=name or f"wrn_{depth}_{width}",
        model_name=f"WideResNet(depth={depth}, width={width})",
        default_size=32,
        min_size=4,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
    )


_WRN28_10_OPTIONS_DOC = """    dropout_rate: dropout inside each block (default 0; the paper's 3.89%
        uses 0.3).
    drop_path_rate, stochastic_depth_mode, stochastic_depth_scale,
        stochastic_depth_seed: stochastic depth, as for `WideResNet`.
"""


def _build_wrn28_10(spec, *, model_name, name, **kwargs):
    return WideResNet(28, 10, name=name or model_name.lower(), **kwargs)


WideResNet28_10 = register_model(
    family="Wide ResNet", input_size=32, num_params=36_479_194, paper=WRN2016, slow=True
)(
    application_builder(
        "WideResNet28_10",
        types.SimpleNamespace(default_size=32, default_classes=10, total_stride=4),
        _build_wrn28_10,
        title="CIFAR Wide ResNet-28-10 (Zagoruyko & Komodakis 2016)",
        summary=(
            "`WideResNet(depth=28, width=10)`: four pre-activation basic blocks per stage "
            "at widths 160/320/640; 4.00% CIFAR-10 error in the paper (3.89% with "
            "dropout 0.3)."
        ),
        options=("dropout_rate", *STOCHASTIC_DEPTH_OPTIONS),
        options_doc=_WRN28_10_OPTIONS_DOC,
        example="dropout_rate=0.3",
    )
)
