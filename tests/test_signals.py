"""Learning signals: BP passes the gradient unchanged, DFA / sDFA replace it by e_t F.

The expected signals are computed here from the logits independently:
e = dCE_mean/dlogits = (softmax(logits) - onehot(y)) / batch.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from stllr import (
    Conv2dSTLLR,
    FeedbackContext,
    LeakyReadout,
    LearningSignal,
    LinearSTLLR,
    OutputErrorTap,
)
from stllr.signals import feedback_signal

DT = torch.float64
B, M, H, C, T = 5, 9, 12, 4, 5


def onehot_error(logits, y):
    p = torch.exp(logits - logits.max(1, keepdim=True).values)
    p = p / p.sum(1, keepdim=True)
    oh = torch.zeros_like(p)
    oh[torch.arange(len(y)), y] = 1.0
    return (p - oh) / logits.shape[0]


def make_model(mode, record=False, conv=False, hook=True, seed=0):
    torch.manual_seed(seed)
    ctx = FeedbackContext()
    if conv:
        hidden = Conv2dSTLLR(2, 3, 3, padding=1, dtype=DT)
        shape = (3, 4, 4)
    else:
        hidden = LinearSTLLR(M, H, dtype=DT)
        shape = (H,)
    readout = LeakyReadout(
        int(torch.tensor(shape).prod()), C, factors=(0.0, 0.9, 0.0, 1.0), dtype=DT
    )
    signal = (
        LearningSignal(shape, C, mode=mode, context=ctx, record=record, dtype=DT) if hook else None
    )
    with torch.no_grad():
        readout.weight.mul_(3.0)
    tap = OutputErrorTap(ctx)
    return ctx, hidden, signal, readout, tap


def make_data(conv=False, seed=1):
    g = torch.Generator().manual_seed(seed)
    shape = (B, 2, 4, 4) if conv else (B, M)
    xs = [(torch.rand(shape, generator=g) < 0.5).to(DT) * 1.5 for _ in range(T)]
    y = torch.randint(0, C, (B,), generator=g)
    return xs, y


def run(model, xs, y, on_step=None):
    ctx, hidden, signal, readout, tap = model
    hidden.reset_state()
    readout.reset_state()
    for t, x in enumerate(xs):
        s = hidden(x)
        h = signal(s) if signal is not None else s
        logits = tap(readout(h.reshape(B, -1)))
        F.cross_entropy(logits, y).backward()
        if on_step is not None:
            on_step(t, s, logits.detach())


def grads(module):
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("conv", [False, True], ids=["linear", "conv"])
def test_bp_mode_passes_gradient_unchanged(conv):
    xs, y = make_data(conv)
    plain = make_model("bp", hook=False, conv=conv)
    run(plain, xs, y)
    for record in (False, True):
        model = make_model("bp", record=record, conv=conv)
        recorded = []

        def on_step(t, s, logits, model=model):
            if record:
                e = onehot_error(logits, y)
                expected = (e @ model[3].weight.detach()).reshape(s.shape)
                torch.testing.assert_close(model[2].last_bp_grad, expected, rtol=1e-10, atol=1e-14)
                assert torch.equal(model[2].last_signal, model[2].last_bp_grad)
                recorded.append(t)

        run(model, xs, y, on_step)
        assert len(recorded) == (T if record else 0)
        g_plain, g_hook = grads(plain[1]), grads(model[1])
        assert g_plain.keys() == g_hook.keys() and g_plain["weight"].abs().max() > 0
        for n in g_plain:
            assert torch.equal(g_plain[n], g_hook[n]), n


@pytest.mark.parametrize("mode", ["dfa", "sdfa"])
@pytest.mark.parametrize("conv", [False, True], ids=["linear", "conv"])
def test_feedback_signal_is_the_hooks_formula(mode, conv):
    """stllr.signals.feedback_signal (used by analyses) gives the hook's signal bit for bit."""
    xs, y = make_data(conv)
    model = make_model(mode, record=True, conv=conv)
    ctx, signal = model[0], model[2]
    steps = []

    def on_step(t, s, logits):
        e = onehot_error(logits, y)
        err = e if mode == "dfa" else torch.sign(e) / B
        flat = feedback_signal(ctx.error, signal.feedback, sign=mode == "sdfa")
        assert flat.shape == (B, signal.feedback[0].numel())
        assert torch.equal(flat.reshape(s.shape), signal.last_signal)
        expected = err @ signal.feedback.reshape(C, -1)
        torch.testing.assert_close(flat, expected, rtol=1e-10, atol=1e-14)
        steps.append(t)

    run(model, xs, y, on_step)
    assert steps == list(range(T))
    # the error is cast to F's dtype first
    e32 = torch.randn(3, C)
    fb = torch.randn(C, 2, 3, dtype=DT)
    assert torch.equal(feedback_signal(e32, fb), e32.to(DT) @ fb.reshape(C, -1))
    assert torch.equal(
        feedback_signal(e32, fb, sign=True), (torch.sign(e32) / 3).to(DT) @ fb.reshape(C, -1)
    )


