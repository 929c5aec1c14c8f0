"""SplitAttention (ResNeSt): timm's `SplitAttn`, computed, named and counted as timm.

The reference below is written from timm's algorithm (timm/layers/split_attn.py)
in NumPy, in PyTorch's layout: NCHW tensors, torch-shaped weights taken from
the layer the way a checkpoint converter maps them (`conv.weight` is the
Keras kernel transposed to (out, in / groups, kh, kw)), so it checks the
channel orders and the weight layout as well as the arithmetic.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from keras_resnets.layers import GroupedConv2D, SplitAttention
from keras_resnets.layers.split_attention import make_divisible
from keras_resnets.utils import sublayers

# in_channels, filters, radix, cardinality, strides, other arguments
CASES = [
    (8, 8, 1, 1, 1, {}),
    (8, 8, 1, 2, 2, {}),
    (8, 8, 2, 1, 2, {}),
    (8, 16, 2, 2, 1, {"min_reduction_channels": 8, "reduction_divisor": 4}),
    (16, 8, 4, 1, 1, {}),
    (16, 8, 4, 2, 2, {"min_reduction_channels": 4, "reduction_divisor": 2}),
]
CASE_IDS = [f"c{c[0]}-f{c[1]}-r{c[2]}-k{c[3]}-s{c[4]}" for c in CASES]
EPSILON = 1e-5
SIZE = 7  # odd: a stride-2 convolution's padding decides the output


def _layer(case, **kwargs):
    _, filters, radix, cardinality, strides, other = case
    return SplitAttention(
        filters, 3, strides, radix=radix, cardinality=cardinality, **other, **kwargs
    )


def _input(case, batch=2, seed=1):
    return np.random.default_rng(seed).standard_normal((batch, SIZE, SIZE, case[0]), "float32")


def _randomize(layer, seed=0):
    """Random weights and perturbed BatchNorm statistics (so inference BN is not identity)."""
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        shape, leaf = tuple(variable.shape), variable.path.rsplit("/", 1)[-1]
        if leaf == "kernel":
            value = rng.standard_normal(shape) * 1.5 / np.sqrt(np.prod(shape[:-1]))
        elif leaf in ("gamma", "moving_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        else:  # beta, moving_mean, bias
            value = rng.standard_normal(shape) * 0.2
        variable.assign(value.astype("float32"))


def _torch_state(layer):
    """The layer's weights as timm's `SplitAttn` state dict (names without the prefix)."""
    state = {}
    for sub in sublayers(layer):
        key = sub.name.removeprefix(f"{layer.name}_")
        values = {w.path.rsplit("/", 1)[-1]: ops.convert_to_numpy(w) for w in sub.weights}
        if "kernel" in values:
            state[f"{key}.weight"] = values["kernel"].transpose(3, 2, 0, 1).astype("float64")
            if "bias" in values:
                state[f"{key}.bias"] = values["bias"].astype("float64")
        else:
            for torch_name, keras_name in (
                ("weight", "gamma"),
                ("bias", "beta"),
                ("running_mean", "moving_mean"),
                ("running_var", "moving_variance"),
            ):
                state[f"{key}.{torch_name}"] = values[keras_name].astype("float64")
    return state


def _conv2d(x, weight, bias=None, *, stride=1, padding=0, groups=1):
    """torch.nn.functional.conv2d in NumPy: NCHW, weight (out, in / groups, kh, kw)."""
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out_channels, group_in, kh, kw = weight.shape
    group_out = out_channels // groups
    height = (x.shape[2] - kh) // stride + 1
    width = (x.shape[3] - kw) // stride + 1
    out = np.zeros((x.shape[0], out_channels, height, width))
    for g in range(groups):
        xg = x[:, g * group_in : (g + 1) * group_in]
        wg = weight[g * group_out : (g + 1) * group_out]
        for a in range(kh):
            for b in range(kw):
                patch = xg[:, :, a : a + stride * (height - 1) + 1 : stride]
                patch = patch[:, :, :, b : b + stride * (width - 1) + 1 : stride]
                out[:, g * group_out : (g + 1) * group_out] += np.einsum(
                    "bchw,oc->bohw", patch, wg[:, :, a, b]
                )
    return out if bias is None else out + bias[None, :, None, None]


def _batch_norm(x, state, key, training):
    if training:  # the batch's moments (biased variance), as PyTorch normalises
        mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    else:
        mean, var = state[f"{key}.running_mean"], state[f"{key}.running_var"]
    scale = state[f"{key}.weight"] / np.sqrt(var + EPSILON)
    return (x - mean[:, None, None]) * scale[:, None, None] + state[f"{key}.bias"][:, None, None]


def timm_split_attn(x_nhwc, state, *, radix, cardinality, stride, training=False):
    """timm's `SplitAttn.forward` (with `RadixSoftmax`) in NumPy float64; NHWC in and out."""
    relu = lambda t: np.maximum(t, 0)  # noqa: E731
    x = x_nhwc.astype("float64").transpose(0, 3, 1, 2)
    kernel = state["conv.weight"].shape[-1]
    x = _conv2d(
        x, state["conv.weight"], stride=stride, padding=kernel // 2, groups=cardinality * radix
    )
    x = relu(_batch_norm(x, state, "bn0", training))
    batch, rc, height, width = x.shape
    if radix > 1:
        x = x.reshape(batch, radix, rc // radix, height, width)
        gap = x.sum(axis=1)
    else:
        gap = x
    gap = gap.mean(axis=(2, 3), keepdims=True)
    gap = _conv2d(gap, state["fc1.weight"], state["fc1.bias"], groups=cardinality)
    gap = relu(_batch_norm(gap, state, "bn1", training))
    attn = _conv2d(gap, state["fc2.weight"], state["fc2.bias"], groups=cardinality)
    if radix > 1:
        attn = attn.reshape(batch, cardinality, radix, -1).transpose(0, 2, 1, 3)
        attn = np.exp(attn - attn.max(axis=1, keepdims=True))
        attn = (attn / attn.sum(axis=1, keepdims=True)).reshape(batch, -1)
        out = (x * attn.reshape(batch, radix, rc // radix, 1, 1)).sum(axis=1)
    else:
        out = x * (1 / (1 + np.exp(-attn)))
    return out.transpose(0, 2, 3, 1)


def _reference(layer, case, x, training=False):
    return timm_split_attn(
        x,
        _torch_state(layer),
        radix=case[2],
        cardinality=case[3],
        stride=case[4],
        training=training,
    )


def _built(case, seed=0, **kwargs):
    layer = _layer(case, **kwargs)
    layer.build((None, SIZE, SIZE, case[0]))
    _randomize(layer, seed)
    return layer


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_inference_equals_timms_split_attn(case):
    layer = _built(case)
    x = _input(case)
    out = ops.convert_to_numpy(layer(x, training=False))
    assert out.shape == (2, -(-SIZE // case[4]), -(-SIZE // case[4]), case[1])
    np.testing.assert_allclose(out, _reference(layer, case, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("implementation", ["native", "split"])
def test_every_grouped_convolution_implementation_gives_the_same_output(implementation):
    case = CASES[-1]  # grouped conv, fc1 and fc2
    layer = _built(case, implementation=implementation)
    assert all(
        sub.resolved_implementation == implementation
        for sub in sublayers(layer)
        if isinstance(sub, GroupedConv2D)
    )
    x = _input(case)
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(x)), _reference(layer, case, x), atol=1e-5, rtol=1e-5
    )


def test_training_mode_uses_batch_statistics_and_updates_the_moving_ones():
    case = CASES[3]
    layer = _built(case)
    x = _input(case, batch=4)
    expected = _reference(layer, case, x, training=True)
    before = {w.path: ops.convert_to_numpy(w) for w in layer.non_trainable_weights}
    out = ops.convert_to_numpy(layer(x, training=True))
    np.testing.assert_allclose(out, expected, atol=1e-4, rtol=1e-4)
    for w in layer.non_trainable_weights:  # bn0's and bn1's moving mean and variance
        assert not np.allclose(ops.convert_to_numpy(w), before[w.path]), w.path


def test_the_gradient_is_finite_and_reaches_every_weight():
    import tensorflow as tf

    case = CASES[5]
    layer = _built(case)
    x = tf.constant(_input(case))
    probe = np.random.default_rng(2).standard_normal((2, 4, 4, case[1])).astype("float32")
    for training in (True, False):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=training) * probe)
        grads = tape.gradient(loss, [x, *layer.trainable_weights])
        names = ["input", *(w.path for w in layer.trainable_weights)]
        for name, grad in zip(names, grads, strict=True):
            assert grad is not None and np.all(np.isfinite(grad.numpy())), (training, name)
            # In training bn1 subtracts the batch mean: fc1's bias has no effect.
            if not (training and name.endswith("fc1/bias")):
                assert np.any(grad.numpy() != 0), (training, name)


def test_sublayers_have_timms_names_and_torch_compatible_shapes():
    layer = SplitAttention(8, radix=2, cardinality=2, name="stage2_block1_conv2")
    layer.build((None, SIZE, SIZE, 16))
    subs = sublayers(layer)
    assert [s.name for s in subs] == [
        f"stage2_block1_conv2_{s}" for s in ("conv", "bn0", "fc1", "bn1", "fc2")
    ]
    attention = 32  # make_divisible(16 * 2 * 0.25 = 8, min_value=32)
    shapes = {k: v.shape for k, v in _torch_state(layer).items()}
    assert shapes == {
        "conv.weight": (16, 4, 3, 3),  # (filters * radix, C_in / (cardinality * radix), 3, 3)
        "bn0.weight": (16,),
        "bn0.bias": (16,),
        "bn0.running_mean": (16,),
        "bn0.running_var": (16,),
        "fc1.weight": (attention, 4, 1, 1),  # (D, filters / cardinality, 1, 1)
        "fc1.bias": (attention,),
        "bn1.weight": (attention,),
        "bn1.bias": (attention,),
        "bn1.running_mean": (attention,),
        "bn1.running_var": (attention,),
        "fc2.weight": (16, attention // 2, 1, 1),
        "fc2.bias": (16,),
    }
    assert [type(s).__name__ for s in subs] == [
        "GroupedConv2D",
        "BatchNormalization",
        "GroupedConv2D",
        "BatchNormalization",
        "GroupedConv2D",
    ]
    assert [s.groups for s in subs[::2]] == [4, 2, 2]
    plain = SplitAttention(8, radix=1, name="plain")
    plain.build((None, SIZE, SIZE, 8))
    assert {type(s) for s in sublayers(plain)[::2]} == {keras.layers.Conv2D}


def _timm_count(in_channels, filters, radix, cardinality, kernel=3, **other):
    """Parameters of timm's SplitAttn, summed over its modules' torch shapes."""
    attention = make_divisible(
        in_channels * radix * other.get("reduction_ratio", 0.25),
        other.get("reduction_divisor", 8),
        other.get("min_reduction_channels", 32),
    )
    mid = filters * radix
    conv = mid * (in_channels // (cardinality * radix)) * kernel * kernel
    bn0 = 2 * mid
    fc1 = attention * (filters // cardinality) + attention
    bn1 = 2 * attention
    fc2 = mid * (attention // cardinality) + mid
    return conv + bn0 + fc1 + bn1 + fc2


def _trainable(layer):
    return int(sum(np.prod(w.shape) for w in layer.trainable_weights))


@pytest.mark.parametrize(
    "in_channels, filters, radix, cardinality, other",
    [(c[0], c[1], c[2], c[3], c[5]) for c in CASES]
    + [(64, 64, 2, 1, {}), (512, 512, 2, 1, {}), (96, 48, 2, 3, {"reduction_ratio": 0.5})],
)
def test_trainable_parameters_equal_timms(in_channels, filters, radix, cardinality, other):
    layer = SplitAttention(filters, radix=radix, cardinality=cardinality, **other)
    layer.build((None, 8, 8, in_channels))
    assert _trainable(layer) == _timm_count(in_channels, filters, radix, cardinality, **other)


def test_a_hand_computed_count():
    # ResNeSt-50's first unit (timm resnest50d layer1.0.conv2): C_in = filters = 64,
    # radix 2: conv 3*3*32*128 = 36,864; bn0 2*128 = 256; D = 32: fc1 64*32 + 32 =
    # 2,080; bn1 64; fc2 32*128 + 128 = 4,224.
    layer = SplitAttention(64, radix=2)
    layer.build((None, 8, 8, 64))
    assert _trainable(layer) == 36_864 + 256 + 2_080 + 64 + 4_224 == 43_488
    assert _timm_count(64, 64, 2, 1) == 43_488


@pytest.mark.parametrize(
    "value, kwargs, expected",
    [
        (32.0, {"min_value": 32}, 32),
        (4.0, {"min_value": 32}, 32),
        (20.0, {}, 24),  # int(24) // 8 * 8
        (17.0, {}, 16),
        (9.0, {}, 16),  # 8 < 0.9 * 9: one divisor more
        (9.0, {"round_limit": 0.0}, 8),
        (1.0, {}, 8),  # min_value defaults to the divisor
        (10.0, {"divisor": 4}, 12),
    ],
)
def test_make_divisible_is_timms_rounding(value, kwargs, expected):
    assert make_divisible(value, **kwargs) == expected


def test_keras_round_trip(tmp_path):
    case = CASES[5]
    inputs = keras.Input((SIZE, SIZE, case[0]))
    model = keras.Model(inputs, _layer(case, name="unit_conv2")(inputs))
    _randomize(model.get_layer("unit_conv2"))
    path = str(tmp_path / "split.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    layer = loaded.get_layer("unit_conv2")
    assert isinstance(layer, SplitAttention)
    assert layer.get_config() == model.get_layer("unit_conv2").get_config()
    assert [s.name for s in sublayers(layer)] == [
        s.name for s in sublayers(model.get_layer("unit_conv2"))
    ]
    x = _input(case)
    np.testing.assert_array_equal(ops.convert_to_numpy(loaded(x)), ops.convert_to_numpy(model(x)))


@pytest.mark.parametrize("policy, tolerance", [("mixed_float16", 1e-2), ("mixed_bfloat16", 8e-2)])
def test_mixed_precision(policy, tolerance):
    case = CASES[5]
    keras.config.set_dtype_policy(policy)
    try:
        layer = _built(case)
    finally:
        keras.config.set_dtype_policy("float32")
    compute = policy.removeprefix("mixed_")
    assert {s.dtype_policy.name for s in sublayers(layer)} == {policy}
    assert {w.dtype for w in layer.weights} == {"float32"}
    x = _input(case)
    out = layer(x)
    assert keras.backend.standardize_dtype(out.dtype) == compute
    np.testing.assert_allclose(
        ops.convert_to_numpy(ops.cast(out, "float32")),
        _reference(layer, case, x),
        atol=tolerance,
        rtol=tolerance,
    )


def test_compute_output_shape_matches_the_output():
    for strides, expected in ((1, (2, SIZE, 6, 8)), (2, (2, 4, 3, 8))):
        layer = SplitAttention(8, strides=strides, radix=2)
        assert layer.compute_output_shape((2, SIZE, 6, 8)) == expected
        for shape in ((2, SIZE, 6, 8), (1, 5, 5, 8)):
            out = layer(np.zeros(shape, "float32"))
            assert layer.compute_output_shape(shape) == tuple(out.shape)
        symbolic = layer(keras.Input((None, None, 8)))
        assert tuple(symbolic.shape) == (None, None, None, 8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"filters": 0}, "`filters` must be a positive integer, got 0"),
        ({"filters": 8.0}, "`filters` must be a positive integer, got 8.0"),
        ({"radix": 0}, "`radix` must be a positive integer, got 0"),
        ({"cardinality": -1}, "`cardinality` must be a positive integer, got -1"),
        ({"cardinality": 3}, "`filters`=8 must be a multiple of `cardinality`=3"),
        ({"kernel_size": 2}, "`kernel_size` must be an odd positive integer"),
        ({"strides": 3}, "Unknown `strides` 3: allowed values are 1, 2"),
        ({"reduction_ratio": 0}, "`reduction_ratio` must be > 0, got 0"),
        ({"min_reduction_channels": 0}, "`min_reduction_channels` must be a positive integer"),
        ({"reduction_divisor": True}, "`reduction_divisor` must be a positive integer"),
        ({"implementation": "fast"}, "Unknown `implementation` 'fast'"),
        ({"epsilon": 0.0}, "`epsilon` must be > 0"),
        ({"momentum": 1.0}, r"`momentum` must be in \[0, 1\)"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SplitAttention(**{"filters": 8, **kwargs})


@pytest.mark.parametrize(
    "kwargs, channels, match",
    [
        ({"radix": 2, "cardinality": 2}, 6, r"input channels \(6\) must be known and a multiple"),
        ({"radix": 2}, None, r"input channels \(None\)"),
        # D = make_divisible(6 * 0.25, min_value=32) = 32, not a multiple of 3
        ({"filters": 6, "radix": 1, "cardinality": 3}, 6, "32 attention channels"),
    ],
)
def test_bad_inputs_are_refused_when_built(kwargs, channels, match):
    layer = SplitAttention(**{"filters": 8, **kwargs})
    with pytest.raises(ValueError, match=match):
        layer.build((None, SIZE, SIZE, channels))


@pytest.mark.multibackend
def test_inference_equals_timms_split_attn_on_this_backend():
    """Run by `make test` on TensorFlow, JAX and PyTorch (the multibackend marker).

    One case: radix 4 (the softmax), two cardinal groups (grouped fc1, fc2),
    stride 2. Zero initial kernels: `_randomize` sets every weight, and JAX
    compiles each random initializer's shape (seconds) otherwise.
    """
    case = CASES[5]
    layer = _built(case, kernel_initializer="zeros")
    x = _input(case)
    out = ops.convert_to_numpy(layer(x, training=False))
    np.testing.assert_allclose(out, _reference(layer, case, x), atol=1e-5, rtol=1e-5)
    # The converter's walk (on PyTorch through the torch submodules) finds the
    # five sub-layers, as Keras's own (private) walk does.
    assert sublayers(layer) == list(layer._flatten_layers(include_self=False, recursive=False))
    assert len(sublayers(layer)) == 5
