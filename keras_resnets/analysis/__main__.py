"""`python -m keras_resnets.analysis <command>`: the four experiments, on digits by default.

Commands:
    gradients    per-layer gradient norms, plain vs residual of the same depth
    degradation  train plain and residual networks with one recipe (through
                 the trainer) and plot training and test error per epoch
    lesion       delete / reorder blocks of trained networks at test time
    paths        path-length distribution and gradient by path length
    schedule     stochastic-depth survival probability per block

Each writes `<command>.png`, `<command>.csv` and `<command>.json` into
`--output-dir` and prints a short table.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys

from keras_resnets._optional import require

DEFAULT_OUTPUT = os.path.join("runs", "analysis")
#: The small-budget switch of `training.train` (`KERAS_RESNETS_SMOKE=1`).
SMOKE_ENV = "KERAS_RESNETS_SMOKE"


def _write_text(path: str, text: str) -> None:
    from keras_resnets.utils import atomic_write_text

    atomic_write_text(path, text)  # never a half-written file under the final name


def write_outputs(output_dir: str, stem: str, rows: list[dict], payload) -> list[str]:
    """Write `<stem>.csv` (rows) and `<stem>.json` (payload) into `output_dir`.

    Args:
        output_dir: the folder (created if needed).
        stem: file name without extension.
        rows: the table, one dict per row (same keys).
        payload: anything JSON-serialisable (the full numbers).

    Returns:
        The two paths written.
    """
    os.makedirs(output_dir, exist_ok=True)
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    csv_path = os.path.join(output_dir, f"{stem}.csv")
    json_path = os.path.join(output_dir, f"{stem}.json")
    _write_text(csv_path, buffer.getvalue())
    _write_text(json_path, json.dumps(payload, indent=2) + "\n")
    return [csv_path, json_path]


def _publish(args, stem: str, rows: list[dict], payload, plot, plotted, **plot_options) -> str:
    """Plot `plotted` to `<stem>.png`, write `<stem>.csv`/`.json`, print the table.

    Returns:
        The PNG's path.
    """
    png = plot(plotted, os.path.join(args.output_dir, f"{stem}.png"), **plot_options)
    write_outputs(args.output_dir, stem, rows, payload)
    print_table(rows)
    return png


def print_table(rows: list[dict], columns: list[str] | None = None) -> None:
    """Print rows as an aligned text table (floats with 4 significant digits)."""
    if not rows:
        return
    columns = columns or list(rows[0])

    def fmt(value) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "-" if value is None else str(value)

    cells = [[fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def _digits(image_size: int, seed: int):
    # The digits loader lives with the trainer's data sources; it needs scikit-learn only.
    require("sklearn", "The digits data of the analysis commands", extra="analysis")
    from training.data import load_digits_32

    return load_digits_32(seed=seed, size=image_size)


def build_and_train(name: str, data, *, epochs: int, batch_size: int, seed: int):
    """Build registered model `name` for the data's image size and fit it briefly.

    A short run of the papers' optimiser (SGD, Nesterov momentum 0.9,
    learning rate warmed up from 0.01 to 0.1 over the first epoch, then
    cosine decay; weight decay 5e-4; batch 64) that
    gives the lesion and path experiments a trained network in a minute on a
    CPU. For the papers' full recipes train with `python -m training.train`
    and pass the saved `.keras` file instead of a model name.

    Args:
        name: a registered model name (`keras_resnets.list_models()`).
        data: `((x_train, y_train), (x_test, y_test))`.
        epochs: training epochs (0 keeps the initialisation).
        batch_size: batch size.
        seed: seed of the initialisation and the shuffling.

    Returns:
        The model.
    """
    import keras

    import keras_resnets

    (x_train, y_train), _ = data
    keras.utils.set_random_seed(seed)
    classes = int(y_train.max()) + 1
    model = keras_resnets.get_model(name, input_shape=x_train.shape[1:], classes=classes)
    if epochs and os.environ.get(SMOKE_ENV, "").strip() not in ("", "0"):
        # The trainer's small budget (docs/training.md): checks that the command
        # works, never for figures.
        epochs, x_train, y_train = 1, x_train[: 2 * batch_size], y_train[: 2 * batch_size]
        print(f"{SMOKE_ENV}: small budget, not a real run: 1 epoch of 2 batches")
    if epochs:
        per_epoch = -(-len(x_train) // batch_size)
        steps = epochs * per_epoch
        warmup = per_epoch if epochs > 1 else 0  # deep plain/residual nets need it at 0.1
        schedule = keras.optimizers.schedules.CosineDecay(
            0.01 if warmup else 0.1,
            max(steps - warmup, 1),
            warmup_target=0.1 if warmup else None,
            warmup_steps=warmup,
        )
        model.compile(
            optimizer=keras.optimizers.SGD(
                schedule,
                momentum=0.9,
                nesterov=True,
                weight_decay=5e-4,
            ),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=0)
    return model


def _load_or_train(args, name_or_path: str, data):
    import keras

    if name_or_path.endswith(".keras"):
        if not os.path.isfile(name_or_path):
            raise SystemExit(f"error: model file {name_or_path!r} does not exist")
        import keras_resnets  # noqa: F401  (registers the custom layers)

        return keras.models.load_model(name_or_path)
    return build_and_train(
        name_or_path, data, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed
    )


def cmd_gradients(args) -> int:
    from keras_resnets.analysis.gradients import gradient_norms
    from keras_resnets.analysis.plots import plot_gradient_norms

    data = _digits(args.image_size, args.seed)
    (x_train, y_train), _ = data
    batch = (x_train[: args.batch_size], y_train[: args.batch_size])
    norms, rows = {}, []
    for name in args.models:
        model = _load_or_train(args, name, data)
        result = gradient_norms(model, batch)
        norms[model.name] = result
        first, last = result[0]["norm"], result[-2]["norm"]
        rows.append(
            {
                "model": model.name,
                "layers": len(result),
                "first_conv": first,
                "last_conv": last,
                "classifier": result[-1]["norm"],
                "first_over_last": first / last if last else float("inf"),
            }
        )
    state = f"after {args.epochs} epochs on digits" if args.epochs else "at initialisation"
    payload = {"state": state, "norms": norms}
    png = _publish(
        args,
        "gradients",
        rows,
        payload,
        plot_gradient_norms,
        norms,
        title=f"Gradient norm per layer, {state}",
    )
    print(f"wrote {png}")
    return 0


def cmd_degradation(args) -> int:
    purpose = "The degradation command (it trains through `training.train.run`)"
    yaml = require("yaml", purpose, extra="train")
    require("tensorflow", purpose, extra="train")
    from keras_resnets.analysis.plots import plot_degradation
    from training.train import run  # imported here: the library never imports the trainer

    overrides = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --set expects key=value, got {item!r}")
        overrides[key.strip()] = yaml.safe_load(value)  # YAML rules, as the trainer's --set
    # --seed is the runs' seed (weights, shuffling, augmentation), as for the other commands;
    # an explicit --set train.seed=... wins.
    overrides.setdefault("train.seed", args.seed)
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


def cmd_lesion(args) -> int:
    from keras_resnets.analysis.lesion import lesion_study
    from keras_resnets.analysis.plots import plot_lesion

    data = _digits(args.image_size, args.seed)
    _, test = data
    results, rows = [], []
    for name in args.models:
        model = _load_or_train(args, name, data)
        result = lesion_study(
            model,
            test,
            max_deletions=args.max_deletions,
            draws=args.draws,
            max_swaps=args.max_swaps,
            seed=args.seed,
        )
        results.append(result)
        for entry in result["single"]:
            rows.append(
                {
                    "model": result["model"],
                    "deleted": entry["block"],
                    "stage": entry["stage"],
                    "downsampling": entry["downsampling"],
                    "error": entry["error"],
                    "baseline_error": result["baseline_error"],
                }
            )
    png = _publish(
        args,
        "lesion",
        rows,
        results,
        plot_lesion,
        results,
        title=f"Lesion study on {len(test[0])} held-out digits",
    )
    for result in results:
        for entry in result["deletions"]:
            print(f"{result['model']}: {entry['k']} blocks deleted, mean error {entry['mean']:.4f}")
        for entry in result["swaps"]:
            print(f"{result['model']}: {entry['swaps']} swaps, mean error {entry['mean']:.4f}")
    print(f"wrote {png}")
    return 0


def cmd_paths(args) -> int:
    from keras_resnets.analysis.gradients import gradient_by_path_length
    from keras_resnets.analysis.plots import plot_paths

    data = _digits(args.image_size, args.seed)
    model = _load_or_train(args, args.model, data)
    x_test, y_test = data[1]
    result = gradient_by_path_length(
        model,
        (x_test[: args.examples], y_test[: args.examples]),
        samples=args.samples,
        seed=args.seed,
        mass=args.mass,
    )
    from keras_resnets.analysis.lesion import error_rate

    result["held_out_error"] = error_rate(model, x_test, y_test)
    keys = ["length", "count", "fraction", "gradient_norm", "contribution_fraction"]
    rows = [
        dict(zip(keys, values, strict=True))
        for values in zip(*(result[k] for k in keys), strict=True)
    ]
    png = _publish(
        args,
        "paths",
        rows,
        result,
        plot_paths,
        result,
        title=f"{model.name}: residual networks as ensembles of paths",
    )
    low, high = result["effective_range"]
    print(
        f"{model.name}: {100 * result['held_out_error']:.2f}% error on {len(x_test)} held-out digits"
    )
    print(
        f"effective paths: lengths {low}-{high} carry {100 * result['mass']:.0f}% of the "
        f"gradient and are {100 * result['effective_path_fraction']:.3g}% of all "
        f"2^{result['num_blocks']} paths"
    )
    print(f"wrote {png}")
    return 0


def cmd_schedule(args) -> int:
    from keras_resnets.analysis.plots import plot_schedule
    from keras_resnets.analysis.schedule import expected_depth, survival_schedule

    if args.num_blocks:
        sizes = {f"{args.num_blocks} blocks": args.num_blocks}
    else:
        import keras_resnets
        from keras_resnets.analysis.graph import find_blocks

        sizes = {}
        for name in args.models:
            model = keras_resnets.get_model(name, weights=None)
            sizes[name] = sum(b.residual for b in find_blocks(model))
    schedules, rows = {}, []
    for label, size in sizes.items():
        for rate in args.drop_path_rates:
            probabilities = survival_schedule(size, rate)
            schedules[f"{label}, drop_path_rate={rate}"] = probabilities
            rows.append(
                {
                    "model": label,
                    "blocks": size,
                    "drop_path_rate": rate,
                    "p_first": probabilities[0],
                    "p_last": probabilities[-1],
                    "expected_blocks": expected_depth(probabilities),
                }
            )
    png = _publish(args, "schedule", rows, schedules, plot_schedule, schedules)
    print(f"wrote {png}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m keras_resnets.analysis",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, *, train: bool = True, epochs: int = 0, size: int = 32):
        p.add_argument("--output-dir", default=DEFAULT_OUTPUT, help="where to write the files")
        p.add_argument("--seed", type=int, default=0)
        if train:
            p.add_argument(
                "--image-size",
                type=int,
                default=size,
                help=f"digits resized to this size (default {size}; 8 is their native size)",
            )
            p.add_argument(
                "--epochs",
                type=int,
                default=epochs,
                help=f"short SGD training on digits before measuring (default {epochs})",
            )
            p.add_argument("--batch-size", type=int, default=64)

    model_help = "registered model names or .keras files"
    p = sub.add_parser("gradients", help="per-layer gradient norms, plain vs residual")
    p.add_argument("--models", nargs="+", default=["Plain56", "ResNet56"], help=model_help)
    common(p)
    p.set_defaults(func=cmd_gradients)

    p = sub.add_parser("degradation", help="train plain and residual networks, plot error")
    p.add_argument("--models", nargs="+", default=["Plain20", "Plain56", "ResNet20", "ResNet56"])
    p.add_argument("--recipe", default="digits_resnet20", help="trainer recipe for every model")
    p.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    p.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    p.add_argument("--set", action="append", help="recipe override key=value (repeatable)")
    common(p, train=False)
    p.set_defaults(func=cmd_degradation)

    p = sub.add_parser("lesion", help="delete and reorder blocks at test time")
    p.add_argument("--models", nargs="+", default=["ResNet20", "Plain20"], help=model_help)
    p.add_argument("--max-deletions", type=int, default=None)
    p.add_argument("--draws", type=int, default=5)
    p.add_argument("--max-swaps", type=int, default=3)
    common(p, epochs=10, size=8)
    p.set_defaults(func=cmd_lesion)

    p = sub.add_parser("paths", help="path lengths and gradient by path length")
    p.add_argument("--model", default="ResNet56", help="a registered name or a .keras file")
    p.add_argument("--samples", type=int, default=16, help="paths sampled per length")
    p.add_argument("--examples", type=int, default=32, help="held-out images in the batch")
    p.add_argument("--mass", type=float, default=0.9, help="share the effective range holds")
    common(p, epochs=10, size=8)
    p.set_defaults(func=cmd_paths)

    p = sub.add_parser("schedule", help="stochastic-depth survival probability per block")
    p.add_argument("--models", nargs="+", default=["ResNet110"])
    p.add_argument("--num-blocks", type=int, default=None, help="instead of --models")
    p.add_argument("--drop-path-rates", nargs="+", type=float, default=[0.5])
    common(p, train=False)
    p.set_defaults(func=cmd_schedule)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one analysis command; see `--help`."""
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, ImportError) as exc:  # ImportError: an optional extra is missing
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
