"""The export's argument checks and the facts it reads from the model.

`model_preprocessing` reads the normalisation a `keras_resnets.Network`
records (`Network.preprocessing`); `_resolve_size` its input size. Every
bad argument is a `ValueError`/`TypeError` naming it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence

import keras

from keras_resnets.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from keras_resnets.utils import is_int, is_number

__all__ = ["OUTPUTS", "PREPROCESSING", "model_evaluation", "model_preprocessing"]

# Each mode maps pixel values p in [0, 255] to (p * scale - mean) / std.
PREPROCESSING: dict[str, dict[str, object]] = {
    "unit": {"scale": 1.0 / 255.0, "mean": (0.0,), "std": (1.0,)},
    "torch": {"scale": 1.0 / 255.0, "mean": IMAGENET_MEAN, "std": IMAGENET_STD},
    "tf": {"scale": 1.0 / 255.0, "mean": (0.5,), "std": (0.5,)},
    "none": {"scale": 1.0, "mean": (0.0,), "std": (1.0,)},
}

# What the model's output is (`outputs=`): served as is, never guessed.
OUTPUTS = ("probabilities", "logits")


def _resolve_preprocessing(preprocessing, channels: int) -> dict[str, object]:
    if isinstance(preprocessing, str):
        if preprocessing not in PREPROCESSING:
            allowed = ", ".join(repr(name) for name in PREPROCESSING)
            raise ValueError(
                f"Unknown `preprocessing` {preprocessing!r}: use one of {allowed} or a dict "
                "with 'scale', 'mean' and 'std'."
            )
        spec = dict(PREPROCESSING[preprocessing])
    elif isinstance(preprocessing, Mapping):
        unknown = set(preprocessing) - {"scale", "mean", "std"}
        if unknown:
            raise ValueError(
                f"`preprocessing` has unknown keys {sorted(unknown)}; allowed keys are "
                "'scale', 'mean' and 'std'."
            )
        spec = {"scale": 1.0, "mean": (0.0,), "std": (1.0,)}
        spec.update(preprocessing)
    else:
        raise TypeError(
            "`preprocessing` must be a mode name or a dict with 'scale', 'mean' and 'std', "
            f"got {type(preprocessing).__name__}: {preprocessing!r}."
        )
    scale = spec["scale"]
    if not is_number(scale) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(
            f"`preprocessing['scale']` must be a positive finite number, got {scale!r}."
        )
    for key in ("mean", "std"):
        value = spec[key]
        if is_number(value):  # NumPy scalars too (is_number refuses bools)
            value = (float(value),)
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise TypeError(
                f"`preprocessing['{key}']` must be a number or a sequence of numbers, "
                f"got {type(value).__name__}: {value!r}."
            )
        value = tuple(value)
        if any(not is_number(v) for v in value):
            raise TypeError(f"`preprocessing['{key}']` must hold numbers, got {value!r}.")
        value = tuple(float(v) for v in value)
        if not all(math.isfinite(v) for v in value):
            raise ValueError(
                f"`preprocessing['{key}']` must be finite (no NaN or infinity), got {value!r}."
            )
        if len(value) not in (1, channels):
            raise ValueError(
                f"`preprocessing['{key}']` must have 1 or {channels} values (the model's "
                f"channels), got {len(value)}: {value!r}."
            )
        if key == "std" and min(value) <= 0:
            raise ValueError(f"`preprocessing['std']` must be positive, got {value!r}.")
        spec[key] = value
    spec["scale"] = float(scale)
    return spec


def model_preprocessing(model: keras.Model) -> dict | None:
    """The normalisation a model carries, or None.

    A `keras_resnets.Network` carries it in `model.preprocessing` (set by
    the trainer, `training.train`, and by pretrained weights; kept in the
    `.keras` file). A model that wraps such a network and feeds it its own
    input unchanged (`keras.Sequential([net, ...])`, or
    `keras.Model(x, head(net(x)))`) carries the network's.

    Args:
        model: a Keras model.

    Returns:
        `{"scale": s, "mean": [...], "std": [...]}` (pixels in [0, 255] map to
        `(pixels * scale - mean) / std`), or None when the model carries none.

    Example:
        >>> model_preprocessing(keras_resnets.CifarResNet(8)) is None
        True
    """
    network = _network_on_raw_input(model)
    if network is None or network.preprocessing is None:
        return None
    return {key: network.preprocessing[key] for key in ("scale", "mean", "std")}


def model_evaluation(model: keras.Model) -> dict | None:
    """The evaluation size and crop a model's pretrained checkpoint carries, or None.

    Pretrained weights (`weights="a1_in1k"`...) record how the checkpoint
    is evaluated next to its normalisation (`model.preprocessing`, see
    `model_preprocessing`): `"input_size"` and `"crop_pct"`. The export uses
    them when `crop_fraction` (and, for a model of any input size,
    `input_size`) is not given.

    Returns:
        `{"input_size": int, "crop_pct": float}`, or None when the model
        carries no such keys (a trained model, a model without weights).

    Example:
        >>> model_evaluation(keras_resnets.CifarResNet(8)) is None
        True
    """
    network = _network_on_raw_input(model)
    carried = None if network is None else network.preprocessing
    if not carried or not {"input_size", "crop_pct"} <= set(carried):
        return None
    return {"input_size": int(carried["input_size"]), "crop_pct": float(carried["crop_pct"])}


def _network_on_raw_input(model: keras.Model):
    """`model` if it is a `Network`, else a `Network` it calls on its own input tensor.

    Read from public API only: a Sequential's first layer, or a functional
    model's `get_config()` (each layer's inbound tensors by layer name).
    """
    from keras_resnets.models.network import Network

    if isinstance(model, Network):
        return model
    if isinstance(model, keras.Sequential):
        first = model.layers[0] if model.layers else None
        return first if isinstance(first, Network) else None
    networks = {layer.name: layer for layer in model.layers if isinstance(layer, Network)}
    if not networks:
        return None
    config = model.get_config()
    entries = config.get("input_layers") or []
    if entries and isinstance(entries[0], str):  # one input: [name, node, index]
        entries = [entries]
    inputs = {entry[0] for entry in entries}
    for layer in config.get("layers", []):
        if layer.get("name") not in networks:
            continue
        if any(_fed_by(node, inputs) for node in layer.get("inbound_nodes", [])):
            return networks[layer["name"]]
    return None


def _fed_by(node: dict, names: set) -> bool:
    """Whether a serialized node takes a tensor of one of the layers `names` as input."""
    stack = [node.get("args", [])]
    while stack:
        item = stack.pop()
        if isinstance(item, dict) and item.get("class_name") == "__keras_tensor__":
            if item["config"]["keras_history"][0] in names:
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False


def _model_preprocessing_or_error(model: keras.Model) -> dict:
    carried = model_preprocessing(model)
    if carried is None:
        allowed = ", ".join(repr(name) for name in PREPROCESSING)
        raise ValueError(
            "`preprocessing` was not given and the model carries none "
            "(`model.preprocessing` is None: the trainer and pretrained weights set it). "
            f"Pass the normalisation the model was trained with: one of {allowed}, or a "
            "dict with 'scale', 'mean' and 'std'."
        )
    return carried


def _resolve_size(model: keras.Model, input_size) -> tuple[int, int]:
    model_size = tuple(model.input_shape[1:3])
    if input_size is None:
        if None in model_size:
            raise ValueError(
                f"The model takes images of any size ({model.input_shape}); pass "
                "`input_size` (an int or (height, width)) to say what to resize to."
            )
        return model_size
    if is_int(input_size):  # NumPy integers too (is_int refuses bools)
        input_size = (input_size, input_size)
    if (
        not isinstance(input_size, Sequence)
        or len(input_size) != 2
        or any(not is_int(s) or s < 1 for s in input_size)
    ):
        raise ValueError(
            f"`input_size` must be None, a positive int or (height, width), got {input_size!r}."
        )
    input_size = tuple(int(s) for s in input_size)
    for want, have in zip(input_size, model_size, strict=True):
        if have is not None and have != want:
            raise ValueError(
                f"`input_size` {input_size!r} does not match the model's fixed input "
                f"{model_size!r}; leave it None or rebuild the model with "
                "`input_shape=(None, None, channels)`."
            )
    return input_size


def _check_model(model) -> tuple[int, int]:
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model, got {type(model).__name__}.")
    if len(model.inputs) != 1 or len(model.input_shape) != 4:
        raise ValueError(
            "`model` must take one batch of images (batch, height, width, channels), "
            f"got input shape {model.input_shape}."
        )
    if len(model.outputs) != 1:
        raise ValueError(
            f"`model` has {len(model.outputs)} outputs; the export serves one (batch, classes) "
            "output. Export a model of the output to serve, e.g. "
            "`keras.Model(model.inputs, model.outputs[0])`."
        )
    if len(model.output_shape) != 2 or model.output_shape[1] is None:
        raise ValueError(
            "`model` must be a classifier with one (batch, classes) output (build it with "
            f"`include_top=True`, or add a head), got output shape {model.output_shape}."
        )
    last = model.layers[-1]  # the output layer: layers are in topological order
    pooled = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)
    if isinstance(last, pooled):
        raise ValueError(
            f"`model` ends in the pooled features of `{last.name}`, not a classifier: build "
            "it with `include_top=True`, or add a head (`keras_resnets.replace_head`)."
        )
    channels = model.input_shape[3]
    if channels not in (1, 3):
        raise ValueError(f"Serving decodes images to 1 or 3 channels; the model takes {channels}.")
    return channels, model.output_shape[1]


def _check_class_names(class_names, classes: int) -> list[str] | None:
    if class_names is None:
        return None
    if isinstance(class_names, (str, os.PathLike)):
        path = os.fspath(class_names)
        try:
            with open(path, encoding="utf-8") as handle:
                class_names = [line.rstrip("\n") for line in handle]
        except OSError as exc:
            raise ValueError(f"`class_names` file {path!r} cannot be read: {exc}") from exc
        while class_names and class_names[-1] == "":
            class_names.pop()
    elif isinstance(class_names, (bytes, Mapping)) or not isinstance(class_names, Iterable):
        raise TypeError(
            "`class_names` must be None, a list of names or the path of a text file with one "
            f"name per line, got {type(class_names).__name__}: {class_names!r}."
        )
    class_names = list(class_names)
    if len(class_names) != classes:
        raise ValueError(
            f"`class_names` has {len(class_names)} names; the model has {classes} classes."
        )
    seen: dict[str, int] = {}
    for index, name in enumerate(class_names):
        if not isinstance(name, str) or "\n" in name or "\r" in name:
            raise ValueError(f"`class_names` must be strings without newlines, got {name!r}.")
        if not name.strip():
            raise ValueError(f"`class_names` has an empty name at index {index}: {name!r}.")
        if name in seen:
            raise ValueError(
                f"`class_names` has {name!r} twice (at indices {seen[name]} and {index}); "
                "each class needs its own name."
            )
        seen[name] = index
    return class_names


def _check_export_base(export_base) -> str:
    """`export_base` as a path, or an error naming it (before anything is traced)."""
    if not isinstance(export_base, (str, os.PathLike)):
        raise TypeError(
            "`export_base` must be a directory path (str or os.PathLike), got "
            f"{type(export_base).__name__}: {export_base!r}."
        )
    base = os.fspath(export_base)
    if not isinstance(base, str) or not base.strip():
        raise ValueError(f"`export_base` must be a non-empty directory path, got {base!r}.")
    if os.path.exists(base) and not os.path.isdir(base):
        raise ValueError(f"`export_base` {base!r} exists and is not a directory.")
    return base
