"""ImageNet input preprocessing and prediction decoding.

`preprocess_input(x, mode="torch")` prepares RGB images in `[0, 255]` for the
pretrained weights (trained on `(x / 255 - mean) / std`); `mode` may also be
a checkpoint's own preprocessing (`model.preprocessing` of a model built with
pretrained weights, or the model itself), and `crop=True` then resizes and
center-crops as that checkpoint was evaluated. `decode_predictions(probs, top=5)` turns ImageNet
class probabilities into `(wordnet_id, name, score)` tuples, using the 1,000
class names shipped with the package (`keras_resnets/data/imagenet_classes.json`:
WordNet ids in the standard sorted order, names as in torchvision).
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Mapping

import keras
import numpy as np

from keras_resnets.utils import check_choice, is_int

__all__ = ["decode_predictions", "imagenet_classes", "preprocess_input"]

MODES = ("torch", "tf", "caffe")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_CLASSES_FILE = os.path.join(os.path.dirname(__file__), "data", "imagenet_classes.json")


def preprocess_input(x, mode="torch", *, crop: bool = False):
    """Scale RGB images in `[0, 255]` (channels last) for an ImageNet model.

    Args:
        x: a numpy array or backend tensor of shape `(..., 3)`, RGB, values
            in `[0, 255]`, or anything `np.asarray` makes one of (nested
            lists, a PIL image). Numpy input is not modified in place.
        mode: `"torch"` (default; torchvision's normalisation, what most
            pretrained checkpoints here were trained with):
            `(x / 255 - mean) / std` with the ImageNet mean
            `(0.485, 0.456, 0.406)` and std `(0.229, 0.224, 0.225)`. `"tf"`:
            scale to `[-1, 1]`. `"caffe"`: RGB to BGR, then subtract the
            ImageNet BGR mean. The last two are `keras.applications`' modes.
            Or a checkpoint's own preprocessing: a dict with `"scale"`,
            `"mean"` and `"std"` (`(x * scale - mean) / std`; the
            `preprocessing` a model built with pretrained weights carries,
            or `PretrainedWeights.preprocessing`), or such a model itself.
        crop: with a checkpoint's preprocessing that gives `"input_size"`,
            `"crop_pct"` and `"interpolation"` (every built-in one does):
            evaluate as the checkpoint was, as timm does: resize the images
            (`(height, width, 3)` or `(batch, height, width, 3)`) so the
            shorter side is `floor(input_size / crop_pct)`, keeping the
            aspect ratio (antialiased), then take the central
            `input_size x input_size` crop. Default False: the shape is kept.

    Returns:
        A float32 tensor for tensor input, else a float32 numpy array, of
        the same shape (with `crop`, `input_size` high and wide).

    Raises:
        ValueError: unknown `mode`, a `mode` dict without scale/mean/std,
            `crop=True` without a size and crop to use, or the last axis is
            not 3.
        TypeError: `x` is None, a scalar or not numeric; `mode` is neither
            a string, a dict nor a model carrying a preprocessing dict.

    Example:
        >>> images = np.full((1, 224, 224, 3), 255.0)
        >>> preprocess_input(images)[0, 0, 0].round(3)
        array([2.249, 2.429, 2.64 ], dtype=float32)
    """
    spec = _preprocessing_spec(mode)
    if isinstance(x, np.ndarray) or not (hasattr(x, "dtype") and hasattr(x, "shape")):
        x = _numeric_array(
            "x", x, "an array of images (a numpy array, a tensor, nested lists or a PIL image)"
        )
        backend = np
    else:
        backend = keras.ops
    shape = tuple(x.shape)
    if not shape or shape[-1] != 3:
        raise ValueError(
            f"`x` must be RGB images with 3 channels last, got an input of shape {shape}."
        )
    x = x.astype("float32") if backend is np else keras.ops.cast(x, "float32")
    if crop:
        x = _resize_and_crop(x, spec, backend)
    if isinstance(spec, dict):
        scale = float(spec["scale"])
        mean = np.asarray(spec["mean"], "float32") / scale
        std = np.asarray(spec["std"], "float32") / scale
        return (x - mean) / std
    if spec == "torch":
        mean = np.asarray(IMAGENET_MEAN, "float32") * 255.0
        std = np.asarray(IMAGENET_STD, "float32") * 255.0
        return (x - mean) / std
    if spec == "tf":
        return x / 127.5 - 1.0
    x = backend.flip(x, axis=-1)
    return x - np.asarray(_CAFFE_MEAN_BGR, "float32")


def _preprocessing_spec(mode):
    """`mode` as a mode name or a checkpoint's preprocessing dict, else an error naming it."""
    carried = getattr(mode, "preprocessing", None)
    if isinstance(mode, keras.Model):
        if not isinstance(carried, Mapping):
            raise ValueError(
                f"`mode` is model {mode.name!r}, which carries no preprocessing "
                "(`model.preprocessing` is None: build it with pretrained weights, or pass a "
                f"mode name, one of {', '.join(repr(m) for m in MODES)})."
            )
        mode = carried
    if isinstance(mode, Mapping):
        if not {"scale", "mean", "std"} <= set(mode):
            raise ValueError(
                "`mode` must be a mode name or a dict with 'scale', 'mean' and 'std' (a "
                f"checkpoint's preprocessing), got {dict(mode)!r}."
            )
        return dict(mode)
    if not isinstance(mode, str):
        raise TypeError(
            f"`mode` must be one of {', '.join(repr(m) for m in MODES)}, a checkpoint's "
            f"preprocessing dict or a model carrying one, got {type(mode).__name__}."
        )
    check_choice("mode", mode, MODES)
    return mode


