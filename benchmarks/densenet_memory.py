"""Training memory and speed of DenseNet-121: ours (plain, memory-efficient) vs keras.applications.

Each variant runs in its own process (so peak RSS is its own): build the
model, compile it with SGD, run one warm-up training step (tracing), then
`--steps` timed training steps on one random batch. The three run back to
back in one invocation and the script prints the ratios to
keras.applications.DenseNet121, which is what to quote: absolute figures
drift on a shared machine.

    python benchmarks/densenet_memory.py                  # batch 32, 224x224
    python benchmarks/densenet_memory.py --batch 16 --steps 2

Peak RSS is the process's high-water mark (`ru_maxrss`), which includes the
framework and the model (about the same for all three); "training peak"
subtracts the RSS measured just before the first training step, so it is
the memory the training step itself needed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

VARIANTS = ("keras.applications", "plain", "memory_efficient")


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_one(variant: str, batch: int, size: int, steps: int) -> dict:
    """Build and train one variant in this process; return its figures."""
    import resource
    import time

    import keras
    import numpy as np

    import keras_resnets

    if variant == "keras.applications":
        model = keras.applications.DenseNet121(weights=None, input_shape=(size, size, 3))
    else:
        model = keras_resnets.DenseNet121(
            input_shape=(size, size, 3), memory_efficient=variant == "memory_efficient"
        )
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        jit_compile=False,
    )
    rng = np.random.default_rng(0)
    x = rng.random((batch, size, size, 3), dtype=np.float32)
    y = rng.integers(0, 1000, size=(batch,))
    before = _rss_mib()
    start = time.perf_counter()
    model.train_on_batch(x, y)
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "variant": variant,
        "params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "rss_before_mib": before,
        "peak_rss_mib": peak,
        "training_peak_mib": peak - before,
        "first_step_s": first,
        "step_s": float(np.median(times)),
        "img_per_s": batch / float(np.median(times)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after the warm-up")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(run_one(args.child, args.batch, args.size, args.steps)))
        return 0

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    results = {}
    for variant in args.variants:
        command = [
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            variant,
            *("--batch", str(args.batch), "--size", str(args.size), "--steps", str(args.steps)),
        ]
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            print(f"{variant}: failed (exit {done.returncode})\n{done.stderr[-2000:]}")
            continue
        results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{variant}: done", flush=True)

    print(
        f"\nDenseNet-121, one training step (SGD), batch {args.batch}, "
        f"{args.size}x{args.size}, {os.cpu_count()} CPUs, float32"
    )
    header = (
        f"{'variant':<20}{'params':>11}{'peak RSS MiB':>14}{'train peak MiB':>16}"
        f"{'img/s':>8}{'peak vs k.a.':>14}{'train peak vs k.a.':>20}{'img/s vs k.a.':>15}"
    )
    print(header)
    base = results.get("keras.applications")
    for variant, r in results.items():
        ratios = ("", "", "")
        if base:
            ratios = (
                f"{r['peak_rss_mib'] / base['peak_rss_mib']:.2f}",
                f"{r['training_peak_mib'] / base['training_peak_mib']:.2f}",
                f"{r['img_per_s'] / base['img_per_s']:.2f}",
            )
        print(
            f"{variant:<20}{r['params']:>11,}{r['peak_rss_mib']:>14.0f}"
            f"{r['training_peak_mib']:>16.0f}{r['img_per_s']:>8.2f}"
            f"{ratios[0]:>14}{ratios[1]:>20}{ratios[2]:>15}"
        )
    return 0 if len(results) == len(args.variants) else 1


if __name__ == "__main__":
    sys.exit(main())
