"""Pure functions of S-TLLR: secondary activations, one LIF step, traces, weight
standardisation and the rule's weight gradients.

Everything here is stateless: state goes in and comes out explicitly (Norse style), so a
reader finds every equation of the rule in this one file. Equation numbers refer to the
paper (Apolinario & Roy, TMLR 2025, arXiv 2306.15220v4); where the paper and the authors'
code differ, the code's convention is used and noted (see ``docs/rule.md``).

Notation: B batch, M inputs, N neurons. ``delta`` is the learning signal dL/ds_t that
arrives at a layer's output.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional, Sequence, Union

import torch
import torch.nn.functional as F

__all__ = [
    "rational",
    "triangle",
    "sigmoid",
    "fast_sigmoid",
    "PSI_FUNCTIONS",
    "get_psi",
    "heaviside",
    "LIFStep",
    "lif_step",
    "trace_step",
    "standardize_weight",
    "StandardizationCache",
    "standardization_cache",
    "standardized_weight",
    "standardize_weight_backward",
    "stllr_gemm_operands",
    "stllr_linear_weight_grads",
    "stllr_conv2d_weight_grad",
    "readout_weight_grad",
    "beta_from_leak",
    "effective_threshold",
    "Factors",
    "DEFAULT_FACTORS",
    "CLI_DEFAULT_FACTORS",
    "check_factors",
]


class Factors(NamedTuple):
    """The rule's four factors, in the reference's order (rule.md "Factors"; paper Eq. 10-11).

    A tuple: indexes, unpacks and compares like ``(lambda_post, lambda_pre, alpha_post,
    alpha_pre)``; ``json.dumps`` writes it as a list. The code's alpha_post is the paper's
    alpha_post * lambda_post (see :func:`stllr_linear_weight_grads`).
    """

    lambda_post: float  #: decay of the post-synaptic trace tr_out (Eq. 11)
    lambda_pre: float  #: decay of the pre-synaptic trace tr_in (Eq. 10)
    alpha_post: float  #: weight of the non-causal term (0 removes it, OTTT-like)
    alpha_pre: float  #: weight of the causal term


#: Layer default of the reference layers.
DEFAULT_FACTORS = Factors(0.5, 0.8, -0.2, 1.0)
#: Default of the reference's ``--factors-stdp`` command-line flag.
CLI_DEFAULT_FACTORS = Factors(0.2, 0.75, -1.0, 1.0)
#: Lower bound of the firing threshold used by the reference (theta^ = max(threshold, 0.5)).
MIN_THRESHOLD = 0.5
#: Epsilon of the weight standardisation.
WS_EPS = 1e-4


# ---------------------------------------------------------------------------------------
# Secondary activations psi(v) (paper Eq. 25-28). v = m - theta^ is the pre-reset membrane
# minus the threshold, so every psi peaks at the threshold crossing.
# ---------------------------------------------------------------------------------------
def rational(v: torch.Tensor) -> torch.Tensor:
    """Eq. 25: ``1 / (100 |v| + 1)^2``. Reference default for linear and recurrent layers."""
    return v.abs().mul_(100.0).add_(1.0).square_().reciprocal_()  # in place on one new tensor


def triangle(v: torch.Tensor) -> torch.Tensor:
    """Eq. 26: ``0.3 * max(0, 1 - |v|)``. Reference default for conv layers."""
    return 0.3 * torch.clamp(1.0 - v.abs(), min=0.0)


def sigmoid(v: torch.Tensor) -> torch.Tensor:
    """Eq. 27 as the code computes it: ``4 s (1 - s)`` with ``s = sigmoid(4 v)``
    (the paper prints sigma(v); the reference puts the 4 inside)."""
    s = torch.sigmoid(4.0 * v)
    return 4.0 * s * (1.0 - s)


def fast_sigmoid(v: torch.Tensor) -> torch.Tensor:
    """Eq. 28: ``1 / (1 + (10 v)^2)``."""
    return 1.0 / (1.0 + (10.0 * v) ** 2)


PSI_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "rational": rational,
    "triangle": triangle,
    "sigmoid": sigmoid,
    "fast_sigmoid": fast_sigmoid,
}
_PSI_ALIASES = {"fast-sigmoid": "fast_sigmoid", "fastsigmoid": "fast_sigmoid"}

PsiLike = Union[str, Callable[[torch.Tensor], torch.Tensor]]


def get_psi(psi: PsiLike) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return the secondary activation named ``psi`` (or ``psi`` itself if it is callable)."""
    if callable(psi):
        return psi
    if isinstance(psi, str):
        key = _PSI_ALIASES.get(psi.lower(), psi.lower())
        if key in PSI_FUNCTIONS:
            return PSI_FUNCTIONS[key]
    raise ValueError(
        f"psi: unknown secondary activation {psi!r}; expected one of "
        f"{sorted(PSI_FUNCTIONS)} or a callable v -> psi(v)"
    )


