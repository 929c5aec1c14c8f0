"""The pieces of `make demo` on a tiny budget."""

from __future__ import annotations

import re

import numpy as np

from training import demo
from training.data import load_digits_32


def test_digits_are_real_and_resized(digits_32):
    (x_train, y_train), (x_test, y_test) = digits_32
    assert x_train.shape[1:] == (32, 32, 3) and x_test.shape[1:] == (32, 32, 3)
    assert len(x_train) + len(x_test) == 1797
    assert set(np.unique(y_train)) == set(range(10))
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0
    np.testing.assert_array_equal(x_train[..., 0], x_train[..., 2])


def test_resize_keeps_constant_images_constant():
    from training.data import _resize_bilinear

    out = _resize_bilinear(np.full((1, 8, 8), 0.5, np.float32), 32)
    np.testing.assert_allclose(out, 0.5)


def test_split_is_reproducible():
    (a, _), _ = load_digits_32(seed=3)
    (b, _), _ = load_digits_32(seed=3)
    np.testing.assert_array_equal(a, b)


def test_demo_end_to_end_tiny(tmp_path, capsys):
    # One epoch may not reach 90% (exit 1), but the demo still trains through
    # the trainer, saves, reloads and scores the model.
    code = demo.main(["--epochs", "1", "--output-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert (tmp_path / "model.keras").is_file() and (tmp_path / "metrics.json").is_file()
    line = [x for x in out.splitlines() if x.startswith("digits_resnet20: test accuracy")]
    assert len(line) == 1, out
    accuracy, reloaded = (float(v) for v in re.findall(r"(\d\.\d{4})", line[0])[:2])
    assert accuracy == reloaded
    assert code == (0 if accuracy >= 0.9 else 1)
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
