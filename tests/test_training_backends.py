"""The trainer on the JAX and PyTorch backends (`--backend`), in subprocesses."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _train(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("KERAS_BACKEND", None)
    cmd = [sys.executable, "-m", "training.train", "--recipe", "digits_resnet20", *args]
    return subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
    )


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_trainer_runs_on_backend(tmp_path, backend):
    out = tmp_path / backend
    proc = _train(
        tmp_path,
        "--backend",
        backend,
        "--epochs",
        "1",
        "--set",
        "train.steps_per_epoch=3",
        "--output-dir",
        str(out),
        "--verbose",
        "line",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["steps"] == 3
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["resolved"]["versions"]["backend"] == backend
    assert config["resolved"]["strategy"] == f"single device ({backend})"
    assert (out / "model.keras").is_file()
    assert f"backend {backend}" in proc.stdout


def test_tf_distribute_strategy_needs_tensorflow(tmp_path):
    proc = _train(
        tmp_path, "--backend", "jax", "--strategy", "mirrored", "--output-dir", str(tmp_path)
    )
    assert proc.returncode == 2
    assert "needs the TensorFlow backend" in proc.stderr
    assert "--strategy 'mirrored'" in proc.stderr


def test_unknown_backend_is_rejected(tmp_path):
    proc = _train(tmp_path, "--backend", "mxnet", "--output-dir", str(tmp_path))
    assert proc.returncode == 2
    assert "invalid choice: 'mxnet'" in proc.stderr
