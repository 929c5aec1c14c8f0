"""Every value a user passes to a builder gets a clear answer (issue 17, kind 5).

The values are drawn from the registry's metadata: for every registered
builder, each `Option` it declares (type, range, choices) and the
keras.applications arguments. Bad values must raise `ValueError`/`TypeError`
naming the argument before anything is built; good values, NumPy scalars
included, must build a model that can be called on a batch.

Cost: building is what takes time, so the registry-wide tests replace each
family's body by a one-layer body (`tiny_bodies`): every argument still goes
through the real checks of the builder, its family and `build_model`, and the
head is the real one. A bad value that reaches the body fails the test
(`_Reached`). Real bodies are built for the cheapest registered row of each
group of builders that take the same options (`_GROUPS`), with NumPy
scalars, a few examples each (`test_good_values_build_real_models`).
"""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_resnets
from keras_resnets.layers import DenseBlock, GroupedConv2D, Highway, StochasticDepth
from keras_resnets.models import builder as builder_module
from keras_resnets.models import densenet, highway, resnet, wide_resnet
from keras_resnets.models.application import APPLICATION_ARGUMENTS
from keras_resnets.models.builder import stage_info
from keras_resnets.models.registry import Option, model_info
from keras_resnets.preprocessing import decode_predictions, preprocess_input

NAMES = keras_resnets.list_models()
# A model built on `input_tensor` takes a list (as keras.applications'); called
# on one tensor, Keras warns about the structure. Not what these tests check.
pytestmark = pytest.mark.filterwarnings("ignore:The structure of `inputs`:UserWarning")
# The first build raises Python's recursion limit; raised here, before Hypothesis
# runs, it is not changed during a test (which Hypothesis warns about).
builder_module._ensure_recursion_limit()
# Reproducible on every machine; a handful of examples keeps make test fast.
FAST = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    # The fixtures only choose the body, the same for every example.
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)


class _Reached(Exception):
    """A value passed every check and reached the network's body."""


def _tiny_body(x):
    x = keras.layers.Conv2D(2, 1, name="tiny_conv")(x)
    return x, [stage_info("stem", x, 1)]


def _raise_reached(x):
    raise _Reached


_BODY: dict = {"body": None}  # None: the family's own body


