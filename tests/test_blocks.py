"""The blocks package: unit orderings, the unit configuration, the wide block, small signatures."""

from __future__ import annotations

import inspect

import keras
import numpy as np
import pytest

import keras_resnets
from keras_resnets import blocks
from keras_resnets.models.wide_resnet import wide_block

# He et al. 2016, Figure 4, written out by hand for a basic unit with an
# identity shortcut (layers in the order they are built, input excluded).
FIGURE_4 = {
    "original": ["conv1", "bn1", "relu1", "conv2", "bn2", "add", "out"],
    "bn_after_addition": ["conv1", "bn1", "relu1", "conv2", "add", "bn2", "out"],
    "relu_before_addition": ["conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "add", "out"],
    "relu_only_preactivation": ["relu1", "conv1", "bn1", "relu2", "conv2", "bn2", "add", "out"],
    "full_preactivation": ["bn1", "relu1", "conv1", "bn2", "relu2", "conv2", "add", "out"],
}


@pytest.mark.parametrize("unit", blocks.UNITS)
def test_each_unit_puts_bn_and_relu_where_figure_4_does(unit):
    inputs = keras.Input((4, 4, 8))
    model = keras.Model(inputs, blocks.residual_unit(inputs, 8, strides=1, name="u", unit=unit))
    assert [layer.name[2:] for layer in model.layers[1:]] == FIGURE_4[unit]
    assert set(FIGURE_4) == set(blocks.UNITS)
    assert (unit in blocks.PREACT_UNITS) == FIGURE_4[unit][0].startswith(("bn", "relu"))


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(block="wide"), "Unknown `block` 'wide'"),
        (dict(unit="post"), "Unknown `unit` 'post'"),
        (dict(shortcut="option_a"), "Unknown `shortcut` 'option_a'"),
        (dict(shortcut_variant="gated"), "Unknown `shortcut_variant` 'gated'"),
        (dict(form="d"), "Unknown `form` 'd'"),
        (dict(implementation="fast"), "Unknown `implementation` 'fast'"),
        (dict(dropout_rate=1.0), r"`dropout_rate` must be in \[0.0, 1.0\), got 1.0"),
        (
            dict(block="bottleneck", groups=2, form="a", unit="full_preactivation"),
            "`form`='a' \\(separate paths\\) is built for `unit='original'` only",
        ),
    ],
)
def test_unit_config_refuses_bad_values(options, match):
    with pytest.raises(ValueError, match=match):
        blocks.UnitConfig(**options)


def test_unit_config_is_frozen_and_shared():
    config = blocks.UnitConfig(block="bottleneck", groups=2)
    with pytest.raises(AttributeError):
        config.groups = 4
    inputs = keras.Input((8, 8, 16))
    x = blocks.residual_unit(inputs, 4, strides=1, name="a", config=config, width=8)
    x = blocks.residual_unit(x, 4, strides=2, name="b", config=config, width=8)
    model = keras.Model(inputs, x)
    assert model.output.shape == (None, 4, 4, 16)
    assert tuple(model.get_layer("b_conv2").kernel.shape) == (3, 3, 4, 8)  # 2 groups of 4


@pytest.mark.parametrize("in_channels, strides", [(8, 1), (4, 2)], ids=["identity", "projection"])
def test_wide_block_is_the_preactivation_unit_plus_dropout(in_channels, strides):
    inputs = keras.Input((6, 6, in_channels))
    model = keras.Model(inputs, wide_block(inputs, 8, strides=strides, name="b", dropout_rate=0.3))
    rng = np.random.default_rng(0)
    for weight in model.weights:
        values = rng.uniform(0.5, 1.5, weight.shape) if "variance" in weight.path else None
        if values is None:
            values = rng.normal(size=weight.shape) * 0.3
        weight.assign(values.astype("float32"))
    # The dropout sits between the second pre-activation and the second convolution.
    assert model.get_layer("b_dropout").input is model.get_layer("b_relu2").output
    assert model.get_layer("b_conv2").input is model.get_layer("b_dropout").output

    def layer(name):
        return lambda t: keras.ops.convert_to_numpy(model.get_layer(f"b_{name}")(t, training=False))

    x = rng.normal(size=(2, 6, 6, in_channels)).astype("float32")
    p = layer("relu1")(layer("bn1")(x))
    h = layer("conv1")(layer("conv1_pad")(p) if strides > 1 else p)
    f = layer("conv2")(layer("relu2")(layer("bn2")(h)))
    short = x if strides == 1 else layer("shortcut")(p)
    got = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(got, short + f, rtol=1e-5, atol=1e-5)
    assert ("b_shortcut" in [layer.name for layer in model.layers]) == (strides > 1)


def test_block_functions_take_at_most_eight_keyword_arguments():
    checked = 0
    for name in blocks.__all__:
        value = getattr(blocks, name)
        if not inspect.isfunction(value):
            continue
        kinds = [p.kind for p in inspect.signature(value).parameters.values()]
        assert kinds.count(inspect.Parameter.KEYWORD_ONLY) <= 8, name
        checked += 1
    assert checked >= 15


def test_copy_form_weights_keeps_its_import_paths():
    from keras_resnets.models.resnext import copy_form_weights

    assert copy_form_weights is blocks.copy_form_weights is keras_resnets.copy_form_weights
