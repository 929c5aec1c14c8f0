"""Throughput of ResNet-50 and its timm-era variants, side by side in one run.

Models (float32, `jit_compile=False`, a fixed random batch at `--size`):
ResNet-50, ResNet-50-D (deep stem + average-pool shortcut), SE-ResNet-50
(Squeeze-and-Excitation in every unit) and ResNeSt-50 (split attention of
radix 2, average-pool downsampling, ResNet-D's stem and shortcut). For each:
trainable parameters, inference images/s and
training images/s (`train_on_batch`, SGD momentum 0.9), both through
Keras's compiled step functions (`predict_on_batch`, `train_on_batch`: one
graph call, not op-by-op eager dispatch), timed interleaved
(A, B, C, D, A, ...) after `--warmup` untimed calls, medians of `--steps`,
and the ratio to ResNet-50.

Then where the attention blocks' time goes (`--blocks`, default on): at each
stage's shape of ResNet-50 at `--size` (56x56x256 ... 7x7x2048 at 224), the
forward time of one plain bottleneck unit, of the SE block alone, and of the
3x3 stage of a ResNeSt unit (the `SplitAttention` layer) against the plain
3x3 convolution + BN + ReLU it replaces. The SE block's multiply-adds are
under 0.1% of a unit's; its time is the global pooling and the rescaling of
the whole feature map, which read and write every value. SplitAttention's
grouped convolution has the plain one's multiply-adds (radix 2: two groups,
each reading half the channels and writing the full width) but writes twice
the channels, which its BN and ReLU then read, plus the radix sum, the
attention's pooling, two 1x1 convolutions, softmax and weighted sum.

    python benchmarks/resnet_variants.py                  # batch 8, 5 steps, 224
    python benchmarks/resnet_variants.py --batch 16 --steps 9 --no-blocks
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from resnext_vs_resnet import _batch, _compile, interleaved  # noqa: E402

import keras_resnets  # noqa: E402
from keras_resnets import blocks  # noqa: E402
from keras_resnets.layers.split_attention import SplitAttention  # noqa: E402

MODELS = ("ResNet50", "ResNet50D", "SEResNet50", "ResNeSt50")
# ResNet-50's stages at 224x224: (spatial size, output channels, inner width).
STAGES = ((56, 256, 64), (28, 512, 128), (14, 1024, 256), (7, 2048, 512))


def _count(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def models_table(args) -> list[str]:
    x, y = _batch(args.batch, args.size)
    models = {
        name: _compile(getattr(keras_resnets, name)(input_shape=(args.size, args.size, 3)))
        for name in MODELS
    }
    infer = {name: (lambda m=m: m.predict_on_batch(x)) for name, m in models.items()}
    train = {name: (lambda m=m: m.train_on_batch(x, y)) for name, m in models.items()}
    inference = interleaved(infer, args.steps, args.warmup)
    training = interleaved(train, args.steps, args.warmup)
    lines = [
        f"batch {args.batch}, {args.size}x{args.size}, float32, {keras.backend.backend()}",
        "| model | params | inference img/s | ratio | training img/s | ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    base_i, base_t = inference["ResNet50"], training["ResNet50"]
    for name, model in models.items():
        i, t = inference[name], training[name]
        lines.append(
            f"| {name} | {_count(model):,} | {args.batch / i:.1f} | {base_i / i:.2f} "
            f"| {args.batch / t:.1f} | {base_t / t:.2f} |"
        )
    return lines


def _block(fn, shape):
    inputs = keras.Input(shape)
    return keras.Model(inputs, fn(inputs))


def _stage_ms(args, size: int, channels: int, width: int) -> dict:
    """Milliseconds per call of a unit, SE, a plain 3x3 stage and SplitAttention at a shape."""
    x = np.random.default_rng(0).random((args.batch, size, size, channels), np.float32)
    inner = np.random.default_rng(1).random((args.batch, size, size, width), np.float32)
    unit = _block(lambda t: blocks.bottleneck_block(t, width, strides=1, name="u"), x.shape[1:])
    se = _block(lambda t: blocks.squeeze_excite(t, name="s"), x.shape[1:])

    def plain3x3(t):
        t = blocks.conv(t, width, 3, name="c")
        return blocks.relu(blocks.batch_norm(t, name="b"), name="r")

    plain = _block(plain3x3, inner.shape[1:])
    split = _block(lambda t: SplitAttention(width, 3, radix=2)(t), inner.shape[1:])
    calls = {
        "unit": lambda: unit.predict_on_batch(x),
        "se": lambda: se.predict_on_batch(x),
        "plain": lambda: plain.predict_on_batch(inner),
        "split": lambda: split.predict_on_batch(inner),
    }
    return {k: 1000 * v for k, v in interleaved(calls, args.steps, args.warmup).items()}


def blocks_table(args) -> list[str]:
    scale = args.size / 224
    lines = [
        "| stage shape | unit ms | SE ms | SE / unit | 3x3+BN+ReLU ms | SplitAttention ms "
        "| split / plain |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for size, channels, width in STAGES:
        size = max(1, round(size * scale))
        ms = _stage_ms(args, size, channels, width)
        lines.append(
            f"| {size}x{size}x{channels} | {ms['unit']:.1f} | {ms['se']:.2f} "
            f"| {ms['se'] / ms['unit']:.2f} | {ms['plain']:.2f} | {ms['split']:.2f} "
            f"| {ms['split'] / ms['plain']:.2f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8, help="images per step (default 8)")
    parser.add_argument("--size", type=int, default=224, help="input size (default 224)")
    parser.add_argument("--steps", type=int, default=5, help="timed calls per model (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (default 2)")
    parser.add_argument(
        "--blocks",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the attention blocks alone at each stage's shape (default on)",
    )
    args = parser.parse_args(argv)
    for flag in ("batch", "steps"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be a positive integer, got {getattr(args, flag)}")
    if args.size < 32 or args.warmup < 0:
        parser.error(f"--size must be >= 32 and --warmup >= 0, got {args.size}, {args.warmup}")
    print("\n".join(models_table(args)))
    if args.blocks:
        print()
        print("\n".join(blocks_table(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