@pytest.fixture(scope="module", autouse=True)
def _replaceable_bodies():
    """Each family's `build_model`, with `_BODY["body"]` in place of its body when set."""
    real = builder_module.build_model

    def build_model(*, body, **kwargs):
        return real(body=_BODY["body"] or body, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        for module in (resnet, densenet, highway, wide_resnet):
            patch.setattr(module, "build_model", build_model)
        yield


@pytest.fixture
def tiny_bodies():
    """A one-layer body: every check is the real one, the build is cheap."""
    _BODY["body"] = _tiny_body
    yield
    _BODY["body"] = None


@pytest.fixture
def no_bodies():
    """`_Reached` is raised once every check has passed: nothing is built."""
    _BODY["body"] = _raise_reached
    yield
    _BODY["body"] = None


# ---------------------------------------------------------------- strategies

NUMPY_INT = (np.int64, np.int32)
NUMPY_FLOAT = (np.float32, np.float64)


def _maybe_numpy(strategy, types):
    """The Python value or the same value as one of the NumPy `types`."""
    return st.one_of(
        strategy, st.tuples(strategy, st.sampled_from(types)).map(lambda p: p[1](p[0]))
    )


def good_values(option: Option):
    """Values `option` allows, as Python and NumPy scalars."""
    if option.kind is bool:
        return st.sampled_from([True, False, np.True_, np.False_])
    if option.kind is int:
        # The default, the minimum and the searched values: in range and cheap.
        known = sorted(
            {v for v in (option.default, option.minimum, *option.search) if v is not None}
        )
        values = _maybe_numpy(st.sampled_from(known), NUMPY_INT)
    elif option.kind is float:
        low = -10.0 if option.minimum is None else option.minimum
        high = 10.0 if option.maximum is None else option.maximum
        floats = st.floats(low, high, exclude_min=option.low_open, exclude_max=option.high_open)
        # float32 rounding can reach an open bound: keep the rounded value in range.
        values = _maybe_numpy(floats, NUMPY_FLOAT).filter(lambda v: _allowed(option, v))
    else:
        strings = [c for c in option.choices if isinstance(c, str)]
        values = st.sampled_from(option.choices)
        if strings:
            values = st.one_of(values, st.sampled_from(strings).map(np.str_))
    return st.one_of(values, st.none()) if option.optional else values


def _allowed(option: Option, value) -> bool:
    try:
        option.check("x", value)
    except ValueError:
        return False
    return True


def bad_values(option: Option):
    """Values `option` refuses: wrong type, out of range, NaN, not a choice."""
    wrong = [st.sampled_from(["x", "", [1], (0.5,), {"a": 1}])]
    if option.kind is bool:
        wrong += [st.sampled_from([0, 1, "no", "True", 1.0, np.int64(1)])]
    elif option.kind is int:
        wrong += [st.booleans(), st.sampled_from([np.True_, 1.5, 2.0, np.float32(3.0), math.nan])]
        if option.minimum is not None:
            wrong.append(
                _maybe_numpy(st.integers(option.minimum - 10**6, option.minimum - 1), NUMPY_INT)
            )
        if option.maximum is not None:
            wrong.append(
                _maybe_numpy(st.integers(option.maximum + 1, option.maximum + 10**6), NUMPY_INT)
            )
    elif option.kind is float:
        wrong += [
            st.booleans(),
            st.sampled_from([np.True_, math.nan, math.inf, -math.inf, np.float32("nan")]),
        ]
        if option.minimum is not None:
            below = st.floats(max_value=option.minimum, allow_nan=False, allow_infinity=False)
            wrong.append(
                below.filter(
                    lambda v: v < option.minimum or (option.low_open and v == option.minimum)
                )
            )
        if option.maximum is not None:
            above = st.floats(min_value=option.maximum, allow_nan=False, allow_infinity=False)
            wrong.append(
                above.filter(
                    lambda v: v > option.maximum or (option.high_open and v == option.maximum)
                )
            )
    else:
        choices = option.choices
        wrong += [
            st.text(max_size=6).filter(lambda t: t not in choices),
            st.sampled_from([1, 0, True, 2.5]),
        ]
    if not option.optional and not (option.choices and None in option.choices):
        wrong.append(st.none())
    return st.one_of(wrong)


@st.composite
def named_option(draw, bad: bool):
    """`(name, {option: value})`: a registered builder and one value of one of its options."""
    name = draw(st.sampled_from(NAMES))
    options = model_info(name).options
    key = draw(st.sampled_from(sorted(options)))
    strategy = bad_values(options[key]) if bad else good_values(options[key])
    return name, {key: draw(strategy)}


BAD_APPLICATION = {
    "include_top": st.sampled_from([0, 1, "yes", None, 1.0, np.int64(1)]),
    "classes": st.one_of(
        _maybe_numpy(st.integers(-5, 0), NUMPY_INT),
        st.sampled_from([True, np.True_, 2.5, "10", [10], math.nan]),
    ),
    "pooling": st.text(max_size=5).filter(lambda t: t not in ("avg", "max")),
    "classifier_activation": st.sampled_from(
        [
            "no_such_activation",
            keras.layers.ReLU,
            int,
            lambda: None,
            lambda a, b: a,
            1,
            lambda x: x[:, :1],
        ]
    ),
    "input_shape": st.sampled_from(
        [(32, 32), (32, 32, 3, 1), "224", 224, (2, 2, 3), (32.0, 32, 3), (32, 32, 0), (True, 32, 3)]
    ),
    "input_tensor": st.sampled_from(
        ["input", np.zeros((1, 32, 32, 3)), [1, 2], keras.Input((32, 32)), keras.Input((2, 2, 3))]
    ),
    "weights": st.sampled_from(["imagenet21k", 3, "model.h5", ["a.keras"]]),
    "name": st.sampled_from([3, ["a"]]),
}
assert set(BAD_APPLICATION) == set(APPLICATION_ARGUMENTS)


def _named(error, argument: str) -> bool:
    return f"`{argument}`" in str(error) or f"'{argument}'" in str(error)


# ---------------------------------------------------------------- property tests


@FAST
@given(drawn=named_option(bad=True))
def test_bad_option_values_are_refused_before_building(no_bodies, drawn):
    name, kwargs = drawn
    ((key, value),) = kwargs.items()
    with pytest.raises((ValueError, TypeError)) as caught:
        model_info(name).builder(**kwargs)
    assert _named(caught.value, key), (name, key, value, str(caught.value))
    assert repr(value)[:20] in str(caught.value) or str(value)[:20] in str(caught.value)


@FAST
@given(name=st.sampled_from(NAMES), data=st.data())
def test_bad_application_arguments_are_refused_before_building(no_bodies, name, data):
    key = data.draw(st.sampled_from(sorted(BAD_APPLICATION)))
    value = data.draw(BAD_APPLICATION[key])
    kwargs = {key: value}
    if key == "pooling":
        kwargs["include_top"] = False
    if (
        key == "input_tensor"
        and not isinstance(value, str)
        and keras.backend.is_keras_tensor(value)
    ):
        kwargs["input_shape"] = (64, 64, 3)  # disagrees, or the tensor itself is wrong
    with pytest.raises((ValueError, TypeError)) as caught:
        model_info(name).builder(**kwargs)
    assert _named(caught.value, key), (name, kwargs, str(caught.value))


@st.composite
def application_arguments(draw, name: str):
    """Good keras.applications arguments for `name`, small inputs, NumPy scalars too."""
    spec = model_info(name).spec
    size = spec.total_stride
    include_top = draw(st.sampled_from([True, False, np.True_, np.False_]))
    kwargs = {"include_top": include_top}
    shape = (draw(_maybe_numpy(st.just(size), NUMPY_INT)), size, draw(st.sampled_from([1, 3])))
    if not include_top:
        kwargs["pooling"] = draw(st.sampled_from([None, "avg", "max", np.str_("avg")]))
        if draw(st.booleans()):
            shape = (None, None, shape[2])
    if draw(st.booleans()):
        kwargs["input_tensor"] = keras.Input(shape)
        if draw(st.booleans()):
            kwargs["input_shape"] = shape
    else:
        kwargs["input_shape"] = shape
    classes = draw(st.one_of(st.none(), _maybe_numpy(st.integers(1, 4), NUMPY_INT)))
    activations = [None, "sigmoid", "linear", keras.activations.sigmoid, keras.layers.ReLU()]
    if classes != 1:
        activations += ["softmax", keras.activations.softmax]
    kwargs["classes"] = classes
    kwargs["classifier_activation"] = draw(st.sampled_from(activations))
    return kwargs


def _check_callable(model, kwargs, spec):
    shape = [spec.total_stride if d is None else d for d in model.input_shape[1:]]
    output = keras.ops.convert_to_numpy(model(np.ones((2, *shape), "float32")))
    assert np.isfinite(output).all()
    if kwargs["include_top"]:
        classes = spec.default_classes if kwargs["classes"] is None else int(kwargs["classes"])
        assert output.shape == (2, classes)
    elif kwargs.get("pooling") is not None:
        assert output.ndim == 2
    else:
        assert output.ndim == 4


@FAST
@given(drawn=named_option(bad=False), data=st.data())
def test_good_values_pass_every_check_of_every_builder(tiny_bodies, drawn, data):
    name, options = drawn
    kwargs = data.draw(application_arguments(name))
    model = model_info(name).builder(**kwargs, **options)
    _check_callable(model, kwargs, model_info(name).spec)


def _numpy(value):
    if isinstance(value, bool):
        return np.bool_(value)
    if isinstance(value, int):
        return np.int64(value)
    if isinstance(value, float):
        return np.float32(value)
    return np.str_(value) if isinstance(value, str) else value


@pytest.mark.parametrize("name", NAMES)
def test_numpy_scalars_for_every_argument_of_every_builder(tiny_bodies, name):
    """Every option at its default and the application arguments, all as NumPy scalars."""
    info = model_info(name)
    options = {key: _numpy(option.default) for key, option in info.options.items()}
    size = np.int64(info.spec.total_stride)
    model = info.builder(
        include_top=np.True_, classes=np.int64(3), input_shape=(size, size, np.int64(3)), **options
    )
    assert model.output_shape == (None, 3)
    json.dumps(model.get_config())  # Python values reached the layers' configs


@pytest.mark.parametrize("name", NAMES)
def test_classes_none_is_the_default_in_every_builder(tiny_bodies, name):
    info = model_info(name)
    size = info.spec.total_stride
    model = info.builder(classes=None, input_shape=(size, size, 3))
    assert model.output_shape == (None, info.spec.default_classes)


def _groups() -> list[str]:
    """The cheapest registered row of each group of builders with the same options."""
    groups: dict = {}
    for name in NAMES:
        info = model_info(name)
        if name != info.builder.__name__:
            continue  # an alias
        key = (info.generic, tuple(info.options))
        if key not in groups or info.num_params < model_info(groups[key]).num_params:
            groups[key] = name
    return sorted(groups.values())


_GROUPS = _groups()


@settings(max_examples=6, deadline=None, derandomize=True)
@given(data=st.data())
def test_good_values_build_real_models(data):
    """Real bodies: drawn options (NumPy scalars too) reach the layers and the model runs."""
    name = data.draw(st.sampled_from(_GROUPS))
    options = model_info(name).options
    key = data.draw(st.sampled_from(sorted(options)))
    value = data.draw(good_values(options[key]))
    kwargs = {
        "include_top": np.True_,
        "classes": np.int64(2),
        "input_shape": (model_info(name).spec.total_stride,) * 2 + (3,),
    }
    model = model_info(name).builder(**kwargs, **{key: value})
    _check_callable(model, kwargs, model_info(name).spec)


# ---------------------------------------------------------------- the examples


def test_a_switch_is_true_or_false_only(no_bodies):
    with pytest.raises(ValueError, match=r"`residual` must be True or False, got 'no'"):
        keras_resnets.CifarResNet(residual="no")
    with pytest.raises(ValueError, match=r"`residual` must be True or False, got 1"):
        keras_resnets.ResNet((1, 1), stem="cifar", residual=1)
    with pytest.raises(_Reached):  # np.bool_ passes
        keras_resnets.CifarResNet(8, residual=np.False_)


def test_a_bool_is_not_a_number(no_bodies):
    with pytest.raises(ValueError, match=r"`classes` must be an integer >= 1, got True"):
        keras_resnets.ResNet20(classes=True)
    with pytest.raises(ValueError, match=r"`drop_path_rate` must be in \[0.0, 1.0\), got True"):
        keras_resnets.ResNet20(drop_path_rate=True)


def test_input_tensor_and_a_different_input_shape_are_refused(no_bodies):
    tensor = keras.Input((32, 32, 3))
    with pytest.raises(
        ValueError,
        match=r"`input_shape` \(64, 64, 3\) and the shape of `input_tensor` \(32, 32, 3\)",
    ):
        keras_resnets.ResNet20(input_tensor=tensor, input_shape=(64, 64, 3))
    with pytest.raises(_Reached):  # the same shape, NumPy ints too
        keras_resnets.ResNet20(input_tensor=tensor, input_shape=(np.int64(32), 32, 3))


def test_a_bad_input_tensor_is_reported_as_input_tensor(no_bodies):
    for tensor in (keras.Input((32, 32)), keras.Input((2, 2, 3)), np.zeros((1, 32, 32, 3))):
        with pytest.raises(ValueError, match=r"^`input_tensor`") as caught:
            keras_resnets.ResNet20(input_tensor=tensor)
        assert "`input_shape`" not in str(caught.value)


@pytest.mark.parametrize("bias", [math.nan, math.inf, -math.inf, np.float32("nan")])
def test_nan_or_infinite_gate_biases_are_refused(no_bodies, bias):
    with pytest.raises(ValueError, match="`transform_bias` must be a finite number or None"):
        keras_resnets.HighwayNet19(transform_bias=bias)
    with pytest.raises(ValueError, match="`carry_bias` must be a finite number or None"):
        keras_resnets.CifarHighwayNet(8, coupled=False, carry_bias=bias)
    with pytest.raises(ValueError, match="`gate_bias` must be a finite number"):
        keras_resnets.ResNet20(shortcut_variant="exclusive_gating", gate_bias=bias)
    with pytest.raises(ValueError, match="`transform_bias` must be a finite number"):
        Highway(transform_bias=bias)
    with pytest.raises(ValueError, match="`carry_bias` must be a finite number"):
        Highway(coupled=False, carry_bias=bias)


@pytest.mark.parametrize(
    "activation",
    [keras.layers.ReLU, keras.layers.Softmax, lambda: None, lambda x, y: x, "no_such"],
    ids=["layer-class", "softmax-class", "no-argument", "two-arguments", "unknown-name"],
)
def test_a_classifier_activation_that_cannot_take_a_tensor_is_refused(no_bodies, activation):
    with pytest.raises(ValueError, match="`classifier_activation`"):
        keras_resnets.ResNet20(classifier_activation=activation)


def test_one_class_with_softmax_is_refused_sigmoid_and_logits_build(tiny_bodies):
    with pytest.raises(ValueError, match=r"`classes=1`.*use 'sigmoid'.*or None"):
        keras_resnets.ResNet20(classes=1)
    with pytest.raises(ValueError, match=r"`classes=1`"):
        keras_resnets.ResNet20(classes=np.int64(1), classifier_activation=keras.activations.softmax)
    for activation in ("sigmoid", None, keras.layers.Activation("sigmoid")):
        model = keras_resnets.ResNet20(classes=1, classifier_activation=activation)
        assert model.output_shape == (None, 1)


def test_numpy_scalars_reach_the_layers_as_python_values():
    """The layers' own checks accept NumPy scalars and store Python values."""
    layers = [
        Highway(transform_bias=np.float32(-2.0), kernel_size=np.int64(3), coupled=np.True_),
        DenseBlock(np.int64(2), np.int64(4), bottleneck=np.False_, dropout=np.float32(0.1)),
        GroupedConv2D(np.int64(4), np.int64(3), groups=np.int64(2), strides=(np.int64(1), 1)),
    ]
    for layer in layers:
        config = layer.get_config()
        json.dumps(config)  # NumPy scalars would not serialise
    branch = keras.layers.Dense(3)
    layer = StochasticDepth(branch, np.float32(0.5), seed=np.int64(3))
    assert layer.seed == 3 and type(layer.seed) is int
    with pytest.raises(ValueError, match="`num_layers` must be a positive integer, got True"):
        DenseBlock(True, 4)


@pytest.mark.parametrize(
    "images",
    [
        [[[[0, 128, 255]]]],
        np.zeros((2, 2, 3), "uint8"),
    ],
    ids=["list", "array"],
)
def test_preprocess_input_takes_array_likes(images):
    out = preprocess_input(images)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert out.shape == np.asarray(images).shape
    np.testing.assert_allclose(out, preprocess_input(np.asarray(images, "float32")))


def test_preprocess_input_takes_a_pil_image():
    image = pytest.importorskip("PIL.Image").new("RGB", (4, 5), (255, 0, 0))
    out = preprocess_input(image)
    assert out.shape == (5, 4, 3)
    np.testing.assert_allclose(out[0, 0], preprocess_input(np.array([255.0, 0, 0])), rtol=1e-6)


@pytest.mark.parametrize("x", [None, 3, 2.5, "image", [["a", "b", "c"]]])
def test_preprocess_input_refuses_what_is_not_images(x):
    with pytest.raises(TypeError, match="^`x` must be an array of images"):
        preprocess_input(x)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_decode_predictions_refuses_nan_and_infinite_scores(bad):
    probs = np.zeros((3, 1000), "float32")
    probs[1, 5] = bad
    with pytest.raises(ValueError, match=r"`probs` must be finite.*row\(s\) \[1\]"):
        decode_predictions(probs)
    with pytest.raises(TypeError, match="`probs`"):
        decode_predictions(None)
    assert decode_predictions(probs[:1].tolist(), top=np.int64(1))[0][0][0] == "n01440764"
