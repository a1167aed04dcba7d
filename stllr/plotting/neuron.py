"""Plots of one neuron and its rule: the secondary activations psi, a recorded layer's traces and
updates, and STDP windows (notebooks 01 and 03)."""

from __future__ import annotations

from typing import Mapping, Optional, Sequence, Union

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from stllr import functional as SF
from stllr.plotting.style import PAPER_STYLE

__all__ = [
    "plot_psi_functions",
    "plot_neuron_record",
    "plot_psi_at_spikes",
    "plot_stdp_window",
    "STDP_YLABEL",
]

#: The y axis of every STDP window drawn here: what the rule adds to ``weight.grad``.
STDP_YLABEL = "rule's dL/dW, delta = +1\n(gradient descent: W -= lr x this)"

_PSI_EQUATION = {"rational": 25, "triangle": 26, "sigmoid": 27, "fast_sigmoid": 28}


def plot_psi_functions(
    v_range: float = 1.5, ax=None, highlight: Union[str, Sequence[str], None] = None
):
    """The four secondary activations psi(v) (paper Eq. 25-28) against v = m - theta.

    Parameters:
        v_range: the v axis spans ``[-v_range, v_range]``.
        ax: an axis to draw on (default: a new figure).
        highlight: one psi name or several, drawn with a thicker line.
    """
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5.5, 3.2))
    v = torch.linspace(-v_range, v_range, 601, dtype=torch.float64)
    highlighted = {highlight} if isinstance(highlight, str) else set(highlight or ())
    for name, fn in SF.PSI_FUNCTIONS.items():
        lw = 2.8 if name in highlighted else 1.6
        ax.plot(v.numpy(), fn(v).numpy(), lw=lw, label=f"{name} (Eq. {_PSI_EQUATION[name]})")
    ax.axvline(0, color="k", lw=0.6, ls=":")
    ax.set_xlabel("v = m - threshold")
    ax.set_ylabel("psi(v)")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title("secondary activations")
    fig.tight_layout()
    return fig


def plot_neuron_record(record: Mapping[str, np.ndarray], synapse: int = 0, title: str = ""):
    """Four stacked panels over time for one neuron: input spikes of ``synapse`` and its pre
    trace; membrane with threshold and output spikes; psi, the post trace and the output spikes;
    the two eligibility terms and their running sum (the rule's dL/dW of that synapse for a
    learning signal of 1 at every step).

    Parameters:
        record: from :func:`stllr.analysis.record_layer` (arrays over T steps: ``input`` and
            ``pre_trace`` [T, M], the rest [T]).
        synapse: the input whose spikes, trace and terms are drawn.
        title: drawn above the top panel.
    """
    t = np.arange(record["membrane"].shape[0])
    fig, axes = plt.subplots(4, 1, figsize=(8, 7.2), sharex=True)
    x = record["input"][:, synapse]
    axes[0].vlines(t[x > 0], 0, 1, color="k", lw=1.2, label=f"pre spikes x[{synapse}]")
    axes[0].plot(
        t, record["pre_trace"][:, synapse], color=PAPER_STYLE["causal"], label="pre trace tr_in"
    )
    axes[0].set_ylabel(f"input {synapse}:\nx, tr_in")
    axes[0].legend(loc="upper right", frameon=False, fontsize=8)
    axes[1].plot(
        t, record["membrane_pre_reset"], color="k", lw=1.2, label="membrane m (before reset)"
    )
    axes[1].axhline(record["theta"], color="r", ls="--", lw=1, label="threshold")
    s = record["spikes"]
    axes[1].plot(
        t[s > 0], np.full((s > 0).sum(), record["theta"]), "r^", ms=6, label="output spike"
    )
    axes[1].set_ylabel("membrane m")
    axes[1].legend(loc="upper right", frameon=False, fontsize=8)
    axes[2].plot(t, record["psi"], color="purple", label="psi(v)")
    axes[2].plot(t, record["post_trace"], color=PAPER_STYLE["noncausal"], label="post trace tr_out")
    axes[2].plot(t[s > 0], np.zeros((s > 0).sum()), "r^", ms=4, label="output spike")
    axes[2].set_ylabel("psi, tr_out")
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
    axes[3].set_ylabel(f"terms of dL/dW[{synapse}]\n(delta = 1)")
    axes[3].set_xlabel("time step")
    if title:
        axes[0].set_title(title)
    fig.tight_layout()
    return fig


