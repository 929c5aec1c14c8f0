"""`make demo`: train CIFAR ResNet-20 on scikit-learn's digits, save, reload, check.

Runs in about a minute or two on 2 CPU cores and needs no download.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--output-dir", default=os.path.join("runs", "demo"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    import keras_resnets
    from training.data import load_digits_32

    keras.utils.set_random_seed(args.seed)
    start = time.time()
    (x_train, y_train), (x_test, y_test) = load_digits_32(seed=args.seed)
    print(f"digits: {len(x_train)} training and {len(x_test)} test images, 32x32x3")

    model = keras_resnets.ResNet20(classes=10)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        x_train,
        y_train,
        batch_size=args.batch_size,
        epochs=args.epochs,
        validation_split=0.1,
        verbose=2 if os.environ.get("CI") else 1,
    )
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"test accuracy: {accuracy:.4f} on {len(x_test)} held-out digits")

    os.makedirs(args.output_dir, exist_ok=True)
    path = os.path.join(args.output_dir, "resnet20_digits.keras")
    tmp = path + ".tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)  # never leave a half-written model under the final name
    reloaded = keras.models.load_model(path)
    same = np.allclose(
        reloaded.predict(x_test, verbose=0), model.predict(x_test, verbose=0), atol=1e-6
    )
    print(f"saved {path}; reloaded model predicts the same: {same}")
    print(f"done in {time.time() - start:.0f} s")
    if not same:
        return 1
    if accuracy < 0.9:
        print("test accuracy is below 90%", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
