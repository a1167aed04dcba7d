"""THE loops over time, written once: :func:`stllr_window` (S-TLLR: a learning signal on the last
``window`` steps), :func:`bptt_through_time` (BPTT: every step with the graph) and
:func:`forward_through_time` (no learning). Inputs are time-major ``[T, B, ...]``
(:func:`time_major`). Built on them: one training batch (:func:`train_batch`, S-TLLR, S-TLLR
online, BPTT or BPTT on the window), an epoch of batches (:func:`run_epoch`), evaluation."""

from __future__ import annotations

import contextlib
import logging
import random
import sys
import time
from typing import Callable, ContextManager, Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stllr._base import reset_sequence
from stllr.deferral import deferred_updates
from stllr.training import distributed as D
from stllr.training.config import BPTT_MODES, TRAINING_MODES

__all__ = [
    "time_major",
    "LoopOutputs",
    "stllr_window",
    "bptt_through_time",
    "forward_through_time",
    "train_batch",
    "resolve_chunk",
    "check_chunk",
    "DEFAULT_CHUNK",
    "predict",
    "run_epoch",
    "evaluate",
    "seed_everything",
]

#: Learning steps per deferred weight-gradient GEMM in the ``stllr`` training mode
#: (:func:`stllr.deferred_updates`; benchmarks/README.md "Deferred weight gradients": 16 is as fast
#: as any larger chunk on the SHD net and holds a fraction of the memory).
DEFAULT_CHUNK = 16

#: The inputs the loops take: a ``[T, B, ...]`` tensor or any sequence of T step inputs ``[B, ...]``.
StepInputs = Sequence[torch.Tensor]


# ======================================================================================
# The loops over time
# ======================================================================================
def time_major(frames: torch.Tensor) -> torch.Tensor:
    """Loader batches ``[B, T, ...]`` -> contiguous ``[T, B, ...]`` (the loops run one step at a
    time)."""
    return frames.transpose(0, 1).contiguous()


class LoopOutputs(NamedTuple):
    """What a loop over time returns.

    ``pred``: the logits summed over all T steps, detached, ``[B, C]``; ``outputs``: the T
    per-step logits ``[B, C]`` (with ``keep_outputs``, else None): detached for S-TLLR and the
    forward-only pass, with their graph for BPTT."""

    pred: torch.Tensor
    outputs: Optional[List[torch.Tensor]]


def stllr_window(
    model: nn.Module,
    x: StepInputs,
    labels: torch.Tensor,
    loss_fn: Callable,
    window: int,
    *,
    before_forward: Optional[Callable[[int], None]] = None,
    after_backward: Optional[Callable[[int], None]] = None,
    step_context: Optional[Callable[[int, bool], ContextManager]] = None,
    keep_outputs: bool = False,
    chunk: int = 0,
) -> LoopOutputs:
    """One S-TLLR sequence, no optimizer step: the state is reset; the steps ``t < T - window``
    run under ``no_grad``; each later step calls ``loss_fn(out_t, labels).backward()``, so the
    rule's per-step gradients add up in ``.grad`` (not zeroed here).

    ``chunk``: 0 (default) adds each step's weight gradients into ``.grad`` at its backward; ``k >
    0`` defers them (:func:`stllr.deferred_updates`): one GEMM per ``k`` learning steps and one
    standardisation backward per sequence, the same ``.grad`` at the end (to rounding), faster;
    ``.grad`` is then complete only when this returns, and the weights must not change in between
    (``chunk=0`` for an optimizer step per learning step).

    x: ``[T, B, ...]`` (or a sequence of T inputs ``[B, ...]``); labels ``[B]``; ``window``: the
    learning steps (more than T: all). At each learning step ``t``, ``before_forward(t)`` runs
    before its forward (e.g. ``optimizer.zero_grad``) and ``after_backward(t)`` after its backward
    (e.g. read a recorded signal, or an optimizer step). ``step_context(t, learning)`` gives a
    context manager around step ``t``'s forward and backward (e.g. a MAC-counter section).
    Returns :class:`LoopOutputs` (outputs detached).
    """
    steps = len(x)
    start = max(0, steps - int(window))  # first step with a learning signal
    chunk = check_chunk(chunk)
    deferral = (
        deferred_updates(model, min(chunk, steps - start))
        if chunk and steps > start
        else contextlib.nullcontext()
    )
    reset_sequence(model)
    with deferral:
        return _stllr_steps(
            model,
            x,
            labels,
            loss_fn,
            start,
            before_forward,
            after_backward,
            step_context,
            keep_outputs,
        )


def check_chunk(chunk) -> int:
    """``chunk`` as an int >= 0 (0: per step), else a one-line ``ValueError`` naming it."""
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 0:
        raise ValueError(f"chunk: expected an int >= 0 (0 = per step), got {chunk!r}")
    return chunk


