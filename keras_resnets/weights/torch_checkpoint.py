"""Loading PyTorch checkpoints (torchvision / timm layouts) into Keras models.

`.safetensors` files are read with the `safetensors` package's numpy API, so
no PyTorch is needed; `.pth` / `.pt` state dicts need PyTorch. Every Keras
weight is filled from a tensor found by name (see `keras_resnets.weights.tables`),
and every tensor of the checkpoint must be used: a mismatch raises
`ValueError` naming the first offending layer or tensor, before any weight of
the model changes.
"""

from __future__ import annotations

import os

import keras
import numpy as np

from keras_resnets.utils import sublayers
from keras_resnets.weights import check_model, check_path, tables

__all__ = ["CHECKPOINT_SUFFIXES", "load_torch_checkpoint", "read_torch_checkpoint"]

CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt")

# Keras variable attribute -> PyTorch tensor suffix, per kind.
_VARIABLES = {
    "conv": (("kernel", "weight"), ("bias", "bias")),
    "conv1d": (("kernel", "weight"), ("bias", "bias")),
    "bn": (
        ("gamma", "weight"),
        ("beta", "bias"),
        ("moving_mean", "running_mean"),
        ("moving_variance", "running_var"),
    ),
    "dense": (("kernel", "weight"), ("bias", "bias")),
}
_LAYER_CLASSES = {
    "conv": ("Conv2D", "GroupedConv2D"),
    "conv1d": ("Conv1D",),
    "bn": ("BatchNormalization",),
    "dense": ("Dense",),
}
_OPTIONAL = ("num_batches_tracked",)


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file  # a core requirement (setup.cfg)

    try:
        return dict(load_file(path))
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"Checkpoint {path!r} is not a readable .safetensors file: {exc}") from exc


def _read_pth(path: str) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            f"Reading the PyTorch checkpoint {path!r} needs PyTorch, which is not installed. "
            "Install it (pip install torch), or use the .safetensors file of the same weights, "
            "which needs no PyTorch."
        ) from exc
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"Checkpoint {path!r} could not be read by torch.load: {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(
            f"Checkpoint {path!r} holds a {type(state).__name__}, not a state dict of tensors."
        )
    arrays = {}
    for name, value in state.items():
        if not hasattr(value, "detach"):
            raise ValueError(f"Checkpoint {path!r}: entry {name!r} is not a tensor.")
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        arrays[name.removeprefix("module.")] = value.numpy()
    return arrays


