"""`keras-resnets <command> [args]`: one console command for the package's tools.

Commands:
    train     train a registered model with a recipe      (python -m training.train)
    tune      hyperparameter search over a recipe          (python -m training.tune)
    export    a trained .keras model -> TF Serving export  (python -m training.export)
    convert   torchvision/timm checkpoint -> Keras weights (python -m keras_resnets.convert)
    analysis  degradation, lesion, paths, gradients        (python -m keras_resnets.analysis;
              `analysis degradation` trains: python -m training.degradation)
    models    list the registered models (--table: the Markdown zoo table)

Each command forwards its arguments to the `main()` of the `python -m` form
named beside it, which keeps working; `keras-resnets <command> --help` shows
that command's options. `train`, `tune` and `export` need TensorFlow and the
trainer's packages: `pip install 'keras_resnets[train]'` (`[tune]`, `[serving]`);
a missing one is reported with the extra to install, exit status 2.

Exit status: the command's own (`keras_resnets.utils.EXIT_CODES`); each
code and what to do after it: docs/training.md, "Exit codes".

The command lives with the trainer (`training.cli:main` in setup.cfg): it
forwards to trainer modules, and the library never imports `training/`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NamedTuple


class Command(NamedTuple):
    module: str  # the `python -m` module whose `main(argv)` runs the command
    help: str
    needs: tuple[str, ...] = ()  # optional imports checked before forwarding
    extra: str | None = None  # the extra that installs them
    function: str = "main"  # called with the remaining arguments
    # A first argument that goes to another module's `main` with the arguments after it.
    routes: tuple[tuple[str, str], ...] = ()


COMMANDS: dict[str, Command] = {
    "train": Command(
        "training.train", "train a registered model with a recipe", ("yaml", "tensorflow"), "train"
    ),
    "tune": Command(
        "training.tune",
        "hyperparameter search over a recipe (KerasTuner)",
        ("yaml", "tensorflow", "keras_tuner"),
        "tune",
    ),
    "export": Command(
        "training.export",
        "export a trained .keras model for TF Serving",
        ("tensorflow",),
        "serving",
    ),
    "convert": Command(
        "keras_resnets.convert", "convert a torchvision/timm checkpoint into Keras weights"
    ),
    "analysis": Command(
        "keras_resnets.analysis.__main__",
        "degradation, lesion, paths, gradients, schedule",
        routes=(("degradation", "training.degradation"),),  # it trains through the trainer
    ),
    "models": Command("training.cli", "list the registered models", function="models_main"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-resnets",
        description="The package's tools under one command.",
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    parser.add_argument("command", choices=list(COMMANDS), help="see Commands below")
    parser.add_argument("args", nargs="*", help="the command's own arguments (COMMAND --help)")
    return parser


class _Version(argparse.Action):
    """`--version`, which imports the package (and so Keras) only when asked."""

    def __call__(self, parser, namespace, values, option_string=None):
        from keras_resnets import __version__

        parser.exit(message=f"keras-resnets {__version__}\n")


def models_main(argv: Sequence[str] | None = None) -> int:
    """`keras-resnets models`: the registered names, one a line, or the zoo table."""
    parser = argparse.ArgumentParser(
        prog="keras-resnets models",
        description="List the registered models (keras_resnets.list_models()).",
    )
    parser.add_argument(
        "--table",
        action="store_true",
        help="print the Markdown zoo table (python -m keras_resnets.zoo)",
    )
    parser.add_argument(
        "--write", nargs="+", metavar="FILE", help="with --table: update the table in these files"
    )
    args = parser.parse_args(argv)
    if args.write and not args.table:
        parser.error("--write goes with --table")
    if args.table:
        from keras_resnets import zoo

        return zoo.main(["--write", *args.write] if args.write else [])
    import keras_resnets

    for name in keras_resnets.list_models():
        print(name)
    return 0


def _preselect_backend(args: Sequence[str]) -> None:
    """Honour `--backend NAME` before the checks below import Keras.

    The command itself parses the flag and reports a bad value; this only
    applies a good one early, through `training.options.select_backend`.
    """
    from training.options import select_backend

    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    parser.add_argument("--backend")
    try:
        backend = parser.parse_known_args(args)[0].backend
        if backend is not None:
            select_backend(backend)
    except (argparse.ArgumentError, ValueError):
        pass  # reported by the command, with its own message and exit status


def main(argv: Sequence[str] | None = None) -> int:
    """Run `keras-resnets <command> [args]`; returns the exit status.

    Args:
        argv: the arguments after `keras-resnets` (default: `sys.argv[1:]`).

    Returns:
        The command's exit status; 2 when a needed extra is missing.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if not argv or argv[0].startswith("-"):
        parser.parse_args(argv)  # --help / --version exit here; nothing else is valid
        parser.error("a command is required")
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        parser.error(
            f"argument command: invalid choice: {name!r} (choose from {', '.join(COMMANDS)})"
        )
    command = COMMANDS[name]
    _preselect_backend(rest)
    try:
        for module in command.needs:
            from keras_resnets._optional import require  # imports Keras: after --backend

            require(module, f"`keras-resnets {name}`", extra=command.extra)
    except ImportError as exc:
        from keras_resnets.utils import cli_error

        return cli_error(exc)  # usage: the message names the extra to install
    module, function = command.module, command.function
    routes = dict(command.routes)
    if rest and rest[0] in routes:
        module, function, name, rest = routes[rest[0]], "main", f"{name} {rest[0]}", rest[1:]
    forward = getattr(importlib.import_module(module), function)
    saved = sys.argv[0]
    sys.argv[0] = f"keras-resnets {name}"  # the usage line of parsers without a prog
    try:
        return int(forward(rest) or 0)
    finally:
        sys.argv[0] = saved


if __name__ == "__main__":
    sys.exit(main())
