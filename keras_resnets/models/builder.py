"""The one shared builder: input validation, input, body, head, pooling, weights.

Every family turns its spec into a `body(x) -> (features, feature_info)`
function and calls `build_model`; nothing else in the package creates inputs
or heads. The body records its stem and stages while it builds them
(`stage_info`), so `feature_info` is what was built, never a guess from names.
The public builders' signature, options and docstring are
`keras_resnets.models.application`'s.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Sequence

import keras

from keras_resnets.models.network import Network
from keras_resnets.utils import check_bool, check_int, is_int

_POOLINGS = (None, "avg", "max")
# Keras walks a functional graph recursively (building, saving, cloning);
# ResNet-1202 and DenseNet-264 are deeper than Python's default limit of 1000.
_RECURSION_LIMIT = 30_000


def _ensure_recursion_limit() -> None:
    if sys.getrecursionlimit() < _RECURSION_LIMIT:
        sys.setrecursionlimit(_RECURSION_LIMIT)


CLASSIFIER_NAME = "head_fc"


# The keras.applications arguments every builder takes, in signature order.
def stage_info(name: str, tensor, reduction: int) -> dict:
    """One `feature_info` entry, recorded by a family's body as it builds a stage.

    Args:
        name: the stage name (`"stem"`, `"stage2"`, ...).
        tensor: the Keras tensor that ends the stage; the layer that made it
            is the entry's `layer`.
        reduction: the stride of `tensor` relative to the body's input.

    Returns:
        `{"name", "layer", "channels", "reduction"}`.
    """
    layer = tensor._keras_history.operation
    if not isinstance(layer, keras.layers.Layer):  # pragma: no cover - a builder bug
        raise TypeError(f"Stage {name!r} must end with a Keras layer, got {layer!r}.")
    return {
        "name": name,
        "layer": layer.name,
        "channels": int(tensor.shape[-1]),
        "reduction": int(reduction),
    }


def classifier(x, classes: int, activation="softmax", name: str = CLASSIFIER_NAME):
    """The dense classifier of every model, fresh or from `replace_head`.

    It computes in float32 under any dtype policy, as Keras's mixed-precision
    guide and keras.applications do, so that probabilities are float32 (rows
    sum to 1 within float32 precision); it is a tiny share of the compute.

    Args:
        x: the pooled features (rank 2).
        classes: number of outputs.
        activation: the classifier activation (None for logits).
        name: the layer name (`head_fc`).

    Returns:
        The classifier's output tensor, float32.
    """
    return keras.layers.Dense(classes, activation=activation, name=name, dtype="float32")(x)


def _validate_activation(classifier_activation, classes: int):
    """The activation as given, after a trial call on a small tensor of `classes` columns."""
    if classifier_activation is None:
        return None
    if isinstance(classifier_activation, str):
        try:
            function = keras.activations.get(classifier_activation)
        except ValueError as exc:
            raise ValueError(
                f"Unknown `classifier_activation` {classifier_activation!r}: use None, a "
                "callable or a Keras activation name such as 'softmax', 'sigmoid' or 'linear'."
            ) from exc
    elif inspect.isclass(classifier_activation) or not callable(classifier_activation):
        kind = "a class" if inspect.isclass(classifier_activation) else "not callable"
        raise ValueError(
            "`classifier_activation` must be None, the name of a Keras activation or a "
            f"function of one tensor, got {classifier_activation!r} ({kind}; pass an "
            "instance or a function)."
        )
    else:
        function = classifier_activation
    if classes == 1 and function is keras.activations.softmax:
        raise ValueError(
            "`classifier_activation='softmax'` with `classes=1` outputs a constant 1.0; "
            "use 'sigmoid' (a probability) or None (a logit) for one output."
        )
    trial = keras.ops.zeros((2, classes))
    try:
        output = function(trial)
    except Exception as exc:  # any failure: the model could not be called
        raise ValueError(
            f"`classifier_activation` {classifier_activation!r} cannot be applied to the "
            f"classifier's output (a tensor of shape (batch, {classes})): "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if tuple(getattr(output, "shape", ())) != (2, classes):
        raise ValueError(
            f"`classifier_activation` {classifier_activation!r} must map a tensor of shape "
            f"(batch, {classes}) to the same shape, got {output!r}."
        )
    return classifier_activation


def _check_shape(
    input_shape, argument: str, include_top: bool, default_size: int, min_size: int
) -> tuple:
    """`input_shape` (or `input_tensor`'s shape) as a tuple of Python ints and Nones."""
    if not isinstance(input_shape, Sequence) or isinstance(input_shape, str):
        raise ValueError(
            f"`input_shape` must be a tuple (height, width, channels), got {input_shape!r}."
        )
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        layout = "(batch, height, width, channels)" if argument == "input_tensor" else "rank 3"
        raise ValueError(
            f"`{argument}` must have {layout}, (height, width, channels) in channels-last "
            f"layout, got {input_shape!r} of rank {len(input_shape)} without the batch axis."
        )
    height, width, channels = input_shape
    if not is_int(channels) or channels < 1:
        raise ValueError(
            f"`{argument}` must have a positive integer channel count last, got {input_shape!r}."
        )
    for size in (height, width):
        if size is None:
            if include_top:
                raise ValueError(
                    f"`{argument}` {input_shape!r} has `None` spatial dimensions, which "
                    "needs `include_top=False` (the classifier needs a fixed size); give "
                    f"both sizes, for example ({default_size}, {default_size}, {channels})."
                )
            continue
        if not is_int(size) or size < min_size:
            raise ValueError(
                f"`{argument}` {input_shape!r} is too small for this network's "
                f"downsampling: height and width must be integers of at least {min_size}."
            )
    return tuple(None if size is None else int(size) for size in input_shape)


def _resolve_input_shape(
    input_shape, input_tensor, include_top: bool, default_size: int, min_size: int
) -> tuple:
    """The input shape: `input_shape`, `input_tensor`'s (they must agree) or the default."""
    sizes = include_top, default_size, min_size
    if input_tensor is not None:
        tensor_shape = _check_shape(tuple(input_tensor.shape[1:]), "input_tensor", *sizes)
        if input_shape is not None and _check_shape(input_shape, "input_shape", *sizes) != (
            tensor_shape
        ):
            raise ValueError(
                f"`input_shape` {tuple(input_shape)!r} and the shape of `input_tensor` "
                f"{tensor_shape!r} (without the batch axis) must agree; give one of them."
            )
        return tensor_shape
    if input_shape is None:
        if include_top and default_size < min_size:
            raise ValueError(
                f"`input_shape` must be given: this network downsamples by {min_size}, more "
                f"than its default input size {default_size}; use at least "
                f"({min_size}, {min_size}, 3), or `include_top=False`."
            )
        size = default_size if include_top else None
        return (size, size, 3)
    return _check_shape(input_shape, "input_shape", *sizes)


def _check_weights_argument(weights, model_name: str) -> str | None:
    """Validate `weights`; return the pretrained tag it names, or None for a path/None."""
    import os

    from keras_resnets.weights.pretrained import PRETRAINED_TAGS, available_weights, get_pretrained

    if weights is None:
        return None
    if isinstance(weights, str) and (
        weights in PRETRAINED_TAGS or weights in available_weights(model_name)
    ):
        get_pretrained(model_name, weights)  # raises, listing what is published
        return weights
    path = os.fspath(weights) if isinstance(weights, os.PathLike) else weights
    if not isinstance(path, str) or not path.endswith((".weights.h5", ".keras")):
        tags = available_weights(model_name)
        named = f"one of {', '.join(repr(t) for t in tags)} (pretrained) " if tags else ""
        raise ValueError(
            f"`weights` must be None{', ' if tags else ' '}{named}or a path to a .weights.h5 "
            f"or .keras file, got {weights!r}."
        )
    return None


def _check_pretrained_shape(tag: str, model_name: str, input_shape, include_top, classes) -> None:
    if input_shape[-1] != 3:
        raise ValueError(
            f"`weights={tag!r}` needs 3 input channels (RGB), got `input_shape` "
            f"{tuple(input_shape)!r}; use `weights=None` for {input_shape[-1]} channels."
        )
    from keras_resnets.weights.pretrained import get_pretrained

    expected = get_pretrained(model_name, tag).classes
    if include_top and classes != expected:
        raise ValueError(
            f"`weights={tag!r}` with `include_top=True` needs `classes={expected}` (the "
            f"pretrained classifier), got {classes!r}; use `include_top=False` and add your "
            "own head."
        )


def build_model(
    *,
    body: Callable[[keras.KerasTensor], keras.KerasTensor],
    spec,
    model_name: str,
    include_top: bool = True,
    weights: str | None = None,
    input_tensor=None,
    input_shape=None,
    pooling: str | None = None,
    classes: int | None = None,
    classifier_activation="softmax",
    name: str | None = None,
) -> keras.Model:
    """Validate the keras.applications arguments and assemble the model.

    Args:
        body: maps the input tensor to `(features, feature_info)`: the last
            feature map and the entries (`stage_info`) of the stem and every
            stage, recorded while building them.
        spec: the family's spec; its `default_size` (square input size),
            `total_stride` (the smallest height/width the downsampling
            allows) and `default_classes` are used.
        model_name: the registry name (for pretrained weights and errors).
        include_top, input_tensor, input_shape, pooling,
            classifier_activation: as in `keras.applications`.
        classes: as in `keras.applications`; None: `spec.default_classes`.
        name: the Keras model name; None: `model_name.lower()`.
        weights: None, a `.weights.h5`/`.keras` path, or a pretrained tag
            published for `model_name` (`"imagenet"`, torchvision's
            `"tv_in1k"`, timm's `"a1_in1k"`, ...: `available_weights(model_name)`;
            see `keras_resnets.weights.pretrained`).

    Returns:
        A `Network` (functional `keras.Model`) carrying the body's `feature_info`.
    """
    default_size, min_size = spec.default_size, spec.total_stride
    # `classes=None` is the builder's default in every builder (APPLICATION_DOC).
    classes = spec.default_classes if classes is None else classes
    if name is not None and not isinstance(name, str):
        raise ValueError(f"`name` must be None or a string, got {name!r}.")
    name = name or model_name.lower()
    if keras.config.image_data_format() != "channels_last":
        raise ValueError(
            "keras_resnets models are built channels-last; "
            f"keras.config.image_data_format() is {keras.config.image_data_format()!r}."
        )
    include_top = check_bool("include_top", include_top)
    if pooling not in _POOLINGS:
        raise ValueError(f"`pooling` must be one of None, 'avg', 'max', got {pooling!r}.")
    classes = check_int("classes", classes)
    if include_top:
        classifier_activation = _validate_activation(classifier_activation, classes)
    pretrained = _check_weights_argument(weights, model_name)
    if pretrained is None and weights is not None and not isinstance(weights, str):
        import os

        weights = os.fspath(weights)
    if input_tensor is not None and not keras.backend.is_keras_tensor(input_tensor):
        raise ValueError(
            "`input_tensor` must be a Keras tensor (the output of `keras.Input` or of a "
            f"layer), got {type(input_tensor).__name__}."
        )
    input_shape = _resolve_input_shape(
        input_shape, input_tensor, include_top, default_size, min_size
    )
    if pretrained is not None:
        _check_pretrained_shape(pretrained, model_name, input_shape, include_top, classes)

    if input_tensor is None:
        inputs = keras.Input(shape=input_shape, name="input")
        x = inputs
    else:
        x = input_tensor
        inputs = keras.utils.get_source_inputs(input_tensor)

    x, feature_info = body(x)

    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
        x = classifier(x, classes, classifier_activation)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="head_pool")(x)

    _ensure_recursion_limit()
    model = Network(inputs, x, name=name, feature_info=feature_info)
    if pretrained is not None:
        from keras_resnets.weights.pretrained import load_pretrained

        load_pretrained(model, model_name, pretrained)
    elif weights is not None:
        from keras_resnets.weights import load_weights_file

        load_weights_file(model, weights)
    return model
