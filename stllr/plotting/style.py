"""The house style of every figure: colours per method, a clean axis, ``savefig`` (PNG + SVG,
shown inline as the saved bytes), and ``interactive_figure`` for ipywidgets controls.
Each plotting function returns the figure it drew, so a notebook cell stays one call plus a
``savefig``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import matplotlib

__all__ = ["interactive_figure", "savefig", "PAPER_STYLE", "method_color"]

if os.environ.get("MPLBACKEND") is None and not os.environ.get("DISPLAY"):
    try:  # headless: never try to open a window (the notebooks use the inline backend anyway)
        import IPython  # noqa: F401

        if IPython.get_ipython() is None:
            matplotlib.use("Agg")
    except Exception:  # pragma: no cover
        matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

#: colours used across notebooks: ours vs the paper's published numbers, S-TLLR vs BPTT
PAPER_STYLE = {
    "stllr": "#1f77b4",
    "bptt": "#d62728",
    "dfa": "#2ca02c",
    "paper": "#7f7f7f",
    "causal": "#1f77b4",
    "noncausal": "#ff7f0e",
}


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


def savefig(
    fig,
    name: str,
    figures_dir: str | os.PathLike = "figures",
    formats: Sequence[str] = ("png", "svg"),
    show: Optional[bool] = None,
) -> list[str]:
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
        plt.close(
            fig
        )  # the inline backend would otherwise draw it a second time at the end of the cell
    return paths


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
    box = widgets.VBox(
        [widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap")), out]
    )
    box.redraw = redraw
    return box


def method_color(key_or_mode: str) -> str:
    """Colour of a method: S-TLLR blue, BPTT red, DFA green (stllr.plotting.style.PAPER_STYLE)."""
    k = str(key_or_mode).lower()
    if "dfa" in k:
        return PAPER_STYLE["dfa"]
    if "bptt" in k:
        return PAPER_STYLE["bptt"]
    return PAPER_STYLE["stllr"]


def _clean(ax):
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
