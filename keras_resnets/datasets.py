"""`load_digits_32`: the built-in data set of the analysis commands and the trainer.

scikit-learn's bundled 8x8 handwritten digits (1,797 images, shipped inside
its wheel, no download) resized to `size`x`size` with 3 channels, so that the
CIFAR networks take them as is. Needs scikit-learn (`pip install
'keras_resnets[train]'` or `[analysis]`), imported through
`keras_resnets._optional.require` when called. The trainer's
`training.data.load_digits_32` is this function.
"""

from __future__ import annotations

import numpy as np

from keras_resnets._optional import require


def load_digits_32(
    seed: int = 0, test_fraction: float = 0.2, size: int = 32
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Load scikit-learn's digits as `size`x`size`x3 float32 images in [0, 1].

    Source: scikit-learn's `load_digits` (the UCI optical recognition of
    handwritten digits test set, pixel values 0-16, divided by 16 here).

    Args:
        seed: seed of the stratified train/test split (default 0).
        test_fraction: share of the images held out for testing (default 0.2,
            1,437 train and 360 test images).
        size: output height and width (default 32; bilinear resize of the
            8x8 images, half-pixel centres, no antialiasing; 8 keeps them).

    Returns:
        `((x_train, y_train), (x_test, y_test))` with float32 images of shape
        `(n, size, size, 3)` and int32 labels 0-9.

    Raises:
        ImportError: scikit-learn is not installed (the message names the extra).

    Example:
        >>> (x, y), (xt, yt) = load_digits_32()
        >>> x.shape[1:]
        (32, 32, 3)
    """
    datasets = require("sklearn.datasets", "The digits data set")
    train_test_split = require("sklearn.model_selection", "The digits data set").train_test_split

    digits = datasets.load_digits()
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
