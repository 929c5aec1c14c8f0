"""Stochastic depth (Huang et al. 2016) that skips the dropped work.

`StochasticDepth` owns a residual branch (any Keras layer or model, usually a
small functional sub-model) and adds its output to the shortcut. In training
it drops the branch at random:

- `mode="batch"` (the paper): one draw per mini-batch. A dropped block runs
  through `keras.ops.cond` (a `tf.cond` in a traced TensorFlow step,
  `lax.cond` on JAX, a Python `if` on PyTorch): the branch's forward pass,
  its backward pass and its BatchNormalization statistics updates are all
  skipped on that step. The branch runs statelessly inside the conditional
  and its new state is assigned after it, so this works on every backend.
- `mode="sample"` (drop path, as timm and the TF Model Garden): one draw per
  example. The branch always runs and is multiplied by a 0/1 mask; this saves
  no time but keeps the gradient of every example in large or distributed
  batches.

`survival_probabilities(num_blocks, drop_path_rate)` is the paper's linear
schedule p_l = 1 - (l / L) * drop_path_rate over the blocks of a network.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_resnets.utils import check_choice, check_fraction, check_int, check_number, is_int

MODES = ("batch", "sample")
SCALES = ("test", "train")
# The scale each mode uses unless told otherwise: the paper scales at test
# time; timm and the TF Model Garden use inverted scaling in training.
DEFAULT_SCALE = {"batch": "test", "sample": "train"}

# The builders' docstring entry for the options every residual family takes.
STOCHASTIC_DEPTH_OPTIONS = (
    "drop_path_rate",
    "stochastic_depth_mode",
    "stochastic_depth_scale",
    "stochastic_depth_seed",
)
_STOCHASTIC_DEPTH_TEMPLATE = """    drop_path_rate: stochastic depth (Huang et al. 2016), 1 - p_L in [0, 1):
        block l of the network's L blocks is dropped in training with
        probability (l / L) * drop_path_rate. 0 (default) turns it off and
        keeps the graph flat; the paper uses 0.5. See docs/stochastic_depth.md.
    stochastic_depth_mode: `"batch"` (the paper: one draw per mini-batch,
        a dropped block's branch is skipped, not computed) or `"sample"`
        (per-example drop path, as timm). Default `"{mode}"`.
    stochastic_depth_scale: `"test"` (multiply each residual by its survival
        probability at inference, the paper), `"train"` (divide by it in
        training, timm) or None (default: `"test"` for `"batch"`, `"train"`
        for `"sample"`).
    stochastic_depth_seed: None, or an integer seed so that the drops repeat
        exactly from run to run.
"""
STOCHASTIC_DEPTH_DOC = _STOCHASTIC_DEPTH_TEMPLATE.replace("{mode}", "batch")
# The timm-era families (ResNet-D/T, SE, ECA, ResNet-RS, ResNeSt) drop per sample.
SAMPLE_STOCHASTIC_DEPTH_DOC = _STOCHASTIC_DEPTH_TEMPLATE.replace("{mode}", "sample")

__all__ = [
    "MODES",
    "SCALES",
    "StochasticDepth",
    "stochastic_depth_schedule",
    "survival_probabilities",
]


def survival_probabilities(num_blocks: int, drop_path_rate: float) -> list[float]:
    """The linear survival schedule of Huang et al. (2016).

    Block l of L (counting from 1; the input is l = 0 and is never dropped)
    survives with p_l = 1 - (l / L) * (1 - p_L), where p_L =
    1 - `drop_path_rate` is the survival probability of the last block.

    Args:
        num_blocks: L, the number of residual blocks in the network.
        drop_path_rate: 1 - p_L, in [0, 1). 0 keeps every block.

    Returns:
        A list of L survival probabilities, from the first block to the last.

    Raises:
        ValueError: `num_blocks` is not a positive integer or
            `drop_path_rate` is outside [0, 1).

    Example:
        >>> keras_resnets.survival_probabilities(4, 0.5)
        [0.875, 0.75, 0.625, 0.5]
    """
    check_int("num_blocks", num_blocks, minimum=1)
    rate = check_fraction("drop_path_rate", drop_path_rate, low=0.0, high=1.0)
    return [1.0 - rate * block / num_blocks for block in range(1, num_blocks + 1)]


def check_stochastic_depth_options(drop_path_rate, mode, scale, seed) -> str:
    """Validate the builders' stochastic-depth options; return the resolved scale."""
    check_fraction("drop_path_rate", drop_path_rate, low=0.0, high=1.0)
    check_choice("stochastic_depth_mode", mode, MODES)
    if scale is None:
        scale = DEFAULT_SCALE[mode]
    check_choice("stochastic_depth_scale", scale, SCALES)
    if seed is not None and (not is_int(seed) or seed < 0):
        raise ValueError(
            f"`stochastic_depth_seed` must be None or a non-negative integer, got {seed!r}."
        )
    return scale


def stochastic_depth_schedule(
    num_blocks: int,
    drop_path_rate: float = 0.0,
    mode: str = "batch",
    scale: str | None = None,
    seed: int | None = None,
) -> list[dict | None]:
    """Per-block `StochasticDepth` arguments for a network of `num_blocks` blocks.

    Builders call this once and hand entry l to block l: None (stochastic
    depth off, the block stays a flat part of the graph) when
    `drop_path_rate` is 0, else the keyword arguments of `StochasticDepth`.

    Args:
        num_blocks: residual blocks in the network.
        drop_path_rate: 1 - p_L, in [0, 1).
        mode: `"batch"` or `"sample"`.
        scale: `"test"`, `"train"` or None (the mode's default: `"test"` for
            `"batch"`, `"train"` for `"sample"`).
        seed: None, or an integer from which each block's seed is derived
            (block l gets its own stream, so the blocks draw independently).

    Returns:
        A list of `num_blocks` entries, each None or a dict with
        `survival_probability`, `mode`, `scale` and `seed`.
    """
    scale = check_stochastic_depth_options(drop_path_rate, mode, scale, seed)
    probabilities = survival_probabilities(num_blocks, drop_path_rate)
    if drop_path_rate == 0:
        return [None] * num_blocks
    return [
        {
            "survival_probability": p,
            "mode": mode,
            "scale": scale,
            "seed": None if seed is None else (seed * 1_000_003 + index) % 2**31,
        }
        for index, p in enumerate(probabilities)
    ]


@keras.saving.register_keras_serializable(package="keras_resnets")
class StochasticDepth(keras.layers.Layer):
    """A residual addition whose branch is dropped at random in training.

    Called on `x` it returns `x + gate * branch(x)`; called on `[x, shortcut]`
    it returns `shortcut + gate * branch(x)` (for blocks whose shortcut
    changes the shape). The layer owns `branch` (its weights are the layer's
    weights), which is what lets it skip the branch instead of multiplying
    it by zero.

    In training, with survival probability p:

    - `mode="batch"`: one Bernoulli(p) draw per call (per mini-batch). If the
      block is dropped the output is the shortcut alone and `branch` is not
      run: the choice is a `keras.ops.cond` (`tf.cond` in a traced
      TensorFlow step, `lax.cond` on JAX), so neither the branch's forward
      nor its backward pass is computed, and BatchNormalization layers and
      seed generators inside it keep their state. Dropped branch weights get
      zero gradient.
    - `mode="sample"`: one draw per example; the branch always runs and its
      output is multiplied by the per-example 0/1 mask (drop path).

    Scaling keeps the expected output equal between training and inference:

    - `scale="test"` (the paper): training uses gate 0 or 1; inference runs
      every branch multiplied by p.
    - `scale="train"` (inverted, timm): training uses gate 0 or 1/p;
      inference runs every branch unscaled.

    Args:
        branch: the residual branch, a `keras.layers.Layer` (typically a
            functional `keras.Model`) mapping `x` to a tensor of the
            shortcut's shape.
        survival_probability: p, in (0, 1]. 1 never drops.
        mode: `"batch"` (default) or `"sample"`.
        scale: `"test"`, `"train"`, or None for the mode's convention
            (`"test"` for `"batch"`, `"train"` for `"sample"`).
        seed: None or an integer seed of the layer's
            `keras.random.SeedGenerator`. With an integer, the sequence of
            draws repeats exactly from run to run; with None it follows
            `keras.utils.set_random_seed`.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, ...).

    Example:
        >>> inputs = keras.Input((8, 8, 16))
        >>> y = keras.layers.Conv2D(16, 3, padding="same")(inputs)
        >>> branch = keras.Model(inputs, y, name="branch")
        >>> layer = StochasticDepth(branch, survival_probability=0.8, seed=1)
        >>> layer(np.ones((2, 8, 8, 16), "float32")).shape
        (2, 8, 8, 16)
    """

    def __init__(
        self,
        branch,
        survival_probability: float = 0.5,
        mode: str = "batch",
        scale: str | None = None,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(branch, keras.layers.Layer):
            raise TypeError(
                "`branch` must be a keras.layers.Layer (for example a functional "
                f"keras.Model), got {type(branch).__name__}."
            )
        p = survival_probability
        p = check_number("survival_probability", p, minimum=0, maximum=1, low_open=True)
        check_choice("mode", mode, MODES)
        if scale is None:
            scale = DEFAULT_SCALE[mode]
        check_choice("scale", scale, SCALES)
        if seed is not None and not is_int(seed):
            raise ValueError(f"`seed` must be None or an integer, got {seed!r}.")
        seed = None if seed is None else int(seed)
        self.branch = branch
        self.survival_probability = float(p)
        self.mode = mode
        self.scale = scale
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="seed_generator")

    def build(self, input_shape):
        x_shape = input_shape[0] if _is_pair(input_shape) else input_shape
        if not self.branch.built:
            self.branch.build(x_shape)
        self.built = True

    def _scaled_branch(self, x, factor: float, training: bool):
        y = self.branch(x, training=training)
        if factor != 1.0:
            y = y * ops.cast(factor, y.dtype)
        return y

    def call(self, inputs, training=None):
        if isinstance(inputs, (list, tuple)):
            x, shortcut = inputs
        else:
            x = shortcut = inputs
        p = self.survival_probability
        if not training:
            factor = p if self.scale == "test" else 1.0
            return ops.add(shortcut, self._scaled_branch(x, factor, False))
        factor = 1.0 / p if self.scale == "train" else 1.0
        if p == 1.0:
            return ops.add(shortcut, self._scaled_branch(x, 1.0, True))
        if self.mode == "batch":
            keep = keras.random.uniform((), seed=self.seed_generator) < p
            return self._batch_call(keep, x, shortcut, factor)
        y = self.branch(x, training=True)
        mask_shape = (ops.shape(y)[0],) + (1,) * (len(y.shape) - 1)
        keep = keras.random.uniform(mask_shape, seed=self.seed_generator) < p
        mask = ops.cast(keep, y.dtype) * ops.cast(factor, y.dtype)
        return ops.add(shortcut, y * mask)

    def _batch_call(self, keep, x, shortcut, factor: float):
        """`shortcut + branch(x)` if `keep`, else `shortcut`, the branch not run.

        The branch runs statelessly inside the conditional: it reads its
        variables from explicit values and hands back the new values of its
        non-trainable state (BatchNormalization statistics, seed generator
        states) instead of assigning them. Both sides of the conditional
        return that state (the dropped side unchanged) and it is assigned
        after the conditional. Assigning a variable inside a branch of
        `keras.ops.cond` leaks a tracer on JAX (`lax.cond`); this way the
        same code trains on TensorFlow, JAX and PyTorch.
        """
        branch = self.branch
        state_vars = branch.non_trainable_variables
        trainable = [v.value for v in branch.trainable_variables]
        state = [ops.cast(v.value, v.dtype) for v in state_vars]

        def run():
            y, new_state = branch.stateless_call(trainable, state, x, training=True)
            if factor != 1.0:
                y = y * ops.cast(factor, y.dtype)
            out = ops.add(shortcut, y)
            return out, [ops.cast(s, v.dtype) for s, v in zip(new_state, state_vars, strict=True)]

        def skip():
            return shortcut, list(state)

        out, new_state = ops.cond(keep, run, skip)
        for variable, value in zip(state_vars, new_state, strict=True):
            variable.assign(value)
        return out

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[1]) if _is_pair(input_shape) else tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "branch": keras.saving.serialize_keras_object(self.branch),
                "survival_probability": self.survival_probability,
                "mode": self.mode,
                "scale": self.scale,
                "seed": self.seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["branch"] = keras.saving.deserialize_keras_object(config["branch"])
        return cls(**config)


def _is_pair(shape) -> bool:
    return (
        isinstance(shape, (list, tuple)) and len(shape) == 2 and isinstance(shape[0], (list, tuple))
    )
