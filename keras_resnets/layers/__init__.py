"""Custom layers. Each is small, uses `keras.ops` only, and is registered for saving."""

from keras_resnets.layers.stochastic_depth import StochasticDepth, survival_probabilities
from keras_resnets.layers.zero_pad_shortcut import ZeroPadShortcut

__all__ = ["StochasticDepth", "ZeroPadShortcut", "survival_probabilities"]
