"""Measure what S-TLLR saves: memory kept for the backward pass, peak memory and MACs,
measured from what the layers actually execute and, beside it, the paper's analytic count
(Apolinario & Roy, TMLR 2025, Section 4.3, Eq. 18-23).

Four tools, usable on their own or through :func:`measure_sequence` / :func:`compare`:

- :class:`SavedTensorTracker`: bytes saved for backward (``torch.autograd.graph.saved_tensors_hooks``),
  exact and deterministic: live bytes of the unique storages the autograd graph holds, their peak
  and total, released when the graph is freed. Split into *activations* (tensors with the batch as
  first dimension), *parameters* (storages of the model's parameters/buffers) and *other*
  (weight-sized derived tensors such as a standardised weight, scalars).
- :class:`PeakMemoryMeter`: ``torch.cuda.max_memory_allocated`` on GPU; on CPU the process peak
  resident set size (``VmHWM``, reset through ``/proc/self/clear_refs``), which is approximate.
- :class:`MacCounter`: a ``TorchDispatchMode`` counting the multiply-accumulates of every matmul and
  convolution executed (forward and backward), split into forward / grad_input / grad_weight.
- :func:`model_shapes` + :func:`analytic_costs`: the paper's memory and MAC formulas from the
  model's real layer shapes (one dummy step finds the conv output sizes).

Units: memory in bytes unless a name says ``values``; MACs are multiply-accumulates (FLOPs / 2).
See ``docs/measurement.md`` for where measured and analytic numbers differ and why.
"""
from __future__ import annotations

import math
import os
import platform
import re
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Optional, Sequence, Union

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = [
    "load_average", "machine_description",
    "SavedTensorStats", "SavedTensorTracker", "track_saved_tensors", "state_bytes",
    "PeakMemory", "PeakMemoryMeter", "MacCounts", "MacCounter",
    "LayerShape", "ModelShapes", "model_shapes", "paper_memory", "paper_macs",
    "paper_memory_ratio", "paper_mac_ratio", "analytic_costs", "model_alpha_post",
    "SequenceMeasurement", "run_sequence", "measure_sequence", "compare", "gemm_throughput",
]


# =========================================================================================
# Saved-for-backward bytes
# =========================================================================================
def _storage_key_and_bytes(t: torch.Tensor):
    """(key, nbytes) of the storage behind ``t``: a view counts its whole storage, two views of
    one storage count once."""
    try:
        st = t.untyped_storage()
        ptr = st.data_ptr()
        if ptr != 0:
            return ("s", t.device.type, t.device.index, ptr), int(st.nbytes())
    except Exception:  # tensor subclasses / sparse / meta: fall back to the tensor itself
        pass
    return ("t", id(t)), int(t.numel() * t.element_size())


@dataclass
class SavedTensorStats:
    """What the autograd graph kept for backward during a tracked region (bytes).

    ``peak_bytes``: the largest amount held at once (unique storages);
    ``total_bytes``: every unique storage ever saved, summed (what a graph that is never freed
    would hold); ``*_activation_bytes``: the same for activations only (batch-sized tensors, not
    parameters); ``live_*``: still held when the stats were taken.
    """

    peak_bytes: int
    total_bytes: int
    live_bytes: int
    peak_activation_bytes: int
    total_activation_bytes: int
    live_activation_bytes: int
    total_parameter_bytes: int
    total_other_bytes: int
    num_saved: int  #: pack calls (tensors saved, before de-duplication)
    num_storages: int  #: unique storages saved

    def as_dict(self) -> dict:
        return asdict(self)


class _Packed:
    """What the graph holds instead of a saved tensor; releases its storage's count when the
    graph lets go of it (backward without retain_graph, or the graph being garbage collected)."""

    __slots__ = ("tensor", "key", "tracker", "__weakref__")

    def __init__(self, tensor, key, tracker):
        self.tensor = tensor
        self.key = key
        self.tracker = tracker

    def __del__(self):
        try:
            self.tracker._release(self.key)
        except Exception:  # interpreter shutdown
            pass


