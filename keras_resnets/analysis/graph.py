"""Find the blocks of a keras_resnets model in its graph.

Every analysis works on the model's functional graph, never on its code, and
reads the structure its builder recorded (`Network.feature_info`: the stem
and each stage, with the layer that ends it, its channels and reduction):

- `find_blocks(model)` looks for blocks inside the recorded stages only: a
  residual block is a merge layer named `{block}_add` (the layer-name
  contract of every residual family), a block of a plain network a layer
  named `{block}_out`; the graph around the merge tells the branch from the
  shortcut and gives each block's input and output tensors. Each block's
  stage, and whether it downsamples (the first block of a stage whose
  recorded reduction or channels differ from the previous entry's), come
  from `feature_info`. A model without `feature_info` gets a `ValueError`
  naming it.
- `rebuild(model, ...)` (in `analysis.rebuild`) replays the graph into a
  fresh model, with blocks removed, reordered or gated.

`find_blocks` works on a `Network` or on a model nesting one as a layer (a
backbone with a new head, say): the nested network's blocks are returned.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import keras

from keras_resnets.models.network import Network, recorded_network

ADD_SUFFIX = "_add"  # a residual block's merge: `{block}_add`
OUT_SUFFIX = "_out"  # a plain block's last layer: `{block}_out`


@dataclasses.dataclass(frozen=True)
class Block:
    """One block of a network, found inside its recorded stages.

    Attributes:
        name: the block's layer-name prefix, e.g. `"stage2_block3"`.
        residual: True for a residual block (`{name}_add` merges a branch
            and a shortcut); False for a block of a plain network.
        input: the block's input tensor in the network's graph.
        output: the block's output tensor (after the post-merge layers such
            as `{name}_out`).
        stage: the name of the recorded stage (`feature_info`) that holds
            the block, e.g. `"stage2"`.
        downsampling: True for the first block of a stage whose recorded
            reduction or channels differ from the previous entry's (the
            stem's or the previous stage's): the block that changes the shape.
        branch: the residual branch's tensor entering `{name}_add` (None
            for plain blocks).
        shortcut: the shortcut's tensor entering `{name}_add` (None for
            plain blocks).
        add_layer: name of the merge layer (None for plain blocks).
        identity_shortcut: True when the shortcut is the block input itself.
        same_shape: True when input and output shapes are equal.
        owns_branch: True when the merge layer owns the branch (stochastic
            depth's `StochasticDepth` wraps it; `branch` is then None).
    """

    name: str
    residual: bool
    input: object
    output: object
    branch: object = None
    shortcut: object = None
    add_layer: str | None = None
    identity_shortcut: bool = False
    same_shape: bool = False
    owns_branch: bool = False
    stage: str | None = None
    downsampling: bool = False

    @property
    def removable(self) -> bool:
        """Whether the block can be deleted at test time.

        A residual block always can (its shortcut stays); a plain block only
        when its input and output shapes are equal.
        """
        return self.residual or self.same_shape


class _Graph:
    """The functional graph of a model: producers, inputs and topological order."""

    def __init__(self, model: keras.Model):
        if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth"):
            raise TypeError(
                "`model` must be a functional keras.Model (for example one built by "
                f"keras_resnets), got {type(model).__name__}."
            )
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ValueError(
                f"`model` must have one input and one output, got {len(model.inputs)} "
                f"inputs and {len(model.outputs)} outputs."
            )
        self.model = model
        self.input = model.inputs[0]
        history = getattr(self.input, "_keras_history", None)
        self.input_layer_name = None if history is None else history.operation.name
        self.output = model.outputs[0]
        self.layers: list = []
        self.index: dict[str, int] = {}
        self.producer: dict[int, object] = {}
        self.consumers: dict[int, list] = {}
        for layer in model.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            if len(layer._inbound_nodes) != 1:
                raise ValueError(
                    f"Layer {layer.name!r} is called {len(layer._inbound_nodes)} times in "
                    "the model; the analysis tools need each layer called once."
                )
            self.index[layer.name] = len(self.layers)
            self.layers.append(layer)
            for tensor in keras.tree.flatten(self.call_output(layer)):
                self.producer[id(tensor)] = layer
            for tensor in self.inputs_of(layer):
                self.consumers.setdefault(id(tensor), []).append(layer)

    @staticmethod
    def _called(layer, side: str):
        """The `side` ("input" or "output") of `layer`'s one call in this graph.

        A nested model's own `.input` and `.output` are its inner tensors, not
        those of the call; its node holds those.
        """
        if not isinstance(layer, keras.Model):
            return getattr(layer, side)
        node = layer._inbound_nodes[0]
        tensors = node.input_tensors if side == "input" else node.output_tensors
        return tensors[0] if len(tensors) == 1 else list(tensors)

    @classmethod
    def call_input(cls, layer):
        return cls._called(layer, "input")

    @classmethod
    def call_output(cls, layer):
        return cls._called(layer, "output")

    @classmethod
    def inputs_of(cls, layer) -> list:
        return keras.tree.flatten(cls.call_input(layer))

    def producer_name(self, tensor) -> str | None:
        layer = self.producer.get(id(tensor))
        return None if layer is None else layer.name

    def ancestors(self, tensor, stop: Iterable = ()) -> list:
        """Layers that `tensor` depends on, stopping at the tensors in `stop`."""
        stop_ids = {id(t) for t in stop}
        seen: dict[str, object] = {}
        stack = [tensor]
        while stack:
            t = stack.pop()
            if id(t) in stop_ids:
                continue
            layer = self.producer.get(id(t))
            if layer is None or layer.name in seen:
                continue
            seen[layer.name] = layer
            stack.extend(self.inputs_of(layer))
        return sorted(seen.values(), key=lambda layer: self.index[layer.name])


def _is_shortcut(graph: _Graph, tensor, prefix: str) -> bool:
    name = graph.producer_name(tensor)
    return name is None or not name.startswith(prefix + "_") or "shortcut" in name[len(prefix) :]


def _owns_branch(layer) -> bool:
    """A merge layer that owns its residual branch (issue 6's `StochasticDepth`)."""
    return isinstance(getattr(layer, "branch", None), keras.layers.Layer) and hasattr(
        layer, "survival_probability"
    )


def _walk_out(graph: _Graph, tensor, prefix: str):
    """Follow single-consumer layers named `{prefix}_*` after the merge."""
    while True:
        consumers = graph.consumers.get(id(tensor), [])
        if len(consumers) != 1 or not consumers[0].name.startswith(prefix + "_"):
            return tensor
        layer = consumers[0]
        if len(graph.inputs_of(layer)) != 1 or len(keras.tree.flatten(layer.output)) != 1:
            return tensor
        tensor = keras.tree.flatten(layer.output)[0]


def _block_input(graph: _Graph, tensor, prefix: str):
    """The one tensor from outside the block that the layers `{prefix}_*` read."""
    outside = {}
    for layer in graph.ancestors(tensor):
        if not layer.name.startswith(prefix + "_"):
            continue
        for t in graph.inputs_of(layer):
            name = graph.producer_name(t)
            if name is None or not name.startswith(prefix + "_"):
                outside[id(t)] = t
    if len(outside) != 1:
        raise ValueError(
            f"Block {prefix!r} reads {len(outside)} tensors from outside its layers "
            "(expected one, the block input); the analysis tools cannot isolate it."
        )
    return next(iter(outside.values()))


def _stage_spans(graph: _Graph, network: Network) -> list[tuple[dict, dict | None, int]]:
    """Each recorded stage with the entry before it and the index of its last layer.

    The stem's layer may be the input layer (index -1).
    """
    spans, previous = [], None
    for entry in network.feature_info:
        index = graph.index.get(entry["layer"], -1)
        if entry["layer"] not in graph.index and entry["layer"] != graph.input_layer_name:
            raise ValueError(
                f"Model {network.name!r} records stage {entry['name']!r} as ending at layer "
                f"{entry['layer']!r}, which is not in its graph."
            )
        if entry["name"] != "stem":
            spans.append((entry, previous, index))
        previous = entry
    if not spans:
        raise ValueError(f"Model {network.name!r} records no stages in its `feature_info`.")
    return spans


def _in_stages(graph: _Graph, blocks: list[Block], network: Network) -> list[Block]:
    """The blocks inside the recorded stages, each with its stage and downsampling flag."""
    spans = _stage_spans(graph, network)
    first = spans[0][1]
    start = -1 if first is None else graph.index.get(first["layer"], -1)
    placed, seen_stages = [], set()
    for block in blocks:
        end = graph.index[graph.producer_name(block.output)]
        if end <= start:
            continue  # in the stem
        span = next(((e, p) for e, p, last in spans if end <= last), None)
        if span is None:
            continue  # after the last stage (the head)
        entry, previous = span
        downsampling = False
        if entry["name"] not in seen_stages:
            seen_stages.add(entry["name"])
            before = (
                (1, int(graph.input.shape[-1]))
                if previous is None
                else (
                    previous["reduction"],
                    previous["channels"],
                )
            )
            downsampling = (entry["reduction"], entry["channels"]) != before
        placed.append(dataclasses.replace(block, stage=entry["name"], downsampling=downsampling))
    return placed


def find_blocks(model: keras.Model) -> list[Block]:
    """Find the residual blocks (or the plain blocks) in the recorded stages of a model.

    The stages come from the model's `feature_info` (recorded by its
    builder); blocks are looked for between the stem and the end of the
    last stage. Residual blocks are found from their merge layers,
    `keras.layers.Add` layers named `{block}_add` with two inputs: the input
    whose layer is outside the block (identity shortcut) or has `shortcut`
    in its name is the shortcut, the other is the branch. This holds for
    every residual family of keras_resnets (ResNet v1, pre-activation,
    ResNeXt, Wide ResNet, stochastic depth, whose branch may be wrapped in a
    sub-model). In a model with no residual blocks, the blocks of a plain
    network (Plain, Highway) are found from their `{block}_out` layers.

    Args:
        model: a `Network` built by keras_resnets, or a model nesting one as
            a layer (the nested network's blocks are returned).

    Returns:
        The blocks in graph order, each with its `stage` and `downsampling`
        flag read from `feature_info`.

    Raises:
        TypeError: `model` is not a keras.Model.
        ValueError: the model carries no `feature_info` (the message names
            it), has no blocks named this way in its stages (DenseNet), or a
            layer named `{block}_add` is not an `Add` of one branch and one
            shortcut.

    Example:
        >>> blocks = find_blocks(keras_resnets.ResNet20())
        >>> [(b.name, b.stage) for b in blocks][:2]
        [('stage1_block1', 'stage1'), ('stage1_block2', 'stage1')]
    """
    network = recorded_network(model)
    graph = _Graph(network)
    found = []
    merges = [layer for layer in graph.layers if layer.name.endswith(ADD_SUFFIX)]
    for layer in merges:
        prefix = layer.name[: -len(ADD_SUFFIX)]
        inputs = graph.inputs_of(layer)
        if _owns_branch(layer):
            # StochasticDepth(branch)(x) or (...)([x, shortcut]): x feeds the branch.
            output = _walk_out(graph, keras.tree.flatten(layer.output)[0], prefix)
            found.append(
                Block(
                    name=prefix,
                    residual=True,
                    input=inputs[0],
                    output=output,
                    shortcut=inputs[-1],
                    add_layer=layer.name,
                    identity_shortcut=len(inputs) == 1,
                    same_shape=tuple(inputs[0].shape) == tuple(output.shape),
                    owns_branch=True,
                )
            )
            continue
        kinds = [_is_shortcut(graph, t, prefix) for t in inputs]
        if not isinstance(layer, keras.layers.Add) or len(inputs) != 2 or sum(kinds) != 1:
            raise ValueError(
                f"Layer {layer.name!r} ({type(layer).__name__} of {len(inputs)} inputs) is "
                "named like a residual merge but is not a keras.layers.Add of one branch "
                "and one shortcut; the analysis tools cannot take this block apart."
            )
        shortcut = inputs[kinds.index(True)]
        branch = inputs[kinds.index(False)]
        block_input = _block_input(graph, branch, prefix)
        output = _walk_out(graph, keras.tree.flatten(layer.output)[0], prefix)
        found.append(
            Block(
                name=prefix,
                residual=True,
                input=block_input,
                output=output,
                branch=branch,
                shortcut=shortcut,
                add_layer=layer.name,
                identity_shortcut=shortcut is block_input,
                same_shape=tuple(block_input.shape) == tuple(output.shape),
            )
        )
    if not merges:
        for layer in graph.layers:
            if not layer.name.endswith(OUT_SUFFIX):
                continue
            prefix = layer.name[: -len(OUT_SUFFIX)]
            output = keras.tree.flatten(layer.output)[0]
            block_input = _block_input(graph, output, prefix)
            found.append(
                Block(
                    name=prefix,
                    residual=False,
                    input=block_input,
                    output=output,
                    same_shape=tuple(block_input.shape) == tuple(output.shape),
                )
            )
    found = _in_stages(graph, found, network)
    if not found:
        raise ValueError(
            f"Model {model.name!r} has no blocks named `{{block}}_add` (residual) or "
            "`{block}_out` (plain) in its recorded stages; the analysis tools find blocks "
            "by these layer names."
        )
    return found
