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
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("val", 2)):
        for cls in ("cat", "dog"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
                (d / f"{i}.png").write_bytes(tf.io.encode_png(pixels).numpy())
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
