"""Argument and input validation shared by the layers: clear errors that name the argument."""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import torch

_CHECK_FINITE = False


def set_input_checks(enabled: bool) -> None:
    """Turn the (synchronising) non-finite input check of every layer on or off (default off)."""
    global _CHECK_FINITE
    _CHECK_FINITE = bool(enabled)


def input_checks_enabled() -> bool:
    return _CHECK_FINITE


@contextmanager
def input_checks(enabled: bool = True):
    """Context manager: ``with stllr.input_checks(): ...`` checks inputs for NaN/inf."""
    global _CHECK_FINITE
    previous = _CHECK_FINITE
    _CHECK_FINITE = bool(enabled)
    try:
        yield
    finally:
        _CHECK_FINITE = previous


def check_positive_int(
    value,
    name: str,
    *,
    minimum: int = 1,
    allow_none: bool = False,
    allow_numpy: bool = False,
    error: type[Exception] = ValueError,
):
    """``value`` if it is an integer >= ``minimum`` (never a bool), else raise ``error``:
    ``"{name}: expected a positive integer, got {value!r}"`` (``minimum`` other than 1:
    ``"expected an integer >= {minimum}"``). ``allow_none``: None passes (returned as is);
    ``allow_numpy``: numpy integers pass too, returned as ``int``."""
    if value is None and allow_none:
        return None
    types = (int, np.integer) if allow_numpy else int
    if isinstance(value, bool) or not isinstance(value, types) or value < minimum:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise error(f"{name}: expected {expected}, got {value!r}")
    return int(value) if allow_numpy else value


def check_finite_number(value, name: str, minimum: float | None = None) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, got {v}")
    if minimum is not None and v < minimum:
        raise ValueError(f"{name}: expected a value >= {minimum}, got {v}")
    return v


def check_reset(reset: str) -> str:
    if reset not in ("soft", "hard"):
        raise ValueError(f"reset: expected 'soft' or 'hard', got {reset!r}")
    return reset


def check_layer_input(
    x, layer, expected_rank: int, expected_size: int, size_dim: int, what: str
) -> None:
    """Check ``x`` (the argument of ``layer.forward``): tensor, float dtype matching the layer,
    rank, width/channels, same device, finite (when enabled)."""
    name = type(layer).__name__
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: {name} expects a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"x: {name} expects a floating-point tensor (spikes as 0./1.), got dtype {x.dtype}; "
            "convert with x.float()"
        )
    if x.dim() != expected_rank:
        raise ValueError(
            f"x: {name} expects a tensor of rank {expected_rank} ({what}), got shape {tuple(x.shape)}"
        )
    if x.shape[size_dim] != expected_size:
        raise ValueError(
            f"x: {name} expects {expected_size} {'features' if size_dim == 1 and expected_rank == 2 else 'channels'} "
            f"in dim {size_dim} ({what}), got shape {tuple(x.shape)}"
        )
    w = layer.weight
    if x.dtype != w.dtype:
        raise TypeError(
            f"x: dtype {x.dtype} does not match {name}'s parameters ({w.dtype}); "
            f"convert the input (x.to({w.dtype})) or the layer (layer.to({x.dtype}))"
        )
    if x.device != w.device:
        raise ValueError(
            f"x: on {x.device} but {name}'s parameters are on {w.device}; move one of them"
        )
    if _CHECK_FINITE and not bool(torch.isfinite(x).all()):
        raise ValueError(f"x: {name} received non-finite values (NaN or inf)")
