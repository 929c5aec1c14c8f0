"""Training-step time of CIFAR ResNet-110 with and without stochastic depth.

Three copies of ResNet-110 (batch 128, 32x32x3, SGD) train under
`model.fit` (graph mode, the way users train) side by side in one run:

- `off`:    drop_path_rate=0 (constant depth, the flat graph);
- `batch`:  drop_path_rate=0.5, stochastic_depth_mode="batch" (the paper:
            dropped blocks are skipped through a `tf.cond`);
- `sample`: drop_path_rate=0.5, stochastic_depth_mode="sample" (per-example
            drop path: every block still runs).

After one untimed warm-up call each (tracing), the three models take turns
for `--rounds` rounds of `--steps` steps, so drift in the machine's load hits
all three alike. The script prints the mean step time of each and the
ratios to `off`. With drop_path_rate=0.5 the expected share of blocks run is
(3L - 1) / 4L = 74.5% for L = 54, so the ideal saving on the blocks is
about 25% (the paper measured 25% on a GPU).

Usage:
    python benchmarks/stochastic_depth.py [--steps 10] [--rounds 3] [--batch 128]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_resnets  # noqa: E402

CONFIGS = {
    "off": dict(drop_path_rate=0.0),
    "batch": dict(drop_path_rate=0.5, stochastic_depth_mode="batch"),
    "sample": dict(drop_path_rate=0.5, stochastic_depth_mode="sample"),
}


def build(options: dict, depth: int, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras_resnets.CifarResNet(
        depth=depth, classifier_activation=None, stochastic_depth_seed=seed, **options
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    return model


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=110)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    n = args.batch * args.steps
    x = rng.normal(size=(n, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=(n,)).astype("int32")

    models = {name: build(options, args.depth, seed=1) for name, options in CONFIGS.items()}
    for model in models.values():  # trace the train step; not timed
        model.fit(x[: 2 * args.batch], y[: 2 * args.batch], batch_size=args.batch, verbose=0)

    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            start = time.perf_counter()
            model.fit(x, y, batch_size=args.batch, epochs=1, shuffle=False, verbose=0)
            times[name].append((time.perf_counter() - start) / args.steps)

    blocks = 3 * ((args.depth - 2) // 6)
    expected = sum(keras_resnets.survival_probabilities(blocks, 0.5)) / blocks
    print(
        f"CIFAR ResNet-{args.depth} ({blocks} blocks), batch {args.batch}, model.fit, "
        f"{args.rounds} rounds x {args.steps} steps each, "
        f"keras {keras.__version__}, backend {keras.backend.backend()}"
    )
    print(f"expected share of blocks run with drop_path_rate=0.5: {expected:.3f}")
    mean = {name: float(np.mean(t)) for name, t in times.items()}
    for name in models:
        rounds = ", ".join(f"{t * 1000:.0f}" for t in times[name])
        print(
            f"{name:>7}: {mean[name] * 1000:8.1f} ms/step  "
            f"({args.batch / mean[name]:6.1f} img/s; rounds: {rounds} ms)"
        )
    ratio_batch = mean["batch"] / mean["off"]
    ratio_sample = mean["sample"] / mean["off"]
    print(f"batch / off  = {ratio_batch:.3f}  ({(1 - ratio_batch) * 100:.1f}% less time)")
    print(f"sample / off = {ratio_sample:.3f}  ({(1 - ratio_sample) * 100:.1f}% less time)")
    print(f"batch / sample = {mean['batch'] / mean['sample']:.3f}")
    return mean


if __name__ == "__main__":
    main()