def plot_psi_at_spikes(records: Mapping[str, Mapping[str, np.ndarray]], v_range: float = 0.9):
    """Why a sharp psi shows fewer bumps than the neuron has spikes: for each named record of the
    same neuron and input (:func:`stllr.analysis.record_layer`, one per psi), left psi(v) with the
    v = m - theta of every step (dots) and of every output spike (red ticks on the v axis);
    right psi over time with the output spikes.

    Parameters:
        records: psi name -> record (``membrane_pre_reset``, ``spikes``, ``psi`` [T], ``theta``);
            the spikes are taken from the first record (psi does not change the forward pass).
        v_range: the v axis of the left panel spans ``[-v_range, v_range]``.
    """
    if not records:
        raise ValueError("records: give at least one record")
    for name in records:
        if name not in SF.PSI_FUNCTIONS:
            raise ValueError(f"records: {name!r} is not a psi name ({', '.join(SF.PSI_FUNCTIONS)})")
    first = next(iter(records.values()))
    spikes = np.asarray(first["spikes"]) > 0
    t = np.arange(spikes.shape[0])
    fig, (ax_v, ax_t) = plt.subplots(
        1, 2, figsize=(10, 3.3), gridspec_kw={"width_ratios": [1, 1.6]}
    )
    v_line = torch.linspace(-v_range, v_range, 721, dtype=torch.float64)
    for (name, rec), color in zip(records.items(), ["purple", "#8c564b", "#17becf", "#bcbd22"]):
        v = np.asarray(rec["membrane_pre_reset"]) - rec["theta"]
        label = f"{name} (Eq. {_PSI_EQUATION[name]})"
        ax_v.plot(v_line.numpy(), SF.PSI_FUNCTIONS[name](v_line).numpy(), color=color, label=label)
        ax_v.plot(v, rec["psi"], "o", color=color, ms=3, alpha=0.6)
        ax_t.plot(t, rec["psi"], color=color, lw=1.3, label=label)
    v_spikes = np.asarray(first["membrane_pre_reset"])[spikes] - first["theta"]
    ax_v.plot(v_spikes, np.zeros_like(v_spikes), "r|", ms=10, mew=1.2, label="v at an output spike")
    ax_v.axvline(0, color="k", lw=0.6, ls=":")
    ax_v.set_xlim(-v_range, v_range)
    ax_v.set_xlabel("v = m - threshold")
    ax_v.set_ylabel("psi(v)")
    ax_v.set_title("psi(v); dots: the steps of the run", fontsize=9)
    top = max(float(SF.PSI_FUNCTIONS[name](v_line).max()) for name in records)
    ax_v.set_ylim(-0.05 * top, 1.4 * top)  # room for the legend above the curves
    ax_v.legend(frameon=False, fontsize=7, loc="upper left", ncol=2)
    ax_t.plot(t[spikes], np.zeros(spikes.sum()), "r^", ms=5, label="output spike")
    ax_t.set_xlabel("time step")
    ax_t.set_ylabel("psi_t")
    ax_t.set_title("psi over time, same neuron and input", fontsize=9)
    ax_t.set_ylim(-0.05 * top, 1.4 * top)
    ax_t.legend(frameon=False, fontsize=7, loc="upper center", ncol=3)
    fig.tight_layout()
    return fig


def plot_stdp_window(
    dts,
    curves: Mapping[str, np.ndarray],
    styles: Optional[Mapping[str, dict]] = None,
    ax=None,
    title: str = "STDP-like window of S-TLLR",
    ylabel: str = STDP_YLABEL,
):
    """The rule's weight gradient against dt = t_post - t_pre for several named curves.

    dt is discrete and its two halves are different terms of the rule (dt >= 0 the causal
    ``alpha_pre`` term, dt < 0 the non-causal ``alpha_post`` term), so each half is drawn on its
    own: nothing joins dt = -1 and dt = 0. A curve styled ``{"stem": True}`` is drawn as stems
    from 0 with a marker on top; the others as markers (and a line within each half if their
    style has one, e.g. ``{"ls": "-"}``). The default y label says what the values are: the
    rule's dL/dW for a learning signal delta = +1; gradient descent moves the weight by
    ``-lr`` times it.

    Parameters:
        dts: the dt values [D] (integers, steps).
        curves: name (legend label) -> values [D].
        styles: name -> matplotlib keywords for that curve (plus ``stem``); ``label`` overrides
            the name, ``"_nolegend_"`` hides it.
        ax: an axis to draw on (default: a new figure).
        title, ylabel: the axis title and y label.
    """
    dts = np.asarray(dts)
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 3.6))
    styles = styles or {}
    halves = [dts < 0, dts >= 0]
    for name, values in curves.items():
        values = np.asarray(values, dtype=float)
        if values.shape != dts.shape:
            raise ValueError(f"curves: {name!r} has shape {values.shape}, dts {dts.shape}")
        style = {"marker": "o", "ms": 4, "ls": "none", "label": name, **styles.get(name, {})}
        stem = style.pop("stem", False)
        if stem:
            color = style.pop("color", None)
            line = ax.plot(dts, values, **{"color": color, **style, "ls": "none"})[0]
            ax.vlines(dts, 0, values, color=line.get_color(), lw=style.get("lw", 1.6))
            continue
        line = None
        for half in halves:
            if not half.any():
                continue
            kw = dict(style) if line is None else {**style, "label": "_nolegend_"}
            if line is not None:
                kw["color"] = line.get_color()
            line = ax.plot(dts[half], values[half], **kw)[0]
    ax.axhline(0, color="k", lw=0.6)
    ax.axvline(-0.5, color="k", lw=0.6, ls=":")
    ax.set_xlabel("dt = t_post - t_pre (steps)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
