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
from backend_utils import CASES, build_case, build_fresh, fixed_input

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
    fresh = build_fresh(key)
    fresh.load_weights(tmp_path / "m.weights.h5")
    np.testing.assert_allclose(fresh.predict(x, verbose=0), expected, atol=1e-6)


def test_fit_on_digits_reduces_the_loss(digits_32):
    (x_train, y_train), _ = digits_32
    keras.utils.set_random_seed(0)
    model = keras_resnets.ResNet20()
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    x, y = x_train[:256], y_train[:256]

    def loss():
        # Training-mode loss (batch statistics): what `fit` optimises. The
        # inference-mode loss of a network 8 steps old reads BN moving
        # statistics that have barely moved; its ratio after / before was
        # 0.15-0.64 over seeds 0-3 (the bound was 0.8), while this one was
        # 0.34-0.36 on TensorFlow.
        probabilities = model(x, training=True)
        losses = keras.losses.sparse_categorical_crossentropy(y, probabilities)
        return float(np.mean(keras.ops.convert_to_numpy(losses)))

    before = loss()
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    after = loss()
    assert after < 0.6 * before, (before, after)


_LOAD_SCRIPT = """
import sys, numpy as np
sys.path.insert(0, {tests!r})
from backend_utils import build_fresh, fixed_input
model = build_fresh({key!r})
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


# ---- GroupedConv2D ---------------------------------------------------------


def test_grouped_conv_native_and_split_agree_with_gradients():
    from backend_utils import gradients_of_weighted_sum

    from keras_resnets.layers import GroupedConv2D

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 9, 9, 16)).astype("float32")
    results = {}
    for implementation in ("native", "split"):
        keras.utils.set_random_seed(3)
        layer = GroupedConv2D(
            24,
            3,
            strides=2,
            padding="same",
            groups=4,
            use_bias=True,
            implementation=implementation,
        )
        layer.build(x.shape)
        if implementation == "split":
            for target, source in zip(layer.weights, results["native"][3], strict=True):
                target.assign(source)
        probe = np.random.default_rng(1).standard_normal((2, 5, 5, 24)).astype("float32")
        y, gx, gw = gradients_of_weighted_sum(layer, x, probe)
        results[implementation] = (
            y,
            gx,
            gw,
            [keras.ops.convert_to_numpy(w) for w in layer.weights],
        )
    native, split = results["native"], results["split"]
    np.testing.assert_allclose(split[0], native[0], atol=1e-5)
    np.testing.assert_allclose(split[1], native[1], atol=1e-5)
    for a, b in zip(split[2], native[2], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)


def test_grouped_conv_auto_picks_the_fast_implementation_for_this_backend():
    from keras_resnets.layers.grouped_conv import resolve_implementation

    # Measured (docs/backends.md): the native gradient is hundreds of times
    # slower than split on TensorFlow and JAX CPUs, and faster on PyTorch's;
    # TensorFlow's custom gradient beats split.
    expected = {"tensorflow": "custom_gradient", "jax": "split", "torch": "native"}[BACKEND]
    assert resolve_implementation("auto") == expected
    assert resolve_implementation("native") == "native"
    if BACKEND != "tensorflow":
        with pytest.raises(ValueError, match="'custom_gradient' is written for the TensorFlow"):
            resolve_implementation("custom_gradient")


def test_resnext_forms_and_implementations_agree_here():
    common = dict(classifier_activation=None, input_shape=(16, 16, 3))
    native = keras_resnets.CifarResNeXt(
        depth=11, cardinality=4, base_width=4, implementation="native", **common
    )
    split = keras_resnets.CifarResNeXt(
        depth=11, cardinality=4, base_width=4, implementation="split", **common
    )
    split.set_weights(native.get_weights())
    x = np.random.default_rng(2).random((2, 16, 16, 3), dtype=np.float32)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(split(x)), keras.ops.convert_to_numpy(native(x)), atol=1e-5
    )


# ---- DenseBlock ------------------------------------------------------------


def test_dense_block_memory_efficient_matches_plain():
    from backend_utils import gradients_of_weighted_sum

    from keras_resnets.layers import DenseBlock

    x = np.random.default_rng(0).standard_normal((2, 6, 6, 8)).astype("float32")
    probe = np.random.default_rng(1).standard_normal((2, 6, 6, 16)).astype("float32")
    results = []
    for efficient in (False, True):
        layer = DenseBlock(num_layers=2, growth_rate=4, memory_efficient=efficient)
        layer.build(x.shape)
        if results:
            for target, source in zip(layer.weights, results[0][3], strict=True):
                target.assign(source)
        y, gx, gw = gradients_of_weighted_sum(layer, x, probe, training=True)
        results.append((y, gx, gw, [keras.ops.convert_to_numpy(w) for w in layer.weights]))
    (y0, gx0, gw0, _), (y1, gx1, gw1, _) = results
    np.testing.assert_allclose(y1, y0, atol=1e-5)
    np.testing.assert_allclose(gx1, gx0, atol=1e-5)
    for a, b in zip(gw1, gw0, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)


# ---- StochasticDepth -------------------------------------------------------


def _stochastic_layer(mode: str, seed: int):
    from keras_resnets.layers import StochasticDepth

    inputs = keras.Input((4, 4, 3))
    branch = keras.Model(inputs, keras.layers.Conv2D(3, 3, padding="same", name="c")(inputs))
    keras.utils.set_random_seed(0)
    layer = StochasticDepth(branch, survival_probability=0.5, mode=mode, seed=seed)
    layer.build((None, 4, 4, 3))
    return layer, branch


def test_stochastic_depth_batch_mode_draws_whole_batches_here():
    layer, branch = _stochastic_layer("batch", seed=7)
    x = np.random.default_rng(0).standard_normal((3, 4, 4, 3)).astype("float32")
    full = x + keras.ops.convert_to_numpy(branch(x))
    kept = []
    for _ in range(24):
        y = keras.ops.convert_to_numpy(layer(x, training=True))
        dropped, whole = np.allclose(y, x, atol=1e-6), np.allclose(y, full, atol=1e-5)
        assert dropped != whole  # the whole batch is either skipped or kept
        kept.append(whole)
    assert 0 < sum(kept) < len(kept)
    # Inference: every block runs, residual scaled by p (scale="test").
    y = keras.ops.convert_to_numpy(layer(x, training=False))
    np.testing.assert_allclose(y, x + 0.5 * (full - x), atol=1e-5)
    # The same seed repeats the same draws.
    again, _ = _stochastic_layer("batch", seed=7)
    again.set_weights(layer.get_weights())
    repeat = [
        np.allclose(keras.ops.convert_to_numpy(again(x, training=True)), full, atol=1e-5)
        for _ in range(24)
    ]
    assert repeat == kept


def test_stochastic_depth_sample_mode_draws_per_example_here():
    layer, branch = _stochastic_layer("sample", seed=3)
    x = np.random.default_rng(1).standard_normal((16, 4, 4, 3)).astype("float32")
    residual = keras.ops.convert_to_numpy(branch(x))
    y = keras.ops.convert_to_numpy(layer(x, training=True))
    kept = [np.allclose(y[i], x[i] + residual[i] / 0.5, atol=1e-4) for i in range(16)]
    dropped = [np.allclose(y[i], x[i], atol=1e-6) for i in range(16)]
    assert all(k != d for k, d in zip(kept, dropped, strict=True))
    assert 0 < sum(kept) < 16


def test_memory_efficient_densenet_trains_like_the_plain_one():
    x = np.random.default_rng(4).random((8, 16, 16, 3), dtype=np.float32)
    y = np.arange(8) % 10
    weights = []
    for efficient in (False, True):
        keras.utils.set_random_seed(0)
        model = keras_resnets.CifarDenseNet(
            depth=16, growth_rate=4, memory_efficient=efficient, input_shape=(16, 16, 3)
        )
        if weights:
            model.set_weights(weights[0][0])
        start = [w.copy() for w in model.get_weights()]
        model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
        weights.append((start, model.get_weights()))
    for plain, lean in zip(weights[0][1], weights[1][1], strict=True):
        np.testing.assert_allclose(lean, plain, atol=1e-4, rtol=1e-4)
    assert any(not np.allclose(a, b) for a, b in zip(weights[0][0], weights[0][1], strict=True))


# ---- stochastic depth under fit, every family that takes it -----------------


def _values(variables) -> list[np.ndarray]:
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


def _changed(before, after) -> list[bool]:
    return [not np.array_equal(a, b) for a, b in zip(before, after, strict=True)]


def _stochastic_depth_cases():
    from backend_utils import stochastic_depth_families

    return [
        pytest.param(family, mode, id=f"{family}-{mode}")
        for family in stochastic_depth_families()
        for mode in ("batch", "sample")
    ]


@pytest.mark.parametrize("family, mode", _stochastic_depth_cases())
def test_fit_with_stochastic_depth_updates_only_the_blocks_that_ran(family, mode):
    """fit trains here; a dropped block's weights, BN statistics and seeds stay put.

    In batch mode a block either ran (every weight of its branch moved, its
    BatchNormalization statistics moved, its dropout seed advanced) or was
    dropped (all of them unchanged); both happen. In sample mode every
    branch runs on every step, so its statistics always move. (On PyTorch an
    unseeded `Dropout` draws from torch's global generator, not from its
    seed generator, so there the seed state does not move.)
    """
    from backend_utils import stochastic_depth_families

    from keras_resnets import StochasticDepth

    keras.utils.set_random_seed(0)
    model = stochastic_depth_families()[family](
        input_shape=(8, 8, 3),
        classes=3,
        drop_path_rate=0.8,
        stochastic_depth_mode=mode,
        stochastic_depth_seed=1,
    )
    gates = [layer for layer in model.layers if isinstance(layer, StochasticDepth)]
    assert gates
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 8, 8, 3)).astype("float32")
    y = np.arange(8) % 3
    seen = set()
    for _ in range(4):
        before = [(_values(g.branch.trainable_variables), _values(_state(g))) for g in gates]
        history = model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
        assert np.isfinite(history.history["loss"][0])
        for gate, (weights, state) in zip(gates, before, strict=True):
            moved = _changed(weights, _values(gate.branch.trainable_variables))
            state_moved = _changed(state, _values(_state(gate)))
            assert state_moved, gate.name
            if mode == "sample":
                # Every branch ran; its weights stay only if all 8 examples were dropped.
                assert all(state_moved) and (all(moved) or not any(moved)), gate.name
                seen.add("ran")
            elif any(moved):
                assert all(moved) and all(state_moved), gate.name
                seen.add("ran")
            else:
                assert not any(state_moved), gate.name
                seen.add("dropped")
    assert seen == ({"ran", "dropped"} if mode == "batch" else {"ran"})


def _state(gate) -> list:
    """A branch's non-trainable state: BN statistics, and seed states where they move."""
    seeded = BACKEND != "torch" or any(
        isinstance(layer, keras.layers.Dropout) and layer.seed is not None
        for layer in gate.branch._flatten_layers()
    )
    return [
        v for v in gate.branch.non_trainable_variables if seeded or "seed_generator" not in v.path
    ]


