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
all three alike. The script prints the mean (and median) wall-clock step
time of each, the process CPU time per step (less sensitive to other
processes on a shared machine) and the ratios to `off`. With drop_path_rate=0.5 the expected share of blocks run is
(3L - 1) / 4L = 74.5% for L = 54, so the ideal saving on the blocks is
about 25% (the paper measured 25% on a GPU).

Usage:
    python benchmarks/stochastic_depth.py [--steps 4] [--rounds 6] [--batch 128]
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
    parser.add_argument("--steps", type=int, default=4, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    n = args.batch * args.steps
    x = rng.normal(size=(n, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=(n,)).astype("int32")

    models = {name: build(options, args.depth, seed=1) for name, options in CONFIGS.items()}
    for model in models.values():  # trace the train step; not timed
        model.fit(x[: 2 * args.batch], y[: 2 * args.batch], batch_size=args.batch, verbose=0)

    wall: dict[str, list[float]] = {name: [] for name in models}
    cpu: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            model.fit(x, y, batch_size=args.batch, epochs=1, shuffle=False, verbose=0)
            wall[name].append((time.perf_counter() - start_wall) / args.steps)
            cpu[name].append((time.process_time() - start_cpu) / args.steps)

    blocks = 3 * ((args.depth - 2) // 6)
    expected = sum(keras_resnets.survival_probabilities(blocks, 0.5)) / blocks
    print(
        f"CIFAR ResNet-{args.depth} ({blocks} blocks), batch {args.batch}, model.fit, "
        f"{args.rounds} rounds x {args.steps} steps each, "
        f"keras {keras.__version__}, backend {keras.backend.backend()}, {os.cpu_count()} cores"
    )
    print(f"expected share of blocks run with drop_path_rate=0.5: {expected:.3f}")
    mean = {name: float(np.mean(t)) for name, t in wall.items()}
    for name in models:
        rounds = ", ".join(f"{t:.2f}" for t in wall[name])
        print(
            f"{name:>7}: wall {mean[name]:6.2f} s/step (median {np.median(wall[name]):.2f}), "
            f"process CPU {np.mean(cpu[name]):6.2f} s/step; rounds (wall s/step): {rounds}"
        )
    for name in ("batch", "sample"):
        ratio = mean[name] / mean["off"]
        median = np.median(wall[name]) / np.median(wall["off"])
        cpu_ratio = np.mean(cpu[name]) / np.mean(cpu["off"])
        print(
            f"{name} / off: wall {ratio:.3f} ({(1 - ratio) * 100:+.1f}% time saved), "
            f"median wall {median:.3f}, process CPU {cpu_ratio:.3f} "
            f"({(1 - cpu_ratio) * 100:+.1f}% saved)"
        )
    print(f"batch / sample: wall {mean['batch'] / mean['sample']:.3f}")
    return mean


if __name__ == "__main__":
    main()
