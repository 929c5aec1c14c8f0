"""Transfer learning: stage features, freezing a backbone, and a new head.

Everything works by the package's stable layer names: the stem is `stem_*`,
stage `s` is `stage{s}_*` (ImageNet models have stages 2-5, the C2-C5 of
detection papers; CIFAR models stages 1-3), a pre-activation network's final
BN-ReLU is `post_*`, and the classifier is `head_*`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import keras

from keras_resnets.utils import check_int

__all__ = ["feature_extractor", "freeze", "replace_head", "stage_outputs"]

# A stage ends with its last block's output layer. DenseNet names its dense
# blocks `block{i}` (one DenseBlock layer each) and the transitions between
# them `transition{i}_*`; block i is stage i + 1 on ImageNet models (a stride
# 4 stem, so that block 1 is C2) and stage i on CIFAR models.
_BLOCK_OUT = re.compile(r"^stage(\d+)_block(\d+)_out$")
_DENSE_BLOCK = re.compile(r"^block(\d+)$")
_STAGE = re.compile(r"^stage(\d+)_")
_DENSE_MEMBER = re.compile(r"^block(\d+)(?:_|$)")
_TRANSITION = re.compile(r"^transition(\d+)_")
_TAIL = ("post_", "final_")  # the final BN-ReLU of pre-activation networks


def _is_stage_output(name: str) -> bool:
    return bool(_BLOCK_OUT.match(name) or _DENSE_BLOCK.match(name))


def _dense_offset(backbone: keras.Model) -> int:
    return 1 if any(layer.name == "stem_pool" for layer in backbone.layers) else 0


def _walk(model: keras.Model):
    """Yield `(layer, owner)` for every layer, descending into nested models."""
    for layer in model.layers:
        yield layer, model
        if isinstance(layer, keras.Model):
            yield from _walk(layer)


def _inputs(model: keras.Model):
    """The model's input tensor (or list of them), as it was built."""
    return model.inputs[0] if len(model.inputs) == 1 else model.inputs


