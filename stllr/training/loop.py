"""THE training loops: one batch trained with S-TLLR (learning signal on the last ``delay_ls``
steps), S-TLLR online, BPTT or BPTT on the window; an epoch of batches; evaluation."""

from __future__ import annotations

import logging
import random
import sys
import time
from typing import Callable, Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stllr.training import distributed as D
from stllr.training.config import BPTT_MODES, TRAINING_MODES

__all__ = ["train_batch", "run_epoch", "evaluate", "seed_everything"]


# ======================================================================================
# One batch, one epoch
# ======================================================================================
def _time_major(frames: torch.Tensor) -> torch.Tensor:
    """[B, T, ...] -> contiguous [T, B, ...]."""
    return frames.transpose(0, 1).contiguous()


def train_batch(
    model: nn.Module,
    frames: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    loss_fn,
    mode: str = "stllr",
    delay_ls: int = 5,
    grad_sync: Optional[Callable[[], None]] = None,
    after_backward: Optional[Callable[[int], None]] = None,
) -> torch.Tensor:
    """Train on one batch. frames: [B, T, ...] (batch-major, as the loaders give them), labels [B].

    Returns the detached prediction (logits summed over all T), [B, classes]. ``grad_sync`` is
    called right before every optimizer step (data-parallel gradient averaging).
    ``after_backward(t)`` (S-TLLR modes) is called after the backward of each learning step ``t``,
    e.g. to read the learning signals a hook recorded (:mod:`stllr.studies.learning_signals`).
    """
    x = _time_major(frames)
    steps = x.shape[0]
    start = max(0, steps - int(delay_ls))  # first step with a learning signal (t >= T - delay_ls)
    model.reset_state()
    pred = None
    if mode in BPTT_MODES:
        optimizer.zero_grad(set_to_none=True)
        total = None
        loss = 0.0
        for t in range(steps):
            out = model(x[t])
            total = out if total is None else total + out
            if mode == "bptt_window" and t >= start:
                loss = loss + loss_fn(out, labels)
        if mode == "bptt":
            loss = loss_fn(total, labels)
        loss.backward()
        if grad_sync is not None:
            grad_sync()
        optimizer.step()
        return total.detach()
    if mode not in ("stllr", "stllr_online"):
        raise ValueError(f"mode: expected one of {TRAINING_MODES}, got {mode!r}")
    online = mode == "stllr_online"
    if not online:
        optimizer.zero_grad(set_to_none=True)
    for t in range(steps):
        if t < start:
            with torch.no_grad():
                out = model(x[t])
        else:
            if online:
                optimizer.zero_grad(set_to_none=True)
            out = model(x[t])
            loss_fn(out, labels).backward()
            if after_backward is not None:
                after_backward(t)
            if online:
                if grad_sync is not None:
                    grad_sync()
                optimizer.step()
        out = out.detach()
        pred = out if pred is None else pred + out
    if not online:
        if grad_sync is not None:
            grad_sync()
        optimizer.step()
    return pred


