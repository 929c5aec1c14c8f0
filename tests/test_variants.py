"""The timm-era variants: ResNet-D/T, SE/ECA, ResNet-RS, ResNeSt as rows and options.

Their exact counts are asserted for every registered model by
test_registry.py and their outputs against timm's by test_timm_weights.py;
this file checks what the rows and options mean: the bag-of-tricks options
on every ResNet builder give the rows, the attention blocks' sizes follow
their papers' formulas, `zero_init_residual` zeroes what it says, the
per-sample drop-path default, and the errors.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from conftest import trainable_count

import keras_resnets
from keras_resnets import blocks
from keras_resnets.models.registry import model_info
from keras_resnets.models.resnet import ResNetSpec

NEW_FAMILIES = ("ResNet-D/T", "SE-ResNet", "SE-ResNeXt", "ECA-ResNet", "ResNet-RS", "ResNeSt")
TRICKS = ("downsample", "attention", "zero_init_residual")


def _resnet_shaped() -> list[str]:
    return [n for n in keras_resnets.list_models() if isinstance(model_info(n).spec, ResNetSpec)]


@pytest.mark.parametrize("name", _resnet_shaped())
def test_every_resnet_builder_takes_the_tricks_with_its_specs_defaults(name):
    info = model_info(name)
    options = info.options
    assert set(TRICKS) <= set(options), sorted(options)
    assert options["downsample"].default == info.spec.downsample
    assert options["attention"].default == info.spec.attention
    assert options["zero_init_residual"].default is False
    if info.spec.imagenet:
        assert options["stem"].default == info.spec.stem
        assert set(options["stem"].choices) == {"imagenet", "deep", "deep_tiered"}
    else:
        assert "stem" not in options  # a CIFAR network keeps its 3x3 stem
    mode = "sample" if info.family in NEW_FAMILIES else "batch"
    if "stochastic_depth_mode" in options:
        assert options["stochastic_depth_mode"].default == mode


def test_every_new_family_is_registered():
    families = {model_info(n).family for n in keras_resnets.list_models()}
    assert set(NEW_FAMILIES) <= families


@pytest.mark.parametrize(
    ("base", "options", "row"),
    [
        ("ResNet18", {"stem": "deep", "downsample": "avg"}, "ResNet18D"),
        ("ResNet50", {"stem": "deep_tiered", "downsample": "avg"}, "ResNet50T"),
        ("ResNet18", {"attention": "se"}, "SEResNet18"),
        ("ResNet50", {"stem": "deep", "downsample": "avg", "attention": "eca"}, "ECAResNet50D"),
        ("ResNeXt50_32x4d", {"attention": "se"}, "SEResNeXt50_32x4d"),
        ("ResNet50D", {"stem": "imagenet", "downsample": "conv"}, "ResNet50"),
        ("SEResNet18", {"attention": None}, "ResNet18"),
    ],
)
def test_the_options_on_a_builder_give_the_row(built_model, base, options, row):
    built = getattr(keras_resnets, base)(**options)
    named = built_model(row)
    assert trainable_count(built) == model_info(row).num_params
    assert [w.path.split("/", 1)[1] for w in built.weights] == [
        w.path.split("/", 1)[1] for w in named.weights
    ]


def _se_params(channels: int, ratio: float = 1 / 16) -> int:
    reduced = blocks.reduction_channels(channels, ratio)
    return 2 * channels * reduced + reduced + channels  # two 1x1 convolutions with bias


def _bottleneck_outputs(depths) -> list[int]:
    return [4 * 64 * 2**stage for stage, depth in enumerate(depths) for _ in range(depth)]


def test_se_and_eca_add_what_their_formulas_say():
    # SE (Hu et al. 2018): reduction 16 rounded to a multiple of 8, as timm's SEModule.
    assert [blocks.reduction_channels(c) for c in (64, 256, 512, 1024, 2048)] == [
        8,
        16,
        32,
        64,
        128,
    ]
    se50 = sum(_se_params(c) for c in _bottleneck_outputs((3, 4, 6, 3)))
    assert model_info("SEResNet50").num_params - model_info("ResNet50").num_params == se50
    basic18 = [64 * 2**stage for stage in range(4) for _ in range(2)]
    se18 = sum(_se_params(c) for c in basic18)
    assert model_info("SEResNet18").num_params - model_info("ResNet18").num_params == se18
    # ECA (Wang et al. 2020): k = nearest odd of (log2 C + 1) / 2, at least 3.
    assert [blocks.eca_kernel_size(c) for c in (64, 256, 512, 1024, 2048)] == [3, 5, 5, 5, 7]
    for channels in (16, 100, 4096):
        t = int(abs(math.log2(channels) + 1) / 2)
        assert blocks.eca_kernel_size(channels) == max(t if t % 2 else t + 1, 3)
    eca = sum(blocks.eca_kernel_size(c) for c in _bottleneck_outputs((3, 4, 6, 3)))
    assert eca == 86
    assert model_info("ECAResNet50D").num_params - model_info("ResNet50D").num_params == eca
    # ResNet-RS: SE with reduction 4 on ResNet-50-D's body, plus the stem's 3x3/2 convolution.
    rs = sum(_se_params(c, 0.25) for c in _bottleneck_outputs((3, 4, 6, 3)))
    stem_conv = 9 * 64 * 64 + 2 * 64
    assert model_info("ResNetRS50").num_params - model_info("ResNet50D").num_params == rs + (
        stem_conv
    )


def test_deep_stems_have_the_papers_widths():
    assert blocks.stem_widths("deep", 32) == (32, 32, 64)
    assert blocks.stem_widths("deep_tiered", 32) == (24, 32, 64)
    model = keras_resnets.ResNet((1, 1), widths=(16, 32), stem="deep_tiered", classes=3)
    convs = [model.get_layer(f"stem_conv{i}").kernel.shape[-1] for i in (1, 2, 3)]
    assert convs == [6, 8, 16]
    wide = keras_resnets.ResNet((1, 1), widths=(16, 32), stem="deep", stem_width=16, classes=3)
    assert wide.get_layer("stem_conv3").kernel.shape[-1] == 32
    assert wide.feature_info[0]["reduction"] == 4


@pytest.mark.parametrize("unit", ["original", "relu_before_addition"])
def test_zero_init_residual_zeroes_the_last_bn_of_every_branch(unit):
    model = keras_resnets.ResNet(
        (1, 2), widths=(8, 16), block="bottleneck", stem="cifar", unit=unit,
        zero_init_residual=True, classes=3,
    )  # fmt: skip
    gammas = {
        layer.name: np.asarray(layer.gamma)
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    }
    last = {name for name in gammas if name.endswith("_bn3") and "_block" in name}
    assert len(last) == 3
    for name, gamma in gammas.items():
        np.testing.assert_array_equal(gamma, 0.0 if name in last else 1.0, err_msg=name)
    # Each unit then starts as its shortcut: with an identity shortcut the
    # second unit passes its input through (the original unit's final ReLU
    # leaves the already non-negative input unchanged).
    probe = keras.Model(
        model.input,
        [model.get_layer("stage2_block1_out").output, model.get_layer("stage2_block2_out").output],
    )
    before, after = probe(np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32))
    np.testing.assert_allclose(np.asarray(after), np.asarray(before), atol=1e-6)


def test_new_families_drop_paths_per_sample():
    from keras_resnets.layers import StochasticDepth

    model = keras_resnets.ResNet18D(drop_path_rate=0.2, weights=None)
    modes = {layer.mode for layer in model.layers if isinstance(layer, StochasticDepth)}
    assert modes == {"sample"}
    old = keras_resnets.ResNet18(drop_path_rate=0.2, weights=None)
    assert {layer.mode for layer in old.layers if isinstance(layer, StochasticDepth)} == {"batch"}


def test_rows_keep_timms_input_sizes():
    assert (model_info("ResNetRS50").input_size, model_info("ResNetRS50").test_input_size) == (
        160,
        224,
    )
    assert model_info("ResNetRS420").input_size == 320
    assert model_info("ResNeSt269").input_size == 416
    assert "160x160x3 (test 224)" in keras_resnets.model_table()


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: keras_resnets.ResNet20(stem="deep"), TypeError, "unexpected keyword.*'stem'"),
        (
            lambda: keras_resnets.ResNet((1,), stem="cifar", stem_pool="conv"),
            ValueError,
            "`stem_pool` and `stem_width` belong to the ImageNet-style stems",
        ),
        (
            lambda: keras_resnets.ResNet((1,), attention_ratio=0.25),
            ValueError,
            "`attention_ratio` is the SE reduction ratio; it needs `attention='se'`",
        ),
        (
            lambda: keras_resnets.ResNet50(attention="cbam"),
            ValueError,
            "`attention`.*'cbam'",
        ),
        (
            lambda: keras_resnets.ResNet20(downsample="avg"),
            ValueError,
            "`downsample='avg'` changes the projection shortcuts",
        ),
        (
            lambda: keras_resnets.ResNet50V2(zero_init_residual=True),
            ValueError,
            "zero_init_residual.*pre-activation branch ends in a convolution",
        ),
        (
            lambda: keras_resnets.ResNet((1,), radix=2),
            ValueError,
            r"`radix`=2 \(split attention, ResNeSt\) replaces the 3x3 convolution of a bottleneck",
        ),
        (
            lambda: keras_resnets.ResNet50D(weights="ra2_in1k", stem="imagenet"),
            ValueError,
            r"`weights='ra2_in1k'` are for ResNet50D with its default options; stem='imagenet'",
        ),
        (
            lambda: keras_resnets.SEResNeXt50_32x4d(weights="racm_in1k", attention=None),
            ValueError,
            "attention=None changes its layers",
        ),
        (
            lambda: keras_resnets.ResNet((1,), block="bottleneck", avd=True),
            ValueError,
            r"`avd=True` \(ResNeSt's average downsampling\).*needs `radix` >= 1, got radix=0",
        ),
        (
            lambda: keras_resnets.ResNeSt14(stride_in_1x1=True),
            ValueError,
            "`stride_in_1x1`.*allowed values are False. ResNeSt's avd pool takes the stride",
        ),
        (
            lambda: keras_resnets.ResNet((1,), stem="deep", stem_width=2),
            ValueError,
            "`stem_width`",
        ),
        (
            lambda: keras_resnets.ResNet((1, 1), widths=(4, 8), stem="deep_tiered"),
            ValueError,
            r"gives stem convolutions of \(0, 2, 4\) channels; pass a `stem_width` of at least 4",
        ),
    ],
)
def test_bad_combinations_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()
