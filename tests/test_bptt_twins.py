"""BPTT twins: same forward as the S-TLLR layers, true gradients through time.

- forward spikes equal the S-TLLR layer's for the same weights (state_dicts move across);
- with a smooth spike_fn, autograd gradients equal central finite differences (float64);
- with the default surrogate, gradients equal autograd of a plain-ops surrogate network
  through time written in this file;
- S-TLLR and BPTT coincide at T = 1 when alpha_pre = 1 (any lambda_post, lambda_pre, alpha_post:
  at t = 1, tr_out_0 = 0 kills the non-causal term and tr_in_1 = x_1), scale with alpha_pre,
  and differ at T > 1.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stllr import (
    Conv2dLIF,
    Conv2dSTLLR,
    LeakyIntegrator,
    LeakyReadout,
    LinearLIF,
    LinearSTLLR,
    RecurrentLIF,
    RecurrentSTLLR,
)

DT = torch.float64
B, M, N, CIN, COUT, HW = 3, 7, 6, 2, 3, 5
KINDS = ["linear", "recurrent", "conv", "readout"]


def build(kind, twin, seed=0, factors=(0.5, 0.8, -0.2, 1.0), spike_fn=None, **kw):
    torch.manual_seed(seed)
    kw = dict(kw)
    if twin:
        if kind == "readout":
            kw.pop("reset", None), kw.pop("psi", None), kw.pop("threshold", None)
            return LeakyIntegrator(M, N, dtype=DT, **kw)
        cls = {"linear": LinearLIF, "recurrent": RecurrentLIF, "conv": Conv2dLIF}[kind]
        kw["spike_fn"] = spike_fn
    else:
        if kind == "readout":
            kw.pop("reset", None), kw.pop("psi", None), kw.pop("threshold", None)
            return LeakyReadout(M, N, dtype=DT, factors=factors, **kw)
        cls = {"linear": LinearSTLLR, "recurrent": RecurrentSTLLR, "conv": Conv2dSTLLR}[kind]
        kw["factors"] = factors
    if kind == "conv":
        return cls(CIN, COUT, 3, padding=1, dtype=DT, **kw)
    return cls(M, N, dtype=DT, **kw)


def randomize(layer, seed=5):
    """Non-default gains, a stronger recurrent weight: every parameter matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.startswith("gain"):
                p.copy_(torch.rand(p.shape, generator=g, dtype=DT) + 0.6)
            if name == "weight_rec":
                p.mul_(2.0)


