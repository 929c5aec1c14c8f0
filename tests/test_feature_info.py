"""Every model records its stages (`feature_info`) and every transfer helper reads them.

Issue 15, kind 7: the helpers used to find stages by regular expressions over
layer names and failed on models the package itself built (Wide ResNets end
their blocks with `_add`, not `_out`). Now each family's body records the
stem and its stages while it builds them; these tests check, over the whole
registry and the smallest configuration of each family, that the record is
true to the graph (layer, channels, reduction), survives a `.keras` round
trip in a fresh process, and that `stage_outputs`, `feature_extractor`,
`freeze` and `replace_head` work on every model.
"""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
from backend_utils import CASES
from model_checks import registry_param, smallest_of_each_kind
from training_helpers import trainer_env

import keras_resnets
from keras_resnets import analysis
from keras_resnets.models.registry import model_info
from keras_resnets.transfer import _ancestors

SMALL_CIFAR = 8  # CIFAR models: a total stride of 4
SMALL_IMAGENET = 64  # ImageNet models: a total stride of 32


def _size(name: str) -> int:
    return SMALL_CIFAR if model_info(name).input_size <= 64 else SMALL_IMAGENET


# The smallest configuration of each family (and each option that changes
# the graph around a stage's end: shortcuts, units, stochastic depth, the
# memory-efficient DenseBlock), at 8x8 inputs.
SMALL = {
    "resnet8_zero_pad": lambda **kw: keras_resnets.CifarResNet(8, shortcut="zero_pad", **kw),
    "resnet8_projection": lambda **kw: keras_resnets.CifarResNet(8, shortcut="projection", **kw),
    "resnet8_all_projection": lambda **kw: keras_resnets.CifarResNet(
        8, shortcut="all_projection", **kw
    ),
    "resnet8_drop_path_batch": lambda **kw: keras_resnets.CifarResNet(8, drop_path_rate=0.5, **kw),
    "resnet8_drop_path_sample": lambda **kw: keras_resnets.CifarResNet(
        8, drop_path_rate=0.5, stochastic_depth_mode="sample", **kw
    ),
    "plain8": lambda **kw: keras_resnets.CifarResNet(8, residual=False, **kw),
    "preact8": lambda **kw: keras_resnets.CifarResNet(8, unit="full_preactivation", **kw),
    "preact11_bottleneck": lambda **kw: keras_resnets.CifarResNet(
        11, block="bottleneck", unit="full_preactivation", **kw
    ),
    "resnext11": lambda **kw: keras_resnets.CifarResNeXt(11, cardinality=2, base_width=4, **kw),
    "wrn10_1": lambda **kw: keras_resnets.WideResNet(10, 1, **kw),
    "wrn10_1_drop_path": lambda **kw: keras_resnets.WideResNet(10, 1, drop_path_rate=0.5, **kw),
    "densenet10": lambda **kw: keras_resnets.CifarDenseNet(10, growth_rate=4, **kw),
    "densenet10_memory_efficient": lambda **kw: keras_resnets.CifarDenseNet(
        10, growth_rate=4, memory_efficient=True, **kw
    ),
    "densenet7_no_bottleneck": lambda **kw: keras_resnets.CifarDenseNet(
        7, growth_rate=4, bottleneck=False, **kw
    ),
    "highway5": lambda **kw: keras_resnets.CifarHighwayNet(5, **kw),
}


def _output(layer):
    return keras.tree.flatten(layer.output)[0]


def check_feature_info(model: keras.Model, size: int) -> list[dict]:
    """The record is true to the graph; returns the stage entries (stem excluded)."""
    assert isinstance(model, keras_resnets.Network), type(model)
    info = model.feature_info
    assert info and info[0]["name"] == "stem", info
    stages = info[1:]
    numbers = [int(entry["name"][len("stage") :]) for entry in stages]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), info
    assert numbers[0] in (1, 2) and len(stages) == (3 if numbers[0] == 1 else 4), info
    previous = None
    for entry in info:
        layer = model.get_layer(entry["layer"])  # raises if the layer is not in the model
        shape = tuple(_output(layer).shape)
        reduction = entry["reduction"]
        assert shape == (None, size // reduction, size // reduction, entry["channels"]), (
            entry,
            shape,
        )
        if previous is not None:
            # Each stage ends after the previous one, which computes its input.
            assert reduction in (previous["reduction"], 2 * previous["reduction"]), info
            assert id(model.get_layer(previous["layer"])) in _ancestors(_output(layer)), entry
        previous = entry
    # Strides: every stage after the first halves the resolution.
    reductions = [entry["reduction"] for entry in stages]
    assert reductions == [reductions[0] * 2**i for i in range(len(stages))], info
    assert reductions[0] == info[0]["reduction"]
    return stages


