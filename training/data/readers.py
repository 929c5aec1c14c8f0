"""Readers of the data sets on disk: TensorFlow Datasets and image folders."""

from __future__ import annotations

import os

import numpy as np

from keras_resnets._optional import require
from keras_resnets.utils import DataError
from training.data.splits import IMAGE_EXTENSIONS, TFDS_IN_MEMORY, Split, _array_split


def _load_tfds(name: str, data: dict):
    try:
        tfds = require("tensorflow_datasets", f"dataset={name!r}")
    except ImportError as exc:  # a data set the installed extras cannot read: bad input
        raise ValueError(str(exc)) from exc
    try:
        builder = tfds.builder(name, data_dir=data.get("data_dir"))
        if not builder.is_prepared():
            # Offline, TFDS retries a download for about 3.5 minutes before
            # it fails: say what is happening first.
            print(
                f"TFDS: preparing {name!r} in {builder.data_dir} (first use: "
                + (
                    "reads the ILSVRC archives in <data-dir>/downloads/manual)"
                    if name == "imagenet2012"
                    else "downloads it; without network access TFDS retries for "
                    "about 3.5 minutes, then fails)"
                ),
                flush=True,
            )
        # imagenet2012 reads the ILSVRC archives from <data_dir>/downloads/manual.
        builder.download_and_prepare()
    except ImportError as error:
        raise ValueError(
            f"Could not prepare TFDS data set {name!r}: tensorflow-datasets needs the module "
            f"{error.name!r}, which is not installed ({error}). Install the data extras: "
            "pip install 'keras_resnets[data]'."
        ) from error
    except Exception as error:
        raise ValueError(
            f"Could not prepare TFDS data set {name!r} (data_dir={data.get('data_dir')!r}): "
            f"{error}. Without network access, prepare it once elsewhere and pass its "
            "directory with --data-dir (imagenet2012 needs the ILSVRC archives in "
            "<data-dir>/downloads/manual)."
        ) from error
    info = builder.info
    label_feature = info.features["label"]
    num_classes = label_feature.num_classes
    channels = info.features["image"].shape[-1] or 3
    splits = info.splits
    # imagenet2012's "test" split (ILSVRC2012_img_test.tar) has no labels
    # (all -1): its labelled validation split is the test set.
    test_name = "test" if ("test" in splits and name != "imagenet2012") else "validation"
    val_name = "validation" if ("validation" in splits and test_name != "validation") else None
    if name in TFDS_IN_MEMORY:

        def arrays(split):
            images, labels = [], []
            for batch in tfds.as_numpy(builder.as_dataset(split=split, batch_size=4096)):
                images.append(batch["image"])
                labels.append(batch["label"])
            return _array_split(
                np.concatenate(images),
                np.concatenate(labels).astype(np.int32),
                f"{name} {split}",
            )

        train, test = arrays("train"), arrays(test_name)
        val = arrays(val_name) if val_name else None
    else:

        def stream(split):
            size = _tfds_count(builder, split)
            return Split("tfds", None, None, size, (builder, split), f"{name} {split}")

        train, test = stream("train"), stream(test_name)
        val = stream(val_name) if val_name else None
    return train, val, test, num_classes, channels, list(label_feature.names)


def _tfds_count(builder, split: str) -> int:
    """Examples in a TFDS split or slice (`"train[:10%]"`), as TFDS reads it."""
    try:
        return builder.info.splits[split].num_examples
    except (KeyError, ValueError):  # no metadata (e.g. tfds.testing.mock_data): count once
        return int(builder.as_dataset(split=split).reduce(0, lambda n, _: n + 1))


def _list_folder(root: str) -> tuple[list[str], np.ndarray, list[str]]:
    classes = sorted(
        d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and d[0] != "."
    )
    if not classes:
        raise DataError(f"Image folder {root!r} has no class sub-directories.")
    paths, labels = [], []
    for label, cls in enumerate(classes):
        for dirpath, _, files in sorted(os.walk(os.path.join(root, cls))):
            for f in sorted(files):
                if f.lower().endswith(IMAGE_EXTENSIONS):
                    paths.append(os.path.join(dirpath, f))
                    labels.append(label)
    return paths, np.asarray(labels, np.int32), classes


