"""The paper's analytic memory and MACs (Section 4.3, Eq. 18-23) from a model's layer shapes."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional, Sequence, Union

import torch
from torch import nn

from stllr._base import reset_sequence

__all__ = [
    "LayerShape",
    "ModelShapes",
    "model_shapes",
    "paper_memory",
    "paper_macs",
    "paper_memory_ratio",
    "paper_mac_ratio",
    "analytic_costs",
    "model_alpha_post",
]

# =========================================================================================
# Model shapes and the paper's analytic formulas (Eq. 18-23)
# =========================================================================================
_STLLR_LAYER_NAMES = ("LinearSTLLR", "RecurrentSTLLR", "Conv2dSTLLR", "LeakyReadout")


_BPTT_LAYER_NAMES = ("LinearLIF", "RecurrentLIF", "Conv2dLIF", "LeakyIntegrator")


def _weight_layer_kind(m: nn.Module) -> Optional[str]:
    names = [c.__name__ for c in type(m).__mro__]
    for n in ("RecurrentSTLLR", "RecurrentLIF"):
        if n in names:
            return "recurrent"
    for n in ("Conv2dSTLLR", "Conv2dLIF"):
        if n in names:
            return "conv"
    if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return "conv"
    for n in ("LeakyReadout", "LeakyIntegrator"):
        if n in names:
            return "readout"
    for n in ("LinearSTLLR", "LinearLIF"):
        if n in names:
            return "linear"
    if isinstance(m, nn.Linear):
        return "linear"
    return None


@dataclass
class LayerShape:
    """One weight layer as it ran on one sample: neurons = output activations (C*H*W for conv),
    ``weight_macs`` = MACs of its weights for one sample and one step (recurrent: input and
    recurrent weights; conv: outputs x C_in/groups x kh x kw)."""

    name: str
    kind: str
    layer_type: str
    in_neurons: int
    neurons: int
    weight_macs: int
    out_shape: tuple


@dataclass
class ModelShapes:
    """N^(l) of the paper: ``input_neurons`` (l=0) and each weight layer's outputs, in call order."""

    input_shape: tuple
    input_neurons: int
    layers: list

    @property
    def neurons(self) -> list:
        return [self.input_neurons] + [l.neurons for l in self.layers]

    @property
    def sum_neurons(self) -> int:
        """sum_l N^(l), l = 0 (input) .. L."""
        return sum(self.neurons)

    @property
    def weight_macs(self) -> int:
        """sum_{l>=1} N^(l) N^(l-1) of the paper, generalised: the weight MACs of one forward step
        for one sample (equal to sum N^(l) N^(l-1) for a chain of fully connected layers)."""
        return sum(l.weight_macs for l in self.layers)

    @property
    def num_classes(self) -> int:
        return self.layers[-1].neurons if self.layers else 0

    def as_dict(self) -> dict:
        return {
            "input_shape": list(self.input_shape),
            "input_neurons": self.input_neurons,
            "sum_neurons": self.sum_neurons,
            "weight_macs": self.weight_macs,
            "layers": [asdict(l) for l in self.layers],
        }


def _model_input_shape(model: nn.Module, input_shape) -> tuple:
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None)
    if input_shape is None:
        raise ValueError(
            "input_shape: the model has no `input_shape` attribute; pass the shape of one "
            "sample at one step, e.g. (700,) or (2, 32, 32)"
        )
    if isinstance(input_shape, int):
        input_shape = (input_shape,)
    return tuple(int(s) for s in input_shape)


def _model_dtype_device(model: nn.Module):
    for p in model.parameters():
        return p.dtype, p.device
    return torch.get_default_dtype(), torch.device("cpu")


def model_shapes(model: nn.Module, input_shape: Optional[Sequence[int]] = None) -> ModelShapes:
    """Run one dummy step (batch 1, no grad) and record every weight layer's shapes.

    Weight layers: the S-TLLR layers, their BPTT twins, ``nn.Linear`` and ``nn.Conv*``. A
    module that contains another weight layer counts only through its children. The model's
    state is reset before and after. ``input_shape``: one sample at one step, e.g. ``(700,)``
    or ``(2, 32, 32)``; defaults to ``model.input_shape``.
    """
    input_shape = _model_input_shape(model, input_shape)
    dtype, device = _model_dtype_device(model)
    records, handles = [], []

    def hook(mod, inputs, output, name):
        x = inputs[0]
        kind = _weight_layer_kind(mod)
        out = output[0] if isinstance(output, (tuple, list)) else output
        in_n = x[0].numel()
        out_n = out[0].numel()
        w = mod.weight
        if kind == "conv":
            macs = out_n * w[0].numel()
        elif kind == "recurrent":
            macs = out_n * (in_n + out_n)
        else:
            macs = out_n * in_n
        records.append(
            LayerShape(
                name,
                kind,
                type(mod).__name__,
                int(in_n),
                int(out_n),
                int(macs),
                tuple(out.shape[1:]),
            )
        )

    for name, m in model.named_modules():
        if _weight_layer_kind(m) is not None and isinstance(
            getattr(m, "weight", None), torch.Tensor
        ):
            handles.append(
                m.register_forward_hook(lambda mod, i, o, name=name: hook(mod, i, o, name))
            )
    was_training = model.training
    try:
        reset_sequence(model)
        with torch.no_grad():
            model(torch.zeros((1,) + input_shape, dtype=dtype, device=device))
    finally:
        for h in handles:
            h.remove()
        reset_sequence(model)
        model.train(was_training)
    if not records:
        raise ValueError(f"model_shapes: no weight layers found in {type(model).__name__}")
    return ModelShapes(input_shape, math.prod(input_shape), records)


