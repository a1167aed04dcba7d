"""Multiply-accumulates counted from the matmuls and convolutions that actually run (a
``TorchDispatchMode``), split into forward, grad-input, grad-weight and other."""

from __future__ import annotations

import math
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from stllr.deferral import in_deferred_flush

__all__ = ["MacCounts", "MacCounter"]

# =========================================================================================
# MAC counter
# =========================================================================================
aten = torch.ops.aten


_MM_OPS = {aten.mm, aten.addmm}


_BMM_OPS = {aten.bmm, aten.baddbmm}


_CONV_OPS = {aten.convolution, aten._convolution, aten.convolution_overrideable}


_CONV_BW_OPS = {aten.convolution_backward}


MAC_KINDS = ("forward", "grad_input", "grad_weight", "backward_other")


@dataclass
class MacCounts:
    """MACs by section (a label the caller sets) and kind:
    ``forward`` (executed outside autograd's backward), ``grad_input`` (gradients w.r.t. layer
    inputs / activations), ``grad_weight`` (weight gradients, the rule's GEMM included) and
    ``backward_other`` (other matmuls in backward, e.g. a DFA feedback projection)."""

    counts: dict = field(default_factory=dict)  # {(section, kind): macs}

    def total(self, section: Optional[str] = None, kind: Optional[str] = None) -> int:
        return sum(
            v
            for (s, k), v in self.counts.items()
            if (section is None or s == section) and (kind is None or k == kind)
        )

    @property
    def forward(self) -> int:
        return self.total(kind="forward")

    @property
    def backward(self) -> int:
        return self.total() - self.forward

    def by_kind(self) -> dict:
        return {k: self.total(kind=k) for k in MAC_KINDS}

    def by_section(self) -> dict:
        out = defaultdict(dict)
        for (s, k), v in sorted(self.counts.items()):
            out[s][k] = v
        return dict(out)

    def as_dict(self) -> dict:
        return {"total": self.total(), **self.by_kind(), "by_section": self.by_section()}


def _weight_shapes(model: Optional[nn.Module]) -> set:
    """Shapes a weight gradient can have: every >=2-D parameter (and its 2-D flattening), plus,
    per module, the side-by-side concatenation of its 2-D weights with the same row count (the
    recurrent layer's fused [W, W_rec])."""
    shapes = set()
    if model is None:
        return shapes
    for m in model.modules():
        rows = defaultdict(int)
        for p in m.parameters(recurse=False):
            if p.dim() >= 2:
                shapes.add(tuple(p.shape))
                shapes.add((p.shape[0], p[0].numel()))
                if p.dim() == 2:
                    rows[p.shape[0]] += p.shape[1]
        for n, width in rows.items():
            shapes.add((n, width))
    return shapes


class MacCounter(TorchDispatchMode):
    """Count the MACs of every matmul (mm, addmm, bmm, baddbmm) and convolution (forward and
    ``convolution_backward``, split by its output mask) executed while active.

    ``with MacCounter(model, batch_size=B) as mc: ...; mc.counts.by_kind()``.
    An op runs in backward when autograd's engine is executing a node
    (``torch._C._current_autograd_node()``). In backward, a matmul whose output has a weight's
    shape (given ``model``) and whose contracted dimension is a multiple of the batch is a
    ``grad_weight``; one whose output has the batch as first dimension is a ``grad_input``; the
    rest are ``backward_other``. ``convolution_backward`` is split exactly by its output mask.
    Use :meth:`section` to label parts of a run (e.g. the steps before the learning window).
    """

    def __init__(self, model: Optional[nn.Module] = None, batch_size: Optional[int] = None):
        super().__init__()
        self.batch_size = batch_size
        self.weight_shapes = _weight_shapes(model)
        self.counts = MacCounts(defaultdict(int))
        self.current_section = "default"

    @contextmanager
    def section(self, name: str):
        previous = self.current_section
        self.current_section = name
        try:
            yield self
        finally:
            self.current_section = previous

    def _add(self, kind: str, macs: int) -> None:
        if macs:
            self.counts.counts[(self.current_section, kind)] += int(macs)

    def _matmul_kind(self, out_shape, k) -> str:
        if in_deferred_flush():  # e.g. [W~ | W~_rec] of a recurrent layer in one GEMM
            return "grad_weight"
        rows_cols = tuple(out_shape[-2:])
        is_weight = rows_cols in self.weight_shapes or rows_cols[::-1] in self.weight_shapes
        if is_weight and (self.batch_size is None or k % self.batch_size == 0):
            return "grad_weight"
        if self.batch_size is not None and out_shape[0] == self.batch_size:
            return "grad_input"
        return "backward_other"

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func.overloadpacket
        try:
            if packet in _MM_OPS or packet in _BMM_OPS:
                self._count_matmul(packet, args)
            elif packet in _CONV_OPS:
                self._count_conv(args, out)
            elif packet in _CONV_BW_OPS:
                self._count_conv_backward(args)
        except Exception:  # never let accounting break the computation
            pass
        return out

    @staticmethod
    def _in_backward() -> bool:
        # a deferred weight-gradient GEMM (stllr.deferred_updates) is backward work wherever it runs
        return torch._C._current_autograd_node() is not None or in_deferred_flush()

    def _count_matmul(self, packet, args):
        a, b = (args[0], args[1]) if packet in (aten.mm, aten.bmm) else (args[1], args[2])
        if packet in _MM_OPS:
            m, k = a.shape
            n = b.shape[1]
            macs, out_shape = m * k * n, (m, n)
        else:
            bs, m, k = a.shape
            n = b.shape[2]
            macs, out_shape = bs * m * k * n, (bs, m, n)
        kind = self._matmul_kind(out_shape, k) if self._in_backward() else "forward"
        self._add(kind, macs)

    def _count_conv(self, args, out):
        x, w = args[0], args[1]
        transposed = bool(args[6]) if len(args) > 6 else False
        spatial = (x.shape if transposed else out.shape)[2:]
        macs = x.shape[0] * math.prod(w.shape) * math.prod(spatial)
        self._add("backward_other" if self._in_backward() else "forward", macs)

    def _count_conv_backward(self, args):
        grad_out, x, w = args[0], args[1], args[2]
        transposed, mask = bool(args[7]), args[10]
        spatial = (x.shape if transposed else grad_out.shape)[2:]
        macs = grad_out.shape[0] * math.prod(w.shape) * math.prod(spatial)
        if mask[0]:
            self._add("grad_input", macs)
        if mask[1]:
            self._add("grad_weight", macs)