def _stllr_steps(
    model, x, labels, loss_fn, start, before_forward, after_backward, step_context, keep_outputs
) -> LoopOutputs:
    """The steps of :func:`stllr_window` (``start``: the first learning step)."""
    pred = None
    outputs: Optional[List[torch.Tensor]] = [] if keep_outputs else None
    for t in range(len(x)):
        learning = t >= start
        if learning and before_forward is not None:
            before_forward(t)
        with step_context(t, learning) if step_context is not None else contextlib.nullcontext():
            if not learning:
                with torch.no_grad():
                    out = model(x[t])
            else:
                out = model(x[t])
                loss_fn(out, labels).backward()
        if learning and after_backward is not None:
            after_backward(t)
        out = out.detach()
        pred = out if pred is None else pred + out
        if outputs is not None:
            outputs.append(out)
    return LoopOutputs(pred, outputs)


BPTT_LOSSES = ("sum", "window", "last")


def bptt_through_time(
    model: nn.Module,
    x: StepInputs,
    labels: Optional[torch.Tensor] = None,
    loss_fn: Optional[Callable] = None,
    *,
    loss: Optional[str] = "sum",
    window: Optional[int] = None,
    keep_outputs: bool = False,
) -> LoopOutputs:
    """One BPTT sequence, no optimizer step: the state is reset, every step runs with the graph,
    then one ``backward()`` of ``loss`` (gradients add up in ``.grad``, not zeroed here):

    - ``"sum"``: ``loss_fn(sum_t out_t, labels)`` (the BPTT training mode);
    - ``"window"``: ``sum_{t >= T - window} loss_fn(out_t, labels)``, each term added as its step
      runs (``bptt_window``: the loss S-TLLR descends, by exact gradients);
    - ``"last"``: ``loss_fn(out_{T-1}, labels)``;
    - None: no loss, no backward (take the losses of ``outputs`` yourself).

    x: ``[T, B, ...]`` (or a sequence of T inputs ``[B, ...]``); labels ``[B]``. Returns
    :class:`LoopOutputs`; its ``outputs`` keep their graph.
    """
    if loss is not None and loss not in BPTT_LOSSES:
        raise ValueError(f"loss: expected one of {BPTT_LOSSES} or None, got {loss!r}")
    if loss == "window" and window is None:
        raise ValueError("loss='window' needs window (the number of learning steps)")
    steps = len(x)
    start = max(0, steps - int(window)) if loss == "window" else steps
    reset_sequence(model)
    total = None
    value = 0.0
    outputs: Optional[List[torch.Tensor]] = [] if keep_outputs else None
    for t in range(steps):
        out = model(x[t])
        total = out if total is None else total + out
        if outputs is not None:
            outputs.append(out)
        if t >= start:
            value = value + loss_fn(out, labels)
    if loss == "sum":
        value = loss_fn(total, labels)
    elif loss == "last":
        value = loss_fn(out, labels)
    del out
    if loss is not None:
        value.backward()
    return LoopOutputs(total.detach(), outputs)


@torch.no_grad()
def forward_through_time(
    model: nn.Module, x: StepInputs, *, keep_outputs: bool = False
) -> LoopOutputs:
    """One sequence without learning (``no_grad``), the state reset first. x: ``[T, B, ...]`` (or
    a sequence of T inputs ``[B, ...]``). Returns :class:`LoopOutputs`."""
    reset_sequence(model)
    pred = None
    outputs: Optional[List[torch.Tensor]] = [] if keep_outputs else None
    for t in range(len(x)):
        out = model(x[t])
        pred = out if pred is None else pred + out
        if outputs is not None:
            outputs.append(out)
    return LoopOutputs(pred, outputs)


# ======================================================================================
# One batch, one epoch
# ======================================================================================
def train_batch(
    model: nn.Module,
    frames: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    loss_fn,
    mode: str = "stllr",
    window: int = 5,
    grad_sync: Optional[Callable[[], None]] = None,
    after_backward: Optional[Callable[[int], None]] = None,
    chunk: Optional[int] = None,
) -> torch.Tensor:
    """Train on one batch. frames: [B, T, ...] (batch-major, as the loaders give them), labels [B].

    ``chunk``: learning steps per deferred weight-gradient GEMM in the ``stllr`` mode
    (:func:`stllr.deferred_updates`; None: :data:`DEFAULT_CHUNK`, 0: per step); the other modes
    take none (``stllr_online`` steps the optimizer at every learning step).

    Returns the detached prediction (logits summed over all T), [B, classes]. ``grad_sync`` is
    called right before every optimizer step (data-parallel gradient averaging).
    ``after_backward(t)`` (S-TLLR modes) is called after the backward of each learning step ``t``,
    e.g. to read the learning signals a hook recorded (:mod:`stllr.studies.learning_signals`).
    """
    chunk = resolve_chunk(chunk, mode)
    x = time_major(frames)
    if mode in BPTT_MODES:
        optimizer.zero_grad(set_to_none=True)
        loss = "window" if mode == "bptt_window" else "sum"
        pred = bptt_through_time(model, x, labels, loss_fn, loss=loss, window=window).pred
    elif mode == "stllr":
        optimizer.zero_grad(set_to_none=True)
        pred = stllr_window(
            model, x, labels, loss_fn, window, after_backward=after_backward, chunk=chunk
        ).pred
    elif mode == "stllr_online":

        def step(t: int) -> None:  # an optimizer step after every learning step
            if after_backward is not None:
                after_backward(t)
            if grad_sync is not None:
                grad_sync()
            optimizer.step()

        return stllr_window(
            model,
            x,
            labels,
            loss_fn,
            window,
            before_forward=lambda t: optimizer.zero_grad(set_to_none=True),
            after_backward=step,
        ).pred
    else:
        raise ValueError(f"mode: expected one of {TRAINING_MODES}, got {mode!r}")
    if grad_sync is not None:
        grad_sync()
    optimizer.step()
    return pred


