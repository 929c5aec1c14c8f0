"""`python -m keras_resnets.analysis <command>`: the four experiments, on digits by default.

Commands:
    gradients    per-layer gradient norms, plain vs residual of the same depth
    degradation  train plain and residual networks with one recipe and plot
                 training and test error per epoch: it trains through the
                 trainer, so it runs as `keras-resnets analysis degradation`
                 or `python -m training.degradation` (same arguments)
    lesion       delete / reorder blocks of trained networks at test time
    paths        path-length distribution and gradient by path length
    schedule     stochastic-depth survival probability per block

Each writes `<command>.png`, `<command>.csv` and `<command>.json` into
`--output-dir` and prints a short table.
"""

from __future__ import annotations

import argparse
import os
import sys

from keras_resnets._optional import require
from keras_resnets.analysis.report import add_common_arguments, print_table, write_outputs
from keras_resnets.utils import check_keras_file, cli_error, float_flag, int_flag

#: The small-budget switch of `training.train` (`KERAS_RESNETS_SMOKE=1`).
SMOKE_ENV = "KERAS_RESNETS_SMOKE"

#: Why `python -m keras_resnets.analysis degradation` does not run here.
DEGRADATION_MOVED = (
    "`degradation` trains through the trainer (training/), which the library never "
    "imports: run it as `keras-resnets analysis degradation ...` or "
    "`python -m training.degradation ...` (same arguments; the trainer needs "
    "pip install 'keras_resnets[train]')"
)


def _publish(args, stem: str, rows: list[dict], payload, plot, plotted, **plot_options) -> str:
    """Plot `plotted` to `<stem>.png`, write `<stem>.csv`/`.json`, print the table.

    Returns:
        The PNG's path.
    """
    png = plot(plotted, os.path.join(args.output_dir, f"{stem}.png"), **plot_options)
    write_outputs(args.output_dir, stem, rows, payload)
    print_table(rows)
    return png


def _digits(image_size: int, seed: int):
    require("sklearn", "The digits data of the analysis commands", extra="analysis")
    from keras_resnets.datasets import load_digits_32

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
        check_keras_file("model file", name_or_path)
        import keras_resnets  # noqa: F401  (registers the custom layers)

        try:
            return keras.models.load_model(name_or_path)
        except (ValueError, TypeError, KeyError) as exc:  # a damaged archive: name the file
            raise OSError(f"cannot load model file {name_or_path!r}: {exc}") from exc
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

    model_help = "registered model names or .keras files"
    p = sub.add_parser("gradients", help="per-layer gradient norms, plain vs residual")
    p.add_argument("--models", nargs="+", default=["Plain56", "ResNet56"], help=model_help)
    add_common_arguments(p)
    p.set_defaults(func=cmd_gradients)

    # Listed for --help; `main` answers it before parsing (DEGRADATION_MOVED).
    sub.add_parser(
        "degradation",
        help="train plain and residual networks, plot error: "
        "keras-resnets analysis degradation (python -m training.degradation)",
    )

    p = sub.add_parser("lesion", help="delete and reorder blocks at test time")
    p.add_argument("--models", nargs="+", default=["ResNet20", "Plain20"], help=model_help)
    p.add_argument("--max-deletions", type=int_flag(0), default=None)
    p.add_argument("--draws", type=int_flag(1), default=5)
    p.add_argument("--max-swaps", type=int_flag(0), default=3)
    add_common_arguments(p, epochs=10, size=8)
    p.set_defaults(func=cmd_lesion)

    p = sub.add_parser("paths", help="path lengths and gradient by path length")
    p.add_argument("--model", default="ResNet56", help="a registered name or a .keras file")
    p.add_argument("--samples", type=int_flag(1), default=16, help="paths sampled per length")
    p.add_argument("--examples", type=int_flag(1), default=32, help="held-out images in the batch")
    p.add_argument(
        "--mass",
        type=float_flag(0, 1, closed_low=False, closed_high=True),
        default=0.9,
        help="share the effective range holds, in (0, 1]",
    )
    add_common_arguments(p, epochs=10, size=8)
    p.set_defaults(func=cmd_paths)

    p = sub.add_parser("schedule", help="stochastic-depth survival probability per block")
    p.add_argument("--models", nargs="+", default=["ResNet110"])
    p.add_argument("--num-blocks", type=int_flag(1), default=None, help="instead of --models")
    p.add_argument("--drop-path-rates", nargs="+", type=float_flag(0, 1), default=[0.5])
    add_common_arguments(p, train=False)
    p.set_defaults(func=cmd_schedule)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one analysis command; see `--help`.

    Returns:
        0, or 2 for bad input (a bad flag value stops argparse before
        anything is built, naming the flag), a missing extra, or
        `degradation` (which runs as `keras-resnets analysis degradation` /
        `python -m training.degradation`: it trains through the trainer);
        5 when a file cannot be read or written (`utils.EXIT_CODES`).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["degradation"]:
        return cli_error(DEGRADATION_MOVED)
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, ImportError, OSError) as exc:  # ImportError: a missing extra
        return cli_error(exc)


if __name__ == "__main__":
    sys.exit(main())
