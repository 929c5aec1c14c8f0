"""keras-tuner search on digits with a tiny budget."""

from __future__ import annotations

import pytest
from training_helpers import TINY

from training import tune


def test_search_space_follows_the_builder():
    assert tune.search_space("ResNet20")["depth"] == [8, 14, 20, 32]
    assert "depth" in tune.search_space("Plain56")
    assert "depth" not in tune.search_space("ResNet50")  # ImageNet layout: no 6n+2 depth
    import keras_resnets

    if hasattr(keras_resnets, "CifarResNeXt"):
        assert tune.tunable_builder("ResNeXt29_8x64d") == (
            "CifarResNeXt",
            {"cardinality": 8, "base_width": 64},
        )
        assert "cardinality" in tune.search_space("ResNeXt29_8x64d")
    if hasattr(keras_resnets, "CifarDenseNet"):
        assert tune.tunable_builder("DenseNetBC100") == ("CifarDenseNet", {"depth": 100})
        assert "growth_rate" in tune.search_space("DenseNetBC100")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["hyperband", "bayesian"])
def test_tiny_search_writes_results_table(tmp_path, kind):
    overrides = {**TINY, "data.train_subset": 128}
    rows = tune.tune(
        "digits_resnet20",
        output_dir=str(tmp_path),
        tuner=kind,
        max_trials=2,
        epochs=2,
        overrides=overrides,
        space={"depth": [8]},
    )
    assert 1 <= len(rows) <= 2
    scores = [r["score"] for r in rows]
    assert all(0.0 <= s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True)
    assert all(r["depth"] == 8 and r["weight_decay"] in tune.WEIGHT_DECAYS for r in rows)
    assert all(0.0001 <= r["learning_rate"] <= 0.003 for r in rows)
    csv = (tmp_path / "results.csv").read_text().splitlines()
    assert csv[0].startswith("trial,score,epochs") and len(csv) == len(rows) + 1
    assert (tmp_path / "results.md").read_text().count("\n|") == len(rows) + 2  # header, rule, rows


def test_bad_arguments():
    with pytest.raises(ValueError, match="`tuner` must be one of hyperband, bayesian"):
        tune.tune("digits_resnet20", output_dir="x", tuner="random")
    with pytest.raises(ValueError, match="`max_trials` must be a positive integer"):
        tune.tune("digits_resnet20", output_dir="x", max_trials=0)


def test_none_among_strings_is_searched_and_given_back_as_none():
    """keras-tuner's Choice takes one type; `attention` (None, "se", "eca") still searches."""
    import keras_tuner as kt

    from training.tune import NONE_CHOICE, _choice, search_space

    assert search_space("ResNet20")["attention"] == [None, "se", "eca"]
    hp = kt.HyperParameters()
    assert _choice(hp, "attention", [None, "se", "eca"]) is None  # the default: the first
    assert hp.get("attention") == NONE_CHOICE
    hp.values["attention"] = "se"
    assert _choice(hp, "attention", [None, "se", "eca"]) == "se"
    assert _choice(hp, "depth", [8, 14]) == 8