def find_bad_images(paths: list[str]) -> list[str]:
    """Decode every image once (in parallel) and return the paths that fail.

    Images are decoded with `keras_resnets.export.decode_image`, the decoder
    of the training pipeline and of the export's `serve_bytes`: a file it
    refuses (16-bit grey PNG, run-length encoded BMP, ...) counts as bad.

    Args:
        paths: image files (JPEG, PNG, BMP, GIF).

    Returns:
        The unreadable or corrupt files, in input order.

    Example:
        >>> find_bad_images(["ok.png", "broken.jpg"])
        ['broken.jpg']
    """
    import tensorflow as tf

    from keras_resnets.export import decode_image

    if not paths:
        return []

    def check(index, path):
        image = decode_image(tf.io.read_file(path), channels=3)
        tf.debugging.assert_greater(tf.size(image), 0)
        return index

    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), paths))
    ds = ds.map(check, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    good = set(int(i) for i in ds.as_numpy_iterator())
    return [p for i, p in enumerate(paths) if i not in good]


def _decode_error(path: str) -> str:
    """Why `decode_image` refuses the file at `path` (its error's first line)."""
    import tensorflow as tf

    from keras_resnets.export import decode_image

    try:
        decode_image(tf.io.read_file(path), channels=3)
    except Exception as error:  # noqa: BLE001 - the reason is reported, not handled
        lines = [line for line in str(error).splitlines() if "decode_image" in line]
        return (lines or str(error).splitlines() or [type(error).__name__])[0].strip()
    return "decoded to an empty image"


def _check_class_folders(directory: str, names: list, labels, kept) -> None:
    """Refuse a training class folder without (readable) images, naming it.

    Such a class would be in the model's output and never trained.
    """
    for index, name in enumerate(names):
        if not np.any(kept == index):
            listed = int(np.sum(labels == index))
            why = f"all {listed} of its images unreadable" if listed else "no images"
            counts = ", ".join(f"{n}: {int(np.sum(kept == i))}" for i, n in enumerate(names))
            raise DataError(
                f"Class folder {os.path.join(directory, name)!r} has {why}; images "
                f"({', '.join(IMAGE_EXTENSIONS)}) per class found in {directory!r}: {counts}. Add images "
                "to it or remove the folder."
            )


def _load_folder(data: dict):
    root = data.get("data_dir")
    if not root:
        raise ValueError("dataset='folder' needs --data-dir DIR with DIR/train/<class>/*.jpg.")
    train_dir = os.path.join(root, "train")
    if not os.path.isdir(train_dir):
        raise ValueError(f"Image folder {root!r} has no 'train' sub-directory.")
    skip = data.get("skip_bad_images", False)
    skipped: list[str] = []

    def load(directory, classes=None):
        paths, labels, names = _list_folder(directory)
        if classes is not None and names != classes:
            raise DataError(
                f"Image folder {directory!r} has classes {names}, but train has {classes}."
            )
        if not paths:
            raise DataError(f"Image folder {directory!r} has no images ({IMAGE_EXTENSIONS}).")
        bad = find_bad_images(paths)
        if bad and not skip:
            more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
            raise ValueError(
                f"Unreadable, corrupt or unsupported image: {bad[0]}{more} "
                f"({_decode_error(bad[0])}). Remove or convert it, or pass "
                "--skip-bad-images to leave such files out."
            )
        skipped.extend(bad)
        bad_set = set(bad)
        keep = [i for i, p in enumerate(paths) if p not in bad_set]
        if classes is None:  # train/: every class folder must hold a readable image
            _check_class_folders(directory, names, labels, labels[keep])
        origin = os.path.basename(directory) + "/"
        split = Split("files", [paths[i] for i in keep], labels[keep], len(keep), origin=origin)
        return split, names

    train, classes = load(train_dir)
    val = test = None
    for sub in ("val", "validation"):
        if os.path.isdir(os.path.join(root, sub)):
            val, _ = load(os.path.join(root, sub), classes)
            break
    if os.path.isdir(os.path.join(root, "test")):
        test, _ = load(os.path.join(root, "test"), classes)
    # No hold-out here: load_source cuts at most one, where it is needed.
    return train, val, test, classes, skipped
