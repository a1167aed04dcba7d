"""Comparisons of two tensors or of a set of runs: cosine, relative norm, angle, mean +- std."""

from __future__ import annotations

import math
import statistics
from typing import Sequence, Tuple

import numpy as np
import torch

__all__ = ["cosine_similarity", "angle_degrees", "relative_norm", "mean_std"]


def cosine_similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine of the angle between two tensors (e.g. gradients), both flattened, in float64;
    nan when either is zero."""
    a, b = a.detach().flatten().double(), b.detach().flatten().double()
    denom = a.norm() * b.norm()
    return float(a @ b / denom) if denom > 0 else float("nan")


def angle_degrees(a: torch.Tensor, b: torch.Tensor) -> float:
    """Angle between two tensors flattened, in degrees: ``arccos(cosine_similarity(a, b))``; 0 =
    same direction, 90 = orthogonal, 180 = opposite; nan when either is zero."""
    c = cosine_similarity(a, b)
    return c if math.isnan(c) else math.degrees(math.acos(max(-1.0, min(1.0, c))))


def relative_norm(a: torch.Tensor, b: torch.Tensor) -> float:
    """``|a| / |b|``: how large an update is relative to a reference gradient."""
    nb = b.double().norm()
    return float(a.double().norm() / nb) if nb > 0 else float("nan")


def mean_std(values: Sequence[float], *, exact: bool = True) -> Tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value) of ``values`` [n], as the
    paper reports trials.

    ``exact=True``: :func:`statistics.fmean` and :func:`statistics.stdev` (correctly rounded sums);
    ``exact=False``: numpy's float64 ``mean()`` and ``std(ddof=1)`` of ``np.asarray(values)``. The
    two can differ in the last bit: each caller keeps the one its stored results were made with.
    """
    if exact:
        values = [float(v) for v in values]
        return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)
    a = np.asarray(values)
    return float(a.mean()), (float(a.std(ddof=1)) if len(a) > 1 else 0.0)
