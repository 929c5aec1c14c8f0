"""DenseNet (Huang et al. 2017): ImageNet (torchvision layout) and CIFAR.

Variants are rows of data (`DenseNetSpec`); `densenet_body` turns a spec into
the stem, the dense blocks (`keras_resnets.layers.DenseBlock`) and the
transitions, and the shared `build_model` adds input validation and the
head. DenseNet has no residual branches, so there is no stochastic-depth
option.

Layer names, for conversion by name (torchvision in brackets):
`stem_conv` (`features.conv0`), `stem_bn` (`norm0`), `block{b}` (the
DenseBlock layer, `denseblock{b}`) holding `block{b}_layer{j}_bn1`,
`_conv1`, `_bn2`, `_conv2` (`denselayer{j}.norm1`, ...), `transition{t}_bn`,
`_conv`, `_pool` (`transition{t}.norm`, ...), `final_bn` (`norm5`),
`head_fc` (`classifier`). Layers inside a block are found with
`keras_resnets.utils.find_layer(model, name)`.
"""

from __future__ import annotations

import dataclasses
import math

import keras

from keras_resnets import blocks
from keras_resnets.layers import DenseBlock
from keras_resnets.models.builder import application_builder, build_model, stage_info
from keras_resnets.models.registry import register_model
from keras_resnets.utils import check_fraction, check_int

HUANG2017 = "Huang et al. 2017"

__all__ = [
    "CifarDenseNet",
    "DenseNet40",
    "DenseNet100",
    "DenseNet121",
    "DenseNet161",
    "DenseNet169",
    "DenseNet201",
    "DenseNet264",
    "DenseNetBC100",
    "DenseNetBC190",
    "DenseNetBC250",
]


@dataclasses.dataclass(frozen=True)
class DenseNetSpec:
    """One DenseNet variant.

    Attributes:
        block_sizes: dense layers per block.
        growth_rate: channels added by each dense layer, `k`.
        stem_width: channels of the stem convolution.
        stem: `"imagenet"` (7x7/2 conv, BN, ReLU, 3x3/2 max pool) or
            `"cifar"` (one 3x3 conv).
        bottleneck: 1x1 bottleneck convolutions (DenseNet-B).
        compression: transition output channels as a fraction of their
            input, theta in (0, 1] (DenseNet-C when < 1).
        default_size: default input size.
        default_classes: default number of classes.
        bottleneck_width: bottleneck channels per unit of growth rate.
    """

    block_sizes: tuple[int, ...]
    growth_rate: int
    stem_width: int
    stem: str
    bottleneck: bool = True
    compression: float = 0.5
    default_size: int = 224
    default_classes: int = 1000
    bottleneck_width: int = 4

    @property
    def total_stride(self) -> int:
        stem_stride = 4 if self.stem == "imagenet" else 1
        return stem_stride * 2 ** (len(self.block_sizes) - 1)


def imagenet_spec(block_sizes, growth_rate: int = 32, stem_width: int = 64) -> DenseNetSpec:
    """The spec of an ImageNet DenseNet-BC (torchvision layout)."""
    return DenseNetSpec(tuple(block_sizes), growth_rate, stem_width, "imagenet")


def _valid_depths(bottleneck: bool, count: int = 6) -> str:
    step = 6 if bottleneck else 3
    return ", ".join(str(step * n + 4) for n in range(1, count + 1))


def cifar_spec(
    depth: int,
    growth_rate: int = 12,
    bottleneck: bool = True,
    compression: float = 0.5,
) -> DenseNetSpec:
    """The spec of Huang et al.'s CIFAR DenseNet of `depth` layers.

    Three dense blocks of n layers each: depth = 3n + 4 without bottlenecks
    and 6n + 4 with them (each bottleneck layer has two convolutions); the
    4 are the stem convolution, two transitions and the classifier.
    """
    check_int("growth_rate", growth_rate)
    if not isinstance(bottleneck, bool):
        raise ValueError(f"`bottleneck` must be True or False, got {bottleneck!r}.")
    check_compression(compression)
    check_int("depth", depth, minimum=1)
    per_layer = 6 if bottleneck else 3
    if depth < per_layer + 4 or (depth - 4) % per_layer:
        kind = "6n + 4 with bottleneck=True" if bottleneck else "3n + 4 with bottleneck=False"
        raise ValueError(
            f"`depth` must be {kind} (3 dense blocks of n layers), got {depth}; valid "
            f"depths are {_valid_depths(bottleneck)}, ..."
        )
    n = (depth - 4) // per_layer
    return DenseNetSpec(
        block_sizes=(n, n, n),
        growth_rate=growth_rate,
        # The paper: 16 channels, or 2k for DenseNet-B(C).
        stem_width=2 * growth_rate if bottleneck else 16,
        stem="cifar",
        bottleneck=bottleneck,
        compression=float(compression),
        default_size=32,
        default_classes=10,
    )


