"""Deferred weight gradients: the rule's per-step weight-gradient GEMMs batched over a chunk of
learning steps (rule.md "Deferred weight gradients").

In the ``stllr`` training mode the weights do not change within a sequence, so the rule's weight
gradient summed over the learning steps (paper Eq. 10-13, :func:`stllr.functional.stllr_gemm_operands`)

    sum_t left_t^T right_t = [left_1; ...; left_k]^T [right_1; ...; right_k]

is one GEMM with inner dimension ``k * 2B`` instead of k GEMMs with inner dimension 2B, and the
weight standardisation's backward, linear in dL/dW~, runs once on the sum instead of at every step.
Inside :func:`deferred_updates`, each S-TLLR layer's backward writes its GEMM operands into a
buffer of ``chunk`` steps instead of multiplying them; when the buffer is full it does the one
GEMM into a dL/dW~ accumulator, and at exit the standardisation's backward, adding into
``.grad``. The input gradient (the learning signal passed to the layer below) is still computed at
every step: the layers below need it at once.

Memory held per layer: the buffer, ``chunk x rows x (N + M)`` values (rows = 2B, or B when
alpha_post = 0; conv: the output and input feature maps), plus one dL/dW~ accumulator of the
weights' size (:attr:`DeferredUpdates.held_bytes`).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, List, Optional

import torch
from torch import nn

from . import _checks
from . import functional as SF

__all__ = ["DeferredUpdates", "deferred_updates", "in_deferred_flush"]

_flushing = 0  # > 0 while a deferred GEMM runs (stllr.measure.MacCounter counts it as backward)


def in_deferred_flush() -> bool:
    """True while a deferred weight-gradient GEMM runs (for MAC accounting: it is backward work,
    also when it runs at the context's exit, outside autograd's engine)."""
    return _flushing > 0


class _LayerBuffer:
    """One layer's pending operands (``chunk`` steps of rows) and its dL/dW~ / dL/db sums."""

    def __init__(self, layer: nn.Module, chunk: int):
        self.layer = layer
        self.chunk = chunk
        self.left: Optional[torch.Tensor] = None  # [chunk * rows, N, ...]
        self.right: Optional[torch.Tensor] = None  # [chunk * rows, M, ...]
        self.rows = 0  # rows filled in the buffer
        self.rows_per_step = 0
        self.acc: Optional[torch.Tensor] = None  # sum of dL/dW~ (recurrent: [W~ | W~_rec] columns)
        self.bias_acc: Optional[torch.Tensor] = None
        self.constants = None  # the layer's per-sequence constants the operands belong to
        self.key = None  # and the parameter versions they were computed from
        self.steps = 0
        self.batch = 0
        # dL/db from the buffer: the last batch of rows of each step holds its terms exactly
        # (delta * psi when alpha_pre = 1; the readout's delta), summed when the chunk's GEMM runs
        self.bias_from_rows = False

    # -- one learning step ----------------------------------------------------------------
    def step_operands(
        self, constants, rows: int, batch: int, left_shape, right_shape, dtype, device
    ):
        """Views of the next ``rows`` rows of the buffers (allocated at the first step), after
        flushing a full buffer. Refuses operands computed with other weights than the first."""
        # the parameters' versions the layer's per-sequence constants were computed from (the
        # key of _STLLRBase._sequence_constants): a change means the weights moved mid-context
        key = getattr(self.layer, "_constants_key", None)
        if self.constants is None:
            self.constants, self.key = constants, key
        elif key != self.key:
            name = type(self.layer).__name__
            raise RuntimeError(
                f"deferred_updates: the parameters of a {name} changed inside the context (an "
                "optimizer step between learning steps, as in stllr_online, or load_state_dict / "
                ".to()); deferral needs the weights fixed for the sequence: use chunk=0 (per step)"
            )
        if self.left is None:
            self.rows_per_step, self.batch = rows, batch
            self.left = torch.empty((rows,) + tuple(left_shape), dtype=dtype, device=device)
            self.right = torch.empty((rows,) + tuple(right_shape), dtype=dtype, device=device)
        elif rows != self.rows_per_step or tuple(left_shape) != self.left.shape[1:]:
            raise RuntimeError(
                "deferred_updates: the batch or feature shape changed within the context; "
                "one context holds one sequence (reset the states and start a new context)"
            )
        if self.rows + rows > self.left.shape[0]:
            if self.left.shape[0] < self.chunk * rows:  # grow (doubling) up to chunk steps
                self._grow(min(2 * self.left.shape[0], self.chunk * rows))
            else:
                self.flush()
        lo, hi = self.rows, self.rows + rows
        self.rows = hi
        self.steps += 1
        return self.left[lo:hi], self.right[lo:hi]

    def _grow(self, capacity: int) -> None:
        """Reallocate the buffers for ``capacity`` rows, keeping the filled ones: a buffer holds
        no more steps than the sequence has learning steps, however large ``chunk`` is."""
        for name in ("left", "right"):
            old = getattr(self, name)
            new = old.new_empty((capacity,) + old.shape[1:])
            new[: self.rows].copy_(old[: self.rows])
            setattr(self, name, new)

    def release(self) -> None:
        self.left = self.right = self.acc = self.bias_acc = None
        self.constants = None

    def add_bias(self, grad_b: Optional[torch.Tensor]) -> None:
        if grad_b is None:
            return
        if self.bias_acc is None:
            self.bias_acc = grad_b.clone()
        else:
            self.bias_acc.add_(grad_b)

    # -- the deferred GEMM ---------------------------------------------------------------
    def flush(self) -> None:
        """One GEMM (conv: one ``conv2d_weight``) over the filled rows into the accumulator."""
        if self.rows == 0:
            return
        global _flushing
        left, right = self.left[: self.rows], self.right[: self.rows]
        if self.bias_from_rows:
            steps, per_step = self.rows // self.rows_per_step, self.rows_per_step // self.batch
            rows = left.view((steps, per_step, self.batch) + left.shape[1:])[:, per_step - 1]
            self.add_bias(self.layer._bias_grad(rows.flatten(0, 1)))
        _flushing += 1
        try:
            g = self.layer._deferred_weight_grad(left, right)
        finally:
            _flushing -= 1
        if self.acc is None:
            self.acc = g
        else:
            self.acc.add_(g)
        self.rows = 0

    def finish(self) -> None:
        """Flush, then carry the accumulated dL/dW~ through the standardisation into ``.grad``."""
        self.flush()
        if self.acc is None:
            return
        grads = self.layer._deferred_param_grads(self.acc, self.bias_acc, self.constants)
        for p, g in grads:
            if p is None or g is None or not p.requires_grad:
                continue
            if p.grad is None:
                p.grad = g if g.shape == p.shape else g.reshape(p.shape)
            else:
                p.grad.add_(g.reshape(p.shape))

    @property
    def held_bytes(self) -> int:
        tensors = (self.left, self.right, self.acc, self.bias_acc)
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)


