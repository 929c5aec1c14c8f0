"""Training-step throughput at 224x224 (`--size`): ResNeXt-50 (32x4d) vs ResNet-50, native vs auto.

Measured side by side in one run, float32, each model compiled with
`jit_compile=False` and trained with `train_on_batch` (SGD momentum 0.9,
sparse categorical cross-entropy) on a fixed random batch:

- ResNet-50 (`keras_resnets.ResNet50`);
- ResNeXt-50 32x4d with `implementation="auto"` (on TensorFlow CPU:
  "custom_gradient", one grouped convolution with a hand-written gradient);
- ResNeXt-50 32x4d with `implementation="split"` (one convolution per group),
  unless "auto" already is split (`--skip-split` leaves it out);
- ResNeXt-50 32x4d with `implementation="native"` (one grouped convolution);
  on TensorFlow CPU its backward pass is minutes per step, so it gets its own
  smaller batch (`--native-batch`) and one timed step (`--skip-native` leaves
  it out);
- forward-only (inference) throughput of the same models, to show where the
  time goes.

After `--warmup` untimed steps (tracing), the models are timed in turn, step
by step (interleaved, so a shared machine's load drifts on all alike); the
median of `--steps` timed steps is reported as images/s, with the ratios the
issue asks for.

    python benchmarks/resnext_vs_resnet.py                  # batch 4, 3 steps
    python benchmarks/resnext_vs_resnet.py --skip-native --batch 16
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_resnets  # noqa: E402


def _batch(batch: int, size: int):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, size, size, 3)).astype("float32")
    y = rng.integers(0, 1000, batch)
    return x, y


def _compile(model):
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        jit_compile=False,
    )
    return model


def interleaved(calls: dict, steps: int, warmup: int) -> dict:
    """Median seconds per call of each function, timed in turn step by step.

    Interleaving (A, B, A, B, ...) rather than timing A then B keeps a
    shared machine's changing load from favouring whichever ran first.
    """
    for call in calls.values():
        for _ in range(warmup):
            call()
    times = {name: [] for name in calls}
    for _ in range(steps):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


# The smallest input the models take: ResNet-50 and ResNeXt-50 downsample by 32.
MIN_SIZE = 32


def _at_least(minimum: int):
    """An argparse type: an integer >= `minimum` (argparse names the flag in its error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's flags, each checked by its type (usage errors exit 2)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=_at_least(1), default=4)
    parser.add_argument(
        "--size", type=_at_least(MIN_SIZE), default=224, help="input height and width"
    )
    parser.add_argument("--steps", type=_at_least(1), default=3)
    parser.add_argument("--warmup", type=_at_least(0), default=1)
    parser.add_argument("--native-batch", type=_at_least(1), default=2)
    parser.add_argument("--skip-native", action="store_true")
    parser.add_argument("--skip-split", action="store_true")
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    shape = (args.size, args.size, 3)
    print(
        f"{keras.backend.backend()} backend, {os.cpu_count()} cores (shared machine: "
        f"compare ratios), float32, {args.size}x{args.size}, training batch {args.batch}, "
        f"inference batch {4 * args.batch}, median of {args.steps} interleaved steps after "
        f"{args.warmup} warm-up"
    )
    models = {
        "ResNet-50": keras_resnets.ResNet50(input_shape=shape),
        "ResNeXt-50 auto": keras_resnets.ResNeXt50(input_shape=shape, implementation="auto"),
    }
    resolved = models["ResNeXt-50 auto"].get_layer("stage2_block1_conv2").resolved_implementation
    models[f"ResNeXt-50 auto ({resolved})"] = models.pop("ResNeXt-50 auto")
    if resolved != "split" and not args.skip_split:
        models["ResNeXt-50 split"] = keras_resnets.ResNeXt50(
            input_shape=shape, implementation="split"
        )
    x, y = _batch(args.batch, args.size)
    x_infer, _ = _batch(4 * args.batch, args.size)
    for model in models.values():
        _compile(model)
    train_calls = {name: (lambda m=m: m.train_on_batch(x, y)) for name, m in models.items()}
    infer_calls = {name: (lambda m=m: m.predict_on_batch(x_infer)) for name, m in models.items()}
    train = {
        name: args.batch / t
        for name, t in interleaved(train_calls, args.steps, args.warmup).items()
    }
    print("  training img/s:", {name: round(v, 3) for name, v in train.items()}, flush=True)
    infer = {
        name: 4 * args.batch / t for name, t in interleaved(infer_calls, args.steps, 1).items()
    }
    print("  inference img/s:", {name: round(v, 3) for name, v in infer.items()}, flush=True)
    native = None
    if not args.skip_native:
        model = _compile(keras_resnets.ResNeXt50(input_shape=shape, implementation="native"))
        xn, yn = _batch(args.native_batch, args.size)
        seconds = interleaved({"native": lambda: model.train_on_batch(xn, yn)}, 1, 1)["native"]
        native = args.native_batch / seconds

    resnet, resnext = list(train)[:2]
    print()
    print(f"{'model':<28}{'train img/s':>12}{'infer img/s':>12}")
    for name in train:
        print(f"{name:<28}{train[name]:>12.2f}{infer[name]:>12.2f}")
    if native is not None:
        print(f"{'ResNeXt-50 (native)':<28}{native:>12.3f}{'-':>12}")
    print()
    print(f"ResNeXt-50 / ResNet-50 training throughput:  {train[resnext] / train[resnet]:.2f}x")
    print(f"ResNeXt-50 / ResNet-50 inference throughput: {infer[resnext] / infer[resnet]:.2f}x")
    if "ResNeXt-50 split" in train:
        split = "ResNeXt-50 split"
        print(
            f"  (with split: training {train[split] / train[resnet]:.2f}x, inference "
            f"{infer[split] / infer[resnet]:.2f}x)"
        )
    if native is not None:
        print(f"ResNeXt-50 auto / native training throughput: {train[resnext] / native:.1f}x")


if __name__ == "__main__":
    main()
