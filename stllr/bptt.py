"""BPTT twins of the S-TLLR layers: the same forward dynamics, the secondary activation psi as
the surrogate derivative of the spike, and the autograd graph kept through time.

Each twin has the same constructor arguments and parameter names as its S-TLLR layer, so
weights move between the two with ``load_state_dict``. Training one with a loss on the summed
outputs and a single ``backward()`` is backpropagation through time (memory linear in T).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import torch
from torch import nn
from torch.nn import init

from stllr._base import StatefulLayer

from . import _checks
from . import functional as SF
from .functional import PsiLike
from .layers import add_recurrent_weight, set_conv_geometry

__all__ = [
    "SurrogateSpike",
    "surrogate_spike",
    "LIFState",
    "LinearLIF",
    "RecurrentLIF",
    "Conv2dLIF",
    "LeakyIntegrator",
]


class SurrogateSpike(torch.autograd.Function):
    """Heaviside forward, ``psi(v)`` backward: ``ds/dv := psi(v)``."""

    @staticmethod
    def forward(ctx, v, psi):
        ctx.save_for_backward(v)
        ctx.psi = psi
        return SF.heaviside(v)

    @staticmethod
    def backward(ctx, grad_spikes):
        (v,) = ctx.saved_tensors
        return grad_spikes * ctx.psi(v), None


def surrogate_spike(v: torch.Tensor, psi: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``H(v)`` with the surrogate derivative ``psi(v)``."""
    return SurrogateSpike.apply(v, psi)


class LIFState(NamedTuple):
    """membrane u_t (after reset) and spikes s_t, both attached to the graph (the leaky
    integrator keeps only the membrane)."""

    membrane: torch.Tensor
    spikes: Optional[torch.Tensor]


class _LIFBase(StatefulLayer):
    _default_psi = "rational"

    def __init__(
        self,
        weight_shape,
        bias,
        threshold,
        leak,
        reset,
        psi,
        weight_standardization,
        spike_fn,
        device,
        dtype,
    ):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        threshold = _checks.check_finite_number(threshold, "threshold", minimum=0.0)
        leak = _checks.check_finite_number(leak, "leak")
        self.reset = _checks.check_reset(reset)
        self.psi = SF.get_psi(self._default_psi if psi is None else psi)
        self.weight_standardization = bool(weight_standardization)
        self.spike_fn = spike_fn
        self.weight = nn.Parameter(torch.empty(weight_shape, **kw))
        if bias:
            self.bias = nn.Parameter(torch.empty(weight_shape[0], **kw))
        else:
            self.register_parameter("bias", None)
        if self.weight_standardization:
            self.gain = nn.Parameter(
                torch.ones((weight_shape[0],) + (1,) * (len(weight_shape) - 1), **kw)
            )
        else:
            self.register_parameter("gain", None)
        self.leak = nn.Parameter(torch.tensor(leak, **kw), requires_grad=False)
        self.threshold = nn.Parameter(torch.tensor(threshold, **kw), requires_grad=False)
        self.state: Optional[LIFState] = None
        self._w_cache_key = None
        self._w_cache = None
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            init.uniform_(self.bias, -bound, bound)

    def _invalidate_cache(self) -> None:
        self._w_cache_key = None
        self._w_cache = None

    def _weights(self):
        return [(self.weight, self.gain)]

    def _effective_weights(self):
        """Standardised weights, computed once per sequence (with their graph) and reused by
        every step of it; recomputed when a parameter changes or grad mode flips."""
        tensors = [t for pair in self._weights() for t in pair if t is not None]
        key = tuple((t._version, t.data_ptr()) for t in tensors) + (torch.is_grad_enabled(),)
        if key != self._w_cache_key:
            self._w_cache = [
                SF.standardize_weight(w, g)
                if (g is not None and self.weight_standardization)
                else w
                for w, g in self._weights()
            ]
            self._w_cache_key = key
        return self._w_cache

    def _spike(self, v):
        return self.spike_fn(v) if self.spike_fn is not None else surrogate_spike(v, self.psi)

    def _step(self, current):
        beta = SF.beta_from_leak(self.leak)
        theta = SF.effective_threshold(self.threshold)
        membrane = torch.zeros_like(current) if self.state is None else self.state.membrane
        step = SF.lif_step(current, membrane, beta, theta, None, self.reset, spike_fn=self._spike)
        self.state = LIFState(step.membrane, step.spikes)
        return step.spikes


