"""Optimisers and learning-rate schedules of the recipes."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_resnets_training")
class RecipeSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Piecewise-constant, cosine or constant learning rate with an optional warm-up.

    The decay is Keras's own schedule (`keras.optimizers.schedules.
    PiecewiseConstantDecay` or `CosineDecay` over `total_steps`); this class
    adds only the papers' warm-up in front of it, which Keras lacks: Keras's
    `CosineDecay(warmup_target=, warmup_steps=)` starts the cosine after the
    warm-up and reaches the target one step later, where the recipes keep the
    cosine over the whole run (He et al.'s constant warm-up and Goyal et al.'s
    linear one, `start + (base - start) * (step + 1) / warmup_steps`).

    Args:
        learning_rate: the base learning rate (already scaled for the batch).
        kind: `"piecewise"`, `"cosine"` or `"constant"`.
        boundaries: steps at which a piecewise schedule multiplies the rate
            by `factor` (from that step on).
        factor: the multiplier at each boundary (0.1 in the papers).
        total_steps: length of the run (cosine).
        warmup_steps: steps of warm-up (0: none).
        warmup_mode: `"constant"` (He et al.: `warmup_learning_rate` for
            `warmup_steps`, then the base rate) or `"linear"` (from
            `warmup_learning_rate`, default 0, up to the base rate).
        warmup_learning_rate: rate at the start of the warm-up.

    Example:
        >>> s = RecipeSchedule(0.1, "piecewise", [32000, 48000], 0.1, 64000,
        ...                    warmup_steps=400, warmup_mode="constant",
        ...                    warmup_learning_rate=0.01)
        >>> float(s(0)), float(s(400)), float(s(32000))
        (0.01, 0.1, 0.01)
    """

    def __init__(
        self,
        learning_rate: float,
        kind: str = "constant",
        boundaries: list | tuple = (),
        factor: float = 0.1,
        total_steps: int = 1,
        warmup_steps: int = 0,
        warmup_mode: str = "linear",
        warmup_learning_rate: float | None = None,
    ):
        self.learning_rate = float(learning_rate)
        self.kind = kind
        self.boundaries = [int(b) for b in boundaries]
        self.factor = float(factor)
        self.total_steps = max(int(total_steps), 1)
        self.warmup_steps = int(warmup_steps)
        self.warmup_mode = warmup_mode
        self.warmup_learning_rate = warmup_learning_rate
        self.decay = self._keras_decay()

    def _keras_decay(self):
        """Keras's schedule for the decay, or None for a constant rate."""
        schedules = keras.optimizers.schedules
        if self.kind == "piecewise" and self.boundaries:
            # Keras keeps values[i] while step <= boundaries[i]; the recipes
            # change the rate AT the boundary step, hence the -1.
            values = [self.learning_rate * self.factor**i for i in range(len(self.boundaries) + 1)]
            return schedules.PiecewiseConstantDecay([b - 1 for b in self.boundaries], values)
        if self.kind == "cosine":
            return schedules.CosineDecay(self.learning_rate, decay_steps=self.total_steps)
        return None

    def __call__(self, step):
        if self.decay is None:
            lr = ops.convert_to_tensor(self.learning_rate, "float32")
        else:
            lr = ops.cast(self.decay(step), "float32")
        if self.warmup_steps > 0:
            step = ops.cast(step, "float32")
            start = float(self.warmup_learning_rate or 0.0)
            if self.warmup_mode == "constant":
                warm = ops.convert_to_tensor(start, "float32")
            else:
                warm = start + (self.learning_rate - start) * (step + 1.0) / self.warmup_steps
            lr = ops.where(step < self.warmup_steps, warm, lr)
        return lr

    def get_config(self) -> dict:
        return {
            "learning_rate": self.learning_rate,
            "kind": self.kind,
            "boundaries": self.boundaries,
            "factor": self.factor,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "warmup_mode": self.warmup_mode,
            "warmup_learning_rate": self.warmup_learning_rate,
        }


@keras.saving.register_keras_serializable(package="keras_resnets_training")
class L2SGD(keras.optimizers.SGD):
    """SGD with momentum and L2 weight decay added to the gradient.

    The papers (Caffe/Torch conventions) decay weights by adding
    `weight_decay * w` to the gradient before the momentum update; Keras's
    `weight_decay=` argument instead shrinks the weights after the update
    (decoupled decay). This class keeps the papers' convention.

    Args:
        l2: the decay coefficient (1e-4 in He et al.).
        **kwargs: `keras.optimizers.SGD` arguments.

    Example:
        >>> opt = L2SGD(l2=1e-4, learning_rate=0.1, momentum=0.9)
    """

    def __init__(self, l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.l2 = float(l2)

    def update_step(self, gradient, variable, learning_rate):
        if self.l2:
            gradient = ops.add(gradient, ops.multiply(ops.cast(variable, gradient.dtype), self.l2))
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict:
        config = super().get_config()
        config["l2"] = self.l2
        return config


def make_optimizer(opt: dict, schedule) -> keras.optimizers.Optimizer:
    """Build the optimiser a recipe's `optimizer` section describes.

    Args:
        opt: the `optimizer` section (`name`, `momentum`, `nesterov`,
            `weight_decay`, `clipnorm`).
        schedule: the learning rate (a schedule or a float).

    Returns:
        `L2SGD` for `"sgd"`, `keras.optimizers.Adam` or
        `keras.optimizers.AdamW` (both with Keras's decoupled `weight_decay`).
    """
    clip = {"clipnorm": opt["clipnorm"]} if opt.get("clipnorm") else {}
    if opt["name"] == "sgd":
        return L2SGD(
            l2=opt["weight_decay"],
            learning_rate=schedule,
            momentum=opt["momentum"],
            nesterov=opt["nesterov"],
            **clip,
        )
    if opt["name"] == "adamw":
        return keras.optimizers.AdamW(
            learning_rate=schedule, weight_decay=opt["weight_decay"], **clip
        )
    return keras.optimizers.Adam(
        learning_rate=schedule, weight_decay=opt["weight_decay"] or None, **clip
    )
