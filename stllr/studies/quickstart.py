"""Notebook 00 (quickstart): S-TLLR against its BPTT twin on the same task and the same loss, with
their memory, in seconds."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from stllr import measure as M
from stllr.studies.common import (
    DataSpec,
    Method,
    RunResult,
    StudyConfig,
    format_table,
    num_threads,
    paper_shd_config,
    small_task_config,
    small_task_method,
)
from stllr.studies.paper import PAPER_SHD_BPTT_NOTE
from stllr.studies.sweeps import run_trials
from stllr.training.config import BPTT_MODES
from stllr.training.loop import bptt_through_time, time_major

__all__ = [
    "quickstart_config",
    "compare_methods",
    "training_memory",
    "results_table",
    "epoch_table",
    "timing_table",
]


def quickstart_config(
    full: bool = False, epochs: Optional[int] = None, data_path=None
) -> StudyConfig:
    """The settings of notebook 00, a :class:`~stllr.studies.common.StudyConfig`.

    Parameters:
        full: ``False``: the one small-task setting of notebooks 00, 06, 07 and 08
            (:func:`~stllr.studies.common.small_task_config`: randman with 5 classes, T = 30,
            ``randman_rsnn_stllr`` / ``randman_rsnn_bptt``, psi = surrogate = sigmoid, factors
            (0.5, 1, 1, 1), learning signal on the last 20 steps, Adam, batch 32, 12 epochs).
            ``methods``: S-TLLR with a BP signal (key ``stllr``) and the BPTT twin trained on the same
            loss, the per-step losses of the window (key ``bptt_window``, the matched control),
            each with its learning rate of :data:`~stllr.studies.common.SMALL_TASK_LR` (notebook
            08's validation sweep). ``True``: the paper's SHD setting
            (:func:`~stllr.studies.common.paper_shd_config`: ``stllr_shd_net`` / ``bptt_shd_net``
            on real SHD from ``data_path``, T = 100, learning signal on the last 90 steps, psi
            rational, Adam lr 2e-4 for both, batch 128, 200 epochs); ``methods``: S-TLLR (key
            ``stllr``) and BPTT on the loss of the logits summed over T (key ``bptt``), as the
            reference trains its BPTT baseline.
        epochs: training epochs (default: the setting's, 12 or 200).
        data_path: FULL: the folder holding SHD; else where the procedural task is cached.

    Raises ``ValueError`` (``epochs: ...``) for ``epochs`` below 1, and for ``full=True`` without
    ``data_path``.
    """
    if full:
        config = paper_shd_config(data_path, epochs)
        factors, window, psi = tuple(config.factors), config.window, config.psi
        config.methods = [
            Method("stllr", "S-TLLR", config.arch, "stllr", factors, window, psi),
            Method("bptt", "BPTT", config.twin, "bptt", factors, window, psi),
        ]
        return config
    config = small_task_config(data_path, epochs)
    config.methods = [
        small_task_method(config, "bp", key="stllr"),
        small_task_method(config, "bptt_window"),
    ]
    return config


def compare_methods(
    config: StudyConfig,
    data: Optional[DataSpec] = None,
    *,
    seed: int = 0,
    device="cpu",
    threads: Optional[int] = 1,
) -> Tuple[Dict[str, RunResult], Dict[str, Any]]:
    """Train every method of ``config`` (:func:`quickstart_config`) once, with the same seed and
    batches, in this process: one trial of :func:`stllr.studies.sweeps.run_trials` (``workers=0``,
    the trained models kept). ``data``: default ``config.data.with_seed(seed)``.
    Returns ``({key: RunResult}, info)``: the data's info plus its ``train_set`` and ``test_set``."""
    data = config.data.with_seed(seed) if data is None else data
    sweep = run_trials(
        config.methods,
        data,
        trials=1,
        epochs=config.epochs,
        lr=config.lr,
        optimizer=config.optimizer,
        seed=seed,
        workers=0,
        device=str(device),
        threads=threads,
        progress=False,
    )
    train_set, test_set, info = data.load()
    info = dict(info, train_set=train_set, test_set=test_set)
    return {key: trials[0] for key, trials in sweep.items()}, info


def training_memory(
    runs: Dict[str, RunResult],
    info: Dict[str, Any],
    *,
    batch_size: Optional[int] = None,
    threads: Optional[int] = 1,
) -> Dict[str, Dict[str, Any]]:
    """Bytes saved for backward during ONE training sequence of each trained model, in its
    training mode (``stllr``; ``bptt``: the loss of the summed logits; ``bptt_window``: the
    per-step losses of the window), measured with :class:`stllr.measure.SavedTensorTracker` on the
    first training batch (peak, activations only), beside the paper's Eq. 18-19 for the same model
    shapes and T.

    Parameters:
        runs: ``{key: RunResult}`` with trained models (:func:`compare_methods`).
        info: the data's info with its ``train_set`` (:func:`compare_methods`); the batch is the
            first ``batch_size`` training samples, padded to ``[T, B, ...]``.
        batch_size: default ``info["batch_size"]``, capped at the training set's size.
        threads: torch threads while measuring (None: unchanged).

    Returns per method: ``saved_bytes`` (the batch), ``saved_bytes_per_sample``,
    ``analytic_bytes_per_sample`` (float32), ``state_bytes`` (layer states, both methods), ``T``,
    ``window``, ``batch_size``, plus ``memory_ratio`` / ``memory_ratio_analytic`` (BPTT / S-TLLR,
    the first method of each) under the key ``"ratio"``. The models are left in their training
    flag, with no gradients and reset states.
    """
    from stllr.data import pad_collate

    bs = min(batch_size or info["batch_size"], len(info["train_set"]))
    frames, labels = pad_collate([info["train_set"][i] for i in range(bs)])
    device = next(next(iter(runs.values())).model.parameters()).device
    x = time_major(frames).to(device, dtype=torch.float32)
    y = labels.to(device, dtype=torch.int64)
    T = int(x.shape[0])
    out: Dict[str, Dict[str, Any]] = {}
    with num_threads(threads):
        for key, run in runs.items():
            model, m = run.model, run.method
            was_training = model.training
            model.train()
            d = min(int(m.window), T)
            if m.mode == "bptt_window":
                saved, state = _window_bptt_saved(model, x, y, d)
            else:
                meas = M.measure_sequence(
                    model, x, y, mode=m.mode, window=d if m.mode == "stllr" else None, macs=False
                )
                saved, state = meas.saved, meas.state
            model.zero_grad(set_to_none=True)
            model.reset_state()
            model.train(was_training)
            ana = M.analytic_costs(model, T, d, batch_size=1)
            analytic = ana["stllr_memory_bytes"] if m.mode == "stllr" else ana["bptt_memory_bytes"]
            out[key] = {
                "label": m.label,
                "mode": m.mode,
                "T": T,
                "window": d,
                "batch_size": bs,
                "saved_bytes": saved.peak_activation_bytes,
                "saved_bytes_per_sample": saved.peak_activation_bytes / bs,
                "saved_bytes_all": saved.peak_bytes,
                "analytic_bytes_per_sample": analytic,
                "state_bytes": state["total"],
                "sum_neurons": ana["sum_neurons"],
            }
    s = next((v for v in out.values() if v["mode"] == "stllr"), None)
    b = next((v for v in out.values() if v["mode"] in BPTT_MODES), None)
    if s and b:
        out["ratio"] = {
            "memory_ratio": b["saved_bytes"] / s["saved_bytes"],
            "memory_ratio_analytic": b["analytic_bytes_per_sample"]
            / s["analytic_bytes_per_sample"],
            "T": T,
        }
    return out


def _window_bptt_saved(model, x: torch.Tensor, y: torch.Tensor, window: int):
    """``(SavedTensorStats, state bytes)`` of one ``bptt_window`` training sequence: every step
    with the graph, the cross-entropy of each of the last ``window`` steps, one backward
    (:func:`stllr.training.loop.bptt_through_time`). ``x``: ``[T, B, ...]``, each step cloned
    into its own storage (as :func:`stllr.measure.measure_sequence` does); ``y``: ``[B]``."""
    steps = [x[t].clone() for t in range(x.shape[0])]
    model.zero_grad(set_to_none=True)
    tracker = M.SavedTensorTracker(model, int(x.shape[1]))
    with tracker:
        bptt_through_time(model, steps, y, F.cross_entropy, loss="window", window=window)
    return tracker.stats(), M.state_bytes(model)


def _paper_key(key: str, method: Method, paper: Dict[str, Any]) -> Optional[str]:
    """The row of the paper's SHD numbers beside ``method``: its own key, else by kind (S-TLLR
    with a BP signal: ``stllr``, with DFA: ``stllr_dfa``; a BPTT mode: ``bptt``)."""
    if key in paper:
        return key
    if method.mode in BPTT_MODES:
        kind = "bptt"
    else:
        kind = "stllr_dfa" if method.feedback_mode.lower() == "dfa" else "stllr"
    return kind if kind in paper else None


def results_table(
    runs: Dict[str, RunResult],
    memory: Optional[Dict[str, Dict[str, Any]]] = None,
    paper: Optional[Dict[str, Tuple[float, float]]] = None,
) -> str:
    """Accuracy and memory side by side (times: :func:`timing_table`): per method the final train
    and test accuracy (%), their difference ``train - test`` (points), the best test accuracy and,
    with ``memory`` (:func:`training_memory`), the bytes saved for backward per sample; with
    ``paper`` the published SHD numbers beside them (a method's own key, else the row of its kind:
    S-TLLR with a BP or a DFA signal, BPTT), the BPTT one marked as not matched
    (:data:`stllr.studies.paper.PAPER_SHD_BPTT_NOTE`, printed under the table).

    Parameters:
        runs: ``{key: RunResult}``, one row each.
        memory: :func:`training_memory` of the runs (optional columns).
        paper: ``{key: (mean, std)}`` test accuracies, e.g.
            :data:`stllr.studies.paper.PAPER_SHD_ACCURACY` (optional column).
    """
    rows = []
    paper_bptt = False
    for key, run in runs.items():
        train, test = run.final["train_acc"], run.final["test_acc"]
        r = {
            "method": run.method.label,
            "params": run.num_parameters,
            "train": train,
            "test": test,
            "gap": None if train is None else train - test,
            "best": run.best_test_acc,
        }
        if memory and key in memory:
            r["saved_kb"] = memory[key]["saved_bytes_per_sample"] / 1e3
            r["analytic_kb"] = memory[key]["analytic_bytes_per_sample"] / 1e3
        pk = _paper_key(key, run.method, paper) if paper else None
        if pk is not None:
            r["paper"] = f"{paper[pk][0]:.2f} +- {paper[pk][1]:.2f}"
            if pk == "bptt":
                r["paper"] += " *"
                paper_bptt = True
        rows.append(r)
    cols = [
        ("method", "method", ""),
        ("params", "params", "d"),
        ("train", "train acc %", ".2f"),
        ("test", "test acc %", ".2f"),
        ("gap", "train - test", "+.2f"),
        ("best", "best test %", ".2f"),
    ]
    if memory:
        cols += [
            ("saved_kb", "saved kB/sample (measured)", ".1f"),
            ("analytic_kb", "Eq.18-19 kB/sample", ".1f"),
        ]
    if paper:
        cols += [("paper", "paper SHD test %", "")]
    table = format_table(rows, cols)
    if paper_bptt:
        table += "\n" + PAPER_SHD_BPTT_NOTE
    return table


def epoch_table(runs: Dict[str, RunResult], every: int = 1) -> str:
    """Train and test accuracy (%) of every method per epoch (every ``every``-th epoch and the last)."""
    keys = list(runs)
    n = len(next(iter(runs.values())).history)
    rows = []
    for i in range(n):
        if i % every and i != n - 1:
            continue
        r = {"epoch": runs[keys[0]].history[i]["epoch"]}
        for k in keys:
            h = runs[k].history[i]
            r[f"{k}_train"], r[f"{k}_test"] = h["train_acc"], h["test_acc"]
        rows.append(r)
    cols = [("epoch", "epoch", "d")]
    for k in keys:
        lab = runs[k].method.label
        cols += [(f"{k}_train", f"{lab} train %", ".2f"), (f"{k}_test", f"{lab} test %", ".2f")]
    return format_table(rows, cols)


def timing_table(runs: Dict[str, RunResult]) -> str:
    """Mean training and test time per epoch (wall clock, noisy on a shared machine)."""
    rows = []
    for run in runs.values():
        tr = run.series("train_time")
        te = [h["test_time"] for h in run.history[1:]]
        rows.append(
            {
                "method": run.method.label,
                "train": sum(tr) / max(len(tr), 1),
                "test": sum(te) / max(len(te), 1),
                "total": sum(tr) + sum(te),
            }
        )
    return format_table(
        rows,
        [
            ("method", "method", ""),
            ("train", "train s/epoch", ".2f"),
            ("test", "test s/epoch", ".2f"),
            ("total", "total s", ".1f"),
        ],
    )