def check_helpers(model: keras.Model, size: int, stages: list[dict]) -> None:
    names = [entry["name"] for entry in stages]
    # stage_outputs: the recorded layers, in order.
    outputs = keras_resnets.stage_outputs(model)
    assert list(outputs) == names
    for entry in stages:
        assert outputs[entry["name"]] is model.get_layer(entry["layer"])
    # feature_extractor: every stage by default, with its recorded shape.
    features = keras_resnets.feature_extractor(model)
    assert isinstance(features, keras_resnets.Network)
    assert list(features.output) == names
    for entry in stages:
        side = size // entry["reduction"]
        assert tuple(features.output[entry["name"]].shape) == (None, side, side, entry["channels"])
    assert features.feature_info == model.feature_info
    first = keras_resnets.feature_extractor(model, names[0])
    assert [entry["name"] for entry in first.feature_info] == ["stem", names[0]]
    assert keras_resnets.stage_outputs(first) == {names[0]: outputs[names[0]]}
    # freeze: each later stage freezes strictly more (the stage's own layer
    # included); "all" also takes a final BN-ReLU and leaves the classifier.
    counts = []
    for until, entry in [("stem", None), *zip(names, stages, strict=True), ("all", None)]:
        for layer in model.layers:
            layer.trainable = True
        keras_resnets.freeze(model, until=until)
        if entry is not None:
            assert not model.get_layer(entry["layer"]).trainable, until
        counts.append(sum(int(np.prod(w.shape)) for w in model.trainable_weights))
    assert len(set(counts[:-1])) == len(counts) - 1, counts
    assert counts == sorted(counts, reverse=True), counts
    head = model.get_layer("head_fc")
    assert [w.path for w in model.trainable_weights] == [w.path for w in head.trainable_weights]
    for layer in model.layers:
        layer.trainable = True
    # replace_head: the same backbone and record, a new float32 classifier.
    new = keras_resnets.replace_head(model, classes=5, dropout=0.1)
    assert isinstance(new, keras_resnets.Network)
    assert new.output_shape == (None, 5) and new.output.dtype == "float32"
    assert new.feature_info == model.feature_info
    for entry in stages:
        assert new.get_layer(entry["layer"]) is model.get_layer(entry["layer"])
    assert keras_resnets.stage_outputs(new).keys() == outputs.keys()


def check_final_norm(model: keras.Model, stages: list[dict]) -> None:
    """`final_norm` names the one BatchNormalization reading the last stage, if any."""
    last = _output(model.get_layer(stages[-1]["layer"]))
    readers = [
        layer
        for layer in model.layers
        if any(t is last for t in keras.tree.flatten(layer.input))
        and isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert [layer.name for layer in readers] == (
        [] if model.final_norm is None else [model.final_norm]
    ), (model.final_norm, readers)


def check_analysis(model: keras.Model, stages: list[dict]) -> None:
    """The analysis finds the blocks inside the recorded stages, as the record says."""
    if any(isinstance(layer, keras_resnets.layers.DenseBlock) for layer in model.layers):
        with pytest.raises(ValueError, match=f"{model.name!r} has no blocks"):
            analysis.find_blocks(model)
        return
    found = analysis.find_blocks(model)
    by_stage = {entry["name"]: [b for b in found if b.stage == entry["name"]] for entry in stages}
    assert [b.stage for b in found] == [s for s, bs in by_stage.items() for _ in bs]
    previous = model.feature_info[0]
    for entry in stages:
        members = by_stage[entry["name"]]
        # The stage's last block ends where the record says the stage ends.
        assert members and members[-1].output is _output(model.get_layer(entry["layer"]))
        changes = (entry["reduction"], entry["channels"]) != (
            previous["reduction"],
            previous["channels"],
        )
        assert [b.downsampling for b in members] == [changes] + [False] * (len(members) - 1)
        # The recorded flag agrees with the shapes in the graph.
        assert [b.downsampling for b in members] == [not b.same_shape for b in members]
        previous = entry


def check_round_trip(model: keras.Model, path, size: int) -> None:
    """`.keras` save and load keep the record, `final_norm` and the outputs."""
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, keras_resnets.Network), type(loaded)
    assert loaded.feature_info == model.feature_info
    assert loaded.final_norm == model.final_norm
    x = np.random.default_rng(0).random((2, size, size, 3)).astype("float32")
    np.testing.assert_allclose(
        np.asarray(loaded(x, training=False)), np.asarray(model(x, training=False)), atol=1e-5
    )
    assert list(keras_resnets.stage_outputs(loaded)) == list(keras_resnets.stage_outputs(model))


