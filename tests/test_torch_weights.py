"""PyTorch checkpoint conversion against golden torchvision outputs.

The fixtures in tests/fixtures/torch were made once with torch and
torchvision (tests/fixtures/make_torch_fixtures.py): reduced torchvision
ResNets (basic and bottleneck blocks), a grouped ResNeXt, a Wide ResNet and a
DenseNet with random weights and BatchNorm statistics, and their outputs on
fixed inputs. The same architectures are built here through the package's
own builder code path, the checkpoints converted, and the outputs compared.
"""

from __future__ import annotations

import json
import os
import sys

import keras
import numpy as np
import pytest

from keras_resnets.models import registry
from keras_resnets.models.densenet import DenseNetSpec, build_densenet
from keras_resnets.models.resnet import ResNetSpec, build_resnet
from keras_resnets.weights import load_torch_checkpoint, read_torch_checkpoint

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "torch")
with open(os.path.join(FIXTURES, "manifest.json")) as _handle:
    MANIFEST = json.load(_handle)
TOLERANCE = 1e-4
RESNETS = ["resnet_basic", "resnet_bottleneck"]
GOLDEN = [*RESNETS, "resnext", "wide_resnet", "densenet"]


def fixture_path(name: str, suffix: str = ".safetensors") -> str:
    return os.path.join(FIXTURES, name + suffix)


def golden(name: str) -> dict[str, np.ndarray]:
    with np.load(fixture_path(name, ".npz")) as data:
        return dict(data)


def small_spec(name: str):
    """The fixture's architecture as the family's spec (`DenseNetSpec` or `ResNetSpec`)."""
    config = MANIFEST["models"][name]
    if config["family"] == "densenet":
        return DenseNetSpec(
            block_sizes=tuple(config["block_config"]),
            growth_rate=config["growth_rate"],
            stem_width=config["num_init_features"],
            stem="imagenet",
            bottleneck=True,
            compression=0.5,
            default_size=MANIFEST["size"],
            default_classes=MANIFEST["classes"],
            bottleneck_width=config["bn_size"],
        )
    width = config["width"]
    return ResNetSpec(
        block=config["block"],
        depths=tuple(config["depths"]),
        widths=tuple(width * 2**i for i in range(4)),
        stem="imagenet",
        default_size=MANIFEST["size"],
        default_classes=MANIFEST["classes"],
        shortcut="projection",
        stem_width=width,
        cardinality=config.get("groups", 1),
        base_width=config.get("width_per_group", 64),
    )


def small_model(name: str, model_name: str = "SmallResNet", **kwargs) -> keras.Model:
    """The fixture's architecture through the public builders' code path."""
    kwargs.setdefault("classifier_activation", None)
    spec = small_spec(name)
    build = build_densenet if isinstance(spec, DenseNetSpec) else build_resnet
    return build(spec, model_name=model_name, **kwargs)


def max_error(model: keras.Model, x: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(model.predict(x, verbose=0) - expected)))


@pytest.mark.parametrize("name", GOLDEN)
def test_converted_outputs_match_torchvision(name):
    data = golden(name)
    model = small_model(name)
    load_torch_checkpoint(model, fixture_path(name))
    assert max_error(model, data["x"], data["logits"]) < TOLERANCE
    # Trainable counts equal PyTorch's parameter counts for the same architecture.
    assert (
        sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        == (MANIFEST["models"][name]["num_params"])
    )


@pytest.mark.parametrize("name", GOLDEN)
def test_without_top_skips_the_classifier(name):
    data = golden(name)
    model = small_model(name, include_top=False, pooling="avg", input_shape=(None, None, 3))
    load_torch_checkpoint(model, fixture_path(name))
    assert max_error(model, data["x"], data["features"]) < TOLERANCE


@pytest.mark.parametrize("implementation", ["native", "split"])
def test_grouped_kernels_convert_for_both_implementations(implementation):
    data = golden("resnext")
    model = small_model("resnext", implementation=implementation)
    grouped = model.get_layer("stage2_block1_conv2")
    assert type(grouped).__name__ == "GroupedConv2D" and grouped.groups == 4
    load_torch_checkpoint(model, fixture_path("resnext"))
    assert max_error(model, data["x"], data["logits"]) < TOLERANCE


