"""Loading weights into the package's models.

`load_weights_file(model, path)` loads a Keras `.weights.h5` or `.keras`
file after checking that it was saved from the same architecture (the layer
names and classes a `.keras` file records; the layer groups of a
`.weights.h5` file, which records no names) and, layer by layer, that every
shape matches, so a mismatch names the file and the first layer that
differs instead of failing deep inside Keras or loading silently into
another network. `copy_weights_by_name` copies weights between a flat model
and its stochastic-depth twin (whose blocks nest their branches);
`build_in_stored_layout` is how the builders load weights stored in the
other nesting (pretrained ones, files saved with or without stochastic
depth). `load_torch_checkpoint(model, path, layout=None)` converts a
torchvision or timm PyTorch checkpoint (`.safetensors`, or `.pth` with
PyTorch installed; the layout detected from the keys or named);
`keras_resnets.weights.pretrained` holds the registry of published ImageNet
checkpoints behind `weights="imagenet"`.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile

import h5py
import keras

__all__ = [
    "build_in_stored_layout",
    "copy_weights_by_name",
    "load_torch_checkpoint",
    "load_weights_file",
    "read_torch_checkpoint",
    "saved_with_stochastic_depth",
]

_SUFFIXES = (".weights.h5", ".keras")
# The `drop_path_rate` of the network a file saved with stochastic depth is
# first loaded into (`build_in_stored_layout`): any rate > 0 nests every block
# the same way.
NESTING_RATE = 0.5


def _h5_key(class_name: str) -> str:
    """The group name Keras's weights file gives a layer class (`GroupedConv2D` -> `grouped_conv2d`).

    The `.weights.h5` layout names each layer's group after its class in
    snake case; this is that rule (Keras's `to_snake_case`, not public API;
    tests/test_utils.py checks the two agree for every layer class the
    registered models use).
    """
    name = re.sub(r"\W+", "", class_name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def check_path(argument: str, value) -> str:
    """`os.fspath(value)`, or a `TypeError` naming `argument` when it is not a path."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(
            f"`{argument}` must be a file path (str or os.PathLike), "
            f"got {type(value).__name__}: {value!r}."
        )
    return os.fspath(value)


def check_model(model) -> keras.Model:
    """`model`, or a `TypeError` naming the argument when it is not a `keras.Model`."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model, got {type(model).__name__}: {model!r}.")
    return model


def _read_archive(path: str, member: str) -> bytes:
    """A member of a `.keras` archive; a `ValueError` naming the file when it is not one."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.read(member)
    except (zipfile.BadZipFile, KeyError, EOFError, OSError, ValueError) as exc:
        # truncated or corrupt archives raise any of these, depending on where they break
        raise ValueError(
            f"`weights` file {path!r} is not a valid .keras archive (truncated or corrupt? "
            f"save it again): {exc}"
        ) from exc


def _open_h5(path: str) -> h5py.File:
    source = (
        io.BytesIO(_read_archive(path, "model.weights.h5")) if path.endswith(".keras") else path
    )
    try:
        return h5py.File(source, "r")
    except OSError as exc:
        raise ValueError(
            f"`weights` file {path!r} is not a readable HDF5 file (truncated or corrupt?): {exc}"
        ) from exc


def saved_with_stochastic_depth(path: str | os.PathLike) -> bool | None:
    """Whether a `.weights.h5`/`.keras` file was saved from a stochastic-depth model.

    With `drop_path_rate > 0` each residual block is a `StochasticDepth`
    layer that nests its branch, so the file's layout differs from the flat
    model's; the builders use this to load such a file through the model of
    its own layout and copy the weights by name (`copy_weights_by_name`).

    Returns:
        True or False; None when the file cannot be read (the load that
        follows says why).
    """
    try:
        with _open_h5(check_path("path", path)) as h5:
            return "layers" in h5 and any(
                key.startswith("stochastic_depth") for key in h5["layers"]
            )
    except (ValueError, OSError):
        return None


