"""Plots of memory and compute (notebook 05): bytes saved for backward and peak memory against T,
the memory of a training sequence by part, the analytic calculator's bars, MACs against the
learning window, the paper's Table 3 recomputed, time per step. Published numbers are drawn in
grey."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np

from stllr.plotting.style import PAPER_STYLE, _clean, method_color, plt

__all__ = [
    "BREAKDOWN_STYLE",
    "plot_memory_vs_T",
    "plot_memory_breakdown",
    "plot_analytic_breakdown",
    "plot_macs_vs_window",
    "plot_table3",
    "plot_time_per_step",
]


def _log_T_axis(ax, ticks):
    ax.set_xscale("log")
    ax.set_xticks(list(ticks), [str(int(t)) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("time steps T (log scale)")


def _saved_panel(ax, rows):
    """Bytes saved for backward vs T (this run's rows), Eq. 18-19, and the allocator peak when the
    rows have it (a CUDA run)."""
    T = np.array([r["T"] for r in rows])
    for name in ("bptt", "stllr"):
        c = method_color(name)
        lab = "BPTT" if name == "bptt" else "S-TLLR"
        ax.plot(
            T,
            [r[f"{name}_saved_bytes"] / 1e6 for r in rows],
            "o-",
            color=c,
            lw=2,
            ms=5,
            label=f"{lab}: bytes saved for backward (measured)",
        )
        ax.plot(
            T,
            [r[f"{name}_analytic"] / 1e6 for r in rows],
            "--",
            color=c,
            lw=1.3,
            label=f"{lab}: Eq. {18 if name == 'bptt' else 19} (analytic)",
        )
        if f"{name}_peak_bytes" in rows[0]:
            ax.plot(
                T,
                [r[f"{name}_peak_bytes"] / 1e6 for r in rows],
                ":s",
                color=c,
                ms=4,
                lw=1.3,
                label=f"{lab}: GPU peak increase (max_memory_allocated)",
            )
    _log_T_axis(ax, T)
    ax.set_yscale("log")
    ax.set_ylabel("MB (1e6 bytes), log scale")
    ax.set_title(
        f"bytes saved for backward, one training sequence\n(this run, batch {rows[0]['batch_size']})",
        fontsize=10,
    )
    ax.legend(frameon=False, fontsize=7.5, loc="lower right", bbox_to_anchor=(1.0, 0.2))
    _clean(ax)


def _recorded_name(recorded) -> str:
    return recorded.get("gpu") or str(recorded.get("device", "")).upper()


def _recorded_panel(ax, recorded):
    """The recorded run: bytes saved for backward beside the allocator's peak increase."""
    rows = [r for r in recorded["rows"] if r["bptt_saved_mb"] is not None]
    T = np.array([r["T"] for r in rows])
    for name in ("bptt", "stllr"):
        c = method_color(name)
        lab = "BPTT" if name == "bptt" else "S-TLLR"
        ax.plot(
            T,
            [r[f"{name}_peak_mb"] for r in rows],
            "s-",
            color=c,
            lw=2,
            ms=5,
            label=f"{lab}: peak memory increase (what Fig. 3 plots)",
        )
        ax.plot(
            T,
            [r[f"{name}_saved_mb"] for r in rows],
            "o:",
            color=c,
            lw=1.3,
            ms=4,
            mfc="white",
            label=f"{lab}: bytes saved for backward",
        )
    _log_T_axis(ax, T)
    ax.set_yscale("log")
    ax.set_ylabel("MB (1e6 bytes), log scale")
    ax.set_title(
        f"recorded {_recorded_name(recorded)} run (batch {recorded['batch_size']}): peak vs saved",
        fontsize=10,
    )
    ax.legend(frameon=False, fontsize=7.5, loc="lower right", bbox_to_anchor=(1.0, 0.12))
    _clean(ax)


def plot_memory_vs_T(
    rows: Sequence[Dict[str, Any]],
    paper_ratios: Optional[Sequence[tuple]] = None,
    title: str = "",
    recorded: Optional[Dict[str, Any]] = None,
):
    """Paper Fig. 3 setup: bytes saved for backward and peak memory against T.

    Parameters:
        rows: of :func:`stllr.studies.memory_and_compute.memory_vs_T`.
        paper_ratios: Table 3's published MB ratios as (T, ratio, label).
        title: the figure's title.
        recorded: a recorded run (:func:`stllr.studies.memory_and_compute.read_recorded_fig3`).

    Panels: (a) bytes saved for backward by one training sequence vs T, measured (markers) and
    Eq. 18-19 (dashed), and the GPU allocator peak (dotted, when the rows have it); with
    ``recorded``, (b) the recorded run's peak memory increase beside its saved bytes; last, the
    BPTT / S-TLLR ratio vs T against T/2: saved bytes, the peaks (recorded or measured) and
    ``paper_ratios``."""
    T = np.array([r["T"] for r in rows])
    n = 3 if recorded is not None else 2
    fig, axes = plt.subplots(1, n, figsize=(5.6 * n + 0.3, 4.3))
    _saved_panel(axes[0], rows)
    if recorded is not None:
        _recorded_panel(axes[1], recorded)
    ax = axes[-1]
    tt = np.linspace(T.min(), T.max(), 100)
    ax.plot(tt, tt / 2, "--", color="k", lw=1.2, label="Eq. 22: T / 2")
    ax.plot(
        T,
        [r["memory_ratio"] for r in rows],
        "o-",
        color=PAPER_STYLE["stllr"],
        lw=2,
        ms=5,
        label="bytes saved for backward (this run)",
    )
    if "bptt_peak_bytes" in rows[0]:
        ax.plot(
            T,
            [r["bptt_peak_bytes"] / max(r["stllr_peak_bytes"], 1) for r in rows],
            ":s",
            color=PAPER_STYLE["dfa"],
            ms=4,
            label="GPU peak increase (this run)",
        )
    if recorded is not None:
        rec = [r for r in recorded["rows"] if r["peak_ratio"] is not None]
        ax.plot(
            [r["T"] for r in rec],
            [r["peak_ratio"] for r in rec],
            "s-",
            color=PAPER_STYLE["noncausal"],
            lw=2,
            ms=5,
            label=f"peak memory increase (recorded {_recorded_name(recorded)} run)",
        )
    if paper_ratios:
        for i, (t, ratio, lab) in enumerate(paper_ratios):
            ax.plot(
                [t],
                [ratio],
                "D",
                color=PAPER_STYLE["paper"],
                ms=7,
                label="paper Table 3 (MB ratio)" if i == 0 else None,
            )
            ax.annotate(
                lab,
                (t, ratio),
                textcoords="offset points",
                xytext=(8, -3),
                fontsize=7,
                color=PAPER_STYLE["paper"],
                va="top",
            )
    _log_T_axis(
        ax, np.unique(np.concatenate([T, [p[0] for p in (paper_ratios or [])]]).astype(int))
    )
    ax.set_yscale("log")
    ax.set_ylabel("BPTT / S-TLLR (log scale)")
    ax.set_title("memory saving: saved bytes vs peak", fontsize=10)
    ax.legend(frameon=False, fontsize=7.5)
    _clean(ax)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


#: The parts of a memory breakdown (stllr.studies.memory_and_compute.BREAKDOWN_PARTS): label, colour.
BREAKDOWN_STYLE = {
    "weights": ("weights", "#4d4d4d"),
    "gradients": ("gradients", "#8c8c8c"),
    "optimizer": ("optimizer state (Adam: 2 moments)", "#c7c7c7"),
    "weight_copies": ("standardised weight copies", "#e5c494"),
    "neuron_states": ("neuron states (traces, membranes)", PAPER_STYLE["dfa"]),
    "saved_activations": ("saved activations", PAPER_STYLE["bptt"]),
}


def plot_memory_breakdown(panels: Sequence[tuple], title: str = ""):
    """The memory of one training sequence by part, as shares of its total (stacked to 100 %),
    S-TLLR and BPTT side by side.

    Parameters:
        panels: (panel title, groups); each group is (label, S-TLLR breakdown, BPTT breakdown)
            with the parts of :data:`BREAKDOWN_STYLE` in bytes and ``total``
            (:func:`stllr.studies.memory_and_compute.memory_breakdown` or ``breakdown_at_batch``).
        title: the figure's title.

    Each bar carries its total in MB; each group the BPTT / S-TLLR ratio of the totals."""
    widths = [max(len(g), 1) for _, g in panels]
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(sum(1.45 * w + 0.9 for w in widths) + 1.0, 4.6),
        gridspec_kw={"width_ratios": widths},
        squeeze=False,
    )
    axes = axes[0]
    for ax, (ptitle, groups) in zip(axes, panels):
        ticks, labels = [], []
        for gi, (glabel, s_bd, b_bd) in enumerate(groups):
            for k, (name, bd) in enumerate((("S-TLLR", s_bd), ("BPTT", b_bd))):
                x = 2.6 * gi + 1.05 * k
                bottom = 0.0
                for part, (_, color) in BREAKDOWN_STYLE.items():
                    share = 100.0 * bd[part] / bd["total"]
                    ax.bar(
                        x, share, bottom=bottom, width=0.95, color=color, edgecolor="white", lw=0.4
                    )
                    bottom += share
                ax.text(
                    x,
                    101,
                    f"{bd['total'] / 1e6:,.0f}\nMB"
                    if bd["total"] >= 1e7
                    else f"{bd['total'] / 1e6:,.1f}\nMB",
                    ha="center",
                    va="bottom",
                    fontsize=6.8,
                )
                ticks.append(x)
                labels.append(name)
            ax.annotate(
                f"{glabel}\nBPTT / S-TLLR x{b_bd['total'] / s_bd['total']:.2f}",
                xy=(2.6 * gi + 0.525, 0),
                xycoords=("data", "axes fraction"),
                xytext=(0, -17),
                textcoords="offset points",
                ha="center",
                va="top",
                fontsize=7.5,
            )
        ax.set_xticks(ticks, labels, fontsize=6.5)
        ax.set_ylim(0, 118)
        ax.set_yticks([0, 25, 50, 75, 100])
        ax.set_title(ptitle, fontsize=9.5)
        _clean(ax)
    axes[0].set_ylabel("share of the memory held (%)")
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=c) for _, c in reversed(list(BREAKDOWN_STYLE.values()))
    ]
    fig.legend(
        handles,
        [lab for lab, _ in reversed(list(BREAKDOWN_STYLE.values()))],
        frameon=False,
        fontsize=7.5,
        loc="center left",
        bbox_to_anchor=(1.0, 0.55),
    )
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.subplots_adjust(bottom=0.22)
    return fig


