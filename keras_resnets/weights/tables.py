"""Name tables: which PyTorch tensor fills which Keras weight, per family and layout.

One table per family maps each Keras layer name (a regular expression over
the package's stable layer names) to the PyTorch module that holds its
weights and to the layout transform between them:

| kind | Keras layer | Keras variable <- PyTorch tensor |
|---|---|---|
| `conv` | `Conv2D`, `GroupedConv2D` | `kernel` <- `weight` OIHW -> HWIO (`(2, 3, 1, 0)`); grouped kernels `(O, I/g, kh, kw)` -> `(kh, kw, I/g, O)`, the same transpose; `bias` <- `bias` |
| `conv1d` | `Conv1D` | `kernel` <- `weight` `(O, I, k)` -> `(k, I, O)` (`(2, 1, 0)`; ECA's `(1, 1, k)` -> `(k, 1, 1)`) |
| `bn` | `BatchNormalization` | `gamma`, `beta`, `moving_mean`, `moving_variance` <- `weight`, `bias`, `running_mean`, `running_var` (`num_batches_tracked` is not needed) |
| `dense` | `Dense` | `kernel` <- `weight.T`, `bias` <- `bias` |

Two layouts (`LAYOUTS`) name the tensors:

- `"torchvision"`: torchvision's `ResNet` (also ResNeXt and Wide ResNet) and
  `DenseNet` modules. timm's plain `resnet*`, `resnext*`, `wide_resnet*` and
  `densenet*` models use the same names, so their checkpoints (and timm's
  re-published `tv_in1k` / `tv2_in1k` ones) are in this layout too.
- `"timm"`: timm's `ResNet` with its options (issue 18's families), a
  superset of the above: the deep stems `conv1.0`, `conv1.1`, `conv1.3`,
  `conv1.4`, `conv1.6` (convolution, BN, convolution, BN, convolution) then
  `bn1`; the convolutional stem pool `maxpool.0`, `maxpool.1` (ResNet-RS);
  the average-pool shortcut `downsample.1`, `downsample.2` (ResNet-D; `.0`
  is the pool) in place of `downsample.0`, `downsample.1`;
  Squeeze-and-Excitation `se.fc1`, `se.fc2`; ECA `se.conv`; ResNeSt's split
  attention `conv2.conv`, `conv2.bn0`, `conv2.fc1`, `conv2.bn1`, `conv2.fc2`.

`detect_layout` tells them apart by the keys of a checkpoint.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import numpy as np

__all__ = [
    "KINDS",
    "LAYOUTS",
    "NameTable",
    "Rule",
    "TABLES",
    "detect_layout",
    "table_for",
]

KINDS = ("conv", "conv1d", "bn", "dense")
LAYOUTS = ("torchvision", "timm")


@dataclasses.dataclass(frozen=True)
class Rule:
    """One row of a name table.

    Attributes:
        pattern: regular expression matching whole Keras layer names.
        target: maps the match to the PyTorch module prefix
            (`"layer1.0.conv1"`).
        kind: `"conv"`, `"conv1d"`, `"bn"` or `"dense"`: the layout transform.
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
        family: a label for messages (`"ResNet"`, `"timm ResNet"`).
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

_UNIT_RULES = (
    Rule(_BLOCK + r"_conv(?P<i>[123])", _stage_block("layer{layer}.{block}.conv{i}"), "conv"),
    Rule(_BLOCK + r"_bn(?P<i>[123])", _stage_block("layer{layer}.{block}.bn{i}"), "bn"),
)


def _shortcut_rules(first: int) -> tuple[Rule, Rule]:
    # The projection shortcut's 1x1 convolution and BN are downsample.{first} and .{first + 1}.
    conv = f"layer{{layer}}.{{block}}.downsample.{first}"
    bn = f"layer{{layer}}.{{block}}.downsample.{first + 1}"
    return (
        Rule(_BLOCK + r"_shortcut", _stage_block(conv), "conv"),
        Rule(_BLOCK + r"_shortcut_bn", _stage_block(bn), "bn"),
    )


RESNET = NameTable(
    family="ResNet",
    rules=(
        Rule("stem_conv", _const("conv1"), "conv"),
        Rule("stem_bn", _const("bn1"), "bn"),
        *_UNIT_RULES,
        *_shortcut_rules(0),
        Rule("head_fc", _const("fc"), "dense"),
    ),
    classifier="fc",
)

# timm's nn.Sequential stems: conv1.{0: conv, 1: BN, 2: ReLU, 3: conv, 4: BN, 5: ReLU, 6: conv}.
_DEEP_STEM = {"stem_conv1": "conv1.0", "stem_conv2": "conv1.3", "stem_conv3": "conv1.6"}
_DEEP_STEM_BN = {"stem_bn1": "conv1.1", "stem_bn2": "conv1.4", "stem_bn3": "bn1"}


