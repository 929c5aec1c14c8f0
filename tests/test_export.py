"""The TensorFlow Serving export, checked from a process that never imports Keras code.

One module-scoped export (through the `training.export` command) is shared;
a fresh Python process loads it with `tf.saved_model.load` only and calls
every signature on PNG and JPEG files written here.
"""

from __future__ import annotations

import ast
import glob
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model_checks import randomise_batchnorm
from serving_helpers import serving_script

import keras_resnets
from keras_resnets.export import (
    SIGNATURES,
    WARMUP_FILE,
    decode_image,
    export_saved_model,
    list_versions,
    temporary_patterns,
)
from training import export as export_cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
CLASS_NAMES = [f"digit {i}" for i in range(10)]

# What the serving process runs: TensorFlow, numpy and json only. Once
# TensorFlow is imported (TF 2.21 imports Keras with it), any further import
# of keras or keras_resnets raises, so loading and serving cannot use them.
CONSUMER = serving_script(
    """
    request = json.load(open(sys.argv[1]))
    results = {}
    for export_dir in request["exports"]:
        loaded = tf.saved_model.load(export_dir)
        out = {}
        for path in request["images"]:
            data = tf.io.read_file(path)
            # A client's pixels: Pillow's (decode_image's) pixels of the file.
            if path.endswith(".jpg"):
                pixels = tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")
            else:
                pixels = tf.io.decode_image(data, channels=3, expand_animations=False)
            batch = pixels[None]
            for name, images in (
                ("serving_default", tf.cast(batch, tf.float32)),
                ("serve_uint8", batch),
            ):
                result = loaded.signatures[name](images=images)
                out.setdefault(name, []).append(
                    {k: v.numpy()[0].tolist() if v.dtype != tf.string
                     else [s.decode() for s in v.numpy()[0]] for k, v in result.items()}
                )
        # All files in one batch, each of its own size and format.
        data = tf.stack([tf.io.read_file(p) for p in request["images"]])
        result = loaded.signatures["serve_bytes"](image_bytes=data)
        out["serve_bytes"] = [
            {k: v.numpy()[i].tolist() if v.dtype != tf.string
             else [s.decode() for s in v.numpy()[i]] for k, v in result.items()}
            for i in range(len(request["images"]))
        ]
        results[export_dir] = out
    results["modules"] = sorted(
        m for m in sys.modules if m.split(".")[0] in ("keras_resnets", "tf_keras")
    )
    json.dump(results, open(sys.argv[2], "w"))
    """
)


KILLED_EXPORT = textwrap.dedent(
    """
    import os, signal, sys
    import keras_resnets
    from keras_resnets import export

    def killed(*args, **kwargs):
        # Everything is written under the temporary name; die before the rename.
        os.kill(os.getpid(), signal.SIGKILL)

    export._publish = killed
    export.export_saved_model(keras_resnets.CifarResNet(8), sys.argv[1], preprocessing="unit")
    """
)


def _randomise_batchnorm(model: keras.Model, seed: int = 0) -> None:
    """Give BN layers non-trivial statistics and sharpen the classifier.

    A freshly initialised model predicts nearly uniform probabilities, which
    would make the comparisons below weak.
    """
    layers = list(model._flatten_layers(include_self=False, recursive=True))
    for layer in layers:
        if layer.name == "head_fc":
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel * 8.0, bias])
    randomise_batchnorm(layers, np.random.default_rng(seed))