class SavedTensorTracker:
    """Context manager: count the bytes the autograd graph saves for backward.

    ``with SavedTensorTracker(model, batch_size=B) as tr: ...; tr.stats()``.
    Every tensor saved for backward (``save_for_backward`` of custom Functions included) is
    wrapped; live bytes count each storage once however many tensors/views of it are saved, and
    drop when the graph releases it. Exact and deterministic (no allocator involved).

    Args:
        model: its parameters and buffers are classified as ``parameter`` (optional).
        batch_size: tensors whose first dimension equals it are ``activation``; the rest are
            ``other`` (weight-sized, scalars). If None, every non-parameter tensor is an
            activation. A layer width equal to the batch size would be misread as a batch
            dimension: pick a batch size that differs from the layer widths.
    """

    def __init__(self, model: Optional[nn.Module] = None, batch_size: Optional[int] = None):
        self.batch_size = batch_size
        self._param_keys = set()
        if model is not None:
            for t in list(model.parameters()) + list(model.buffers()):
                self._param_keys.add(_storage_key_and_bytes(t)[0])
        self._lock = threading.RLock()
        self._live = {}  # key -> [count, nbytes, category]
        self._hooks = None
        self.reset()

    def reset(self) -> None:
        """Zero the peak and total counters (live storages stay counted as live)."""
        with self._lock:
            self.live_bytes = sum(v[1] for v in self._live.values())
            self.live_activation_bytes = sum(v[1] for v in self._live.values() if v[2] == "activation")
            self.peak_bytes = self.live_bytes
            self.peak_activation_bytes = self.live_activation_bytes
            self.total_bytes = 0
            self.totals = defaultdict(int)
            self.num_saved = 0
            self.num_storages = 0

    def reset_peak(self) -> None:
        """Restart the peak from the bytes live now."""
        with self._lock:
            self.peak_bytes = self.live_bytes
            self.peak_activation_bytes = self.live_activation_bytes

    def _category(self, t, key) -> str:
        if key in self._param_keys:
            return "parameter"
        if self.batch_size is None:
            return "activation"
        if t.dim() >= 1 and t.shape[0] == self.batch_size:
            return "activation"
        return "other"

    def _pack(self, t):
        if not isinstance(t, torch.Tensor):
            return t
        key, nbytes = _storage_key_and_bytes(t)
        with self._lock:
            self.num_saved += 1
            entry = self._live.get(key)
            if entry is None:
                cat = self._category(t, key)
                self._live[key] = [1, nbytes, cat]
                self.num_storages += 1
                self.total_bytes += nbytes
                self.totals[cat] += nbytes
                self.live_bytes += nbytes
                self.peak_bytes = max(self.peak_bytes, self.live_bytes)
                if cat == "activation":
                    self.live_activation_bytes += nbytes
                    self.peak_activation_bytes = max(self.peak_activation_bytes, self.live_activation_bytes)
            else:
                entry[0] += 1
        # detach: a node that saves its own output would otherwise form a reference cycle
        # (node -> saved -> holder -> tensor -> grad_fn = node) that is never collected.
        return _Packed(t.detach(), key, self)

    @staticmethod
    def _unpack(p):
        return p.tensor if isinstance(p, _Packed) else p

    def _release(self, key) -> None:
        with self._lock:
            entry = self._live.get(key)
            if entry is None:
                return
            entry[0] -= 1
            if entry[0] == 0:
                del self._live[key]
                self.live_bytes -= entry[1]
                if entry[2] == "activation":
                    self.live_activation_bytes -= entry[1]

    def __enter__(self):
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)
        self._hooks = None
        return False

    def stats(self) -> SavedTensorStats:
        with self._lock:
            return SavedTensorStats(
                peak_bytes=self.peak_bytes, total_bytes=self.total_bytes, live_bytes=self.live_bytes,
                peak_activation_bytes=self.peak_activation_bytes,
                total_activation_bytes=self.totals["activation"],
                live_activation_bytes=self.live_activation_bytes,
                total_parameter_bytes=self.totals["parameter"], total_other_bytes=self.totals["other"],
                num_saved=self.num_saved, num_storages=self.num_storages)


def track_saved_tensors(model: Optional[nn.Module] = None, batch_size: Optional[int] = None) -> SavedTensorTracker:
    """``with track_saved_tensors(model, B) as tr: ...`` (alias of :class:`SavedTensorTracker`)."""
    return SavedTensorTracker(model, batch_size)


def _state_tensors(m: nn.Module):
    st = getattr(m, "state", None)
    if isinstance(st, tuple):
        return [t for t in st if isinstance(t, torch.Tensor)]
    if isinstance(st, torch.Tensor):
        return [st]
    mem = getattr(m, "membrane", None)
    if isinstance(mem, torch.Tensor) and not isinstance(getattr(type(m), "membrane", None), property):
        return [mem]
    return []


