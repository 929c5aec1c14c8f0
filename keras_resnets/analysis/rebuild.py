"""Rebuild a keras_resnets model's graph with blocks removed, reordered or gated.

`rebuild(model, ...)` replays the functional graph layer by layer into a
fresh `keras.Model` (new layer objects holding copies of the weights), with
branches removed, blocks reordered or a gate put on each branch, using the
blocks `graph.find_blocks` finds in the model's recorded stages. The
original model is never modified: calling its layers on new symbolic
tensors would add nodes to them, so every layer is copied first. A model
nesting a keras_resnets network as a layer (a backbone with a new head) is
rebuilt around it: the nested network is rebuilt and the wrapper's own
layers are replayed around the result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import keras

from keras_resnets.analysis.graph import Block, _Graph, find_blocks
from keras_resnets.models.network import Network, find_network, recorded_network


def _owned_branch_output(merge, x):
    """The branch term a branch-owning merge adds at inference (scaled by p for scale="test")."""
    y = merge.branch(x, training=False)
    if getattr(merge, "scale", "test") == "test" and merge.survival_probability != 1.0:
        y = keras.layers.Rescaling(merge.survival_probability, name=f"{merge.name}_test_scale")(y)
    return y


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
