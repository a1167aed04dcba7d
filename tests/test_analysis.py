"""The STDP window: the closed form against pairs simulated through a real LinearSTLLR; the metrics
(cosine, angle, relative norm, mean +- std) against their textbook formulas."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
import torch

from stllr import functional as SF
from stllr.analysis.metrics import angle_degrees, cosine_similarity, mean_std, relative_norm
from stllr.analysis.stdp import (
    classic_stdp_window,
    stdp_window_analytic,
    stdp_window_simulated,
    stdp_window_with_resting_psi,
)


def test_analytic_window_values_written_out():
    # factors [lambda_post, lambda_pre, alpha_post, alpha_pre]
    w = stdp_window_analytic([-3, -2, -1, 0, 1, 2], [0.5, 0.8, -1.0, 2.0])
    np.testing.assert_allclose(w, [-0.25, -0.5, -1.0, 2.0, 1.6, 1.28])


@pytest.mark.parametrize(
    "factors", [[0.5, 0.8, -1.0, 1.0], [0.2, 0.75, 1.0, 1.0], [0.9, 0.5, 0.0, 1.0]]
)
def test_simulated_pairs_recover_the_analytic_window(factors):
    dts = list(range(-5, 6))
    sim = stdp_window_simulated(dts, factors)
    expected = stdp_window_analytic(dts, factors)
    # the only difference is the tiny psi of the resting membrane at the other steps
    np.testing.assert_allclose(sim["dw_normalized"], expected, atol=3e-3)
    assert np.all(sim["psi_post"] > 0.9)


def test_simulated_window_changes_sign_with_alpha_post():
    neg = stdp_window_simulated([-2], [0.5, 0.8, -1.0, 1.0])["dw"][0]
    pos = stdp_window_simulated([-2], [0.5, 0.8, 1.0, 1.0])["dw"][0]
    assert neg < -0.3 and pos > 0.3


def test_window_with_resting_psi_written_out():
    # factors [0.5, 0.8, -1, 1]: constant part psi_rest * (1 / 0.2 - 1 / 0.5) = 3 psi_rest
    w = stdp_window_with_resting_psi([-2, -1, 0, 1], [0.5, 0.8, -1.0, 1.0], 1.0, 0.25)
    np.testing.assert_allclose(w, 0.75 * np.array([-0.5, -1.0, 1.0, 0.8]) + 0.75, atol=1e-12)
    # psi_rest = 0: the plain analytic window scaled by psi_post
    np.testing.assert_allclose(
        stdp_window_with_resting_psi([-3, 0, 3], [0.2, 0.75, 1.0, 1.0], 0.5, 0.0),
        0.5 * stdp_window_analytic([-3, 0, 3], [0.2, 0.75, 1.0, 1.0]),
    )
    with pytest.raises(ValueError, match="^factors: "):
        stdp_window_with_resting_psi([0], [0.5, 1.0, -1.0, 1.0], 1.0, 0.1)


@pytest.mark.parametrize("psi", ["rational", "sigmoid", "triangle", "fast_sigmoid"])
def test_simulated_pairs_follow_the_window_with_resting_psi(psi):
    # a long sequence, so every trace settles and none is cut off: the closed form holds for any
    # psi up to the psi of the few steps after the post spike (v just above rest, 1e-4 off)
    factors, dts = [0.5, 0.8, -1.0, 1.0], list(range(-6, 7))
    sim = stdp_window_simulated(dts, factors, psi=psi, n_steps=120)
    rest = float(SF.get_psi(psi)(torch.tensor(-0.6, dtype=torch.float64)))
    expected = stdp_window_with_resting_psi(dts, factors, sim["psi_post"][0], rest)
    np.testing.assert_allclose(sim["dw"], expected, atol=3e-4)


def test_classic_window_and_gradient_metrics():
    w = classic_stdp_window([-1, 0, 1], a_plus=1.0, a_minus=0.5, tau_plus=1.0, tau_minus=1.0)
    np.testing.assert_allclose(w, [-0.5 * np.exp(-1), 1.0, np.exp(-1)])
    a = torch.tensor([1.0, 0.0])
    b = torch.tensor([1.0, 1.0])
    assert cosine_similarity(a, b) == pytest.approx(2**-0.5)
    assert relative_norm(a, b) == pytest.approx(2**-0.5)


def test_cosine_and_angle_of_flattened_tensors():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 5, 7, generator=g)
    b = torch.randn(3, 5, 7, generator=g, requires_grad=True)  # detached inside
    a64, b64 = a.double().flatten(), b.detach().double().flatten()
    assert cosine_similarity(a, b) == float(a64 @ b64 / (a64.norm() * b64.norm()))
    assert angle_degrees(a, b) == math.degrees(math.acos(cosine_similarity(a, b)))
    assert angle_degrees(a, -3.0 * a) == pytest.approx(180.0, abs=1e-5)
    assert angle_degrees(a, 2.0 * a) == pytest.approx(0.0, abs=1e-5)  # clipped to [-1, 1]
    assert math.isnan(cosine_similarity(a, torch.zeros_like(a)))
    assert math.isnan(angle_degrees(torch.zeros(4), torch.ones(4)))


def test_mean_std_exact_and_numpy_are_the_two_textbook_computations():
    values = [61.25, 66.5, 64.0, 70.125]
    assert mean_std(values) == (statistics.fmean(values), statistics.stdev(values))
    a = np.array(values)
    assert mean_std(a, exact=False) == (float(a.mean()), float(a.std(ddof=1)))
    assert mean_std([4.0]) == mean_std(np.array([4.0]), exact=False) == (4.0, 0.0)
    # the two differ in the last bit for some inputs: that is why both are kept
    rng = np.random.default_rng(0)
    differ = 0
    for _ in range(200):
        v = rng.uniform(0, 100, 5)
        (m1, s1), (m2, s2) = mean_std(list(v)), mean_std(v, exact=False)
        assert m1 == pytest.approx(m2, rel=1e-15) and s1 == pytest.approx(s2, rel=1e-13)
        differ += (m1, s1) != (m2, s2)
    assert differ > 0
