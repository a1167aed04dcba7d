"""Moving shapes: a small DVS-like direction-of-motion task for convolutional SNNs.

A shape (bar, square or cross; random size, bar orientation, speed and start) moves in a
straight line across a ``size x size`` sensor for ``n_steps`` frames; the class is the direction
of motion, one of ``n_classes`` (4 or 8) evenly spaced angles: class ``k`` moves at
``360 k / n_classes`` degrees counter-clockwise from +x (east), image rows growing downwards,
so for 4 classes: 0 east, 1 north, 2 west, 3 south.

Events are simulated like a DVS: the shape is rasterised ``substeps`` times per frame and a
pixel whose brightness rises emits an ON event (``p = 1``), one whose brightness falls an OFF
event (``p = 0``). A bright shape gives ON at its leading and OFF at its trailing edge; a dark
shape (probability ``p_dark``) the reverse. Uniform noise events are added (``noise_per_frame``
on average per frame, random polarity).

Why it needs temporal integration: with random contrast, a single frame of a bright shape
moving east is distributed like one of a dark shape moving west, and with 4 directions the
event count per frame has the same distribution in every class (random bar orientation,
symmetric squares and crosses). Only the displacement of the edges over several frames tells
the direction. (With 8 classes the diagonal directions produce somewhat different counts.)

Events: tonic structured arrays ``(x, y, t, p)`` (``tonic.io.events_struct``), ``t`` in
microseconds in ``[0, n_steps * dt_us)``, sensor size ``(size, size, 2)``. Frames:
``tonic.transforms.ToFrame(time_window=dt_us)`` counts -> float32 ``[n_steps, 2, size, size]``.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np
from tonic.io import events_struct

from .procedural import EventFramesDataset, load_or_generate

__all__ = [
    "MOVING_SHAPES_DEFAULTS",
    "SHAPES",
    "generate_moving_shapes",
    "moving_shapes",
    "direction_vectors",
]

SHAPES = ("bar", "square", "cross")

MOVING_SHAPES_DEFAULTS: dict[str, Any] = dict(
    n_classes=4,
    size=32,
    n_steps=20,
    n_train_per_class=200,
    n_test_per_class=50,
    shapes=SHAPES,
    shape_size=(5, 9),
    thickness=2,
    speed=(0.6, 1.0),
    substeps=4,
    noise_per_frame=4.0,
    p_dark=0.5,
    dt_us=10_000,
    seed=0,
)


def direction_vectors(n_classes: int) -> np.ndarray:
    """Unit motion vector ``(dx, dy)`` of every class in pixel coordinates (y grows downwards)."""
    angles = 2 * np.pi * np.arange(n_classes) / n_classes
    return np.stack([np.cos(angles), -np.sin(angles)], axis=1)


def _validate(p: dict[str, Any]) -> None:
    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if p["n_classes"] not in (4, 8):
        raise ValueError(f"n_classes must be 4 or 8, got {p['n_classes']!r}")
    for key in ("size", "n_steps", "substeps", "dt_us", "thickness"):
        if not is_int(p[key]) or p[key] < 1:
            raise ValueError(f"{key} must be a positive integer, got {p[key]!r}")
    if p["size"] < 8:
        raise ValueError(f"size must be >= 8, got {p['size']!r}")
    for key in ("n_train_per_class", "n_test_per_class", "seed"):
        if not is_int(p[key]) or p[key] < 0:
            raise ValueError(f"{key} must be a non-negative integer, got {p[key]!r}")
    shapes = p["shapes"]
    if not shapes or any(s not in SHAPES for s in shapes):
        raise ValueError(f"shapes must be a non-empty subset of {SHAPES}, got {shapes!r}")
    lo, hi = p["shape_size"]
    if not (is_int(lo) and is_int(hi) and 1 <= lo <= hi < p["size"]):
        raise ValueError(
            f"shape_size must be (min, max) integers with 1 <= min <= max < size, got {p['shape_size']!r}"
        )
    vlo, vhi = p["speed"]
    if not (0 < vlo <= vhi):
        raise ValueError(
            f"speed must be (min, max) pixels per frame with 0 < min <= max, got {p['speed']!r}"
        )
    if not (p["noise_per_frame"] >= 0):
        raise ValueError(f"noise_per_frame must be >= 0, got {p['noise_per_frame']!r}")
    if not (0.0 <= p["p_dark"] <= 1.0):
        raise ValueError(f"p_dark must be in [0, 1], got {p['p_dark']!r}")


@functools.lru_cache(maxsize=256)
def _shape_offsets(kind: str, s: int, thickness: int, horizontal: bool) -> np.ndarray:
    """Integer pixel offsets ``[M, 2]`` (dx, dy) of a shape centred on the origin (read-only)."""
    span = np.arange(s) - (s - 1) // 2
    thick = np.arange(thickness) - (thickness - 1) // 2
    if kind == "square":
        dx, dy = np.meshgrid(span, span)
    elif kind == "bar":
        a, b = np.meshgrid(span, thick)
        dx, dy = (a, b) if horizontal else (b, a)
    else:  # cross
        a, b = np.meshgrid(span, thick)
        dx = np.concatenate([a.ravel(), b.ravel()])
        dy = np.concatenate([b.ravel(), a.ravel()])
    off = np.unique(np.stack([np.ravel(dx), np.ravel(dy)], axis=1), axis=0).astype(np.int64)
    off.setflags(write=False)
    return off


def _one_sample(rng: np.random.Generator, label: int, p: dict[str, Any], dirs: np.ndarray):
    size, T, sub, dt = p["size"], p["n_steps"], p["substeps"], p["dt_us"]
    kind = p["shapes"][rng.integers(len(p["shapes"]))]
    s = int(rng.integers(p["shape_size"][0], p["shape_size"][1] + 1))
    horizontal = bool(rng.integers(2))
    dark = bool(rng.random() < p["p_dark"])
    speed = float(rng.uniform(*p["speed"]))
    off = _shape_offsets(kind, s, p["thickness"], horizontal)
    d = dirs[label]
    travel = d * speed * T
    # Start so that the whole path stays on the sensor (when it fits).
    lo = -off.min(0).astype(float)
    hi = size - 1 - off.max(0).astype(float)
    start_lo = np.maximum(lo, lo - travel)
    start_hi = np.minimum(hi, hi - travel)
    start_hi = np.maximum(start_hi, start_lo)
    start = rng.uniform(start_lo, start_hi)
    taus = np.arange(T * sub + 1) / sub  # in frames
    anchors = np.rint(start[None, :] + taus[:, None] * d[None, :] * speed).astype(np.int64)
    px = anchors[:, None, 0] + off[None, :, 0]  # [J, M]
    py = anchors[:, None, 1] + off[None, :, 1]
    jj = np.broadcast_to(np.arange(len(taus))[:, None], px.shape)
    keep = (px >= 0) & (px < size) & (py >= 0) & (py < size)
    jj, px, py = jj[keep], px[keep], py[keep]
    parts = []
    if len(px):
        # rasterise inside the bounding box of the whole path only
        x0, y0 = px.min(), py.min()
        masks = np.zeros((len(taus), py.max() - y0 + 1, px.max() - x0 + 1), dtype=np.int8)
        masks[jj, py - y0, px - x0] = 1
        j, yy, xx = np.nonzero(np.diff(masks, axis=0))
        covered = masks[j + 1, yy, xx] == 1  # pixel starts (True) / stops (False) being covered
        # covered by a bright shape -> brighter -> ON; by a dark one -> OFF
        pol = covered != dark
        t = ((j + rng.random(len(j))) / sub * dt).astype(np.int64)
        parts.append((xx + x0, yy + y0, t, pol))
    n_noise = int(rng.poisson(p["noise_per_frame"] * T))
    parts.append(
        (
            rng.integers(0, size, n_noise),
            rng.integers(0, size, n_noise),
            rng.integers(0, T * dt, n_noise),
            rng.integers(0, 2, n_noise).astype(bool),
        )
    )
    x, y, t, pol = (np.concatenate([part[i] for part in parts]) for i in range(4))
    t = np.clip(t, 0, T * dt - 1)
    order = np.argsort(t, kind="stable")
    meta = (SHAPES.index(kind), s, int(horizontal), int(dark), speed, start[0], start[1])
    return x[order], y[order], t[order], pol[order], meta


def generate_moving_shapes(**p: Any) -> dict[str, np.ndarray]:
    """Events of the moving-shapes task (deterministic in all parameters).

    Returns, per split (``train_`` / ``test_`` prefix): ``x, y, t, p`` concatenated over
    samples, ``offsets`` ``[N + 1]`` (sample ``i`` is ``offsets[i]:offsets[i+1]``), ``y_label``
    ``[N]`` and ``meta`` ``[N, 7]`` = (shape index in SHAPES, size, horizontal, dark, speed,
    start x, start y).
    """
    p = {**MOVING_SHAPES_DEFAULTS, **p}
    _validate(p)
    dirs = direction_vectors(p["n_classes"])
    out: dict[str, np.ndarray] = {}
    for split_id, split in enumerate(("train", "test")):
        n = p[f"n_{split}_per_class"]
        cols: dict[str, list] = {k: [] for k in ("x", "y", "t", "p", "label", "meta", "count")}
        for c in range(p["n_classes"]):
            rng = np.random.default_rng(
                np.random.SeedSequence([int(p["seed"]), 0x4D4F5645, split_id, c])
            )
            for _ in range(n):
                x, y, t, pol, meta = _one_sample(rng, c, p, dirs)
                for key, val in zip(("x", "y", "t", "p"), (x, y, t, pol)):
                    cols[key].append(val)
                cols["label"].append(c)
                cols["meta"].append(meta)
                cols["count"].append(len(t))
        out[f"{split}_x"] = np.concatenate(cols["x"] or [np.zeros(0)]).astype(np.int16)
        out[f"{split}_y"] = np.concatenate(cols["y"] or [np.zeros(0)]).astype(np.int16)
        out[f"{split}_t"] = np.concatenate(cols["t"] or [np.zeros(0)]).astype(np.int64)
        out[f"{split}_p"] = np.concatenate(cols["p"] or [np.zeros(0)]).astype(bool)
        out[f"{split}_offsets"] = np.concatenate(
            [[0], np.cumsum(cols["count"], dtype=np.int64)]
        ).astype(np.int64)
        out[f"{split}_y_label"] = np.asarray(cols["label"], dtype=np.int64)
        out[f"{split}_meta"] = np.asarray(cols["meta"], dtype=np.float64).reshape(-1, 7)
    return out


def _split_events(arrays: dict[str, np.ndarray], split: str) -> list[np.ndarray]:
    offsets = arrays[f"{split}_offsets"]
    events = []
    for i in range(len(offsets) - 1):
        a, b = offsets[i], offsets[i + 1]
        ev = np.empty(b - a, dtype=events_struct)
        ev["x"], ev["y"] = arrays[f"{split}_x"][a:b], arrays[f"{split}_y"][a:b]
        ev["t"], ev["p"] = arrays[f"{split}_t"][a:b], arrays[f"{split}_p"][a:b]
        events.append(ev)
    return events


def moving_shapes(
    data_path: str | os.PathLike | None = None,
    train: bool = True,
    *,
    cache: bool = True,
    precompute: bool | None = None,
    **params: Any,
) -> EventFramesDataset:
    """The moving-shapes task as a dataset of ``(float32 [n_steps, 2, size, size], label)``.

    Parameters are those of :data:`MOVING_SHAPES_DEFAULTS` (``n_classes=4, size=32,
    n_steps=20, n_train_per_class=200, n_test_per_class=50, shapes=("bar", "square", "cross"),
    shape_size=(5, 9), thickness=2, speed=(0.6, 1.0)`` px/frame, ``substeps=4,
    noise_per_frame=4.0, p_dark=0.5, dt_us=10_000, seed=0``). Generated events are cached in
    ``<data_path>/procedural``. ``dataset.meta`` holds per-sample generation metadata.
    """
    unknown = sorted(set(params) - set(MOVING_SHAPES_DEFAULTS))
    if unknown:
        raise TypeError(
            f"unknown moving_shapes option(s) {unknown}; valid: "
            f"{sorted([*MOVING_SHAPES_DEFAULTS, 'cache', 'precompute'])}"
        )
    p = {**MOVING_SHAPES_DEFAULTS, **params}
    p["shapes"] = tuple(p["shapes"]) if not isinstance(p["shapes"], str) else (p["shapes"],)
    p["shape_size"] = tuple(p["shape_size"])
    p["speed"] = tuple(float(v) for v in p["speed"])
    p["noise_per_frame"] = float(p["noise_per_frame"])
    p["p_dark"] = float(p["p_dark"])
    _validate(p)
    key_params = {
        **p,
        "shapes": list(p["shapes"]),
        "shape_size": list(p["shape_size"]),
        "speed": list(p["speed"]),
    }
    arrays, path = load_or_generate(
        "moving_shapes", key_params, lambda: generate_moving_shapes(**p), data_path, cache=cache
    )
    split = "train" if train else "test"
    size = p["size"]
    ds = EventFramesDataset(
        _split_events(arrays, split),
        arrays[f"{split}_y_label"],
        sensor_size=(size, size, 2),
        n_steps=p["n_steps"],
        dt_us=p["dt_us"],
        frame_shape=(2, size, size),
        num_classes=p["n_classes"],
        classes=[f"{round(360 * k / p['n_classes'])} deg" for k in range(p["n_classes"])],
        name="moving_shapes",
        params=p,
        precompute=precompute,
    )
    ds.meta = arrays[f"{split}_meta"]
    ds.cache_file = path
    return ds