@pytest.mark.parametrize("name", [registry_param(n) for n in keras_resnets.list_models()])
def test_every_registered_model_records_its_stages_and_the_helpers_work(name, tmp_path):
    size = _size(name)
    model = keras_resnets.get_model(name, input_shape=(size, size, 3), classes=3)
    stages = check_feature_info(model, size)
    # The classifier pools the last stage's channels (a final BN-ReLU keeps them).
    assert model.get_layer("head_fc").kernel.shape == (stages[-1]["channels"], 3)
    check_helpers(model, size, stages)
    check_final_norm(model, stages)
    check_analysis(model, stages)
    # The `.keras` round trip of a larger row (ResNet-1202, PreActResNet-1001,
    # ResNet-RS-420...: up to 30 s each in CI) repeats, layer for layer, that
    # of the smallest row of its kind (same generic builder, family and block),
    # which is checked.
    if name in _ROUND_TRIP_ROWS:
        check_round_trip(model, tmp_path / f"{name}.keras", size)


#: The smallest row of each kind: the rows whose `.keras` round trip is checked.
_ROUND_TRIP_ROWS = set(smallest_of_each_kind())


@pytest.mark.parametrize("config", sorted(SMALL))
def test_smallest_configuration_of_each_family(config):
    model = SMALL[config](input_shape=(SMALL_CIFAR, SMALL_CIFAR, 3), classes=3)
    stages = check_feature_info(model, SMALL_CIFAR)
    check_helpers(model, SMALL_CIFAR, stages)
    check_final_norm(model, stages)
    check_analysis(model, stages)


def test_headless_and_any_size_models_record_the_same_stages():
    full = keras_resnets.ResNet18(input_shape=(64, 64, 3))
    for kwargs in (
        {"include_top": False, "input_shape": (None, None, 3)},
        {"include_top": False, "pooling": "avg", "input_shape": (64, 64, 3)},
        {"input_tensor": keras.Input((64, 64, 3))},
    ):
        assert keras_resnets.ResNet18(**kwargs).feature_info == full.feature_info, kwargs
    headless = keras_resnets.WideResNet(10, 1, include_top=False, input_shape=(None, None, 3))
    features = keras_resnets.feature_extractor(headless)(np.zeros((1, 12, 20, 3)))
    assert {k: tuple(v.shape) for k, v in features.items()} == {
        "stage1": (1, 12, 20, 16),
        "stage2": (1, 6, 10, 32),
        "stage3": (1, 3, 5, 64),
    }
    new = keras_resnets.replace_head(headless, classes=2)
    assert new.output_shape == (None, 2)


def test_helpers_read_a_network_nested_in_a_wrapper_and_carry_preprocessing():
    backbone = keras_resnets.WideResNet(10, 1, include_top=False, input_shape=(8, 8, 3))
    backbone.preprocessing = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "scale": 1 / 255}
    inputs = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D(name="my_pool")(backbone(inputs))
    wrapper = keras.Model(inputs, keras.layers.Dense(3, name="mine")(pooled))
    assert list(keras_resnets.stage_outputs(wrapper)) == ["stage1", "stage2", "stage3"]
    features = keras_resnets.feature_extractor(wrapper, ("stage2",))
    assert features.preprocessing == backbone.preprocessing
    assert features.output["stage2"].shape == (None, 4, 4, 32)
    new = keras_resnets.replace_head(wrapper, classes=4)
    assert new.preprocessing == backbone.preprocessing and new.output_shape == (None, 4)
    keras_resnets.freeze(wrapper, until="all")
    assert [w.path for w in wrapper.trainable_weights] == ["mine/kernel", "mine/bias"]


def test_analysis_reads_a_network_nested_in_a_wrapper():
    keras.utils.set_random_seed(0)
    backbone = keras_resnets.CifarResNet(8, include_top=False, input_shape=(8, 8, 3))
    inputs = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D(name="my_pool")(backbone(inputs))
    # As the trainer wraps a transferred model: a Network with no record of its own.
    wrapper = keras_resnets.Network(
        inputs, keras.layers.Dense(3, name="mine")(pooled), name="wrapper"
    )
    assert wrapper.feature_info == [] and wrapper.final_norm is None
    found = analysis.find_blocks(wrapper)
    assert [(b.name, b.stage) for b in found] == [
        (b.name, b.stage) for b in analysis.find_blocks(backbone)
    ]
    assert [(b.stage, b.downsampling) for b in found] == [
        ("stage1", False),
        ("stage2", True),
        ("stage3", True),
    ]
    x = np.random.default_rng(0).random((3, 8, 8, 3)).astype("float32")
    lesioned = analysis.lesioned_model(wrapper, remove=["stage2_block1"])
    features = analysis.lesioned_model(backbone, remove=["stage2_block1"])(x, training=False)
    head = wrapper.get_layer("mine")(wrapper.get_layer("my_pool")(features))
    np.testing.assert_allclose(np.asarray(lesioned(x, training=False)), np.asarray(head), atol=1e-6)
    assert not np.allclose(np.asarray(head), np.asarray(wrapper(x, training=False)), atol=1e-4)
    gated, gates = analysis.gated_model(wrapper)
    assert list(gates) == [b.name for b in found]
    np.testing.assert_allclose(
        np.asarray(gated(x, training=False)), np.asarray(wrapper(x, training=False)), atol=1e-6
    )


