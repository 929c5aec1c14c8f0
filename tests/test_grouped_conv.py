"""GroupedConv2D: implementations agree, the kernel layout is Conv2D's, "auto" resolves."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_resnets
from keras_resnets.layers import (
    GroupedConv2D,
    get_grouped_conv_implementation,
    set_grouped_conv_implementation,
)
from keras_resnets.layers.grouped_conv import resolve_implementation

CASES = [
    # filters, kernel, strides, padding, groups, use_bias, input shape
    (8, 3, 1, "same", 4, False, (2, 7, 7, 8)),
    (12, 3, 2, "valid", 3, True, (2, 9, 9, 6)),
    (16, (3, 1), (2, 1), "same", 8, True, (1, 6, 5, 16)),
    (6, 1, 1, "valid", 2, False, (3, 4, 4, 4)),
    # the custom gradient's padding arithmetic: odd sizes, even kernels,
    # strides that do not divide the input, "valid" with unused rows
    (8, 3, 2, "same", 4, False, (2, 7, 9, 8)),
    (8, (4, 2), (2, 3), "same", 2, True, (2, 11, 10, 4)),
    (8, (5, 3), (3, 2), "valid", 2, False, (2, 13, 12, 4)),
    (6, (2, 4), 1, "same", 3, False, (2, 6, 7, 9)),
    (6, (3, 2), 1, "valid", 3, False, (1, 6, 7, 9)),
]
IMPLEMENTATIONS = ("native", "split", "custom_gradient")


@pytest.fixture(autouse=True)
def _reset_global():
    yield
    set_grouped_conv_implementation("auto")


def _forward_backward(layer, x, probe):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * probe)
    grads = tape.gradient(loss, [x, *layer.trainable_weights])
    return [y.numpy()] + [g.numpy() for g in grads]


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_every_implementation_agrees_with_keras_conv2d(case):
    filters, kernel, strides, padding, groups, use_bias, shape = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype("float32")
    kwargs = dict(strides=strides, padding=padding, groups=groups, use_bias=use_bias)
    layers = [GroupedConv2D(filters, kernel, implementation=i, **kwargs) for i in IMPLEMENTATIONS]
    reference = keras.layers.Conv2D(filters, kernel, **kwargs)
    for layer in (*layers, reference):
        layer.build(shape)
    weights = [rng.standard_normal(w.shape).astype("float32") for w in reference.weights]
    for layer in (*layers, reference):
        assert [tuple(w.shape) for w in layer.weights] == [w.shape for w in weights]
        layer.set_weights(weights)
    assert [layer.resolved_implementation for layer in layers] == list(IMPLEMENTATIONS)
    out_shape = reference.compute_output_shape(shape)
    assert layers[0].compute_output_shape(shape) == out_shape
    probe = rng.standard_normal(out_shape).astype("float32")
    expected = _forward_backward(reference, x, probe)
    for layer in layers:
        got = _forward_backward(layer, x, probe)
        assert got[0].shape == out_shape
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_one_kernel_variable_in_native_layout():
    layer = GroupedConv2D(64, 3, groups=32, use_bias=False, implementation="split")
    layer.build((None, 8, 8, 128))
    assert [tuple(w.shape) for w in layer.weights] == [(3, 3, 4, 64)]


def test_auto_resolves_to_custom_gradient_on_tensorflow_cpu_and_follows_the_global_setting():
    assert keras.backend.backend() == "tensorflow" and not tf.config.list_logical_devices("GPU")
    assert get_grouped_conv_implementation() == "auto"
    assert resolve_implementation("auto") == "custom_gradient"
    layer = GroupedConv2D(8, 3, groups=4)
    layer.build((None, 5, 5, 8))
    assert layer.resolved_implementation == "custom_gradient"

    set_grouped_conv_implementation("native")
    assert resolve_implementation("auto") == "native"
    assert resolve_implementation("split") == "split"  # explicit beats global
    layer = GroupedConv2D(8, 3, groups=4)
    layer.build((None, 5, 5, 8))
    assert layer.resolved_implementation == "native"
    assert layer.get_config()["implementation"] == "auto"
    # one group is a plain convolution whatever the setting
    single = GroupedConv2D(8, 3, groups=1, implementation="split")
    single.build((None, 5, 5, 8))
    assert single.resolved_implementation == "native"


def test_saved_model_reloads_with_another_implementation(tmp_path):
    inputs = keras.Input((6, 6, 8))
    outputs = GroupedConv2D(8, 3, padding="same", groups=4, kernel_regularizer="l2", name="gconv")(
        inputs
    )
    model = keras.Model(inputs, outputs)
    assert model.get_layer("gconv").resolved_implementation == "custom_gradient"
    x = np.random.default_rng(1).standard_normal((2, 6, 6, 8)).astype("float32")
    expected = model.predict(x, verbose=0)
    path = str(tmp_path / "g.keras")
    model.save(path)
    set_grouped_conv_implementation("native")
    loaded = keras.models.load_model(path)
    assert loaded.get_layer("gconv").resolved_implementation == "native"
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
    assert len(loaded.losses) == 1  # the regularizer survived


@pytest.mark.parametrize(
    "kwargs, build_shape, message",
    [
        (dict(filters=8, kernel_size=3, groups=3), None, "`groups`=3 must divide `filters`=8"),
        (dict(filters=8, kernel_size=3, groups=4), (None, 5, 5, 6), "input channels (6)"),
        (dict(filters=8, kernel_size=3, groups=0), None, "`groups` must be a positive"),
        (dict(filters=8, kernel_size=3, implementation="fast"), None, "`implementation`"),
        (dict(filters=8, kernel_size=3, padding="causal"), None, "`padding`"),
        (dict(filters=8, kernel_size=0), None, "`kernel_size`"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, build_shape, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        layer = GroupedConv2D(**kwargs)
        layer.build(build_shape)


def test_bad_global_setting():
    with pytest.raises(ValueError, match="`implementation` 'cudnn'"):
        set_grouped_conv_implementation("cudnn")
    assert get_grouped_conv_implementation() == "auto"


def _train_tiny_resnext(implementation, x, y, epochs=2):
    keras.utils.set_random_seed(0)
    model = keras_resnets.CifarResNeXt(
        depth=11,
        cardinality=4,
        base_width=4,
        input_shape=(12, 12, 3),
        classes=3,
        implementation=implementation,
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy"
    )
    # batch 5 does not divide 12 samples: the last batch of each epoch has a
    # different (retraced, then unknown) batch size
    history = model.fit(x, y, batch_size=5, epochs=epochs, shuffle=False, verbose=0)
    return model, history.history["loss"]


def test_custom_gradient_trains_a_resnext_as_split_does():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((12, 12, 12, 3)).astype("float32")
    y = rng.integers(0, 3, 12)
    split, split_loss = _train_tiny_resnext("split", x, y)
    custom, custom_loss = _train_tiny_resnext("custom_gradient", x, y)
    assert custom.get_layer("stage2_block1_conv2").resolved_implementation == "custom_gradient"
    np.testing.assert_allclose(custom_loss, split_loss, rtol=1e-4)
    for a, b in zip(custom.get_weights(), split.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_custom_gradient_under_mixed_bfloat16():
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        layers = [
            GroupedConv2D(16, 3, strides=s, padding="same", groups=4, implementation=i)
            for s in (1, 2)
            for i in ("split", "custom_gradient")
        ]
    finally:
        keras.config.set_dtype_policy(policy)
    x = np.random.default_rng(4).standard_normal((2, 8, 8, 16)).astype("float32")
    for split, custom in (layers[:2], layers[2:]):
        split.build(x.shape)
        custom.build(x.shape)
        custom.set_weights(split.get_weights())
        probe = np.ones(split.compute_output_shape(x.shape), "float32")
        got = _forward_backward(custom, tf.cast(x, "bfloat16"), tf.cast(probe, "bfloat16"))
        expected = _forward_backward(split, tf.cast(x, "bfloat16"), tf.cast(probe, "bfloat16"))
        assert got[0].dtype == np.dtype("bfloat16") or str(got[0].dtype) == "bfloat16"
        for a, b in zip(got, expected, strict=True):
            a, b = np.asarray(a, "float32"), np.asarray(b, "float32")
            np.testing.assert_allclose(a, b, rtol=0.05, atol=0.1 * np.abs(b).max())
