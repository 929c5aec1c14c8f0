"""The recipe schema through the command line: every key, good and bad values.

A Hypothesis test walks `training.config.SCHEMA` and, for every leaf key,
draws values from its declared type, range (`RANGES`) and choices, writes
them as the text of `--set key=value` and sends them through the CLI's
parsing path (`parse_set_flags` + `apply_overrides`, no training): good
values are accepted as they are, bad ones (wrong type, out of range, not a
choice) raise a ValueError naming `--set`, the key and the value. Then the
examples of issue 17 (flags, `--set`, recipe files, exit codes), each
stopped before any data loads.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from training import config
from training import train as train_lib

SETTINGS = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


LEAVES = config.leaves()
NUMBERS = {(int,), (int, type(None)), (int, float), (int, float, type(None))}


@pytest.fixture(scope="module")
def base():
    return config.load_recipe("digits_resnet20")


def _text(value) -> str:
    """`value` as the user types it after `--set key=`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float, str)):
        return repr(value) if isinstance(value, float) else str(value)
    return json.dumps(value)  # lists and mappings: JSON is YAML flow style


_WORDS = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8).filter(
    lambda word: isinstance(config.parse_value(word), str)
)


def _bounds(dotted: str):
    allowed = config.RANGES[dotted]
    return allowed.minimum, allowed.maximum, allowed.exclusive_minimum, allowed.exclusive_maximum


def _good(dotted: str, spec: tuple):
    types, options = spec[0], []
    if len(spec) > 2:
        return st.sampled_from(spec[2])
    if type(None) in types:
        options.append(st.none())
    if bool in types:
        options.append(st.booleans())
    if int in types:
        low, high, above, below = _bounds(dotted)
        low = None if low is None else math.floor(low) + 1 if above else math.ceil(low)
        high = None if high is None else math.ceil(high) - 1 if below else math.floor(high)
        options.append(st.integers(low, high))
    if float in types:
        low, high, above, below = _bounds(dotted)
        options.append(
            st.floats(low, high, exclude_min=above, exclude_max=below, allow_nan=False).filter(
                math.isfinite
            )
        )
    if str in types:
        options.append(_WORDS)
    if list in types:
        options.append(st.lists(st.integers(0, 10**6), max_size=3, unique=True).map(sorted))
    if dict in types:
        options.append(st.dictionaries(_WORDS, st.integers(0, 8), max_size=2))
    return st.one_of(options)


def _bad(dotted: str, spec: tuple):
    types, options = spec[0], []
    if str not in types:
        options.append(_WORDS)  # a word where a number, switch, list or mapping goes
    else:
        options.append(st.integers())  # a number where a name goes
    if bool in types:
        options.append(st.sampled_from(["yes", "no", "on", "off"]))  # YAML 1.2: strings
    if len(spec) > 2:
        options.append(_WORDS.filter(lambda word: word not in spec[2]))
    if int in types and float not in types:
        options.append(
            st.floats(allow_nan=False).filter(lambda x: not math.isfinite(x) or x != int(x))
        )
    if list in types:  # boundaries: not increasing, or below the range
        options.append(
            st.lists(st.integers(0, 100), min_size=2).filter(lambda v: v != sorted(set(v)))
        )
        options.append(st.lists(st.integers(max_value=-1), min_size=1, max_size=3))
    elif dotted in config.RANGES:
        low, high, above, below = _bounds(dotted)
        if low is not None:
            options.append(st.integers(max_value=math.ceil(low) - (0 if above else 1)))
        if high is not None:
            options.append(st.integers(min_value=math.floor(high) + (0 if below else 1)))
        if float in types:
            options.append(st.sampled_from([math.nan, math.inf, -math.inf]))
    return st.one_of(options)


