"""Data sources for the trainer.

`load_digits_32` is the built-in data set: scikit-learn's bundled 8x8
handwritten digits (1,797 images, shipped inside the wheel, no download)
resized to 32x32 with 3 channels so that CIFAR networks take them as is.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from keras_resnets.preprocessing import IMAGENET_MEAN, IMAGENET_STD


def load_digits_32(
    seed: int = 0, test_fraction: float = 0.2, size: int = 32
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Load scikit-learn's digits as `size`x`size`x3 float32 images in [0, 1].

    Args:
        seed: seed of the stratified train/test split.
        test_fraction: share of the images held out for testing.
        size: output height and width (bilinear upsampling of the 8x8 images).

    Returns:
        `((x_train, y_train), (x_test, y_test))` with images of shape
        `(n, size, size, 3)` and integer labels 0-9.

    Example:
        >>> (x, y), (xt, yt) = load_digits_32()
        >>> x.shape[1:]
        (32, 32, 3)
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    images = _resize_bilinear(images, size)
    images = np.repeat(images[..., None], 3, axis=-1)
    labels = digits.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    return (x_train, y_train), (x_test, y_test)


def _resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a batch of 2-D images (half-pixel centres, no antialiasing)."""
    import keras

    resized = keras.ops.image.resize(
        images[..., None], (size, size), interpolation="bilinear", antialias=False
    )
    return keras.ops.convert_to_numpy(resized)[..., 0].astype(np.float32)


# ---------------------------------------------------------------------------
# Data sources for the trainer
# ---------------------------------------------------------------------------

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
TFDS_IN_MEMORY = ("cifar10", "cifar100", "svhn_cropped")
TFDS_STREAMING = ("imagenette", "imagenet2012")
DATASETS = ("digits", "folder", *TFDS_IN_MEMORY, *TFDS_STREAMING)
VALIDATION_MODES = ("test", "split", "folder", "none")


@dataclasses.dataclass
class Split:
    """One split of a data set.

    Attributes:
        kind: `"arrays"` (images in memory), `"files"` (image paths) or
            `"tfds"` (a TFDS split streamed from disk).
        images: uint8 or float32 array `(n, h, w, c)` for `"arrays"`, a list
            of paths for `"files"`, None for `"tfds"`.
        labels: int32 array `(n,)` (None for `"tfds"`).
        size: number of examples.
        tfds_split: `(builder, split_name)` for `"tfds"`.
        origin: where the examples come from (`"train/"`, `"cifar10 test"`),
            for the log.
    """

    kind: str
    images: Any
    labels: Any
    size: int
    tfds_split: Any = None
    origin: str = ""


@dataclasses.dataclass
class Source:
    """A data set ready for the input pipelines.

    Attributes:
        name: data set name.
        num_classes: number of classes.
        channels: image channels (3, or 1 for grey images).
        train / validation / test: `Split`s (validation may be None).
        mean / std: per-channel normalisation in the [0, 1] scale.
        class_names: class names where known.
        skipped_files: unreadable images left out (`skip_bad_images`).
        splits: where each split's examples come from, one line per split
            (`{"train": ..., "validation": ..., "test": ...}`), for the log
            and `config.yaml`.
    """

    name: str
    num_classes: int
    channels: int
    train: Split
    validation: Split | None
    test: Split
    mean: tuple = (0.0, 0.0, 0.0)
    std: tuple = (1.0, 1.0, 1.0)
    class_names: list | None = None
    skipped_files: list = dataclasses.field(default_factory=list)
    splits: dict = dataclasses.field(default_factory=dict)


def _array_split(x: np.ndarray, y: np.ndarray, origin: str = "") -> Split:
    return Split("arrays", x, np.asarray(y, np.int32), len(y), origin=origin)


def _subset(split: Split, count: int | None) -> Split:
    if count is None or count >= split.size:
        return split
    if split.kind == "tfds":
        # The first `count` examples of the (absolutely sliced) TFDS split.
        builder, name = split.tfds_split
        base, _, bounds = name.partition("[")
        start = int(bounds.split(":")[0] or 0) if bounds else 0
        return Split(
            "tfds", None, None, count, (builder, f"{base}[{start}:{start + count}]"), split.origin
        )
    images = split.images[:count]
    return Split(split.kind, images, split.labels[:count], count, origin=split.origin)