def _find_backbone(model: keras.Model) -> keras.Model:
    """The (possibly nested) functional model holding the stage layers."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model, got {type(model).__name__}.")
    for layer, owner in _walk(model):
        if _is_stage_output(layer.name):
            return owner
    raise ValueError(
        f"Model {model.name!r} has no `stage{{s}}_block{{b}}_out` layers: it was not "
        "built by keras_resnets (or has been renamed), so its stages cannot be found."
    )


def stage_outputs(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """Map each stage name to the layer that ends it.

    A stage ends with its last block's output layer `stage{s}_block{b}_out`
    (on DenseNets, its dense block `block{i}`).

    Args:
        model: a model built by keras_resnets (or one that wraps such a
            model as a layer).

    Returns:
        An ordered dict `{"stage2": layer, ...}` sorted by stage number.

    Example:
        >>> list(keras_resnets.stage_outputs(keras_resnets.ResNet20()))
        ['stage1', 'stage2', 'stage3']
    """
    backbone = _find_backbone(model)
    offset = _dense_offset(backbone)
    last: dict[int, tuple[int, keras.layers.Layer]] = {}
    for layer in backbone.layers:
        match = _BLOCK_OUT.match(layer.name)
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
        elif match := _DENSE_BLOCK.match(layer.name):
            stage, block = int(match.group(1)) + offset, 0
        else:
            continue
        if stage not in last or block > last[stage][0]:
            last[stage] = (block, layer)
    return {f"stage{stage}": last[stage][1] for stage in sorted(last)}


def feature_extractor(
    model: keras.Model,
    stages: Sequence[str] | str | None = None,
    name: str | None = None,
) -> keras.Model:
    """A multi-output model returning the feature maps of the named stages.

    For detection and segmentation heads (FPN, U-Net...): on an ImageNet
    model, `stages=("stage2", "stage3", "stage4", "stage5")` gives C2-C5 at
    output strides 4, 8, 16 and 32. Build the model with `include_top=False`
    and `input_shape=(None, None, 3)` to accept any image size.

    Args:
        model: a model built by keras_resnets, or a model wrapping one as a
            layer (its backbone's input is then the extractor's input).
        stages: stage names such as `"stage3"`, or any layer names of the
            backbone; None (default) takes every stage (`stage2`-`stage5`
            on ImageNet models, `stage1`-`stage3` on CIFAR models).
        name: the new model's name (default `"<model name>_features"`).

    Returns:
        A functional `keras.Model` sharing the weights of `model`, whose
        output is a dict `{stage name: feature map}`.

    Raises:
        ValueError: a name is neither a stage nor a layer; the message lists
            the available stages.

    Example:
        >>> backbone = keras_resnets.ResNet50(include_top=False, input_shape=(None, None, 3))
        >>> features = keras_resnets.feature_extractor(backbone, ("stage3", "stage5"))
        >>> {k: v.shape for k, v in features.output.items()}
        {'stage3': (None, None, None, 512), 'stage5': (None, None, None, 2048)}
    """
    backbone = _find_backbone(model)
    available = stage_outputs(backbone)
    if stages is None:
        stages = tuple(available)
    elif isinstance(stages, str):
        stages = (stages,)
    if not isinstance(stages, Sequence) or not stages:
        raise ValueError(
            f"`stages` must be None or a non-empty list of stage names, got {stages!r}; "
            f"available stages: {', '.join(available)}."
        )
    layer_names = {layer.name for layer in backbone.layers}
    outputs = {}
    for stage in stages:
        if not isinstance(stage, str):
            raise ValueError(
                f"`stages` must hold stage names (strings), got {stage!r}; "
                f"available stages: {', '.join(available)}."
            )
        if stage in available:
            outputs[stage] = available[stage].output
        elif stage in layer_names:
            outputs[stage] = backbone.get_layer(stage).output
        else:
            raise ValueError(
                f"Unknown stage {stage!r} in `stages` for model {backbone.name!r}: "
                f"available stages are {', '.join(available)} (or any layer name)."
            )
    return keras.Model(_inputs(backbone), outputs, name=name or f"{model.name}_features")


def _stage_of(layer_name: str, last_stage: int, offset: int) -> int | None:
    """The stage a layer belongs to: 0 for the stem, None for head and others."""
    if layer_name.startswith("stem"):
        return 0
    if match := _STAGE.match(layer_name):
        return int(match.group(1))
    if match := _DENSE_MEMBER.match(layer_name):
        return int(match.group(1)) + offset
    if match := _TRANSITION.match(layer_name):
        # A transition downsamples into the next dense block: it starts that stage.
        return int(match.group(1)) + 1 + offset
    if layer_name.startswith(_TAIL):
        return last_stage
    return None


def _freeze_layer(layer: keras.layers.Layer, freeze_batchnorm: bool) -> None:
    if isinstance(layer, keras.layers.BatchNormalization):
        if freeze_batchnorm:
            layer.trainable = False
        return
    inner = [
        sub
        for sub in layer._flatten_layers(include_self=False, recursive=True)
        if isinstance(sub, keras.layers.BatchNormalization)
    ]
    if freeze_batchnorm or not inner:
        layer.trainable = False
        return
    # A composite layer (a DenseBlock) with BN inside: freeze all but its BN.
    for sub in layer._flatten_layers(include_self=False, recursive=True):
        if not sub._layers and not isinstance(sub, keras.layers.BatchNormalization):
            sub.trainable = False


def freeze(model: keras.Model, until: str = "stage4", freeze_batchnorm: bool = True) -> keras.Model:
    """Freeze the stem and every stage up to and including `until`.

    Frozen layers get `trainable = False`. A frozen BatchNormalization layer
    also runs in inference mode, even inside `fit`: it normalises with its
    moving statistics and never updates them (Keras 3 semantics), which is
    what fine-tuning on a small data set needs. The classifier (`head_*`)
    and layers the package did not name (a head you added) stay trainable.
    Compile (or re-compile) the model after freezing.

    Args:
        model: a model built by keras_resnets, or one wrapping it as a layer.
        until: `"stem"`, a stage name (`"stage4"`: stem, stages 2-4 frozen,
            stage 5 trainable), or `"all"` (the whole backbone: stem, every
            stage and a pre-activation network's final `post_*` BN-ReLU).
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
    if not isinstance(freeze_batchnorm, bool):
        raise ValueError(f"`freeze_batchnorm` must be True or False, got {freeze_batchnorm!r}.")
    backbone = _find_backbone(model)
    available = stage_outputs(backbone)
    numbers = [int(stage[len("stage") :]) for stage in available]
    last_stage = numbers[-1]
    if until == "stem":
        limit = 0
    elif until == "all":
        limit = last_stage
    elif isinstance(until, str) and until in available:
        limit = int(until[len("stage") :])
    else:
        raise ValueError(
            f"Unknown `until` {until!r} for model {backbone.name!r}: use 'stem', 'all' or "
            f"a stage: {', '.join(available)}."
        )
    offset = _dense_offset(backbone)
    for layer in backbone.layers:
        stage = _stage_of(layer.name, last_stage, offset)
        if stage is not None and stage <= limit:
            _freeze_layer(layer, freeze_batchnorm)
    return model


def replace_head(
    model: keras.Model,
    classes: int,
    classifier_activation="softmax",
    dropout: float = 0.0,
    name: str | None = None,
) -> keras.Model:
    """A new model: the backbone of `model` with a fresh classifier of `classes`.

    The features are those the old head pooled (the last stage, or a
    pre-activation network's final BN-ReLU); the new head is global average
    pooling `head_pool` and a dense `head_fc`, named as in a freshly built
    model so that `freeze`, `feature_extractor` and the export work on the
    result. The backbone's weights are shared with `model`, not copied.

    Args:
        model: a model built by keras_resnets, with or without its top.
        classes: the number of new classes.
        classifier_activation: activation of the new classifier.
        dropout: dropout rate before the classifier (0 for none).
        name: the new model's name (default `model.name`).

    Returns:
        A functional `keras.Model`.

    Example:
        >>> old = keras_resnets.ResNet20(classes=10)
        >>> new = keras_resnets.replace_head(old, classes=5)
        >>> new.output_shape
        (None, 5)
    """
    check_int("classes", classes, minimum=1)
    if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"`dropout` must be in [0, 1), got {dropout!r}.")
    backbone = _find_backbone(model)
    layer_names = {layer.name for layer in backbone.layers}
    if "head_pool" in layer_names:
        features = backbone.get_layer("head_pool").input
    elif len(backbone.output_shape) == 4:
        features = backbone.output
    else:
        raise ValueError(
            f"Cannot find the feature map of model {backbone.name!r}: it has no `head_pool` "
            f"layer and its output {backbone.output_shape} is not a feature map."
        )
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(features)
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(classes, activation=classifier_activation, name="head_fc")(x)
    return keras.Model(_inputs(backbone), outputs, name=name or model.name)