def test_a_model_without_feature_info_gets_an_error_naming_it():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="stage1_block1_out")(inputs)  # named like ours
    model = keras.Model(inputs, x, name="handmade")
    for helper in (
        keras_resnets.stage_outputs,
        keras_resnets.feature_extractor,
        keras_resnets.freeze,
        lambda m: keras_resnets.replace_head(m, 3),
        analysis.find_blocks,
        analysis.lesioned_model,
        analysis.gated_model,
    ):
        with pytest.raises(ValueError, match="'handmade' carries no `feature_info`"):
            helper(model)
    with pytest.raises(TypeError, match="`model` must be a keras.Model"):
        keras_resnets.stage_outputs("resnet20")


def test_feature_info_survives_a_keras_round_trip_in_a_fresh_process(tmp_path):
    expected = {}
    for config in sorted(SMALL):
        model = SMALL[config](input_shape=(SMALL_CIFAR, SMALL_CIFAR, 3), classes=3)
        model.save(tmp_path / f"{config}.keras")
        features = keras_resnets.feature_extractor(model, ("stem", model.feature_info[-1]["name"]))
        features.save(tmp_path / f"{config}_features.keras")
        new = keras_resnets.replace_head(model, classes=2)
        new.save(tmp_path / f"{config}_head.keras")
        expected[config] = {
            "model": model.feature_info,
            "features": features.feature_info,
            "head": new.feature_info,
        }
    script = """
import json, sys
import keras
import keras_resnets
out = {}
for config in json.loads(sys.argv[2]):
    loaded = {
        kind: keras.models.load_model(f"{sys.argv[1]}/{config}{suffix}.keras")
        for kind, suffix in (("model", ""), ("features", "_features"), ("head", "_head"))
    }
    for model in loaded.values():
        assert isinstance(model, keras_resnets.Network), type(model)
    # The helpers work on the loaded models too.
    keras_resnets.freeze(loaded["head"], until="all")
    assert len(loaded["head"].trainable_weights) == 2
    list(keras_resnets.stage_outputs(loaded["features"]))
    out[config] = {kind: model.feature_info for kind, model in loaded.items()}
print(json.dumps(out))
"""
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), json.dumps(sorted(SMALL))],
        env=trainer_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected


@pytest.mark.multibackend
@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("key", sorted(CASES))
def test_helpers_and_dtype_policies_on_every_backend(key, policy):
    """Run by `make test` on TensorFlow, JAX and PyTorch (the multibackend marker)."""
    from test_transfer_dtype import check_policies, check_probabilities

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        name, options = CASES[key]
        model = getattr(keras_resnets, name)(input_shape=(32, 32, 3), classes=3, **options)
        check_policies(model, policy)
        stages = check_feature_info(model, 32)
        check_helpers(model, 32, stages)
        new = keras_resnets.replace_head(model, classes=5)
        check_policies(new, policy)
        check_probabilities(new)
        other = "float32" if policy != "float32" else "mixed_bfloat16"
        rebuilt = keras_resnets.with_dtype_policy(new, other)
        check_policies(rebuilt, other)
        assert rebuilt.feature_info == model.feature_info
        check_probabilities(rebuilt)
    finally:
        keras.config.set_dtype_policy(previous)


def test_a_model_saved_before_final_norm_was_recorded_still_loads(tmp_path):
    """A `.keras` file whose config has no `final_norm` loads; the name is found in the graph."""
    import zipfile

    model = keras_resnets.CifarDenseNet(10, growth_rate=4, input_shape=(8, 8, 3), classes=3)
    path = tmp_path / "new.keras"
    model.save(path)
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(old, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                assert config["config"].pop("final_norm") == "final_bn"
                data = json.dumps(config).encode()
            target.writestr(item, data)
    loaded = keras.models.load_model(old)
    assert loaded.final_norm == "final_bn"
    assert loaded.feature_info == model.feature_info
    assert "final_norm" not in json.loads(zipfile.ZipFile(old).read("config.json"))["config"]
