"""Backend-independent behaviour, run by `make test` on TensorFlow, JAX and PyTorch.

Every test here carries the `multibackend` marker; the Makefile runs
`pytest -m multibackend` again with `KERAS_BACKEND=jax` and `=torch`.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
from backend_utils import CASES, build_case, fixed_input

import keras_resnets

pytestmark = pytest.mark.multibackend

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
ROOT = pathlib.Path(__file__).resolve().parents[1]
BACKEND = keras.backend.backend()


@pytest.fixture(scope="module")
def reference_outputs():
    with np.load(FIXTURES / "backend_outputs.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.mark.parametrize("key", sorted(CASES))
def test_same_outputs_as_tensorflow(reference_outputs, key):
    model = build_case(key)
    out = keras.ops.convert_to_numpy(model(fixed_input(), training=False))
    np.testing.assert_allclose(out, reference_outputs[key], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("key", sorted(CASES))
def test_keras_and_weights_round_trip(tmp_path, key):
    model = build_case(key)
    x = fixed_input()
    expected = model.predict(x, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-6)
    model.save_weights(tmp_path / "m.weights.h5")
    name, options = CASES[key]
    fresh = keras_resnets.get_model(name, classifier_activation=None, **options)
    fresh.load_weights(tmp_path / "m.weights.h5")
    np.testing.assert_allclose(fresh.predict(x, verbose=0), expected, atol=1e-6)


def test_fit_on_digits_reduces_the_loss(digits_32):
    (x_train, y_train), _ = digits_32
    keras.utils.set_random_seed(0)
    model = keras_resnets.ResNet20()
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    x, y = x_train[:256], y_train[:256]
    before = model.evaluate(x, y, verbose=0, batch_size=128)
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    after = model.evaluate(x, y, verbose=0, batch_size=128)
    assert after < 0.8 * before


_LOAD_SCRIPT = """
import sys, numpy as np
sys.path.insert(0, {tests!r})
from backend_utils import CASES, fixed_input
import keras_resnets
name, options = CASES[{key!r}]
model = keras_resnets.get_model(name, classifier_activation=None, **options)
model.load_weights({path!r})
np.save({out!r}, np.asarray(model.predict(fixed_input(), verbose=0)))
"""


def test_weights_saved_here_load_on_another_backend(tmp_path):
    """A .weights.h5 saved on this backend gives identical outputs on another."""
    other = "tensorflow" if BACKEND != "tensorflow" else "jax"
    key = "resnet20_zero_pad"
    model = build_case(key)
    path = tmp_path / "w.weights.h5"
    model.save_weights(path)
    out = tmp_path / "out.npy"
    script = _LOAD_SCRIPT.format(tests=str(ROOT / "tests"), key=key, path=str(path), out=str(out))
    env = {**os.environ, "KERAS_BACKEND": other, "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=ROOT, timeout=600)
    np.testing.assert_allclose(
        np.load(out), model.predict(fixed_input(), verbose=0), atol=1e-5, rtol=1e-5
    )
