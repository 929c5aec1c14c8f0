"""Transfer learning: include_top=False, stage features, freezing, new heads."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_resnets
from keras_resnets.models.registry import model_info

FAST_MODELS = [name for name in keras_resnets.list_models() if not model_info(name).slow]


def _smallest_per_family() -> list[str]:
    best: dict[str, str] = {}
    for name in FAST_MODELS:
        family = model_info(name).family
        if family not in best or model_info(name).num_params < model_info(best[family]).num_params:
            best[family] = name
    return sorted(best.values())


FAMILY_MODELS = _smallest_per_family()


def _is_cifar(name: str) -> bool:
    return model_info(name).input_size <= 64


def _stride(name: str, stage: str) -> int:
    """Output stride of a stage: ImageNet stages 2-5 are C2-C5, CIFAR stages 1-3."""
    number = int(stage[len("stage") :])
    return 2 ** (number - 1) if _is_cifar(name) else 2**number


def _stages(name: str) -> list[str]:
    if _is_cifar(name):
        return ["stage1", "stage2", "stage3"]
    return ["stage2", "stage3", "stage4", "stage5"]


@pytest.mark.parametrize("name", FAST_MODELS)
def test_every_builder_without_top_gives_pooled_features_and_stages(name):
    size = 2 * _stride(name, _stages(name)[-1])  # the smallest size keeping 2x2 at the end
    model = keras_resnets.get_model(
        name, include_top=False, pooling="avg", input_shape=(size, size, 3)
    )
    assert isinstance(model.get_layer("head_pool"), keras.layers.GlobalAveragePooling2D)
    assert "head_fc" not in {layer.name for layer in model.layers}
    features = keras_resnets.feature_extractor(model).output
    assert list(features) == _stages(name)
    for stage, tensor in features.items():
        height = size // _stride(name, stage)
        assert tuple(tensor.shape[:3]) == (None, height, height), (stage, tensor.shape)
    # The pooled vector has the channels of the last stage's feature map (or
    # of the final BN-ReLU that follows it, which keeps the channel count).
    assert model.output_shape == (None, features[_stages(name)[-1]].shape[-1])


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_any_size_features_and_pooling_per_family(name):
    model = keras_resnets.get_model(name, include_top=False, input_shape=(None, None, 3))
    assert model.output_shape[1:3] == (None, None)
    stages = _stages(name)
    features = keras_resnets.feature_extractor(model, stages)
    size = 2 * _stride(name, stages[-1])
    x = np.random.default_rng(0).normal(size=(1, size + 8, size, 3)).astype("float32")
    maps = features(x, training=False)
    for stage in stages:
        stride = _stride(name, stage)
        assert maps[stage].shape[1:3] == (-(-(size + 8) // stride), size // stride), stage
    for pooling, reduce in (("avg", np.mean), ("max", np.max)):
        pooled = keras_resnets.get_model(
            name, include_top=False, pooling=pooling, input_shape=(None, None, 3)
        )
        pooled.set_weights(model.get_weights())
        np.testing.assert_allclose(
            pooled(x, training=False),
            reduce(np.asarray(model(x, training=False)), axis=(1, 2)),
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


def _leaf_weights(model):
    """`{(top-level layer, leaf layer): [arrays]}` for every leaf layer with weights."""
    out = {}
    for layer in model.layers:
        for leaf in layer._flatten_layers(include_self=True, recursive=True):
            if leaf.weights and not leaf._layers:
                out[(layer.name, leaf.name)] = (leaf, [np.array(w) for w in leaf.weights])
    return out


def _fit_a_few_steps(model, classes=3, steps=3):
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, size=(16 * steps, 32, 32, 3)).astype("float32")
    y = rng.integers(0, classes, size=len(x))
    model.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)


def small_models():
    """Small CIFAR networks for each layer naming the helpers must understand.

    Each entry: a factory and the layer-name prefixes `freeze(until="stage2")`
    must freeze.
    """
    return {
        "resnet8": (lambda: keras_resnets.CifarResNet(8), ("stem", "stage1_", "stage2_")),
        # Stage 2 of a CIFAR DenseNet is transition 1 and dense block 2.
        "densenet10": (
            lambda: keras_resnets.CifarDenseNet(depth=10, growth_rate=4),
            ("stem", "block1", "transition1_", "block2"),
        ),
    }


@pytest.mark.parametrize("freeze_batchnorm", [True, False])
@pytest.mark.parametrize("family", sorted(small_models()))
def test_frozen_batchnorm_keeps_its_statistics_under_fit(family, freeze_batchnorm):
    keras.utils.set_random_seed(0)
    factory, frozen_prefixes = small_models()[family]
    model = keras_resnets.replace_head(factory(), classes=3)
    keras_resnets.freeze(model, until="stage2", freeze_batchnorm=freeze_batchnorm)
    before = _leaf_weights(model)
    _fit_a_few_steps(model)
    after = _leaf_weights(model)
    checked = {True: 0, False: 0}
    for key, (leaf, weights) in before.items():
        new = after[key][1]
        changed = any(not np.array_equal(a, b) for a, b in zip(weights, new, strict=True))
        in_frozen_part = key[0].startswith(frozen_prefixes)
        is_bn = isinstance(leaf, keras.layers.BatchNormalization)
        should_change = not in_frozen_part or (is_bn and not freeze_batchnorm)
        # Trainable layers, and with freeze_batchnorm=False the BN layers of
        # the frozen stages (statistics follow the new data), all change.
        assert changed == should_change, f"{key}: changed={changed}"
        checked[in_frozen_part] += 1
    assert checked[True] and checked[False]


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
