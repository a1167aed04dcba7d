"""Checkpoints: paths, safe loading (``torch.load(weights_only=True)``), clear errors for a file
that is not one, and the random-number state that makes a resumed run continue exactly."""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from stllr.models.registry import load_reference_weights
from stllr.training.config import ConfigError

__all__ = ["CheckpointError", "load_checkpoint", "load_model_weights", "checkpoint_paths"]

CHECKPOINT_FORMAT = "stllr-checkpoint"


CHECKPOINT_VERSION = 1


#: What :func:`load_checkpoint` accepts (said in every :class:`CheckpointError`).
CHECKPOINT_EXPECTED = (
    "expected a torch.save file holding a dict with a 'state_dict' of tensors, as stllr train "
    "writes (trial_K_last.pth.tar, trial_K_model_best.pth.tar) or the reference's *.pth.tar"
)


class CheckpointError(ConfigError):
    """A file that is not a checkpoint :func:`load_checkpoint` can read (one-line message: the file,
    why, and what was expected). Never suggests loading with ``weights_only=False``."""

    def __init__(self, path: os.PathLike, reason: str, option: Optional[str] = None):
        self.path, self.reason, self.option = os.fspath(path), reason, option
        super().__init__(
            f"{option + ' ' if option else ''}{self.path} is not an stllr checkpoint ({reason}); "
            f"{CHECKPOINT_EXPECTED}"
        )

    def for_option(self, option: str) -> "CheckpointError":
        """The same error, naming the command-line option that gave the file (``--resume`` ...)."""
        return CheckpointError(self.path, self.reason, option)


def _rng_state(loader_generator: Optional[torch.Generator]) -> Dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (
            kind,
            torch.from_numpy(keys.astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ),
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


def checkpoint_paths(save_path: os.PathLike, trial: int) -> Tuple[Path, Path]:
    """(last, best) checkpoint files of a trial: ``trial_K_last.pth.tar``, ``trial_K_model_best.pth.tar``
    (the best one under the reference's name)."""
    save = Path(save_path)
    return save / f"trial_{trial}_last.pth.tar", save / f"trial_{trial}_model_best.pth.tar"


_LEGACY_TORCH_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(
    10, "little"
)  # pre-1.6 torch.save


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
        return (
            "it holds Python objects other than tensors, numbers, strings and containers, which are not "
            "loaded since unpickling them can run arbitrary code"
        )
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
    if (
        ckpt
        and all(isinstance(k, str) for k in ckpt)
        and all(isinstance(v, torch.Tensor) for v in ckpt.values())
    ):
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
        with (
            warnings.catch_warnings()
        ):  # torch warns about the pickle protocol of files it then refuses
            warnings.filterwarnings(
                "ignore", message="Detected pickle protocol", category=UserWarning
            )
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except (
        Exception
    ) as e:  # unpickling errors, not a torch file, unreadable: not a (safe) checkpoint
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
