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
# Models above this many parameters are cached one at a time: the registry
# holds about 2.9 billion parameters in all, more than CI's 24 GiB could keep
# (the session once reached 21 GB and swapped). Tests ask for a large model
# several times in a row (its count, then its family's checks), so the last
# one is kept; the others are rebuilt when asked again.
LARGE_MODEL = 30_000_000


@pytest.fixture(scope="session")
def built_model():
    """Return a function `name -> model` that builds each default model once.

    Small models stay cached for the session; of the models over
    `LARGE_MODEL` parameters only the last one asked for is kept.
    """
    import gc

    import keras_resnets

    def large(name: str) -> bool:
        return keras_resnets.model_info(name).num_params > LARGE_MODEL

    def get(name: str):
        if name not in _CACHE:
            if large(name):
                for other in [n for n in _CACHE if large(n)]:
                    del _CACHE[other]
                gc.collect()
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