class DeferredUpdates:
    """What :func:`deferred_updates` yields: the per-layer buffers and what they hold.

    ``layers``: the S-TLLR layers deferred; ``held_bytes``: bytes the buffers and accumulators
    hold now (released at exit); ``peak_bytes``: the most they held (set at exit); ``steps``:
    learning steps deferred per layer.
    """

    def __init__(self, layers: List[nn.Module], chunk: int):
        self.chunk = chunk
        self.layers = layers
        self._buffers = [_LayerBuffer(layer, chunk) for layer in layers]
        self.peak_bytes = 0

    @property
    def held_bytes(self) -> int:
        """Bytes held now by the operand buffers and the dL/dW~ accumulators of every layer."""
        return sum(b.held_bytes for b in self._buffers)

    @property
    def steps(self) -> List[int]:
        """Learning steps deferred so far, per layer (in the order of :attr:`layers`)."""
        return [b.steps for b in self._buffers]

    def _finish(self) -> None:
        for b in self._buffers:
            b.flush()
        self.peak_bytes = max(self.peak_bytes, self.held_bytes)  # buffers only grow until here
        for b in self._buffers:
            b.finish()
        self._release()

    def _release(self) -> None:
        for b in self._buffers:
            b.release()


def _stllr_layers(module: nn.Module) -> List[nn.Module]:
    from .layers import _STLLRBase  # here: layers imports this module

    return [m for m in module.modules() if isinstance(m, _STLLRBase)]


