"""Train a model from a recipe: `python -m training.train --recipe NAME`.

The command line, and `build_training_model` (the recipe's model, or the one to
transfer from). The run itself is `training.runner.run` (re-exported here as
`training.train.run`), the recipe with the flags applied
`training.options.resolve`, the flags one table, `training.flags`. The
trainer is Keras's own `model.fit` inside a `tf.distribute` strategy, with a
step-indexed input pipeline, resumable backups, a NaN stop, CSV and
TensorBoard logs, and a fully resolved `config.yaml`, `metrics.json` and
`model.keras` in the output directory. See docs/training.md.

Example:
    python -m training.train --recipe digits_resnet20
    python -m training.train --recipe cifar10_resnet110 --strategy mirrored
    python -m training.train --list-recipes
"""

from __future__ import annotations

import argparse
import sys

from training import config as config_lib
from training.flags import FLAG_TABLE, FLAGS, add_flags
from training.options import (
    BACKENDS,
    SMOKE_BUDGET,
    SMOKE_ENV,
    resolve,
    select_backend,
    smoke_budget,
)
from training.rundir import default_output_dir
from training.runner import _mixed_precision_policy, run  # noqa: F401 (tests import it here)

__all__ = [
    "BACKENDS",
    "FLAGS",
    "SMOKE_BUDGET",
    "SMOKE_ENV",
    "build_training_model",
    "main",
    "resolve",
    "run",
    "select_backend",
    "smoke_budget",
]


def build_training_model(cfg: dict, num_classes: int, channels: int):
    """Build the recipe's model, or load the one to transfer from.

    With `transfer.from` (`--transfer-from PATH.keras`) the trained model is
    loaded instead, given a new classifier (`--new-classes N`) and frozen up
    to a stage (`--freeze-until STAGE`); see docs/transfer_learning.md.
    Otherwise the recipe's model is built (a run checks the name and options
    before any data loads, `training.runner`; a direct call checks them here).

    Args:
        cfg: resolved config (`model.name`, `model.options`, `data.image_size`).
        num_classes: classifier width.
        channels: input channels.

    Returns:
        A functional `keras.Model`.

    Raises:
        ValueError: unknown model name (with the closest names) or an option
            the builder does not take.
    """
    import keras_resnets

    transfer = cfg["transfer"]
    if transfer["from"] is not None:
        from training.transfer import transfer_model

        return transfer_model(
            transfer["from"],
            num_classes=num_classes,
            channels=channels,
            image_size=cfg["data"]["image_size"],
            new_classes=transfer["new_classes"],
            freeze_until=transfer["freeze_until"],
            freeze_batchnorm=transfer["freeze_batchnorm"],
        )
    name = cfg["model"]["name"]
    options = dict(cfg["model"]["options"])
    size = cfg["data"]["image_size"]
    if name in keras_resnets.list_models():
        builder = keras_resnets.get_model
        args: tuple = (name,)
    elif name[:1].isupper() and callable(getattr(keras_resnets, name, None)):
        builder, args = getattr(keras_resnets, name), ()
    else:
        keras_resnets.models.model_info(name)  # raises with the closest names
        raise AssertionError  # pragma: no cover
    try:
        return builder(*args, classes=num_classes, input_shape=(size, size, channels), **options)
    except TypeError as error:
        raise ValueError(
            f"Model {name!r} does not accept the recipe's options {options}: {error}"
        ) from error


def _parser() -> argparse.ArgumentParser:
    """The command line: the recipe, the output folder, the flags of `training.flags`."""
    description = "Train a keras_resnets model from a recipe (docs/training.md)."
    parser = argparse.ArgumentParser(
        prog="python -m training.train", description=description, epilog=EXIT_CODES_EPILOG
    )
    parser.add_argument("--recipe", help="recipe name (see --list-recipes) or YAML path")
    parser.add_argument("--list-recipes", action="store_true", help="list recipes and exit")
    parser.add_argument(
        "--output-dir", help="default: runs/<recipe> (runs/<recipe>-transfer with --transfer-from)"
    )
    add_flags(parser)
    parser.add_argument(
        "--backend",
        choices=list(BACKENDS),
        help="Keras backend (default: $KERAS_BACKEND, else tensorflow); see docs/backends.md",
    )
    parser.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a recipe key (repeatable)"
    )
    return parser


def list_recipes_table() -> str:
    """One line per recipe: name, description, and the paper and its reported error."""
    lines = []
    for name in config_lib.list_recipes():
        recipe = config_lib.load_recipe(name)
        line = f"{name:40s} {recipe['description']}"
        if recipe["paper"]:
            line += f" [{recipe['paper']}"
            if recipe["reference_error"] is not None:
                line += f": {recipe['reference_error']:g}% error"
            line += "]"
        lines.append(line)
    return "\n".join(lines)


#: The `--help` epilog of the trainer's commands. The codes are
#: `keras_resnets.utils.EXIT_CODES` (not imported here: that imports Keras
#: before `--backend` is applied).
EXIT_CODES_EPILOG = (
    "Exit status: each code and what to do after it are listed in docs/training.md, "
    "'Exit codes' (keras_resnets.utils.EXIT_CODES)."
)


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (`keras_resnets.utils.EXIT_CODES`).

    0 completed, 2 a bad flag, key or value (nothing started), 3 stopped on a
    NaN loss, 4 a data error, 5 a file that could not be read or written, 6
    another run holds the output directory; docs/training.md, "Exit codes".
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list_recipes:
        print(list_recipes_table())
        return 0
    if not args.recipe:
        parser.error("--recipe is required (or --list-recipes)")
    backend_error = None
    if args.backend:  # before anything imports Keras (keras_resnets does)
        try:
            select_backend(args.backend)
        except ValueError as error:
            backend_error = error
    from keras_resnets.utils import EXIT_CODES, OutputDirectoryBusy, cli_error

    if backend_error is not None:
        return cli_error(backend_error)
    try:
        overrides = config_lib.parse_set_flags(args.set)
        if args.cpu_devices:
            from training.distribute import configure_cpu_devices

            configure_cpu_devices(args.cpu_devices)
        transfer_from = args.transfer_from or (overrides or {}).get("transfer.from")
        output_dir = args.output_dir or default_output_dir(args.recipe, transfer_from)
        result = run(
            args.recipe,
            output_dir=output_dir,
            overrides=overrides,
            **{flag.name: getattr(args, flag.name) for flag in FLAG_TABLE},
        )
    except (ValueError, OSError, OutputDirectoryBusy) as error:
        return cli_error(error)
    return EXIT_CODES[result["status"]]


if __name__ == "__main__":
    sys.exit(main())
