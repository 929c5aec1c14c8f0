"""`weights=<file>`: a file of another architecture, a broken file, stochastic depth.

Issue 17, kinds 6 and 10: a Plain20 or pre-activation ResNet-20 file has the
shapes of ResNet-20 and used to load silently; a truncated file must name
itself; `None` is a TypeError naming the argument; files saved with and
without stochastic depth load into each other through the builders'
`weights=` as pretrained weights do; reloading a stochastic-depth `.keras`
prints no warning. The models are saved once per module.
"""

from __future__ import annotations

import importlib.util
import logging
import pathlib
import warnings

import keras
import numpy as np
import pytest
from model_checks import randomise_batchnorm

import keras_resnets
from keras_resnets.utils import iter_layers
from keras_resnets.weights import (
    copy_weights_by_name,
    load_torch_checkpoint,
    load_weights_file,
    read_torch_checkpoint,
    saved_with_stochastic_depth,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]
SUFFIXES = (".keras", ".weights.h5")
X = np.random.default_rng(3).random((2, 32, 32, 3), dtype=np.float32)
# "train" scaling: inference runs every branch unscaled, so a stochastic-depth
# model and its flat twin with the same weights give the same outputs.
STOCHASTIC = {"drop_path_rate": 0.3, "stochastic_depth_scale": "train"}


def _save(model: keras.Model, directory: pathlib.Path, stem: str) -> dict[str, pathlib.Path]:
    randomise_batchnorm(iter_layers(model), np.random.default_rng(len(stem)))
    paths = {suffix: directory / f"{stem}{suffix}" for suffix in SUFFIXES}
    model.save(paths[".keras"])
    model.save_weights(paths[".weights.h5"])
    return paths


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """ResNet-20, Plain-20, a pre-activation ResNet-20 and a stochastic-depth ResNet-20."""
    directory = tmp_path_factory.mktemp("weights")
    models = {
        "resnet20": keras_resnets.ResNet20(),
        "plain20": keras_resnets.Plain20(),
        "preact20": keras_resnets.ResNet20(unit="full_preactivation"),
        "stochastic20": keras_resnets.ResNet20(**STOCHASTIC),
    }
    files = {name: _save(model, directory, name) for name, model in models.items()}
    outputs = {name: _outputs(model) for name, model in models.items()}
    return {"models": models, "files": files, "outputs": outputs}


@pytest.fixture(scope="module")
def target():
    """A ResNet-20 to load into: every refusal comes before its weights change."""
    return keras_resnets.ResNet20()


def _outputs(model: keras.Model) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(X, training=False))


def test_resnet20_refuses_a_plain20_file(saved):
    path = saved["files"]["plain20"][".keras"]
    with pytest.raises(ValueError, match=r"plain20\.keras.*another architecture.*layer '"):
        keras_resnets.ResNet20(weights=str(path))


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("other", ["plain20", "preact20"])
def test_a_file_of_another_architecture_is_refused(saved, target, other, suffix):
    path = saved["files"][other][suffix]
    before = _outputs(target)
    with pytest.raises(ValueError, match=rf"{path.name}.*another architecture") as caught:
        load_weights_file(target, path)
    if suffix == ".keras":  # the file records the layer names: the message names one
        assert "layer '" in str(caught.value)
    np.testing.assert_array_equal(_outputs(target), before)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_file_of_the_same_architecture_loads(saved, suffix):
    model = keras_resnets.ResNet20(weights=str(saved["files"]["resnet20"][suffix]))
    np.testing.assert_array_equal(_outputs(model), saved["outputs"]["resnet20"])


def test_layers_ahead_of_the_network_are_not_part_of_the_comparison(saved):
    """An `input_tensor` made by the caller's own layers (keras.applications' use)."""
    inputs = keras.Input((32, 32, 3))
    scaled = keras.layers.Rescaling(1.0, name="caller_rescaling")(inputs)
    path = str(saved["files"]["resnet20"][".keras"])
    model = keras_resnets.ResNet20(weights=path, input_tensor=scaled)
    np.testing.assert_array_equal(_outputs(model), saved["outputs"]["resnet20"])
    with pytest.raises(ValueError, match="another architecture"):
        keras_resnets.ResNet20(
            weights=str(saved["files"]["plain20"][".keras"]), input_tensor=scaled
        )


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: b"",  # empty
        lambda data: data[:100] + bytes(b ^ 0xFF for b in data[100:400]) + data[400:],
    ],
    ids=["truncated", "empty", "flipped"],
)
def test_a_broken_file_is_named(saved, target, tmp_path, suffix, damage):
    broken = tmp_path / f"broken{suffix}"
    broken.write_bytes(damage(saved["files"]["resnet20"][suffix].read_bytes()))
    with pytest.raises(ValueError, match=f"broken{suffix}"):
        load_weights_file(target, broken)


