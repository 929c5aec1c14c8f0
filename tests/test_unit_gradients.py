"""Gradient flow through 200 residual units at initialisation (He et al. 2016, Section 3)."""

from __future__ import annotations

import math
import pathlib
import re

import keras
import pytest

from keras_resnets import blocks
from keras_resnets.unit_gradients import gradient_norm_ratio, unit_stack

NUM_UNITS = 200


@pytest.fixture(scope="module")
def ratios():
    measured = {}
    for unit in blocks.UNITS:
        keras.utils.set_random_seed(0)
        measured[unit] = gradient_norm_ratio(unit_stack(NUM_UNITS, unit=unit), seed=0)
    print("\n".join(f"{unit}: {ratio:.3g}" for unit, ratio in measured.items()))
    return measured


@pytest.mark.slow
def test_full_preactivation_keeps_the_gradient_within_10x(ratios):
    ratio = ratios["full_preactivation"]
    assert 0.1 < ratio < 10.0, ratios


@pytest.mark.slow
def test_full_preactivation_is_the_closest_to_1(ratios):
    def distance(unit):
        ratio = ratios[unit]
        return abs(math.log10(ratio)) if 0 < ratio < math.inf else math.inf

    assert min(blocks.UNITS, key=distance) == "full_preactivation", ratios
    # BN after the addition sits on the shortcut path: the gradient explodes.
    assert distance("bn_after_addition") > 6, ratios


def test_stack_shapes_and_short_stack():
    stack = unit_stack(3, unit="full_preactivation", channels=4, size=4)
    assert stack.output.shape == (None, 4, 4, 4)
    assert [layer.name for layer in stack.layers][-2:] == ["post_bn", "post_relu"]
    assert 0 < gradient_norm_ratio(stack) < math.inf


@pytest.mark.slow
def test_docs_table_is_what_the_test_measures(ratios):
    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "preactivation.md").read_text()
    for unit, ratio in ratios.items():
        row = re.search(rf"\| `unit='{unit}'` \| ([^ |]+) \|", text)
        assert row, f"docs/preactivation.md has no gradient row for {unit}"
        documented = float(row.group(1))
        assert abs(math.log10(documented) - math.log10(ratio)) < 0.05, (unit, documented, ratio)
