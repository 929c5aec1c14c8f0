"""Shared fixtures.

`built_model(name)` builds each registered model once per test session, so
the largest ones (ResNet-1202, ResNet-152, ...) are built a single time
however many tests use them.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

_CACHE: dict[str, object] = {}


@pytest.fixture(scope="session")
def built_model():
    """Return a function `name -> model` that builds each default model once."""
    import keras_resnets

    def get(name: str):
        if name not in _CACHE:
            _CACHE[name] = keras_resnets.get_model(name)
        return _CACHE[name]

    return get


def trainable_count(model) -> int:
    """Trainable parameters (PyTorch's `num_params` for the same architecture)."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.fixture(scope="session")
def digits_32():
    """scikit-learn's bundled digits resized to 32x32x3, split 80/20."""
    from training.data import load_digits_32

    return load_digits_32(seed=0)
