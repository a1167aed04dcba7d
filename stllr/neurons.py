"""Thin modules over the pure step functions of :mod:`stllr.functional`."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from . import _checks
from . import functional as SF
from .functional import PsiLike

__all__ = ["SecondaryActivation", "LIFNeuron"]


class SecondaryActivation(nn.Module):
    """psi(v) by name (``'rational'``, ``'triangle'``, ``'sigmoid'``, ``'fast_sigmoid'``); any shape."""

    def __init__(self, psi: PsiLike = "rational"):
        super().__init__()
        self.fn = SF.get_psi(psi)
        self.name = SF.psi_name(psi)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.fn(v)

    def extra_repr(self) -> str:
        return repr(self.name)


class LIFNeuron(nn.Module):
    """A weightless LIF population driven by an input current, one step per call.

    ``forward(current)`` -> :class:`~stllr.functional.LIFStep` (spikes, psi, membrane, v); the
    membrane is kept between calls (detached unless ``detach=False``). Useful to look at the
    dynamics alone (notebook 01). current: [B, ...] -> every field [B, ...].
    """

    _stateful = True

    def __init__(
        self,
        threshold: float = 0.6,
        leak: float = 2.0,
        reset: str = "soft",
        psi: PsiLike = "rational",
        detach: bool = True,
    ):
        super().__init__()
        self.threshold = _checks.check_finite_number(threshold, "threshold", minimum=0.0)
        self.leak = _checks.check_finite_number(leak, "leak")
        self.reset = _checks.check_reset(reset)
        self.psi = SF.get_psi(psi)
        self.detach = detach
        self.membrane: Optional[torch.Tensor] = None

    @property
    def beta(self) -> float:
        return float(SF.beta_from_leak(torch.tensor(self.leak, dtype=torch.float64)))

    @property
    def theta(self) -> float:
        return max(self.threshold, SF.MIN_THRESHOLD)

    def reset_state(self) -> None:
        self.membrane = None

    def forward(self, current: torch.Tensor) -> SF.LIFStep:
        membrane = torch.zeros_like(current) if self.membrane is None else self.membrane
        step = SF.lif_step(current, membrane, self.beta, self.theta, self.psi, self.reset)
        self.membrane = step.membrane.detach() if self.detach else step.membrane
        return step
