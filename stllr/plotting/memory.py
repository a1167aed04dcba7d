"""Plots of memory and compute (notebook 05): memory against T, MACs against the learning window,
the paper's Table 3 recomputed, time per step. Published numbers are drawn in grey."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np

from stllr.plotting.style import PAPER_STYLE, _clean, method_color, plt

__all__ = ["plot_memory_vs_T", "plot_macs_vs_window", "plot_table3", "plot_time_per_step"]


def _log_T_axis(ax, ticks):
    ax.set_xscale("log")
    ax.set_xticks(list(ticks), [str(int(t)) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("time steps T (log scale)")


def plot_memory_vs_T(
    rows: Sequence[Dict[str, Any]], paper_ratios: Optional[Sequence[tuple]] = None, title: str = ""
):
    """Paper Fig. 3 setup: (a) memory of one training sequence vs T, measured saved bytes (markers),
    Eq. 18-19 (dashed) and the GPU allocator peak (dotted, when measured); (b) BPTT / S-TLLR ratio
    vs T against T/2, with Table 3's published ratios (``paper_ratios``: (T, ratio, label))."""
    T = np.array([r["T"] for r in rows])
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.0))
    ax = axes[0]
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
            label=f"{lab}: saved for backward (measured)",
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
                label=f"{lab}: GPU peak (max_memory_allocated)",
            )
    _log_T_axis(ax, T)
    ax.set_yscale("log")
    ax.set_ylabel("MB (1e6 bytes), log scale")
    ax.set_title(f"memory of one training sequence (batch {rows[0]['batch_size']})")
    ax.legend(frameon=False, fontsize=7.5, loc="lower right", bbox_to_anchor=(1.0, 0.2))
    _clean(ax)
    ax = axes[1]
    tt = np.linspace(T.min(), T.max(), 100)
    ax.plot(tt, tt / 2, "--", color="k", lw=1.2, label="Eq. 22: T / 2")
    ax.plot(
        T,
        [r["memory_ratio"] for r in rows],
        "o-",
        color=PAPER_STYLE["stllr"],
        lw=2,
        ms=5,
        label="measured (saved bytes)",
    )
    if "bptt_peak_bytes" in rows[0]:
        ax.plot(
            T,
            [r["bptt_peak_bytes"] / max(r["stllr_peak_bytes"], 1) for r in rows],
            ":s",
            color=PAPER_STYLE["dfa"],
            ms=4,
            label="GPU peak ratio",
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
    ax.set_ylabel("BPTT / S-TLLR memory (log scale)")
    ax.set_title("memory saving")
    ax.legend(frameon=False, fontsize=7.5)
    _clean(ax)
    if title:
        fig.suptitle(title, fontsize=11)
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
            f"{r['label']} ({'BPTT' if r['mode'] == 'bptt' else 'S-TLLR, window ' + str(r['window'])})"
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
