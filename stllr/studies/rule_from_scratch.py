"""The rule from scratch (notebook 02): S-TLLR for one linear LIF layer in plain torch.

Everything here is float64 and deterministic, on a layer small enough to print. The notebook shows
the short functions below in its cells and checks each against an independent reference:

- :func:`make_problem`: a small layer (:class:`stllr.LinearSTLLR`, raw weights), binary input
  spikes and a target spike pattern;
- :func:`stllr_grads_by_hand`: the rule of ``docs/rule.md`` (paper Eq. 1-3, 10-13) in a loop of
  plain torch, the weight and bias gradients summed over the learning window;
- :func:`layer_grads`: the same gradients from the library (``stllr_window`` on the layer);
- :func:`bptt_grads`: the exact autograd gradient of the same layer unrolled through time, with the
  spike's derivative replaced by psi (:class:`PsiSpike`), the reset detached, and the membrane's
  path through time kept or cut;
- :func:`window_by_hand`: the ~10 lines of ``stllr_window``'s logic;
- :func:`worked_steps`: the per-step quantities of one synapse (the notebook's worked table);
- :func:`relative_error`.

The per-step loss is ``l_t = 1/2 ||s_t - y||^2`` (summed over batch and neurons) on the layer's own
spikes, so its learning signal is ``delta_t = dl_t/ds_t = s_t - y``.

Example::

    from stllr.studies import rule_from_scratch as rfs
    p = rfs.make_problem()
    g_hand = rfs.stllr_grads_by_hand(p, p.factors)
    g_lib = rfs.layer_grads(p, p.factors)
    print(rfs.relative_error(g_hand[0], g_lib[0]))
"""

from __future__ import annotations

from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch

import stllr
from stllr import functional as SF
from stllr.bptt import SurrogateSpike
from stllr.training.loop import stllr_window

__all__ = [
    "Problem",
    "make_problem",
    "spike_loss",
    "stllr_grads_by_hand",
    "layer_grads",
    "copy_layer",
    "PsiSpike",
    "bptt_grads",
    "window_by_hand",
    "worked_steps",
    "layer_grad_increments",
    "relative_error",
    "format_table",
]

DTYPE = torch.float64


class Problem(NamedTuple):
    """One small problem: a layer, its input and its target (all float64)."""

    layer: stllr.LinearSTLLR  #: the library's layer (raw weights), with the problem's parameters
    x: torch.Tensor  #: input spikes x_t, [T, B, M]
    y: torch.Tensor  #: target spikes y (the same at every step), [B, N]
    window: int  #: d = T - T_l, the number of steps (the last ones) that carry a learning signal
    factors: SF.Factors  #: [lambda_post, lambda_pre, alpha_post, alpha_pre]
    beta: float  #: membrane decay sigmoid(leak)
    theta: float  #: effective threshold max(threshold, 0.5)
    psi: Callable[[torch.Tensor], torch.Tensor]  #: the secondary activation psi(v)

    @property
    def weight(self) -> torch.Tensor:
        """W, [N, M] (a detached copy)."""
        return self.layer.weight.detach().clone()

    @property
    def bias(self) -> torch.Tensor:
        """b, [N] (a detached copy)."""
        return self.layer.bias.detach().clone()