@pytest.mark.parametrize("mode", ["dfa", "sdfa"])
@pytest.mark.parametrize("conv", [False, True], ids=["linear", "conv"])
def test_dfa_replaces_gradient_by_error_times_feedback(mode, conv):
    xs, y = make_data(conv)
    model = make_model(mode, record=True, conv=conv)
    ctx, hidden, signal, readout, tap = model
    assert signal.feedback.shape == (C,) + signal.shape
    # a copy of the hidden layer that is fed the expected signal directly
    shadow = copy.deepcopy(hidden)
    shadow.reset_state()
    shadow.zero_grad()
    plain = make_model("bp", hook=False, conv=conv)
    run(plain, xs, y)

    def on_step(t, s, logits):
        e = onehot_error(logits, y)
        torch.testing.assert_close(ctx.error, e, rtol=1e-10, atol=1e-14)
        err = e if mode == "dfa" else torch.sign(e) / B
        expected = (err @ signal.feedback.reshape(C, -1)).reshape(s.shape)
        torch.testing.assert_close(signal.last_signal, expected, rtol=1e-10, atol=1e-14)
        bp = (e @ readout.weight.detach()).reshape(s.shape)
        torch.testing.assert_close(signal.last_bp_grad, bp, rtol=1e-10, atol=1e-14)
        assert not torch.allclose(expected, bp)
        out = shadow(xs[t])
        assert torch.equal(out.detach(), s.detach())
        out.backward(expected)

    run(model, xs, y, on_step)
    g_dfa, g_shadow, g_bp = grads(hidden), grads(shadow), grads(plain[1])
    for n in g_shadow:
        assert g_shadow[n].abs().max() > 0, n
        torch.testing.assert_close(g_dfa[n], g_shadow[n], rtol=1e-10, atol=1e-14)
    assert not torch.allclose(g_dfa["weight"], g_bp["weight"])
    # the readout still receives its own (true) gradient: DFA only changes what reaches the hidden layer
    for n, g in grads(plain[3]).items():
        torch.testing.assert_close(grads(readout)[n], g, rtol=1e-10, atol=1e-14)


def test_sdfa_uses_only_the_sign_of_the_error():
    """sDFA is invariant to the magnitude of e: scaling the logits' error keeps the signal."""
    ctx = FeedbackContext()
    sig = LearningSignal(H, C, mode="sdfa", context=ctx, record=True, dtype=DT)
    x = torch.randn(B, H, dtype=DT, requires_grad=True)
    e = torch.randn(B, C, dtype=DT)
    out = []
    for scale in (1.0, 7.0):
        ctx.error = e * scale
        sig(x).backward(torch.ones(B, H, dtype=DT))
        out.append(sig.last_signal.clone())
    torch.testing.assert_close(out[0], out[1])
    torch.testing.assert_close(out[0], torch.sign(e) @ sig.feedback / B)


