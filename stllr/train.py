"""Training and evaluation of the registry's models with S-TLLR or BPTT, the way the reference's
``utils/train.py`` does it, plus resumable checkpoints, metrics files and data parallelism.

Training modes (one batch; every model's state is reset at the start of a batch):

- ``stllr`` (default): run all T steps; for each of the last ``delay_ls`` steps
  (``t >= T - delay_ls``) call ``loss(out_t, y).backward()``; the rule's gradients sum over the
  window; ONE optimizer step per batch. Steps before the window run under ``torch.no_grad()``.
- ``stllr_online``: same window, but zero_grad / backward / optimizer step at every window step
  (weights change mid-sequence). Unlike the reference, the prediction sum is accumulated from
  detached logits, so no step's graph outlives its backward (the reference leaks them all).
- ``bptt``: ``loss(sum_t out_t, y)``, one backward through time, one step (BPTT twins).
- ``bptt_window`` (not in the reference): ``sum_{t >= T - delay_ls} loss(out_t, y)``, one backward
  through time: the loss S-TLLR's window differentiates, with exact credit assignment through
  time (a control for short learning windows; notebook 04).

Prediction, accuracy and the reported loss use the logits summed over all T steps.

Entry points: :func:`train` (a whole run: trials x epochs, files in ``save_path``),
:func:`evaluate_checkpoint`, and the building blocks :func:`train_batch`, :func:`run_epoch`,
:func:`evaluate`, :func:`make_optimizer`, :func:`make_scheduler`, :func:`make_loss`.
"""
from __future__ import annotations

import ast
import contextlib
import csv
import dataclasses
import io
import json
import logging
import math
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import distributed as D
from .functional import CLI_DEFAULT_FACTORS, check_factors
from .models import (
    ARCH_ALIASES, build_model, get_model_spec, load_reference_weights, normalize_feedback_mode,
    normalize_pooling, resolve_activation, count_parameters,
)

__all__ = [
    "TrainConfig", "ConfigError", "CheckpointError", "validate_config", "train", "train_trial", "train_batch",
    "run_epoch",
    "evaluate", "evaluate_checkpoint", "make_optimizer", "make_scheduler", "make_loss", "seed_everything",
    "load_checkpoint", "load_model_weights", "DATASETS", "TRAINING_MODES", "BPTT_MODES", "OPTIMIZERS", "LOSSES",
    "normalize_dataset", "checkpoint_paths", "atomic_torch_save", "atomic_write_text",
]

log = logging.getLogger("stllr.train")

#: ``stllr``: the rule, one optimizer step per batch; ``stllr_online``: one step per learning step;
#: ``bptt``: exact gradient of the loss of the logits summed over all T (the reference's BPTT);
#: ``bptt_window``: exact gradient of the per-step losses of the last ``delay_ls`` steps, the loss
#: S-TLLR's window differentiates (a control: same loss, credit assignment through time).
TRAINING_MODES = ("stllr", "stllr_online", "bptt", "bptt_window")
BPTT_MODES = ("bptt", "bptt_window")
#: accepted spellings (lower case) -> canonical name
OPTIMIZERS = {"adam": "Adam", "sgd": "SGD", "nag": "NAG", "rmsprop": "RMSprop", "rprop": "Rprop"}
LOSSES = ("CE", "MSE", "BCE")
LABEL_ENCODINGS = ("class", "one-hot")

#: dataset name (as get_loaders takes it) -> (input family, is a recorded dataset)
DATASETS = {
    "shd": ("recurrent", True),
    "dvsgesture": ("conv", True),
    "cifar10dvs": ("conv", True),
    "nmnist": ("conv", True),
    "randman": ("recurrent", False),
    "moving_shapes": ("conv", False),
}
_DATASET_ALIASES = {
    "shd": "shd", "dvsgesture": "dvsgesture", "gesture": "dvsgesture", "cifar10dvs": "cifar10dvs",
    "dvscifar10": "cifar10dvs", "nmnist": "nmnist", "randman": "randman", "movingshapes": "moving_shapes",
    "shapes": "moving_shapes",
}

CHECKPOINT_FORMAT = "stllr-checkpoint"
CHECKPOINT_VERSION = 1
RESULTS_FILE = "results.json"
METRICS_FILE = "metrics.csv"
LOG_FILE = "log.log"

#: Config fields that must be equal to resume a run (everything that changes the numbers).
_RUN_IDENTITY = ("arch", "dataset", "training_mode", "feedback_mode", "factors", "optimizer", "loss", "lr",
                 "batch_size", "label_encoding", "activation", "seed", "delay_ls", "scheduler", "pooling",
                 "weight_decay", "reference_baseline", "data_options", "model_options", "pretrained_model",
                 "max_batches")


class ConfigError(ValueError):
    """Bad user input, detected before any work starts (one-line message)."""


#: What :func:`load_checkpoint` accepts (said in every :class:`CheckpointError`).
CHECKPOINT_EXPECTED = ("expected a torch.save file holding a dict with a 'state_dict' of tensors, as stllr train "
                       "writes (trial_K_last.pth.tar, trial_K_model_best.pth.tar) or the reference's *.pth.tar")


class CheckpointError(ConfigError):
    """A file that is not a checkpoint :func:`load_checkpoint` can read (one-line message: the file,
    why, and what was expected). Never suggests loading with ``weights_only=False``."""

    def __init__(self, path: os.PathLike, reason: str, option: Optional[str] = None):
        self.path, self.reason, self.option = os.fspath(path), reason, option
        super().__init__(f"{option + ' ' if option else ''}{self.path} is not an stllr checkpoint ({reason}); "
                         f"{CHECKPOINT_EXPECTED}")

    def for_option(self, option: str) -> "CheckpointError":
        """The same error, naming the command-line option that gave the file (``--resume`` ...)."""
        return CheckpointError(self.path, self.reason, option)