def check_compression(compression) -> float:
    """Raise `ValueError` naming `compression` unless it is in (0, 1]."""
    ok = isinstance(compression, (int, float)) and not isinstance(compression, bool)
    if not ok or not 0 < compression <= 1:
        raise ValueError(f"`compression` must be in (0, 1], got {compression!r}.")
    return float(compression)


def transition_block(x, compression: float, *, name: str, dropout: float = 0.0):
    """BN-ReLU-1x1 conv-2x2 average pool between dense blocks.

    Args:
        x: input tensor (NHWC).
        compression: theta in (0, 1]; the output has
            `floor(theta * channels)` channels.
        name: layer name prefix, e.g. `"transition1"`; the layers are
            `{name}_bn`, `{name}_relu`, `{name}_conv`, (`{name}_dropout`),
            `{name}_pool`.
        dropout: dropout rate after the convolution.

    Returns:
        The transition's output tensor, at half the resolution.

    Example:
        >>> x = keras.Input((56, 56, 256))
        >>> transition_block(x, 0.5, name="transition1").shape
        (None, 28, 28, 128)
    """
    check_compression(compression)
    filters = max(1, math.floor(x.shape[-1] * compression))
    x = blocks.batch_norm(x, name=f"{name}_bn")
    x = blocks.relu(x, name=f"{name}_relu")
    x = keras.layers.Conv2D(
        filters,
        1,
        use_bias=False,
        kernel_initializer=keras.initializers.VarianceScaling(
            scale=2.0, mode="fan_in", distribution="untruncated_normal"
        ),
        name=f"{name}_conv",
    )(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return keras.layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)


def densenet_body(spec: DenseNetSpec, *, dropout: float = 0.0, memory_efficient: bool = False):
    """Return `body(x) -> (features, feature_info)`: stem, dense blocks and transitions,
    final BN-ReLU.

    Each dense block `block{i}` ends a stage: `stage{i + 1}` on ImageNet
    models (after a stride-4 stem, so that block 1 is C2), `stage{i}` on CIFAR
    models; the transition before a block belongs to that block's stage.
    """

    def body(x):
        if spec.stem == "imagenet":
            x = blocks.imagenet_stem(x, spec.stem_width)
            reduction, first_stage = 4, 2
        else:
            x = blocks.cifar_stem(x, spec.stem_width, activate=False)
            reduction, first_stage = 1, 1
        feature_info = [stage_info("stem", x, reduction)]
        for index, size in enumerate(spec.block_sizes, start=1):
            x = DenseBlock(
                num_layers=size,
                growth_rate=spec.growth_rate,
                bottleneck=spec.bottleneck,
                bottleneck_width=spec.bottleneck_width,
                dropout=dropout,
                memory_efficient=memory_efficient,
                epsilon=blocks.BN_EPSILON,
                momentum=blocks.BN_MOMENTUM,
                name=f"block{index}",
            )(x)
            feature_info.append(stage_info(f"stage{index - 1 + first_stage}", x, reduction))
            if index < len(spec.block_sizes):
                reduction *= 2
                x = transition_block(
                    x, spec.compression, name=f"transition{index}", dropout=dropout
                )
        x = blocks.batch_norm(x, name="final_bn")
        return blocks.relu(x, name="final_relu"), feature_info

    return body


