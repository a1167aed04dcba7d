"""Notebook 00 (quickstart): S-TLLR against BPTT on the same task, with their memory, in minutes."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch

from stllr import measure as M
from stllr.studies.common import (
    RANDMAN_TASK,
    DataSpec,
    Method,
    RunResult,
    StudyConfig,
    format_table,
    num_threads,
    paper_shd_config,
    randman_config,
)
from stllr.studies.paper import PAPER_SHD_BPTT_NOTE
from stllr.studies.sweeps import run_trials
from stllr.training.loop import time_major

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

    ``full=False``: the procedural randman task (:data:`RANDMAN_TASK`: 10 classes, T = 50) with
    ``randman_rsnn_stllr`` / ``randman_rsnn_bptt`` and the settings of ``benchmarks/accuracy.py``
    (Adam lr 2e-3, batch 32, psi = surrogate = sigmoid, S-TLLR factors 0.5 1 1 1, learning signal on
    the last 45 of 50 steps), ``epochs`` default 8.
    ``full=True``: the paper's SHD setting (Table 3; docs/experiments.md): ``stllr_shd_net`` /
    ``bptt_shd_net`` on real SHD from ``data_path`` (T = 100), Adam lr 2e-4, batch 128, factors
    0.5 1 1 1, learning signal on the last 90 of 100 steps, psi rational (the reference default),
    200 epochs.
    ``methods``: S-TLLR (key ``stllr``) and BPTT (``bptt``).
    """
    if full:
        config = paper_shd_config(data_path, epochs)
    else:
        config = randman_config(
            RANDMAN_TASK, data_path, window=45, lr=2e-3, epochs=8 if epochs is None else epochs
        )
    factors, window, psi = tuple(config.factors), config.window, config.psi
    config.methods = [
        Method("stllr", "S-TLLR", config.arch, "stllr", factors, window, psi),
        Method("bptt", "BPTT", config.twin, "bptt", factors, window, psi),
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
    """Bytes saved for backward during ONE training sequence of each trained model, measured with
    :class:`stllr.measure.SavedTensorTracker` on the first training batch (peak, activations only),
    beside the paper's Eq. 18-19 for the same model shapes and T.

    Per method: ``saved_bytes`` (the batch), ``saved_bytes_per_sample``, ``analytic_bytes_per_sample``
    (float32), ``state_bytes`` (layer states, both methods), ``T``, ``batch_size``, plus
    ``memory_ratio`` / ``memory_ratio_analytic`` (BPTT / S-TLLR) under the key ``"ratio"``.
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
            meas = M.measure_sequence(
                model, x, y, mode=m.mode, window=d if m.mode == "stllr" else None, macs=False
            )
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
                "saved_bytes": meas.saved.peak_activation_bytes,
                "saved_bytes_per_sample": meas.saved.peak_activation_bytes / bs,
                "saved_bytes_all": meas.saved.peak_bytes,
                "analytic_bytes_per_sample": analytic,
                "state_bytes": meas.state["total"],
                "sum_neurons": ana["sum_neurons"],
            }
    s = next((v for v in out.values() if v["mode"] == "stllr"), None)
    b = next((v for v in out.values() if v["mode"] == "bptt"), None)
    if s and b:
        out["ratio"] = {
            "memory_ratio": b["saved_bytes"] / s["saved_bytes"],
            "memory_ratio_analytic": b["analytic_bytes_per_sample"]
            / s["analytic_bytes_per_sample"],
            "T": T,
        }
    return out


def results_table(
    runs: Dict[str, RunResult],
    memory: Optional[Dict[str, Dict[str, Any]]] = None,
    paper: Optional[Dict[str, Tuple[float, float]]] = None,
) -> str:
    """Accuracy and memory side by side (deterministic numbers only; times: :func:`timing_table`);
    with ``paper`` the published SHD numbers beside them, the BPTT one marked as not matched
    (:data:`stllr.studies.paper.PAPER_SHD_BPTT_NOTE`)."""
    rows = []
    for key, run in runs.items():
        r = {
            "method": run.method.label,
            "params": run.num_parameters,
            "train": run.final["train_acc"],
            "test": run.final["test_acc"],
            "best": run.best_test_acc,
        }
        if memory and key in memory:
            r["saved_kb"] = memory[key]["saved_bytes_per_sample"] / 1e3
            r["analytic_kb"] = memory[key]["analytic_bytes_per_sample"] / 1e3
        if paper and key in paper:
            r["paper"] = f"{paper[key][0]:.2f} +- {paper[key][1]:.2f}"
            if key == "bptt":
                r["paper"] += " *"
        rows.append(r)
    cols = [
        ("method", "method", ""),
        ("params", "params", "d"),
        ("train", "train acc %", ".2f"),
        ("test", "test acc %", ".2f"),
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
    if paper and "bptt" in paper and "bptt" in runs:
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
