"""`make demo`: the `digits_resnet20` recipe through the trainer, then a one-line summary.

Trains CIFAR ResNet-20 on scikit-learn's bundled digits (no download) with
`training.train.run`, evaluates it on the held-out digits, reloads the saved
`.keras` file and checks it gives the same test accuracy, writes a
SavedModel when the export feature is installed, and prints one summary
line. About a minute or two on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns 0 when the reloaded model reaches 90% test accuracy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--output-dir", default=os.path.join("runs", "demo"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    import keras_resnets
    from training.data import load_digits_32
    from training.train import run

    export = hasattr(keras_resnets, "export_saved_model")
    result = run(
        "digits_resnet20",
        epochs=args.epochs,
        output_dir=args.output_dir,
        seed=args.seed,
        overwrite=True,
        export=export,
        verbose="auto" if not os.environ.get("CI") else "line",
    )
    # Reload the saved model and score it on the same held-out digits.
    resolved = result["config"]["resolved"]
    mean = np.asarray(resolved["normalization"]["mean"], np.float32)
    std = np.asarray(resolved["normalization"]["std"], np.float32)
    _, (x_test, y_test) = load_digits_32(seed=args.seed)
    subset = result["config"]["data"]["test_subset"]  # set by KERAS_RESNETS_SMOKE
    x_test, y_test = x_test[:subset], y_test[:subset]
    model = keras.models.load_model(result["model_path"])
    predicted = model.predict((x_test - mean) / std, verbose=0).argmax(-1)
    reloaded_accuracy = float(np.mean(predicted == y_test))
    same = abs(reloaded_accuracy - result["test_accuracy"]) < 1e-6
    exported = f", SavedModel {result['export_path']}" if "export_path" in result else ""
    print(
        f"digits_resnet20: test accuracy {result['test_accuracy']:.4f} on {len(y_test)} "
        f"held-out digits (reloaded model: {reloaded_accuracy:.4f}), {result['steps']} steps "
        f"in {result['seconds']:.0f} s, model {result['model_path']}{exported}"
    )
    if not same:
        print("the reloaded model does not reproduce the test accuracy", file=sys.stderr)
        return 1
    from training.train import SMOKE_ENV, smoke_budget

    if smoke_budget():
        print(f"{SMOKE_ENV}: small budget, the 90% test accuracy check is skipped")
    elif result["test_accuracy"] < 0.9:
        print("test accuracy is below 90%", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
