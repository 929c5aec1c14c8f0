"""The ResNet variants practitioners use today, as rows of the ResNet and ResNeXt tables.

No new builder: each variant is the generic `ResNet` (or `ResNeXt`) with
the block ideas of its paper, with parameter counts equal to timm's (1.0.x)
models of the same name:

- ResNet-D / ResNet-T, the bag of tricks (He et al. 2019, "Bag of Tricks
  for Image Classification with Convolutional Neural Networks"): the deep
  stem (`stem="deep"`, 32-32-64, or timm's tiered 24-32-64) and the
  average-pool projection shortcut (`downsample="avg"`); timm `resnet18d`
  ... `resnet200d`, `resnet26t`, `resnet50t`.
- SE-ResNet / SE-ResNeXt (Hu et al. 2018, "Squeeze-and-Excitation
  Networks"): `attention="se"` (reduction 1/16); timm `seresnet*`,
  `seresnext*_32x4d`.
- ECA-ResNet-D (Wang et al. 2020, "ECA-Net"): `attention="eca"` on
  ResNet-50-D; timm `ecaresnet50d`.
- ResNet-RS (Bello et al. 2021, "Revisiting ResNets"): the deep stem with a
  strided convolution in place of its max pool (`stem_pool="conv"`), the
  average-pool shortcut, SE with reduction 0.25; timm `resnetrs*`, with
  timm's default train and test input sizes.
- ResNeSt (Zhang et al. 2020, "ResNeSt: Split-Attention Networks"): split
  attention of radix 2 in every bottleneck (`radix=2`, a `SplitAttention`
  layer) with average-pool downsampling (`avd=True`), the deep stem (32 wide
  for 14/26/50 as timm's "d" models, 64 for 101/200/269, its "e" models) and
  the average-pool shortcut.

These families drop paths per sample by default (`stochastic_depth_mode=
"sample"`, as timm), where the older ones follow the stochastic-depth
paper's per-batch drops.
"""

from __future__ import annotations

import dataclasses
import functools

from keras_resnets.layers.stochastic_depth import (
    MODES,
    SAMPLE_STOCHASTIC_DEPTH_DOC,
    STOCHASTIC_DEPTH_DOC,
)
from keras_resnets.models.registry import Family, Option, Row, register_rows
from keras_resnets.models.resnet import RESNET
from keras_resnets.models.resnext import RESNEXT

HE2019 = "He et al. 2019"
HU2018 = "Hu et al. 2018"
WANG2020 = "Wang et al. 2020"
BELLO2021 = "Bello et al. 2021"
ZHANG2020 = "Zhang et al. 2020"

# The architecture arguments each variant adds to ResNet's.
D = {"stem": "deep", "downsample": "avg"}
T = {"stem": "deep_tiered", "downsample": "avg"}
RS = {**D, "stem_pool": "conv", "attention": "se", "attention_ratio": 0.25}
RESNEST = {**D, "radix": 2, "avd": True}
BASIC = {"block": "basic"}
BOTTLENECK = {"block": "bottleneck"}


def _sample_drop_path(base: Family, label: str, paper: str) -> Family:
    """`base` with per-sample drop path as the default stochastic-depth mode."""

    def options(spec):
        return {**base.options(spec), "stochastic_depth_mode": Option("sample", MODES)}

    def options_doc(spec):
        doc = base.options_doc(spec) if callable(base.options_doc) else base.options_doc
        return doc.replace(STOCHASTIC_DEPTH_DOC, SAMPLE_STOCHASTIC_DEPTH_DOC)

    return dataclasses.replace(
        base,
        label=label,
        paper=paper,
        build=functools.partial(base.build, stochastic_depth_mode="sample"),
        options=options,
        options_doc=options_doc,
    )


def _layers(depths, arguments) -> int:
    return (2 if arguments.get("block") == "basic" else 3) * sum(depths) + 2


def _row(name, depths, arguments, num_params, title, summary, sizes=(None, None)) -> Row:
    slow = num_params > 60_000_000
    size, test_size = sizes
    return Row(
        name,
        {"depths": depths, **arguments},
        num_params,
        title,
        summary,
        slow=slow,
        input_size=size,
        test_input_size=test_size,
    )


