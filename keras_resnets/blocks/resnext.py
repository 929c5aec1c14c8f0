"""ResNeXt's aggregated bottleneck in the paper's three equivalent forms.

Xie et al. (2017, Figure 3): a bottleneck whose 3x3 convolution has
`groups` groups aggregates `groups` paths of `width / groups` channels. The
three forms compute the same function of the same weights:

- `"c"` (default): one grouped 3x3 convolution (`GroupedConv2D`). Layers
  `{name}_conv1`, `_bn1`, `_relu1`, `_conv2`, `_bn2`, `_relu2`, `_conv3`,
  `_bn3`, exactly as a ResNet bottleneck (built by `blocks.units`).
- `"b"`: `groups` paths `{name}_path{p}_conv1`/`_bn1`/`_relu1`/`_conv2`/
  `_bn2`/`_relu2`, concatenated (`{name}_concat`), then `{name}_conv3`,
  `{name}_bn3`.
- `"a"`: each path also has its own `{name}_path{p}_conv3`
  (`width / groups` -> output channels); the paths are summed
  (`{name}_sum`) and normalised by `{name}_bn3`.

With `groups == 1` every form is the plain bottleneck (form "c" names).
`copy_form_weights` copies the weights of a model in one form into a model
in another.
"""

from __future__ import annotations

import re

import keras
import numpy as np

from keras_resnets.blocks.conv_bn import batch_norm, conv, relu

FORMS = ("a", "b", "c")


def path_branch(
    x,
    out_channels: int,
    *,
    paths: int,
    path_width: int,
    strides: int,
    stride_in_1x1: bool,
    name: str,
    summed: bool,
):
    """Forms "a" (`summed=True`) and "b" of a ResNeXt bottleneck branch.

    Args:
        x: input tensor (NHWC).
        out_channels: the branch's output channels.
        paths: number of paths (the cardinality).
        path_width: channels of each path's 1x1 and 3x3 convolutions.
        strides: the block's stride, on each path's 3x3 convolution (or its
            first 1x1 with `stride_in_1x1`).
        stride_in_1x1: see above.
        name: layer name prefix.
        summed: form "a" (per-path `conv3`, summed) rather than "b"
            (concatenated, one `conv3`).

    Returns:
        The branch output after `{name}_bn3` (before the addition).
    """
    s1, s3 = (strides, 1) if stride_in_1x1 else (1, strides)
    outputs = []
    for index in range(1, paths + 1):
        prefix = f"{name}_path{index}"
        path = conv(x, path_width, 1, strides=s1, name=f"{prefix}_conv1")
        path = batch_norm(path, name=f"{prefix}_bn1")
        path = relu(path, name=f"{prefix}_relu1")
        path = conv(path, path_width, 3, strides=s3, name=f"{prefix}_conv2")
        path = batch_norm(path, name=f"{prefix}_bn2")
        path = relu(path, name=f"{prefix}_relu2")
        if summed:
            path = conv(path, out_channels, 1, name=f"{prefix}_conv3")
        outputs.append(path)
    if summed:
        branch = keras.layers.Add(name=f"{name}_sum")(outputs)
    else:
        branch = keras.layers.Concatenate(name=f"{name}_concat")(outputs)
        branch = conv(branch, out_channels, 1, name=f"{name}_conv3")
    return batch_norm(branch, name=f"{name}_bn3")


_PATH = re.compile(r"^(?P<block>.+)_path(?P<index>\d+)_(?P<kind>conv1|bn1|conv2|bn2|conv3)$")


def _canonical(model: keras.Model) -> dict[str, list[np.ndarray]]:
    """The model's weights by form-"c" layer name (paths merged into groups)."""
    weights: dict[str, list[np.ndarray]] = {}
    paths: dict[tuple[str, str], dict[int, list[np.ndarray]]] = {}
    for layer in model.layers:
        values = [np.asarray(w) for w in layer.get_weights()]
        if not values:
            continue
        match = _PATH.match(layer.name)
        if match is None:
            weights[layer.name] = values
            continue
        key = (match["block"], match["kind"])
        paths.setdefault(key, {})[int(match["index"])] = values
    for (block, kind), by_index in paths.items():
        ordered = [by_index[i] for i in sorted(by_index)]
        # Output channels (kernel axis 3, BN vectors) concatenate path by path:
        # that is also the layout of a grouped kernel (kh, kw, in/groups, out).
        # The per-path conv3 of form "a" splits the input channels instead.
        axis = 2 if kind == "conv3" else -1
        weights[f"{block}_{kind}"] = [
            np.concatenate(parts, axis=axis) for parts in zip(*ordered, strict=True)
        ]
    return weights


def copy_form_weights(source: keras.Model, target: keras.Model) -> None:
    """Copy the weights of a ResNeXt in one form into the same network in another.

    The three forms of Xie et al. (2017, Figure 3) compute the same function:
    path p of forms "a"/"b" holds group p of form "c"'s `conv1`, `bn1`,
    grouped `conv2` and `bn2` (output channels `p*d:(p+1)*d`), and form "a"'s
    per-path `conv3` is form "c"'s `conv3` restricted to those input
    channels. Every other layer is copied by name.

    Args:
        source: a model built by a ResNeXt builder with any `form`.
        target: the same builder and options with any `form`.

    Raises:
        ValueError: a target layer has no counterpart in `source`, or its
            shapes differ (the message names the layer).

    Example:
        >>> c = keras_resnets.CifarResNeXt(depth=11, cardinality=2, base_width=4)
        >>> a = keras_resnets.CifarResNeXt(depth=11, cardinality=2, base_width=4, form="a")
        >>> keras_resnets.copy_form_weights(c, a)
    """
    weights = _canonical(source)
    for layer in target.layers:
        current = layer.get_weights()
        if not current:
            continue
        match = _PATH.match(layer.name)
        key = layer.name if match is None else f"{match['block']}_{match['kind']}"
        if key not in weights:
            raise ValueError(
                f"Layer {layer.name!r} of {target.name!r} has no counterpart {key!r} in "
                f"{source.name!r}: the two models are not the same network."
            )
        values = weights[key]
        if match is not None:
            index = int(match["index"]) - 1
            axis = 2 if match["kind"] == "conv3" else -1
            values = [
                np.take(
                    value,
                    np.arange(index * cur.shape[axis], (index + 1) * cur.shape[axis]),
                    axis=axis,
                )
                for value, cur in zip(values, current, strict=True)
            ]
        shapes = [v.shape for v in values]
        expected = [tuple(c.shape) for c in current]
        if [tuple(s) for s in shapes] != expected:
            raise ValueError(
                f"Layer {layer.name!r}: {source.name!r} gives shapes {shapes}, "
                f"{target.name!r} expects {expected}."
            )
        layer.set_weights(values)
