"""The STDP window: the closed form against pairs simulated through a real LinearSTLLR."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stllr.analysis.metrics import cosine_similarity, relative_norm
from stllr.analysis.stdp import classic_stdp_window, stdp_window_analytic, stdp_window_simulated


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


def test_classic_window_and_gradient_metrics():
    w = classic_stdp_window([-1, 0, 1], a_plus=1.0, a_minus=0.5, tau_plus=1.0, tau_minus=1.0)
    np.testing.assert_allclose(w, [-0.5 * np.exp(-1), 1.0, np.exp(-1)])
    a = torch.tensor([1.0, 0.0])
    b = torch.tensor([1.0, 1.0])
    assert cosine_similarity(a, b) == pytest.approx(2**-0.5)
    assert relative_norm(a, b) == pytest.approx(2**-0.5)
