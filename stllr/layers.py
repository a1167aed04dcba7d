"""S-TLLR layers: one time step per ``forward(x_t)``, ``reset_state()`` between sequences.

Each layer runs its LIF dynamics without an autograd graph through time (every state is
detached between steps, rule.md step 7). When a step is called with gradients enabled, the
output spikes carry a small autograd node whose backward applies the S-TLLR rule
(rule.md "Backward at step t"): the gradient reaching ``weight`` is the rule's
eligibility-times-learning-signal, not backprop through time. Steps run under
``torch.no_grad()`` (before the learning window) build no graph at all.

Parameter and buffer names follow the reference (``weight``, ``bias``, ``gain``, ``leak``,
``threshold``, ``factors``; recurrent adds ``weight_rec``, ``gain_rec``), so the authors'
state dicts (``state_dict``) load as-is.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
from torch import nn
from torch.nn import init

from stllr._base import StatefulLayer

from . import _checks
from . import functional as SF
from .deferral import gemm_operands_into
from .functional import DEFAULT_FACTORS, PsiLike

__all__ = ["STLLRState", "LinearSTLLR", "RecurrentSTLLR", "Conv2dSTLLR", "LeakyReadout"]


class STLLRState(NamedTuple):
    """State of an S-TLLR layer between steps (all detached).

    pre_trace: tr_in_t, [B, M] (recurrent: [B, M + N], the input and recurrent traces side
    by side) or [B, C_in, H, W]; post_trace: tr_out_t, [B, N] / [B, C_out, H', W'];
    membrane: u_t after reset; spikes: s_t; psi: psi(v_t) of the last step.
    The readout keeps only pre_trace and membrane (the others are None).
    """

    pre_trace: torch.Tensor
    post_trace: Optional[torch.Tensor]
    membrane: torch.Tensor
    spikes: Optional[torch.Tensor]
    psi: Optional[torch.Tensor]


class _SequenceConstants(NamedTuple):
    """Per-sequence constants, held by the layer (like its parameters), not by the graph."""

    w_tilde: torch.Tensor  # standardised (or raw) weight used by the forward pass, detached
    ws_caches: tuple  # per (weight, gain) pair: StandardizationCache, or None when not standardised
    lambda_post: float
    lambda_pre: float
    alpha_post: float
    alpha_pre: float
    beta: float
    theta: float


class _STLLRRule(torch.autograd.Function):
    """Identity on the spikes in the forward pass; the S-TLLR rule in the backward pass.

    The layer computes the step under no_grad and hands over what the rule needs: the step's
    activations go through ``save_for_backward`` (so saved-tensor hooks, i.e. memory
    accounting, see them); the per-sequence constants (W~ and the standardisation cache) are
    held by the layer like its parameters and passed by reference.
    """

    @staticmethod
    def forward(ctx, output, layer, constants, saved, x, *params):
        ctx.layer = layer
        ctx.meta = constants
        ctx.save_for_backward(*saved)
        return output.view_as(output)

    @staticmethod
    def backward(ctx, delta):
        grads = ctx.layer._rule_backward(delta, ctx.saved_tensors, ctx.meta, ctx.needs_input_grad)
        return (None, None, None, None) + tuple(grads)


class _STLLRBase(StatefulLayer):
    """Shared machinery: parameters, argument checks, per-sequence constants, state handling."""

    _default_psi = "rational"
    _uses_standardization = True
    _deferral = None  # a stllr.deferral buffer while stllr.deferred_updates is active

    def __init__(
        self,
        weight_shape,
        bias,
        threshold,
        leak,
        factors,
        reset,
        psi,
        weight_standardization,
        device=None,
        dtype=None,
    ):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        threshold = _checks.check_finite_number(threshold, "threshold", minimum=0.0)
        leak = _checks.check_finite_number(leak, "leak")
        factors = SF.check_factors(DEFAULT_FACTORS if factors is None else factors)
        self.reset = _checks.check_reset(reset)
        self.psi = SF.get_psi(self._default_psi if psi is None else psi)
        self.weight_standardization = bool(weight_standardization)
        self.weight = nn.Parameter(torch.empty(weight_shape, **kw))
        if bias:
            self.bias = nn.Parameter(torch.empty(weight_shape[0], **kw))
        else:
            self.register_parameter("bias", None)
        if self.weight_standardization:
            gain_shape = (weight_shape[0],) + (1,) * (len(weight_shape) - 1)
            self.gain = nn.Parameter(torch.ones(gain_shape, **kw))
        else:
            self.register_parameter("gain", None)
        # leak and threshold are parameters in the reference but the rule gives them no gradient.
        self.leak = nn.Parameter(torch.tensor(leak, **kw), requires_grad=False)
        self.threshold = nn.Parameter(torch.tensor(threshold, **kw), requires_grad=False)
        self.register_buffer("factors", torch.tensor(factors, **kw))
        self.state: Optional[STLLRState] = None
        self._constants_key = None
        self._constants: Optional[_SequenceConstants] = None
        self.reset_parameters()

    # -- parameters -------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """nn.Linear / nn.Conv2d default initialisation (the reference subclasses them)."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def _weights(self):
        """[(weight, gain)] pairs that are standardised separately (recurrent has two)."""
        return [(self.weight, self.gain)]

    def _sequence_constants(self) -> _SequenceConstants:
        """Standardised weight and scalar factors, computed once and reused until a parameter
        changes (optimizer step, load_state_dict, .to()): not at every step."""
        tensors = [t for pair in self._weights() for t in pair if t is not None]
        tensors += [self.leak, self.threshold, self.factors]
        key = tuple((t._version, t.data_ptr(), t.dtype) for t in tensors)
        if key != self._constants_key:
            with torch.no_grad():
                caches, parts = [], []
                for w, g in self._weights():
                    if g is not None and self.weight_standardization and self._uses_standardization:
                        cache = SF.standardization_cache(w, g)
                        parts.append(SF.standardized_weight(cache))  # W~
                    else:
                        cache = None
                        parts.append(w.detach())
                    caches.append(cache)
                w_tilde = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
                lp, lpre, ap, apre = self.factors_tuple
                beta = float(SF.beta_from_leak(self.leak))
                theta = float(SF.effective_threshold(self.threshold))
            self._constants = _SequenceConstants(
                w_tilde, tuple(caches), lp, lpre, ap, apre, beta, theta
            )
            self._constants_key = key
        return self._constants

    def _invalidate_cache(self) -> None:
        self._constants_key = None

    def _needs_rule(self, x) -> bool:
        if not torch.is_grad_enabled():
            return False
        return x.requires_grad or any(
            p is not None and p.requires_grad for p in self._rule_params()
        )

    def _rule_params(self):
        return [self.weight, self.gain, self.bias]

    # -- convenient views of the state ----------------------------------------------------
    @property
    def pre_trace(self):
        return None if self.state is None else self.state.pre_trace

    @property
    def post_trace(self):
        return None if self.state is None else self.state.post_trace

    @property
    def spikes(self):
        return None if self.state is None else self.state.spikes

    @property
    def factors_tuple(self) -> SF.Factors:
        """The ``factors`` buffer as a :class:`~stllr.functional.Factors` of floats."""
        return SF.Factors(*(float(f) for f in self.factors.tolist()))

    def extra_repr(self) -> str:
        lp, lpre, ap, apre = self.factors_tuple
        return (
            f"{self._shape_repr()}, bias={self.bias is not None}, threshold={float(self.threshold):g}, "
            f"leak={float(self.leak):g}, factors=[{lp:g}, {lpre:g}, {ap:g}, {apre:g}], reset={self.reset!r}, "
            f"psi={SF.psi_name(self.psi)!r}, weight_standardization={self.weight_standardization}"
        )

    # -- the step -----------------------------------------------------------------------
    def _lif_forward(self, x_in, current_fn, c: _SequenceConstants):
        """Common LIF + trace update under no_grad. x_in: the (detached) presynaptic input."""
        st = self.state
        with torch.no_grad():
            current = current_fn(x_in, c.w_tilde)
            if st is None:
                pre_prev = torch.zeros_like(x_in)
                post_prev = torch.zeros_like(current)
                membrane_prev = torch.zeros_like(current)
            else:
                pre_prev, post_prev, membrane_prev = st.pre_trace, st.post_trace, st.membrane
            pre_trace = SF.trace_step(pre_prev, c.lambda_pre, x_in)  # rule.md step 1
            step = SF.lif_step(
                current,
                membrane_prev,
                c.beta,
                c.theta,  # steps 2-4, 6
                self.psi,
                self.reset,
            )
            post_trace = SF.trace_step(post_prev, c.lambda_post, step.psi)  # step 5
        self.state = STLLRState(pre_trace, post_trace, step.membrane, step.spikes, step.psi)
        return step, pre_trace, post_prev

    def _spiking_step(self, x, x_in, current_fn, c: _SequenceConstants):
        """One step: LIF and traces without a graph; with gradients enabled, the output spikes carry
        the rule's backward and the step's activations it needs (the non-causal ones only when
        alpha_post != 0)."""
        step, pre_trace, post_prev = self._lif_forward(x_in, current_fn, c)
        if not self._needs_rule(x):
            return step.spikes
        noncausal = c.alpha_post != 0.0
        saved = (x_in if noncausal else None, pre_trace, post_prev if noncausal else None, step.psi)
        return _STLLRRule.apply(step.spikes, self, c, saved, x, *self._rule_params())

    def _defer_step(self, c, delta, psi_t, post_prev, x_in, pre_trace):
        """Inside :func:`stllr.deferred_updates`: store this step's GEMM operands (and dL/db).
        Returns ``g = delta * psi_t``: with alpha_pre = 1 the causal rows of the buffer hold it
        exactly, and dL/db is summed from them when the chunk's GEMM runs."""
        buf = self._deferral
        left, _ = gemm_operands_into(buf, c, delta, psi_t, post_prev, x_in, pre_trace)
        if c.alpha_pre == 1.0:
            buf.bias_from_rows = self.bias is not None
            return left if c.alpha_post == 0.0 else left[delta.shape[0] :]
        g = delta * psi_t
        buf.add_bias(self._bias_grad(g))
        return g

    def _deferred_weight_grad(self, left, right):
        """dL/dW~ of the deferred rows: ``left^T right`` (conv: ``conv2d_weight``)."""
        return left.t() @ right

    def _deferred_param_grads(self, acc, bias_acc, c: _SequenceConstants):
        """[(parameter, gradient)] from the summed dL/dW~ ``acc`` (recurrent: ``[W~ | W~_rec]``
        columns) and the summed dL/db, through each matrix's standardisation backward."""
        pairs = self._weights()
        out, offset = [], 0
        for (w, gain), cache in zip(pairs, c.ws_caches):
            if len(pairs) == 1:
                part = acc
            else:
                part = acc[:, offset : offset + w.shape[1]].contiguous()
                offset += w.shape[1]
            gw, gg = self._standardization_backward(part, cache)
            out += [(w, gw), (gain, gg)]
        return out + [(self.bias, bias_acc)]

    @staticmethod
    def _standardization_backward(grad_w_tilde, cache):
        """Carry dL/dW~ through the standardisation: [dL/dW, dL/dgain] (gain grad None if raw)."""
        if cache is None:
            return [grad_w_tilde, None]
        return list(SF.standardize_weight_backward(grad_w_tilde, cache))


