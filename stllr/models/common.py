"""What every network of :mod:`stllr.models` shares: the model base class, sequence dropout,
pooling, weight initialisation and the checks of activation, feedback mode and pooling names."""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import nn

from stllr._base import reset_states
from stllr.signals import FEEDBACK_MODES, FeedbackContext, LearningSignal

__all__ = [
    "SequenceDropout",
    "SpikingModel",
    "normalize_feedback_mode",
    "normalize_pooling",
    "resolve_activation",
    "ACTIVATIONS",
]

#: ``--activation`` values of the reference (its ``surrogate_gradients.__all__``) and ours, mapped
#: to a psi name. ``None`` means "the layer type's reference default" (LinearSpike).
ACTIVATIONS: Dict[str, Optional[str]] = {
    "LinearSpike": None,
    "GradSigmoid": "sigmoid",
    "STLLRConv2dSigmoid": "sigmoid",
    "STLLRLinearRecGradSigmoid": "sigmoid",
    "STLLRConv2dGradExp": "rational",
    "STLLRLinearRecGradNorm": "triangle",
    "rational": "rational",
    "triangle": "triangle",
    "sigmoid": "sigmoid",
    "fast_sigmoid": "fast_sigmoid",
    "fast-sigmoid": "fast_sigmoid",
}


_UNSUPPORTED_ACTIVATIONS = {
    "Surrogate": "its triangle is centred on 0.6 of the raw membrane, not on the threshold crossing",
    "STLLRConv2dGradNormOut": "it is a different rule (post trace of output spikes, not of psi)",
}


def resolve_activation(activation: Optional[str]) -> Optional[str]:
    """Map a reference ``--activation`` name (or a psi name) to a psi name, ``None`` = default."""
    if activation is None:
        return None
    for name, psi in ACTIVATIONS.items():
        if name.lower() == str(activation).lower():
            return psi
    for name, why in _UNSUPPORTED_ACTIVATIONS.items():
        if name.lower() == str(activation).lower():
            raise ValueError(f"activation {activation!r} is not supported: {why}")
    raise ValueError(f"activation: unknown {activation!r}; expected one of {sorted(ACTIVATIONS)}")


def normalize_feedback_mode(mode: str) -> str:
    """'BP'/'bp' -> 'bp', 'DFA' -> 'dfa', 'sDFA' -> 'sdfa'."""
    key = str(mode).lower()
    if key in FEEDBACK_MODES:
        return key
    if key in ("sbp", "localloss", "drtp", "fa"):
        raise ValueError(
            f"feedback mode {mode!r} is not supported by stllr (choose BP, DFA or sDFA)"
        )
    raise ValueError(f"feedback mode: unknown {mode!r}; expected BP, DFA or sDFA")


def normalize_pooling(pooling: Optional[str]) -> str:
    if pooling is None:
        return "MAX"
    key = str(pooling).upper()
    if key not in ("MAX", "AVG"):
        raise ValueError(f"pooling: expected MAX or AVG, got {pooling!r}")
    return key


def _pool(kind: str) -> nn.Module:
    return nn.MaxPool2d(2, 2) if kind == "MAX" else nn.AvgPool2d(2, 2)


# ======================================================================================
# Building blocks
# ======================================================================================
class SequenceDropout(nn.Module):
    """Dropout with ONE 0/1 mask per sequence (drawn at the first step after ``reset_state()``,
    reused at every step), active in training mode only.

    Unlike the reference (``DropoutLIF``), kept units are rescaled by ``1/(1-p)`` (``rescale=True``),
    so the expected input of the next layer is the same in training and evaluation.
    """

    _stateful = True

    def __init__(self, p: float = 0.0, rescale: bool = True):
        super().__init__()
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"p: dropout probability must be in [0, 1), got {p}")
        self.p = float(p)
        self.rescale = bool(rescale)
        self.mask: Optional[torch.Tensor] = None

    def reset_state(self) -> None:
        self.mask = None

    def extra_repr(self) -> str:
        return f"p={self.p}, rescale={self.rescale}, mask=per-sequence"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.mask is None or self.mask.shape != x.shape or self.mask.device != x.device:
            keep = torch.full_like(x, 1.0 - self.p, requires_grad=False)
            mask = torch.bernoulli(keep)
            if self.rescale:
                mask = mask / (1.0 - self.p)
            self.mask = mask
        return x * self.mask


def _kaiming_normal_linear(layer) -> None:
    nn.init.kaiming_normal_(layer.weight)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)


def _kaiming_normal_conv(layer) -> None:
    nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class SpikingModel(nn.Module):
    """Common interface of the registry's models (one step per ``forward``)."""

    arch: str = ""
    is_stllr: bool = False

    def __init__(self, num_classes: int, input_shape: Tuple[int, ...], feedback_mode: str = "bp"):
        super().__init__()
        self.num_classes = int(num_classes)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.feedback_mode = feedback_mode
        self.feedback_context: Optional[FeedbackContext] = (
            FeedbackContext() if self.is_stllr else None
        )

    def _hook(self, shape, **options) -> LearningSignal:
        return LearningSignal(
            shape,
            self.num_classes,
            mode=self.feedback_mode,
            context=self.feedback_context,
            **options,
        )

    def reset_state(self) -> None:
        """Start a new sequence: forget every layer state, draw new dropout masks."""
        reset_states(self)
        if self.feedback_context is not None:
            self.feedback_context.clear()

    # state_dict keys of the reference's checkpoints that name our parameters differently
    _reference_renames: Dict[str, str] = {}

    def reference_key(self, key: str) -> str:
        """Our state_dict key for a key of the reference implementation's state_dict."""
        for old, new in self._reference_renames.items():
            if key.startswith(old):
                return new + key[len(old) :]
        if key.endswith("_hook.fixed_fb_weights"):
            return key[: -len("fixed_fb_weights")] + "feedback"
        return key

    def extra_repr(self) -> str:
        return (
            f"arch={self.arch!r}, num_classes={self.num_classes}, input_shape={self.input_shape}, "
            f"feedback_mode={self.feedback_mode!r}"
        )


# ======================================================================================
# Recurrent networks (SHD, randman)
# ======================================================================================
def _set_recurrent_trainable(layer, trainable: bool) -> None:
    """``train_recurrent=False``: keep W_rec (and its gain) at their initial values (a diagnostic:
    e.g. DFA with fixed recurrent weights)."""
    for p in (layer.weight_rec, getattr(layer, "gain_rec", None)):
        if p is not None:
            p.requires_grad_(bool(trainable))
