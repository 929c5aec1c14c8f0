"""timm's pretrained tags: the registry's rows, the download path with a timm tag, the
checkpoint's own preprocessing reaching `preprocess_input` and the export, the docs table.

The download runs against the local HTTP server of tests/test_pretrained.py serving a
reduced plain-ResNet checkpoint (timm's plain ResNet names are torchvision's), registered
for a small model under a timm tag with its own normalisation and crop.
"""

from __future__ import annotations

import pathlib
import re

import keras
import numpy as np
import pytest
from test_pretrained import FIXTURE, MODEL, TOLERANCE, cache, server, sha256, small_pretrained
from test_torch_weights import MANIFEST, fixture_path, golden, max_error

import keras_resnets
from keras_resnets.weights import pretrained, torch_checkpoint
from keras_resnets.zoo import render_into

__all__ = ["cache", "server", "small_pretrained"]  # fixtures shared with test_pretrained

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The issue's models (REFERENCE.md, "Modern variants"): entries may name them before the
# lead's builders land on main; once registered, every check below covers them too.
ISSUE_18_MODELS = {
    *(f"ResNet{d}D" for d in (18, 34, 50, 101, 152, 200)),
    "ResNet26T",
    "ResNet50T",
    *(f"SEResNet{d}" for d in (18, 34, 50, 101, 152)),
    "SEResNeXt50_32x4d",
    "SEResNeXt101_32x4d",
    "ECAResNet50D",
    *(f"ResNetRS{d}" for d in (50, 101, 152, 200, 270, 350, 420)),
    *(f"ResNeSt{d}" for d in (14, 26, 50, 101, 200, 269)),
}
# The checkpoint's own preprocessing, unlike torchvision's in every key.
OWN = {
    "scale": 1 / 255,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "input_size": 40,
    "crop_pct": 0.9,
    "interpolation": "bicubic",
}


@pytest.fixture
def registry_copy(monkeypatch):
    """The pretrained registry and the "imagenet" table, restored after the test."""
    monkeypatch.setattr(pretrained, "_REGISTRY", dict(pretrained._REGISTRY))
    monkeypatch.setattr(pretrained, "_IMAGENET", dict(pretrained._IMAGENET))


@pytest.fixture
def layouts(monkeypatch):
    """Record the `layout` the conversion asks `load_torch_checkpoint` for."""
    calls = []
    convert = torch_checkpoint.load_torch_checkpoint

    def recording(model, path, **kwargs):
        calls.append(kwargs)
        convert(model, path)  # the fixture's names are timm's plain-ResNet names

    monkeypatch.setattr(torch_checkpoint, "load_torch_checkpoint", recording)
    return calls


def _register_timm_tag(url, sha):
    return pretrained.register_pretrained(
        MODEL,
        "a1_in1k",
        url=url,
        sha256=sha,
        classes=MANIFEST["classes"],
        preprocessing=OWN,
        layout="timm",
        top1=50.0,
    )


def test_timm_tag_downloads_checks_converts_and_caches(
    server, cache, small_pretrained, registry_copy, layouts
):
    httpd, base = server
    builder, _ = small_pretrained
    _register_timm_tag(f"{base}/small.safetensors", sha256(fixture_path(FIXTURE)))
    pretrained._IMAGENET[MODEL] = "a1_in1k"  # a family without torchvision weights
    assert pretrained.available_weights(MODEL) == ["imagenet", "a1_in1k"]
    data = golden(FIXTURE)

    model = builder(weights="imagenet")
    assert httpd.requests == ["/small.safetensors"]
    assert layouts == [{"layout": "timm"}]
    assert max_error(model, data["x"], data["logits"]) < TOLERANCE
    assert model.preprocessing == OWN

    httpd.shutdown()  # the second load needs no server: the converted file is cached
    again = builder(weights="a1_in1k", include_top=False, pooling="avg")
    assert layouts == [{"layout": "timm"}]
    assert max_error(again, data["x"], data["features"]) < TOLERANCE
    assert again.preprocessing == OWN


def test_timm_tag_with_a_wrong_sha256_is_refused(server, cache, small_pretrained, registry_copy):
    httpd, base = server
    builder, _ = small_pretrained
    _register_timm_tag(f"{base}/small.safetensors", "0" * 64)
    with pytest.raises(ValueError, match=f"SHA-256 {sha256(fixture_path(FIXTURE))}, expected 0+"):
        builder(weights="a1_in1k")
    assert httpd.requests == ["/small.safetensors"]
    assert list(cache.iterdir()) == []