class LinearSTLLR(_STLLRBase):
    """Fully connected LIF layer trained by S-TLLR.

    ``forward(x_t)``: x_t [B, in_features] -> spikes s_t [B, out_features].
    factors = [lambda_post, lambda_pre, alpha_post, alpha_pre] (default [0.5, 0.8, -0.2, 1]).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        threshold: float = 0.6,
        leak: float = 2.0,
        factors=None,
        reset: str = "soft",
        psi: PsiLike | None = None,
        weight_standardization: bool = True,
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
            factors,
            reset,
            psi,
            weight_standardization,
            device,
            dtype,
        )

    def _shape_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}"

    def _input(self, x):
        return x.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _checks.check_layer_input(x, self, 2, self.in_features, 1, "batch, in_features")
        self._check_batch(x)
        c = self._sequence_constants()
        x_in = self._input(x)
        bias = None if self.bias is None else self.bias.detach()
        return self._spiking_step(x, x_in, lambda inp, w: SF.linear(inp, w, bias), c)

    def _rule_backward(self, delta, saved, c: _SequenceConstants, needs):
        x_in, pre_trace, post_prev, psi_t = saved
        if self._deferral is not None:
            g = self._defer_step(c, delta, psi_t, post_prev, x_in, pre_trace)
            grad_x = g @ c.w_tilde[:, : self.in_features] if needs[4] else None
            return self._pack(grad_x, [None] * (2 * len(self._weights())), None)
        g = delta * psi_t  # learning signal x psi
        grad_x = g @ c.w_tilde[:, : self.in_features] if needs[4] else None  # one-step spatial BP
        # dL/dW~: causal and non-causal terms in one GEMM per weight matrix ([W | W_rec] columns)
        grads_w_tilde = SF.stllr_linear_weight_grads(
            delta,
            psi_t,
            post_prev,
            x_in,
            pre_trace,
            c.alpha_post,
            c.alpha_pre,
            [w.shape[1] for w, _ in self._weights()],
        )
        param_grads = []
        for grad_w_tilde, cache in zip(grads_w_tilde, c.ws_caches):
            param_grads += self._standardization_backward(grad_w_tilde, cache)
        return self._pack(grad_x, param_grads, self._bias_grad(g))

    def _bias_grad(self, g):
        return g.sum(0) if self.bias is not None else None

    def _pack(self, grad_x, param_grads, grad_b):
        # order of _rule_params(): weight, gain, bias
        return (grad_x, param_grads[0], param_grads[1], grad_b)


class RecurrentSTLLR(LinearSTLLR):
    """Recurrent LIF layer trained by S-TLLR: the membrane also receives ``s_{t-1} W~_rec^T``.

    ``forward(x_t)``: x_t [B, in_features] -> spikes s_t [B, out_features]. The recurrent input
    s_{t-1} passes no gradient; its trace ``tr_rec`` (lambda_pre) gives
    ``grad W~_rec = alpha_post (delta tr_out_{t-1})^T s_{t-1} + alpha_pre (delta psi_t)^T tr_rec``.
    Internally the layer is a linear S-TLLR layer on ``z_t = [x_t, s_{t-1}]`` with the weight
    ``[W~, W~_rec]``: one GEMM forward, one GEMM for both weight gradients.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        threshold: float = 0.6,
        leak: float = 2.0,
        factors=None,
        reset: str = "soft",
        psi: PsiLike | None = None,
        weight_standardization: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__(
            in_features,
            out_features,
            bias,
            threshold,
            leak,
            factors,
            reset,
            psi,
            weight_standardization,
            device,
            dtype,
        )
        add_recurrent_weight(self, out_features, device, dtype)

    def _weights(self):
        return [(self.weight, self.gain), (self.weight_rec, self.gain_rec)]

    def _rule_params(self):
        return [self.weight, self.gain, self.bias, self.weight_rec, self.gain_rec]

    def _input(self, x):
        prev = (
            torch.zeros(x.shape[0], self.out_features, dtype=x.dtype, device=x.device)
            if self.state is None
            else self.state.spikes
        )
        return torch.cat((x.detach(), prev), dim=1)

    def _pack(self, grad_x, param_grads, grad_b):
        gw, gg, gw_rec, gg_rec = param_grads
        return (grad_x, gw, gg, grad_b, gw_rec, gg_rec)

    @property
    def input_trace(self):
        """tr_in, [B, in_features]."""
        return None if self.state is None else self.state.pre_trace[:, : self.in_features]

    @property
    def rec_trace(self):
        """tr_rec as used at the next step (already contains s_t), [B, out_features]."""
        return None if self.state is None else self.state.pre_trace[:, self.in_features :]


