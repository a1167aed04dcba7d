"""Event- and frame-level transforms used by the loaders, and the padding collate function.

Event transforms take tonic structured arrays; frame transforms take float tensors shaped
``[T, C, H, W]`` (vision) and act identically on every time step, like torchvision's transforms on
a stacked video tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tonic.slicers import SliceByTime

__all__ = [
    "FirstWindow",
    "Compose",
    "Resize",
    "RandomCrop",
    "Normalize",
    "pad_collate",
]


@dataclass(frozen=True)
class FirstWindow:
    """Keeps the events of the first ``duration`` after the first event (first slice of tonic's
    ``SliceByTime``): ``t0 <= t < t0 + duration``.

    Parameters:
        duration (float): window length, same unit as the timestamps (microseconds in tonic).

    Example:
        >>> transform = FirstWindow(duration=1_000_000)  # first second of an SHD sample
    """

    duration: float

    def __call__(self, events: np.ndarray) -> np.ndarray:
        if len(events) == 0:
            return events
        slicer = SliceByTime(time_window=self.duration)
        metadata = slicer.get_slice_metadata(events, None)[:1]
        slices, _ = slicer.slice_with_metadata(events, None, metadata)
        return slices[0]


class Compose:
    """Applies callables in order (unlike ``tonic.transforms.Compose`` it does not stop early on
    empty inputs, so it is safe on frame tensors)."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t}" for t in self.transforms)
        return f"{self.__class__.__name__}({inner}\n)"


@dataclass(frozen=True)
class Resize:
    """Resizes frames ``[T, C, H, W] -> [T, C, size, size]`` with bilinear, antialiased
    interpolation (what ``torchvision.transforms.Resize(size)`` does on tensors).

    Parameters:
        size (int or (h, w)): output spatial size.
    """

    size: int | tuple[int, int]

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        size = (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)
        if tuple(frames.shape[-2:]) == size:
            return frames
        if frames.shape[0] == 0:
            return frames.new_zeros((*frames.shape[:-2], *size))
        return F.interpolate(
            frames.float(), size=size, mode="bilinear", align_corners=False, antialias=True
        )


@dataclass(frozen=True)
class RandomCrop:
    """Zero-pads by ``padding`` on every side, then crops ``size`` at a random location; the same
    crop is used for all time steps (``torchvision.transforms.RandomCrop(size, padding)`` on
    ``[T, C, H, W]``). Draws from torch's global RNG (seeded per DataLoader worker).

    Parameters:
        size (int or (h, w)): output spatial size.
        padding (int): zeros added on each border before cropping.
    """

    size: int | tuple[int, int]
    padding: int = 0

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        th, tw = (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)
        if self.padding > 0:
            p = self.padding
            frames = F.pad(frames, (p, p, p, p))
        h, w = frames.shape[-2:]
        if h < th or w < tw:
            raise ValueError(f"RandomCrop: input {h}x{w} (after padding) is smaller than {th}x{tw}")
        i = int(torch.randint(0, h - th + 1, (1,)))
        j = int(torch.randint(0, w - tw + 1, (1,)))
        return frames[..., i : i + th, j : j + tw]


@dataclass(frozen=True)
class Normalize:
    """Per-channel ``(x - mean) / std`` on frames ``[T, C, H, W]``.

    Parameters:
        mean (sequence of C floats), std (sequence of C floats).
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        mean = torch.as_tensor(self.mean, dtype=frames.dtype).view(-1, 1, 1)
        std = torch.as_tensor(self.std, dtype=frames.dtype).view(-1, 1, 1)
        return (frames - mean) / std


def pad_collate(batch, batch_first: bool = True):
    """Collates ``(frames [T_i, ...], label)`` pairs into ``(frames, labels)``.

    Frames are zero-padded at the end of the time axis to the batch's longest ``T`` (as
    ``tonic.collation.PadTensors``) and returned as float32 ``[B, T_max, ...]`` (``[T_max, B, ...]``
    when ``batch_first`` is False); labels are an int64 tensor ``[B]``.
    """
    frames = [torch.as_tensor(f) for f, _ in batch]
    labels = torch.as_tensor([int(y) for _, y in batch], dtype=torch.int64)
    t_max = max(f.shape[0] for f in frames)
    out = frames[0].new_zeros((len(frames), t_max, *frames[0].shape[1:]), dtype=torch.float32)
    for i, f in enumerate(frames):
        if f.shape[1:] != frames[0].shape[1:]:
            raise ValueError(
                f"pad_collate: sample {i} has per-step shape {tuple(f.shape[1:])}, "
                f"expected {tuple(frames[0].shape[1:])}"
            )
        out[i, : f.shape[0]] = f
    if not batch_first:
        out = out.transpose(0, 1)
    return out, labels