def state_bytes(model: nn.Module) -> dict:
    """Bytes of the layers' states (traces, membranes, spikes, psi) read from each layer's
    ``state`` (or ``membrane``), unique storages only.

    Returns ``{"total": ..., "traces": ..., "per_layer": {name: bytes}}``; ``traces`` counts the
    S-TLLR ``pre_trace`` and ``post_trace`` fields (the two traces of the paper's Eq. 19).
    """
    seen = set()
    per_layer, total, traces = {}, 0, 0
    for name, m in model.named_modules():
        tensors = _state_tensors(m)
        if not tensors:
            continue
        trace_ids = set()
        st = getattr(m, "state", None)
        for fld in ("pre_trace", "post_trace"):
            t = getattr(st, fld, None) if st is not None else None
            if isinstance(t, torch.Tensor):
                trace_ids.add(id(t))
        layer_total = 0
        for t in tensors:
            key, nbytes = _storage_key_and_bytes(t)
            if key in seen:
                continue
            seen.add(key)
            layer_total += nbytes
            if id(t) in trace_ids:
                traces += nbytes
        per_layer[name or type(m).__name__] = layer_total
        total += layer_total
    return {"total": total, "traces": traces, "per_layer": per_layer}


# =========================================================================================
# Peak memory (GPU allocator / process RSS)
# =========================================================================================
@dataclass
class PeakMemory:
    """Peak memory over a region. ``increase_bytes`` = peak - memory at the start."""

    device: str
    peak_bytes: int
    start_bytes: int
    increase_bytes: int
    approximate: bool
    method: str

    def as_dict(self) -> dict:
        return asdict(self)


def _read_status_kb(field_name: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"^{field_name}:\s+(\d+)\s+kB", f.read(), re.M)
        return int(m.group(1)) * 1024 if m else None
    except OSError:
        return None


def _current_rss() -> int:
    rss = _read_status_kb("VmRSS")
    if rss is not None:
        return rss
    try:
        import psutil
        return int(psutil.Process().memory_info().rss)
    except Exception:
        return 0


class PeakMemoryMeter:
    """Context manager measuring peak memory of a region.

    CUDA devices: exact allocator peak (``torch.cuda.max_memory_allocated`` after
    ``reset_peak_memory_stats``). CPU: the process's peak resident set size (``VmHWM``, reset
    by writing ``5`` to ``/proc/self/clear_refs``); falls back to ``ru_maxrss`` (the peak over the
    whole process life) where that is not possible. CPU numbers include the allocator's caching,
    Python and everything else in the process: approximate (``approximate=True``).
    """

    def __init__(self, device: Union[str, torch.device, None] = None):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.result: Optional[PeakMemory] = None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            self._method = "torch.cuda.max_memory_allocated"
        else:
            self._method = "VmHWM (peak RSS, reset via /proc/self/clear_refs)"
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                self._method = "ru_maxrss (peak RSS of the whole process life)"
            self._start = _current_rss()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            approx = False
        else:
            peak = _read_status_kb("VmHWM") if self._method.startswith("VmHWM") else None
            if peak is None:
                import resource
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            approx = True
        self.result = PeakMemory(str(self.device), int(peak), int(self._start), int(max(peak - self._start, 0)),
                                 approx, self._method)
        return False


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
        return sum(v for (s, k), v in self.counts.items()
                   if (section is None or s == section) and (kind is None or k == kind))

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
        return torch._C._current_autograd_node() is not None

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


# =========================================================================================
# Model shapes and the paper's analytic formulas (Eq. 18-23)
# =========================================================================================
_STLLR_LAYER_NAMES = ("LinearSTLLR", "RecurrentSTLLR", "Conv2dSTLLR", "LeakyReadout")
_BPTT_LAYER_NAMES = ("LinearLIF", "RecurrentLIF", "Conv2dLIF", "LeakyIntegrator")


def _weight_layer_kind(m: nn.Module) -> Optional[str]:
    names = [c.__name__ for c in type(m).__mro__]
    for n in ("RecurrentSTLLR", "RecurrentLIF"):
        if n in names:
            return "recurrent"
    for n in ("Conv2dSTLLR", "Conv2dLIF"):
        if n in names:
            return "conv"
    if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return "conv"
    for n in ("LeakyReadout", "LeakyIntegrator"):
        if n in names:
            return "readout"
    for n in ("LinearSTLLR", "LinearLIF"):
        if n in names:
            return "linear"
    if isinstance(m, nn.Linear):
        return "linear"
    return None