def paper_memory(sum_neurons: int, T: int, method: str) -> int:
    """Eq. 18-19, in stored values for one sample: BPTT ``T * sum_l N^(l)``, S-TLLR
    ``2 * sum_l N^(l)`` (two traces per neuron, independent of T)."""
    _check_T(T)
    if method == "bptt":
        return T * sum_neurons
    if method == "stllr":
        return 2 * sum_neurons
    raise ValueError(f"method: expected 'bptt' or 'stllr', got {method!r}")


def paper_macs(
    weight_macs: int, T: int, method: str, window: Optional[int] = None, alpha_post: float = -1.0
) -> int:
    """Eq. 20-21, for one sample: BPTT ``2 T S``; S-TLLR ``3 (T - T_l) S`` with
    ``T - T_l = window`` (``2`` instead of ``3`` when ``alpha_post == 0``), where
    ``S = sum_{l>=1} N^(l) N^(l-1)`` (:attr:`ModelShapes.weight_macs`)."""
    _check_T(T)
    if method == "bptt":
        return 2 * T * weight_macs
    if method == "stllr":
        d = _check_window(T, window)
        return (2 if alpha_post == 0 else 3) * d * weight_macs
    raise ValueError(f"method: expected 'bptt' or 'stllr', got {method!r}")


def paper_memory_ratio(T: int) -> float:
    """S_mem = Mem_BPTT / Mem_S-TLLR = T / 2 (Eq. 22)."""
    _check_T(T)
    return T / 2.0


def paper_mac_ratio(T: int, window: Optional[int] = None, alpha_post: float = -1.0) -> float:
    """S_MAC = MAC_BPTT / MAC_S-TLLR = 2 T / (3 (T - T_l)) (Eq. 23; 2 instead of 3 when
    alpha_post = 0)."""
    d = _check_window(T, window)
    return 2.0 * T / ((2 if alpha_post == 0 else 3) * d)


def _check_T(T) -> int:
    if isinstance(T, bool) or not isinstance(T, int) or T <= 0:
        raise ValueError(f"T: expected a positive integer number of time steps, got {T!r}")
    return T


def _check_window(T, window) -> int:
    _check_T(T)
    if window is None:
        return T
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= T:
        raise ValueError(
            f"window: expected an integer in [1, T={T}] (the learning window T - T_l), "
            f"got {window!r}"
        )
    return window


def model_alpha_post(model: nn.Module) -> Optional[float]:
    """alpha_post of the model's spiking S-TLLR layers (the readout, which has no non-causal
    term, is ignored): the one with the largest magnitude, or None if the model has none."""
    values = []
    for m in model.modules():
        names = [c.__name__ for c in type(m).__mro__]
        if any(n in names for n in ("LinearSTLLR", "Conv2dSTLLR")) and "LeakyReadout" not in names:
            f = getattr(m, "factors", None)
            if isinstance(f, torch.Tensor) and f.numel() == 4:
                values.append(float(f[2]))
    if not values:
        return None
    return max(values, key=abs)


def analytic_costs(
    model_or_shapes: Union[nn.Module, ModelShapes],
    T: int,
    window: Optional[int] = None,
    alpha_post: Optional[float] = None,
    batch_size: int = 1,
    bytes_per_value: Optional[int] = None,
    input_shape=None,
) -> dict:
    """The paper's memory and MACs (Eq. 18-23) for a model, T and learning window.

    ``window`` = T - T_l (defaults to T); ``alpha_post`` defaults to the model's (-1 if it has
    no S-TLLR layer). Memory in values and in bytes (``bytes_per_value``: the model's element
    size, 4 for float32), MACs; both multiplied by ``batch_size`` (the paper's Table 3 is for
    batch 1).
    """
    if isinstance(model_or_shapes, ModelShapes):
        shapes = model_or_shapes
        if bytes_per_value is None:
            bytes_per_value = 4
    else:
        shapes = model_shapes(model_or_shapes, input_shape)
        if alpha_post is None:
            alpha_post = model_alpha_post(model_or_shapes)
        if bytes_per_value is None:
            bytes_per_value = torch.empty(
                (), dtype=_model_dtype_device(model_or_shapes)[0]
            ).element_size()
    if alpha_post is None:
        alpha_post = -1.0
    d = _check_window(T, window)
    mem_b = paper_memory(shapes.sum_neurons, T, "bptt") * batch_size
    mem_s = paper_memory(shapes.sum_neurons, T, "stllr") * batch_size
    mac_b = paper_macs(shapes.weight_macs, T, "bptt") * batch_size
    mac_s = paper_macs(shapes.weight_macs, T, "stllr", d, alpha_post) * batch_size
    return {
        "T": T,
        "window": d,
        "T_l": T - d,
        "alpha_post": alpha_post,
        "batch_size": batch_size,
        "sum_neurons": shapes.sum_neurons,
        "weight_macs_per_step": shapes.weight_macs,
        "bptt_memory_values": mem_b,
        "stllr_memory_values": mem_s,
        "bptt_memory_bytes": mem_b * bytes_per_value,
        "stllr_memory_bytes": mem_s * bytes_per_value,
        "memory_ratio": mem_b / mem_s,
        "bptt_macs": mac_b,
        "stllr_macs": mac_s,
        "mac_ratio": mac_b / mac_s,
    }
