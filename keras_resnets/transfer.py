"""Transfer learning: stage features, freezing a backbone, a new head, dtype policies.

Every helper reads the stages the builder recorded while it built the model
(`Network.feature_info`: the stem and each stage, with the layer that ends it,
its channels and its reduction), from the model itself or from a `Network`
nested in a model that wraps it; none of them guesses from layer names. The
stages are `stage2`-`stage5` on ImageNet models (the C2-C5 of detection
papers) and `stage1`-`stage3` on CIFAR models; `stem` ends the stem.

Dtype policies follow Keras's mixed-precision guide and keras.applications:
the backbone computes in the policy the model was built (or rebuilt) under,
and the classifier (`models.builder.classifier`) computes in float32, so that
probabilities are float32. `with_dtype_policy` rebuilds a model (a loaded
`.keras` file, say) under another policy with the same weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_resnets.models.builder import classifier
from keras_resnets.models.network import Network, recorded_network
from keras_resnets.utils import check_bool, check_fraction, check_int, iter_layers, sublayers

__all__ = ["feature_extractor", "freeze", "replace_head", "stage_outputs", "with_dtype_policy"]

STEM = "stem"


def _inputs(model: keras.Model):
    """The model's input tensor (or list of them), as it was built."""
    return model.inputs[0] if len(model.inputs) == 1 else model.inputs


def _stage_entries(network: Network) -> list[dict]:
    return [entry for entry in network.feature_info if entry["name"] != STEM]


def _entry(network: Network, name: str) -> dict:
    for entry in network.feature_info:
        if entry["name"] == name:
            return entry
    raise KeyError(name)  # pragma: no cover - callers check the name first


def _output(layer: keras.layers.Layer):
    return keras.tree.flatten(layer.output)[0]


def _ancestors(tensors) -> set[int]:
    """The ids of the layers that compute `tensors`, back to the inputs (inclusive)."""
    seen: set[int] = set()
    stack = list(keras.tree.flatten(tensors))
    visited_tensors: set[int] = set()
    while stack:
        tensor = stack.pop()
        if id(tensor) in visited_tensors:
            continue
        visited_tensors.add(id(tensor))
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            continue
        operation = history.operation
        seen.add(id(operation))
        node = operation._inbound_nodes[history.node_index]
        stack.extend(keras.tree.flatten(node.input_tensors))
    return seen