def test_preprocess_input_uses_the_checkpoints_normalisation_and_crop():
    network = keras_resnets.Network(
        inputs=(inputs := keras.Input((None, None, 3))),
        outputs=keras.layers.GlobalAveragePooling2D()(inputs),
        preprocessing={**OWN, "input_size": 8, "crop_pct": 0.5, "interpolation": "bilinear"},
    )
    images = np.random.default_rng(0).uniform(0, 255, (2, 16, 20, 3)).astype("float32")
    # Shorter side 16 = floor(8 / 0.5): the resize keeps the size; the crop is central.
    expected = (images[:, 4:12, 6:14] / 255 - 0.5) / 0.5
    for mode in (network, network.preprocessing):
        out = keras_resnets.preprocess_input(images, mode, crop=True)
        assert isinstance(out, np.ndarray) and out.shape == (2, 8, 8, 3)
        np.testing.assert_allclose(out, expected, atol=1e-5)
    same_size = keras_resnets.preprocess_input(images, network)
    np.testing.assert_allclose(same_size, (images / 255 - 0.5) / 0.5, atol=1e-6)
    # A landscape image: the shorter side becomes 16, the longer 16 * 40 / 20.
    wide = keras_resnets.preprocess_input(np.zeros((20, 40, 3)), network, crop=True)
    assert wide.shape == (8, 8, 3)
    np.testing.assert_allclose(wide, -1.0, atol=1e-6)

    with pytest.raises(ValueError, match=r"`crop=True` needs `mode` to be a checkpoint's"):
        keras_resnets.preprocess_input(images, "torch", crop=True)
    bare = keras_resnets.Network(inputs=inputs, outputs=keras.layers.Flatten()(inputs))
    with pytest.raises(ValueError, match=r"`mode` is model .* carries no preprocessing"):
        keras_resnets.preprocess_input(images, bare)
    with pytest.raises(ValueError, match=r"`mode` must be a mode name or a dict with 'scale'"):
        keras_resnets.preprocess_input(images, {"mean": [0.5]})
    with pytest.raises(TypeError, match=r"`mode` must be one of 'torch'.*got int"):
        keras_resnets.preprocess_input(images, 3)


def test_export_uses_the_checkpoints_crop_and_size(monkeypatch, tmp_path):
    """The export's defaults come from the carried checkpoint preprocessing; arguments win."""
    from keras_resnets import export

    model = keras_resnets.Network(
        inputs=(inputs := keras.Input((None, None, 3))),
        outputs=keras.layers.Dense(4, activation="softmax")(
            keras.layers.GlobalAveragePooling2D()(inputs)
        ),
        preprocessing=OWN,
    )
    assert export.model_evaluation(model) == {"input_size": 40, "crop_pct": 0.9}
    seen = []

    class Traced(Exception):
        pass

    def archive(model, **kwargs):
        seen.append(kwargs)
        raise Traced

    monkeypatch.setattr(export, "serving_archive", archive)
    for arguments in ({}, {"crop_fraction": 0.5, "input_size": 32}, {"preprocessing": "torch"}):
        if arguments.get("preprocessing"):
            arguments["input_size"] = 24
        with pytest.raises(Traced):
            export.export_saved_model(model, tmp_path / "m", warmup=False, **arguments)
    assert [(s["size"], s["crop_fraction"]) for s in seen] == [
        ((40, 40), 0.9),
        ((32, 32), 0.5),
        ((24, 24), None),  # another normalisation than the model's: nothing of it is used
    ]
    assert tuple(seen[0]["spec"]["mean"]) == (0.5, 0.5, 0.5)
    assert export.model_evaluation(keras_resnets.CifarResNet(8)) is None


