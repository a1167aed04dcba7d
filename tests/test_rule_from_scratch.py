"""stllr.studies.rule_from_scratch (notebook 02): the hand-written rule equals the library's layer,
the BPTT identities hold against autograd, the hand-written window loop equals stllr_window, and the
worked table's per-step updates are the layer's per-step gradient increments."""

from __future__ import annotations

import matplotlib
import matplotlib.colors
import pytest
import torch

matplotlib.use("Agg")

from matplotlib.patches import FancyArrowPatch  # noqa: E402

import stllr  # noqa: E402
from stllr.plotting.schematic import plot_bptt_vs_stllr_graph  # noqa: E402
from stllr.plotting.style import PAPER_STYLE, plt  # noqa: E402
from stllr.studies import rule_from_scratch as rfs  # noqa: E402
from stllr.training.loop import stllr_window  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = 1e-12


@pytest.fixture(scope="module")
def problem():
    return rfs.make_problem()


def test_problem_is_small_float64_and_fires(problem):
    T, B, M = problem.x.shape
    assert (T, B, M) == (12, 3, 6) and problem.y.shape == (3, 4) and problem.window == 8
    assert problem.x.dtype == torch.float64 and problem.layer.weight.dtype == torch.float64
    assert not problem.layer.weight_standardization
    layer = rfs.copy_layer(problem)
    with torch.no_grad():
        rate = torch.stack([layer(x) for x in problem.x]).mean()
    assert 0.1 < float(rate) < 0.9  # the neurons fire, but not at every step
    again = rfs.make_problem()
    assert torch.equal(again.x, problem.x) and torch.equal(again.weight, problem.weight)


@pytest.mark.parametrize(
    "factors",
    [(0.5, 0.8, -0.2, 1.0), (0.2, 0.75, -1.0, 1.0), (0.3, 0.0, 0.7, 0.5), (0.9, 0.6, 0.0, 2.0)],
)
def test_hand_written_rule_equals_the_layer(problem, factors):
    grad_w, grad_b = rfs.stllr_grads_by_hand(problem, factors)
    ref_w, ref_b = rfs.layer_grads(problem, factors)
    assert float(ref_w.abs().max()) > 0.1
    assert rfs.relative_error(grad_w, ref_w) < TOL
    assert rfs.relative_error(grad_b, ref_b) < TOL


def test_non_causal_term_matters(problem):
    # the check above would be weak if alpha_post changed nothing
    a, _ = rfs.layer_grads(problem, (0.5, 0.8, -0.2, 1.0))
    b, _ = rfs.layer_grads(problem, (0.5, 0.8, 0.0, 1.0))
    assert rfs.relative_error(a, b) > 1e-3


def test_psi_spike_has_psi_as_derivative(problem):
    v = torch.linspace(-1, 1, 11, dtype=torch.float64, requires_grad=True)
    s = rfs.PsiSpike.apply(v, problem.psi)
    assert torch.equal(s, (v > 0).double())
    s.sum().backward()
    torch.testing.assert_close(v.grad, problem.psi(v.detach()), rtol=0, atol=0)


def test_bptt_with_membrane_path_equals_stllr_with_lambda_pre_beta(problem):
    grad_w, _ = rfs.bptt_grads(problem, membrane_path=True)
    rule_w, _ = rfs.stllr_grads_by_hand(problem, (0.5, problem.beta, 0.0, 1.0))
    assert rfs.relative_error(rule_w, grad_w) < TOL
    # the rule gives the bias no trace, BPTT through the membrane does: they differ there
    _, rule_b = rfs.layer_grads(problem, (0.5, problem.beta, 0.0, 1.0))
    _, bptt_b = rfs.bptt_grads(problem, membrane_path=True)
    assert rfs.relative_error(rule_b, bptt_b) > 1e-3


def test_bptt_with_membrane_path_cut_equals_stllr_with_lambda_pre_zero(problem):
    grad_w, grad_b = rfs.bptt_grads(problem, membrane_path=False)
    rule_w, rule_b = rfs.layer_grads(problem, (0.5, 0.0, 0.0, 1.0))
    assert rfs.relative_error(rule_w, grad_w) < TOL
    assert rfs.relative_error(rule_b, grad_b) < TOL


def test_other_lambda_pre_or_reset_gradient_differ_from_bptt(problem):
    grad_w, _ = rfs.bptt_grads(problem, membrane_path=True)
    other, _ = rfs.stllr_grads_by_hand(problem, (0.5, 0.8, 0.0, 1.0))
    assert rfs.relative_error(other, grad_w) > 1e-3
    full, _ = rfs.bptt_grads(problem, membrane_path=True, detach_reset=False)
    assert rfs.relative_error(full, grad_w) > 1e-3


