"""The trainer's data model: `Split` (one split of a data set) and `Source` (a loaded data set)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from keras_resnets.utils import DataError

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
        raise DataError(
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