def copy_weights_by_name(source: keras.Model, target: keras.Model) -> None:
    """Give every weight-owning layer of `target` the weights of `source`'s layer of that name.

    Nested layers are found by name on both sides (`find_layer`), so this
    copies between a flat model and its stochastic-depth twin, where each
    block's layers sit inside a `StochasticDepth` layer's branch. The layers
    holding others (a `StochasticDepth`, a `DenseBlock`) are walked into, not
    copied as a whole.

    Raises:
        ValueError: a layer of `target` has no layer of that name in
            `source`, or its weights have other shapes (naming the layer).
    """
    from keras_resnets.utils import find_layer, iter_layers, sublayers

    for layer in iter_layers(target):
        if not layer.weights or sublayers(layer):
            continue
        values = find_layer(source, layer.name).get_weights()
        shapes = [tuple(w.shape) for w in layer.weights]
        if [tuple(v.shape) for v in values] != shapes:
            raise ValueError(
                f"Layer {layer.name!r} has weights of shapes {shapes} in model "
                f"{target.name!r} and {[tuple(v.shape) for v in values]} in {source.name!r}."
            )
        layer.set_weights(values)


def build_in_stored_layout(
    build, *, drop_path_rate, pretrained: bool, can_nest: bool, application: dict
) -> keras.Model | None:
    """Build a model whose `weights` were stored nested the other way, or None.

    Pretrained weights and files saved without stochastic depth are stored
    for the flat graph; files saved with it (any `drop_path_rate > 0`) for the
    nested one. When the model asked for nests the other way, the weights are
    loaded into a network of their own layout, then copied by layer name
    (`copy_weights_by_name`) into the one asked for; this is how every
    builder with `drop_path_rate` loads `weights="imagenet"` and
    `weights=<file>`.

    Args:
        build: `build(drop_path_rate=..., **application) -> keras.Model`, the
            family's builder with its other options bound.
        drop_path_rate: the rate asked for (> 0 nests every block).
        pretrained: whether `application["weights"]` names published
            pretrained weights.
        can_nest: whether the family's options allow stochastic depth (a
            file claiming it otherwise is left to `load_weights_file` to refuse).
        application: the keras.applications arguments (`weights`,
            `input_tensor`, `input_shape`, ...).

    Returns:
        The model with the weights, or None when the weights are stored in the
        model's own layout (the caller builds as usual).
    """
    weights = application.get("weights")
    from_file = isinstance(weights, (str, os.PathLike)) and not pretrained
    stored_nested = bool(from_file and can_nest and saved_with_stochastic_depth(weights))
    if not (pretrained or from_file) or bool(drop_path_rate) == stored_nested:
        return None
    application = dict(application)
    input_tensor = application.pop("input_tensor", None)
    shape = application.pop("input_shape", None)
    source = build(
        drop_path_rate=NESTING_RATE if stored_nested else 0.0,
        input_shape=shape if input_tensor is None else tuple(input_tensor.shape[1:]),
        **application,
    )
    application.update(weights=None, input_tensor=input_tensor, input_shape=shape)
    model = build(drop_path_rate=drop_path_rate, **application)
    copy_weights_by_name(source, model)
    if getattr(source, "preprocessing", None) is not None:
        model.preprocessing = source.preprocessing
    return model


def _layer_classes(layers: list, found: dict[str, str]) -> dict[str, str]:
    """`{layer name: class name}` of a serialized model's layers, nested ones included.

    A `StochasticDepth` block counts as the `Add` it replaces and its branch's
    layers as the flat model's, so a file and a model differing only in
    `drop_path_rate` compare equal; input layers are left out (their names
    follow `input_tensor`).
    """
    for entry in layers:
        class_name = entry.get("class_name")
        config = entry.get("config") or {}
        name = config.get("name", entry.get("name"))
        if class_name == "InputLayer":
            continue
        if class_name == "StochasticDepth":
            found[name] = "Add"
            branch = (config.get("branch") or {}).get("config") or {}
            _layer_classes(branch.get("layers") or [], found)
            continue
        found[name] = class_name
        if isinstance(config.get("layers"), list):
            _layer_classes(config["layers"], found)
    return found