@dataclass
class LayerShape:
    """One weight layer as it ran on one sample: neurons = output activations (C*H*W for conv),
    ``weight_macs`` = MACs of its weights for one sample and one step (recurrent: input and
    recurrent weights; conv: outputs x C_in/groups x kh x kw)."""

    name: str
    kind: str
    layer_type: str
    in_neurons: int
    neurons: int
    weight_macs: int
    out_shape: tuple


@dataclass
class ModelShapes:
    """N^(l) of the paper: ``input_neurons`` (l=0) and each weight layer's outputs, in call order."""

    input_shape: tuple
    input_neurons: int
    layers: list

    @property
    def neurons(self) -> list:
        return [self.input_neurons] + [l.neurons for l in self.layers]

    @property
    def sum_neurons(self) -> int:
        """sum_l N^(l), l = 0 (input) .. L."""
        return sum(self.neurons)

    @property
    def weight_macs(self) -> int:
        """sum_{l>=1} N^(l) N^(l-1) of the paper, generalised: the weight MACs of one forward step
        for one sample (equal to sum N^(l) N^(l-1) for a chain of fully connected layers)."""
        return sum(l.weight_macs for l in self.layers)

    @property
    def num_classes(self) -> int:
        return self.layers[-1].neurons if self.layers else 0

    def as_dict(self) -> dict:
        return {"input_shape": list(self.input_shape), "input_neurons": self.input_neurons,
                "sum_neurons": self.sum_neurons, "weight_macs": self.weight_macs,
                "layers": [asdict(l) for l in self.layers]}


def _reset(model: nn.Module) -> None:
    if hasattr(model, "reset_state") and callable(model.reset_state):
        model.reset_state()
    for m in model.modules():
        if m is not model and getattr(m, "_stateful", False) and hasattr(m, "reset_state"):
            m.reset_state()


def _model_input_shape(model: nn.Module, input_shape) -> tuple:
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None)
    if input_shape is None:
        raise ValueError("input_shape: the model has no `input_shape` attribute; pass the shape of one "
                         "sample at one step, e.g. (700,) or (2, 32, 32)")
    if isinstance(input_shape, int):
        input_shape = (input_shape,)
    return tuple(int(s) for s in input_shape)


def _model_dtype_device(model: nn.Module):
    for p in model.parameters():
        return p.dtype, p.device
    return torch.get_default_dtype(), torch.device("cpu")


def model_shapes(model: nn.Module, input_shape: Optional[Sequence[int]] = None) -> ModelShapes:
    """Run one dummy step (batch 1, no grad) and record every weight layer's shapes.

    Weight layers: the S-TLLR layers, their BPTT twins, ``nn.Linear`` and ``nn.Conv*``. A
    module that contains another weight layer counts only through its children. The model's
    state is reset before and after. ``input_shape``: one sample at one step, e.g. ``(700,)``
    or ``(2, 32, 32)``; defaults to ``model.input_shape``.
    """
    input_shape = _model_input_shape(model, input_shape)
    dtype, device = _model_dtype_device(model)
    records, handles = [], []

    def hook(mod, inputs, output, name):
        x = inputs[0]
        kind = _weight_layer_kind(mod)
        out = output[0] if isinstance(output, (tuple, list)) else output
        in_n = x[0].numel()
        out_n = out[0].numel()
        w = mod.weight
        if kind == "conv":
            macs = out_n * w[0].numel()
        elif kind == "recurrent":
            macs = out_n * (in_n + out_n)
        else:
            macs = out_n * in_n
        records.append(LayerShape(name, kind, type(mod).__name__, int(in_n), int(out_n), int(macs),
                                  tuple(out.shape[1:])))

    for name, m in model.named_modules():
        if _weight_layer_kind(m) is not None and isinstance(getattr(m, "weight", None), torch.Tensor):
            handles.append(m.register_forward_hook(lambda mod, i, o, name=name: hook(mod, i, o, name)))
    was_training = model.training
    try:
        _reset(model)
        with torch.no_grad():
            model(torch.zeros((1,) + input_shape, dtype=dtype, device=device))
    finally:
        for h in handles:
            h.remove()
        _reset(model)
        model.train(was_training)
    if not records:
        raise ValueError(f"model_shapes: no weight layers found in {type(model).__name__}")
    return ModelShapes(input_shape, math.prod(input_shape), records)


