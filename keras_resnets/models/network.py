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
- `final_norm`: the name of the normalization layer that follows the last
  stage (`post_bn` in pre-activation ResNets and Wide ResNets, `final_bn` in
  DenseNets), or None where the last stage's output is already normalised
  and activated (post-activation ResNets, ResNeXt, plain and Highway
  networks). The names differ by family because converted weights and saved
  models depend on them (docs/architecture.md, "Glossary"); this attribute is
  the one place code reads it from. Unless given, it is found in the graph:
  the `BatchNormalization` on the single-input chain from the last stage's
  layer to the output.
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

__all__ = ["FEATURE_INFO_KEYS", "Network", "find_network", "recorded_network"]

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


def _final_norm(model: keras.Model, feature_info: list[dict]) -> str | None:
    """The BatchNormalization between the last recorded stage and the output, if any."""
    if not feature_info or len(model.outputs) != 1:
        return None
    try:
        last = model.get_layer(feature_info[-1]["layer"])
    except ValueError:
        return None
    found = None
    tensor = model.outputs[0]
    while True:
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            return None
        operation = history.operation
        if operation is last:
            return found
        if isinstance(operation, keras.layers.BatchNormalization):
            found = operation.name
        inputs = keras.tree.flatten(operation._inbound_nodes[history.node_index].input_tensors)
        if len(inputs) != 1:
            return None
        tensor = inputs[0]


_DERIVE = object()


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
        final_norm: the name of the normalization layer after the last
            stage, or None; by default found in the graph (see the module
            docstring).

    Attributes:
        feature_info: the list above (a copy is returned by `get_config`).
        preprocessing: the dict above, or None.
        final_norm: the layer name above, or None.

    Raises:
        TypeError, ValueError: `feature_info`, `preprocessing` or
            `final_norm` of the wrong form (the message names it).
    """

    def __init__(self, *args, feature_info=None, preprocessing=None, final_norm=_DERIVE, **kwargs):
        super().__init__(*args, **kwargs)
        self.feature_info = _check_feature_info(feature_info)
        self.preprocessing = _check_preprocessing(preprocessing)
        if final_norm is _DERIVE:  # also a model saved before `final_norm` was recorded
            final_norm = _final_norm(self, self.feature_info)
        elif final_norm is not None and not isinstance(final_norm, str):
            raise TypeError(f"`final_norm` must be a layer name or None, got {final_norm!r}.")
        self.final_norm = final_norm

    def get_config(self):
        config = super().get_config()
        config["feature_info"] = [dict(entry) for entry in self.feature_info]
        config["preprocessing"] = copy.deepcopy(self.preprocessing)
        config["final_norm"] = self.final_norm
        return config


def find_network(model: keras.Model, with_feature_info: bool = False) -> Network | None:
    """`model` itself if it is a `Network`, else the first `Network` nested in it, else None.

    With `with_feature_info=True`, only a `Network` that recorded its stages
    counts (a trainer's `Network` wrapping a transferred backbone does not).
    """
    if isinstance(model, Network) and (model.feature_info or not with_feature_info):
        return model
    if isinstance(model, keras.Model):
        for layer in model.layers:
            if isinstance(layer, keras.Model):
                found = find_network(layer, with_feature_info)
                if found is not None:
                    return found
    return None


def recorded_network(model: keras.Model) -> Network:
    """The `Network` (`model`, or one nested in it) that recorded its stages.

    Args:
        model: a model built by keras_resnets, or one wrapping it as a layer.

    Returns:
        The `Network` whose `feature_info` the transfer and analysis tools read.

    Raises:
        TypeError: `model` is not a `keras.Model`.
        ValueError: neither `model` nor a model nested in it carries
            `feature_info`; the message names `model`.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model, got {type(model).__name__}.")
    network = find_network(model, with_feature_info=True)
    if network is None:
        raise ValueError(
            f"Model {model.name!r} carries no `feature_info` (neither it nor a model nested "
            "in it is a keras_resnets `Network` that recorded its stages), so its stages are "
            "unknown. Build it with a keras_resnets builder (and load its weights into that) "
            "or wrap such a model."
        )
    return network
