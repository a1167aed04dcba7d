"""S-TLLR among other online rules (notebook 04): the paper's Table 1 measured, and S-TLLR's two
special cases checked against SpikingJelly's own OTTT and SLTT implementations.

Two parts, both float64 where gradients are compared and exact (bytes, MACs) where costs are
measured:

- **Table 1** (:data:`TABLE1`, quoted from the paper) and its memory and time columns measured on
  small networks: :func:`memory_vs_T` (bytes saved for backward over one training sequence, by
  ``stllr.measure``: BPTT twin, S-TLLR, S-TLLR with ``alpha_post = 0``, SpikingJelly's OTTT and
  SLTT networks), :func:`costs_vs_width` (the same and e-prop's per-synapse eligibility against
  the layer width n, MACs for the time column) and :func:`growth_exponent` (the fitted power).
- **Equivalences**: :func:`make_setup` (one layer, input spikes, a target), :func:`stllr_grads`
  (the library's :class:`stllr.LinearSTLLR`), :func:`spikingjelly_ottt_grads` and
  :func:`spikingjelly_sltt_grads` (``spikingjelly.activation_based``: ``OTTTSequential`` +
  ``OTTTLIFNode``, ``SLTTLIFNode``), :func:`eprop_grads` (e-prop's eligibility for one LIF layer,
  written out per synapse), :func:`compare_with_spikingjelly` (the notebook's table).

The conventions that have to be matched (each is a parameter below, said in the notebook):
SpikingJelly's LIF with ``decay_input=False`` is ``h_t = v_{t-1} - v_{t-1}/tau + x_t``: S-TLLR's
``m_t = beta u_{t-1} + x_t W^T + b`` with ``beta = 1 - 1/tau = sigmoid(leak)``; with
``decay_input=True`` (SLTT's default) the input is scaled by ``1/tau``, matched by an S-TLLR layer
with weights ``W/tau`` (its gradient times ``1/tau`` is dL/dW). ``v_reset=None`` is the soft
reset, ``v_reset=0`` the hard one (``reset='hard'``); SpikingJelly fires on ``h - theta >= 0``,
S-TLLR on ``> 0`` (the same unless a membrane sits exactly on the threshold:
:func:`closest_to_threshold` checks it does not). Surrogates: ``surrogate.Sigmoid(alpha=4)``'s
derivative is the ``sigmoid`` psi exactly; ``surrogate.SoftSign(alpha=100)``'s is 50 x the
``rational`` psi (:data:`SURROGATES`). The S-TLLR layer runs with raw weights
(``weight_standardization=False``), as SpikingJelly's ``nn.Linear``.

Example::

    from stllr.studies import online_rules as orl
    s = orl.make_setup()
    for row in orl.compare_with_spikingjelly(s):
        print(row["rule"], row["weight_error"] < 1e-12)
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import nn

import stllr
from stllr import functional as SF
from stllr import measure
from stllr.studies.memory_and_compute import Fig3MLP
from stllr.studies.rule_from_scratch import relative_error, spike_loss
from stllr.training.loop import stllr_window


@contextlib.contextmanager
def _quiet_triton():
    """SpikingJelly registers its kernels at import; torch logs "Triton not available" (twice)
    on a CPU-only install. Silence that one logger while importing."""
    log = logging.getLogger("torch._library.triton")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


with _quiet_triton():
    import spikingjelly._ops.lif  # noqa: F401  (the import that logs; the kernels' registry)
    from spikingjelly.activation_based import functional as sj_functional
    from spikingjelly.activation_based import layer as sj_layer
    from spikingjelly.activation_based import neuron as sj_neuron
    from spikingjelly.activation_based import surrogate as sj_surrogate

__all__ = [
    "TABLE1",
    "TABLE1_SOURCE",
    "table1_text",
    "SURROGATES",
    "SURROGATE_NAMES",
    "Setup",
    "make_setup",
    "beta_of_tau",
    "leak_of_tau",
    "stllr_grads",
    "spikingjelly_ottt_grads",
    "spikingjelly_sltt_grads",
    "eprop_grads",
    "sltt_setup",
    "closest_to_threshold",
    "compare_with_spikingjelly",
    "format_rows",
    "small_models",
    "spikingjelly_net",
    "memory_vs_T",
    "costs_vs_width",
    "growth_exponent",
    "MEMORY_CURVES",
    "plot_online_rules",
]

DTYPE = torch.float64

# =========================================================================================
# The paper's Table 1, quoted
# =========================================================================================
#: Paper Table 1 (Apolinario & Roy, TMLR 2025, arXiv 2306.15220v4): memory and time complexity per
#: layer of n neurons, and whether the rule uses non-causal terms; with what this notebook measures.
TABLE1: Tuple[Dict[str, str], ...] = (
    dict(
        method="BPTT",
        memory="T n",
        time="T n^2",
        noncausal="no",
        here="measured: saved bytes vs T and n (BPTT twin), MACs vs n",
    ),
    dict(method="RTRL", memory="n^3", time="n^4", noncausal="no", here="quoted only"),
    dict(
        method="e-prop",
        memory="n^2",
        time="n^2",
        noncausal="no",
        here="per-synapse eligibility of one LIF layer written out: bytes vs n; gradient checked",
    ),
    dict(method="OSTL", memory="n^2", time="n^2", noncausal="no", here="quoted only"),
    dict(
        method="OTTT",
        memory="n",
        time="n^2",
        noncausal="no",
        here="measured: S-TLLR alpha_post = 0 and SpikingJelly's OTTT, saved bytes vs T",
    ),
    dict(
        method="S-TLLR",
        memory="n",
        time="n^2",
        noncausal="yes",
        here="measured: saved bytes vs T and n, trace bytes vs n, MACs vs n",
    ),
)

#: Where :data:`TABLE1` comes from (docs/paper-results.md quotes the same row by row).
TABLE1_SOURCE = (
    "Paper Table 1 (arXiv 2306.15220v4), complexity per layer of n neurons over a sequence of T "
    "steps: BPTT memory Tn, time Tn^2; RTRL n^3, n^4; e-prop and OSTL n^2, n^2; OTTT n, n^2; "
    "S-TLLR n, n^2, the only one of them using non-causal terms."
)


def table1_text() -> str:
    """:data:`TABLE1` as a fixed-width text table (columns method, memory, time, non-causal,
    measured here)."""
    return format_rows(
        [
            {
                "method": r["method"],
                "memory": r["memory"],
                "time": r["time"],
                "non-causal": r["noncausal"],
                "in this notebook": r["here"],
            }
            for r in TABLE1
        ]
    )


# =========================================================================================
# One layer, three implementations
# =========================================================================================
#: SpikingJelly surrogate per S-TLLR psi: (constructor, factor) with the surrogate's derivative
#: equal to ``factor * psi`` (``Sigmoid(alpha)' = alpha s (1 - s)``, ``s = sigmoid(alpha v)``, is
#: the sigmoid psi at alpha = 4; ``SoftSign(alpha)' = alpha / (2 (1 + alpha |v|)^2)`` is 50 x the
#: rational psi ``1 / (100 |v| + 1)^2`` at alpha = 100).
SURROGATES: Dict[str, Tuple[Callable[[], Any], float]] = {
    "sigmoid": (lambda: sj_surrogate.Sigmoid(alpha=4.0), 1.0),
    "rational": (lambda: sj_surrogate.SoftSign(alpha=100.0), 50.0),
}


#: The surrogates of :data:`SURROGATES` as the notebook's table names them.
SURROGATE_NAMES = {"sigmoid": "Sigmoid(alpha=4)", "rational": "SoftSign(alpha=100) / 50"}


class Setup(NamedTuple):
    """One layer's problem (float64): weights, bias, input spikes, target, LIF constants."""

    x: torch.Tensor  #: input spikes x_t, [T, B, M]
    y: torch.Tensor  #: target spikes, [B, N] (the loss at step t is 1/2 ||s_t - y||^2)
    weight: torch.Tensor  #: W, [N, M]
    bias: torch.Tensor  #: b, [N]
    tau: float  #: SpikingJelly's membrane time constant (beta = 1 - 1/tau)
    threshold: float  #: theta (SpikingJelly's v_threshold), >= 0.5


