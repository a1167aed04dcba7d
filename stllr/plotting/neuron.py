"""Plots of one neuron and its rule: the secondary activations psi, a recorded layer's traces and
updates, and STDP windows (notebooks 01 and 02)."""

from __future__ import annotations

from typing import Mapping, Optional

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from stllr import functional as SF
from stllr.plotting.style import PAPER_STYLE

__all__ = ["plot_psi_functions", "plot_neuron_record", "plot_stdp_window"]


def plot_psi_functions(v_range: float = 1.5, ax=None, highlight: Optional[str] = None):
    """The four secondary activations psi(v) (paper Eq. 25-28) against v = m - theta."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5.5, 3.2))
    v = torch.linspace(-v_range, v_range, 601, dtype=torch.float64)
    eq = {"rational": 25, "triangle": 26, "sigmoid": 27, "fast_sigmoid": 28}
    for name, fn in SF.PSI_FUNCTIONS.items():
        lw = 2.8 if name == highlight else 1.6
        ax.plot(v.numpy(), fn(v).numpy(), lw=lw, label=f"{name} (Eq. {eq[name]})")
    ax.axvline(0, color="k", lw=0.6, ls=":")
    ax.set_xlabel("v = m - threshold")
    ax.set_ylabel("psi(v)")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title("secondary activations")
    fig.tight_layout()
    return fig


def plot_neuron_record(record: Mapping[str, np.ndarray], synapse: int = 0, title: str = ""):
    """Four stacked panels over time for one neuron: input spikes of ``synapse`` and its pre
    trace; membrane with threshold and output spikes; psi and the post trace; the two
    eligibility terms and their running sum. ``record`` comes from
    :func:`stllr.analysis.record_layer`."""
    t = np.arange(record["membrane"].shape[0])
    fig, axes = plt.subplots(4, 1, figsize=(8, 7.2), sharex=True)
    x = record["input"][:, synapse]
    axes[0].vlines(t[x > 0], 0, 1, color="k", lw=1.2, label=f"pre spikes x[{synapse}]")
    axes[0].plot(
        t, record["pre_trace"][:, synapse], color=PAPER_STYLE["causal"], label="pre trace tr_in"
    )
    axes[0].legend(loc="upper right", frameon=False, fontsize=8)
    axes[1].plot(
        t, record["membrane_pre_reset"], color="k", lw=1.2, label="membrane m (before reset)"
    )
    axes[1].axhline(record["theta"], color="r", ls="--", lw=1, label="threshold")
    s = record["spikes"]
    axes[1].plot(
        t[s > 0], np.full((s > 0).sum(), record["theta"]), "r^", ms=6, label="output spike"
    )
    axes[1].legend(loc="upper right", frameon=False, fontsize=8)
    axes[2].plot(t, record["psi"], color="purple", label="psi(v)")
    axes[2].plot(t, record["post_trace"], color=PAPER_STYLE["noncausal"], label="post trace tr_out")
    axes[2].legend(loc="upper right", frameon=False, fontsize=8)
    causal, noncausal = record["causal"][:, synapse], record["noncausal"][:, synapse]
    axes[3].bar(
        t - 0.2,
        causal,
        width=0.4,
        color=PAPER_STYLE["causal"],
        label="alpha_pre psi tr_in (causal)",
    )
    axes[3].bar(
        t + 0.2,
        noncausal,
        width=0.4,
        color=PAPER_STYLE["noncausal"],
        label="alpha_post tr_out[t-1] x (non-causal)",
    )
    axes[3].plot(t, np.cumsum(causal + noncausal), color="k", lw=1.2, label="running sum")
    axes[3].axhline(0, color="k", lw=0.5)
    axes[3].legend(loc="upper left", frameon=False, fontsize=7)
    axes[3].set_xlabel("time step")
    if title:
        axes[0].set_title(title)
    fig.tight_layout()
    return fig


def plot_stdp_window(
    dts,
    curves: Mapping[str, np.ndarray],
    styles: Optional[Mapping[str, dict]] = None,
    ax=None,
    title: str = "STDP-like window of S-TLLR",
):
    """Weight change against dt = t_post - t_pre for several named curves."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 3.6))
    styles = styles or {}
    for name, values in curves.items():
        ax.plot(dts, values, **{"marker": "o", "ms": 4, "label": name, **styles.get(name, {})})
    ax.axhline(0, color="k", lw=0.6)
    ax.axvline(0, color="k", lw=0.6, ls=":")
    ax.set_xlabel("dt = t_post - t_pre (steps)")
    ax.set_ylabel("weight change")
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