def _hold_out(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Deterministically split off `fraction` of an arrays/files split."""
    order = np.random.default_rng(seed).permutation(split.size)
    n_val = max(1, int(round(split.size * fraction)))
    if n_val >= split.size:
        raise ValueError(
            f"validation_fraction={fraction:g} of {split.origin or 'the training split'} "
            f"({split.size} examples) leaves no training examples: add images, add a "
            "val/ or test/ folder, or lower `validation_fraction`."
        )
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])

    def take(idx):
        if split.kind == "arrays":
            images = split.images[idx]
        else:
            images = [split.images[i] for i in idx]
        return Split(split.kind, images, split.labels[idx], len(idx), origin=split.origin)

    return take(train_idx), take(val_idx)


def load_source(data: dict, seed: int = 0) -> Source:
    """Load the data set a recipe's `data` section names.

    Validation and test come from the data set's own splits where it has
    them; at most one hold-out (`validation_fraction` of the training
    examples, drawn with `seed`) is ever cut from the training split:

    - validation set: `validation: test` evaluates the test set,
      `split` the hold-out, `folder` the data set's own validation split
      (an image folder's `val/`), or the hold-out where there is none,
      `none` nothing;
    - test set: the data set's test split (an image folder's `test/`);
      an image folder without `test/` uses its `val/`, and one with
      neither uses the hold-out (the same images as validation).

    `Source.splits` says where each split came from and how many examples
    it has; the trainer prints it and writes it to `config.yaml`.

    Args:
        data: the recipe's `data` section (`dataset`, `data_dir`,
            `validation`, `validation_fraction`, `train_subset`,
            `test_subset`, `skip_bad_images`, `normalization`).
        seed: seed of the validation hold-out.

    Returns:
        A `Source`.

    Raises:
        ValueError: unknown data set or `validation`, a
            `validation_fraction` outside (0, 1), missing `data_dir`, or
            (for image folders) an unreadable image, named in the message.

    Example:
        >>> source = load_source({"dataset": "digits", "validation": "split",
        ...                       "validation_fraction": 0.1})
        >>> source.splits["validation"]
        'hold-out of digits train: 144 of 1437 (validation_fraction=0.1, seed 0)'
    """
    name = data["dataset"]
    if name not in DATASETS:
        raise ValueError(
            f"`dataset` must be one of {', '.join(DATASETS)}, got {name!r} "
            "(for your own images use dataset=folder with --data-dir)."
        )
    validation = data.get("validation", "test")
    if validation not in VALIDATION_MODES:
        raise ValueError(
            f"`validation` must be one of {', '.join(VALIDATION_MODES)}, got {validation!r}."
        )
    fraction = data.get("validation_fraction", 0.1)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(
            f"`validation_fraction` must be a number between 0 and 1 (exclusive), got {fraction!r}."
        )
    class_names = None
    skipped: list = []
    if name == "digits":
        (x, y), (xt, yt) = load_digits_32(seed=seed, size=data.get("image_size", 32))
        train = _array_split(x, y, "digits train")
        own_val, own_test = None, _array_split(xt, yt, "digits test")
        num_classes, channels, class_names = 10, 3, [str(i) for i in range(10)]
    elif name == "folder":
        train, own_val, own_test, class_names, skipped = _load_folder(data)
        num_classes, channels = len(class_names), 3
    else:
        train, own_val, own_test, num_classes, channels, class_names = _load_tfds(name, data)
    total = train.size
    held_out = None
    if validation == "split" or (own_val is None and (validation == "folder" or own_test is None)):
        if train.kind == "tfds":
            builder, split = train.tfds_split
            # The first `fraction` of the split, as TFDS rounds a percent
            # slice, then named by absolute indices (so subsets can cut it).
            pct = int(round(100 * fraction))
            if builder.info.splits:
                n_val = builder.info.splits[f"{split}[:{pct}%]"].num_examples
            else:  # no metadata (tfds.testing.mock_data): TFDS's closest rounding
                n_val = int(np.floor(total * pct / 100 + 0.5))
            if n_val >= total:
                raise ValueError(
                    f"validation_fraction={fraction:g} of {train.origin} ({total} examples) "
                    "leaves no training examples: lower `validation_fraction`."
                )
            train = Split(
                "tfds", None, None, total - n_val, (builder, f"{split}[{n_val}:]"), train.origin
            )
            held_out = Split("tfds", None, None, n_val, (builder, f"{split}[:{n_val}]"))
        else:
            train, held_out = _hold_out(train, fraction, seed)
        drawn = f"seed {seed}" if train.kind != "tfds" else "its first examples"
        held_out.origin = (
            f"hold-out of {train.origin}: {held_out.size} of {total} "
            f"(validation_fraction={fraction:g}, {drawn})"
        )
    if own_test is not None:
        test, test_note = own_test, f"{own_test.origin}: {own_test.size}"
    elif own_val is not None:
        test, test_note = own_val, f"{own_val.origin}: {own_val.size} (no test/ folder)"
    else:
        test, test_note = held_out, f"the {held_out.origin} (no test/ or val/ folder)"
    if validation == "none":
        val, val_note = None, "none (validation: none)"
    elif validation == "test":
        val, val_note = test, "the test set (validation: test)"
    elif validation == "folder" and own_val is not None:
        val, val_note = own_val, f"{own_val.origin}: {own_val.size}"
    else:
        val, val_note = held_out, held_out.origin
        if held_out is test:
            val_note = f"the test set (validation: {validation}; one hold-out serves both)"
    train_note = f"{train.origin}: {train.size}"
    if held_out is not None:
        train_note += f" ({held_out.size} of {total} held out)"
    train = _subset(train, data.get("train_subset"))
    test = _subset(test, data.get("test_subset"))
    if val is not None:
        val = _subset(val, data.get("test_subset"))
    notes = {"train": train_note, "validation": val_note, "test": test_note}
    for key, option, split in (
        ("train", "train_subset", train),
        ("validation", "test_subset", val),
        ("test", "test_subset", test),
    ):
        if data.get(option) is not None and split is not None:
            notes[key] += f"; first {split.size} used ({option})"
    mean, std = _normalisation(data.get("normalization", "per_channel"), train, channels)
    return Source(
        name, num_classes, channels, train, val, test, mean, std, class_names, skipped, notes
    )


def _normalisation(kind: str, train: Split, channels: int) -> tuple[tuple, tuple]:
    """Mean and std (on the [0, 1] scale) for the recipe's `normalization`."""
    if kind == "none":
        return (0.0,) * channels, (1.0,) * channels
    if kind == "imagenet":
        return IMAGENET_MEAN[:channels], IMAGENET_STD[:channels]
    if kind != "per_channel":
        raise ValueError(f"`normalization` must be per_channel, imagenet or none, got {kind!r}.")
    if train.kind == "tfds":
        raise ValueError(
            "`normalization: per_channel` measures the training images, which a streamed "
            "TFDS data set does not hold in memory; use `normalization: imagenet` or `none`."
        )
    if train.kind == "files":
        total, squares, count = _file_statistics(train.images, channels)
    else:
        x = train.images
        scale = 255.0 if x.dtype == np.uint8 else 1.0
        flat = x.reshape(-1, x.shape[-1]).astype(np.float64) / scale
        total, squares, count = flat.sum(axis=0), (flat**2).sum(axis=0), len(flat)
    mean = total / count
    std = np.maximum(np.sqrt(np.maximum(squares / count - mean**2, 0.0)), 1e-3)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _file_statistics(paths: list[str], channels: int):
    """Per-channel sum, sum of squares and pixel count of image files on [0, 1].

    Each file is decoded at its stored size, as the pipeline decodes it.
    """
    import tensorflow as tf

    from keras_resnets.export import decode_image

    def stats(path):
        image = tf.cast(decode_image(tf.io.read_file(path), channels=channels), tf.float64)
        flat = tf.reshape(image / 255.0, [-1, channels])
        return tf.reduce_sum(flat, 0), tf.reduce_sum(flat**2, 0), tf.shape(flat, tf.int64)[0]

    ds = tf.data.Dataset.from_tensor_slices(list(paths)).map(
        stats, num_parallel_calls=tf.data.AUTOTUNE
    )
    total, squares, count = np.zeros(channels), np.zeros(channels), 0
    for s, q, n in ds.as_numpy_iterator():
        total, squares, count = total + s, squares + q, count + int(n)
    return total, squares, count