def test_window_by_hand_equals_stllr_window(problem):
    mine, ref = rfs.copy_layer(problem), rfs.copy_layer(problem)
    rfs.window_by_hand(mine, problem.x, problem.y, rfs.spike_loss, problem.window)
    stllr_window(ref, problem.x, problem.y, rfs.spike_loss, problem.window)
    assert rfs.relative_error(mine.weight.grad, ref.weight.grad) < TOL
    assert rfs.relative_error(mine.bias.grad, ref.bias.grad) < TOL
    # with an optimizer: one step, the same as stepping after stllr_window
    opt_mine = torch.optim.SGD(mine.parameters(), lr=0.1)
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.1)
    opt_mine.zero_grad()
    opt_ref.zero_grad()
    rfs.window_by_hand(mine, problem.x, problem.y, rfs.spike_loss, problem.window, opt_mine)
    stllr_window(ref, problem.x, problem.y, rfs.spike_loss, problem.window)
    opt_ref.step()
    assert rfs.relative_error(mine.weight.detach(), ref.weight.detach()) < TOL


def test_worked_steps_are_the_layers_per_step_increments(problem):
    steps = list(range(len(problem.x)))
    rows = rfs.worked_steps(problem, steps, batch=0, neuron=3, synapse=1)
    increments = rfs.layer_grad_increments(problem, batch=0, neuron=3, synapse=1)
    assert [r["t"] for r in rows] == steps
    assert any(abs(r["noncausal"]) > 0 for r in rows) and any(abs(r["causal"]) > 0 for r in rows)
    for row, inc in zip(rows, increments):
        assert abs(row["update"] - inc) <= TOL * max(1.0, abs(inc)), row["t"]
        assert row["update"] == row["causal"] + row["noncausal"]
    # and the state columns follow the layer's own recorded state
    layer = rfs.copy_layer(problem)
    with torch.no_grad():
        for t, row in enumerate(rows):
            s = layer(problem.x[t, :1])
            assert float(s[0, 3]) == row["s"]
            assert abs(float(layer.pre_trace[0, 1]) - row["tr_in"]) < TOL
            assert abs(float(layer.post_trace[0, 3]) - row["tr_out"]) < TOL
            assert abs(float(layer.state.psi[0, 3]) - row["psi"]) < TOL


def test_format_table_and_relative_error():
    text = rfs.format_table([{"t": 1, "v": 0.123456}, {"t": 12, "v": -0.0}])
    assert text.splitlines() == [" t       v", " 1  0.1235", "12       0"]
    a = torch.tensor([1.0, 2.0], dtype=torch.float64)
    assert rfs.relative_error(a, a) == 0.0
    assert rfs.relative_error(a + torch.tensor([0.0, 0.5]), a) == 0.25
    with pytest.raises(ValueError, match="^rows:"):
        rfs.format_table([])
    with pytest.raises(ValueError, match="^a:"):
        rfs.relative_error(a, a[:1])


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"window": 0}, "window"),
        ({"window": 13}, "window"),
        ({"steps": 0}, "steps"),
        ({"inputs": 0}, "inputs"),
        ({"input_rate": 1.5}, "input_rate"),
        ({"factors": (1, 2, 3)}, "factors"),
    ],
)
def test_make_problem_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        rfs.make_problem(**kwargs)


def test_worked_steps_rejects_steps_out_of_range(problem):
    with pytest.raises(ValueError, match="^steps:"):
        rfs.worked_steps(problem, [12])


def _gradient_arrows(ax):
    red = matplotlib.colors.to_rgba(PAPER_STYLE["bptt"])
    return sum(
        isinstance(p, FancyArrowPatch) and tuple(p.get_edgecolor()) == red for p in ax.patches
    )


def test_schematic_draws_two_unrolled_panels():
    fig = plot_bptt_vs_stllr_graph(steps=3)
    try:
        bptt, rule = fig.axes[:2]
        texts = lambda ax: {t.get_text() for t in ax.texts}  # noqa: E731
        assert {"$u_1$", "$u_3$", "$x_2$"} <= texts(bptt)
        assert not any("tr" in t for t in texts(bptt))
        assert r"$\mathrm{tr}^{\mathrm{in}}_{3}$" in texts(rule)
        # gradient arrows: BPTT l->s, s->u, u->dL/dW per step and u_t->u_{t-1} between steps;
        # S-TLLR l->s and s->update per step, none between steps
        assert _gradient_arrows(bptt) == 3 * 3 + 2
        assert _gradient_arrows(rule) == 2 * 3
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="^steps:"):
        plot_bptt_vs_stllr_graph(steps=1)


def test_study_uses_only_public_stllr_entry_points():
    # the notebook imports it as a submodule; stllr.studies' __init__ needs no change for that
    assert stllr.studies.rule_from_scratch is rfs