def resolve_chunk(chunk: Optional[int], mode: str) -> int:
    """The deferral chunk a training mode runs with: ``chunk`` (None: :data:`DEFAULT_CHUNK` in the
    ``stllr`` mode, 0 elsewhere). A chunk > 0 for another mode is refused: ``stllr_online``
    changes the weights at every learning step and BPTT has no per-step weight gradients."""
    if chunk is None:
        return DEFAULT_CHUNK if mode == "stllr" else 0
    chunk = check_chunk(chunk)
    if chunk and mode != "stllr":
        raise ValueError(
            f"chunk: deferred weight gradients need the stllr training mode (weights fixed for the "
            f"sequence); mode {mode!r} takes chunk 0 or None, got {chunk}"
        )
    return chunk


def predict(model: nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """Logits summed over all T for one batch (no learning). frames [B, T, ...] -> [B, classes]."""
    return forward_through_time(model, time_major(frames)).pred


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
    window: int = 5,
    device: torch.device = torch.device("cpu"),
    dtype: torch.dtype = torch.float32,
    max_batches: Optional[int] = None,
    ctx: Optional[D.DistContext] = None,
    progress: bool = False,
    desc: str = "",
    print_freq: int = 0,
    logger: Optional[logging.Logger] = None,
    train_step: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
    chunk: Optional[int] = None,
) -> Dict[str, float]:
    """One pass over ``loader``: training when ``optimizer`` is given, else evaluation.

    Frames are cast to ``dtype`` (the model's), labels to int64. ``train_step(frames, labels) ->
    pred [B, C]`` (training only) replaces :func:`train_batch` for each batch, e.g. to record
    something while training; it gets no ``grad_sync``. ``chunk``: :func:`train_batch`'s.

    Returns ``{"acc": %, "loss": mean loss of the summed logits, "samples": n, "time": s,
    "peak_memory_mb": ..., "memory_kind": ...}`` (peak memory:
    :class:`stllr.measure.PeakMemoryMeter`); with several ranks, acc/loss/samples are totals over
    all ranks.
    """
    from stllr.measure.peak import PeakMemoryMeter  # here: stllr.measure imports this module

    ctx = ctx or D.DistContext(device=device)
    training = optimizer is not None
    if training:
        resolve_chunk(chunk, mode)  # a bad chunk fails before the first batch
    model.train(training)
    grad_sync = (
        (lambda: D.allreduce_gradients(model.parameters(), ctx))
        if (training and ctx.enabled)
        else None
    )
    total = _num_batches(loader, max_batches)
    correct = 0.0
    loss_sum = 0.0
    count = 0.0
    bar = _progress_bar(total, desc, progress and ctx.is_main)
    meter = PeakMemoryMeter(device)
    try:
        with meter:
            start = time.perf_counter()
            for i, (frames, labels) in enumerate(loader):
                if max_batches and i >= max_batches:
                    break
                frames = frames.to(device, dtype=dtype, non_blocking=True)
                labels = labels.to(device, dtype=torch.int64, non_blocking=True).view(-1)
                if not training:
                    pred = predict(model, frames)
                elif train_step is not None:
                    pred = train_step(frames, labels)
                else:
                    if ctx.enabled:  # every rank runs the same number of steps (zero-padded)
                        steps = D.allreduce_max(frames.shape[1], ctx)
                        if steps > frames.shape[1]:
                            pad = frames.new_zeros(
                                (frames.shape[0], steps - frames.shape[1]) + frames.shape[2:]
                            )
                            frames = torch.cat((frames, pad), dim=1)
                    pred = train_batch(
                        model,
                        frames,
                        labels,
                        optimizer,
                        loss_fn,
                        mode,
                        window,
                        grad_sync,
                        chunk=chunk,
                    )
                with torch.no_grad():
                    batch_loss = float(loss_fn(pred, labels))
                    batch_correct = float((pred.argmax(1) == labels).sum())
                n = labels.shape[0]
                correct += batch_correct
                loss_sum += batch_loss * n
                count += n
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
            elapsed = time.perf_counter() - start
    finally:
        bar.close()
    correct, loss_sum, count = D.allreduce_sum([correct, loss_sum, count], ctx)
    if count == 0:
        raise RuntimeError(f"{desc or 'epoch'}: the data loader produced no batch")
    return {
        "acc": 100.0 * correct / count,
        "loss": loss_sum / count,
        "samples": int(count),
        "time": elapsed,
        "peak_memory_mb": meter.result.peak_bytes / 2**20,
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