def psi_name(psi: PsiLike) -> str:
    """Name of a psi for reprs: the registry key, or the callable's ``__name__``."""
    for name, fn in PSI_FUNCTIONS.items():
        if fn is psi or name == psi:
            return name
    return getattr(psi, "__name__", repr(psi))


# ---------------------------------------------------------------------------------------
# Parameters of the neuron
# ---------------------------------------------------------------------------------------
def beta_from_leak(leak: torch.Tensor) -> torch.Tensor:
    """Membrane decay ``beta = sigmoid(leak)`` (leak 2.0 -> 0.881, 5.0 -> 0.9933, 0 -> 0.5)."""
    return torch.sigmoid(leak)


def effective_threshold(threshold: torch.Tensor) -> torch.Tensor:
    """``theta^ = max(threshold, 0.5)``, the threshold the reference actually fires at."""
    return torch.clamp(threshold, min=MIN_THRESHOLD)


def check_factors(factors) -> Factors:
    """Validate ``factors = [lambda_post, lambda_pre, alpha_post, alpha_pre]`` (a list, tuple,
    :class:`Factors` or 1-D tensor of 4 finite numbers) and return them as a :class:`Factors` of
    floats; anything else raises a one-line ``ValueError`` starting with ``factors:``."""
    if isinstance(factors, torch.Tensor):
        values = factors.detach().flatten().tolist()
    else:
        try:
            values = [float(f) for f in factors]
        except (TypeError, ValueError):
            raise ValueError(
                "factors: expected 4 numbers [lambda_post, lambda_pre, alpha_post, alpha_pre], "
                f"got {factors!r}"
            ) from None
    if len(values) != 4:
        raise ValueError(
            "factors: expected 4 numbers [lambda_post, lambda_pre, alpha_post, alpha_pre], "
            f"got {len(values)}: {values}"
        )
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"factors: every factor must be finite, got {values}")
    return Factors(*(float(v) for v in values))


# ---------------------------------------------------------------------------------------
# One LIF step (rule.md "One LIF step"; paper Eq. 1-3)
# ---------------------------------------------------------------------------------------
def heaviside(v: torch.Tensor) -> torch.Tensor:
    """Spikes ``s = H(v)``: 1 where ``v > 0`` (strictly), else 0, in v's dtype."""
    return (v > 0).to(v.dtype)


class LIFStep(NamedTuple):
    """Result of one LIF step; every tensor has the shape of the input current."""

    spikes: torch.Tensor  #: s_t = H(v_t)
    psi: torch.Tensor  #: psi(v_t), the secondary activation on the pre-reset membrane
    membrane: torch.Tensor  #: u_t, the membrane after the reset (next step's state)
    v: torch.Tensor  #: v_t = m_t - theta^, the pre-reset membrane minus the threshold


