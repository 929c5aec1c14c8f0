"""Data that cannot train is refused before anything is built (issue 17, kind 3).

Each case is an example of the issue: a `DataError` (exit status 4) that
names the split, its count and the classes found.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_resnets.utils import EXIT_CODES, DataError
from training import data as data_lib


def _folder(root, layout: dict[str, int], bad: dict[str, int] | None = None):
    """`root/train/<class>/<i>.png`: `layout[class]` images, `bad[class]` of them corrupt."""
    rng = np.random.default_rng(0)
    for cls, count in layout.items():
        d = root / "train" / cls
        d.mkdir(parents=True)
        for i in range(count):
            if i < (bad or {}).get(cls, 0):
                (d / f"{i}.png").write_bytes(b"not a png")
            else:
                pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
                (d / f"{i}.png").write_bytes(tf.io.encode_png(pixels).numpy())
    return root


def _check(data: dict, batch_size: int | None = None):
    data_lib.check_source(data_lib.load_source(data), batch_size)


DIGITS = {"dataset": "digits", "validation": "split", "validation_fraction": 0.1}


@pytest.mark.parametrize(
    "data, batch, message",
    [
        # train_subset=0: zero training images ("Integer division by zero" before).
        (
            {**DIGITS, "train_subset": 0},
            None,
            r"The train split has no examples \(found: train = digits train: 1293 \(144 of "
            r"1437 held out\); first 0 used \(train_subset\);.* 10 classes: 0, 1, 2",
        ),
        # test_subset=0: nothing to evaluate (failed only after training before).
        (
            {**DIGITS, "validation": "test", "test_subset": 0},
            None,
            r"The validation split has no examples .*test = digits test: 360; first 0 used "
            r"\(test_subset\)",
        ),
        (
            {**DIGITS, "validation": "none", "test_subset": 0},
            None,
            r"The test split has no examples .*To fix it: raise or unset data.test_subset",
        ),
        # --batch-size 100000 on 1,293 training images (scaled the rate x3125).
        (
            DIGITS,
            100000,
            r"global batch size 100000 is larger than the 1293 training examples "
            r"\(digits train: 1293 \(144 of 1437 held out\)\).*at most 1293",
        ),
    ],
)
def test_digits_that_cannot_train(data, batch, message):
    with pytest.raises(DataError, match=message):
        _check(data, batch)


@pytest.mark.parametrize(
    "layout, bad, extra, message",
    [
        # A one-class folder trained a one-class model.
        ({"cat": 3}, None, {}, r"needs at least 2 classes; folder has 1 .*1 classes: cat\)"),
        # An empty class folder was silently dropped.
        (
            {"cat": 3, "dog": 3, "emu": 0},
            None,
            {},
            r"Class folder '.*train/emu' has no images; images .* per class found in "
            r"'.*train': cat: 3, dog: 3, emu: 0",
        ),
        # Every image of a class (here: of the data set) skipped as unreadable.
        (
            {"cat": 2, "dog": 2},
            {"cat": 2, "dog": 2},
            {"skip_bad_images": True},
            r"Class folder '.*train/cat' has all 2 of its images unreadable.*cat: 0, dog: 0",
        ),
        # A two-image folder: the hold-out takes one, the other class is all that trains.
        (
            {"cat": 1, "dog": 1},
            None,
            {},
            r"The train split holds examples of 1 class only \((cat|dog)\).*train = train/: 1 "
            r"\(1 of 2 held out\).*2 classes: cat, dog",
        ),
        # train_subset=0 on a folder (per-channel statistics of no files failed before).
        (
            {"cat": 2, "dog": 2},
            None,
            {"train_subset": 0},
            r"The train split has no examples \(found: train = train/: 3 \(1 of 4 held out\); "
            r"first 0 used \(train_subset\)",
        ),
        # validation_fraction that leaves nothing to train.
        ({"cat": 2, "dog": 2}, None, {"validation_fraction": 0.9}, r"leaves no training"),
    ],
)
def test_image_folders_that_cannot_train(tmp_path, layout, bad, extra, message):
    root = _folder(tmp_path / "images", layout, bad)
    with pytest.raises(DataError, match=message):
        _check({"dataset": "folder", "data_dir": str(root), "validation": "split", **extra})


def test_good_data_passes_and_missing_classes_are_said(tmp_path, capsys):
    root = _folder(tmp_path / "images", {"cat": 4, "dog": 4}, {"dog": 1})
    source = data_lib.load_source(
        {"dataset": "folder", "data_dir": str(root), "skip_bad_images": True, "validation": "split"}
    )
    data_lib.check_source(source, source.train.size)  # a batch of the whole set is fine
    with pytest.raises(DataError, match=f"batch size {source.train.size + 1} is larger"):
        data_lib.check_source(source, source.train.size + 1)
    source = data_lib.load_source({**DIGITS, "train_subset": 4})
    data_lib.check_source(source, 4)
    out = capsys.readouterr().out
    assert "note: the training split has no examples of " in out and "of the 10 classes" in out


@pytest.fixture(scope="module")
def refused_runs(tmp_path_factory):
    """`run()` and the degradation command on data that cannot train (nothing is built)."""
    from training import degradation, train
    from training.train import run

    out = tmp_path_factory.mktemp("refused")
    with pytest.raises(DataError, match="batch size 100000 is larger than the 1293") as big:
        run(
            "digits_resnet20",
            batch_size=100000,
            output_dir=str(out / "big"),
            overrides={"data.validation": "split"},
        )
    statuses = [
        degradation.main(
            ["--models", "ResNet20", "--set", "data.train_subset=0", "--output-dir", str(out)]
        ),
        train.main(
            ["--recipe", "digits_resnet20", "--set", "data.test_subset=0"]
            + ["--output-dir", str(out / "no_test")]
        ),
    ]
    return out, big.value, statuses


def test_run_refuses_before_building_and_the_commands_exit_4(refused_runs, capsys):
    out, error, statuses = refused_runs
    assert "--batch-size" in str(error)
    assert not (out / "big" / "model.keras").exists() and not (out / "big" / "backup").exists()
    assert not (out / "no_test" / "model.keras").exists()
    assert statuses == [EXIT_CODES["data"]] * 2 and EXIT_CODES["data"] == 4


def test_tfds_hold_out_that_rounds_to_nothing():
    import tensorflow_datasets as tfds

    data = {"dataset": "imagenette", "validation": "split", "normalization": "imagenet"}
    with tfds.testing.mock_data(num_examples=24):
        with pytest.raises(
            DataError,
            match=r"The validation split has no examples .*"
            r"hold-out of imagenette train: 0 of 24 \(validation_fraction=0.004",
        ):
            _check({**data, "validation_fraction": 0.004})
        _check({**data, "validation_fraction": 0.05}, 23)  # 1 of 24 held out


def test_docs_example_is_the_error():
    import pathlib

    page = (pathlib.Path(__file__).parents[1] / "docs" / "training.md").read_text()
    with pytest.raises(DataError) as error:
        _check({"dataset": "digits", "train_subset": 0})
    assert f"error: {error.value}\n" in page
