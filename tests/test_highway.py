"""Highway layer and networks (Srivastava et al. 2015); ResNet and plain as special cases."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import trainable_count
from model_checks import check_keras_round_trip

import keras_resnets
from keras_resnets import blocks
from keras_resnets.layers import Highway, default_transform_bias
from keras_resnets.models.highway import highway_spec


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _conv1x1(x, kernel, bias):
    return x @ kernel[0, 0] + bias


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.mark.parametrize("coupled, transform_gate", [(True, True), (False, True), (False, False)])
def test_highway_formula(coupled, transform_gate):
    layer = Highway(coupled=coupled, transform_gate=transform_gate, transform_bias=-1.5)
    h, x = _rand(2, 3, 3, 4, seed=1), _rand(2, 3, 3, 4, seed=2)
    layer([h, x])
    weights = [_rand(*w.shape, seed=10 + i) for i, w in enumerate(layer.weights)]
    layer.set_weights(weights)
    y = keras.ops.convert_to_numpy(layer([h, x]))
    t = _sigmoid(_conv1x1(x, *weights[:2])) if transform_gate else 1.0
    if coupled:
        expected = h * t + x * (1.0 - t)
    else:
        c = _sigmoid(_conv1x1(x, *weights[-2:]))
        expected = h * t + x * c
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_highway_initial_biases_and_kernel_size():
    layer = Highway(coupled=False, transform_bias=-3.0, kernel_size=3)
    layer([np.zeros((1, 5, 5, 6), "float32")] * 2)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.transform_bias_weight), -3.0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.carry_bias_weight), 3.0)
    assert tuple(layer.transform_kernel.shape) == (3, 3, 6, 6)
    assert Highway(coupled=False, carry_bias=0.5).carry_bias == 0.5
    assert [default_transform_bias(d) for d in (5, 10, 11, 20, 21, 32)] == [-1, -1, -2, -2, -3, -3]


def _residual_unit_model(residual):
    inputs = keras.Input((6, 6, 8))
    out = blocks.basic_block(inputs, 8, strides=1, name="u", residual=residual)
    return keras.Model(inputs, out)


def _highway_unit_model(coupled):
    """The basic unit's branch H, gated by Highway, then the unit's ReLU."""
    inputs = keras.Input((6, 6, 8))
    branch = blocks.unit_branch(8, strides=1, name="u")
    y = Highway(coupled=coupled, name="u_gate")([branch(inputs), inputs])
    return keras.Model(inputs, keras.layers.Activation("relu", name="u_out")(y))


def _hold_gates(gate, transform, carry):
    """Zero gate kernels and saturating biases: T and C become exactly 0 or 1."""
    for weight in gate.weights:
        if "kernel" in weight.path:
            weight.assign(np.zeros(weight.shape, "float32"))
    gate.transform_bias_weight.assign(np.full(gate.transform_bias_weight.shape, transform))
    if not gate.coupled:
        gate.carry_bias_weight.assign(np.full(gate.carry_bias_weight.shape, carry))


@pytest.mark.parametrize("residual", [True, False], ids=["residual", "plain"])
def test_highway_reduces_to_residual_and_plain_units(residual):
    reference = _residual_unit_model(residual)
    reference.set_weights([_rand(*w.shape, seed=i) ** 2 for i, w in enumerate(reference.weights)])
    highway = _highway_unit_model(coupled=False)
    for layer in reference.layers:
        if layer.weights:
            highway.get_layer(layer.name).set_weights(layer.get_weights())
    # T = C = 1: y = H(x) + x, the residual unit; T = 1, C = 0: y = H(x), plain.
    _hold_gates(highway.get_layer("u_gate"), transform=40.0, carry=40.0 if residual else -40.0)
    t, c = highway.get_layer("u_gate").gates(_rand(1, 6, 6, 8))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(t), 1.0)
    x = _rand(4, 6, 6, 8, seed=7)
    for training in (False, True):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(highway(x, training=training)),
            keras.ops.convert_to_numpy(reference(x, training=training)),
            rtol=1e-6,
            atol=1e-6,
        )
    # With the gates at their initial (negative) bias the layer mostly carries x.
    fresh = _highway_unit_model(coupled=True)
    t, _ = fresh.get_layer("u_gate").gates(np.zeros((1, 6, 6, 8), "float32"))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(t), _sigmoid(-1.0), rtol=1e-6)


def test_highway_layouts():
    assert highway_spec(19).depths == (5, 6, 6)
    assert highway_spec(32).depths == (10, 10, 10)
    model = keras_resnets.HighwayNet19()
    gates = [layer for layer in model.layers if isinstance(layer, Highway)]
    assert len(gates) == 17
    assert all(g.transform_bias == -2.0 and g.coupled for g in gates)
    assert model.get_layer("stage2_block1_conv1").strides == (2, 2)
    assert type(model.get_layer("stage2_block1_shortcut")).__name__ == "ZeroPadShortcut"
    # One 3x3 conv + BN per layer, a 3x3 gate conv with bias.
    per_layer = 16 * 16 * 9 + 32 + 16 * 16 * 9 + 16
    assert trainable_count(model) == 556_042
    assert per_layer == 4_656
    uncoupled = keras_resnets.HighwayNet32(coupled=False, transform_bias=-1)
    gates = [layer for layer in uncoupled.layers if isinstance(layer, Highway)]
    assert len(gates) == 30 and all(g.transform_bias == -1.0 for g in gates)
    assert all(g.carry_bias == 1.0 and not g.coupled for g in gates)
    assert uncoupled.get_layer("stage3_block10_out").output.shape == (None, 8, 8, 64)


@pytest.mark.parametrize("coupled", [True, False])
def test_highway_keras_round_trip(tmp_path, coupled):
    model = keras_resnets.CifarHighwayNet(depth=8, coupled=coupled)
    model.set_weights([_rand(*w.shape, seed=i) * 0.3 + 1 for i, w in enumerate(model.weights)])
    x = np.random.default_rng(3).random((2, 32, 32, 3), dtype=np.float32)
    loaded = check_keras_round_trip(model, x, tmp_path / "highway.keras")
    gate = loaded.get_layer("stage1_block1_gate")
    assert isinstance(gate, Highway) and gate.coupled is coupled and gate.kernel_size == 3
    layer = Highway(coupled=False, transform_gate=False, carry_bias=2.0, kernel_size=3)
    assert Highway.from_config(layer.get_config()).get_config() == layer.get_config()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(coupled="yes"), "`coupled` must be True or False"),
        (dict(transform_gate=False), "needs `coupled=False`"),
        (dict(kernel_size=2), "`kernel_size` must be a positive odd integer, got 2"),
        (dict(transform_bias="low"), "`transform_bias` must be a finite number"),
    ],
)
def test_highway_layer_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Highway(**kwargs)


def test_highway_layer_bad_inputs():
    with pytest.raises(ValueError, match="same shape"):
        Highway()([np.zeros((1, 4, 4, 8), "float32"), np.zeros((1, 4, 4, 4), "float32")])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(depth=4), "`depth` must be an integer >= 5, got 4"),
        (dict(shortcut="all_projection"), "Unknown `shortcut` 'all_projection'"),
        (dict(transform_bias="x"), "`transform_bias` must be a finite number or None"),
        (dict(gate_kernel_size=2), "`gate_kernel_size` must be odd"),
    ],
)
def test_highway_net_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        keras_resnets.CifarHighwayNet(**kwargs)
