"""Every registered model builds with exactly its registered parameter count.

Family test files assert the paper/reference numbers; this test keeps the
registry (and so the README table) true for every model, new ones included.
"""

from __future__ import annotations

import inspect

import pytest
from conftest import trainable_count
from model_checks import registry_param

import keras_resnets
from keras_resnets.models import resnet
from keras_resnets.models.registry import Row, model_info, register_rows, unregister
from training import tune


@pytest.mark.parametrize("name", [registry_param(n) for n in keras_resnets.list_models()])
def test_registered_count_is_exact(built_model, name):
    info = model_info(name)
    model = built_model(name)
    assert trainable_count(model) == info.num_params
    assert model.input_shape == (None, info.input_size, info.input_size, 3)


def _documented_options(builder) -> list[str]:
    """The option names a builder's docstring documents after `name:`."""
    args = builder.__doc__.split("Args:")[1].split("Returns:")[0]
    names = []
    for line in args.splitlines():
        if line.startswith("    ") and not line.startswith("     ") and ":" in line:
            names += [n.strip() for n in line.split(":")[0].split(",")]
    applications = names.index("name")
    return names[applications + 1 :]


@pytest.mark.parametrize("name", keras_resnets.list_models())
def test_unknown_option_names_the_model_and_documented_options_are_taken(name):
    builder = model_info(name).builder  # an alias shares its target's builder
    with pytest.raises(
        TypeError, match=rf"^{builder.__name__}\(\) got an unexpected keyword argument 'foo'"
    ):
        builder(foo=1)
    documented = _documented_options(builder)
    assert documented and set(documented) <= set(builder.options), (documented, builder.options)


# ------------------------------------------------------------ one row per variant


def _bottleneck(c_in: int, width: int, projection: bool) -> int:
    """Trainable parameters of one torchvision bottleneck (no conv bias, BN gamma+beta)."""
    convs = c_in * width + 9 * width * width + width * 4 * width  # 1x1, 3x3, 1x1
    norms = 2 * (width + width + 4 * width)
    shortcut = c_in * 4 * width + 2 * 4 * width if projection else 0  # 1x1 conv + BN
    return convs + norms + shortcut


def _basic(c_in: int, width: int) -> int:
    """Trainable parameters of one CIFAR basic block (option A shortcut: no weights)."""
    return 9 * c_in * width + 9 * width * width + 2 * (2 * width)


# ResNet-26 (bottlenecks, 2 per stage, ImageNet layout), by hand:
#   stem      7*7*3*64 + 2*64                                  =      9,536
#   stage2    bottleneck(64, 64, proj) + bottleneck(256, 64)   =    145,408
#   stage3    bottleneck(256, 128, proj) + bottleneck(512, 128) =   659,456
#   stage4    bottleneck(512, 256, proj) + bottleneck(1024, 256) = 2,629,632
#   stage5    bottleneck(1024, 512, proj) + bottleneck(2048, 512) = 10,502,144
#   head      2048*1000 + 1000                                  =  2,049,000
#   total                                                       = 15,995,176
RESNET26 = (
    9_536
    + _bottleneck(64, 64, True)
    + _bottleneck(256, 64, False)
    + _bottleneck(256, 128, True)
    + _bottleneck(512, 128, False)
    + _bottleneck(512, 256, True)
    + _bottleneck(1024, 256, False)
    + _bottleneck(1024, 512, True)
    + _bottleneck(2048, 512, False)
    + 2_049_000
)
# CIFAR ResNet-38 (6n + 2, n = 6, basic blocks 16/32/64, option A shortcuts), by hand:
#   stem      3*3*3*16 + 2*16                        =     464
#   stage1    6 * basic(16, 16) = 6 * 4,672           =  28,032
#   stage2    basic(16, 32) + 5 * basic(32, 32)       = 13,952 + 5 * 18,560 = 106,752
#   stage3    basic(32, 64) + 5 * basic(64, 64)       = 55,552 + 5 * 73,984 = 425,472
#   head      64*10 + 10                              =     650
#   total                                             = 561,370
RESNET38 = 464 + 6 * _basic(16, 16) + _basic(16, 32) + 5 * _basic(32, 32)
RESNET38 += _basic(32, 64) + 5 * _basic(64, 64) + 650


@pytest.mark.parametrize(
    ("family", "row", "expected", "by_hand"),
    [
        pytest.param(
            "RESNET",
            Row("ResNet26", {"depths": (2, 2, 2, 2), "block": "bottleneck"}, RESNET26, "ResNet-26"),
            15_995_176,
            RESNET26,
            id="ResNet26",
        ),
        pytest.param(
            "CIFAR_RESNET",
            Row("ResNet38", {"depth": 38}, RESNET38, "CIFAR ResNet-38"),
            561_370,
            RESNET38,
            id="ResNet38",
        ),
    ],
)
def test_a_new_variant_is_one_row(family, row, expected, by_hand):
    assert by_hand == expected  # the arithmetic in the comments above
    builders = register_rows(getattr(resnet, family), [row])
    try:
        assert row.name in keras_resnets.list_models()
        info = model_info(row.name)
        assert info.num_params == expected and info.arguments == row.arguments
        model = keras_resnets.get_model(row.name)
        assert trainable_count(model) == expected
        assert model.name == row.name.lower()
        assert builders[row.name].options == tuple(info.options)
        # The row is the generic builder called with its arguments: the same layers.
        generic = getattr(keras_resnets, info.generic)(**row.arguments)
        assert [layer.name for layer in generic.layers] == [layer.name for layer in model.layers]
        with pytest.raises(ValueError, match=f"Model '{row.name}' is registered twice"):
            register_rows(getattr(resnet, family), [row])
    finally:
        unregister(row.name)
    assert row.name not in keras_resnets.list_models()


