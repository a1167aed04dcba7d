"""Event data for the eye (notebook 10): rasters, frames and animations of tonic events, and how
tonic's ``ToFrame`` time window, the number of steps T and the trace decays relate.

Events are tonic structured arrays with timestamps ``t`` in microseconds: audio-like sensors
(randman, SHD) have fields ``(t, x, p)`` with ``x`` the input unit; vision sensors (moving_shapes,
DVS Gesture) have ``(x, y, t, p)`` with ``p`` the polarity (1 ON: brighter, 0 OFF: darker).

Time scales. ``ToFrame(time_window=dt)`` turns events into T frames of length ``dt``: one frame is
one time step of the network. A trace ``tr_t = lambda * tr_{t-1} + x_t`` (rule.md steps 1 and 5)
sums ``1 + lambda + lambda^2 + ... = 1 / (1 - lambda)`` steps of input: it remembers about
``1 / (1 - lambda)`` frames, i.e. ``dt / (1 - lambda)`` of real time (its e-folding time constant,
``-dt / ln(lambda)``, is about half a step shorter). The membrane decay ``beta = sigmoid(leak)`` works
the same way. So a decay is only meaningful together with the frame length: the same
``lambda = 0.9`` spans 100 ms with SHD's 10 ms frames and 750 ms with DVS Gesture's 75 ms frames."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import torch

from stllr import functional as SF

__all__ = [
    "POLARITY_COLORS",
    "is_vision",
    "describe_events",
    "to_frames",
    "frames_rgb",
    "plot_raster",
    "plot_frames",
    "plot_frame_strip",
    "regular_steps",
    "plot_event_cloud",
    "plot_trace_spans",
    "animate_frames",
    "save_gif",
    "trace_span_steps",
    "trace_time_constant_steps",
    "trace_span_table",
    "trace_over_time",
    "plot_trace_vs_window",
    "find_item",
    "moving_shapes_as_gesture",
    "chirp_samples",
]

#: ON events red, OFF events blue (the usual DVS colouring).
POLARITY_COLORS = {1: "#d62728", 0: "#1f77b4"}


def _plt():
    from stllr.plotting.style import plt  # the plot module picks a headless backend when needed

    return plt


def is_vision(events: np.ndarray) -> bool:
    """True for (x, y, t, p) camera events, False for (t, x, p) audio-like events."""
    names = events.dtype.names or ()
    if "t" not in names or "x" not in names:
        raise ValueError(
            f"events: expected a tonic structured array with fields t and x, got {names}"
        )
    return "y" in names


def describe_events(events: np.ndarray, sensor_size: Optional[Sequence[int]] = None) -> str:
    """One line: number of events, duration, rate, polarity split and sensor."""
    n = len(events)
    if n == 0:
        return "0 events"
    t = events["t"].astype(np.int64)
    span_ms = (t.max() - t.min()) / 1000.0
    parts = [
        f"{n} events",
        f"t from {t.min() / 1000:.1f} to {t.max() / 1000:.1f} ms ({span_ms:.1f} ms)",
    ]
    if span_ms > 0:
        parts.append(f"{n / span_ms * 1000:.0f} events/s")
    if "p" in events.dtype.names and len(np.unique(events["p"])) > 1:
        on = int((events["p"] > 0).sum())
        parts.append(f"ON {on} / OFF {n - on}")
    if sensor_size is not None:
        parts.append(f"sensor {tuple(int(s) for s in sensor_size)}")
    return ", ".join(parts)


def to_frames(
    events: np.ndarray,
    sensor_size: Sequence[int],
    time_window_us: Optional[float] = None,
    n_time_bins: Optional[int] = None,
    start_time: Optional[float] = None,
    end_time: Optional[float] = None,
) -> np.ndarray:
    """``tonic.transforms.ToFrame`` counts: ``[T, P, H, W]`` for cameras, ``[T, P, 1, X]`` squeezed
    to ``[T, X]`` (polarities summed) for audio-like sensors. Give ``time_window_us`` (frames of
    fixed length, as SHD and DVS Gesture) or ``n_time_bins``."""
    from tonic.transforms import ToFrame

    kw = {}
    if time_window_us is not None:
        kw["time_window"] = float(time_window_us)
    if n_time_bins is not None:
        kw["n_time_bins"] = int(n_time_bins)
    if start_time is not None:
        kw["start_time"] = float(start_time)
    if end_time is not None:
        kw["end_time"] = float(end_time)
    frames = ToFrame(sensor_size=tuple(int(s) for s in sensor_size), **kw)(events.copy())
    if not is_vision(events):
        frames = frames.reshape(frames.shape[0], -1, frames.shape[-1]).sum(1)
    return frames


def frames_rgb(frames, vmax: Optional[float] = None) -> np.ndarray:
    """Frames ``[T, 2, H, W]`` (polarity 0 = OFF, 1 = ON) -> RGB ``[T, H, W, 3]`` on white: ON
    pixels red, OFF pixels blue, both purple; intensity scaled by ``vmax`` (default: the 99th
    percentile of the non-zero counts, so one hot pixel does not wash everything out)."""
    f = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    f = f.astype(np.float64)
    if f.ndim != 4 or f.shape[1] != 2:
        raise ValueError(f"frames: expected [T, 2, H, W], got {f.shape}")
    if vmax is None:
        nz = f[f > 0]
        vmax = float(np.percentile(nz, 99)) if nz.size else 1.0
    on = np.clip(f[:, 1] / vmax, 0, 1)
    off = np.clip(f[:, 0] / vmax, 0, 1)
    # white minus what each polarity absorbs: ON keeps red, OFF keeps blue, both keep red and blue
    r = 1.0 - off * (1.0 - on) * 0.85
    g = 1.0 - np.maximum(on, off) * 0.85
    b = 1.0 - on * (1.0 - off) * 0.85
    return np.stack([r, g, b], axis=-1)


def plot_raster(
    events: np.ndarray,
    ax=None,
    axis: str = "x",
    title: str = "",
    time_window_us: Optional[float] = None,
    marker_size: float = 2.0,
    sensor_size: Optional[Sequence[int]] = None,
    max_events: Optional[int] = None,
):
    """Raster plot: time (ms) against the input unit (audio-like events) or against one pixel
    coordinate (``axis`` "x" or "y", camera events, coloured by polarity, so a moving edge is a
    slanted band). ``time_window_us`` draws the ToFrame frame boundaries; ``max_events`` keeps
    every k-th event of long recordings (deterministic)."""
    plt = _plt()
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.5, 3.2))
    if max_events is not None and len(events) > max_events:
        events = events[:: int(math.ceil(len(events) / max_events))]
    t_ms = events["t"].astype(np.float64) / 1000.0
    if is_vision(events):
        if axis not in ("x", "y"):
            raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
        for pol, name in ((1, "ON"), (0, "OFF")):
            sel = events["p"].astype(int) == pol
            ax.scatter(
                t_ms[sel],
                events[axis][sel],
                s=marker_size,
                color=POLARITY_COLORS[pol],
                label=f"{name} ({sel.sum()})",
                linewidths=0,
                rasterized=True,
            )
        ax.set_ylabel(f"pixel {axis}")
        if axis == "y":
            ax.invert_yaxis()
        ax.legend(frameon=False, fontsize=7, loc="upper right", markerscale=3)
    else:
        ax.scatter(t_ms, events["x"], s=marker_size, color="k", linewidths=0, rasterized=True)
        ax.set_ylabel("input unit")
    if time_window_us:
        lo, hi = (t_ms.min(), t_ms.max()) if len(t_ms) else (0.0, 1.0)
        step = time_window_us / 1000.0
        for edge in np.arange(math.floor(lo / step) * step, hi + step, step):
            ax.axvline(edge, color="0.8", lw=0.5, zorder=0)
    if sensor_size is not None and not is_vision(events):
        ax.set_ylim(-0.5, sensor_size[0] - 0.5)
    ax.set_xlabel("time (ms)")
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def plot_frames(
    frames, ax=None, dt_ms: Optional[float] = None, title: str = "", cmap: str = "Greys"
):
    """Audio-like frames ``[T, X]`` as an image (time x unit, the counts per frame)."""
    plt = _plt()
    f = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.5, 3.2))
    extent = None
    if dt_ms is not None:
        extent = (0, f.shape[0] * dt_ms, -0.5, f.shape[1] - 0.5)
    im = ax.imshow(
        f.T,
        origin="lower",
        aspect="auto",
        cmap=cmap,
        interpolation="nearest",
        extent=extent,
        vmin=0,
        vmax=max(1.0, float(f.max())),
    )
    ax.set_xlabel("time (ms)" if dt_ms is not None else "frame (time step)")
    ax.set_ylabel("input unit")
    fig.colorbar(im, ax=ax, label="events per frame", pad=0.01)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def regular_steps(T: int, n: int) -> list:
    """``min(n, T)`` time steps of a sequence of ``T`` taken at one regular stride from step 0:
    ``0, k, 2k, ...`` with ``k = (T - 1) // (n - 1)``, the largest stride at which ``n`` steps
    fit (1 when ``n >= T``). Rounding a linspace instead gives uneven gaps (T = 20, n = 10:
    0, 2, 4, 6, 8, 11, ...).

    Parameters:
        T: the number of steps of the sequence (>= 1).
        n: how many steps to take (>= 1).
    """
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"T: expected a whole number of steps >= 1, got {T!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: expected a whole number of frames >= 1, got {n!r}")
    n = min(int(n), int(T))
    stride = 1 if n == 1 else (int(T) - 1) // (n - 1)
    return list(range(0, stride * n, stride)) if n > 1 else [0]


def plot_frame_strip(
    frames,
    n: int = 8,
    dt_ms: Optional[float] = None,
    title: str = "",
    vmax: Optional[float] = None,
    steps: Optional[Sequence[int]] = None,
):
    """Camera frames ``[T, 2, H, W]`` side by side (ON red, OFF blue): ``steps`` if given, else
    ``n`` frames at one regular stride from step 0 (:func:`regular_steps`)."""
    plt = _plt()
    rgb = frames_rgb(frames, vmax)
    T = rgb.shape[0]
    steps = list(steps) if steps is not None else regular_steps(T, n)
    fig, axes = plt.subplots(1, len(steps), figsize=(1.35 * len(steps), 1.75), squeeze=False)
    for ax, k in zip(axes[0], steps):
        ax.imshow(rgb[k], interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"t={k}" + (f"\n{k * dt_ms:g} ms" if dt_ms is not None else ""), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_event_cloud(
    events: np.ndarray,
    sensor_size: Sequence[int],
    ax=None,
    title: str = "",
    marker_size: float = 6.0,
    arrow: Optional[Sequence[float]] = None,
    colorbar: bool = True,
):
    """Camera events as points in the sensor plane, coloured by time (early dark, late bright):
    the direction of motion reads from the colour gradient. ``arrow`` = (dx, dy) draws the true
    direction from the sensor centre."""
    plt = _plt()
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(3.2, 3.0))
    t_ms = events["t"].astype(np.float64) / 1000.0
    sc = ax.scatter(events["x"], events["y"], c=t_ms, s=marker_size, cmap="viridis", linewidths=0)
    w, h = int(sensor_size[0]), int(sensor_size[1])
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)  # image convention: y grows downwards
    ax.set_aspect("equal")
    ax.set_xticks([]), ax.set_yticks([])
    if arrow is not None:
        dx, dy = arrow
        ax.annotate(
            "",
            xy=(w / 2 + dx * w * 0.3, h / 2 + dy * h * 0.3),
            xytext=(w / 2, h / 2),
            arrowprops=dict(arrowstyle="->", color="crimson", lw=1.8),
        )
    if colorbar:
        fig.colorbar(sc, ax=ax, label="time (ms)", fraction=0.046, pad=0.02)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def plot_trace_spans(
    frame_ms: Mapping[str, float],
    marks: Mapping[str, float] = None,
    durations_ms: Optional[Mapping[str, float]] = None,
    ax=None,
    max_lambda: float = 0.999,
):
    """Memory ``frame / (1 - lambda)`` in real time against the decay lambda (axis in ``1 - lambda``,
    logarithmic, so 0.9, 0.99, 0.999 are evenly spaced), one line per frame length; ``marks``
    (label -> lambda) are drawn on every line; ``durations_ms`` (label -> ms) as horizontal lines
    (e.g. the length of a sample)."""
    plt = _plt()
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.5, 3.8))
    one_minus = np.logspace(0, np.log10(1.0 - max_lambda), 300)
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"]
    for (name, ms), color in zip(frame_ms.items(), colors):
        ax.plot(one_minus, ms / one_minus, color=color, lw=1.8, label=f"{name}: {ms:g} ms per step")
        for v in (marks or {}).values():
            if 0.0 <= v < 1.0:
                ax.plot([1.0 - v], [ms / (1.0 - v)], "o", color=color, ms=4)
    for mark, v in (marks or {}).items():
        if 0.0 <= v < 1.0:
            ax.axvline(1.0 - v, color="0.7", lw=0.6, ls=":")
            ax.text(
                1.0 - v,
                1.01,
                mark,
                rotation=90,
                fontsize=7,
                ha="center",
                va="bottom",
                transform=ax.get_xaxis_transform(),
            )
    for (name, ms), ls in zip((durations_ms or {}).items(), ("--", "-.", ":")):
        ax.axhline(ms, color="k", lw=0.8, ls=ls, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1.0, 1.0 - max_lambda)  # lambda grows to the right
    ticks = [v for v in (0.0, 0.5, 0.9, 0.99, 0.999) if v <= max_lambda]
    ax.set_xticks([1.0 - v for v in ticks], [f"{v:g}" for v in ticks])
    ax.minorticks_off()
    ax.set_xlabel("decay lambda per step (axis: 1 - lambda, log scale)")
    ax.set_ylabel("memory = step / (1 - lambda)  (ms)")
    ax.legend(frameon=False, fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def animate_frames(
    frames,
    dt_ms: Optional[float] = None,
    interval_ms: int = 150,
    title: str = "",
    size_in: float = 2.4,
    dpi: int = 72,
    vmax: Optional[float] = None,
    trace_lambda: Optional[float] = None,
):
    """A ``matplotlib.animation.FuncAnimation`` of camera frames ``[T, 2, H, W]`` (one frame per
    time step, ON red, OFF blue). With ``trace_lambda``, a second panel shows the trace
    ``tr_t = lambda tr_{t-1} + frame_t`` of the same frames: what a pre-synaptic trace of the first
    layer holds at each step (a fading streak behind every moving edge).
    Returns ``(animation, figure)``; close the figure when done."""
    plt = _plt()
    from matplotlib import animation

    panels = [("frame", frames_rgb(frames, vmax))]
    if trace_lambda is not None:
        f = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
        panels.append(
            (f"trace, lambda = {trace_lambda:g}", frames_rgb(trace_over_time(f, trace_lambda)))
        )
    fig, axes = plt.subplots(
        1, len(panels), figsize=(size_in * len(panels), size_in + 0.35), dpi=dpi, squeeze=False
    )
    images = []
    for ax, (name, rgb) in zip(axes[0], panels):
        images.append(ax.imshow(rgb[0], interpolation="nearest"))
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(name, fontsize=8)
    label = fig.suptitle("", fontsize=8)
    T = panels[0][1].shape[0]

    def draw(k):
        for im, (_, rgb) in zip(images, panels):
            im.set_data(rgb[k])
        label.set_text(
            (title + "\n" if title else "")
            + f"step {k}"
            + (f", t = {k * dt_ms:g} ms" if dt_ms is not None else "")
        )
        return (*images, label)

    draw(0)
    fig.tight_layout()
    anim = animation.FuncAnimation(fig, draw, frames=T, interval=interval_ms, blit=False)
    return anim, fig


def save_gif(anim, path, fps: float) -> str:
    """Write ``anim`` as an animated GIF with matplotlib's Pillow writer; returns the path."""
    from matplotlib import animation

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    anim.save(path, writer=animation.PillowWriter(fps=fps))
    return str(path)