def add_recurrent_weight(layer: nn.Module, n: int, device=None, dtype=None) -> None:
    """Register ``weight_rec`` [n, n] (nn.Linear's init) and, with weight standardisation,
    its own ``gain_rec`` [n, 1]: shared by RecurrentSTLLR and its BPTT twin."""
    kw = {"device": device, "dtype": dtype}
    layer.weight_rec = nn.Parameter(torch.empty(n, n, **kw))
    if layer.weight_standardization:
        layer.gain_rec = nn.Parameter(torch.ones(n, 1, **kw))
    else:
        layer.register_parameter("gain_rec", None)
    init.kaiming_uniform_(layer.weight_rec, a=math.sqrt(5))


def set_conv_geometry(
    layer, in_channels, out_channels, kernel_size, stride, padding, dilation, groups
) -> None:
    """Validate and store the conv arguments (shared by Conv2dSTLLR and its BPTT twin)."""
    layer.in_channels = _checks.check_positive_int(in_channels, "in_channels")
    layer.out_channels = _checks.check_positive_int(out_channels, "out_channels")
    layer.groups = _checks.check_positive_int(groups, "groups")
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"groups: {groups} must divide in_channels ({in_channels}) and out_channels ({out_channels})"
        )
    layer.kernel_size = _pair(kernel_size, "kernel_size")
    layer.stride = _pair(stride, "stride")
    layer.padding = _pair(padding, "padding")
    layer.dilation = _pair(dilation, "dilation")