@pytest.mark.parametrize("dotted, spec", LEAVES, ids=[dotted for dotted, _ in LEAVES])
@SETTINGS
@given(data=st.data())
def test_every_recipe_key_through_set(base, dotted, spec, data):
    section, _, name = dotted.rpartition(".")
    good = data.draw(_good(dotted, spec), label="good")
    overrides = config.parse_set_flags([f"{dotted}={_text(good)}"])
    cfg = config.apply_overrides(base, overrides, "--set")
    got = (cfg[section] if section else cfg)[name]
    assert got == good and type(got) is type(good)
    bad = data.draw(_bad(dotted, spec), label="bad")
    overrides = config.parse_set_flags([f"{dotted}={_text(bad)}"])
    with pytest.raises(ValueError) as error:
        config.apply_overrides(base, overrides, "--set")
    message = str(error.value)
    assert message.startswith("--set: ") and f"`{dotted}`" in message, message
    assert f"got {overrides[dotted]!r}" in message or f" {overrides[dotted]!r}." in message


def test_every_numeric_key_has_a_range():
    numeric = {dotted for dotted, spec in LEAVES if tuple(spec[0]) in NUMBERS}
    numeric.add("schedule.boundaries")  # a list of numbers
    assert numeric and numeric == set(config.RANGES)
    assert str(config.RANGES["data.validation_fraction"]) == "in [0, 1)"
    assert str(config.RANGES["optimizer.learning_rate"]) == "> 0"


@pytest.fixture
def no_data(monkeypatch):
    """Loading data fails the test: every error below comes before it."""
    from training import data as data_lib

    def load_source(*args, **kwargs):
        raise AssertionError("data was loaded")

    monkeypatch.setattr(data_lib, "load_source", load_source)


FLAG_ERRORS = [
    (["--seed", "-1"], "--seed", "`train.seed` must be an integer in [0, 4294967295], got -1"),
    (["--cpu-devices", "-1"], "--cpu-devices", "`runtime.cpu_devices` must be an integer >= 1"),
    (["--save-every-steps", "0"], "--save-every-steps", "`checkpoint.every_steps` must be"),
    (["--epochs", "0"], "--epochs", "`train.epochs` must be an integer >= 1"),
    (["--batch-size", "0"], "--batch-size", "`train.batch_size` must be an integer >= 1, got 0"),
    (["--new-classes", "two"], "--new-classes", "`transfer.new_classes` must be int or null"),
]


@pytest.mark.parametrize("argv, flag, problem", FLAG_ERRORS, ids=[f[1] for f in FLAG_ERRORS])
def test_bad_flag_exits_2_naming_the_flag(argv, flag, problem, tmp_path, capsys, no_data):
    with pytest.raises(SystemExit) as stop:
        train_lib.main(["--recipe", "digits_resnet20", "--output-dir", str(tmp_path), *argv])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {flag}: {problem}" in err, err
    assert "Traceback" not in err
    # The same value given to run() by keyword is refused naming the flag too.
    name = flag[2:].replace("-", "_")
    value = config.parse_value(argv[1])
    with pytest.raises(ValueError, match=f"^{flag}: "):
        train_lib.run("digits_resnet20", output_dir=str(tmp_path), **{name: value})


SET_ERRORS = [
    (
        "train.steps_per_epoch=-1",
        "`train.steps_per_epoch` must be an integer >= 1 (or null), got -1",
    ),
    ("train.steps_per_epoch=0", "`train.steps_per_epoch` must be an integer >= 1 (or null), got 0"),
    ("optimizer.learning_rate=0", "`optimizer.learning_rate` must be a number > 0, got 0"),
    ("optimizer.learning_rate=-1e-3", "`optimizer.learning_rate` must be a number > 0, got -0.001"),
    (
        "optimizer.reference_batch_size=-1",
        "`optimizer.reference_batch_size` must be an integer >= 1",
    ),
    ("schedule.factor=-1", "`schedule.factor` must be a number > 0, got -1"),
    ("optimizer.clipnorm=0", "`optimizer.clipnorm` must be a number > 0 (or null), got 0"),
    ("optimizer.weight_decay=-1e-4", "`optimizer.weight_decay` must be a number >= 0"),
    ("schedule.warmup_steps=-1", "`schedule.warmup_steps` must be an integer >= 0, got -1"),
    ("train.per_replica_batch_size=0", "`train.per_replica_batch_size` must be an integer >= 1"),
    ("data.validation_fraction=-0.1", "`data.validation_fraction` must be a number in [0, 1)"),
    ("data.image_size=0", "`data.image_size` must be an integer >= 1, got 0"),
    ("optimizer.learning_rate=.nan", "`optimizer.learning_rate` must be a number > 0, got nan"),
    ("data.flip=yes", "`data.flip` must be bool, got str 'yes'"),
]


