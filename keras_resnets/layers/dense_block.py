"""The dense block of Huang et al. (2017), with a memory-lean training mode."""

from __future__ import annotations

import keras
from keras import ops

from keras_resnets.utils import check_bool, check_positive_int, is_number


def _custom_gradient(f):
    """`keras.ops.custom_gradient`, plus PyTorch, where Keras has none.

    `f(*args)` returns `(output, grad)` with `grad(upstream)` giving one
    gradient per argument, as for `keras.ops.custom_gradient`. On PyTorch
    the same function runs inside a `torch.autograd.Function`: its forward
    pass runs without autograd, so nothing but the inputs is kept for the
    backward pass, which calls `grad`.
    """
    if keras.backend.backend() != "torch":
        return ops.custom_gradient(f)
    import torch

    class _Segment(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *args):
            output, grad = f(*args)
            ctx.grad = grad
            return output

        @staticmethod
        def backward(ctx, upstream):
            grads = ctx.grad(upstream)
            del ctx.grad
            return tuple(grads)

    def apply(*args):
        return _Segment.apply(*(ops.convert_to_tensor(a) for a in args))

    return apply


def _conv_kernel_initializer():
    # torchvision's DenseNet: kaiming_normal_ (fan-in, untruncated normal).
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_in", distribution="untruncated_normal"
    )