def lif_step(
    current: torch.Tensor,
    membrane: torch.Tensor,
    beta: Union[torch.Tensor, float],
    theta: Union[torch.Tensor, float],
    psi: Optional[Callable[[torch.Tensor], torch.Tensor]],
    reset: str = "soft",
    spike_fn: Callable[[torch.Tensor], torch.Tensor] = heaviside,
) -> LIFStep:
    """One leaky integrate-and-fire step.

    ``m_t = beta u_{t-1} + current`` (Eq. 1), ``v_t = m_t - theta`` , ``s_t = H(v_t)`` (Eq. 2),
    ``psi_t = psi(v_t)``, reset soft ``u_t = m_t - theta s_t`` or hard ``u_t = m_t (1 - s_t)``
    (Eq. 3). ``theta`` is the effective threshold ``max(threshold, 0.5)``.

    Shapes: current, membrane: [B, N] or [B, C, H, W]; beta, theta: scalars.
    ``spike_fn`` replaces H (the BPTT twins pass a surrogate-gradient Heaviside, and ``psi=None``:
    they need psi only inside the surrogate's backward).
    """
    m = beta * membrane + current
    v = m - theta
    s = spike_fn(v)
    if reset == "soft":
        u = m - theta * s
    elif reset == "hard":
        u = m * (1.0 - s)
    else:
        raise ValueError(f"reset: expected 'soft' or 'hard', got {reset!r}")
    return LIFStep(s, None if psi is None else psi(v), u, v)


def trace_step(trace: torch.Tensor, decay: float, x: torch.Tensor) -> torch.Tensor:
    """Exponential trace including the current value: ``tr_t = decay * tr_{t-1} + x_t``
    (pre-synaptic trace, paper Eq. 10 first term; post-synaptic trace of psi, Eq. 11)."""
    return torch.add(x, trace, alpha=decay) if decay != 0.0 else x.clone()


# ---------------------------------------------------------------------------------------
# Weight standardisation (per output row)
# ---------------------------------------------------------------------------------------
def standardize_weight(
    weight: torch.Tensor, gain: torch.Tensor, eps: float = WS_EPS
) -> torch.Tensor:
    """``W~ = gain * (W - mean(W)) / sqrt(var(W) * fan_in + eps)`` per output row.

    ``var`` is unbiased, ``fan_in = prod(W.shape[1:])``. weight: [N, M] or [C_out, C_in, kh, kw];
    gain: [N, 1] or [C_out, 1, 1, 1]. Differentiable (used by the BPTT twins and as the
    definition the analytic backward below is tested against).
    """
    fan_in = weight[0].numel()
    dims = tuple(range(1, weight.dim()))
    mean = weight.mean(dim=dims, keepdim=True)
    var = weight.var(dim=dims, keepdim=True, unbiased=True)
    return gain * (weight - mean) / torch.sqrt(var * fan_in + eps)


class StandardizationCache(NamedTuple):
    """What the standardisation's forward and backward need, computed once per sequence."""

    centered: torch.Tensor  #: c = W - mean(W) per row, W's shape
    inv_d: torch.Tensor  #: 1 / d = 1 / sqrt(fan_in * var(W) + eps), [N, 1] or [C_out, 1, 1, 1]
    gain: torch.Tensor  #: the gain at forward time (a detached copy), gain's shape


def standardization_cache(
    weight: torch.Tensor, gain: torch.Tensor, eps: float = WS_EPS
) -> StandardizationCache:
    """The per-row quantities of :func:`standardize_weight`, without a graph: ``c = W - mean(W)``,
    ``1/d`` with ``d = sqrt(fan_in * sum(c^2) / (K-1) + eps)`` (K = fan_in elements per row) and
    the gain. weight: [N, M] or [C_out, C_in, kh, kw]; gain: [N, 1] or [C_out, 1, 1, 1]."""
    dims = tuple(range(1, weight.dim()))
    k = weight[0].numel()
    c = weight - weight.mean(dim=dims, keepdim=True)
    ss = (c * c).sum(dim=dims, keepdim=True)
    return StandardizationCache(c, torch.rsqrt(ss * (k / (k - 1)) + eps), gain.detach().clone())


