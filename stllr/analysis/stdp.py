"""The STDP-like window S-TLLR implies, analytically and by simulating spike pairs through a
real :class:`~stllr.LinearSTLLR`, and one layer's traces recorded over a sequence
(notebooks 01 and 03)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from stllr import functional as SF
from stllr.layers import LinearSTLLR

__all__ = [
    "record_layer",
    "stdp_window_analytic",
    "stdp_window_with_resting_psi",
    "stdp_window_simulated",
    "classic_stdp_window",
]


def record_layer(
    layer: LinearSTLLR, inputs: torch.Tensor, neuron: int = 0, sample: int = 0
) -> dict:
    """Run ``layer`` over ``inputs`` [T, B, M] (no learning) and record, for one neuron of one
    sample, everything the rule uses, as numpy arrays over time:

    ``input`` [T, M], ``pre_trace`` [T, M], ``membrane_pre_reset`` [T] (m_t), ``membrane`` [T]
    (u_t after reset), ``spikes`` [T], ``psi`` [T], ``post_trace`` [T], and the eligibility
    terms of the rule for every synapse of that neuron with a learning signal of 1:
    ``causal`` [T, M] = alpha_pre psi_t tr_in_t and ``noncausal`` [T, M] = alpha_post tr_out_{t-1} x_t.
    """
    lambda_post, lambda_pre, alpha_post, alpha_pre = layer.factors_tuple
    theta = float(SF.effective_threshold(layer.threshold))
    keys = (
        "input",
        "pre_trace",
        "membrane_pre_reset",
        "membrane",
        "spikes",
        "psi",
        "post_trace",
        "causal",
        "noncausal",
    )
    rec = {k: [] for k in keys}
    layer.reset_state()
    post_prev, u_prev = 0.0, 0.0
    beta = float(SF.beta_from_leak(layer.leak))
    with torch.no_grad():
        for x_t in inputs:
            s = layer(x_t)
            st = layer.state
            w_tilde = layer._sequence_constants().w_tilde
            current = float(x_t[sample] @ w_tilde[neuron, : layer.in_features])
            current += 0.0 if layer.bias is None else float(layer.bias[neuron])
            x = x_t[sample, : layer.in_features].double().numpy()
            pre = st.pre_trace[sample, : layer.in_features].double().numpy()
            psi = float(st.psi[sample, neuron])
            spike = float(s[sample, neuron])
            u = float(st.membrane[sample, neuron])
            m = beta * u_prev + current  # m_t = beta u_{t-1} + x_t W~^T + b (before the reset)
            u_prev = u
            rec["input"].append(x)
            rec["pre_trace"].append(pre)
            rec["membrane_pre_reset"].append(m)
            rec["membrane"].append(u)
            rec["spikes"].append(spike)
            rec["psi"].append(psi)
            rec["post_trace"].append(float(st.post_trace[sample, neuron]))
            rec["causal"].append(alpha_pre * psi * pre)
            rec["noncausal"].append(alpha_post * post_prev * x)
            post_prev = rec["post_trace"][-1]
    out = {k: np.asarray(v) for k, v in rec.items()}
    out["theta"] = theta
    return out


def stdp_window_analytic(dts: Sequence[int], factors) -> np.ndarray:
    """Weight change for one pre spike at t_pre and one post event (psi = 1) at t_post, with a
    learning signal of 1 at every step; ``dt = t_post - t_pre`` in steps.

    Causal side (dt >= 0, rule term ``alpha_pre psi_t tr_in_t``): ``alpha_pre * lambda_pre**dt``.
    Non-causal side (dt < 0, term ``alpha_post tr_out_{t-1} x_t``, trace before adding psi_t):
    ``alpha_post * lambda_post**(|dt| - 1)``. Returns an array shaped like ``dts``.
    """
    lambda_post, lambda_pre, alpha_post, alpha_pre = SF.check_factors(factors)
    dts = np.asarray(dts, dtype=np.int64)
    causal = alpha_pre * np.power(lambda_pre, np.clip(dts, 0, None).astype(float))
    noncausal = alpha_post * np.power(lambda_post, np.clip(-dts - 1, 0, None).astype(float))
    return np.where(dts >= 0, causal, noncausal)


def stdp_window_with_resting_psi(
    dts: Sequence[int], factors, psi_post: float, psi_rest: float
) -> np.ndarray:
    """The window of a neuron whose psi is ``psi_rest`` at every step but the post event's
    (``psi_post`` there), over a long sequence (all traces settled, none cut off), learning
    signal 1 at every step.

    The rule is linear in the psi of each step, so the window splits into the spike-pair part,
    ``(psi_post - psi_rest) * stdp_window_analytic(dts, factors)``, plus what a constant
    ``psi_rest`` gives every pre spike whatever the timing: the causal term sums
    ``alpha_pre * psi_rest * lambda_pre**k`` over the steps after it, the non-causal one reads a
    post trace settled at ``psi_rest / (1 - lambda_post)``. So

    ``(psi_post - psi_rest) * window(dt) + psi_rest * (alpha_pre / (1 - lambda_pre)
    + alpha_post / (1 - lambda_post))``.

    Parameters:
        dts: dt = t_post - t_pre in steps [D].
        factors: ``[lambda_post, lambda_pre, alpha_post, alpha_pre]``; both decays below 1.
        psi_post: psi at the post event; psi_rest: psi at every other step.

    Returns an array [D].
    """
    lambda_post, lambda_pre, alpha_post, alpha_pre = SF.check_factors(factors)
    if not (lambda_post < 1 and lambda_pre < 1):
        raise ValueError(
            "factors: lambda_post and lambda_pre must be below 1 (else no settled trace)"
        )
    offset = alpha_pre / (1.0 - lambda_pre) + alpha_post / (1.0 - lambda_post)
    pair = stdp_window_analytic(dts, factors)
    return (float(psi_post) - float(psi_rest)) * pair + float(psi_rest) * offset


def stdp_window_simulated(
    dts: Sequence[int],
    factors,
    psi="rational",
    t_first: int = 20,
    n_steps: int | None = None,
    threshold: float = 0.6,
    leak: float = 0.0,
    overdrive: float = 1e-4,
    dtype=torch.float64,
) -> dict:
    """Recover the window by driving an actual ``LinearSTLLR`` with spike pairs.

    The layer has one neuron and two inputs: input 0 is the synapse under study (weight 0, so it
    does not move the membrane) and carries one pre spike; input 1 is a "teacher" (weight 1) that
    lifts the membrane just ``overdrive`` above the firing threshold at t_post. The learning
    signal is 1 at every step (loss = sum of the spikes, one backward per step), and the window
    is the weight gradient of input 0 read from ``layer.weight.grad``.

    Returns ``{"dt", "dw" (raw gradient), "psi_post" (psi at the post spike), "dw_normalized"
    (dw / psi_post, comparable to the analytic window)}``.
    """
    dts = [int(d) for d in dts]
    span = max(abs(d) for d in dts) if dts else 0
    t_first = max(t_first, span + 1)
    n_steps = n_steps or (t_first + span + 5)
    dws, psi_posts = [], []
    for dt in dts:
        t_pre, t_post = (t_first, t_first + dt) if dt >= 0 else (t_first - dt, t_first)
        layer = LinearSTLLR(
            2,
            1,
            bias=False,
            threshold=threshold,
            leak=leak,
            factors=factors,
            psi=psi,
            weight_standardization=False,
            dtype=dtype,
        )
        with torch.no_grad():
            layer.weight.copy_(torch.tensor([[0.0, 1.0]], dtype=dtype))
        theta = max(threshold, SF.MIN_THRESHOLD)
        psi_post = None
        for t in range(n_steps):
            x = torch.zeros(1, 2, dtype=dtype)
            x[0, 0] = 1.0 if t == t_pre else 0.0
            if t == t_post:
                u_prev = 0.0 if layer.membrane is None else float(layer.membrane[0, 0])
                beta = float(SF.beta_from_leak(layer.leak))
                x[0, 1] = theta + overdrive - beta * u_prev
            s = layer(x)
            if t == t_post:
                psi_post = float(layer.state.psi[0, 0])
            s.sum().backward()
        dws.append(float(layer.weight.grad[0, 0]))
        psi_posts.append(psi_post)
    dw = np.array(dws)
    psi_post = np.array(psi_posts)
    return {"dt": np.array(dts), "dw": dw, "psi_post": psi_post, "dw_normalized": dw / psi_post}


def classic_stdp_window(
    dts: Sequence[int],
    a_plus: float = 1.0,
    a_minus: float = 0.5,
    tau_plus: float = 4.0,
    tau_minus: float = 4.0,
) -> np.ndarray:
    """Pair-based exponential STDP (Bi & Poo): ``A+ exp(-dt/tau+)`` for dt >= 0,
    ``-A- exp(dt/tau-)`` for dt < 0 (dt in steps)."""
    dts = np.asarray(dts, dtype=float)
    return np.where(dts >= 0, a_plus * np.exp(-dts / tau_plus), -a_minus * np.exp(dts / tau_minus))
