"""The trainer's flags, declared once.

Each row of `FLAG_TABLE` is one flag: its `run()` keyword (`data_dir`), the
command-line option derived from it (`--data-dir`) and the recipe key it
sets (`data.data_dir`), or None for a flag about the run itself (`resume`,
`overwrite`, `export`). A flag's type, range, choices and switch-ness are
read from the recipe schema (`training.config.Recipe`) of its key (a bad
value exits 2 naming the flag, the key, the value and the range), so the CLI
(`training.train`), `run()`/`resolve()` (`training.runner`) and the recipe
agree by construction. A new flag is one row here.
"""

from __future__ import annotations

import argparse
import dataclasses

from training import config as config_lib

__all__ = ["FLAGS", "FLAG_TABLE", "Flag", "add_flags", "flag_overrides"]


@dataclasses.dataclass(frozen=True)
class Flag:
    """One trainer flag.

    Attributes:
        name: the `run()` keyword; the option is `--name-with-dashes`.
        key: the dotted recipe key it overrides, or None for a flag of the
            run itself (a switch that defaults to False).
        help: the `--help` text.
        metavar: the `--help` placeholder, if any.
    """

    name: str
    key: str | None
    help: str
    metavar: str | None = None

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def spec(self) -> tuple | None:
        """The recipe schema's `(types, default[, choices])` of `key`."""
        if self.key is None:
            return None
        section, name = self.key.split(".")
        return config_lib.SCHEMA[section][name]

    @property
    def default(self):
        """`run()`'s default: None (the recipe decides) or False for a run switch."""
        return False if self.key is None else None

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """Add `--option` to `parser`, typed from the recipe schema."""
        spec = self.spec
        kwargs: dict = {"help": self.help, "default": self.default}
        if self.metavar:
            kwargs["metavar"] = self.metavar
        if spec is None or bool in spec[0]:
            kwargs["action"] = "store_true"
        elif len(spec) > 2:
            kwargs["choices"] = list(spec[2])
        elif int in spec[0]:
            kwargs["type"] = self.parse
        parser.add_argument(self.option, **kwargs)

    def parse(self, text: str):
        """The flag's value from the command line: a YAML 1.2 scalar checked
        against its recipe key's type and range (`config.leaf_problem`).

        Raises:
            argparse.ArgumentTypeError: the key, the value and what is allowed;
                argparse adds the flag (`argument --seed: ...`), exit status 2.
        """
        try:
            value = config_lib.parse_value(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from error
        problem = config_lib.leaf_problem(self.key, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value


FLAG_TABLE: tuple[Flag, ...] = (
    # Shortcuts for the recipe keys most often changed (`resolve` also drops
    # the recipe's model options with another model, its iterations with epochs).
    Flag("model", "model.name", "model name, replacing the recipe's"),
    Flag("dataset", "data.dataset", "digits, folder, cifar10, cifar100, svhn_cropped, ..."),
    Flag("epochs", "train.epochs", "train for N epochs (replaces iterations)"),
    Flag("batch_size", "train.batch_size", "global batch size (lr scales with it)"),
    Flag("data_dir", "data.data_dir", "TFDS data dir / manual dir, or the image folder"),
    Flag("strategy", "runtime.strategy", "distribution strategy (see docs/training.md)"),
    Flag("mixed_precision", "runtime.mixed_precision", "float16/bfloat16 compute"),
    Flag("jit_compile", "runtime.jit_compile", "compile the steps with XLA"),
    Flag("resume", None, "continue from the backup"),
    Flag("overwrite", None, "start again in a used dir"),
    Flag("export", None, "also write a SavedModel"),
    Flag("save_every_steps", "checkpoint.every_steps", "also back up every N steps"),
    Flag("skip_bad_images", "data.skip_bad_images", "skip unreadable image files"),
    Flag("seed", "train.seed", "seed of weights, data order and augmentation"),
    Flag("cpu_devices", "runtime.cpu_devices", "split the CPU into N logical devices"),
    Flag("verbose", "runtime.verbose", "progress output"),
    Flag("transfer_from", "transfer.from", "start from this trained .keras model", "PATH"),
    Flag(
        "freeze_until",
        "transfer.freeze_until",
        "with --transfer-from: freeze the stem and stages up to STAGE (stem, stageN, all)",
        "STAGE",
    ),
    Flag(
        "new_classes",
        "transfer.new_classes",
        "with --transfer-from: replace the classifier with one of N classes",
        "N",
    ),
)

#: The flags `run()` and `resolve()` accept, with their defaults.
FLAGS: dict[str, object] = {flag.name: flag.default for flag in FLAG_TABLE}


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Add every flag of `FLAG_TABLE` to `parser`."""
    for flag in FLAG_TABLE:
        flag.add_to(parser)


def flag_overrides(flags: dict) -> dict:
    """The dotted recipe overrides of the flags that were given (not None).

    Raises:
        TypeError: a flag that is not in `FLAG_TABLE`.
        ValueError: a value its recipe key does not allow, naming the flag,
            the key, the value and the range (`config.leaf_problem`).
    """
    unknown = sorted(set(flags) - set(FLAGS))
    if unknown:
        raise TypeError(
            f"Unknown training flag(s) {', '.join(unknown)}. Allowed: {', '.join(sorted(FLAGS))}."
        )
    out = {}
    for flag in FLAG_TABLE:
        if flag.key is None or flags.get(flag.name) is None:
            continue
        value = config_lib.python_value(flags[flag.name])  # np.int64(1) is 1
        problem = config_lib.leaf_problem(flag.key, value)
        if problem:
            raise ValueError(f"{flag.option}: {problem}")
        out[flag.key] = value
    return out