def standardized_weight(cache: StandardizationCache) -> torch.Tensor:
    """``W~ = gain * c / d`` from the cache (the S-TLLR layers' forward weight; equal to
    :func:`standardize_weight` up to rounding). Shape of W."""
    return cache.gain * cache.centered * cache.inv_d


def standardize_weight_backward(
    grad_w_tilde: torch.Tensor, cache: StandardizationCache
) -> tuple[torch.Tensor, torch.Tensor]:
    """Vector-Jacobian product of :func:`standardize_weight`: (dL/dW, dL/dgain) from
    G = dL/dW~ (not in the paper; rule.md "Weight standardisation").

    Per row, with ``c = W - mean(W)``, ``a = gain/d`` and ``b = gain fan_in sum(G c) / ((K-1) d^3)``:
    ``dL/dW = a (G - mean(G)) - b c`` and ``dL/dgain = sum(G c) / d`` (mean(c) = 0). A few passes
    over W instead of an autograd graph kept alive across the sequence.
    Shapes: grad_w_tilde as W (consumed: overwritten by dL/dW) -> (W's shape, gain's shape).
    """
    c, inv_d, gain = cache
    n = c.shape[0]
    k = c[0].numel()
    g2 = grad_w_tilde.reshape(n, k)
    gc = torch.linalg.vecdot(g2, c.reshape(n, k)).reshape(inv_d.shape)  # sum(G c) per row
    grad_gain = (gc * inv_d).reshape(gain.shape)
    a = gain * inv_d
    b = a * gc * (inv_d * inv_d) * (k / (k - 1))
    g_mean = g2.mean(dim=1).reshape(inv_d.shape)
    grad_w = grad_w_tilde.sub_(g_mean).mul_(a).addcmul_(c, b, value=-1.0)
    return grad_w, grad_gain