def trace_span_steps(lam: float) -> float:
    """Steps of input a trace with decay ``lam`` sums: ``1 / (1 - lam)`` (inf for lam = 1)."""
    lam = float(lam)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"decay must be in [0, 1], got {lam}")
    return math.inf if lam == 1.0 else 1.0 / (1.0 - lam)


def trace_time_constant_steps(lam: float) -> float:
    """e-folding time of the trace in steps: ``-1 / ln(lam)`` (0 for lam = 0, inf for lam = 1)."""
    lam = float(lam)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"decay must be in [0, 1], got {lam}")
    if lam == 0.0:
        return 0.0
    if lam == 1.0:
        return math.inf
    return -1.0 / math.log(lam)


def trace_span_table(decays: Mapping[str, float], frame_ms: Mapping[str, float]) -> str:
    """Text table: for each named decay, its span ``1 / (1 - lambda)`` in steps and in real time
    for each named frame length (ms per step)."""

    def fmt_ms(v):
        if math.isinf(v):
            return "whole sample"
        return f"{v:,.0f} ms" if v < 10_000 else f"{v / 1000:,.1f} s"

    head = f"{'decay':<30} {'lambda':>7} {'1/(1-l) steps':>14} | " + " | ".join(
        f"{k:>18}" for k in frame_ms
    )
    rows = [head, "-" * len(head)]
    for name, lam in decays.items():
        span = trace_span_steps(lam)
        cells = [fmt_ms(span * ms) for ms in frame_ms.values()]
        steps = "inf" if math.isinf(span) else f"{span:.1f}"
        rows.append(
            f"{name:<30} {lam:>7.4g} {steps:>14} | " + " | ".join(f"{c:>18}" for c in cells)
        )
    return "\n".join(rows)


