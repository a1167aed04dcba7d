"""Plots of training results, memory and compute for the notebooks (00 quickstart, 05 memory and
compute). Each function takes what :mod:`stllr.experiments` returns and returns the figure it
drew; the paper's published numbers are drawn in grey and labelled "paper"."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np

from .plot import PAPER_STYLE, plt

__all__ = ["plot_training_comparison", "plot_memory_vs_T", "plot_macs_vs_window", "plot_table3",
           "plot_time_per_step", "plot_sample_raster", "method_color", "plot_trial_boxes", "plot_learning_curves"]


def method_color(key_or_mode: str) -> str:
    """Colour of a method: S-TLLR blue, BPTT red, DFA green (stllr.plot.PAPER_STYLE)."""
    k = str(key_or_mode).lower()
    if "dfa" in k:
        return PAPER_STYLE["dfa"]
    if "bptt" in k:
        return PAPER_STYLE["bptt"]
    return PAPER_STYLE["stllr"]


def _clean(ax):
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)


def plot_training_comparison(runs: Dict[str, Any], memory: Optional[Dict[str, Dict[str, Any]]] = None,
                             paper: Optional[Dict[str, Sequence[float]]] = None, paper_on_curves: bool = False,
                             paper_memory_ratio: Optional[float] = None, title: str = ""):
    """Three panels: accuracy per epoch (test solid, train dashed), training time per epoch, and
    bytes saved for backward per training sequence (measured and Eq. 18-19).

    ``runs``: ``{key: RunResult}``; ``memory``: :func:`stllr.experiments.training_memory`;
    ``paper``: ``{key: (mean, std)}`` published test accuracies, drawn on the accuracy panel when
    ``paper_on_curves`` (only meaningful on the paper's own task); ``paper_memory_ratio``: the
    published BPTT / S-TLLR memory ratio, printed on the memory panel.
    """
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.9), gridspec_kw={"width_ratios": [1.6, 1, 1.15]})
    ax = axes[0]
    for key, run in runs.items():
        c = method_color(key if run.method.mode != "bptt" else "bptt")
        ep = [h["epoch"] for h in run.history]
        ax.plot(ep, [h["test_acc"] for h in run.history], "-o", color=c, ms=4 if len(ep) <= 31 else 0, lw=2,
                label=f"{run.method.label} test")
        ep_tr = [h["epoch"] for h in run.history if h["train_acc"] is not None]
        ax.plot(ep_tr, run.series("train_acc"), "--", color=c, lw=1.3, alpha=0.8, label=f"{run.method.label} train")
        if paper_on_curves and paper and key in paper:
            mean, std = paper[key][:2]
            ax.axhspan(mean - std, mean + std, color=PAPER_STYLE["paper"], alpha=0.15, lw=0)
            ax.axhline(mean, color=c, ls=":", lw=1.5, label=f"paper {run.method.label} {mean:.1f}%")
    n_classes = None
    first = next(iter(runs.values()))
    if hasattr(first.model, "num_classes"):
        n_classes = first.model.num_classes
    if n_classes:
        ax.axhline(100.0 / n_classes, color="k", lw=0.7, ls=":", alpha=0.6)
        ax.text(0.45, 100.0 / n_classes + 1.5, "chance", fontsize=7, alpha=0.7, ha="center",
                transform=ax.get_yaxis_transform())
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("accuracy (logits summed over T)")
    ax.legend(frameon=False, fontsize=7.5, loc="lower right")
    _clean(ax)

    ax = axes[1]
    labels, means, lo, hi, colors = [], [], [], [], []
    for key, run in runs.items():
        t = np.array(run.series("train_time"), dtype=float)
        labels.append(run.method.label)
        means.append(t.mean() if t.size else 0.0)
        lo.append(t.mean() - t.min() if t.size else 0.0)
        hi.append(t.max() - t.mean() if t.size else 0.0)
        colors.append(method_color(run.method.mode))
    x = np.arange(len(labels))
    ax.bar(x, means, color=colors, width=0.6, yerr=[lo, hi], capsize=4, error_kw={"lw": 1})
    for xi, m in zip(x, means):
        ax.text(xi + 0.05, m / 2, f"{m:.2f} s", ha="left", va="center", fontsize=8, color="white", fontweight="bold")
    ax.set_xticks(x, labels)
    ax.set_ylabel("training time per epoch (s)")
    ax.set_title("time per epoch (mean, min-max)")
    _clean(ax)

    ax = axes[2]
    if memory:
        keys = [k for k in runs if k in memory]
        x = np.arange(len(keys))
        meas = [memory[k]["saved_bytes_per_sample"] / 1e3 for k in keys]
        ana = [memory[k]["analytic_bytes_per_sample"] / 1e3 for k in keys]
        cols = [method_color(memory[k]["mode"]) for k in keys]
        ax.bar(x - 0.18, meas, width=0.36, color=cols, label="measured")
        ax.bar(x + 0.18, ana, width=0.36, color="white", edgecolor=cols, hatch="///", label="Eq. 18-19")
        for xi, m, a in zip(x, meas, ana):
            ax.text(xi - 0.18, m, f"{m:.1f}", ha="center", va="bottom", fontsize=7.5)
            ax.text(xi + 0.18, a, f"{a:.1f}", ha="center", va="bottom", fontsize=7.5)
        ax.set_xticks(x, [memory[k]["label"] for k in keys])
        ax.set_ylabel("kB per training sequence (one sample)")
        T = memory[keys[0]]["T"]
        ax.set_title(f"memory for the backward pass (T = {T})")
        ratio = memory.get("ratio")
        if ratio:
            text = f"BPTT / S-TLLR: {ratio['memory_ratio']:.1f}x measured, {ratio['memory_ratio_analytic']:.0f}x = T/2"
            if paper_memory_ratio:
                text += f"\npaper Table 3 (SHD, T = 100): {paper_memory_ratio:.1f}x"
            ax.text(0.02, 0.98, text, transform=ax.transAxes, fontsize=7.5, va="top")
        ax.set_ylim(0, max(meas + ana) * 1.45)
        ax.legend(frameon=False, fontsize=7.5, loc="center left", bbox_to_anchor=(0.0, 0.6))
    else:
        ax.axis("off")
    _clean(ax)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def _log_T_axis(ax, ticks):
    ax.set_xscale("log")
    ax.set_xticks(list(ticks), [str(int(t)) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("time steps T (log scale)")


def plot_memory_vs_T(rows: Sequence[Dict[str, Any]], paper_ratios: Optional[Sequence[tuple]] = None, title: str = ""):
    """Paper Fig. 3 setup: (a) memory of one training sequence vs T, measured saved bytes (markers),
    Eq. 18-19 (dashed) and the GPU allocator peak (dotted, when measured); (b) BPTT / S-TLLR ratio
    vs T against T/2, with Table 3's published ratios (``paper_ratios``: (T, ratio, label))."""
    T = np.array([r["T"] for r in rows])
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.0))
    ax = axes[0]
    for name in ("bptt", "stllr"):
        c = method_color(name)
        lab = "BPTT" if name == "bptt" else "S-TLLR"
        ax.plot(T, [r[f"{name}_saved_bytes"] / 1e6 for r in rows], "o-", color=c, lw=2, ms=5,
                label=f"{lab}: saved for backward (measured)")
        ax.plot(T, [r[f"{name}_analytic"] / 1e6 for r in rows], "--", color=c, lw=1.3,
                label=f"{lab}: Eq. {18 if name == 'bptt' else 19} (analytic)")
        if f"{name}_peak_bytes" in rows[0]:
            ax.plot(T, [r[f"{name}_peak_bytes"] / 1e6 for r in rows], ":s", color=c, ms=4, lw=1.3,
                    label=f"{lab}: GPU peak (max_memory_allocated)")
    _log_T_axis(ax, T)
    ax.set_yscale("log")
    ax.set_ylabel("MB (1e6 bytes), log scale")
    ax.set_title(f"memory of one training sequence (batch {rows[0]['batch_size']})")
    ax.legend(frameon=False, fontsize=7.5, loc="lower right", bbox_to_anchor=(1.0, 0.2))
    _clean(ax)
    ax = axes[1]
    tt = np.linspace(T.min(), T.max(), 100)
    ax.plot(tt, tt / 2, "--", color="k", lw=1.2, label="Eq. 22: T / 2")
    ax.plot(T, [r["memory_ratio"] for r in rows], "o-", color=PAPER_STYLE["stllr"], lw=2, ms=5,
            label="measured (saved bytes)")
    if "bptt_peak_bytes" in rows[0]:
        ax.plot(T, [r["bptt_peak_bytes"] / max(r["stllr_peak_bytes"], 1) for r in rows], ":s",
                color=PAPER_STYLE["dfa"], ms=4, label="GPU peak ratio")
    if paper_ratios:
        for i, (t, ratio, lab) in enumerate(paper_ratios):
            ax.plot([t], [ratio], "D", color=PAPER_STYLE["paper"], ms=7, label="paper Table 3 (MB ratio)" if i == 0 else None)
            ax.annotate(lab, (t, ratio), textcoords="offset points", xytext=(8, -3), fontsize=7,
                        color=PAPER_STYLE["paper"], va="top")
    _log_T_axis(ax, np.unique(np.concatenate([T, [p[0] for p in (paper_ratios or [])]]).astype(int)))
    ax.set_yscale("log")
    ax.set_ylabel("BPTT / S-TLLR memory (log scale)")
    ax.set_title("memory saving")
    ax.legend(frameon=False, fontsize=7.5)
    _clean(ax)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def plot_macs_vs_window(result: Dict[str, Any], paper_points: Optional[Sequence[Dict[str, Any]]] = None):
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
    ax.axhline(b["paper_terms"] / sc, color=cb, lw=2, alpha=0.6, label="BPTT measured (forward + weight grad)")
    ax.axhline(b["macs"] / sc, color=cb, lw=1, ls=":", label="BPTT measured, all (+ input grads)")
    ax.plot(d, [r["stllr_analytic"] / sc for r in rows], "--", color=cs, lw=1.3, label="S-TLLR Eq. 21: 3 d S")
    ax.plot(d, [r["stllr_paper_terms"] / sc for r in rows], "o", color=cs, ms=6, label="S-TLLR measured (window fwd + weight grad)")
    ax.plot(d, [r["stllr_macs"] / sc for r in rows], "^:", color=cs, ms=5, lw=1, label="S-TLLR measured, all")
    ax.plot(d, [r["stllr_analytic_a0"] / sc for r in rows], "--", color=PAPER_STYLE["noncausal"], lw=1.3,
            label="alpha_post = 0: Eq. 21 with 2 d S")
    ax.plot(d, [r["stllr_paper_terms_a0"] / sc for r in rows], "o", color=PAPER_STYLE["noncausal"], ms=4,
            label="alpha_post = 0 measured")
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
    ax.plot(fr, [r["mac_ratio_paper_terms"] for r in rows], "o", color=cs, ms=6,
            label=f"{result['arch']} measured (the paper's terms)")
    ax.plot(fr, [r["mac_ratio"] for r in rows], "^", color=cs, ms=6, mfc="none",
            label="measured, all MACs (+ pre-window forward, input grads)")
    if paper_points:
        groups = {}
        for p in paper_points:
            off = abs(p["ratio"] - p["formula"]) > 0.05
            groups.setdefault((p["T"], p["window"], p["alpha_post"], off), []).append(p)
        lines = ["paper Table 3 (grey diamonds):"]
        for i, ((Tp, wp, ap, off), ps) in enumerate(sorted(groups.items(), key=lambda kv: kv[0][1] / kv[0][0]), 1):
            fp = wp / Tp
            ratio = float(np.mean([q["ratio"] for q in ps]))
            names = " / ".join(dict.fromkeys(q["dataset"] for q in ps))
            lines.append(f"{i}  {names}: T={Tp}, d={wp}" + (", a_post=0" if ap == 0 else "")
                         + f", {ratio:.2f}x" + ("  (off formula)" if off else ""))
            ax.plot([fp], [ratio], "D", color=PAPER_STYLE["paper"], ms=7, mfc="white" if off else PAPER_STYLE["paper"],
                    mew=1.5, label="paper Table 3" if i == 1 else None)
            end = fp > 0.95  # at d = T: number to the right of the marker, out of the measured points' way
            ax.annotate(str(i), (fp, ratio), textcoords="offset points", xytext=(7, -4) if end else (-7, 2),
                        ha="left" if end else "right", va="bottom", fontsize=7.5, color="#444444", fontweight="bold")
        ax.text(0.02, 0.02, "\n".join(lines), transform=ax.transAxes, fontsize=6.8, va="bottom", ha="left",
                color="#444444")
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


