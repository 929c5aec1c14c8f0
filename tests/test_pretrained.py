"""`weights="imagenet"` and friends: registry, download cache, checksum, errors.

The download path is exercised against a local HTTP server on 127.0.0.1
serving a golden fixture checkpoint, registered for a reduced model.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import re
import socket
import threading

import numpy as np
import pytest
from test_torch_weights import (
    MANIFEST,
    fixture_path,
    golden,
    max_error,
    small_model,
    small_spec,
)

import keras_resnets
from keras_resnets.models import registry
from keras_resnets.weights import pretrained
from keras_resnets.weights.pretrained import WeightsDownloadError

FIXTURE = "resnet_basic"
MODEL = "SmallResNetPretrained"
TOLERANCE = 1e-4


def sha256(path) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.server.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving the fixture checkpoint and a corrupted copy."""
    root = tmp_path / "served"
    root.mkdir()
    good = open(fixture_path(FIXTURE), "rb").read()
    (root / "small.safetensors").write_bytes(good)
    corrupted = bytearray(good)
    corrupted[-1] ^= 0xFF
    (root / "corrupted.safetensors").write_bytes(bytes(corrupted))
    handler = functools.partial(_Handler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home / "models" / "keras_resnets"


@pytest.fixture
def small_pretrained(monkeypatch):
    """A registered reduced model whose weights are registered per test."""

    def builder(**kwargs):
        return small_model(FIXTURE, model_name=MODEL, **kwargs)

    builder.__name__ = MODEL
    info = registry.ModelInfo(
        MODEL, builder, "test", MANIFEST["size"], 0, "test", spec=small_spec(FIXTURE)
    )
    monkeypatch.setitem(registry._REGISTRY, MODEL, info)

    def register(tag, url, sha):
        entry = pretrained.PretrainedWeights(MODEL, tag, url, sha, classes=MANIFEST["classes"])
        monkeypatch.setitem(pretrained._REGISTRY, (MODEL, tag), entry)
        return entry

    return builder, register


def test_download_convert_cache_and_reuse(server, cache, small_pretrained):
    httpd, base = server
    builder, register = small_pretrained
    register("tv_in1k", f"{base}/small.safetensors", sha256(fixture_path(FIXTURE)))
    data = golden(FIXTURE)

    model = builder(weights="imagenet")
    assert httpd.requests == ["/small.safetensors"]
    assert max_error(model, data["x"], data["logits"]) < TOLERANCE
    files = sorted(os.listdir(cache))
    assert len(files) == 2
    assert files[0].endswith(".safetensors") and files[1].endswith(".weights.h5")
    assert not [f for f in files if f.endswith(".part")]

    again = builder(weights="tv_in1k")
    assert httpd.requests == ["/small.safetensors"]  # served from the cache
    assert max_error(again, data["x"], data["logits"]) < TOLERANCE

    # Without the top, at another input size: the same converted file, no classifier.
    features = builder(
        weights="imagenet", include_top=False, pooling="avg", input_shape=(None, None, 3)
    )
    assert httpd.requests == ["/small.safetensors"]
    assert "head_fc" not in [layer.name for layer in features.layers]
    assert max_error(features, data["x"], data["features"]) < TOLERANCE
    assert sorted(os.listdir(cache)) == files


def test_corrupted_download_fails_and_leaves_nothing(server, cache, small_pretrained):
    httpd, base = server
    builder, register = small_pretrained
    register("tv_in1k", f"{base}/corrupted.safetensors", sha256(fixture_path(FIXTURE)))
    with pytest.raises(ValueError, match="SHA-256 .* expected .*Nothing was kept"):
        builder(weights="imagenet")
    assert httpd.requests == ["/corrupted.safetensors"]
    assert os.listdir(cache) == []


def test_unverified_download_warns_with_its_hash(server, cache, small_pretrained):
    _, base = server
    builder, register = small_pretrained
    register("tv_in1k", f"{base}/small.safetensors", None)
    with pytest.warns(UserWarning, match=sha256(fixture_path(FIXTURE))):
        builder(weights="imagenet")


def test_offline_error_names_url_and_cache_path(cache, small_pretrained):
    builder, register = small_pretrained
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/small.safetensors"
    entry = register("tv_in1k", url, sha256(fixture_path(FIXTURE)))
    with pytest.raises(WeightsDownloadError) as error:
        builder(weights="imagenet")
    message = str(error.value)
    assert url in message
    assert str(cache / entry.checkpoint_name) in message
    assert os.listdir(cache) == []


def _placed_by_hand(cache, small_pretrained):
    """Register the small checkpoint at an unreachable URL and put its file in the cache."""
    builder, register = small_pretrained
    entry = register("tv_in1k", "https://unreachable.invalid/x.safetensors", None)
    cache.mkdir(parents=True)
    (cache / entry.checkpoint_name).write_bytes(open(fixture_path(FIXTURE), "rb").read())
    return builder, golden(FIXTURE)


def test_file_placed_by_hand_is_used(cache, small_pretrained):
    builder, data = _placed_by_hand(cache, small_pretrained)
    assert max_error(builder(weights="imagenet"), data["x"], data["logits"]) < TOLERANCE


def test_pretrained_needs_three_channels_and_1000_classes():
    with pytest.raises(ValueError, match=r"needs 3 input channels.*\(224, 224, 1\)"):
        keras_resnets.ResNet50(weights="imagenet", input_shape=(224, 224, 1))
    with pytest.raises(ValueError, match=r"needs `classes=1000`.*got 10"):
        keras_resnets.ResNet18(weights="imagenet", classes=10)


def test_unpublished_weights_are_refused_with_what_exists():
    with pytest.raises(
        ValueError, match=r"No pretrained weights 'tv2_in1k' for ResNet18.*'imagenet'"
    ):
        keras_resnets.ResNet18(weights="tv2_in1k")
    with pytest.raises(ValueError, match="ResNet20 has none; models with pretrained weights: "):
        keras_resnets.ResNet20(weights="imagenet")
    with pytest.raises(ValueError, match=r"None, one of 'imagenet', 'a1_in1k', .*'tv_in1k' \(pre"):
        keras_resnets.ResNet50(weights="imagenet21k")
    with pytest.raises(ValueError, match=r"ResNet50 with its default options; stride_in_1x1=True"):
        keras_resnets.ResNet50(weights="imagenet", stride_in_1x1=True)
    with pytest.raises(ValueError, match=r"unit='full_preactivation' changes its layers"):
        keras_resnets.ResNet50(weights="imagenet", unit="full_preactivation")
    with pytest.raises(ValueError, match=r"form='b'.*copy_form_weights"):
        keras_resnets.ResNeXt50(weights="imagenet", form="b")
    with pytest.raises(
        ValueError, match=r"'imagenet' for ResNeXt101 \(published for ResNeXt101: 'gluon"
    ):
        keras_resnets.ResNeXt101(weights="imagenet")  # torchvision has no 32x4d weights


def test_builtin_registry():
    expected = {
        "ResNet18": ["imagenet", "tv_in1k"],
        "ResNet34": ["imagenet", "tv_in1k"],
        "ResNet50": ["imagenet", "tv2_in1k", "tv_in1k"],
        "ResNet101": ["imagenet", "tv2_in1k", "tv_in1k"],
        "ResNet152": ["imagenet", "tv2_in1k", "tv_in1k"],
        "ResNeXt50": ["imagenet", "tv2_in1k", "tv_in1k"],
        "ResNeXt101_32x8d": ["imagenet", "tv2_in1k", "tv_in1k"],
        "ResNeXt101_64x4d": ["imagenet", "tv_in1k"],
        "WideResNet50_2": ["imagenet", "tv2_in1k", "tv_in1k"],
        "WideResNet101_2": ["imagenet", "tv2_in1k", "tv_in1k"],
        "DenseNet121": ["imagenet", "tv_in1k"],
        "DenseNet161": ["imagenet", "tv_in1k"],
        "DenseNet169": ["imagenet", "tv_in1k"],
        "DenseNet201": ["imagenet", "tv_in1k"],
    }
    for name, tags in expected.items():  # torchvision's; timm's tags: tests/test_timm_tags.py
        assert [
            t for t in pretrained.available_weights(name) if t.startswith(("imag", "tv"))
        ] == tags
    with_torchvision = {name for name, tag in pretrained._REGISTRY if tag.startswith("tv")}
    assert sorted(with_torchvision) == sorted(expected)
    for (name, tag), entry in pretrained._REGISTRY.items():
        if not tag.startswith("tv"):
            continue
        assert name in keras_resnets.list_models()
        assert re.fullmatch(
            r"https://huggingface\.co/timm/[a-z0-9_]+\.tv2?_in1k/resolve/main/"
            r"model\.safetensors",
            entry.url,
        ), entry.url
        assert entry.url.split("/")[4].endswith("." + tag)
        assert entry.sha256 is None or re.fullmatch("[0-9a-f]{64}", entry.sha256)
    assert pretrained.get_pretrained("ResNet50", "imagenet").tag == "tv_in1k"


def test_register_pretrained_validates():
    with pytest.raises(ValueError, match="`sha256` must be 64 hexadecimal digits"):
        pretrained.register_pretrained("ResNet50", "mine", url="x.safetensors", sha256="abc")
    with pytest.raises(ValueError, match="`url` must end in"):
        pretrained.register_pretrained("ResNet50", "mine", url="x.bin")
    with pytest.raises(ValueError, match="other than 'imagenet'"):
        pretrained.register_pretrained("ResNet50", "imagenet", url="x.safetensors")


def test_converted_weights_equal_direct_conversion(server, cache, small_pretrained):
    """The cached .weights.h5 holds exactly the converted checkpoint."""
    from keras_resnets.weights import load_torch_checkpoint

    _, base = server
    builder, register = small_pretrained
    entry = register("tv_in1k", f"{base}/small.safetensors", sha256(fixture_path(FIXTURE)))
    path = pretrained.converted_weights_path(entry)
    direct = builder()
    load_torch_checkpoint(direct, fixture_path(FIXTURE))
    cached = builder(weights=path)
    for a, b in zip(direct.weights, cached.weights, strict=True):
        np.testing.assert_array_equal(np.array(a), np.array(b))


def test_pretrained_weights_load_into_a_stochastic_depth_model(cache, small_pretrained):
    """The flat checkpoint fills the nested branches; inverted scaling gives the same logits."""
    builder, data = _placed_by_hand(cache, small_pretrained)
    model = builder(weights="imagenet", drop_path_rate=0.2, stochastic_depth_scale="train")
    gates = [la for la in model.layers if isinstance(la, keras_resnets.StochasticDepth)]
    assert gates
    assert max_error(model, data["x"], data["logits"]) < TOLERANCE


def test_pretrained_weights_carry_their_normalisation(cache, small_pretrained, tmp_path):
    """weights="imagenet" sets model.preprocessing (kept by .keras); the export serves it."""
    import keras

    from keras_resnets.export import model_preprocessing

    builder, register = small_pretrained
    entry = register("tv_in1k", "https://unreachable.invalid/x.safetensors", None)
    cache.mkdir(parents=True)
    (cache / entry.checkpoint_name).write_bytes(open(fixture_path(FIXTURE), "rb").read())
    torchvision = {"scale": 1 / 255, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    evaluation = {"input_size": 224, "crop_pct": 0.875, "interpolation": "bilinear"}
    assert entry.preprocessing == {**torchvision, **evaluation}
    assert builder().preprocessing is None
    model = builder(weights="imagenet")
    features = builder(weights="imagenet", include_top=False, pooling="avg")
    assert model.preprocessing == features.preprocessing == {**torchvision, **evaluation}
    model.save(tmp_path / "m.keras")
    assert model_preprocessing(keras.models.load_model(tmp_path / "m.keras")) == torchvision
    for entry in pretrained._REGISTRY.values():  # every built-in checkpoint: ImageNet mean/std
        assert {k: entry.preprocessing[k] for k in torchvision} == torchvision, entry


def test_registered_weights_take_their_own_normalisation(monkeypatch):
    monkeypatch.setattr(pretrained, "_REGISTRY", dict(pretrained._REGISTRY))
    spec = {"scale": 1 / 127.5, "mean": [1.0], "std": [1.0]}
    entry = pretrained.register_pretrained(
        "ResNet50", "mine", url="file:///x.safetensors", preprocessing=spec
    )
    assert {k: entry.preprocessing[k] for k in spec} == spec
    with pytest.raises(ValueError, match=r"`preprocessing` must be None or a dict.*'mean'"):
        pretrained.register_pretrained(
            "ResNet50", "mine", url="file:///x.safetensors", preprocessing={"mean": [0.5]}
        )
