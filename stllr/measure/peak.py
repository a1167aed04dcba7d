"""Peak memory of a block: ``torch.cuda.max_memory_allocated`` on GPU, the process's resident
set on CPU."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Optional, Union

import torch

__all__ = ["PeakMemory", "PeakMemoryMeter"]


# =========================================================================================
# Peak memory (GPU allocator / process RSS)
# =========================================================================================
@dataclass
class PeakMemory:
    """Peak memory over a region. ``increase_bytes`` = peak - memory at the start."""

    device: str
    peak_bytes: int
    start_bytes: int
    increase_bytes: int
    approximate: bool
    method: str

    def as_dict(self) -> dict:
        return asdict(self)


def _read_status_kb(field_name: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"^{field_name}:\s+(\d+)\s+kB", f.read(), re.M)
        return int(m.group(1)) * 1024 if m else None
    except OSError:
        return None


def _current_rss() -> int:
    rss = _read_status_kb("VmRSS")
    if rss is not None:
        return rss
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:
        return 0


class PeakMemoryMeter:
    """Context manager measuring peak memory of a region.

    CUDA devices: exact allocator peak (``torch.cuda.max_memory_allocated`` after
    ``reset_peak_memory_stats``). CPU: the process's peak resident set size (``VmHWM``, reset
    by writing ``5`` to ``/proc/self/clear_refs``); falls back to ``ru_maxrss`` (the peak over the
    whole process life) where that is not possible. CPU numbers include the allocator's caching,
    Python and everything else in the process: approximate (``approximate=True``); entering a
    meter on CPU resets the peak that an enclosing meter reads.
    """

    def __init__(self, device: Union[str, torch.device, None] = None):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.result: Optional[PeakMemory] = None
        #: short name of the method (set on entering): ``cuda_max_memory_allocated``,
        #: ``cpu_peak_rss_approximate`` (VmHWM) or ``cpu_process_max_rss_approximate`` (ru_maxrss)
        self.kind: Optional[str] = None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            self._method = "torch.cuda.max_memory_allocated"
            self.kind = "cuda_max_memory_allocated"
        else:
            self._method = "VmHWM (peak RSS, reset via /proc/self/clear_refs)"
            self.kind = "cpu_peak_rss_approximate"
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                self._method = "ru_maxrss (peak RSS of the whole process life)"
                self.kind = "cpu_process_max_rss_approximate"
            self._start = _current_rss()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            approx = False
        else:
            peak = _read_status_kb("VmHWM") if self._method.startswith("VmHWM") else None
            if peak is None:
                import resource

                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            approx = True
        self.result = PeakMemory(
            str(self.device),
            int(peak),
            int(self._start),
            int(max(peak - self._start, 0)),
            approx,
            self._method,
        )
        return False
