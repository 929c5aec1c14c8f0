"""Convert a PyTorch checkpoint into a Keras weights file.

Usage::

    python -m keras_resnets.convert resnet50.safetensors resnet50.weights.h5 --model ResNet50
    python -m keras_resnets.convert finetuned.pth model.keras --model ResNet18 --classes 10

SRC is a torchvision/timm-layout checkpoint (`.safetensors`, or `.pth`/`.pt`
with PyTorch installed); DST a `.weights.h5` (for `weights=` or
`model.load_weights`) or `.keras` (a whole model for `keras.models.load_model`).
The file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import argparse
import os
import sys

from keras_resnets.utils import atomic_write, cli_error

__all__ = ["convert", "main"]


def convert(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    model_name: str,
    *,
    classes: int | None = None,
    include_top: bool = True,
):
    """Convert `source` into `destination` for the registered model `model_name`.

    Args:
        source: `.safetensors`, `.pth` or `.pt` checkpoint.
        destination: `.weights.h5` or `.keras` path.
        model_name: a name from `keras_resnets.list_models()`.
        classes: classifier width (default: the model's, 1000 for ImageNet);
            for checkpoints fine-tuned to another number of classes.
        include_top: False for checkpoints without the classifier.

    Returns:
        The converted `keras.Model`.

    Raises:
        ValueError: a bad path or suffix, an unknown model name, or a
            checkpoint that does not match the model (naming the first
            mismatch).

    Example:
        >>> convert("resnet18.safetensors", "resnet18.weights.h5", "ResNet18")  # doctest: +SKIP
    """
    from keras_resnets.models.registry import get_model
    from keras_resnets.weights import load_torch_checkpoint

    destination = os.fspath(destination)
    if not destination.endswith((".weights.h5", ".keras")):
        raise ValueError(f"DST must end in .weights.h5 or .keras, got {destination!r}.")
    directory = os.path.dirname(os.path.abspath(destination))
    if not os.path.isdir(directory):
        raise ValueError(f"DST directory {directory!r} does not exist.")
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
    parser.add_argument("--classes", type=int, default=None, help="classifier width")
    parser.add_argument("--no-top", action="store_true", help="the checkpoint has no classifier")
    args = parser.parse_args(argv)
    try:
        model = convert(
            args.src, args.dst, args.model, classes=args.classes, include_top=not args.no_top
        )
    except (ValueError, ImportError) as exc:
        return cli_error(exc)
    print(f"Wrote {args.dst}: {model.name}, {model.count_params():,} weights converted.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