@contextlib.contextmanager
def deferred_updates(module: nn.Module, chunk: int = 16) -> Iterator[DeferredUpdates]:
    """Defer the rule's weight gradients of every S-TLLR layer in ``module`` to ``chunk``-step GEMMs.

    Inside the context each learning step's backward stores the GEMM operands of
    :func:`stllr.functional.stllr_gemm_operands` (readout: ``delta`` and ``tr_in``) instead of
    multiplying them; every ``chunk`` learning steps one GEMM per layer adds them up, and at exit
    the weight standardisation's backward turns the sum into dL/dW, dL/dgain, added into ``.grad``
    (with dL/db). ``.grad`` is final at exit only: code that reads it between steps must run
    without deferral. The weights must not change inside the context (refused with a
    ``RuntimeError``: use ``chunk=0`` for ``stllr_online``). If the block raises, nothing is added.

    Parameters:
        module: a model or layer holding S-TLLR layers (:mod:`stllr.layers`).
        chunk: learning steps per GEMM (>= 1). Memory held grows with it: per layer
            ``chunk x rows x (N + M)`` values (rows = 2B, or B with alpha_post = 0) plus one
            weight-sized accumulator.

    Yields: a :class:`DeferredUpdates` (``held_bytes``, ``peak_bytes``, ``steps``).

    Example:
        >>> import torch, stllr
        >>> layer = stllr.LinearSTLLR(4, 3)
        >>> x = torch.rand(6, 2, 4)
        >>> with stllr.deferred_updates(layer, chunk=4) as d:
        ...     for t in range(6):
        ...         layer(x[t]).sum().backward()
        >>> d.steps, tuple(layer.weight.grad.shape)
        ([6], (3, 4))
    """
    chunk = _checks.check_positive_int(chunk, "chunk")
    layers = _stllr_layers(module)
    if not layers:
        raise ValueError(
            f"module: no S-TLLR layer in {type(module).__name__} (stllr.layers); BPTT models "
            "compute their gradients in one backward"
        )
    busy = [type(m).__name__ for m in layers if getattr(m, "_deferral", None) is not None]
    if busy:
        raise RuntimeError(
            f"deferred_updates: already active on {', '.join(busy)} (nested context)"
        )
    deferral = DeferredUpdates(layers, chunk)
    for layer, buf in zip(layers, deferral._buffers):
        layer._deferral = buf
    ok = False
    try:
        yield deferral
        ok = True
    finally:
        for layer in layers:
            layer._deferral = None
        if ok:
            deferral._finish()
        else:
            deferral._release()


def gemm_operands_into(buffer: _LayerBuffer, constants, delta, psi_t, post_prev, x_t, pre_trace_t):
    """Write one step's :func:`stllr.functional.stllr_gemm_operands` into ``buffer``'s next rows."""
    rows = delta.shape[0] * (1 if constants.alpha_post == 0.0 else 2)
    left, right = buffer.step_operands(
        constants,
        rows,
        delta.shape[0],
        delta.shape[1:],
        pre_trace_t.shape[1:],
        delta.dtype,
        delta.device,
    )
    return SF.stllr_gemm_operands(
        delta,
        psi_t,
        post_prev,
        x_t,
        pre_trace_t,
        constants.alpha_post,
        constants.alpha_pre,
        out=(left, right),
    )
