"""Custom layers. Each is small, uses `keras.ops` only, and is registered for saving."""

from keras_resnets.layers.dense_block import DenseBlock
from keras_resnets.layers.highway import Highway, default_transform_bias
from keras_resnets.layers.zero_pad_shortcut import ZeroPadShortcut

__all__ = ["DenseBlock", "Highway", "ZeroPadShortcut", "default_transform_bias"]
