"""A run's options: the recipe with the flags applied, the smoke budget, the backend.

`resolve(recipe, **flags)` is what `training.train` (CLI and `run()`) and
`training.tune` start from: the recipe, then the flags (declared once in
`training.flags`), then `--set` overrides, then the small budget of
`KERAS_RESNETS_SMOKE`.
"""

from __future__ import annotations

import os
import sys

from training import config as config_lib
from training.flags import flag_overrides

#: `KERAS_RESNETS_SMOKE=1` (any value but empty or 0): every run takes the small
#: budget below, whatever the recipe and flags say, and says so. For checking
#: that a command works (tests/test_docs.py runs the docs' commands with it),
#: never for results.
SMOKE_ENV = "KERAS_RESNETS_SMOKE"
SMOKE_BUDGET = {
    "train.epochs": 1,
    "train.iterations": None,
    "train.steps_per_epoch": 2,
    "train.batch_size": 8,
    "train.per_replica_batch_size": None,
    "data.train_subset": 64,
    "data.test_subset": 32,
}


def smoke_budget() -> bool:
    """Whether `KERAS_RESNETS_SMOKE` asks for the small budget."""
    return os.environ.get(SMOKE_ENV, "").strip() not in ("", "0")


def resolve(recipe: str, *, overrides: dict | None = None, **flags) -> dict:
    """The recipe with command-line choices applied (before data and devices are known).

    Args:
        recipe: recipe name or YAML path.
        overrides: dotted-key overrides (`{"optimizer.learning_rate": 0.05}`).
        **flags: the rows of `training.flags.FLAG_TABLE` (`model`,
            `dataset`, `epochs`, `batch_size`: shortcuts for their recipe
            keys, `epochs` replacing an iteration budget and another `model`
            dropping the recipe's model options; `strategy`, `seed`, ...).

    Returns:
        The config dict (validated).

    Raises:
        ValueError: unknown recipe, key or value (naming the key, the value,
            its allowed range and where it came from: the recipe file,
            `"command line"` or `--set`); TypeError for an unknown flag.
    """
    cli = flag_overrides(flags)
    cfg = config_lib.load_recipe(recipe)
    model = flags.get("model")
    if model is not None and model != cfg["model"]["name"]:
        cli["model.options"] = {}
        cfg["model"]["options"] = {}
    if flags.get("epochs") is not None:
        cli["train.iterations"] = None
    cfg = config_lib.apply_overrides(cfg, cli, "command line")
    cfg = config_lib.apply_overrides(cfg, overrides, "--set")
    if smoke_budget():
        budget = dict(SMOKE_BUDGET)
        for key in ("data.train_subset", "data.test_subset"):
            section, name = key.split(".")
            if cfg[section][name] is not None:
                budget[key] = min(cfg[section][name], budget[key])
        cfg = config_lib.apply_overrides(cfg, budget, SMOKE_ENV)
        print(
            f"{SMOKE_ENV}={os.environ[SMOKE_ENV]}: small budget, not a real run: "
            + ", ".join(f"{k}={v}" for k, v in budget.items())
        )
    cfg["recipe"] = recipe
    train = cfg["train"]
    if (train["epochs"] is None) == (train["iterations"] is None):
        raise ValueError(
            f"Recipe {recipe!r}: set exactly one of train.epochs and train.iterations "
            f"(got epochs={train['epochs']!r}, iterations={train['iterations']!r})."
        )
    transfer = cfg["transfer"]
    if transfer["from"] is None:
        for key in ("freeze_until", "new_classes"):
            if transfer[key] is not None:
                raise ValueError(
                    f"`transfer.{key}` (--{key.replace('_', '-')}) needs `transfer.from` "
                    "(--transfer-from PATH.keras), the trained model to start from."
                )
    return cfg


BACKENDS = ("tensorflow", "jax", "torch")


def select_backend(backend: str) -> None:
    """Make `backend` the Keras backend of this process (`--backend`).

    Must run before Keras is imported; the trainer imports it lazily, so
    the command line can choose.

    Raises:
        ValueError: unknown backend, or Keras already imported with another.
    """
    if backend not in BACKENDS:
        raise ValueError(
            f"Unknown `backend` {backend!r}: allowed values are "
            + ", ".join(repr(b) for b in BACKENDS)
            + "."
        )
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != backend:
            raise ValueError(
                f"`backend` {backend!r} was asked for, but Keras is already imported with the "
                f"{current!r} backend; set KERAS_BACKEND={backend} before starting Python."
            )
        return
    os.environ["KERAS_BACKEND"] = backend