def test_builtin_entries_are_well_formed():
    registered = set(keras_resnets.list_models())
    entries = list(pretrained._REGISTRY.values())
    assert len(entries) == len(pretrained._ROWS)
    assert {e.model_name for e in entries} - registered <= ISSUE_18_MODELS
    for entry in entries:
        spec = entry.preprocessing
        timm_name = re.escape(entry.url.split("/")[4].rsplit(".", 1)[0])
        assert re.fullmatch(
            rf"https://huggingface\.co/timm/{timm_name}\.{re.escape(entry.tag)}"
            r"/resolve/main/model\.safetensors",
            entry.url,
        ), entry
        assert re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", timm_name.replace("\\", "")), entry
        assert entry.sha256 is None or re.fullmatch("[0-9a-f]{64}", entry.sha256), entry
        assert len(spec["mean"]) == len(spec["std"]) == 3 and min(spec["std"]) > 0, entry
        assert 0 < spec["crop_pct"] <= 1 and spec["interpolation"] in ("bilinear", "bicubic")
        assert 160 <= entry.train_size <= spec["input_size"] <= 416, entry
        assert entry.classes == 1000 and entry.origin, entry
        assert entry.layout == (None if entry.tag.startswith("tv") else "timm"), entry
        if entry.top1 is None:  # only where timm's results table has no row
            assert (entry.model_name, entry.tag) == ("ResNet34", "tv_in1k")
        else:
            assert 0 < entry.top1 < entry.top5 < 100, entry
    examples = {
        ("ResNet50", "a1_in1k"): 81.214,
        ("ResNet50D", "ra2_in1k"): 81.356,
        ("SEResNeXt50_32x4d", "racm_in1k"): 82.196,
        ("ResNetRS50", "tf_in1k"): 79.896,
        ("ResNeSt50", "in1k"): 80.964,
    }
    for (name, tag), top1 in examples.items():
        assert pretrained.get_pretrained(name, tag).top1 == top1
    assert set(pretrained.PRETRAINED_TAGS) == {"imagenet"} | {e.tag for e in entries}


def test_imagenet_means_torchvision_else_timms_default():
    names = {e.model_name for e in pretrained._REGISTRY.values()}
    assert set(pretrained._IMAGENET) <= names
    for name in names:
        tags = pretrained.available_weights(name)
        has_tv = "tv_in1k" in tags
        assert not (has_tv and name in pretrained._IMAGENET), name
        assert ("imagenet" in tags) == (has_tv or name in pretrained._IMAGENET), name
        if "imagenet" in tags:
            resolved = pretrained.get_pretrained(name, "imagenet").tag
            assert resolved == ("tv_in1k" if has_tv else pretrained._IMAGENET[name])
    with pytest.raises(ValueError, match=r"'imagenet' for ResNeXt101 \(published for Res"):
        pretrained.get_pretrained("ResNeXt101", "imagenet")
    # A registered alias has its row's weights.
    alias = pretrained.get_pretrained("ResNeXt50_32x4d", "a1_in1k")
    assert alias is pretrained.get_pretrained("ResNeXt50", "a1_in1k")
    assert pretrained.available_weights("ResNeXt50_32x4d") == pretrained.available_weights(
        "ResNeXt50"
    )


def test_builders_document_their_tags():
    for name in keras_resnets.list_models():
        doc = getattr(keras_resnets, name).__doc__
        for tag in pretrained.available_weights(name):
            assert repr(tag) in doc, (name, tag)


def test_docs_table_matches_the_registry():
    text = (ROOT / "docs" / "pretrained.md").read_text(encoding="utf-8")
    assert render_into(text, pretrained.pretrained_table(), "pretrained") == text, (
        "docs/pretrained.md is out of date: run python -m keras_resnets.zoo --write "
        "docs/pretrained.md"
    )
    table = pretrained.pretrained_table()
    for entry in pretrained._REGISTRY.values():
        assert f"| {entry.model_name} | `{entry.tag}`" in table, entry


def test_register_pretrained_checks_the_new_fields(registry_copy):
    url = "file:///x.safetensors"
    with pytest.raises(ValueError, match=r"`layout` must be one of None, 'torchvision', 'timm'"):
        pretrained.register_pretrained("ResNet50", "mine", url=url, layout="tf")
    with pytest.raises(ValueError, match=r"`top1` must be None or a percentage.*got 101"):
        pretrained.register_pretrained("ResNet50", "mine", url=url, top1=101)
    bad = {**OWN, "crop_pct": 1.5}
    with pytest.raises(ValueError, match=r"`preprocessing\['crop_pct'\]` must be in \(0, 1\]"):
        pretrained.register_pretrained("ResNet50", "mine", url=url, preprocessing=bad)
    bad = {**OWN, "interpolation": "nearest"}
    with pytest.raises(ValueError, match=r"`preprocessing\['interpolation'\]` must be one of"):
        pretrained.register_pretrained("ResNet50", "mine", url=url, preprocessing=bad)
    entry = pretrained.register_pretrained("ResNet50", "mine", url=url)
    assert entry.preprocessing == {
        **pretrained.TORCHVISION_PREPROCESSING,
        **pretrained.DEFAULT_EVALUATION,
    }