def read_torch_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a PyTorch checkpoint into a dict of numpy arrays.

    Args:
        path: a `.safetensors` file (needs only the `safetensors` package) or
            a `.pth`/`.pt` state dict (needs PyTorch). A state dict nested
            under `"state_dict"` or `"model"` and DataParallel's `module.`
            prefix are unwrapped.

    Returns:
        `{tensor name: numpy array}`.

    Raises:
        TypeError: `path` is not a path (None, a number).
        ValueError: the file is missing, has another suffix or cannot be read.
        ImportError: a `.pth`/`.pt` file and PyTorch is not installed.

    Example:
        >>> state = read_torch_checkpoint("resnet50.safetensors")  # doctest: +SKIP
        >>> state["conv1.weight"].shape  # doctest: +SKIP
        (64, 3, 7, 7)
    """
    path = check_path("path", path)
    if not path.endswith(CHECKPOINT_SUFFIXES):
        raise ValueError(
            f"Checkpoint {path!r} must end in .safetensors, .pth or .pt "
            "(a PyTorch state dict of a torchvision/timm model)."
        )
    if not os.path.isfile(path):
        raise ValueError(f"Checkpoint {path!r} does not exist.")
    if path.endswith(".safetensors"):
        return _read_safetensors(path)
    return _read_pth(path)


def _leaf_layers(model: keras.Model):
    """The layers without sub-layers, nested ones included (DenseBlock's, SplitAttention's)."""
    found, seen = [], set()

    def visit(layer):
        children = sublayers(layer)
        if not children:
            if id(layer) not in seen:
                seen.add(id(layer))
                found.append(layer)
            return
        for child in children:
            visit(child)

    for layer in model.layers:
        visit(layer)
    return found


def _check_tensor(source: str, key: str, tensor) -> None:
    """Refuse a weight tensor that is not floating point or holds NaN or infinite values."""
    array = np.asarray(tensor)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(
            f"Checkpoint {source!r}: tensor {key!r} has dtype {array.dtype}, not a floating "
            "point type: it is not a weight of a trained model."
        )
    if not np.all(np.isfinite(array)):
        count = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(
            f"Checkpoint {source!r}: tensor {key!r} holds {count} NaN or infinite values; "
            "the model it was saved from diverged."
        )


def check_layout(layout) -> str | None:
    """`layout` as given, after checking it is None or one of `tables.LAYOUTS`."""
    if layout is None:
        return None
    if not isinstance(layout, str):
        raise TypeError(
            f"`layout` must be None (detect it from the keys) or one of {tables.LAYOUTS}, "
            f"got {layout!r} of type {type(layout).__name__}."
        )
    if layout not in tables.LAYOUTS:
        raise ValueError(
            f"`layout` must be None (detect it from the keys) or one of {tables.LAYOUTS}, "
            f"got {layout!r}."
        )
    return layout


def plan_assignments(
    model: keras.Model, state: dict[str, np.ndarray], source: str, layout: str | None = None
) -> list[tuple[keras.Variable, np.ndarray]]:
    """Match every Keras weight of `model` to a tensor of `state`.

    Args:
        model: the model to fill.
        state: `{tensor name: array}` of the checkpoint.
        source: the checkpoint's name, for messages.
        layout: `"torchvision"`, `"timm"` or None (`tables.detect_layout` of
            the keys).

    Returns:
        `(variable, value)` pairs, values already transformed to Keras layout.

    Raises:
        ValueError: naming the first layer no table row names, the first
            tensor missing, of the wrong shape, not floating point or holding
            NaN or infinite values, or the first tensor left unused.
    """
    layout = check_layout(layout) or tables.detect_layout(state)
    leaves = _leaf_layers(model)
    layers = [layer for layer in leaves if layer.weights]
    # downsample="avg" puts a pool named {unit}_shortcut_pool before each strided shortcut.
    avg_down = any(layer.name.endswith("_shortcut_pool") for layer in leaves)
    table, unmatched = tables.table_for([layer.name for layer in layers], layout, avg_down)
    if unmatched:
        raise ValueError(
            f"Model {model.name!r} has layer {unmatched[0]!r}, which the {table.family} "
            f"conversion table ({layout} layout) does not name ({len(unmatched)} such layers "
            f"in all); the checkpoint {source!r} cannot be converted into it."
        )
    if table.rename is not None:
        state = {table.rename(key): value for key, value in state.items()}
    used: set[str] = set()
    plan = []
    for layer in layers:
        prefix, kind = table.target(layer.name)
        class_name = layer.__class__.__name__
        if class_name not in _LAYER_CLASSES[kind]:
            raise ValueError(
                f"Layer {layer.name!r} is a {class_name}; the {table.family} table expects "
                f"a {' or '.join(_LAYER_CLASSES[kind])} there."
            )
        for attribute, suffix in _VARIABLES[kind]:
            variable = getattr(layer, attribute, None)
            key = f"{prefix}.{suffix}"
            if variable is None:
                if key in state:
                    raise ValueError(
                        f"Checkpoint {source!r} has {key!r}, but layer {layer.name!r} has no "
                        f"{attribute} (built with use_bias=False?)."
                    )
                continue
            if key not in state:
                raise ValueError(
                    f"Checkpoint {source!r} has no tensor {key!r}, needed for the {attribute} "
                    f"of layer {layer.name!r}."
                )
            _check_tensor(source, key, state[key])
            value = tables.transform(kind, np.asarray(state[key]), attribute)
            want = tuple(variable.shape)
            if tuple(value.shape) != want:
                raise ValueError(
                    f"Checkpoint {source!r} does not match the model at layer {layer.name!r}: "
                    f"tensor {key!r} of shape {tuple(state[key].shape)} gives "
                    f"{tuple(value.shape)} in Keras layout, the {attribute} has shape {want}."
                )
            used.add(key)
            plan.append((variable, value))
        for suffix in _OPTIONAL:
            used.add(f"{prefix}.{suffix}")
    has_top = any(table.target(layer.name) == (table.classifier, "dense") for layer in layers)
    unused = sorted(
        key
        for key in state
        if key not in used and not (not has_top and key.startswith(table.classifier + "."))
    )
    if unused:
        raise ValueError(
            f"Checkpoint {source!r} has tensors that model {model.name!r} does not use, "
            f"first {unused[0]!r} ({len(unused)} in all): it is not the same architecture."
        )
    return plan


def load_torch_checkpoint(
    model: keras.Model, path: str | os.PathLike, layout: str | None = None
) -> None:
    """Load a torchvision/timm PyTorch checkpoint into a model of this package.

    The tensors are found by name through the family's name table
    (`keras_resnets.weights.tables`) and transformed to Keras layouts
    (convolution kernels OIHW -> HWIO, grouped kernels likewise, ECA's Conv1d
    kernels `(1, 1, k)` -> `(k, 1, 1)`, dense kernels transposed,
    BatchNormalization running statistics to moving mean and variance).
    Every Keras weight must be filled and every tensor used (the
    classifier's are skipped when the model has no top); otherwise nothing is
    changed and a `ValueError` names the first mismatch.

    Args:
        model: a model of this package in the ImageNet layout (ResNet v1,
            ResNeXt, Wide ResNet, DenseNet, and issue 18's ResNet-D/T,
            SE-ResNet(Xt), ECA-ResNet, ResNet-RS, ResNeSt), any input size,
            with or without its top.
        path: a `.safetensors` file (no PyTorch needed) or a `.pth`/`.pt`
            state dict (needs PyTorch).
        layout: the tensor names: `"torchvision"` (torchvision's modules;
            also timm's plain `resnet*`/`resnext*`/`wide_resnet*`/
            `densenet*`), `"timm"` (timm's `ResNet` with deep stems,
            average-pool shortcuts, SE/ECA, split attention; a superset of
            the first for ResNets) or None (default: detected from the keys,
            `tables.detect_layout`).

    Raises:
        TypeError: `model` is not a `keras.Model`, `path` not a path, or
            `layout` not a string.
        ValueError: `layout` is not None, `"torchvision"` or `"timm"`; the
            file is missing or unreadable, does not match the model (the
            message names the first layer or tensor that differs), or a
            tensor is not floating point or not finite (naming it).
        ImportError: a `.pth`/`.pt` file and PyTorch is not installed.

    Example:
        >>> model = keras_resnets.ResNet50()
        >>> load_torch_checkpoint(model, "resnet50.tv_in1k.safetensors")  # doctest: +SKIP
        >>> model = keras_resnets.ResNet50D()
        >>> load_torch_checkpoint(model, "resnet50d.ra2_in1k.safetensors")  # doctest: +SKIP
    """
    check_model(model)
    source = check_path("path", path)
    layout = check_layout(layout)
    state = read_torch_checkpoint(source)
    for variable, value in plan_assignments(model, state, source, layout):
        variable.assign(value.astype(variable.dtype))
