"""Loading weights into the package's models.

`load_weights_file(model, path)` loads a Keras `.weights.h5` or `.keras`
file after checking, layer by layer, that every shape matches, so a
mismatch names the first layer that differs instead of failing deep inside
Keras. `load_torch_checkpoint(model, path)` converts a torchvision/timm
PyTorch checkpoint (`.safetensors`, or `.pth` with PyTorch installed);
`keras_resnets.weights.pretrained` holds the registry of published ImageNet
checkpoints behind `weights="imagenet"`.
"""

from __future__ import annotations

import io
import os
import re
import zipfile

import h5py
import keras

__all__ = ["load_torch_checkpoint", "load_weights_file", "read_torch_checkpoint"]

_SUFFIXES = (".weights.h5", ".keras")


def _h5_key(class_name: str) -> str:
    """The group name Keras's weights file gives a layer class (`GroupedConv2D` -> `grouped_conv2d`).

    The `.weights.h5` layout names each layer's group after its class in
    snake case; this is that rule (Keras's `to_snake_case`, not public API;
    tests/test_utils.py checks the two agree for every layer class the
    registered models use).
    """
    name = re.sub(r"\W+", "", class_name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _open_h5(path: str) -> h5py.File:
    if path.endswith(".keras"):
        try:
            with zipfile.ZipFile(path) as archive:
                data = archive.read("model.weights.h5")
        except (zipfile.BadZipFile, KeyError) as exc:
            raise ValueError(
                f"`weights` file {path!r} is not a valid .keras archive: {exc}"
            ) from exc
        return h5py.File(io.BytesIO(data), "r")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"`weights` file {path!r} is not a readable HDF5 file: {exc}") from exc


def _check_shapes(model: keras.Model, h5: h5py.File, path: str) -> bool:
    """Check each top-level layer's own variables; return whether any layer nests others."""
    if "layers" not in h5:
        raise ValueError(f"`weights` file {path!r} holds no Keras layer weights.")
    group = h5["layers"]
    used: dict[str, int] = {}
    nested = False
    for layer in model.layers:
        key = _h5_key(layer.__class__.__name__)
        if key in used:
            used[key] += 1
            key = f"{key}_{used[key]}"
        else:
            used[key] = 0
        expected: dict[str, object] = {}
        layer.save_own_variables(expected)
        nested = nested or len(layer.weights) > len(expected)
        if not expected:
            continue
        stored = group.get(f"{key}/vars")
        if stored is None:
            raise ValueError(
                f"`weights` file {path!r} does not match the model: it has no weights "
                f"for layer {layer.name!r}."
            )
        for index, value in expected.items():
            if index not in stored:
                raise ValueError(
                    f"`weights` file {path!r} does not match the model at layer "
                    f"{layer.name!r}: variable {index} is missing."
                )
            have = tuple(stored[index].shape)
            want = tuple(value.shape)
            if have != want:
                raise ValueError(
                    f"`weights` file {path!r} does not match the model at layer "
                    f"{layer.name!r}: the file has shape {have}, the model expects {want}."
                )
    return nested


def load_weights_file(model: keras.Model, path: str | os.PathLike) -> None:
    """Load a `.weights.h5` or `.keras` file into `model`, checking shapes first.

    Args:
        model: a model built by this package (or any functional model).
        path: a `.weights.h5` file (from `model.save_weights`) or a `.keras`
            file (from `model.save`) of the same architecture.

    Raises:
        ValueError: the file does not exist, has another suffix, cannot be
            read, or its shapes do not match; the message names the first
            mismatching layer. Layers nested in others (the layers of a
            `DenseBlock`, the branch of a `StochasticDepth`) are checked by
            Keras while loading; on a mismatch there the model's weights are
            restored, so a failed load changes nothing.

    Example:
        >>> model = keras_resnets.ResNet20()
        >>> load_weights_file(model, "runs/demo/model.keras")  # doctest: +SKIP
    """
    path = os.fspath(path)
    if not path.endswith(_SUFFIXES):
        raise ValueError(
            f"`weights` must be None or a path ending in .weights.h5 or .keras, got {path!r}."
        )
    if not os.path.isfile(path):
        raise ValueError(f"`weights` file {path!r} does not exist.")
    with _open_h5(path) as h5:
        nested = _check_shapes(model, h5, path)
    if not nested:
        model.load_weights(path)
        return
    snapshot = [variable.numpy() for variable in model.weights]
    try:
        model.load_weights(path)
    except Exception as exc:  # Keras raises ValueError or KeyError, depending on the mismatch
        for variable, value in zip(model.weights, snapshot, strict=True):
            variable.assign(value)
        raise ValueError(
            f"`weights` file {path!r} does not match the model inside a nested layer "
            f"(the model's weights are unchanged): {exc}"
        ) from exc


from keras_resnets.weights.torch_checkpoint import (  # noqa: E402
    load_torch_checkpoint,
    read_torch_checkpoint,
)
