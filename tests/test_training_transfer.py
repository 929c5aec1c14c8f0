"""The trainer's --transfer-from / --freeze-until / --new-classes and --export."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
import yaml
from training_helpers import tiny_set_flags

import keras_resnets
from training.data import load_digits_32
from training.train import main


def test_fine_tune_a_trained_model_from_the_command_line_and_export(tmp_path, capsys):
    keras.utils.set_random_seed(0)
    source = keras_resnets.CifarResNet(8, classes=5)
    source_path = tmp_path / "source.keras"
    source.save(source_path)
    out = tmp_path / "run"
    code = main(
        [
            *("--recipe", "digits_resnet20", "--epochs", "1", "--output-dir", str(out)),
            *("--transfer-from", str(source_path), "--freeze-until", "all"),
            *("--new-classes", "10", "--export", "--verbose", "quiet"),
            *tiny_set_flags(),
        ]
    )
    assert code == 0, capsys.readouterr().err
    model = keras.models.load_model(out / "model.keras")
    assert model.output_shape == (None, 10)
    for layer in source.layers:  # the frozen backbone, BN statistics included, is untouched
        if layer.weights and not layer.name.startswith("head_"):
            new = model.get_layer(layer.name).get_weights()
            for a, b in zip(layer.get_weights(), new, strict=True):
                np.testing.assert_array_equal(a, b, err_msg=layer.name)
    assert not np.allclose(model.get_layer("head_fc").get_weights()[1], 0)  # the head trained
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["transfer"]["from"] == str(source_path)
    assert config["transfer"]["freeze_until"] == "all"

    # The export normalises as the trainer did and names the classes.
    resolved = config["resolved"]["normalization"]
    mean, std = np.float32(resolved["mean"]), np.float32(resolved["std"])
    _, (x_test, _) = load_digits_32()
    pixels = np.round(x_test[:8] * 255).astype(np.uint8)
    served = tf.saved_model.load(str(out / "saved_model" / "1")).signatures["serve_uint8"](
        images=tf.constant(pixels)
    )
    want = model.predict((pixels / np.float32(255) - mean) / std, verbose=0)
    np.testing.assert_allclose(served["probabilities"].numpy(), want, atol=1e-5)
    assert served["top_k_classes"].numpy()[0, 0].decode() == str(int(want[0].argmax()))


def test_transfer_options_need_a_model_to_start_from(tmp_path, capsys):
    code = main(
        ["--recipe", "digits_resnet20", "--output-dir", str(tmp_path), "--freeze-until", "stage2"]
    )
    assert code == 2
    assert "--transfer-from" in capsys.readouterr().err


def test_a_missing_or_damaged_model_to_start_from_stops_before_anything(tmp_path, capsys):
    """Named as --transfer-from before data loads; no output directory is made."""
    out = tmp_path / "out"
    damaged = tmp_path / "cut.keras"
    damaged.write_bytes(b"PK\x03\x04 cut short")
    for path, code, why in (
        (tmp_path / "none.keras", 2, "does not exist"),
        (damaged, 5, "corrupt"),
    ):
        argv = [
            "--recipe",
            "digits_resnet20",
            "--output-dir",
            str(out),
            "--transfer-from",
            str(path),
        ]
        assert main(argv) == code
        err = capsys.readouterr().err
        assert err.startswith("error: `transfer.from` (--transfer-from) file ") and why in err, err
        assert not out.exists()
