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
from keras_resnets.models.application import with_application_arguments
from keras_resnets.models.builder import build_model, stage_info
from keras_resnets.models.registry import RATE, Family, Option, Row, register_rows
from keras_resnets.utils import check_bool, check_fraction, check_int, check_number, is_int

HUANG2017 = "Huang et al. 2017"


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


def imagenet_spec(blocks, growth_rate: int = 32, stem_width: int | None = None) -> DenseNetSpec:
    """The spec of an ImageNet DenseNet-BC (torchvision layout); the stem is 2k wide by default."""
    ok = isinstance(blocks, (tuple, list)) and len(blocks) > 0
    if not ok or not all(is_int(b) and b >= 1 for b in blocks):
        raise ValueError(
            f"`blocks` must be a tuple of positive integers (dense layers per block), "
            f"got {blocks!r}."
        )
    growth_rate = check_int("growth_rate", growth_rate)
    stem_width = 2 * growth_rate if stem_width is None else check_int("stem_width", stem_width)
    return DenseNetSpec(tuple(int(b) for b in blocks), growth_rate, stem_width, "imagenet")


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
    growth_rate = check_int("growth_rate", growth_rate)
    bottleneck = check_bool("bottleneck", bottleneck)
    compression = check_compression(compression)
    depth = check_int("depth", depth, minimum=1)
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
    return check_number("compression", compression, minimum=0, maximum=1, low_open=True)


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
    dropout: float = 0.0,
    memory_efficient: bool = False,
    **application,
) -> keras.Model:
    """Build a DenseNet from its spec (`application`: the keras.applications arguments)."""
    dropout = check_fraction("dropout", dropout, low=0.0, high=1.0)
    memory_efficient = check_bool("memory_efficient", memory_efficient)
    return build_model(
        body=densenet_body(spec, dropout=float(dropout), memory_efficient=memory_efficient),
        spec=spec,
        model_name=model_name,
        **application,
    )


_OPTIONS_DOC = """    dropout: dropout rate after every convolution but the stem (the paper
        uses 0.2 on CIFAR without data augmentation); default 0.
    memory_efficient: recompute each dense layer's BN-ReLU-concatenation in
        the backward pass instead of storing it (less training memory, the
        same outputs and gradients; see `keras_resnets.layers.DenseBlock`).
"""


def densenet_options(spec: DenseNetSpec) -> dict[str, Option]:
    """The options of a DenseNet builder; `memory_efficient` changes no output, so
    a search leaves it alone."""
    return {
        "dropout": Option(0.0, search=(0.0, 0.2), **RATE),
        "memory_efficient": Option(False, (False, True), kind=bool),
    }


def cifar_architecture(spec: DenseNetSpec) -> dict[str, Option]:
    """`CifarDenseNet`'s arguments worth searching: growth rate and compression."""
    return {
        "growth_rate": Option(spec.growth_rate, search=(12, 24), kind=int, minimum=1),
        "compression": Option(
            spec.compression, search=(0.5, 1.0), kind=float, minimum=0.0, maximum=1.0, low_open=True
        ),
    }


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


def _imagenet(name, sizes, k, title, num_params, slow=False) -> Row:
    summary = _IMAGENET_SUMMARY.format(sizes="/".join(map(str, sizes)), k=k)
    arguments = {"blocks": sizes} if k == 32 else {"blocks": sizes, "growth_rate": k}
    return Row(name, arguments, num_params, title, summary, slow=slow)


def _cifar(name, depth, k, bc, num_params, slow=False) -> Row:
    detail = (
        " (BN-ReLU-1x1 conv-BN-ReLU-3x3 conv) and transitions halving the channels"
        if bc
        else " (BN-ReLU-3x3 conv) and transitions keeping the channels"
    )
    summary = _CIFAR_SUMMARY.format(
        kind="DenseNet-BC" if bc else "DenseNet",
        depth=depth,
        k=k,
        n=(depth - 4) // (6 if bc else 3),
        detail=detail,
    )
    title = f"CIFAR DenseNet{'-BC' if bc else ''} (L={depth}, k={k})"
    arguments = {"depth": depth}
    if k != 12:
        arguments["growth_rate"] = k
    if not bc:
        arguments.update(bottleneck=False, compression=1.0)
    return Row(name, arguments, num_params, title, summary, slow=slow)


