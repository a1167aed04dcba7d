"""Training: :mod:`~stllr.training.loop` (THE loops over time: one batch, one epoch, evaluation),
:mod:`~stllr.training.config` (settings and their checks), :mod:`~stllr.training.checkpoint`,
:mod:`~stllr.training.run` (``stllr train``: trials, results files) and
:mod:`~stllr.training.distributed` (torchrun).
"""

from stllr.training.checkpoint import CheckpointError, load_checkpoint, load_model_weights
from stllr.training.config import (
    BPTT_MODES,
    TRAINING_MODES,
    ConfigError,
    TrainConfig,
    make_loss,
    make_optimizer,
    make_scheduler,
    validate_config,
)
from stllr.training.loop import evaluate, predict, run_epoch, seed_everything, train_batch
from stllr.training.run import evaluate_checkpoint, train, train_trial

__all__ = [
    "TRAINING_MODES",
    "BPTT_MODES",
    "ConfigError",
    "TrainConfig",
    "validate_config",
    "make_optimizer",
    "make_scheduler",
    "make_loss",
    "CheckpointError",
    "load_checkpoint",
    "load_model_weights",
    "train_batch",
    "predict",
    "run_epoch",
    "evaluate",
    "seed_everything",
    "train_trial",
    "train",
    "evaluate_checkpoint",
]
