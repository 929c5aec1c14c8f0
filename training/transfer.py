"""Start a training run from a trained model: `--transfer-from`, `--freeze-until`, `--new-classes`.

The trainer calls `transfer_model` instead of building a fresh network; it
loads the `.keras` file, puts a new classifier on it when asked, and freezes
the backbone up to a stage (see docs/transfer_learning.md).
"""

from __future__ import annotations

import os


def transfer_model(
    path: str,
    *,
    num_classes: int,
    channels: int,
    image_size: int | None = None,
    new_classes: int | None = None,
    freeze_until: str | None = None,
    freeze_batchnorm: bool = True,
):
    """Load a trained model for fine-tuning on a new data set.

    Args:
        path: the trained model, a `.keras` file (e.g. a run's `model.keras`).
        num_classes: the number of classes of the new data.
        channels: the channels of the new images.
        image_size: the new images' height and width (checked against a
            model with a fixed input size).
        new_classes: replace the classifier with a fresh one of this many
            classes (must equal `num_classes`). None keeps the trained
            classifier, which then must already have `num_classes` outputs.
        freeze_until: freeze the stem and the stages up to this one
            (`"stem"`, `"stage4"`, `"all"`, ...); None freezes nothing.
        freeze_batchnorm: see `keras_resnets.freeze`.

    Returns:
        A functional `keras.Model` (uncompiled), rebuilt under the current
        dtype policy (`keras.config.dtype_policy()`, which the trainer sets
        from `--mixed-precision`) with the trained weights: the backbone
        computes in that policy and the classifier in float32.

    Raises:
        ValueError: the file is missing or unreadable (named), or the model
            does not fit the data (input size, channels, classes).

    Example:
        >>> model = transfer_model("runs/digits/model.keras", num_classes=5,
        ...                        channels=3, new_classes=5, freeze_until="all")
    """
    import keras

    import keras_resnets

    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"`transfer_from` must be a .keras file, got {path!r}.")
    if not os.path.isfile(path):
        raise ValueError(f"`transfer_from` file {path!r} does not exist.")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - any loading failure names the file
        raise ValueError(f"`transfer_from` file {path!r} cannot be loaded: {exc}") from exc
    # A .keras file restores each layer's dtype policy as it was saved; the run
    # computes in its own policy (`--mixed-precision`), classifier in float32.
    model = keras_resnets.with_dtype_policy(model, keras.config.dtype_policy())

    height, width, have_channels = model.input_shape[1:]
    if have_channels != channels:
        raise ValueError(
            f"The model in {path!r} takes {have_channels}-channel images; the data has "
            f"{channels} channels."
        )
    if image_size is not None:
        for have in (height, width):
            if have is not None and have != image_size:
                raise ValueError(
                    f"The model in {path!r} takes {height}x{width} images; the data is "
                    f"{image_size}x{image_size} (set data.image_size to match)."
                )
    if new_classes is not None:
        if new_classes != num_classes:
            raise ValueError(
                f"`new_classes` is {new_classes} but the data has {num_classes} classes."
            )
        activation = model.layers[-1].get_config().get("activation", "softmax")
        model = keras_resnets.replace_head(
            model, new_classes, classifier_activation=activation or "softmax"
        )
    elif model.output_shape[-1] != num_classes:
        raise ValueError(
            f"The model in {path!r} has {model.output_shape[-1]} classes and the data "
            f"{num_classes}: pass `--new-classes {num_classes}` to put a new classifier on it."
        )
    if freeze_until is not None:
        keras_resnets.freeze(model, until=freeze_until, freeze_batchnorm=freeze_batchnorm)
    return model