def _load_tfds(name: str, data: dict):
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ValueError(
            f"dataset={name!r} needs tensorflow-datasets: pip install 'keras_resnets[data]'."
        ) from error
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
        raise ValueError(f"Image folder {root!r} has no class sub-directories.")
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
            raise ValueError(
                f"Image folder {directory!r} has classes {names}, but train has {classes}."
            )
        if not paths:
            raise ValueError(f"Image folder {directory!r} has no images ({IMAGE_EXTENSIONS}).")
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


# ---------------------------------------------------------------------------
# Augmentation (stateless: each example's randomness is a function of the
# seed and its position in the stream, so resumed runs see the same images)
# ---------------------------------------------------------------------------


def cifar_augment(image, seed, pad: int = 4, flip: bool = True):
    """Pad `pad` pixels (zeros), take a random crop of the original size, flip.

    Args:
        image: `(h, w, c)` float tensor.
        seed: shape `(2,)` int tensor (stateless randomness).
        pad: padding on each side (4 in He et al. 2015).
        flip: random horizontal flip.

    Returns:
        The augmented `(h, w, c)` image.

    Example:
        >>> out = cifar_augment(tf.zeros((32, 32, 3)), tf.constant([1, 2]))
    """
    import tensorflow as tf

    shape = tf.shape(image)
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    out = tf.image.stateless_random_crop(padded, shape, seed=seed)
    if flip:
        out = tf.image.stateless_random_flip_left_right(out, seed=seed + 1)
    return out


