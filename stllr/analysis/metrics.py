"""Comparisons of two tensors or of a set of runs: cosine, relative norm, angle, mean +- std."""

from __future__ import annotations

import torch

__all__ = ["cosine_similarity", "relative_norm"]


def cosine_similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine of the angle between two gradients (flattened)."""
    a, b = a.flatten().double(), b.flatten().double()
    denom = a.norm() * b.norm()
    return float(a @ b / denom) if denom > 0 else float("nan")


def relative_norm(a: torch.Tensor, b: torch.Tensor) -> float:
    """``|a| / |b|``: how large an update is relative to a reference gradient."""
    nb = b.double().norm()
    return float(a.double().norm() / nb) if nb > 0 else float("nan")