def trace_over_time(counts, lam: float) -> np.ndarray:
    """``tr_t = lam * tr_{t-1} + x_t`` over the first axis of ``counts`` [T, ...] (the pre trace of
    rule.md step 1, via :func:`stllr.functional.trace_step`)."""
    x = torch.as_tensor(np.asarray(counts, dtype=np.float64))
    tr = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        tr = SF.trace_step(tr, float(lam), x[t])
        out.append(tr.clone())
    return torch.stack(out).numpy()


def plot_trace_vs_window(
    events: np.ndarray,
    sensor_size: Sequence[int],
    windows_ms: Sequence[float],
    lam: float,
    units: Optional[Sequence[int]] = None,
    duration_ms: Optional[float] = None,
    title: str = "",
):
    """Same events, framed with several ToFrame windows; for each, the counts of ``units``
    (summed; default all) per frame (bars) and the trace with decay ``lam`` per step (line), on a
    common real-time axis. The trace's memory, ``window / (1 - lam)``, grows with the window."""
    plt = _plt()
    t0 = int(events["t"].min()) if len(events) else 0
    ev = events.copy()
    ev["t"] = ev["t"] - t0
    if duration_ms is None:
        duration_ms = float(ev["t"].max()) / 1000.0 + 1e-3 if len(ev) else 1.0
    fig, axes = plt.subplots(
        len(windows_ms) + 1, 1, figsize=(7.0, 1.5 + 1.35 * len(windows_ms)), sharex=True
    )
    plot_raster(ev, ax=axes[0], marker_size=1.5, sensor_size=sensor_size)
    if units is not None:
        lo, hi = min(units), max(units)
        axes[0].axhspan(lo - 0.5, hi + 0.5, color="gold", alpha=0.3, lw=0)
    axes[0].set_xlabel("")
    for ax, w in zip(axes[1:], windows_ms):
        n = int(math.ceil(duration_ms / w))
        frames = to_frames(
            ev, sensor_size, time_window_us=w * 1000.0, start_time=0, end_time=n * w * 1000.0
        )
        counts = frames[:, list(units)].sum(1) if units is not None else frames.sum(1)
        trace = trace_over_time(counts, lam)
        edges = np.arange(n) * w
        ax.bar(edges, counts, width=w, align="edge", color="0.75", label="events per frame")
        ax.step(
            edges + w,
            trace,
            where="pre",
            color="#1f77b4",
            lw=1.4,
            label=f"trace, lambda = {lam:g} per step",
        )
        span = trace_span_steps(lam) * w
        ax.set_ylim(0, 1.4 * max(float(trace.max()), float(counts.max()), 1.0))
        ax.set_ylabel(f"{w:g} ms\nframes", fontsize=8)
        ax.text(
            0.99,
            0.92,
            f"T = {n} steps; the trace spans {trace_span_steps(lam):.0f} steps = {span:,.0f} ms",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=8,
            bbox=dict(facecolor="white", edgecolor="none", alpha=0.85, pad=1.5),
        )
    axes[1].legend(frameon=False, fontsize=7, loc="upper left")
    axes[-1].set_xlabel("time (ms)")
    axes[-1].set_xlim(0, duration_ms)
    if title:
        axes[0].set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def find_item(dataset, file_suffix: str) -> int:
    """Index of the first item of a :class:`stllr.data.TonicFrames` dataset that comes from the
    recording whose file path ends with ``file_suffix`` (DVS Gesture's per-recording ``.npy``,
    also through the training set's slices)."""
    base = dataset.events_dataset
    table = getattr(base, "table", None)
    files = list(getattr(getattr(base, "dataset", base), "data"))
    suffix = os.path.normpath(file_suffix)
    recs = [i for i, f in enumerate(files) if os.path.normpath(os.fspath(f)).endswith(suffix)]
    if not recs:
        raise KeyError(f"no recording ending with {file_suffix!r}")
    wanted = recs[0]
    for item, base_index in enumerate(dataset.indices):
        rec = int(table[base_index, 0]) if table is not None else int(base_index)
        if rec == wanted:
            return item
    raise KeyError(f"recording {file_suffix!r} is not in this split")


