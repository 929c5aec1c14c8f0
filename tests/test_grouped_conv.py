"""GroupedConv2D: implementations agree, the kernel layout is Conv2D's, "auto" resolves."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

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
]


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
def test_native_split_and_keras_conv2d_agree(case):
    filters, kernel, strides, padding, groups, use_bias, shape = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype("float32")
    kwargs = dict(strides=strides, padding=padding, groups=groups, use_bias=use_bias)
    native = GroupedConv2D(filters, kernel, implementation="native", **kwargs)
    split = GroupedConv2D(filters, kernel, implementation="split", **kwargs)
    reference = keras.layers.Conv2D(filters, kernel, **kwargs)
    for layer in (native, split, reference):
        layer.build(shape)
    weights = [rng.standard_normal(w.shape).astype("float32") for w in reference.weights]
    for layer in (native, split, reference):
        assert [tuple(w.shape) for w in layer.weights] == [w.shape for w in weights]
        layer.set_weights(weights)
    assert native.resolved_implementation == "native"
    assert split.resolved_implementation == "split"
    out_shape = reference.compute_output_shape(shape)
    assert native.compute_output_shape(shape) == out_shape
    probe = rng.standard_normal(out_shape).astype("float32")
    expected = _forward_backward(reference, x, probe)
    for layer in (native, split):
        got = _forward_backward(layer, x, probe)
        assert got[0].shape == out_shape
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_one_kernel_variable_in_native_layout():
    layer = GroupedConv2D(64, 3, groups=32, use_bias=False, implementation="split")
    layer.build((None, 8, 8, 128))
    assert [tuple(w.shape) for w in layer.weights] == [(3, 3, 4, 64)]


def test_auto_resolves_to_split_on_tensorflow_cpu_and_follows_the_global_setting():
    assert keras.backend.backend() == "tensorflow" and not tf.config.list_logical_devices("GPU")
    assert get_grouped_conv_implementation() == "auto"
    assert resolve_implementation("auto") == "split"
    layer = GroupedConv2D(8, 3, groups=4)
    layer.build((None, 5, 5, 8))
    assert layer.resolved_implementation == "split"

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
    assert model.get_layer("gconv").resolved_implementation == "split"
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
