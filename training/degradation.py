"""`python -m training.degradation`: the degradation experiment (He et al. 2015, Figure 6).

Trains plain and residual networks with one trainer recipe
(`training.train.run`) and plots training and held-out error per epoch,
plain networks dashed, ResNets solid. Writes `degradation.png`,
`degradation.csv` and `degradation.json` into `--output-dir` (default
`runs/analysis`; each run's own folder under `runs/<model>/`) and prints a
short table. `keras-resnets analysis degradation` runs it with the same
arguments; it lives with the trainer because it trains through it, and the
library (`python -m keras_resnets.analysis`, the other experiments) never
imports `training/`. See docs/analysis.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys

from keras_resnets._optional import require
from keras_resnets.analysis.report import add_common_arguments, print_table, write_outputs
from keras_resnets.utils import cli_error, int_flag

#: The plain/residual pairs of the paper's Figure 6, on the CIFAR networks.
DEFAULT_MODELS = ["Plain20", "Plain56", "ResNet20", "ResNet56"]


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments (those of `keras-resnets analysis degradation`)."""
    parser = argparse.ArgumentParser(
        prog="python -m training.degradation",
        description="Train plain and residual networks with one recipe, plot their error.",
    )
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument(
        "--recipe", default="digits_resnet20", help="trainer recipe for every model"
    )
    parser.add_argument("--epochs", type=int_flag(1), default=None, help="default: the recipe's")
    parser.add_argument(
        "--batch-size", type=int_flag(1), default=None, help="default: the recipe's"
    )
    parser.add_argument("--set", action="append", help="recipe override key=value (repeatable)")
    add_common_arguments(parser, train=False)
    return parser


def cmd_degradation(args: argparse.Namespace) -> int:
    """Train `args.models` with `args.recipe`, then write the figure, the numbers and a table.

    Returns:
        0.

    Raises:
        ImportError: PyYAML or TensorFlow is missing (the message names `[train]`).
        ValueError: a bad `--set` item, recipe, model or override (named).
    """
    purpose = "The degradation command (it trains through `training.train.run`)"
    require("yaml", purpose, extra="train")
    require("tensorflow", purpose, extra="train")
    from keras_resnets.analysis.plots import plot_degradation
    from training.config import parse_set_flags
    from training.options import resolve
    from training.runner import check_model
    from training.train import run

    overrides = parse_set_flags(args.set)  # YAML rules, as the trainer's --set
    # --seed is the runs' seed (weights, shuffling, augmentation), as for the other commands;
    # an explicit --set train.seed=... wins.
    overrides.setdefault("train.seed", args.seed)
    # Every model's name, options and flags first: a misspelt last model is not
    # found after the others have trained.
    flags = {"epochs": args.epochs, "batch_size": args.batch_size, "overrides": overrides}
    for name in args.models:
        with contextlib.redirect_stdout(io.StringIO()):  # each run says its budget again
            check_model(resolve(args.recipe, model=name, **flags))
    histories, rows, runs = {}, [], {}
    for name in args.models:
        result = run(
            args.recipe,
            model=name,
            epochs=args.epochs,
            batch_size=args.batch_size,
            output_dir=os.path.join(args.output_dir, "runs", name),
            overrides=overrides,
        )
        history = {k: [float(v) for v in vs] for k, vs in result["history"].items()}
        histories[name] = history
        runs[name] = {
            "output_dir": result.get("output_dir"),
            "model_path": result.get("model_path"),
            "test_accuracy": result.get("test_accuracy"),
            "history": history,
        }
        rows.append(
            {
                "model": name,
                "epochs": len(history.get("accuracy", [])),
                "train_error": 1 - history["accuracy"][-1],
                "val_error": 1 - history["val_accuracy"][-1]
                if history.get("val_accuracy")
                else None,
                "test_error": 1 - result["test_accuracy"]
                if result.get("test_accuracy") is not None
                else None,
            }
        )
    png = plot_degradation(
        histories,
        os.path.join(args.output_dir, "degradation.png"),
        title=f"recipe {args.recipe}: plain (dashed) vs residual (solid)",
    )
    write_outputs(args.output_dir, "degradation", rows, {"recipe": args.recipe, "runs": runs})
    print_table(rows)
    print(f"wrote {png}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns 0, or the status of its error (`utils.EXIT_CODES`).

    2 for bad input (a bad flag value stops argparse, naming the flag) or a
    missing extra, 4 for data that cannot train (`DataError`), 5 for a file
    that cannot be read or written.
    """
    args = build_parser().parse_args(argv)
    try:
        return cmd_degradation(args)
    except (ValueError, ImportError, OSError) as exc:  # ImportError: a missing extra
        return cli_error(exc)


if __name__ == "__main__":
    sys.exit(main())
