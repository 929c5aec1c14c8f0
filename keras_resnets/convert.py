"""Convert a PyTorch checkpoint into a Keras weights file.

Usage::

    python -m keras_resnets.convert resnet50.safetensors resnet50.weights.h5 --model ResNet50
    python -m keras_resnets.convert finetuned.pth model.keras --model ResNet18 --classes 10

SRC is a torchvision/timm-layout checkpoint (`.safetensors`, or `.pth`/`.pt`
with PyTorch installed); DST a `.weights.h5` (for `weights=` or
`model.load_weights`) or `.keras` (a whole model for `keras.models.load_model`).
The file is written under a temporary name and renamed when complete, with
the usual mode of a new file; an existing DST is refused unless
`--overwrite` is given.
"""

from __future__ import annotations

import argparse
import os
import sys

from keras_resnets.utils import atomic_write, cli_error, int_flag

__all__ = ["convert", "main"]


def convert(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    model_name: str,
    *,
    classes: int | None = None,
    include_top: bool = True,
    overwrite: bool = False,
):
    """Convert `source` into `destination` for the registered model `model_name`.

    Args:
        source: `.safetensors`, `.pth` or `.pt` checkpoint.
        destination: `.weights.h5` or `.keras` path.
        model_name: a name from `keras_resnets.list_models()`.
        classes: classifier width (default: the model's, 1000 for ImageNet);
            for checkpoints fine-tuned to another number of classes.
        include_top: False for checkpoints without the classifier.
        overwrite: replace an existing `destination` (default: refuse it).

    Returns:
        The converted `keras.Model`.

    Raises:
        TypeError: `source` or `destination` is not a path.
        ValueError: a bad suffix, a missing directory, an unknown model
            name, or a checkpoint that does not match the model (naming the
            first mismatch).
        FileExistsError: `destination` exists and `overwrite` is False.
        PermissionError: `destination`'s directory is not writable.
        All are raised before anything is converted or written.

    Example:
        >>> convert("resnet18.safetensors", "resnet18.weights.h5", "ResNet18")  # doctest: +SKIP
    """
    from keras_resnets.models.registry import get_model
    from keras_resnets.utils import check_bool
    from keras_resnets.weights import check_path, load_torch_checkpoint

    source = check_path("source", source)
    destination = check_path("destination", destination)
    check_bool("overwrite", overwrite)
    if not destination.endswith((".weights.h5", ".keras")):
        raise ValueError(f"DST must end in .weights.h5 or .keras, got {destination!r}.")
    directory = os.path.dirname(os.path.abspath(destination))
    if not os.path.isdir(directory):
        raise ValueError(f"DST directory {directory!r} does not exist.")
    if os.path.isdir(destination):
        raise ValueError(f"DST {destination!r} is a directory; give a file name.")
    if os.path.exists(destination) and not overwrite:
        raise FileExistsError(
            f"DST {destination!r} already exists; pass --overwrite (`overwrite=True`) to "
            "replace it, or choose another name."
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"DST directory {directory!r} is not writable: {destination!r}.")
    kwargs = {"include_top": include_top}
    if classes is not None:
        kwargs["classes"] = classes
    model = get_model(model_name, **kwargs)
    load_torch_checkpoint(model, source)
    with atomic_write(destination) as temporary:
        if destination.endswith(".keras"):
            model.save(temporary)
        else:
            model.save_weights(temporary)
    return model


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m keras_resnets.convert",
        description="Convert a torchvision/timm PyTorch checkpoint into a Keras weights file.",
    )
    parser.add_argument("src", help="checkpoint: .safetensors, or .pth/.pt (needs PyTorch)")
    parser.add_argument("dst", help="output: .weights.h5 or .keras")
    parser.add_argument("--model", required=True, help="model name, e.g. ResNet50")
    parser.add_argument("--classes", type=int_flag(1), default=None, help="classifier width")
    parser.add_argument("--no-top", action="store_true", help="the checkpoint has no classifier")
    parser.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    args = parser.parse_args(argv)
    try:
        model = convert(
            args.src,
            args.dst,
            args.model,
            classes=args.classes,
            include_top=not args.no_top,
            overwrite=args.overwrite,
        )
    except FileExistsError as exc:  # DST exists: choose another or --overwrite
        return cli_error(str(exc))  # a usage error, exit 2
    except (ValueError, TypeError, ImportError, OSError) as exc:
        return cli_error(exc)  # a usage error exits 2, an unwritable DST (OSError) 5
    print(f"Wrote {args.dst}: {model.name}, {model.count_params():,} weights converted.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
