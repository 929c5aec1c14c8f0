"""A real training process killed with SIGKILL mid-epoch resumes to the same result."""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest
from training_helpers import finish, start_trainer, tiny_set_flags

STEPS_PER_EPOCH = 8  # 256 images / batch 32
EPOCHS = 5


def _args(output_dir) -> list[str]:
    return [
        "--recipe",
        "digits_resnet20",
        "--epochs",
        str(EPOCHS),
        "--batch-size",
        "32",
        "--output-dir",
        str(output_dir),
        "--save-every-steps",
        "3",
        "--verbose",
        "line",
        *tiny_set_flags({"train.deterministic": True, "data.augmentation": "cifar"}),
    ]


def _backup_step(output_dir) -> int | None:
    from training.callbacks import read_meta

    path = os.path.join(output_dir, "backup", "state.npz")
    try:
        return read_meta(path)["step"]
    except (OSError, ValueError, KeyError):
        return None


def _final_weights(output_dir):
    import keras

    import keras_resnets  # noqa: F401  (registers the custom layers)

    return keras.models.load_model(os.path.join(output_dir, "model.keras")).get_weights()


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    reference_dir, killed_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    reference = start_trainer(_args(reference_dir))
    victim = start_trainer(_args(killed_dir))
    # Kill the victim as soon as a mid-epoch backup exists (step 9: epoch 2, step 1).
    deadline = time.time() + 200
    killed_at = None
    while time.time() < deadline and victim.poll() is None:
        step = _backup_step(killed_dir)
        if step is not None and step >= 9 and step % STEPS_PER_EPOCH:
            victim.send_signal(signal.SIGKILL)
            killed_at = step
            break
        time.sleep(0.02)
    victim.communicate(timeout=60)
    assert killed_at is not None, "the training finished before it could be killed"
    assert victim.returncode == -signal.SIGKILL
    assert not (killed_dir / "metrics.json").exists()
    backup_step = _backup_step(killed_dir)  # the backup on disk is complete and readable
    assert backup_step % STEPS_PER_EPOCH != 0  # the backup really is mid-epoch

    out = finish(start_trainer([*_args(killed_dir), "--resume"]))
    assert f"resumed from {killed_dir}" in out and f"at step {backup_step} of" in out
    finish(reference)

    resumed = json.loads((killed_dir / "metrics.json").read_text())
    uninterrupted = json.loads((reference_dir / "metrics.json").read_text())
    assert resumed["steps"] == uninterrupted["steps"] == EPOCHS * STEPS_PER_EPOCH
    assert len(resumed["history"]["loss"]) == EPOCHS
    # Op determinism + the step-indexed input pipeline: the same weights.
    for a, b in zip(_final_weights(killed_dir), _final_weights(reference_dir), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert resumed["test_accuracy"] == pytest.approx(uninterrupted["test_accuracy"])
    np.testing.assert_allclose(
        resumed["history"]["val_loss"][-1], uninterrupted["history"]["val_loss"][-1], rtol=1e-5
    )


# ---- the backup is the whole training state ---------------------------------

# Each case: (model name, model options, runtime flags). Every one draws random
# numbers inside the model while training, so a backup without the seed
# generator states resumes with other draws than the uninterrupted run.
RANDOM_MODELS = {
    "stochastic_depth_batch": ("CifarResNet", {"depth": 8, "drop_path_rate": 0.5}, {}),
    "stochastic_depth_sample": (
        "CifarResNet",
        {"depth": 8, "drop_path_rate": 0.5, "stochastic_depth_mode": "sample"},
        {},
    ),
    "wide_resnet_dropout": ("WideResNet", {"depth": 10, "width": 1, "dropout_rate": 0.3}, {}),
    "mixed_precision_stochastic_depth": (
        "CifarResNet",
        {"depth": 8, "drop_path_rate": 0.5},
        {"mixed_precision": True},
    ),
}


def _resume_runs(tmp_path, model, options, flags):
    """An uninterrupted 2-epoch run, and a run stopped after epoch 1 then resumed."""
    from training.train import run

    kw = dict(
        model=model,
        batch_size=32,
        verbose="quiet",
        overrides={
            "data.train_subset": 64,
            "data.test_subset": 32,
            "train.deterministic": True,
            "runtime.tensorboard": False,
            "model.options": options,
        },
        **flags,
    )
    straight = run("digits_resnet20", epochs=2, output_dir=str(tmp_path / "a"), **kw)
    run("digits_resnet20", epochs=1, output_dir=str(tmp_path / "b"), **kw)
    resumed = run("digits_resnet20", epochs=2, output_dir=str(tmp_path / "b"), resume=True, **kw)
    return straight, resumed


@pytest.mark.parametrize("case", sorted(RANDOM_MODELS))
def test_resumed_run_ends_with_the_uninterrupted_weights(tmp_path, case):
    model, options, flags = RANDOM_MODELS[case]
    straight, resumed = _resume_runs(tmp_path, model, options, flags)
    assert straight["steps"] == resumed["steps"] == 4
    assert resumed["weights_sha256"] == straight["weights_sha256"]
    assert resumed["test_accuracy"] == straight["test_accuracy"]


def _compiled(policy: str, seed: int = 0):
    import keras

    import keras_resnets

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(seed)
        model = keras_resnets.WideResNet(
            depth=10,
            width=1,
            dropout_rate=0.3,
            drop_path_rate=0.5,
            input_shape=(8, 8, 3),
            classes=3,
        )
        model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
        model.optimizer.build(model.trainable_variables)
    finally:
        keras.config.set_dtype_policy(previous)
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 8, 8, 3)).astype("float32"), np.arange(16) % 3