def make_problem(
    inputs: int = 6,
    neurons: int = 4,
    batch: int = 3,
    steps: int = 12,
    window: int = 8,
    factors: Sequence[float] = (0.5, 0.8, -0.2, 1.0),
    leak: float = 2.0,
    threshold: float = 0.6,
    psi: str = "sigmoid",
    input_rate: float = 0.4,
    seed: int = 0,
) -> Problem:
    """A small float64 problem: a :class:`stllr.LinearSTLLR` (``weight_standardization=False``,
    weights drawn uniform in [-0.2, 0.4] so the neurons fire), Bernoulli input spikes and a
    Bernoulli target pattern, all from ``torch.Generator().manual_seed(seed)``.

    Parameters:
        inputs, neurons, batch, steps: M, N, B, T.
        window: d, the learning steps (the last ``window`` of the ``steps``), 1 <= d <= T.
        factors: [lambda_post, lambda_pre, alpha_post, alpha_pre].
        leak, threshold, psi: the layer's (beta = sigmoid(leak), theta = max(threshold, 0.5)).
        input_rate: probability of an input spike per synapse and step.
        seed: seed of the generator.

    Returns a :class:`Problem`: x [T, B, M], y [B, N].
    """
    for name, value in (("inputs", inputs), ("neurons", neurons), ("batch", batch)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a positive int, got {steps!r}")
    if not isinstance(window, int) or not 1 <= window <= steps:
        raise ValueError(f"window: expected an int in [1, steps={steps}], got {window!r}")
    if not 0.0 <= input_rate <= 1.0:
        raise ValueError(f"input_rate: expected a probability in [0, 1], got {input_rate!r}")
    factors = SF.check_factors(factors)
    gen = torch.Generator().manual_seed(seed)
    layer = stllr.LinearSTLLR(
        inputs,
        neurons,
        leak=leak,
        threshold=threshold,
        factors=factors,
        psi=psi,
        weight_standardization=False,
        dtype=DTYPE,
    )
    with torch.no_grad():
        layer.weight.copy_(torch.rand(neurons, inputs, generator=gen, dtype=DTYPE) * 0.6 - 0.2)
        layer.bias.copy_(torch.rand(neurons, generator=gen, dtype=DTYPE) * 0.2 - 0.1)
    x = (torch.rand(steps, batch, inputs, generator=gen, dtype=DTYPE) < input_rate).to(DTYPE)
    y = (torch.rand(batch, neurons, generator=gen, dtype=DTYPE) < 0.5).to(DTYPE)
    beta = float(SF.beta_from_leak(layer.leak))
    theta = float(SF.effective_threshold(layer.threshold))
    return Problem(layer, x, y, window, factors, beta, theta, layer.psi)


def spike_loss(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The per-step loss ``l_t = 1/2 sum (s_t - y)^2``; its learning signal is ``delta_t = s_t - y``.

    Parameters:
        s: spikes s_t, [B, N]; y: target, [B, N]. Returns a scalar.
    """
    return 0.5 * ((s - y) ** 2).sum()


def stllr_grads_by_hand(
    p: Problem, factors: Optional[Sequence[float]] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """S-TLLR's dL/dW and dL/db for ``p`` in plain torch (rule.md; paper Eq. 1-3, 10-13).

    Every step updates the traces and the membrane; a step of the window (t >= T - d) adds
    ``alpha_post (delta_t tr_out_{t-1})^T x_t + alpha_pre (delta_t psi_t)^T tr_in_t`` to dL/dW and
    ``sum_batch delta_t psi_t`` to dL/db, with ``delta_t = s_t - y``.

    Parameters:
        p: the problem (x [T, B, M], W [N, M], b [N], y [B, N]).
        factors: [lambda_post, lambda_pre, alpha_post, alpha_pre]; None: ``p.factors``.

    Returns (dL/dW [N, M], dL/db [N]).
    """
    lambda_post, lambda_pre, alpha_post, alpha_pre = SF.check_factors(
        p.factors if factors is None else factors
    )
    W, b, x = p.weight, p.bias, p.x
    T, B, M = x.shape
    N = W.shape[0]
    tr_in = torch.zeros(B, M, dtype=x.dtype)  # pre-synaptic trace tr_in_{t-1}
    tr_out = torch.zeros(B, N, dtype=x.dtype)  # post-synaptic trace tr_out_{t-1}
    u = torch.zeros(B, N, dtype=x.dtype)  # membrane after the reset, u_{t-1}
    grad_W = torch.zeros(N, M, dtype=x.dtype)
    grad_b = torch.zeros(N, dtype=x.dtype)
    for t in range(T):
        tr_in = lambda_pre * tr_in + x[t]  # tr_in_t = lambda_pre tr_in_{t-1} + x_t
        m = p.beta * u + x[t] @ W.T + b  # m_t = beta u_{t-1} + x_t W^T + b   (Eq. 1)
        v = m - p.theta  # v_t = m_t - theta
        s = (v > 0).to(x.dtype)  # s_t = H(v_t)                         (Eq. 2)
        psi_t = p.psi(v)  # psi_t = psi(v_t)                     (Eq. 25-28)
        if t >= T - p.window:  # a learning step
            delta = s - p.y  # delta_t = dl_t/ds_t
            causal = alpha_pre * (delta * psi_t).T @ tr_in  # (delta psi_t)^T tr_in_t
            noncausal = alpha_post * (delta * tr_out).T @ x[t]  # (delta tr_out_{t-1})^T x_t
            grad_W += causal + noncausal  # Eq. 10-13, summed over the window
            grad_b += (delta * psi_t).sum(0)  # the bias has no trace
        tr_out = lambda_post * tr_out + psi_t  # tr_out_t, AFTER the non-causal term
        u = m - p.theta * s  # soft reset                           (Eq. 3)
    return grad_W, grad_b


def layer_grads(
    p: Problem, factors: Optional[Sequence[float]] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The library's dL/dW and dL/db: :func:`stllr.training.loop.stllr_window` on a copy of
    ``p.layer`` with ``factors`` (None: ``p.factors``), loss :func:`spike_loss`, window ``p.window``.

    Parameters:
        p: the problem; factors: [lambda_post, lambda_pre, alpha_post, alpha_pre] or None.

    Returns (weight.grad [N, M], bias.grad [N]).
    """
    layer = copy_layer(p, factors)
    stllr_window(layer, p.x, p.y, spike_loss, p.window)
    return layer.weight.grad.clone(), layer.bias.grad.clone()


def copy_layer(p: Problem, factors: Optional[Sequence[float]] = None) -> stllr.LinearSTLLR:
    """A fresh :class:`stllr.LinearSTLLR` with ``p.layer``'s weights, bias, leak, threshold, psi
    and reset (raw weights, float64), and ``factors`` (None: ``p.factors``).

    Parameters:
        p: the problem (layer [N, M]); factors: [lambda_post, lambda_pre, alpha_post, alpha_pre].
    """
    src = p.layer
    layer = stllr.LinearSTLLR(
        src.in_features,
        src.out_features,
        leak=float(src.leak),
        threshold=float(src.threshold),
        factors=p.factors if factors is None else factors,
        psi=src.psi,
        reset=src.reset,
        weight_standardization=False,
        dtype=DTYPE,
    )
    with torch.no_grad():
        layer.weight.copy_(src.weight)
        layer.bias.copy_(src.bias)
    return layer


#: The spike with psi as its derivative (``PsiSpike.apply(v, psi)``): the library's BPTT twins' own
#: surrogate spike, :class:`stllr.bptt.SurrogateSpike`.
PsiSpike = SurrogateSpike


def bptt_grads(
    p: Problem, membrane_path: bool = True, detach_reset: bool = True
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Exact autograd gradient of ``L = sum over the window of l_t(s_t)`` for the layer of ``p``
    unrolled in plain torch over the T steps, the spike's derivative replaced by psi
    (:class:`PsiSpike`).

    Parameters:
        p: the problem.
        membrane_path: keep the gradient through ``beta u_{t-1}`` (True: BPTT through the
            membrane) or cut it (``u_{t-1}`` detached: only the current step's input counts).
        detach_reset: no gradient through the reset ``- theta s_t`` (True) or through it.

    Returns (dL/dW [N, M], dL/db [N]).
    """
    W = p.weight.requires_grad_(True)
    b = p.bias.requires_grad_(True)
    x = p.x
    T, B, _ = x.shape
    u = torch.zeros(B, W.shape[0], dtype=x.dtype)
    loss = x.new_zeros(())
    for t in range(T):
        u_prev = u if membrane_path else u.detach()
        m = p.beta * u_prev + x[t] @ W.T + b  # Eq. 1, with its graph
        s = PsiSpike.apply(m - p.theta, p.psi)  # Eq. 2, derivative psi
        if t >= T - p.window:
            loss = loss + spike_loss(s, p.y)
        u = m - p.theta * (s.detach() if detach_reset else s)  # Eq. 3
    loss.backward()
    return W.grad, b.grad


def window_by_hand(
    model: torch.nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    loss_fn: Callable,
    window: int,
    optimizer: Optional[torch.optim.Optimizer] = None,
) -> None:
    """One S-TLLR sequence, written out (the logic of ``stllr_window`` with ``chunk=0``, plus
    the one optimizer step of the ``stllr`` mode when ``optimizer`` is given).

    Parameters:
        model: S-TLLR layers (one step per call); x: [T, B, ...]; labels: what ``loss_fn``
            takes; loss_fn: ``(out_t, labels) -> scalar``; window: d, the learning steps;
        optimizer: None (only ``.grad`` is filled) or an optimizer to step once at the end.
    """
    stllr.reset_states(model)  # a new sequence: traces and membranes back to zero
    T = len(x)
    for t in range(T):
        if t < T - window:  # before the window: no learning signal, no graph
            with torch.no_grad():
                model(x[t])
        else:  # in the window: one backward per step, the gradients add up in .grad
            out = model(x[t])
            loss_fn(out, labels).backward()
    if optimizer is not None:
        optimizer.step()  # ONE step per sequence, the weights were fixed until now


def worked_steps(
    p: Problem, steps: Sequence[int], batch: int = 0, neuron: int = 0, synapse: int = 0
) -> List[Dict[str, float]]:
    """The rule's quantities at ``steps`` for one synapse (W[neuron, synapse]) of sample ``batch``.

    Parameters:
        p: the problem; steps: the time steps to report (0 <= t < T); batch, neuron, synapse:
            indices b, i, j.

    Returns one dict per step with keys ``t, x, tr_in, m, v, s, psi, tr_out_prev, tr_out, delta,
    causal, noncausal, update`` (x, tr_in of synapse j; the others of neuron i; ``update =
    causal + noncausal``: what step t adds to dL/dW[i, j] from sample b; 0 outside the window).
    """
    lambda_post, lambda_pre, alpha_post, alpha_pre = p.factors
    W, b, x = p.weight, p.bias, p.x
    T, B, M = x.shape
    if any(not 0 <= t < T for t in steps):
        raise ValueError(f"steps: expected time steps in [0, {T}), got {list(steps)}")
    i, j = neuron, synapse
    tr_in = torch.zeros(M, dtype=x.dtype)
    tr_out = u = 0.0
    rows = []
    for t in range(T):
        xt = x[t, batch]
        tr_in = lambda_pre * tr_in + xt
        m = p.beta * u + float(xt @ W[i]) + float(b[i])
        v = m - p.theta
        s = float(v > 0)
        psi_t = float(p.psi(torch.tensor(v, dtype=x.dtype)))
        delta = s - float(p.y[batch, i]) if t >= T - p.window else 0.0
        causal = alpha_pre * delta * psi_t * float(tr_in[j])
        noncausal = alpha_post * delta * tr_out * float(xt[j])
        new_tr_out = lambda_post * tr_out + psi_t
        if t in steps:
            rows.append(
                dict(
                    t=t,
                    x=float(xt[j]),
                    tr_in=float(tr_in[j]),
                    m=m,
                    v=v,
                    s=s,
                    psi=psi_t,
                    tr_out_prev=tr_out,
                    tr_out=new_tr_out,
                    delta=delta,
                    causal=causal,
                    noncausal=noncausal,
                    update=causal + noncausal,
                )
            )
        tr_out = new_tr_out
        u = m - p.theta * s
    return rows


def layer_grad_increments(
    p: Problem, batch: int = 0, neuron: int = 0, synapse: int = 0
) -> List[float]:
    """What each step adds to ``weight.grad[neuron, synapse]`` of the library's layer (a copy of
    ``p.layer``) driven by sample ``batch`` alone, step by step as ``stllr_window`` does.

    Parameters:
        p: the problem; batch, neuron, synapse: indices b, i, j.

    Returns T floats (0 before the window).
    """
    layer = copy_layer(p)
    x, y = p.x[:, batch : batch + 1], p.y[batch : batch + 1]
    out = [0.0] * len(x)  # 0 before the window
    before = 0.0

    def record(t: int) -> None:  # after step t's backward
        nonlocal before
        now = float(layer.weight.grad[neuron, synapse])
        out[t], before = now - before, now

    stllr_window(layer, x, y, spike_loss, p.window, after_backward=record)
    return out


def format_table(rows: Sequence[Dict[str, float]], digits: int = 4) -> str:
    """Rows of equal keys as a fixed-width text table, numbers at ``digits`` significant digits.

    Parameters:
        rows: dicts with the same keys; digits: significant digits of the numbers.
    """
    if not rows:
        raise ValueError("rows: expected at least one row")
    keys = list(rows[0])

    def fmt(value):
        if isinstance(value, int):
            return str(value)
        out = f"{value:.{digits}g}"
        return "0" if out in ("0", "-0") else out

    cells = [[fmt(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[n]) for c in cells)) for n, k in enumerate(keys)]
    lines = ["  ".join(k.rjust(w) for k, w in zip(keys, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def report(what: str, err: float, tol: float = 1e-12) -> None:
    """Print a float64 check as text that is the same on every CPU (``what: relative error <
    tol``); raise ``AssertionError`` with the measured error when ``err >= tol``.

    Parameters:
        what: the check's name; err: the measured relative error; tol: the bound.
    """
    assert err < tol, f"{what}: relative error {err:.3g}, expected < {tol:g}"
    print(f"{what}: relative error < {tol:g}")


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max |a - b| / max |b|`` (0 when both are zero).

    Parameters:
        a, b: tensors of the same shape (b the reference).
    """
    if a.shape != b.shape:
        raise ValueError(f"a: shape {tuple(a.shape)} differs from b's {tuple(b.shape)}")
    scale = float(b.abs().max())
    diff = float((a - b).abs().max())
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale
