"""Gradient measurements: per-layer norms and Veit et al.'s gradient by path length.

The gradients are taken with the TensorFlow backend (`tf.GradientTape`);
the models themselves are backend-independent Keras.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import keras
import numpy as np
from keras import ops

from keras_resnets._optional import require
from keras_resnets.analysis.graph import find_blocks
from keras_resnets.analysis.rebuild import rebuild
from keras_resnets.utils import check_int, check_number, is_int


def _require_tensorflow(function: str):
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            f"`{function}` takes gradients with TensorFlow; the Keras backend is "
            f"{backend!r}. Set KERAS_BACKEND=tensorflow."
        )
    return require("tensorflow", f"`{function}`")


def _split_batch(batch, argument: str = "batch"):
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError(
            f"`{argument}` must be a pair (images, labels), got {type(batch).__name__}."
        )
    x, y = (np.asarray(v) for v in batch)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(
            f"`{argument}` must hold as many labels as images (at least one), got "
            f"{len(x)} images and {len(y)} labels."
        )
    return x.astype("float32"), y


def _default_loss(model: keras.Model) -> Callable:
    """Sparse categorical cross-entropy on the model's output (probabilities or logits)."""
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    from_logits = getattr(activation, "__name__", "") != "softmax"
    return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits, reduction=None)


def _weighted_layers(model: keras.Model) -> list:
    """Layers with a kernel, in graph order (nested models flattened)."""
    found = []
    for layer in model.layers:
        inner = layer if isinstance(layer, keras.Model) else getattr(layer, "branch", None)
        if isinstance(inner, keras.Model):  # a nested model, or a layer owning its branch
            found.extend(_weighted_layers(inner))
        elif getattr(layer, "kernel", None) is not None and layer.trainable:
            found.append(layer)
    return found


def gradient_norms(
    model: keras.Model,
    batch,
    *,
    loss: Callable | None = None,
    training: bool = True,
) -> list[dict]:
    """Per-layer norms of the loss gradient with respect to each layer's kernel.

    The vanishing-gradient picture: in a deep plain network the gradient
    reaching the first layers is much smaller than at the last ones; identity
    shortcuts keep it from shrinking with depth. Works at any state of the
    model (at initialisation or trained).

    Args:
        model: a `keras.Model`.
        batch: `(images, labels)` with integer labels.
        loss: `loss(y_true, y_pred)` returning per-example losses; defaults
            to sparse categorical cross-entropy (from logits unless the last
            layer's activation is softmax). The mean over the batch is used.
        training: run the forward pass in training mode (batch statistics
            in BatchNormalization), as the optimiser sees it. The model's
            state (moving statistics) is left as it was.

    Returns:
        One dict per layer with a kernel (convolutions and dense layers), in
        graph order: `{"index", "layer", "norm"}`, where `norm` is the L2
        norm of d(loss)/d(kernel).

    Example:
        >>> norms = gradient_norms(keras_resnets.ResNet20(), (images, labels))
        >>> norms[0]["layer"]
        'stem_conv'
    """
    tf = _require_tensorflow("gradient_norms")
    x, y = _split_batch(batch)
    loss = loss or _default_loss(model)
    layers = _weighted_layers(model)
    if not layers:
        raise ValueError(f"Model {model.name!r} has no trainable layer with a kernel.")
    kernels = [layer.kernel for layer in layers]
    # A training-mode call moves BatchNormalization's statistics: keep the state.
    state = [np.array(v) for v in model.non_trainable_variables]
    try:
        with tf.GradientTape() as tape:
            value = ops.mean(loss(y, model(x, training=training)))
        grads = tape.gradient(value, [k.value for k in kernels])
    finally:
        for variable, saved in zip(model.non_trainable_variables, state, strict=True):
            variable.assign(saved)
    # A kernel the loss does not reach on this step (a branch that stochastic
    # depth dropped) has a zero gradient.
    return [
        {
            "index": i,
            "layer": layer.name,
            "norm": 0.0 if g is None else float(np.linalg.norm(np.asarray(g))),
        }
        for i, (layer, g) in enumerate(zip(layers, grads, strict=True))
    ]