class _CallCounter(keras.layers.Layer):
    """Identity that counts the Python calls made while the step executes."""

    calls = 0

    def call(self, inputs):
        type(self).calls += 1
        return inputs


def test_stochastic_depth_batch_mode_skips_the_dropped_branch_here():
    """The dropped branch is not computed: a real conditional on every backend.

    TensorFlow: the branch's convolution is only inside the `If` op (see
    also tests/test_stochastic_depth.py). JAX: only inside the `cond` of the
    traced step (XLA runs one side). PyTorch (eager): the branch's Python
    code runs exactly on the kept draws.
    """
    from keras_resnets import StochasticDepth

    inputs = keras.Input((4, 4, 3))
    h = keras.layers.Conv2D(3, 3, padding="same", name="c")(_CallCounter(name="count")(inputs))
    h = keras.layers.BatchNormalization(name="bn")(h)
    layer = StochasticDepth(keras.Model(inputs, h), survival_probability=0.5, seed=5)
    layer.build((None, 4, 4, 3))
    x = np.random.default_rng(2).standard_normal((2, 4, 4, 3)).astype("float32")
    if BACKEND == "jax":
        import jax

        jaxpr = jax.make_jaxpr(lambda t, tv, ntv: layer.stateless_call(tv, ntv, t, training=True))(
            x, _values(layer.trainable_variables), _values(layer.non_trainable_variables)
        )
        top = [eqn.primitive.name for eqn in jaxpr.jaxpr.eqns]
        assert "cond" in top and "conv_general_dilated" not in top
        assert "conv_general_dilated" in str(jaxpr)
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        step = tf.function(lambda t: layer(t, training=True))
        graph = step.get_concrete_function(tf.TensorSpec(x.shape, tf.float32)).graph
        ops_here = {op.type for op in graph.get_operations()}
        assert ops_here & {"If", "StatelessIf"} and "Conv2D" not in ops_here
    else:
        _CallCounter.calls = 0
        kept = 0
        for _ in range(16):
            y = keras.ops.convert_to_numpy(layer(x, training=True))
            kept += not np.array_equal(y, x)
        assert 0 < kept < 16 and _CallCounter.calls == kept