def stage_outputs(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """Map each stage name to the layer that ends it, as the builder recorded it.

    Args:
        model: a model built by keras_resnets (a `Network`), or one that wraps
            such a model as a layer.

    Returns:
        An ordered dict `{"stage2": layer, ...}`, from the input to the output
        (the stem is not a stage; `feature_extractor(model, "stem")` gives it).

    Raises:
        TypeError: `model` is not a keras.Model.
        ValueError: no `Network` with `feature_info` is found in `model`.

    Example:
        >>> list(keras_resnets.stage_outputs(keras_resnets.ResNet20()))
        ['stage1', 'stage2', 'stage3']
    """
    network = recorded_network(model)
    return {entry["name"]: network.get_layer(entry["layer"]) for entry in _stage_entries(network)}


def feature_extractor(
    model: keras.Model,
    stages: Sequence[str] | str | None = None,
    name: str | None = None,
) -> Network:
    """A multi-output model returning the feature maps of the named stages.

    For detection and segmentation heads (FPN, U-Net...): on an ImageNet
    model, `stages=("stage2", "stage3", "stage4", "stage5")` gives C2-C5 at
    output strides 4, 8, 16 and 32. Build the model with `include_top=False`
    and `input_shape=(None, None, 3)` to accept any image size.

    Args:
        model: a model built by keras_resnets, or a model wrapping one as a
            layer (its backbone's input is then the extractor's input).
        stages: stage names such as `"stage3"` (or `"stem"`), or any layer
            names of the backbone; None (default) takes every stage
            (`stage2`-`stage5` on ImageNet models, `stage1`-`stage3` on
            CIFAR models).
        name: the new model's name (default `"<model name>_features"`).

    Returns:
        A `Network` sharing the weights (and layers, with their dtype
        policies) of `model`, whose output is a dict `{stage name: feature
        map}`; its `feature_info` holds the stages it contains and its
        `preprocessing` is the backbone's.

    Raises:
        ValueError: a name is neither a stage nor a layer; the message lists
            the available stages.

    Example:
        >>> backbone = keras_resnets.ResNet50(include_top=False, input_shape=(None, None, 3))
        >>> features = keras_resnets.feature_extractor(backbone, ("stage3", "stage5"))
        >>> {k: v.shape for k, v in features.output.items()}
        {'stage3': (None, None, None, 512), 'stage5': (None, None, None, 2048)}
    """
    network = recorded_network(model)
    available = [entry["name"] for entry in _stage_entries(network)]
    recorded = {entry["name"]: entry["layer"] for entry in network.feature_info}
    if stages is None:
        stages = tuple(available)
    elif isinstance(stages, str):
        stages = (stages,)
    if not isinstance(stages, Sequence) or not stages:
        raise ValueError(
            f"`stages` must be None or a non-empty list of stage names, got {stages!r}; "
            f"available stages: {', '.join(available)}."
        )
    layer_names = {layer.name for layer in network.layers}
    outputs = {}
    for stage in stages:
        if not isinstance(stage, str):
            raise ValueError(
                f"`stages` must hold stage names (strings), got {stage!r}; "
                f"available stages: {', '.join(available)}."
            )
        if stage in recorded:
            outputs[stage] = _output(network.get_layer(recorded[stage]))
        elif stage in layer_names:
            outputs[stage] = _output(network.get_layer(stage))
        else:
            raise ValueError(
                f"Unknown stage {stage!r} in `stages` for model {network.name!r}: "
                f"available stages are {', '.join(available)}, 'stem' (or any layer name)."
            )
    kept = _ancestors(list(outputs.values()))
    feature_info = [
        entry for entry in network.feature_info if id(network.get_layer(entry["layer"])) in kept
    ]
    return Network(
        _inputs(network),
        outputs,
        name=name or f"{model.name}_features",
        feature_info=feature_info,
        preprocessing=network.preprocessing,
    )


def _freeze_layer(layer: keras.layers.Layer, freeze_batchnorm: bool) -> None:
    if isinstance(layer, keras.layers.BatchNormalization):
        if freeze_batchnorm:
            layer.trainable = False
        return
    inner = [sub for sub in iter_layers(layer) if isinstance(sub, keras.layers.BatchNormalization)]
    if freeze_batchnorm or not inner:
        layer.trainable = False
        return
    # A composite layer (a DenseBlock) with BN inside: freeze all but its BN.
    for sub in iter_layers(layer):
        if not sublayers(sub) and not isinstance(sub, keras.layers.BatchNormalization):
            sub.trainable = False


def freeze(model: keras.Model, until: str = "stage4", freeze_batchnorm: bool = True) -> keras.Model:
    """Freeze the stem and every stage up to and including `until`.

    The frozen part is every layer that computes the recorded output of
    `until` (its ancestors in the graph, back to the input), so a stage's
    first layers, shortcuts, DenseNet transitions and gates go with it
    whatever their names. Frozen layers get `trainable = False`. A frozen
    BatchNormalization layer also runs in inference mode, even inside `fit`:
    it normalises with its moving statistics and never updates them (Keras 3
    semantics), which is what fine-tuning on a small data set needs. The
    classifier and layers added after the backbone stay trainable. Compile
    (or re-compile) the model after freezing. Dtype policies are unchanged.

    Args:
        model: a model built by keras_resnets, or one wrapping it as a layer.
        until: `"stem"`, a stage name (`"stage4"`: stem, stages 2-4 frozen,
            stage 5 trainable), or `"all"` (the whole backbone: every layer
            that computes the feature map the head pools, including a
            pre-activation network's final BN-ReLU and the attention
            blocks' pooled paths; not the pooling and classifier).
        freeze_batchnorm: also freeze the BatchNormalization layers of the
            frozen part. False leaves them trainable (their scale and offset
            learn, and their statistics follow the new data), including the
            BN layers inside composite layers such as `DenseBlock`.

    Returns:
        `model` itself (frozen in place), for chaining.

    Raises:
        ValueError: `until` is not a stage of the model; the message lists them.

    Example:
        >>> model = keras_resnets.ResNet50()
        >>> keras_resnets.freeze(model, until="stage4").compile("adam", "mse")
    """
    freeze_batchnorm = check_bool("freeze_batchnorm", freeze_batchnorm)
    network = recorded_network(model)
    recorded = [entry["name"] for entry in network.feature_info]
    available = [name for name in recorded if name != STEM]
    if until == "all":
        # Everything that computes the feature map(s) the head reads: layers
        # with 2-D or 3-D outputs inside the backbone (ECA's Conv1D, SE's
        # squeeze) included, the head excluded.
        outputs = keras.tree.flatten(network.outputs)
        frozen = _ancestors(_features(network) if len(outputs) == 1 else outputs)
    elif isinstance(until, str) and until in recorded:
        frozen = _ancestors(_output(network.get_layer(_entry(network, until)["layer"])))
    else:
        raise ValueError(
            f"Unknown `until` {until!r} for model {network.name!r}: use 'stem', 'all' or "
            f"a stage: {', '.join(available)}."
        )
    for layer in network.layers:
        if id(layer) in frozen and not isinstance(layer, keras.layers.InputLayer):
            _freeze_layer(layer, freeze_batchnorm)
    return model


def _features(network: Network):
    """The feature map the head pools: the output, or the last 4-D tensor before it."""
    output = keras.tree.flatten(network.outputs)
    if len(output) != 1:
        raise ValueError(
            f"Model {network.name!r} has {len(output)} outputs; `replace_head` needs a "
            "single-output classifier or backbone."
        )
    tensor = output[0]
    while len(tensor.shape) != 4:
        history = tensor._keras_history
        inputs = keras.tree.flatten(
            history.operation._inbound_nodes[history.node_index].input_tensors
        )
        if len(inputs) != 1 or getattr(inputs[0], "_keras_history", None) is None:
            raise ValueError(
                f"Cannot find the feature map of model {network.name!r}: its output "
                f"{tuple(output[0].shape)} does not come from one 4-D feature map."
            )
        tensor = inputs[0]
    return tensor


def replace_head(
    model: keras.Model,
    classes: int,
    classifier_activation="softmax",
    dropout: float = 0.0,
    name: str | None = None,
) -> Network:
    """A new model: the backbone of `model` with a fresh classifier of `classes`.

    The features are those the old head pooled (the last stage, or a
    pre-activation network's final BN-ReLU); the new head is global average
    pooling `head_pool`, optional dropout `head_dropout` and a dense
    `head_fc`, made as in a freshly built model: the classifier computes in
    float32 under any dtype policy, so the output is float32 as a fresh
    build's is. The backbone's layers and weights are shared with `model`,
    not copied, so they keep the dtype policy they were built with (rebuild
    with `with_dtype_policy` first to change it).

    Args:
        model: a model built by keras_resnets, with or without its top.
        classes: the number of new classes.
        classifier_activation: activation of the new classifier.
        dropout: dropout rate before the classifier (0 for none).
        name: the new model's name (default `model.name`).

    Returns:
        A `Network` with the backbone's `feature_info` and `preprocessing`.

    Example:
        >>> old = keras_resnets.ResNet20(classes=10)
        >>> new = keras_resnets.replace_head(old, classes=5)
        >>> new.output_shape
        (None, 5)
    """
    classes = check_int("classes", classes, minimum=1)
    dropout = check_fraction("dropout", dropout, low=0.0, high=1.0)
    network = recorded_network(model)
    features = _features(network)
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(features)
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = classifier(x, classes, classifier_activation)
    return Network(
        _inputs(network),
        outputs,
        name=name or model.name,
        feature_info=network.feature_info,
        preprocessing=network.preprocessing,
    )


def _pinned_outputs(model: keras.Model) -> set[str]:
    """Names of the layers that end `model` with a vector (its classifier).

    Where an output comes from a nested model, that model's own vector
    outputs are the ones pinned; a nested model's outputs that feed later
    layers (a pooled backbone under the user's head) are not.
    """
    names = set()
    for tensor in keras.tree.flatten(model.outputs):
        layer = tensor._keras_history.operation
        if isinstance(layer, keras.Model) and hasattr(layer, "outputs"):
            names |= _pinned_outputs(layer)
        elif len(tensor.shape) <= 2:
            names.add(layer.name)
    return names


def _retarget(config, policy: dict, compute: str, pinned: set[str], nested: bool) -> None:
    """Set the dtype policy of every serialized layer in `config`, nested ones included.

    Layers live at any depth: in a functional model's `layers`, in a nested
    model, and inside layers that serialize others (the branch model of a
    `StochasticDepth`), so the whole tree is walked. The inputs of nested
    models take the compute dtype (a branch's input is built in the dtype
    of the tensor it receives); the outer model's inputs are left alone.
    """
    if isinstance(config, list):
        for item in config:
            _retarget(item, policy, compute, pinned, nested)
        return
    if not isinstance(config, dict):
        return
    inner = config.get("config")
    if "class_name" in config and isinstance(inner, dict):
        dtype = inner.get("dtype")
        if config["class_name"] == "InputLayer":
            if nested and isinstance(dtype, str) and "float" in dtype:
                inner["dtype"] = compute
        elif isinstance(dtype, dict) and "DTypePolicy" in str(dtype.get("class_name")):
            if inner.get("name") in pinned:
                inner["dtype"] = keras.dtype_policies.serialize(keras.dtype_policies.get("float32"))
            else:
                inner["dtype"] = policy
        for value in inner.values():
            _retarget(value, policy, compute, pinned, nested=True)
        return
    for value in config.values():
        _retarget(value, policy, compute, pinned, nested)


def with_dtype_policy(model: keras.Model, policy=None) -> keras.Model:
    """`model` rebuilt under a dtype policy, with the same weights.

    A model keeps the dtype policy of each layer as it was built (and as it
    was saved: `keras.models.load_model` restores a float32 model as float32
    whatever the current policy). This rebuilds it from its config with
    every layer under `policy`, except the layers that end the model with a
    vector (the classifier), which compute in float32 as in a fresh build,
    then copies the weights (variables are float32 under every policy the
    package uses, so they copy exactly). `feature_info`, `preprocessing` and
    nested models are kept.

    Args:
        model: a functional model (a `Network`, or one wrapping it).
        policy: a dtype policy or its name (`"float32"`, `"mixed_float16"`,
            `"mixed_bfloat16"`); None takes `keras.config.dtype_policy()`.

    Returns:
        A new model of the same class; `model` is unchanged.

    Raises:
        TypeError: `model` is not a functional keras.Model.
        ValueError: `policy` is not a dtype policy.

    Example:
        >>> keras.config.set_dtype_policy("mixed_bfloat16")
        >>> model = with_dtype_policy(keras.models.load_model("model.keras"))  # doctest: +SKIP
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "_inbound_nodes"):
        raise TypeError(f"`model` must be a keras.Model, got {type(model).__name__}.")
    if policy is None:
        policy = keras.config.dtype_policy()
    try:
        policy = keras.dtype_policies.get(policy)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"`policy` must be a dtype policy or its name ('float32', 'mixed_float16', "
            f"'mixed_bfloat16', ...), got {policy!r}."
        ) from exc
    serialized = keras.saving.serialize_keras_object(model)
    if "layers" not in serialized.get("config", {}):
        raise TypeError(
            f"`model` must be a functional or sequential keras.Model, got "
            f"{type(model).__name__} {model.name!r} (its config has no layers)."
        )
    _retarget(
        serialized["config"],
        keras.dtype_policies.serialize(policy),
        policy.compute_dtype,
        _pinned_outputs(model),
        nested=False,
    )
    rebuilt = keras.saving.deserialize_keras_object(serialized)
    rebuilt.set_weights(model.get_weights())
    return rebuilt
