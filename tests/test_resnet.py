"""ResNet v1 and plain baselines: counts, forward passes, options, saving."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import trainable_count
from model_checks import (
    check_forward,
    check_keras_round_trip,
    check_reference_count,
    registry_param,
)

import keras_resnets

# Straight from ../shared/REFERENCE.md (torchvision num_params / He et al.).
REFERENCE = {
    "ResNet18": 11_689_512,
    "ResNet34": 21_797_672,
    "ResNet50": 25_557_032,
    "ResNet101": 44_549_160,
    "ResNet152": 60_192_808,
    "ResNet20": 269_722,
    "ResNet32": 464_154,
    "ResNet44": 658_586,
    "ResNet56": 853_018,
    "ResNet110": 1_727_962,
    "ResNet1202": 19_421_274,
}
OPTION_B = {
    "ResNet20": 272_474,
    "ResNet32": 466_906,
    "ResNet44": 661_338,
    "ResNet56": 855_770,
    "ResNet110": 1_730_714,
}
CIFAR_MODELS = [f"ResNet{d}" for d in (20, 32, 44, 56, 110)] + [
    f"Plain{d}" for d in (20, 32, 44, 56, 110)
]


@pytest.mark.parametrize("name", [registry_param(n) for n in REFERENCE])
def test_reference_counts(built_model, name):
    check_reference_count(built_model, name, REFERENCE)


@pytest.mark.parametrize("name", sorted(OPTION_B))
def test_option_b_counts(name):
    model = keras_resnets.get_model(name, shortcut="projection")
    assert trainable_count(model) == OPTION_B[name]


def test_option_c_adds_a_projection_to_every_block():
    model = keras_resnets.ResNet20(shortcut="all_projection")
    projections = [layer for layer in model.layers if layer.name.endswith("_shortcut")]
    assert len(projections) == 9
    assert all(isinstance(layer, keras.layers.Conv2D) for layer in projections)
    # 9 projections: 3 of 16->16, 1 of 16->32, 2 of 32->32, 1 of 32->64, 2 of 64->64
    extra = 3 * (16 * 16 + 32) + (16 * 32 + 64) + 2 * (32 * 32 + 64) + (32 * 64 + 128)
    extra += 2 * (64 * 64 + 128)
    assert trainable_count(model) == REFERENCE["ResNet20"] + extra


def test_plain_nets_have_the_same_layers_without_shortcuts():
    resnet, plain = keras_resnets.ResNet56(), keras_resnets.Plain56()
    assert trainable_count(resnet) == trainable_count(plain)
    assert not any(layer.name.endswith("_add") for layer in plain.layers)
    assert sum(layer.name.endswith("_add") for layer in resnet.layers) == 27

    def convs(model):
        return [lay.name for lay in model.layers if isinstance(lay, keras.layers.Conv2D)]

    assert convs(resnet) == convs(plain)
    assert trainable_count(keras_resnets.Plain18()) == REFERENCE["ResNet18"] - 173_824


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_cifar_forward(built_model, name):
    check_forward(built_model(name), batch=2, size=32, classes=10)


@pytest.mark.parametrize("name", ["ResNet18", "ResNet50"])
def test_imagenet_forward(built_model, name):
    check_forward(built_model(name), batch=1, size=224, classes=1000)


def test_stable_layer_names(built_model):
    names = {layer.name for layer in built_model("ResNet50").layers}
    for expected in (
        "stem_conv",
        "stem_bn",
        "stem_pool",
        "stage2_block1_conv1",
        "stage2_block1_bn1",
        "stage2_block1_shortcut",
        "stage2_block1_shortcut_bn",
        "stage3_block1_conv2_pad",
        "stage5_block3_out",
        "head_pool",
        "head_fc",
    ):
        assert expected in names
    cifar = {layer.name for layer in built_model("ResNet20").layers}
    assert {"stage1_block1_conv1", "stage2_block1_shortcut", "stage3_block3_out"} <= cifar


def test_torchvision_layout_stride_on_3x3(built_model):
    model = built_model("ResNet50")
    assert model.get_layer("stage3_block1_conv1").strides == (1, 1)
    assert model.get_layer("stage3_block1_conv2").strides == (2, 2)
    assert model.get_layer("stage3_block1_conv2").padding == "valid"
    assert model.get_layer("stage3_block1_bn1").epsilon == 1e-5
    assert model.get_layer("stage3_block1_conv1").use_bias is False
    caffe = keras_resnets.ResNet50(stride_in_1x1=True)
    assert caffe.get_layer("stage3_block1_conv1").strides == (2, 2)
    assert caffe.get_layer("stage3_block1_conv2").strides == (1, 1)
    assert trainable_count(caffe) == REFERENCE["ResNet50"]


def test_zero_pad_shortcut_values():
    layer = keras_resnets.layers.ZeroPadShortcut(filters=6, strides=2)
    x = np.arange(2 * 5 * 5 * 4, dtype=np.float32).reshape(2, 5, 5, 4)
    y = keras.ops.convert_to_numpy(layer(x))
    assert y.shape == (2, 3, 3, 6)
    np.testing.assert_array_equal(y[..., :4], x[:, ::2, ::2, :])
    np.testing.assert_array_equal(y[..., 4:], 0.0)
    assert layer.compute_output_shape((None, 5, 5, 4)) == (None, 3, 3, 6)
    assert not layer.weights


@pytest.mark.parametrize("shortcut", ["zero_pad", "projection"])
def test_keras_round_trip(tmp_path, shortcut):
    model = keras_resnets.ResNet20(shortcut=shortcut)
    x = np.random.default_rng(1).random((3, 32, 32, 3), dtype=np.float32)
    loaded = check_keras_round_trip(model, x, tmp_path / "model.keras")
    kinds = {type(layer).__name__ for layer in loaded.layers}
    assert ("ZeroPadShortcut" in kinds) == (shortcut == "zero_pad")


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_weights_argument_loads_a_file(tmp_path, suffix):
    model = keras_resnets.ResNet20()
    path = tmp_path / f"saved{suffix}"
    if suffix == ".keras":
        model.save(path)
    else:
        model.save_weights(path)
    x = np.random.default_rng(2).random((2, 32, 32, 3), dtype=np.float32)
    reloaded = keras_resnets.ResNet20(weights=str(path))
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize(
    "pooling, shape", [(None, (None, 8, 8, 64)), ("avg", (None, 64)), ("max", (None, 64))]
)
def test_include_top_false_cifar(pooling, shape):
    model = keras_resnets.ResNet20(include_top=False, pooling=pooling, input_shape=(32, 32, 3))
    assert model.output.shape == shape


@pytest.mark.parametrize(
    "pooling, shape", [(None, (None, None, None, 2048)), ("avg", (None, 2048))]
)
def test_include_top_false_imagenet_any_size(pooling, shape):
    model = keras_resnets.ResNet50(include_top=False, pooling=pooling)
    assert model.output.shape == shape
    x = np.zeros((1, 97, 131, 3), np.float32)
    y = model(x)
    expected = (1, 4, 5, 2048) if pooling is None else (1, 2048)
    assert tuple(y.shape) == expected


def test_any_channel_count_and_input_tensor():
    grey = keras_resnets.ResNet20(input_shape=(32, 32, 1))
    assert grey.input_shape == (None, 32, 32, 1)
    rgbd = keras_resnets.ResNet18(include_top=False, input_shape=(64, 64, 4), pooling="avg")
    assert rgbd.output.shape == (None, 512)
    tensor = keras.Input((40, 40, 3))
    model = keras_resnets.ResNet20(input_tensor=tensor, classes=3, classifier_activation=None)
    assert model.input_shape == (None, 40, 40, 3)
    assert model.output.shape == (None, 3)
    assert model.get_layer("head_fc").activation is keras.activations.linear


def test_cifar_resnet_generic_depth():
    model = keras_resnets.CifarResNet(depth=74)
    assert sum(layer.name.endswith("_add") for layer in model.layers) == 36
    plain = keras_resnets.CifarResNet(depth=14, residual=False)
    assert not any(layer.name.endswith("_add") for layer in plain.layers)


def test_get_model_and_list_models():
    names = keras_resnets.list_models()
    assert names == sorted(names)
    for expected in ("ResNet18", "ResNet200", "ResNet1202", "Plain18", "Plain34", "Plain110"):
        assert expected in names
    model = keras_resnets.get_model("ResNet20", classes=7)
    assert model.output.shape == (None, 7)
    with pytest.raises(ValueError, match="ResNet50"):
        keras_resnets.get_model("resnet5O")
    with pytest.raises(ValueError, match="Closest names: ResNet50"):
        keras_resnets.get_model("resnet50")


# ---- bad input -------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(input_shape=(32, 32)), "`input_shape` must have rank 3"),
        (dict(input_shape=(1, 32, 32, 3)), "`input_shape` must have rank 3"),
        (dict(input_shape=(32, 32, 0)), "positive integer channel"),
        (dict(input_shape=(32, 32, None)), "positive integer channel"),
        (dict(input_shape=(2, 2, 3)), "at least 4"),
        (dict(input_shape=(None, None, 3)), "include_top=False"),
        (dict(classes=0), "`classes` must be an integer >= 1, got 0"),
        (dict(include_top=False, pooling="mean"), "`pooling` must be one of"),
        (dict(classifier_activation="softmaxx"), "Unknown `classifier_activation` 'softmaxx'"),
        (dict(weights="/nonexistent/model.weights.h5"), "does not exist"),
        (dict(weights="imagenet2"), "`weights` must be None or a path"),
        (dict(input_tensor=np.zeros((1, 32, 32, 3))), "`input_tensor` must be a Keras tensor"),
        (dict(shortcut="option_a"), "Unknown `shortcut` 'option_a'.*'zero_pad'"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        keras_resnets.ResNet20(**kwargs)


def test_imagenet_minimum_size_is_named():
    with pytest.raises(ValueError, match="at least 32"):
        keras_resnets.ResNet50(include_top=False, input_shape=(16, 16, 3))


def test_bad_depth_lists_valid_ones():
    with pytest.raises(ValueError, match=r"`depth` must be 6n \+ 2.*20, 26, 32"):
        keras_resnets.CifarResNet(depth=21)


def test_mismatching_weights_name_the_layer(tmp_path):
    path = tmp_path / "r20.weights.h5"
    keras_resnets.ResNet20().save_weights(path)
    with pytest.raises(ValueError, match="at layer 'stage2_block1_shortcut'"):
        keras_resnets.ResNet20(shortcut="projection", weights=str(path))
    with pytest.raises(ValueError, match="at layer 'head_fc'"):
        keras_resnets.ResNet20(classes=5, weights=str(path))


def test_unknown_option_is_a_type_error():
    with pytest.raises(TypeError, match="cardinality"):
        keras_resnets.ResNet20(cardinality=32)
