"""Does the CIFAR input pipeline keep ResNet-20 fed? Both measured in one run.

Measures, back to back on this machine:

1. the trainer's CIFAR training pipeline (`training.data.train_dataset`:
   step-indexed shuffle, pad-4 random crop, flip, per-channel normalisation,
   batching, prefetch) on CIFAR-shaped uint8 images (random pixels: this
   machine cannot download CIFAR-10, and the pipeline's cost does not depend
   on the pixel values), in images per second;
2. ResNet-20 training steps (`fit` on one batch repeated from memory, so
   no input cost), in images per second;

and prints the ratio. The issue asks for at least 10x.

Example:
    python benchmarks/input_pipeline.py --batches 200 --steps 20
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50000, help="CIFAR-10 has 50,000")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=200, help="pipeline batches timed")
    parser.add_argument("--steps", type=int, default=20, help="training steps timed")
    args = parser.parse_args(argv)

    import keras
    import numpy as np
    import tensorflow as tf

    import keras_resnets
    from training import data as data_lib

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, args.images).astype(np.int32)
    split = data_lib.Split("arrays", images, labels, args.images)
    source = data_lib.Source("cifar-shaped", 10, 3, split, None, split)
    source.mean, source.std = data_lib._normalisation("per_channel", split, 3)
    cfg = {"image_size": 32, "augmentation": "cifar", "flip": True}

    # 1. The pipeline alone.
    ds = data_lib.train_dataset(source, cfg, args.batch_size, seed=0)
    iterator = iter(ds)
    for _ in range(10):  # warm-up: tracing, prefetch buffers
        next(iterator)
    start = time.perf_counter()
    for _ in range(args.batches):
        batch = next(iterator)
    _ = batch[0].numpy()
    pipeline_rate = args.batches * args.batch_size / (time.perf_counter() - start)

    # 2. ResNet-20 training steps on one batch held in memory.
    model = keras_resnets.ResNet20()
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    x, y = batch
    step_ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(step_ds, steps_per_epoch=3, epochs=1, verbose=0, shuffle=False)  # warm-up (tracing)
    start = time.perf_counter()
    model.fit(step_ds, steps_per_epoch=args.steps, epochs=1, verbose=0, shuffle=False)
    model_rate = args.steps * args.batch_size / (time.perf_counter() - start)

    ratio = pipeline_rate / model_rate
    print(f"CIFAR training pipeline: {pipeline_rate:,.0f} images/s")
    print(f"ResNet-20 training:      {model_rate:,.0f} images/s (batch {args.batch_size})")
    print(f"ratio (pipeline / model): {ratio:.1f}x  ({'OK' if ratio >= 10 else 'below'} 10x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
