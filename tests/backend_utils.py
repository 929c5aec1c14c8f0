"""Helpers for the cross-backend tests: deterministic weights and the model list.

`set_deterministic_weights` gives every variable a value that depends only on
its path (not on the backend, the process or the variable order), so the same
model built on TensorFlow, JAX and PyTorch holds identical weights without any
file, and its outputs can be compared with a fixture made on TensorFlow.
"""

from __future__ import annotations

import zlib

import numpy as np

# The smallest CIFAR model of every family, with the options that exercise
# each custom layer. Extend this when a family or layer lands; then run
# `python tests/fixtures/make_backend_fixtures.py` on TensorFlow.
CASES: dict[str, tuple[str, dict]] = {
    "resnet20_zero_pad": ("ResNet20", {}),
    "resnet20_projection": ("ResNet20", {"shortcut": "projection"}),
    "plain20": ("Plain20", {}),
}

INPUT_SEED = 1234


def fixed_input(batch: int = 2, size: int = 32) -> np.ndarray:
    """A fixed float32 batch of images in [0, 1)."""
    return np.random.default_rng(INPUT_SEED).random((batch, size, size, 3), dtype=np.float32)


def set_deterministic_weights(model) -> None:
    """Fill every variable of `model` from a generator seeded by its path."""
    for variable in model.weights:
        rng = np.random.default_rng(zlib.crc32(variable.path.encode()))
        shape = tuple(variable.shape)
        leaf = variable.path.rsplit("/", 1)[-1]
        if leaf in ("moving_variance",):
            value = rng.uniform(0.5, 1.5, shape)
        elif leaf in ("gamma",):
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) >= 2:
            fan_in = int(np.prod(shape[:-1]))
            value = rng.standard_normal(shape) * np.sqrt(1.0 / fan_in)
        else:
            value = rng.standard_normal(shape) * 0.1
        variable.assign(value.astype(variable.dtype))


def build_case(key: str):
    """Build the model of `CASES[key]` with logits output and fixed weights."""
    import keras_resnets

    name, options = CASES[key]
    model = keras_resnets.get_model(name, classifier_activation=None, **options)
    set_deterministic_weights(model)
    return model
