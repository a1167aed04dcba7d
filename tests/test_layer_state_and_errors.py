"""State handling of the S-TLLR layers (batch changes, dtype moves, no_grad, reset, the cached
standardised weight) and clear errors for bad arguments and inputs."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import stllr
from stllr import Conv2dSTLLR, LeakyReadout, LinearSTLLR, RecurrentSTLLR

B, M, N, T = 4, 10, 8, 8
KINDS = ["linear", "recurrent", "conv", "readout"]


def build(kind, dtype=torch.float32, seed=0, **kw):
    torch.manual_seed(seed)
    if kind == "linear":
        return LinearSTLLR(M, N, dtype=dtype, **kw)
    if kind == "recurrent":
        return RecurrentSTLLR(M, N, dtype=dtype, **kw)
    if kind == "conv":
        return Conv2dSTLLR(2, 3, 3, padding=1, dtype=dtype, **kw)
    return LeakyReadout(M, N, dtype=dtype, **kw)


def inputs(kind, n=T, batch=B, dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    shape = (batch, 2, 5, 5) if kind == "conv" else (batch, M)
    # values exactly representable in float32 (multiples of 1/8)
    return [(torch.randint(0, 16, shape, generator=g).to(dtype) / 8.0) for _ in range(n)]


def run(layer, xs, grad=False):
    outs = []
    for x in xs:
        if grad:
            out = layer(x)
            out.sum().backward()
        else:
            out = layer(x)
        outs.append(out.detach().clone())
    return outs


def healthy(outs):
    r = torch.stack(outs).mean().item()
    assert 0.02 < r < 0.98, r


# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_batch_size_change_mid_sequence(kind):
    layer = build(kind)
    layer(inputs(kind, 1, batch=4)[0])
    with pytest.raises(ValueError, match=r"(?s)x:.*reset_state"):
        layer(inputs(kind, 1, batch=3)[0])
    layer.reset_state()
    out = layer(inputs(kind, 1, batch=3)[0])
    assert out.shape[0] == 3


@pytest.mark.parametrize("kind", KINDS)
def test_float64_end_to_end(kind):
    layer = build(kind, dtype=torch.float64)
    xs = inputs(kind, dtype=torch.float64)
    outs = run(layer, xs, grad=True)
    assert all(o.dtype == torch.float64 for o in outs)
    assert all(p.grad.dtype == torch.float64 for p in layer.parameters() if p.grad is not None)
    assert layer.weight.grad is not None and layer.weight.grad.abs().max() > 0
    assert all(t is None or t.dtype == torch.float64 for t in layer.state)


@pytest.mark.parametrize("kind", KINDS)
def test_no_grad_evaluation(kind):
    a = build(kind)
    b = copy.deepcopy(a)
    xs = inputs(kind)
    with_grad = run(a, xs, grad=True)
    with torch.no_grad():
        outs = []
        for x in xs:
            o = b(x)
            assert o.grad_fn is None and not o.requires_grad
            outs.append(o)
    for p, q in zip(with_grad, outs):
        assert torch.equal(p, q)
    if kind != "readout":
        healthy(outs)
    # with gradients enabled the output does carry the rule's node
    b.reset_state()
    assert b(xs[0]).grad_fn is not None


@pytest.mark.parametrize("kind", KINDS)
def test_reset_state_equals_fresh_layer(kind):
    layer = build(kind)
    fresh = copy.deepcopy(layer)
    run(layer, inputs(kind, seed=5))  # some other sequence first
    assert layer.state is not None
    layer.reset_state()
    assert layer.state is None
    xs = inputs(kind, seed=6)
    a = run(layer, xs, grad=True)
    b = run(fresh, xs, grad=True)
    for p, q in zip(a, b):
        assert torch.equal(p, q)
    for (n, p), (_, q) in zip(layer.named_parameters(), fresh.named_parameters()):
        assert (p.grad is None) == (q.grad is None), n
        if p.grad is not None:
            # accumulated from the first (no-backward) run: nothing; so they must be equal
            assert torch.equal(p.grad, q.grad), n


@pytest.mark.parametrize("kind", KINDS)
def test_to_dtype_moves_the_state(kind):
    layer = build(kind, dtype=torch.float32)
    ref = copy.deepcopy(layer).double()
    xs = inputs(kind)  # float32-representable values
    k = T // 2
    out32 = run(layer, xs[:k])
    ref_outs = run(ref, [x.double() for x in xs])
    layer.double()
    assert layer.factors.dtype == torch.float64
    assert all(t is None or t.dtype == torch.float64 for t in layer.state)
    out64 = run(layer, [x.double() for x in xs[k:]], grad=True)
    assert all(o.dtype == torch.float64 for o in out64)
    if kind != "readout":
        healthy(ref_outs)
        for a, b in zip(out32 + out64, ref_outs):
            assert torch.equal(a.double(), b)
    else:
        for a, b in zip(out32 + out64, ref_outs):
            torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.membrane, ref.membrane, rtol=1e-5, atol=1e-5)
    assert layer.weight.grad.dtype == torch.float64


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reset_between", [True, False], ids=["new-seq", "mid-seq"])
def test_cached_weight_recomputed_after_optimizer_step(kind, reset_between):
    layer = build(kind)
    old = copy.deepcopy(layer)
    xs = inputs(kind, seed=3)
    opt = torch.optim.SGD(layer.parameters(), lr=50.0)
    for x in xs[:3]:
        out = layer(x)
        (
            out * torch.linspace(-1, 1, out.shape[1]).reshape((1, -1) + (1,) * (out.dim() - 2))
        ).sum().backward()
    opt.step()
    assert not torch.equal(layer.weight, old.weight)
    fresh = build(kind, seed=42)
    fresh.load_state_dict(layer.state_dict())
    if reset_between:
        layer.reset_state()
        old.reset_state()
    else:  # online: continue the sequence; the fresh layer starts from the same state
        fresh.state = layer.state
        run(old, xs[:3])
    a, b, c = run(layer, xs[3:]), run(fresh, xs[3:]), run(old, xs[3:])
    for p, q in zip(a, b):
        assert torch.equal(p, q)
    assert any(not torch.equal(p, q) for p, q in zip(a, c)), "outputs did not change after the step"


def test_cached_weight_recomputed_after_in_place_edit_and_load():
    layer = build("linear")
    x = inputs("linear", 1)[0]
    with torch.no_grad():
        layer.weight.mul_(-1.0)
    fresh = build("linear", seed=9)
    fresh.load_state_dict(layer.state_dict())
    layer.reset_state()
    assert torch.equal(layer(x), fresh(x))
    other = build("linear", seed=10)
    layer.load_state_dict(other.state_dict())
    layer.reset_state()
    other.reset_state()
    assert torch.equal(layer(x), other(x))


# --------------------------------------------------------------------------------------
# Bad input and bad arguments: errors that name the argument
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_bad_inputs(kind):
    layer = build(kind)
    good = inputs(kind, 1)[0]
    if kind == "conv":
        wrong_width = torch.zeros(B, 3, 5, 5)
        wrong_rank = torch.zeros(B, 2, 5)
    else:
        wrong_width = torch.zeros(B, M + 1)
        wrong_rank = torch.zeros(B, M, 1)
    with pytest.raises(
        ValueError, match=r"^x: .*" + ("channels" if kind == "conv" else "features")
    ):
        layer(wrong_width)
    with pytest.raises(ValueError, match=r"^x: .*rank"):
        layer(wrong_rank)
    with pytest.raises(TypeError, match=r"^x: .*floating"):
        layer(good.to(torch.int64))
    with pytest.raises(TypeError, match=r"^x: .*dtype"):
        layer(good.double())
    with pytest.raises(TypeError, match=r"^x: "):
        layer(good.numpy())
    assert layer.state is None  # rejected inputs leave no state behind
    layer(good)


@pytest.mark.parametrize("kind", KINDS)
def test_non_finite_input_checked_only_when_enabled(kind):
    layer = build(kind)
    bad = inputs(kind, 1)[0].clone()
    bad.view(-1)[3] = float("nan")
    layer(bad)  # off by default: no error, no synchronisation
    layer.reset_state()
    with stllr.input_checks():
        with pytest.raises(ValueError, match=r"^x: .*non-finite"):
            layer(bad)
        inf = inputs(kind, 1)[0].clone()
        inf.view(-1)[0] = math.inf
        with pytest.raises(ValueError, match=r"^x: .*non-finite"):
            layer(inf)
        layer(inputs(kind, 1)[0])  # finite input passes
    layer.reset_state()
    layer(bad)  # switched off again after the context


@pytest.mark.parametrize("kind", ["linear", "recurrent", "conv"])
def test_bad_arguments(kind):
    with pytest.raises(ValueError, match=r"^factors: .*4"):
        build(kind, factors=[0.5, 0.8, -0.2])
    with pytest.raises(ValueError, match=r"^factors: .*4"):
        build(kind, factors=[0.5, 0.8, -0.2, 1.0, 0.0])
    with pytest.raises(ValueError, match=r"^factors: .*finite"):
        build(kind, factors=[0.5, float("nan"), -0.2, 1.0])
    with pytest.raises(ValueError, match=r"^factors: .*finite"):
        build(kind, factors=torch.tensor([0.5, 0.8, float("inf"), 1.0]))
    with pytest.raises(ValueError, match=r"^factors: "):
        build(kind, factors="abcd")
    with pytest.raises(ValueError, match=r"^psi: .*'nope'"):
        build(kind, psi="nope")
    with pytest.raises(ValueError, match=r"^threshold: "):
        build(kind, threshold=-0.1)
    with pytest.raises(ValueError, match=r"^threshold: "):
        build(kind, threshold=float("nan"))
    with pytest.raises(ValueError, match=r"^reset: .*'zero'"):
        build(kind, reset="zero")
    with pytest.raises(ValueError, match=r"^leak: "):
        build(kind, leak=float("inf"))
    # the accepted spellings do construct
    build(kind, psi="fast-sigmoid", factors=(0.0, 0.0, 0.0, 1.0), reset="hard", threshold=0.0)


def test_bad_arguments_readout_and_sizes():
    with pytest.raises(ValueError, match=r"^factors: "):
        LeakyReadout(M, N, factors=[0.0, 0.99])
    with pytest.raises(ValueError, match=r"^in_features: "):
        LinearSTLLR(0, N)
    with pytest.raises(ValueError, match=r"^out_features: "):
        RecurrentSTLLR(M, -1)
    with pytest.raises(ValueError, match=r"^kernel_size: "):
        Conv2dSTLLR(2, 3, (3, 3, 3))
    with pytest.raises(ValueError, match=r"^groups: "):
        Conv2dSTLLR(2, 3, 3, groups=2)