def plot_analytic_breakdown(r: Dict[str, Any]):
    """The calculator's figure: the analytic memory of S-TLLR and BPTT by part (weights,
    gradients, optimizer, Eq. 18-19 activations) as stacked horizontal bars in MB.

    Parameters:
        r: a result of :func:`stllr.studies.memory_and_compute.analytic_breakdown`."""
    parts = {
        "weights": BREAKDOWN_STYLE["weights"],
        "gradients": BREAKDOWN_STYLE["gradients"],
        "optimizer": (f"optimizer ({r['optimizer_moments']} x weights)", "#c7c7c7"),
        "activations": ("learning memory (Eq. 18 / 19)", PAPER_STYLE["bptt"]),
    }
    fig, ax = plt.subplots(figsize=(8.5, 2.5))
    for y, (name, key) in enumerate((("BPTT", "bptt"), ("S-TLLR", "stllr"))):
        left = 0.0
        for part, (lab, color) in parts.items():
            v = r[key]["bytes"][part] / 1e6
            ax.barh(y, v, left=left, color=color, height=0.6, label=lab if y == 0 else None)
            left += v
        ax.text(left, y, f" {left:,.1f} MB", va="center", fontsize=8)
    ax.set_yticks([0, 1], ["BPTT", "S-TLLR"])
    ax.set_xlim(0, max(r["bptt"]["bytes"]["total"], r["stllr"]["bytes"]["total"]) / 1e6 * 1.25)
    ax.set_xlabel("MB (1e6 bytes)")
    ax.set_title(
        f"T = {r['T']}, window {r['window']}, batch {r['batch_size']}: memory BPTT / S-TLLR "
        f"x{r['total_ratio']:.2f} in total (Eq. 22: x{r['memory_ratio']:g}), "
        f"MACs x{r['mac_ratio']:.3f} (Eq. 23)",
        fontsize=9,
    )
    ax.legend(frameon=False, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=4)
    _clean(ax)
    fig.tight_layout()
    return fig


