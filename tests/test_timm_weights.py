"""timm checkpoint conversion against golden timm outputs.

The fixtures in tests/fixtures/timm were made once with timm 1.0.31
(tests/fixtures/make_timm_fixtures.py): reduced models built from timm's own
classes with the stem, shortcut, attention and block arguments of
`resnet18d`, `resnet50t`, `seresnet18`, `seresnet50`, `seresnext50_32x4d`,
`ecaresnet50d`, `resnetrs50`, `resnest50d`, `resnest101e` and timm's plain
`resnet50`, `resnext50_32x4d`, `wide_resnet50_2`, `densenet121`, with random
weights and BatchNorm statistics, and their outputs on fixed inputs (64x64
and 57x57). The manifest gives the arguments with which the package builds
the same architecture; the checkpoints are converted and the outputs compared.
"""

from __future__ import annotations

import functools
import json
import os

import keras
import numpy as np
import pytest

import keras_resnets
from keras_resnets.models.resnet import build_resnet, resnet_spec
from keras_resnets.weights import load_torch_checkpoint, read_torch_checkpoint
from keras_resnets.weights.tables import LAYOUTS, detect_layout

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "timm")
with open(os.path.join(FIXTURES, "manifest.json")) as _handle:
    MANIFEST = json.load(_handle)
FIXTURE_NAMES = sorted(MANIFEST["models"])
TOLERANCE = 1e-4
# timm's plain ResNet / ResNeXt / Wide ResNet / DenseNet keep torchvision's names.
TORCHVISION_NAMED = {"timm_resnet", "timm_resnext", "timm_wide_resnet", "timm_densenet"}


def fixture_path(name: str, suffix: str = ".safetensors") -> str:
    return os.path.join(FIXTURES, name + suffix)


@functools.cache
def golden(name: str) -> dict[str, np.ndarray]:
    with np.load(fixture_path(name, ".npz")) as data:
        return dict(data)


@functools.cache
def inputs() -> dict[str, np.ndarray]:
    with np.load(fixture_path("inputs", ".npz")) as data:
        return dict(data)


def small_model(name: str, **kwargs) -> keras.Model:
    """The fixture's architecture from the manifest's builder arguments."""
    config = MANIFEST["models"][name]
    kwargs = {
        "classes": MANIFEST["classes"],
        "classifier_activation": None,
        "input_shape": (64, 64, 3),
        **kwargs,
    }
    args = {**config["args"], **kwargs.pop("architecture", {})}
    if config["builder"] == "resnet_spec":
        return build_resnet(resnet_spec(**args), model_name=name, **kwargs)
    return getattr(keras_resnets, config["builder"])(**args, **kwargs)


def max_error(model: keras.Model, x: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(keras.ops.convert_to_numpy(model(x, training=False)) - expected)))


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_converted_outputs_match_timm(name):
    data, x = golden(name), inputs()
    model = small_model(name)
    load_torch_checkpoint(model, fixture_path(name))
    assert max_error(model, x["x64"], data["logits64"]) < TOLERANCE
    # Trainable counts equal timm's parameter counts for the same architecture.
    count = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert count == MANIFEST["models"][name]["num_params"]
    # Without the top, any input size: the odd 57x57 exercises the shortcut's ceil-mode pool.
    features = small_model(name, include_top=False, pooling="avg", input_shape=(None, None, 3))
    load_torch_checkpoint(features, fixture_path(name))
    for size in MANIFEST["sizes"]:
        assert max_error(features, x[f"x{size}"], data[f"features{size}"]) < TOLERANCE