def imagenet_train_crop(image, seed, size: int, flip: bool = True):
    """Random-resized crop (area 8%-100%, aspect 3/4-4/3) to `size`, then flip.

    Args:
        image: `(h, w, c)` float tensor in [0, 1].
        seed: shape `(2,)` int tensor.
        size: output height and width (224).
        flip: random horizontal flip.

    Returns:
        A `(size, size, c)` image.
    """
    import tensorflow as tf

    begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.08, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(image, begin, extent)
    out = tf.image.resize(crop, (size, size), method="bilinear")
    if flip:
        out = tf.image.stateless_random_flip_left_right(out, seed=seed + 1)
    return out


def imagenet_eval_crop(image, size: int):
    """Resize the shorter side to `size * 256 / 224`, then center-crop `size`.

    Args:
        image: `(h, w, c)` float tensor.
        size: output height and width (224 gives the usual 256 / 224).

    Returns:
        A `(size, size, c)` image.
    """
    import tensorflow as tf

    resize = int(round(size * 256 / 224))
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = resize / tf.reduce_min(shape)
    new = tf.cast(tf.round(shape * scale), tf.int32)
    image = tf.image.resize(image, new, method="bilinear")
    top = (new[0] - size) // 2
    left = (new[1] - size) // 2
    return tf.slice(image, [top, left, 0], [size, size, -1])


# ---------------------------------------------------------------------------
# tf.data pipelines
# ---------------------------------------------------------------------------


def _decoder(split: Split, data: dict, channels: int):
    """Return `load(index) -> (image float32 [0,1], label)` for arrays/files."""
    import tensorflow as tf

    size = data.get("image_size", 32)
    if split.kind == "arrays":
        images = tf.constant(split.images)
        labels = tf.constant(split.labels)
        scale = 255.0 if split.images.dtype == np.uint8 else 1.0

        def load(index):
            image = tf.cast(tf.gather(images, index), tf.float32) / scale
            if split.images.shape[1] != size or split.images.shape[2] != size:
                image = tf.image.resize(image, (size, size))
            return image, tf.gather(labels, index)

        return load
    from keras_resnets.export import decode_image

    paths = tf.constant(split.images)
    labels = tf.constant(split.labels)

    def load(index):
        # The export's decoder: what serve_bytes gives the model for this file.
        image = decode_image(tf.io.read_file(tf.gather(paths, index)), channels=channels)
        image = tf.cast(image, tf.float32) / 255.0
        return image, tf.gather(labels, index)

    return load


def _finish(image, data: dict, train: bool, seed, mean, std):
    """Augment (training) or resize/crop (evaluation), then normalise."""
    import tensorflow as tf

    size = data.get("image_size", 32)
    kind = data.get("augmentation", "cifar")
    flip = data.get("flip", True)
    if kind == "imagenet":
        image = (
            imagenet_train_crop(image, seed, size, flip)
            if train
            else imagenet_eval_crop(image, size)
        )
    else:
        if image.shape[0] != size or image.shape[1] != size:
            image = tf.image.resize(image, (size, size))
        if train and kind == "cifar":
            image = cifar_augment(image, seed, flip=flip)
        elif train and flip:
            image = tf.image.stateless_random_flip_left_right(image, seed=seed + 1)
    image = (image - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)
    image.set_shape((size, size, len(mean)))
    return image