_TRICKS = (
    "ResNet-{layers} with the bag of tricks' stem and shortcut (He et al. 2019): three 3x3 "
    "convolutions ({stem}) in place of the 7x7 one, and a 2x2 average pool before each "
    "strided 1x1 projection so that it reads every input position; timm's `{timm}`."
)


def _tricks(name, depths, block, num_params, sizes=(None, 288), tiered=False) -> Row:
    arguments = {**(T if tiered else D), **block}
    layers = _layers(depths, arguments)
    stem = "24-32-64, tiered" if tiered else "32-32-64"
    letter = "T" if tiered else "D"
    summary = _TRICKS.format(layers=layers, stem=stem, timm=f"resnet{layers}{letter.lower()}")
    return _row(name, depths, arguments, num_params, f"ResNet-{layers}-{letter}", summary, sizes)


RESNET_D_ROWS = (
    _tricks("ResNet18D", (2, 2, 2, 2), BASIC, 11_708_744),
    _tricks("ResNet34D", (3, 4, 6, 3), BASIC, 21_816_904),
    _tricks("ResNet50D", (3, 4, 6, 3), BOTTLENECK, 25_576_264),
    _tricks("ResNet101D", (3, 4, 23, 3), BOTTLENECK, 44_568_392),
    _tricks("ResNet152D", (3, 8, 36, 3), BOTTLENECK, 60_212_040, (256, 320)),
    _tricks("ResNet200D", (3, 24, 36, 3), BOTTLENECK, 64_693_064, (256, 320)),
    _tricks("ResNet26T", (2, 2, 2, 2), BOTTLENECK, 16_011_872, tiered=True),
    _tricks("ResNet50T", (3, 4, 6, 3), BOTTLENECK, 25_573_728, tiered=True),
)

_SE = (
    "ResNet-{layers} (torchvision layout) with a Squeeze-and-Excitation block (reduction "
    "16) at the end of every residual branch (Hu et al. 2018); timm's `seresnet{layers}`."
)
SE_RESNET_ROWS = tuple(
    _row(
        f"SEResNet{layers}",
        depths,
        {**block, "attention": "se"},
        count,
        f"SE-ResNet-{layers}",
        _SE.format(layers=layers),
        (None, 288),
    )
    for layers, depths, block, count in (
        (18, (2, 2, 2, 2), BASIC, 11_779_624),
        (34, (3, 4, 6, 3), BASIC, 21_960_416),
        (50, (3, 4, 6, 3), BOTTLENECK, 28_088_024),
        (101, (3, 4, 23, 3), BOTTLENECK, 49_326_872),
        (152, (3, 8, 36, 3), BOTTLENECK, 66_821_848),
    )
)
ECA_RESNET_ROWS = (
    _row(
        "ECAResNet50D",
        (3, 4, 6, 3),
        {**D, **BOTTLENECK, "attention": "eca"},
        25_576_350,
        "ECA-ResNet-50-D",
        "ResNet-50-D with Efficient Channel Attention (Wang et al. 2020) at the end of every "
        "residual branch: a 1-D convolution of 5 or 7 taps across the channels' means; "
        "timm's `ecaresnet50d`.",
        (224, 288),
    ),
)

_SE_RESNEXT = (
    "ResNeXt-{layers} (32x4d, torchvision layout) with a Squeeze-and-Excitation block "
    "(reduction 16) at the end of every residual branch (Hu et al. 2018); timm's "
    "`seresnext{layers}_32x4d`."
)
SE_RESNEXT_ROWS = tuple(
    Row(
        f"SEResNeXt{layers}_32x4d",
        {"depths": depths, "cardinality": 32, "base_width": 4, "attention": "se"},
        count,
        f"SE-ResNeXt-{layers} (32x4d)",
        _SE_RESNEXT.format(layers=layers),
        slow=count > 40_000_000,
        test_input_size=288,
    )
    for layers, depths, count in (
        (50, (3, 4, 6, 3), 27_559_896),
        (101, (3, 4, 23, 3), 48_955_416),
    )
)

