"""Checks that several model test modules share (one copy of each).

- `registry_param(name)`: a pytest parameter for a registered model, marked
  `slow` where the registry says so.
- `check_reference_count`: the exact trainable count, built and registered.
- `check_forward`: a forward pass gives one probability row per image.
- `check_keras_round_trip`: `.keras` save and load predict exactly the same.
- `randomise_batchnorm`: non-trivial BN statistics and affine weights.
- `smallest_of_each_kind()`: the registry's smallest row of each kind (same
  generic builder, family and block): what depth-independent structural
  checks build, since a larger row of a kind repeats its layers.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import trainable_count

from keras_resnets.models.registry import model_info


def registry_param(name: str):
    """`name` as a pytest parameter, marked slow for the registry's largest models."""
    marks = [pytest.mark.slow] if model_info(name).slow else []
    return pytest.param(name, marks=marks, id=name)


def _kind(name: str) -> tuple:
    info = model_info(name)
    return (info.generic, info.family, getattr(info.spec, "block", None))


def smallest_of_each_kind() -> list[str]:
    """The smallest registered row of each (generic builder, family, block), sorted."""
    from keras_resnets import list_models

    smallest: dict[tuple, str] = {}
    for name in list_models():
        kind = _kind(name)
        if (
            kind not in smallest
            or model_info(name).num_params < model_info(smallest[kind]).num_params
        ):
            smallest[kind] = name
    return sorted(smallest.values())


def check_reference_count(built_model, name: str, reference: dict[str, int]) -> None:
    """The built model and its registry row both hold the reference count."""
    assert trainable_count(built_model(name)) == reference[name]
    assert model_info(name).num_params == reference[name]


def check_forward(model: keras.Model, batch: int, size: int, classes: int):
    """Random images of `size` give `(batch, classes)` probabilities summing to 1."""
    x = np.random.default_rng(0).random((batch, size, size, 3), dtype=np.float32)
    y = model(x, training=False)
    assert y.shape == (batch, classes)
    np.testing.assert_allclose(np.sum(y, axis=1), 1.0, rtol=1e-5)
    return y


def check_keras_round_trip(model: keras.Model, x: np.ndarray, path) -> keras.Model:
    """Save `model` to `path` (`.keras`), load it, and compare predictions exactly."""
    expected = model.predict(x, verbose=0)
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)
    return loaded


def randomise_batchnorm(layers, rng: np.random.Generator) -> None:
    """Give every BatchNormalization in `layers` non-trivial statistics and affine weights."""
    for layer in layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                    rng.normal(0, 0.2, beta.shape).astype("float32"),
                    rng.normal(0, 0.2, mean.shape).astype("float32"),
                    rng.uniform(0.5, 1.5, var.shape).astype("float32"),
                ]
            )
