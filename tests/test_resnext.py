"""ResNeXt and Wide ResNets: exact counts, the three forms, implementations, options."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
from conftest import trainable_count

import keras_resnets
from keras_resnets.layers import GroupedConv2D
from keras_resnets.models.registry import model_info

# ../shared/REFERENCE.md (torchvision num_params; ResNeXt-101 32x4d from the paper's table).
REFERENCE = {
    "ResNeXt50": 25_028_904,
    "ResNeXt101": 44_177_704,
    "ResNeXt101_32x8d": 88_791_336,
    "ResNeXt101_64x4d": 83_455_272,
    "WideResNet50_2": 68_883_240,
}
# torchvision wide_resnet101_2; the authors' CIFAR ResNeXt-29 (models/resnext.lua:
# 3x3 stem + BN, post-activation bottlenecks, projection + BN shortcuts), which
# REFERENCE.md lists 64 lower (34,426,634 / 68,155,146); see docs/resnext.md.
OTHER = {
    "WideResNet101_2": 126_886_696,
    "ResNeXt29_8x64d": 34_426_698,
    "ResNeXt29_16x64d": 68_155_210,
    "WideResNet28_10": 36_479_194,
}
SMALL = dict(depth=11, cardinality=4, base_width=4, input_shape=(16, 16, 3), classes=5)


def _param(name):
    marks = [pytest.mark.slow] if model_info(name).slow else []
    return pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", [_param(n) for n in {**REFERENCE, **OTHER}])
def test_counts(built_model, name):
    expected = {**REFERENCE, **OTHER}[name]
    assert model_info(name).num_params == expected
    assert trainable_count(built_model(name)) == expected


def _resnext29_count(cardinality: int, base_width: int) -> int:
    """The authors' CIFAR ResNeXt-29 counted by hand, layer by layer."""
    count = 3 * 3 * 3 * 64 + 2 * 64  # stem conv + BN
    channels = 64
    for stage, out in enumerate((256, 512, 1024)):
        inner = cardinality * base_width * 2**stage
        for _ in range(3):
            count += channels * inner + 2 * inner  # 1x1 reduce + BN
            count += 9 * (inner // cardinality) * inner + 2 * inner  # grouped 3x3 + BN
            count += inner * out + 2 * out  # 1x1 expand + BN
            if channels != out:
                count += channels * out + 2 * out  # projection + BN
            channels = out
    return count + 1024 * 10 + 10


def test_resnext29_counts_follow_the_authors_layout():
    assert _resnext29_count(8, 64) == OTHER["ResNeXt29_8x64d"]
    assert _resnext29_count(16, 64) == OTHER["ResNeXt29_16x64d"]
    model = keras_resnets.CifarResNeXt(depth=29, cardinality=4, base_width=16)
    assert trainable_count(model) == _resnext29_count(4, 16)


def test_alias_and_grouped_layers(built_model):
    assert keras_resnets.ResNeXt50_32x4d is keras_resnets.ResNeXt50
    assert "ResNeXt50_32x4d" in keras_resnets.list_models()
    assert model_info("ResNeXt50_32x4d").num_params == REFERENCE["ResNeXt50"]
    model = built_model("ResNeXt50")
    first = model.get_layer("stage2_block1_conv2")
    last = model.get_layer("stage5_block3_conv2")
    assert isinstance(first, GroupedConv2D) and first.groups == 32
    assert tuple(first.kernel.shape) == (3, 3, 4, 128)
    assert tuple(last.kernel.shape) == (3, 3, 32, 1024)
    assert isinstance(last, GroupedConv2D) and last.strides == (1, 1)
    assert model.get_layer("stage3_block1_conv2").strides == (2, 2)
    wide = built_model("WideResNet50_2").get_layer("stage2_block1_conv2")
    assert type(wide) is keras.layers.Conv2D and tuple(wide.kernel.shape) == (3, 3, 128, 128)


def _randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for w in layer.weights:
            v = (
                rng.uniform(0.5, 1.5, w.shape)
                if "variance" in w.path
                else rng.normal(0, 0.3, w.shape)
            )
            values.append(v.astype("float32"))
        if values:
            layer.set_weights(values)


def test_three_forms_compute_the_same_function():
    models = {form: keras_resnets.CifarResNeXt(form=form, **SMALL) for form in "abc"}
    # same parameters, differently arranged (form a: C conv3s of d -> out channels)
    assert len({trainable_count(m) for m in models.values()}) == 1
    assert "stage1_block1_path4_conv3" in [layer.name for layer in models["a"].layers]
    assert "stage1_block1_concat" in [layer.name for layer in models["b"].layers]
    _randomize(models["c"])
    keras_resnets.copy_form_weights(models["c"], models["a"])
    keras_resnets.copy_form_weights(models["a"], models["b"])
    # and back: c -> a -> b -> c reproduces c's weights exactly
    fresh = keras_resnets.CifarResNeXt(form="c", **SMALL)
    keras_resnets.copy_form_weights(models["b"], fresh)
    for a, b in zip(fresh.weights, models["c"].weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    x = np.random.default_rng(1).standard_normal((3, 16, 16, 3)).astype("float32")
    expected = models["c"](x, training=False).numpy()
    assert expected.std() > 0.01
    for form in "ab":
        np.testing.assert_allclose(models[form](x, training=False), expected, atol=1e-5)
    # training mode (batch statistics) too; this also updates the moving statistics
    train_expected = models["c"](x, training=True).numpy()
    for form in "ab":
        np.testing.assert_allclose(models[form](x, training=True), train_expected, atol=1e-5)


def test_copy_between_different_networks_names_the_layer():
    source = keras_resnets.CifarResNeXt(**SMALL)
    target = keras_resnets.CifarResNeXt(**{**SMALL, "base_width": 8})
    with pytest.raises(ValueError, match="Layer 'stage1_block1_conv1'"):
        keras_resnets.copy_form_weights(source, target)


def test_native_split_and_auto_models_agree_and_train():
    native = keras_resnets.CifarResNeXt(implementation="native", **SMALL)
    split = keras_resnets.CifarResNeXt(implementation="split", **SMALL)
    auto = keras_resnets.CifarResNeXt(**SMALL)
    assert auto.get_layer("stage1_block1_conv2").resolved_implementation == "custom_gradient"
    assert native.get_layer("stage1_block1_conv2").resolved_implementation == "native"
    split.set_weights(native.get_weights())
    auto.set_weights(native.get_weights())
    x = np.random.default_rng(2).standard_normal((4, 16, 16, 3)).astype("float32")
    y = np.array([0, 1, 2, 3])
    for training in (False, True):
        expected = native(x, training=training)
        np.testing.assert_allclose(split(x, training=training), expected, atol=1e-5)
        np.testing.assert_allclose(auto(x, training=training), expected, atol=1e-5)
    for model in (split, auto):
        model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
        history = model.fit(x, y, epochs=4, batch_size=4, verbose=0)
        assert np.all(np.isfinite(history.history["loss"]))
        assert history.history["loss"][-1] < history.history["loss"][0]


def test_resnext_options_and_saving(tmp_path):
    model = keras_resnets.ResNeXt50(
        cardinality=8, base_width=8, include_top=False, input_shape=(64, 64, 3), pooling="avg"
    )
    assert tuple(model.get_layer("stage2_block1_conv2").kernel.shape) == (3, 3, 8, 64)
    assert model.output_shape == (None, 2048)
    small = keras_resnets.CifarResNeXt(**SMALL)
    x = np.random.default_rng(3).standard_normal((2, 16, 16, 3)).astype("float32")
    path = str(tmp_path / "resnext.keras")
    small.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), small.predict(x, verbose=0), atol=1e-6)


