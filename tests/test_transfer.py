"""Transfer learning: include_top=False, stage features, freezing, new heads."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_resnets
from keras_resnets.models.registry import model_info

FAST_MODELS = [name for name in keras_resnets.list_models() if not model_info(name).slow]


def _stride(name: str, stage: str) -> int:
    """Output stride of a stage: ImageNet stages 2-5 are C2-C5, CIFAR stages 1-3."""
    number = int(stage[len("stage") :])
    return 2**number if model_info(name).input_size > 64 else 2 ** (number - 1)


@pytest.mark.parametrize("name", FAST_MODELS)
def test_headless_any_size_pooled_model_and_its_stages(name):
    model = keras_resnets.get_model(
        name, include_top=False, pooling="avg", input_shape=(None, None, 3)
    )
    assert model.output_shape[-1] == model.get_layer("head_pool").input.shape[-1]
    assert isinstance(model.get_layer("head_pool"), keras.layers.GlobalAveragePooling2D)
    assert "head_fc" not in {layer.name for layer in model.layers}

    features = keras_resnets.feature_extractor(model)
    stages = list(features.output)
    expected = ["stage2", "stage3", "stage4", "stage5"]
    if model_info(name).input_size <= 64:
        expected = ["stage1", "stage2", "stage3"]
    assert stages == expected
    size = 2 * _stride(name, stages[-1])  # the smallest size keeping 2x2 at the end
    outputs = features(np.zeros((1, size, size, 3), "float32"), training=False)
    for stage in stages:
        height = size // _stride(name, stage)
        assert tuple(outputs[stage].shape[:3]) == (1, height, height), (stage, outputs[stage].shape)
    # The pooled vector is the last stage's feature map, averaged.
    np.testing.assert_allclose(
        model(np.zeros((1, size, size, 3), "float32"), training=False),
        np.mean(outputs[stages[-1]], axis=(1, 2)),
        atol=1e-5,
    )


@pytest.mark.parametrize(
    "name, channels",
    [
        ("ResNet18", {"stage2": 64, "stage3": 128, "stage4": 256, "stage5": 512}),
        ("ResNet50", {"stage2": 256, "stage3": 512, "stage4": 1024, "stage5": 2048}),
        ("ResNet20", {"stage1": 16, "stage2": 32, "stage3": 64}),
    ],
)
def test_stage_channels_are_the_papers(name, channels):
    model = keras_resnets.get_model(name, include_top=False, input_shape=(None, None, 3))
    features = keras_resnets.feature_extractor(model)
    assert {stage: tensor.shape[-1] for stage, tensor in features.output.items()} == channels
    assert keras_resnets.stage_outputs(model)[list(channels)[-1]].name.endswith("_out")


@pytest.mark.parametrize("pooling, rank", [(None, 4), ("avg", 2), ("max", 2)])
def test_pooling_options(pooling, rank):
    model = keras_resnets.ResNet20(include_top=False, pooling=pooling)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    out = np.asarray(model(x, training=False))
    assert out.ndim == rank
    if pooling is not None:
        maps = np.asarray(keras_resnets.feature_extractor(model, "stage3")(x)["stage3"])
        reduce = np.mean if pooling == "avg" else np.max
        np.testing.assert_allclose(out, reduce(maps, axis=(1, 2)), atol=1e-5)


def test_bad_stage_names_list_the_available_ones():
    model = keras_resnets.ResNet20(include_top=False, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="stage1, stage2, stage3") as info:
        keras_resnets.feature_extractor(model, ("stage2", "stage5"))
    assert "'stage5'" in str(info.value)
    with pytest.raises(ValueError, match="stage1, stage2, stage3"):
        keras_resnets.freeze(model, until="stage4")
    # Any layer name works too.
    features = keras_resnets.feature_extractor(model, ["stage2_block1_conv1", "stage3"])
    assert features.output["stage2_block1_conv1"].shape == (None, 16, 16, 32)


def test_feature_extractor_finds_a_nested_backbone():
    backbone = keras_resnets.ResNet20(include_top=False, pooling="avg", input_shape=(32, 32, 3))
    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Dense(3, name="mine")(backbone(inputs))
    model = keras.Model(inputs, outputs)
    features = keras_resnets.feature_extractor(model, ("stage3",))
    assert {k: v.shape for k, v in features.output.items()} == {"stage3": (None, 8, 8, 64)}
    keras_resnets.freeze(model, until="all")
    assert [w.path for w in model.trainable_weights] == ["mine/kernel", "mine/bias"]


def _weights_by_layer(model):
    return {
        layer.name: [np.array(w) for w in layer.weights] for layer in model.layers if layer.weights
    }


def _fit_a_few_steps(model, classes=3, steps=3):
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, size=(16 * steps, 32, 32, 3)).astype("float32")
    y = rng.integers(0, classes, size=len(x))
    model.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)


@pytest.mark.parametrize("freeze_batchnorm", [True, False])
def test_frozen_batchnorm_keeps_its_statistics_under_fit(freeze_batchnorm):
    keras.utils.set_random_seed(0)
    model = keras_resnets.replace_head(keras_resnets.CifarResNet(8), classes=3)
    keras_resnets.freeze(model, until="stage2", freeze_batchnorm=freeze_batchnorm)
    before = _weights_by_layer(model)
    _fit_a_few_steps(model)
    after = _weights_by_layer(model)
    for name, weights in before.items():
        changed = any(not np.array_equal(a, b) for a, b in zip(weights, after[name], strict=True))
        frozen_stage = name.startswith(("stem", "stage1", "stage2"))
        is_bn = isinstance(model.get_layer(name), keras.layers.BatchNormalization)
        if frozen_stage and (freeze_batchnorm or not is_bn):
            assert not changed, f"{name} is frozen but changed"
        else:
            # Trainable layers, and with freeze_batchnorm=False the BN layers of
            # the frozen stages (statistics follow the new data), all change.
            assert changed, f"{name} should have trained"


def test_freeze_until_counts_exactly_the_later_stages():
    model = keras_resnets.ResNet20()

    def count(prefixes):
        return sum(
            int(np.prod(w.shape))
            for layer in model.layers
            if layer.name.startswith(prefixes)
            for w in layer.trainable_weights
        )

    expected = {
        "stem": count(("stage1", "stage2", "stage3", "head")),
        "stage2": count(("stage3", "head")),
        "all": count(("head",)),
    }
    for until, want in expected.items():
        for layer in model.layers:
            layer.trainable = True
        keras_resnets.freeze(model, until=until)
        have = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        assert have == want, until
    assert expected["all"] == 64 * 10 + 10


def test_replace_head_shares_the_backbone_and_keeps_names():
    old = keras_resnets.ResNet20(classes=10)
    new = keras_resnets.replace_head(old, classes=4, dropout=0.2)
    assert new.output_shape == (None, 4)
    assert new.get_layer("stage3_block3_out") is old.get_layer("stage3_block3_out")
    assert [layer.name for layer in new.layers[-3:]] == ["head_pool", "head_dropout", "head_fc"]
    headless = keras_resnets.ResNet20(include_top=False)
    assert keras_resnets.replace_head(headless, classes=2).output_shape == (None, 2)
    with pytest.raises(ValueError, match="classes"):
        keras_resnets.replace_head(old, classes=0)


@pytest.mark.slow
def test_pretrained_frozen_backbone_beats_a_random_one(digits_32):
    """ResNet-20 trained on digits 0-4, frozen, with a new head on digits 5-9."""
    (x, y), (x_test, y_test) = digits_32
    low, high, high_test = y < 5, y >= 5, y_test >= 5

    keras.utils.set_random_seed(0)
    source = keras_resnets.ResNet20(classes=5)
    source.compile(
        keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    source.fit(x[low], y[low], batch_size=32, epochs=4, verbose=0)
    source_accuracy = source.evaluate(x_test[y_test < 5], y_test[y_test < 5], verbose=0)[1]
    assert source_accuracy > 0.8

    def new_head_accuracy(backbone):
        keras.utils.set_random_seed(1)  # the same head initialisation for both
        model = keras_resnets.replace_head(backbone, classes=5)
        keras_resnets.freeze(model, until="all")
        assert len(model.trainable_weights) == 2  # only the new head learns
        model.compile(
            keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        model.fit(x[high], y[high] - 5, batch_size=64, epochs=5, verbose=0)
        return model.evaluate(x_test[high_test], y_test[high_test] - 5, verbose=0)[1]

    pretrained = new_head_accuracy(source)
    keras.utils.set_random_seed(0)
    random = new_head_accuracy(keras_resnets.ResNet20(classes=5))
    print(f"digits 5-9, frozen backbone: pretrained on 0-4 {pretrained:.3f}, random {random:.3f}")
    assert pretrained > random + 0.2
    assert pretrained > 0.6


def test_transfer_model_loads_replaces_and_freezes(tmp_path):
    from training.transfer import transfer_model

    source = keras_resnets.CifarResNet(8, classes=5)
    path = tmp_path / "source.keras"
    source.save(path)
    model = transfer_model(
        str(path), num_classes=3, channels=3, image_size=32, new_classes=3, freeze_until="all"
    )
    assert model.output_shape == (None, 3)
    assert [w.path for w in model.trainable_weights] == ["head_fc/kernel", "head_fc/bias"]
    np.testing.assert_array_equal(
        model.get_layer("stage3_block1_conv2").get_weights()[0],
        source.get_layer("stage3_block1_conv2").get_weights()[0],
    )
    kept = transfer_model(str(path), num_classes=5, channels=3)
    assert kept.output_shape == (None, 5) and len(kept.trainable_weights) == len(
        source.trainable_weights
    )
    with pytest.raises(ValueError, match="--new-classes 3"):
        transfer_model(str(path), num_classes=3, channels=3)
    with pytest.raises(ValueError, match="64x64"):
        transfer_model(str(path), num_classes=5, channels=3, image_size=64)
    with pytest.raises(ValueError, match="missing.keras"):
        transfer_model(str(tmp_path / "missing.keras"), num_classes=5, channels=3)
    with pytest.raises(ValueError, match="stage1, stage2, stage3"):
        transfer_model(str(path), num_classes=5, channels=3, freeze_until="stage5")
