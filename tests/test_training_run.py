"""End-to-end tiny runs of `training.train.run` (in this process)."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from training_helpers import TINY

from training.train import main, run


def test_digits_run_contract_and_outputs(tmp_path):
    out = tmp_path / "run"
    result = run("digits_resnet20", epochs=2, output_dir=str(out), overrides=TINY, verbose="quiet")
    assert result["status"] == "completed" and result["steps"] == 2 * (256 // 64)
    history = result["history"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
        assert len(history[key]) == 2, key
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert result["output_dir"] == str(out) and result["model_path"] == str(out / "model.keras")

    import keras
    import yaml

    import keras_resnets  # noqa: F401
    from training.data import load_digits_32

    model = keras.models.load_model(result["model_path"])
    checkpoint = keras.models.load_model(out / "checkpoint.keras")
    x = load_digits_32()[1][0][:8]
    np.testing.assert_allclose(model.predict(x, verbose=0), checkpoint.predict(x, verbose=0))
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["resolved"]["total_steps"] == result["steps"]
    assert resolved["resolved"]["global_batch_size"] == 64
    assert resolved["model"]["options"] == {"depth": 8}
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1] and "val_accuracy" in rows[0]
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] == result["test_accuracy"]
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]  # nothing half-written

    with pytest.raises(ValueError, match="already holds a run.*--resume"):
        run("digits_resnet20", epochs=1, output_dir=str(out), overrides=TINY)
    # --resume of a finished run trains no further step.
    again = run("digits_resnet20", epochs=2, output_dir=str(out), overrides=TINY, resume=True)
    assert again["steps"] == result["steps"] and len(again["history"]["loss"]) == 2


def test_nan_loss_stops_and_keeps_last_good_state(tmp_path, capsys):
    from training.callbacks import read_meta

    out = tmp_path / "nan"
    overrides = {**TINY, "optimizer.name": "sgd", "optimizer.learning_rate": 1e12}
    result = run(
        "digits_resnet20",
        epochs=3,
        output_dir=str(out),
        overrides=overrides,
        save_every_steps=1,
        verbose="quiet",
    )
    assert result["status"] == "nan_loss" and result["test_accuracy"] is None
    assert "Training stopped at step" in capsys.readouterr().err
    assert result["steps"] < 3 * (256 // 64)
    state = out / "backup" / "state.npz"
    good = read_meta(state)["step"]
    assert good == result["last_good_step"] and good < result["steps"]
    with np.load(state) as data:
        assert all(np.all(np.isfinite(data[k])) for k in data.files if k.startswith("w"))
    assert not (out / "model.keras").exists()


def test_tfds_cifar10_mock_with_mixed_precision(tmp_path):
    import keras
    import tensorflow_datasets as tfds

    with open("/proc/cpuinfo") as f:
        flags = f.read()
    bf16 = "avx512_bf16" in flags or "amx_bf16" in flags
    with tfds.testing.mock_data(num_examples=64):
        result = run(
            "cifar10_resnet20",
            epochs=1,
            batch_size=16,
            output_dir=str(tmp_path),
            overrides=TINY,
            mixed_precision=True,
            verbose="quiet",
        )
    resolved = result["config"]["resolved"]
    assert resolved["dtype_policy"] == ("mixed_bfloat16" if bf16 else "float32")
    assert keras.config.dtype_policy().name == "float32"  # restored after the run
    assert resolved["learning_rate"] == pytest.approx(0.1 * 16 / 128)  # linear scaling rule
    assert result["steps"] == 64 // 16 and np.isfinite(result["history"]["loss"][0])


def test_image_folder_run_skips_bad_images(tmp_path, capsys):
    from test_training_data import _write_folder

    root = _write_folder(tmp_path / "images", bad=True)
    code = main(
        [
            "--recipe",
            "digits_resnet20",
            "--dataset",
            "folder",
            "--data-dir",
            str(root),
            "--skip-bad-images",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--output-dir",
            str(tmp_path / "out"),
            "--set",
            "model.name=CifarResNet",
            "--set",
            "model.options={depth: 8}",
            "--set",
            "data.augmentation=imagenet",
            "--set",
            "data.validation=folder",
            "--verbose",
            "line",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "skipped 1 unreadable image(s)" in out
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["steps"] == 12 // 4
    assert os.path.exists(metrics["model_path"])


def test_cli_lists_recipes_and_rejects_bad_input(capsys, tmp_path):
    assert main(["--list-recipes"]) == 0
    listing = capsys.readouterr().out
    assert "cifar10_resnet110_stochastic_depth" in listing and "digits_resnet20" in listing
    code = main(["--recipe", "digits_resnet20", "--output-dir", str(tmp_path), "--set", "x=1"])
    assert code == 2 and "unknown key `x`" in capsys.readouterr().err


def test_one_device_and_auto_strategies(tmp_path, monkeypatch):
    import tensorflow as tf

    from training import distribute
    from training.config import SCHEMA

    assert distribute.STRATEGIES == SCHEMA["runtime"]["strategy"][2]
    assert distribute.get_strategy("auto") is tf.distribute.get_strategy()  # CPU only
    result = run(
        "digits_resnet20",
        epochs=1,
        output_dir=str(tmp_path),
        overrides={**TINY, "data.train_subset": 64},
        strategy="one_device",
        verbose="quiet",
    )
    assert result["config"]["resolved"]["strategy"] == "OneDeviceStrategy"
    assert result["status"] == "completed" and result["steps"] == 1
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distribute.get_strategy("multi_worker")
    with pytest.raises(ValueError, match="`strategy` must be one of auto, default"):
        distribute.get_strategy("horovod")
    with pytest.raises(ValueError, match="no TPU was found"):
        distribute.get_strategy("tpu")
    monkeypatch.setenv(
        "TF_CONFIG",
        json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}),
    )
    assert distribute.worker_info() == (1, 2, False)