def beta_of_tau(tau: float) -> float:
    """The membrane decay of SpikingJelly's LIF (``decay_input=False``): ``1 - 1/tau``.

    Parameters:
        tau: the time constant, > 1.
    """
    if not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau <= 1.0:
        raise ValueError(f"tau: expected a finite number > 1, got {tau!r}")
    return 1.0 - 1.0 / tau


def leak_of_tau(tau: float) -> float:
    """The S-TLLR ``leak`` with ``sigmoid(leak) = 1 - 1/tau`` (= log(tau - 1)).

    Parameters:
        tau: the time constant, > 1.
    """
    beta = beta_of_tau(tau)
    return math.log(beta / (1.0 - beta))


def make_setup(
    inputs: int = 6,
    neurons: int = 4,
    batch: int = 3,
    steps: int = 12,
    tau: float = 5.0,
    threshold: float = 1.0,
    input_rate: float = 0.4,
    seed: int = 0,
) -> Setup:
    """A small float64 problem for one layer: W uniform in [-0.2, 0.6] (the neurons fire), b in
    [-0.1, 0.1], Bernoulli input spikes and target, from ``torch.Generator().manual_seed(seed)``.

    Parameters:
        inputs, neurons, batch, steps: M, N, B, T (positive ints).
        tau: SpikingJelly's time constant (> 1); beta = 1 - 1/tau.
        threshold: theta, >= 0.5 (S-TLLR uses max(threshold, 0.5)).
        input_rate: probability of an input spike per synapse and step.
        seed: seed of the generator.

    Returns a :class:`Setup`: x [T, B, M], y [B, N], weight [N, M], bias [N].
    """
    for name, value in (
        ("inputs", inputs),
        ("neurons", neurons),
        ("batch", batch),
        ("steps", steps),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    beta_of_tau(tau)
    if not isinstance(threshold, (int, float)) or not threshold >= SF.MIN_THRESHOLD:
        raise ValueError(f"threshold: expected a number >= {SF.MIN_THRESHOLD}, got {threshold!r}")
    if not isinstance(input_rate, (int, float)) or not 0.0 <= input_rate <= 1.0:
        raise ValueError(f"input_rate: expected a probability in [0, 1], got {input_rate!r}")
    g = torch.Generator().manual_seed(seed)
    weight = torch.rand(neurons, inputs, generator=g, dtype=DTYPE) * 0.8 - 0.2
    bias = torch.rand(neurons, generator=g, dtype=DTYPE) * 0.2 - 0.1
    x = (torch.rand(steps, batch, inputs, generator=g, dtype=DTYPE) < input_rate).to(DTYPE)
    y = (torch.rand(batch, neurons, generator=g, dtype=DTYPE) < 0.5).to(DTYPE)
    return Setup(x, y, weight, bias, float(tau), float(threshold))


def _check_psi(psi: str) -> str:
    if psi not in SURROGATES:
        raise ValueError(f"psi: expected one of {sorted(SURROGATES)}, got {psi!r}")
    return psi


def stllr_grads(
    s: Setup,
    factors: Sequence[float],
    psi: str = "sigmoid",
    reset: str = "soft",
    input_scale: float = 1.0,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The library's S-TLLR gradients for ``s``: a :class:`stllr.LinearSTLLR` (raw weights,
    ``leak = leak_of_tau(s.tau)``, threshold ``s.threshold``) with weights ``input_scale * W`` and
    bias ``input_scale * b``, run by ``stllr_window`` with a learning signal at every step (d = T).

    Parameters:
        s: the problem; factors: [lambda_post, lambda_pre, alpha_post, alpha_pre].
        psi: ``"sigmoid"`` or ``"rational"``; reset: ``"soft"`` or ``"hard"``.
        input_scale: 1 (SpikingJelly's ``decay_input=False``) or 1/tau (``decay_input=True``).

    Returns (dL/dW [N, M], dL/db [N], spikes [T, B, N]) with dL/dW = ``input_scale`` x the
    layer's ``weight.grad`` (the gradient w.r.t. the unscaled W; the same for b).
    """
    _check_psi(psi)
    if not isinstance(input_scale, (int, float)) or not input_scale > 0:
        raise ValueError(f"input_scale: expected a positive number, got {input_scale!r}")
    N, M = s.weight.shape
    layer = stllr.LinearSTLLR(
        M,
        N,
        leak=leak_of_tau(s.tau),
        threshold=s.threshold,
        factors=factors,
        psi=psi,
        reset=reset,
        weight_standardization=False,
        dtype=DTYPE,
    )
    with torch.no_grad():
        layer.weight.copy_(s.weight * input_scale)
        layer.bias.copy_(s.bias * input_scale)
    spikes = []

    def loss(out, y):
        spikes.append(out.detach())
        return spike_loss(out, y)

    stllr_window(layer, s.x, s.y, loss, len(s.x))
    return layer.weight.grad * input_scale, layer.bias.grad * input_scale, torch.stack(spikes)


def _sj_linear(s: Setup) -> nn.Linear:
    N, M = s.weight.shape
    lin = nn.Linear(M, N, dtype=DTYPE)
    with torch.no_grad():
        lin.weight.copy_(s.weight)
        lin.bias.copy_(s.bias)
    return lin


def spikingjelly_ottt_grads(
    s: Setup, psi: str = "sigmoid"
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SpikingJelly's OTTT for one layer: ``layer.OTTTSequential(nn.Linear, neuron.OTTTLIFNode)``
    (soft reset, ``decay_input=False``, ``v_threshold = s.threshold``, surrogate of
    :data:`SURROGATES`) in training mode, fed the pair ``[x_t, trace_t]`` with the presynaptic
    trace updated by SpikingJelly's own ``OTTTLIFNode.track_trace`` (``trace * (1 - 1/tau) + x_t``,
    what a preceding OTTT layer passes on); the loss ``1/2 ||s_t - y||^2`` backpropagated at every
    step, the gradients summed in ``.grad``.

    Parameters:
        s: the problem; psi: which surrogate (``"sigmoid"``, ``"rational"``).

    Returns (weight.grad [N, M], bias.grad [N], spikes [T, B, N]) of SpikingJelly's
    ``nn.Linear`` (with the ``rational`` psi: 50 x S-TLLR's, see :data:`SURROGATES`).
    """
    make, _ = SURROGATES[_check_psi(psi)]
    lin = _sj_linear(s)
    node = sj_neuron.OTTTLIFNode(tau=s.tau, v_threshold=s.threshold, surrogate_function=make())
    net = sj_layer.OTTTSequential(lin, node)
    net.train()
    sj_functional.reset_net(net)
    trace = torch.zeros_like(s.x[0])
    spikes = []
    for t in range(len(s.x)):
        trace = sj_neuron.OTTTLIFNode.track_trace(s.x[t], trace, s.tau)
        out, _ = net([s.x[t], trace])  # [spikes, the layer's own output trace]
        spike_loss(out, s.y).backward()
        spikes.append(out.detach())
    return lin.weight.grad.clone(), lin.bias.grad.clone(), torch.stack(spikes)


def spikingjelly_sltt_grads(
    s: Setup, psi: str = "sigmoid", decay_input: bool = True
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SpikingJelly's SLTT for one layer: ``nn.Sequential(nn.Linear, neuron.SLTTLIFNode)`` with
    its defaults (hard reset to ``v_reset = 0``, ``decay_input=True``) but ``tau = s.tau``,
    ``v_threshold = s.threshold`` and the surrogate of :data:`SURROGATES`; the loss
    ``1/2 ||s_t - y||^2`` backpropagated at every step (the node detaches the membrane between
    steps: the instantaneous gradient).

    Parameters:
        s: the problem; psi: which surrogate; decay_input: SpikingJelly's flag (True: the input
            enters as ``x_t / tau``).

    Returns (weight.grad [N, M], bias.grad [N], spikes [T, B, N]).
    """
    make, _ = SURROGATES[_check_psi(psi)]
    lin = _sj_linear(s)
    node = sj_neuron.SLTTLIFNode(
        tau=s.tau,
        v_threshold=s.threshold,
        surrogate_function=make(),
        decay_input=bool(decay_input),
    )
    net = nn.Sequential(lin, node)
    net.train()
    sj_functional.reset_net(net)
    spikes = []
    for t in range(len(s.x)):
        out = net(s.x[t])
        spike_loss(out, s.y).backward()
        spikes.append(out.detach())
    return lin.weight.grad.clone(), lin.bias.grad.clone(), torch.stack(spikes)


def eprop_grads(s: Setup, psi: str = "sigmoid") -> Tuple[torch.Tensor, torch.Tensor, int]:
    """e-prop's gradient for one LIF layer (Bellec et al. 2020), written out per synapse.

    Eligibility vector ``eps_t = beta eps_{t-1} + x_t`` (the low-pass filtered input, reset
    ignored; e-prop writes it one step shifted because its membrane takes ``z_{t-1}``), eligibility
    trace ``e_{t,bij} = psi_{t,bi} eps_{t,bj}`` held per synapse and sample ([B, N, M]), gradient
    ``sum_t sum_b L_{t,bi} e_{t,bij}`` with the learning signal ``L_t = delta_t = s_t - y``
    (exact here: the loss is on this layer's own spikes). Forward as S-TLLR (soft reset,
    beta = 1 - 1/tau).

    Parameters:
        s: the problem; psi: ``"sigmoid"`` or ``"rational"``.

    Returns (dL/dW [N, M], dL/db [N], bytes of the per-synapse eligibility held, B*N*M*8).
    """
    psi_fn = SF.get_psi(_check_psi(psi))
    beta = float(SF.beta_from_leak(torch.tensor(leak_of_tau(s.tau), dtype=DTYPE)))
    theta = s.threshold
    T, B, M = s.x.shape
    N = s.weight.shape[0]
    u = torch.zeros(B, N, dtype=DTYPE)
    eps = torch.zeros(B, M, dtype=DTYPE)
    grad_W = torch.zeros(N, M, dtype=DTYPE)
    grad_b = torch.zeros(N, dtype=DTYPE)
    e = None
    for t in range(T):
        eps = beta * eps + s.x[t]
        m = beta * u + s.x[t] @ s.weight.T + s.bias
        v = m - theta
        spk = (v > 0).to(DTYPE)
        psi_t = psi_fn(v)
        e = psi_t[:, :, None] * eps[:, None, :]  # [B, N, M]: one eligibility per synapse
        L = spk - s.y  # the learning signal
        grad_W += (L[:, :, None] * e).sum(0)
        grad_b += (L * psi_t).sum(0)
        u = m - theta * spk
    return grad_W, grad_b, int(e.numel() * e.element_size())


def sltt_setup(s: Setup) -> Setup:
    """``s`` with weights and bias times tau: what SpikingJelly's ``nn.Linear`` holds in front of a
    ``decay_input=True`` node (SLTT's default, ``h = v + (x - v) / tau``) so that the membrane gets
    the same currents ``x_t W^T + b`` as in ``s`` (without it the SLTT neurons of a setup made for
    OTTT barely fire). S-TLLR then runs with ``input_scale = 1 / tau``, i.e. weights ``W``.

    Parameters:
        s: the problem.
    """
    return s._replace(weight=s.weight * s.tau, bias=s.bias * s.tau)


def closest_to_threshold(s: Setup, reset: str = "soft") -> float:
    """The smallest ``|m_t - theta|`` over every step, sample and neuron of the S-TLLR forward:
    where it is 0, SpikingJelly (fires on >=) and S-TLLR (fires on >) would differ.

    Parameters:
        s: the problem; reset: ``"soft"`` (OTTT's) or ``"hard"`` (SLTT's).
    """
    if reset not in ("soft", "hard"):
        raise ValueError(f"reset: expected 'soft' or 'hard', got {reset!r}")
    beta = float(SF.beta_from_leak(torch.tensor(leak_of_tau(s.tau), dtype=DTYPE)))
    u = torch.zeros(s.x.shape[1], s.weight.shape[0], dtype=DTYPE)
    gap = math.inf
    for t in range(len(s.x)):
        m = beta * u + s.x[t] @ s.weight.T + s.bias
        gap = min(gap, float((m - s.threshold).abs().min()))
        spk = (m > s.threshold).to(DTYPE)
        u = m - s.threshold * spk if reset == "soft" else m * (1 - spk)
    return gap


def _rule_rows(s: Setup, beta: float) -> List[Dict[str, Any]]:
    return [
        dict(
            rule="OTTT",
            factors=(0.5, beta, 0.0, 1.0),
            reset="soft",
            decay_input=False,
            counterpart="OTTTSequential + OTTTLIFNode",
        ),
        dict(
            rule="SLTT",
            factors=(0.5, 0.0, 0.0, 1.0),
            reset="hard",
            decay_input=True,
            counterpart="SLTTLIFNode",
        ),
    ]


def compare_with_spikingjelly(
    s: Setup,
    psis: Sequence[str] = ("sigmoid", "rational"),
    factors: Optional[Dict[str, Sequence[float]]] = None,
) -> List[Dict[str, Any]]:
    """S-TLLR (the library's layer) against SpikingJelly's OTTT and SLTT on ``s``.

    OTTT: factors [lambda_post, beta, 0, 1] (lambda_pre = beta = 1 - 1/tau, no non-causal term),
    soft reset, ``decay_input=False``; SLTT: [lambda_post, 0, 0, 1] (no trace at all), hard reset,
    ``decay_input=True`` (:func:`sltt_setup`: SpikingJelly's weights tau W, S-TLLR's W, so that both
    rules see the currents of ``s``). lambda_post does not matter when alpha_post = 0.

    Parameters:
        s: the problem; psis: which psi / surrogate pairs to run (:data:`SURROGATES`).
        factors: optional ``{"OTTT": [...], "SLTT": [...]}`` replacing those factors (a mutation:
            the check should then fail).

    Returns one dict per (rule, psi): ``rule, psi, surrogate, factors, counterpart,
    same_spikes`` (bool: identical spike trains), ``spike_rate`` (SpikingJelly's spikes per neuron
    and step), ``weight_error``, ``bias_error`` (max relative
    differences, SpikingJelly the reference, its gradient divided by the surrogate's factor).
    """
    factors = dict(factors or {})
    unknown = set(factors) - {"OTTT", "SLTT"}
    if unknown:
        raise ValueError(f"factors: expected keys 'OTTT', 'SLTT', got {sorted(unknown)}")
    beta = beta_of_tau(s.tau)
    rows = []
    for psi in psis:
        _check_psi(psi)
        scale = SURROGATES[psi][1]
        for r in _rule_rows(s, beta):
            f = SF.check_factors(factors.get(r["rule"], r["factors"]))
            if r["rule"] == "OTTT":
                ref_w, ref_b, ref_s = spikingjelly_ottt_grads(s, psi)
                w, b, spk = stllr_grads(s, f, psi, "soft", 1.0)
            else:
                sj = sltt_setup(s)
                ref_w, ref_b, ref_s = spikingjelly_sltt_grads(sj, psi, decay_input=True)
                w, b, spk = stllr_grads(sj, f, psi, "hard", 1.0 / s.tau)
            rows.append(
                dict(
                    rule=r["rule"],
                    psi=psi,
                    surrogate=SURROGATE_NAMES[psi],
                    factors=tuple(float(v) for v in f),
                    counterpart=r["counterpart"],
                    same_spikes=bool(torch.equal(spk, ref_s)),
                    spike_rate=float(ref_s.mean()),
                    weight_error=relative_error(w, ref_w / scale),
                    bias_error=relative_error(b, ref_b / scale),
                )
            )
    return rows


def format_rows(rows: Sequence[Dict[str, Any]]) -> str:
    """Rows of equal keys as a fixed-width text table (values printed with ``str``).

    Parameters:
        rows: dicts with the same keys, at least one.
    """
    if not rows:
        raise ValueError("rows: expected at least one row")
    keys = list(rows[0])
    cells = [[str(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


# =========================================================================================
# Table 1 measured
# =========================================================================================
def small_models(
    inputs: int, hidden: int, classes: int, factors: Sequence[float], seed: int = 0
) -> Tuple[nn.Module, nn.Module]:
    """(S-TLLR net, its BPTT twin) with the same initial weights: two spiking hidden layers of
    ``hidden`` neurons (LinearSTLLR with ``factors`` / LinearLIF) and a leaky readout
    (:class:`stllr.studies.memory_and_compute.Fig3MLP` with dims (inputs, hidden, hidden, classes)).

    Parameters:
        inputs, hidden, classes: M, n, C; factors: the S-TLLR layers'; seed: torch's seed.
    """
    dims = (inputs, hidden, hidden, classes)
    for name, value in zip(("inputs", "hidden", "classes"), dims[:1] + dims[2:]):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    torch.manual_seed(seed)
    s_model = Fig3MLP(True, dims, factors=tuple(SF.check_factors(factors)))
    b_model = Fig3MLP(False, dims)
    b_model.load_state_dict(s_model.state_dict(), strict=False)
    return s_model, b_model


def spikingjelly_net(
    kind: str, inputs: int, hidden: int, classes: int, tau: float = 2.0, seed: int = 0
) -> nn.Module:
    """SpikingJelly's network of the same shape as :func:`small_models`: Linear - LIF - Linear -
    LIF - Linear, the LIF nodes ``OTTTLIFNode`` in an ``OTTTSequential`` (``kind="ottt"``) or
    ``SLTTLIFNode`` in an ``nn.Sequential`` (``kind="sltt"``), float32, in training mode.

    Parameters:
        kind: ``"ottt"`` or ``"sltt"``; inputs, hidden, classes: M, n, C; tau: the nodes';
        seed: torch's seed for the Linear layers' initialisation.
    """
    if kind not in ("ottt", "sltt"):
        raise ValueError(f"kind: expected 'ottt' or 'sltt', got {kind!r}")
    torch.manual_seed(seed)
    node = sj_neuron.OTTTLIFNode if kind == "ottt" else sj_neuron.SLTTLIFNode
    mods = [
        nn.Linear(inputs, hidden),
        node(tau=tau),
        nn.Linear(hidden, hidden),
        node(tau=tau),
        nn.Linear(hidden, classes),
    ]
    net = sj_layer.OTTTSequential(*mods) if kind == "ottt" else nn.Sequential(*mods)
    return net.train()


def _random_spikes(steps: int, batch: int, inputs: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, batch, inputs, generator=g) < 0.2).float()


def _sj_saved_bytes(net: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> int:
    """Peak activation bytes saved for backward over one online sequence of a SpikingJelly net:
    every step ``cross_entropy(out_t, labels).backward()``, as OTTT and SLTT train."""
    sj_functional.reset_net(net)
    net.zero_grad(set_to_none=True)
    with measure.SavedTensorTracker(net, batch_size=x.shape[1]) as tracker:
        for t in range(len(x)):
            out = net(x[t].clone())
            nn.functional.cross_entropy(out, labels).backward()
    return tracker.stats().peak_activation_bytes


def _check_steps(values: Sequence[int], name: str) -> List[int]:
    values = list(values)
    if len(values) < 2 or any(
        not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values
    ):
        raise ValueError(f"{name}: expected at least two positive ints, got {values!r}")
    if sorted(set(values)) != values:
        raise ValueError(f"{name}: expected increasing values, got {values!r}")
    return values


def memory_vs_T(
    Ts: Sequence[int] = (8, 16, 32, 64),
    inputs: int = 20,
    hidden: int = 24,
    classes: int = 3,
    batch: int = 5,
    seed: int = 0,
) -> List[Dict[str, int]]:
    """Bytes saved for backward (peak, activations; ``stllr.measure``) over one training sequence
    of T steps, every step carrying a learning signal (cross-entropy on the readout, random labels,
    Bernoulli(0.2) input spikes):

    - ``bptt``: the BPTT twin (graph through all T steps, one backward of the summed logits);
    - ``stllr``: S-TLLR, factors [0.2, 0.75, -1, 1] (the reference CLI's), ``stllr_window``;
    - ``stllr_ottt``: S-TLLR with alpha_post = 0 ([0.2, 0.75, 0, 1], OTTT's factors);
    - ``sj_ottt``, ``sj_sltt``: SpikingJelly's OTTT and SLTT networks of the same shape, one
      backward per step.

    Parameters:
        Ts: increasing sequence lengths (at least two); inputs, hidden, classes: M, n, C; batch: B
            (must differ from every layer width: measure's categories); seed: weights and data.

    Returns one dict per T with those keys and ``T``.
    """
    Ts = _check_steps(Ts, "Ts")
    if batch in (inputs, hidden, classes):
        raise ValueError(f"batch: must differ from the layer widths, got {batch}")
    labels = torch.randint(classes, (batch,), generator=torch.Generator().manual_seed(seed))
    stllr_net, bptt_net = small_models(inputs, hidden, classes, (0.2, 0.75, -1.0, 1.0), seed)
    ottt_net, _ = small_models(inputs, hidden, classes, (0.2, 0.75, 0.0, 1.0), seed)
    sj = {k: spikingjelly_net(k, inputs, hidden, classes, seed=seed) for k in ("ottt", "sltt")}
    rows = []
    for T in Ts:
        x = _random_spikes(T, batch, inputs, seed)
        row = {"T": T}
        for key, model, mode in (
            ("bptt", bptt_net, "bptt"),
            ("stllr", stllr_net, "stllr"),
            ("stllr_ottt", ottt_net, "stllr"),
        ):
            m = measure.measure_sequence(model, x, labels, mode=mode, window=T, macs=False)
            row[key] = m.saved.peak_activation_bytes
        for key, net in sj.items():
            row[f"sj_{key}"] = _sj_saved_bytes(net, x, labels)
        rows.append(row)
    return rows


def costs_vs_width(
    widths: Sequence[int] = (8, 16, 32),
    T: int = 16,
    batch: int = 5,
    classes: int = 3,
    seed: int = 0,
) -> List[Dict[str, int]]:
    """Memory and time against the layer width n (inputs = hidden = n), at fixed T:

    - ``bptt_saved``, ``stllr_saved``: peak activation bytes saved for backward (as
      :func:`memory_vs_T`);
    - ``stllr_traces``: the bytes of the S-TLLR layers' two traces (``measure.state_bytes``);
    - ``eprop_eligibility``: the bytes of e-prop's per-synapse eligibility of one n x n LIF layer
      (:func:`eprop_grads`, B*n*n*8);
    - ``bptt_macs``, ``stllr_macs``: multiply-accumulates of the sequence (``measure.MacCounter``:
      forward, weight and input gradients), the time column's measure.

    Parameters:
        widths: increasing n (at least two, none equal to ``batch`` or ``classes``); T: steps;
        batch: B; classes: C; seed: weights and data.

    Returns one dict per n with those keys and ``n``.
    """
    widths = _check_steps(widths, "widths")
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ValueError(f"T: expected a positive int, got {T!r}")
    if batch in widths or batch == classes:
        raise ValueError(f"batch: must differ from the layer widths, got {batch}")
    labels = torch.randint(classes, (batch,), generator=torch.Generator().manual_seed(seed))
    rows = []
    for n in widths:
        x = _random_spikes(T, batch, n, seed)
        stllr_net, bptt_net = small_models(n, n, classes, (0.2, 0.75, -1.0, 1.0), seed)
        row = {"n": n}
        for key, model, mode in (("bptt", bptt_net, "bptt"), ("stllr", stllr_net, "stllr")):
            m = measure.measure_sequence(model, x, labels, mode=mode, window=T)
            row[f"{key}_saved"] = m.saved.peak_activation_bytes
            row[f"{key}_macs"] = sum(m.macs.by_kind().values())
            if key == "stllr":
                row["stllr_traces"] = m.state["traces"]
        s = make_setup(inputs=n, neurons=n, batch=batch, steps=2, seed=seed)
        row["eprop_eligibility"] = eprop_grads(s)[2]
        rows.append(row)
    return rows


def growth_exponent(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The least-squares slope of log(y) against log(x): the power p of y ~ x^p (1: linear,
    0: constant, 2: quadratic).

    Parameters:
        xs, ys: positive numbers of the same length, at least two distinct xs.
    """
    xs, ys = list(xs), list(ys)
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError(
            f"xs, ys: expected two sequences of equal length >= 2, got {len(xs)}, {len(ys)}"
        )
    if any(not v > 0 for v in xs + ys):
        raise ValueError("xs, ys: expected positive numbers")
    lx = [math.log(v) for v in xs]
    ly = [math.log(v) for v in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    sxx = sum((a - mx) ** 2 for a in lx)
    if sxx == 0:
        raise ValueError("xs: expected at least two distinct values")
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sxx


# =========================================================================================
# The figure
# =========================================================================================
#: Curves of :func:`plot_online_rules`'s left panel: key of :func:`memory_vs_T`, label, colour,
#: marker, line style.
MEMORY_CURVES = (
    ("bptt", "BPTT (twin)", "#d62728", "o", "-"),
    ("stllr", "S-TLLR", "#1f77b4", "s", "-"),
    ("stllr_ottt", "S-TLLR, alpha_post = 0 (OTTT)", "#17becf", "^", "--"),
    ("sj_ottt", "SpikingJelly OTTT", "#2ca02c", "v", ":"),
    ("sj_sltt", "SpikingJelly SLTT", "#9467bd", "D", ":"),
)


def plot_online_rules(
    memory_rows: Sequence[Dict[str, int]],
    pairs: Dict[str, Tuple[torch.Tensor, torch.Tensor]],
):
    """Left: bytes saved for backward against T (log-log), one curve per :data:`MEMORY_CURVES`.
    Right: SpikingJelly's weight gradient against S-TLLR's, one point per weight, per rule.

    Parameters:
        memory_rows: :func:`memory_vs_T`'s rows.
        pairs: ``{label: (S-TLLR dL/dW, SpikingJelly dL/dW)}``, tensors of one shape each.

    Returns the figure.
    """
    from stllr.plotting.style import _clean, plt

    if not memory_rows:
        raise ValueError("memory_rows: expected at least one row")
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8))
    Ts = [r["T"] for r in memory_rows]
    for key, label, color, marker, ls in MEMORY_CURVES:
        ax.plot(
            Ts, [r[key] / 1024 for r in memory_rows], ls, color=color, marker=marker, label=label
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(Ts, [str(t) for t in Ts])
    ax.minorticks_off()
    ax.set_yscale("log")
    ax.set_xlabel("sequence length T (steps)")
    ax.set_ylabel("bytes saved for backward (KiB, peak)")
    ax.set_title("memory against T (measured)")
    ax.legend(fontsize=7, frameon=False)
    _clean(ax)
    markers = ("o", "s", "^", "D")
    lo, hi = math.inf, -math.inf
    for (label, (ours, theirs)), marker in zip(pairs.items(), markers):
        a, b = ours.detach().flatten().tolist(), theirs.detach().flatten().tolist()
        lo, hi = min(lo, *a, *b), max(hi, *a, *b)
        bx.scatter(a, b, s=16, marker=marker, alpha=0.7, label=label)
    bx.plot([lo, hi], [lo, hi], color="0.5", lw=0.8, zorder=0)
    bx.set_xlabel("S-TLLR dL/dW (LinearSTLLR)")
    bx.set_ylabel("SpikingJelly dL/dW")
    bx.set_title("one layer's weight gradient, float64")
    bx.legend(fontsize=7, frameon=False)
    _clean(bx)
    fig.tight_layout()
    return fig
