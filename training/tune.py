"""Hyper-parameter search with keras-tuner: `python -m training.tune --recipe NAME`.

Searches the architecture and the family options of a model, as its registry
entry lists them (`search_space`: e.g. the CIFAR depth, the cardinality of a
CIFAR ResNeXt, the shortcut, unit and `drop_path_rate` of a ResNet), and the
optimiser (learning rate, weight decay) with Hyperband or Bayesian
optimisation, training each trial with the recipe's data pipeline, and writes
a results table (`results.csv`, `results.md`) to the output directory.

Example:
    python -m training.tune --recipe digits_resnet20 --tuner hyperband --max-trials 6
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from training import config as config_lib

TUNERS = ("hyperband", "bayesian")
WEIGHT_DECAYS = [0.0, 1e-4, 5e-4]


def _model_info(model_name: str):
    """The registry entry of `model_name`; for a generic builder (`CifarResNet`),
    that of its plainest row (fewest arguments, then fewest parameters)."""
    from keras_resnets.models import registry

    if model_name in registry.list_models():
        return registry.model_info(model_name)
    rows = [registry.model_info(name) for name in registry.list_models()]
    rows = [info for info in rows if info.generic == model_name]
    if not rows:
        return registry.model_info(model_name)  # raises, naming the closest models
    return min(rows, key=lambda info: (len(info.arguments), info.num_params, info.name))


def tunable_builder(model_name: str) -> tuple[str, dict]:
    """The generic builder behind a model, and the arguments that make the model.

    Read from the registry row: `ResNeXt29_8x64d` is
    `CifarResNeXt(cardinality=8, base_width=64)`, `DenseNetBC100` is
    `CifarDenseNet(depth=100)`, `ResNet50` is `ResNet(depths=(3, 4, 6, 3),
    block="bottleneck")`; a generic builder's name maps to itself.

    Returns:
        `(builder_name, arguments)`.

    Raises:
        ValueError: an unknown name (the message lists the closest ones).
    """
    info = _model_info(model_name)
    if info.name != model_name:
        return model_name, {}
    return info.generic, dict(info.arguments)


def search_space(model_name: str) -> dict[str, list]:
    """The architecture choices and family options a search tries for `model_name`.

    Read from the registry (`ModelInfo.search_space`): the generic builder's
    architecture arguments (CIFAR ResNets: `depth` in {8, 14, 20, 32};
    CIFAR ResNeXts: `cardinality`; CIFAR DenseNets: `growth_rate`,
    `compression`; Wide ResNets: `depth`, `width`) and the options with values
    worth trying (`shortcut`, `unit`, `shortcut_variant`, `stride_in_1x1`,
    `drop_path_rate`, `dropout`, ...). Non-empty for every registered model.

    Returns:
        `{hyper-parameter: values}`.

    Raises:
        ValueError: an unknown name (the message lists the closest ones).
    """
    return _model_info(model_name).search_space()


# keras-tuner's `Choice` holds values of one type: None among strings (`attention`:
# None, "se", "eca") is searched as this string and given back to the builder as None.
NONE_CHOICE = "none"


def _choice(hp, option: str, values: list):
    """`hp.Choice(option, values)`, with None searched as `NONE_CHOICE` where values mix types."""
    if None in values and len(values) > 1:
        value = hp.Choice(option, [NONE_CHOICE if v is None else v for v in values])
        return None if value == NONE_CHOICE else value
    return hp.Choice(option, values)


def _make_hypermodel(cfg: dict, source, space: dict, steps_per_epoch: int):
    import keras

    from keras_resnets._optional import require
    from training.optim import make_optimizer
    from training.train import build_training_model

    kt = require("keras_tuner", "An architecture search")
    base_lr = cfg["optimizer"]["learning_rate"]
    generic, fixed = tunable_builder(cfg["model"]["name"])
    architecture = _model_info(cfg["model"]["name"]).architecture

    class RecipeHyperModel(kt.HyperModel):
        def build(self, hp):
            trial = {k: dict(v) if isinstance(v, dict) else v for k, v in cfg.items()}
            trial["model"] = {
                "name": cfg["model"]["name"],
                "options": dict(cfg["model"]["options"]),
            }
            choices = {option: _choice(hp, option, values) for option, values in space.items()}
            if set(choices) & set(architecture):
                # An architecture choice builds the generic builder from the row.
                trial["model"] = {
                    "name": generic,
                    "options": {**fixed, **trial["model"]["options"]},
                }
            trial["model"]["options"].update(choices)
            optimizer = dict(cfg["optimizer"])
            optimizer["learning_rate"] = hp.Float(
                "learning_rate", base_lr / 10, base_lr * 3, sampling="log"
            )
            optimizer["weight_decay"] = hp.Choice("weight_decay", WEIGHT_DECAYS)
            model = build_training_model(trial, source.num_classes, source.channels)
            model.compile(
                optimizer=make_optimizer(optimizer, optimizer["learning_rate"]),
                loss=keras.losses.SparseCategoricalCrossentropy(),
                metrics=["accuracy"],
            )
            return model

    return RecipeHyperModel()


def tune(
    recipe: str,
    *,
    output_dir: str,
    tuner: str = "hyperband",
    max_trials: int = 10,
    epochs: int = 3,
    overrides: dict | None = None,
    seed: int = 0,
    verbose: int = 0,
    space: dict[str, list] | None = None,
) -> list[dict]:
    """Search hyper-parameters for a recipe and write the results table.

    Args:
        recipe: recipe name or YAML path (data, batch size, optimiser).
        output_dir: where `results.csv`, `results.md` and the tuner's state go.
        tuner: `"hyperband"` or `"bayesian"`.
        max_trials: the most trials to run.
        epochs: epochs of a full trial (Hyperband's `max_epochs`).
        overrides: dotted-key recipe overrides.
        seed: tuner and data seed.
        verbose: Keras verbosity of each trial.
        space: replaces the values of hyper-parameters of `search_space`
            (e.g. `{"depth": [8, 14]}`); keys it does not have are errors.

    Returns:
        One dict per trial, best first: `trial`, `score` (validation
        accuracy), `epochs` and the hyper-parameter values.

    Raises:
        ValueError: bad tuner name, `max_trials`/`epochs` below 1, or any
            recipe error.

    Example:
        >>> rows = tune("digits_resnet20", output_dir="runs/tune", max_trials=4, epochs=2)
    """
    if tuner not in TUNERS:
        raise ValueError(f"`tuner` must be one of {', '.join(TUNERS)}, got {tuner!r}.")
    for name, value in (("max_trials", max_trials), ("epochs", epochs)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    import keras

    from keras_resnets._optional import require
    from training import data as data_lib
    from training.train import SMOKE_ENV, resolve, smoke_budget

    kt = require("keras_tuner", "An architecture search")

    if smoke_budget() and max_trials > 2:
        print(f"{SMOKE_ENV}: small budget, not a real search: max_trials=2 (asked {max_trials})")
        max_trials = 2

    cfg = resolve(recipe, epochs=epochs, overrides=overrides, seed=seed)
    keras.utils.set_random_seed(seed)
    source = data_lib.load_source(cfg["data"], seed=seed)
    if source.validation is None:
        raise ValueError("Tuning needs validation data: set data.validation to split or test.")
    batch = cfg["train"]["batch_size"]
    data_lib.check_source(source, batch)
    steps = cfg["train"]["steps_per_epoch"] or max(1, source.train.size // batch)
    full = search_space(cfg["model"]["name"])
    for key, values in (space or {}).items():
        if key not in full:
            raise ValueError(
                f"`space` key {key!r} does not apply to {cfg['model']['name']}; "
                f"its search space has: {', '.join(full) or 'no architecture choices'}."
            )
        full[key] = list(values)
    space = full
    hypermodel = _make_hypermodel(cfg, source, space, steps)
    common: dict[str, Any] = {
        "objective": "val_accuracy",
        "directory": os.path.join(output_dir, "tuner"),
        "project_name": os.path.splitext(os.path.basename(recipe))[0],
        "overwrite": True,
        "seed": seed,
    }
    if tuner == "hyperband":
        search = kt.Hyperband(hypermodel, max_epochs=epochs, factor=3, **common)
        search.oracle.max_trials = max_trials
    else:
        search = kt.BayesianOptimization(hypermodel, max_trials=max_trials, **common)
    search.search(
        data_lib.train_dataset(source, cfg["data"], batch, seed),
        steps_per_epoch=steps,
        epochs=epochs,
        validation_data=data_lib.eval_dataset(source, source.validation, cfg["data"], batch),
        shuffle=False,
        verbose=verbose,
    )
    rows = []
    for trial in search.oracle.get_best_trials(num_trials=max_trials):
        values = dict(trial.hyperparameters.values)
        rows.append(
            {
                "trial": trial.trial_id,
                "score": None if trial.score is None else float(trial.score),
                "epochs": values.pop("tuner/epochs", epochs),
                **{k: v for k, v in values.items() if not k.startswith("tuner/")},
            }
        )
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    csv_lines = [",".join(columns)] + [
        ",".join("" if row.get(c) is None else str(row.get(c)) for c in columns) for row in rows
    ]
    from keras_resnets.utils import atomic_write_text

    atomic_write_text(os.path.join(output_dir, "results.csv"), "\n".join(csv_lines) + "\n")
    table = _markdown(rows, columns, recipe, tuner)
    atomic_write_text(os.path.join(output_dir, "results.md"), table)
    return rows


def _markdown(rows: list[dict], columns: list[str], recipe: str, tuner: str) -> str:
    def fmt(value):
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value)

    lines = [
        f"# {tuner} search for {recipe} (best first; score = validation accuracy)",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join(fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments, each typed (a bad value names the flag, exit 2)."""
    # Imports Keras: here, after `keras-resnets tune --backend` chose one.
    from keras_resnets.utils import int_flag, int_list_flag, output_dir_flag, seed_flag

    parser = argparse.ArgumentParser(
        prog="python -m training.tune", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--tuner", choices=TUNERS, default="hyperband")
    parser.add_argument("--max-trials", type=int_flag(1), default=10)
    parser.add_argument("--epochs", type=int_flag(1), default=3, help="epochs of a full trial")
    parser.add_argument("--output-dir", type=output_dir_flag, help="default: runs/tune_<recipe>")
    parser.add_argument("--seed", type=seed_flag, default=0)
    parser.add_argument("--set", action="append", metavar="KEY=VALUE")
    parser.add_argument("--depths", type=int_list_flag(1), help="CIFAR depths to try, e.g. 8,14,20")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (`keras_resnets.utils.EXIT_CODES`).

    2 for bad input (a bad flag value stops argparse, naming the flag) or a
    missing extra, 4 for data that cannot train (`DataError`), 5 for a file
    that cannot be read or written.
    """
    args = build_parser().parse_args(argv)
    output_dir = args.output_dir or os.path.join(
        "runs", "tune_" + os.path.splitext(os.path.basename(args.recipe))[0]
    )
    try:
        rows = tune(
            args.recipe,
            output_dir=output_dir,
            tuner=args.tuner,
            max_trials=args.max_trials,
            epochs=args.epochs,
            overrides=config_lib.parse_set_flags(args.set),
            seed=args.seed,
            verbose=2,
            space={"depth": args.depths} if args.depths else None,
        )
    except (ValueError, ImportError, OSError) as error:  # ImportError: a missing extra
        from keras_resnets.utils import cli_error

        return cli_error(error)
    with open(os.path.join(output_dir, "results.md"), encoding="utf-8") as f:
        print(f.read())
    print(f"{len(rows)} trials; results in {output_dir}/results.csv and results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