def _architecture_difference(model: keras.Model, path: str) -> str | None:
    """The first difference between `model`'s layers and those a `.keras` file records."""
    try:
        saved = json.loads(_read_archive(path, "config.json"))
        saved_layers = saved["config"]["layers"]
    except (ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, ValueError) and "not a valid .keras" in str(exc):
            raise
        raise ValueError(f"`weights` file {path!r} holds no readable model config: {exc}") from exc
    try:
        model_layers = model.get_config()["layers"]
    except (NotImplementedError, KeyError, TypeError):
        return None  # a subclassed model records no layer list; the shapes are checked
    have = _layer_classes(saved_layers, {})
    want = _layer_classes(model_layers, {})
    # Layers ahead of the network (an `input_tensor` made by the caller's own
    # layers, e.g. `Rescaling`) are not the architecture's: the config lists
    # layers in topological order, so each side's leading layers that the
    # other side lacks are left out.
    have, want = _without_leading(have, want), _without_leading(want, have)
    for name, class_name in want.items():
        if name not in have:
            return f"the model's layer {name!r} ({class_name}) is not in the file"
        if have[name] != class_name:
            return f"layer {name!r} is a {have[name]} in the file, a {class_name} in the model"
    extra = [name for name in have if name not in want]
    if extra:
        return (
            f"the file has layer {extra[0]!r} ({have[extra[0]]}), which the model lacks "
            f"({len(extra)} such layers)"
        )
    return None


def _without_leading(layers: dict[str, str], other: dict[str, str]) -> dict[str, str]:
    """`layers` from the first one that `other` also has (all of them if none is shared)."""
    names = list(layers)
    start = next((i for i, name in enumerate(names) if name in other), 0)
    return {name: layers[name] for name in names[start:]}


def _refuse_difference(model: keras.Model, path: str, difference: str | None) -> None:
    if difference is not None:
        raise ValueError(
            f"`weights` file {path!r} was saved from another architecture than model "
            f"{model.name!r}: {difference}."
        )


def _group_difference(model: keras.Model, group) -> str | None:
    """The first difference between `model`'s top-level layers and a weights file's groups.

    A `.weights.h5` file records no layer names: each layer is a group named
    after its class with a counter (`conv2d_3`), so the classes and their
    numbers are what can be compared.
    """
    # Leading layers the file lacks are ahead of the network (an `input_tensor`
    # made by the caller's layers); the input layers are not compared.
    keys = _expected_keys(model)
    inputs = {key for key, layer in keys.items() if isinstance(layer, keras.layers.InputLayer)}
    expected = _without_leading({k: v for k, v in keys.items() if k not in inputs}, group)
    for key, layer in expected.items():
        if key not in group:
            return (
                f"the model's layer {layer.name!r} ({layer.__class__.__name__}) has no "
                f"group 'layers/{key}' in the file"
            )
    extra = sorted(key for key in group if key not in expected and key not in inputs)
    if extra:
        return (
            f"the file has a group 'layers/{extra[0]}' that no layer of the model matches "
            f"({len(extra)} such groups)"
        )
    return None