@torch.no_grad()
def predict(model: nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """Logits summed over all T for one batch (no learning). frames [B, T, ...] -> [B, classes]."""
    x = _time_major(frames)
    model.reset_state()
    pred = None
    for t in range(x.shape[0]):
        out = model(x[t])
        pred = out if pred is None else pred + out
    return pred


class _MemoryMeter:
    """Peak memory over an epoch: CUDA max_memory_allocated, or process RSS sampled per batch
    (approximate: peaks between two samples are missed)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.peak = 0
        self._proc = None
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)
            self.device = device
        else:
            try:
                import psutil

                self._proc = psutil.Process()
            except ImportError:  # pragma: no cover
                self._proc = None
        self.sample()

    @property
    def kind(self) -> str:
        return "cuda_max_memory_allocated" if self.cuda else "cpu_rss_sampled_approximate"

    def sample(self) -> None:
        if self.cuda:
            return
        if self._proc is not None:
            self.peak = max(self.peak, self._proc.memory_info().rss)
        else:  # pragma: no cover
            import resource

            self.peak = max(self.peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)

    def peak_mb(self) -> float:
        if self.cuda:
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        self.sample()
        return self.peak / 2**20


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        disable=not enabled,
        leave=False,
        dynamic_ncols=True,
        file=sys.stderr,
    )


def _num_batches(loader, max_batches: Optional[int]) -> int:
    try:
        n = len(loader)
    except TypeError:
        n = max_batches or 0
    return min(n, max_batches) if max_batches else n


def run_epoch(
    model: nn.Module,
    loader,
    *,
    optimizer=None,
    loss_fn,
    mode: str = "stllr",
    delay_ls: int = 5,
    device: torch.device = torch.device("cpu"),
    max_batches: Optional[int] = None,
    ctx: Optional[D.DistContext] = None,
    progress: bool = False,
    desc: str = "",
    print_freq: int = 0,
    logger: Optional[logging.Logger] = None,
) -> Dict[str, float]:
    """One pass over ``loader``: training when ``optimizer`` is given, else evaluation.

    Returns ``{"acc": %, "loss": mean loss of the summed logits, "samples": n, "time": s,
    "peak_memory_mb": ..., "memory_kind": ...}``; with several ranks, acc/loss/samples are totals
    over all ranks.
    """
    ctx = ctx or D.DistContext(device=device)
    training = optimizer is not None
    model.train(training)
    grad_sync = (
        (lambda: D.allreduce_gradients(model.parameters(), ctx))
        if (training and ctx.enabled)
        else None
    )
    meter = _MemoryMeter(device)
    total = _num_batches(loader, max_batches)
    correct = 0.0
    loss_sum = 0.0
    count = 0.0
    start = time.perf_counter()
    bar = _progress_bar(total, desc, progress and ctx.is_main)
    try:
        for i, (frames, labels) in enumerate(loader):
            if max_batches and i >= max_batches:
                break
            frames = frames.to(device, dtype=torch.float32, non_blocking=True)
            labels = labels.to(device, dtype=torch.int64, non_blocking=True).view(-1)
            if training:
                if ctx.enabled:  # every rank runs the same number of steps (zero-padded at the end)
                    steps = D.allreduce_max(frames.shape[1], ctx)
                    if steps > frames.shape[1]:
                        pad = frames.new_zeros(
                            (frames.shape[0], steps - frames.shape[1]) + frames.shape[2:]
                        )
                        frames = torch.cat((frames, pad), dim=1)
                pred = train_batch(
                    model, frames, labels, optimizer, loss_fn, mode, delay_ls, grad_sync
                )
            else:
                pred = predict(model, frames)
            with torch.no_grad():
                batch_loss = float(loss_fn(pred, labels))
                batch_correct = float((pred.argmax(1) == labels).sum())
            n = labels.shape[0]
            correct += batch_correct
            loss_sum += batch_loss * n
            count += n
            meter.sample()
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / count:.4f}", acc=f"{100 * correct / count:.2f}")
            if logger is not None and print_freq and (i + 1) % print_freq == 0:
                logger.info(
                    "%s [%d/%d] loss %.4f acc %.2f",
                    desc,
                    i + 1,
                    total,
                    loss_sum / count,
                    100 * correct / count,
                )
    finally:
        bar.close()
    elapsed = time.perf_counter() - start
    correct, loss_sum, count = D.allreduce_sum([correct, loss_sum, count], ctx)
    if count == 0:
        raise RuntimeError(f"{desc or 'epoch'}: the data loader produced no batch")
    return {
        "acc": 100.0 * correct / count,
        "loss": loss_sum / count,
        "samples": int(count),
        "time": elapsed,
        "peak_memory_mb": meter.peak_mb(),
        "memory_kind": meter.kind,
    }


def evaluate(
    model: nn.Module,
    loader,
    loss_fn=None,
    device=torch.device("cpu"),
    max_batches=None,
    ctx: Optional[D.DistContext] = None,
    progress: bool = False,
    desc: str = "test",
) -> Dict[str, float]:
    """Accuracy (%) and mean loss of the summed logits over ``loader`` (no learning)."""
    if loss_fn is None:
        loss_fn = F.cross_entropy
    return run_epoch(
        model,
        loader,
        optimizer=None,
        loss_fn=loss_fn,
        device=device,
        max_batches=max_batches,
        ctx=ctx,
        progress=progress,
        desc=desc,
    )


# ======================================================================================
# Reproducibility and files
# ======================================================================================
def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and all GPUs)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
