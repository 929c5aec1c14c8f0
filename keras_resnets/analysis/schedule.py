"""The stochastic-depth survival schedule (Huang et al. 2016).

The schedule itself is `keras_resnets.survival_probabilities` (the one the
models use); this module adds what the analysis reports about it.
"""

from __future__ import annotations

from keras_resnets.layers.stochastic_depth import survival_probabilities


def survival_schedule(num_blocks: int, drop_path_rate: float) -> list[float]:
    """Survival probability of each block: `keras_resnets.survival_probabilities`.

    Kept under this name for the analysis API; block l of L survives with
    p_l = 1 - (l / L) (1 - p_L), where `drop_path_rate` = 1 - p_L.

    Args:
        num_blocks: number of residual blocks L (>= 1).
        drop_path_rate: 1 - p_L, in [0, 1).

    Returns:
        `[p_1, ..., p_L]`.

    Example:
        >>> survival_schedule(4, 0.5)
        [0.875, 0.75, 0.625, 0.5]
    """
    return survival_probabilities(num_blocks, drop_path_rate)


def expected_depth(probabilities: list[float]) -> float:
    """Expected number of blocks that run in a training step: the sum of p_l."""
    return float(sum(probabilities))