def plot_macs_vs_window(
    result: Dict[str, Any], paper_points: Optional[Sequence[Dict[str, Any]]] = None
):
    """(a) MACs of one training sequence vs the learning window d = T - T_l: Eq. 20-21 (lines) and
    MacCounter (markers: the terms the paper counts, and everything executed); (b) the BPTT / S-TLLR
    ratio vs d / T: Eq. 23 (2T / 3d; 2T / 2d with alpha_post = 0), ours measured, and Table 3's
    published ratios (grey)."""
    rows = result["rows"]
    T, bs = result["T"], result["batch_size"]
    d = np.array([r["window"] for r in rows])
    b = result["bptt"]
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 5.4))
    ax = axes[0]
    sc = 1e6 * bs  # MACs per sample, in millions
    cb, cs = method_color("bptt"), method_color("stllr")
    ax.axhline(b["analytic"] / sc, color=cb, ls="--", lw=1.3, label="BPTT Eq. 20: 2 T S")
    ax.axhline(
        b["paper_terms"] / sc,
        color=cb,
        lw=2,
        alpha=0.6,
        label="BPTT measured (forward + weight grad)",
    )
    ax.axhline(b["macs"] / sc, color=cb, lw=1, ls=":", label="BPTT measured, all (+ input grads)")
    ax.plot(
        d,
        [r["stllr_analytic"] / sc for r in rows],
        "--",
        color=cs,
        lw=1.3,
        label="S-TLLR Eq. 21: 3 d S",
    )
    ax.plot(
        d,
        [r["stllr_paper_terms"] / sc for r in rows],
        "o",
        color=cs,
        ms=6,
        label="S-TLLR measured (window fwd + weight grad)",
    )
    ax.plot(
        d,
        [r["stllr_macs"] / sc for r in rows],
        "^:",
        color=cs,
        ms=5,
        lw=1,
        label="S-TLLR measured, all",
    )
    ax.plot(
        d,
        [r["stllr_analytic_a0"] / sc for r in rows],
        "--",
        color=PAPER_STYLE["noncausal"],
        lw=1.3,
        label="alpha_post = 0: Eq. 21 with 2 d S",
    )
    ax.plot(
        d,
        [r["stllr_paper_terms_a0"] / sc for r in rows],
        "o",
        color=PAPER_STYLE["noncausal"],
        ms=4,
        label="alpha_post = 0 measured",
    )
    ax.set_xlabel(f"learning window d = T - T_l (T = {T})")
    ax.set_ylabel("MACs per sequence and sample (x1e6)")
    ax.set_title(f"{result['arch']}: MACs vs learning window")
    ax.legend(frameon=False, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    _clean(ax)
    ax = axes[1]
    fr = d / T
    f = np.geomspace(min(fr.min(), 0.01), 1.0, 200)
    ax.plot(f, 2 / (3 * f), "--", color="k", lw=1.2, label="Eq. 23: 2T / (3d)")
    ax.plot(f, 1 / f, ":", color=PAPER_STYLE["noncausal"], lw=1.4, label="alpha_post = 0: T / d")
    ax.plot(
        fr,
        [r["mac_ratio_paper_terms"] for r in rows],
        "o",
        color=cs,
        ms=6,
        label=f"{result['arch']} measured (the paper's terms)",
    )
    ax.plot(
        fr,
        [r["mac_ratio"] for r in rows],
        "^",
        color=cs,
        ms=6,
        mfc="none",
        label="measured, all MACs (+ pre-window forward, input grads)",
    )
    if paper_points:
        groups = {}
        for p in paper_points:
            off = abs(p["ratio"] - p["formula"]) > 0.05
            groups.setdefault((p["T"], p["window"], p["alpha_post"], off), []).append(p)
        lines = ["paper Table 3 (grey diamonds):"]
        for i, ((Tp, wp, ap, off), ps) in enumerate(
            sorted(groups.items(), key=lambda kv: kv[0][1] / kv[0][0]), 1
        ):
            fp = wp / Tp
            ratio = float(np.mean([q["ratio"] for q in ps]))
            names = " / ".join(dict.fromkeys(q["dataset"] for q in ps))
            lines.append(
                f"{i}  {names}: T={Tp}, d={wp}"
                + (", a_post=0" if ap == 0 else "")
                + f", {ratio:.2f}x"
                + ("  (off formula)" if off else "")
            )
            ax.plot(
                [fp],
                [ratio],
                "D",
                color=PAPER_STYLE["paper"],
                ms=7,
                mfc="white" if off else PAPER_STYLE["paper"],
                mew=1.5,
                label="paper Table 3" if i == 1 else None,
            )
            end = (
                fp > 0.95
            )  # at d = T: number to the right of the marker, out of the measured points' way
            ax.annotate(
                str(i),
                (fp, ratio),
                textcoords="offset points",
                xytext=(7, -4) if end else (-7, 2),
                ha="left" if end else "right",
                va="bottom",
                fontsize=7.5,
                color="#444444",
                fontweight="bold",
            )
        ax.text(
            0.02,
            0.02,
            "\n".join(lines),
            transform=ax.transAxes,
            fontsize=6.8,
            va="bottom",
            ha="left",
            color="#444444",
        )
        ax.set_ylim(bottom=0.12)
    ax.axhline(1, color="k", lw=0.5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning window fraction d / T (log scale)")
    ax.set_ylabel("BPTT / S-TLLR MACs (log scale)")
    ax.set_title("MAC saving")
    ax.legend(frameon=False, fontsize=7, loc="upper right")
    _clean(ax)
    fig.tight_layout()
    return fig


_SHORT_NAMES = {
    "DVS CIFAR10": "CIFAR10-DVS",
    "DVS Gesture": "DVS Gesture",
    "N-CALTECH101": "N-Caltech101",
    "SHD": "SHD",
}


def _t3_label(r) -> str:
    name = _SHORT_NAMES.get(r["dataset"], r["dataset"])
    if r["window"] is None:
        return f"{name}\nBPTT, T={r['T']}"
    lab = f"{name}\nT={r['T']}, d={r['window']}"
    if r["alpha_post"] == 0:
        lab += "\na_post=0"
    return lab


def _dedupe_t3(rows):
    """Table 3's SHD BP and DFA rows have the same costs: keep one (labelled BP/DFA)."""
    out, seen = [], set()
    for r in rows:
        key = (r["dataset"], r["T"], r["window"], r["alpha_post"])
        if key in seen:
            continue
        seen.add(key)
        out.append(r)
    return out


def plot_table3(rows: Sequence[Dict[str, Any]]):
    """Table 3 recomputed (:func:`stllr.studies.memory_and_compute.table3_recomputed`): memory and MAC ratios, ours
    (Eq. 22-23 on the registered models) beside the published ones (top), and the absolute MACs of
    each row, ours at the stated and at half the input resolution, beside the published (bottom)."""
    from matplotlib.ticker import FuncFormatter

    rows = _dedupe_t3(rows)
    srows = [r for r in rows if r["window"] is not None]
    x = np.arange(len(srows))
    fig = plt.figure(figsize=(13, 8.2))
    gs = fig.add_gridspec(2, 2, height_ratios=[1, 1.05])
    axes = [fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1]), fig.add_subplot(gs[1, :])]
    for ax, key, title in (
        (axes[0], "mem_ratio", "memory saving BPTT / S-TLLR (Eq. 22: T / 2)"),
        (axes[1], "mac_ratio", "MAC saving BPTT / S-TLLR (Eq. 23: 2T / 3d)"),
    ):
        ours = [r[key] for r in srows]
        paper = [r[f"paper_{key}"] for r in srows]
        ax.bar(
            x - 0.2,
            ours,
            width=0.4,
            color=PAPER_STYLE["stllr"],
            label="ours (formula on the model's shapes)",
        )
        ax.bar(x + 0.2, paper, width=0.4, color=PAPER_STYLE["paper"], label="paper Table 3")
        for xi, o, p in zip(x, ours, paper):
            ax.text(xi - 0.2, o, f"{o:.2f}", ha="center", va="bottom", fontsize=6.8)
            ax.text(xi + 0.2, p, f"{p:.2f}", ha="center", va="bottom", fontsize=6.8)
        ax.set_xticks(x, [_t3_label(r) for r in srows], fontsize=7)
        ax.set_title(title, fontsize=10)
        if key == "mem_ratio":
            ax.set_yscale("log")
            ax.set_ylim(1, 150)
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        else:
            ax.axhline(1, color="k", lw=0.6)
            ax.set_ylim(0, max(ours + paper) * 1.2)
        ax.legend(frameon=False, fontsize=7.5, loc="upper left")
        _clean(ax)
    ax = axes[2]
    arows = [r for r in rows if r.get("macs_e9") is not None or r["paper_mac_e9"] is not None]
    x = np.arange(len(arows))
    ax.bar(
        x - 0.27,
        [r.get("macs_e9") or np.nan for r in arows],
        width=0.27,
        color=PAPER_STYLE["stllr"],
        label="ours, stated input (CIFAR10-DVS 48x48, Gesture 32x32)",
    )
    ax.bar(
        x,
        [r.get("macs_e9_half") or np.nan for r in arows],
        width=0.27,
        color=PAPER_STYLE["stllr"],
        alpha=0.45,
        label="ours, half resolution (24x24, 16x16)",
    )
    ax.bar(
        x + 0.27,
        [r["paper_mac_e9"] for r in arows],
        width=0.27,
        color=PAPER_STYLE["paper"],
        label="paper Table 3",
    )
    for xi, r in zip(x, arows):
        if r.get("macs_e9") is None:
            ax.text(
                xi - 0.14,
                r["paper_mac_e9"] * 0.7,
                "no registered\nmodel",
                ha="center",
                va="top",
                fontsize=6.5,
                color="#555555",
            )
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xticks(x, [_t3_label(r) for r in arows], fontsize=7)
    ax.set_ylabel("MACs per sequence, batch 1 (x1e9)")
    ax.set_title(
        "absolute MACs (Eq. 20-21): the VGG rows match Table 3 at half the stated resolution; "
        "SHD does not follow the formula",
        fontsize=10,
    )
    ax.legend(frameon=False, fontsize=7.5, loc="upper right")
    _clean(ax)
    fig.tight_layout()
    return fig


def plot_time_per_step(rows: Sequence[Dict[str, Any]], title: str = "training time per time step"):
    """Horizontal bars: ms per time step of one training sequence (best of a few; wall clock)."""
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    y = np.arange(len(rows))[::-1]
    vals = [r["ms_per_step"] for r in rows]
    ax.barh(y, vals, color=[method_color(r["mode"]) for r in rows], height=0.6)
    for yi, v in zip(y, vals):
        ax.text(v, yi, f" {v:.2f} ms", va="center", fontsize=8)
    ax.set_yticks(
        y,
        [
            f"{r['label']} ({'BPTT' if r['mode'] == 'bptt' else 'S-TLLR, window ' + str(r['window'])}"
            f"{', deferred' if r.get('chunk') else ''})"
            for r in rows
        ],
        fontsize=8,
    )
    ax.set_xlabel("ms per time step (batch as labelled, wall clock)")
    ax.set_xlim(0, max(vals) * 1.25)
    ax.set_title(title)
    _clean(ax)
    fig.tight_layout()
    return fig
