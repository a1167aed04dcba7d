"""The rule's weight-gradient functions in stllr.functional, and that the layers run them.

Each function is checked in float64 against an independent reference (the equation written out
with loops over the batch, or autograd of an explicit expression); then each layer's ``.grad`` is
checked to be exactly what the function gives for the layer's own traces, and to change when the
function changes. Last, ``Factors`` and ``check_factors``.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

import stllr
from stllr import Conv2dSTLLR, LeakyReadout, LinearSTLLR, RecurrentSTLLR
from stllr import functional as SF
from stllr.functional import CLI_DEFAULT_FACTORS, DEFAULT_FACTORS, Factors, check_factors

DT = torch.float64
B, M, N = 5, 7, 4
ALPHAS = [(-0.7, 1.0), (0.0, 1.0), (1.3, 0.6), (0.0, 0.4)]


def _rand(*shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=DT)


def _loops_weight_grad(delta, psi, tr_out_prev, x, tr_in, alpha_post, alpha_pre):
    """Eq. 10-13 (code's convention) element by element: sum over b of the two outer products."""
    n, m = delta.shape[1], x.shape[1]
    out = torch.zeros(n, m, dtype=DT)
    for b in range(delta.shape[0]):
        for i in range(n):
            for j in range(m):
                out[i, j] += alpha_post * delta[b, i] * tr_out_prev[b, i] * x[b, j]
                out[i, j] += alpha_pre * delta[b, i] * psi[b, i] * tr_in[b, j]
    return out


def _ref_standardize(W, gain, eps=1e-4):
    """rule.md's weight standardisation, written out per row (not stllr's)."""
    rows = W.shape[0]
    Wf = W.reshape(rows, -1)
    k = Wf.shape[1]
    c = Wf - Wf.sum(dim=1, keepdim=True) / k
    var = (c * c).sum(dim=1, keepdim=True) / (k - 1)
    return (gain.reshape(rows, 1) * c / torch.sqrt(var * k + eps)).reshape(W.shape)


# ======================================================================================
# The functions against independent references
# ======================================================================================
@pytest.mark.parametrize("alpha_post,alpha_pre", ALPHAS)
def test_linear_weight_grads_match_the_equation_written_out(alpha_post, alpha_pre):
    delta, psi, tr_out = _rand(B, N, seed=1), _rand(B, N, seed=2).abs(), _rand(B, N, seed=3)
    x, tr_in = _rand(B, M, seed=4), _rand(B, M, seed=5)
    expected = _loops_weight_grad(delta, psi, tr_out, x, tr_in, alpha_post, alpha_pre)
    (got,) = SF.stllr_linear_weight_grads(delta, psi, tr_out, x, tr_in, alpha_post, alpha_pre)
    assert got.shape == (N, M)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    # split columns (recurrent [W~ | W~_rec]): each block is its columns of the whole
    blocks = SF.stllr_linear_weight_grads(
        delta, psi, tr_out, x, tr_in, alpha_post, alpha_pre, widths=(3, 4)
    )
    assert [tuple(b.shape) for b in blocks] == [(N, 3), (N, 4)]
    torch.testing.assert_close(torch.cat(blocks, dim=1), expected, rtol=1e-12, atol=1e-12)


def test_linear_weight_grads_need_no_noncausal_operands_when_alpha_post_is_zero():
    delta, psi, tr_in = _rand(B, N, seed=1), _rand(B, N, seed=2), _rand(B, M, seed=5)
    (got,) = SF.stllr_linear_weight_grads(delta, psi, None, None, tr_in, 0.0, 1.0)
    zeros = torch.zeros(B, N, dtype=DT)
    expected = _loops_weight_grad(delta, psi, zeros, torch.zeros(B, M, dtype=DT), tr_in, 0.0, 1.0)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("alpha_post,alpha_pre", ALPHAS)
@pytest.mark.parametrize(
    "stride,padding,dilation,groups", [(1, 1, 1, 1), (2, 0, 1, 1), (1, 2, 2, 2)]
)
def test_conv2d_weight_grad_matches_autograd_of_the_two_terms(
    alpha_post, alpha_pre, stride, padding, dilation, groups
):
    cin, cout, k = 4, 6, 3
    x, tr_in = _rand(B, cin, 9, 9, seed=4), _rand(B, cin, 9, 9, seed=5)
    W = _rand(cout, cin // groups, k, k, seed=6).requires_grad_(True)
    out_shape = F.conv2d(x, W, None, stride, padding, dilation, groups).shape
    delta, psi = _rand(*out_shape, seed=1), _rand(*out_shape, seed=2).abs()
    tr_out = _rand(*out_shape, seed=3)
    # the rule's two terms as the gradient in W of sum(conv(input, W) * signal)
    loss = alpha_post * (F.conv2d(x, W, None, stride, padding, dilation, groups) * delta * tr_out)
    loss = (
        loss.sum()
        + alpha_pre
        * (F.conv2d(tr_in, W, None, stride, padding, dilation, groups) * delta * psi).sum()
    )
    (expected,) = torch.autograd.grad(loss, W)
    got = SF.stllr_conv2d_weight_grad(
        delta, psi, tr_out, x, tr_in, alpha_post, alpha_pre, W.shape, stride, padding, dilation,
        groups,
    )  # fmt: skip
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_readout_weight_grad_matches_the_equation_written_out():
    delta, tr_in = _rand(B, N, seed=1), _rand(B, M, seed=5)
    expected = _loops_weight_grad(
        delta, torch.ones(B, N, dtype=DT), torch.zeros(B, N, dtype=DT), tr_in, tr_in, 0.0, 1.0
    )
    torch.testing.assert_close(SF.readout_weight_grad(delta, tr_in), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(N, M), (3, 2, 3, 3)], ids=["linear", "conv"])
def test_standardization_forward_and_backward_match_autograd(shape):
    W = _rand(*shape, seed=7).requires_grad_(True)
    gain = (_rand(shape[0], *([1] * (len(shape) - 1)), seed=8).abs() + 0.5).requires_grad_(True)
    G = _rand(*shape, seed=9)
    cache = SF.standardization_cache(W.detach(), gain.detach())
    torch.testing.assert_close(
        SF.standardized_weight(cache), _ref_standardize(W, gain).detach(), rtol=1e-12, atol=1e-12
    )
    torch.testing.assert_close(
        SF.standardize_weight(W, gain), _ref_standardize(W, gain), rtol=1e-12, atol=1e-12
    )
    exp_w, exp_g = torch.autograd.grad(_ref_standardize(W, gain), (W, gain), grad_outputs=G)
    got_w, got_g = SF.standardize_weight_backward(G.clone(), cache)
    assert got_w.shape == W.shape and got_g.shape == gain.shape
    torch.testing.assert_close(got_w, exp_w, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_g, exp_g, rtol=1e-10, atol=1e-12)


# ======================================================================================
# The layers run these functions
# ======================================================================================
def _one_learning_step(layer, make_x, steps=4):
    """Run ``steps`` steps, the last one with a learning signal R; return what the rule needs."""
    g = torch.Generator().manual_seed(11)
    layer.reset_state()
    layer.zero_grad(set_to_none=True)
    for _ in range(steps - 1):
        with torch.no_grad():
            layer(make_x(g))
    before = layer.state
    x = make_x(g)
    out = layer(x)
    R = torch.randn(out.shape, generator=g, dtype=DT)
    (out * R).sum().backward()
    return x, R, before, layer.state


def _spiking_x(shape):
    return lambda g: (torch.rand(shape, generator=g) < 0.5).to(DT) * 1.5


def _linear_layer(kind, factors, ws):
    torch.manual_seed(0)
    cls = RecurrentSTLLR if kind == "recurrent" else LinearSTLLR
    layer = cls(M, N, factors=factors, weight_standardization=ws, leak=1.0, dtype=DT)
    if ws:
        with torch.no_grad():
            layer.gain.uniform_(0.7, 1.6)
    return layer


def _expected_linear(layer, x, R, before, after, factors, ws):
    """dL/dW, dL/dgain (per weight matrix) from the functions, on the layer's own traces."""
    _, _, alpha_post, alpha_pre = factors
    x_in, widths = x, [M]
    if isinstance(layer, RecurrentSTLLR):  # z_t = [x_t, s_{t-1}]
        x_in, widths = torch.cat((x, before.spikes), dim=1), [M, N]
    grads = SF.stllr_linear_weight_grads(
        R, after.psi, before.post_trace, x_in, after.pre_trace, alpha_post, alpha_pre, widths
    )
    pairs = [(layer.weight, layer.gain)]
    if isinstance(layer, RecurrentSTLLR):
        pairs.append((layer.weight_rec, layer.gain_rec))
    out = []
    for gw, (w, gain) in zip(grads, pairs):
        if ws:
            out += SF.standardize_weight_backward(gw, SF.standardization_cache(w.detach(), gain))
        else:
            out += [gw, None]
    return out


@pytest.mark.parametrize("ws", [True, False], ids=["ws", "raw"])
@pytest.mark.parametrize("factors", [(0.6, 0.8, -1.0, 0.9), (0.5, 0.7, 0.0, 1.0)])
@pytest.mark.parametrize("kind", ["linear", "recurrent"])
def test_linear_and_recurrent_grads_are_the_functions_output(kind, factors, ws):
    layer = _linear_layer(kind, factors, ws)
    x, R, before, after = _one_learning_step(layer, _spiking_x((B, M)))
    expected = _expected_linear(layer, x, R, before, after, factors, ws)
    names = ["weight", "gain"] + (["weight_rec", "gain_rec"] if kind == "recurrent" else [])
    for name, e in zip(names, expected):
        p = getattr(layer, name)
        if e is None:
            assert p is None
        else:
            assert e.abs().max() > 0, name
            assert torch.equal(p.grad, e), name


@pytest.mark.parametrize("factors", [(0.6, 0.8, -1.0, 0.9), (0.5, 0.7, 0.0, 1.0)])
def test_conv_grads_are_the_functions_output(factors):
    torch.manual_seed(0)
    layer = Conv2dSTLLR(2, 3, 3, stride=2, padding=1, factors=factors, dtype=DT)
    x, R, before, after = _one_learning_step(layer, _spiking_x((B, 2, 7, 7)))
    _, _, alpha_post, alpha_pre = factors
    gw = SF.stllr_conv2d_weight_grad(
        R, after.psi, before.post_trace, x, after.pre_trace, alpha_post, alpha_pre,
        layer.weight.shape, layer.stride, layer.padding, layer.dilation, layer.groups,
    )  # fmt: skip
    cache = SF.standardization_cache(layer.weight.detach(), layer.gain)
    exp_w, exp_g = SF.standardize_weight_backward(gw, cache)
    assert exp_w.abs().max() > 0
    assert torch.equal(layer.weight.grad, exp_w) and torch.equal(layer.gain.grad, exp_g)


def test_readout_grad_is_the_functions_output():
    torch.manual_seed(0)
    layer = LeakyReadout(M, N, factors=(0.0, 0.9, 0.0, 1.0), dtype=DT)
    x, R, _, after = _one_learning_step(layer, _spiking_x((B, M)))
    expected = SF.readout_weight_grad(R, after.pre_trace)
    assert expected.abs().max() > 0 and torch.equal(layer.weight.grad, expected)


def _doubled(fn):
    def wrapper(*args, **kw):
        out = fn(*args, **kw)
        return type(out)(2.0 * o for o in out) if isinstance(out, (list, tuple)) else 2.0 * out

    return wrapper


@pytest.mark.parametrize(
    "kind,fn",
    [
        ("linear", "stllr_linear_weight_grads"),
        ("recurrent", "stllr_linear_weight_grads"),
        ("conv", "stllr_conv2d_weight_grad"),
        ("readout", "readout_weight_grad"),
        ("linear", "standardize_weight_backward"),
        ("conv", "standardize_weight_backward"),
    ],
)
def test_changing_a_function_changes_what_the_layer_computes(monkeypatch, kind, fn):
    def build():
        torch.manual_seed(0)
        if kind == "conv":
            return Conv2dSTLLR(2, 3, 3, padding=1, dtype=DT), _spiking_x((B, 2, 6, 6))
        if kind == "readout":
            return LeakyReadout(M, N, dtype=DT), _spiking_x((B, M))
        cls = RecurrentSTLLR if kind == "recurrent" else LinearSTLLR
        return cls(M, N, factors=(0.6, 0.8, -1.0, 0.9), dtype=DT), _spiking_x((B, M))

    layer, make_x = build()
    _one_learning_step(layer, make_x)
    plain = layer.weight.grad.clone()
    calls = []
    orig = getattr(SF, fn)
    monkeypatch.setattr(SF, fn, _doubled(lambda *a, **k: calls.append(1) or orig(*a, **k)))
    layer, make_x = build()
    _one_learning_step(layer, make_x)
    assert calls, f"{kind} does not call functional.{fn}"
    torch.testing.assert_close(layer.weight.grad, 2.0 * plain, rtol=1e-12, atol=0)


# ======================================================================================
# Factors
# ======================================================================================
def test_factors_is_a_named_tuple_in_the_reference_order():
    f = Factors(0.5, 0.8, -0.2, 1.0)
    assert Factors._fields == ("lambda_post", "lambda_pre", "alpha_post", "alpha_pre")
    assert f == (0.5, 0.8, -0.2, 1.0) and f[2] == f.alpha_post == -0.2
    assert json.loads(json.dumps(f)) == [0.5, 0.8, -0.2, 1.0]
    assert isinstance(DEFAULT_FACTORS, Factors) and DEFAULT_FACTORS == (0.5, 0.8, -0.2, 1.0)
    assert isinstance(CLI_DEFAULT_FACTORS, Factors) and CLI_DEFAULT_FACTORS == (0.2, 0.75, -1, 1)
    assert stllr.Factors is Factors


@pytest.mark.parametrize(
    "factors", [[0.6, 0.8, -1, 0.9], (0.6, 0.8, -1.0, 0.9), Factors(0.6, 0.8, -1.0, 0.9)]
)
def test_check_factors_returns_factors_of_floats(factors):
    f = check_factors(factors)
    assert type(f) is Factors and f == (0.6, 0.8, -1.0, 0.9)
    assert all(type(v) is float for v in f)
    assert check_factors(torch.tensor(factors, dtype=DT)) == f


def test_a_list_a_tuple_and_factors_give_the_same_layer():
    runs = []
    for factors in ([0.6, 0.8, -1.0, 0.9], (0.6, 0.8, -1.0, 0.9), Factors(0.6, 0.8, -1.0, 0.9)):
        layer = _linear_layer("recurrent", factors, True)
        assert layer.factors_tuple == Factors(0.6, 0.8, -1.0, 0.9)
        assert type(layer.factors_tuple) is Factors
        _one_learning_step(layer, _spiking_x((B, M)))
        runs.append((layer.factors.clone(), layer.weight.grad, layer.weight_rec.grad, repr(layer)))
    for r in runs[1:]:
        assert torch.equal(r[0], runs[0][0]) and torch.equal(r[1], runs[0][1])
        assert torch.equal(r[2], runs[0][2]) and r[3] == runs[0][3]


@pytest.mark.parametrize(
    "factors,message",
    [
        ([0.5, 0.8, -0.2], "expected 4 numbers"),
        ((0.5, 0.8, -0.2, 1.0, 2.0), "expected 4 numbers"),
        ([0.5, math.nan, -0.2, 1.0], "must be finite"),
        ([0.5, 0.8, math.inf, 1.0], "must be finite"),
        (["a", 0.8, -0.2, 1.0], "expected 4 numbers"),
        (0.5, "expected 4 numbers"),
    ],
)
def test_bad_factors_raise_one_clear_line(factors, message):
    for call in (lambda: check_factors(factors), lambda: LinearSTLLR(M, N, factors=factors)):
        with pytest.raises(ValueError) as info:
            call()
        text = str(info.value)
        assert text.startswith("factors: ") and message in text and "\n" not in text
