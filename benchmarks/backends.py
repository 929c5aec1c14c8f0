"""Throughput of our models on each Keras backend, side by side in one run.

    python benchmarks/backends.py                 # CPU: TensorFlow, JAX, PyTorch
    python benchmarks/backends.py --steps 20
    python benchmarks/backends.py --device gpu    # GPU: ours on JAX vs torchvision

CPU mode measures, for ResNet-50 (224x224) and CIFAR ResNet-20 (32x32),
inference and training (forward + backward + update) images per second on
each backend, each in its own process (the backend is fixed at import), and
prints the ratios to TensorFlow.

GPU mode measures training throughput of our ResNet-50 on JAX
(`mixed_bfloat16`) against torchvision's ResNet-50 on PyTorch (bfloat16
autocast) on the same GPU, each at the largest power-of-two batch that fits,
and prints the ratio. It needs jax[cuda] and torch + torchvision, not
TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CPU_CASES = [
    # (model, input size, inference batch, training batch)
    ("ResNet50", 224, 16, 4),
    ("ResNet20", 32, 128, 128),
]


def _time_steps(fn, steps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def worker_keras(args) -> None:
    """Runs inside a subprocess whose KERAS_BACKEND is already set."""
    import keras
    import numpy as np

    import keras_resnets

    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    results = {}
    rng = np.random.default_rng(0)
    for name, size, infer_batch, train_batch in (
        CPU_CASES if not args.gpu else [("ResNet50", 224, args.batch, args.batch)]
    ):
        model = keras_resnets.get_model(name)
        model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy")
        classes = model.output.shape[-1]
        entry = {}
        if not args.gpu:
            x = rng.random((infer_batch, size, size, 3), dtype=np.float32)
            per_step = _time_steps(lambda x=x, m=model: m.predict_on_batch(x), args.steps)
            entry["inference_img_s"] = infer_batch / per_step
        x = rng.random((train_batch, size, size, 3), dtype=np.float32)
        y = rng.integers(0, classes, train_batch)
        per_step = _time_steps(lambda x=x, y=y, m=model: m.train_on_batch(x, y), args.steps)
        entry["training_img_s"] = train_batch / per_step
        results[name] = entry
    print("RESULT " + json.dumps(results), flush=True)


def worker_torchvision(args) -> None:
    """torchvision ResNet-50 training throughput on CUDA with bf16 autocast."""
    import torch
    import torchvision

    model = torchvision.models.resnet50().cuda().to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.rand(args.batch, 3, 224, 224, device="cuda").to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (args.batch,), device="cuda")

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        torch.cuda.synchronize()

    per_step = _time_steps(step, args.steps)
    print("RESULT " + json.dumps({"ResNet50": {"training_img_s": args.batch / per_step}}))


def _run(env_backend: str, extra: list[str]) -> dict | None:
    env = {**os.environ, "KERAS_BACKEND": env_backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (proc.stderr or proc.stdout)[-400:]
    print(f"  [{env_backend} {' '.join(extra)}] failed: {tail.strip()}", file=sys.stderr)
    return None


def _largest_batch(backend: str, worker: str, steps: int) -> tuple[int, dict | None]:
    best, best_result, batch = 0, None, 32
    while batch <= 4096:
        result = _run(
            backend,
            [
                "--worker-kind",
                worker,
                "--gpu",
                "--batch",
                str(batch),
                "--steps",
                str(steps),
                "--mixed-precision",
            ],
        )
        if result is None:
            break
        best, best_result = batch, result
        batch *= 2
    return best, best_result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    # internal
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-kind", default="keras", help=argparse.SUPPRESS)
    parser.add_argument("--gpu", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--mixed-precision", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        (worker_torchvision if args.worker_kind == "torchvision" else worker_keras)(args)
        return 0

    if args.device == "gpu":
        ours_batch, ours = _largest_batch("jax", "keras", args.steps)
        theirs_batch, theirs = _largest_batch("torch", "torchvision", args.steps)
        if not ours or not theirs:
            print("could not measure both sides", file=sys.stderr)
            return 1
        a = ours["ResNet50"]["training_img_s"]
        b = theirs["ResNet50"]["training_img_s"]
        print(f"ours ResNet50 on JAX, mixed_bfloat16, batch {ours_batch}: {a:.1f} img/s")
        print(f"torchvision resnet50, bf16 autocast, batch {theirs_batch}: {b:.1f} img/s")
        print(f"ratio ours/torchvision: {a / b:.2f}")
        return 0

    backends = args.backends.split(",")
    results = {b: _run(b, ["--steps", str(args.steps)]) for b in backends}
    print(
        f"\n{'model':10} {'metric':16} "
        + " ".join(f"{b:>11}" for b in backends)
        + "   ratio to tensorflow"
    )
    for name, *_ in CPU_CASES:
        for metric in ("inference_img_s", "training_img_s"):
            values = [results[b][name][metric] if results[b] else float("nan") for b in backends]
            base = values[backends.index("tensorflow")] if "tensorflow" in backends else None
            ratios = " ".join(
                f"{b}={v / base:.2f}"
                for b, v in zip(backends, values, strict=True)
                if base and b != "tensorflow"
            )
            print(
                f"{name:10} {metric:16} " + " ".join(f"{v:11.1f}" for v in values) + f"   {ratios}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
