"""Custom layers. Each is small, uses `keras.ops` only, and is registered for saving."""

from keras_resnets.layers.dense_block import DenseBlock
from keras_resnets.layers.grouped_conv import (
    GroupedConv2D,
    get_grouped_conv_implementation,
    set_grouped_conv_implementation,
)
from keras_resnets.layers.highway import Highway, default_transform_bias
from keras_resnets.layers.split_attention import SplitAttention, make_divisible
from keras_resnets.layers.stochastic_depth import StochasticDepth, survival_probabilities
from keras_resnets.layers.zero_pad_shortcut import ZeroPadShortcut

__all__ = [
    "DenseBlock",
    "GroupedConv2D",
    "Highway",
    "SplitAttention",
    "StochasticDepth",
    "ZeroPadShortcut",
    "default_transform_bias",
    "get_grouped_conv_implementation",
    "make_divisible",
    "set_grouped_conv_implementation",
    "survival_probabilities",
]