_SHORT_NAMES = {"DVS CIFAR10": "CIFAR10-DVS", "DVS Gesture": "DVS Gesture", "N-CALTECH101": "N-Caltech101", "SHD": "SHD"}


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
    """Table 3 recomputed (:func:`stllr.experiments.table3_recomputed`): memory and MAC ratios, ours
    (Eq. 22-23 on the registered models) beside the published ones (top), and the absolute MACs of
    each row, ours at the stated and at half the input resolution, beside the published (bottom)."""
    from matplotlib.ticker import FuncFormatter

    rows = _dedupe_t3(rows)
    srows = [r for r in rows if r["window"] is not None]
    x = np.arange(len(srows))
    fig = plt.figure(figsize=(13, 8.2))
    gs = fig.add_gridspec(2, 2, height_ratios=[1, 1.05])
    axes = [fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1]), fig.add_subplot(gs[1, :])]
    for ax, key, title in ((axes[0], "mem_ratio", "memory saving BPTT / S-TLLR (Eq. 22: T / 2)"),
                           (axes[1], "mac_ratio", "MAC saving BPTT / S-TLLR (Eq. 23: 2T / 3d)")):
        ours = [r[key] for r in srows]
        paper = [r[f"paper_{key}"] for r in srows]
        ax.bar(x - 0.2, ours, width=0.4, color=PAPER_STYLE["stllr"], label="ours (formula on the model's shapes)")
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
    ax.bar(x - 0.27, [r.get("macs_e9") or np.nan for r in arows], width=0.27, color=PAPER_STYLE["stllr"],
           label="ours, stated input (CIFAR10-DVS 48x48, Gesture 32x32)")
    ax.bar(x, [r.get("macs_e9_half") or np.nan for r in arows], width=0.27, color=PAPER_STYLE["stllr"], alpha=0.45,
           label="ours, half resolution (24x24, 16x16)")
    ax.bar(x + 0.27, [r["paper_mac_e9"] for r in arows], width=0.27, color=PAPER_STYLE["paper"], label="paper Table 3")
    for xi, r in zip(x, arows):
        if r.get("macs_e9") is None:
            ax.text(xi - 0.14, r["paper_mac_e9"] * 0.7, "no registered\nmodel", ha="center", va="top", fontsize=6.5,
                    color="#555555")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xticks(x, [_t3_label(r) for r in arows], fontsize=7)
    ax.set_ylabel("MACs per sequence, batch 1 (x1e9)")
    ax.set_title("absolute MACs (Eq. 20-21): the VGG rows match Table 3 at half the stated resolution; "
                 "SHD does not follow the formula", fontsize=10)
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
    ax.set_yticks(y, [f"{r['label']} ({'BPTT' if r['mode'] == 'bptt' else 'S-TLLR, window ' + str(r['window'])})"
                      for r in rows], fontsize=8)
    ax.set_xlabel("ms per time step (batch as labelled, wall clock)")
    ax.set_xlim(0, max(vals) * 1.25)
    ax.set_title(title)
    _clean(ax)
    fig.tight_layout()
    return fig


