"""TFDS's real `download_and_prepare` path, offline.

`tfds.testing.mock_data` skips `download_and_prepare`, so it cannot catch a
missing dependency of the path a new user takes first (`python -m
training.train --recipe cifar10_resnet20`). These tests run that path: tiny
archives in the real CIFAR-10 / CIFAR-100 binary formats are served from an
HTTP server on 127.0.0.1 (started and stopped by the fixture), the TFDS
builder's URL and registered checksum are pointed at them, and the trainer
prepares, loads and trains on the result in a temporary data directory.
ImageNet's manual path is run on tiny ILSVRC-layout tar files.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import os
import tarfile
import threading

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from tensorflow_datasets.core.download import checksums  # noqa: E402
from tensorflow_datasets.image_classification import cifar  # noqa: E402

from training import data as data_lib  # noqa: E402

CIFAR10_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


@contextlib.contextmanager
def _serve(directory):
    """Serve `directory` on 127.0.0.1 (an OS-chosen port); stop on exit."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.timeout = 10
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _records(images, labels_per_image):
    """CIFAR binary records: label byte(s), then the R, G and B planes (32x32 each)."""
    out = bytearray()
    for image, labels in zip(images, labels_per_image, strict=True):
        out += bytes(labels)
        out += np.ascontiguousarray(image.transpose(2, 0, 1)).tobytes()
    return bytes(out)


