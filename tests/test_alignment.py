"""stllr.studies.gradient_alignment (notebook 09): the S-TLLR update and the exact BPTT gradient of the same loss.

References are written here without the module's helpers:
- the S-TLLR update: the model run step by step by hand (no_grad before the window,
  ``CE(out_t, y).backward()`` at each window step), and the readout's rule written out
  (``sum_t delta_t^T tr_in_t`` with ``delta_t = (softmax(u_t) - onehot(y)) / B``);
- the BPTT gradient: ``torch.autograd.grad`` of the fair loss written out on the twin, and a central
  finite difference for the readout weight (spikes do not depend on it, so the loss is smooth in it);
- exact coincidences the rule predicts: at T = 1 (tr_out_0 = 0, tr_in_1 = x_1); for the readout at any
  window when its lambda_pre equals its own membrane decay; for the hidden layers when
  lambda_pre = beta, alpha_post = 0 and no gradient can cross time except through the membrane
  (psi = 0 before the last step, so neither the reset nor a spike carries gradient);
- the BPTT gradient without the recurrent spike path: autograd on a plain-ops network written from
  docs/rule.md (standardisation, LIF step, a surrogate spike with derivative psi, the leaky readout), with the
  previous spikes detached in the recurrent input; and the exact coincidence it predicts (with memoryless
  membranes the rule equals it even with W_rec != 0);
- psi swaps against a model built with that psi; sweeps over several references against single sweeps;
- metrics against numpy; training against Adam's first step written out.
Everything runs in float64 on a 6-5-3 recurrent net, T = 6, batch 4.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stllr import functional as SF
from stllr.models.registry import build_model
from stllr.studies import gradient_alignment as A
from stllr.training.loop import predict, time_major

DT = torch.float64
T, B, M, H, C = 6, 4, 6, 5, 3
NAMES = list(A.RECURRENT_LAYERS.values())  # linear1.weight, linear1.weight_rec, last_layer.weight
FACTORS = [0.3, 0.7, -0.5, 1.0]


def make_model(seed=0, factors=FACTORS, psi="sigmoid", **kw):
    torch.manual_seed(seed)
    model = build_model(
        "randman_rsnn_stllr",
        num_classes=C,
        input_shape=(M,),
        hidden=H,
        factors=factors,
        psi=psi,
        **kw,
    )
    return model.to(DT)


def make_batch(seed=1, steps=T, batch=B):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(steps, batch, M, generator=g) < 0.4).to(DT)  # time-major [T, B, M]
    y = torch.randint(0, C, (batch,), generator=g)
    return x, y


def params(model):
    own = dict(model.named_parameters())
    return [own[n] for n in NAMES]


def manual_stllr_grads(model, x, y, window, factors):
    """The S-TLLR update run by hand: hidden factors set directly on the layer buffer."""
    old = model.linear1.factors.clone()
    with torch.no_grad():
        model.linear1.factors.copy_(torch.tensor(factors, dtype=DT))
    model.zero_grad(set_to_none=True)
    model.reset_state()
    for t in range(x.shape[0]):
        if t < x.shape[0] - window:
            with torch.no_grad():
                model(x[t])
        else:
            F.cross_entropy(model(x[t]), y).backward()
    grads = {n: p.grad.detach().clone() for n, p in zip(NAMES, params(model))}
    model.zero_grad(set_to_none=True)
    model.reset_state()
    with torch.no_grad():
        model.linear1.factors.copy_(old)
    return grads


def autograd_fair_grads(twin, x, y, windows):
    """d/dW of sum_{t >= T - w} CE(out_t, y) by torch.autograd.grad, one forward through time."""
    twin.reset_state()
    outs = [twin(x[t]) for t in range(x.shape[0])]
    out = {}
    for w in windows:
        loss = sum(F.cross_entropy(outs[t], y) for t in range(x.shape[0] - w, x.shape[0]))
        out[w] = dict(zip(NAMES, torch.autograd.grad(loss, params(twin), retain_graph=True)))
    twin.reset_state()
    return out


def assert_close(a, b, rtol=1e-10, atol=1e-13):
    assert torch.allclose(a, b, rtol=rtol, atol=atol), (
        f"max |diff| {float((a - b).abs().max()):.3g}"
    )


# ----------------------------------------------------------------------------- small helpers


def test_fair_loss_is_the_sum_of_the_last_window_cross_entropies():
    g = torch.Generator().manual_seed(3)
    outs = [torch.randn(B, C, generator=g, dtype=DT) for _ in range(T)]
    y = torch.tensor([0, 2, 1, 2])
    for w in (1, 3, T):
        expected = 0.0
        for t in range(T - w, T):  # CE written out: mean over the batch of logsumexp(u) - u_y
            u = outs[t].numpy()
            lse = np.log(np.exp(u).sum(1))
            expected += float(np.mean(lse - u[np.arange(B), y.numpy()]))
        assert float(A.fair_loss(outs, y, w)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("bad", [0, T + 1, -1, 2.0, True, None, "3"])
def test_bad_windows_raise_value_errors_naming_the_argument(bad):
    model, (x, y) = make_model(), make_batch()
    outs = [torch.zeros(B, C, dtype=DT)] * T
    with pytest.raises(ValueError, match="window"):
        A.fair_loss(outs, y, bad)
    with pytest.raises(ValueError, match="window"):
        A.stllr_update(model, x, y, bad)
    with pytest.raises(ValueError, match="window"):
        A.bptt_gradients(A.bptt_twin(model), x, y, [1, bad])
    with pytest.raises(ValueError, match="window"):
        A.rule_components(model, x, y, [bad], [0.5], [0.5])


def test_window_may_be_a_numpy_integer():
    model, (x, y) = make_model(), make_batch()
    a = A.stllr_update(model, x, y, np.int64(3))
    b = A.stllr_update(model, x, y, 3)
    for n in NAMES:
        assert torch.equal(a[n], b[n])


def test_cosine_similarity_and_relative_norm_against_numpy():
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    an, bn = a.double().numpy().ravel(), b.double().numpy().ravel()
    assert A.cosine_similarity(a, b) == pytest.approx(
        an @ bn / (np.linalg.norm(an) * np.linalg.norm(bn)), rel=1e-12
    )
    assert A.relative_norm(a, b) == pytest.approx(
        np.linalg.norm(an) / np.linalg.norm(bn), rel=1e-12
    )
    a64 = a.double()
    assert A.cosine_similarity(a64, -2.0 * a64) == pytest.approx(-1.0, abs=1e-12)
    assert A.relative_norm(3.0 * a64, a64) == pytest.approx(3.0, rel=1e-12)
    assert math.isnan(A.cosine_similarity(a, torch.zeros_like(a)))
    assert math.isnan(A.relative_norm(a, torch.zeros_like(a)))


def test_time_major_and_first_batches():
    g = torch.Generator().manual_seed(5)
    frames = torch.randn(3, 4, M, generator=g)  # [B, T, M]
    tm = time_major(frames)
    assert tm.shape == (4, 3, M) and tm.is_contiguous()
    assert torch.equal(tm[2, 1], frames[1, 2])
    loader = [
        (torch.ones(2, 4, M), torch.tensor([0, 1])),
        (torch.ones(2, 7, M), torch.tensor([1, 2])),
        (torch.ones(2, 5, M), torch.tensor([2, 0])),
    ]
    out = A.first_batches(loader, 2, steps=5)
    assert len(out) == 2  # stops after n
    (f0, y0), (f1, y1) = out
    assert f0.shape == f1.shape == (2, 5, M)
    assert torch.equal(f0[:, :4], torch.ones(2, 4, M)) and torch.equal(
        f0[:, 4], torch.zeros(2, M)
    )  # zero-padded
    assert torch.equal(f1, torch.ones(2, 5, M))  # cut to 5 steps
    assert torch.equal(y1, torch.tensor([1, 2]))
    assert [f.shape[1] for f, _ in A.first_batches(loader, 5)] == [
        4,
        7,
        5,
    ]  # steps=None: unchanged, all 3


# ----------------------------------------------------------------------------- models


def test_hidden_layers_and_set_factors_restore_the_old_factors():
    model = make_model()
    assert A.hidden_stllr_layers(model) == [model.linear1]  # the readout is not a hidden layer
    old_hidden, old_readout = model.linear1.factors.clone(), model.last_layer.factors.clone()
    with A.set_factors(model, [0.1, 0.2, 0.0, 2.0]) as m:
        assert m is model
        assert model.linear1.factors.tolist() == [0.1, 0.2, 0.0, 2.0]
        assert model.linear1.factors.dtype == DT
        assert torch.equal(model.last_layer.factors, old_readout)
    assert torch.equal(model.linear1.factors, old_hidden)
    with pytest.raises(RuntimeError, match="inside"):
        with A.set_factors(model, [0.9, 0.9, 1.0, 1.0]):
            raise RuntimeError("inside")
    assert torch.equal(model.linear1.factors, old_hidden)  # restored after an exception too
    with pytest.raises(ValueError, match="factors"):
        with A.set_factors(model, [0.1, 0.2, 0.3]):
            pass
    assert torch.equal(model.linear1.factors, old_hidden)
    with pytest.raises(ValueError, match="no hidden S-TLLR layer"):
        with A.set_factors(torch.nn.Linear(2, 2), FACTORS):
            pass


def test_bptt_twin_copies_weights_and_computes_the_same_forward():
    model = make_model(leak=3.0, readout_leak=4.0)
    with torch.no_grad():
        model.linear1.gain.uniform_(0.7, 1.4)  # non-default values must travel too
        model.last_layer.bias.add_(0.3)
    twin = A.bptt_twin(model)
    assert not twin.is_stllr and twin.arch == "randman_rsnn_bptt"
    own = dict(twin.named_parameters())
    for name, p in model.named_parameters():
        assert own[name].dtype == DT
        assert torch.equal(own[name], p), name
        assert own[name].data_ptr() != p.data_ptr()  # a copy, not shared storage
    assert twin.linear1.out_features == H
    assert float(twin.linear1.leak) == 3.0 and float(twin.last_layer.leak) == 4.0
    assert SF.psi_name(twin.linear1.psi) == "sigmoid"  # not the recurrent default (rational)
    x, _ = make_batch()
    model.reset_state(), twin.reset_state()
    with torch.no_grad():
        for t in range(T):
            assert torch.equal(model(x[t]), twin(x[t]))
    with torch.no_grad():
        twin.linear1.weight.add_(1.0)
    assert not torch.equal(twin.linear1.weight, model.linear1.weight)
    model.eval()
    assert A.bptt_twin(model).training is False
    with pytest.raises(ValueError, match="already a BPTT model"):
        A.bptt_twin(twin)


# ----------------------------------------------------------------------------- the two gradients


def test_stllr_update_equals_the_model_run_by_hand():
    model, (x, y) = make_model(), make_batch()
    before = model.linear1.factors.clone()
    for window, factors in (
        (1, [0.3, 0.7, -0.5, 1.0]),
        (4, [0.6, 0.9, 1.0, 0.5]),
        (T, [0.0, 0.0, 0.0, 1.0]),
    ):
        got = A.stllr_update(model, x, y, window, factors=factors)
        assert torch.equal(model.linear1.factors, before)  # the model's factors come back
        ref = manual_stllr_grads(model, x, y, window, factors)
        for n in NAMES:
            assert got[n].abs().max() > 0, n
            assert_close(got[n], ref[n])
    # factors=None: the model's own factors
    got = A.stllr_update(model, x, y, 3)
    ref = manual_stllr_grads(model, x, y, 3, before.tolist())
    for n in NAMES:
        assert_close(got[n], ref[n])
    assert all(p.grad is None for p in model.parameters())  # nothing left behind
    assert model.linear1.state is None


def test_stllr_readout_update_is_the_rule_written_out():
    """Readout rule: grad W = sum over window of delta_t^T tr_in_t, tr_in_t = lambda tr_in_{t-1} + s_t,
    delta_t = dCE_t/du_t = (softmax(u_t) - onehot(y)) / B."""
    model, (x, y) = make_model(), make_batch()
    lam = float(model.last_layer.factors[1])
    window = 4
    got = A.stllr_update(model, x, y, window)["last_layer.weight"]
    model.reset_state()
    tr = torch.zeros(B, H, dtype=DT)
    expected = torch.zeros(C, H, dtype=DT)
    onehot = F.one_hot(y, C).to(DT)
    with torch.no_grad():
        for t in range(T):
            u = model(x[t])
            tr = lam * tr + model.linear1.state.spikes
            if t >= T - window:
                expected += ((torch.softmax(u, 1) - onehot) / B).t() @ tr
    model.reset_state()
    assert expected.abs().max() > 0
    assert_close(got, expected)


def test_bptt_gradients_equal_autograd_of_the_fair_loss():
    model, (x, y) = make_model(), make_batch()
    twin = A.bptt_twin(model)
    windows = [T, 1, 3, 3]
    got = A.bptt_gradients(twin, x, y, windows)
    assert sorted(got) == [1, 3, T]  # deduplicated, one entry per window
    ref = autograd_fair_grads(twin, x, y, [1, 3, T])
    for w in (1, 3, T):
        for n in NAMES:
            assert got[w][n].abs().max() > 0, (w, n)
            assert_close(got[w][n], ref[w][n])
    assert all(p.grad is None for p in twin.parameters())
    # other parameter names on request
    only = A.bptt_gradients(twin, x, y, [2], names=["linear1.bias"])
    assert list(only[2]) == ["linear1.bias"]
    with pytest.raises(ValueError, match="not in"):
        A.bptt_gradients(twin, x, y, [2], names=["nope.weight"])


def test_bptt_readout_gradient_equals_a_finite_difference():
    model, (x, y) = make_model(), make_batch()
    twin = A.bptt_twin(model)
    window = 3
    g = A.bptt_gradients(twin, x, y, [window])[window]["last_layer.weight"]

    def loss():
        twin.reset_state()
        with torch.no_grad():
            outs = [twin(x[t]) for t in range(T)]
        total = 0.0
        for t in range(T - window, T):
            u = outs[t]
            total += float((torch.logsumexp(u, 1) - u[torch.arange(B), y]).mean())
        return total

    eps = 1e-6
    for i, j in ((0, 0), (1, 3), (2, 4)):
        w = twin.last_layer.weight
        with torch.no_grad():
            w[i, j] += eps
        up = loss()
        with torch.no_grad():
            w[i, j] -= 2 * eps
        down = loss()
        with torch.no_grad():
            w[i, j] += eps
        assert float(g[i, j]) == pytest.approx((up - down) / (2 * eps), rel=1e-6, abs=1e-9)


# ----------------------------------------------------------------------------- where they coincide


def test_stllr_equals_bptt_at_one_step_for_any_factors():
    """T = 1: tr_out_0 = 0 (no non-causal term) and tr_in_1 = x_1, so alpha_pre = 1 gives the exact
    gradient whatever lambda_post, lambda_pre and alpha_post are."""
    model = make_model()
    x, y = make_batch(steps=1)
    twin = A.bptt_twin(model)
    exact = A.bptt_gradients(twin, x, y, [1])[1]
    for factors in ([0.3, 0.7, -0.5, 1.0], [0.9, 0.1, 2.0, 1.0]):
        g = A.stllr_update(model, x, y, 1, factors=factors)
        for n in ("linear1.weight", "last_layer.weight"):
            assert exact[n].abs().max() > 0
            assert_close(g[n], exact[n])
    g = A.stllr_update(model, x, y, 1, factors=[0.3, 0.7, -0.5, 2.0])  # alpha_pre scales the update
    assert_close(g["linear1.weight"], 2.0 * exact["linear1.weight"])


def test_readout_update_is_exact_when_its_lambda_pre_is_its_membrane_decay():
    """u_t = sum_k beta^(t-k) (s_k W^T + b) and the spikes do not depend on W, so
    dL_W/dW = sum_t delta_t^T tr_in_t with lambda_pre = beta: the readout's S-TLLR update is exact at
    every window; with another lambda_pre it is not."""
    model, (x, y) = make_model(), make_batch()
    beta = float(torch.sigmoid(model.last_layer.leak.detach()))
    twin = A.bptt_twin(model)
    exact = A.bptt_gradients(twin, x, y, [1, 3, T])
    n = "last_layer.weight"
    with torch.no_grad():
        model.last_layer.factors.copy_(torch.tensor([0.0, beta, 0.0, 1.0], dtype=DT))
    for w in (1, 3, T):
        g = A.stllr_update(model, x, y, w)
        assert_close(g[n], exact[w][n])
        assert A.cosine_similarity(g[n], exact[w][n]) == pytest.approx(1.0, abs=1e-12)
        assert A.relative_norm(g[n], exact[w][n]) == pytest.approx(1.0, abs=1e-10)
    with torch.no_grad():
        model.last_layer.factors[1] = 0.5
    g = A.stllr_update(model, x, y, T)
    assert not torch.allclose(g[n], exact[T][n], rtol=1e-3)


def _edge_model_and_batch():
    """Triangle psi (0 for |v| >= 1), a strong negative bias and small inputs keep every membrane at
    v_t <= -1 before the last step; a large last input brings some neurons into |v_T| < 1."""
    model = make_model(psi="triangle", leak=0.5)
    with torch.no_grad():
        model.linear1.bias.fill_(-2.0)
    g = torch.Generator().manual_seed(7)
    x = 0.3 * torch.rand(T, B, M, generator=g, dtype=DT)
    x[-1] = 4.0 * torch.randn(B, M, generator=g, dtype=DT)
    y = torch.tensor([0, 1, 2, 1])
    return model, x, y


def test_hidden_update_is_exact_when_lambda_pre_is_beta_and_no_gradient_crosses_time_elsewhere():
    """Window 1, alpha_post = 0, lambda_pre = beta: the causal term (delta psi_T)^T tr_in_T is the exact
    one-step eligibility sum_k beta^(T-k) x_k whenever du_t/dm_t = 1 for t < T, i.e. psi_t = 0 before
    the last step (no gradient through the soft reset, the spikes, the recurrence or the readout)."""
    model, x, y = _edge_model_and_batch()
    beta = float(torch.sigmoid(model.linear1.leak.detach()))
    # preconditions, checked rather than assumed
    model.reset_state()
    psis = []
    with torch.no_grad():
        for t in range(T):
            model(x[t])
            psis.append(model.linear1.state.psi.clone())
    model.reset_state()
    assert all(float(p.abs().max()) == 0.0 for p in psis[:-1])
    assert float(psis[-1].abs().max()) > 0.0
    twin = A.bptt_twin(model)
    exact = A.bptt_gradients(twin, x, y, [1])[1]
    g = A.stllr_update(model, x, y, 1, factors=[0.4, beta, 0.0, 1.0])
    for n in NAMES:
        assert_close(g[n], exact[n])
    n = "linear1.weight"
    assert exact[n].abs().max() > 1e-3
    assert A.cosine_similarity(g[n], exact[n]) == pytest.approx(1.0, abs=1e-12)
    # psi_t = 0 before T also empties tr_out_{T-1}: the non-causal term (which uses the post trace
    # BEFORE psi_T is added) vanishes, so any alpha_post is still exact here
    g = A.stllr_update(model, x, y, 1, factors=[0.4, beta, -1.0, 1.0])
    assert_close(g[n], exact[n])
    # the pre trace must decay with beta: another lambda_pre is not exact
    for lam in (0.0, 0.5 * beta, 1.0):
        g = A.stllr_update(model, x, y, 1, factors=[0.4, lam, 0.0, 1.0])
        assert not torch.allclose(g[n], exact[n], rtol=1e-3)


def test_hidden_update_is_exact_at_every_window_without_memory():
    """Membrane and readout decays ~ 0 (leak -40: beta = 4e-18) and W~_rec = 0: no gradient crosses time,
    so S-TLLR with lambda_pre = 0 and alpha_post = 0 equals BPTT at every window, W_rec included."""
    model = make_model(
        factors=[0.3, 0.0, 0.0, 1.0],
        leak=-40.0,
        readout_leak=-40.0,
        readout_factors=(0.0, 0.0, 0.0, 1.0),
    )
    with torch.no_grad():
        model.linear1.weight_rec.zero_()
    x, y = make_batch()
    x = 2.0 * x
    twin = A.bptt_twin(model)
    exact = A.bptt_gradients(twin, x, y, [1, 3, T])
    for w in (1, 3, T):
        g = A.stllr_update(model, x, y, w)
        for n in NAMES:
            assert exact[w][n].abs().max() > 1e-3, (w, n)
            assert_close(g[n], exact[w][n])
        g = A.stllr_update(
            model, x, y, w, factors=[0.3, 0.0, -1.0, 1.0]
        )  # the non-causal term breaks it
        assert not torch.allclose(g["linear1.weight"], exact[w]["linear1.weight"], rtol=1e-3)


# ----------------------------------------------------------------------------- components and sweep


def test_rule_components_combine_to_the_full_update():
    model, (x, y) = make_model(), make_batch()
    before = model.linear1.factors.clone()
    comp = A.rule_components(model, x, y, [T, 1, 3], [0.5, 0.9], [0.0, 0.6])
    assert comp.windows == [1, 3, T]
    assert comp.fixed == ["last_layer.weight"]
    for a_post, l_pre, l_post, w, a_pre in (
        (-1.0, 0.9, 0.6, 3, 1.0),
        (0.0, 0.5, 0.6, T, 1.0),
        (2.0, 0.5, 0.0, 1, 0.5),
        (0.5, 0.9, 0.0, T, 2.0),
    ):
        got = comp.update(a_post, l_pre, l_post, w, alpha_pre=a_pre)
        ref = manual_stllr_grads(model, x, y, w, [l_post, l_pre, a_post, a_pre])
        for n in ("linear1.weight", "linear1.weight_rec"):
            assert_close(got[n], ref[n])
        # the readout has its own factors: its update does not change with the hidden ones
        assert_close(
            got["last_layer.weight"],
            manual_stllr_grads(model, x, y, w, FACTORS)["last_layer.weight"],
        )
    assert torch.equal(model.linear1.factors, before)


@pytest.fixture(scope="module")
def sweep_setup():
    model = make_model()
    g = torch.Generator().manual_seed(11)
    batches = [
        ((torch.rand(B, T, M, generator=g) < 0.4).to(DT), torch.randint(0, C, (B,), generator=g))
        for _ in range(2)
    ]
    messages = []
    sweep = A.alignment_sweep(
        model,
        batches,
        alpha_posts=(-1.0, 0.0),
        lambda_pres=(0.9, 0.5),
        lambda_posts=(0.6,),
        windows=(T, 2),
        progress=messages.append,
    )
    return model, batches, sweep, messages


def test_alignment_sweep_entries_equal_the_metrics_of_the_two_gradients(sweep_setup):
    model, batches, sweep, messages = sweep_setup
    assert sweep.layers == list(A.RECURRENT_LAYERS) and sweep.names == NAMES
    assert sweep.lambda_pres == [0.5, 0.9] and sweep.windows == [2, T]  # sorted
    assert sweep.cos.shape == sweep.rel.shape == (3, 2, 2, 1, 2, 2)
    assert len(messages) == 4 and messages[0].startswith("batch 0")
    twin = A.bptt_twin(model)
    for b, (frames, labels) in enumerate(batches):
        x = frames.transpose(0, 1)
        exact = A.bptt_gradients(twin, x, labels, [2, T])
        for ai, a in enumerate(sweep.alpha_posts):
            for pi, lp in enumerate(sweep.lambda_pres):
                for wi, w in enumerate(sweep.windows):
                    g = manual_stllr_grads(model, x, labels, w, [0.6, lp, a, 1.0])
                    for li, n in enumerate(NAMES):
                        c = np.dot(g[n].numpy().ravel(), exact[w][n].numpy().ravel()) / (
                            np.linalg.norm(g[n].numpy()) * np.linalg.norm(exact[w][n].numpy())
                        )
                        r = np.linalg.norm(g[n].numpy()) / np.linalg.norm(exact[w][n].numpy())
                        assert sweep.cos[li, ai, pi, 0, wi, b] == pytest.approx(c, abs=1e-9)
                        assert sweep.rel[li, ai, pi, 0, wi, b] == pytest.approx(r, rel=1e-9)


def test_alignment_sweep_summaries(sweep_setup):
    _, _, sweep, _ = sweep_setup
    at = sweep.at(-1.0, 0.9, 0.6, 2)
    assert set(at) == set(sweep.layers)
    assert at["input W_in"]["cos"] == pytest.approx(sweep.cos[0, 0, 1, 0, 0].mean())
    assert at["input W_in"]["cos_std"] == pytest.approx(sweep.cos[0, 0, 1, 0, 0].std())
    assert at["readout W_out"]["rel"] == pytest.approx(sweep.rel[2, 0, 1, 0, 0].mean())
    assert np.allclose(sweep.mean("rel"), sweep.rel.mean(-1))
    # best: the highest mean cosine over the hidden layers (readout excluded)
    score = sweep.cos.mean(-1)[:2].mean(0)
    a, p, q, w = np.unravel_index(np.argmax(score), score.shape)
    best = sweep.best()
    assert (best["alpha_post"], best["lambda_pre"], best["window"]) == (
        sweep.alpha_posts[a],
        sweep.lambda_pres[p],
        sweep.windows[w],
    )
    assert best["cos"] == pytest.approx(score[a, p, q, w])
    at_T = sweep.best(window=T, alpha_post=0.0)
    sub = score[1, :, :, 1]
    assert (
        at_T["window"] == T
        and at_T["alpha_post"] == 0.0
        and at_T["cos"] == pytest.approx(sub.max())
    )
    with pytest.raises(KeyError, match="lambda_pre"):
        sweep.at(-1.0, 0.7, 0.6, 2)
    table = sweep.table([(-1.0, 0.9, 0.6, 2)], digits=4).splitlines()
    assert len(table) == 3
    assert (
        f"{at['input W_in']['cos']:.4f}" in table[2]
        and f"{at['readout W_out']['rel']:.4f}" in table[2]
    )


def test_alignment_sweep_needs_batches():
    with pytest.raises(ValueError, match="no batches"):
        A.alignment_sweep(make_model(), [], windows=(1,))


def test_heatmap_outlines_the_best_cell(sweep_setup):
    _, _, sweep, _ = sweep_setup
    plt = pytest.importorskip("matplotlib.pyplot")
    fig = A.plot_alignment_heatmaps(sweep, window=2)
    try:
        panels = [ax for ax in fig.axes if ax.images]
        assert len(panels) == 2 * len(sweep.alpha_posts)
        data = sweep.mean("cos")
        for k, ax in enumerate(panels):
            li, ai = divmod(k, len(sweep.alpha_posts))
            m = data[li, ai, :, :, 0].T
            assert np.allclose(ax.images[0].get_array(), m)
            qi, pi = np.unravel_index(np.nanargmax(m), m.shape)
            (rect,) = ax.patches
            assert rect.get_xy() == pytest.approx((pi - 0.45, qi - 0.45))
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------- a trained checkpoint


def test_train_briefly_takes_adam_steps_on_the_stllr_update():
    """One epoch on one batch = one Adam step; Adam's first step is -lr g / (|g| + eps) (bias
    corrections make m_hat = g, v_hat = g^2), g = the S-TLLR update of the batch."""
    model = make_model()
    x, y = make_batch()
    frames = x.transpose(
        0, 1
    ).float()  # the loader's [B, T, M]; train_briefly casts to the model's dtype
    factors, window, lr = [0.4, 0.8, 0.0, 1.0], 4, 0.01
    before = model.linear1.factors.clone()
    g = A.stllr_update(model, x, y, window, factors=factors)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    logits = predict(model, frames.to(DT))
    losses = A.train_briefly(model, [(frames, y)], epochs=1, lr=lr, window=window, factors=factors)
    assert losses == [pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-12)]
    own = dict(model.named_parameters())
    for n in NAMES:
        expected = start[n] - lr * g[n] / (g[n].abs() + 1e-8)
        assert_close(own[n].detach(), expected, rtol=1e-9, atol=1e-12)
    assert torch.equal(model.linear1.factors, before)  # restored
    assert all(p.grad is None for p in model.parameters())
    assert len(A.train_briefly(model, [(frames, y)] * 2, epochs=3, lr=lr, window=window)) == 3


def test_test_accuracy_counts_correct_samples_over_all_batches():
    model = make_model()
    g = torch.Generator().manual_seed(9)
    f1 = (torch.rand(4, T, M, generator=g) < 0.5).float()
    f2 = (torch.rand(2, T, M, generator=g) < 0.5).float()
    with torch.no_grad():
        pred = []
        for f in (f1, f2):
            model.reset_state()
            total = sum(model(f[:, t].to(DT)) for t in range(T))
            pred.append(total.argmax(1))
    # batch 1: 1 of 4 right, batch 2: 2 of 2 right -> 3 / 6 = 50 % (the mean of batch accuracies would be 62.5)
    y1 = (pred[0] + 1) % C
    y1[0] = pred[0][0]
    y2 = pred[1].clone()
    acc = A.test_accuracy(model, [(f1, y1), (f2, y2)])
    assert acc == pytest.approx(50.0)
    assert not model.training
    assert A.test_accuracy(model, [(f1, pred[0])]) == pytest.approx(100.0)


# ----------------------------------------------------------------------------- psi and the recurrent spike path


def plain_bptt_grads(model, x, y, window, cut):
    """d/d(W_in, W_rec, W_out) of the fair loss on a plain-ops copy of the network written from docs/rule.md:
    W~ = gain (W - mean) / sqrt(var fan_in + 1e-4), m_t = beta u_{t-1} + x_t W~^T + b [+ s_{t-1} W~_rec^T],
    s_t = H(v_t) with ds/dv = psi(v_t), soft reset u_t = m_t - theta s_t, readout u_t = beta_o u_{t-1} + s_t W^T + b.
    ``cut``: s_{t-1} enters the recurrent input detached."""
    L, R = model.linear1, model.last_layer
    W, Wr, Wo = (
        p.detach().clone().requires_grad_(True) for p in (L.weight, L.weight_rec, R.weight)
    )

    def ws(w, gain):
        mean = w.mean(1, keepdim=True)
        var = w.var(1, keepdim=True, unbiased=True)
        return gain * (w - mean) / torch.sqrt(var * w.shape[1] + 1e-4)

    psi = SF.get_psi(SF.psi_name(L.psi))
    beta, beta_o = torch.sigmoid(L.leak.detach()), torch.sigmoid(R.leak.detach())
    theta = max(float(L.threshold), 0.5)
    Wt, Wrt = ws(W, L.gain.detach()), ws(Wr, L.gain_rec.detach())
    u = torch.zeros(x.shape[1], Wt.shape[0], dtype=DT)
    uo = torch.zeros(x.shape[1], Wo.shape[0], dtype=DT)
    s_prev, outs = None, []
    for t in range(x.shape[0]):
        cur = x[t] @ Wt.t() + L.bias.detach()
        if s_prev is not None:
            cur = cur + (s_prev.detach() if cut else s_prev) @ Wrt.t()
        m = beta * u + cur
        v = m - theta
        s = (v > 0).to(DT) + psi(v).detach() * (v - v.detach())  # value H(v), derivative psi(v)
        u = m - theta * s
        uo = beta_o * uo + s @ Wo.t() + R.bias.detach()
        outs.append(uo)
        s_prev = s
    loss = sum(F.cross_entropy(outs[t], y) for t in range(x.shape[0] - window, x.shape[0]))
    return dict(zip(NAMES, torch.autograd.grad(loss, [W, Wr, Wo])))


def test_without_recurrent_spike_path_equals_the_plain_network_with_detached_spikes():
    model, (x, y) = make_model(), make_batch()
    x = 1.5 * x  # enough spikes for the recurrent path to matter
    twin = A.bptt_twin(model)
    full = A.bptt_gradients(twin, x, y, [4])[4]
    with A.without_recurrent_spike_path(twin) as same:
        assert same is twin
        cut = A.bptt_gradients(twin, x, y, [4])[4]
        twin.reset_state()
        with torch.no_grad():  # the forward pass does not change
            cut_logits = [twin(x[t]) for t in range(T)]
    twin.reset_state()
    with torch.no_grad():
        logits = [twin(x[t]) for t in range(T)]
    assert all(torch.equal(a, b) for a, b in zip(cut_logits, logits))
    ref_full, ref_cut = (
        plain_bptt_grads(model, x, y, 4, False),
        plain_bptt_grads(model, x, y, 4, True),
    )
    for n in NAMES:
        assert_close(full[n], ref_full[n])  # the reference is the twin's network
        assert_close(cut[n], ref_cut[n])
    assert not torch.allclose(
        cut["linear1.weight"], full["linear1.weight"], rtol=1e-3
    )  # the path matters here
    assert ref_cut["linear1.weight_rec"].abs().max() > 1e-3  # W_rec keeps its own gradient
    again = A.bptt_gradients(twin, x, y, [4])[4]  # the hooks are gone after the block
    for n in NAMES:
        assert_close(again[n], full[n])
    with pytest.raises(ValueError, match="twin has no recurrent"):
        with A.without_recurrent_spike_path(model):  # the S-TLLR model is not a BPTT twin
            pass


def test_rule_equals_bptt_without_the_recurrent_path_when_membranes_forget():
    """Membrane and readout decays ~ 0 (leak -40) and W_rec != 0: the only gradient across time runs through
    s_{t-1} W~_rec^T. Without it, S-TLLR (lambda_pre 0, alpha_post 0) is exact for every weight matrix; with it,
    it is not."""
    model = make_model(
        factors=[0.3, 0.0, 0.0, 1.0],
        leak=-40.0,
        readout_leak=-40.0,
        readout_factors=(0.0, 0.0, 0.0, 1.0),
    )
    with torch.no_grad():
        model.linear1.weight_rec.mul_(3.0)
    x, y = make_batch()
    x = 2.0 * x
    twin = A.bptt_twin(model)
    full = A.bptt_gradients(twin, x, y, [T])[T]
    with A.without_recurrent_spike_path(twin):
        cut = A.bptt_gradients(twin, x, y, [3, T])
    for w in (3, T):
        g = A.stllr_update(model, x, y, w)
        for n in NAMES:
            assert cut[w][n].abs().max() > 1e-3, (w, n)
            assert_close(g[n], cut[w][n])
    g = A.stllr_update(model, x, y, T)
    assert not torch.allclose(g["linear1.weight"], full["linear1.weight"], rtol=1e-3)


def test_with_psi_keeps_the_state_and_the_spikes_and_swaps_psi():
    model = make_model(psi="sigmoid", leak=3.0, readout_leak=4.0)
    with torch.no_grad():
        model.linear1.gain.uniform_(0.7, 1.4)
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    other = A.with_psi(model, "rational")
    assert torch.equal(torch.rand(3), expected_draw)  # the global random state is untouched
    assert (
        SF.psi_name(other.linear1.psi) == "rational" and SF.psi_name(model.linear1.psi) == "sigmoid"
    )
    assert SF.psi_name(A.bptt_twin(other).linear1.psi) == "rational"
    state, new = model.state_dict(), other.state_dict()
    assert set(state) == set(new)
    for k in state:
        assert torch.equal(state[k], new[k]) and new[k].dtype == state[k].dtype, k
    assert float(other.linear1.leak) == 3.0 and other.linear1.out_features == H
    x, y = make_batch()
    model.reset_state(), other.reset_state()
    with torch.no_grad():
        for t in range(T):
            assert torch.equal(model(x[t]), other(x[t]))
    model.reset_state(), other.reset_state()
    # the update differs by psi alone: compare with a model built with rational and the same state
    ref = make_model(psi="rational", leak=3.0, readout_leak=4.0)
    ref.load_state_dict(state)
    g, g_ref = A.stllr_update(other, x, y, 3), A.stllr_update(ref, x, y, 3)
    for n in NAMES:
        assert_close(g[n], g_ref[n])
    assert not torch.allclose(
        g["linear1.weight"], A.stllr_update(model, x, y, 3)["linear1.weight"], rtol=1e-3
    )
    with pytest.raises(ValueError, match="psi"):
        A.with_psi(model, "nope")
    with pytest.raises(ValueError, match="expected an S-TLLR model"):
        A.with_psi(A.bptt_twin(model), "rational")


def test_alignment_sweeps_share_the_rule_runs_and_equal_single_sweeps():
    model = make_model()
    g = torch.Generator().manual_seed(12)
    batches = [
        ((torch.rand(B, T, M, generator=g) < 0.5).to(DT), torch.randint(0, C, (B,), generator=g))
        for _ in range(2)
    ]
    grid = dict(
        alpha_posts=(0.0, 1.0), lambda_pres=(0.5, 0.9), lambda_posts=(0.0, 0.6), windows=(2, T)
    )
    full, cut = A.bptt_twin(model), A.bptt_twin(model)
    with A.without_recurrent_spike_path(cut):
        both = A.alignment_sweeps(model, batches, {"full": full, "cut": cut}, **grid)
        single_cut = A.alignment_sweep(model, batches, twin=cut, **grid)
    single_full = A.alignment_sweep(model, batches, twin=full, **grid)
    assert list(both) == ["full", "cut"]
    for got, ref in ((both["full"], single_full), (both["cut"], single_cut)):
        assert np.array_equal(got.cos, ref.cos) and np.array_equal(got.rel, ref.rel)
        assert got.windows == ref.windows and got.layers == ref.layers
    assert not np.allclose(both["full"].cos[0], both["cut"].cos[0])
    with pytest.raises(ValueError, match="twins"):
        A.alignment_sweeps(model, batches, {}, **grid)
    with pytest.raises(ValueError, match="no batches"):
        A.alignment_sweeps(model, [], {"full": full}, **grid)


@pytest.fixture(scope="module")
def two_psi_sweeps():
    model = make_model(psi="rational")
    g = torch.Generator().manual_seed(13)
    batches = [
        ((torch.rand(B, T, M, generator=g) < 0.5).to(DT), torch.randint(0, C, (B,), generator=g))
        for _ in range(2)
    ]
    grid = dict(
        alpha_posts=(-1.0, 0.0),
        lambda_pres=(0.0, 0.5, 0.9),
        lambda_posts=(0.0, 0.6),
        windows=(2, T),
    )
    return {
        "rational": A.alignment_sweep(model, batches, **grid),
        "sigmoid": A.alignment_sweep(A.with_psi(model, "sigmoid"), batches, **grid),
    }


def test_lambda_pre_profile_is_the_best_lambda_post_of_the_hidden_mean(two_psi_sweeps):
    sw = two_psi_sweeps["rational"]
    assert A.hidden_layers(sw) == ["input W_in", "recurrent W_rec"]
    for a in sw.alpha_posts:
        prof = A.lambda_pre_profile(sw, 2, a)
        assert prof.shape == (3,)
        for pi, lp in enumerate(sw.lambda_pres):
            cells = [
                np.mean([sw.at(a, lp, lq, 2)[l]["cos"] for l in ("input W_in", "recurrent W_rec")])
                for lq in sw.lambda_posts
            ]
            assert prof[pi] == pytest.approx(max(cells), abs=1e-12)
    # alpha_post = 0: lambda_post is unused, every lambda_post gives the same cosine
    m = sw.mean("cos")[:2, 1, :, :, 0].mean(0)
    assert np.allclose(m[:, 0], m[:, 1], atol=1e-12)
    only_in = A.lambda_pre_profile(sw, T, -1.0, layers=["input W_in"])
    assert only_in == pytest.approx(sw.mean("cos")[0, 0, :, :, 1].max(1))
    with pytest.raises(KeyError, match="window"):
        A.lambda_pre_profile(sw, 3, 0.0)


def test_compare_sweeps_table_prints_each_sweeps_cosines(two_psi_sweeps):
    rows = A.compare_sweeps_table(
        two_psi_sweeps, [(0.0, 0.9, 0.0, T), (-1.0, 0.5, 0.6, 2)]
    ).splitlines()
    assert len(rows) == 4
    assert "rational" in rows[0] and "sigmoid" in rows[0] and " d " in rows[0]
    assert rows[1].split("|")[1].split() == ["W_in", "W_rec", "mean"]
    for row, pt in zip(rows[2:], [(0.0, 0.9, 0.0, T), (-1.0, 0.5, 0.6, 2)]):
        blocks = row.split("|")[1:]
        for block, sw in zip(blocks, two_psi_sweeps.values()):
            r = sw.at(*pt)
            vals = [r["input W_in"]["cos"], r["recurrent W_rec"]["cos"]]
            expected = [f"{v:.3f}" for v in vals + [np.mean(vals)]]
            assert block.split() == expected
    with pytest.raises(ValueError, match="sweeps"):
        A.compare_sweeps_table({}, [(0.0, 0.9, 0.0, T)])


def test_plot_psi_comparison_draws_the_profiles(two_psi_sweeps):
    plt = pytest.importorskip("matplotlib.pyplot")
    fig = A.plot_psi_comparison(
        two_psi_sweeps, T, cut={"sigmoid": two_psi_sweeps["rational"]}, cut_alpha_posts=(-1.0, 0.0)
    )
    try:
        left, mid, right = fig.axes[:3]
        sig = two_psi_sweeps["sigmoid"]
        # left: one line per (sweep, alpha_post) in order; sigmoid, alpha_post 0 is the 4th
        assert np.allclose(left.lines[3].get_ydata(), A.lambda_pre_profile(sig, T, 0.0))
        assert left.lines[3].get_linestyle() == "--"
        score = sig.mean("cos")[:2].mean(0)
        assert np.allclose(mid.lines[3].get_ydata(), score[1].max(axis=(0, 1)))
        # right: for each of cut_alpha_posts, the cut profile, then the full one
        rat = two_psi_sweeps["rational"]
        for k, a in enumerate((-1.0, 0.0)):
            assert np.allclose(right.lines[2 * k].get_ydata(), A.lambda_pre_profile(rat, T, a))
            assert np.allclose(right.lines[2 * k + 1].get_ydata(), A.lambda_pre_profile(sig, T, a))
        assert right.get_title().startswith("alpha_post -1, +0")
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="cut"):
        A.plot_psi_comparison(two_psi_sweeps, T, cut={"triangle": two_psi_sweeps["rational"]})