def inputs(kind, T, seed=1, batch=B):
    g = torch.Generator().manual_seed(seed)
    shape = (batch, CIN, HW, HW) if kind == "conv" else (batch, M)
    return [
        (torch.rand(shape, generator=g) < 0.5).to(DT) * 1.5
        + 0.3 * torch.randn(shape, generator=g, dtype=DT)
        for _ in range(T)
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_keys_match_across_twins(kind):
    """Same parameter names: only the S-TLLR ``factors`` buffer has no counterpart in the twin."""
    stllr = build(kind, False)
    twin = build(kind, True)
    res = twin.load_state_dict(stllr.state_dict(), strict=False)
    assert res.unexpected_keys == ["factors"] and res.missing_keys == []
    res = build(kind, False).load_state_dict(twin.state_dict(), strict=False)
    assert res.missing_keys == ["factors"] and res.unexpected_keys == []


@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("kind", KINDS)
def test_twin_forward_equals_stllr_forward(kind, reset):
    cfg = dict(threshold=0.6, leak=1.0, reset=reset, psi="triangle")
    stllr = build(kind, False, seed=0, **cfg)
    randomize(stllr)
    twin = build(kind, True, seed=99, **cfg)  # different init: the load must overwrite it
    twin.load_state_dict(stllr.state_dict(), strict=False)
    back = build(kind, False, seed=77, **cfg)
    back.load_state_dict(twin.state_dict(), strict=False)

    xs = inputs(kind, 10)
    outs = {}
    for name, layer in (("stllr", stllr), ("twin", twin), ("back", back)):
        layer.reset_state()
        seq = []
        for x in xs:
            out = layer(x)
            seq.append(out.detach())
        outs[name] = seq
    if kind != "readout":
        rate = torch.stack(outs["stllr"]).mean().item()
        assert 0.05 < rate < 0.95, rate
    for t in range(len(xs)):
        torch.testing.assert_close(outs["twin"][t], outs["stllr"][t], rtol=0, atol=1e-12)
        assert torch.equal(outs["back"][t], outs["stllr"][t])
    fresh = build(kind, True, seed=99, **cfg)
    fresh.reset_state()
    assert any(not torch.allclose(fresh(x), o) for x, o in zip(xs, outs["stllr"]))


def smooth_spike(v):
    return torch.sigmoid(10.0 * v)


def summed_loss(layers, xs, R):
    for l in layers:
        l.reset_state()
    total = 0.0
    for x in xs:
        h = x
        for l in layers:
            h = l(h.reshape(h.shape[0], -1) if isinstance(l, LeakyIntegrator) else h)
        total = total + h
    return (total * R).sum()


@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("arch", ["linear", "recurrent", "conv", "readout", "recurrent+readout"])
def test_bptt_gradient_matches_finite_differences(arch, reset):
    T = 6
    cfg = dict(threshold=0.6, leak=1.0, reset=reset)
    kinds = arch.split("+")
    layers = []
    for i, k in enumerate(kinds):
        if k == "readout" and i > 0:
            torch.manual_seed(11)
            layers.append(LeakyIntegrator(N, 4, leak=1.5, dtype=DT))
        else:
            layers.append(build(k, True, seed=i, spike_fn=smooth_spike, **cfg))
            randomize(layers[-1], seed=i + 3)
    xs = inputs(kinds[0], T, seed=2)
    with torch.no_grad():
        for l in layers:
            l.reset_state()
        h = xs[0]
        for l in layers:
            h = l(h)
    g = torch.Generator().manual_seed(4)
    R = torch.randn(h.shape, generator=g, dtype=DT)

    loss = summed_loss(layers, xs, R)
    loss.backward()
    eps = 1e-6
    idx_gen = torch.Generator().manual_seed(8)
    checked = 0
    for l in layers:
        for name, p in l.named_parameters():
            if not p.requires_grad:
                continue
            flat_idx = torch.randperm(p.numel(), generator=idx_gen)[:3].tolist()
            for i in flat_idx:
                with torch.no_grad():
                    orig = p.view(-1)[i].item()
                    p.view(-1)[i] = orig + eps
                    lp = summed_loss(layers, xs, R).item()
                    p.view(-1)[i] = orig - eps
                    lm = summed_loss(layers, xs, R).item()
                    p.view(-1)[i] = orig
                fd = (lp - lm) / (2 * eps)
                ag = p.grad.view(-1)[i].item()
                assert abs(ag - fd) <= 1e-6 * abs(fd) + 1e-8, (
                    f"{type(l).__name__}.{name}[{i}]: {ag} vs FD {fd}"
                )
                checked += 1
            assert p.grad.abs().max() > 1e-3, name
    assert checked >= 6


class SurrH(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, psi):
        ctx.save_for_backward(v)
        ctx.psi = psi
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx, g):
        (v,) = ctx.saved_tensors
        return g * ctx.psi(v), None


def _std(W, gain):
    K = W[0].numel()
    c = W - W.mean(dim=tuple(range(1, W.dim())), keepdim=True)
    var = (c * c).sum(dim=tuple(range(1, W.dim())), keepdim=True) / (K - 1)
    return gain * c / torch.sqrt(var * K + 1e-4)


