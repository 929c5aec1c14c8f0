"""The analysis toolkit: path lengths, gradient by path length, lesions, plots."""

from __future__ import annotations

import itertools
import json
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml
from model_checks import randomise_batchnorm

import keras_resnets
from keras_resnets import analysis, blocks
from keras_resnets.analysis.__main__ import build_and_train, main
from training import cli

# Digits at their native 8x8 (CIFAR networks accept any size >= 4): fast to
# train on a CPU, and what the lesion margin below is measured on.
SIZE = 8
EPOCHS = 10


def _randomise_bn(model, seed=0):
    """Give every BatchNormalization non-trivial statistics and affine weights."""
    randomise_batchnorm(model.layers, np.random.default_rng(seed))
    return model


def _copy(model):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


@pytest.fixture(scope="module")
def digits_small():
    from keras_resnets.datasets import load_digits_32

    return load_digits_32(seed=0, size=SIZE)


@pytest.fixture(scope="module")
def trained(digits_small):
    """ResNet-20 and Plain-20 trained identically on digits (once per module)."""
    return {
        name: build_and_train(name, digits_small, epochs=EPOCHS, batch_size=64, seed=0)
        for name in ("ResNet20", "Plain20")
    }


# ---------------------------------------------------------------- path lengths


@pytest.mark.parametrize("n", [1, 2, 5, 9, 12])
def test_path_length_distribution_is_binomial(n):
    dist = analysis.path_length_distribution(n)
    # Count the 2^n paths one by one: each block contributes branch (1) or shortcut (0).
    counted = [0] * (n + 1)
    for path in itertools.product((0, 1), repeat=n):
        counted[sum(path)] += 1
    assert dist["count"] == counted
    assert dist["length"] == list(range(n + 1))
    assert sum(dist["count"]) == 2**n
    np.testing.assert_allclose(dist["fraction"], [c / 2**n for c in counted])
    assert math.isclose(sum(k * f for k, f in enumerate(dist["fraction"])), n / 2)


def test_path_length_distribution_rejects_bad_size():
    with pytest.raises(ValueError, match="num_blocks"):
        analysis.path_length_distribution(0)


# ------------------------------------------------------- gradient by path length


def _two_block_model():
    inputs = keras.Input((6, 6, 4), name="input")
    x = blocks.basic_block(inputs, 4, strides=1, name="b1")
    x = blocks.basic_block(x, 4, strides=1, name="b2")
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="head_fc")(x)
    keras.utils.set_random_seed(1)
    stages = [_entry("stem", "input", 4), _entry("stage1", "b2_out", 4)]
    return _randomise_bn(
        keras_resnets.Network(inputs, outputs, name="two_blocks", feature_info=stages)
    )


def _entry(name, layer, channels, reduction=1):
    """A `feature_info` entry for a hand-built model."""
    return {"name": name, "layer": layer, "channels": channels, "reduction": reduction}


def _hand_path_gradients(model, x, y):
    """The four path gradients of two identity blocks, by explicit chain rule."""

    def branch(name, t):
        for suffix in ("conv1", "bn1", "relu1", "conv2", "bn2"):
            t = model.get_layer(f"{name}_{suffix}")(t, training=False)
        return t

    def vjp(fn, at, cotangent):
        with tf.GradientTape() as tape:
            tape.watch(at)
            out = fn(at)
        return tape.gradient(out, at, output_gradients=cotangent)

    def head(t):
        t = model.get_layer("head_pool")(t)
        probs = model.get_layer("head_fc")(t)
        return tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(y, probs))

    x = tf.constant(x)
    pre1 = x + branch("b1", x)
    y1 = tf.nn.relu(pre1)
    pre2 = y1 + branch("b2", y1)
    y2 = tf.nn.relu(pre2)
    with tf.GradientTape() as tape:
        tape.watch(y2)
        loss = head(y2)
    g = tape.gradient(loss, y2) * tf.cast(pre2 > 0, tf.float32)  # at b2's merge
    mask1 = tf.cast(pre1 > 0, tf.float32)
    through_b2 = vjp(lambda t: branch("b2", t), y1, g)
    return {
        "shortcut_shortcut": mask1 * g,
        "branch1_only": vjp(lambda t: branch("b1", t), x, mask1 * g),
        "branch2_only": mask1 * through_b2,
        "branch_branch": vjp(lambda t: branch("b1", t), x, mask1 * through_b2),
    }


def _per_example_norm(g):
    return float(np.linalg.norm(np.asarray(g).reshape(len(g), -1), axis=1).mean())


