"""Why residual networks work, measured on your own models.

- `gradient_norms`: per-layer gradient norms (vanishing gradients in plain
  networks, not in residual ones).
- `lesion_study` / `lesioned_model`: delete or reorder blocks of a trained
  network at test time (Veit et al. 2016).
- `path_length_distribution` / `gradient_by_path_length`: the unravelled
  view, residual networks as ensembles of paths, and which path lengths
  carry the gradient.
- `survival_schedule`: the stochastic-depth survival probabilities.
- `find_blocks` / `rebuild`: the block discovery and graph rebuilding they
  share, on any model of this package (or one nesting it): blocks are found
  in the stages the model recorded (`feature_info`), with their stage and
  whether they downsample; a model without `feature_info` is refused with a
  `ValueError` naming it.

The command line (`python -m keras_resnets.analysis --help`) runs each
experiment on the built-in digits data (`keras_resnets.datasets`) and writes
a PNG and the numbers (CSV and JSON, `analysis.report`) to an output folder;
the degradation experiment trains through the trainer, so it is
`keras-resnets analysis degradation` (`python -m training.degradation`). Plotting needs matplotlib
(`pip install 'keras_resnets[analysis]'`), imported only when plotting.
"""

from keras_resnets.analysis.gradients import (
    PathGate,
    gated_model,
    gradient_by_path_length,
    gradient_norms,
    path_length_distribution,
)
from keras_resnets.analysis.graph import Block, find_blocks
from keras_resnets.analysis.lesion import error_rate, lesion_study, lesioned_model
from keras_resnets.analysis.rebuild import rebuild
from keras_resnets.analysis.schedule import expected_depth, survival_schedule

__all__ = [
    "Block",
    "PathGate",
    "error_rate",
    "expected_depth",
    "find_blocks",
    "gated_model",
    "gradient_by_path_length",
    "gradient_norms",
    "lesion_study",
    "lesioned_model",
    "path_length_distribution",
    "rebuild",
    "survival_schedule",
]