def build_densenet(
    spec: DenseNetSpec,
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
    dropout: float = 0.0,
    memory_efficient: bool = False,
) -> keras.Model:
    """Build a DenseNet from its spec (see the builders for the arguments)."""
    check_fraction("dropout", dropout, low=0.0, high=1.0)
    if not isinstance(memory_efficient, bool):
        raise ValueError(f"`memory_efficient` must be True or False, got {memory_efficient!r}.")
    return build_model(
        body=densenet_body(spec, dropout=float(dropout), memory_efficient=memory_efficient),
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


_OPTIONS_DOC = """    dropout: dropout rate after every convolution but the stem (the paper
        uses 0.2 on CIFAR without data augmentation); default 0.
    memory_efficient: recompute each dense layer's BN-ReLU-concatenation in
        the backward pass instead of storing it (less training memory, the
        same outputs and gradients; see `keras_resnets.layers.DenseBlock`).
"""


def _make_builder(model_name: str, spec: DenseNetSpec, title: str, summary: str):
    return application_builder(
        model_name,
        spec,
        build_densenet,
        title=title,
        summary=summary,
        options=("dropout", "memory_efficient"),
        options_doc=_OPTIONS_DOC,
        pooling_note=", after the final BN-ReLU",
        example="memory_efficient=True",
    )


def _define(model_name, spec, title, summary, num_params, slow=False):
    builder = _make_builder(model_name, spec, title, summary)
    return register_model(
        family="DenseNet",
        input_size=spec.default_size,
        num_params=num_params,
        paper=HUANG2017,
        slow=slow,
    )(builder)


_IMAGENET_SUMMARY = (
    "ImageNet DenseNet-BC in torchvision's layout: 7x7/2 stem with BN-ReLU and "
    "3x3/2 max pool, four dense blocks of {sizes} bottleneck layers (growth rate "
    "{k}, bottleneck 4k), transitions halving the channels, final BN-ReLU; no "
    "convolution bias, BatchNormalization epsilon 1e-5."
)
_CIFAR_SUMMARY = (
    "Huang et al.'s CIFAR {kind} (L={depth}, k={k}): a 3x3 stem convolution, three "
    "dense blocks of {n} layers{detail}, global average pooling and a dense classifier."
)


def _imagenet(model_name, sizes, k, stem, title, num_params, slow=False):
    spec = imagenet_spec(sizes, k, stem)
    summary = _IMAGENET_SUMMARY.format(sizes="/".join(map(str, sizes)), k=k)
    return _define(model_name, spec, title, summary, num_params, slow=slow)


def _cifar(model_name, depth, k, bc, num_params, slow=False):
    spec = cifar_spec(depth, k, bottleneck=bc, compression=0.5 if bc else 1.0)
    detail = (
        " (BN-ReLU-1x1 conv-BN-ReLU-3x3 conv) and transitions halving the channels"
        if bc
        else " (BN-ReLU-3x3 conv) and transitions keeping the channels"
    )
    summary = _CIFAR_SUMMARY.format(
        kind="DenseNet-BC" if bc else "DenseNet",
        depth=depth,
        k=k,
        n=spec.block_sizes[0],
        detail=detail,
    )
    title = f"CIFAR DenseNet{'-BC' if bc else ''} (L={depth}, k={k})"
    return _define(model_name, spec, title, summary, num_params, slow=slow)


DenseNet121 = _imagenet("DenseNet121", (6, 12, 24, 16), 32, 64, "DenseNet-121", 7_978_856)
DenseNet161 = _imagenet("DenseNet161", (6, 12, 36, 24), 48, 96, "DenseNet-161", 28_681_000)
DenseNet169 = _imagenet("DenseNet169", (6, 12, 32, 32), 32, 64, "DenseNet-169", 14_149_480)
DenseNet201 = _imagenet(
    "DenseNet201", (6, 12, 48, 32), 32, 64, "DenseNet-201", 20_013_928, slow=True
)
DenseNet264 = _imagenet(
    "DenseNet264", (6, 12, 64, 48), 32, 64, "DenseNet-264", 33_337_704, slow=True
)

DenseNet40 = _cifar("DenseNet40", 40, 12, False, 1_019_722)
DenseNet100 = _cifar("DenseNet100", 100, 12, False, 6_979_642)
DenseNetBC100 = _cifar("DenseNetBC100", 100, 12, True, 769_162)
DenseNetBC250 = _cifar("DenseNetBC250", 250, 24, True, 15_324_406, slow=True)
DenseNetBC190 = _cifar("DenseNetBC190", 190, 40, True, 25_624_430, slow=True)


def CifarDenseNet(
    depth: int = 100,
    growth_rate: int = 12,
    bottleneck: bool = True,
    compression: float = 0.5,
    dropout: float = 0.0,
    include_top: bool = True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes: int = 10,
    classifier_activation="softmax",
    name: str | None = None,
    memory_efficient: bool = False,
) -> keras.Model:
    """A CIFAR DenseNet of any valid depth, growth rate and variant.

    Args:
        depth: number of weighted layers: 3n + 4 without bottlenecks (40,
            100, ...), 6n + 4 with them (100, 190, 250, ...).
        growth_rate: channels each dense layer adds, `k` (>= 1).
        bottleneck: 1x1 bottleneck convolutions of 4k channels (DenseNet-B).
        compression: transition compression theta in (0, 1]; 0.5 with
            `bottleneck=True` is DenseNet-BC, 1 keeps the channels.
        dropout: dropout rate after every convolution but the stem.
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name, memory_efficient: as for
            `DenseNetBC100`.

    Returns:
        A functional `keras.Model`.

    Raises:
        ValueError: `depth` is not one the block layout can produce (the
            message lists valid depths), `growth_rate` is not a positive
            integer, `compression` is outside (0, 1], or `dropout` outside
            [0, 1).

    Example:
        >>> model = keras_resnets.CifarDenseNet(depth=58, growth_rate=16)
    """
    spec = cifar_spec(depth, growth_rate, bottleneck=bottleneck, compression=compression)
    prefix = "densenet_bc" if bottleneck and compression < 1 else "densenet"
    return build_densenet(
        spec,
        model_name=f"CifarDenseNet(depth={depth}, growth_rate={growth_rate})",
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name or f"{prefix}{depth}_k{growth_rate}",
        dropout=dropout,
        memory_efficient=memory_efficient,
    )
