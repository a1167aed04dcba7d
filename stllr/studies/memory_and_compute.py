"""Notebook 05 (memory and compute): the paper's Fig. 3 MLP, saved memory against T, the recorded GPU
peak beside it, the total memory of a training step by part, MACs against the learning window,
Table 3 recomputed, time per step, and the analytic calculator of the notebook's widget."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from stllr.measure import analytic, sequence
from stllr.measure.peak import PeakMemoryMeter
from stllr.measure.saved import SavedTensorTracker, _state_tensors, _storage_key_and_bytes
from stllr.models.registry import build_model, get_model_spec
from stllr.studies.common import num_threads
from stllr.studies.paper import PAPER_TABLE3

__all__ = [
    "FIG3_DIMS",
    "FIG3_TS",
    "Fig3MLP",
    "fig3_models",
    "memory_vs_T",
    "BREAKDOWN_PARTS",
    "BATCH_PARTS",
    "memory_breakdown",
    "breakdown_at_batch",
    "pair_breakdown",
    "breakdown_rows",
    "activations_dominate_from",
    "RECORDED_GPU_LOG",
    "read_recorded_fig3",
    "recorded_vs_measured",
    "cpu_peak_subprocess",
    "cpu_peaks",
    "parse_layer_sizes",
    "analytic_breakdown",
    "format_analytic_breakdown",
    "macs_vs_window",
    "paper_mac_points",
    "table3_recomputed",
    "time_per_step",
]

#: Registered S-TLLR model and the stated input shape of each Table 3 dataset (None: not registered).
TABLE3_MODELS = {
    "DVS CIFAR10": ("dvscifar10_vgg_stllr", (2, 48, 48)),
    "DVS Gesture": ("dvs_vgg_stllr", (2, 32, 32)),
    "N-CALTECH101": None,
    "SHD": ("stllr_shd_net", (700,)),
}


#: Paper Fig. 3: MLP 1000-1000-1000-1000-1 (input 1000, three spiking hidden layers, one output).
FIG3_DIMS = (1000, 1000, 1000, 1000, 1)


FIG3_TS = (10, 25, 50, 100, 200, 300)


# ======================================================================================
# Memory and compute (notebook 05)
# ======================================================================================
class Fig3MLP(nn.Module):
    """The paper's Fig. 3 network, one step per ``forward``: ``dims`` = (input, hidden..., output);
    S-TLLR: LinearSTLLR hidden layers (factors [0.2, 0.75, -1, 1], the reference CLI default) and a
    LeakyReadout; BPTT: the twins LinearLIF + LeakyIntegrator (same initial weights when built by
    :func:`fig3_models`)."""

    def __init__(
        self, stllr_rule: bool, dims: Sequence[int] = FIG3_DIMS, factors=(0.2, 0.75, -1.0, 1.0)
    ):
        super().__init__()
        from stllr.bptt import LeakyIntegrator, LinearLIF
        from stllr.layers import LeakyReadout, LinearSTLLR

        self.is_stllr = bool(stllr_rule)
        self.input_shape = (int(dims[0]),)
        layers = []
        for a, b in zip(dims[:-2], dims[1:-1]):
            layers.append(
                LinearSTLLR(a, b, factors=list(factors)) if stllr_rule else LinearLIF(a, b)
            )
        a, b = dims[-2], dims[-1]
        layers.append(
            LeakyReadout(a, b, factors=[0.0, 0.99, 0.0, 1.0])
            if stllr_rule
            else LeakyIntegrator(a, b)
        )
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)

    def reset_state(self):
        from stllr._base import reset_states

        reset_states(self)


def _mse_to_zero(out, target):
    return ((out - target) ** 2).mean()


def fig3_models(dims: Sequence[int] = FIG3_DIMS, device="cpu", seed: int = 0):
    """(S-TLLR MLP, BPTT MLP) of Fig. 3 with the same initial weights."""
    torch.manual_seed(seed)
    s = Fig3MLP(True, dims).to(device)
    b = Fig3MLP(False, dims).to(device)
    b.load_state_dict(s.state_dict(), strict=False)
    return s, b


def memory_vs_T(
    Ts: Iterable[int] = FIG3_TS,
    batch_size: int = 8,
    device="cpu",
    dims: Sequence[int] = FIG3_DIMS,
    window: int = 1,
    seed: int = 0,
    peak: Optional[bool] = None,
    threads: Optional[int] = 1,
    breakdown: bool = False,
) -> List[Dict[str, Any]]:
    """Paper Fig. 3: one training sequence per T of the S-TLLR MLP (learning signal on the last
    ``window`` steps, loss at the last step) and of its BPTT twin (graph through all T, loss on the
    last step's output, mean squared output as in ``benchmarks/bench_memory.py``).

    Rows: T, ``stllr_saved_bytes`` / ``bptt_saved_bytes`` (measured peak saved activations),
    ``*_saved_bytes_all`` (with weight-sized tensors), ``stllr_analytic`` / ``bptt_analytic``
    (Eq. 18-19 x batch x 4 B), ``memory_ratio`` (measured), ``memory_ratio_analytic`` (T/2), and with
    ``peak`` (default: on CUDA only) ``stllr_peak_bytes`` / ``bptt_peak_bytes`` =
    ``torch.cuda.max_memory_allocated`` increase during the sequence (exact on GPU; approximate RSS on CPU).
    With ``breakdown``, each sequence is measured by :func:`memory_breakdown` instead (the same
    saved bytes) and the rows gain ``stllr_breakdown`` / ``bptt_breakdown``.
    """
    device = torch.device(device)
    if peak is None:
        peak = device.type == "cuda"
    rows = []
    with num_threads(threads):
        s_model, b_model = fig3_models(dims, device, seed)
        shapes = analytic.model_shapes(s_model)
        target = torch.zeros(batch_size, dims[-1], device=device)
        inputs = sequence._random_inputs((dims[0],), batch_size, seed, torch.float32, device)
        for T in Ts:
            ana = analytic.analytic_costs(shapes, int(T), min(window, int(T)), -1.0, batch_size, 4)
            row = {
                "T": int(T),
                "batch_size": batch_size,
                "stllr_analytic": ana["stllr_memory_bytes"],
                "bptt_analytic": ana["bptt_memory_bytes"],
                "memory_ratio_analytic": ana["memory_ratio"],
            }
            for name, model, mode in (("stllr", s_model, "stllr"), ("bptt", b_model, "bptt")):
                run = dict(
                    steps=int(T),
                    mode=mode,
                    window=min(window, int(T)),
                    loss_fn=_mse_to_zero,
                    bptt_loss="last",
                    peak=peak,
                )
                if breakdown:
                    bd = memory_breakdown(model, inputs, target, **run)
                    model.reset_state()
                    model.zero_grad(set_to_none=True)
                    row[f"{name}_saved_bytes"] = bd["saved_activations"]
                    row[f"{name}_saved_bytes_all"] = bd["saved_peak_bytes"]
                    row[f"{name}_breakdown"] = bd
                    if peak:
                        row[f"{name}_peak_bytes"] = bd["peak"]["increase_bytes"]
                        row["peak_method"] = bd["peak"]["method"]
                    continue
                m = sequence.measure_sequence(model, inputs, target, macs=False, **run)
                model.reset_state()
                model.zero_grad(set_to_none=True)
                row[f"{name}_saved_bytes"] = m.saved.peak_activation_bytes
                row[f"{name}_saved_bytes_all"] = m.saved.peak_bytes
                if peak:
                    row[f"{name}_peak_bytes"] = m.peak.increase_bytes
                    row["peak_method"] = m.peak.method
            row["memory_ratio"] = row["bptt_saved_bytes"] / row["stllr_saved_bytes"]
            rows.append(row)
    return rows


# ======================================================================================
# Total memory of a training sequence, by part (notebook 05)
# ======================================================================================
#: The parts of :func:`memory_breakdown`, in the order they are stacked.
BREAKDOWN_PARTS = (
    "weights",
    "gradients",
    "optimizer",
    "weight_copies",
    "neuron_states",
    "saved_activations",
)

#: The parts that scale with the batch (every tensor in them has the batch as first dimension).
BATCH_PARTS = ("neuron_states", "saved_activations")


class _SnapshotTracker(SavedTensorTracker):
    """A :class:`~stllr.measure.SavedTensorTracker` that also remembers which storages were live
    when the last set of saved tensors was complete: at the first release after a save (a
    ``backward()`` starting) or at the end. Those storages are alive at the same time as the
    layers' state of the last step, so a shared storage address means a shared storage."""

    def reset(self) -> None:
        super().reset()
        self.snapshot: Dict[tuple, Tuple[int, str]] = {}
        self.snapshot_activation_bytes = 0
        self._packed_since_release = False

    def take_snapshot(self) -> None:
        with self._lock:
            self.snapshot = {k: (v[1], v[2]) for k, v in self._live.items()}
            self.snapshot_activation_bytes = self.live_activation_bytes
            self._packed_since_release = False

    def _pack(self, t):
        out = super()._pack(t)
        self._packed_since_release = True
        return out

    def _release(self, key) -> None:
        with self._lock:
            if self._packed_since_release:
                self.take_snapshot()
        super()._release(key)


def _tensors_in(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _tensors_in(o)


def _layer_held_tensors(model: nn.Module) -> List[torch.Tensor]:
    """The per-sequence weight copies the layers hold: an S-TLLR layer's W~ and standardisation
    cache (``_constants``), a BPTT twin's standardised weights (``_w_cache``)."""
    out = []
    for m in model.modules():
        for attr in ("_constants", "_w_cache"):
            out.extend(_tensors_in(getattr(m, attr, None)))
    return out


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
    return value


def _check_positive(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return value


def memory_breakdown(
    model: nn.Module,
    inputs,
    target,
    *,
    steps: int,
    mode: Optional[str] = None,
    window: Optional[int] = None,
    loss_fn=None,
    bptt_loss: str = "sum",
    optimizer_moments: int = 2,
    peak: bool = False,
) -> Dict[str, Any]:
    """The memory one training sequence holds, by part, in bytes, each storage counted once.

    Parameters:
        model: an S-TLLR model or a BPTT twin (one step per ``forward``).
        inputs: a tensor [T, B, ...], a list of T tensors [B, ...] or a callable ``t -> x_t``.
        target: what ``loss_fn(out_t, target)`` takes, e.g. class indices [B].
        steps: T; mode, window, loss_fn, bptt_loss: as in :func:`stllr.measure.run_sequence`.
        optimizer_moments: parameter-sized buffers the optimizer keeps (Adam 2).
        peak: also measure the peak with a :class:`~stllr.measure.PeakMemoryMeter`.

    Runs :func:`stllr.measure.run_sequence` once under a saved-tensor tracker, then counts
    (``numel * element_size`` of unique storages):

    - ``weights``: the model's parameters and buffers;
    - ``gradients``: the parameters' ``.grad`` after the sequence;
    - ``optimizer``: ``optimizer_moments`` copies of every parameter that got a gradient (Adam: 2
      moments, SGD with momentum: 1, plain SGD: 0); computed, no optimizer is built;
    - ``weight_copies``: per-sequence copies of the weights: the S-TLLR layers' W~ and
      standardisation cache, the BPTT twins' standardised weights and the weight-sized tensors
      (and per-step scalars) their graph saves;
    - ``neuron_states``: the layers' states after the sequence (traces, membranes, spikes, psi)
      that are not also saved for backward;
    - ``saved_activations``: the peak of activations saved for backward
      (``SavedTensorStats.peak_activation_bytes``, the number the rest of the notebook uses).

    ``total`` is their sum: what is held at the end of the last step's forward pass (the saved
    tensors' peak when ``last_step_at_peak``). Also ``saved_peak_bytes`` (all saved, with
    parameters and weight-sized), ``state_saved_overlap`` (state bytes also saved, counted in
    ``saved_activations``), ``T``, ``window``, ``mode``, ``batch_size`` and, with ``peak``, the
    :class:`~stllr.measure.PeakMemory` of the sequence as a dict.
    """
    _check_count(optimizer_moments, "optimizer_moments")
    T = _check_positive(steps, "steps")
    if mode is None:
        mode = "stllr" if sequence._is_stllr_model(model) else "bptt"
    d = analytic._check_window(T, window)
    first = sequence._step_input(inputs, 0, False)
    batch = int(first.shape[0])
    _, device = analytic._model_dtype_device(model)
    tracker = _SnapshotTracker(model, batch)
    meter = PeakMemoryMeter(device) if peak else None
    with tracker, meter if meter is not None else sequence._nullcontext():
        sequence.run_sequence(
            model,
            inputs,
            target,
            steps=T,
            mode=mode,
            window=d,
            loss_fn=loss_fn,
            bptt_loss=bptt_loss,
        )
    if tracker._packed_since_release:
        tracker.take_snapshot()
    stats = tracker.stats()
    # Storages alive at the snapshot (weights, the layers' weight copies and states, the last
    # step's saved tensors) are compared by address; the gradients, allocated during the
    # backward after it, may reuse a freed saved tensor's address and are counted on their own.
    seen = set()

    def count(tensors, keys) -> int:
        n = 0
        for t in tensors:
            key, nbytes = _storage_key_and_bytes(t)
            if key not in keys:
                keys.add(key)
                n += nbytes
        return n

    params = list(model.parameters())
    with_grad = [p for p in params if p.grad is not None]
    out: Dict[str, Any] = {"T": T, "window": d, "mode": mode, "batch_size": batch}
    out["weights"] = count(params + list(model.buffers()), seen)
    out["gradients"] = count([p.grad for p in with_grad], set())
    out["optimizer"] = optimizer_moments * sum(p.numel() * p.element_size() for p in with_grad)
    held = count(_layer_held_tensors(model), seen)
    saved_other = 0
    for key, (nbytes, cat) in tracker.snapshot.items():
        if cat == "other" and key not in seen:
            seen.add(key)
            saved_other += nbytes
    out["weight_copies"] = held + saved_other
    saved_act_keys = {k for k, (_, cat) in tracker.snapshot.items() if cat == "activation"}
    states, overlap = 0, 0
    for m in model.modules():
        for t in _state_tensors(m):
            key, nbytes = _storage_key_and_bytes(t)
            if key in seen:
                continue
            seen.add(key)
            if key in saved_act_keys:
                overlap += nbytes
            else:
                states += nbytes
    out["neuron_states"] = states
    out["saved_activations"] = stats.peak_activation_bytes
    out["total"] = sum(out[p] for p in BREAKDOWN_PARTS)
    out["saved_peak_bytes"] = stats.peak_bytes
    out["state_saved_overlap"] = overlap
    out["last_step_at_peak"] = tracker.snapshot_activation_bytes == stats.peak_activation_bytes
    out["peak"] = meter.result.as_dict() if meter is not None else None
    return out


def breakdown_at_batch(bd: Dict[str, Any], batch_size: int) -> Dict[str, Any]:
    """``bd`` at another batch size.

    Parameters:
        bd: a dict of :func:`memory_breakdown`.
        batch_size: the batch to scale to.

    The parts of :data:`BATCH_PARTS` scale with the batch (exactly: every tensor in them is
    batch-first and the bytes per sample are an integer), the others do not change; ``peak`` is
    dropped. Raises ValueError if a batch part is not a whole number of bytes per sample."""
    _check_positive(batch_size, "batch_size")
    out = dict(bd)
    b0 = bd["batch_size"]
    for part in BATCH_PARTS:
        per_sample, rest = divmod(bd[part], b0)
        if rest:
            raise ValueError(
                f"bd: {part} = {bd[part]} bytes is not a whole number of bytes per sample at "
                f"batch {b0}"
            )
        out[part] = per_sample * batch_size
    out["batch_size"] = batch_size
    out["total"] = sum(out[p] for p in BREAKDOWN_PARTS)
    out["state_saved_overlap"] = bd["state_saved_overlap"] // b0 * batch_size
    out["peak"] = None  # a measured peak belongs to the measured batch only
    return out


def pair_breakdown(
    stllr_model: nn.Module,
    bptt_model: nn.Module,
    T: int,
    window: int,
    batch_size: int = 8,
    seed: int = 0,
    optimizer_moments: int = 2,
    threads: Optional[int] = 1,
) -> Dict[str, Dict[str, Any]]:
    """:func:`memory_breakdown` of one training sequence of an S-TLLR model and of its BPTT twin.

    Parameters:
        stllr_model, bptt_model: e.g. ``build_model("stllr_shd_net")`` and its registry twin.
        T: sequence length; window: the S-TLLR learning window (clipped to T).
        batch_size: pick one that differs from every layer width (the tracker tells activations
            by their first dimension).
        seed: of the Bernoulli(0.2) input spikes and the random class targets.
        optimizer_moments: as in :func:`memory_breakdown`; threads: torch threads (None: as is).

    The BPTT twin runs one backward through all T with the loss on the summed logits (the
    reference), cross-entropy for both. Returns ``{"stllr": ..., "bptt": ...}``; gradients and
    states are cleared afterwards."""
    _check_positive(batch_size, "batch_size")
    with num_threads(threads):
        shapes = analytic.model_shapes(stllr_model)
        dtype, device = analytic._model_dtype_device(stllr_model)
        inputs = sequence._random_inputs(shapes.input_shape, batch_size, seed, dtype, device)
        g = torch.Generator().manual_seed(seed)
        target = torch.randint(0, max(shapes.num_classes, 2), (batch_size,), generator=g)
        target = target.to(device)
        out = {}
        for name, model, mode in (("stllr", stllr_model, "stllr"), ("bptt", bptt_model, "bptt")):
            out[name] = memory_breakdown(
                model,
                inputs,
                target,
                steps=T,
                mode=mode,
                window=min(window, T) if mode == "stllr" else None,
                optimizer_moments=optimizer_moments,
            )
            model.reset_state()
            model.zero_grad(set_to_none=True)
    return out


def breakdown_rows(
    cases: Sequence[Tuple[str, Dict[str, Any], Dict[str, Any]]], batch_sizes: Sequence[int]
) -> List[Dict[str, Any]]:
    """One row per case and batch size.

    Parameters:
        cases: (label, S-TLLR breakdown, BPTT breakdown) from :func:`memory_breakdown`, same T.
        batch_sizes: the batches to show (:func:`breakdown_at_batch`).

    Row keys: ``label``, ``T``, ``batch``, for each method
    ``{stllr,bptt}_{part}_mb`` (1e6 bytes), ``*_total_mb``, ``*_act_share`` (saved activations /
    total), ``*_weight_share`` (weights + gradients + optimizer + weight copies / total), and the
    ratios ``total_ratio`` (BPTT / S-TLLR total) and ``saved_ratio`` (saved activations)."""
    rows = []
    for label, s_bd, b_bd in cases:
        for B in batch_sizes:
            row: Dict[str, Any] = {"label": label, "T": s_bd["T"], "batch": int(B)}
            scaled = {"stllr": breakdown_at_batch(s_bd, B), "bptt": breakdown_at_batch(b_bd, B)}
            for name, bd in scaled.items():
                for part in BREAKDOWN_PARTS + ("total",):
                    row[f"{name}_{part}_mb"] = bd[part] / 1e6
                row[f"{name}_act_share"] = bd["saved_activations"] / bd["total"]
                row[f"{name}_weight_share"] = (
                    sum(bd[p] for p in ("weights", "gradients", "optimizer", "weight_copies"))
                    / bd["total"]
                )
                row[f"{name}_breakdown"] = bd
            row["total_ratio"] = scaled["bptt"]["total"] / scaled["stllr"]["total"]
            row["saved_ratio"] = (
                scaled["bptt"]["saved_activations"] / scaled["stllr"]["saved_activations"]
            )
            rows.append(row)
    return rows


def activations_dominate_from(rows: Sequence[Dict[str, Any]], method: str = "bptt") -> Dict:
    """Where the saved activations take over.

    Parameters:
        rows: from :func:`breakdown_rows` (several T per batch).
        method: ``"bptt"`` or ``"stllr"``.

    Returns ``{batch: T}``: the smallest T of the rows at which ``method``'s saved activations
    are more than half of its total, None where that happens at no T of the rows."""
    if method not in ("stllr", "bptt"):
        raise ValueError(f"method: expected 'stllr' or 'bptt', got {method!r}")
    out: Dict[int, Optional[int]] = {}
    for r in sorted(rows, key=lambda r: (r["batch"], r["T"])):
        out.setdefault(r["batch"], None)
        if out[r["batch"]] is None and r[f"{method}_act_share"] > 0.5:
            out[r["batch"]] = r["T"]
    return out


# ======================================================================================
# Peak memory: the recorded GPU run, and an approximate CPU peak in a fresh process
# ======================================================================================
#: The recorded run of ``benchmarks/gpu_check.py`` on an H200 (its ``bench_memory.py`` table is
#: the paper's Fig. 3 setup at batch 512 with the allocator peak).
RECORDED_GPU_LOG = (
    Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "gpu_check_h200.log"
)

_RECORDED_COLUMNS = (
    "stllr_saved_mb",
    "stllr_saved_all_mb",
    "stllr_analytic_mb",
    "bptt_saved_mb",
    "bptt_saved_all_mb",
    "bptt_analytic_mb",
    "saved_ratio",
    "ratio_T2",
    "stllr_peak_mb",
    "bptt_peak_mb",
)


def read_recorded_fig3(path=None) -> Dict[str, Any]:
    """The Fig. 3 table that ``benchmarks/bench_memory.py`` printed in a recorded log.

    Parameters:
        path: the log (default :data:`RECORDED_GPU_LOG`).

    Returns ``setup`` (its first line), ``machine``, ``gpu`` (its name in
    ``machine`` without "NVIDIA", e.g. ``"H200"``), ``batch_size``, ``device``, ``peak_method`` and
    ``rows``, one per T with the table's columns in MB (1e6 bytes,
    3 decimals as printed; None where the table has ``-``): ``stllr_saved_mb``,
    ``stllr_saved_all_mb``, ``stllr_analytic_mb``, the same for ``bptt``, ``saved_ratio``,
    ``ratio_T2``, ``stllr_peak_mb``, ``bptt_peak_mb``, and ``peak_ratio`` (BPTT / S-TLLR peak)."""
    path = Path(RECORDED_GPU_LOG if path is None else path)
    lines = path.read_text().splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith("Fig. 3 setup:")), None)
    if start is None:
        raise ValueError(f"path: no 'Fig. 3 setup:' table (bench_memory.py) in {path}")
    setup = lines[start]
    m = re.search(r"batch (\d+), (\w+)$", setup)
    if m is None:
        raise ValueError(f"path: cannot read the batch and device from {setup!r}")
    out: Dict[str, Any] = {
        "setup": setup,
        "machine": lines[start + 1].removeprefix("machine: "),
        "gpu": None,
        "batch_size": int(m.group(1)),
        "device": m.group(2),
        "peak_method": None,
        "rows": [],
    }
    gpu = re.search(r"GPU (?:NVIDIA )?(.+)$", out["machine"])
    out["gpu"] = gpu.group(1).strip() if gpu else None
    for line in lines[start + 2 :]:
        cells = line.replace("|", " ").split()
        if cells and cells[0].isdigit() and len(cells) == 1 + len(_RECORDED_COLUMNS):
            row: Dict[str, Any] = {"T": int(cells[0])}
            for key, c in zip(_RECORDED_COLUMNS, cells[1:]):
                row[key] = None if c == "-" else float(c)
            sp, bp = row["stllr_peak_mb"], row["bptt_peak_mb"]
            row["peak_ratio"] = bp / sp if sp and bp is not None else None
            out["rows"].append(row)
        elif line.startswith("peak+:"):
            out["peak_method"] = line.split(",", 1)[1].strip()
            break
        elif out["rows"]:
            break
    if not out["rows"]:
        raise ValueError(f"path: the Fig. 3 table in {path} has no rows")
    return out


def recorded_vs_measured(
    mem_rows: Sequence[Dict[str, Any]], recorded: Dict[str, Any]
) -> List[Dict[str, Any]]:
    """This run's saved bytes beside a recorded run's.

    Parameters:
        mem_rows: rows of :func:`memory_vs_T`.
        recorded: from :func:`read_recorded_fig3`.

    One row per T present in both: saved bytes scaled to the recorded batch (they are
    proportional to the batch) and rounded as the log prints them (MB, 3 decimals),
    ``saved_matches`` (True when both methods equal the recorded values to those 3 decimals), the
    recorded peaks and both ratios."""
    by_T = {r["T"]: r for r in recorded["rows"]}
    out = []
    for r in mem_rows:
        rec = by_T.get(r["T"])
        if rec is None:
            continue
        k = recorded["batch_size"] / r["batch_size"]
        row = {"T": r["T"], "batch_here": r["batch_size"], "batch_recorded": recorded["batch_size"]}
        match = True
        for name in ("stllr", "bptt"):
            scaled = round(r[f"{name}_saved_bytes"] * k / 1e6, 3)
            row[f"{name}_saved_scaled_mb"] = scaled
            row[f"{name}_saved_recorded_mb"] = rec[f"{name}_saved_mb"]
            row[f"{name}_peak_recorded_mb"] = rec[f"{name}_peak_mb"]
            match = match and rec[f"{name}_saved_mb"] is not None
            match = match and abs(scaled - rec[f"{name}_saved_mb"]) < 5e-4
        row["saved_matches"] = match
        row["saved_ratio"] = r["memory_ratio"]
        row["peak_ratio_recorded"] = rec["peak_ratio"]
        out.append(row)
    return out


def _cpu_peak_child(args: Dict[str, Any]) -> Dict[str, Any]:
    """In the fresh process of :func:`cpu_peak_subprocess`: build the Fig. 3 models, run one
    training sequence of one of them under a :class:`~stllr.measure.PeakMemoryMeter` (CPU)."""
    torch.set_num_threads(int(args["threads"]))
    s_model, b_model = fig3_models(tuple(args["dims"]), "cpu", int(args["seed"]))
    model = s_model if args["method"] == "stllr" else b_model
    B, T = int(args["batch_size"]), int(args["T"])
    inputs = sequence._random_inputs((args["dims"][0],), B, int(args["seed"]), torch.float32, "cpu")
    target = torch.zeros(B, args["dims"][-1])
    meter = PeakMemoryMeter("cpu")
    with meter:
        sequence.run_sequence(
            model,
            inputs,
            target,
            steps=T,
            mode=args["method"],
            window=min(int(args["window"]), T),
            loss_fn=_mse_to_zero,
            bptt_loss="last",
        )
    r = meter.result
    return {
        "method": args["method"],
        "T": T,
        "batch_size": B,
        "peak_increase_bytes": r.increase_bytes,
        "start_bytes": r.start_bytes,
        "peak_bytes": r.peak_bytes,
        "memory_kind": meter.kind,
        "approximate": r.approximate,
    }


def cpu_peak_subprocess(
    method: str,
    T: int,
    batch_size: int = 8,
    window: int = 1,
    dims: Sequence[int] = FIG3_DIMS,
    seed: int = 0,
    threads: int = 1,
    timeout: float = 300.0,
) -> Dict[str, Any]:
    """Approximate CPU peak memory of one Fig. 3 training sequence, in a fresh Python process.

    Parameters:
        method: ``"stllr"`` (learning signal on the last ``window`` steps) or ``"bptt"``, as in
            :func:`memory_vs_T`.
        T, batch_size, window, dims, seed: the sequence and the MLP (:data:`FIG3_DIMS`).
        threads: torch / OpenMP threads of the child; timeout: seconds.

    A fresh process reuses no earlier allocation. Measured: the increase of the process's peak
    resident set (``VmHWM``) during the sequence, ``memory_kind`` ``'cpu_peak_rss_approximate'``
    (see :class:`~stllr.measure.PeakMemoryMeter`). It includes what the allocator and Python do
    besides the tensors and changes from run to run: label it approximate.

    Returns the child's dict: ``method``, ``T``, ``batch_size``, ``peak_increase_bytes``,
    ``start_bytes``, ``peak_bytes``, ``memory_kind``, ``approximate``. Raises RuntimeError with the
    child's stderr if it fails."""
    if method not in ("stllr", "bptt"):
        raise ValueError(f"method: expected 'stllr' or 'bptt', got {method!r}")
    _check_positive(T, "T")
    _check_positive(batch_size, "batch_size")
    _check_positive(window, "window")
    args = {
        "method": method,
        "T": T,
        "batch_size": batch_size,
        "window": window,
        "dims": [int(x) for x in dims],
        "seed": seed,
        "threads": threads,
    }
    code = (
        "import json, sys\n"
        "from stllr.studies.memory_and_compute import _cpu_peak_child\n"
        "print('STLLR_PEAK ' + json.dumps(_cpu_peak_child(json.loads(sys.argv[1]))))\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("STLLR_PEAK "):
            return json.loads(line[len("STLLR_PEAK ") :])
    raise RuntimeError(
        f"cpu_peak_subprocess: the child process failed (rc {proc.returncode}):\n{proc.stderr}"
    )


def cpu_peaks(methods: Sequence[str] = ("stllr", "bptt"), **kwargs) -> Dict[str, Dict[str, Any]]:
    """:func:`cpu_peak_subprocess` for each of ``methods`` at once, one fresh process each (each
    measures its own resident set, so running them side by side does not mix them).

    Parameters:
        methods: ``"stllr"`` and / or ``"bptt"``.
        kwargs: the other arguments of :func:`cpu_peak_subprocess` (``T`` included).

    Returns ``{method: result}``."""
    from concurrent.futures import ThreadPoolExecutor

    methods = list(methods)
    if not methods:
        raise ValueError("methods: expected at least one of 'stllr', 'bptt'")
    with ThreadPoolExecutor(max_workers=len(methods)) as pool:
        futures = {m: pool.submit(cpu_peak_subprocess, m, **kwargs) for m in methods}
        return {m: f.result() for m, f in futures.items()}


# ======================================================================================
# The analytic calculator (the notebook's widget): Eq. 18-23 from layer sizes
# ======================================================================================
def parse_layer_sizes(text: str) -> Tuple[int, ...]:
    """Layer sizes from text.

    Parameters:
        text: e.g. ``"1000-1000-1000-1000-1"`` (or separated by commas, spaces or ``x``).

    Returns the sizes, e.g. (1000, 1000, 1000, 1000, 1): the input, each hidden layer and the
    output of a fully connected chain. ValueError for fewer than two or non-positive sizes."""
    if not isinstance(text, str):
        raise ValueError(f"text: expected a string such as '700-450-20', got {text!r}")
    parts = [p for p in re.split(r"[-,;x\s]+", text.strip()) if p]
    if len(parts) < 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(
            f"text: expected at least two positive layer sizes such as '700-450-20', got {text!r}"
        )
    return tuple(int(p) for p in parts)


def analytic_breakdown(
    dims: Sequence[int],
    T: int,
    window: Optional[int] = None,
    alpha_post: float = -1.0,
    batch_size: int = 1,
    bytes_per_value: int = 4,
    optimizer_moments: int = 2,
) -> Dict[str, Any]:
    """The paper's memory and MACs (Eq. 18-23) for a fully connected chain, with the
    weight-sized memory a training step also holds.

    Parameters:
        dims: (N^(0), ..., N^(L)), or text for :func:`parse_layer_sizes`.
        T: sequence length; window: d = T - T_l (default T).
        alpha_post: 0 drops the non-causal weight term (2 instead of 3 in Eq. 21).
        batch_size, bytes_per_value (4: float32), optimizer_moments (Adam: 2).

    Per method, in values and bytes (``bytes_per_value``, 4 for float32), batch ``batch_size``:
    ``weights`` = S = sum_{l>=1} N^(l) N^(l-1) (the paper's weights; biases are not counted),
    ``gradients`` = S, ``optimizer`` = ``optimizer_moments`` x S (Adam: 2), and the learning
    memory of Eq. 18-19, ``activations``: BPTT T x sum_l N^(l) x B, S-TLLR 2 x sum_l N^(l) x B.
    Ratios: ``memory_ratio`` = T / 2 (Eq. 22, activations only), ``total_ratio`` (everything
    above), ``mac_ratio`` = 2T / (3 d) (Eq. 23; 2 d when ``alpha_post == 0``) with MACs of
    Eq. 20-21 x batch. ``window`` d = T - T_l defaults to T."""
    if isinstance(dims, str):
        dims = parse_layer_sizes(dims)
    dims = tuple(dims)
    if len(dims) < 2 or not all(
        isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in dims
    ):
        raise ValueError(f"dims: expected at least two positive integer layer sizes, got {dims!r}")
    d = analytic._check_window(T, window)
    _check_positive(batch_size, "batch_size")
    _check_positive(bytes_per_value, "bytes_per_value")
    _check_count(optimizer_moments, "optimizer_moments")
    S = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    sum_n = sum(dims)
    out: Dict[str, Any] = {
        "dims": dims,
        "T": T,
        "window": d,
        "T_l": T - d,
        "alpha_post": float(alpha_post),
        "batch_size": batch_size,
        "bytes_per_value": bytes_per_value,
        "optimizer_moments": optimizer_moments,
        "S": S,
        "sum_neurons": sum_n,
    }
    for method in ("stllr", "bptt"):
        values = {
            "weights": S,
            "gradients": S,
            "optimizer": optimizer_moments * S,
            "activations": analytic.paper_memory(sum_n, T, method) * batch_size,
        }
        values["total"] = sum(values.values())
        out[method] = {
            "values": values,
            "bytes": {k: v * bytes_per_value for k, v in values.items()},
            "macs": (
                analytic.paper_macs(S, T, method, d, alpha_post)
                if method == "stllr"
                else analytic.paper_macs(S, T, method)
            )
            * batch_size,
        }
    out["memory_ratio"] = analytic.paper_memory_ratio(T)
    out["total_ratio"] = out["bptt"]["values"]["total"] / out["stllr"]["values"]["total"]
    out["mac_ratio"] = analytic.paper_mac_ratio(T, d, alpha_post)
    return out


def _mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:,.3f} MB"


def format_analytic_breakdown(r: Dict[str, Any]) -> str:
    """The text the notebook's calculator prints.

    Parameters:
        r: a result of :func:`analytic_breakdown`."""
    dims = "-".join(map(str, r["dims"]))
    a_post = "alpha_post = 0 (2 per weight)" if r["alpha_post"] == 0 else "alpha_post != 0 (3)"
    lines = [
        f"layers {dims}: sum N = {r['sum_neurons']:,}, S = sum N^(l) N^(l-1) = {r['S']:,}; "
        f"T = {r['T']}, window d = {r['window']} (T_l = {r['T_l']}), batch {r['batch_size']}, "
        f"{r['bytes_per_value']} B per value, {r['optimizer_moments']} optimizer moment(s)",
        f"{'':<24}{'S-TLLR':>18}{'BPTT':>18}",
    ]
    names = {
        "weights": "weights (S)",
        "gradients": "gradients (S)",
        "optimizer": f"optimizer ({r['optimizer_moments']} x S)",
        "activations": "Eq. 19 / Eq. 18",
        "total": "total",
    }
    for key, name in names.items():
        s, b = r["stllr"]["bytes"][key], r["bptt"]["bytes"][key]
        lines.append(f"{name:<24}{_mb(s):>18}{_mb(b):>18}")
    lines.append(
        f"memory BPTT / S-TLLR: Eq. 22 (activations) T/2 = {r['memory_ratio']:g}x; "
        f"with weights, gradients and optimizer {r['total_ratio']:.2f}x"
    )
    lines.append(
        f"MACs (Eq. 20-21, x batch): S-TLLR {r['stllr']['macs']:.4g}, BPTT {r['bptt']['macs']:.4g}; "
        f"Eq. 23 BPTT / S-TLLR = {r['mac_ratio']:.3f}x, {a_post}"
    )
    return "\n".join(lines)


def macs_vs_window(
    arch: str = "stllr_shd_net",
    T: int = 100,
    windows: Sequence[int] = (1, 5, 10, 25, 50, 75, 90, 100),
    batch_size: int = 4,
    factors=(0.5, 1.0, 1.0, 1.0),
    seed: int = 0,
    threads: Optional[int] = 1,
) -> Dict[str, Any]:
    """MACs of one training sequence against the learning window ``d = T - T_l`` (Eq. 20-23),
    counted by :class:`stllr.measure.MacCounter` on a registered S-TLLR model and its BPTT twin, beside
    the analytic counts. Also the same with ``alpha_post = 0`` (2 instead of 3 in Eq. 21).

    Returns ``{"shapes": ModelShapes, "bptt": {...}, "rows": [...]}``; each row (one window, per
    batch of ``batch_size``): ``stllr_macs`` (all executed), ``stllr_paper_terms`` (window forward +
    weight gradients: what Eq. 21 counts), ``stllr_pre_window`` (forward of the steps before the
    window), ``stllr_grad_input``, ``stllr_analytic``, the same ``*_a0`` for alpha_post = 0, and the
    ratios ``mac_ratio_analytic`` (2T/3d), ``mac_ratio_paper_terms`` and ``mac_ratio`` (all MACs).
    """
    spec = get_model_spec(arch)
    with num_threads(threads):
        torch.manual_seed(seed)
        s_model = build_model(arch, factors=list(factors))
        f0 = list(factors)
        f0[2] = 0.0
        s0_model = build_model(arch, factors=f0)
        b_model = build_model(spec.twin)
        shapes = analytic.model_shapes(s_model)
        inputs = sequence._random_inputs(
            shapes.input_shape, batch_size, seed, torch.float32, torch.device("cpu")
        )
        g = torch.Generator().manual_seed(seed)
        target = torch.randint(0, shapes.num_classes, (batch_size,), generator=g)
        mb = sequence.measure_sequence(b_model, inputs, target, steps=T, mode="bptt", saved=False)
        bk = mb.macs.by_kind()
        bptt = {
            "macs": mb.macs.total(),
            "paper_terms": bk["forward"] + bk["grad_weight"],
            "grad_input": bk["grad_input"],
            "analytic": analytic.paper_macs(shapes.weight_macs, T, "bptt") * batch_size,
        }
        rows = []
        for d in windows:
            d = int(d)
            row = {"T": T, "window": d, "T_l": T - d, "batch_size": batch_size}
            for suffix, model, a_post in (("", s_model, float(factors[2])), ("_a0", s0_model, 0.0)):
                ms = sequence.measure_sequence(
                    model, inputs, target, steps=T, mode="stllr", window=d, saved=False
                )
                c = ms.macs
                row[f"stllr_macs{suffix}"] = c.total()
                row[f"stllr_paper_terms{suffix}"] = c.total("window", "forward") + c.total(
                    "window", "grad_weight"
                )
                row[f"stllr_pre_window{suffix}"] = c.total("pre_window")
                row[f"stllr_grad_input{suffix}"] = c.total(kind="grad_input")
                row[f"stllr_analytic{suffix}"] = (
                    analytic.paper_macs(shapes.weight_macs, T, "stllr", d, a_post) * batch_size
                )
            row["mac_ratio_analytic"] = analytic.paper_mac_ratio(T, d, float(factors[2]))
            row["mac_ratio_analytic_a0"] = analytic.paper_mac_ratio(T, d, 0.0)
            row["mac_ratio_paper_terms"] = bptt["paper_terms"] / row["stllr_paper_terms"]
            row["mac_ratio"] = bptt["macs"] / row["stllr_macs"]
            rows.append(row)
    return {
        "arch": arch,
        "shapes": shapes,
        "T": T,
        "batch_size": batch_size,
        "bptt": bptt,
        "rows": rows,
    }


def _paper_pairs():
    """(S-TLLR row, its dataset's BPTT row) of Table 3."""
    bptt = {r["dataset"]: r for r in PAPER_TABLE3 if r["method"] == "BPTT"}
    return [(r, bptt[r["dataset"]]) for r in PAPER_TABLE3 if r["method"] != "BPTT"]


def paper_mac_points() -> List[Dict[str, Any]]:
    """Table 3's published MAC ratios (BPTT / S-TLLR) with their T, window and alpha_post."""
    out = []
    for s, b in _paper_pairs():
        d = s["T"] - s["T_l"]
        out.append(
            {
                "dataset": s["dataset"],
                "method": s["method"],
                "T": s["T"],
                "window": d,
                "alpha_post": s["alpha_post"],
                "ratio": b["mac_e9"] / s["mac_e9"],
                "formula": analytic.paper_mac_ratio(s["T"], d, s["alpha_post"]),
            }
        )
    return out


def table3_recomputed(half_resolution: bool = True) -> List[Dict[str, Any]]:
    """Table 3 recomputed from the registered models' layer shapes (:func:`stllr.measure.model_shapes`
    + :func:`stllr.measure.analytic_costs`, batch 1) beside the published numbers.

    One row per Table 3 row: ``mem_ratio`` / ``mac_ratio`` (ours, Eq. 22-23 on the model) and
    ``paper_mem_ratio`` / ``paper_mac_ratio`` (BPTT row / this row, from the printed MB and MACs);
    ``macs_e9`` (ours at the stated input resolution), ``macs_e9_half`` (VGG at half the stated
    height and width, see docs/measurement.md), ``paper_mac_e9``; ``values_e6`` (Eq. 18-19 stored
    values, ours at the stated resolution) and ``paper_mem_mb``. N-CALTECH101 has no registered
    model: its ratios come from the formulas alone (they do not depend on the model).
    """
    shapes_cache: Dict[Tuple[str, tuple], Any] = {}

    def shapes_of(arch, shape):
        key = (arch, shape)
        if key not in shapes_cache:
            torch.manual_seed(0)
            shapes_cache[key] = analytic.model_shapes(build_model(arch, input_shape=shape))
        return shapes_cache[key]

    bptt_rows = {r["dataset"]: r for r in PAPER_TABLE3 if r["method"] == "BPTT"}
    rows = []
    for r in PAPER_TABLE3:
        T = r["T"]
        is_bptt = r["method"] == "BPTT"
        d = T if is_bptt else T - r["T_l"]
        a_post = -1.0 if r["alpha_post"] is None else r["alpha_post"]
        b = bptt_rows[r["dataset"]]
        row = {
            "dataset": r["dataset"],
            "method": r["method"],
            "T": T,
            "window": None if is_bptt else d,
            "alpha_post": r["alpha_post"],
            "paper_acc": r["acc"],
            "paper_mac_e9": r["mac_e9"],
            "paper_mem_mb": r["mem_mb"],
            "paper_mem_ratio": None if is_bptt else b["mem_mb"] / r["mem_mb"],
            "paper_mac_ratio": None if is_bptt else b["mac_e9"] / r["mac_e9"],
            "mem_ratio": None if is_bptt else analytic.paper_memory_ratio(T),
            "mac_ratio": None if is_bptt else analytic.paper_mac_ratio(T, d, a_post),
            "model": None,
            "input_shape": None,
        }
        entry = TABLE3_MODELS.get(r["dataset"])
        if entry is not None:
            arch, shape = entry
            sh = shapes_of(arch, shape)
            ana = analytic.analytic_costs(sh, T, d, a_post, 1, 4)
            key = "bptt" if is_bptt else "stllr"
            row.update(
                model=arch,
                input_shape=shape,
                macs_e9=ana[f"{key}_macs"] / 1e9,
                values_e6=ana[f"{key}_memory_values"] / 1e6,
                sum_neurons=sh.sum_neurons,
            )
            if not is_bptt:
                row["mem_ratio"], row["mac_ratio"] = ana["memory_ratio"], ana["mac_ratio"]
            if half_resolution and len(shape) == 3:
                half = (shape[0], shape[1] // 2, shape[2] // 2)
                sh2 = shapes_of(arch, half)
                ana2 = analytic.analytic_costs(sh2, T, d, a_post, 1, 4)
                row["macs_e9_half"] = ana2[f"{key}_macs"] / 1e9
                row["values_e6_half"] = ana2[f"{key}_memory_values"] / 1e6
                row["half_shape"] = half
        rows.append(row)
    return rows


def time_per_step(
    cases: Sequence[Tuple[str, nn.Module, str, int, int, int]],
    repeats: int = 3,
    threads: Optional[int] = 1,
    seed: int = 0,
) -> List[Dict[str, Any]]:
    """Wall-clock training time per time step (best of ``repeats`` sequences, no measuring hooks).

    ``cases``: (label, model, mode, T, window, batch_size[, chunk]); ``chunk`` (``stllr`` mode,
    default 0: per step): defer the weight gradients as the training loop does
    (:func:`stllr.deferred_updates`). Rows: label, mode, T, window, batch, chunk (None for BPTT),
    ``seconds`` (one sequence), ``ms_per_step``.
    """
    rows = []
    with num_threads(threads):
        for case in cases:
            label, model, mode, T, d, bs = case[:6]
            chunk = (case[6] if len(case) > 6 else 0) if mode == "stllr" else None
            shapes = analytic.model_shapes(model)
            p = next(model.parameters())
            inputs = sequence._random_inputs(shapes.input_shape, bs, seed, p.dtype, p.device)
            g = torch.Generator().manual_seed(seed)
            target = torch.randint(0, max(shapes.num_classes, 2), (bs,), generator=g).to(p.device)
            loss = None
            if shapes.num_classes == 1:
                target = torch.zeros(bs, 1, device=p.device)
                loss = _mse_to_zero
            best = math.inf
            for _ in range(repeats):
                m = sequence.measure_sequence(
                    model,
                    inputs,
                    target,
                    steps=T,
                    mode=mode,
                    window=d if mode == "stllr" else None,
                    loss_fn=loss,
                    bptt_loss="last" if loss is not None else "sum",
                    saved=False,
                    macs=False,
                    chunk=chunk or 0,
                )
                best = min(best, m.seconds)
            model.zero_grad(set_to_none=True)
            model.reset_state()
            rows.append(
                {
                    "label": label,
                    "mode": mode,
                    "T": T,
                    "window": d if mode == "stllr" else T,
                    "batch": bs,
                    "chunk": chunk,
                    "seconds": best,
                    "ms_per_step": 1e3 * best / T,
                }
            )
    return rows