def _pair(v, name):
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(i, int) for i in v):
        return tuple(v)
    raise ValueError(f"{name}: expected an int or a pair of ints, got {v!r}")


class Conv2dSTLLR(_STLLRBase):
    """2-D convolutional LIF layer trained by S-TLLR.

    ``forward(x_t)``: x_t [B, C_in, H, W] -> spikes [B, C_out, H', W']. Traces have the input's
    and the output's shapes; the weight gradient is one ``conv2d_weight`` on the stacked
    non-causal and causal terms. Default psi: ``triangle`` (reference default for conv).
    """

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
        factors=None,
        reset: str = "soft",
        psi: PsiLike | None = None,
        weight_standardization: bool = True,
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
            factors,
            reset,
            psi,
            weight_standardization,
            device,
            dtype,
        )

    def _shape_repr(self):
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )

    def _conv(self, x, w, bias):
        return torch.nn.functional.conv2d(
            x, w, bias, self.stride, self.padding, self.dilation, self.groups
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _checks.check_layer_input(x, self, 4, self.in_channels, 1, "batch, channels, height, width")
        self._check_batch(x)
        c = self._sequence_constants()
        x_in = x.detach()
        bias = None if self.bias is None else self.bias.detach()
        return self._spiking_step(x, x_in, lambda inp, w: self._conv(inp, w, bias), c)

    def _rule_backward(self, delta, saved, c: _SequenceConstants, needs):
        x_in, pre_trace, post_prev, psi_t = saved
        deferred = self._deferral is not None
        if deferred:
            g = self._defer_step(c, delta, psi_t, post_prev, x_in, pre_trace)
        else:
            g = delta * psi_t
        grad_x = (
            SF.conv2d_input_grad(
                g, c.w_tilde, pre_trace.shape, self.stride, self.padding, self.dilation, self.groups
            )
            if needs[4]
            else None
        )
        if deferred:
            return (grad_x, None, None, None)
        grad_b = self._bias_grad(g)
        grad_w_tilde = SF.stllr_conv2d_weight_grad(
            delta,
            psi_t,
            post_prev,
            x_in,
            pre_trace,
            c.alpha_post,
            c.alpha_pre,
            self.weight.shape,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )
        gw, gg = self._standardization_backward(grad_w_tilde, c.ws_caches[0])
        return (grad_x, gw, gg, grad_b)

    def _bias_grad(self, g):
        return g.sum((0, 2, 3)) if self.bias is not None else None

    def _deferred_weight_grad(self, left, right):
        return torch.nn.grad.conv2d_weight(
            right, self.weight.shape, left, self.stride, self.padding, self.dilation, self.groups
        )


class LeakyReadout(_STLLRBase):
    """Non-spiking leaky integrator readout (the reference's "accumulate" mode).

    ``u_t = beta u_{t-1} + x_t W^T + b`` on the RAW weight (no standardisation); the output is
    u_t (the logits). Backward: ``grad_x = delta W``, ``grad_W = delta^T tr_in`` with
    ``tr_in = lambda_pre tr_in + x_t``, ``grad_b = sum delta``. SHD uses factors
    [0, 0.99, 0, 1] and leak 5. x_t [B, in_features] -> u_t [B, out_features].
    """

    _uses_standardization = False

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        leak: float = 2.0,
        factors=None,
        device=None,
        dtype=None,
    ):
        self.in_features = _checks.check_positive_int(in_features, "in_features")
        self.out_features = _checks.check_positive_int(out_features, "out_features")
        super().__init__(
            (out_features, in_features),
            bias,
            0.6,
            leak,
            factors,
            "soft",
            "rational",
            False,
            device,
            dtype,
        )

    def _shape_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}"

    def extra_repr(self) -> str:
        return (
            f"{self._shape_repr()}, bias={self.bias is not None}, leak={float(self.leak):g}, "
            f"lambda_pre={self.factors_tuple[1]:g}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _checks.check_layer_input(x, self, 2, self.in_features, 1, "batch, in_features")
        self._check_batch(x)
        c = self._sequence_constants()
        x_in = x.detach()
        with torch.no_grad():
            current = SF.linear(x_in, c.w_tilde, None if self.bias is None else self.bias.detach())
            if self.state is None:
                pre_prev, membrane_prev = torch.zeros_like(x_in), torch.zeros_like(current)
            else:
                pre_prev, membrane_prev = self.state.pre_trace, self.state.membrane
            pre_trace = SF.trace_step(pre_prev, c.lambda_pre, x_in)
            u = c.beta * membrane_prev + current
        self.state = STLLRState(pre_trace, None, u, None, None)
        if not self._needs_rule(x):
            return u
        return _STLLRRule.apply(u, self, c, (pre_trace,), x, *self._rule_params())

    def _rule_backward(self, delta, saved, c: _SequenceConstants, needs):
        (pre_trace,) = saved
        grad_x = delta @ c.w_tilde if needs[4] else None
        if self._deferral is not None:  # operands: delta and tr_in (readout_weight_grad)
            buf = self._deferral
            left, right = buf.step_operands(
                c,
                delta.shape[0],
                delta.shape[0],
                delta.shape[1:],
                pre_trace.shape[1:],
                delta.dtype,
                delta.device,
            )
            left.copy_(delta)
            right.copy_(pre_trace)
            buf.bias_from_rows = self.bias is not None  # dL/db: the sum of the delta rows
            return (grad_x, None, None, None)
        grad_w = SF.readout_weight_grad(delta, pre_trace)
        return (grad_x, grad_w, None, self._bias_grad(delta))

    def _bias_grad(self, g):
        return g.sum(0) if self.bias is not None else None