def test_densenet_legacy_key_names_and_memory_efficient_blocks():
    """torchvision's published DenseNet files say "norm.1" for "norm1"."""
    data = golden("densenet")
    model = small_model("densenet", memory_efficient=True)
    load_torch_checkpoint(model, fixture_path("densenet_legacy_keys"))
    assert max_error(model, data["x"], data["logits"]) < TOLERANCE


def test_resnext_form_b_is_not_in_the_table():
    with pytest.raises(ValueError, match="'stage2_block1_path1_conv1'"):
        load_torch_checkpoint(small_model("resnext", form="b"), fixture_path("resnext"))


def _weights(model):
    return [np.array(w) for w in model.weights]


def test_missing_tensor_is_named_and_nothing_changes(tmp_path):
    from safetensors.numpy import save_file

    state = read_torch_checkpoint(fixture_path("resnet_basic"))
    del state["layer2.0.bn1.running_var"]
    path = str(tmp_path / "missing.safetensors")
    save_file(state, path)
    model = small_model("resnet_basic")
    before = _weights(model)
    with pytest.raises(ValueError, match=r"'layer2\.0\.bn1\.running_var'.*'stage3_block1_bn1'"):
        load_torch_checkpoint(model, path)
    for old, new in zip(before, _weights(model), strict=True):
        np.testing.assert_array_equal(old, new)


def test_unused_tensor_is_named(tmp_path):
    from safetensors.numpy import save_file

    state = read_torch_checkpoint(fixture_path("resnet_basic"))
    state["layer5.0.conv1.weight"] = np.zeros((1, 1, 1, 1), "float32")
    path = str(tmp_path / "extra.safetensors")
    save_file(state, path)
    with pytest.raises(ValueError, match=r"does not use, first 'layer5\.0\.conv1\.weight'"):
        load_torch_checkpoint(small_model("resnet_basic"), path)


def test_wrong_architecture_names_the_first_mismatch():
    with pytest.raises(ValueError, match=r"stage2_block1_conv1.*'layer1\.0\.conv1\.weight'"):
        load_torch_checkpoint(small_model("resnet_bottleneck"), fixture_path("resnet_basic"))


def test_classifier_width_must_match():
    with pytest.raises(ValueError, match=r"'head_fc'.*'fc\.weight'"):
        load_torch_checkpoint(small_model("resnet_basic", classes=5), fixture_path("resnet_basic"))


def test_layer_without_a_table_row_is_named():
    model = keras_model_with_extra_layer()
    with pytest.raises(ValueError, match="'extra_dense'"):
        load_torch_checkpoint(model, fixture_path("resnet_basic"))


def keras_model_with_extra_layer():
    base = small_model("resnet_basic", include_top=False, pooling="avg")
    outputs = keras.layers.Dense(3, name="extra_dense")(base.output)
    return keras.Model(base.input, outputs)


def test_bad_paths_are_named(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_torch_checkpoint(small_model("resnet_basic"), tmp_path / "none.safetensors")
    with pytest.raises(ValueError, match=r"must end in \.safetensors, \.pth or \.pt"):
        read_torch_checkpoint(tmp_path / "weights.bin")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="broken.safetensors"):
        read_torch_checkpoint(broken)


def test_pth_without_torch_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    with pytest.raises(ImportError, match="needs PyTorch"):
        read_torch_checkpoint(fixture_path("resnet_basic", ".pth"))


def test_pth_with_torch():
    pytest.importorskip("torch")
    data = golden("resnet_basic")
    model = small_model("resnet_basic")
    load_torch_checkpoint(model, fixture_path("resnet_basic", ".pth"))
    assert max_error(model, data["x"], data["logits"]) < TOLERANCE


# -- the convert command -------------------------------------------------------


@pytest.fixture
def small_registered(monkeypatch):
    """Register the reduced fixture architectures as models for this test only."""
    names = {}
    for fixture in RESNETS:
        model_name = "Small" + "".join(part.title() for part in fixture.split("_"))

        def builder(_fixture=fixture, _model_name=model_name, **kwargs):
            return small_model(_fixture, model_name=_model_name, **kwargs)

        builder.__name__ = model_name
        info = registry.ModelInfo(model_name, builder, "test", MANIFEST["size"], 0, "test")
        monkeypatch.setitem(registry._REGISTRY, model_name, info)
        names[fixture] = model_name
    return names