def test_gradient_by_path_length_matches_hand_built_two_block_case():
    model = _two_block_model()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 6, 6, 4)).astype("float32")
    y = np.array([0, 1, 2, 1, 0])
    paths = _hand_path_gradients(model, x, y)

    # The hand decomposition is complete: the four paths add up to the true gradient.
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(
            keras.losses.sparse_categorical_crossentropy(y, model(xt, training=False))
        )
    np.testing.assert_allclose(
        sum(np.asarray(p) for p in paths.values()), tape.gradient(loss, xt), atol=1e-5
    )

    result = analysis.gradient_by_path_length(model, (x, y), samples=4)
    assert result["blocks"] == ["b1", "b2"]
    assert result["exhaustive"] == [True, True, True]
    assert result["count"] == [1, 2, 1]
    # k = 0: the pure-shortcut path; k = all: the all-residual path.
    np.testing.assert_allclose(
        result["gradient_norm"][0], _per_example_norm(paths["shortcut_shortcut"]), rtol=1e-5
    )
    np.testing.assert_allclose(
        result["gradient_norm"][2], _per_example_norm(paths["branch_branch"]), rtol=1e-5
    )
    # k = 1: the mean over both one-branch paths (enumerated exactly).
    expected = np.mean(
        [_per_example_norm(paths["branch1_only"]), _per_example_norm(paths["branch2_only"])]
    )
    np.testing.assert_allclose(result["gradient_norm"][1], expected, rtol=1e-5)
    contribution = [c * g for c, g in zip([1, 2, 1], result["gradient_norm"], strict=True)]
    np.testing.assert_allclose(result["contribution"], contribution, rtol=1e-6)
    assert math.isclose(sum(result["contribution_fraction"]), 1.0)


def test_gated_model_forward_is_unchanged_and_original_untouched():
    model = _randomise_bn(keras_resnets.ResNet20(input_shape=(SIZE, SIZE, 3)))
    x = np.random.default_rng(0).random((4, SIZE, SIZE, 3)).astype("float32")
    before = np.asarray(model(x, training=False))
    gated, gates = analysis.gated_model(model)
    assert len(gates) == 9
    for i, gate in enumerate(gates.values()):
        gate.through_branch.assign(float(i % 2))
    np.testing.assert_array_equal(np.asarray(gated(x, training=False)), before)
    np.testing.assert_array_equal(np.asarray(model(x, training=False)), before)
    assert model.get_layer("stage1_block2_add").output is not None  # still one inbound node


def test_gradient_by_path_length_rejects_plain_models_and_bad_lengths():
    batch = (np.zeros((2, SIZE, SIZE, 3), "float32"), np.array([0, 1]))
    with pytest.raises(ValueError, match="residual"):
        analysis.gradient_by_path_length(keras_resnets.Plain20(input_shape=(8, 8, 3)), batch)
    with pytest.raises(ValueError, match="lengths"):
        analysis.gradient_by_path_length(
            keras_resnets.ResNet20(input_shape=(8, 8, 3)), batch, lengths=[10]
        )


# ------------------------------------------------------------- gradient norms


def test_gradient_norms_per_kernel_layer():
    model = keras_resnets.Plain20(input_shape=(SIZE, SIZE, 3))
    rng = np.random.default_rng(0)
    x = rng.random((8, SIZE, SIZE, 3)).astype("float32")
    y = rng.integers(0, 10, 8)
    state = [np.array(v) for v in model.non_trainable_variables]
    rows = analysis.gradient_norms(model, (x, y))
    for before, after in zip(state, model.non_trainable_variables, strict=True):
        np.testing.assert_array_equal(before, np.asarray(after))
    convs = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [r["layer"] for r in rows] == convs + ["head_fc"]
    with tf.GradientTape() as tape:
        probs = model(x, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, probs))
    kernel = model.get_layer("stage2_block2_conv1").kernel
    expected = np.linalg.norm(tape.gradient(loss, kernel.value))
    got = next(r["norm"] for r in rows if r["layer"] == "stage2_block2_conv1")
    np.testing.assert_allclose(got, expected, rtol=1e-5)


# -------------------------------------------------------------------- blocks


def test_find_blocks_resnet50_bottleneck_projection(built_model):
    found = analysis.find_blocks(built_model("ResNet50"))
    assert len(found) == 16 and all(b.residual for b in found)
    projections = [b.name for b in found if not b.identity_shortcut]
    assert projections == ["stage2_block1", "stage3_block1", "stage4_block1", "stage5_block1"]
    assert found[0].branch.shape == found[0].output.shape  # the bn3 output


