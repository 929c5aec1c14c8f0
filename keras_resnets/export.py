"""Export a classifier as a SavedModel that TensorFlow Serving loads as is.

`export_saved_model(model, export_base)` writes `export_base/<version>/` with
`saved_model.pb`, `variables/`, `assets/` (class names, when given) and
`assets.extra/tf_serving_warmup_requests`. The version directory appears
atomically: everything is written under a hidden temporary name in the same
parent and renamed at the end, so a server polling `export_base` never sees
a half-written version.

The graph takes raw pixels: resizing, the optional central crop and the
model's normalisation run inside it, so clients send images as they are.

TensorFlow is imported inside the functions only: `import keras_resnets`
stays backend-neutral.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence

import keras

from keras_resnets.utils import check_int

__all__ = ["PREPROCESSING", "SIGNATURES", "export_saved_model", "list_versions"]

# Each mode maps pixel values p in [0, 255] to (p * scale - mean) / std.
PREPROCESSING: dict[str, dict[str, object]] = {
    "unit": {"scale": 1.0 / 255.0, "mean": (0.0,), "std": (1.0,)},
    "torch": {
        "scale": 1.0 / 255.0,
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
    },
    "tf": {"scale": 1.0 / 255.0, "mean": (0.5,), "std": (0.5,)},
    "none": {"scale": 1.0, "mean": (0.0,), "std": (1.0,)},
}

# The signatures every export has, with their input name and dtype.
SIGNATURES: dict[str, tuple[str, str]] = {
    "serving_default": ("images", "float32"),
    "serve_uint8": ("images", "uint8"),
    "serve_bytes": ("image_bytes", "string"),
}

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
CLASS_NAMES_FILE = "class_names.txt"


def list_versions(export_base: str | os.PathLike) -> list[int]:
    """Return the version numbers present under `export_base`, sorted.

    Only directories named by a non-negative integer count, as for TF Serving.

    Args:
        export_base: the directory holding one sub-directory per version.

    Returns:
        The sorted list of versions (empty if the directory does not exist).

    Example:
        >>> keras_resnets.export.list_versions("/tmp/no/such/dir")
        []
    """
    base = os.fspath(export_base)
    if not os.path.isdir(base):
        return []
    return sorted(
        int(entry)
        for entry in os.listdir(base)
        if entry.isdigit() and os.path.isdir(os.path.join(base, entry))
    )


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
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or scale <= 0:
        raise ValueError(f"`preprocessing['scale']` must be a positive number, got {scale!r}.")
    for key in ("mean", "std"):
        value = spec[key]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = (float(value),)
        value = tuple(float(v) for v in value)
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


def _resolve_size(model: keras.Model, input_size) -> tuple[int, int]:
    model_size = tuple(model.input_shape[1:3])
    if input_size is None:
        if None in model_size:
            raise ValueError(
                f"The model takes images of any size ({model.input_shape}); pass "
                "`input_size` (an int or (height, width)) to say what to resize to."
            )
        return model_size
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        input_size = (input_size, input_size)
    if (
        not isinstance(input_size, Sequence)
        or len(input_size) != 2
        or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in input_size)
    ):
        raise ValueError(
            f"`input_size` must be None, a positive int or (height, width), got {input_size!r}."
        )
    input_size = tuple(input_size)
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
    if len(model.outputs) != 1 or len(model.output_shape) != 2 or model.output_shape[1] is None:
        raise ValueError(
            "`model` must be a classifier with one (batch, classes) output (build it with "
            f"`include_top=True`, or add a head), got output shape {model.output_shape}."
        )
    last = model.outputs[0]._keras_history.operation
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


def _output_activation(model: keras.Model) -> str:
    layer = model.outputs[0]._keras_history.operation
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", None)
    return name or "linear"


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
    class_names = list(class_names)
    if len(class_names) != classes:
        raise ValueError(
            f"`class_names` has {len(class_names)} names; the model has {classes} classes."
        )
    for name in class_names:
        if not isinstance(name, str) or "\n" in name or "\r" in name:
            raise ValueError(f"`class_names` must be strings without newlines, got {name!r}.")
    return class_names


def export_saved_model(
    model: keras.Model,
    export_base: str | os.PathLike,
    version: int | None = None,
    preprocessing: str | Mapping = "unit",
    input_size: int | tuple[int, int] | None = None,
    top_k: int = 5,
    class_names: Sequence[str] | str | os.PathLike | None = None,
    *,
    crop_fraction: float | None = None,
    overwrite: bool = False,
    warmup: bool = True,
) -> str:
    """Export a classifier as a versioned SavedModel for TensorFlow Serving.

    Writes `export_base/<version>/` (`saved_model.pb`, `variables/`,
    `assets/class_names.txt` when class names are given, and
    `assets.extra/tf_serving_warmup_requests`) under a temporary name in
    `export_base` and renames it at the end, so the version appears whole or
    not at all. Signatures (all return `probabilities` `[batch, classes]`,
    `top_k_indices` and `top_k_scores` `[batch, k]`, and `top_k_classes`
    when class names are given):

    - `serving_default`: `images`, float32 `[batch, height, width, channels]`
      with pixel values in [0, 255], any height and width;
    - `serve_uint8`: `images`, the same as uint8;
    - `serve_bytes`: `image_bytes`, string `[batch]` of encoded JPEG, PNG,
      GIF or BMP files (each of its own size).

    Images are resized bilinearly to `input_size` (or, with `crop_fraction`,
    resized on their shorter side and centrally cropped) and normalised
    (`preprocessing`) inside the graph. A model ending in a linear
    classifier (logits) gets a softmax.

    Args:
        model: a classifier: one image input, one `(batch, classes)` output.
        export_base: the model's directory in the server's model base path.
        version: the version number (an int >= 0). Default: one above the
            highest version present, or 1.
        preprocessing: how pixels in [0, 255] become model inputs, as
            `(pixels * scale - mean) / std`: `"unit"` ([0, 1], the
            default), `"torch"` (ImageNet mean and std on [0, 1]), `"tf"`
            ([-1, 1]), `"none"` (raw [0, 255]), or a dict with `scale`,
            `mean` and `std` (per channel or one value). Use what the model
            was trained with.
        input_size: the height and width images are resized to (int or
            pair). Default: the model's input size; required when the model
            takes any size.
        top_k: how many top classes to return (at most the number of classes).
        class_names: one name per class (a list, or the path of a text file
            with one name per line); adds `top_k_classes` and
            `assets/class_names.txt`.
        crop_fraction: ImageNet-style evaluation: resize the shorter side
            to `input_size / crop_fraction` keeping the aspect ratio, then
            take the central `input_size` crop (0.875: "resize 256, crop
            224", as the trainer evaluates). None (default): resize to
            `input_size` directly.
        overwrite: replace an existing version instead of raising.
        warmup: write `assets.extra/tf_serving_warmup_requests` (needs the
            `tensorflow-serving-api` package: `pip install keras_resnets[serving]`).

    Returns:
        The path of the version directory written.

    Raises:
        FileExistsError: the version exists and `overwrite` is False.
        ValueError: a bad argument (named in the message), or a model that is
            not a classifier.

    Example:
        >>> model = keras_resnets.ResNet20()
        >>> keras_resnets.export_saved_model(model, "/tmp/models/resnet20")  # doctest: +SKIP
        '/tmp/models/resnet20/1'
    """
    import tensorflow as tf

    channels, classes = _check_model(model)
    spec = _resolve_preprocessing(preprocessing, channels)
    size = _resolve_size(model, input_size)
    check_int("top_k", top_k, minimum=1)
    top_k = min(top_k, classes)
    names = _check_class_names(class_names, classes)
    if crop_fraction is not None and (
        not isinstance(crop_fraction, (int, float))
        or isinstance(crop_fraction, bool)
        or not 0 < crop_fraction <= 1
    ):
        raise ValueError(f"`crop_fraction` must be None or in (0, 1], got {crop_fraction!r}.")
    if not isinstance(overwrite, bool):
        raise ValueError(f"`overwrite` must be True or False, got {overwrite!r}.")
    base = os.fspath(export_base)
    if version is None:
        present = list_versions(base)
        version = present[-1] + 1 if present else 1
    check_int("version", version, minimum=0)
    final = os.path.join(base, str(version))
    if os.path.exists(final) and not overwrite:
        raise FileExistsError(
            f"Version {version} already exists at {final!r}; pass `overwrite=True` "
            "(`--overwrite`) to replace it, or another `version`."
        )
    if warmup:
        _require_serving_api()

    os.makedirs(base, exist_ok=True)
    # A hidden, non-numeric name in the same directory: TF Serving ignores it,
    # and the final rename stays on one file system (atomic).
    tmp = tempfile.mkdtemp(prefix=f".{version}.tmp-", dir=base)
    try:
        labels_dir = None
        if names is not None:
            labels_dir = tempfile.mkdtemp(prefix="class-names-", dir=tmp)
            with open(os.path.join(labels_dir, CLASS_NAMES_FILE), "w", encoding="utf-8") as f:
                f.write("\n".join(names) + "\n")
        target = os.path.join(tmp, "model")
        module, signatures = _serving_module(
            tf,
            model,
            channels=channels,
            size=size,
            spec=spec,
            top_k=top_k,
            labels_path=None if labels_dir is None else os.path.join(labels_dir, CLASS_NAMES_FILE),
            crop_fraction=None if crop_fraction is None else float(crop_fraction),
            softmax=_output_activation(model) == "linear",
        )
        tf.saved_model.save(module, target, signatures=signatures)
        if labels_dir is not None:
            shutil.rmtree(labels_dir)
        if warmup:
            _write_warmup(tf, target, size=size, channels=channels, model_name=_model_name(base))
        _publish(target, final, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _model_name(base: str) -> str:
    return os.path.basename(os.path.normpath(os.path.abspath(base))) or "model"


def _publish(target: str, final: str, overwrite: bool) -> None:
    """Rename the finished export into place (replacing `final` if asked)."""
    if os.path.exists(final):
        if not overwrite:
            raise FileExistsError(f"Version directory {final!r} appeared during the export.")
        trash = tempfile.mkdtemp(prefix=".old-", dir=os.path.dirname(final))
        old = os.path.join(trash, "version")
        os.rename(final, old)
        os.rename(target, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(target, final)


def _require_serving_api() -> None:
    try:
        from tensorflow_serving.apis import prediction_log_pb2  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "Writing the TF Serving warmup file needs the `tensorflow-serving-api` "
            "package: `pip install keras_resnets[serving]`, or pass `warmup=False`."
        ) from exc


def _serving_module(tf, model, *, channels, size, spec, top_k, labels_path, crop_fraction, softmax):
    """A trackable holding the model's variables and the three signatures."""
    module = tf.__internal__.tracking.AutoTrackable()
    module.variables = list(model.variables)
    height, width = size
    mean = tf.constant(spec["mean"], tf.float32)
    std = tf.constant(spec["std"], tf.float32)
    scale = spec["scale"]
    table = None
    if labels_path is not None:
        module.class_names_asset = tf.saved_model.Asset(labels_path)
        table = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                module.class_names_asset,
                key_dtype=tf.int64,
                key_index=tf.lookup.TextFileIndex.LINE_NUMBER,
                value_dtype=tf.string,
                value_index=tf.lookup.TextFileIndex.WHOLE_LINE,
            ),
            default_value="",
        )
        module.class_names_table = table

    def resize(images):
        # images: float32 [batch, h, w, c] (or [h, w, c]), pixel values in [0, 255].
        if crop_fraction is None:
            return tf.image.resize(images, (height, width), method="bilinear")
        # ImageNet-style evaluation: shorter side to size / crop_fraction
        # (256 for 224 at 0.875), then the central height x width crop.
        shorter = int(round(max(height, width) / crop_fraction))
        shape = tf.cast(tf.shape(images)[-3:-1], tf.float32)
        new = tf.cast(tf.round(shape * (shorter / tf.reduce_min(shape))), tf.int32)
        new = tf.maximum(new, [height, width])
        images = tf.image.resize(images, new, method="bilinear")
        top = (new[0] - height) // 2
        left = (new[1] - width) // 2
        return tf.image.crop_to_bounding_box(images, top, left, height, width)

    def classify(images):
        x = (images * scale - mean) / std
        outputs = tf.cast(model(x, training=False), tf.float32)
        probabilities = tf.nn.softmax(outputs, axis=-1) if softmax else outputs
        scores, indices = tf.math.top_k(probabilities, k=top_k)
        result = {
            "probabilities": probabilities,
            "top_k_indices": indices,
            "top_k_scores": scores,
        }
        if table is not None:
            result["top_k_classes"] = table.lookup(tf.cast(indices, tf.int64))
        return result

    image_shape = [None, None, None, channels]

    @tf.function(input_signature=[tf.TensorSpec(image_shape, tf.float32, name="images")])
    def serve_float(images):
        return classify(resize(images))

    @tf.function(input_signature=[tf.TensorSpec(image_shape, tf.uint8, name="images")])
    def serve_uint8(images):
        return classify(resize(tf.cast(images, tf.float32)))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(image_bytes):
        def decode(data):
            image = tf.io.decode_image(data, channels=channels, expand_animations=False)
            image = tf.cast(image, tf.float32)
            image.set_shape([None, None, channels])
            return resize(image)

        images = tf.map_fn(
            decode,
            image_bytes,
            fn_output_signature=tf.TensorSpec([height, width, channels], tf.float32),
        )
        return classify(images)

    module.serve_float = serve_float
    module.serve_uint8 = serve_uint8
    module.serve_bytes = serve_bytes
    signatures = {
        "serving_default": serve_float.get_concrete_function(),
        "serve_uint8": serve_uint8.get_concrete_function(),
        "serve_bytes": serve_bytes.get_concrete_function(),
    }
    return module, signatures


def _warmup_inputs(tf, size, channels) -> dict[str, dict[str, object]]:
    height, width = size
    pixels = tf.fill([1, height, width, channels], tf.constant(128, tf.uint8))
    png = tf.io.encode_png(pixels[0])
    return {
        "serving_default": {"images": tf.cast(pixels, tf.float32)},
        "serve_uint8": {"images": pixels},
        "serve_bytes": {"image_bytes": tf.reshape(png, [1])},
    }


def _write_warmup(tf, export_dir: str, *, size, channels, model_name: str) -> str:
    """Write one PredictionLog record per signature (TF Serving's warmup format)."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = os.path.join(export_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for signature, inputs in _warmup_inputs(tf, size, channels).items():
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature)
            )
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return path
