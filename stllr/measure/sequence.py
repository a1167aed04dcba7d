"""One training sequence of an S-TLLR model or its BPTT twin, measured: saved bytes, peak memory
and MACs, beside the analytic count; :func:`compare` over several T."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence, Union

import torch
from torch import nn

from stllr._base import reset_sequence
from stllr.deferral import deferred_updates
from stllr.measure.analytic import (
    _STLLR_LAYER_NAMES,
    _check_T,
    _check_window,
    _model_dtype_device,
    analytic_costs,
    model_alpha_post,
    model_shapes,
)
from stllr.measure.macs import MacCounter, MacCounts
from stllr.measure.peak import PeakMemory, PeakMemoryMeter
from stllr.measure.saved import SavedTensorStats, SavedTensorTracker, state_bytes
from stllr.training.loop import bptt_through_time, check_chunk, stllr_window

__all__ = ["SequenceMeasurement", "run_sequence", "measure_sequence", "compare"]


# =========================================================================================
# One training sequence, measured
# =========================================================================================
def _is_stllr_model(model: nn.Module) -> bool:
    flag = getattr(model, "is_stllr", None)
    if flag is not None:
        return bool(flag)
    return any(
        any(c.__name__ in _STLLR_LAYER_NAMES for c in type(m).__mro__) for m in model.modules()
    )


InputsLike = Union[torch.Tensor, Sequence[torch.Tensor], Callable[[int], torch.Tensor]]


def _step_input(inputs: InputsLike, t: int, clone: bool) -> torch.Tensor:
    if callable(inputs) and not isinstance(inputs, torch.Tensor):
        return inputs(t)
    x = inputs[t]
    # a slice of a [T, B, ...] tensor shares its storage: a saved slice would keep (and be
    # counted as) the whole sequence. Each step gets its own storage, as a sensor stream would.
    return x.clone() if clone and isinstance(inputs, torch.Tensor) else x


class _Steps:
    """The T step inputs of ``inputs`` as a sequence (what the loops of
    :mod:`stllr.training.loop` index)."""

    def __init__(self, inputs: InputsLike, steps: int, clone: bool):
        self.inputs, self.steps, self.clone = inputs, steps, clone

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, t: int) -> torch.Tensor:
        return _step_input(self.inputs, t, self.clone)


def _cross_entropy(out, target):
    return nn.functional.cross_entropy(out, target)


def run_sequence(
    model: nn.Module,
    inputs: InputsLike,
    target,
    *,
    steps: Optional[int] = None,
    mode: Optional[str] = None,
    window: Optional[int] = None,
    loss_fn: Optional[Callable] = None,
    bptt_loss: str = "sum",
    mac_counter: Optional[MacCounter] = None,
    clone_steps: bool = True,
    chunk: int = 0,
) -> Optional[int]:
    """Run one training sequence (forward and backward, no optimizer step).

    - ``mode='stllr'`` (default for S-TLLR models): the first ``T - window`` steps under
      ``no_grad``; each of the last ``window`` steps calls ``loss_fn(out_t, target).backward()``
      (rule.md "Training modes"), so one step's graph is alive at a time
      (:func:`stllr.training.loop.stllr_window`; MAC sections ``pre_window`` and ``window``).
    - ``mode='bptt'``: every step with the graph; ``loss_fn(sum_t out_t, target)``
      (``bptt_loss='sum'``, the reference) or ``loss_fn(out_T, target)`` (``'last'``, the paper's
      Fig. 3 setup), one backward (:func:`stllr.training.loop.bptt_through_time`; MAC section
      ``bptt``).

    ``inputs``: a tensor [T, B, ...] (each step is cloned into its own storage), a sequence of
    per-step tensors, or a callable ``t -> x_t`` (then pass ``steps``). ``loss_fn`` defaults to
    cross-entropy. Gradients accumulate in ``.grad`` (zeroed first); states are reset first
    and left as the last step set them. ``chunk`` (``stllr`` mode): 0 (default) computes the weight
    gradients at every learning step; ``k > 0`` defers them as the training loop does
    (:func:`stllr.deferred_updates`). Returns the bytes the deferral held at most (None without).
    """
    if mode is None:
        mode = "stllr" if _is_stllr_model(model) else "bptt"
    if mode not in ("stllr", "bptt"):
        raise ValueError(f"mode: expected 'stllr' or 'bptt', got {mode!r}")
    if bptt_loss not in ("sum", "last"):
        raise ValueError(f"bptt_loss: expected 'sum' or 'last', got {bptt_loss!r}")
    T = steps if steps is not None else len(inputs)
    _check_T(T)
    d = _check_window(T, window)
    loss_fn = loss_fn or _cross_entropy
    section = mac_counter.section if mac_counter is not None else (lambda name: _nullcontext())
    model.zero_grad(set_to_none=True)
    x = _Steps(inputs, T, clone_steps)
    if mode == "stllr":
        chunk = check_chunk(chunk)
        deferral = deferred_updates(model, min(chunk, d)) if chunk else _nullcontext()
        with section("window"), deferral as held:  # the last chunk's GEMM runs at exit
            stllr_window(
                model,
                x,
                target,
                loss_fn,
                d,
                step_context=lambda t, learning: section("window" if learning else "pre_window"),
            )
        return held.peak_bytes if chunk else None
    with section("bptt"):
        bptt_through_time(model, x, target, loss_fn, loss=bptt_loss)
    return None


@contextmanager
def _nullcontext():
    yield


@dataclass
class SequenceMeasurement:
    """Everything :func:`measure_sequence` measured for one training sequence."""

    mode: str
    T: int
    window: int
    batch_size: int
    saved: Optional[SavedTensorStats]
    state: dict
    macs: Optional[MacCounts]
    seconds: float
    peak: Optional[PeakMemory] = None
    deferred_bytes: Optional[int] = (
        None  #: most bytes held by deferred weight gradients (chunk > 0)
    )

    def as_dict(self) -> dict:
        return {
            "mode": self.mode,
            "T": self.T,
            "window": self.window,
            "batch_size": self.batch_size,
            "saved": None if self.saved is None else self.saved.as_dict(),
            "state": self.state,
            "macs": None if self.macs is None else self.macs.as_dict(),
            "seconds": self.seconds,
            "peak": None if self.peak is None else self.peak.as_dict(),
            "deferred_bytes": self.deferred_bytes,
        }


def measure_sequence(
    model: nn.Module,
    inputs: InputsLike,
    target,
    *,
    steps: Optional[int] = None,
    mode: Optional[str] = None,
    window: Optional[int] = None,
    loss_fn: Optional[Callable] = None,
    bptt_loss: str = "sum",
    saved: bool = True,
    macs: bool = True,
    peak: bool = False,
    clone_steps: bool = True,
    chunk: int = 0,
) -> SequenceMeasurement:
    """Run :func:`run_sequence` once and measure saved bytes, state bytes, MACs and (optionally)
    peak memory. The batch size is read from the first step's input. ``seconds`` includes
    the measuring overhead (time with ``saved=macs=peak=False`` for speed). ``chunk``:
    :func:`run_sequence`'s; the bytes the deferral held are ``deferred_bytes`` (not saved tensors:
    the saved-bytes tracker does not see them)."""
    if mode is None:
        mode = "stllr" if _is_stllr_model(model) else "bptt"
    T = steps if steps is not None else len(inputs)
    d = _check_window(T, window)
    first = _step_input(inputs, 0, False)
    batch = int(first.shape[0])
    dtype, device = _model_dtype_device(model)
    tracker = SavedTensorTracker(model, batch) if saved else None
    counter = MacCounter(model, batch) if macs else None
    meter = PeakMemoryMeter(device) if peak else None
    with (
        tracker if tracker is not None else _nullcontext(),
        counter if counter is not None else _nullcontext(),
        meter if meter is not None else _nullcontext(),
    ):
        t0 = time.perf_counter()
        held = run_sequence(
            model,
            inputs,
            target,
            steps=T,
            mode=mode,
            window=d,
            loss_fn=loss_fn,
            bptt_loss=bptt_loss,
            mac_counter=counter,
            clone_steps=clone_steps,
            chunk=chunk,
        )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
    st = state_bytes(model)
    return SequenceMeasurement(
        mode,
        T,
        d,
        batch,
        tracker.stats() if tracker is not None else None,
        st,
        counter.counts if counter is not None else None,
        seconds,
        meter.result if meter is not None else None,
        held,
    )


# =========================================================================================
# S-TLLR vs BPTT, side by side
# =========================================================================================
def _random_inputs(input_shape, batch_size, seed, dtype, device, rate=0.2):
    def make(t):
        g = torch.Generator().manual_seed(seed * 1_000_003 + t)
        x = (torch.rand((batch_size,) + tuple(input_shape), generator=g) < rate).to(dtype)
        return x.to(device)

    return make


def compare(
    stllr_model: nn.Module,
    bptt_model: nn.Module,
    Ts: Iterable[int],
    *,
    window: Optional[int] = None,
    batch_size: int = 4,
    input_shape=None,
    alpha_post: Optional[float] = None,
    seed: int = 0,
    loss_fn: Optional[Callable] = None,
    target=None,
    bptt_loss: str = "sum",
    peak: bool = False,
) -> list:
    """For each T: measured saved bytes and MACs of one training sequence of ``stllr_model``
    (learning window ``min(window, T)``; all T if None) and of ``bptt_model``, beside the
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
        d = T if window is None else min(int(window), T)
        inputs = _random_inputs(input_shape, batch_size, seed, dtype, device)
        ana = analytic_costs(shapes, T, d, alpha_post, batch_size, bpv)
        ms = measure_sequence(
            stllr_model,
            inputs,
            target,
            steps=T,
            mode="stllr",
            window=d,
            loss_fn=loss_fn,
            peak=peak,
        )
        reset_sequence(stllr_model)
        mb = measure_sequence(
            bptt_model,
            inputs,
            target,
            steps=T,
            mode="bptt",
            loss_fn=loss_fn,
            bptt_loss=bptt_loss,
            peak=peak,
        )
        reset_sequence(bptt_model)
        stllr_model.zero_grad(set_to_none=True)
        bptt_model.zero_grad(set_to_none=True)
        s_saved, b_saved = ms.saved.peak_activation_bytes, mb.saved.peak_activation_bytes
        s_mac, b_mac = ms.macs.total(), mb.macs.total()
        s_paper_terms = ms.macs.total("window", "forward") + ms.macs.total("window", "grad_weight")
        b_paper_terms = mb.macs.forward + mb.macs.total(kind="grad_weight")
        row = {
            "T": T,
            "window": d,
            "batch_size": batch_size,
            "alpha_post": alpha_post,
            "bptt_saved_bytes": b_saved,
            "stllr_saved_bytes": s_saved,
            "bptt_analytic": ana["bptt_memory_bytes"],
            "stllr_analytic": ana["stllr_memory_bytes"],
            "memory_ratio": b_saved / s_saved if s_saved else float("inf"),
            "memory_ratio_analytic": ana["memory_ratio"],
            "bptt_macs": b_mac,
            "stllr_macs": s_mac,
            "mac_ratio": b_mac / s_mac if s_mac else float("inf"),
            "bptt_macs_analytic": ana["bptt_macs"],
            "stllr_macs_analytic": ana["stllr_macs"],
            "mac_ratio_analytic": ana["mac_ratio"],
            "bptt_macs_paper_terms": b_paper_terms,
            "stllr_macs_paper_terms": s_paper_terms,
            "bptt_saved_bytes_all": mb.saved.peak_bytes,
            "stllr_saved_bytes_all": ms.saved.peak_bytes,
            "stllr_state_bytes": ms.state["total"],
            "stllr_trace_bytes": ms.state["traces"],
            "bptt_macs_by_kind": mb.macs.by_kind(),
            "stllr_macs_by_kind": ms.macs.by_kind(),
        }
        if peak:
            row["bptt_peak"] = mb.peak.as_dict()
            row["stllr_peak"] = ms.peak.as_dict()
        rows.append(row)
    return rows