# ======================================================================================
# Configuration
# ======================================================================================
@dataclass
class TrainConfig:
    """Everything a run needs; field names and defaults follow the reference's ``main.py`` flags."""

    arch: str = "dvs_vgg_stllr"
    dataset: str = "DVSGesture"
    data_path: Optional[str] = None
    save_path: str = "./experiments/default"
    trials: int = 1
    epochs: int = 100
    optimizer: str = "Adam"
    loss: str = "CE"
    lr: float = 1e-3
    batch_size: int = 16
    val_batch_size: int = 5
    label_encoding: str = "class"
    activation: str = "LinearSpike"
    seed: int = 1234
    pretrained_model: Optional[str] = None
    training_mode: str = "stllr"
    feedback_mode: str = "BP"
    delay_ls: int = 5
    scheduler: Any = 0  # int T_max of a cosine schedule (0: off), or "cosine" (T_max = epochs) / "off"
    print_freq: int = 200
    factors: Sequence[float] = CLI_DEFAULT_FACTORS
    pooling: str = "MAX"
    weight_decay: float = 0.0
    cpu: bool = False
    # additions (not in the reference)
    resume: bool = False
    max_batches: Optional[int] = None
    reference_baseline: bool = False
    only_trial: Optional[int] = None
    progress: Optional[bool] = None  # None: on when stderr is a terminal
    num_workers: int = 0
    data_options: Dict[str, Any] = field(default_factory=dict)
    model_options: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["factors"] = [float(f) for f in self.factors]
        return d


def normalize_dataset(name: str) -> str:
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in _DATASET_ALIASES:
        raise ConfigError(f"unknown dataset {name!r}; expected one of: SHD, DVSGesture, CIFAR10DVS, NMNIST, "
                          "randman, moving_shapes")
    return _DATASET_ALIASES[key]