@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("kind", ["linear", "recurrent", "conv"])
def test_bptt_default_surrogate_equals_plain_bptt(kind, reset):
    """Default twin (H forward, psi backward) = autograd through time of plain ops."""
    T = 6
    twin = build(kind, True, reset=reset, psi="fast_sigmoid", threshold=0.6, leak=1.0)
    randomize(twin)
    psi = lambda v: 1.0 / (1.0 + (10.0 * v) ** 2)  # noqa: E731
    P = {
        n: p.detach().clone().requires_grad_(True)
        for n, p in twin.named_parameters()
        if p.requires_grad
    }
    xs = inputs(kind, T, seed=3)
    beta, theta = torch.sigmoid(torch.tensor(1.0, dtype=DT)), 0.6
    u = s = None
    total = 0.0
    twin.reset_state()
    total_twin = 0.0
    for x in xs:
        Wt = _std(P["weight"], P["gain"])
        cur = (
            F.conv2d(x, Wt, P["bias"], padding=1) if kind == "conv" else F.linear(x, Wt, P["bias"])
        )
        if kind == "recurrent" and s is not None:
            cur = cur + F.linear(s, _std(P["weight_rec"], P["gain_rec"]))
        m = cur if u is None else beta * u + cur
        s = SurrH.apply(m - theta, psi)
        u = m - theta * s if reset == "soft" else m * (1 - s)
        total = total + s
        total_twin = total_twin + twin(x)
    R = torch.randn(total.shape, generator=torch.Generator().manual_seed(0), dtype=DT)
    assert torch.equal(total.detach(), total_twin.detach())
    assert 0.05 < total.mean().item() / T < 0.95
    (total * R).sum().backward()
    (total_twin * R).sum().backward()
    for n, p in P.items():
        assert p.grad.abs().max() > 1e-8, n
        torch.testing.assert_close(getattr(twin, n).grad, p.grad, rtol=1e-9, atol=1e-12)


def _stllr_and_twin_grads(kind, T, factors):
    """Same weights; S-TLLR: backward of sum(out_t * R) at every step; BPTT: one backward of
    sum((sum_t out_t) * R) (the same total loss)."""
    cfg = dict(threshold=0.6, leak=1.0, reset="soft", psi="sigmoid")
    stllr = build(kind, False, factors=factors, **cfg)
    randomize(stllr)
    twin = build(kind, True, **cfg)
    twin.load_state_dict(stllr.state_dict(), strict=False)
    xs = inputs(kind, T, seed=4)
    g = torch.Generator().manual_seed(6)
    with torch.no_grad():
        stllr.reset_state()
        R = torch.randn(stllr(xs[0]).shape, generator=g, dtype=DT)
    stllr.reset_state()
    twin.reset_state()
    total = 0.0
    for x in xs:
        (stllr(x) * R).sum().backward()
        total = total + twin(x)
    (total * R).sum().backward()
    names = [n for n, p in twin.named_parameters() if p.requires_grad]
    return {n: getattr(stllr, n).grad for n in names}, {n: getattr(twin, n).grad for n in names}


@pytest.mark.parametrize(
    "factors", [(0.5, 0.8, -0.2, 1.0), (0.0, 0.0, 0.0, 1.0), (0.9, 0.3, 1.0, 1.0)]
)
@pytest.mark.parametrize("kind", KINDS)
def test_stllr_equals_bptt_at_T1_when_alpha_pre_is_one(kind, factors):
    a, b = _stllr_and_twin_grads(kind, 1, factors)
    for n in a:
        if kind == "recurrent" and n in ("weight_rec", "gain_rec"):
            assert b[n] is None or b[n].abs().max() == 0  # s_0 = 0: no recurrent input at t = 1
            assert a[n].abs().max() == 0
            continue
        assert b[n].abs().max() > 1e-8, n
        torch.testing.assert_close(a[n], b[n], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["linear", "recurrent", "conv"])
def test_alpha_pre_scales_weight_gradient_at_T1(kind):
    a, b = _stllr_and_twin_grads(kind, 1, (0.5, 0.8, -0.2, 0.5))
    torch.testing.assert_close(a["weight"], 0.5 * b["weight"], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(a["gain"], 0.5 * b["gain"], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(a["bias"], b["bias"], rtol=1e-10, atol=1e-12)  # bias has no alpha


@pytest.mark.parametrize("factors", [(0.5, 0.8, -0.2, 1.0), (0.0, 0.0, 0.0, 1.0)])
@pytest.mark.parametrize("kind", KINDS)
def test_stllr_differs_from_bptt_for_T_above_one(kind, factors):
    a, b = _stllr_and_twin_grads(kind, 5, factors)
    rel = (a["weight"] - b["weight"]).norm() / b["weight"].norm()
    assert b["weight"].abs().max() > 1e-8
    assert rel > 1e-3, f"S-TLLR and BPTT weight gradients coincide at T=5 (rel diff {rel})"
