"""A training run's settings (:class:`TrainConfig`, the reference's flags), their validation
with one-line errors, and the optimizer, scheduler and loss they name."""

from __future__ import annotations

import ast
import dataclasses
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Sequence

import torch
import torch.nn.functional as F

from stllr._checks import check_positive_int
from stllr.functional import CLI_DEFAULT_FACTORS, check_factors
from stllr.models.common import normalize_feedback_mode, normalize_pooling, resolve_activation
from stllr.models.registry import ARCH_ALIASES, get_model_spec

log = logging.getLogger("stllr.training")

__all__ = [
    "TrainConfig",
    "ConfigError",
    "validate_config",
    "make_optimizer",
    "make_scheduler",
    "make_loss",
    "DATASETS",
    "TRAINING_MODES",
    "BPTT_MODES",
    "OPTIMIZERS",
    "LOSSES",
    "normalize_dataset",
]

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
    "shd": "shd",
    "dvsgesture": "dvsgesture",
    "gesture": "dvsgesture",
    "cifar10dvs": "cifar10dvs",
    "dvscifar10": "cifar10dvs",
    "nmnist": "nmnist",
    "randman": "randman",
    "movingshapes": "moving_shapes",
    "shapes": "moving_shapes",
}


#: Config fields that must be equal to resume a run (everything that changes the numbers).
_RUN_IDENTITY = (
    "arch",
    "dataset",
    "training_mode",
    "feedback_mode",
    "factors",
    "optimizer",
    "loss",
    "lr",
    "batch_size",
    "label_encoding",
    "activation",
    "seed",
    "delay_ls",
    "scheduler",
    "pooling",
    "weight_decay",
    "reference_baseline",
    "data_options",
    "model_options",
    "pretrained_model",
    "max_batches",
)


class ConfigError(ValueError):
    """Bad user input, detected before any work starts (one-line message)."""


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
    scheduler: Any = (
        0  # int T_max of a cosine schedule (0: off), or "cosine" (T_max = epochs) / "off"
    )
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
    chunk: Optional[int] = (
        None  # deferred weight-gradient GEMMs (stllr mode); None: default, 0: per step
    )
    data_options: Dict[str, Any] = field(default_factory=dict)
    model_options: Dict[str, Any] = field(default_factory=dict)
    #: a Dask scheduler address ("tcp://host:8786"): each trial runs as a task on its workers
    #: (the CLI's --cluster, default $STLLR_CLUSTER); None: in this process
    cluster: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["factors"] = [float(f) for f in self.factors]
        return d