def paper_memory(sum_neurons: int, T: int, method: str) -> int:
    """Eq. 18-19, in stored values for one sample: BPTT ``T * sum_l N^(l)``, S-TLLR
    ``2 * sum_l N^(l)`` (two traces per neuron, independent of T)."""
    _check_T(T)
    if method == "bptt":
        return T * sum_neurons
    if method == "stllr":
        return 2 * sum_neurons
    raise ValueError(f"method: expected 'bptt' or 'stllr', got {method!r}")


def paper_macs(weight_macs: int, T: int, method: str, delay_ls: Optional[int] = None,
               alpha_post: float = -1.0) -> int:
    """Eq. 20-21, for one sample: BPTT ``2 T S``; S-TLLR ``3 (T - T_l) S`` with
    ``T - T_l = delay_ls`` (``2`` instead of ``3`` when ``alpha_post == 0``), where
    ``S = sum_{l>=1} N^(l) N^(l-1)`` (:attr:`ModelShapes.weight_macs`)."""
    _check_T(T)
    if method == "bptt":
        return 2 * T * weight_macs
    if method == "stllr":
        d = _check_delay(T, delay_ls)
        return (2 if alpha_post == 0 else 3) * d * weight_macs
    raise ValueError(f"method: expected 'bptt' or 'stllr', got {method!r}")


def paper_memory_ratio(T: int) -> float:
    """S_mem = Mem_BPTT / Mem_S-TLLR = T / 2 (Eq. 22)."""
    _check_T(T)
    return T / 2.0


def paper_mac_ratio(T: int, delay_ls: Optional[int] = None, alpha_post: float = -1.0) -> float:
    """S_MAC = MAC_BPTT / MAC_S-TLLR = 2 T / (3 (T - T_l)) (Eq. 23; 2 instead of 3 when
    alpha_post = 0)."""
    d = _check_delay(T, delay_ls)
    return 2.0 * T / ((2 if alpha_post == 0 else 3) * d)


def _check_T(T) -> int:
    if isinstance(T, bool) or not isinstance(T, int) or T <= 0:
        raise ValueError(f"T: expected a positive integer number of time steps, got {T!r}")
    return T


def _check_delay(T, delay_ls) -> int:
    _check_T(T)
    if delay_ls is None:
        return T
    if isinstance(delay_ls, bool) or not isinstance(delay_ls, int) or not 1 <= delay_ls <= T:
        raise ValueError(f"delay_ls: expected an integer in [1, T={T}] (the learning window T - T_l), "
                         f"got {delay_ls!r}")
    return delay_ls


def model_alpha_post(model: nn.Module) -> Optional[float]:
    """alpha_post of the model's spiking S-TLLR layers (the readout, which has no non-causal
    term, is ignored): the one with the largest magnitude, or None if the model has none."""
    values = []
    for m in model.modules():
        names = [c.__name__ for c in type(m).__mro__]
        if any(n in names for n in ("LinearSTLLR", "Conv2dSTLLR")) and "LeakyReadout" not in names:
            f = getattr(m, "factors", None)
            if isinstance(f, torch.Tensor) and f.numel() == 4:
                values.append(float(f[2]))
    if not values:
        return None
    return max(values, key=abs)