# ---------------------------------------------------------------------------------------
# The rule's weight gradients (rule.md "Backward at step t"; paper Eq. 10-13)
# ---------------------------------------------------------------------------------------
def stllr_gemm_operands(
    delta: torch.Tensor,
    psi_t: torch.Tensor,
    post_trace_prev: Optional[torch.Tensor],
    x_t: Optional[torch.Tensor],
    pre_trace_t: torch.Tensor,
    alpha_post: float,
    alpha_pre: float,
    out: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two factors ``(left, right)`` of the rule's weight gradient ``left^T right``.

    The non-causal term ``alpha_post (delta * tr_out_{t-1})^T x_t`` and the causal term
    ``alpha_pre (delta * psi_t)^T tr_in_t`` are stacked along the batch, so ONE GEMM with inner
    dimension 2B computes their sum: ``left = [alpha_post delta tr_out_{t-1}; alpha_pre delta psi_t]``
    [2B, N], ``right = [x_t; tr_in_t]`` [2B, M]. With alpha_post = 0 only the causal half remains
    (inner dimension B; post_trace_prev and x_t may then be None). ``tr_out_{t-1}`` is the post
    trace *before* psi_t is added. Conv: the same along dim 0 of [B, C, H, W] tensors.
    ``out``: two tensors of the result's shapes to write into (rows of a
    :func:`stllr.deferred_updates` buffer) instead of allocating; the values are the same.
    """
    if out is not None:
        left, right = out
        b = delta.shape[0]
        causal = left if alpha_post == 0.0 else left[b:]
        torch.mul(delta, psi_t, out=causal)
        if alpha_pre != 1.0:
            causal.mul_(alpha_pre)
        (right if alpha_post == 0.0 else right[b:]).copy_(pre_trace_t)
        if alpha_post != 0.0:
            noncausal = torch.mul(delta, post_trace_prev, out=left[:b])
            if alpha_post != 1.0:
                noncausal.mul_(alpha_post)
            right[:b].copy_(x_t)
        return left, right
    causal = delta * psi_t
    if alpha_pre != 1.0:
        causal = causal * alpha_pre
    if alpha_post == 0.0:
        return causal, pre_trace_t
    left = torch.cat((delta * post_trace_prev * alpha_post, causal), dim=0)
    right = torch.cat((x_t, pre_trace_t), dim=0)
    return left, right


def stllr_linear_weight_grads(
    delta: torch.Tensor,
    psi_t: torch.Tensor,
    post_trace_prev: Optional[torch.Tensor],
    x_t: Optional[torch.Tensor],
    pre_trace_t: torch.Tensor,
    alpha_post: float,
    alpha_pre: float,
    widths: Optional[Sequence[int]] = None,
) -> list[torch.Tensor]:
    """dL/dW~ at one step (paper Eq. 10-13, the code's convention), one GEMM per weight matrix:

    ``alpha_post (delta * tr_out_{t-1})^T x_t + alpha_pre (delta * psi_t)^T tr_in_t``.

    The code's alpha_post equals the paper's alpha_post * lambda_post (Eq. 10). ``widths`` splits
    the input columns into weight matrices side by side (recurrent: ``(M, N)`` for ``[W~ | W~_rec]``
    on ``z_t = [x_t, s_{t-1}]``); None: one matrix. Shapes: delta, psi_t, post_trace_prev: [B, N];
    x_t, pre_trace_t: [B, M] -> one [N, width] per width.
    """
    left, right = stllr_gemm_operands(
        delta, psi_t, post_trace_prev, x_t, pre_trace_t, alpha_post, alpha_pre
    )
    left_t = left.t()
    grads = []
    offset = 0
    for width in (right.shape[1],) if widths is None else widths:
        grads.append(left_t @ right[:, offset : offset + width])
        offset += width
    return grads


def stllr_conv2d_weight_grad(
    delta: torch.Tensor,
    psi_t: torch.Tensor,
    post_trace_prev: Optional[torch.Tensor],
    x_t: Optional[torch.Tensor],
    pre_trace_t: torch.Tensor,
    alpha_post: float,
    alpha_pre: float,
    weight_shape: torch.Size,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
) -> torch.Tensor:
    """The conv form of :func:`stllr_linear_weight_grads` (Eq. 10-13): one ``conv2d_weight`` call
    on the batch-stacked non-causal and causal terms. delta, psi_t, post_trace_prev:
    [B, C_out, H', W']; x_t, pre_trace_t: [B, C_in, H, W] -> weight_shape."""
    left, right = stllr_gemm_operands(
        delta, psi_t, post_trace_prev, x_t, pre_trace_t, alpha_post, alpha_pre
    )
    return torch.nn.grad.conv2d_weight(right, weight_shape, left, stride, padding, dilation, groups)


def readout_weight_grad(delta: torch.Tensor, pre_trace_t: torch.Tensor) -> torch.Tensor:
    """dL/dW of the non-spiking leaky readout: ``delta^T tr_in_t`` (rule.md "Layer kinds",
    Readout): the causal term of Eq. 10-13 with psi = 1 and alpha_pre = 1, no non-causal term,
    whatever the layer's alpha factors. delta: [B, N]; pre_trace_t: [B, M] -> [N, M]."""
    return delta.t() @ pre_trace_t


def conv2d_input_grad(grad_out, weight, input_shape, stride, padding, dilation, groups):
    """dL/dx of a conv2d (transposed convolution of the output gradient)."""
    return torch.nn.grad.conv2d_input(
        input_shape, weight, grad_out, stride, padding, dilation, groups
    )


def linear(x: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
    """``x W^T + b`` (kept here so the layers read like the equations)."""
    return F.linear(x, weight, bias)