def moving_shapes_as_gesture(
    events: np.ndarray, scale: int = 4, time_scale: float = 7.5
) -> np.ndarray:
    """A moving_shapes sample (32x32, us) as the rows of a DVS Gesture ``.npy`` file: int64
    ``(N, 4)`` columns ``x, y, p, t_ms`` on the 128x128 sensor (each event becomes one event at the
    top-left pixel of its ``scale x scale`` block) with time stretched by ``time_scale`` (10 ms
    frames -> 75 ms, DVS Gesture's frame length). Synthetic content in the real file format."""
    t_ms = np.round(events["t"].astype(np.float64) * time_scale / 1000.0).astype(np.int64)
    out = np.stack(
        [
            events["x"].astype(np.int64) * scale,
            events["y"].astype(np.int64) * scale,
            events["p"].astype(np.int64),
            t_ms,
        ],
        axis=1,
    )
    return out[np.argsort(out[:, 3], kind="stable")]


def chirp_samples(n: int = 3, seed: int = 0, duration_s: float = 0.8, n_spikes: int = 1500) -> list:
    """Synthetic SHD-like samples ``(times_s, units, label)``: a band of active units sweeping
    up (or down) the 700 channels like a formant, plus background spikes. For the SHD file format
    only; they are not speech."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        k = int(0.85 * n_spikes)
        t = np.sort(rng.uniform(0.0, duration_s, k))
        lo, hi = rng.uniform(80, 250), rng.uniform(450, 650)
        centre = (
            lo + (hi - lo) * (t / duration_s) if i % 2 == 0 else hi - (hi - lo) * (t / duration_s)
        )
        units = np.clip(np.round(centre + rng.normal(0, 12, k)), 0, 699)
        t_bg = rng.uniform(0.0, duration_s, n_spikes - k)
        u_bg = rng.integers(0, 700, n_spikes - k)
        times = np.concatenate([t, t_bg]) + 0.05
        units = np.concatenate([units, u_bg]).astype(np.int64)
        order = np.argsort(times, kind="stable")
        samples.append((times[order], units[order], i % 20))
    return samples
