"""Shared plumbing of the procedural (generated, offline) tasks: a cached generator call and a
dataset that turns stored tonic events into frames with ``tonic.transforms.ToFrame``."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tonic.transforms import ToFrame

from ._cache import atomic_save_npz, cache_key, default_data_path

__all__ = ["load_or_generate", "EventFramesDataset", "procedural_cache_dir", "cache_file"]

#: Frames are precomputed (as uint8 counts) when they take at most this many bytes.
PRECOMPUTE_LIMIT_BYTES = 64 * 2**20


def procedural_cache_dir(data_path: str | os.PathLike | None) -> Path:
    """``<data_path>/procedural`` (``data_path`` None: :func:`default_data_path`)."""
    root = Path(data_path).expanduser() if data_path is not None else default_data_path()
    return root / "procedural"


def cache_file(kind: str, params: dict[str, Any], data_path: str | os.PathLike | None) -> Path:
    """Where :func:`load_or_generate` keeps the arrays for these parameters."""
    return procedural_cache_dir(data_path) / f"{kind}-{cache_key({'kind': kind, **params})}.npz"


def load_or_generate(
    kind: str,
    params: dict[str, Any],
    generate: Callable[[], dict[str, np.ndarray]],
    data_path: str | os.PathLike | None,
    cache: bool = True,
) -> tuple[dict[str, np.ndarray], Path | None]:
    """Returns ``generate()``'s arrays, from ``<cache>/<kind>-<key>.npz`` when present.

    The key hashes every generation parameter (and the cache version); the file is written
    atomically and also stores the parameters, which are checked on load. An unreadable or
    mismatching file is regenerated.
    """
    if not cache:
        return generate(), None
    path = cache_file(kind, params, data_path)
    expected = json.dumps(params, sort_keys=True)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["__params__"]) == expected:
                    return {k: z[k] for k in z.files if k != "__params__"}, path
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # corrupt or foreign file: rebuild it below
    arrays = generate()
    atomic_save_npz(path, __params__=np.array(expected), **arrays)
    return arrays, path


class EventFramesDataset(torch.utils.data.Dataset):
    """``(frames, label)`` from stored tonic events, framed with ``tonic.transforms.ToFrame``.

    Parameters:
        events: list of tonic structured arrays (one per sample), timestamps in microseconds.
        targets: int label per sample.
        sensor_size: tonic sensor size ``(W, H, P)``.
        n_steps: number of frames T; frames cover ``[0, n_steps * dt_us)``.
        dt_us: frame length in microseconds.
        frame_shape: per-step shape of the returned frames (the ToFrame output is reshaped).
        precompute: keep all frames in memory as uint8 counts (None: when they fit in 64 MiB).

    Returns per item ``(float32 tensor [n_steps, *frame_shape], int)``.
    """

    def __init__(
        self,
        events: Sequence[np.ndarray],
        targets: Sequence[int],
        *,
        sensor_size: tuple[int, int, int],
        n_steps: int,
        dt_us: int,
        frame_shape: tuple[int, ...],
        num_classes: int,
        classes: Sequence[str] | None = None,
        name: str = "",
        params: dict[str, Any] | None = None,
        precompute: bool | None = None,
    ):
        self._events = list(events)
        self.targets = np.asarray(targets, dtype=np.int64)
        if len(self._events) != len(self.targets):
            raise ValueError("events and targets must have the same length")
        self.sensor_size = tuple(sensor_size)
        self.n_steps = int(n_steps)
        self.dt_us = int(dt_us)
        self.frame_shape = tuple(frame_shape)
        self.num_classes = int(num_classes)
        self.classes = (
            list(classes) if classes is not None else [str(i) for i in range(num_classes)]
        )
        self.name = name
        self.params = dict(params or {})
        self.input_shape = self.frame_shape
        self.T = self.n_steps
        self.to_frame = ToFrame(
            sensor_size=self.sensor_size,
            time_window=self.dt_us,
            start_time=0,
            end_time=self.n_steps * self.dt_us,
        )
        # Precomputed frames are stored as uint8 counts (4x smaller than float32; converted per
        # item) when every count fits, which holds for these sparse tasks.
        nbytes = len(self) * self.n_steps * int(np.prod(self.frame_shape))
        if precompute is None:
            precompute = nbytes <= PRECOMPUTE_LIMIT_BYTES
        self._frames = None
        if precompute and len(self) > 0:
            store = np.empty((len(self), self.n_steps, *self.frame_shape), dtype=np.uint8)
            for i in range(len(self)):
                counts = self._counts(i)
                if counts.size and counts.max() > 255:
                    store = None
                    break
                store[i] = counts
            self._frames = store

    def __len__(self) -> int:
        return len(self._events)

    def events(self, index: int) -> np.ndarray:
        """A copy of the tonic events of sample ``index``."""
        return self._events[index].copy()

    def _counts(self, index: int) -> np.ndarray:
        """ToFrame counts of sample ``index`` reshaped to ``[n_steps, *frame_shape]``."""
        events = self._events[index]
        if len(events) == 0:
            return np.zeros((self.n_steps, *self.frame_shape), dtype=np.int16)
        frames = self.to_frame(events.copy())  # ToFrame may write to events["p"]
        return frames.reshape(self.n_steps, *self.frame_shape)

    def __getitem__(self, index: int):
        # numpy casts: cheaper than torch ops per item (no intra-op thread pool involved)
        counts = self._frames[index] if self._frames is not None else self._counts(index)
        return torch.from_numpy(counts.astype(np.float32)), int(self.targets[index])

    def __repr__(self) -> str:
        return f"EventFramesDataset({self.name!r}, n={len(self)}, T={self.n_steps}, frame_shape={self.frame_shape})"
