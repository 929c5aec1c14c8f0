"""Dtype policies through transfer learning, weight loading and the trainer.

Issue 15, kind 4: under a mixed policy `replace_head` gave a half-precision
classifier and output, and `--transfer-from` left the loaded backbone in the
policy it was saved under. The rule (Keras's mixed-precision guide,
keras.applications): the backbone computes in the policy of the run, the
classifier in float32, on every path that builds, rebuilds or cuts a model.
Each path is checked under float32, mixed_float16 and mixed_bfloat16 on the
smallest model of each family.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import yaml
from training_helpers import tiny_set_flags

import keras_resnets

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
SIZE = 8

FAMILIES = {
    "resnet8": lambda **kw: keras_resnets.CifarResNet(8, **kw),
    "resnet8_drop_path": lambda **kw: keras_resnets.CifarResNet(8, drop_path_rate=0.5, **kw),
    "plain8": lambda **kw: keras_resnets.CifarResNet(8, residual=False, **kw),
    "preact8": lambda **kw: keras_resnets.CifarResNet(8, unit="full_preactivation", **kw),
    "resnext11": lambda **kw: keras_resnets.CifarResNeXt(11, cardinality=2, base_width=4, **kw),
    "wrn10_1": lambda **kw: keras_resnets.WideResNet(10, 1, **kw),
    "densenet10": lambda **kw: keras_resnets.CifarDenseNet(10, growth_rate=4, **kw),
    "densenet10_memory_efficient": lambda **kw: keras_resnets.CifarDenseNet(
        10, growth_rate=4, memory_efficient=True, **kw
    ),
    "highway5": lambda **kw: keras_resnets.CifarHighwayNet(5, **kw),
}


@pytest.fixture
def policy(request):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(request.param)
    yield request.param
    keras.config.set_dtype_policy(previous)


def _compute(policy: str) -> str:
    return keras.dtype_policies.get(policy).compute_dtype


def _leaves(model: keras.Model):
    """Every leaf layer (nested models and composite layers opened), without inputs."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if not layer._layers and not isinstance(layer, keras.layers.InputLayer):
            yield layer


def check_policies(model: keras.Model, policy: str, classifier: bool = True) -> None:
    """Backbone (and pooling) in `policy`; the classifier `head_fc` in float32."""
    head = model.get_layer("head_fc") if classifier else None
    wrong = [
        (layer.name, layer.dtype_policy.name)
        for layer in _leaves(model)
        if layer is not head and layer.dtype_policy.name != policy
    ]
    assert not wrong, f"not {policy}: {wrong[:5]}"
    if classifier:
        assert head.dtype_policy.name == "float32"
        assert model.output.dtype == "float32"


def check_probabilities(model: keras.Model) -> np.ndarray:
    shape = (3, *model.input_shape[1:])
    x = np.random.default_rng(0).uniform(size=shape).astype("float32")
    probabilities = model.predict(x, verbose=0)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    return probabilities


def _other(policy: str) -> str:
    return "mixed_bfloat16" if policy == "float32" else "float32"


@pytest.mark.parametrize("policy", POLICIES, indirect=True)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_build_replace_head_feature_extractor_and_freeze_keep_the_rule(family, policy):
    model = FAMILIES[family](input_shape=(SIZE, SIZE, 3), classes=10)
    check_policies(model, policy)
    check_probabilities(model)

    new = keras_resnets.replace_head(model, classes=5, dropout=0.1)
    check_policies(new, policy)
    check_probabilities(new)
    fresh = FAMILIES[family](input_shape=(SIZE, SIZE, 3), classes=5)
    assert new.output.dtype == fresh.output.dtype == "float32"

    features = keras_resnets.feature_extractor(model)
    check_policies(features, policy, classifier=False)
    for tensor in features.output.values():
        assert tensor.dtype == _compute(policy)

    keras_resnets.freeze(new, until="all")
    check_policies(new, policy)
    assert len(new.trainable_weights) == 2
    check_probabilities(new)


@pytest.mark.parametrize("policy", POLICIES, indirect=True)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_weights_saved_under_another_policy_load_into_this_one(family, policy, tmp_path):
    other = _other(policy)
    keras.config.set_dtype_policy(other)
    source = FAMILIES[family](input_shape=(SIZE, SIZE, 3), classes=4)
    check_policies(source, other)
    source.save(tmp_path / "source.keras")
    source.save_weights(tmp_path / "source.weights.h5")
    keras.config.set_dtype_policy(policy)

    # A fresh build under this policy, with the other policy's weights.
    same = FAMILIES[family](input_shape=(SIZE, SIZE, 3), classes=4)
    same.set_weights(source.get_weights())
    want = check_probabilities(same)
    for path in ("source.keras", "source.weights.h5"):
        built = FAMILIES[family](input_shape=(SIZE, SIZE, 3), classes=4, weights=tmp_path / path)
        check_policies(built, policy)
        for a, b in zip(built.get_weights(), source.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)

    # A loaded .keras file keeps the policy it was saved under; with_dtype_policy
    # rebuilds it under this one, the same computation as the fresh build.
    loaded = keras.models.load_model(tmp_path / "source.keras")
    check_policies(loaded, other)
    rebuilt = keras_resnets.with_dtype_policy(loaded)
    assert isinstance(rebuilt, keras_resnets.Network)
    assert rebuilt.feature_info == source.feature_info
    check_policies(rebuilt, policy)
    np.testing.assert_allclose(check_probabilities(rebuilt), want, atol=1e-6)
    check_policies(loaded, other)  # the argument is unchanged


