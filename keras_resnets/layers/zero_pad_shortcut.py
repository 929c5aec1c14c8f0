"""The parameter-free "option A" shortcut of He et al. (2015)."""

from __future__ import annotations

import keras
from keras import ops

from keras_resnets.utils import check_positive_int


@keras.saving.register_keras_serializable(package="keras_resnets")
class ZeroPadShortcut(keras.layers.Layer):
    """Identity shortcut with spatial subsampling and zero-padded channels.

    He et al. (2015), option A: where a stage halves the resolution and
    widens the channels, the shortcut takes every `strides`-th pixel and
    appends zero channels up to `filters`. It has no weights.

    Args:
        filters: number of output channels (at least the input's).
        strides: spatial subsampling step (1 keeps the resolution).
        **kwargs: standard `keras.layers.Layer` arguments (`name`, ...).

    Example:
        >>> import numpy as np
        >>> layer = ZeroPadShortcut(filters=32, strides=2)
        >>> layer(np.ones((1, 8, 8, 16), "float32")).shape
        (1, 4, 4, 32)
    """

    def __init__(self, filters: int, strides: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        self.strides = check_positive_int("strides", strides)

    def call(self, inputs):
        x = inputs
        if self.strides > 1:
            x = x[:, :: self.strides, :: self.strides, :]
        extra = self.filters - x.shape[-1]
        if extra < 0:
            raise ValueError(
                f"ZeroPadShortcut `filters`={self.filters} is smaller than the input's "
                f"{x.shape[-1]} channels."
            )
        if extra:
            x = ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, extra]])
        return x

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape

        def sub(size):
            return None if size is None else -(-size // self.strides)

        return (batch, sub(height), sub(width), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "strides": self.strides})
        return config
