"""`load_source`: the data set a recipe names, with its splits and normalisation.

`check_source` refuses a loaded data set that cannot train or evaluate (an
empty split, fewer than two classes, a batch larger than the training set)
with a `DataError` saying what was found, before anything is built.

The built-in data set, `load_digits_32` (scikit-learn's digits as 32x32x3
images), lives in the library (`keras_resnets.datasets`, which the analysis
commands use too) and is re-exported here.
"""

from __future__ import annotations

import numpy as np

from keras_resnets.datasets import load_digits_32
from keras_resnets.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from keras_resnets.utils import DataError
from training.data.readers import _load_folder, _load_tfds
from training.data.splits import (
    DATASETS,
    VALIDATION_MODES,
    Source,
    Split,
    _array_split,
    _hold_out,
    _subset,
)


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
                raise DataError(
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


def check_source(source: Source, batch_size: int | None = None) -> None:
    """Refuse a data set that cannot train or evaluate a classifier.

    The one place of the data's rules, called by the trainer (`run()`) and
    the tuner right after `load_source`, before a model is built:

    - at least 2 classes (a one-class "classifier" always answers 1.0);
    - no empty split: training (`train_subset=0`, every image skipped, a
      hold-out that leaves nothing), validation or test (`test_subset=0`,
      a TFDS hold-out that rounds to no examples);
    - examples of at least 2 classes in the training split (a two-image
      folder whose hold-out takes one class away); classes missing from it
      (a small `train_subset`) are printed, not refused;
    - a global batch no larger than the training split (a larger one would
      repeat images within a batch and scale the learning rate by it).

    An image folder's empty class folder is refused where it is read
    (`training.data.readers`), naming the folder.

    Args:
        source: what `load_source` returned.
        batch_size: the global batch size, if known.

    Raises:
        DataError: naming the split, its count and origin (`Source.splits`)
            and the classes found.

    Example:
        >>> check_source(load_source({"dataset": "digits", "train_subset": 0}))
        Traceback (most recent call last):
        DataError: The train split has no examples (found: train = digits train: 1437; first 0 used (train_subset); ...
    """
    names = list(source.class_names or range(source.num_classes))
    listed = ", ".join(str(n) for n in names[:10]) + (" ..." if len(names) > 10 else "")
    found = "; ".join(f"{k} = {v}" for k, v in source.splits.items())
    found = f"(found: {found}; {source.num_classes} classes: {listed}"
    if source.skipped_files:
        found += f"; {len(source.skipped_files)} unreadable images skipped"
    found += ")"
    if source.num_classes < 2:
        raise DataError(
            f"A classifier needs at least 2 classes; {source.name} has {source.num_classes} "
            f"{found}. Add a folder per class."
        )
    advice = {
        "train": "add images, lower data.validation_fraction or raise data.train_subset",
        "validation": "raise data.test_subset or data.validation_fraction, or set "
        "data.validation: none",
        "test": "raise or unset data.test_subset, or add test images",
    }
    for key in ("train", "validation", "test"):
        split = getattr(source, key)
        if split is not None and split.size == 0:
            raise DataError(f"The {key} split has no examples {found}. To fix it: {advice[key]}.")
    if source.train.labels is not None:
        present = set(int(label) for label in np.unique(source.train.labels))
        missing = [str(names[i]) for i in range(source.num_classes) if i not in present]
        if len(present) < 2:
            raise DataError(
                f"The train split holds examples of {len(present)} class only "
                f"({', '.join(str(names[i]) for i in sorted(present))}); a classifier needs "
                f"at least 2 {found}. Add images or lower data.validation_fraction."
            )
        if missing:
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            print(
                f"note: the training split has no examples of {len(missing)} of the "
                f"{source.num_classes} classes ({shown}): {source.splits.get('train', '')}",
                flush=True,
            )
    if batch_size is not None and batch_size > source.train.size:
        raise DataError(
            f"The global batch size {batch_size} is larger than the {source.train.size} "
            f"training examples ({source.splits.get('train', '')}); the learning rate would scale "
            f"with a batch that repeats images. Lower --batch-size (train.batch_size or "
            f"train.per_replica_batch_size) to at most {source.train.size}."
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
    if not train.size:  # no training images: `check_source` refuses the data, saying so
        return (0.0,) * channels, (1.0,) * channels
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
