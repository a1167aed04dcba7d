"""stllr.training.loop: the loops over time (S-TLLR window, BPTT, forward only) against references
written out step by step here, and their variants (hooks, per-step contexts, kept outputs)."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F

from stllr.models.registry import build_model
from stllr.training import loop

DT = torch.float64
T, B, M, H, C = 7, 4, 6, 5, 3


def _model(arch="randman_rsnn_stllr", seed=0):
    torch.manual_seed(seed)
    kw = dict(factors=[0.3, 0.7, -0.5, 1.0]) if "stllr" in arch else {}
    model = build_model(arch, num_classes=C, input_shape=(M,), hidden=H, psi="sigmoid", **kw)
    return model.to(DT)


def _batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, B, M, generator=g) < 0.4).to(DT)  # time-major [T, B, M]
    y = torch.randint(0, C, (B,), generator=g)
    return x, y


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=0, atol=0, msg=n)


def test_time_major_is_a_contiguous_transpose():
    frames = torch.randn(B, T, M)
    x = loop.time_major(frames)
    assert x.shape == (T, B, M) and x.is_contiguous()
    assert torch.equal(x[3, 1], frames[1, 3])


@pytest.mark.parametrize("window", [1, 3, T, T + 5])
def test_stllr_window_grad_is_the_sum_of_per_step_backwards_by_hand(window):
    model, (x, y) = _model(), _batch()
    model.zero_grad(set_to_none=True)
    res = loop.stllr_window(model, x, y, F.cross_entropy, window)
    got = _grads(model)
    # by hand: steps before the window without a graph, then one backward per step, each step's
    # gradient taken alone and summed here
    model.zero_grad(set_to_none=True)
    model.reset_state()
    want, pred = {}, None
    for t in range(T):
        if t < T - window:
            with torch.no_grad():
                out = model(x[t])
        else:
            out = model(x[t])
            F.cross_entropy(out, y).backward()
            for n, g in _grads(model).items():
                want[n] = g if n not in want else want[n] + g
            model.zero_grad(set_to_none=True)
        pred = out.detach() if pred is None else pred + out.detach()
    assert want.keys() == got.keys()
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=1e-12, atol=1e-14, msg=n)
    torch.testing.assert_close(res.pred, pred, rtol=0, atol=0)
    assert res.outputs is None and not res.pred.requires_grad


def test_stllr_window_hooks_run_at_exactly_the_window_steps_in_order():
    model, (x, y) = _model(), _batch()
    events = []

    @contextlib.contextmanager
    def ctx(t, learning):
        events.append(("enter", t, learning))
        yield
        events.append(("exit", t, learning))

    loop.stllr_window(
        model,
        x,
        y,
        F.cross_entropy,
        3,
        before_forward=lambda t: events.append(("before", t)),
        after_backward=lambda t: events.append(("after", t, model.linear1.weight.grad is not None)),
        step_context=ctx,
    )
    want = []
    for t in range(T):
        learning = t >= T - 3
        if learning:
            want.append(("before", t))
        want += [("enter", t, learning), ("exit", t, learning)]
        if learning:
            want.append(("after", t, True))  # after the backward: the gradient is there
    assert events == want


def test_stllr_window_keep_outputs_gives_every_step_detached():
    model, (x, y) = _model(), _batch()
    res = loop.stllr_window(model, x, y, F.cross_entropy, 2, keep_outputs=True)
    ref = loop.forward_through_time(model, x, keep_outputs=True)  # same forward, no learning
    assert len(res.outputs) == T and not any(o.requires_grad for o in res.outputs)
    for a, b in zip(res.outputs, ref.outputs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(res.pred, sum(ref.outputs[1:], ref.outputs[0]), rtol=0, atol=0)


def test_stllr_window_takes_a_sequence_of_step_inputs():
    model, (x, y) = _model(), _batch()
    model.zero_grad(set_to_none=True)
    a = loop.stllr_window(model, x, y, F.cross_entropy, 4).pred
    ga = _grads(model)
    model.zero_grad(set_to_none=True)
    b = loop.stllr_window(model, list(x), y, F.cross_entropy, 4).pred
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    _assert_same(ga, _grads(model))


def _unrolled(twin, x, y, loss):
    """The BPTT loss written out: every step's logits kept with the graph."""
    twin.reset_state()
    outs = [twin(x[t]) for t in range(T)]
    if loss == "sum":
        return F.cross_entropy(sum(outs[1:], outs[0]), y), outs
    if loss == "last":
        return F.cross_entropy(outs[-1], y), outs
    return sum(F.cross_entropy(o, y) for o in outs[T - 3 :]), outs