def path_length_distribution(num_blocks: int) -> dict:
    """How many paths of each length a network of `num_blocks` residual blocks has.

    Unravelled (Veit et al. 2016), n residual blocks give 2^n paths from the
    input to the output; a path of length k goes through k residual branches
    and n - k shortcuts, and there are C(n, k) of them: lengths follow
    Binomial(n, 1/2).

    Args:
        num_blocks: number of residual blocks n (>= 1).

    Returns:
        `{"num_blocks", "length": [0..n], "count": [C(n, k)] (exact
        integers), "fraction": [C(n, k) / 2^n]}`.

    Example:
        >>> path_length_distribution(3)["count"]
        [1, 3, 3, 1]
    """
    check_int("num_blocks", num_blocks, minimum=1)
    counts = [math.comb(num_blocks, k) for k in range(num_blocks + 1)]
    total = 2**num_blocks
    return {
        "num_blocks": num_blocks,
        "length": list(range(num_blocks + 1)),
        "count": counts,
        "fraction": [c / total for c in counts],
    }


@keras.saving.register_keras_serializable(package="keras_resnets")
class PathGate(keras.layers.Layer):
    """Route the backward pass of a residual block through one of its two paths.

    Takes `[shortcut, branch]` and returns them with unchanged values; only
    the gradient changes. With `through_branch` = 1 the gradient flows back
    through the branch only, with 0 through the shortcut only
    (`stop_gradient` on the other). Used by `gradient_by_path_length`; the
    forward pass of the gated model equals the original's exactly.

    Args:
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
        >>> gate = PathGate()
        >>> shortcut, branch = gate([a, b])  # values a and b
    """

    def build(self, input_shape):
        self.through_branch = self.add_weight(
            name="through_branch", shape=(), initializer="ones", trainable=False
        )

    def call(self, inputs):
        shortcut, branch = inputs
        m = ops.cast(self.through_branch, shortcut.dtype)
        # m is 0 or 1, so m * v + (1 - m) * v == v exactly: only gradients change.
        shortcut = m * ops.stop_gradient(shortcut) + (1.0 - m) * shortcut
        branch = m * branch + (1.0 - m) * ops.stop_gradient(branch)
        return [shortcut, branch]

    def compute_output_shape(self, input_shape):
        return list(input_shape)


def gated_model(model: keras.Model) -> tuple[keras.Model, dict[str, PathGate]]:
    """A copy of `model` with a `PathGate` before each residual merge.

    Args:
        model: a keras_resnets model (or one nesting it) with residual
            blocks (`{block}_add`) in its recorded stages (`find_blocks`).

    Returns:
        `(gated, gates)`: the new model (same weights, same outputs) and its
        gates by block name.

    Example:
        >>> gated, gates = gated_model(keras_resnets.ResNet20())
        >>> gates["stage1_block1"].through_branch.assign(0.0)
    """
    gates: dict[str, PathGate] = {}

    def wrap(block, merge, shortcut, branch):
        gate = PathGate(name=f"{block.name}_path_gate")
        gates[block.name] = gate
        shortcut, branch = gate([shortcut, branch])
        return merge([shortcut, branch])

    residual = [b for b in find_blocks(model) if b.residual]
    if not residual:
        raise ValueError(
            f"Model {model.name!r} has no residual blocks (`{{block}}_add` layers); the "
            "path view applies to residual networks only."
        )
    gated = rebuild(model, wrap_merge=wrap, name=f"{model.name}_gated")
    return gated, gates