@pytest.mark.multibackend
def test_split_attention_converts_on_pytorch_too():
    """The nested SplitAttention sub-layers are found on PyTorch too (the walk uses its modules).

    Loading fills every weight and uses every tensor or raises; the outputs
    are compared on TensorFlow above. JAX walks layers as TensorFlow does
    (`keras_resnets.utils.sublayers`), and building the model there takes
    about 18 seconds, so it is skipped.
    """
    if keras.backend.backend() == "jax":
        pytest.skip("JAX walks sub-layers as TensorFlow does; building takes ~18 s there")
    model = small_model("resnest_d")
    load_torch_checkpoint(model, fixture_path("resnest_d"))
    state = read_torch_checkpoint(fixture_path("resnest_d"))
    nested = {
        "stage3_block1_conv2_fc1": "layer2.0.conv2.fc1.weight",
        "stage3_block1_conv2_conv": "layer2.0.conv2.conv.weight",
    }
    for layer, key in nested.items():
        kernel = next(w for w in model.weights if w.path.endswith(f"/{layer}/kernel"))
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(kernel), np.transpose(state[key], (2, 3, 1, 0))
        )


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_layout_is_detected_from_the_keys(name):
    state = read_torch_checkpoint(fixture_path(name))
    expected = "torchvision" if name in TORCHVISION_NAMED else "timm"
    assert detect_layout(state) == expected


def test_explicit_layout():
    data, x = golden("timm_resnet"), inputs()
    for layout in LAYOUTS:  # the timm table includes torchvision's names for plain ResNets
        model = small_model("timm_resnet")
        load_torch_checkpoint(model, fixture_path("timm_resnet"), layout=layout)
        assert max_error(model, x["x64"], data["logits64"]) < TOLERANCE
    with pytest.raises(ValueError, match=r"'stem_conv1'.*torchvision layout"):
        load_torch_checkpoint(
            small_model("resnet_d_basic"), fixture_path("resnet_d_basic"), layout="torchvision"
        )


@pytest.mark.parametrize(
    "layout, error", [("tf", ValueError), ("TIMM", ValueError), (1, TypeError)]
)
def test_bad_layout_names_the_argument_and_the_choices(layout, error):
    model = small_model("timm_densenet")
    with pytest.raises(error, match=rf"`layout`.*'torchvision', 'timm'.*got {layout!r}"):
        load_torch_checkpoint(model, fixture_path("timm_densenet"), layout=layout)


def test_average_pool_shortcut_checkpoint_needs_the_average_pool_model():
    """A ResNet-D checkpoint into the same model with 1x1 strided shortcuts is refused."""
    model = small_model("resnet_d_basic", architecture={"downsample": "conv"})
    with pytest.raises(
        ValueError, match=r"no tensor 'layer1\.0\.downsample\.0\.weight'.*'stage2_block1_shortcut'"
    ):
        load_torch_checkpoint(model, fixture_path("resnet_d_basic"))


def test_attention_tensors_without_attention_in_the_model_are_named():
    model = small_model("seresnet_basic", architecture={"attention": None})
    with pytest.raises(ValueError, match=r"does not use, first 'layer1\.0\.se\.fc1\.bias'"):
        load_torch_checkpoint(model, fixture_path("seresnet_basic"))


def test_eca_kernel_of_the_wrong_size_is_named(tmp_path):
    from safetensors.numpy import save_file

    state = read_torch_checkpoint(fixture_path("ecaresnet_d"))
    key = "layer4.0.se.conv.weight"
    assert state[key].shape == (1, 1, 5)  # k = 5 at 128 channels
    state[key] = state[key][:, :, :3]
    path = str(tmp_path / "eca.safetensors")
    save_file(state, path)
    with pytest.raises(
        ValueError, match=rf"'stage5_block1_eca_conv'.*'{key}' of shape \(1, 1, 3\)"
    ):
        load_torch_checkpoint(small_model("ecaresnet_d"), path)


def test_pth_with_torch():
    pytest.importorskip("torch")
    model = small_model("resnest_d")
    load_torch_checkpoint(model, fixture_path("resnest_d", ".pth"))
    assert max_error(model, inputs()["x64"], golden("resnest_d")["logits64"]) < TOLERANCE