def test_find_blocks_plain_and_errors():
    plain = analysis.find_blocks(keras_resnets.Plain20(input_shape=(8, 8, 3)))
    assert [b.removable for b in plain] == [True, True, True, False, True, True, False, True, True]
    with pytest.raises(ValueError, match="stage2_block1"):
        analysis.lesioned_model(
            keras_resnets.Plain20(input_shape=(8, 8, 3)), remove=["stage2_block1"]
        )
    with pytest.raises(ValueError, match="stage9_block1"):
        analysis.lesioned_model(keras_resnets.ResNet20(), remove=["stage9_block1"])
    flat = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises((ValueError, TypeError)):
        analysis.find_blocks(flat)
    inputs = keras.Input((4,))
    branch = keras.layers.Dense(4, name="b_dense")(inputs)
    averaged = keras.layers.Average(name="b_add")([inputs, branch])
    stages = [_entry("stage1", "b_add", 4)]
    with pytest.raises(ValueError, match="'b_add' \\(Average"):
        analysis.find_blocks(keras_resnets.Network(inputs, averaged, feature_info=stages))


# -------------------------------------------------------------------- lesions


@pytest.mark.parametrize(
    "shortcut, names",
    [("zero_pad", ["stage1_block2", "stage2_block1"]), ("projection", ["stage3_block1"])],
)
def test_zeroed_branch_equals_removed_block(shortcut, names):
    keras.utils.set_random_seed(0)
    model = _randomise_bn(keras_resnets.ResNet20(input_shape=(SIZE, SIZE, 3), shortcut=shortcut))
    weights = [w.copy() for w in model.get_weights()]
    x = np.random.default_rng(1).random((6, SIZE, SIZE, 3)).astype("float32")
    intact = np.asarray(model(x, training=False))
    for block in names:
        zeroed = _copy(model)
        bn = zeroed.get_layer(f"{block}_bn2")
        gamma, beta, mean, var = bn.get_weights()
        bn.set_weights([np.zeros_like(gamma), np.zeros_like(beta), mean, var])
        lesioned = analysis.lesioned_model(model, remove=[block])
        assert not any(layer.name.startswith(f"{block}_conv") for layer in lesioned.layers)
        expected = np.asarray(zeroed(x, training=False))
        np.testing.assert_allclose(np.asarray(lesioned(x, training=False)), expected, atol=1e-6)
        assert not np.allclose(intact, expected, atol=1e-3)  # the lesion changes the function
    # The intact model is untouched: same weights, same outputs, one node per layer.
    for before, after in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(np.asarray(model(x, training=False)), intact)
    assert all(len(layer._inbound_nodes) == 1 for layer in model.layers)


def test_reordered_blocks_equal_swapped_weights():
    keras.utils.set_random_seed(0)
    model = _randomise_bn(keras_resnets.ResNet20(input_shape=(SIZE, SIZE, 3)))
    x = np.random.default_rng(2).random((4, SIZE, SIZE, 3)).astype("float32")
    names = [b.name for b in analysis.find_blocks(model)]
    order = list(names)
    order[1], order[2] = order[2], order[1]  # stage1_block2 <-> stage1_block3
    reordered = analysis.lesioned_model(model, order=order)
    swapped = _copy(model)
    for suffix in ("conv1", "bn1", "conv2", "bn2"):
        a, b = (swapped.get_layer(f"stage1_block{i}_{suffix}") for i in (2, 3))
        wa, wb = a.get_weights(), b.get_weights()
        a.set_weights(wb)
        b.set_weights(wa)
    np.testing.assert_allclose(
        np.asarray(reordered(x, training=False)), np.asarray(swapped(x, training=False)), atol=1e-6
    )
    bad = list(names)
    bad[0], bad[3] = bad[3], bad[0]  # a downsampling block cannot move
    with pytest.raises(ValueError, match="cannot run at the position"):
        analysis.lesioned_model(model, order=bad)


def test_lesion_residual_vs_plain_on_trained_digits(trained, digits_small):
    _, held_out = digits_small
    resnet = analysis.lesion_study(
        trained["ResNet20"], held_out, max_deletions=2, draws=2, max_swaps=1
    )
    plain = analysis.lesion_study(trained["Plain20"], held_out, max_deletions=0)
    # Both networks learned the task equally well.
    assert resnet["baseline_error"] < 0.1 and plain["baseline_error"] < 0.1
    res_single = {s["block"]: s["error"] for s in resnet["single"] if not s["downsampling"]}
    plain_single = [s["error"] for s in plain["single"] if s["removable"]]
    assert len(res_single) == 7 and len(plain_single) == 7
    print(f"resnet single-deletion errors {res_single}, plain {plain_single}")
    # Deleting any removable block of the plain network leaves it near chance.
    assert min(plain_single) > 0.7
    # Deleting any non-downsampling residual block after the first hurts far
    # less: a margin of at least 50 points on held-out data.
    first = res_single.pop("stage1_block1")
    assert min(plain_single) - max(res_single.values()) > 0.5
    # The first block, right after the one-convolution stem, matters more on
    # this small network (38-72% error depending on the recipe, documented);
    # the median over all seven is still far below any plain deletion.
    assert np.median([first, *res_single.values()]) < min(plain_single) - 0.5
    assert [d["k"] for d in resnet["deletions"]] == [1, 2]
    assert len(resnet["swaps"]) == 1 and len(resnet["swaps"][0]["errors"]) == 2