def _tfds_image(decode, value):
    """Decode an image read with `SkipDecoding` (already decoded data passes through)."""
    import tensorflow as tf

    return decode(value) if value.dtype == tf.string else value


def _options(kind: str):
    import tensorflow as tf

    options = tf.data.Options()
    policy = tf.data.experimental.AutoShardPolicy
    # In-memory arrays and path lists are one "file": shard by data. TFDS
    # splits are sharded TFRecord files: let tf.data shard by file when there
    # are enough files, by data otherwise.
    options.experimental_distribute.auto_shard_policy = (
        policy.AUTO if kind == "tfds" else policy.DATA
    )
    return options


def train_dataset(source: Source, data: dict, batch_size: int, seed: int, start_step: int = 0):
    """The endless, deterministic training stream, batched.

    Example `i` of the stream (counting from the first step) is example
    `index_shuffle(i mod n, seed=(seed, i // n))` of the training split,
    augmented with the stateless seed `(seed, i)`: a run resumed at step
    `s` reads exactly what the uninterrupted run read from step `s` on.

    Args:
        source: from `load_source`.
        data: the recipe's `data` section.
        batch_size: global batch size.
        seed: data seed.
        start_step: first optimizer step of this run (resume).

    Returns:
        A `tf.data.Dataset` of `(images, labels)` batches, never ending.

    Example:
        >>> ds = train_dataset(source, cfg["data"], 128, seed=0)
    """
    import tensorflow as tf

    split = source.train
    mean, std = source.mean, source.std
    first = start_step * batch_size
    if split.kind == "tfds":
        import tensorflow_datasets as tfds

        builder, name = split.tfds_split
        ds = builder.as_dataset(
            split=name,
            shuffle_files=True,
            decoders={"image": tfds.decode.SkipDecoding()},
            read_config=tfds.ReadConfig(shuffle_seed=seed),
        )
        buffer = min(data.get("shuffle_buffer", 10000), split.size)
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True).repeat()
        ds = ds.skip(first).enumerate(first)
        decode = builder.info.features["image"].decode_example

        def prepare(i, example):
            image = tf.cast(_tfds_image(decode, example["image"]), tf.float32) / 255.0
            image = _finish(image, data, True, tf.stack([seed, i]), mean, std)
            return image, tf.cast(example["label"], tf.int32)

    else:
        n = split.size
        load = _decoder(split, data, source.channels)

        def prepare(i):
            epoch = i // n
            index = tf.random.experimental.index_shuffle(
                i % n, seed=tf.stack([tf.constant(seed, tf.int64), epoch]), max_index=n - 1
            )
            image, label = load(index)
            image = _finish(
                image, data, True, tf.stack([tf.constant(seed, tf.int64), i]), mean, std
            )
            return image, label

        ds = tf.data.Dataset.range(first, 2**62)
    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return ds.with_options(_options(split.kind))


def eval_dataset(source: Source, split: Split, data: dict, batch_size: int):
    """A finite evaluation pipeline (no augmentation; center crop for ImageNet).

    Args:
        source: from `load_source` (normalisation, channels).
        split: the split to read (`source.validation` or `source.test`).
        data: the recipe's `data` section.
        batch_size: global batch size.

    Returns:
        A `tf.data.Dataset` of `(images, labels)` batches, cached in memory
        when the split is in memory.
    """
    import tensorflow as tf

    mean, std = source.mean, source.std
    if split.kind == "tfds":
        import tensorflow_datasets as tfds

        builder, name = split.tfds_split
        ds = builder.as_dataset(split=name, decoders={"image": tfds.decode.SkipDecoding()})
        decode = builder.info.features["image"].decode_example

        def prepare(example):
            image = tf.cast(_tfds_image(decode, example["image"]), tf.float32) / 255.0
            return _finish(image, data, False, None, mean, std), tf.cast(example["label"], tf.int32)

        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        load = _decoder(split, data, source.channels)

        def prepare(i):
            image, label = load(i)
            return _finish(image, data, False, None, mean, std), label

        ds = tf.data.Dataset.range(split.size).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        if split.kind == "arrays":
            ds = ds.cache()
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    return ds.with_options(_options(split.kind))
