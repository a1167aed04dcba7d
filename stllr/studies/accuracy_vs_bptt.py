"""Accuracy of S-TLLR (BP, DFA) against BPTT, and against the number of learning steps (notebook 04).

Two studies, each a :func:`stllr.studies.sweeps.run_trials` sweep over seeds:

1. *learning curves*: S-TLLR with a BP signal, S-TLLR with a DFA signal, and the BPTT twin, same
   network shape, data and batch order (paper Table 3's SHD rows are the published counterpart);
2. *learning window*: S-TLLR (BP) with a learning signal on only the last ``d = T - T_l`` steps,
   for several ``d``: fewer learning steps cost fewer MACs (paper Eq. 20-21, ``S_MAC = 2T / 3d``)
   and may cost accuracy.

:func:`study_config` gives the defaults (the small procedural randman task of
:data:`stllr.studies.common.SMALL_RANDMAN`, seconds per run) and the paper-scale version (SHD,
200 epochs)."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from stllr.analysis.metrics import mean_std
from stllr.measure.analytic import paper_mac_ratio
from stllr.plotting.style import PAPER_STYLE, _clean, method_color, plt
from stllr.studies.common import (
    DFA_RATE_PENALTY,
    SMALL_RANDMAN,
    Method,
    StudyConfig,
    format_table,
    paper_shd_config,
    randman_config,
)
from stllr.studies.paper import PAPER_SHD_BPTT_NOTE, PAPER_SHD_ROWS
from stllr.studies.sweeps import Sweep

__all__ = [
    "study_config",
    "comparison_methods",
    "window_methods",
    "bptt_window_methods",
    "window_rows",
    "window_table",
    "table3_rows",
    "table3_beside",
    "plot_accuracy_vs_window",
]


def study_config(full: bool = False, data_path=None, epochs: Optional[int] = None) -> StudyConfig:
    """Settings of both studies, a :class:`~stllr.studies.common.StudyConfig`.

    ``full=False``: randman (:data:`SMALL_RANDMAN`: 5 classes, T = 30), ``randman_rsnn_*`` (100-128
    rec-5), Adam lr 5e-3, batch 32, psi = surrogate = sigmoid, factors (0.5, 1, 1, 1) as the paper's
    SHD net, learning signal on the last 25 steps (T_l = 5), 12 epochs; windows 1, 5, 10, 20, 30.
    ``full=True``: the paper's SHD setting (Table 3): ``stllr_shd_net`` / ``bptt_shd_net`` on real
    SHD under ``data_path``, T = 100, T_l = 10 (90 learning steps), Adam lr 2e-4, batch 128, psi
    rational, 200 epochs; windows 1, 10, 25, 50, 90, 100.
    ``methods``: :func:`comparison_methods`; ``options["windows"]``: the learning windows of
    :func:`window_methods`.
    """
    if full:
        config = paper_shd_config(data_path, epochs, options={"windows": (1, 10, 25, 50, 90, 100)})
    else:
        config = randman_config(
            SMALL_RANDMAN,
            data_path,
            window=25,
            lr=5e-3,
            epochs=12 if epochs is None else int(epochs),
            options={"windows": (1, 5, 10, 20, 30)},
        )
    config.methods = comparison_methods(config)
    return config


def comparison_methods(config: StudyConfig, dfa_rate_reg: bool = True) -> List[Method]:
    """S-TLLR (BP), S-TLLR (DFA; with :data:`stllr.studies.common.DFA_RATE_PENALTY` unless
    ``dfa_rate_reg=False`` or FULL, where the paper's plain DFA is used) and BPTT, keys ``stllr``,
    ``stllr_dfa``, ``bptt``."""
    c = config
    f = tuple(c.factors)
    dfa_opts = dict(DFA_RATE_PENALTY) if (dfa_rate_reg and not c.full) else {}
    return [
        Method("stllr", "S-TLLR (BP)", c.arch, "stllr", f, c.window, c.psi, "bp"),
        Method("stllr_dfa", "S-TLLR (DFA)", c.arch, "stllr", f, c.window, c.psi, "dfa", dfa_opts),
        Method("bptt", "BPTT", c.twin, "bptt", f, c.window, c.psi),
    ]


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
    (default ``config.options["windows"]``; keys ``d<d>``)."""
    f = tuple(config.factors)
    return [
        Method(f"d{d}", _steps(d), config.arch, "stllr", f, d, config.psi, "bp")
        for d in _windows(config, windows)
    ]


def bptt_window_methods(
    config: StudyConfig, windows: Optional[Sequence[int]] = None
) -> List[Method]:
    """The control for :func:`window_methods`: the BPTT twin trained on the same loss, the per-step
    losses of the last ``d`` steps (training mode ``bptt_window``), with exact credit assignment
    through time (keys ``b<d>``)."""
    return [
        Method(
            f"b{d}",
            f"BPTT, loss of the last {_steps(d)}",
            config.twin,
            "bptt_window",
            tuple(config.factors),
            d,
            config.psi,
        )
        for d in _windows(config, windows)
    ]


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
            ("method", "method", ""),
            ("ours", f"ours: {task}", ""),
            ("ours_T", "T", ""),
            ("paper", "paper Table 3: SHD", ""),
            ("paper_T", "T", ""),
        ],
    )
    return table + "\n" + PAPER_SHD_BPTT_NOTE


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
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.6))
    curves = [(sweep, method_color("stllr"), "-", "S-TLLR (BP), mean +- std")]
    if bptt_windows is not None:
        curves.append((bptt_windows, method_color("bptt"), "--", "BPTT, same window loss"))
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
        ax.axhspan(m - s, m + s, color=method_color("bptt"), alpha=0.15, lw=0)
        ax.axhline(
            m,
            color=method_color("bptt"),
            lw=1.5,
            label=f"BPTT, loss of the logits summed over all {config.T} steps",
        )
    if chance is not None:
        ax.axhline(chance, color="0.6", ls=":", lw=1)
        ax.text(d.max(), chance, "chance ", color="0.4", fontsize=8, ha="right", va="bottom")
    ax.axvline(config.window, color="0.6", ls=":", lw=1)
    ax.text(
        config.window,
        ax.get_ylim()[0],
        f" default d={config.window}",
        color="0.4",
        fontsize=8,
        va="bottom",
    )
    ax.set_xlabel("learning steps d = T - T_l")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_title("accuracy vs learning window")
    ax.legend(frameon=False, fontsize=8, loc="center right")
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