# ------------------------------------------------------------ schedule + CLI


def test_survival_schedule_formula_and_expected_depth():
    probabilities = analysis.survival_schedule(54, 0.5)
    assert probabilities[0] == pytest.approx(1 - 0.5 / 54)
    assert probabilities[-1] == pytest.approx(0.5)
    assert analysis.expected_depth(probabilities) == pytest.approx((3 * 54 - 1) / 4)
    with pytest.raises(ValueError, match="drop_path_rate"):
        analysis.survival_schedule(10, 1.0)


def _check_outputs(folder, stem):
    png = os.path.join(folder, f"{stem}.png")
    with open(png, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(png) > 5000
    with open(os.path.join(folder, f"{stem}.json")) as handle:
        payload = json.load(handle)
    with open(os.path.join(folder, f"{stem}.csv")) as handle:
        lines = handle.read().splitlines()
    assert len(lines) >= 2
    assert not [f for f in os.listdir(folder) if ".tmp" in f]
    return payload, lines


def test_commands_write_plots_and_numbers(tmp_path, trained, capsys):
    out = str(tmp_path)
    paths = {}
    for name, model in trained.items():
        paths[name] = str(tmp_path / f"{name}.keras")
        model.save(paths[name])

    assert main(["schedule", "--models", "ResNet20", "--output-dir", out]) == 0
    payload, _ = _check_outputs(out, "schedule")
    assert list(payload.values())[0][-1] == pytest.approx(0.5)

    args = ["--output-dir", out, "--image-size", str(SIZE)]
    assert main(["gradients", "--models", "Plain20", "ResNet20", *args]) == 0
    payload, lines = _check_outputs(out, "gradients")
    assert len(lines) == 3 and payload["state"] == "at initialisation"

    assert main(["lesion", "--models", paths["ResNet20"], "--max-deletions", "1",
                 "--draws", "1", "--max-swaps", "0", *args]) == 0  # fmt: skip
    payload, lines = _check_outputs(out, "lesion")
    assert len(lines) == 1 + 9

    assert main(["paths", "--model", paths["ResNet20"], "--samples", "1",
                 "--examples", "8", *args]) == 0  # fmt: skip
    payload, lines = _check_outputs(out, "paths")
    assert payload["count"] == [math.comb(9, k) for k in range(10)]
    printed = capsys.readouterr().out
    assert "effective paths" in printed and "wrote" in printed


def test_command_errors_name_the_problem(tmp_path, capsys):
    # A usage error: exit 2 with `error: ...` (it exited 1, the status of a bug, before issue 17).
    missing = str(tmp_path / "missing.keras")
    assert main(["lesion", "--models", missing, "--output-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: model file {missing!r} does not exist\n"
    # A truncated file is a file that cannot be read (exit 5) named as such, not "File not found".
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(b"PK\x03\x04 cut short")
    assert main(["paths", "--model", str(truncated), "--output-dir", str(tmp_path)]) == 5
    err = capsys.readouterr().err
    assert str(truncated) in err and "truncated or corrupt" in err and "not found" not in err


def test_preactivation_blocks_are_found_lesioned_and_gated():
    keras.utils.set_random_seed(0)
    model = _randomise_bn(
        keras_resnets.ResNet20(input_shape=(SIZE, SIZE, 3), unit="full_preactivation")
    )
    found = analysis.find_blocks(model)
    assert len(found) == 9 and all(b.residual for b in found)
    x = np.random.default_rng(4).random((4, SIZE, SIZE, 3)).astype("float32")
    intact = np.asarray(model(x, training=False))
    zeroed = _copy(model)
    last = zeroed.get_layer("stage2_block2_conv2")  # a pre-activation branch ends in a conv
    last.set_weights([np.zeros_like(w) for w in last.get_weights()])
    lesioned = analysis.lesioned_model(model, remove=["stage2_block2"])
    expected = np.asarray(zeroed(x, training=False))
    np.testing.assert_allclose(np.asarray(lesioned(x, training=False)), expected, atol=1e-6)
    assert not np.allclose(intact, expected, atol=1e-3)
    gated, _ = analysis.gated_model(model)
    np.testing.assert_array_equal(np.asarray(gated(x, training=False)), intact)


def test_highway_blocks_are_plain_and_densenet_is_refused():
    highway = analysis.find_blocks(keras_resnets.HighwayNet19(input_shape=(SIZE, SIZE, 3)))
    assert len(highway) == 17 and not any(b.residual for b in highway)
    with pytest.raises(ValueError, match="densenet121"):
        analysis.find_blocks(keras_resnets.DenseNet121(input_shape=(32, 32, 3), weights=None))


def test_find_blocks_resnext50_grouped_bottleneck(built_model):
    found = analysis.find_blocks(built_model("ResNeXt50"))
    assert len(found) == 16 and all(b.residual for b in found)
    projections = [b.name for b in found if not b.identity_shortcut]
    assert projections == ["stage2_block1", "stage3_block1", "stage4_block1", "stage5_block1"]


@pytest.mark.slow
def test_degradation_command_trains_through_the_trainer(tmp_path, capsys):
    out = str(tmp_path)
    argv = ["degradation", "--models", "Plain20", "ResNet20", "--epochs", "2",
            "--set", "data.image_size=8", "--set", "train.steps_per_epoch=4",
            "--seed", "3", "--output-dir", out]  # fmt: skip
    # The console command's route (`keras-resnets analysis degradation`) to training.degradation.
    assert cli.main(["analysis", *argv]) == 0
    payload, lines = _check_outputs(out, "degradation")
    assert payload["recipe"] == "digits_resnet20" and len(lines) == 3
    for name in ("Plain20", "ResNet20"):
        run = payload["runs"][name]
        assert len(run["history"]["accuracy"]) == 2 and len(run["history"]["val_accuracy"]) == 2
        assert os.path.isfile(run["model_path"])  # the trainer's saved model
        assert 0.0 <= run["test_accuracy"] <= 1.0
        # --seed reaches the trainer (it was parsed and ignored before).
        with open(os.path.join(run["output_dir"], "config.yaml"), encoding="utf-8") as handle:
            assert yaml.safe_load(handle)["train"]["seed"] == 3
    assert "ResNet20" in capsys.readouterr().out


@pytest.mark.parametrize(
    "models, problem",
    [(["Plain20", "ResNet21"], "Unknown model name 'ResNet21'"), (["ResNet20"], "drop_path_rate")],
)
def test_degradation_checks_every_model_before_training_any(tmp_path, capsys, models, problem):
    """A misspelt last model (or a bad option) stops the command before the first run trains."""
    from training import degradation

    out = tmp_path / "out"
    argv = ["--models", *models, "--output-dir", str(out)]
    if problem == "drop_path_rate":
        argv += ["--set", "model.options={drop_path_rate: 2}"]
    assert degradation.main(argv) == 2
    assert problem in capsys.readouterr().err
    assert not out.exists()


def test_stochastic_depth_blocks_are_found_lesioned_and_gated():
    keras.utils.set_random_seed(0)
    model = _randomise_bn(keras_resnets.ResNet20(input_shape=(SIZE, SIZE, 3), drop_path_rate=0.5))
    found = analysis.find_blocks(model)
    assert len(found) == 9 and all(b.residual and b.owns_branch for b in found)
    assert [b.identity_shortcut for b in found] == [True] * 3 + [False, True, True] * 2
    x = np.random.default_rng(3).random((4, SIZE, SIZE, 3)).astype("float32")
    intact = np.asarray(model(x, training=False))
    zeroed = _copy(model)
    bn = zeroed.get_layer("stage2_block2_add").branch.get_layer("stage2_block2_bn2")
    gamma, beta, mean, var = bn.get_weights()
    bn.set_weights([np.zeros_like(gamma), np.zeros_like(beta), mean, var])
    lesioned = analysis.lesioned_model(model, remove=["stage2_block2"])
    expected = np.asarray(zeroed(x, training=False))
    np.testing.assert_allclose(np.asarray(lesioned(x, training=False)), expected, atol=1e-6)
    assert not np.allclose(intact, expected, atol=1e-3)
    # The gated copy unfolds each block to shortcut + p_l * branch: same outputs.
    gated, gates = analysis.gated_model(model)
    assert len(gates) == 9
    np.testing.assert_allclose(np.asarray(gated(x, training=False)), intact, atol=1e-6)
