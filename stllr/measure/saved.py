"""Bytes saved for backward (``torch.autograd.graph.saved_tensors_hooks``) and the bytes of the
state a model keeps between steps."""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Optional

import torch
from torch import nn

__all__ = ["SavedTensorStats", "SavedTensorTracker", "track_saved_tensors", "state_bytes"]


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
            self.live_activation_bytes = sum(
                v[1] for v in self._live.values() if v[2] == "activation"
            )
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
                    self.peak_activation_bytes = max(
                        self.peak_activation_bytes, self.live_activation_bytes
                    )
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
                peak_bytes=self.peak_bytes,
                total_bytes=self.total_bytes,
                live_bytes=self.live_bytes,
                peak_activation_bytes=self.peak_activation_bytes,
                total_activation_bytes=self.totals["activation"],
                live_activation_bytes=self.live_activation_bytes,
                total_parameter_bytes=self.totals["parameter"],
                total_other_bytes=self.totals["other"],
                num_saved=self.num_saved,
                num_storages=self.num_storages,
            )


def track_saved_tensors(
    model: Optional[nn.Module] = None, batch_size: Optional[int] = None
) -> SavedTensorTracker:
    """``with track_saved_tensors(model, B) as tr: ...`` (alias of :class:`SavedTensorTracker`)."""
    return SavedTensorTracker(model, batch_size)


def _state_tensors(m: nn.Module):
    st = getattr(m, "state", None)
    if isinstance(st, tuple):
        return [t for t in st if isinstance(t, torch.Tensor)]
    if isinstance(st, torch.Tensor):
        return [st]
    mem = getattr(m, "membrane", None)
    if isinstance(mem, torch.Tensor) and not isinstance(
        getattr(type(m), "membrane", None), property
    ):
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
