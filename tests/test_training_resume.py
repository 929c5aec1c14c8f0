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
