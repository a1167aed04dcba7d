"""Schematic of one LIF layer's computational graph unrolled over a few steps: what BPTT
differentiates through time, and what S-TLLR keeps at each step (the idea of the paper's
Figs. 1-2; notebook 02)."""

from __future__ import annotations

import math

from matplotlib.lines import Line2D
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

from stllr.plotting.style import PAPER_STYLE, plt

__all__ = ["plot_bptt_vs_stllr_graph"]

_R = 0.3  # node radius, data units
_FORWARD = "#222222"  # forward computation (a graph is kept: BPTT)
_CARRIED = "#9a9a9a"  # state carried to the next step without a graph (S-TLLR)
_GRAD = PAPER_STYLE["bptt"]  # gradient flow (backward)
_TRACE = PAPER_STYLE["causal"]  # the rule's traces


def _node(ax, xy, label, color="#ffffff", edge=_FORWARD, size=11):
    ax.add_patch(Circle(xy, _R, facecolor=color, edgecolor=edge, lw=1.3, zorder=3))
    ax.text(*xy, label, ha="center", va="center", fontsize=size, zorder=4)


def _box(ax, xy, label, edge=_GRAD, size=9):
    w, h = 0.95, 0.42
    ax.add_patch(
        FancyBboxPatch(
            (xy[0] - w / 2, xy[1] - h / 2),
            w,
            h,
            boxstyle="round,pad=0.04",
            facecolor="#fff5f5",
            edgecolor=edge,
            lw=1.1,
            zorder=3,
        )
    )
    ax.text(*xy, label, ha="center", va="center", fontsize=size, zorder=4)


def _arrow(ax, p, q, color=_FORWARD, dashed=False, rad=0.0, gap_p=_R, gap_q=_R, lw=1.3):
    """An arrow from node p to node q (centres), starting and ending on the circles."""
    dx, dy = q[0] - p[0], q[1] - p[1]
    n = math.hypot(dx, dy)
    a = (p[0] + dx * gap_p / n, p[1] + dy * gap_p / n)
    b = (q[0] - dx * gap_q / n, q[1] - dy * gap_q / n)
    ax.add_patch(
        FancyArrowPatch(
            a,
            b,
            arrowstyle="-|>",
            mutation_scale=11,
            color=color,
            lw=lw,
            linestyle=(0, (4, 2.5)) if dashed else "-",
            connectionstyle=f"arc3,rad={rad}",
            zorder=2,
        )
    )


def _bptt_panel(ax, steps, dx):
    for k in range(steps):
        c = k * dx
        t = str(k + 1)
        x, u, s, loss = (c, 0.0), (c, 2.0), (c, 3.3), (c, 4.6)
        _node(ax, x, rf"$x_{t}$")
        _node(ax, u, rf"$u_{t}$")
        _node(ax, s, rf"$s_{t}$")
        _node(ax, loss, rf"$\ell_{t}$", color="#f3f3f3")
        for p, q in ((x, u), (u, s), (s, loss)):
            _arrow(ax, p, q)
        _arrow(ax, loss, s, _GRAD, dashed=True, rad=0.45)  # delta_t = dl_t/ds_t
        _arrow(ax, s, u, _GRAD, dashed=True, rad=0.45)  # x psi_t
        gw = (c + 1.05, 0.35)
        _box(ax, gw, r"$\frac{\partial L}{\partial m_{" + t + r"}}\, x_{" + t + "}$")
        _arrow(ax, u, gw, _GRAD, dashed=True, gap_q=0.25)
        if k > 0:
            prev = ((k - 1) * dx, 2.0)
            _arrow(ax, prev, u, _FORWARD, rad=0.0)  # beta u_{t-1}: forward, with a graph
            _arrow(ax, u, prev, _GRAD, dashed=True, rad=0.5)  # and the gradient back in time
    ax.set_title(
        "BPTT: the gradient runs back through the membrane, step by step\n"
        "(every step's state is stored until the backward pass after the last step)",
        fontsize=10,
    )


def _stllr_panel(ax, steps, dx):
    for k in range(steps):
        c = k * dx
        t = str(k + 1)
        x, tr_in, u, s = (c, 0.0), (c - 0.65, 1.1), (c + 0.25, 2.0), (c + 0.25, 3.3)
        tr_out, loss = (c + 0.95, 3.95), (c + 0.25, 4.6)
        _node(ax, x, rf"$x_{t}$")
        _node(ax, tr_in, r"$\mathrm{tr}^{\mathrm{in}}_{" + t + "}$", "#e8f1fa", _TRACE, 9)
        _node(ax, u, rf"$u_{t}$")
        _node(ax, s, rf"$s_{t}$")
        _node(ax, tr_out, r"$\mathrm{tr}^{\mathrm{out}}_{" + t + "}$", "#e8f1fa", _TRACE, 9)
        _node(ax, loss, rf"$\ell_{t}$", color="#f3f3f3")
        for p, q in ((x, tr_in), (x, u), (u, s), (s, loss), (s, tr_out)):
            _arrow(ax, p, q, _CARRIED if q in (tr_in, tr_out) else _FORWARD)
        _arrow(ax, loss, s, _GRAD, dashed=True, rad=0.45)  # delta_t
        gw = (c + 1.05, 0.35)
        _box(ax, gw, r"$\delta_{" + t + r"}\, e_{" + t + "}$")
        _arrow(ax, s, gw, _GRAD, dashed=True, rad=-0.25, gap_q=0.25)
        if k > 0:
            pc = (k - 1) * dx
            for p, q in (
                ((pc - 0.65, 1.1), tr_in),
                ((pc + 0.25, 2.0), u),
                ((pc + 0.95, 3.95), tr_out),
            ):
                _arrow(ax, p, q, _CARRIED)  # carried forward, no gradient
    ax.set_title(
        "S-TLLR: states and traces go forward only; the gradient stays inside step t\n"
        r"($e_t$ from $\mathrm{tr}^{\mathrm{in}}_t$, $\psi_t$, $\mathrm{tr}^{\mathrm{out}}_{t-1}$, "
        r"$x_t$: nothing is stored for a later backward)",
        fontsize=10,
    )


def plot_bptt_vs_stllr_graph(steps: int = 4):
    """Two panels: one LIF layer unrolled over ``steps`` time steps, as BPTT differentiates it
    (forward arrows through the membrane ``u_{t-1} -> u_t`` and the gradient back along them) and
    as S-TLLR does (traces ``tr_in``, ``tr_out`` and the membrane carried forward without a
    graph; the gradient ``delta_t e_t`` formed inside each step).

    Parameters:
        steps: number of time steps drawn (2 to 6).

    Returns the figure.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or not 2 <= steps <= 6:
        raise ValueError(f"steps: expected an int in [2, 6], got {steps!r}")
    dx = 2.4
    fig, axes = plt.subplots(1, 2, figsize=(3.1 * steps, 4.4))
    _bptt_panel(axes[0], steps, dx)
    _stllr_panel(axes[1], steps, dx)
    for ax in axes:
        ax.set_xlim(-1.2, (steps - 1) * dx + 1.7)
        ax.set_ylim(-0.6, 5.1)
        ax.set_aspect("equal")
        ax.axis("off")
    handles = [
        Line2D([], [], color=_FORWARD, lw=1.3, label="forward step (BPTT keeps its graph)"),
        Line2D([], [], color=_CARRIED, lw=1.3, label="carried to the next step, no gradient"),
        Line2D([], [], color=_GRAD, lw=1.3, ls=(0, (4, 2.5)), label="gradient (backward)"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False, fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig
