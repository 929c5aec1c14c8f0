"""Grouped 3x3 convolution: native vs split vs custom gradient, forward and forward+backward.

Measures, side by side in one run, one ResNeXt-50 stage-3 convolution (3x3,
256 channels, 32 groups, 28x28) computed by `GroupedConv2D` with
`implementation="native"` (one grouped convolution; on TensorFlow CPU Keras
compiles it with XLA), `"split"` (one convolution per group on channel
slices, concatenated) and `"custom_gradient"` (one grouped `tf.nn.conv2d`
with a hand-written gradient), plus a dense 256->256 3x3 convolution (32x the
arithmetic) for scale. Everything runs inside `tf.function`; the median of
`--repeats` timed calls after one warm-up call is reported, and the ratios.
`--stride 2` measures the strided form (first block of a stage);
`--size 56 --channels 128` is a stage-2 layer.

    python benchmarks/grouped_conv.py                 # batch 8
    python benchmarks/grouped_conv.py --batch 32 --repeats 3
    python benchmarks/grouped_conv.py --skip-native   # native's backward takes minutes
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_resnets.layers import GroupedConv2D  # noqa: E402


def _time(fn, repeats: int) -> float:
    fn()  # trace and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(layer, x, repeats: int) -> tuple[float, float]:
    """Median seconds of a forward call and of a forward + backward call."""
    layer.build(x.shape)

    @tf.function
    def forward():
        return layer(x)

    @tf.function
    def forward_backward():
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.square(layer(x)))
        return tape.gradient(loss, [x, *layer.trainable_weights])

    return _time(lambda: forward().numpy(), repeats), _time(
        lambda: [g.numpy() for g in forward_backward()], repeats
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--groups", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--skip-native", action="store_true")
    args = parser.parse_args(argv)
    shape = (args.batch, args.size, args.size, args.channels)
    x = tf.constant(np.random.default_rng(0).standard_normal(shape).astype("float32"))
    c, g = args.channels, args.groups
    s = args.stride
    print(
        f"3x3 conv, stride {s}, {c} channels, {g} groups, input {shape}, float32, "
        f"{keras.backend.backend()}"
    )
    print(f"cores: {os.cpu_count()} (shared machine: compare the ratios, not absolute times)")
    kwargs = dict(strides=s, padding="same", groups=g)
    layers = {
        "split": GroupedConv2D(c, 3, implementation="split", **kwargs),
        "custom_gradient": GroupedConv2D(c, 3, implementation="custom_gradient", **kwargs),
    }
    if not args.skip_native:
        layers["native"] = GroupedConv2D(c, 3, implementation="native", **kwargs)
    layers[f"dense ({g}x the work)"] = keras.layers.Conv2D(c, 3, strides=s, padding="same")
    results = {name: measure(layer, x, args.repeats) for name, layer in layers.items()}
    print(f"{'implementation':<22}{'forward ms':>12}{'fwd+bwd ms':>12}")
    for name, (fwd, both) in results.items():
        print(f"{name:<22}{fwd * 1e3:>12.1f}{both * 1e3:>12.1f}")
    split, custom = results["split"], results["custom_gradient"]
    print(f"custom_gradient / split time, forward:          {custom[0] / split[0]:.2f}x")
    print(f"custom_gradient / split time, forward+backward: {custom[1] / split[1]:.2f}x")
    if "native" in results:
        native = results["native"]
        print(f"native / split time, forward:                   {native[0] / split[0]:.2f}x")
        print(f"native / split time, forward+backward:          {native[1] / split[1]:.2f}x")


if __name__ == "__main__":
    main()