def _state_values(model):
    from training.callbacks import training_state

    return [np.array(v.numpy()) for _, v in training_state(model)]


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_save_and_load_state_carry_every_variable_training_changes(tmp_path, policy):
    """A fresh model loaded from the backup holds the trained one's whole state and
    then trains to the same weights (seeds, BN, momentum, loss scale included)."""
    import keras

    import keras_resnets
    from training.callbacks import load_state, save_state, training_state

    x, y = _data()
    trained = _compiled(policy)
    trained.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    entries = training_state(trained)
    # The generic walk holds every seed generator and the optimizer's state.
    seeds = [
        sg.state
        for layer in trained._flatten_layers()
        for sg in getattr(layer, "_seed_generators", [])
    ]
    gates = [
        layer
        for layer in trained._flatten_layers()
        if isinstance(layer, (keras_resnets.StochasticDepth, keras.layers.Dropout))
    ]
    assert len(gates) == 6  # WRN-10-1: 3 blocks, each a StochasticDepth gate and a Dropout
    assert len(seeds) == len(gates)
    held = {id(v) for _, v in entries}
    assert all(id(s) in held for s in seeds)
    assert all(id(v) in held for v in trained.optimizer.variables)
    if policy == "mixed_float16":
        assert isinstance(trained.optimizer, keras.optimizers.LossScaleOptimizer)
        assert any(name.endswith("dynamic_scale") for name, _ in entries)
    path = tmp_path / "state.npz"
    save_state(str(path), trained, 2, {"loss": [1.0]})

    fresh = _compiled(policy, seed=1)  # other initial weights and seeds
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(_state_values(fresh), _state_values(trained), strict=True)
    )
    meta = load_state(str(path), fresh)
    assert meta["step"] == 2 and meta["history"] == {"loss": [1.0]}
    for a, b in zip(_state_values(fresh), _state_values(trained), strict=True):
        np.testing.assert_array_equal(a, b)
    for model in (trained, fresh):
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(_state_values(fresh), _state_values(trained), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_backup_of_another_model_is_refused_naming_the_file(tmp_path):
    import keras

    import keras_resnets
    from training.callbacks import load_state, save_state

    x, y = _data()
    trained = _compiled("float32")
    path = tmp_path / "state.npz"
    save_state(str(path), trained, 0, {})
    other = keras_resnets.CifarResNet(depth=8, input_shape=(8, 8, 3), classes=3)
    other.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
    other.optimizer.build(other.trainable_variables)
    with pytest.raises(ValueError, match=rf"Backup {path} does not match .*first difference"):
        load_state(str(path), other)
    # A backup written before the whole state was saved (weights + optimizer only).
    legacy = tmp_path / "legacy.npz"
    arrays = {f"w{i}": w for i, w in enumerate(trained.get_weights())}
    arrays["meta"] = np.frombuffer(b'{"step": 0, "history": {}}', dtype=np.uint8)
    np.savez(legacy, **arrays)
    with pytest.raises(ValueError, match=rf"Backup {legacy} holds only the weights"):
        load_state(str(legacy), trained)


_TRAINER_RESUME = [
    "--recipe",
    "digits_resnet20",
    "--batch-size",
    "32",
    "--verbose",
    "quiet",
    *tiny_set_flags(
        {
            "model.name": "WideResNet",
            "model.options": {"depth": 10, "width": 1, "dropout_rate": 0.3, "drop_path_rate": 0.5},
            "data.train_subset": 64,
            "data.test_subset": 32,
            "train.deterministic": True,
            "runtime.tensorboard": False,
        }
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_resume_on_backend_matches_uninterrupted(tmp_path, backend):
    """`--backend jax|torch`: dropout and stochastic depth resume to the same weights."""

    def train(out, epochs, *extra):
        args = [*_TRAINER_RESUME, "--backend", backend, "--epochs", str(epochs)]
        finish(start_trainer([*args, "--output-dir", str(out), *extra], KERAS_BACKEND=backend))
        return json.loads((out / "metrics.json").read_text())

    straight = train(tmp_path / "a", 2)
    train(tmp_path / "b", 1)
    resumed = train(tmp_path / "b", 2, "--resume")
    assert straight["steps"] == resumed["steps"] == 4
    assert resumed["weights_sha256"] == straight["weights_sha256"]