def test_recorded_signals_are_snapshots():
    """A recorded signal must not change afterwards. When the hook's input is a leaf, autograd
    stores the returned gradient as x.grad and accumulates the next backward into it in place;
    last_signal / last_bp_grad must therefore not alias the tensors handed to autograd."""
    ctx = FeedbackContext()
    sig = LearningSignal(H, C, mode="dfa", context=ctx, record=True, dtype=DT)
    x = torch.randn(B, H, dtype=DT, requires_grad=True)
    ctx.error = torch.randn(B, C, dtype=DT)
    sig(x).backward(torch.ones(B, H, dtype=DT))
    first_signal, first_bp = sig.last_signal, sig.last_bp_grad
    saved_signal, saved_bp = first_signal.clone(), first_bp.clone()
    sig(x).backward(torch.ones(B, H, dtype=DT))
    assert torch.equal(first_signal, saved_signal), (
        "last_signal of the previous backward was modified in place"
    )
    assert torch.equal(first_bp, saved_bp)


def test_feedback_buffer_shape_and_state_dict():
    ctx = FeedbackContext()
    torch.manual_seed(0)
    a = LearningSignal((3, 4, 5), 10, mode="dfa", context=ctx)
    torch.manual_seed(1)
    b = LearningSignal((3, 4, 5), 10, mode="dfa", context=ctx)
    assert a.feedback.shape == (10, 3, 4, 5)
    assert "feedback" in a.state_dict() and a.state_dict()["feedback"].shape == (10, 3, 4, 5)
    assert not a.feedback.requires_grad and "feedback" not in dict(a.named_parameters())
    assert not torch.equal(a.feedback, b.feedback)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.feedback, b.feedback)
    # kaiming-uniform: bounded by sqrt(6 / fan_in), fan_in = 3*4*5, and not degenerate
    bound = (6.0 / 60) ** 0.5
    assert a.feedback.abs().max() <= bound and a.feedback.abs().max() > 0.8 * bound
    assert LearningSignal(7, 3).feedback.shape == (3, 7)


def test_missing_context_raises():
    with pytest.raises(ValueError, match="context"):
        LearningSignal(H, C, mode="dfa")
    with pytest.raises(ValueError, match="context"):
        LearningSignal(H, C, mode="sdfa", context=None)
    LearningSignal(H, C, mode="bp")  # BP needs no context
    # a context that never saw an OutputErrorTap: clear error at backward time
    sig = LearningSignal(H, C, mode="dfa", context=FeedbackContext())
    x = torch.randn(B, H, requires_grad=True)
    with pytest.raises(RuntimeError, match="OutputErrorTap"):
        sig(x).sum().backward()


def test_unknown_mode_names_the_argument():
    with pytest.raises(ValueError, match="mode"):
        LearningSignal(H, C, mode="drtp-ish", context=FeedbackContext())


def test_no_grad_and_no_requires_grad_are_identity():
    ctx = FeedbackContext()
    sig = LearningSignal(H, C, mode="dfa", context=ctx)
    tap = OutputErrorTap(ctx)
    x = torch.randn(B, H)
    assert sig(x) is x and tap(x) is x
    with torch.no_grad():
        xr = torch.randn(B, H, requires_grad=True)
        assert sig(xr) is xr and tap(xr) is xr


@pytest.mark.parametrize("mode", ["bp", "dfa"])
def test_rate_reg_adds_activity_gradient(mode):
    torch.manual_seed(0)
    ctx = FeedbackContext()
    plain = LearningSignal(6, 3, mode=mode, context=ctx, record=True)
    reg = LearningSignal(6, 3, mode=mode, context=ctx, rate_reg=0.5, rate_target=0.1, record=True)
    reg.feedback.copy_(plain.feedback)
    s = (torch.rand(4, 6) < 0.5).float()
    grads = []
    for hook in (plain, reg):
        x = s.clone().requires_grad_()
        logits = OutputErrorTap(ctx)(hook(x) @ torch.ones(6, 3))
        torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0])).backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[1] - grads[0], 0.5 * (s - 0.1) / 4)
    with pytest.raises(ValueError):
        LearningSignal(6, 3, rate_reg=-1.0)
