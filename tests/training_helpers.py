"""Helpers shared by the trainer tests: tiny settings and subprocess runs."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A CIFAR ResNet-8 on 256 digits: a few steps take well under a second.
TINY = {
    "model.name": "CifarResNet",
    "model.options": {"depth": 8},
    "data.train_subset": 256,
    "data.test_subset": 64,
    "runtime.tensorboard_images": False,
}


def tiny_set_flags(extra: dict | None = None) -> list[str]:
    """`--set` arguments for the tiny settings (plus `extra`)."""
    import json

    items = {**TINY, **(extra or {})}
    out = []
    for key, value in items.items():
        out += ["--set", f"{key}={json.dumps(value)}"]
    return out


def trainer_env(**extra: str) -> dict:
    env = dict(os.environ)
    env.update(
        TF_CPP_MIN_LOG_LEVEL="2",
        KERAS_BACKEND="tensorflow",
        PYTHONPATH=ROOT + os.pathsep + env.get("PYTHONPATH", ""),
        CUDA_VISIBLE_DEVICES="",
    )
    env.update(extra)
    return env


def start_trainer(args: list[str], **env: str) -> subprocess.Popen:
    """Start `python -m training.train ARGS` in a new process."""
    return subprocess.Popen(
        [sys.executable, "-m", "training.train", *args],
        cwd=ROOT,
        env=trainer_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen, timeout: float = 240) -> str:
    """Wait for a trainer process; fail with its output if it failed."""
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out[-4000:]
    return out
