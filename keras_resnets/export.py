"""Export a classifier as a SavedModel that TensorFlow Serving loads as is.

`export_saved_model(model, export_base)` writes `export_base/<version>/` with
`saved_model.pb`, `variables/`, `assets/` (class names, when given) and
`assets.extra/tf_serving_warmup_requests`. The version directory appears
atomically: everything is written under a hidden temporary name in the same
parent and renamed at the end, so a server polling `export_base` never sees
a half-written version.

The graph takes raw pixels: decoding (`decode_image`, the same function
the trainer reads image files with), resizing, the optional central crop and
the model's normalisation run inside it, so clients send images as they are.
The served `probabilities` are the model's own outputs; the export adds a
softmax only when told the model returns logits (`outputs="logits"`).

TensorFlow is imported inside the functions only: `import keras_resnets`
stays backend-neutral.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence

import keras

from keras_resnets._optional import require
from keras_resnets.utils import check_int

__all__ = [
    "OUTPUTS",
    "PREPROCESSING",
    "SIGNATURES",
    "decode_image",
    "export_saved_model",
    "list_versions",
    "model_preprocessing",
]

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

# What the model's output is (`outputs=`): served as is, never guessed.
OUTPUTS = ("probabilities", "logits")

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
    from keras_resnets.models.network import Network

    def picked(spec):
        return None if spec is None else {key: spec[key] for key in ("scale", "mean", "std")}

    if isinstance(model, Network):
        return picked(model.preprocessing)
    # The model's own graph (a Sequential keeps it in `_functional`): a call
    # of a Network on the model's input tensor, in this graph only.
    graph = getattr(model, "_functional", None) or model
    inputs = list(getattr(graph, "inputs", None) or [])
    for nodes in getattr(graph, "_nodes_by_depth", {}).values():
        for node in nodes:
            network = node.operation
            if not isinstance(network, Network) or network.preprocessing is None:
                continue
            if any(t is x for t in node.input_tensors for x in inputs):
                return picked(network.preprocessing)
    return None


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


def decode_image(data, channels: int = 3):
    """Decode one encoded image to the pixels Pillow gives, in TensorFlow ops.

    The one decoder of the package: the trainer's image-folder pipeline
    (`training/data.py`) and the export's `serve_bytes` signature both call
    it, so a file reaches a model the same way in training and in serving.
    The result is the RGB pixels of Pillow's `Image.open(f).convert("RGB")`
    (with `channels=1`, of `convert("L")`), for:

    - JPEG (grey, RGB, CMYK), decoded with libjpeg's accurate integer
      DCT and fancy upsampling, as Pillow does; the EXIF orientation tag
      is **not** applied (the pixels as stored, as Pillow's `Image.open`
      and `tf.io.decode_jpeg`);
    - PNG: grey, grey+alpha, RGB, RGBA, palette (with or without
      transparency), 16-bit RGB(A) (the high byte of each sample); alpha is
      dropped, not composited;
    - GIF (the first frame);
    - BMP: 24- and 32-bit, and 1-, 2-, 4- and 8-bit palette BMPs (decoded
      through their colour table here: `tf.io.decode_image` returns the
      palette indices of an 8-bit BMP as grey).

    Refused with an `InvalidArgumentError` that says why: 16-bit grey or
    grey+alpha PNGs (Pillow clips them to 255, TensorFlow keeps the high
    byte, so no answer is the reference one), run-length encoded and
    OS/2 BMPs, other BMP depths, and anything that is not an image.

    Args:
        data: scalar string tensor, the file's bytes.
        channels: 3 (RGB) or 1 (Pillow's `L`: `(19595 R + 38470 G + 7471 B
            + 32768) >> 16`).

    Returns:
        A uint8 tensor `[height, width, channels]`.

    Example:
        >>> pixels = decode_image(tf.io.read_file("cat.bmp"))  # doctest: +SKIP
    """
    tf = require("tensorflow", "`decode_image`", extra="serving")

    if channels not in (1, 3):
        raise ValueError(f"`channels` must be 1 or 3, got {channels!r}.")
    data = tf.convert_to_tensor(data, tf.string)
    # The first 64 bytes (zero-padded), for the format's header fields.
    head = tf.strings.substr(tf.strings.join([data, tf.constant(b"\0" * 64)]), 0, 64)
    head = tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int32)

    def u16(offset):
        return head[offset] + head[offset + 1] * 256

    def u32(offset):
        return u16(offset) + u16(offset + 2) * 65536

    def i32(offset):
        value = tf.cast(u32(offset), tf.int64)
        return tf.cast(tf.where(value >= 2**31, value - 2**32, value), tf.int32)

    magic = tf.strings.substr(data, 0, 8)
    is_jpeg = tf.equal(tf.strings.substr(magic, 0, 3), b"\xff\xd8\xff")
    is_png = tf.equal(magic, b"\x89PNG\r\n\x1a\n")
    is_bmp = tf.equal(tf.strings.substr(magic, 0, 2), b"BM")
    png_grey16 = is_png & tf.equal(head[24], 16) & (tf.equal(head[25], 0) | tf.equal(head[25], 4))
    bpp = u16(28)
    palette_bmp = is_bmp & (bpp <= 8)
    bmp_ok = tf.logical_not(is_bmp) | (
        tf.reduce_any(tf.equal(bpp, [1, 2, 4, 8, 24, 32]))
        & tf.reduce_any(tf.equal(u32(30), [0, 3]))
        & (tf.logical_not(palette_bmp) | (tf.equal(u32(30), 0) & (u32(14) >= 40)))
    )
    checks = [
        tf.debugging.Assert(
            tf.logical_not(png_grey16),
            ["decode_image: 16-bit grey (or grey+alpha) PNG is not supported; save it as 8-bit."],
        ),
        tf.debugging.Assert(
            bmp_ok,
            [
                "decode_image: unsupported BMP (bits per pixel, compression):",
                bpp,
                u32(30),
                "; supported: uncompressed 1/2/4/8-bit palette, 24- and 32-bit.",
            ],
        ),
    ]

    def palette():
        raw = tf.cast(tf.io.decode_raw(data, tf.uint8), tf.int32)
        offset, header, width, height = u32(10), u32(14), i32(18), i32(22)
        count = tf.where(u32(46) > 0, u32(46), tf.bitwise.left_shift(1, bpp))
        table = tf.reshape(raw[14 + header : 14 + header + 4 * count], [count, 4])
        table = tf.stack([table[:, 2], table[:, 1], table[:, 0]], axis=-1)  # BGRx -> RGB
        rows = tf.abs(height)
        row_bytes = (bpp * width + 31) // 32 * 4
        packed = tf.reshape(raw[offset : offset + row_bytes * rows], [rows, row_bytes])
        shifts = tf.range(8 - bpp, -1, -bpp)  # most significant bits first
        index = tf.bitwise.bitwise_and(
            tf.bitwise.right_shift(packed[:, :, None], shifts), tf.bitwise.left_shift(1, bpp) - 1
        )
        index = tf.reshape(index, [rows, -1])[:, :width]
        index = tf.cond(height > 0, lambda: tf.reverse(index, [0]), lambda: index)  # bottom-up
        in_table = tf.debugging.Assert(
            tf.reduce_max(index) < count, ["decode_image: BMP pixel outside its colour table"]
        )
        with tf.control_dependencies([in_table]):
            return tf.cast(tf.gather(table, index), tf.uint8)

    def jpeg():
        return tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")

    def other():
        return tf.io.decode_image(data, channels=3, expand_animations=False)

    with tf.control_dependencies(checks):
        image = tf.cond(is_jpeg, jpeg, lambda: tf.cond(palette_bmp, palette, other))
    image.set_shape([None, None, 3])
    if channels == 1:
        weights = tf.constant([19595, 38470, 7471], tf.int32)
        grey = tf.reduce_sum(tf.cast(image, tf.int32) * weights, axis=-1, keepdims=True)
        image = tf.cast(tf.bitwise.right_shift(grey + 32768, 16), tf.uint8)
    return image


def export_saved_model(
    model: keras.Model,
    export_base: str | os.PathLike,
    version: int | None = None,
    preprocessing: str | Mapping | None = None,
    input_size: int | tuple[int, int] | None = None,
    top_k: int = 5,
    class_names: Sequence[str] | str | os.PathLike | None = None,
    *,
    outputs: str = "probabilities",
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
    `top_k_indices` and `top_k_scores` `[batch, k]`, `top_k_classes`
    when class names are given, and `logits` with `outputs="logits"`):

    - `serving_default`: `images`, float32 `[batch, height, width, channels]`
      with pixel values in [0, 255], any height and width;
    - `serve_uint8`: `images`, the same as uint8;
    - `serve_bytes`: `image_bytes`, string `[batch]` of encoded JPEG, PNG,
      GIF or BMP files (each of its own size), decoded by `decode_image`
      (the trainer's decoder: the RGB pixels of Pillow's
      `Image.open(f).convert("RGB")`, or an error for the kinds it refuses).

    Images are resized bilinearly to `input_size` (or, with `crop_fraction`,
    resized on their shorter side and centrally cropped) and normalised
    (`preprocessing`) inside the graph. The model's output is served as is;
    nothing is inferred from its layers.

    Args:
        model: a classifier: one image input, one `(batch, classes)` output.
        export_base: the model's directory in the server's model base path.
        version: the version number (an int >= 0). Default: one above the
            highest version present, or 1.
        preprocessing: how pixels in [0, 255] become model inputs, as
            `(pixels * scale - mean) / std`. None (the default): the
            normalisation the model carries (`model_preprocessing(model)`,
            set by the trainer and by pretrained weights, kept in the
            `.keras` file); a `ValueError` when it carries none. Or
            `"unit"` ([0, 1]), `"torch"` (ImageNet mean and std on
            [0, 1]), `"tf"` ([-1, 1]), `"none"` (raw [0, 255]), or a dict
            with `scale`, `mean` and `std` (per channel or one value).
        outputs: what the model returns. `"probabilities"` (the default,
            as `classifier_activation="softmax"` builds): served as is as
            `probabilities`. `"logits"` (a model built with
            `classifier_activation=None`): served as is as `logits`, and
            the export adds `probabilities = softmax(logits)`. Top-k ranks
            the probabilities.
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
        RuntimeError: Keras runs on another backend than TensorFlow.
        FileExistsError: the version exists and `overwrite` is False.
        ValueError: a bad argument (named in the message), or a model that is
            not a classifier.

    Example:
        >>> model = keras_resnets.ResNet20()
        >>> keras_resnets.export_saved_model(model, "/tmp/models/resnet20")  # doctest: +SKIP
        '/tmp/models/resnet20/1'
    """
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "export_saved_model needs the TensorFlow backend (KERAS_BACKEND=tensorflow); this "
            f"process runs Keras on {keras.backend.backend()!r}. Save the model with "
            "`model.save('model.keras')` and export it from a TensorFlow-backend process."
        )
    tf = require("tensorflow", "Exporting a SavedModel", extra="serving")

    channels, classes = _check_model(model)
    if outputs not in OUTPUTS:
        raise ValueError(
            f"`outputs` must be one of {', '.join(repr(o) for o in OUTPUTS)} (what the model "
            f"returns), got {outputs!r}."
        )
    if preprocessing is None:
        preprocessing = _model_preprocessing_or_error(model)
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
            logits=outputs == "logits",
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


def _serving_module(tf, model, *, channels, size, spec, top_k, labels_path, crop_fraction, logits):
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
        # The model's output as is; a softmax only when told it is logits.
        probabilities = tf.nn.softmax(outputs, axis=-1) if logits else outputs
        scores, indices = tf.math.top_k(probabilities, k=top_k)
        result = {
            "probabilities": probabilities,
            "top_k_indices": indices,
            "top_k_scores": scores,
        }
        if logits:
            result["logits"] = outputs
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
            image = tf.cast(decode_image(data, channels=channels), tf.float32)
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
