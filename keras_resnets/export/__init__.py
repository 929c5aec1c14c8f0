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

The package: `checks` (argument checks; `model_preprocessing`, the
normalisation a `keras_resnets.Network` records, and `model_evaluation`, the
size and crop its pretrained checkpoint records), `decode` (`decode_image`),
`serving` (the graph, a `keras.export.ExportArchive` with the three
signatures, and the warmup file); this module writes the version directory.
TensorFlow is imported inside the functions only: `import keras_resnets`
stays backend-neutral.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence

import keras

from keras_resnets.export.checks import (
    OUTPUTS,
    PREPROCESSING,
    _check_class_names,
    _check_export_base,
    _check_model,
    _model_preprocessing_or_error,
    _resolve_preprocessing,
    _resolve_size,
    model_evaluation,
    model_preprocessing,
)
from keras_resnets.export.decode import decode_image
from keras_resnets.export.serving import (
    SIGNATURES,
    WARMUP_FILE,
    require_serving_api,
    serving_archive,
    write_warmup,
)
from keras_resnets.utils import check_bool, check_int, check_number

__all__ = [
    "OUTPUTS",
    "PREPROCESSING",
    "SIGNATURES",
    "WARMUP_FILE",
    "decode_image",
    "export_saved_model",
    "list_versions",
    "model_evaluation",
    "model_preprocessing",
    "temporary_patterns",
]

CLASS_NAMES_FILE = "class_names.txt"

# The export's hidden temporaries in `export_base` (TF Serving ignores names
# that are not numbers): the version being written, a replaced one on its way out.
_WRITING_PREFIX = ".{version}.tmp-"
_REPLACED_PREFIX = ".old-"


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


def temporary_patterns(export_base: str | os.PathLike) -> list[str]:
    """`glob` patterns of the hidden temporaries an interrupted export leaves in `export_base`.

    Example:
        >>> keras_resnets.export.temporary_patterns("runs/r20/saved_model")
        ['runs/r20/saved_model/.[0-9]*.tmp-*', 'runs/r20/saved_model/.old-*']
    """
    base = glob.escape(os.fspath(export_base))
    return [
        os.path.join(base, _WRITING_PREFIX.format(version="[0-9]*") + "*"),
        os.path.join(base, _REPLACED_PREFIX + "*"),
    ]


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
            pair). Default: the model's input size; for a model of any size,
            the evaluation size of its pretrained checkpoint when
            `preprocessing` is the model's own (`model_evaluation(model)`),
            else required.
        top_k: how many top classes to return (at most the number of classes).
        class_names: one name per class (a list, or the path of a text file
            with one name per line); adds `top_k_classes` and
            `assets/class_names.txt`.
        crop_fraction: ImageNet-style evaluation: resize the shorter side
            to `input_size / crop_fraction` keeping the aspect ratio, then
            take the central `input_size` crop (0.875: "resize 256, crop
            224", as the trainer evaluates). None (default): the crop of the
            model's pretrained checkpoint when `preprocessing` is the
            model's own and the model carries one (`model_evaluation(model)`:
            0.875 for torchvision's weights, 1.0 for `a1_in1k`...), else
            resize to `input_size` directly.
        overwrite: replace an existing version instead of raising.
        warmup: write `assets.extra/tf_serving_warmup_requests` (needs the
            `tensorflow-serving-api` package: `pip install keras_resnets[serving]`).

    Returns:
        The path of the version directory written.

    Raises:
        RuntimeError: Keras runs on another backend than TensorFlow.
        FileExistsError: the version exists and `overwrite` is False.
        ValueError, TypeError: a bad argument, named in the message (a NaN or
            infinite `preprocessing` value, duplicate or empty class names,
            an `export_base` that is not a directory path...), or a model
            that is not a classifier. Every argument is checked before
            anything is traced or written.

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
    channels, classes = _check_model(model)
    base = _check_export_base(export_base)
    if outputs not in OUTPUTS:
        raise ValueError(
            f"`outputs` must be one of {', '.join(repr(o) for o in OUTPUTS)} (what the model "
            f"returns), got {outputs!r}."
        )
    evaluation = None
    if preprocessing is None:
        preprocessing = _model_preprocessing_or_error(model)
        evaluation = model_evaluation(model)  # the pretrained checkpoint's own size and crop
    spec = _resolve_preprocessing(preprocessing, channels)
    if evaluation is not None:
        if input_size is None and None in tuple(model.input_shape[1:3]):
            input_size = evaluation["input_size"]
        if crop_fraction is None:
            crop_fraction = evaluation["crop_pct"]
    size = _resolve_size(model, input_size)
    check_int("top_k", top_k, minimum=1)
    top_k = min(top_k, classes)
    names = _check_class_names(class_names, classes)
    crop_fraction = check_number(
        "crop_fraction", crop_fraction, minimum=0, maximum=1, low_open=True, optional=True
    )
    overwrite = check_bool("overwrite", overwrite)
    warmup = check_bool("warmup", warmup)
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
        require_serving_api()

    os.makedirs(base, exist_ok=True)
    # A hidden, non-numeric name in the same directory: TF Serving ignores it,
    # and the final rename stays on one file system (atomic).
    tmp = tempfile.mkdtemp(prefix=_WRITING_PREFIX.format(version=version), dir=base)
    try:
        labels_dir = None
        if names is not None:
            labels_dir = tempfile.mkdtemp(prefix="class-names-", dir=tmp)
            with open(os.path.join(labels_dir, CLASS_NAMES_FILE), "w", encoding="utf-8") as f:
                f.write("\n".join(names) + "\n")
        target = os.path.join(tmp, "model")
        archive = serving_archive(
            model,
            channels=channels,
            size=size,
            spec=spec,
            top_k=top_k,
            labels_path=None if labels_dir is None else os.path.join(labels_dir, CLASS_NAMES_FILE),
            crop_fraction=None if crop_fraction is None else float(crop_fraction),
            logits=outputs == "logits",
        )
        archive.write_out(target, verbose=False)
        if labels_dir is not None:
            shutil.rmtree(labels_dir)
        if warmup:
            write_warmup(target, size=size, channels=channels, model_name=_model_name(base))
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
        trash = tempfile.mkdtemp(prefix=_REPLACED_PREFIX, dir=os.path.dirname(final))
        old = os.path.join(trash, "version")
        os.rename(final, old)
        os.rename(target, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(target, final)
