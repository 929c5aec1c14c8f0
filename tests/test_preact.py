"""Pre-activation ResNets, the five residual units and the shortcut variants (He et al. 2016)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import trainable_count
from model_checks import check_keras_round_trip, check_reference_count, registry_param

import keras_resnets
from keras_resnets import blocks
from keras_resnets.models.registry import model_info

# ../shared/REFERENCE.md: keras.applications ResNet*V2 minus their conv biases;
# pre-activation ResNet-164; pre-activation ResNet-110 has ResNet-110's count.
REFERENCE = {
    "ResNet50V2": 25_549_352,
    "ResNet101V2": 44_541_480,
    "ResNet152V2": 60_185_128,
    "PreActResNet164": 1_703_258,
    "PreActResNet110": 1_727_962,
}


@pytest.mark.parametrize("name", [registry_param(n) for n in REFERENCE])
def test_reference_counts(built_model, name):
    check_reference_count(built_model, name, REFERENCE)


@pytest.mark.slow
def test_preact_resnet1001_is_about_10_point_3_million(built_model):
    # The paper says 10.2M; counted exactly: 1,703,258 grows by 93 units
    # per stage of bottlenecks, no conv bias.
    count = trainable_count(built_model("PreActResNet1001"))
    assert count == model_info("PreActResNet1001").num_params == 10_327_706
    assert sum(layer.name.endswith("_add") for layer in built_model("PreActResNet1001").layers) == (
        333
    )


def test_v2_layout(built_model):
    model = built_model("ResNet50V2")
    names = [layer.name for layer in model.layers]
    # The stem keeps BN-ReLU before max pooling; the first unit skips its
    # pre-activation; every other unit starts with BN-ReLU.
    assert {"stem_bn", "stem_relu", "stem_pool", "post_bn", "post_relu"} <= set(names)
    assert "stage2_block1_bn1" not in names
    assert "stage2_block2_bn1" in names and "stage3_block1_bn1" in names
    assert names[-4:] == ["post_bn", "post_relu", "head_pool", "head_fc"]
    # Projection shortcuts read the shared pre-activation and have no BN.
    assert not any(name.endswith("_shortcut_bn") for name in names)
    shortcut = model.get_layer("stage3_block1_shortcut")
    assert shortcut._inbound_nodes[0].operation is shortcut
    parent = shortcut._inbound_nodes[0].input_tensors[0]._keras_history.operation
    assert parent.name == "stage3_block1_relu1"
    conv1 = model.get_layer("stage3_block1_conv1")
    assert conv1._inbound_nodes[0].input_tensors[0]._keras_history.operation.name == (
        "stage3_block1_relu1"
    )
    # Identity units carry the raw sum, not its activation.
    add = model.get_layer("stage3_block2_add")
    sources = {t._keras_history.operation.name for t in add._inbound_nodes[0].input_tensors}
    assert sources == {"stage3_block1_out", "stage3_block2_conv3"}
    assert not any(
        getattr(layer, "use_bias", False)
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D)
    )
    assert model.get_layer("stage3_block1_conv2").strides == (2, 2)


def _layer_signature(model):
    return [(layer.name, type(layer).__name__) for layer in model.layers]


def _randomize(model, seed=0):
    """Random weights, including BN statistics, so that every layer matters."""
    rng = np.random.default_rng(seed)
    weights = []
    for w in model.weights:
        value = rng.normal(0.0, 0.3, w.shape).astype("float32")
        if "variance" in w.path or "gamma" in w.path:
            value = rng.uniform(0.5, 1.5, w.shape).astype("float32")
        weights.append(value)
    model.set_weights(weights)


def test_resnet110_full_preactivation_is_preact_resnet110(built_model):
    ours = keras_resnets.ResNet110(unit="full_preactivation")
    preact = keras_resnets.PreActResNet110()
    assert _layer_signature(ours) == _layer_signature(preact)
    _randomize(preact)
    ours.set_weights(preact.get_weights())
    x = np.random.default_rng(1).random((2, 32, 32, 3), dtype=np.float32)
    for training in (False, True):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(ours(x, training=training)),
            keras.ops.convert_to_numpy(preact(x, training=training)),
        )
    # ... and the v1 network is a different one.
    v1 = built_model("ResNet110")
    assert _layer_signature(v1) != _layer_signature(preact)


# ---- the five units, checked against the paper's formulas ------------------


def _unit_model(unit, block, strides=1, in_channels=8, filters=8, shortcut_option="zero_pad"):
    inputs = keras.Input((6, 6, in_channels))
    out = blocks.residual_unit(
        inputs,
        filters,
        strides=strides,
        name="u",
        block=block,
        unit=unit,
        shortcut=shortcut_option,
    )
    model = keras.Model(inputs, out)
    _randomize(model)
    return model


def _expected_basic(model, unit, x):
    def layer(name):
        return lambda t: keras.ops.convert_to_numpy(model.get_layer(f"u_{name}")(t, training=False))

    conv1, conv2, bn1, bn2 = layer("conv1"), layer("conv2"), layer("bn1"), layer("bn2")

    def relu(t):
        return np.maximum(t, 0.0)

    if unit == "original":
        return relu(x + bn2(conv2(relu(bn1(conv1(x))))))
    if unit == "bn_after_addition":
        return relu(bn2(x + conv2(relu(bn1(conv1(x))))))
    if unit == "relu_before_addition":
        return x + relu(bn2(conv2(relu(bn1(conv1(x))))))
    if unit == "relu_only_preactivation":
        return x + bn2(conv2(relu(bn1(conv1(relu(x))))))
    assert unit == "full_preactivation"
    return x + conv2(relu(bn2(conv1(relu(bn1(x))))))


@pytest.mark.parametrize("unit", blocks.UNITS)
def test_basic_units_compute_the_papers_formulas(unit):
    model = _unit_model(unit, "basic")
    x = np.random.default_rng(2).normal(size=(2, 6, 6, 8)).astype("float32")
    got = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(got, _expected_basic(model, unit, x), rtol=1e-5, atol=1e-5)
    # The same weights (BN names included) fit every unit.
    assert sorted(w.path for w in model.weights) == sorted(
        w.path for w in _unit_model("original", "basic").weights
    )


def _expected_bottleneck(model, unit, x):
    names = {layer.name for layer in model.layers}

    def layer(name):
        def apply(t):
            if f"u_{name}_pad" in names:  # strided convolutions pad explicitly
                t = model.get_layer(f"u_{name}_pad")(t)
            return keras.ops.convert_to_numpy(model.get_layer(f"u_{name}")(t, training=False))

        return apply

    conv = [None] + [layer(f"conv{i}") for i in (1, 2, 3)]
    bn = [None] + [layer(f"bn{i}") for i in (1, 2, 3)]
    short = layer("shortcut")

    def relu(t):
        return np.maximum(t, 0.0)

    if unit == "original":
        f = bn[3](conv[3](relu(bn[2](conv[2](relu(bn[1](conv[1](x))))))))
        return relu(layer("shortcut_bn")(short(x)) + f)
    if unit == "bn_after_addition":
        f = conv[3](relu(bn[2](conv[2](relu(bn[1](conv[1](x)))))))
        return relu(bn[3](layer("shortcut_bn")(short(x)) + f))
    if unit == "relu_before_addition":
        f = relu(bn[3](conv[3](relu(bn[2](conv[2](relu(bn[1](conv[1](x)))))))))
        return layer("shortcut_bn")(short(x)) + f
    if unit == "relu_only_preactivation":
        p = relu(x)  # shared: the projection reads the activated input
        return short(p) + bn[3](conv[3](relu(bn[2](conv[2](relu(bn[1](conv[1](p))))))))
    p = relu(bn[1](x))
    return short(p) + conv[3](relu(bn[3](conv[2](relu(bn[2](conv[1](p)))))))


@pytest.mark.parametrize("unit", blocks.UNITS)
def test_bottleneck_units_with_projection(unit):
    model = _unit_model(unit, "bottleneck", strides=2, filters=4, shortcut_option="projection")
    assert model.output.shape == (None, 3, 3, 16)
    x = np.random.default_rng(3).normal(size=(2, 6, 6, 8)).astype("float32")
    got = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(got, _expected_bottleneck(model, unit, x), rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def resnet8_count():
    return trainable_count(keras_resnets.CifarResNet(8))


@pytest.mark.parametrize("unit", blocks.UNITS)
def test_unit_option_on_cifar_networks(unit, resnet8_count):
    basic = keras_resnets.CifarResNet(8, unit=unit)
    bottleneck = keras_resnets.CifarResNet(11, block="bottleneck", unit=unit)
    for model in (basic, bottleneck):
        assert model.output.shape == (None, 10)
        assert sum(layer.name.endswith("_out") for layer in model.layers) == 3
    preact = unit in blocks.PREACT_UNITS
    names = {layer.name for layer in basic.layers}
    assert ("stem_bn" in names) == (not preact)
    assert ("post_relu" in names) == preact
    assert ("post_bn" in names) == (unit == "full_preactivation")
    # Post-activation units keep the v1 count; full pre-activation moves the
    # BNs (no stem BN, BNs on the input side, a final BN) and with option A
    # keeps the count too; ReLU-only pre-activation has no stem BN.
    expected = resnet8_count - (32 if unit == "relu_only_preactivation" else 0)
    assert trainable_count(basic) == expected
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(bottleneck(x))))


def test_cifar_bottleneck_depths():
    model = keras_resnets.CifarResNet(29, block="bottleneck")
    assert model.get_layer("stage3_block3_conv3").filters == 256
    assert model.get_layer("stage1_block1_shortcut").filters == 64
    with pytest.raises(ValueError, match=r"`depth` must be 9n \+ 2.*11, 20, 29"):
        keras_resnets.CifarResNet(30, block="bottleneck")
    with pytest.raises(ValueError, match="Unknown `block` 'wide'"):
        keras_resnets.CifarResNet(20, block="wide")


# ---- shortcut variants (Table 1) ---------------------------------------------

# Extra weights of each variant on CIFAR ResNet-8 (1 unit per stage, 16/32/64).
_GATES_1X1 = (16 * 16 + 16) + (32 * 32 + 32) + (64 * 64 + 64)
_CONV_SHORTCUTS = 16 * 16 + 16 * 32 + 32 * 64
VARIANT_EXTRA = {
    "identity": 0,
    "constant_scaling": 0,
    "exclusive_gating": _GATES_1X1,
    "shortcut_only_gating": _GATES_1X1,
    "conv_shortcut": _CONV_SHORTCUTS,
    "dropout_shortcut": 0,
}


@pytest.mark.parametrize("variant", blocks.SHORTCUT_VARIANTS)
def test_shortcut_variant_counts(variant, resnet8_count):
    model = keras_resnets.CifarResNet(8, shortcut_variant=variant)
    assert trainable_count(model) == resnet8_count + VARIANT_EXTRA[variant]


def test_shortcut_variant_on_resnet110():
    model = keras_resnets.ResNet110(shortcut_variant="exclusive_gating")
    gates = 18 * ((16 * 16 + 16) + (32 * 32 + 32) + (64 * 64 + 64))
    assert trainable_count(model) == 1_727_962 + gates  # ResNet-110, option A
    assert sum(layer.name.endswith("_gate") for layer in model.layers) == 54


def _one_unit(variant, **kwargs):
    inputs = keras.Input((4, 4, 8))
    out = blocks.residual_unit(
        inputs,
        8,
        strides=1,
        name="u",
        shortcut_variant=variant,
        unit="full_preactivation",
        **kwargs,
    )
    model = keras.Model(inputs, out)
    branch = keras.Model(inputs, model.get_layer("u_conv2").output)
    return model, branch


@pytest.mark.parametrize("variant", blocks.SHORTCUT_VARIANTS)
def test_shortcut_variant_formulas(variant):
    model, branch = _one_unit(variant)
    _randomize(model)
    x = np.random.default_rng(4).normal(size=(3, 4, 4, 8)).astype("float32")
    got = keras.ops.convert_to_numpy(model(x, training=False))
    f = keras.ops.convert_to_numpy(branch(x, training=False))
    if variant == "identity":
        expected = x + f
    elif variant == "constant_scaling":
        expected = 0.5 * x + 0.5 * f
    elif variant == "dropout_shortcut":
        expected = 0.5 * x + f  # inference: the shortcut's expected scale 0.5
    elif variant == "conv_shortcut":
        kernel = keras.ops.convert_to_numpy(model.get_layer("u_shortcut").kernel)[0, 0]
        expected = x @ kernel + f
    else:
        gate = model.get_layer("u_gate")
        t, c = (keras.ops.convert_to_numpy(g) for g in gate.gates(x))
        if variant == "exclusive_gating":
            np.testing.assert_allclose(c, 1.0 - t, atol=1e-6)
            expected = t * f + (1.0 - t) * x
        else:
            expected = f + c * x
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_gate_bias_default_and_settable():
    model, _ = _one_unit("exclusive_gating")
    bias = keras.ops.convert_to_numpy(model.get_layer("u_gate").transform_bias_weight)
    np.testing.assert_array_equal(bias, -6.0)
    model, _ = _one_unit("shortcut_only_gating", gate_bias=-2.5)
    gate = model.get_layer("u_gate")
    # y = F + (1 - g) x with g's bias -2.5: the carry gate 1 - g has bias +2.5.
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(gate.carry_bias_weight), 2.5)
    assert not gate.transform_gate
    resnet = keras_resnets.CifarResNet(8, shortcut_variant="exclusive_gating", gate_bias=-3)
    gate = resnet.get_layer("stage2_block1_gate")
    assert gate.transform_bias == -3.0


def test_dropout_shortcut_drops_in_training():
    model, branch = _one_unit("dropout_shortcut")
    x = np.ones((64, 4, 4, 8), np.float32)
    f = keras.ops.convert_to_numpy(branch(x, training=True))
    short = keras.ops.convert_to_numpy(model(x, training=True)) - f
    # Each shortcut entry is 0 (dropped) or x (kept), about half and half.
    assert set(np.round(np.unique(short), 4)) <= {0.0, 1.0}
    assert 0.4 < short.mean() < 0.6


# ---- bad input and saving ------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(unit="preact"),
            "Unknown `unit` 'preact': allowed values are 'original', 'bn_after_addition', "
            "'relu_before_addition', 'relu_only_preactivation', 'full_preactivation'",
        ),
        (
            dict(shortcut_variant="gating"),
            "Unknown `shortcut_variant` 'gating': allowed values are 'identity', "
            "'constant_scaling', 'exclusive_gating', 'shortcut_only_gating', 'conv_shortcut', "
            "'dropout_shortcut'",
        ),
        (dict(shortcut_variant="exclusive_gating", gate_bias="low"), "`gate_bias` must be"),
    ],
)
def test_bad_unit_and_variant(kwargs, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(")", r"\)")):
        keras_resnets.ResNet110(**kwargs)


def test_variant_needs_a_shortcut():
    with pytest.raises(ValueError, match="needs a residual network"):
        keras_resnets.Plain20(shortcut_variant="constant_scaling")


@pytest.mark.parametrize(
    "options",
    [
        dict(unit="full_preactivation"),
        dict(unit="relu_only_preactivation", shortcut_variant="constant_scaling"),
        dict(shortcut_variant="exclusive_gating"),
        dict(shortcut_variant="shortcut_only_gating", unit="bn_after_addition"),
        dict(shortcut_variant="dropout_shortcut", unit="relu_before_addition"),
        dict(shortcut_variant="conv_shortcut"),
        dict(block="bottleneck", unit="full_preactivation"),
    ],
    ids=lambda o: "-".join(str(v) for v in o.values()),
)
def test_keras_round_trip(tmp_path, options):
    depth = 11 if options.get("block") == "bottleneck" else 8
    model = keras_resnets.CifarResNet(depth, **options)
    _randomize(model, seed=5)
    x = np.random.default_rng(6).random((2, 32, 32, 3), dtype=np.float32)
    loaded = check_keras_round_trip(model, x, tmp_path / "model.keras")
    assert _layer_signature(loaded) == _layer_signature(model)


@pytest.mark.parametrize("unit", ["original", "full_preactivation"])
def test_wrap_branch_receives_the_whole_branch(unit):
    """The hook stochastic depth uses: the branch is one function of the unit's input."""
    seen = {}

    def wrap(branch, x, name):
        inputs = keras.Input(x.shape[1:])
        sub = keras.Model(inputs, branch(inputs), name=f"{name}_branch")
        seen[name] = sub
        return sub(x)

    inputs = keras.Input((8, 8, 16))
    out = blocks.residual_unit(
        inputs, 32, strides=2, name="u", unit=unit, shortcut="zero_pad", wrap_branch=wrap
    )
    model = keras.Model(inputs, out)
    branch_layers = {layer.name for layer in seen["u"].layers[1:]}
    if unit == "original":
        assert branch_layers == {
            "u_conv1_pad",
            "u_conv1",
            "u_bn1",
            "u_relu1",
            "u_conv2",
            "u_bn2",
        }
    else:  # the shared pre-activation feeds both paths, so it stays outside
        assert branch_layers == {"u_conv1_pad", "u_conv1", "u_bn2", "u_relu2", "u_conv2"}
    outer = {layer.name for layer in model.layers}
    assert {"u_shortcut", "u_add", "u_out", "u_branch"} <= outer
    assert model.output.shape == (None, 4, 4, 32)
