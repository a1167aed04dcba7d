"""Learning signals: what reaches a hidden layer's output as ``delta = dL/ds_t``.

- ``bp``: the true one-step gradient from the layers above (through psi, not through time).
- ``dfa``: Direct Feedback Alignment: the incoming gradient is replaced by ``e_t F``, with
  ``e_t = dL/dlogits_t`` of the same step and F a fixed random matrix ``[classes, *layer_shape]``.
- ``sdfa``: sign-DFA, ``sign(e_t) F / batch``.

The DFA / sDFA formula is one pure function, :func:`feedback_signal`; the hooks apply it, and
analyses that form the signals themselves (:mod:`stllr.studies.learning_signals`) call it too.

A model shares one :class:`FeedbackContext` between an :class:`OutputErrorTap` on its logits and
the :class:`LearningSignal` hooks after its hidden layers. During ``loss.backward()`` the tap runs
first (it is nearest the loss) and records ``e_t``; each hook then reads it. For cross-entropy with
mean reduction ``e_t = (softmax(logits_t) - onehot(y)) / batch``: the reference's DFA uses the same
error without the 1/batch (a defect noted in rule.md), so our DFA updates are the reference's
divided by the batch size, consistent with the mean cross-entropy BP uses.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn

__all__ = [
    "FeedbackContext",
    "OutputErrorTap",
    "LearningSignal",
    "FEEDBACK_MODES",
    "feedback_signal",
]

FEEDBACK_MODES = ("bp", "dfa", "sdfa")


def feedback_signal(
    error: torch.Tensor, feedback: torch.Tensor, sign: bool = False
) -> torch.Tensor:
    """The DFA learning signal ``e_t F`` (``sign=True``: sDFA's ``sign(e_t) F / batch``): the
    formula :class:`LearningSignal` applies, for analyses that form the signals themselves.

    ``error`` [B, C] (cast to F's dtype), ``feedback`` F ``[C, *shape]`` -> ``[B, N]``, N = prod(shape).
    """
    if sign:
        error = torch.sign(error) / error.shape[0]
    return error.to(feedback.dtype) @ feedback.reshape(feedback.shape[0], -1)


class FeedbackContext:
    """Holds the output error ``e_t = dL/dlogits_t`` of the step being back-propagated."""

    def __init__(self):
        self.error: Optional[torch.Tensor] = None

    def clear(self) -> None:
        self.error = None


class _Tap(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, context):
        ctx.context = context
        return logits.view_as(logits)

    @staticmethod
    def backward(ctx, grad):
        ctx.context.error = grad
        return grad, None


class OutputErrorTap(nn.Module):
    """Identity on the logits [B, classes] that records dL/dlogits into ``context`` on backward."""

    def __init__(self, context: FeedbackContext):
        super().__init__()
        self.context = context

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled() or not logits.requires_grad:
            return logits
        return _Tap.apply(logits, self.context)


class _Signal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, hook):
        ctx.hook = hook
        if hook.rate_reg:
            ctx.save_for_backward(x)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        spikes = ctx.saved_tensors[0] if ctx.hook.rate_reg else None
        return ctx.hook._signal(grad, spikes), None


class LearningSignal(nn.Module):
    """Hook placed after a hidden layer: identity forward; on backward passes the BP gradient
    (``mode='bp'``) or replaces it with a DFA / sDFA signal.

    Args:
        shape: the layer output's shape without batch, e.g. ``(450,)`` or ``(64, 32, 32)``.
        num_classes: number of classes (rows of the feedback matrix).
        mode: ``'bp'``, ``'dfa'`` or ``'sdfa'``.
        context: the model's shared :class:`FeedbackContext` (required for DFA modes).
        record: keep ``last_bp_grad`` and ``last_signal`` of the latest backward (for analysis).
        rate_reg, rate_target: activity regularisation (off at 0, the reference): adds
            ``rate_reg * (s_t - rate_target) / batch`` to the signal, the gradient of
            ``rate_reg/2 * mean_batch sum (s_t - rate_target)^2``; e-prop style, it keeps the firing
            of a recurrent layer trained by DFA from running away (docs/experiments.md).

    Buffer ``feedback``: F, ``[num_classes, *shape]``, kaiming-uniform, fixed (saved with the model).
    """

    def __init__(
        self,
        shape: Sequence[int] | int,
        num_classes: int,
        mode: str = "bp",
        context: Optional[FeedbackContext] = None,
        record: bool = False,
        rate_reg: float = 0.0,
        rate_target: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if mode not in FEEDBACK_MODES:
            raise ValueError(f"mode: expected one of {FEEDBACK_MODES}, got {mode!r}")
        if mode != "bp" and context is None:
            raise ValueError(f"context: mode {mode!r} needs the model's FeedbackContext")
        self.shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
        self.num_classes = int(num_classes)
        self.mode = mode
        self.context = context
        self.record = record
        if not (float(rate_reg) >= 0.0 and math.isfinite(rate_reg)):
            raise ValueError(f"rate_reg: expected a finite number >= 0, got {rate_reg!r}")
        self.rate_reg = float(rate_reg)
        self.rate_target = float(rate_target)
        feedback = torch.empty((self.num_classes,) + self.shape, device=device, dtype=dtype)
        # kaiming-uniform over the flattened [classes, features] matrix (fan_in = features)
        bound = math.sqrt(6.0 / math.prod(self.shape))
        with torch.no_grad():
            feedback.uniform_(-bound, bound)
        self.register_buffer("feedback", feedback)
        self.last_bp_grad: Optional[torch.Tensor] = None
        self.last_signal: Optional[torch.Tensor] = None

    def extra_repr(self) -> str:
        extra = (
            f", rate_reg={self.rate_reg:g}, rate_target={self.rate_target:g}"
            if self.rate_reg
            else ""
        )
        return f"shape={self.shape}, num_classes={self.num_classes}, mode={self.mode!r}{extra}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            (self.mode == "bp" and not self.record and not self.rate_reg)
            or not torch.is_grad_enabled()
            or not x.requires_grad
        ):
            return x
        return _Signal.apply(x, self)

    def _signal(self, grad: torch.Tensor, spikes: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.mode == "bp":
            signal = grad
        else:
            error = self.context.error
            if error is None:
                raise RuntimeError(
                    "LearningSignal: no output error recorded; put an OutputErrorTap with the same "
                    "FeedbackContext on the logits of the same step"
                )
            signal = feedback_signal(error, self.feedback, self.mode == "sdfa").reshape(grad.shape)
        if spikes is not None:
            signal = signal + self.rate_reg * (spikes - self.rate_target) / spikes.shape[0]
        if self.record:
            self.last_bp_grad = (
                grad.detach().clone()
            )  # snapshots: autograd may accumulate into grad
            self.last_signal = signal.detach().clone()
        return signal
