"""Export a trained `.keras` model for TensorFlow Serving.

    python -m training.export --model runs/demo/model.keras \\
        --export-base /srv/models/resnet20 [--version N]

writes `/srv/models/resnet20/<N>/` (N defaults to one above the highest
version present) atomically, normalising pixels as the model was trained
(the `preprocessing` a trained `.keras` file carries) unless told otherwise;
see docs/deployment.md. A bad flag or value prints `error: ...` and exits 2,
a file that cannot be read or written exits 5 (`keras_resnets.utils.EXIT_CODES`).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys


def _input_size(text: str):
    parts = text.lower().replace("x", ",").split(",")
    try:
        values = [int(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--input-size must be N or HxW, got {text!r}") from None
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return tuple(values)
    raise argparse.ArgumentTypeError(f"--input-size must be N or HxW, got {text!r}")


def _floats(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None
    if not all(math.isfinite(value) for value in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers (no nan or inf), got {text!r}")
    return values


#: `export_saved_model`'s arguments and the flags that give them.
ARGUMENT_FLAGS = {
    "export_base": "--export-base",
    "version": "--version",
    "preprocessing": "--preprocessing",
    "preprocessing[": "--mean/--std",
    "input_size": "--input-size",
    "outputs": "--outputs",
    "top_k": "--top-k",
    "class_names": "--class-names",
    "crop_fraction": "--crop-fraction",
    "overwrite": "--overwrite",
}


def _naming_the_flag(error: BaseException) -> BaseException:
    """`error` with its message led by the flag of the argument it names.

    `export_saved_model` names its arguments (`top_k`); the command line's
    user typed `--top-k`: "--top-k: `top_k` must be an integer >= 1, got 0."
    """
    message = str(error)
    match = re.search(r"`(\w+\[?)", message)
    flag = ARGUMENT_FLAGS.get(match.group(1)) if match else None
    if flag is None:
        return error
    try:
        return type(error)(f"{flag}: {message}")
    except TypeError:  # an exception class that takes other arguments
        return error


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of `python -m training.export`."""
    from keras_resnets.export import OUTPUTS, PREPROCESSING

    parser = argparse.ArgumentParser(
        prog="python -m training.export",
        description="Export a .keras classifier as a versioned SavedModel for TF Serving.",
    )
    parser.add_argument("--model", required=True, help="the trained model, a .keras file")
    parser.add_argument(
        "--export-base",
        required=True,
        help="the model's directory under the server's model base path; "
        "the version is written inside it",
    )
    parser.add_argument(
        "--version", type=int, default=None, help="version number (default: highest + 1)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the version if it exists")
    parser.add_argument(
        "--preprocessing",
        default=None,
        choices=sorted(PREPROCESSING),
        help="pixel normalisation done in the graph (default: the one the model carries, "
        "set by the trainer and by pretrained weights; an error if it carries none)",
    )
    parser.add_argument(
        "--outputs",
        default="probabilities",
        choices=list(OUTPUTS),
        help="what the model returns: probabilities (default, served as is) or logits "
        "(served as is as `logits`, with probabilities = softmax(logits) added)",
    )
    parser.add_argument(
        "--mean",
        type=_floats,
        default=None,
        help="per-channel mean on the [0, 1] scale, e.g. 0.43,0.43,0.43 (with --std: "
        "(pixels / 255 - mean) / std; replaces --preprocessing and the model's own)",
    )
    parser.add_argument(
        "--std", type=_floats, default=None, help="per-channel std on the [0, 1] scale"
    )
    parser.add_argument(
        "--input-size",
        type=_input_size,
        default=None,
        help="resize images to N or HxW (default: the model's input size)",
    )
    parser.add_argument(
        "--crop-fraction",
        type=float,
        default=None,
        help="ImageNet-style: resize the shorter side to size / F, then center-crop "
        "(0.875 = resize 256, crop 224)",
    )
    parser.add_argument("--top-k", type=int, default=5, help="top classes returned (default 5)")
    parser.add_argument(
        "--class-names", default=None, help="a text file with one class name per line"
    )
    parser.add_argument(
        "--no-warmup",
        action="store_true",
        help="do not write assets.extra/tf_serving_warmup_requests",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the export command; returns the exit status."""
    args = build_parser().parse_args(argv)
    from keras_resnets.utils import check_keras_file, cli_error

    if not args.model.endswith(".keras"):
        return cli_error(f"--model must be a .keras file, got {args.model!r}")
    if not os.path.isfile(args.model):
        return cli_error(f"--model file {args.model!r} does not exist")

    preprocessing = args.preprocessing  # None: the model's own
    if args.mean is not None and args.preprocessing is not None:
        return cli_error("--mean/--std and --preprocessing exclude each other")
    if (args.mean is None) != (args.std is None):
        return cli_error("--mean and --std go together")
    if args.mean is not None:
        preprocessing = {"scale": 1.0 / 255.0, "mean": args.mean, "std": args.std}

    import keras

    import keras_resnets  # noqa: F401  (registers the custom layers)

    try:
        check_keras_file("--model file", args.model)
    except OSError as error:
        return cli_error(error)
    try:
        model = keras.models.load_model(args.model)
    except Exception as exc:  # noqa: BLE001 - any loading failure names the file
        # a file that cannot be read (truncated, corrupt): an I/O error
        return cli_error(OSError(f"cannot load --model {args.model!r}: {exc}"))
    try:
        path = keras_resnets.export_saved_model(
            model,
            args.export_base,
            version=args.version,
            preprocessing=preprocessing,
            input_size=args.input_size,
            outputs=args.outputs,
            top_k=args.top_k,
            class_names=args.class_names,
            crop_fraction=args.crop_fraction,
            overwrite=args.overwrite,
            warmup=not args.no_warmup,
        )
    except FileExistsError as exc:  # the version exists: choose another or --overwrite
        return cli_error(str(exc))  # a usage error, exit 2
    except (ValueError, TypeError, OSError, ImportError, RuntimeError) as exc:
        # a usage error (a bad value, another backend than TensorFlow) exits 2,
        # an I/O error (OSError) 5
        return cli_error(_naming_the_flag(exc))
    print(f"exported {args.model} to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
