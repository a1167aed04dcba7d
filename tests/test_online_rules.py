"""stllr.studies.online_rules (notebook 04): S-TLLR's OTTT and SLTT cases against SpikingJelly's own
implementations (float64), e-prop's per-synapse eligibility, the measured memory growth, bad input."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from stllr.studies import online_rules as orl

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-12


@pytest.fixture(scope="module")
def setup():
    return orl.make_setup(inputs=5, neurons=4, batch=2, steps=10, tau=4.0, threshold=0.8, seed=3)


def _row(rows, rule, psi="sigmoid"):
    (row,) = [r for r in rows if r["rule"] == rule and r["psi"] == psi]
    return row


def test_setup_fires_and_never_sits_on_the_threshold(setup):
    for reset in ("soft", "hard"):
        _, _, spikes = orl.stllr_grads(setup, [0.5, 0.0, 0.0, 1.0], reset=reset)
        rates = spikes.mean((0, 1))
        assert bool((rates > 0).all()) and bool((rates < 1).all()), (
            rates
        )  # every neuron fires, and rests
        assert orl.closest_to_threshold(setup, reset) > 1e-6  # >= (SpikingJelly) and > agree
    for row in orl.compare_with_spikingjelly(setup, psis=("sigmoid",)):
        assert 0.1 < row["spike_rate"] < 0.9, row


@pytest.mark.parametrize("psi", ["sigmoid", "rational"])
def test_ottt_and_sltt_equal_spikingjelly(setup, psi):
    rows = orl.compare_with_spikingjelly(setup, psis=(psi,))
    for rule in ("OTTT", "SLTT"):
        row = _row(rows, rule, psi)
        assert row["same_spikes"]
        assert row["weight_error"] < TOL and row["bias_error"] < TOL, row
    beta = 1 - 1 / setup.tau
    assert _row(rows, "OTTT", psi)["factors"][1:3] == (pytest.approx(beta, abs=1e-15), 0.0)
    assert _row(rows, "SLTT", psi)["factors"][1:3] == (0.0, 0.0)


def test_sltt_without_input_decay_needs_no_weight_scaling(setup):
    """SpikingJelly's decay_input=False: h = v - v / tau + x, S-TLLR's weights unscaled."""
    ref_w, ref_b, ref_s = orl.spikingjelly_sltt_grads(setup, "sigmoid", decay_input=False)
    assert float(ref_s.mean()) > 0.1
    w, b, s = orl.stllr_grads(setup, [0.5, 0.0, 0.0, 1.0], "sigmoid", "hard", 1.0)
    assert torch.equal(s, ref_s)
    assert orl.relative_error(w, ref_w) < TOL and orl.relative_error(b, ref_b) < TOL


@pytest.mark.parametrize(
    "factors",
    [
        {"OTTT": [0.5, 0.0, 0.0, 1.0]},  # lambda_pre 0 instead of beta
        {"OTTT": [0.5, 0.5, 0.0, 1.0]},  # lambda_pre neither
        {"OTTT": [0.5, 0.75, -0.2, 1.0]},  # a non-causal term (beta = 0.75)
        {"SLTT": [0.5, 0.75, 0.0, 1.0]},  # a trace
        {"SLTT": [0.5, 0.0, 0.3, 1.0]},  # a non-causal term
    ],
)
def test_a_changed_factor_breaks_the_equivalence(setup, factors):
    (rule,) = factors
    row = _row(orl.compare_with_spikingjelly(setup, psis=("sigmoid",), factors=factors), rule)
    assert row["weight_error"] > 1e-2


def test_wrong_conventions_break_it(setup):
    """Soft reset for SLTT (SpikingJelly's hard) or no 1/tau input scaling: large differences."""
    sj = orl.sltt_setup(setup)
    ref_w, _, _ = orl.spikingjelly_sltt_grads(sj, "sigmoid")
    good, _, _ = orl.stllr_grads(sj, [0.5, 0.0, 0.0, 1.0], "sigmoid", "hard", 1 / setup.tau)
    soft, _, _ = orl.stllr_grads(sj, [0.5, 0.0, 0.0, 1.0], "sigmoid", "soft", 1 / setup.tau)
    unscaled, _, _ = orl.stllr_grads(sj, [0.5, 0.0, 0.0, 1.0], "sigmoid", "hard", 1.0)
    assert orl.relative_error(good, ref_w) < TOL
    assert orl.relative_error(unscaled, ref_w) > 1e-2
    assert orl.relative_error(soft, ref_w) > 1e-2


def test_surrogates_are_the_stated_multiples_of_psi():
    from stllr import functional as SF

    v = torch.linspace(-2, 2, 401, dtype=torch.float64)
    for psi, (make, factor) in orl.SURROGATES.items():
        vv = v.clone().requires_grad_(True)
        make()(vv).sum().backward()
        assert orl.relative_error(vv.grad, factor * SF.get_psi(psi)(v)) < TOL


def test_eprop_per_synapse_eligibility_equals_the_ottt_factors(setup):
    e_w, e_b, nbytes = orl.eprop_grads(setup, "rational")
    beta = orl.beta_of_tau(setup.tau)
    w, b, _ = orl.stllr_grads(setup, [0.3, beta, 0.0, 1.0], "rational")
    assert orl.relative_error(e_w, w) < TOL and orl.relative_error(e_b, b) < TOL
    T, B, M = setup.x.shape
    assert nbytes == B * setup.weight.shape[0] * M * 8


def test_leak_of_tau_gives_the_membrane_decay():
    for tau in (1.5, 2.0, 5.0, 20.0):
        assert 1 / (1 + math.exp(-orl.leak_of_tau(tau))) == pytest.approx(1 - 1 / tau, rel=1e-15)


def test_memory_bptt_linear_in_T_online_rules_constant():
    rows = orl.memory_vs_T((4, 8, 16), inputs=7, hidden=9, classes=3, batch=5)
    bptt = [r["bptt"] for r in rows]
    assert (
        bptt[2] - bptt[1] == 2 * (bptt[1] - bptt[0]) > 0
    )  # exactly linear: the same bytes per step
    for key in ("stllr", "stllr_ottt", "sj_ottt", "sj_sltt"):
        assert len({r[key] for r in rows}) == 1, key  # the same byte count at every T
    assert (
        rows[0]["stllr_ottt"] == rows[0]["sj_ottt"] < rows[0]["stllr"]
    )  # alpha_post = 0 saves less
    Ts = [r["T"] for r in rows]
    assert orl.growth_exponent(Ts, bptt) == pytest.approx(1.0, abs=0.05)
    assert orl.growth_exponent(Ts, [r["stllr"] for r in rows]) == 0.0


def test_costs_against_width():
    rows = orl.costs_vs_width((6, 12), T=3, batch=5, classes=2)
    n = [r["n"] for r in rows]
    assert orl.growth_exponent(n, [r["eprop_eligibility"] for r in rows]) == pytest.approx(2.0)
    assert orl.growth_exponent(n, [r["stllr_traces"] for r in rows]) == pytest.approx(1.0)
    assert rows[0]["eprop_eligibility"] == 5 * 6 * 6 * 8 and rows[0]["stllr_traces"] > 0
    for r in rows:
        assert r["bptt_macs"] > 0 and r["stllr_macs"] > 0


def test_growth_exponent_recovers_powers():
    xs = [2, 4, 8, 16]
    for p in (0, 1, 2, 3):
        assert orl.growth_exponent(xs, [3 * x**p for x in xs]) == pytest.approx(p, abs=1e-12)


def test_table1_quotes_docs_paper_results():
    line = next(
        ln
        for ln in (ROOT / "docs" / "paper-results.md").read_text().splitlines()
        if "Table 1" in ln
    )
    text = (
        line
        + " "
        + next(
            ln
            for ln in (ROOT / "docs" / "paper-results.md").read_text().splitlines()
            if ln.strip().startswith("OTTT n")
        )
    )
    compact = re.sub(r"\s+", "", text)
    rows = {r["method"]: r for r in orl.TABLE1}
    assert set(rows) == {"BPTT", "RTRL", "e-prop", "OSTL", "OTTT", "S-TLLR"}
    assert "BPTTmemoryTn,timeTn^2" in compact
    for method in ("RTRL", "OTTT", "S-TLLR"):
        r = rows[method]
        assert f"{method}{r['memory']},{r['time']}".replace(" ", "") in compact
    assert "e-prop/OSTLn^2,n^2" in compact and rows["e-prop"]["memory"] == rows["OSTL"]["memory"]
    assert [r["method"] for r in orl.TABLE1 if r["noncausal"] == "yes"] == ["S-TLLR"]
    assert "RTRL" in orl.table1_text() and "quoted only" in orl.table1_text()


def test_plot(setup):
    rows = [{"T": t, **{k: 100 * t for k, *_ in orl.MEMORY_CURVES}} for t in (2, 4)]
    w = torch.ones(2, 3)
    fig = orl.plot_online_rules(rows, {"a": (w, w)})
    assert len(fig.axes) == 2
    from stllr.plotting.style import plt

    plt.close(fig)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: orl.make_setup(inputs=0), "inputs"),
        (lambda: orl.make_setup(steps=2.5), "steps"),
        (lambda: orl.make_setup(tau=1.0), "tau"),
        (lambda: orl.make_setup(threshold=0.4), "threshold"),
        (lambda: orl.make_setup(input_rate=1.5), "input_rate"),
        (lambda: orl.leak_of_tau(float("nan")), "tau"),
        (lambda: orl.stllr_grads(orl.make_setup(), [0, 0, 0, 1], psi="triangle"), "psi"),
        (lambda: orl.stllr_grads(orl.make_setup(), [0, 0, 0, 1], input_scale=0), "input_scale"),
        (lambda: orl.spikingjelly_ottt_grads(orl.make_setup(), psi="x"), "psi"),
        (
            lambda: orl.compare_with_spikingjelly(orl.make_setup(), factors={"BPTT": [0] * 4}),
            "factors",
        ),
        (
            lambda: orl.compare_with_spikingjelly(orl.make_setup(), factors={"OTTT": [1, 2]}),
            "factors",
        ),
        (lambda: orl.memory_vs_T((8,)), "Ts"),
        (lambda: orl.memory_vs_T((16, 8)), "Ts"),
        (lambda: orl.memory_vs_T((4, 8), batch=24), "batch"),
        (lambda: orl.costs_vs_width((8, 16), batch=8), "batch"),
        (lambda: orl.costs_vs_width((8, 16), T=0), "T"),
        (lambda: orl.small_models(0, 4, 2, [0, 0, 0, 1]), "inputs"),
        (lambda: orl.spikingjelly_net("bptt", 3, 4, 2), "kind"),
        (lambda: orl.growth_exponent([1, 2], [1]), "xs"),
        (lambda: orl.growth_exponent([1, 2], [0, 1]), "positive"),
        (lambda: orl.growth_exponent([2, 2], [1, 3]), "distinct"),
        (lambda: orl.format_rows([]), "rows"),
        (lambda: orl.closest_to_threshold(orl.make_setup(), "none"), "reset"),
        (lambda: orl.plot_online_rules([], {}), "memory_rows"),
    ],
)
def test_bad_input_is_one_clear_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