def _kernel_gradient(z, upstream, kernel_size: int):
    """Gradient of a stride-1 "same" convolution's kernel, as shifted products.

    `dK[a, b] = sum_{n,h,w} z_pad[n, h + a, w + b, :]^T upstream[n, h, w, :]`.
    """
    if kernel_size == 1:
        return ops.expand_dims(ops.einsum("nhwc,nhwd->cd", z, upstream), (0, 1))
    pad = kernel_size // 2
    z_pad = ops.pad(z, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    last = kernel_size - 1
    rows = []
    for a in range(kernel_size):
        row = []
        for b in range(kernel_size):
            window = z_pad[:, a : (a - last) or None, b : (b - last) or None, :]
            row.append(ops.einsum("nhwc,nhwd->cd", window, upstream))
        rows.append(ops.stack(row))
    return ops.stack(rows)


def _bn_relu_conv(
    features, gamma, beta, kernel, mean, variance, *, epsilon, batch_stats, kernel_size
):
    """concat -> BatchNorm -> ReLU -> conv, keeping only the inputs for backward.

    The gradient is written by hand: the backward pass recomputes the
    concatenation, the normalised values and the ReLU from the block's
    feature maps (which the block keeps anyway) instead of storing them, so
    each dense layer holds only its small output, not a copy of everything
    before it. With `batch_stats`, `mean` and `variance` are the batch
    moments of the concatenation and the gradient includes their dependence
    on the inputs, exactly as autodiff through BatchNormalization does.
    """
    splits = [int(f.shape[-1]) for f in features]
    feature_dtype = features[0].dtype
    conv_dtype = kernel.dtype
    count = len(features)

    def normalised(feats, gamma, beta, mean, variance):
        x = ops.concatenate(feats, axis=-1) if count > 1 else feats[0]
        x = ops.cast(x, "float32")
        inv = ops.rsqrt(variance + epsilon)
        x_hat = (x - mean) * inv
        return x_hat, x_hat * gamma + beta, inv

    @_custom_gradient
    def segment(gamma, beta, kernel, mean, variance, *feats):
        _, y, _ = normalised(feats, gamma, beta, mean, variance)
        out = ops.conv(ops.cast(ops.relu(y), conv_dtype), kernel, strides=1, padding="same")

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            # Recompute what the forward pass did not keep.
            x_hat, y, inv = normalised(_after(feats, upstream), gamma, beta, mean, variance)
            z = ops.cast(ops.relu(y), conv_dtype)
            d_kernel = _kernel_gradient(z, upstream, kernel_size)
            d_z = ops.conv_transpose(upstream, kernel, strides=1, padding="same")
            d_y = ops.where(y > 0, ops.cast(d_z, "float32"), 0.0)
            d_beta = ops.sum(d_y, axis=(0, 1, 2))
            d_gamma = ops.sum(d_y * x_hat, axis=(0, 1, 2))
            if batch_stats:
                shape = ops.shape(d_y)
                size = ops.cast(shape[0] * shape[1] * shape[2], "float32")
                d_x = (gamma * inv) * (d_y - (d_beta + x_hat * d_gamma) / size)
            else:
                d_x = (gamma * inv) * d_y
            d_x = ops.cast(d_x, feature_dtype)
            d_feats = ops.split(d_x, _cumulative(splits), axis=-1) if count > 1 else [d_x]
            return (
                d_gamma,
                d_beta,
                ops.cast(d_kernel, conv_dtype),
                ops.zeros_like(mean),
                ops.zeros_like(variance),
                *d_feats,
            )

        return out, grad

    return segment(gamma, beta, kernel, mean, variance, *features)


def _cumulative(sizes):
    points, total = [], 0
    for size in sizes[:-1]:
        total += size
        points.append(total)
    return points


def _after(tensors, anchor):
    """Return `tensors`, ordered after `anchor` is computed (backend switch).

    Graph compilers merge identical computations: without an ordering edge,
    TensorFlow's graph optimiser merges the backward pass's recomputed
    concatenation with the forward one and keeps it alive, undoing the
    saving (measured: DenseNet-121, batch 8, training peak 1,887 MiB
    without this edge, 1,269 MiB with it). On TensorFlow this adds a
    control dependency on the upstream gradient; other backends get the
    tensors unchanged.
    """
    if keras.backend.backend() != "tensorflow":
        return tensors
    import tensorflow as tf

    with tf.control_dependencies([anchor]):
        return [tf.identity(t) for t in tensors]


@keras.saving.register_keras_serializable(package="keras_resnets")
class DenseBlock(keras.layers.Layer):
    """A dense block: each layer sees the concatenation of all before it.

    Huang et al. (2017). Layer `j` computes BN-ReLU-conv on the
    concatenation of the block input and the outputs of layers `1..j-1` and
    adds `growth_rate` channels; the block returns the concatenation of
    everything (`in_channels + num_layers * growth_rate` channels). With
    `bottleneck=True` (DenseNet-B) each layer is BN-ReLU-1x1 conv
    (`bottleneck_width * growth_rate` channels)-BN-ReLU-3x3 conv; without,
    BN-ReLU-3x3 conv. Dropout (if any) follows every convolution, as in the
    paper.

    With `memory_efficient=True` the first BN-ReLU-conv of each layer, the
    one that reads the whole concatenation, keeps no intermediate results:
    its backward pass recomputes the concatenation, the normalisation and
    the ReLU from the block's feature maps. Activation memory then grows
    linearly with the block length instead of quadratically; outputs,
    gradients, moving statistics and weights are the same as with
    `memory_efficient=False` (same sub-layers, same weight files). It runs
    on every backend: `keras.ops.custom_gradient` on TensorFlow and JAX, a
    `torch.autograd.Function` around the same hand-written gradient on
    PyTorch.

    Sub-layers are named `{name}_layer{j}_bn1`, `_conv1`, `_bn2`, `_conv2`
    (`_dropout1`, `_dropout2`), with `j` from 1; find them with
    `keras_resnets.utils.find_layer(model, "block1_layer3_conv2")`.

    Args:
        num_layers: number of dense layers (>= 1).
        growth_rate: channels each layer adds, `k` (>= 1).
        bottleneck: add the 1x1 bottleneck convolution (DenseNet-B).
        bottleneck_width: bottleneck channels as a multiple of
            `growth_rate` (4 in the paper and torchvision).
        dropout: dropout rate after each convolution, in [0, 1).
        memory_efficient: recompute the BN-ReLU-concatenation in the
            backward pass instead of keeping it.
        epsilon: BatchNormalization epsilon (1e-5, as PyTorch).
        momentum: BatchNormalization momentum (0.9, PyTorch's 0.1).
        **kwargs: standard `keras.layers.Layer` arguments (`name`, ...).

    Example:
        >>> import numpy as np
        >>> block = DenseBlock(num_layers=6, growth_rate=32, name="block1")
        >>> block(np.ones((1, 56, 56, 64), "float32")).shape
        (1, 56, 56, 256)
    """

    def __init__(
        self,
        num_layers: int,
        growth_rate: int,
        bottleneck: bool = True,
        bottleneck_width: int = 4,
        dropout: float = 0.0,
        memory_efficient: bool = False,
        epsilon: float = 1e-5,
        momentum: float = 0.9,
        **kwargs,
    ):
        super().__init__(**kwargs)
        num_layers = check_positive_int("num_layers", num_layers)
        growth_rate = check_positive_int("growth_rate", growth_rate)
        bottleneck_width = check_positive_int("bottleneck_width", bottleneck_width)
        bottleneck = check_bool("bottleneck", bottleneck)
        memory_efficient = check_bool("memory_efficient", memory_efficient)
        if not is_number(dropout) or not 0 <= dropout < 1:
            raise ValueError(f"`dropout` must be a rate in [0, 1), got {dropout!r}.")
        self.num_layers = num_layers
        self.growth_rate = growth_rate
        self.bottleneck = bottleneck
        self.bottleneck_width = bottleneck_width
        self.dropout = float(dropout)
        self.memory_efficient = memory_efficient
        self.epsilon = epsilon
        self.momentum = momentum
        self._index: list[dict[str, int]] = []
        sublayers = []

        def add(key: str, layer, slot: dict):
            slot[key] = len(sublayers)
            sublayers.append(layer)

        first_kernel = 1 if bottleneck else 3
        first_width = bottleneck_width * growth_rate if bottleneck else growth_rate
        for j in range(1, num_layers + 1):
            prefix = f"{self.name}_layer{j}"
            slot: dict[str, int] = {}
            add("bn1", self._bn(f"{prefix}_bn1"), slot)
            add("conv1", self._conv(first_width, first_kernel, f"{prefix}_conv1"), slot)
            if self.dropout and bottleneck:
                add("dropout1", keras.layers.Dropout(self.dropout, name=f"{prefix}_dropout1"), slot)
            if bottleneck:
                add("bn2", self._bn(f"{prefix}_bn2"), slot)
                add("conv2", self._conv(growth_rate, 3, f"{prefix}_conv2"), slot)
            if self.dropout:
                last = "dropout2" if bottleneck else "dropout1"
                add(last, keras.layers.Dropout(self.dropout, name=f"{prefix}_{last}"), slot)
            self._index.append(slot)
        self.sublayers = sublayers

    def _bn(self, name):
        return keras.layers.BatchNormalization(
            epsilon=self.epsilon, momentum=self.momentum, name=name, dtype=self.dtype_policy
        )

    def _conv(self, filters, kernel_size, name):
        return keras.layers.Conv2D(
            filters,
            kernel_size,
            padding="same",
            use_bias=False,
            kernel_initializer=_conv_kernel_initializer(),
            name=name,
            dtype=self.dtype_policy,
        )

    def _get(self, j: int, key: str):
        index = self._index[j].get(key)
        return None if index is None else self.sublayers[index]

    def build(self, input_shape):
        batch, height, width, channels = input_shape
        if channels is None:
            raise ValueError(f"DenseBlock {self.name!r} needs a known channel count.")
        for j in range(self.num_layers):
            shape = (batch, height, width, channels + j * self.growth_rate)
            bn1, conv1 = self._get(j, "bn1"), self._get(j, "conv1")
            bn1.build(shape)
            conv1.build(shape)
            if self.bottleneck:
                inner = (batch, height, width, conv1.filters)
                self._get(j, "bn2").build(inner)
                self._get(j, "conv2").build(inner)

    def call(self, inputs, training=None):
        features = [inputs]
        stats: list = []
        for j in range(self.num_layers):
            bn1, conv1 = self._get(j, "bn1"), self._get(j, "conv1")
            if self.memory_efficient:
                h = self._lean_first(features, stats, bn1, conv1, training)
            else:
                x = ops.concatenate(features, axis=-1) if len(features) > 1 else inputs
                h = conv1(ops.relu(bn1(x, training=training)))
            if self.bottleneck:
                if self.dropout:
                    h = self._get(j, "dropout1")(h, training=training)
                h = self._get(j, "bn2")(h, training=training)
                h = self._get(j, "conv2")(ops.relu(h))
            if self.dropout:
                h = self._get(j, "dropout2" if self.bottleneck else "dropout1")(
                    h, training=training
                )
            features.append(h)
        return ops.concatenate(features, axis=-1)

    def _lean_first(self, features, stats, bn, conv, training):
        """BN-ReLU-conv on the concatenation without storing it (see module)."""
        batch_stats = bool(training) and bn.trainable
        if batch_stats:
            # Each feature map's batch moments are the same for every later
            # layer: compute them once per map.
            while len(stats) < len(features):
                piece = ops.stop_gradient(ops.cast(features[len(stats)], "float32"))
                stats.append(ops.moments(piece, axes=(0, 1, 2)))
            mean = ops.concatenate([m for m, _ in stats], axis=0)
            variance = ops.concatenate([v for _, v in stats], axis=0)
            moving_mean = ops.cast(bn.moving_mean, "float32")
            moving_variance = ops.cast(bn.moving_variance, "float32")
            bn.moving_mean.assign(moving_mean * bn.momentum + mean * (1.0 - bn.momentum))
            bn.moving_variance.assign(
                moving_variance * bn.momentum + variance * (1.0 - bn.momentum)
            )
        else:
            mean = ops.cast(bn.moving_mean, "float32")
            variance = ops.cast(bn.moving_variance, "float32")
        kernel = ops.cast(conv.kernel, conv.compute_dtype)
        return _bn_relu_conv(
            list(features),
            ops.cast(bn.gamma, "float32"),
            ops.cast(bn.beta, "float32"),
            kernel,
            mean,
            variance,
            epsilon=bn.epsilon,
            batch_stats=batch_stats,
            kernel_size=conv.kernel_size[0],
        )

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return (batch, height, width, channels + self.num_layers * self.growth_rate)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_layers": self.num_layers,
                "growth_rate": self.growth_rate,
                "bottleneck": self.bottleneck,
                "bottleneck_width": self.bottleneck_width,
                "dropout": self.dropout,
                "memory_efficient": self.memory_efficient,
                "epsilon": self.epsilon,
                "momentum": self.momentum,
            }
        )
        return config