@pytest.mark.parametrize("item, problem", SET_ERRORS, ids=[s[0] for s in SET_ERRORS])
def test_bad_set_value_exits_2_naming_the_key(item, problem, tmp_path, capsys, no_data):
    argv = ["--recipe", "digits_resnet20", "--output-dir", str(tmp_path), "--set", item]
    assert train_lib.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --set: {problem}"), err
    assert "Traceback" not in err and not (tmp_path / "config.yaml").exists()


MODEL_ERRORS = [
    (["--model", "ResNet21"], "Unknown model name 'ResNet21'"),
    (["--set", "model.options={drop_path_rate: 2}"], "`drop_path_rate` must be in [0.0, 1.0)"),
    (["--set", "model.options={foo: 2}"], "unexpected keyword argument 'foo'"),
]


@pytest.mark.parametrize("argv, problem", MODEL_ERRORS, ids=["name", "value", "option"])
def test_bad_model_exits_2_before_data(argv, problem, tmp_path, capsys, no_data):
    """model.name and model.options are checked with the recipe: no data, no output directory."""
    out = tmp_path / "run"
    assert train_lib.main(["--recipe", "digits_resnet20", "--output-dir", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and problem in err, err
    assert not out.exists()


def test_run_takes_numpy_scalars_and_paths(tmp_path, no_data):
    """What Python callers pass: NumPy scalars (config loaders), pathlib paths."""
    import pathlib

    import numpy as np

    from training.options import resolve

    cfg = resolve(
        "digits_resnet20",
        seed=np.int64(1),
        epochs=np.int32(2),
        batch_size=np.int64(16),
        data_dir=pathlib.Path("my_images"),
        overrides={
            "optimizer.learning_rate": np.float32(0.5),
            "data.flip": np.bool_(True),
            "schedule.boundaries": [np.float64(0.5)],
        },
    )
    values = (cfg["train"]["seed"], cfg["train"]["epochs"], cfg["train"]["batch_size"])
    assert values == (1, 2, 16) and all(type(v) is int for v in values)
    assert type(cfg["optimizer"]["learning_rate"]) is float and cfg["data"]["flip"] is True
    assert cfg["data"]["data_dir"] == "my_images" and cfg["schedule"]["boundaries"] == [0.5]
    with pytest.raises(ValueError, match="^--seed: "):  # a float is still not a seed
        resolve("digits_resnet20", seed=np.float64(1.5))
    # run() takes a pathlib output directory (refused before): it gets as far as the data.
    with pytest.raises(AssertionError, match="data was loaded"):
        train_lib.run("digits_resnet20", output_dir=tmp_path / "run", seed=np.int64(3))


def test_output_dir_on_a_file_exits_2_naming_the_flag(tmp_path, capsys, no_data):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    for path, why in ((target, "is a file"), (target / "sub", "is under the file")):
        assert train_lib.main(["--recipe", "digits_resnet20", "--output-dir", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: `output_dir` (--output-dir) ") and why in err, err
    assert target.read_text() == "mine"


def test_set_reads_yaml_1_2_scalars():
    sets = config.parse_set_flags(
        ["optimizer.learning_rate=1e-3", "data.augmentation=none", "data.normalization=none"]
        + ["data.validation=none", "train.steps_per_epoch=null", "optimizer.clipnorm=~"]
        + ["data.data_dir=", "transfer.from=Null", "model.name=NULL", "data.flip=false"]
    )
    assert sets == {
        "optimizer.learning_rate": 0.001,
        "data.augmentation": "none",
        "data.normalization": "none",
        "data.validation": "none",
        "train.steps_per_epoch": None,
        "optimizer.clipnorm": None,
        "data.data_dir": None,
        "transfer.from": None,
        "model.name": None,
        "data.flip": False,
    }
    cfg = train_lib.resolve(
        "digits_resnet20", overrides={k: v for k, v in sets.items() if k != "model.name"}
    )
    assert cfg["optimizer"]["learning_rate"] == 0.001 and cfg["data"]["augmentation"] == "none"
    assert config.parse_value("0x10") == 16 and config.parse_value("010") == 10
    assert config.parse_value("2024-01-01") == "2024-01-01" and config.parse_value("on") == "on"
    with pytest.raises(ValueError, match=r"--set data.flip: not a YAML value '\[1'"):
        config.parse_set_flags(["data.flip=[1"])


def test_recipe_file_errors_name_file_key_value_and_range(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("train:\n  epochs: 3\n  steps_per_epoch: 0\n")
    with pytest.raises(ValueError) as error:
        config.load_recipe(str(path))
    assert str(error.value) == (
        f"{path}: `train.steps_per_epoch` must be an integer >= 1 (or null), got 0."
    )
    path.write_text("optimizer:\n  learning_rate: 1e-3\n  momentum: 1.5\n")
    with pytest.raises(
        ValueError,
        match=r"mine\.yaml: `optimizer\.momentum` must be a number in \[0, 1\], got 1\.5",
    ):
        config.load_recipe(str(path))
    path.write_text("optimizer:\n  learning_rate: 1e-3\n")  # YAML 1.2: a float
    assert config.load_recipe(str(path))["optimizer"]["learning_rate"] == 0.001


def test_main_returns_the_exit_code_of_each_outcome(tmp_path, monkeypatch, capsys):
    from keras_resnets.utils import EXIT_CODES, DataError, OutputDirectoryBusy

    outcomes = [
        ({"status": "completed"}, EXIT_CODES["completed"]),
        ({"status": "nan_loss"}, EXIT_CODES["nan_loss"]),
        (DataError("no training images"), EXIT_CODES["data"]),
        (PermissionError(13, "Permission denied", str(tmp_path)), EXIT_CODES["io"]),
        (OutputDirectoryBusy("held by pid 1"), EXIT_CODES["busy"]),
        (ValueError("bad value"), EXIT_CODES["usage"]),
    ]
    for outcome, code in outcomes:

        def run(*args, outcome=outcome, **kwargs):
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome

        monkeypatch.setattr(train_lib, "run", run)
        assert (
            train_lib.main(["--recipe", "digits_resnet20", "--output-dir", str(tmp_path)]) == code
        )
        err = capsys.readouterr().err
        assert ("Traceback" not in err) and (
            isinstance(outcome, dict) or f"error: {outcome}" in err
        )
    assert (3, 4, 5, 6) == tuple(EXIT_CODES[k] for k in ("nan_loss", "data", "io", "busy"))


def test_exit_codes_are_documented():
    import os

    from keras_resnets.utils import EXIT_CODES

    path = os.path.join(os.path.dirname(config.RECIPE_DIR), "..", "docs", "training.md")
    with open(path, encoding="utf-8") as f:
        docs = f.read()
    section = docs.split("### Exit codes", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [int(row.split("|")[1]) for row in rows] == sorted(EXIT_CODES.values())
    assert all(len([cell for cell in row.split("|") if cell.strip()]) == 3 for row in rows)
    assert "docs/training.md" in train_lib._parser().epilog
