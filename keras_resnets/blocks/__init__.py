"""Block ideas as small functions over Keras tensors.

Every function takes a tensor and a `name` prefix and returns a tensor; the
layers it creates are named `{name}_conv1`, `{name}_bn1`, `{name}_relu1`,
..., `{name}_shortcut`, `{name}_add`, `{name}_out`, so weights convert by
name and features can be taken by name.

- `conv_bn`: convolution (explicit padding when strided, as torchvision),
  BatchNormalization (PyTorch's epsilon and momentum), ReLU;
- `shortcuts`: option A/B/C, the shortcut variants of He et al. (2016,
  Table 1), the merge, the stochastic-depth addition;
- `units`: the five unit orderings (one table, `ORDERINGS`), basic and
  bottleneck blocks, `UnitConfig`;
- `resnext`: the ResNeXt forms "a"/"b" and `copy_form_weights`;
- `stems`: the ImageNet (7x7 and deep) and CIFAR stems;
- `attention`: Squeeze-and-Excitation and ECA at the end of a branch;
- `highway`: the highway layer.
"""

from keras_resnets.blocks.attention import (
    ATTENTIONS,
    channel_attention,
    eca_kernel_size,
    efficient_channel_attention,
    reduction_channels,
    squeeze_excite,
)
from keras_resnets.blocks.conv_bn import (
    BN_EPSILON,
    BN_MOMENTUM,
    batch_norm,
    conv,
    kernel_initializer,
    relu,
)
from keras_resnets.blocks.highway import highway_layer
from keras_resnets.blocks.resnext import FORMS, copy_form_weights, path_branch
from keras_resnets.blocks.shortcuts import (
    ADDITIVE_VARIANTS,
    DOWNSAMPLES,
    GATE_BIAS,
    SHORTCUT_DROPOUT,
    SHORTCUT_VARIANTS,
    SHORTCUTS,
    merge,
    residual_add,
    shortcut_path,
    shortcut_type,
)
from keras_resnets.blocks.stems import (
    STEM_POOLS,
    STEMS,
    cifar_stem,
    deep_stem,
    imagenet_stem,
    stem_pool,
    stem_widths,
)
from keras_resnets.blocks.units import (
    ORDERINGS,
    PREACT_UNITS,
    UNITS,
    Ordering,
    UnitConfig,
    basic_block,
    bottleneck_block,
    preactivation,
    residual_sum,
    residual_unit,
    unit_branch,
)

__all__ = [
    "ADDITIVE_VARIANTS",
    "ATTENTIONS",
    "DOWNSAMPLES",
    "STEMS",
    "STEM_POOLS",
    "channel_attention",
    "deep_stem",
    "eca_kernel_size",
    "efficient_channel_attention",
    "reduction_channels",
    "squeeze_excite",
    "stem_pool",
    "stem_widths",
    "BN_EPSILON",
    "BN_MOMENTUM",
    "FORMS",
    "GATE_BIAS",
    "ORDERINGS",
    "PREACT_UNITS",
    "SHORTCUTS",
    "SHORTCUT_DROPOUT",
    "SHORTCUT_VARIANTS",
    "UNITS",
    "Ordering",
    "UnitConfig",
    "basic_block",
    "batch_norm",
    "bottleneck_block",
    "cifar_stem",
    "conv",
    "copy_form_weights",
    "highway_layer",
    "imagenet_stem",
    "kernel_initializer",
    "merge",
    "path_branch",
    "preactivation",
    "relu",
    "residual_add",
    "residual_sum",
    "residual_unit",
    "shortcut_path",
    "shortcut_type",
    "unit_branch",
]
