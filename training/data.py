"""Data sources for the trainer.

`load_digits_32` is the built-in data set: scikit-learn's bundled 8x8
handwritten digits (1,797 images, shipped inside the wheel, no download)
resized to 32x32 with 3 channels so that CIFAR networks take them as is.
"""

from __future__ import annotations

import numpy as np


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
    """Bilinear resize of a batch of 2-D images (align-corners=False), in numpy."""
    n, height, width = images.shape

    def weights(src: int):
        pos = (np.arange(size) + 0.5) * src / size - 0.5
        pos = np.clip(pos, 0, src - 1)
        low = np.floor(pos).astype(int)
        high = np.minimum(low + 1, src - 1)
        frac = (pos - low).astype(np.float32)
        return low, high, frac

    r0, r1, fr = weights(height)
    c0, c1, fc = weights(width)
    rows = images[:, r0, :] * (1 - fr)[None, :, None] + images[:, r1, :] * fr[None, :, None]
    out = rows[:, :, c0] * (1 - fc)[None, None, :] + rows[:, :, c1] * fc[None, None, :]
    return out.astype(np.float32)