def _resolve_scheduler(value, epochs: int) -> int:
    if isinstance(value, str):
        key = value.strip().lower()
        if key in ("off", "none", "0", ""):
            return 0
        if key == "cosine":
            return int(epochs)
        try:
            value = int(key)
        except ValueError:
            raise ConfigError(f"--scheduler: expected an integer T_max (0 = off), 'cosine' or 'off', got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"--scheduler: expected an integer T_max >= 0 (0 = off), got {value!r}")
    return int(value)


def _positive_int(value, flag: str, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{flag}: expected a positive integer, got {value!r}")
    return value


def validate_config(cfg: TrainConfig, check_data: bool = True) -> TrainConfig:
    """Check and normalise ``cfg`` (returns a new config). Raises :class:`ConfigError` with a
    one-line message for anything that would fail later; costs no data loading."""
    c = dataclasses.replace(cfg, data_options=dict(cfg.data_options), model_options=dict(cfg.model_options))
    # architecture
    if c.arch in ARCH_ALIASES:
        log.warning("arch %r (as printed in the reference README) is %r", c.arch, ARCH_ALIASES[c.arch])
    try:
        spec = get_model_spec(c.arch)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    c.arch = spec.arch
    # dataset
    c.dataset = normalize_dataset(c.dataset)
    family, is_real = DATASETS[c.dataset]
    if family != spec.family:
        shape = "(features,) sequences" if spec.family == "recurrent" else "(channels, height, width) frames"
        raise ConfigError(f"arch {c.arch} expects {shape}; dataset {c.dataset} does not provide them "
                          f"(use e.g. --arch {_suggest_arch(c.dataset)})")
    # numbers
    for name in ("trials", "epochs", "batch_size", "val_batch_size", "delay_ls", "print_freq"):
        _positive_int(getattr(c, name), "--" + name.replace("_", "-"))
    _positive_int(c.max_batches, "--max-batches", allow_none=True)
    _positive_int(c.only_trial, "--only-trial", allow_none=True)
    if c.only_trial is not None and c.only_trial > c.trials:
        raise ConfigError(f"--only-trial {c.only_trial}: larger than --trials {c.trials}")
    if isinstance(c.num_workers, bool) or not isinstance(c.num_workers, int) or c.num_workers < 0:
        raise ConfigError(f"--num-workers: expected an integer >= 0, got {c.num_workers!r}")
    if not (isinstance(c.lr, (int, float)) and math.isfinite(c.lr) and c.lr > 0):
        raise ConfigError(f"--lr: expected a positive number, got {c.lr!r}")
    if not (isinstance(c.weight_decay, (int, float)) and math.isfinite(c.weight_decay) and c.weight_decay >= 0):
        raise ConfigError(f"--weight-decay: expected a number >= 0, got {c.weight_decay!r}")
    if not isinstance(c.seed, int) or isinstance(c.seed, bool):
        raise ConfigError(f"--seed: expected an integer, got {c.seed!r}")
    c.scheduler = _resolve_scheduler(c.scheduler, c.epochs)
    # rule and learning signal
    try:
        c.factors = list(check_factors(c.factors))
    except ValueError as e:
        raise ConfigError("--factors-stdp: " + str(e).split(": ", 1)[-1]) from None
    try:
        mode = normalize_feedback_mode(c.feedback_mode)
    except ValueError as e:
        raise ConfigError("--feedback-mode: " + str(e)) from None
    c.feedback_mode = {"bp": "BP", "dfa": "DFA", "sdfa": "sDFA"}[mode]
    if c.label_encoding not in LABEL_ENCODINGS:
        raise ConfigError(f"--label-encoding: expected 'class' or 'one-hot', got {c.label_encoding!r}")
    if mode != "bp" and c.label_encoding != "one-hot":
        raise ConfigError(f"--feedback-mode {c.feedback_mode} needs one-hot labels: add --label-encoding one-hot")
    if mode != "bp" and not spec.is_stllr:
        raise ConfigError(f"--feedback-mode {c.feedback_mode} needs an S-TLLR arch; {c.arch} is trained by BPTT")
    if c.training_mode not in TRAINING_MODES:
        raise ConfigError(f"--training-mode: expected one of {', '.join(TRAINING_MODES)}, got {c.training_mode!r}")
    if spec.is_stllr and c.training_mode in BPTT_MODES:
        raise ConfigError(f"--training-mode {c.training_mode} needs a BPTT arch (e.g. {spec.twin}); "
                          f"{c.arch} is an S-TLLR model")
    if not spec.is_stllr and c.training_mode not in BPTT_MODES:
        raise ConfigError(f"arch {c.arch} is a BPTT model: use --training-mode bptt or bptt_window "
                          f"(or the S-TLLR arch {spec.twin})")
    # optimisation
    key = str(c.optimizer).lower()
    if key not in OPTIMIZERS:
        raise ConfigError(f"--optimizer: expected one of SGD, NAG, Adam, RMSprop, Rprop, got {c.optimizer!r}")
    c.optimizer = OPTIMIZERS[key]
    if c.optimizer == "Rprop" and c.weight_decay:
        raise ConfigError("--weight-decay: Rprop takes no weight decay")
    c.loss = str(c.loss).upper()
    if c.loss not in LOSSES:
        raise ConfigError(f"--loss: expected one of {', '.join(LOSSES)}, got {c.loss!r}")
    try:
        c.pooling = normalize_pooling(c.pooling)
        resolve_activation(c.activation)
    except ValueError as e:
        raise ConfigError(("--pooling: " if "pooling" in str(e) else "--activation: ") + str(e).split(": ", 1)[-1]) from None
    # files
    if c.pretrained_model is not None and not os.path.isfile(c.pretrained_model):
        raise ConfigError(f"--pretrained-model: no such file {c.pretrained_model!r}")
    _check_data_options(c.dataset, c.data_options)
    if is_real and check_data:
        _check_real_dataset(c.dataset, c.data_path)
    return c


def _check_data_options(name: str, options: Dict[str, Any]) -> None:
    if not options:
        return
    try:
        from . import data as sdata
        valid = sdata.dataset_options(name)
    except (ImportError, AttributeError):
        return
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"--data-option: unknown option(s) {', '.join(unknown)} for dataset {name}; "
                          f"valid: {', '.join(sorted(valid))}")


def _suggest_arch(dataset: str) -> str:
    return {"shd": "stllr_shd_net", "dvsgesture": "dvs_vgg_stllr", "cifar10dvs": "dvscifar10_vgg_stllr",
            "nmnist": "nmnist_vgg_stllr", "randman": "randman_rsnn_stllr",
            "moving_shapes": "shapes_cnn_stllr"}[dataset]


def _check_real_dataset(name: str, data_path: Optional[str]) -> None:
    """Fail fast (no loading) when a recorded dataset is not where --data-path says."""
    if not data_path:
        raise ConfigError(f"--data-path is required for dataset {name} (download it with: "
                          f"python data_scripts/download.py {name} --data-path DIR)")
    if not os.path.isdir(data_path):
        raise ConfigError(f"--data-path {data_path!r} is not a folder (download {name} with: "
                          f"python data_scripts/download.py {name} --data-path {data_path})")
    try:
        from . import data as sdata
    except ImportError:
        return
    checker = getattr(sdata, "require_dataset", None)
    if checker is None:
        return
    try:
        checker(name, data_path)
    except getattr(sdata, "DatasetNotFoundError", FileNotFoundError) as e:
        raise ConfigError(" ".join(str(e).split())) from None


# ======================================================================================
# Optimisation pieces
# ======================================================================================
def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam, SGD, NAG (SGD, nesterov momentum 0.9), RMSprop, Rprop. Weight decay (L2) applies to
    all five (the reference drops it for NAG, RMSprop and Rprop)."""
    key = OPTIMIZERS.get(str(name).lower())
    params = [p for p in params if p.requires_grad]
    if key == "Adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if key == "SGD":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if key == "NAG":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    if key == "RMSprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay)
    if key == "Rprop":
        if weight_decay:
            raise ValueError("Rprop takes no weight decay")
        return torch.optim.Rprop(params, lr=lr)
    raise ValueError(f"optimizer: unknown {name!r}")


def make_scheduler(optimizer, t_max: int):
    """Cosine annealing with ``T_max = t_max`` epochs (stepped once per epoch), or None for 0."""
    if not t_max:
        return None
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, int(t_max))


def make_loss(name: str, num_classes: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Mean-reduced loss ``f(logits [B, C], labels [B] int64) -> scalar``.

    CE: cross-entropy on the logits. MSE: mean squared error between the logits and the one-hot
    labels. BCE: binary cross-entropy with logits against the one-hot labels.
    """
    key = str(name).upper()
    if key == "CE":
        return F.cross_entropy
    if key == "MSE":
        return lambda out, y: F.mse_loss(out, F.one_hot(y, num_classes).to(out.dtype))
    if key == "BCE":
        return lambda out, y: F.binary_cross_entropy_with_logits(out, F.one_hot(y, num_classes).to(out.dtype))
    raise ValueError(f"loss: unknown {name!r}")


# ======================================================================================
# One batch, one epoch
# ======================================================================================
def _time_major(frames: torch.Tensor) -> torch.Tensor:
    """[B, T, ...] -> contiguous [T, B, ...]."""
    return frames.transpose(0, 1).contiguous()


def train_batch(model: nn.Module, frames: torch.Tensor, labels: torch.Tensor, optimizer: torch.optim.Optimizer,
                loss_fn, mode: str = "stllr", delay_ls: int = 5,
                grad_sync: Optional[Callable[[], None]] = None,
                after_backward: Optional[Callable[[int], None]] = None) -> torch.Tensor:
    """Train on one batch. frames: [B, T, ...] (batch-major, as the loaders give them), labels [B].

    Returns the detached prediction (logits summed over all T), [B, classes]. ``grad_sync`` is
    called right before every optimizer step (data-parallel gradient averaging).
    ``after_backward(t)`` (S-TLLR modes) is called after the backward of each learning step ``t``,
    e.g. to read the learning signals a hook recorded (:mod:`stllr.learning_signals`).
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
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True, file=sys.stderr)


def _num_batches(loader, max_batches: Optional[int]) -> int:
    try:
        n = len(loader)
    except TypeError:
        n = max_batches or 0
    return min(n, max_batches) if max_batches else n


def run_epoch(model: nn.Module, loader, *, optimizer=None, loss_fn, mode: str = "stllr", delay_ls: int = 5,
              device: torch.device = torch.device("cpu"), max_batches: Optional[int] = None,
              ctx: Optional[D.DistContext] = None, progress: bool = False, desc: str = "",
              print_freq: int = 0, logger: Optional[logging.Logger] = None) -> Dict[str, float]:
    """One pass over ``loader``: training when ``optimizer`` is given, else evaluation.

    Returns ``{"acc": %, "loss": mean loss of the summed logits, "samples": n, "time": s,
    "peak_memory_mb": ..., "memory_kind": ...}``; with several ranks, acc/loss/samples are totals
    over all ranks.
    """
    ctx = ctx or D.DistContext(device=device)
    training = optimizer is not None
    model.train(training)
    grad_sync = (lambda: D.allreduce_gradients(model.parameters(), ctx)) if (training and ctx.enabled) else None
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
                        pad = frames.new_zeros((frames.shape[0], steps - frames.shape[1]) + frames.shape[2:])
                        frames = torch.cat((frames, pad), dim=1)
                pred = train_batch(model, frames, labels, optimizer, loss_fn, mode, delay_ls, grad_sync)
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
                logger.info("%s [%d/%d] loss %.4f acc %.2f", desc, i + 1, total, loss_sum / count,
                            100 * correct / count)
    finally:
        bar.close()
    elapsed = time.perf_counter() - start
    correct, loss_sum, count = D.allreduce_sum([correct, loss_sum, count], ctx)
    if count == 0:
        raise RuntimeError(f"{desc or 'epoch'}: the data loader produced no batch")
    return {"acc": 100.0 * correct / count, "loss": loss_sum / count, "samples": int(count), "time": elapsed,
            "peak_memory_mb": meter.peak_mb(), "memory_kind": meter.kind}


def evaluate(model: nn.Module, loader, loss_fn=None, device=torch.device("cpu"), max_batches=None,
             ctx: Optional[D.DistContext] = None, progress: bool = False, desc: str = "test") -> Dict[str, float]:
    """Accuracy (%) and mean loss of the summed logits over ``loader`` (no learning)."""
    if loss_fn is None:
        loss_fn = F.cross_entropy
    return run_epoch(model, loader, optimizer=None, loss_fn=loss_fn, device=device, max_batches=max_batches,
                     ctx=ctx, progress=progress, desc=desc)


# ======================================================================================
# Reproducibility and files
# ======================================================================================
def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and all GPUs)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state(loader_generator: Optional[torch.Generator]) -> Dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "python": random.getstate(),
        "loader": loader_generator.get_state() if loader_generator is not None else None,
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    return state


def _set_rng_state(state: Dict[str, Any], loader_generator: Optional[torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if loader_generator is not None and state.get("loader") is not None:
        loader_generator.set_state(state["loader"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def atomic_torch_save(obj, path: os.PathLike) -> None:
    """torch.save to a temporary file next to ``path``, then os.replace (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def checkpoint_paths(save_path: os.PathLike, trial: int) -> Tuple[Path, Path]:
    """(last, best) checkpoint files of a trial: ``trial_K_last.pth.tar``, ``trial_K_model_best.pth.tar``
    (the best one under the reference's name)."""
    save = Path(save_path)
    return save / f"trial_{trial}_last.pth.tar", save / f"trial_{trial}_model_best.pth.tar"


_LEGACY_TORCH_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")  # pre-1.6 torch.save


def _unreadable_reason(path: os.PathLike, exc: BaseException) -> str:
    """Why ``torch.load(path, weights_only=True)`` failed, in words (torch's own message is not
    repeated: it suggests ``weights_only=False``, which would run whatever code the file holds)."""
    import pickle
    import zipfile

    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        return f"it cannot be read: {e.strerror or type(e).__name__}"
    if size == 0:
        return "the file is empty"
    is_torch_file = zipfile.is_zipfile(path) or head[2:14] == _LEGACY_TORCH_MAGIC
    if is_torch_file and isinstance(exc, pickle.UnpicklingError):
        return ("it holds Python objects other than tensors, numbers, strings and containers, which are not "
                "loaded since unpickling them can run arbitrary code")
    if zipfile.is_zipfile(path):
        return "it is a zip archive but not a readable torch.save file"
    if head[:1] == b"\x80":
        return "it is a plain pickle, not a torch.save file"
    return "it is not a torch.save file"


def _checkpoint_content_reason(ckpt: Any) -> Optional[str]:
    """None when ``ckpt`` looks like a checkpoint (a dict with a 'state_dict' dict holding tensors,
    or a bare state_dict of tensors), else why not."""
    if not isinstance(ckpt, dict):
        return f"it holds a {type(ckpt).__name__}, not a dict"
    if "state_dict" in ckpt:
        sd = ckpt["state_dict"]
        if not isinstance(sd, dict):
            return f"its 'state_dict' is a {type(sd).__name__}, not a dict"
        if not any(isinstance(v, torch.Tensor) for v in sd.values()):
            return "its 'state_dict' holds no tensors"
        return None
    if ckpt and all(isinstance(k, str) for k in ckpt) and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return None  # a bare state_dict
    keys = [repr(k) for k in list(ckpt)[:5]]
    more = ", ..." if len(ckpt) > 5 else ""
    if not ckpt:
        return "it holds an empty dict"
    return f"it holds a dict with keys {', '.join(keys)}{more} but no 'state_dict'"


def load_checkpoint(path: os.PathLike, map_location="cpu") -> Dict[str, Any]:
    """``torch.load(path, weights_only=True)``: ours or the reference's ``*.pth.tar`` (a dict with a
    ``state_dict``), or a bare state_dict. Anything else raises :class:`CheckpointError` (one line:
    the file, why, what was expected); a missing file raises FileNotFoundError."""
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of files it then refuses
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # unpickling errors, not a torch file, unreadable: not a (safe) checkpoint
        raise CheckpointError(path, _unreadable_reason(path, e)) from None
    reason = _checkpoint_content_reason(ckpt)
    if reason is not None:
        raise CheckpointError(path, reason)
    return ckpt


def load_model_weights(model: nn.Module, path: os.PathLike) -> Tuple[List[str], List[str]]:
    """Load the weights of a checkpoint (ours, the reference's ``{'state_dict': ...}`` with or without
    ``module.`` prefixes, or a bare state_dict) into ``model``; returns (missing, unexpected) keys."""
    ckpt = load_checkpoint(path)
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: no state_dict in the checkpoint")
    return load_reference_weights(model, sd, strict=False)


def _std(values: List[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _summary(trials: Dict[int, List[Dict[str, Any]]]) -> Dict[str, Any]:
    done = {k: h for k, h in trials.items() if h}
    final = [h[-1]["test_acc"] for h in done.values()]
    best = [max(e["test_acc"] for e in h) for h in done.values()]
    return {
        "trials_done": len(done),
        "final_test_acc_mean": statistics.fmean(final) if final else None,
        "final_test_acc_std": _std(final) if final else None,
        "best_test_acc_mean": statistics.fmean(best) if best else None,
        "best_test_acc_std": _std(best) if best else None,
        "final_test_acc": final,
        "best_test_acc": best,
    }


_CSV_FIELDS = ("trial", "seed", "epoch", "train_acc", "train_loss", "test_acc", "test_loss", "lr", "epoch_time",
               "train_time", "test_time", "peak_memory_mb", "memory_kind")


def _write_results(save: Path, cfg: TrainConfig, meta: Dict[str, Any], trials: Dict[int, List[Dict[str, Any]]]):
    payload = {
        "config": cfg.to_dict(),
        **meta,
        "trials": [{"trial": k, "seed": cfg.seed + k - 1, "epochs": h} for k, h in sorted(trials.items())],
        "summary": _summary(trials),
    }
    atomic_write_text(save / RESULTS_FILE, json.dumps(payload, indent=2) + "\n")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    for k, h in sorted(trials.items()):
        for e in h:
            w.writerow({"trial": k, "seed": cfg.seed + k - 1, **e})
    atomic_write_text(save / METRICS_FILE, buf.getvalue())


class _TqdmHandler(logging.Handler):
    def emit(self, record):
        try:
            from tqdm.auto import tqdm
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover
            self.handleError(record)


@contextlib.contextmanager
def _run_logging(save: Path, write_files: bool, console: bool = True):
    logger = logging.getLogger("stllr")
    handlers = []
    fmt = logging.Formatter("%(asctime)s - %(message)s", datefmt="%d-%b-%y %H:%M:%S")
    if write_files:
        fh = logging.FileHandler(save / LOG_FILE, encoding="utf-8")
        fh.setFormatter(fmt)
        handlers.append(fh)
    if console:
        sh = _TqdmHandler()
        sh.setFormatter(logging.Formatter("%(message)s"))
        handlers.append(sh)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    for h in handlers:
        logger.addHandler(h)
    try:
        yield log
    finally:
        for h in handlers:
            logger.removeHandler(h)
            h.close()
        logger.setLevel(old_level)


# ======================================================================================
# Data
# ======================================================================================
@dataclass
class _Data:
    train_set: Any
    test_set: Any
    info: Dict[str, Any]
    collate: Callable
    val_batch_size: int  # per process
    num_workers: int


def _load_data(cfg: TrainConfig, ctx: D.DistContext, train: bool = True) -> _Data:
    """The train and test datasets of ``cfg.dataset`` from :func:`stllr.data.get_dataset` (the loaders
    are built here, with our samplers: :func:`stllr.data.get_loaders` would take the dataset option
    ``seed`` as its shuffling seed, so the datasets are requested directly)."""
    from . import data as sdata
    try:
        train_set = sdata.get_dataset(cfg.dataset, cfg.data_path, True, **cfg.data_options) if train else None
        test_set = sdata.get_dataset(cfg.dataset, cfg.data_path, False, **cfg.data_options)
    except TypeError as e:
        raise ConfigError(f"--data-option: {e}") from None
    ref = test_set
    info = {"num_classes": int(ref.num_classes), "input_shape": tuple(int(s) for s in ref.input_shape),
            "T": getattr(ref, "T", None)}
    return _Data(train_set, test_set, info, sdata.pad_collate,
                 max(1, math.ceil(cfg.val_batch_size / ctx.world_size)), cfg.num_workers)


def _info(info, key, default=None):
    if isinstance(info, dict):
        return info.get(key, default)
    return getattr(info, key, default)


def _make_loader(dataset, batch_size: int, sampler, generator: Optional[torch.Generator], collate, num_workers=0):
    """A DataLoader over ``dataset`` with our sampler (padding collate of stllr.data)."""
    kw = dict(batch_size=batch_size, sampler=sampler, collate_fn=collate, num_workers=num_workers,
              generator=generator, pin_memory=torch.cuda.is_available())
    if num_workers > 0:
        kw["persistent_workers"] = True
    return torch.utils.data.DataLoader(dataset, **kw)


# ======================================================================================
# One trial, a whole run
# ======================================================================================
def _identity(cfg_dict: Dict[str, Any]) -> Dict[str, Any]:
    return {k: cfg_dict.get(k) for k in _RUN_IDENTITY}


def _check_resume_compatible(saved: Dict[str, Any], cfg: TrainConfig, path: Path) -> None:
    a, b = _identity(saved), _identity(cfg.to_dict())
    diffs = [k for k in _RUN_IDENTITY if json.dumps(a[k], sort_keys=True) != json.dumps(b[k], sort_keys=True)]
    if diffs:
        k = diffs[0]
        raise ConfigError(f"--resume: {path} was written with {k}={a[k]!r}, this run has {k}={b[k]!r}")


def _build(cfg: TrainConfig, info) -> nn.Module:
    return build_model(cfg.arch, num_classes=int(_info(info, "num_classes")),
                       input_shape=tuple(_info(info, "input_shape")), factors=cfg.factors,
                       feedback_mode=cfg.feedback_mode, psi=cfg.activation, pooling=cfg.pooling,
                       reference_baseline=cfg.reference_baseline, **cfg.model_options)


def train_trial(cfg: TrainConfig, trial: int, data: "_Data", ctx: D.DistContext,
                on_epoch: Optional[Callable[[int, List[Dict[str, Any]]], None]] = None) -> List[Dict[str, Any]]:
    """Train trial ``trial`` (1-based; seed ``cfg.seed + trial - 1``) for ``cfg.epochs`` epochs and
    return its per-epoch metrics. Writes (rank 0) the trial's last and best checkpoints in
    ``cfg.save_path`` after every epoch; with ``cfg.resume`` continues from the last one."""
    save = Path(cfg.save_path)
    last_path, best_path = checkpoint_paths(save, trial)
    seed = cfg.seed + trial - 1
    device = ctx.device
    seed_everything(seed)
    model = _build(cfg, data.info).to(device)
    if cfg.pretrained_model:
        try:
            missing, unexpected = load_model_weights(model, cfg.pretrained_model)
        except CheckpointError as e:
            raise e.for_option("--pretrained-model") from None
        except ValueError as e:
            raise ConfigError(f"--pretrained-model {cfg.pretrained_model}: {str(e).split(': ', 1)[-1]}") from None
        log.info("loaded %s (missing keys: %d, unexpected keys: %d)", cfg.pretrained_model, len(missing),
                 len(unexpected))
    D.broadcast_module(model, ctx)
    optimizer = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.weight_decay)
    scheduler = make_scheduler(optimizer, cfg.scheduler)
    loss_fn = make_loss(cfg.loss, model.num_classes)
    local_bs = cfg.batch_size // ctx.world_size
    sampler = D.ShardedShuffleSampler(len(data.train_set), ctx.world_size, ctx.rank, seed=seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    train_loader = _make_loader(data.train_set, local_bs, sampler, generator, data.collate, data.num_workers)
    test_sampler = D.EvalShardSampler(len(data.test_set), ctx.world_size, ctx.rank)
    test_loader = _make_loader(data.test_set, data.val_batch_size, test_sampler, None, data.collate,
                               data.num_workers)

    history: List[Dict[str, Any]] = []
    best_acc = -1.0
    start_epoch = 1
    if cfg.resume and last_path.is_file():
        try:
            ckpt = load_checkpoint(last_path)  # CPU: RNG states must stay CPU tensors
        except CheckpointError as e:
            raise e.for_option("--resume:") from None
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"--resume: {last_path} is not a checkpoint written by stllr train")
        _check_resume_compatible(ckpt["config"], cfg, last_path)
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt.get("scheduler") is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        history = list(ckpt["history"])
        best_acc = float(ckpt["best_acc1"])
        start_epoch = int(ckpt["epoch"]) + 1
        if ctx.is_main:
            _set_rng_state(ckpt["rng"], generator)
        else:  # other ranks: their own deterministic stream for the rest of the run
            seed_everything(seed + 7919 * ctx.rank + 104729 * start_epoch)
        if start_epoch > cfg.epochs:
            log.info("trial %d: already trained for %d epochs (checkpoint %s)", trial, start_epoch - 1, last_path)
        else:
            log.info("trial %d: resuming at epoch %d from %s", trial, start_epoch, last_path)
    elif ctx.enabled and ctx.rank > 0:
        # same initial weights (broadcast above), independent dropout / augmentation per rank
        seed_everything(seed + 7919 * ctx.rank)

    for epoch in range(start_epoch, cfg.epochs + 1):
        sampler.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        tr = run_epoch(model, train_loader, optimizer=optimizer, loss_fn=loss_fn, mode=cfg.training_mode,
                       delay_ls=cfg.delay_ls, device=device, max_batches=cfg.max_batches, ctx=ctx,
                       progress=bool(cfg.progress), desc=f"trial {trial} epoch {epoch} train",
                       print_freq=cfg.print_freq, logger=log)
        te = run_epoch(model, test_loader, optimizer=None, loss_fn=loss_fn, device=device,
                       max_batches=cfg.max_batches, ctx=ctx, progress=bool(cfg.progress),
                       desc=f"trial {trial} epoch {epoch} test")
        if scheduler is not None:
            scheduler.step()
        record = {
            "epoch": epoch, "train_acc": tr["acc"], "train_loss": tr["loss"], "test_acc": te["acc"],
            "test_loss": te["loss"], "lr": lr, "train_samples": tr["samples"], "test_samples": te["samples"],
            "train_time": tr["time"], "test_time": te["time"], "epoch_time": tr["time"] + te["time"],
            "peak_memory_mb": max(tr["peak_memory_mb"], te["peak_memory_mb"]), "memory_kind": tr["memory_kind"],
        }
        history.append(record)
        is_best = te["acc"] > best_acc
        best_acc = max(best_acc, te["acc"])
        log.info("trial %d epoch %d/%d: train acc %.2f loss %.4f | test acc %.2f loss %.4f | best %.2f | "
                 "%.1f s | peak memory %.0f MB (%s)", trial, epoch, cfg.epochs, tr["acc"], tr["loss"], te["acc"],
                 te["loss"], best_acc, record["epoch_time"], record["peak_memory_mb"], record["memory_kind"])
        if ctx.is_main:
            cfg_dict = cfg.to_dict()
            if is_best:
                atomic_torch_save({"epoch": epoch, "arch": cfg.arch, "state_dict": model.state_dict(),
                                   "best_acc1": best_acc, "optimizer": optimizer.state_dict(), "config": cfg_dict,
                                   "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "trial": trial},
                                  best_path)
            atomic_torch_save({
                "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "trial": trial, "seed": seed,
                "epoch": epoch, "arch": cfg.arch, "config": cfg_dict, "state_dict": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "best_acc1": best_acc, "history": history, "rng": _rng_state(generator),
            }, last_path)
        if on_epoch is not None:
            on_epoch(trial, history)
    return history


def _trial_history_from_checkpoint(cfg: TrainConfig, trial: int) -> Optional[List[Dict[str, Any]]]:
    last, _ = checkpoint_paths(cfg.save_path, trial)
    if not last.is_file():
        return None
    try:
        ckpt = load_checkpoint(last)
    except CheckpointError as e:  # read to keep other trials' results (--resume, --only-trial)
        raise e.for_option("--resume:" if cfg.resume else "--only-trial:") from None
    return list(ckpt.get("history", [])) if ckpt.get("format") == CHECKPOINT_FORMAT else None


def train(cfg: TrainConfig, validate: bool = True) -> Dict[str, Any]:
    """Run ``cfg.trials`` trials (or only ``cfg.only_trial``) of ``cfg.epochs`` epochs.

    Files in ``cfg.save_path`` (rank 0 only): ``results.json`` (config, per-epoch metrics of every
    trial, summary), ``metrics.csv``, ``log.log``, ``trial_K_last.pth.tar`` (everything to resume) and
    ``trial_K_model_best.pth.tar`` (reference format: epoch, state_dict, best_acc1, optimizer).
    Launched by torchrun with several processes, trains data-parallel (``--batch-size`` is the
    global batch). Returns the content of results.json.
    """
    if validate:
        cfg = validate_config(cfg)
    ctx = D.init_distributed(cpu=cfg.cpu)
    try:
        if cfg.batch_size % ctx.world_size:
            raise ConfigError(f"--batch-size {cfg.batch_size} must be divisible by the number of processes "
                              f"({ctx.world_size})")
        if cfg.progress is None:
            cfg = dataclasses.replace(cfg, progress=sys.stderr.isatty())
        save = Path(cfg.save_path)
        if ctx.is_main:
            save.mkdir(parents=True, exist_ok=True)
        D.barrier(ctx)
        with _run_logging(save, write_files=ctx.is_main, console=ctx.is_main):
            return _train_run(cfg, ctx, save)
    finally:
        D.cleanup_distributed(ctx)


def _note_delay_ls(cfg: TrainConfig, data: "_Data") -> None:
    """One line when --delay-ls exceeds the training sequences' T: every step gets a learning signal."""
    if cfg.training_mode == "bptt":  # the loss of the summed logits: delay_ls is not used
        return
    steps = getattr(data.train_set, "T", None) if data.train_set is not None else None
    if steps is None:
        steps = _info(data.info, "T")
    if isinstance(steps, (int, np.integer)) and not isinstance(steps, bool) and cfg.delay_ls > steps:
        log.info("note: --delay-ls %d is larger than T=%d of %s: every time step carries a learning signal "
                 "(the same as --delay-ls %d)", cfg.delay_ls, steps, cfg.dataset, steps)


def _train_run(cfg: TrainConfig, ctx: D.DistContext, save: Path) -> Dict[str, Any]:
    log.info("stllr train: %s", json.dumps(cfg.to_dict(), sort_keys=True))
    log.info("=> everything will be saved to %s", save)
    if ctx.enabled:
        log.info("data parallel: %d processes (%s), local batch %d", ctx.world_size, ctx.backend,
                 cfg.batch_size // ctx.world_size)
    data = _load_data(cfg, ctx)
    info = data.info
    log.info("dataset %s: %d train / %d test samples, input %s, %d classes, T=%s", cfg.dataset,
             len(data.train_set), len(data.test_set), tuple(_info(info, "input_shape")),
             _info(info, "num_classes"), _info(info, "T"))
    _note_delay_ls(cfg, data)
    trials = list(range(1, cfg.trials + 1)) if cfg.only_trial is None else [cfg.only_trial]
    histories: Dict[int, List[Dict[str, Any]]] = {}
    if cfg.resume or cfg.only_trial is not None:  # keep what other trials already wrote
        for k in range(1, cfg.trials + 1):
            if k not in trials or cfg.resume:
                h = _trial_history_from_checkpoint(cfg, k)
                if h:
                    histories[k] = h
    meta = {"world_size": ctx.world_size, "device": str(ctx.device), "torch": torch.__version__,
            "num_parameters": None, "dataset_info": {"num_classes": _info(info, "num_classes"),
                                                     "input_shape": list(_info(info, "input_shape")),
                                                     "T": _info(info, "T")}}

    def on_epoch(trial, history):
        histories[trial] = list(history)
        if ctx.is_main:
            _write_results(save, cfg, meta, histories)

    for k in trials:
        if k == trials[0]:
            probe = _build(cfg, info)
            meta["num_parameters"] = count_parameters(probe)
            log.info("model %s: %.2fM trainable parameters", cfg.arch, meta["num_parameters"] / 1e6)
            log.info("%s", probe)
            del probe
        if len(trials) > 1 or cfg.trials > 1:
            log.info("trial %d of %d (seed %d)", k, cfg.trials, cfg.seed + k - 1)
        histories[k] = train_trial(cfg, k, data, ctx, on_epoch=on_epoch)
    if ctx.is_main:
        _write_results(save, cfg, meta, histories)
    summary = _summary(histories)
    if summary["trials_done"]:
        log.info("final test accuracy over %d trial(s): %.2f +- %.2f (best %.2f +- %.2f)", summary["trials_done"],
                 summary["final_test_acc_mean"], summary["final_test_acc_std"], summary["best_test_acc_mean"],
                 summary["best_test_acc_std"])
    return {"config": cfg.to_dict(), **meta,
            "trials": [{"trial": k, "seed": cfg.seed + k - 1, "epochs": h} for k, h in sorted(histories.items())],
            "summary": summary}


# ======================================================================================
# Evaluation of a checkpoint
# ======================================================================================
def evaluate_checkpoint(checkpoint: os.PathLike, arch: Optional[str] = None, dataset: Optional[str] = None,
                        data_path: Optional[str] = None, val_batch_size: Optional[int] = None,
                        max_batches: Optional[int] = None, cpu: bool = False, progress: bool = False,
                        overrides: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Test accuracy (%) and loss of the weights in ``checkpoint`` (ours or the reference's).

    Our checkpoints carry their config (arch, dataset, model options); a reference checkpoint needs
    ``arch`` and ``dataset``. ``overrides``: other TrainConfig fields (factors, pooling, ...).
    """
    ckpt = load_checkpoint(checkpoint)
    if not isinstance(ckpt, dict):
        raise ConfigError(f"{checkpoint}: not a checkpoint dict")
    saved = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    base = {k: v for k, v in saved.items() if k in fields}
    base.update({k: v for k, v in (overrides or {}).items() if v is not None and k in fields})
    if arch is not None:
        base["arch"] = arch
    if dataset is not None:
        base["dataset"] = dataset
    if data_path is not None:
        base["data_path"] = data_path
    if val_batch_size is not None:
        base["val_batch_size"] = val_batch_size
    if "arch" not in base:
        raise ConfigError(f"{checkpoint}: the checkpoint does not name its arch; pass --arch")
    if "dataset" not in base:
        raise ConfigError(f"{checkpoint}: the checkpoint does not name its dataset; pass --dataset")
    try:
        spec = get_model_spec(base["arch"])
    except ValueError as e:
        raise ConfigError(str(e)) from None
    base.setdefault("training_mode", "stllr" if spec.is_stllr else "bptt")
    if not spec.is_stllr:
        base["training_mode"] = "bptt"
    base.update(cpu=cpu, resume=False, max_batches=max_batches, pretrained_model=None, progress=progress,
                trials=1, only_trial=None)
    if base.get("feedback_mode", "BP") != "BP" and base.get("label_encoding") != "one-hot":
        base["label_encoding"] = "one-hot"
    cfg = validate_config(TrainConfig(**base))
    ctx = D.DistContext(device=torch.device("cuda") if (torch.cuda.is_available() and not cpu) else torch.device("cpu"))
    data = _load_data(cfg, ctx, train=False)
    model = _build(cfg, data.info).to(ctx.device)
    sd = ckpt.get("state_dict", ckpt)
    try:
        missing, unexpected = load_reference_weights(model, sd, strict=False)
    except ValueError as e:
        raise ConfigError(f"{checkpoint}: {str(e).split(': ', 1)[-1]}") from None
    trainable_missing = [k for k in missing if not k.endswith((".feedback", ".factors"))]
    if trainable_missing:
        raise ConfigError(f"{checkpoint}: {len(trainable_missing)} model weights missing in the checkpoint "
                          f"(e.g. {trainable_missing[0]}); wrong --arch?")
    loss_fn = make_loss(cfg.loss, model.num_classes)
    test_loader = _make_loader(data.test_set, data.val_batch_size, D.EvalShardSampler(len(data.test_set)), None,
                               data.collate, data.num_workers)
    res = evaluate(model, test_loader, loss_fn, ctx.device, max_batches, ctx, progress=progress)
    return {"checkpoint": str(checkpoint), "arch": cfg.arch, "dataset": cfg.dataset, "test_acc": res["acc"],
            "test_loss": res["loss"], "samples": res["samples"], "time": res["time"],
            "missing_keys": missing, "unexpected_keys": unexpected}


def parse_option_values(items: Optional[Sequence[str]], flag: str) -> Dict[str, Any]:
    """``["n_steps=50", "jitter=0.5", "name=abc"]`` -> dict with literal-evaluated values."""
    out: Dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"{flag}: expected KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if not key.isidentifier():
            raise ConfigError(f"{flag}: {key!r} is not a valid option name")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out