def plot_sample_raster(samples: Sequence[tuple], class_names: Optional[Sequence[str]] = None, max_units: int = 100,
                       title: str = "input spikes of one sample per class"):
    """Spike rasters of a few samples ``[(frames [T, N] tensor, label), ...]`` side by side (time on
    x, input unit on y), for recurrent-input tasks (randman, SHD)."""
    n = len(samples)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n + 0.6, 2.8), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, (frames, label) in zip(axes, samples):
        f = np.asarray(frames)[:, :max_units]
        t, u = np.nonzero(f)
        ax.scatter(t, u, s=7, color="k", marker="o", linewidths=0)
        name = class_names[label] if class_names is not None else label
        ax.set_title(f"class {name}", fontsize=9)
        ax.set_xlabel("time step")
        ax.set_xlim(-0.5, f.shape[0] - 0.5)
        _clean(ax)
    axes[0].set_ylabel("input unit")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------- sweeps (notebooks 03, 04)
def plot_trial_boxes(ax, sweep, keys: Optional[Sequence[str]] = None, labels: Optional[Sequence[str]] = None,
                     metric: str = "final", paper: Optional[Dict[str, Any]] = None, colors=None,
                     ylabel: str = "test accuracy (%)", paper_label: str = "paper"):
    """Box plot of the per-trial test accuracy of each ``key`` of a :class:`stllr.sweeps.Sweep`,
    every trial drawn as a dot. ``paper``: ``{key: (mean, std)}`` (or a mean) drawn beside each
    box as a grey diamond with an error bar, labelled ``paper_label``. Returns ``ax``."""
    keys = list(keys or sweep.keys())
    labels = list(labels or [sweep.labels.get(k, k) for k in keys])
    data = [sweep.accuracies(k, metric) for k in keys]
    pos = np.arange(len(keys), dtype=float)
    box = ax.boxplot(data, positions=pos, widths=0.45, patch_artist=True, showfliers=False,
                     medianprops={"color": "black"})
    for i, patch in enumerate(box["boxes"]):
        c = colors[i] if colors is not None else method_color(keys[i])
        patch.set_facecolor(c)
        patch.set_alpha(0.35)
        jitter = np.linspace(-0.12, 0.12, len(data[i])) if len(data[i]) > 1 else np.zeros(1)
        ax.scatter(pos[i] + jitter, data[i], s=14, color=c, zorder=3)
    if paper:
        shown = False
        for i, k in enumerate(keys):
            p = paper.get(k)
            if p is None:
                continue
            m, s = (p if isinstance(p, (tuple, list)) else (p, 0.0))
            ax.errorbar(pos[i] + 0.38, m, yerr=s, fmt="D", color=PAPER_STYLE["paper"], ms=5, capsize=3,
                        label=None if shown else paper_label)
            shown = True
        if shown:
            ax.legend(frameon=False, fontsize=8, loc="best")
    ax.set_xticks(pos)
    ax.set_xticklabels(labels)
    ax.set_xlim(-0.6, len(keys) - 0.2)
    ax.set_ylabel(ylabel)
    _clean(ax)
    return ax


def plot_learning_curves(ax, sweep, keys: Optional[Sequence[str]] = None, series: str = "test_acc",
                         colors=None, x: str = "epoch", ylabel: str = "test accuracy (%)"):
    """Mean over trials (line) +- std (band) of ``series`` per epoch for each ``key``. Returns ``ax``."""
    from .sweeps import learning_curve

    for i, k in enumerate(keys or sweep.keys()):
        c = colors[i] if colors is not None else method_color(k)
        lc = learning_curve(sweep, k, series)
        ax.plot(lc["epoch"], lc["mean"], color=c, label=sweep.labels.get(k, k), lw=1.8)
        ax.fill_between(lc["epoch"], lc["mean"] - lc["std"], lc["mean"] + lc["std"], color=c, alpha=0.18, lw=0)
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False, fontsize=8)
    _clean(ax)
    return ax