class LinearLIF(_LIFBase):
    """BPTT twin of :class:`~stllr.LinearSTLLR`: x_t [B, in_features] -> spikes [B, out_features]."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        threshold: float = 0.6,
        leak: float = 2.0,
        reset: str = "soft",
        psi: PsiLike | None = None,
        weight_standardization: bool = True,
        spike_fn=None,
        device=None,
        dtype=None,
    ):
        self.in_features = _checks.check_positive_int(in_features, "in_features")
        self.out_features = _checks.check_positive_int(out_features, "out_features")
        super().__init__(
            (out_features, in_features),
            bias,
            threshold,
            leak,
            reset,
            psi,
            weight_standardization,
            spike_fn,
            device,
            dtype,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _checks.check_layer_input(x, self, 2, self.in_features, 1, "batch, in_features")
        self._check_batch(x)
        (w,) = self._effective_weights()
        return self._step(SF.linear(x, w, self.bias))


class RecurrentLIF(LinearLIF):
    """BPTT twin of :class:`~stllr.RecurrentSTLLR`; the gradient also flows through s_{t-1}."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        threshold: float = 0.6,
        leak: float = 2.0,
        reset: str = "soft",
        psi: PsiLike | None = None,
        weight_standardization: bool = True,
        spike_fn=None,
        device=None,
        dtype=None,
    ):
        super().__init__(
            in_features,
            out_features,
            bias,
            threshold,
            leak,
            reset,
            psi,
            weight_standardization,
            spike_fn,
            device,
            dtype,
        )
        add_recurrent_weight(self, out_features, device, dtype)

    def _weights(self):
        return [(self.weight, self.gain), (self.weight_rec, self.gain_rec)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _checks.check_layer_input(x, self, 2, self.in_features, 1, "batch, in_features")
        self._check_batch(x)
        w, w_rec = self._effective_weights()
        current = SF.linear(x, w, self.bias)
        if self.state is not None:
            current = current + SF.linear(self.state.spikes, w_rec, None)
        return self._step(current)


class Conv2dLIF(_LIFBase):
    """BPTT twin of :class:`~stllr.Conv2dSTLLR`: [B, C_in, H, W] -> spikes [B, C_out, H', W']."""

    _default_psi = "triangle"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        threshold: float = 0.6,
        leak: float = 2.0,
        reset: str = "soft",
        psi: PsiLike | None = None,
        weight_standardization: bool = True,
        spike_fn=None,
        device=None,
        dtype=None,
    ):
        set_conv_geometry(
            self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups
        )
        super().__init__(
            (out_channels, in_channels // groups) + self.kernel_size,
            bias,
            threshold,
            leak,
            reset,
            psi,
            weight_standardization,
            spike_fn,
            device,
            dtype,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _checks.check_layer_input(x, self, 4, self.in_channels, 1, "batch, channels, height, width")
        self._check_batch(x)
        (w,) = self._effective_weights()
        current = torch.nn.functional.conv2d(
            x, w, self.bias, self.stride, self.padding, self.dilation, self.groups
        )
        return self._step(current)


class LeakyIntegrator(StatefulLayer):
    """BPTT twin of :class:`~stllr.LeakyReadout`: ``u_t = beta u_{t-1} + x_t W^T + b`` (raw
    weight), output u_t; graph kept through time. x_t [B, in_features] -> [B, out_features]."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        leak: float = 2.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.in_features = _checks.check_positive_int(in_features, "in_features")
        self.out_features = _checks.check_positive_int(out_features, "out_features")
        leak = _checks.check_finite_number(leak, "leak")
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **kw))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, **kw))
        else:
            self.register_parameter("bias", None)
        self.leak = nn.Parameter(torch.tensor(leak, **kw), requires_grad=False)
        # unused by the dynamics; present so state_dicts move to and from LeakyReadout unchanged
        self.threshold = nn.Parameter(torch.tensor(0.6, **kw), requires_grad=False)
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(in_features)
            init.uniform_(self.bias, -bound, bound)
        self.state: Optional[LIFState] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _checks.check_layer_input(x, self, 2, self.in_features, 1, "batch, in_features")
        self._check_batch(x)
        current = SF.linear(x, self.weight, self.bias)
        beta = SF.beta_from_leak(self.leak)
        u = current if self.state is None else beta * self.state.membrane + current
        self.state = LIFState(u, None)
        return u
