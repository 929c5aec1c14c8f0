"""Data for the trainer: the data sets a recipe names and their input pipelines.

- `training.data.sources`: `load_source` (digits, image folders, TFDS; the
  validation/test splits and the normalisation) and `check_source` (data
  that cannot train: a `DataError` before anything is built);
- `load_digits_32`, the built-in digits, is the library's
  `keras_resnets.datasets.load_digits_32`, re-exported here;
- `training.data.readers`: reading TFDS data sets and image folders;
- `training.data.splits`: `Split` and `Source`, what the readers return;
- `training.data.pipeline`: the papers' augmentation and the `tf.data`
  training and evaluation datasets.

Everything is importable from `training.data` as before the split.
"""

from __future__ import annotations

from keras_resnets.datasets import _resize_bilinear, load_digits_32
from keras_resnets.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from training.data.pipeline import (
    _decoder,
    cifar_augment,
    eval_dataset,
    imagenet_eval_crop,
    imagenet_train_crop,
    train_dataset,
)
from training.data.readers import find_bad_images
from training.data.sources import _normalisation, check_source, load_source
from training.data.splits import (
    DATASETS,
    IMAGE_EXTENSIONS,
    TFDS_IN_MEMORY,
    TFDS_STREAMING,
    VALIDATION_MODES,
    Source,
    Split,
)

__all__ = [
    "DATASETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "TFDS_IN_MEMORY",
    "TFDS_STREAMING",
    "VALIDATION_MODES",
    "Source",
    "Split",
    "_decoder",
    "_normalisation",
    "_resize_bilinear",
    "check_source",
    "cifar_augment",
    "eval_dataset",
    "find_bad_images",
    "imagenet_eval_crop",
    "imagenet_train_crop",
    "load_digits_32",
    "load_source",
    "train_dataset",
]