def _resize_and_crop(x, spec, backend):
    """Resize the shorter side to floor(size / crop_pct), then the central size x size crop."""
    needed = ("input_size", "crop_pct", "interpolation")
    if not isinstance(spec, dict) or not set(needed) <= set(spec):
        raise ValueError(
            "`crop=True` needs `mode` to be a checkpoint's preprocessing with "
            f"{', '.join(repr(k) for k in needed)} (a pretrained model's `preprocessing`), "
            f"got mode {spec!r}."
        )
    if len(x.shape) not in (3, 4):
        raise ValueError(
            "`crop=True` needs images of shape (height, width, 3) or (batch, height, width, 3), "
            f"got shape {tuple(x.shape)}."
        )
    size = int(spec["input_size"])
    height, width = (int(v) for v in x.shape[-3:-1])
    resized = math.floor(size / float(spec["crop_pct"]))
    if height <= width:
        new = (resized, int(resized * width / height))
    else:
        new = (int(resized * height / width), resized)
    x = keras.ops.image.resize(
        x, new, interpolation=spec["interpolation"], antialias=True, data_format="channels_last"
    )
    top = int(round((new[0] - size) / 2.0))
    left = int(round((new[1] - size) / 2.0))
    x = x[..., top : top + size, left : left + size, :]
    return keras.ops.convert_to_numpy(x) if backend is np else x


def _numeric_array(argument: str, value, what: str) -> np.ndarray:
    """`value` as a numeric numpy array of rank >= 1, else TypeError naming `argument`."""
    try:
        array = None if value is None else np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nested lists
        raise TypeError(f"`{argument}` must be {what}, got {exc}") from None
    if array is None or array.ndim == 0 or not np.issubdtype(array.dtype, np.number):
        described = type(value).__name__ if array is None or array.ndim else repr(value)
        raise TypeError(f"`{argument}` must be {what}, got {described}.")
    return array


@functools.lru_cache(maxsize=1)
def imagenet_classes() -> tuple[tuple[str, str], ...]:
    """The 1,000 ImageNet-1k classes in model output order.

    Returns:
        A tuple of `(wordnet_id, name)` pairs; index `i` is output `i` of
        every ImageNet model here.

    Example:
        >>> imagenet_classes()[0]
        ('n01440764', 'tench')
    """
    with open(_CLASSES_FILE, encoding="utf-8") as handle:
        classes = tuple((wnid, name) for wnid, name in json.load(handle))
    if len(classes) != 1000:  # pragma: no cover - guards the shipped file
        raise RuntimeError(f"{_CLASSES_FILE} holds {len(classes)} classes, expected 1000.")
    return classes


def decode_predictions(probs, top: int = 5) -> list[list[tuple[str, str, float]]]:
    """Decode ImageNet predictions into the `top` classes per image.

    Args:
        probs: array or tensor of shape `(batch, 1000)` (probabilities or
            logits; the order is what matters).
        top: how many classes per image, 1 to 1000.

    Returns:
        One list per image of `(wordnet_id, class_name, score)` tuples, best
        first, as `keras.applications.imagenet_utils.decode_predictions`.

    Raises:
        ValueError: `probs` is not `(batch, 1000)`, holds NaN or infinite
            values (nothing to rank), or `top` is out of range.
        TypeError: `probs` is None, a scalar or not numeric.

    Example:
        >>> probs = np.zeros((1, 1000)); probs[0, 1] = 0.9
        >>> decode_predictions(probs, top=1)
        [[('n01443537', 'goldfish', 0.9)]]
    """
    if hasattr(probs, "shape") and not isinstance(probs, np.ndarray):
        probs = keras.ops.convert_to_numpy(probs)
    probs = _numeric_array("probs", probs, "an array of scores (a numpy array or a tensor)")
    if probs.ndim != 2 or probs.shape[1] != 1000:
        raise ValueError(
            "`probs` must have shape (batch, 1000), the output of an ImageNet classifier; "
            f"got shape {tuple(probs.shape)}."
        )
    if not np.isfinite(probs).all():
        rows = sorted({int(i) for i in np.nonzero(~np.isfinite(probs))[0]})
        raise ValueError(
            f"`probs` must be finite, got NaN or infinite values in row(s) {rows[:10]}; "
            "a model that outputs NaN has diverged or was given NaN input."
        )
    if not is_int(top) or not 1 <= top <= 1000:
        raise ValueError(f"`top` must be an integer from 1 to 1000, got {top!r}.")
    top = int(top)
    classes = imagenet_classes()
    results = []
    for row in probs:
        order = np.argsort(-row, kind="stable")[:top]
        results.append([(*classes[i], float(row[i])) for i in order])
    return results