@pytest.mark.parametrize("policy", POLICIES, indirect=True)
@pytest.mark.parametrize("family", ["resnet8", "wrn10_1", "densenet10"])
def test_trainer_transfer_model_computes_in_the_runs_policy(family, policy, tmp_path):
    from training.transfer import transfer_model

    other = _other(policy)
    keras.config.set_dtype_policy(other)
    source = FAMILIES[family](input_shape=(SIZE, SIZE, 3), classes=4)
    source.save(tmp_path / "source.keras")
    keras.config.set_dtype_policy(policy)
    path = str(tmp_path / "source.keras")
    kept = transfer_model(path, num_classes=4, channels=3, image_size=SIZE, freeze_until="stage2")
    check_policies(kept, policy)
    check_probabilities(kept)
    new = transfer_model(
        path, num_classes=3, channels=3, image_size=SIZE, new_classes=3, freeze_until="all"
    )
    check_policies(new, policy)
    assert new.output_shape == (None, 3) and len(new.trainable_weights) == 2
    check_probabilities(new)


def test_with_dtype_policy_names_a_bad_policy():
    model = FAMILIES["resnet8"](input_shape=(SIZE, SIZE, 3))
    with pytest.raises(ValueError, match="`policy` must be a dtype policy.*'float8'"):
        keras_resnets.with_dtype_policy(model, "float8")
    with pytest.raises(TypeError, match="`model` must be a keras.Model"):
        keras_resnets.with_dtype_policy("resnet8")


def test_cli_mixed_precision_transfer_runs_in_the_policy_it_records(tmp_path, capsys):
    """`--mixed-precision --transfer-from`: config.yaml's policy is the backbone's."""
    from training.train import main

    keras.utils.set_random_seed(0)
    source = keras_resnets.CifarResNet(8, classes=5)  # saved under float32
    source.save(tmp_path / "source.keras")
    out = tmp_path / "run"
    code = main(
        [
            *("--recipe", "digits_resnet20", "--epochs", "1", "--output-dir", str(out)),
            *("--transfer-from", str(tmp_path / "source.keras"), "--new-classes", "10"),
            *("--mixed-precision", "--verbose", "quiet"),
            *tiny_set_flags(),
        ]
    )
    assert code == 0, capsys.readouterr().err
    recorded = yaml.safe_load((out / "config.yaml").read_text())["resolved"]["dtype_policy"]
    assert keras.config.dtype_policy().name == "float32"  # the trainer restored it
    model = keras.models.load_model(out / "model.keras")  # layers keep their saved policies
    check_policies(model, recorded)
    check_probabilities(model)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"], indirect=True)
def test_the_export_of_a_mixed_precision_model_serves_float32_probabilities(policy, tmp_path):
    import tensorflow as tf

    model = keras_resnets.replace_head(FAMILIES["resnet8"](input_shape=(SIZE, SIZE, 3)), 5)
    check_policies(model, policy)
    path = keras_resnets.export_saved_model(
        model, tmp_path / "export", preprocessing="unit", warmup=False
    )
    images = np.random.default_rng(0).uniform(0, 255, size=(3, SIZE, SIZE, 3)).astype("float32")
    served = tf.saved_model.load(path).signatures["serving_default"](images=tf.constant(images))
    probabilities = served["probabilities"]
    assert probabilities.dtype == tf.float32
    np.testing.assert_allclose(probabilities.numpy().sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"], indirect=True)
def test_with_dtype_policy_rebuilds_a_network_nested_in_a_users_model(policy):
    keras.config.set_dtype_policy("float32")
    backbone = FAMILIES["wrn10_1"](include_top=False, pooling="avg", input_shape=(SIZE, SIZE, 3))
    inputs = keras.Input((SIZE, SIZE, 3))
    outputs = keras.layers.Dense(3, activation="softmax", name="mine")(backbone(inputs))
    wrapper = keras.Model(inputs, outputs)
    keras.config.set_dtype_policy(policy)
    rebuilt = keras_resnets.with_dtype_policy(wrapper)
    inner = rebuilt.layers[1]
    assert isinstance(inner, keras_resnets.Network) and inner.feature_info == backbone.feature_info
    check_policies(inner, policy, classifier=False)
    assert rebuilt.get_layer("mine").dtype_policy.name == "float32"
    np.testing.assert_allclose(
        check_probabilities(rebuilt),
        wrapper.predict(
            np.random.default_rng(0).uniform(size=(3, SIZE, SIZE, 3)).astype("float32"), verbose=0
        ),
        atol=0.05,
    )