def test_wide_resnet_cifar():
    model = keras_resnets.WideResNet(depth=10, width=2, dropout_rate=0.3, classes=3)
    names = [layer.name for layer in model.layers]
    assert "stage1_block1_dropout" in names and "post_bn" in names
    assert tuple(model.get_layer("stage3_block1_conv2").kernel.shape) == (3, 3, 128, 128)
    # stage 1: 16 -> 32 channels needs a projection; WRN-10-2 counted by hand
    expected = 432  # stem
    channels = 16
    for width in (32, 64, 128):
        expected += 2 * channels + 9 * channels * width + 2 * width + 9 * width * width
        expected += channels * width  # 1x1 projection, no BN (pre-activation)
        channels = width
    expected += 2 * 128 + 128 * 3 + 3
    assert trainable_count(model) == expected


@pytest.mark.parametrize(
    "builder, kwargs, message",
    [
        ("ResNeXt50", dict(cardinality=0), "`cardinality` must be an integer >= 1, got 0"),
        ("ResNeXt50", dict(base_width=0), "`base_width` must be an integer >= 1, got 0"),
        ("ResNeXt50", dict(form="d"), "Unknown `form` 'd'"),
        ("ResNeXt50", dict(implementation="cudnn"), "Unknown `implementation` 'cudnn'"),
        ("CifarResNeXt", dict(depth=30), "`depth` must be 9n \\+ 2"),
        (
            "CifarResNeXt",
            dict(depth=11, form="a", unit="full_preactivation"),
            "is built for `unit='original'` only",
        ),
        ("CifarResNeXt", dict(cardinality=2.5), "`cardinality` must be an integer"),
        ("WideResNet", dict(depth=27), "`depth` must be 6n \\+ 4"),
        ("WideResNet", dict(width=0), "`width` must be an integer >= 1"),
        ("WideResNet", dict(dropout_rate=1.0), "`dropout_rate` must be in"),
    ],
)
def test_bad_options(builder, kwargs, message):
    with pytest.raises(ValueError, match=message):
        getattr(keras_resnets, builder)(**kwargs)


def test_groups_must_divide_the_width():
    from keras_resnets import blocks

    x = keras.Input((8, 8, 16))
    with pytest.raises(ValueError, match="`groups`=3 must divide the bottleneck width 8"):
        blocks.bottleneck_block(x, 8, strides=1, name="b", groups=3)


def test_base_width_giving_zero_channels_is_refused():
    from keras_resnets.models.resnet import cifar_spec
    from keras_resnets.models.resnext import build_resnext

    spec = dataclasses.replace(cifar_spec(20), block="bottleneck", shortcut="projection")
    with pytest.raises(ValueError, match="`base_width`=2 gives 0 channels per group"):
        build_resnext(spec, model_name="test", base_width=2, cardinality=4)


def test_wide_block_branch_hook_receives_the_whole_branch():
    from keras_resnets.models.wide_resnet import wide_block

    seen = []

    def wrap(branch, x, name):
        seen.append(name)
        return keras.layers.Rescaling(0.0, name=f"{name}_zero")(branch(x))

    inputs = keras.Input((8, 8, 4))
    outputs = wide_block(inputs, 4, strides=1, name="b", wrap_branch=wrap)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(4).standard_normal((2, 8, 8, 4)).astype("float32")
    assert seen == ["b"]
    assert "b_conv2" in [layer.name for layer in model.layers]
    np.testing.assert_allclose(model(x), x, atol=1e-6)  # identity shortcut only