def _timm_resnet(avg_down: bool) -> NameTable:
    """timm's ResNet names; `avg_down`: ResNet-D shortcuts (`downsample.0` is the pool)."""
    return NameTable(
        family="timm ResNet" + (" (average-pool shortcuts)" if avg_down else ""),
        rules=(
            Rule("stem_conv", _const("conv1"), "conv"),
            Rule("stem_bn", _const("bn1"), "bn"),
            *(Rule(name, _const(torch), "conv") for name, torch in _DEEP_STEM.items()),
            *(Rule(name, _const(torch), "bn") for name, torch in _DEEP_STEM_BN.items()),
            Rule("stem_pool_conv", _const("maxpool.0"), "conv"),
            Rule("stem_pool_bn", _const("maxpool.1"), "bn"),
            *_UNIT_RULES,
            # ResNeSt: the SplitAttention layer {unit}_conv2 holds timm's conv2.* modules.
            Rule(
                _BLOCK + r"_conv2_(?P<part>conv|fc1|fc2)",
                _stage_block("layer{layer}.{block}.conv2.{part}"),
                "conv",
            ),
            Rule(
                _BLOCK + r"_conv2_(?P<part>bn0|bn1)",
                _stage_block("layer{layer}.{block}.conv2.{part}"),
                "bn",
            ),
            *_shortcut_rules(1 if avg_down else 0),
            Rule(_BLOCK + r"_se_reduce", _stage_block("layer{layer}.{block}.se.fc1"), "conv"),
            Rule(_BLOCK + r"_se_expand", _stage_block("layer{layer}.{block}.se.fc2"), "conv"),
            Rule(_BLOCK + r"_eca_conv", _stage_block("layer{layer}.{block}.se.conv"), "conv1d"),
            Rule("head_fc", _const("fc"), "dense"),
        ),
        classifier="fc",
    )


TIMM_RESNET = _timm_resnet(avg_down=False)
TIMM_RESNET_AVG_DOWN = _timm_resnet(avg_down=True)


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

TABLES: tuple[NameTable, ...] = (RESNET, DENSENET)  # the torchvision layout

# timm's DenseNet keeps torchvision's module names (features.denseblock1.denselayer1.norm1, ...).
_LAYOUT_TABLES = {
    "torchvision": {False: TABLES, True: TABLES},
    "timm": {False: (TIMM_RESNET, DENSENET), True: (TIMM_RESNET_AVG_DOWN, DENSENET)},
}

# A key that only timm's layout has: deep stem, convolutional stem pool, average-pool
# shortcut, SE / ECA, split attention.
_TIMM_KEY = re.compile(
    r"^conv1\.\d+\.|^maxpool\.\d+\.|\.downsample\.2\.|\.se\.(?:fc1|fc2|conv)\."
    r"|\.conv2\.(?:conv|bn0|fc1|bn1|fc2)\."
)


def detect_layout(keys) -> str:
    """The layout of a checkpoint from its tensor names.

    Args:
        keys: the checkpoint's tensor names.

    Returns:
        `"timm"` when a key exists only in timm's layout (`conv1.0.weight`:
        a deep stem; `maxpool.0.weight`: ResNet-RS's convolutional stem
        pool; `layer1.0.downsample.2.weight`: an average-pool shortcut;
        `...se.fc1...`/`...se.conv...`: SE/ECA; `...conv2.fc1...`: split
        attention), else `"torchvision"` (which timm's plain ResNet, ResNeXt,
        Wide ResNet and DenseNet checkpoints share).
    """
    return "timm" if any(_TIMM_KEY.search(key) for key in keys) else "torchvision"


def table_for(
    layer_names: list[str], layout: str = "torchvision", avg_down: bool = False
) -> tuple[NameTable, list[str]]:
    """Pick the table of `layout` that names every weighted layer (or the closest one).

    Args:
        layer_names: names of the model's layers that hold weights.
        layout: `"torchvision"` or `"timm"` (`LAYOUTS`).
        avg_down: the model's projection shortcuts start with an average
            pool (ResNet-D: `downsample="avg"`); timm then numbers the
            shortcut's convolution and BN `downsample.1`/`.2`.

    Returns:
        `(table, unmatched)`: the table matching the most layers and the
        layer names it does not match (empty when it matches all).

    Raises:
        ValueError: an unknown `layout`.
    """
    if layout not in _LAYOUT_TABLES:
        raise ValueError(f"`layout` must be one of {LAYOUTS}, got {layout!r}.")
    best = None
    for table in _LAYOUT_TABLES[layout][bool(avg_down)]:
        unmatched = [name for name in layer_names if table.target(name) is None]
        if best is None or len(unmatched) < len(best[1]):
            best = (table, unmatched)
    return best


def transform(kind: str, tensor: np.ndarray, variable: str) -> np.ndarray:
    """Apply the layout transform of `kind` to a PyTorch tensor for `variable`."""
    if kind == "conv" and variable == "kernel":
        return np.transpose(tensor, (2, 3, 1, 0)) if tensor.ndim == 4 else tensor
    if kind == "conv1d" and variable == "kernel":
        return np.transpose(tensor, (2, 1, 0)) if tensor.ndim == 3 else tensor
    if kind == "dense" and variable == "kernel":
        return tensor.T if tensor.ndim == 2 else tensor
    return tensor
