"""Accuracy of S-TLLR (BP, DFA) against BPTT, and against the number of learning steps (notebook 08).

Three studies, each a :func:`stllr.studies.sweeps.run_trials` sweep over seeds:

1. *a learning rate per method*: every method of the comparison trained at each rate of
   :data:`stllr.studies.common.SMALL_TASK_LR_GRID` on a validation split of the training set
   (:func:`lr_methods`, :func:`lr_rows`, :func:`choose_lr`); the rates it chooses are
   :data:`stllr.studies.common.SMALL_TASK_LR`, the small-task setting of notebooks 00, 06, 07, 08;
2. *the comparison*: S-TLLR with a BP signal, with BP plus the firing-rate penalty, with DFA plus
   that penalty, and the BPTT twin on the loss S-TLLR differentiates (the window's per-step
   losses) and on the loss of the summed logits, same network shape, data and batch order, each at
   its own rate (paper Table 3's SHD rows are the published counterpart);
3. *learning window*: S-TLLR (BP) with a learning signal on only the last ``d = T - T_l`` steps,
   for several ``d``: fewer learning steps cost fewer MACs (paper Eq. 20-21, ``S_MAC = 2T / 3d``)
   and may cost accuracy; the BPTT twin on the same loss is the control.

:func:`study_config` gives the defaults (the small-task setting,
:func:`stllr.studies.common.small_task_config`, seconds per run) and the paper-scale version (SHD,
200 epochs)."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from stllr.analysis.metrics import mean_std
from stllr.measure.analytic import paper_mac_ratio
from stllr.plotting.style import PAPER_STYLE, _clean, method_color, plt
from stllr.studies.common import (
    SMALL_TASK_LR_GRID,
    SMALL_TASK_VALIDATION,
    Method,
    StudyConfig,
    format_table,
    paper_shd_config,
    small_task_config,
    small_task_method,
)
from stllr.studies.paper import PAPER_SHD_BPTT_NOTE, PAPER_SHD_ROWS
from stllr.studies.sweeps import Sweep

__all__ = [
    "COMPARISON",
    "study_config",
    "comparison_methods",
    "lr_methods",
    "lr_rows",
    "lr_sweep_record",
    "recorded_lr_rows",
    "RECORDED_LR_SWEEP",
    "lr_table",
    "choose_lr",
    "comparison_rows",
    "comparison_table",
    "window_methods",
    "bptt_window_methods",
    "window_sweeps",
    "window_rows",
    "window_table",
    "table3_rows",
    "table3_beside",
    "plot_comparison",
    "plot_accuracy_vs_window",
]

#: The methods of the comparison: ``key: (kind of stllr.studies.common.SMALL_TASK_METHODS, colour,
#: line style, short label)``; the keys ``stllr``, ``stllr_dfa`` and ``bptt`` are those of the
#: paper's SHD rows (:data:`stllr.studies.paper.PAPER_SHD_ROWS`).
COMPARISON = {
    "stllr": ("bp", PAPER_STYLE["stllr"], "-", "S-TLLR\nBP"),
    "stllr_bp_rate": ("bp_rate", "#7fb2dc", "--", "S-TLLR\nBP +\nrate"),
    "stllr_dfa": ("dfa_rate", PAPER_STYLE["dfa"], "-", "S-TLLR\nDFA +\nrate"),
    "bptt_window": ("bptt_window", PAPER_STYLE["bptt"], "-", "BPTT\nwindow\nloss"),
    "bptt": ("bptt", "#f09b9b", "--", "BPTT\nsummed\nlogits"),
}


def study_config(full: bool = False, data_path=None, epochs: Optional[int] = None) -> StudyConfig:
    """Settings of the three studies, a :class:`~stllr.studies.common.StudyConfig`.

    ``full=False``: the small-task setting (:func:`stllr.studies.common.small_task_config`:
    randman with 5 classes and T = 30, ``randman_rsnn_*`` (100-128 rec-5), psi = surrogate =
    sigmoid, factors (0.5, 1, 1, 1) as the paper's SHD net, learning signal on the last 20 steps
    (T_l = 10), 12 epochs, Adam, batch 32, each method at its rate of
    :data:`~stllr.studies.common.SMALL_TASK_LR`); windows 1, 5, 10, 20, 30; BPTT controls at
    1, 5, 10. ``full=True``: the paper's SHD setting (Table 3): ``stllr_shd_net`` /
    ``bptt_shd_net`` on real SHD under ``data_path``, T = 100, T_l = 10 (90 learning steps), Adam
    lr 2e-4 for every method, batch 128, psi rational, plain DFA, 200 epochs; windows 1, 10, 25,
    50, 90, 100; controls at 10, 25, 50.
    ``methods``: :func:`comparison_methods`; ``options``: ``windows`` (:func:`window_methods`),
    ``control_windows`` (:func:`bptt_window_methods`), ``lr_grid`` and ``validation`` (the learning
    rate sweep, :func:`lr_methods`; small task only).

    Example:
        >>> c = study_config()
        >>> [m.key for m in c.methods], c.window, c.epochs
        (['stllr', 'stllr_bp_rate', 'stllr_dfa', 'bptt_window', 'bptt'], 20, 12)
    """
    if full:
        config = paper_shd_config(
            data_path,
            epochs,
            options={"windows": (1, 10, 25, 50, 90, 100), "control_windows": (10, 25, 50)},
        )
    else:
        config = small_task_config(
            data_path,
            epochs,
            options={
                "windows": (1, 5, 10, 20, 30),
                "control_windows": (1, 5, 10),
                "lr_grid": tuple(SMALL_TASK_LR_GRID),
                "validation": SMALL_TASK_VALIDATION,
            },
        )
    config.methods = comparison_methods(config)
    return config


def comparison_methods(
    config: StudyConfig, keys: Optional[Sequence[str]] = None, dfa_rate_reg: bool = True
) -> List[Method]:
    """The methods of :data:`COMPARISON` (``keys``: which, in that order; default all on the small
    task; FULL: ``stllr``, ``stllr_dfa``, ``bptt_window``, ``bptt``, with the paper's plain DFA and
    the study's one rate). ``dfa_rate_reg=False``: ``stllr_dfa`` is plain DFA (small task: at
    :data:`~stllr.studies.common.SMALL_TASK_LR`'s ``dfa`` rate)."""
    if keys is None:
        keys = [k for k in COMPARISON if not (config.full and k == "stllr_bp_rate")]
    out = []
    for key in keys:
        if key not in COMPARISON:
            raise ValueError(f"keys: expected names of {list(COMPARISON)}, got {key!r}")
        kind = COMPARISON[key][0]
        if kind == "dfa_rate" and (config.full or not dfa_rate_reg):
            kind = "dfa"
        out.append(small_task_method(config, kind, key=key))
    return out


def lr_methods(
    config: StudyConfig,
    keys: Optional[Sequence[str]] = None,
    grid: Optional[Sequence[float]] = None,
) -> List[Method]:
    """Every comparison method (:func:`comparison_methods` of ``keys``) at every learning rate of
    ``grid`` (default ``config.options["lr_grid"]``): keys ``<key>@<lr>``, for a sweep on a
    validation split (``config.data.validation_split(config.options["validation"])``)."""
    grid = config.options.get("lr_grid") if grid is None else grid
    if not grid:
        raise ValueError("grid: expected learning rates (config.options has no 'lr_grid')")
    out = []
    for m in comparison_methods(config, keys):
        for lr in grid:
            if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
                raise ValueError(f"grid: expected positive learning rates, got {lr!r}")
            out.append(
                dataclasses.replace(
                    m, key=f"{m.key}@{lr:g}", label=f"{m.label}, lr {lr:g}", lr=float(lr)
                )
            )
    return out


def lr_rows(sweep: Sweep) -> List[Dict[str, Any]]:
    """Per method and rate of an :func:`lr_methods` sweep: ``key`` (the method), ``label``,
    ``lr``, ``n``, ``mean`` / ``std`` of the final validation accuracy (%), ``train`` (mean final
    training accuracy) and ``chosen`` (:func:`choose_lr`'s pick for that method)."""
    return recorded_lr_rows(lr_sweep_record(sweep))


def lr_sweep_record(sweep: Sweep) -> Dict[str, Any]:
    """What an :func:`lr_methods` sweep measured, as JSON-ready data (the form of
    :data:`RECORDED_LR_SWEEP`): ``stllr_version``, the sweep's ``epochs`` / ``trials`` /
    ``seed`` / ``data`` and per sweep key its ``label``, ``lr`` and the final validation (``val``)
    and training (``train``) accuracies (%) of every trial."""
    from stllr import __version__

    settings = getattr(sweep, "settings", None) or {}
    return {
        "stllr_version": __version__,
        **{k: settings.get(k) for k in ("epochs", "trials", "seed", "data")},
        "runs": {
            k: {
                "label": sweep.labels.get(k, k),
                "lr": float(runs[0].method.lr),
                "val": [float(v) for v in sweep.accuracies(k)],
                "train": [float(r.final["train_acc"]) for r in runs],
            }
            for k, runs in sweep.items()
        },
    }


#: The learning-rate sweep behind :data:`stllr.studies.common.SMALL_TASK_LR`, as
#: :func:`lr_sweep_record` wrote it from notebook 08 with ``LR_SWEEP = True`` (every method of
#: :func:`lr_methods` of :func:`study_config`, 3 seeds, on the validation split; run
#: 2026-12-01, Intel Xeon AVX-512, one thread per run): per run the final validation and
#: training accuracy (%). tests/test_accuracy_study.py checks that ``stllr_version`` is the
#: package's, the settings the notebook's, and SMALL_TASK_LR its choice.
RECORDED_LR_SWEEP: Dict[str, Any] = {
    "stllr_version": "0.2.0",
    "epochs": 12,
    "trials": 3,
    "seed": 0,
    "data": {
        "dataset": "randman",
        "data_path": None,
        "data_options": {
            "n_classes": 5,
            "n_units": 100,
            "n_steps": 30,
            "n_train_per_class": 60,
            "n_test_per_class": 40,
            "manifold_dim": 2,
            "alpha": 2.0,
            "jitter": 2.0,
            "seed": 0,
        },
        "batch_size": 32,
        "val_batch_size": 250,
        "max_train": None,
        "max_test": None,
        "data_seed": 0,
        "validation": 60,
    },
    "runs": {
        "stllr@0.005": {
            "label": "S-TLLR (BP), lr 0.005",
            "lr": 0.005,
            "val": [88.33333333333333, 83.33333333333333, 68.33333333333333],
            "train": [97.5, 97.5, 90.83333333333333],
        },
        "stllr@0.01": {
            "label": "S-TLLR (BP), lr 0.01",
            "lr": 0.01,
            "val": [93.33333333333333, 91.66666666666667, 80.0],
            "train": [99.58333333333333, 100.0, 100.0],
        },
        "stllr@0.02": {
            "label": "S-TLLR (BP), lr 0.02",
            "lr": 0.02,
            "val": [85.0, 93.33333333333333, 98.33333333333333],
            "train": [98.33333333333333, 99.58333333333333, 96.66666666666667],
        },
        "stllr_bp_rate@0.005": {
            "label": "S-TLLR (BP + rate penalty), lr 0.005",
            "lr": 0.005,
            "val": [88.33333333333333, 91.66666666666667, 91.66666666666667],
            "train": [99.58333333333333, 99.58333333333333, 99.16666666666667],
        },
        "stllr_bp_rate@0.01": {
            "label": "S-TLLR (BP + rate penalty), lr 0.01",
            "lr": 0.01,
            "val": [95.0, 98.33333333333333, 96.66666666666667],
            "train": [100.0, 100.0, 99.58333333333333],
        },
        "stllr_bp_rate@0.02": {
            "label": "S-TLLR (BP + rate penalty), lr 0.02",
            "lr": 0.02,
            "val": [96.66666666666667, 95.0, 95.0],
            "train": [100.0, 100.0, 99.58333333333333],
        },
        "stllr_dfa@0.005": {
            "label": "S-TLLR (DFA + rate penalty), lr 0.005",
            "lr": 0.005,
            "val": [80.0, 78.33333333333333, 86.66666666666667],
            "train": [91.25, 95.0, 96.66666666666667],
        },
        "stllr_dfa@0.01": {
            "label": "S-TLLR (DFA + rate penalty), lr 0.01",
            "lr": 0.01,
            "val": [91.66666666666667, 83.33333333333333, 90.0],
            "train": [100.0, 96.66666666666667, 100.0],
        },
        "stllr_dfa@0.02": {
            "label": "S-TLLR (DFA + rate penalty), lr 0.02",
            "lr": 0.02,
            "val": [91.66666666666667, 75.0, 96.66666666666667],
            "train": [99.16666666666667, 97.5, 100.0],
        },
        "bptt_window@0.005": {
            "label": "BPTT (loss of the window), lr 0.005",
            "lr": 0.005,
            "val": [70.0, 81.66666666666667, 70.0],
            "train": [94.58333333333333, 98.33333333333333, 95.83333333333333],
        },
        "bptt_window@0.01": {
            "label": "BPTT (loss of the window), lr 0.01",
            "lr": 0.01,
            "val": [86.66666666666667, 85.0, 80.0],
            "train": [91.25, 97.91666666666667, 100.0],
        },
        "bptt_window@0.02": {
            "label": "BPTT (loss of the window), lr 0.02",
            "lr": 0.02,
            "val": [90.0, 85.0, 91.66666666666667],
            "train": [100.0, 96.66666666666667, 99.58333333333333],
        },
        "bptt@0.005": {
            "label": "BPTT (loss of the summed logits), lr 0.005",
            "lr": 0.005,
            "val": [56.666666666666664, 71.66666666666667, 66.66666666666667],
            "train": [95.83333333333333, 95.41666666666667, 93.75],
        },
        "bptt@0.01": {
            "label": "BPTT (loss of the summed logits), lr 0.01",
            "lr": 0.01,
            "val": [70.0, 75.0, 68.33333333333333],
            "train": [96.66666666666667, 96.66666666666667, 98.33333333333333],
        },
        "bptt@0.02": {
            "label": "BPTT (loss of the summed logits), lr 0.02",
            "lr": 0.02,
            "val": [75.0, 71.66666666666667, 76.66666666666667],
            "train": [98.33333333333333, 95.41666666666667, 97.5],
        },
    },
}


def recorded_lr_rows(record: Optional[Mapping[str, Any]] = None) -> List[Dict[str, Any]]:
    """:func:`lr_rows` of a recorded sweep (:func:`lr_sweep_record`; default
    :data:`RECORDED_LR_SWEEP`, the sweep behind :data:`stllr.studies.common.SMALL_TASK_LR`):
    the same rows as :func:`lr_rows` of the sweep it records.

    Example:
        >>> rows = recorded_lr_rows()
        >>> sorted({r["key"] for r in rows}) == sorted(m.key for m in comparison_methods(study_config()))
        True
    """
    record = RECORDED_LR_SWEEP if record is None else record
    rows = []
    for k, run in record["runs"].items():
        mean, std = mean_std(np.array(run["val"]), exact=False)
        rows.append(
            dict(
                key=k.rsplit("@", 1)[0],
                label=run["label"].rsplit(", lr ", 1)[0],
                lr=run["lr"],
                n=len(run["val"]),
                mean=mean,
                std=std,
                train=float(np.mean(run["train"])),
            )
        )
    chosen = choose_lr(rows)
    for r in rows:
        r["chosen"] = r["lr"] == chosen[r["key"]]
    return rows


def choose_lr(rows: Sequence[Mapping[str, Any]]) -> Dict[str, float]:
    """``{method key: learning rate}``: per method, the rate of the highest mean validation
    accuracy among ``rows`` (:func:`lr_rows`); of rates within 1e-9 points of it, the smallest.

    Example:
        >>> choose_lr([dict(key="a", lr=1e-2, mean=80.0), dict(key="a", lr=5e-3, mean=80.0),
        ...            dict(key="a", lr=2e-2, mean=70.0)])
        {'a': 0.005}
    """
    best: Dict[str, Any] = {}
    for r in rows:
        k = r["key"]
        if (
            k not in best
            or r["mean"] > best[k]["mean"] + 1e-9
            or (abs(r["mean"] - best[k]["mean"]) <= 1e-9 and r["lr"] < best[k]["lr"])
        ):
            best[k] = r
    return {k: float(r["lr"]) for k, r in best.items()}


def lr_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Text table of :func:`lr_rows`: one line per method, the mean +- std validation accuracy
    at each rate, the chosen one marked ``<``."""
    rates = sorted({r["lr"] for r in rows})
    by = {}
    for r in rows:
        by.setdefault(r["key"], {"label": r["label"]})[r["lr"]] = r
    table = []
    for key, d in by.items():
        line = {"label": d["label"]}
        for lr in rates:
            r = d.get(lr)
            line[f"{lr:g}"] = (
                None
                if r is None
                else f"{r['mean']:.1f} +- {r['std']:.1f}" + (" <" if r["chosen"] else "  ")
            )
        table.append(line)
    cols = [("label", "method (validation accuracy %, mean +- std)", "")]
    cols += [(f"{lr:g}", f"lr {lr:g}", "") for lr in rates]
    return format_table(table, cols)


def comparison_rows(sweep: Sweep) -> List[Dict[str, Any]]:
    """Per method: ``key``, ``label``, ``lr``, ``n``, mean / std of the final ``test`` accuracy and
    of the final ``train`` accuracy (%, measured while the last epoch trained), and ``gap`` (mean
    train minus mean test, points)."""
    rows = []
    for key, runs in sweep.items():
        test = mean_std(sweep.accuracies(key), exact=False)
        train = mean_std(np.array([r.final["train_acc"] for r in runs]), exact=False)
        rows.append(
            dict(
                key=key,
                label=sweep.labels.get(key, key),
                lr=runs[0].method.lr,
                n=len(runs),
                test=test[0],
                test_std=test[1],
                train=train[0],
                train_std=train[1],
                gap=train[0] - test[0],
            )
        )
    return rows


def comparison_table(sweep: Sweep, paper: Optional[Mapping[str, Any]] = None) -> str:
    """Text table of :func:`comparison_rows`: learning rate, final training and test accuracy
    (mean +- std), their gap and, with ``paper`` (``{key: (mean, std)}``), the paper's SHD number
    (the BPTT row marked ``*``, :data:`stllr.studies.paper.PAPER_SHD_BPTT_NOTE` below)."""
    rows = []
    for r in comparison_rows(sweep):
        row = dict(
            r,
            lr="-" if r["lr"] is None else f"{r['lr']:g}",
            train_s=f"{r['train']:.2f} +- {r['train_std']:.2f}",
            test_s=f"{r['test']:.2f} +- {r['test_std']:.2f}",
        )
        if paper and r["key"] in paper:
            m, sd = paper[r["key"]]
            row["paper"] = f"{m:.2f} +- {sd:.2f}" + (" *" if r["key"] == "bptt" else "")
        rows.append(row)
    cols = [
        ("label", "method", ""),
        ("lr", "lr", ""),
        ("n", "trials", "d"),
        ("train_s", "train acc %", ""),
        ("test_s", "test acc %", ""),
        ("gap", "train - test", ".1f"),
    ]
    if paper:
        cols.append(("paper", "paper Table 3 (SHD)", ""))
    text = format_table(rows, cols)
    if paper and "bptt" in sweep:
        text += "\n" + PAPER_SHD_BPTT_NOTE
    return text


def _windows(config: StudyConfig, windows: Optional[Sequence[int]]) -> List[int]:
    T = config.T
    out = []
    for d in config.options["windows"] if windows is None else windows:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 1 <= d <= T:
            raise ValueError(
                f"windows: each learning window must be an integer in [1, T={T}], got {d!r}"
            )
        out.append(int(d))
    return out


def _steps(d: int) -> str:
    return f"{d} step" if d == 1 else f"{d} steps"


def window_methods(config: StudyConfig, windows: Optional[Sequence[int]] = None) -> List[Method]:
    """S-TLLR (BP) with a learning signal on the last ``d`` steps for each ``d`` of ``windows``
    (default ``config.options["windows"]``; keys ``d<d>``), at S-TLLR (BP)'s rate."""
    return [
        small_task_method(config, "bp", key=f"d{d}", label=_steps(d), window=d)
        for d in _windows(config, windows)
    ]


def bptt_window_methods(
    config: StudyConfig, windows: Optional[Sequence[int]] = None
) -> List[Method]:
    """The control for :func:`window_methods`: the BPTT twin trained on the same loss, the per-step
    losses of the last ``d`` steps (training mode ``bptt_window``), with exact credit assignment
    through time (keys ``b<d>``; default ``config.options["control_windows"]``), at the windowed
    BPTT's rate."""
    if windows is None:
        windows = config.options.get("control_windows", config.options["windows"])
    return [
        small_task_method(
            config,
            "bptt_window",
            key=f"b{d}",
            label=f"BPTT, loss of the last {_steps(d)}",
            window=d,
        )
        for d in _windows(config, windows)
    ]


def window_sweeps(both: Sweep, main: Sweep, config: StudyConfig):
    """``(windows, control)``: the :func:`window_methods` runs (keys ``d<d>``) and the
    :func:`bptt_window_methods` runs (``b<d>``) of ``both``, each with the main comparison's run at
    ``config.window`` added from ``main`` (its ``stllr`` and ``bptt_window`` trials: the same
    method at that window, so not trained twice), ordered by ``d``."""
    out = []
    for prefix, key in (("d", "stllr"), ("b", "bptt_window")):
        keys = [k for k in both if k[0] == prefix and k[1:].isdigit()]
        sw = Sweep(
            {k: both[k] for k in keys},
            labels={k: both.labels.get(k, k) for k in keys},
            settings=both.settings,
        )
        main_key = f"{prefix}{config.window}"
        if key in main and main_key not in sw:
            sw[main_key] = main[key]
            sw.labels[main_key] = (
                _steps(config.window)
                if prefix == "d"
                else f"BPTT, loss of the last {_steps(config.window)}"
            )
        order = sorted(sw, key=lambda k: int(k[1:]))
        out.append(sw.subset(order))
    return out[0], out[1]


def window_rows(
    sweep: Sweep, config: StudyConfig, bptt: Optional[np.ndarray] = None
) -> List[Dict[str, Any]]:
    """Per learning window: ``window, T_l, mean, std, n`` of the final test accuracy, the analytic
    MAC saving vs BPTT (Eq. 20-21, ``2T / 3d``; below 1 means S-TLLR costs more) and, with ``bptt``
    (final accuracies of the BPTT trials), ``vs_bptt`` = mean difference in points."""
    T = config.T
    rows = []
    for key in sweep:
        d = int(key[1:])
        acc = sweep.accuracies(key)
        mean, std = mean_std(acc, exact=False)
        row = {
            "window": d,
            "T_l": T - d,
            "n": len(acc),
            "mean": mean,
            "std": std,
            "mac_saving": paper_mac_ratio(T, d, float(config.factors.alpha_post)),
        }
        if bptt is not None:
            row["vs_bptt"] = row["mean"] - float(np.mean(bptt))
        rows.append(row)
    return rows


def window_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Text table of :func:`window_rows`."""
    table = [dict(r, acc=f"{r['mean']:.2f} +- {r['std']:.2f}") for r in rows]
    cols = [
        ("window", "learning steps d", "d"),
        ("T_l", "T_l", "d"),
        ("n", "trials", "d"),
        ("acc", "test acc %", ""),
        ("mac_saving", "MAC saving vs BPTT (2T/3d)", ".2f"),
    ]
    if rows and "vs_bptt" in rows[0]:
        cols.append(("vs_bptt", "vs BPTT (points)", "+.2f"))
    return format_table(table, cols)


def table3_rows(sweep: Sweep, config: StudyConfig) -> List[Dict[str, Any]]:
    """Our mean +- std per method beside the paper's SHD rows of Table 3
    (:data:`stllr.studies.paper.PAPER_SHD_ROWS`)."""
    T = config.T
    rows = []
    for paper in PAPER_SHD_ROWS:
        key = paper["key"]
        mean, std = mean_std(sweep.accuracies(key), exact=False)
        ours_tl = None if key == "bptt" else T - config.window
        rows.append(
            {
                "method": paper["method"],
                "ours_method": sweep.labels.get(key, key),
                "ours": f"{mean:.2f} +- {std:.2f}",
                "ours_T": f"{T} (T_l {ours_tl})" if ours_tl is not None else str(T),
                "paper": f"{paper['acc'][0]:.2f} +- {paper['acc'][1]:.2f}"
                + (" *" if key == "bptt" else ""),
                "paper_T": f"{paper['T']} (T_l {paper['T_l']})"
                if paper["T_l"] is not None
                else str(paper["T"]),
            }
        )
    return rows


def table3_beside(sweep: Sweep, config: StudyConfig) -> str:
    """:func:`table3_rows` as text; the task column says which data each side used, and a footnote
    that the paper's BPTT baseline is not matched (:data:`stllr.studies.paper.PAPER_SHD_BPTT_NOTE`)."""
    task = "SHD (ours)" if config.full else "randman 5-class"
    table = format_table(
        table3_rows(sweep, config),
        [
            ("method", "paper's method", ""),
            ("ours_method", "ours", ""),
            ("ours", f"ours: {task}", ""),
            ("ours_T", "T", ""),
            ("paper", "paper Table 3: SHD", ""),
            ("paper_T", "T", ""),
        ],
    )
    return table + "\n" + PAPER_SHD_BPTT_NOTE


def plot_comparison(sweep: Sweep, chance: Optional[float] = None, paper: bool = True):
    """The comparison of :func:`comparison_methods` in four panels: test accuracy per epoch and
    training accuracy per epoch (mean over trials +- std; epoch 0: before training), the final test
    accuracy of every trial (boxes), and, apart (``paper``), the paper's Table 3 SHD rows (another
    task: 20 classes, T = 100, 200 epochs; its BPTT baseline not matched). Colours and line styles
    of :data:`COMPARISON`. Returns the figure."""
    from stllr.plotting.training import plot_learning_curves, plot_trial_boxes

    keys = [k for k in COMPARISON if k in sweep] + [k for k in sweep if k not in COMPARISON]
    colors = [COMPARISON[k][1] if k in COMPARISON else method_color(k) for k in keys]
    styles = [COMPARISON[k][2] if k in COMPARISON else "-" for k in keys]
    ratios = [1.2, 1.2, 1.1] + ([0.55] if paper else [])
    fig, axes = plt.subplots(
        1, len(ratios), figsize=(15 if paper else 13, 4.0), gridspec_kw={"width_ratios": ratios}
    )
    ax, bx, cx = axes[:3]
    for a, series, title, ylabel in (
        (ax, "test_acc", "test accuracy per epoch", "test accuracy (%)"),
        (bx, "train_acc", "training accuracy per epoch", "training accuracy (%, during the epoch)"),
    ):
        plot_learning_curves(a, sweep, keys, series=series, colors=colors, ylabel=ylabel)
        for line, ls in zip(a.get_lines(), styles):
            line.set_linestyle(ls)
        if chance is not None:
            a.axhline(chance, color="0.6", ls=":", lw=1)
        a.set_title(f"{title} (mean +- std)")
    ax.legend(frameon=False, fontsize=7, loc="lower right")
    bx.get_legend().remove()
    labels = [COMPARISON[k][3] if k in COMPARISON else sweep.labels.get(k, k) for k in keys]
    plot_trial_boxes(cx, sweep, keys, labels=labels, colors=colors)
    cx.tick_params(axis="x", labelsize=7)
    n = min(len(v) for v in sweep.values())
    cx.set_title(f"final test accuracy, {n} seeds")
    if paper:
        dx = axes[3]
        for i, row in enumerate(PAPER_SHD_ROWS):
            m, sd = row["acc"]
            dx.errorbar([i], [m], yerr=[sd], marker="D", color=PAPER_STYLE["paper"], capsize=3)
        dx.set_xticks(range(len(PAPER_SHD_ROWS)))
        dx.set_xticklabels(
            [
                r["method"].replace(" (", "\n(") + (" *" if r["key"] == "bptt" else "")
                for r in PAPER_SHD_ROWS
            ],
            fontsize=7,
        )
        dx.set_xlim(-0.5, len(PAPER_SHD_ROWS) - 0.5)
        dx.set_ylabel("test accuracy (%)")
        dx.set_title("paper Table 3: SHD\n(another task; * not matched)", fontsize=9)
        _clean(dx)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_window(
    sweep: Sweep,
    config: StudyConfig,
    bptt: Optional[np.ndarray] = None,
    measured_mac_ratio: Optional[Mapping[int, float]] = None,
    chance: Optional[float] = None,
    bptt_windows: Optional[Sweep] = None,
):
    """Two panels against the number of learning steps d: test accuracy (every trial a dot, mean +-
    std, BPTT's mean +- std as a band, ``chance`` (%) dotted; ``bptt_windows``: the
    :func:`bptt_window_methods` control, drawn dashed) and the MAC saving vs BPTT (Eq. 20-21;
    ``measured_mac_ratio``: ``{d: ratio}`` counted by :func:`stllr.studies.memory_and_compute.macs_vs_window`, drawn
    as dots). Returns the figure."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4.6))
    curves = [(sweep, method_color("stllr"), "-", "S-TLLR (BP), mean +- std")]
    if bptt_windows is not None:
        curves.append(
            (
                bptt_windows,
                method_color("bptt"),
                "--",
                "BPTT, loss of the same d steps, mean +- std",
            )
        )
    for sw, c, ls, label in curves:
        rows_sw = window_rows(sw, config)
        for key, r in zip(sw, rows_sw):
            acc = sw.accuracies(key)
            ax.scatter(np.full(len(acc), r["window"]), acc, s=10, color=c, alpha=0.5, zorder=3)
        ax.errorbar(
            [r["window"] for r in rows_sw],
            [r["mean"] for r in rows_sw],
            yerr=[r["std"] for r in rows_sw],
            color=c,
            ls=ls,
            marker="o",
            capsize=3,
            label=label,
        )
    rows = window_rows(sweep, config, bptt)
    d = np.array([r["window"] for r in rows])
    c = method_color("stllr")
    if bptt is not None:
        m, s = mean_std(bptt, exact=False)
        ax.axhspan(m - s, m + s, color=COMPARISON["bptt"][1], alpha=0.2, lw=0)
        ax.axhline(
            m,
            color=COMPARISON["bptt"][1],
            lw=1.5,
            label=f"BPTT, loss of the logits summed over all {config.T} steps (mean +- std)",
        )
    if chance is not None:
        ax.axhline(chance, color="0.6", ls=":", lw=1)
        ax.text(d.max(), chance, "chance ", color="0.4", fontsize=8, ha="right", va="bottom")
    ax.axvline(config.window, color="0.6", ls=":", lw=1)
    ax.text(
        config.window,
        ax.get_ylim()[0],
        f"main comparison: d = {config.window} ",
        color="0.4",
        fontsize=8,
        ha="right",
        va="bottom",
    )
    ax.set_xlabel("learning steps d = T - T_l")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_title("accuracy vs learning window")
    # below the axes: inside, it would cover points
    ax.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=1)
    _clean(ax)
    dd = np.arange(int(d.min()), config.T + 1)
    bx.plot(
        dd,
        [paper_mac_ratio(config.T, int(x), float(config.factors.alpha_post)) for x in dd],
        color=c,
        label="Eq. 20-21: 2T / 3d",
    )
    bx.plot(
        dd,
        [paper_mac_ratio(config.T, int(x), 0.0) for x in dd],
        color=c,
        ls="--",
        lw=1,
        label="alpha_post = 0: 2T / 2d",
    )
    if measured_mac_ratio:
        ks = sorted(measured_mac_ratio)
        bx.scatter(
            ks,
            [measured_mac_ratio[k] for k in ks],
            color="black",
            s=18,
            zorder=3,
            label="counted (MacCounter)",
        )
    bx.axhline(1.0, color=PAPER_STYLE["paper"], lw=1, ls=":")
    bx.set_yscale("log")
    bx.set_xlabel("learning steps d = T - T_l")
    bx.set_ylabel("MACs of BPTT / MACs of S-TLLR")
    bx.set_title("compute saved (above 1: S-TLLR cheaper)")
    bx.legend(frameon=False, fontsize=8)
    _clean(bx)
    fig.tight_layout()
    return fig