def gradient_by_path_length(
    model: keras.Model,
    batch,
    *,
    samples: int = 16,
    lengths: Sequence[int] | None = None,
    loss: Callable | None = None,
    training: bool = False,
    seed: int = 0,
    mass: float = 0.9,
) -> dict:
    """Veit et al.'s gradient magnitude per path length, and its total by length.

    The forward pass is the ordinary one. In the backward pass, k sampled
    residual blocks propagate the gradient through their branch only and all
    other blocks through their shortcut only, so the gradient reaching the
    input is the one carried by a single path of length k. Its norm, per
    example and averaged over the examples and the sampled paths, is the
    gradient magnitude of a path of length k; times the number of such paths
    C(n, k) it gives the total gradient contribution by path length.

    Implemented on a rebuilt copy of the model with a `PathGate` before each
    merge (`gated_model`); the model's code is not touched.

    Args:
        model: a keras_resnets model (or one nesting it) with residual
            blocks (`{block}_add`) in its recorded stages (`find_blocks`).
        batch: `(images, labels)` with integer labels.
        samples: paths sampled per length; where C(n, k) <= samples every
            path of length k is measured (exact, no sampling).
        lengths: which path lengths k to measure (default 0..n).
        loss: `loss(y_true, y_pred)` returning per-example losses; default
            sparse categorical cross-entropy. The per-example losses are
            summed, so each example's input gradient is its own.
        training: forward in training mode (batch statistics). Default
            False: the trained network's test-time function.
        seed: seed of the path sampling.
        mass: share of the total contribution the effective range covers.

    Returns:
        A dict: `num_blocks`, `blocks` (names), `length`, `gradient_norm`
        (mean per length), `gradient_norm_std`, `paths_measured`,
        `exhaustive` (per length), `count` and `fraction` (the path-length
        distribution), `contribution` (count x norm) and
        `contribution_fraction` (normalised over the measured lengths),
        `effective_range` ([shortest, longest] lengths holding `mass` of the
        contribution), and `effective_path_fraction` (share of all 2^n paths
        in that range).

    Example:
        >>> result = gradient_by_path_length(model, (images[:32], labels[:32]))
        >>> result["effective_range"]
        [1, 5]
    """
    tf = _require_tensorflow("gradient_by_path_length")
    x, y = _split_batch(batch)
    check_int("samples", samples, minimum=1)
    mass = check_number("mass", mass, minimum=0, maximum=1, low_open=True)
    gated, gates = gated_model(model)
    names = list(gates)
    n = len(names)
    if lengths is None:
        lengths = list(range(n + 1))
    lengths = list(lengths)
    for k in lengths:
        if not is_int(k) or not 0 <= k <= n:
            raise ValueError(
                f"`lengths` must hold integers in [0, {n}] (the model has {n} residual "
                f"blocks), got {k!r}."
            )
    loss = loss or _default_loss(model)
    x_tensor = tf.constant(x)

    @tf.function(reduce_retracing=True)
    def input_gradient(images):
        with tf.GradientTape() as tape:
            tape.watch(images)
            value = tf.reduce_sum(loss(y, gated(images, training=training)))
        grad = tape.gradient(value, images)
        return tf.norm(tf.reshape(grad, (tf.shape(grad)[0], -1)), axis=1)

    rng = np.random.default_rng(seed)
    distribution = path_length_distribution(n)
    means, stds, measured, exhaustive = [], [], [], []
    for k in lengths:
        if math.comb(n, k) <= samples:
            subsets = list(itertools.combinations(range(n), k))
            exhaustive.append(True)
        else:
            subsets = [tuple(rng.choice(n, size=k, replace=False)) for _ in range(samples)]
            exhaustive.append(False)
        norms = []
        for subset in subsets:
            chosen = set(int(i) for i in subset)
            for i, name in enumerate(names):
                gates[name].through_branch.assign(1.0 if i in chosen else 0.0)
            norms.append(np.asarray(input_gradient(x_tensor)).mean())
        means.append(float(np.mean(norms)))
        stds.append(float(np.std(norms)))
        measured.append(len(subsets))

    counts = [distribution["count"][k] for k in lengths]
    contribution = [float(c * g) for c, g in zip(counts, means, strict=True)]
    total = sum(contribution)
    shares = [c / total if total > 0 else 0.0 for c in contribution]
    low, high = _effective_range(lengths, shares, mass)
    in_range = sum(distribution["count"][k] for k in range(low, high + 1))
    return {
        "num_blocks": n,
        "blocks": names,
        "length": lengths,
        "gradient_norm": means,
        "gradient_norm_std": stds,
        "paths_measured": measured,
        "exhaustive": exhaustive,
        "count": counts,
        "fraction": [distribution["fraction"][k] for k in lengths],
        "contribution": contribution,
        "contribution_fraction": shares,
        "mass": float(mass),
        "effective_range": [low, high],
        "effective_path_fraction": in_range / 2**n,
    }


def _effective_range(lengths: list[int], shares: list[float], mass: float) -> tuple[int, int]:
    """The shortest run of consecutive measured lengths holding `mass` of the total."""
    best = (lengths[0], lengths[-1])
    best_width = None
    for i in range(len(lengths)):
        running = 0.0
        for j in range(i, len(lengths)):
            running += shares[j]
            if running >= mass - 1e-12:
                width = lengths[j] - lengths[i]
                if best_width is None or width < best_width:
                    best, best_width = (lengths[i], lengths[j]), width
                break
    return int(best[0]), int(best[1])