def normalize_dataset(name: str) -> str:
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in _DATASET_ALIASES:
        raise ConfigError(
            f"unknown dataset {name!r}; expected one of: SHD, DVSGesture, CIFAR10DVS, NMNIST, "
            "randman, moving_shapes"
        )
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
            raise ConfigError(
                f"--scheduler: expected an integer T_max (0 = off), 'cosine' or 'off', got {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"--scheduler: expected an integer T_max >= 0 (0 = off), got {value!r}")
    return int(value)


def validate_config(cfg: TrainConfig, check_data: bool = True) -> TrainConfig:
    """Check and normalise ``cfg`` (returns a new config). Raises :class:`ConfigError` with a
    one-line message for anything that would fail later; costs no data loading."""
    c = dataclasses.replace(
        cfg, data_options=dict(cfg.data_options), model_options=dict(cfg.model_options)
    )
    # architecture
    if c.arch in ARCH_ALIASES:
        log.warning(
            "arch %r (as printed in the reference README) is %r", c.arch, ARCH_ALIASES[c.arch]
        )
    try:
        spec = get_model_spec(c.arch)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    c.arch = spec.arch
    # dataset
    c.dataset = normalize_dataset(c.dataset)
    family, is_real = DATASETS[c.dataset]
    if family != spec.family:
        shape = (
            "(features,) sequences"
            if spec.family == "recurrent"
            else "(channels, height, width) frames"
        )
        raise ConfigError(
            f"arch {c.arch} expects {shape}; dataset {c.dataset} does not provide them "
            f"(use e.g. --arch {_suggest_arch(c.dataset)})"
        )
    # numbers
    for name in ("trials", "epochs", "batch_size", "val_batch_size", "delay_ls", "print_freq"):
        check_positive_int(getattr(c, name), "--" + name.replace("_", "-"), error=ConfigError)
    check_positive_int(c.max_batches, "--max-batches", allow_none=True, error=ConfigError)
    check_positive_int(c.only_trial, "--only-trial", allow_none=True, error=ConfigError)
    if c.only_trial is not None and c.only_trial > c.trials:
        raise ConfigError(f"--only-trial {c.only_trial}: larger than --trials {c.trials}")
    check_positive_int(c.num_workers, "--num-workers", minimum=0, error=ConfigError)
    if c.cluster is not None:
        if not isinstance(c.cluster, str) or not c.cluster.strip():
            raise ConfigError(
                f"--cluster: expected a Dask scheduler address such as tcp://host:8786, "
                f"got {c.cluster!r}"
            )
        c.cluster = c.cluster.strip()
    if not (isinstance(c.lr, (int, float)) and math.isfinite(c.lr) and c.lr > 0):
        raise ConfigError(f"--lr: expected a positive number, got {c.lr!r}")
    if not (
        isinstance(c.weight_decay, (int, float))
        and math.isfinite(c.weight_decay)
        and c.weight_decay >= 0
    ):
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
        raise ConfigError(
            f"--label-encoding: expected 'class' or 'one-hot', got {c.label_encoding!r}"
        )
    if mode != "bp" and c.label_encoding != "one-hot":
        raise ConfigError(
            f"--feedback-mode {c.feedback_mode} needs one-hot labels: add --label-encoding one-hot"
        )
    if mode != "bp" and not spec.is_stllr:
        raise ConfigError(
            f"--feedback-mode {c.feedback_mode} needs an S-TLLR arch; {c.arch} is trained by BPTT"
        )
    if c.training_mode not in TRAINING_MODES:
        raise ConfigError(
            f"--training-mode: expected one of {', '.join(TRAINING_MODES)}, got {c.training_mode!r}"
        )
    if spec.is_stllr and c.training_mode in BPTT_MODES:
        raise ConfigError(
            f"--training-mode {c.training_mode} needs a BPTT arch (e.g. {spec.twin}); "
            f"{c.arch} is an S-TLLR model"
        )
    if not spec.is_stllr and c.training_mode not in BPTT_MODES:
        raise ConfigError(
            f"arch {c.arch} is a BPTT model: use --training-mode bptt or bptt_window "
            f"(or the S-TLLR arch {spec.twin})"
        )
    if c.chunk is not None:
        if isinstance(c.chunk, bool) or not isinstance(c.chunk, int) or c.chunk < 0:
            raise ConfigError(f"--chunk: expected an integer >= 0 (0 = per step), got {c.chunk!r}")
        if c.chunk and c.training_mode != "stllr":
            raise ConfigError(
                f"--chunk: deferred weight gradients need --training-mode stllr (weights fixed for "
                f"the sequence); {c.training_mode} takes --chunk 0 or no --chunk"
            )
    # optimisation
    key = str(c.optimizer).lower()
    if key not in OPTIMIZERS:
        raise ConfigError(
            f"--optimizer: expected one of SGD, NAG, Adam, RMSprop, Rprop, got {c.optimizer!r}"
        )
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
        raise ConfigError(
            ("--pooling: " if "pooling" in str(e) else "--activation: ") + str(e).split(": ", 1)[-1]
        ) from None
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
        from stllr import data as sdata

        valid = sdata.dataset_options(name)
    except (ImportError, AttributeError):
        return
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"--data-option: unknown option(s) {', '.join(unknown)} for dataset {name}; "
            f"valid: {', '.join(sorted(valid))}"
        )


def _suggest_arch(dataset: str) -> str:
    return {
        "shd": "stllr_shd_net",
        "dvsgesture": "dvs_vgg_stllr",
        "cifar10dvs": "dvscifar10_vgg_stllr",
        "nmnist": "nmnist_vgg_stllr",
        "randman": "randman_rsnn_stllr",
        "moving_shapes": "shapes_cnn_stllr",
    }[dataset]


def _check_real_dataset(name: str, data_path: Optional[str]) -> None:
    """Fail fast (no loading) when a recorded dataset is not where --data-path says."""
    if not data_path:
        raise ConfigError(
            f"--data-path is required for dataset {name} (download it with: "
            f"python data_scripts/download.py {name} --data-path DIR)"
        )
    if not os.path.isdir(data_path):
        raise ConfigError(
            f"--data-path {data_path!r} is not a folder (download {name} with: "
            f"python data_scripts/download.py {name} --data-path {data_path})"
        )
    try:
        from stllr import data as sdata
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
def make_optimizer(
    name: str, params, lr: float, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """Adam, SGD, NAG (SGD, nesterov momentum 0.9), RMSprop, Rprop. Weight decay (L2) applies to
    all five (the reference drops it for NAG, RMSprop and Rprop)."""
    key = OPTIMIZERS.get(str(name).lower())
    params = [p for p in params if p.requires_grad]
    if key == "Adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if key == "SGD":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if key == "NAG":
        return torch.optim.SGD(
            params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay
        )
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
        return lambda out, y: F.binary_cross_entropy_with_logits(
            out, F.one_hot(y, num_classes).to(out.dtype)
        )
    raise ValueError(f"loss: unknown {name!r}")


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
