"""The machine a measurement ran on: GEMM throughput, load average, a one-line description."""

from __future__ import annotations

import os
import platform
import time

import torch

__all__ = ["load_average", "machine_description", "gemm_throughput"]


# =========================================================================================
# Machine GEMM throughput
# =========================================================================================
def gemm_throughput(n: int = 2048, repeats: int = 5, device=None, dtype=torch.float32) -> float:
    """Measured MAC/s of an n x n x n matmul on ``device`` (best of ``repeats``)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return n**3 / best


# ======================================================================================
# Describing the machine a benchmark ran on
# ======================================================================================
def load_average() -> str:
    """1-minute load average (other processes share the CPUs: timings depend on it)."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


def machine_description() -> str:
    """CPU model, logical CPUs and vector ISA, torch version and threads, and the GPU if any."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    text = (
        f"{cpu}, {os.cpu_count()} logical CPUs ({torch.backends.cpu.get_cpu_capability()}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name()}"
    return text
