"""Find the blocks of a keras_resnets model in its graph and rebuild the graph.

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
- `rebuild(model, ...)` replays the graph layer by layer into a fresh
  `keras.Model` (new layer objects holding copies of the weights), with
  branches removed, blocks reordered or a gate put on each branch. The
  original model is never modified: calling its layers on new symbolic
  tensors would add nodes to them, so every layer is copied first.

Both work on a `Network` or on a model nesting one as a layer (a backbone
with a new head, say): the nested network's blocks are found and rebuilt,
and the wrapper's own layers are replayed around it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence

import keras

from keras_resnets.models.network import Network, find_network, recorded_network

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
    def call_input(layer):
        """What `layer` was called on in this graph (a nested model's `.input` is its own)."""
        if isinstance(layer, keras.Model):
            tensors = layer._inbound_nodes[0].input_tensors
            return tensors[0] if len(tensors) == 1 else list(tensors)
        return layer.input

    @staticmethod
    def call_output(layer):
        """What `layer`'s call returned in this graph."""
        if isinstance(layer, keras.Model):
            tensors = layer._inbound_nodes[0].output_tensors
            return tensors[0] if len(tensors) == 1 else list(tensors)
        return layer.output

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


def _owned_branch_output(merge, x):
    """The branch term a branch-owning merge adds at inference (scaled by p for scale="test")."""
    y = merge.branch(x, training=False)
    if getattr(merge, "scale", "test") == "test" and merge.survival_probability != 1.0:
        y = keras.layers.Rescaling(merge.survival_probability, name=f"{merge.name}_test_scale")(y)
    return y


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


def _resolve_names(blocks: Sequence[Block], names: Iterable[str], argument: str) -> list[Block]:
    by_name = {b.name: b for b in blocks}
    if isinstance(names, str):
        names = [names]
    chosen = []
    for name in names:
        if name not in by_name:
            listed = ", ".join(by_name)
            raise ValueError(f"Unknown block {name!r} in `{argument}`; the blocks are: {listed}.")
        chosen.append(by_name[name])
    return chosen


def _copy_layer(layer):
    """A new layer object with the same configuration (weights copied after build)."""
    if isinstance(layer, keras.Model):
        return keras.models.clone_model(layer)
    return layer.__class__.from_config(layer.get_config())


def rebuild(
    model: keras.Model,
    *,
    remove: Iterable[str] = (),
    order: Sequence[str] | None = None,
    wrap_merge: Callable | None = None,
    name: str | None = None,
) -> keras.Model:
    """Rebuild `model` as a fresh functional model, optionally lesioned.

    Every layer is copied (same configuration, same weights), so the result
    shares nothing with `model` and `model` is left untouched.

    Args:
        model: a `Network` with blocks `find_blocks` finds, or a model
            nesting one (its own layers are copied around the rebuilt
            network).
        remove: names of blocks to delete. A residual block keeps its
            shortcut and what follows the merge (`{block}_out`): its output
            becomes `out(shortcut(x))`. A plain block is replaced by the
            identity, which needs equal input and output shapes.
        order: the blocks in the order to run them (a permutation of the
            block names); a block may only move to a position whose input and
            output shapes match its own. None keeps the graph's order.
        wrap_merge: `wrap_merge(block, merge_layer, shortcut, branch) ->
            tensor` replaces the call of each residual block's merge layer
            (used to put a gate on the branch). A merge that owns its branch
            (stochastic depth) is unfolded into its inference-time form,
            `Add([shortcut, p * branch(x)])`, so the result is for inference.
        name: name of the new model (default `"{model.name}_rebuilt"`).

    Returns:
        A new functional `keras.Model`.

    Raises:
        ValueError: no `feature_info` (see `find_blocks`), unknown block
            names, a plain block whose shape changes, or an order that is not
            a shape-compatible permutation of a chain.

    Example:
        >>> model = keras_resnets.ResNet20()
        >>> lesioned = rebuild(model, remove=["stage1_block2"])
    """
    network = recorded_network(model)
    if network is not model:
        lesion = dict(remove=remove, order=order, wrap_merge=wrap_merge)
        return _rebuild_around(model, network, name or f"{model.name}_rebuilt", lesion)
    graph = _Graph(model)
    blocks = find_blocks(model)
    removed = {b.name for b in _resolve_names(blocks, remove, "remove")}
    for block in blocks:
        if block.name in removed and not block.removable:
            raise ValueError(
                f"Block {block.name!r} of plain model {model.name!r} changes the shape "
                f"from {tuple(block.input.shape)} to {tuple(block.output.shape)}, so it "
                "cannot be removed; remove only blocks with equal input and output shapes."
            )
    by_add = {b.add_layer: b for b in blocks if b.residual}

    copies: dict[str, object] = {}

    def call(layer, args):
        if layer.name not in copies:
            copies[layer.name] = _copy_layer(layer)
        copy = copies[layer.name]
        block = by_add.get(layer.name)
        if block is not None and wrap_merge is not None:
            if block.owns_branch:
                values = keras.tree.flatten(args)
                shortcut_value = values[-1]
                branch_value = _owned_branch_output(copy, values[0])
                merge = keras.layers.Add(name=f"{block.name}_add_unwrapped")
                return wrap_merge(block, merge, shortcut_value, branch_value)
            shortcut_value, branch_value = _split_merge_args(graph, layer, block, args)
            return wrap_merge(block, copy, shortcut_value, branch_value)
        return copy(args)

    aliases: dict[int, object] = {}
    for block in blocks:
        if block.name not in removed:
            continue
        if block.residual:
            add = graph.layers[graph.index[block.add_layer]]
            aliases[id(keras.tree.flatten(add.output)[0])] = block.shortcut
        else:
            aliases[id(block.output)] = block.input

    inputs = _fresh_input(graph)
    if order is None:
        outputs = _evaluate(graph, graph.output, {id(graph.input): inputs}, aliases, call)
    else:
        outputs = _evaluate_in_order(graph, blocks, order, inputs, aliases, call)
    new = keras.Model(inputs, outputs, name=name or f"{model.name}_rebuilt")
    for layer_name, copy in copies.items():
        original = graph.layers[graph.index[layer_name]]
        if by_add.get(layer_name) is not None and by_add[layer_name].owns_branch:
            if wrap_merge is not None:  # only the owned branch was called
                copy.branch.set_weights(original.branch.get_weights())
                continue
        copy.set_weights(original.get_weights())
    return new


def _fresh_input(graph: _Graph):
    return keras.Input(
        shape=tuple(graph.input.shape[1:]), dtype=graph.input.dtype, name=graph.input.name
    )


def _rebuild_around(model: keras.Model, network: Network, name: str, lesion: dict):
    """Replay `model`'s own layers (copies) around the rebuilt `network` nested in it."""
    graph = _Graph(model)
    copies: dict[str, object] = {}
    rebuilt: set[str] = set()

    def call(layer, args):
        if layer.name not in copies:
            if (
                isinstance(layer, keras.Model)
                and find_network(layer, with_feature_info=True) is network
            ):
                copies[layer.name] = rebuild(layer, name=layer.name, **lesion)
                rebuilt.add(layer.name)
            else:
                copies[layer.name] = _copy_layer(layer)
        return copies[layer.name](args)

    inputs = _fresh_input(graph)
    outputs = _evaluate(graph, graph.output, {id(graph.input): inputs}, {}, call)
    new = keras.Model(inputs, outputs, name=name)
    for layer_name, copy in copies.items():
        if layer_name not in rebuilt:
            copy.set_weights(graph.layers[graph.index[layer_name]].get_weights())
    return new


def _split_merge_args(graph: _Graph, layer, block: Block, args):
    inputs = graph.inputs_of(layer)
    values = keras.tree.flatten(args)
    if inputs[0] is block.shortcut:
        return values[0], values[1]
    return values[1], values[0]


def _evaluate(graph: _Graph, target, known: dict, aliases: dict, call: Callable):
    """Compute `target` from `known` tensor values, replaying only the layers needed."""

    def source(tensor):
        while id(tensor) in aliases and id(tensor) not in known:
            tensor = aliases[id(tensor)]
        return tensor

    needed: dict[str, object] = {}
    stack = [target]
    while stack:
        tensor = source(stack.pop())
        if id(tensor) in known:
            continue
        layer = graph.producer.get(id(tensor))
        if layer is None:
            raise ValueError(
                f"Tensor {tensor.name!r} is not reachable from the given inputs; the "
                "blocks do not form a chain the analysis tools can rebuild."
            )
        if layer.name in needed:
            continue
        needed[layer.name] = layer
        stack.extend(graph.inputs_of(layer))

    values = dict(known)
    for layer in sorted(needed.values(), key=lambda lay: graph.index[lay.name]):
        args = keras.tree.map_structure(lambda t: values[id(source(t))], graph.call_input(layer))
        result = call(layer, args)
        for tensor, value in zip(
            keras.tree.flatten(graph.call_output(layer)), keras.tree.flatten(result), strict=True
        ):
            values[id(tensor)] = value
    return values[id(source(target))]


def _evaluate_in_order(graph, blocks, order, inputs, aliases, call):
    names = [b.name for b in blocks]
    order = list(order)
    if sorted(order) != sorted(names):
        raise ValueError(f"`order` must be a permutation of the block names {names}, got {order}.")
    for previous, block in zip(blocks, blocks[1:], strict=False):
        if block.input is not previous.output:
            raise ValueError(
                f"Blocks {previous.name!r} and {block.name!r} are not chained (the second "
                "does not read the first's output), so the blocks cannot be reordered."
            )
    by_name = {b.name: b for b in blocks}
    for position, block_name in zip(blocks, order, strict=True):
        moved = by_name[block_name]
        same_in = tuple(moved.input.shape) == tuple(position.input.shape)
        same_out = tuple(moved.output.shape) == tuple(position.output.shape)
        if not (same_in and same_out):
            raise ValueError(
                f"Block {block_name!r} cannot run at the position of {position.name!r}: "
                f"its shapes {tuple(moved.input.shape)} -> {tuple(moved.output.shape)} "
                f"differ from {tuple(position.input.shape)} -> {tuple(position.output.shape)}."
            )
    x = _evaluate(graph, blocks[0].input, {id(graph.input): inputs}, aliases, call)
    for block_name in order:
        block = by_name[block_name]
        x = _evaluate(graph, block.output, {id(block.input): x}, aliases, call)
    return _evaluate(graph, graph.output, {id(blocks[-1].output): x}, aliases, call)