_RS = (
    "ResNet-RS-{layers} (Bello et al. 2021): bottleneck stages of {depths} blocks, the deep "
    "stem with a 3x3/2 convolution in place of its max pool, average-pool projection "
    "shortcuts and a Squeeze-and-Excitation block (reduction 4) in every unit; trains at "
    "{size}x{size} and is evaluated at {test}x{test} (timm's `resnetrs{layers}`)."
)


def _rs(layers: int, depths, num_params: int, size: int, test: int) -> Row:
    stages = "-".join(map(str, depths))
    summary = _RS.format(layers=layers, depths=stages, size=size, test=test)
    arguments = {**RS, **BOTTLENECK}
    return _row(
        f"ResNetRS{layers}",
        depths,
        arguments,
        num_params,
        f"ResNet-RS-{layers}",
        summary,
        (size, test),
    )


# Each row: layers, blocks per stage, timm's count, train and test sizes.
RESNET_RS_ROWS = (
    _rs(50, (3, 4, 6, 3), 35_691_912, 160, 224),
    _rs(101, (3, 4, 23, 3), 63_618_696, 192, 288),
    _rs(152, (3, 8, 36, 3), 86_621_576, 256, 320),
    _rs(200, (3, 24, 36, 3), 93_209_992, 256, 320),
    _rs(270, (4, 29, 53, 4), 129_861_448, 256, 352),
    _rs(350, (4, 36, 72, 4), 163_956_168, 288, 384),
    _rs(420, (4, 44, 87, 4), 191_891_656, 320, 416),
)

_RESNEST = (
    "ResNeSt-{layers} (Zhang et al. 2020): bottleneck stages of {depths} blocks whose 3x3 "
    "convolution is a split-attention layer of radix 2 (`SplitAttention`), followed by a "
    "3x3/2 average pool where the stage downsamples; the deep stem ({stem}) and "
    "average-pool projection shortcuts; timm's `{timm}`."
)


def _resnest(layers: int, depths, stem: int, num_params: int, size: int) -> Row:
    """ResNeSt-`layers`: timm's "d" model with a 32-wide deep stem, its "e" model with 64."""
    summary = _RESNEST.format(
        layers=layers,
        depths="-".join(map(str, depths)),
        stem=f"{stem}-{stem}-{2 * stem}",
        timm=f"resnest{layers}{'d' if stem == 32 else 'e'}",
    )
    arguments = {**RESNEST, **BOTTLENECK, **({"stem_width": stem} if stem != 32 else {})}
    title = f"ResNeSt-{layers}"
    return _row(f"ResNeSt{layers}", depths, arguments, num_params, title, summary, (size, None))


# Each row: layers, blocks per stage, deep-stem width, timm's count, input size.
RESNEST_ROWS = (
    _resnest(14, (1, 1, 1, 1), 32, 10_611_688, 224),
    _resnest(26, (2, 2, 2, 2), 32, 17_069_448, 224),
    _resnest(50, (3, 4, 6, 3), 32, 27_483_240, 224),
    _resnest(101, (3, 4, 23, 3), 64, 48_275_016, 256),
    _resnest(200, (3, 24, 36, 3), 64, 70_201_544, 320),
    _resnest(269, (3, 30, 48, 8), 64, 110_929_480, 416),
)

BUILDERS = {
    **register_rows(_sample_drop_path(RESNET, "ResNet-D/T", HE2019), RESNET_D_ROWS),
    **register_rows(_sample_drop_path(RESNET, "SE-ResNet", HU2018), SE_RESNET_ROWS),
    **register_rows(_sample_drop_path(RESNEXT, "SE-ResNeXt", HU2018), SE_RESNEXT_ROWS),
    **register_rows(_sample_drop_path(RESNET, "ECA-ResNet", WANG2020), ECA_RESNET_ROWS),
    **register_rows(_sample_drop_path(RESNET, "ResNet-RS", BELLO2021), RESNET_RS_ROWS),
    **register_rows(_sample_drop_path(RESNET, "ResNeSt", ZHANG2020), RESNEST_ROWS),
}
globals().update(BUILDERS)  # ResNet18D, ..., ResNeSt269: the rows' builders

__all__ = list(BUILDERS)
