"""Plotting helpers used by the notebooks (matplotlib). Each returns the figure it drew so a
notebook cell stays one call plus a ``savefig``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional, Sequence

import matplotlib

if os.environ.get("MPLBACKEND") is None and not os.environ.get("DISPLAY"):
    try:  # headless: never try to open a window (the notebooks use the inline backend anyway)
        import IPython  # noqa: F401
        if IPython.get_ipython() is None:
            matplotlib.use("Agg")
    except Exception:  # pragma: no cover
        matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from . import functional as SF  # noqa: E402

__all__ = ["interactive_figure", "savefig", "plot_psi_functions", "plot_neuron_record", "plot_stdp_window", "PAPER_STYLE"]

#: colours used across notebooks: ours vs the paper's published numbers, S-TLLR vs BPTT
PAPER_STYLE = {"stllr": "#1f77b4", "bptt": "#d62728", "dfa": "#2ca02c", "paper": "#7f7f7f",
               "causal": "#1f77b4", "noncausal": "#ff7f0e"}


def _in_ipython_kernel() -> bool:
    """True inside a Jupyter kernel (JupyterLab, papermill, nbval), not in a terminal IPython."""
    try:
        from IPython import get_ipython
    except Exception:  # pragma: no cover - IPython is a dependency of the notebooks extra only
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _saved_png(data: bytes, text: str):
    """What a notebook shows for a saved figure: ``IPython.display.Image`` of the PNG file's bytes
    as written (so the image embedded in the notebook is the file in ``figures/``), with the
    figure's own text form (``<Figure size 600x360 with 1 Axes>``, what the inline backend gave)
    as its plain-text alternative."""
    from IPython.display import Image

    class SavedPNG(Image):
        def __repr__(self) -> str:
            return text

    return SavedPNG(data=data, format="png")


def savefig(fig, name: str, figures_dir: str | os.PathLike = "figures", formats: Sequence[str] = ("png", "svg"),
            show: Optional[bool] = None) -> list[str]:
    """Save ``fig`` as ``figures_dir/name.{png,svg}`` with reproducible metadata; returns the paths.

    Inside a Jupyter kernel (``show=None``: detected), the notebook then shows exactly the saved
    PNG file (its bytes, not a second render by the inline backend) and the figure is closed, so
    each saved figure appears once and the image in the executed notebook is the file on disk.
    ``show=False`` leaves the figure open and shows nothing; without ``"png"`` in ``formats``
    nothing is shown either (the inline backend draws the figure as usual)."""
    out = Path(figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out / f"{name}.{fmt}"
        if fmt == "svg":
            with matplotlib.rc_context({"svg.hashsalt": "stllr"}):
                fig.savefig(path, bbox_inches="tight", metadata={"Date": None, "Creator": None})
        elif fmt == "png":
            fig.savefig(path, dpi=120, bbox_inches="tight", metadata={"Software": None})
        else:
            fig.savefig(path, bbox_inches="tight")
        paths.append(str(path))
    if show is None:
        show = _in_ipython_kernel()
    if show and "png" in formats:
        from IPython.display import display

        png = Path(paths[list(formats).index("png")]).read_bytes()
        display(_saved_png(png, repr(fig)))
        plt.close(fig)  # the inline backend would otherwise draw it a second time at the end of the cell
    return paths


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
    axes[0].plot(t, record["pre_trace"][:, synapse], color=PAPER_STYLE["causal"], label="pre trace tr_in")
    axes[0].legend(loc="upper right", frameon=False, fontsize=8)
    axes[1].plot(t, record["membrane_pre_reset"], color="k", lw=1.2, label="membrane m (before reset)")
    axes[1].axhline(record["theta"], color="r", ls="--", lw=1, label="threshold")
    s = record["spikes"]
    axes[1].plot(t[s > 0], np.full((s > 0).sum(), record["theta"]), "r^", ms=6, label="output spike")
    axes[1].legend(loc="upper right", frameon=False, fontsize=8)
    axes[2].plot(t, record["psi"], color="purple", label="psi(v)")
    axes[2].plot(t, record["post_trace"], color=PAPER_STYLE["noncausal"], label="post trace tr_out")
    axes[2].legend(loc="upper right", frameon=False, fontsize=8)
    causal, noncausal = record["causal"][:, synapse], record["noncausal"][:, synapse]
    axes[3].bar(t - 0.2, causal, width=0.4, color=PAPER_STYLE["causal"], label="alpha_pre psi tr_in (causal)")
    axes[3].bar(t + 0.2, noncausal, width=0.4, color=PAPER_STYLE["noncausal"],
                label="alpha_post tr_out[t-1] x (non-causal)")
    axes[3].plot(t, np.cumsum(causal + noncausal), color="k", lw=1.2, label="running sum")
    axes[3].axhline(0, color="k", lw=0.5)
    axes[3].legend(loc="upper left", frameon=False, fontsize=7)
    axes[3].set_xlabel("time step")
    if title:
        axes[0].set_title(title)
    fig.tight_layout()
    return fig


def plot_stdp_window(dts, curves: Mapping[str, np.ndarray], styles: Optional[Mapping[str, dict]] = None,
                     ax=None, title: str = "STDP-like window of S-TLLR"):
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


def interactive_figure(make_figure, **controls):
    """An "interactive demo" widget: ``controls`` (ipywidgets value widgets, by keyword) above an
    output area that shows ``make_figure(**values)``, redrawn whenever a control changes.

    ``make_figure`` returns a matplotlib figure, or ``(figure, text)`` to print a line under it.
    The figure is written into the output widget's state directly (not through the kernel's
    output routing), so the demo looks the same in JupyterLab, papermill and nbval, and it
    renders with its defaults in headless runs. An exception while redrawing after a change shows
    its traceback in the output area (stderr); one in the first draw is raised. Returns an
    ``ipywidgets.VBox``.
    """
    import traceback

    import ipywidgets as widgets

    out = widgets.Output()

    def redraw(_change=None, _initial=False):
        # A failure while redrawing after a control change would otherwise only reach the kernel
        # log: show its traceback in the output area (as stderr) instead; the first draw re-raises
        # so headless runs (nbval, papermill) still fail loudly.
        fig = None
        try:
            result = make_figure(**{name: w.value for name, w in controls.items()})
            fig, text = result if isinstance(result, tuple) else (result, None)
            out.outputs = ()
            out.append_display_data(fig)
            if text:
                out.append_stdout(text + "\n")
        except Exception:
            out.outputs = ()
            out.append_stderr(traceback.format_exc())
            if _initial:
                raise
        finally:
            if fig is not None:
                plt.close(fig)

    for w in controls.values():
        w.observe(redraw, names="value")
    redraw(_initial=True)
    box = widgets.VBox([widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap")), out])
    box.redraw = redraw
    return box