def analytic_costs(model_or_shapes: Union[nn.Module, ModelShapes], T: int, delay_ls: Optional[int] = None,
                   alpha_post: Optional[float] = None, batch_size: int = 1,
                   bytes_per_value: Optional[int] = None, input_shape=None) -> dict:
    """The paper's memory and MACs (Eq. 18-23) for a model, T and learning window.

    ``delay_ls`` = T - T_l (defaults to T); ``alpha_post`` defaults to the model's (-1 if it has
    no S-TLLR layer). Memory in values and in bytes (``bytes_per_value``: the model's element
    size, 4 for float32), MACs; both multiplied by ``batch_size`` (the paper's Table 3 is for
    batch 1).
    """
    if isinstance(model_or_shapes, ModelShapes):
        shapes = model_or_shapes
        if bytes_per_value is None:
            bytes_per_value = 4
    else:
        shapes = model_shapes(model_or_shapes, input_shape)
        if alpha_post is None:
            alpha_post = model_alpha_post(model_or_shapes)
        if bytes_per_value is None:
            bytes_per_value = torch.empty((), dtype=_model_dtype_device(model_or_shapes)[0]).element_size()
    if alpha_post is None:
        alpha_post = -1.0
    d = _check_delay(T, delay_ls)
    mem_b = paper_memory(shapes.sum_neurons, T, "bptt") * batch_size
    mem_s = paper_memory(shapes.sum_neurons, T, "stllr") * batch_size
    mac_b = paper_macs(shapes.weight_macs, T, "bptt") * batch_size
    mac_s = paper_macs(shapes.weight_macs, T, "stllr", d, alpha_post) * batch_size
    return {
        "T": T, "delay_ls": d, "T_l": T - d, "alpha_post": alpha_post, "batch_size": batch_size,
        "sum_neurons": shapes.sum_neurons, "weight_macs_per_step": shapes.weight_macs,
        "bptt_memory_values": mem_b, "stllr_memory_values": mem_s,
        "bptt_memory_bytes": mem_b * bytes_per_value, "stllr_memory_bytes": mem_s * bytes_per_value,
        "memory_ratio": mem_b / mem_s, "bptt_macs": mac_b, "stllr_macs": mac_s,
        "mac_ratio": mac_b / mac_s,
    }


# =========================================================================================
# One training sequence, measured
# =========================================================================================
def _is_stllr_model(model: nn.Module) -> bool:
    flag = getattr(model, "is_stllr", None)
    if flag is not None:
        return bool(flag)
    return any(any(c.__name__ in _STLLR_LAYER_NAMES for c in type(m).__mro__) for m in model.modules())


InputsLike = Union[torch.Tensor, Sequence[torch.Tensor], Callable[[int], torch.Tensor]]


def _step_input(inputs: InputsLike, t: int, clone: bool) -> torch.Tensor:
    if callable(inputs) and not isinstance(inputs, torch.Tensor):
        return inputs(t)
    x = inputs[t]
    # a slice of a [T, B, ...] tensor shares its storage: a saved slice would keep (and be
    # counted as) the whole sequence. Each step gets its own storage, as a sensor stream would.
    return x.clone() if clone and isinstance(inputs, torch.Tensor) else x


def _cross_entropy(out, target):
    return nn.functional.cross_entropy(out, target)


def run_sequence(model: nn.Module, inputs: InputsLike, target, *, steps: Optional[int] = None,
                 mode: Optional[str] = None, delay_ls: Optional[int] = None,
                 loss_fn: Optional[Callable] = None, bptt_loss: str = "sum",
                 mac_counter: Optional[MacCounter] = None, clone_steps: bool = True) -> None:
    """Run one training sequence (forward and backward, no optimizer step).

    - ``mode='stllr'`` (default for S-TLLR models): the first ``T - delay_ls`` steps under
      ``no_grad``; each of the last ``delay_ls`` steps calls ``loss_fn(out_t, target).backward()``
      (rule.md "Training modes"), so one step's graph is alive at a time.
    - ``mode='bptt'``: every step with the graph; ``loss_fn(sum_t out_t, target)``
      (``bptt_loss='sum'``, the reference) or ``loss_fn(out_T, target)`` (``'last'``, the paper's
      Fig. 3 setup), one backward.

    ``inputs``: a tensor [T, B, ...] (each step is cloned into its own storage), a sequence of
    per-step tensors, or a callable ``t -> x_t`` (then pass ``steps``). ``loss_fn`` defaults to
    cross-entropy. Gradients accumulate in ``.grad`` (zeroed first); states are reset first
    and left as the last step set them.
    """
    if mode is None:
        mode = "stllr" if _is_stllr_model(model) else "bptt"
    if mode not in ("stllr", "bptt"):
        raise ValueError(f"mode: expected 'stllr' or 'bptt', got {mode!r}")
    if bptt_loss not in ("sum", "last"):
        raise ValueError(f"bptt_loss: expected 'sum' or 'last', got {bptt_loss!r}")
    T = steps if steps is not None else len(inputs)
    _check_T(T)
    d = _check_delay(T, delay_ls)
    loss_fn = loss_fn or _cross_entropy
    section = mac_counter.section if mac_counter is not None else (lambda name: _nullcontext())
    model.zero_grad(set_to_none=True)
    _reset(model)
    if mode == "stllr":
        first = T - d
        for t in range(T):
            x_t = _step_input(inputs, t, clone_steps)
            if t < first:
                with section("pre_window"), torch.no_grad():
                    model(x_t)
            else:
                with section("window"):
                    out = model(x_t)
                    loss = loss_fn(out, target)
                    loss.backward()
                del out, loss
    else:
        acc = None
        with section("bptt"):
            for t in range(T):
                out = model(_step_input(inputs, t, clone_steps))
                if bptt_loss == "last":
                    acc = out
                else:
                    acc = out if acc is None else acc + out
            loss = loss_fn(acc, target)
            del acc, out
            loss.backward()
            del loss


