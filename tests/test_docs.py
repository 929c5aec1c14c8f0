"""The committed docs say what the code does."""

from __future__ import annotations

import pathlib

import pytest

import keras_resnets
from keras_resnets.zoo import render_into

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", ["README.md", "docs/models.md"])
def test_model_table_matches_registry(path):
    text = (ROOT / path).read_text(encoding="utf-8")
    assert render_into(text, keras_resnets.model_table()) == text, (
        f"{path} is out of date: run python -m keras_resnets.zoo --write {path}"
    )


def test_readme_shows_the_two_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text


def test_every_public_builder_has_a_docstring():
    for name in keras_resnets.list_models():
        doc = getattr(keras_resnets, name).__doc__ or ""
        assert "Args:" in doc and "Returns:" in doc, name
