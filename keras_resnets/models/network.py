"""`Network`: the functional `keras.Model` every builder returns.

It is a plain functional model (same graph, layers, weights, `summary()`,
`.keras` saving and SavedModel export) that also carries two facts the
builder knows and the helpers need, and keeps them through `get_config`, so
they survive a `.keras` round trip:

- `feature_info`: the stem and the stages recorded while the body was built
  (as timm's `feature_info` and keras-hub's `pyramid_outputs`), one dict
  each, the stem first, with `name` (`"stem"`, `"stage2"`), `layer` (the
  name of the layer whose output ends it), `channels` and `reduction` (its
  output's stride relative to the input). The transfer helpers, the analysis tools and the export read
  it instead of guessing from layer names.
- `preprocessing`: None, or the normalisation the model expects,
  `{"mean": [...], "std": [...], "scale": float}` (pixels in [0, 255] are
  multiplied by `scale`, then `(x - mean) / std`), set by the trainer and by
  pretrained weights so that the export serves what the model was trained on.

Loading a saved `Network` needs `import keras_resnets` in the process (as
every custom Keras class does).
"""

from __future__ import annotations

import copy

import keras

__all__ = ["FEATURE_INFO_KEYS", "Network", "find_network"]

FEATURE_INFO_KEYS = ("name", "layer", "channels", "reduction")


def _check_feature_info(feature_info) -> list[dict]:
    if feature_info is None:
        return []
    if not isinstance(feature_info, (list, tuple)):
        raise TypeError(f"`feature_info` must be a list of dicts, got {feature_info!r}.")
    entries = []
    for entry in feature_info:
        if not isinstance(entry, dict) or set(entry) != set(FEATURE_INFO_KEYS):
            raise ValueError(
                f"Each `feature_info` entry must be a dict with keys {FEATURE_INFO_KEYS}, "
                f"got {entry!r}."
            )
        entries.append({key: entry[key] for key in FEATURE_INFO_KEYS})
    return entries


def _check_preprocessing(preprocessing) -> dict | None:
    if preprocessing is None:
        return None
    if not isinstance(preprocessing, dict) or not {"mean", "std", "scale"} <= set(preprocessing):
        raise ValueError(
            "`preprocessing` must be None or a dict with keys 'mean', 'std' and 'scale', "
            f"got {preprocessing!r}."
        )
    return copy.deepcopy(dict(preprocessing))


@keras.saving.register_keras_serializable(package="keras_resnets")
class Network(keras.Model):
    """A functional `keras.Model` with `feature_info` and `preprocessing`.

    Built like any functional model: `Network(inputs, outputs, name=...,
    feature_info=[...], preprocessing=None)`. Builders return one; users
    rarely make one by hand.

    Args:
        *args, **kwargs: the functional `keras.Model` arguments (`inputs`,
            `outputs`, `name`, ...).
        feature_info: list of stage dicts (`name`, `layer`, `channels`,
            `reduction`), in order from the input; default empty.
        preprocessing: None, or `{"mean": [...], "std": [...], "scale": s}`:
            the input normalisation the weights expect (see the module
            docstring).

    Attributes:
        feature_info: the list above (a copy is returned by `get_config`).
        preprocessing: the dict above, or None.
    """

    def __init__(self, *args, feature_info=None, preprocessing=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.feature_info = _check_feature_info(feature_info)
        self.preprocessing = _check_preprocessing(preprocessing)

    def get_config(self):
        config = super().get_config()
        config["feature_info"] = [dict(entry) for entry in self.feature_info]
        config["preprocessing"] = copy.deepcopy(self.preprocessing)
        return config


def find_network(model: keras.Model) -> Network | None:
    """`model` itself if it is a `Network`, else the first `Network` nested in it, else None."""
    if isinstance(model, Network):
        return model
    if isinstance(model, keras.Model):
        for layer in model.layers:
            found = find_network(layer) if isinstance(layer, keras.Model) else None
            if found is not None:
                return found
    return None