# Each row: name, the arguments of `DenseNet` that make it, its exact trainable count.
DENSENET_ROWS = (
    _imagenet("DenseNet121", (6, 12, 24, 16), 32, "DenseNet-121", 7_978_856),
    _imagenet("DenseNet161", (6, 12, 36, 24), 48, "DenseNet-161", 28_681_000),
    _imagenet("DenseNet169", (6, 12, 32, 32), 32, "DenseNet-169", 14_149_480),
    _imagenet("DenseNet201", (6, 12, 48, 32), 32, "DenseNet-201", 20_013_928, slow=True),
    _imagenet("DenseNet264", (6, 12, 64, 48), 32, "DenseNet-264", 33_337_704, slow=True),
)
# Each row: name, the arguments of `CifarDenseNet` that make it, its exact trainable count.
CIFAR_DENSENET_ROWS = (
    _cifar("DenseNet40", 40, 12, False, 1_019_722),
    _cifar("DenseNet100", 100, 12, False, 6_979_642),
    _cifar("DenseNetBC100", 100, 12, True, 769_162),
    _cifar("DenseNetBC250", 250, 24, True, 15_324_406, slow=True),
    _cifar("DenseNetBC190", 190, 40, True, 25_624_430, slow=True),
)


@with_application_arguments(classes=1000)
def DenseNet(
    blocks=(6, 12, 24, 16),
    growth_rate: int = 32,
    *,
    stem_width: int | None = None,
    dropout: float = 0.0,
    memory_efficient: bool = False,
    application: dict,
) -> keras.Model:
    """An ImageNet DenseNet-BC of any block sizes and growth rate (torchvision layout).

    The generic builder behind `DenseNet121` ... `DenseNet264`:
    `DenseNet161()` is `DenseNet((6, 12, 36, 24), growth_rate=48)`.

    Args:
        blocks: dense layers per block (default DenseNet-121's `(6, 12, 24, 16)`).
        growth_rate: channels each dense layer adds, `k` (default 32).
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, dropout, memory_efficient: as for
            `DenseNet121`.
        name: the model name (default `"densenet{layers}"`).
        stem_width: channels of the stem convolution (default `2 * growth_rate`).

    Returns:
        A functional `keras.Model`.

    Raises:
        ValueError: `blocks` is not a tuple of positive integers,
            `growth_rate`/`stem_width` not positive integers, or `dropout`
            outside [0, 1).

    Example:
        >>> model = keras_resnets.DenseNet(blocks=(2, 2, 2, 2), growth_rate=8)
    """
    spec = imagenet_spec(blocks, growth_rate, stem_width)
    application["name"] = application["name"] or f"densenet{2 * sum(spec.block_sizes) + 5}"
    options = {"dropout": dropout, "memory_efficient": memory_efficient}
    model_name = f"DenseNet(blocks={spec.block_sizes})"
    return build_densenet(spec, model_name=model_name, **application, **options)


@with_application_arguments(classes=10)
def CifarDenseNet(
    depth: int = 100,
    growth_rate: int = 12,
    bottleneck: bool = True,
    compression: float = 0.5,
    dropout: float = 0.0,
    *,
    memory_efficient: bool = False,
    application: dict,
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
    application["name"] = application["name"] or f"{prefix}{depth}_k{growth_rate}"
    model_name = f"CifarDenseNet(depth={depth}, growth_rate={growth_rate})"
    options = {"dropout": dropout, "memory_efficient": memory_efficient}
    return build_densenet(spec, model_name=model_name, **application, **options)


# label, paper, generic builder, spec, build, options, options_doc (see `Family`)
DENSENET = Family(
    "DenseNet", HUANG2017, DenseNet, imagenet_spec, build_densenet, densenet_options, _OPTIONS_DOC
)
DENSENET = dataclasses.replace(
    DENSENET, pooling_note=", after the final BN-ReLU", example="memory_efficient=True"
)
CIFAR_DENSENET = dataclasses.replace(
    DENSENET, generic=CifarDenseNet, spec=cifar_spec, architecture=cifar_architecture
)

BUILDERS = {
    **register_rows(DENSENET, DENSENET_ROWS),
    **register_rows(CIFAR_DENSENET, CIFAR_DENSENET_ROWS),
}
globals().update(BUILDERS)  # DenseNet121, ..., DenseNetBC190: the rows' builders

__all__ = ["CifarDenseNet", "DenseNet", *BUILDERS]
