"""The stochastic-depth survival schedule (Huang et al. 2016)."""

from __future__ import annotations

from keras_resnets.utils import check_fraction, check_int


def survival_schedule(num_blocks: int, drop_path_rate: float) -> list[float]:
    """Survival probability of each block under the paper's linear rule.

    Block l of L survives with p_l = 1 - (l / L) (1 - p_L), where
    `drop_path_rate` = 1 - p_L; the input (l = 0) is never dropped.

    Args:
        num_blocks: number of residual blocks L (>= 1).
        drop_path_rate: 1 - p_L, in [0, 1).

    Returns:
        `[p_1, ..., p_L]`.

    Example:
        >>> survival_schedule(4, 0.5)
        [0.875, 0.75, 0.625, 0.5]
    """
    check_int("num_blocks", num_blocks, minimum=1)
    rate = check_fraction("drop_path_rate", drop_path_rate, low=0.0, high=1.0)
    return [1.0 - (layer / num_blocks) * rate for layer in range(1, num_blocks + 1)]


def expected_depth(probabilities: list[float]) -> float:
    """Expected number of blocks that run in a training step: the sum of p_l."""
    return float(sum(probabilities))