def _expected_keys(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """`{group name: layer}` of the groups Keras's saver gives `model.layers`."""
    used: dict[str, int] = {}
    keys = {}
    for layer in model.layers:
        key = _h5_key(layer.__class__.__name__)
        if key in used:
            used[key] += 1
            key = f"{key}_{used[key]}"
        else:
            used[key] = 0
        keys[key] = layer
    return keys


def _check_shapes(model: keras.Model, h5: h5py.File, path: str) -> bool:
    """Check each top-level layer's own variables; return whether any layer nests others."""
    if "layers" not in h5:
        raise ValueError(f"`weights` file {path!r} holds no Keras layer weights.")
    group = h5["layers"]
    nested = False
    for key, layer in _expected_keys(model).items():
        expected: dict[str, object] = {}
        layer.save_own_variables(expected)
        nested = nested or len(layer.weights) > len(expected)
        if not expected:
            continue
        stored = group.get(f"{key}/vars")
        if stored is None:
            raise ValueError(
                f"`weights` file {path!r} does not match the model: it has no weights "
                f"for layer {layer.name!r}."
            )
        for index, value in expected.items():
            if index not in stored:
                raise ValueError(
                    f"`weights` file {path!r} does not match the model at layer "
                    f"{layer.name!r}: variable {index} is missing."
                )
            have = tuple(stored[index].shape)
            want = tuple(value.shape)
            if have != want:
                raise ValueError(
                    f"`weights` file {path!r} does not match the model at layer "
                    f"{layer.name!r}: the file has shape {have}, the model expects {want}."
                )
    return nested


def load_weights_file(model: keras.Model, path: str | os.PathLike) -> None:
    """Load a `.weights.h5` or `.keras` file into `model`, checking shapes first.

    Args:
        model: a model built by this package (or any functional model).
        path: a `.weights.h5` file (from `model.save_weights`) or a `.keras`
            file (from `model.save`) of the same architecture.

    Raises:
        TypeError: `model` is not a `keras.Model` or `path` not a path.
        ValueError: the file does not exist, has another suffix, cannot be
            read (a truncated or corrupt file), was saved from another
            architecture (a `.keras` file with other layer names or classes,
            a `.weights.h5` file with other layer groups: a Plain20 file
            into ResNet20, a pre-activation file into an original one), was
            saved with stochastic depth and the model has none or the
            reverse (the builders' `weights=` converts those, see
            `saved_with_stochastic_depth`), or its shapes do not match; the
            message names the file and the first difference. Layers nested in others (the layers of a
            `DenseBlock`, the branch of a `StochasticDepth`) are checked by
            Keras while loading; on a mismatch there the model's weights are
            restored, so a failed load changes nothing.

    Example:
        >>> model = keras_resnets.ResNet20()
        >>> load_weights_file(model, "runs/demo/model.keras")  # doctest: +SKIP
    """
    check_model(model)
    path = check_path("path", path)
    if not path.endswith(_SUFFIXES):
        raise ValueError(
            f"`weights` must be None or a path ending in .weights.h5 or .keras, got {path!r}."
        )
    if not os.path.isfile(path):
        raise ValueError(f"`weights` file {path!r} does not exist.")
    stored = saved_with_stochastic_depth(path)
    has = any(layer.__class__.__name__ == "StochasticDepth" for layer in model.layers)
    if stored is not None and stored != has:
        raise ValueError(
            f"`weights` file {path!r} was saved from a model "
            f"{'with' if stored else 'without'} stochastic depth and model {model.name!r} has "
            f"{'none' if stored else 'some'} (`drop_path_rate` {'0' if stored else '> 0'}): "
            "their layers nest differently. Pass the file as `weights=` to the model's "
            "builder, which loads it either way, or use `copy_weights_by_name`."
        )
    with _open_h5(path) as h5:
        # A `.keras` file records the layer names: the clearest difference. The
        # shapes come next (naming the layer), then the layers without weights
        # (an `Add` a plain network lacks), which a `.weights.h5` file records
        # only as groups named after their class.
        if path.endswith(".keras"):
            _refuse_difference(model, path, _architecture_difference(model, path))
        nested = _check_shapes(model, h5, path)
        _refuse_difference(model, path, _group_difference(model, h5["layers"]))
    if not nested:
        model.load_weights(path)
        return
    snapshot = [variable.numpy() for variable in model.weights]
    try:
        model.load_weights(path)
    except Exception as exc:  # Keras raises ValueError or KeyError, depending on the mismatch
        for variable, value in zip(model.weights, snapshot, strict=True):
            variable.assign(value)
        raise ValueError(
            f"`weights` file {path!r} does not match the model inside a nested layer "
            f"(the model's weights are unchanged): {exc}"
        ) from exc


from keras_resnets.weights.torch_checkpoint import (  # noqa: E402
    load_torch_checkpoint,
    read_torch_checkpoint,
)
