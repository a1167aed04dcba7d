"""Plots of training runs (notebooks 00, 07, 08): the S-TLLR vs BPTT comparison, learning curves,
trial boxes and a sample raster. The paper's published numbers are drawn in grey, labelled
"paper"."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np

from stllr.plotting.style import PAPER_STYLE, _clean, method_color, plt

__all__ = [
    "plot_training_comparison",
    "plot_sample_raster",
    "plot_trial_boxes",
    "plot_learning_curves",
]


def plot_training_comparison(
    runs: Dict[str, Any],
    memory: Optional[Dict[str, Dict[str, Any]]] = None,
    paper: Optional[Dict[str, Sequence[float]]] = None,
    paper_on_curves: bool = False,
    paper_memory_ratio: Optional[float] = None,
    title: str = "",
):
    """Three panels: accuracy per epoch (test solid, train dashed), training time per epoch, and
    bytes saved for backward per training sequence (measured and Eq. 18-19).

    ``runs``: ``{key: stllr.studies.common.RunResult}`` (the chance line needs a trained
    ``model``); ``memory``: :func:`stllr.studies.quickstart.training_memory`;
    ``paper``: ``{key: (mean, std)}`` published test accuracies, drawn on the accuracy panel when
    ``paper_on_curves`` (only meaningful on the paper's own task); ``paper_memory_ratio``: the
    published BPTT / S-TLLR memory ratio, printed on the memory panel.
    """
    fig, axes = plt.subplots(
        1, 3, figsize=(13.5, 3.9), gridspec_kw={"width_ratios": [1.6, 1, 1.15]}
    )
    ax = axes[0]
    for key, run in runs.items():
        c = method_color(key if run.method.mode != "bptt" else "bptt")
        ep = [h["epoch"] for h in run.history]
        ax.plot(
            ep,
            [h["test_acc"] for h in run.history],
            "-o",
            color=c,
            ms=4 if len(ep) <= 31 else 0,
            lw=2,
            label=f"{run.method.label} test",
        )
        ep_tr = [h["epoch"] for h in run.history if h["train_acc"] is not None]
        ax.plot(
            ep_tr,
            run.series("train_acc"),
            "--",
            color=c,
            lw=1.3,
            alpha=0.8,
            label=f"{run.method.label} train",
        )
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
        ax.text(
            0.45,
            100.0 / n_classes + 1.5,
            "chance",
            fontsize=7,
            alpha=0.7,
            ha="center",
            transform=ax.get_yaxis_transform(),
        )
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
        ax.text(
            xi + 0.05,
            m / 2,
            f"{m:.2f} s",
            ha="left",
            va="center",
            fontsize=8,
            color="white",
            fontweight="bold",
        )
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
        ax.bar(
            x + 0.18, ana, width=0.36, color="white", edgecolor=cols, hatch="///", label="Eq. 18-19"
        )
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


def plot_sample_raster(
    samples: Sequence[tuple],
    class_names: Optional[Sequence[str]] = None,
    max_units: int = 100,
    title: str = "input spikes of one sample per class",
):
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


# ----------------------------------------------------------------------- sweeps (notebooks 07, 08)
def plot_trial_boxes(
    ax,
    sweep,
    keys: Optional[Sequence[str]] = None,
    labels: Optional[Sequence[str]] = None,
    metric: str = "final",
    paper: Optional[Dict[str, Any]] = None,
    colors=None,
    ylabel: str = "test accuracy (%)",
    paper_label: str = "paper",
):
    """Box plot of the per-trial test accuracy of each ``key`` of a :class:`stllr.studies.sweeps.Sweep`
    (``{key: [RunResult per trial]}``), every trial drawn as a dot. ``paper``: ``{key: (mean, std)}``
    (or a mean) drawn beside each box as a grey diamond with an error bar, labelled
    ``paper_label``. Returns ``ax``."""
    keys = list(keys or sweep.keys())
    labels = list(labels or [sweep.labels.get(k, k) for k in keys])
    data = [sweep.accuracies(k, metric) for k in keys]
    pos = np.arange(len(keys), dtype=float)
    box = ax.boxplot(
        data,
        positions=pos,
        widths=0.45,
        patch_artist=True,
        showfliers=False,
        medianprops={"color": "black"},
    )
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
            m, s = p if isinstance(p, (tuple, list)) else (p, 0.0)
            ax.errorbar(
                pos[i] + 0.38,
                m,
                yerr=s,
                fmt="D",
                color=PAPER_STYLE["paper"],
                ms=5,
                capsize=3,
                label=None if shown else paper_label,
            )
            shown = True
        if shown:
            ax.legend(frameon=False, fontsize=8, loc="best")
    ax.set_xticks(pos)
    ax.set_xticklabels(labels)
    ax.set_xlim(-0.6, len(keys) - 0.2)
    ax.set_ylabel(ylabel)
    _clean(ax)
    return ax


def plot_learning_curves(
    ax,
    sweep,
    keys: Optional[Sequence[str]] = None,
    series: str = "test_acc",
    colors=None,
    x: str = "epoch",
    ylabel: str = "test accuracy (%)",
):
    """Mean over trials (line) +- std (band) of ``series`` per epoch for each ``key`` of a
    :class:`stllr.studies.sweeps.Sweep` (:func:`stllr.studies.sweeps.learning_curve`). Returns ``ax``."""
    from stllr.studies.sweeps import learning_curve

    for i, k in enumerate(keys or sweep.keys()):
        c = colors[i] if colors is not None else method_color(k)
        lc = learning_curve(sweep, k, series)
        ax.plot(lc["epoch"], lc["mean"], color=c, label=sweep.labels.get(k, k), lw=1.8)
        ax.fill_between(
            lc["epoch"], lc["mean"] - lc["std"], lc["mean"] + lc["std"], color=c, alpha=0.18, lw=0
        )
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False, fontsize=8)
    _clean(ax)
    return ax
