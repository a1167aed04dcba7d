"""Analysis of the rule and of runs: :mod:`~stllr.analysis.stdp` (the STDP window, analytic and
simulated; one layer recorded), :mod:`~stllr.analysis.metrics` (cosine, angle, relative norm,
mean +- std over trials), :mod:`~stllr.analysis.claims` (a notebook's conclusions checked with a
tolerance).
"""

from stllr.analysis.metrics import angle_degrees, cosine_similarity, mean_std, relative_norm
from stllr.analysis.stdp import (
    classic_stdp_window,
    record_layer,
    stdp_window_analytic,
    stdp_window_simulated,
)

__all__ = [
    "record_layer",
    "stdp_window_analytic",
    "stdp_window_simulated",
    "classic_stdp_window",
    "cosine_similarity",
    "angle_degrees",
    "relative_norm",
    "mean_std",
]