def test_none_is_a_type_error_naming_the_argument(saved, target):
    model = target
    path = saved["files"]["resnet20"][".keras"]
    with pytest.raises(TypeError, match="`model`"):
        load_weights_file(None, path)
    with pytest.raises(TypeError, match="`path`"):
        load_weights_file(model, None)
    with pytest.raises(TypeError, match="`model`"):
        load_torch_checkpoint(None, "resnet.safetensors")
    with pytest.raises(TypeError, match="`path`"):
        load_torch_checkpoint(model, None)
    with pytest.raises(TypeError, match="`path`"):
        read_torch_checkpoint(None)


def test_files_record_whether_they_nest_stochastic_depth(saved):
    for name, paths in saved["files"].items():
        for path in paths.values():
            assert saved_with_stochastic_depth(path) is (name == "stochastic20")


def test_a_flat_file_loads_into_a_stochastic_depth_model(saved):
    path = str(saved["files"]["resnet20"][".weights.h5"])
    model = keras_resnets.ResNet20(weights=path, **STOCHASTIC)
    assert model.get_layer("stage1_block1_add").__class__.__name__ == "StochasticDepth"
    np.testing.assert_allclose(_outputs(model), saved["outputs"]["resnet20"], atol=1e-6)


def test_a_stochastic_depth_file_loads_into_a_flat_model(saved):
    path = str(saved["files"]["stochastic20"][".keras"])
    model = keras_resnets.ResNet20(weights=path)
    assert model.get_layer("stage1_block1_add").__class__.__name__ == "Add"
    np.testing.assert_allclose(_outputs(model), saved["outputs"]["stochastic20"], atol=1e-6)


def test_load_weights_file_refuses_the_other_nesting_and_says_what_to_do(saved):
    with pytest.raises(ValueError, match=r"stochastic depth.*builder.*copy_weights_by_name"):
        load_weights_file(keras_resnets.ResNet20(), saved["files"]["stochastic20"][".keras"])
    flat = keras_resnets.ResNet20()
    copy_weights_by_name(saved["models"]["stochastic20"], flat)
    np.testing.assert_allclose(_outputs(flat), saved["outputs"]["stochastic20"], atol=1e-6)


def test_reloading_a_stochastic_depth_model_warns_of_nothing(saved, caplog):
    """Issue 17, kind 10: no "freshly-initialized weights" warning, the same outputs."""
    path = saved["files"]["stochastic20"][".keras"]
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        loaded = keras.models.load_model(path)
    assert [str(w.message) for w in caught] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    np.testing.assert_array_equal(_outputs(loaded), saved["outputs"]["stochastic20"])


# -- benchmarks/resnext_vs_resnet.py --size ---------------------------------------


def _benchmark():
    spec = importlib.util.spec_from_file_location(
        "resnext_vs_resnet", ROOT / "benchmarks" / "resnext_vs_resnet.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_builds_its_models_at_size(monkeypatch, capsys):
    """The models are built at `--size` (it crashed for any size but 224)."""
    benchmark = _benchmark()
    shapes = []

    def tiny(input_shape=None, implementation=None, **kwargs):
        shapes.append(input_shape)
        inputs = keras.Input(input_shape)
        x = keras.layers.Conv2D(2, 3, name="stage2_block1_conv2")(inputs)
        x = keras.layers.GlobalAveragePooling2D()(x)
        model = keras.Model(inputs, keras.layers.Dense(1000, activation="softmax")(x))
        model.get_layer("stage2_block1_conv2").resolved_implementation = implementation
        return model

    monkeypatch.setattr(benchmark.keras_resnets, "ResNet50", tiny)
    monkeypatch.setattr(benchmark.keras_resnets, "ResNeXt50", tiny)
    argv = ["--size", "40", "--batch", "1", "--steps", "1", "--warmup", "0", "--skip-native"]
    benchmark.main(argv)
    assert shapes and all(shape == (40, 40, 3) for shape in shapes)
    assert "40x40" in capsys.readouterr().out


@pytest.mark.parametrize(
    "flags, flag",
    [
        (["--size", "0"], "--size"),
        (["--size", "31"], "--size"),
        (["--size", "a"], "--size"),
        (["--batch", "0"], "--batch"),
        (["--steps", "-1"], "--steps"),
        (["--warmup", "-1"], "--warmup"),
        (["--native-batch", "0"], "--native-batch"),
    ],
)
def test_the_benchmark_refuses_bad_flags_naming_them(capsys, flags, flag):
    with pytest.raises(SystemExit) as caught:
        _benchmark().build_parser().parse_args(flags)
    assert caught.value.code == 2
    assert f"argument {flag}:" in capsys.readouterr().err


def test_every_family_with_stochastic_depth_loads_across_nesting(tmp_path):
    """The CIFAR Wide ResNet has its own builder: the same mechanism serves it."""
    source = keras_resnets.WideResNet(depth=10, width=1, **STOCHASTIC)
    randomise_batchnorm(iter_layers(source), np.random.default_rng(0))
    path = tmp_path / "wrn.weights.h5"
    source.save_weights(path)
    flat = keras_resnets.WideResNet(depth=10, width=1, weights=str(path))
    np.testing.assert_allclose(_outputs(flat), _outputs(source), atol=1e-6)
