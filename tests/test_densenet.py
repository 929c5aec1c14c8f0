"""DenseNet: counts, shapes, names, the memory-efficient block, saving, bad arguments."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import trainable_count
from model_checks import check_forward, check_reference_count, registry_param

import keras_resnets
from keras_resnets.layers import DenseBlock
from keras_resnets.models.densenet import transition_block
from keras_resnets.utils import find_layer, iter_layers

# ../shared/REFERENCE.md: torchvision num_params, the paper's table, and the
# CIFAR models counted from Huang et al.'s layout (no conv bias).
REFERENCE = {
    "DenseNet121": 7_978_856,
    "DenseNet161": 28_681_000,
    "DenseNet169": 14_149_480,
    "DenseNet201": 20_013_928,
    "DenseNet264": 33_337_704,
    "DenseNet40": 1_019_722,
    "DenseNetBC100": 769_162,
}
# The paper gives these only to one decimal place (in millions).
APPROXIMATE = {"DenseNet100": 7.0e6, "DenseNetBC250": 15.3e6, "DenseNetBC190": 25.6e6}


@pytest.mark.parametrize("name", [registry_param(n) for n in REFERENCE])
def test_reference_counts(built_model, name):
    check_reference_count(built_model, name, REFERENCE)


@pytest.mark.parametrize("name", [registry_param(n) for n in APPROXIMATE])
def test_paper_counts_to_the_paper_precision(built_model, name):
    count = trainable_count(built_model(name))
    assert round(count / 1e5) * 1e5 == APPROXIMATE[name]


def test_keras_applications_densenet121_has_the_same_trainable_count(built_model):
    reference = keras.applications.DenseNet121(weights=None)
    assert trainable_count(reference) == trainable_count(built_model("DenseNet121"))


def test_generic_builder_matches_the_named_models():
    assert trainable_count(keras_resnets.CifarDenseNet(depth=100)) == REFERENCE["DenseNetBC100"]
    plain = keras_resnets.CifarDenseNet(depth=40, bottleneck=False, compression=1.0)
    assert trainable_count(plain) == REFERENCE["DenseNet40"]
    # Dropout has no weights but adds a layer after every convolution.
    dropped = keras_resnets.CifarDenseNet(depth=40, bottleneck=False, compression=1.0, dropout=0.2)
    assert trainable_count(dropped) == REFERENCE["DenseNet40"]
    dropouts = [la for la in iter_layers(dropped) if isinstance(la, keras.layers.Dropout)]
    assert len(dropouts) == 36 + 2


@pytest.mark.parametrize("name", ["DenseNet40", "DenseNetBC100"])
def test_cifar_forward(built_model, name):
    check_forward(built_model(name), batch=2, size=32, classes=10)


def test_imagenet_forward_and_feature_shapes(built_model):
    model = built_model("DenseNet121")
    check_forward(model, batch=1, size=224, classes=1000)
    shapes = {
        "block1": (None, 56, 56, 256),
        "transition1_pool": (None, 28, 28, 128),
        "block2": (None, 28, 28, 512),
        "transition2_pool": (None, 14, 14, 256),
        "block3": (None, 14, 14, 1024),
        "transition3_pool": (None, 7, 7, 512),
        "block4": (None, 7, 7, 1024),
        "final_relu": (None, 7, 7, 1024),
    }
    for name, shape in shapes.items():
        assert model.get_layer(name).output.shape == shape
    features = keras_resnets.DenseNet161(include_top=False, input_shape=(None, None, 3))
    assert features.output_shape == (None, None, None, 2208)
    small = keras_resnets.DenseNetBC100(include_top=False, pooling="avg", input_shape=(40, 40, 1))
    assert small.output_shape == (None, 342)


def test_torchvision_names_and_shapes(built_model):
    """Every torchvision DenseNet-121 weight has a layer of that shape under a stable name."""
    model = built_model("DenseNet121")
    names = {layer.name for layer in iter_layers(model)}
    assert {"stem_conv", "stem_bn", "stem_pool", "final_bn", "head_fc"} <= names
    channels = 64
    for block, size in enumerate((6, 12, 24, 16), start=1):
        assert isinstance(model.get_layer(f"block{block}"), DenseBlock)
        for j in range(1, size + 1):
            prefix = f"block{block}_layer{j}"
            in_channels = channels + 32 * (j - 1)
            assert find_layer(model, f"{prefix}_bn1").gamma.shape == (in_channels,)
            assert find_layer(model, f"{prefix}_conv1").kernel.shape == (1, 1, in_channels, 128)
            assert find_layer(model, f"{prefix}_bn2").epsilon == 1e-5
            assert find_layer(model, f"{prefix}_conv2").kernel.shape == (3, 3, 128, 32)
            assert find_layer(model, f"{prefix}_conv2").use_bias is False
        channels += 32 * size
        if block < 4:
            conv = model.get_layer(f"transition{block}_conv")
            assert conv.kernel.shape == (1, 1, channels, channels // 2)
            assert model.get_layer(f"transition{block}_bn").epsilon == 1e-5
            channels //= 2
    assert model.get_layer("final_bn").gamma.shape == (1024,)
    with pytest.raises(ValueError, match="block9_layer1_conv1"):
        find_layer(model, "block9_layer1_conv1")


def test_transition_compression_floors():
    x = keras.Input((8, 8, 45))
    y = transition_block(x, 0.5, name="t")
    assert y.shape == (None, 4, 4, 22)
    assert transition_block(keras.Input((8, 8, 10)), 1.0, name="u").shape == (None, 4, 4, 10)


def _random_weights(layers, seed):
    rng = np.random.default_rng(seed)
    values = []
    for weight in layers[0].weights:
        value = rng.normal(size=weight.shape).astype("float32")
        if "kernel" in weight.path:
            value *= np.sqrt(1.0 / np.prod(weight.shape[:-1]))
        if "variance" in weight.path:
            value = np.abs(value) + 0.5
        values.append(value)
    for layer in layers:
        for weight, value in zip(layer.weights, values, strict=True):
            weight.assign(value)


@pytest.mark.parametrize("bottleneck", [True, False], ids=["bottleneck", "no_bottleneck"])
@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
def test_memory_efficient_block_equals_plain(bottleneck, training):
    x = tf.constant(np.random.default_rng(0).normal(size=(3, 6, 5, 7)).astype("float32"))
    plain = DenseBlock(3, 4, bottleneck=bottleneck, name="b")
    lean = DenseBlock(3, 4, bottleneck=bottleneck, memory_efficient=True, name="b")
    for block in (plain, lean):
        block.build(x.shape)
    assert [w.path for w in plain.weights] == [w.path for w in lean.weights]
    _random_weights([plain, lean], seed=1)

    def step(block):
        @tf.function
        def run(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = block(x, training=training)
                loss = tf.reduce_sum(y * tf.sin(y))
            return y, tape.gradient(loss, [x, *block.trainable_weights])

        return run(x)

    (y_plain, g_plain), (y_lean, g_lean) = step(plain), step(lean)
    assert y_lean.shape == (3, 6, 5, 7 + 3 * 4)
    np.testing.assert_allclose(y_lean, y_plain, rtol=1e-5, atol=1e-5)
    assert len(g_lean) == len(g_plain) == 1 + len(plain.trainable_weights)
    for lean_grad, plain_grad in zip(g_lean, g_plain, strict=True):
        scale = np.max(np.abs(plain_grad))
        assert scale > 0
        np.testing.assert_allclose(lean_grad / scale, plain_grad / scale, atol=1e-5)
    # The moving statistics were updated identically (once per call).
    pairs = zip(lean.non_trainable_weights, plain.non_trainable_weights, strict=True)
    for lean_w, plain_w in pairs:
        np.testing.assert_allclose(lean_w.numpy(), plain_w.numpy(), rtol=1e-5, atol=1e-6)
    if training:
        assert not np.allclose(plain.non_trainable_weights[0].numpy(), 0.0)


def test_memory_efficient_model_trains_like_plain():
    rng = np.random.default_rng(2)
    x = rng.random((4, 16, 16, 3), dtype=np.float32)
    y = rng.integers(0, 10, size=(4,))
    models = []
    for memory_efficient in (False, True):
        keras.utils.set_random_seed(3)
        model = keras_resnets.CifarDenseNet(
            depth=16, growth_rate=6, input_shape=(16, 16, 3), memory_efficient=memory_efficient
        )
        model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
        for _ in range(2):
            model.train_on_batch(x, y)
        models.append(model)
    plain, lean = models
    for a, b in zip(plain.weights, lean.weights, strict=True):
        assert a.path == b.path
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-5, err_msg=a.path)
    np.testing.assert_allclose(
        lean.predict(x, verbose=0), plain.predict(x, verbose=0), rtol=1e-4, atol=1e-6
    )


def test_keras_round_trip_and_weights_shared_between_modes(tmp_path):
    model = keras_resnets.CifarDenseNet(depth=16, growth_rate=6, memory_efficient=True)
    x = np.random.default_rng(1).random((3, 32, 32, 3), dtype=np.float32)
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.train_on_batch(x, np.arange(3))  # moving statistics away from 0/1
    expected = model.predict(x, verbose=0)
    path = tmp_path / "densenet.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)
    assert loaded.get_layer("block2").memory_efficient is True
    assert loaded.get_layer("block2").get_config() == model.get_layer("block2").get_config()
    # The same weight file loads into the plain model and predicts the same.
    weights = tmp_path / "densenet.weights.h5"
    model.save_weights(weights)
    plain = keras_resnets.CifarDenseNet(depth=16, growth_rate=6, weights=str(weights))
    np.testing.assert_allclose(plain.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"growth_rate": 0}, "`growth_rate` must be an integer >= 1, got 0"),
        ({"growth_rate": -12}, "`growth_rate`"),
        ({"compression": 0.0}, r"`compression` must be in \(0, 1\], got 0.0"),
        ({"compression": 1.5}, r"`compression` must be in \(0, 1\], got 1.5"),
        ({"depth": 41}, "`depth` must be 6n \\+ 4 .* got 41; valid depths are 10, 16, 22"),
        ({"depth": 41, "bottleneck": False}, "3n \\+ 4 .* got 41; valid depths are 7, 10, 13"),
        ({"depth": 4}, "`depth`"),
        ({"depth": "100"}, "`depth` must be an integer"),
        ({"dropout": 1.0}, r"`dropout` must be in \[0.0, 1.0\), got 1.0"),
        ({"memory_efficient": "yes"}, "`memory_efficient` must be True or False"),
        ({"bottleneck": 1}, "`bottleneck` must be True or False"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        keras_resnets.CifarDenseNet(**kwargs)


def test_bad_block_arguments_and_unknown_options():
    with pytest.raises(ValueError, match="`num_layers` must be a positive integer, got 0"):
        DenseBlock(0, 12)
    with pytest.raises(ValueError, match="`growth_rate` must be a positive integer, got 0"):
        DenseBlock(2, 0)
    with pytest.raises(ValueError, match=r"`dropout` must be a rate in \[0, 1\), got -0.1"):
        DenseBlock(2, 12, dropout=-0.1)
    with pytest.raises(ValueError, match=r"`compression` must be in \(0, 1\], got 0"):
        transition_block(keras.Input((8, 8, 4)), 0, name="t")
    with pytest.raises(TypeError, match="shortcut"):
        keras_resnets.DenseNet121(shortcut="projection")
    with pytest.raises(ValueError, match="`input_shape`"):
        keras_resnets.DenseNet121(input_shape=(16, 16, 3))


def _block_model(growth_rate):
    inputs = keras.Input((6, 6, 4))
    x = DenseBlock(2, growth_rate, bottleneck=True, name="block")(inputs)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


def test_weights_mismatching_inside_a_dense_block_name_the_file_and_change_nothing(tmp_path):
    from keras_resnets.weights import load_weights_file

    path = str(tmp_path / "block.weights.h5")
    _block_model(4).save_weights(path)
    target = _block_model(6)  # same top-level layers; the block's own layers differ
    before = [w.numpy() for w in target.weights]
    with pytest.raises(ValueError, match=r"block\.weights\.h5.*inside a nested layer"):
        load_weights_file(target, path)
    for w, value in zip(target.weights, before, strict=True):
        np.testing.assert_array_equal(w.numpy(), value)
    # and a matching file still loads through the nested check
    source = _block_model(6)
    source.save_weights(path)
    load_weights_file(target, path)
    for a, b in zip(target.weights, source.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