@contextmanager
def _nullcontext():
    yield


@dataclass
class SequenceMeasurement:
    """Everything :func:`measure_sequence` measured for one training sequence."""

    mode: str
    T: int
    delay_ls: int
    batch_size: int
    saved: Optional[SavedTensorStats]
    state: dict
    macs: Optional[MacCounts]
    seconds: float
    peak: Optional[PeakMemory] = None

    def as_dict(self) -> dict:
        return {"mode": self.mode, "T": self.T, "delay_ls": self.delay_ls, "batch_size": self.batch_size,
                "saved": None if self.saved is None else self.saved.as_dict(),
                "state": self.state, "macs": None if self.macs is None else self.macs.as_dict(),
                "seconds": self.seconds, "peak": None if self.peak is None else self.peak.as_dict()}


def measure_sequence(model: nn.Module, inputs: InputsLike, target, *, steps: Optional[int] = None,
                     mode: Optional[str] = None, delay_ls: Optional[int] = None,
                     loss_fn: Optional[Callable] = None, bptt_loss: str = "sum",
                     saved: bool = True, macs: bool = True, peak: bool = False,
                     clone_steps: bool = True) -> SequenceMeasurement:
    """Run :func:`run_sequence` once and measure saved bytes, state bytes, MACs and (optionally)
    peak memory. The batch size is read from the first step's input. ``seconds`` includes
    the measuring overhead (time with ``saved=macs=peak=False`` for speed)."""
    if mode is None:
        mode = "stllr" if _is_stllr_model(model) else "bptt"
    T = steps if steps is not None else len(inputs)
    d = _check_delay(T, delay_ls)
    first = _step_input(inputs, 0, False)
    batch = int(first.shape[0])
    dtype, device = _model_dtype_device(model)
    tracker = SavedTensorTracker(model, batch) if saved else None
    counter = MacCounter(model, batch) if macs else None
    meter = PeakMemoryMeter(device) if peak else None
    with (tracker if tracker is not None else _nullcontext()), \
            (counter if counter is not None else _nullcontext()), \
            (meter if meter is not None else _nullcontext()):
        t0 = time.perf_counter()
        run_sequence(model, inputs, target, steps=T, mode=mode, delay_ls=d, loss_fn=loss_fn,
                     bptt_loss=bptt_loss, mac_counter=counter, clone_steps=clone_steps)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
    st = state_bytes(model)
    return SequenceMeasurement(mode, T, d, batch, tracker.stats() if tracker is not None else None, st,
                               counter.counts if counter is not None else None, seconds,
                               meter.result if meter is not None else None)


# =========================================================================================
# S-TLLR vs BPTT, side by side
# =========================================================================================
def _random_inputs(input_shape, batch_size, seed, dtype, device, rate=0.2):
    def make(t):
        g = torch.Generator().manual_seed(seed * 1_000_003 + t)
        x = (torch.rand((batch_size,) + tuple(input_shape), generator=g) < rate).to(dtype)
        return x.to(device)
    return make