def test_convert_command_writes_weights_and_keras_files(tmp_path, small_registered, capsys):
    from keras_resnets.convert import main

    data = golden("resnet_bottleneck")
    name = small_registered["resnet_bottleneck"]
    weights = tmp_path / "small.weights.h5"
    assert main([fixture_path("resnet_bottleneck"), str(weights), "--model", name]) == 0
    assert "Wrote" in capsys.readouterr().out
    model = small_model("resnet_bottleneck", weights=str(weights))
    assert max_error(model, data["x"], data["logits"]) < TOLERANCE

    whole = tmp_path / "small.keras"
    assert main([fixture_path("resnet_bottleneck"), str(whole), "--model", name]) == 0
    loaded = keras.models.load_model(whole)
    assert max_error(loaded, data["x"], data["logits"]) < TOLERANCE
    assert sorted(os.listdir(tmp_path)) == ["small.keras", "small.weights.h5"]


def test_convert_command_fails_cleanly(tmp_path, small_registered, capsys):
    from keras_resnets.convert import main

    destination = tmp_path / "out.weights.h5"
    name = small_registered["resnet_bottleneck"]
    assert main([fixture_path("resnet_basic"), str(destination), "--model", name]) == 2
    assert "error:" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []
    assert main([fixture_path("resnet_basic"), str(tmp_path / "out.h5"), "--model", name]) == 2
    assert "must end in .weights.h5 or .keras" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # a flag's bad value names the flag
        main([fixture_path("resnet_basic"), str(destination), "--model", name, "--classes", "0"])
    assert stop.value.code == 2
    assert "argument --classes: must be an integer >= 1, got '0'" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda v: np.full_like(v, np.nan), "NaN or infinite"),
        (lambda v: np.where(np.arange(v.size).reshape(v.shape) == 0, np.inf, v), "1 NaN or inf"),
        (lambda v: v.astype(np.int32), "dtype int32"),
    ],
    ids=["nan", "inf", "integer"],
)
def test_a_tensor_that_is_not_a_finite_float_is_named(tmp_path, damage, message):
    from safetensors.numpy import save_file

    state = read_torch_checkpoint(fixture_path("resnet_basic"))
    state["layer2.0.conv1.weight"] = damage(state["layer2.0.conv1.weight"])
    path = str(tmp_path / "damaged.safetensors")
    save_file(state, path)
    model = small_model("resnet_basic")
    before = _weights(model)
    with pytest.raises(
        ValueError, match=rf"damaged\.safetensors.*'layer2\.0\.conv1\.weight'.*{message}"
    ):
        load_torch_checkpoint(model, path)
    for old, new in zip(before, _weights(model), strict=True):
        np.testing.assert_array_equal(old, new)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_atomic_write_gives_a_new_files_mode_whatever_the_writer_made():
    import stat
    import tempfile

    from keras_resnets.utils import atomic_write

    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "out.weights.h5")
        with atomic_write(path) as temporary:
            os.close(os.open(temporary, os.O_CREAT | os.O_WRONLY, 0o600))  # as mkstemp does
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~_umask()


def test_convert_writes_readable_files_and_refuses_an_existing_one(
    tmp_path, small_registered, capsys
):
    import stat

    from keras_resnets.convert import main

    name = small_registered["resnet_basic"]
    destination = tmp_path / "small.weights.h5"
    argv = [fixture_path("resnet_basic"), str(destination), "--model", name]
    assert main(argv) == 0
    assert stat.S_IMODE(os.stat(destination).st_mode) == 0o666 & ~_umask()
    stamp = os.stat(destination).st_mtime_ns
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and str(destination) in err and "--overwrite" in err
    assert os.stat(destination).st_mtime_ns == stamp
    assert main([*argv, "--overwrite"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["small.weights.h5"]


def test_convert_names_an_unwritable_destination(tmp_path, small_registered, monkeypatch, capsys):
    from keras_resnets.convert import convert, main

    name = small_registered["resnet_basic"]
    destination = tmp_path / "out.weights.h5"
    # a read-only directory (simulated: root may write anywhere)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert main([fixture_path("resnet_basic"), str(destination), "--model", name]) == 5
    err = capsys.readouterr().err
    assert "not writable" in err and str(destination) in err
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []
    for bad in (None, 5):
        with pytest.raises(TypeError, match="`destination`"):
            convert(fixture_path("resnet_basic"), bad, name)
        with pytest.raises(TypeError, match="`source`"):
            convert(bad, tmp_path / "x.keras", name)