@pytest.mark.parametrize("loss", ["sum", "window", "last"])
def test_bptt_grad_equals_autograd_of_the_unrolled_loss(loss):
    twin, (x, y) = _model("randman_rsnn_bptt"), _batch()
    twin.zero_grad(set_to_none=True)
    res = loop.bptt_through_time(twin, x, y, F.cross_entropy, loss=loss, window=3)
    got = _grads(twin)
    value, outs = _unrolled(twin, x, y, loss)
    trained = [(n, p) for n, p in twin.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(value, [p for _, p in trained], allow_unused=True)
    want = {n: g for (n, _), g in zip(trained, grads)}
    assert got.keys() == {n for n, g in want.items() if g is not None}
    for n in got:
        torch.testing.assert_close(got[n], want[n], rtol=1e-12, atol=1e-14, msg=n)
    torch.testing.assert_close(res.pred, sum(outs[1:], outs[0]).detach(), rtol=0, atol=0)
    assert res.outputs is None


def test_bptt_without_loss_keeps_the_outputs_with_their_graph():
    twin, (x, y) = _model("randman_rsnn_bptt"), _batch()
    twin.zero_grad(set_to_none=True)
    res = loop.bptt_through_time(twin, x, loss=None, keep_outputs=True)
    assert all(p.grad is None for p in twin.parameters())  # no backward
    assert len(res.outputs) == T and all(o.requires_grad for o in res.outputs)
    F.cross_entropy(res.outputs[-1], y).backward()
    got = _grads(twin)
    value, _ = _unrolled(twin, x, y, "last")
    want = torch.autograd.grad(value, [twin.linear1.weight])[0]
    torch.testing.assert_close(got["linear1.weight"], want, rtol=1e-12, atol=1e-14)


def test_bptt_rejects_unknown_losses_and_a_window_loss_without_window():
    twin, (x, y) = _model("randman_rsnn_bptt"), _batch()
    with pytest.raises(ValueError, match="loss"):
        loop.bptt_through_time(twin, x, y, F.cross_entropy, loss="mean")
    with pytest.raises(ValueError, match="window"):
        loop.bptt_through_time(twin, x, y, F.cross_entropy, loss="window")


def test_forward_through_time_and_predict_sum_the_logits_without_a_graph():
    model, (x, _) = _model(), _batch()
    model.reset_state()
    with torch.no_grad():
        outs = [model(x[t]) for t in range(T)]
    res = loop.forward_through_time(model, x, keep_outputs=True)
    for a, b in zip(res.outputs, outs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(res.pred, sum(outs[1:], outs[0]), rtol=0, atol=0)
    pred = loop.predict(model, x.transpose(0, 1))  # batch-major frames
    torch.testing.assert_close(pred, res.pred, rtol=0, atol=0)
    assert not pred.requires_grad


def test_the_loops_reset_a_bare_stack_of_layers():
    import stllr

    torch.manual_seed(0)
    net = torch.nn.Sequential(stllr.RecurrentSTLLR(M, H), stllr.LeakyReadout(H, C)).to(DT)
    x, y = _batch()
    a = loop.stllr_window(net, x, y, F.cross_entropy, 2).pred
    b = loop.stllr_window(net, x, y, F.cross_entropy, 2).pred  # a fresh sequence: same logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_train_batch_online_takes_one_optimizer_step_per_window_step():
    model, (x, y) = _model(), _batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    steps, seen = [], []
    opt.step = (lambda step: lambda *a, **k: (steps.append(len(seen)), step(*a, **k))[1])(opt.step)
    loop.train_batch(
        model,
        x.transpose(0, 1),
        y,
        opt,
        F.cross_entropy,
        "stllr_online",
        window=3,
        grad_sync=lambda: seen.append("sync"),
        after_backward=lambda t: seen.append(t),
    )
    assert seen == [4, "sync", 5, "sync", 6, "sync"] and steps == [2, 4, 6]


def test_run_epoch_train_step_replaces_train_batch():
    model, (x, y) = _model(), _batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    calls = []

    def step(frames, labels):
        calls.append((frames.dtype, frames.shape))
        return loop.predict(model, frames)

    loader = [(x.transpose(0, 1).float(), y)] * 2
    res = loop.run_epoch(
        model, loader, optimizer=opt, loss_fn=F.cross_entropy, dtype=DT, train_step=step
    )
    assert calls == [(DT, (B, T, M))] * 2 and res["samples"] == 2 * B
    assert res["memory_kind"].startswith("cpu_") and res["peak_memory_mb"] > 0
