"""Data sources and the papers' augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from training import data as data_lib


def test_cifar_augment_is_a_shifted_crop_and_flip():
    image = tf.random.stateless_uniform((32, 32, 3), seed=(1, 2))
    seen_flip = seen_shift = False
    for i in range(20):
        out = data_lib.cifar_augment(image, tf.constant([7, i], tf.int64))
        assert out.shape == (32, 32, 3)
        padded = np.pad(image.numpy(), [(4, 4), (4, 4), (0, 0)])
        found = False
        for candidate in (out.numpy(), out.numpy()[:, ::-1]):
            for dy in range(9):
                for dx in range(9):
                    if np.array_equal(padded[dy : dy + 32, dx : dx + 32], candidate):
                        found = True
                        seen_flip |= candidate is not out.numpy()
                        seen_shift |= (dy, dx) != (4, 4)
        assert found, "not a 32x32 window of the 4-padded image (optionally flipped)"
    assert seen_shift and seen_flip
    a = data_lib.cifar_augment(image, tf.constant([7, 3], tf.int64))
    b = data_lib.cifar_augment(image, tf.constant([7, 3], tf.int64))
    np.testing.assert_array_equal(a, b)  # stateless: same seed, same image


def test_imagenet_crops():
    image = tf.random.stateless_uniform((300, 400, 3), seed=(1, 2))
    out = data_lib.imagenet_train_crop(image, tf.constant([1, 2], tf.int64), 224)
    assert out.shape == (224, 224, 3)
    center = data_lib.imagenet_eval_crop(image, 224)
    assert center.shape == (224, 224, 3)
    # resize 300x400 -> 256x341, center crop 224: compare with TF's own resize + crop.
    resized = tf.image.resize(image, (256, 341))
    np.testing.assert_allclose(center, resized[16:240, 58:282], atol=1e-5)


def test_training_stream_is_a_permutation_per_epoch_and_resumes_exactly():
    source = data_lib.load_source({"dataset": "digits", "validation": "split", "train_subset": 40})
    cfg = {"image_size": 32, "augmentation": "none", "flip": False}
    batches = list(data_lib.train_dataset(source, cfg, 8, seed=0).take(10).as_numpy_iterator())
    labels = np.concatenate([b[1] for b in batches])
    for epoch in (labels[:40], labels[40:]):
        np.testing.assert_array_equal(np.sort(epoch), np.sort(source.train.labels))
    assert not np.array_equal(labels[:40], labels[40:])  # reshuffled each epoch
    resumed = list(data_lib.train_dataset(source, cfg, 8, seed=0, start_step=3).take(7))
    for a, b in zip(batches[3:], resumed, strict=True):
        np.testing.assert_array_equal(a[0], b[0].numpy())


def _write_folder(root, bad: bool):
    _png_folder(root, {"train": 6, "val": 2}, shape=(40, 48, 3), seed=0)
    if bad:
        (root / "train" / "dog" / "broken.jpg").write_bytes(b"not a jpeg at all")
    return root


def test_image_folder_bad_file_is_named_or_skipped(tmp_path):
    root = _write_folder(tmp_path / "images", bad=True)
    cfg = {"dataset": "folder", "data_dir": str(root), "validation": "folder"}
    with pytest.raises(
        ValueError, match=r"Unreadable, corrupt or unsupported image: .*broken\.jpg"
    ):
        data_lib.load_source(cfg)
    source = data_lib.load_source({**cfg, "skip_bad_images": True})
    assert [p.endswith("broken.jpg") for p in source.skipped_files] == [True]
    assert source.train.size == 12 and source.validation.size == 4
    assert source.class_names == ["cat", "dog"] and source.num_classes == 2
    data_cfg = {"image_size": 32, "augmentation": "imagenet"}
    images, labels = next(iter(data_lib.train_dataset(source, data_cfg, 4, seed=0)))
    assert images.shape == (4, 32, 32, 3) and set(labels.numpy()) <= {0, 1}
    with pytest.raises(ValueError, match="needs --data-dir"):
        data_lib.load_source({"dataset": "folder"})
    with pytest.raises(ValueError, match="`dataset` must be one of"):
        data_lib.load_source({"dataset": "mnist"})


def test_tfds_sources_with_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=24):
        source = data_lib.load_source({"dataset": "cifar100", "validation": "test"})
        assert source.num_classes == 100 and source.train.images.shape == (24, 32, 32, 3)
        assert source.train.kind == "arrays" and len(source.mean) == 3
        streamed = {"dataset": "imagenette", "validation": "split", "validation_fraction": 0.25}
        # per_channel (the default) cannot be measured on a streamed set: an error, not ImageNet's.
        with pytest.raises(ValueError, match="per_channel"):
            data_lib.load_source(streamed)
        stream = data_lib.load_source({**streamed, "normalization": "imagenet"})
        assert stream.mean == data_lib.IMAGENET_MEAN and stream.std == data_lib.IMAGENET_STD
        assert stream.train.kind == "tfds" and stream.num_classes == 10
        cfg = {"image_size": 32, "augmentation": "imagenet"}
        images, _ = next(iter(data_lib.train_dataset(stream, cfg, 4, seed=0)))
        assert images.shape == (4, 32, 32, 3)
        evaluation = list(data_lib.eval_dataset(stream, stream.test, cfg, 8))
        assert sum(len(b[1]) for b in evaluation) == stream.test.size


def _png_folder(root, layout: dict[str, int], shape=(8, 8, 3), seed: int = 1):
    """`root/<split>/<class>/<i>.png` with `layout[split]` random images per class."""
    rng = np.random.default_rng(seed)
    for split, count in layout.items():
        for cls in ("cat", "dog"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 255, shape, dtype=np.uint8)
                (d / f"{i}.png").write_bytes(tf.io.encode_png(pixels).numpy())
    return root


def _names(split):
    return sorted(str(p) for p in split.images)


@pytest.mark.parametrize("validation", ["test", "split", "folder", "none"])
def test_image_folder_without_val_or_test_holds_out_one_fraction(tmp_path, validation):
    # 20 training images, nothing else: one hold-out of 10% (2 images) is the
    # test set and, unless validation is none, the validation set too.
    root = _png_folder(tmp_path / "images", {"train": 10})
    cfg = {"dataset": "folder", "data_dir": str(root), "validation": validation}
    source = data_lib.load_source(cfg, seed=3)
    assert (source.train.size, source.test.size) == (18, 2)
    assert not set(_names(source.train)) & set(_names(source.test))
    every = sorted(str(p) for p in root.glob("train/*/*.png"))
    assert sorted(_names(source.train) + _names(source.test)) == every
    if validation == "none":
        assert source.validation is None
    else:
        assert _names(source.validation) == _names(source.test)
    hold = "hold-out of train/: 2 of 20 (validation_fraction=0.1, seed 3)"
    assert source.splits["train"] == "train/: 18 (2 of 20 held out)"
    assert source.splits["test"] == f"the {hold} (no test/ or val/ folder)"
    assert (
        source.splits["validation"]
        == {
            "test": "the test set (validation: test)",
            "split": "the test set (validation: split; one hold-out serves both)",
            "folder": "the test set (validation: folder; one hold-out serves both)",
            "none": "none (validation: none)",
        }[validation]
    )
    # The hold-out is a function of the seed, and another seed draws another.
    assert _names(data_lib.load_source(cfg, seed=3).test) == _names(source.test)
    assert _names(data_lib.load_source(cfg, seed=4).test) != _names(source.test)


def test_image_folder_split_rules_with_val_and_test_folders(tmp_path):
    both = _png_folder(tmp_path / "both", {"train": 10, "val": 3, "test": 4})
    only_val = _png_folder(tmp_path / "only_val", {"train": 10, "val": 3})
    only_test = _png_folder(tmp_path / "only_test", {"train": 10, "test": 4})

    def load(root, validation, fraction=0.1):
        return data_lib.load_source(
            {
                "dataset": "folder",
                "data_dir": str(root),
                "validation": validation,
                "validation_fraction": fraction,
            }
        )

    def sizes(source):
        val = source.validation.size if source.validation is not None else None
        return source.train.size, val, source.test.size

    # (train, validation, test) sizes: nothing is held out unless asked for or needed.
    assert sizes(load(both, "folder")) == (20, 6, 8)
    assert sizes(load(both, "test")) == (20, 8, 8)
    assert sizes(load(both, "split", 0.25)) == (15, 5, 8)
    assert sizes(load(only_val, "folder")) == (20, 6, 6)
    assert sizes(load(only_val, "test")) == (20, 6, 6)
    assert sizes(load(only_test, "test")) == (20, 8, 8)
    assert sizes(load(only_test, "folder")) == (18, 2, 8)
    assert sizes(load(only_test, "none")) == (20, None, 8)
    source = load(both, "folder")
    assert source.splits == {"train": "train/: 20", "validation": "val/: 6", "test": "test/: 8"}
    assert all("/val/" in p for p in source.validation.images)
    source = load(only_val, "test")
    assert source.splits["test"] == "val/: 6 (no test/ folder)"
    assert _names(source.test) == _names(source.validation)
    with pytest.raises(ValueError, match=r"`validation_fraction` must be .* got 1\.5"):
        load(only_val, "split", 1.5)
    with pytest.raises(ValueError, match=r"`validation` must be one of .* got 'holdout'"):
        load(only_val, "holdout")
    tiny = _png_folder(tmp_path / "tiny", {"train": 1})
    with pytest.raises(ValueError, match=r"validation_fraction=0.9 of train/ \(2 examples\)"):
        load(tiny, "test", 0.9)


def test_trainer_logs_and_records_where_folder_images_went(tmp_path, capsys):
    import yaml

    from training.train import run

    root = _png_folder(tmp_path / "images", {"train": 10})
    result = run(
        "digits_resnet20",
        dataset="folder",
        epochs=1,
        batch_size=6,
        output_dir=str(tmp_path / "run"),
        data_dir=str(root),
        overrides={
            "model.name": "CifarResNet",
            "model.options": {"depth": 8},
            "runtime.tensorboard_images": False,
        },
        verbose="line",
    )
    out = capsys.readouterr().out
    hold = "hold-out of train/: 2 of 20 (validation_fraction=0.1, seed 0)"
    assert (
        "data: train = train/: 18 (2 of 20 held out); validation = the test set "
        f"(validation: split; one hold-out serves both); test = the {hold} (no test/ or "
        "val/ folder)"
    ) in out
    with open(tmp_path / "run" / "config.yaml") as f:
        resolved = yaml.safe_load(f)["resolved"]
    assert (resolved["train_examples"], resolved["test_examples"]) == (18, 2)
    assert resolved["validation_examples"] == 2
    assert resolved["splits"]["train"] == "train/: 18 (2 of 20 held out)"
    assert result["steps"] == 3


def test_docs_folder_split_table_is_what_load_source_does(tmp_path):
    # Every cell of the table in docs/training.md, checked against load_source.
    import pathlib

    doc = pathlib.Path(__file__).parent.parent / "docs" / "training.md"
    rows = [line for line in doc.read_text().splitlines() if line.startswith("| `train/`")]
    header = next(
        line for line in doc.read_text().splitlines() if line.startswith("| folder has |")
    )
    modes = [cell.strip(" `").split()[-1] for cell in header.strip("|").split("|")[1:]]
    assert modes == ["test", "split", "folder", "none"] and len(rows) == 4
    counts = {"train": 20, "train − H": 18, "H": 2, "val": 6, "test": 8, "–": None}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        folders = [name.strip("`/ ") for name in cells[0].replace(" only", "").split(",")]
        layout = {"train": 10, "val": 3, "test": 4}
        root = _png_folder(tmp_path / "_".join(folders), {f: layout[f] for f in folders})
        for mode, cell in zip(modes, cells[1:], strict=True):
            train, val, test = (part.strip() for part in cell.split(" / "))
            source = data_lib.load_source(
                {"dataset": "folder", "data_dir": str(root), "validation": mode}
            )
            got = (
                source.train.size,
                source.validation.size if source.validation is not None else None,
                source.test.size,
            )
            assert got == (counts[train], counts[val], counts[test]), (folders, mode)
            if val == test == "H":
                assert _names(source.validation) == _names(source.test)


def _numpy_bilinear(images, size):
    """The hand-written resize `load_digits_32` used before `keras.ops.image.resize`."""

    def weights(src):
        pos = np.clip((np.arange(size) + 0.5) * src / size - 0.5, 0, src - 1)
        low = np.floor(pos).astype(int)
        return low, np.minimum(low + 1, src - 1), (pos - low).astype(np.float32)

    r0, r1, fr = weights(images.shape[1])
    c0, c1, fc = weights(images.shape[2])
    rows = images[:, r0, :] * (1 - fr)[None, :, None] + images[:, r1, :] * fr[None, :, None]
    return rows[:, :, c0] * (1 - fc)[None, None, :] + rows[:, :, c1] * fc[None, None, :]


@pytest.mark.parametrize("size", [32, 20])
def test_digits_resize_equals_the_former_numpy_bilinear(size):
    from sklearn.datasets import load_digits

    images = load_digits().images.astype(np.float32) / 16.0
    new = data_lib._resize_bilinear(images, size)
    assert new.shape == (len(images), size, size) and new.dtype == np.float32
    # Upsampling by a whole factor (8 -> 32, the digits set) is bit-identical;
    # other sizes agree to float32 rounding.
    tolerance = 0.0 if size % 8 == 0 else 1e-6
    np.testing.assert_allclose(new, _numpy_bilinear(images, size), rtol=0, atol=tolerance)
    (x_train, _), (x_test, _) = data_lib.load_digits_32(size=size)
    assert x_train.shape[1:] == (size, size, 3) and len(x_train) + len(x_test) == len(images)