def test_a_bad_row_names_the_argument():
    row = Row("ResNetBad", {"depths": (2, 0, 2)}, 1, "bad")
    with pytest.raises(ValueError, match=r"`depths` must be a tuple of positive integers"):
        register_rows(resnet.RESNET, [row])
    with pytest.raises(ValueError, match=r"`widths` must be a tuple of 2 positive integers"):
        keras_resnets.ResNet((1, 1), widths=(8,), stem="cifar")
    with pytest.raises(ValueError, match=r"Unknown `block` 'wide'"):
        keras_resnets.ResNet((1, 1), block="wide")
    assert "ResNetBad" not in keras_resnets.list_models()


def test_a_bad_row_is_refused_before_any_row_of_its_table_is_registered():
    with pytest.raises(ValueError, match=r"`name` .* must be a Python identifier .*'Res Net'"):
        Row("Res Net", {"depth": 38}, 561_370, "t")
    with pytest.raises(ValueError, match=r"Row 'R38': `num_params` .* positive integer, got 0"):
        Row("R38", {"depth": 38}, 0, "t")
    with pytest.raises(TypeError, match=r"Row 'R38': `arguments` must be a mapping"):
        Row("R38", [("depth", 38)], 561_370, "t")
    good = Row("ResNet38Good", {"depth": 38}, 561_370, "CIFAR ResNet-38")
    misspelt = Row("ResNet38Bad", {"dephts": 38}, 561_370, "CIFAR ResNet-38")
    with pytest.raises(
        TypeError, match=r"Row 'ResNet38Bad': .*'dephts'.* `CifarResNet` are depth, residual, block"
    ):
        register_rows(resnet.CIFAR_RESNET, [good, misspelt])
    assert "ResNet38Good" not in keras_resnets.list_models()


GENERIC = sorted({model_info(name).generic for name in keras_resnets.list_models()})


@pytest.mark.parametrize("generic", GENERIC)
def test_a_generic_builder_names_itself_for_an_unknown_option(generic):
    info = next(
        model_info(n) for n in keras_resnets.list_models() if model_info(n).generic == generic
    )
    with pytest.raises(
        TypeError, match=rf"^{generic}\(\) got an unexpected keyword argument 'foo'"
    ):
        getattr(keras_resnets, generic)(**info.arguments, foo=1)


def test_a_default_input_smaller_than_the_downsampling_is_refused():
    with pytest.raises(
        ValueError, match=r"downsamples by 256, more than its default input size 224"
    ):
        keras_resnets.ResNet((1,) * 7, widths=(8,) * 7)
    model = keras_resnets.ResNet((1,) * 7, widths=(8,) * 7, input_shape=(256, 256, 3))
    assert model.feature_info[-1]["reduction"] == 256


def _cheap(info) -> bool:
    return not info.slow and info.num_params < 1_500_000


@pytest.mark.parametrize("name", [n for n in keras_resnets.list_models() if _cheap(model_info(n))])
def test_the_generic_builder_with_the_row_arguments_is_the_named_model(built_model, name):
    info = model_info(name)
    model = built_model(name)
    generic = getattr(keras_resnets, info.generic)(**info.arguments)
    assert [layer.name for layer in generic.layers] == [layer.name for layer in model.layers]
    assert trainable_count(generic) == info.num_params


# ------------------------------------------------------------------ search space


@pytest.mark.parametrize("name", keras_resnets.list_models())
def test_search_space_is_read_from_the_registry(name):
    info = model_info(name)
    space = tune.search_space(name)
    assert space and space == info.search_space()
    generic = inspect.signature(getattr(keras_resnets, info.generic)).parameters
    for key, values in space.items():
        assert values, key
        # An option of the named builder, or an architecture argument of the generic one.
        assert key in info.builder.options or (key in info.architecture and key in generic), key
        choices = {**info.options, **info.architecture}[key].choices
        assert choices is None or set(values) <= set(choices), (key, values, choices)


def _sweep_groups() -> list:
    """The smallest model of each (generic builder, search keys) group, and its keys."""
    groups: dict = {}
    for name in keras_resnets.list_models():
        info = model_info(name)
        if name != info.builder.__name__:
            continue  # an alias
        key = (info.generic, tuple(info.search_space()))
        if key not in groups or info.num_params < model_info(groups[key]).num_params:
            groups[key] = name
    params = []
    for name in sorted(groups.values()):
        info = model_info(name)
        for option, values in info.search_space().items():
            marks = [] if _cheap(info) else [pytest.mark.slow]
            params.append(pytest.param(name, option, values, marks=marks, id=f"{name}-{option}"))
    return params


@pytest.mark.parametrize(("name", "option", "values"), _sweep_groups())
def test_every_searched_value_builds(name, option, values):
    """Each value of the space builds, as the tuner builds it (one option at a time)."""
    info = model_info(name)
    counts = {}
    for value in values:
        if option in info.architecture:
            builder = getattr(keras_resnets, info.generic)
            model = builder(**{**info.arguments, option: value})
        else:
            model = info.builder(**{option: value})
        counts[value] = trainable_count(model)
    if option in info.architecture:  # an architecture choice changes the network
        assert len(set(counts.values())) == len(values), counts