def compare(stllr_model: nn.Module, bptt_model: nn.Module, Ts: Iterable[int], *, delay_ls: Optional[int] = None,
            batch_size: int = 4, input_shape=None, alpha_post: Optional[float] = None, seed: int = 0,
            loss_fn: Optional[Callable] = None, target=None, bptt_loss: str = "sum",
            peak: bool = False) -> list:
    """For each T: measured saved bytes and MACs of one training sequence of ``stllr_model``
    (learning window ``min(delay_ls, T)``; all T if None) and of ``bptt_model``, beside the
    paper's analytic memory and MACs for the same shapes, batch size and window.

    Returns a list of dicts (one per T) with the keys of ``python -m stllr memory --json``:
    ``bptt_saved_bytes`` / ``stllr_saved_bytes`` (measured peak saved activation bytes),
    ``bptt_analytic`` / ``stllr_analytic`` (Eq. 18-19 bytes at this batch size),
    ``memory_ratio`` (measured), ``bptt_macs`` / ``stllr_macs`` (measured MACs, forward +
    backward), ``mac_ratio`` (measured), plus the analytic ratios/MACs and breakdowns.
    Inputs: Bernoulli(0.2) spikes; targets: random classes (cross-entropy) unless given.
    """
    shapes = model_shapes(stllr_model, input_shape)
    input_shape = shapes.input_shape
    if alpha_post is None:
        alpha_post = model_alpha_post(stllr_model)
        alpha_post = -1.0 if alpha_post is None else alpha_post
    dtype, device = _model_dtype_device(stllr_model)
    bpv = torch.empty((), dtype=dtype).element_size()
    if target is None:
        g = torch.Generator().manual_seed(seed)
        target = torch.randint(0, max(shapes.num_classes, 1), (batch_size,), generator=g).to(device)
    rows = []
    for T in Ts:
        _check_T(T)
        d = T if delay_ls is None else min(int(delay_ls), T)
        inputs = _random_inputs(input_shape, batch_size, seed, dtype, device)
        ana = analytic_costs(shapes, T, d, alpha_post, batch_size, bpv)
        ms = measure_sequence(stllr_model, inputs, target, steps=T, mode="stllr", delay_ls=d,
                              loss_fn=loss_fn, peak=peak)
        _reset(stllr_model)
        mb = measure_sequence(bptt_model, inputs, target, steps=T, mode="bptt", loss_fn=loss_fn,
                              bptt_loss=bptt_loss, peak=peak)
        _reset(bptt_model)
        stllr_model.zero_grad(set_to_none=True)
        bptt_model.zero_grad(set_to_none=True)
        s_saved, b_saved = ms.saved.peak_activation_bytes, mb.saved.peak_activation_bytes
        s_mac, b_mac = ms.macs.total(), mb.macs.total()
        s_paper_terms = (ms.macs.total("window", "forward") + ms.macs.total("window", "grad_weight"))
        b_paper_terms = mb.macs.forward + mb.macs.total(kind="grad_weight")
        row = {
            "T": T, "delay_ls": d, "batch_size": batch_size, "alpha_post": alpha_post,
            "bptt_saved_bytes": b_saved, "stllr_saved_bytes": s_saved,
            "bptt_analytic": ana["bptt_memory_bytes"], "stllr_analytic": ana["stllr_memory_bytes"],
            "memory_ratio": b_saved / s_saved if s_saved else float("inf"),
            "memory_ratio_analytic": ana["memory_ratio"],
            "bptt_macs": b_mac, "stllr_macs": s_mac,
            "mac_ratio": b_mac / s_mac if s_mac else float("inf"),
            "bptt_macs_analytic": ana["bptt_macs"], "stllr_macs_analytic": ana["stllr_macs"],
            "mac_ratio_analytic": ana["mac_ratio"],
            "bptt_macs_paper_terms": b_paper_terms, "stllr_macs_paper_terms": s_paper_terms,
            "bptt_saved_bytes_all": mb.saved.peak_bytes, "stllr_saved_bytes_all": ms.saved.peak_bytes,
            "stllr_state_bytes": ms.state["total"], "stllr_trace_bytes": ms.state["traces"],
            "bptt_macs_by_kind": mb.macs.by_kind(), "stllr_macs_by_kind": ms.macs.by_kind(),
        }
        if peak:
            row["bptt_peak"] = mb.peak.as_dict()
            row["stllr_peak"] = ms.peak.as_dict()
        rows.append(row)
    return rows


# =========================================================================================
# Machine GEMM throughput
# =========================================================================================
def gemm_throughput(n: int = 2048, repeats: int = 5, device=None, dtype=torch.float32) -> float:
    """Measured MAC/s of an n x n x n matmul on ``device`` (best of ``repeats``)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return n ** 3 / best


# ======================================================================================
# Describing the machine a benchmark ran on
# ======================================================================================
def load_average() -> str:
    """1-minute load average (other processes share the CPUs: timings depend on it)."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


def machine_description() -> str:
    """CPU model, logical CPUs and vector ISA, torch version and threads, and the GPU if any."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    text = (f"{cpu}, {os.cpu_count()} logical CPUs ({torch.backends.cpu.get_cpu_capability()}), "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name()}"
    return text