def _tar_gz(path, members: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def _write_cifar(kind: str, directory, per_file: int):
    """Write a tiny cifar-10-binary.tar.gz / cifar-100-binary.tar.gz.

    Returns `(archive name, {split: (images, labels)})` with the images in
    the order the archive holds them.
    """
    rng = np.random.default_rng(0 if kind == "cifar10" else 1)
    classes = 10 if kind == "cifar10" else 100
    members, expected = {}, {"train": ([], []), "test": ([], [])}
    if kind == "cifar10":
        prefix, archive = "cifar-10-batches-bin/", "cifar-10-binary.tar.gz"
        files = [(f"data_batch_{i}.bin", "train") for i in range(1, 6)]
        files.append(("test_batch.bin", "test"))
        members[prefix + "batches.meta.txt"] = ("\n".join(CIFAR10_NAMES) + "\n\n").encode()
    else:
        prefix, archive = "cifar-100-binary/", "cifar-100-binary.tar.gz"
        files = [("train.bin", "train"), ("test.bin", "test")]
        members[prefix + "coarse_label_names.txt"] = "\n".join(
            f"coarse_{i}" for i in range(20)
        ).encode()
        members[prefix + "fine_label_names.txt"] = "\n".join(
            f"fine_{i}" for i in range(100)
        ).encode()
    count = 0
    for name, split in files:
        n = per_file if split == "test" or kind == "cifar10" else 5 * per_file
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        labels = (np.arange(count, count + n) * 7) % classes
        count += n
        label_bytes = [[y] if kind == "cifar10" else [y % 20, y] for y in labels]
        members[prefix + name] = _records(images, label_bytes)
        expected[split][0].append(images)
        expected[split][1].append(labels)
    _tar_gz(os.path.join(directory, archive), members)
    return archive, {k: (np.concatenate(v[0]), np.concatenate(v[1])) for k, v in expected.items()}


def _point_builder_at(monkeypatch, kind: str, url: str, archive_path: str, checksum=None):
    """Point the TFDS builder's download URL and registered checksum at `url`."""
    cls = cifar.Cifar10 if kind == "cifar10" else cifar.Cifar100
    info = cls(data_dir=os.path.dirname(archive_path))._cifar_info
    monkeypatch.setattr(cls, "_cifar_info", property(lambda self: info._replace(url=url)))
    url_info = checksums.compute_url_info(archive_path)
    url_info = checksums.UrlInfo(
        size=url_info.size,
        checksum=checksum or url_info.checksum,
        filename=os.path.basename(archive_path),
    )
    monkeypatch.setattr(cls, "url_infos", {url: url_info})


@contextlib.contextmanager
def _served_cifar(kind: str, tmp_path, monkeypatch, per_file: int):
    """Serve a written CIFAR archive on loopback with TFDS pointed at it; yields its examples."""
    served = tmp_path / "served"
    served.mkdir()
    archive, expected = _write_cifar(kind, served, per_file=per_file)
    with _serve(served) as base:
        _point_builder_at(monkeypatch, kind, f"{base}/{archive}", str(served / archive))
        yield expected


@pytest.fixture
def loopback_network(monkeypatch):
    """Loopback only: no proxy, no GCS, and any other connection refused."""
    import socket

    from tensorflow_datasets.core.utils import gcs_utils

    # requests honours *_PROXY variables: keep the loopback server direct.
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(gcs_utils, "_is_gcs_disabled", True)
    connect = socket.socket.connect

    def loopback_only(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in (
            "127.0.0.1",
            "::1",
        ):
            raise OSError(f"test: network access to {address} refused (loopback only)")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)


def test_tfds_prepare_path_imports_on_this_install(tmp_path):
    # The fault: DatasetBuilder.code_path imports importlib_resources, which
    # tensorflow-datasets 4.9.x does not declare. It is in our [data] extras.
    builder = tfds.builder("cifar10", data_dir=str(tmp_path))
    assert builder.code_path.name == "cifar.py"
    assert builder.url_infos is not None


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_cifar_download_and_prepare_from_a_local_server(
    kind, tmp_path, monkeypatch, loopback_network, capsys
):
    data_dir = tmp_path / "tfds"
    with _served_cifar(kind, tmp_path, monkeypatch, per_file=6) as expected:
        source = data_lib.load_source({"dataset": kind, "data_dir": str(data_dir)})
    # The real archive went through download, checksum, extraction and
    # generation: the prepared examples are exactly the ones written.
    train_n = 30  # cifar10: 5 batch files of 6; cifar100: one train file of 30
    assert (source.train.size, source.test.size) == (train_n, 6)
    assert source.num_classes == (10 if kind == "cifar10" else 100)
    for split, got in (("train", source.train), ("test", source.test)):
        images, labels = expected[split]
        order = np.lexsort([labels, images.reshape(len(images), -1).sum(1)])
        got_order = np.lexsort([got.labels, got.images.reshape(got.size, -1).sum(1)])
        np.testing.assert_array_equal(got.images[got_order], images[order])
        np.testing.assert_array_equal(got.labels[got_order], labels[order])
    if kind == "cifar10":
        assert source.class_names == CIFAR10_NAMES
    else:
        assert source.class_names[:2] == ["fine_0", "fine_1"]
    assert source.splits == {
        "train": f"{kind} train: {train_n}",
        "validation": "the test set (validation: test)",
        "test": f"{kind} test: 6",
    }
    assert f"TFDS: preparing {kind!r} in {data_dir / kind}" in capsys.readouterr().out
    # Prepared once: the server is gone and the data loads from data_dir.
    again = data_lib.load_source({"dataset": kind, "data_dir": str(data_dir)})
    assert "TFDS: preparing" not in capsys.readouterr().out
    np.testing.assert_array_equal(np.sort(again.train.labels), np.sort(source.train.labels))


def test_cifar_archive_with_the_wrong_checksum_is_refused(tmp_path, monkeypatch, loopback_network):
    served = tmp_path / "served"
    served.mkdir()
    archive, _ = _write_cifar("cifar10", served, per_file=2)
    with _serve(served) as base:
        _point_builder_at(
            monkeypatch, "cifar10", f"{base}/{archive}", str(served / archive), checksum="0" * 64
        )
        with pytest.raises(ValueError, match="Could not prepare TFDS data set 'cifar10'.*checksum"):
            data_lib.load_source({"dataset": "cifar10", "data_dir": str(tmp_path / "tfds")})


@pytest.mark.parametrize(
    "kind, recipe, model",
    [
        ("cifar10", "cifar10_resnet20", {}),  # the recipe's own model
        (
            "cifar100",
            "cifar100_resnet110_stochastic_depth",
            {"model.name": "CifarResNet", "model.options": {"depth": 8}},
        ),
    ],
)
def test_cifar_recipe_trains_one_epoch_on_prepared_data(
    kind, recipe, model, tmp_path, monkeypatch, loopback_network
):
    from training.train import run

    data_dir = tmp_path / "tfds"
    with _served_cifar(kind, tmp_path, monkeypatch, per_file=8) as expected:
        result = run(
            recipe,
            epochs=1,
            batch_size=10,
            output_dir=str(tmp_path / "run"),
            data_dir=str(data_dir),
            overrides={"runtime.tensorboard_images": False, **model},
            verbose="quiet",
        )
    resolved = result["config"]["resolved"]
    assert (resolved["train_examples"], resolved["test_examples"]) == (40, 8)
    assert resolved["num_classes"] == (10 if kind == "cifar10" else 100)
    if kind == "cifar10":
        assert resolved["class_names"] == CIFAR10_NAMES
    # per_channel normalisation measured on the prepared images: the ones written.
    train_images = expected["train"][0].reshape(-1, 3) / 255.0
    np.testing.assert_allclose(resolved["normalization"]["mean"], train_images.mean(0), 1e-9)
    assert result["status"] == "completed" and result["steps"] == 4
    assert len(result["history"]["loss"]) == 1 and np.isfinite(result["history"]["loss"][0])
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert os.path.isfile(result["model_path"])
    assert (data_dir / kind / "3.0.2" / "dataset_info.json").is_file()


def _jpeg(seed: int) -> bytes:
    import tensorflow as tf

    pixels = np.random.default_rng(seed).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    return tf.io.encode_jpeg(pixels).numpy()


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def test_imagenet2012_manual_archives_prepare_and_stream(tmp_path):
    from PIL import Image

    labels_txt = tfds.core.tfds_path("datasets/imagenet2012/labels.txt").read_text().split()
    val_labels = tfds.core.tfds_path("datasets/imagenet2012/validation_labels.txt")
    val_labels = val_labels.read_text().split()[:4]
    manual = tmp_path / "tfds" / "downloads" / "manual"
    manual.mkdir(parents=True)
    synsets = labels_txt[:2]
    train = {
        f"{s}.tar": _tar({f"{s}_{i}.JPEG": _jpeg(10 * k + i) for i in range(3)})
        for k, s in enumerate(synsets)
    }
    # The two kinds of odd file the builder converts: a CMYK JPEG and a PNG
    # named .JPEG (TFDS lists them by name).
    cmyk = Image.new("CMYK", (12, 10), (200, 30, 60, 10))
    buffer = io.BytesIO()
    cmyk.save(buffer, format="JPEG", quality=95)
    train["n01739381.tar"] = _tar({"n01739381_1309.JPEG": buffer.getvalue()})
    buffer = io.BytesIO()
    Image.new("RGB", (12, 10), (10, 200, 90)).save(buffer, format="PNG")
    train["n02105855.tar"] = _tar({"n02105855_2933.JPEG": buffer.getvalue()})
    (manual / "ILSVRC2012_img_train.tar").write_bytes(_tar(train))
    val = {f"ILSVRC2012_val_{i:08d}.JPEG": _jpeg(100 + i) for i in range(1, 5)}
    (manual / "ILSVRC2012_img_val.tar").write_bytes(_tar(val))
    # The test archive has no labels (TFDS gives -1): it must not be the test set.
    test = {f"ILSVRC2012_test_{i:08d}.JPEG": _jpeg(200 + i) for i in range(1, 4)}
    (manual / "ILSVRC2012_img_test.tar").write_bytes(_tar(test))
    data = {
        "dataset": "imagenet2012",
        "data_dir": str(tmp_path / "tfds"),
        "image_size": 16,
        "augmentation": "imagenet",
        "normalization": "imagenet",
    }
    source = data_lib.load_source(data)
    assert source.num_classes == 1000
    assert (source.train.size, source.test.size) == (8, 4)
    assert source.splits["test"] == "imagenet2012 validation: 4"
    batches = list(data_lib.eval_dataset(source, source.test, data, 4))
    got = np.sort(np.concatenate([b[1].numpy() for b in batches]))
    np.testing.assert_array_equal(got, np.sort([labels_txt.index(s) for s in val_labels]))
    images, labels = next(iter(data_lib.train_dataset(source, data, 8, seed=0)))
    assert images.shape == (8, 16, 16, 3)
    classes = [*synsets, "n01739381", "n02105855"]
    assert sorted(labels.numpy()) == sorted(
        labels_txt.index(s) for s in classes for _ in range(3 if s in synsets else 1)
    )
    # The converted files hold the colours Pillow gives (JPEG re-encoding: within 8 levels).
    builder = tfds.builder("imagenet2012", data_dir=str(tmp_path / "tfds"))
    prepared = {
        ex["file_name"].decode(): ex["image"]
        for ex in tfds.as_numpy(builder.as_dataset(split="train"))
    }
    for name, pil in (("n01739381_1309.JPEG", cmyk), ("n02105855_2933.JPEG", None)):
        want = np.asarray((pil or Image.new("RGB", (12, 10), (10, 200, 90))).convert("RGB"))
        assert prepared[name].shape == (10, 12, 3)
        assert np.abs(prepared[name].astype(int) - want.astype(int)).max() <= 8, name


def test_missing_tfds_dependency_is_named(tmp_path, monkeypatch):
    builder_cls = type(tfds.builder("cifar10", data_dir=str(tmp_path)))

    def fail(self, *args, **kwargs):
        raise ModuleNotFoundError(
            "No module named 'importlib_resources'", name="importlib_resources"
        )

    monkeypatch.setattr(builder_cls, "download_and_prepare", fail)
    with pytest.raises(ValueError, match=r"needs the module 'importlib_resources'.*\[data\]"):
        data_lib.load_source({"dataset": "cifar10", "data_dir": str(tmp_path)})


def _point_module_at(monkeypatch, name: str, constant: str, base: str, served):
    """Point a TFDS builder module's URL prefix at `base` and register the served files."""
    import sys

    cls = type(tfds.builder(name, data_dir=str(served)))
    monkeypatch.setattr(sys.modules[cls.__module__], constant, base + "/")
    infos = {}
    for path in served.iterdir():
        computed = checksums.compute_url_info(path)
        infos[f"{base}/{path.name}"] = checksums.UrlInfo(
            size=computed.size, checksum=computed.checksum, filename=path.name
        )
    monkeypatch.setattr(cls, "url_infos", infos)


def test_svhn_cropped_download_and_prepare_from_a_local_server(
    tmp_path, monkeypatch, loopback_network
):
    from scipy.io import savemat

    served = tmp_path / "served"
    served.mkdir()
    rng = np.random.default_rng(2)
    expected = {}
    for split, n in (("train", 12), ("test", 6), ("extra", 3)):
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        digits = np.arange(n) % 10  # SVHN stores the digit 0 as label 10
        savemat(
            served / f"{split}_32x32.mat",
            {"X": np.moveaxis(images, 0, -1), "y": np.where(digits == 0, 10, digits)[:, None]},
        )
        expected[split] = (images, digits)
    with _serve(served) as base:
        _point_module_at(monkeypatch, "svhn_cropped", "URL", base, served)
        source = data_lib.load_source({"dataset": "svhn_cropped", "data_dir": str(tmp_path / "d")})
    assert (source.train.size, source.test.size, source.num_classes) == (12, 6, 10)
    for split, got in (("train", source.train), ("test", source.test)):
        images, digits = expected[split]
        order = np.argsort(images.reshape(len(images), -1).sum(1))
        got_order = np.argsort(got.images.reshape(got.size, -1).sum(1))
        np.testing.assert_array_equal(got.images[got_order], images[order])
        np.testing.assert_array_equal(got.labels[got_order], digits[order])


def test_imagenette_download_and_prepare_from_a_local_server(
    tmp_path, monkeypatch, loopback_network
):
    synsets = tfds.core.tfds_path("image_classification/imagenette_labels.txt").read_text().split()
    served = tmp_path / "served"
    served.mkdir()
    members = {}
    for k, synset in enumerate(synsets[:2]):
        for split, n in (("train", 3), ("val", 1)):
            for i in range(n):
                members[f"imagenette2/{split}/{synset}/{synset}_{i}.JPEG"] = _jpeg(10 * k + i)
    _tar_gz(served / "imagenette2.tgz", members)
    data = {
        "dataset": "imagenette",
        "data_dir": str(tmp_path / "d"),
        "image_size": 16,
        "augmentation": "imagenet",
        "normalization": "imagenet",  # per_channel is refused on a streamed set
    }
    with _serve(served) as base:
        _point_module_at(monkeypatch, "imagenette", "_URL_PREFIX", base, served)
        source = data_lib.load_source(data)
    assert (source.train.size, source.test.size, source.num_classes) == (6, 2, 10)
    assert source.splits["test"] == "imagenette validation: 2"
    labels = np.concatenate(
        [b[1].numpy() for b in data_lib.eval_dataset(source, source.test, data, 2)]
    )
    np.testing.assert_array_equal(np.sort(labels), [0, 1])
    # A streamed hold-out: the sizes the trainer reports are the examples read.
    for fraction in (0.25, 0.5):
        split = data_lib.load_source(
            {**data, "validation": "split", "validation_fraction": fraction}
        )
        for part in (split.train, split.validation):
            builder, name = part.tfds_split
            read = sum(1 for _ in builder.as_dataset(split=name))
            assert part.size == read, (fraction, name, part.size, read)
        assert split.train.size + split.validation.size == 6
    # train_subset / test_subset cut streamed splits too (they were ignored).
    cut = data_lib.load_source(
        {**data, "validation": "split", "validation_fraction": 0.5, "train_subset": 2}
    )
    builder, name = cut.train.tfds_split
    assert (cut.train.size, name) == (2, "train[3:5]")
    assert sum(1 for _ in builder.as_dataset(split=name)) == 2
    assert (
        cut.splits["train"] == "imagenette train: 3 (3 of 6 held out); first 2 used (train_subset)"
    )
    assert cut.splits["validation"] == (
        "hold-out of imagenette train: 3 of 6 (validation_fraction=0.5, its first examples)"
    )
    cut = data_lib.load_source({**data, "test_subset": 1})
    assert (cut.test.size, cut.test.tfds_split[1]) == (1, "validation[0:1]")
    assert sum(1 for _ in cut.test.tfds_split[0].as_dataset(split="validation[0:1]")) == 1
