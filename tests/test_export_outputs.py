"""The export serves the model's own outputs and the normalisation it was trained with.

Served results are read in a fresh Python process that loads the SavedModel
with TensorFlow only (`tests/test_export.py`'s CONSUMER rule: no Keras code).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
from serving_helpers import serving_script

import keras_resnets
from keras_resnets.export import export_saved_model, model_preprocessing
from keras_resnets.models.network import Network
from training import export as export_cli

ROOT = pathlib.Path(__file__).resolve().parents[1]

SERVE = serving_script(
    """
    request = json.load(open(sys.argv[1]))
    pixels = tf.constant(np.load(request["pixels"]), tf.float32)
    out = {}
    for key, export_dir in request["exports"].items():
        result = tf.saved_model.load(export_dir).signatures["serving_default"](images=pixels)
        out[key] = {k: v.numpy().tolist() for k, v in result.items()}
    json.dump(out, open(sys.argv[2], "w"))
    """
)


def _serve(tmp_path, exports: dict, pixels: np.ndarray) -> dict:
    np.save(tmp_path / "pixels.npy", pixels)
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"exports": exports, "pixels": str(tmp_path / "pixels.npy")}))
    response = tmp_path / "response.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH="")
    subprocess.run(
        [sys.executable, "-c", SERVE, str(request), str(response)],
        cwd=tmp_path,
        env=env,
        check=True,
        timeout=300,
    )
    return json.loads(response.read_text())


def _sharpen(model: keras.Model) -> None:
    """Large classifier weights, so that softmax applied twice is far from once."""
    for layer in model.layers:
        if layer.name == "head_fc":
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel * 50.0, bias])


def _endings() -> dict:
    """Models ending in each way a classifier gives probabilities, and in logits."""
    keras.utils.set_random_seed(0)
    logits = keras_resnets.CifarResNet(8, classes=4, classifier_activation=None)
    _sharpen(logits)
    dense = keras_resnets.CifarResNet(8, classes=4)  # Dense(activation="softmax")
    _sharpen(dense)
    x = logits.output
    return {
        "dense_softmax": (dense, "probabilities"),
        "activation": (
            keras.Model(logits.input, keras.layers.Activation("softmax")(x)),
            "probabilities",
        ),
        "softmax_layer": (keras.Model(logits.input, keras.layers.Softmax()(x)), "probabilities"),
        "lambda_softmax": (
            keras.Model(logits.input, keras.layers.Lambda(keras.ops.softmax)(x)),
            "probabilities",
        ),
        "logits": (logits, "logits"),
        "logits_as_is": (logits, "probabilities"),  # told nothing: served as is
    }


def test_served_outputs_are_the_models_own_for_every_ending(tmp_path):
    endings = _endings()
    exports = {
        key: export_saved_model(
            model, tmp_path / key, preprocessing="none", outputs=outputs, warmup=False
        )
        for key, (model, outputs) in endings.items()
    }
    pixels = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    served = _serve(tmp_path, exports, pixels)
    for key, (model, outputs) in endings.items():
        want = model.predict(pixels, verbose=0)
        got = served[key]
        if outputs == "logits":
            np.testing.assert_allclose(got["logits"], want, atol=1e-4, err_msg=key)
            want = keras.ops.convert_to_numpy(keras.ops.softmax(want))
        else:
            assert "logits" not in got, key
        np.testing.assert_allclose(got["probabilities"], want, atol=1e-5, err_msg=key)
        np.testing.assert_array_equal(
            np.asarray(got["top_k_indices"])[:, 0], np.argmax(want, -1), err_msg=key
        )
    # The endings are not trivially equal: softmax twice would have been caught.
    once = np.asarray(served["softmax_layer"]["probabilities"])
    twice = keras.ops.convert_to_numpy(keras.ops.softmax(once))
    assert np.abs(twice - once).max() > 0.1


def test_multi_output_model_is_refused_clearly(tmp_path):
    base = keras_resnets.CifarResNet(8, classes=4, classifier_activation=None)
    model = keras.Model(
        base.input, [keras.layers.Softmax()(base.output), keras.layers.Dense(2)(base.output)]
    )
    with pytest.raises(ValueError, match=r"has 2 outputs.*keras.Model\(model.inputs"):
        export_saved_model(model, tmp_path / "m", preprocessing="none", warmup=False)
    assert not (tmp_path / "m").exists()


def test_bad_outputs_argument_is_named(tmp_path):
    model = keras_resnets.CifarResNet(8, classes=4)
    with pytest.raises(ValueError, match=r"`outputs`.*'probabilities', 'logits'.*'softmax'"):
        export_saved_model(model, tmp_path / "m", preprocessing="none", outputs="softmax")


def test_no_preprocessing_anywhere_is_an_error(tmp_path):
    model = keras_resnets.CifarResNet(8, classes=4)
    assert model.preprocessing is None
    with pytest.raises(ValueError, match="carries none"):
        export_saved_model(model, tmp_path / "m", warmup=False)
    assert not (tmp_path / "m").exists()


def test_the_models_preprocessing_is_served_by_default(tmp_path):
    spec = {"scale": 1 / 255, "mean": [0.2, 0.3, 0.4], "std": [0.5, 0.25, 0.125]}
    keras.utils.set_random_seed(1)
    net = keras_resnets.CifarResNet(8, classes=4)
    _sharpen(net)
    net.preprocessing = dict(spec)
    net.save(tmp_path / "net.keras")
    loaded = keras.models.load_model(tmp_path / "net.keras")
    assert isinstance(loaded, Network) and model_preprocessing(loaded) == spec
    wrapped = keras.Sequential([keras.Input((32, 32, 3)), loaded, keras.layers.Identity()])
    assert model_preprocessing(wrapped) == spec
    exports = {
        "keras_file": export_saved_model(loaded, tmp_path / "a", warmup=False),
        "sequential": export_saved_model(wrapped, tmp_path / "b", warmup=False),
    }
    assert (
        export_cli.main(
            [
                "--model",
                str(tmp_path / "net.keras"),
                "--export-base",
                str(tmp_path / "c"),
                "--no-warmup",
            ]
        )
        == 0
    )
    exports["cli"] = str(tmp_path / "c" / "1")
    pixels = np.random.default_rng(2).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    want = net.predict(
        (pixels / 255 - np.float32(spec["mean"])) / np.float32(spec["std"]), verbose=0
    )
    served = _serve(tmp_path, exports, pixels)
    for key in exports:
        np.testing.assert_allclose(served[key]["probabilities"], want, atol=1e-5, err_msg=key)


def test_trained_model_serves_the_trainers_test_predictions(tmp_path):
    """A tiny trainer run; model.keras exported with no preprocessing argument."""
    from training_helpers import TINY

    from training import data as data_lib
    from training.train import run

    result = run(
        "digits_resnet20",
        epochs=1,
        output_dir=str(tmp_path / "run"),
        overrides=TINY,
        verbose="quiet",
    )
    resolved = result["config"]["resolved"]["normalization"]
    model = keras.models.load_model(result["model_path"])
    assert model.preprocessing == {
        "scale": 1 / 255,
        "mean": resolved["mean"],
        "std": resolved["std"],
    }
    assert (
        export_cli.main(
            ["--model", result["model_path"], "--export-base", str(tmp_path / "m"), "--no-warmup"]
        )
        == 0
    )
    # The trainer's own evaluation of the test split, image by image.
    cfg = result["config"]["data"]
    source = data_lib.load_source(cfg, seed=0)
    batches = list(data_lib.eval_dataset(source, source.test, cfg, batch_size=256))
    trainer_x = np.concatenate([b[0].numpy() for b in batches])
    labels = np.concatenate([b[1].numpy() for b in batches])
    trainer_predicted = model.predict(trainer_x, verbose=0).argmax(-1)
    assert float(np.mean(trainer_predicted == labels)) == pytest.approx(
        result["test_accuracy"], abs=1e-6
    )
    # The same images as a client sends them: raw pixels in [0, 255].
    pixels = source.test.images * 255.0
    served = _serve(tmp_path, {"m": str(tmp_path / "m" / "1")}, pixels.astype("float32"))
    probabilities = np.asarray(served["m"]["probabilities"])
    np.testing.assert_allclose(probabilities, model.predict(trainer_x, verbose=0), atol=1e-4)
    served_predicted = probabilities.argmax(-1)
    np.testing.assert_array_equal(served_predicted, trainer_predicted)
    assert float(np.mean(served_predicted == source.test.labels)) == pytest.approx(
        result["test_accuracy"], abs=1e-6
    )


def test_a_wrapping_model_carries_the_networks_preprocessing_only_on_raw_input():
    spec = {"scale": 1 / 255, "mean": [0.1], "std": [0.2]}
    net = keras_resnets.CifarResNet(8, classes=4)
    net.preprocessing = dict(spec)
    x = keras.Input((32, 32, 3))
    rescale = keras.layers.Rescaling(2.0)
    carried = {
        "network": net,
        "functional": keras.Model(x, keras.layers.Identity()(net(x))),
        "sequential": keras.Sequential([keras.Input((32, 32, 3)), net, keras.layers.Identity()]),
    }
    not_carried = {
        "functional_rescaled": keras.Model(x, net(rescale(x))),
        "sequential_rescaled": keras.Sequential([keras.Input((32, 32, 3)), rescale, net]),
        # Built from the network's tensors: a new model, not the Network.
        "from_tensors": keras.Model(net.input, keras.layers.Softmax()(net.output)),
        "fresh_build": keras_resnets.CifarResNet(8, classes=4),
    }
    for key, model in carried.items():
        assert model_preprocessing(model) == spec, key
    for key, model in not_carried.items():
        assert model_preprocessing(model) is None, key


def test_cli_outputs_and_preprocessing_flags(tmp_path, capsys):
    import tensorflow as tf

    keras.utils.set_random_seed(3)
    model = keras_resnets.CifarResNet(8, classes=4, classifier_activation=None)
    _sharpen(model)
    model.save(tmp_path / "logits.keras")
    argv = ["--model", str(tmp_path / "logits.keras"), "--no-warmup"]
    base = ["--export-base", str(tmp_path / "m")]
    assert export_cli.main([*argv, *base]) == 2
    assert "carries none" in capsys.readouterr().err
    both = ["--preprocessing", "unit", "--mean", "0.5,0.5,0.5", "--std", "1,1,1"]
    assert export_cli.main([*argv, *base, *both]) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert export_cli.main([*argv, *base, "--preprocessing", "tf", "--outputs", "logits"]) == 0
    pixels = np.random.default_rng(4).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    got = tf.saved_model.load(str(tmp_path / "m" / "1")).signatures["serving_default"](
        images=tf.constant(pixels)
    )
    want = model.predict(pixels / 127.5 - 1.0, verbose=0)
    np.testing.assert_allclose(got["logits"].numpy(), want, atol=1e-4)
    np.testing.assert_allclose(
        got["probabilities"].numpy(), keras.ops.convert_to_numpy(keras.ops.softmax(want)), atol=1e-5
    )
