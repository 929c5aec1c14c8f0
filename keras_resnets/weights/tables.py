"""Name tables: which PyTorch tensor fills which Keras weight, per family.

One table per family maps each Keras layer name (a regular expression over
the package's stable layer names) to the PyTorch module that holds its
weights and to the layout transform between them:

| kind | Keras layer | Keras variable <- PyTorch tensor |
|---|---|---|
| `conv` | `Conv2D`, `GroupedConv2D` | `kernel` <- `weight` OIHW -> HWIO (`(2, 3, 1, 0)`); grouped kernels `(O, I/g, kh, kw)` -> `(kh, kw, I/g, O)`, the same transpose; `bias` <- `bias` |
| `bn` | `BatchNormalization` | `gamma`, `beta`, `moving_mean`, `moving_variance` <- `weight`, `bias`, `running_mean`, `running_var` (`num_batches_tracked` is not needed) |
| `dense` | `Dense` | `kernel` <- `weight.T`, `bias` <- `bias` |

The names are those of torchvision's `ResNet` (also ResNeXt and Wide
ResNet) and `DenseNet` modules, which timm's re-published `tv_in1k` /
`tv2_in1k` checkpoints keep.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import numpy as np

__all__ = ["KINDS", "NameTable", "Rule", "TABLES", "table_for"]

KINDS = ("conv", "bn", "dense")


@dataclasses.dataclass(frozen=True)
class Rule:
    """One row of a name table.

    Attributes:
        pattern: regular expression matching whole Keras layer names.
        target: maps the match to the PyTorch module prefix
            (`"layer1.0.conv1"`).
        kind: `"conv"`, `"bn"` or `"dense"`: the layout transform.
    """

    pattern: str
    target: Callable[[re.Match], str]
    kind: str

    def match(self, name: str) -> str | None:
        found = re.fullmatch(self.pattern, name)
        return None if found is None else self.target(found)


@dataclasses.dataclass(frozen=True)
class NameTable:
    """The conversion table of one family.

    Attributes:
        family: a label for messages (`"ResNet"`).
        rules: the rows, tried in order.
        classifier: PyTorch prefix of the classifier, skipped when the Keras
            model has no top (`include_top=False`).
        rename: optional function normalising legacy PyTorch key names
            (old torchvision DenseNet checkpoints).
    """

    family: str
    rules: tuple[Rule, ...]
    classifier: str
    rename: Callable[[str], str] | None = None

    def target(self, layer_name: str) -> tuple[str, str] | None:
        """`(torch prefix, kind)` for a Keras layer name, or None."""
        for rule in self.rules:
            prefix = rule.match(layer_name)
            if prefix is not None:
                return prefix, rule.kind
        return None


def _stage_block(fmt: str):
    # Keras stages 2..5 are torchvision's layer1..layer4; blocks count from 1 there, 0 here.
    def target(m: re.Match) -> str:
        groups = {**m.groupdict(), "layer": int(m["stage"]) - 1, "block": int(m["block"]) - 1}
        return fmt.format(**groups)

    return target


def _const(prefix: str):
    return lambda m: prefix


_BLOCK = r"stage(?P<stage>[2-5])_block(?P<block>\d+)"

RESNET = NameTable(
    family="ResNet",
    rules=(
        Rule("stem_conv", _const("conv1"), "conv"),
        Rule("stem_bn", _const("bn1"), "bn"),
        Rule(_BLOCK + r"_conv(?P<i>[123])", _stage_block("layer{layer}.{block}.conv{i}"), "conv"),
        Rule(_BLOCK + r"_bn(?P<i>[123])", _stage_block("layer{layer}.{block}.bn{i}"), "bn"),
        Rule(_BLOCK + r"_shortcut", _stage_block("layer{layer}.{block}.downsample.0"), "conv"),
        Rule(_BLOCK + r"_shortcut_bn", _stage_block("layer{layer}.{block}.downsample.1"), "bn"),
        Rule("head_fc", _const("fc"), "dense"),
    ),
    classifier="fc",
)


def _dense_layer(fmt: str):
    return lambda m: fmt.format(**m.groupdict())


def _legacy_densenet_key(key: str) -> str:
    # torchvision's published DenseNet .pth files name "norm1" as "norm.1", etc.
    return re.sub(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.", r"\1\2.", key)


DENSENET = NameTable(
    family="DenseNet",
    rules=(
        Rule("stem_conv", _const("features.conv0"), "conv"),
        Rule("stem_bn", _const("features.norm0"), "bn"),
        Rule(
            r"block(?P<b>\d+)_layer(?P<j>\d+)_bn(?P<i>[12])",
            _dense_layer("features.denseblock{b}.denselayer{j}.norm{i}"),
            "bn",
        ),
        Rule(
            r"block(?P<b>\d+)_layer(?P<j>\d+)_conv(?P<i>[12])",
            _dense_layer("features.denseblock{b}.denselayer{j}.conv{i}"),
            "conv",
        ),
        Rule(r"transition(?P<t>\d+)_bn", _dense_layer("features.transition{t}.norm"), "bn"),
        Rule(r"transition(?P<t>\d+)_conv", _dense_layer("features.transition{t}.conv"), "conv"),
        Rule("final_bn", _const("features.norm5"), "bn"),
        Rule("head_fc", _const("classifier"), "dense"),
    ),
    classifier="classifier",
    rename=_legacy_densenet_key,
)

TABLES: tuple[NameTable, ...] = (RESNET, DENSENET)


def table_for(layer_names: list[str]) -> tuple[NameTable, list[str]]:
    """Pick the table that names every weighted layer (or the closest one).

    Args:
        layer_names: names of the model's layers that hold weights.

    Returns:
        `(table, unmatched)`: the table matching the most layers and the
        layer names it does not match (empty when it matches all).
    """
    best = None
    for table in TABLES:
        unmatched = [name for name in layer_names if table.target(name) is None]
        if best is None or len(unmatched) < len(best[1]):
            best = (table, unmatched)
    return best


def transform(kind: str, tensor: np.ndarray, variable: str) -> np.ndarray:
    """Apply the layout transform of `kind` to a PyTorch tensor for `variable`."""
    if kind == "conv" and variable == "kernel":
        return np.transpose(tensor, (2, 3, 1, 0)) if tensor.ndim == 4 else tensor
    if kind == "dense" and variable == "kernel":
        return tensor.T if tensor.ndim == 2 else tensor
    return tensor