def _write_images(directory: pathlib.Path) -> list[str]:
    """A 32x32 PNG (no resize), a 45x50 PNG and a 40x40 JPEG (resized)."""
    rng = np.random.default_rng(1)
    paths = []
    for name, (h, w), encode in (
        ("a.png", (32, 32), tf.io.encode_png),
        ("b.png", (45, 50), tf.io.encode_png),
        ("c.jpg", (40, 40), lambda x: tf.io.encode_jpeg(x, quality=90)),
    ):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        # A smooth gradient on top of noise, so the JPEG is not pure noise.
        pixels[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
        path = directory / name
        tf.io.write_file(str(path), encode(pixels))
        paths.append(str(path))
    return paths


# The CLI export normalises as the trainer does, (pixels / 255 - mean) / std.
MEAN, STD = (0.1, 0.2, 0.3), (0.5, 0.6, 0.7)


def _expected(model: keras.Model, path: str, size=(32, 32), mean=0.0, std=1.0) -> np.ndarray:
    """The Keras model's probabilities on one image file, preprocessed by hand."""
    pixels = decode_image(tf.io.read_file(path), channels=3)  # the export's decoder
    image = tf.cast(pixels, tf.float32)[None]
    if tuple(image.shape[1:3]) != size:
        image = tf.image.resize(image, size, method="bilinear")
    x = (image.numpy() / 255.0 - np.float32(mean)) / np.float32(std)
    return model.predict(x, verbose=0)[0]


def custom_layer_models() -> list[keras.Model]:
    """Small models that, with the main one (ZeroPadShortcut), use every custom layer."""
    return [
        keras_resnets.CifarHighwayNet(depth=8),  # Highway
        keras_resnets.CifarDenseNet(depth=10, growth_rate=4),  # DenseBlock
        keras_resnets.CifarResNeXt(depth=11, cardinality=4, base_width=4),  # GroupedConv2D
        keras_resnets.CifarResNet(8, drop_path_rate=0.5),  # StochasticDepth
        _split_attention_model(),  # SplitAttention
    ]


def _split_attention_model() -> keras.Model:
    """A small classifier around one strided, grouped `SplitAttention` (ResNeSt's layer)."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="stem_conv")(inputs)
    x = keras_resnets.layers.SplitAttention(
        8, strides=2, radix=2, cardinality=2, name="stage2_block1_conv2"
    )(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="head_fc")(x)
    return keras.Model(inputs, outputs, name="split_attention")


def _layer_classes(model: keras.Model) -> set[type]:
    return {type(layer) for layer in model._flatten_layers(include_self=False, recursive=True)}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A CIFAR ResNet-8 (zero-pad shortcuts) saved as .keras, exported by the CLI, and served by a fresh process."""
    root = tmp_path_factory.mktemp("export")
    keras.utils.set_random_seed(0)
    model = keras_resnets.CifarResNet(8)
    _randomise_batchnorm(model)
    model_path = root / "resnet8.keras"
    model.save(model_path)
    labels = root / "labels.txt"
    labels.write_text("\n".join(CLASS_NAMES) + "\n", encoding="utf-8")
    base = root / "models" / "resnet8"
    code = export_cli.main(
        [
            *("--model", str(model_path), "--export-base", str(base)),
            *("--class-names", str(labels)),
            *("--mean", ",".join(map(str, MEAN)), "--std", ",".join(map(str, STD))),
        ]
    )
    assert code == 0

    customs = custom_layer_models()
    custom_dirs = []
    for index, custom in enumerate(customs):
        _randomise_batchnorm(custom, seed=index)
        custom_dirs.append(
            export_saved_model(custom, root / "models" / f"custom{index}", preprocessing="unit")
        )

    images = _write_images(root)
    request = root / "request.json"
    request.write_text(json.dumps({"exports": [str(base / "1"), *custom_dirs], "images": images}))
    response = root / "response.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH="")
    # The three processes start TensorFlow in parallel (each takes ~15 s).
    consumer = subprocess.Popen(
        [sys.executable, "-c", CONSUMER, str(request), str(response)],
        cwd=root,  # not the repository, so nothing local is importable by accident
        env=env,
    )
    cli = subprocess.Popen(
        [
            str(pathlib.Path(sys.executable).with_name("saved_model_cli")),
            *("show", "--dir", str(base / "1"), "--all"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    killed_base = root / "killed"
    killed = subprocess.Popen(
        [sys.executable, "-c", KILLED_EXPORT, str(killed_base)],
        env=env,
        stderr=subprocess.PIPE,
    )
    assert consumer.wait(timeout=300) == 0
    cli_output, _ = cli.communicate(timeout=300)
    assert cli.returncode == 0
    _, killed_stderr = killed.communicate(timeout=300)
    served = json.loads(response.read_text())
    return {
        "model": model,
        "model_path": model_path,
        "base": base,
        "version_dir": base / "1",
        "images": images,
        "served": served,
        "customs": list(zip(customs, custom_dirs, strict=True)),
        "saved_model_cli": cli_output,
        "killed": (killed.returncode, killed_stderr.decode(errors="replace"), killed_base),
    }


def test_layout_is_what_tf_serving_loads(exported):
    version_dir = exported["version_dir"]
    assert list_versions(exported["base"]) == [1]
    assert (version_dir / "saved_model.pb").is_file()
    assert (version_dir / "variables" / "variables.index").is_file()
    assert (version_dir / "assets" / "class_names.txt").read_text().split("\n")[:10] == CLASS_NAMES
    assert (version_dir / WARMUP_FILE).is_file()
    # Nothing but the version is left in the base directory (no temporary dirs).
    assert sorted(os.listdir(exported["base"])) == ["1"]


def test_served_probabilities_equal_the_keras_model(exported):
    served = exported["served"][str(exported["version_dir"])]
    assert exported["served"]["modules"] == []  # no keras_resnets in the serving process
    model = exported["model"]
    for index, path in enumerate(exported["images"]):
        want = _expected(model, path, mean=MEAN, std=STD)
        assert want.max() > 0.3, "the test model should not be near-uniform"
        for signature in SIGNATURES:
            got = served[signature][index]
            np.testing.assert_allclose(got["probabilities"], want, atol=1e-5, err_msg=signature)
            order = np.argsort(-want)[:5]
            np.testing.assert_array_equal(got["top_k_indices"], order, err_msg=signature)
            np.testing.assert_allclose(got["top_k_scores"], want[order], atol=1e-5)
            assert got["top_k_classes"] == [CLASS_NAMES[i] for i in order]


def test_every_custom_layer_exports_and_serves(exported):
    used = _layer_classes(exported["model"])
    for model, _ in exported["customs"]:
        used |= _layer_classes(model)
    custom = {
        getattr(keras_resnets.layers, name)
        for name in keras_resnets.layers.__all__
        if isinstance(getattr(keras_resnets.layers, name), type)
    }
    missing = sorted(cls.__name__ for cls in custom - used)
    assert not missing, f"extend custom_layer_models() to use {missing}"
    for model, version_dir in exported["customs"]:
        served = exported["served"][version_dir]
        for index, path in enumerate(exported["images"]):
            want = _expected(model, path)
            for signature in SIGNATURES:
                got = served[signature][index]["probabilities"]
                np.testing.assert_allclose(
                    got, want, atol=1e-5, err_msg=f"{model.name} {signature}"
                )
            assert "top_k_classes" not in served["serve_bytes"][index]


def test_saved_model_cli_lists_named_typed_inputs(exported):
    text = exported["saved_model_cli"]
    blocks = {}
    for chunk in text.split("signature_def['")[1:]:
        name, body = chunk.split("']", 1)
        blocks[name] = body
    for name, (key, dtype) in SIGNATURES.items():
        assert name in blocks, f"{name} missing from saved_model_cli:\n{text}"
        body = blocks[name]
        assert f"inputs['{key}']" in body
        tf_dtype = {"float32": "DT_FLOAT", "uint8": "DT_UINT8", "string": "DT_STRING"}[dtype]
        assert f"dtype: {tf_dtype}" in body.split("output(s):")[0]
        for output in ("probabilities", "top_k_indices", "top_k_scores", "top_k_classes"):
            assert f"outputs['{output}']" in body
        assert "tensorflow/serving/predict" in body
    assert "args_0" not in text


def test_warmup_file_holds_one_prediction_log_per_signature(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    path = exported["version_dir"] / WARMUP_FILE
    seen = {}
    for record in tf.data.TFRecordDataset(str(path)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        assert request.model_spec.name == "resnet8"
        seen[request.model_spec.signature_name] = {
            key: tf.make_ndarray(value) for key, value in request.inputs.items()
        }
    assert set(seen) == set(SIGNATURES)
    for name, (key, dtype) in SIGNATURES.items():
        value = seen[name][key]
        assert value.dtype == (np.object_ if dtype == "string" else np.dtype(dtype)), name
    assert seen["serving_default"]["images"].shape == (1, 32, 32, 3)
    # The recorded request really is served by the export.
    loaded = tf.saved_model.load(str(exported["version_dir"]))
    out = loaded.signatures["serve_bytes"](
        image_bytes=tf.constant(seen["serve_bytes"]["image_bytes"])
    )
    assert out["probabilities"].shape == (1, 10)


def test_versions_count_up_and_are_never_overwritten(tmp_path):
    model = keras_resnets.CifarResNet(8, classes=3)
    base = tmp_path / "m"
    first = export_saved_model(model, base, warmup=False, preprocessing="unit")
    second = export_saved_model(model, base, warmup=False, top_k=10, preprocessing="unit")
    assert (first, second) == (str(base / "1"), str(base / "2"))
    stamp = os.stat(base / "1" / "saved_model.pb").st_mtime_ns
    with pytest.raises(FileExistsError, match="overwrite"):
        export_saved_model(model, base, version=1, warmup=False, preprocessing="unit")
    assert os.stat(base / "1" / "saved_model.pb").st_mtime_ns == stamp
    export_saved_model(model, base, version=1, overwrite=True, warmup=False, preprocessing="unit")
    assert os.stat(base / "1" / "saved_model.pb").st_mtime_ns != stamp
    assert sorted(os.listdir(base)) == ["1", "2"]
    loaded = tf.saved_model.load(second)
    out = loaded.signatures["serving_default"](images=tf.zeros([2, 8, 8, 3]))
    assert out["top_k_indices"].shape == (2, 3)  # top_k is capped at the class count


def test_a_killed_export_leaves_no_version(exported):
    returncode, stderr, base = exported["killed"]
    assert returncode == -9, stderr[-2000:]
    leftovers = os.listdir(base)
    assert leftovers and all(name.startswith(".") for name in leftovers)
    # The half-finished export was complete up to the rename, and still is invisible.
    assert (base / leftovers[0] / "model" / "saved_model.pb").is_file()
    assert list_versions(base) == []
    # What the trainer removes when a run starts again (training.rundir.remove_leftovers).
    matched = {path for pattern in temporary_patterns(base) for path in glob.glob(pattern)}
    assert matched == {str(base / name) for name in leftovers}


def test_logits_get_a_softmax_when_told(tmp_path):
    model = keras_resnets.CifarResNet(8, classifier_activation=None)
    _randomise_batchnorm(model)
    path = export_saved_model(
        model, tmp_path / "m", warmup=False, preprocessing="tf", outputs="logits"
    )
    loaded = tf.saved_model.load(path)
    pixels = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype("float32")
    got = loaded.signatures["serving_default"](images=tf.constant(pixels))["probabilities"]
    want = keras.ops.softmax(model.predict(pixels / 127.5 - 1.0, verbose=0)).numpy()
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)


def test_any_size_model_needs_input_size_and_torch_preprocessing(tmp_path):
    base = keras_resnets.CifarResNet(8, include_top=False, input_shape=(None, None, 3))
    model = keras_resnets.replace_head(base, classes=4)
    with pytest.raises(ValueError, match="input_size"):
        export_saved_model(model, tmp_path / "m", warmup=False, preprocessing="torch")
    path = export_saved_model(
        model, tmp_path / "m", input_size=(24, 40), preprocessing="torch", warmup=False
    )
    pixels = np.random.default_rng(0).integers(0, 256, (1, 48, 80, 3)).astype("float32")
    got = tf.saved_model.load(path).signatures["serving_default"](images=tf.constant(pixels))
    mean = np.array([0.485, 0.456, 0.406], "float32")
    std = np.array([0.229, 0.224, 0.225], "float32")
    resized = tf.image.resize(pixels, (24, 40)).numpy()
    want = model.predict((resized / 255.0 - mean) / std, verbose=0)
    np.testing.assert_allclose(got["probabilities"].numpy(), want, atol=1e-5)


def test_crop_fraction_is_the_imagenet_evaluation_crop(tmp_path):
    model = keras_resnets.CifarResNet(8)
    _randomise_batchnorm(model)
    path = export_saved_model(
        model, tmp_path / "m", crop_fraction=0.875, warmup=False, preprocessing="unit"
    )
    pixels = np.random.default_rng(0).integers(0, 256, (1, 40, 60, 3)).astype("float32")
    got = tf.saved_model.load(path).signatures["serving_default"](images=tf.constant(pixels))
    # Shorter side 40 -> round(32 / 0.875) = 37, so 40x60 -> 37x56, then the central 32x32.
    resized = tf.image.resize(pixels, (37, 56)).numpy()[:, 2:34, 12:44]
    want = model.predict(resized / 255.0, verbose=0)
    np.testing.assert_allclose(got["probabilities"].numpy(), want, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"preprocessing": "caffe"}, "preprocessing"),
        ({"preprocessing": {"mean": (1, 2)}}, "mean"),
        ({"class_names": ["a", "b"]}, "class_names"),
        ({"top_k": 0}, "top_k"),
        ({"version": -1}, "version"),
        ({"input_size": 48}, "input_size"),
        ({"crop_fraction": 1.5}, "crop_fraction"),
    ],
)
def test_bad_arguments_are_named(tmp_path, kwargs, message):
    model = keras_resnets.CifarResNet(8)
    with pytest.raises(ValueError, match=message):
        export_saved_model(model, tmp_path / "m", **{"preprocessing": "unit", **kwargs})
    assert not (tmp_path / "m").exists() or list_versions(tmp_path / "m") == []


def test_a_model_without_its_classifier_is_refused(tmp_path):
    model = keras_resnets.CifarResNet(8, include_top=False, pooling="avg")
    with pytest.raises(ValueError, match="include_top"):
        export_saved_model(model, tmp_path / "m")


def test_cli_never_overwrites_a_version_unless_asked(exported, capsys):
    argv = ["--model", str(exported["model_path"]), "--export-base", str(exported["base"])]
    argv += ["--preprocessing", "unit"]
    stamp = os.stat(exported["version_dir"] / "saved_model.pb").st_mtime_ns
    assert export_cli.main([*argv, "--version", "1", "--no-warmup"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert os.stat(exported["version_dir"] / "saved_model.pb").st_mtime_ns == stamp
    assert sorted(os.listdir(exported["base"])) == ["1"]


def test_cli_reports_a_bad_model_file(tmp_path, capsys):
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"not a zip file")
    # a file that cannot be read: an I/O error (issue 17: exit 5, not the usage code 2)
    assert export_cli.main(["--model", str(bad), "--export-base", str(tmp_path / "m")]) == 5
    err = capsys.readouterr().err
    assert str(bad) in err and "truncated or corrupt" in err and "not found" not in err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--top-k", "0"], "error: --top-k: `top_k` must be an integer >= 1, got 0."),
        (["--version", "-1"], "error: --version: `version` must be an integer >= 0"),
        (["--crop-fraction", "2"], "error: --crop-fraction: `crop_fraction` must be in (0, 1]"),
        (["--input-size", "0"], "error: --input-size: `input_size` must be None"),
        (["--mean", "0.5", "--std", "0"], "error: --mean/--std: `preprocessing['std']` must be"),
        (["--export-base-is-a-file"], "error: --export-base: `export_base`"),
    ],
    ids=["top-k", "version", "crop", "size", "std", "base"],
)
def test_cli_errors_name_the_flag(tmp_path, capsys, flags, expected):
    """The function names its argument (`top_k`), the command line the flag the user typed."""
    model_path = tmp_path / "m.keras"
    keras_resnets.CifarResNet(8).save(model_path)
    base = tmp_path / "e"
    if flags == ["--export-base-is-a-file"]:
        base.write_text("mine")
        flags = []
    argv = ["--model", str(model_path), "--export-base", str(base), "--no-warmup", *flags]
    assert (
        export_cli.main(["--preprocessing", "unit", *argv] if "--mean" not in flags else argv) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith(expected), err
    assert "Traceback" not in err and (base.is_file() or not base.exists())


@pytest.mark.parametrize(
    "module",
    [
        *(
            str(p.relative_to(ROOT))
            for p in sorted((ROOT / "keras_resnets" / "export").glob("*.py"))
        ),
        "keras_resnets/transfer.py",
    ],
)
def test_library_modules_import_tensorflow_lazily(module):
    tree = ast.parse((ROOT / module).read_text(encoding="utf-8"))
    for node in tree.body:  # module level only; inside functions is fine
        if isinstance(node, ast.Import):
            assert all(alias.name.split(".")[0] != "tensorflow" for alias in node.names)
        if isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] != "tensorflow"


# -- every export option, drawn: bad values refused before anything is traced ----

NOT_FINITE = st.sampled_from([float("nan"), float("inf"), float("-inf")])
NOT_A_NUMBER = st.one_of(st.none(), st.text(max_size=3), st.booleans())
# Each option: a strategy of values the export must refuse, each with a
# ValueError/TypeError naming the option, and one of values it takes.
BAD_OPTIONS = {
    "preprocessing": st.one_of(
        st.text(max_size=5).filter(lambda s: s not in ("unit", "torch", "tf", "none")),
        st.integers(),
        st.fixed_dictionaries({"scale": st.one_of(NOT_FINITE, st.floats(max_value=0))}),
        st.fixed_dictionaries({"mean": st.one_of(NOT_FINITE, st.tuples(NOT_FINITE))}),
        st.fixed_dictionaries({"std": st.one_of(NOT_FINITE, st.floats(max_value=0))}),
        st.fixed_dictionaries({"std": st.lists(NOT_A_NUMBER, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"mean": st.lists(st.floats(0, 1), min_size=2, max_size=2)}),
        st.dictionaries(st.sampled_from(["offset", "Scale"]), st.floats(), min_size=1),
    ),
    "class_names": st.one_of(
        st.integers(),
        st.floats(),
        st.lists(st.text(max_size=3), max_size=9),  # not one name per class
        st.lists(st.just("cat"), min_size=10, max_size=10),  # duplicates
        st.just(["", *(f"c{i}" for i in range(9))]),  # an empty name
        st.just(["  ", *(f"c{i}" for i in range(9))]),
        st.just([*(f"c{i}" for i in range(9)), "a\nb"]),
    ),
    "export_base": st.one_of(st.none(), st.integers(), st.just(""), st.just(" "), st.just("FILE")),
    "top_k": st.one_of(st.integers(max_value=0), st.floats(), NOT_A_NUMBER),
    "version": st.one_of(st.integers(max_value=-1), st.floats(), st.text(), st.booleans()),
    "input_size": st.one_of(
        st.integers(max_value=0),
        st.tuples(st.integers(max_value=0), st.integers(1, 64)),
        st.just((32, 32, 3)),
        st.text(max_size=3),
        st.just(48),  # the model's input is fixed at 32
    ),
    "crop_fraction": st.one_of(
        st.floats(max_value=0), st.floats(min_value=1.01), NOT_FINITE, st.text(max_size=2)
    ),
    "outputs": st.text(max_size=12).filter(lambda s: s not in ("probabilities", "logits")),
    "overwrite": st.one_of(st.integers(), st.none(), st.text(max_size=2)),
}
GOOD_OPTIONS = {
    "preprocessing": st.one_of(
        st.sampled_from(["unit", "torch", "tf", "none"]),
        st.fixed_dictionaries(
            {
                "scale": st.floats(1e-3, 1.0),
                "mean": st.lists(st.floats(-1, 1), min_size=1, max_size=1),
                "std": st.lists(st.floats(0.01, 2), min_size=3, max_size=3),
            }
        ),
    ),
    "class_names": st.one_of(
        st.none(),
        st.lists(st.text(min_size=1, max_size=4), min_size=10, max_size=10).filter(
            lambda names: (
                len(set(names)) == 10
                and all(n.strip() and "\n" not in n and "\r" not in n for n in names)
            )
        ),
    ),
    # NumPy scalars (what config loaders give) pass wherever the Python type does.
    "top_k": st.one_of(st.integers(1, 20), st.integers(1, 20).map(np.int64)),
    "version": st.one_of(st.none(), st.integers(0, 10**6), st.integers(0, 99).map(np.int32)),
    "input_size": st.one_of(st.none(), st.just(32), st.just((32, 32)), st.just(np.int64(32))),
    "crop_fraction": st.one_of(
        st.none(), st.floats(0.05, 1.0), st.floats(0.0625, 1.0, width=32).map(np.float32)
    ),
    "outputs": st.sampled_from(["probabilities", "logits"]),
    "overwrite": st.one_of(st.booleans(), st.booleans().map(np.bool_)),
}


class _Traced(Exception):
    """Raised in place of tracing: the arguments passed every check."""


@pytest.fixture(scope="module")
def export_checks_only():
    """A small classifier, with the export stopped where tracing would begin."""
    from keras_resnets import export as export_module

    patch = pytest.MonkeyPatch()

    def traced(*args, **kwargs):
        raise _Traced

    patch.setattr(export_module, "serving_archive", traced)
    yield keras_resnets.CifarResNet(8)
    patch.undo()


def _export_with(model, directory: pathlib.Path, options: dict):
    kwargs = {"preprocessing": "unit", "warmup": False, **options}
    base = kwargs.pop("export_base", directory / "m")
    if base == "FILE":
        base = directory / "a_file"
        base.write_text("not a directory")
    return export_saved_model(model, base, **kwargs)


def test_every_export_option_has_a_good_and_a_bad_strategy():
    import inspect

    parameters = set(inspect.signature(export_saved_model).parameters) - {"model", "warmup"}
    assert set(BAD_OPTIONS) == parameters
    assert set(GOOD_OPTIONS) == parameters - {"export_base"}


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_bad_export_options_are_refused_before_anything_is_written(
    export_checks_only, tmp_path_factory, data
):
    option = data.draw(st.sampled_from(sorted(BAD_OPTIONS)), label="option")
    value = data.draw(BAD_OPTIONS[option], label=option)
    directory = tmp_path_factory.mktemp("bad")
    with pytest.raises((ValueError, TypeError)) as caught:
        _export_with(export_checks_only, directory, {option: value})
    assert f"`{option}" in str(caught.value)
    assert not (directory / "m").exists()


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(options=st.fixed_dictionaries({}, optional=GOOD_OPTIONS))
def test_good_export_options_pass_every_check(export_checks_only, tmp_path_factory, options):
    directory = tmp_path_factory.mktemp("good")
    with pytest.raises(_Traced):
        _export_with(export_checks_only, directory, options)
    assert list_versions(directory / "m") == []  # the temporary version was removed


def test_numpy_scalars_pass_every_check(export_checks_only, tmp_path):
    """Each option as a NumPy scalar, as config loaders give it (np.float32 was refused)."""
    options = {
        "top_k": np.int64(3),
        "version": np.int32(4),
        "input_size": (np.int64(32), np.int32(32)),
        "crop_fraction": np.float32(0.875),
        "overwrite": np.bool_(False),
        "warmup": np.bool_(False),
        "preprocessing": {
            "scale": np.float32(1 / 255),
            "mean": [np.float32(0.5)],
            "std": np.float32(0.25),
        },
    }
    with pytest.raises(_Traced):
        _export_with(export_checks_only, tmp_path, options)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--std", "nan", "--mean", "0.5"], "--std"),
        (["--mean", "inf", "--std", "0.5"], "--mean"),
        (["--std", "0.2,nan,0.2", "--mean", "0.5"], "--std"),
    ],
)
def test_cli_refuses_non_finite_normalisation_naming_the_flag(tmp_path, capsys, flags, message):
    argv = ["--model", str(tmp_path / "m.keras"), "--export-base", str(tmp_path / "e"), *flags]
    with pytest.raises(SystemExit) as caught:
        export_cli.main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "finite" in err and "Traceback" not in err
