"""Helpers for the cross-backend tests: deterministic weights and the model list.

`set_deterministic_weights` gives every variable a value that depends only on
its path (not on the backend, the process or the variable order), so the same
model built on TensorFlow, JAX and PyTorch holds identical weights without any
file, and its outputs can be compared with a fixture made on TensorFlow.
"""

from __future__ import annotations

import zlib

import numpy as np

# The smallest CIFAR model of every family, with the options that exercise
# each custom layer. Extend this when a family or layer lands; then run
# `python tests/fixtures/make_backend_fixtures.py` on TensorFlow.
CASES: dict[str, tuple[str, dict]] = {
    "resnet20_zero_pad": ("ResNet20", {}),
    "resnet20_projection": ("ResNet20", {"shortcut": "projection"}),
    "plain20": ("Plain20", {}),
    "resnet20_exclusive_gating": ("ResNet20", {"shortcut_variant": "exclusive_gating"}),
    "preact_resnet110": ("PreActResNet110", {}),
    "highway19": ("HighwayNet19", {}),
    "resnext_11_4x4d": ("CifarResNeXt", {"depth": 11, "cardinality": 4, "base_width": 4}),
    "wide_resnet_10_2": ("WideResNet", {"depth": 10, "width": 2}),
    "densenet_bc16": ("CifarDenseNet", {"depth": 16, "growth_rate": 12}),
    "resnet20_stochastic_depth": ("ResNet20", {"drop_path_rate": 0.5}),
}

INPUT_SEED = 1234


def fixed_input(batch: int = 2, size: int = 32) -> np.ndarray:
    """A fixed float32 batch of images in [0, 1)."""
    return np.random.default_rng(INPUT_SEED).random((batch, size, size, 3), dtype=np.float32)


def set_deterministic_weights(model) -> None:
    """Fill every variable of `model` from a generator seeded by its path."""
    for variable in model.weights:
        rng = np.random.default_rng(zlib.crc32(variable.path.encode()))
        shape = tuple(variable.shape)
        leaf = variable.path.rsplit("/", 1)[-1]
        if leaf in ("moving_variance",):
            value = rng.uniform(0.5, 1.5, shape)
        elif leaf in ("gamma",):
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) >= 2:
            fan_in = int(np.prod(shape[:-1]))
            value = rng.standard_normal(shape) * np.sqrt(1.0 / fan_in)
        else:
            value = rng.standard_normal(shape) * 0.1
        variable.assign(value.astype(variable.dtype))


def build_case(key: str):
    """Build the model of `CASES[key]` with logits output and fixed weights."""
    model = build_fresh(key)
    set_deterministic_weights(model)
    return model


def build_fresh(key: str):
    """Build the model of `CASES[key]` with logits output and initial weights."""
    import keras_resnets

    name, options = CASES[key]
    return getattr(keras_resnets, name)(classifier_activation=None, **options)


def gradients_of_weighted_sum(layer, x: np.ndarray, probe: np.ndarray, training: bool = False):
    """Output, d/dx and d/dweights of sum(layer(x) * probe), on any backend.

    Returns numpy arrays: `(output, grad_x, [grad_w for w in trainable])`.
    """
    import keras

    backend = keras.backend.backend()
    if not layer.built:
        layer.build(x.shape)
    variables = layer.trainable_variables
    if backend == "tensorflow":
        import tensorflow as tf

        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = layer(xt, training=training)
            loss = tf.reduce_sum(y * probe)
        grads = tape.gradient(loss, [xt, *variables])
        return y.numpy(), grads[0].numpy(), [g.numpy() for g in grads[1:]]
    if backend == "jax":
        import jax

        fixed = [v.value for v in layer.non_trainable_variables]

        def loss(values, xx):
            kwargs = {"training": True} if training else {}
            y, _ = layer.stateless_call(values, fixed, xx, **kwargs)
            return jax.numpy.sum(y * probe), y

        values = [v.value for v in variables]
        (grad_w, grad_x), y = jax.grad(loss, argnums=(0, 1), has_aux=True)(values, x)
        return np.asarray(y), np.asarray(grad_x), [np.asarray(g) for g in grad_w]
    import torch

    xt = torch.tensor(x, requires_grad=True)
    y = layer(xt, training=training)
    (y * torch.tensor(probe)).sum().backward()
    grad_w = [v.value.grad.detach().cpu().numpy() for v in variables]
    return y.detach().cpu().numpy(), xt.grad.numpy(), grad_w


def stochastic_depth_families() -> dict:
    """A tiny builder for every registered family that takes `drop_path_rate`.

    Keys are the registry's family labels (`model_info(name).family`);
    `tests/test_stochastic_depth.py` checks that these are exactly the
    families whose registered models accept `drop_path_rate`, so a new
    family with stochastic depth must add its row here. The Wide ResNet row
    has dropout inside its branches (a seed generator in the skipped work).
    """
    import keras_resnets

    return {
        "ResNet v1": lambda **kw: keras_resnets.CifarResNet(depth=8, **kw),
        "ResNet v2 (pre-activation)": lambda **kw: keras_resnets.CifarResNet(
            depth=8, unit="full_preactivation", **kw
        ),
        "ResNeXt": lambda **kw: keras_resnets.CifarResNeXt(
            depth=11, cardinality=2, base_width=4, **kw
        ),
        "Wide ResNet": lambda **kw: keras_resnets.WideResNet(
            depth=10, width=1, dropout_rate=0.3, **kw
        ),
        # The timm-era families are the ResNet body with block ideas: two rows
        # combine them (`COVERED_BY` says which row stands for which family).
        "SE-ResNeXt": lambda **kw: keras_resnets.ResNeXt(
            (1, 1), cardinality=2, base_width=16, widths=(8, 16), stem="deep_tiered",
            downsample="avg", attention="se", **kw,
        ),
        "ResNeSt": lambda **kw: keras_resnets.ResNet(
            (1, 1), widths=(4, 8), block="bottleneck", stem="deep", stem_width=4,
            stem_pool="conv", downsample="avg", radix=2, avd=True, attention="eca", **kw,
        ),
    }  # fmt: skip


#: Families whose block ideas a row of `stochastic_depth_families` combines.
COVERED_BY = {
    "ResNet-D/T": "SE-ResNeXt",
    "SE-ResNet": "SE-ResNeXt",
    "ResNet-RS": "ResNeSt",
    "ECA-ResNet": "ResNeSt",
}
