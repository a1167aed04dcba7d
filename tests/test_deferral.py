"""stllr.deferred_updates: the rule's weight gradients batched over a chunk of learning steps.

The reference is the per-step path (each learning step's backward adds its GEMM and its
standardisation backward into ``.grad``; tests/test_functional.py and test_rule_reference.py
check that path against the equations). Deferred, ``.grad`` at exit must equal it: float64 to
1e-12 relative, float32 to 1e-5, for every layer kind, factor choice and chunk (dividing the
window or not). Then the memory bound, the GEMM count, the refusals and the training loop's use.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import stllr
from stllr import Conv2dSTLLR, LeakyReadout, LinearSTLLR, RecurrentSTLLR
from stllr.models.registry import build_model
from stllr.training.config import ConfigError, TrainConfig, validate_config
from stllr.training.loop import DEFAULT_CHUNK, resolve_chunk, stllr_window, train_batch

B = 3


def _grads(module):
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def _assert_close(a, b, rtol):
    assert a.keys() == b.keys(), (sorted(a), sorted(b))
    for name in a:
        scale = a[name].abs().max().clamp_min(1e-30)
        rel = float((a[name] - b[name]).abs().max() / scale)
        assert rel <= rtol, f"{name}: relative difference {rel:.2e} > {rtol:g}"


def _steps(layer_in, steps, dtype, seed=0, rate=0.3):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((steps, B) + tuple(layer_in), generator=g) < rate).to(dtype)


class _Stack(torch.nn.Module):
    """A spiking layer, then a readout: every layer kind's backward runs (the readout passes a
    learning signal down, the spiking layer receives it)."""

    def __init__(self, hidden, readout):
        super().__init__()
        self.hidden, self.readout = hidden, readout

    def forward(self, x):
        s = self.hidden(x)
        return self.readout(s.flatten(1))


def _linear(dtype, alpha_post, ws=True):
    torch.manual_seed(1)
    factors = (0.5, 0.8, alpha_post, 0.9)
    hidden = LinearSTLLR(7, 5, factors=factors, weight_standardization=ws, dtype=dtype)
    return _Stack(hidden, LeakyReadout(5, 4, dtype=dtype)), (7,)


def _recurrent(dtype, alpha_post, ws=True):
    torch.manual_seed(2)
    factors = (0.5, 0.8, alpha_post, 1.0)
    hidden = RecurrentSTLLR(6, 5, factors=factors, weight_standardization=ws, dtype=dtype)
    return _Stack(hidden, LeakyReadout(5, 4, dtype=dtype)), (6,)


def _conv(dtype, alpha_post, ws=True):
    torch.manual_seed(3)
    factors = (0.2, 0.75, alpha_post, 1.0)
    hidden = Conv2dSTLLR(
        2, 4, 3, stride=2, padding=1, factors=factors, weight_standardization=ws, dtype=dtype
    )
    return _Stack(hidden, LeakyReadout(4 * 3 * 3, 4, dtype=dtype)), (2, 6, 6)


BUILDERS = {"linear": _linear, "recurrent": _recurrent, "conv": _conv}


def _per_step_and_deferred(build, dtype, alpha_post, chunk, ws=True, steps=9, window=7):
    model, shape = build(dtype, alpha_post, ws)
    x = _steps(shape, steps, dtype)
    y = torch.tensor([0, 3, 1])
    model.zero_grad(set_to_none=True)
    stllr_window(model, x, y, F.cross_entropy, window)
    per_step = _grads(model)
    model.zero_grad(set_to_none=True)
    with stllr.deferred_updates(model, chunk) as d:
        stllr_window(model, x, y, F.cross_entropy, window)
    return per_step, _grads(model), d


@pytest.mark.parametrize("kind", sorted(BUILDERS))
@pytest.mark.parametrize("alpha_post", [-0.7, 0.0])
@pytest.mark.parametrize("chunk", [1, 3, 7, 50])
def test_deferred_grad_equals_the_per_step_grad_in_float64(kind, alpha_post, chunk):
    per_step, deferred, d = _per_step_and_deferred(BUILDERS[kind], torch.float64, alpha_post, chunk)
    # hidden W, (gain,) b (+ W_rec, gain_rec), readout W, b
    assert len(per_step) == 5 + (2 if kind == "recurrent" else 0)
    _assert_close(per_step, deferred, 1e-12)
    assert d.steps == [7, 7]


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_deferred_grad_without_weight_standardisation(kind):
    per_step, deferred, _ = _per_step_and_deferred(BUILDERS[kind], torch.float64, -0.4, 3, ws=False)
    assert not any("gain" in n for n in per_step)
    _assert_close(per_step, deferred, 1e-12)


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_deferred_grad_equals_the_per_step_grad_in_float32(kind):
    per_step, deferred, _ = _per_step_and_deferred(BUILDERS[kind], torch.float32, -0.7, 4)
    _assert_close(per_step, deferred, 1e-5)


@pytest.mark.parametrize(
    "arch, shape, kw",
    [
        ("stllr_shd_net", (700,), {}),
        ("randman_rsnn_stllr", (100,), {"train_recurrent": False}),
        ("randman_rsnn_stllr", (100,), {"feedback_mode": "dfa"}),
        ("shapes_cnn_stllr", (2, 32, 32), {}),
    ],
)
def test_deferred_grad_of_registry_models_through_the_training_loop(arch, shape, kw):
    """The models the CLI trains (hooks, taps, DFA feedback, frozen W_rec): stllr_window with
    chunk > 0 gives the per-step .grad, float64."""
    torch.manual_seed(0)
    model = build_model(arch, factors=(0.5, 0.8, -0.5, 1.0), **kw).double().train()
    x = _steps(shape, 8, torch.float64, rate=0.1)
    y = torch.tensor([1, 0, 2])
    model.zero_grad(set_to_none=True)
    stllr_window(model, x, y, F.cross_entropy, 6)
    per_step = _grads(model)
    model.zero_grad(set_to_none=True)
    stllr_window(model, x, y, F.cross_entropy, 6, chunk=4)
    _assert_close(per_step, _grads(model), 1e-12)
    if kw.get("train_recurrent") is False:
        assert "linear1.weight_rec" not in per_step


def test_deferred_grad_adds_to_an_existing_grad():
    model, shape = _linear(torch.float64, -0.7)
    x, y = _steps(shape, 5, torch.float64), torch.tensor([0, 1, 2])
    stllr_window(model, x, y, F.cross_entropy, 5)
    stllr_window(model, x, y, F.cross_entropy, 5)
    twice = _grads(model)
    model.zero_grad(set_to_none=True)
    stllr_window(model, x, y, F.cross_entropy, 5)
    stllr_window(model, x, y, F.cross_entropy, 5, chunk=2)
    _assert_close(twice, _grads(model), 1e-12)


def test_one_weight_gemm_per_chunk_and_one_standardisation_backward_per_sequence(monkeypatch):
    model, shape = _recurrent(torch.float64, -0.7)
    calls = {"gemm": 0, "ws": 0}
    gemm, ws = RecurrentSTLLR._deferred_weight_grad, RecurrentSTLLR._standardization_backward

    def count_gemm(self, left, right):
        calls["gemm"] += 1
        return gemm(self, left, right)

    def count_ws(grad, cache):
        calls["ws"] += 1
        return ws(grad, cache)

    monkeypatch.setattr(RecurrentSTLLR, "_deferred_weight_grad", count_gemm)
    monkeypatch.setattr(RecurrentSTLLR, "_standardization_backward", staticmethod(count_ws))
    x, y = _steps(shape, 12, torch.float64), torch.tensor([0, 1, 2])
    with stllr.deferred_updates(model.hidden, chunk=4):
        stllr_window(model, x, y, F.cross_entropy, 10)
    assert calls == {"gemm": math.ceil(10 / 4), "ws": 2}  # ws: W and W_rec, once each
    calls.update(gemm=0, ws=0)
    stllr_window(model, x, y, F.cross_entropy, 10)  # per step: 10 x (W and W_rec)
    assert calls == {"gemm": 0, "ws": 20}


@pytest.mark.parametrize("alpha_post, rows", [(-0.7, 2 * B), (0.0, B)])
def test_memory_held_is_bounded_by_the_chunk(alpha_post, rows):
    """Buffers: chunk steps x rows x (N + M) values, plus the dL/dW~ and dL/db accumulators; the
    same for a chunk of 4 over 6 or over 30 learning steps, released at exit."""
    n, m = 5, 7
    held = []
    for steps in (6, 30):
        model, shape = _linear(torch.float64, alpha_post)
        x, y = _steps(shape, steps, torch.float64), torch.tensor([0, 1, 2])
        with stllr.deferred_updates(model.hidden, chunk=4) as d:
            stllr_window(model, x, y, F.cross_entropy, steps)
            during = d.held_bytes
        assert d.held_bytes == 0  # released at exit
        held.append((during, d.peak_bytes))
    per_value = 8  # float64
    expected = (4 * rows * (n + m) + n * m + n) * per_value
    assert held[0][1] == held[1][1] == expected
    assert held[1][0] == expected  # 30 steps: the accumulator exists before exit


def test_buffer_holds_no_more_steps_than_the_sequence_has():
    model, shape = _linear(torch.float64, -0.7)
    x, y = _steps(shape, 3, torch.float64), torch.tensor([0, 1, 2])
    with stllr.deferred_updates(model.hidden, chunk=1000) as d:
        stllr_window(model, x, y, F.cross_entropy, 3)
    assert d.peak_bytes <= (4 * 2 * B * (5 + 7) + 5 * 7 + 5) * 8  # grows by doubling: 4 >= 3 steps


def test_nothing_changes_outside_the_context():
    model, shape = _linear(torch.float64, -0.7)
    x, y = _steps(shape, 6, torch.float64), torch.tensor([0, 1, 2])
    stllr_window(model, x, y, F.cross_entropy, 4)
    before = _grads(model)
    with stllr.deferred_updates(model, 2):
        pass
    assert all(layer._deferral is None for layer in (model.hidden, model.readout))
    model.zero_grad(set_to_none=True)
    stllr_window(model, x, y, F.cross_entropy, 4)
    after = _grads(model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit for bit: the per-step path


def test_an_optimizer_step_inside_the_context_is_refused():
    """An update between learning steps (stllr_online's optimizer step, here by hand: inside the
    context .grad is still empty, so an optimizer would not even move the weights)."""
    model, shape = _linear(torch.float64, -0.7)
    x, y = _steps(shape, 6, torch.float64), torch.tensor([0, 1, 2])

    def update(_t):
        with torch.no_grad():
            model.hidden.weight.add_(0.01)

    with pytest.raises(RuntimeError, match=r"changed inside the context.*chunk=0"):
        with stllr.deferred_updates(model, 4):
            stllr_window(model, x, y, F.cross_entropy, 4, after_backward=update)
    assert model.hidden._deferral is None


def test_an_error_inside_the_context_adds_nothing():
    model, shape = _linear(torch.float64, -0.7)
    x, y = _steps(shape, 6, torch.float64), torch.tensor([0, 1, 2])
    with pytest.raises(KeyError):
        with stllr.deferred_updates(model, 4):
            stllr_window(model, x, y, F.cross_entropy, 4)
            raise KeyError("stop")
    assert _grads(model) == {} and model.hidden._deferral is None


def test_bad_arguments_get_one_line_errors():
    model, _ = _linear(torch.float64, -0.7)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="^chunk: "):
            with stllr.deferred_updates(model, bad):
                pass
    with pytest.raises(ValueError, match="^module: no S-TLLR layer"):
        with stllr.deferred_updates(torch.nn.Linear(3, 2)):
            pass
    with pytest.raises(RuntimeError, match="nested"):
        with stllr.deferred_updates(model):
            with stllr.deferred_updates(model.hidden):
                pass
    with pytest.raises(ValueError, match="^chunk: expected an int >= 0"):
        stllr_window(model, torch.zeros(2, B, 7, dtype=torch.float64), None, None, 1, chunk=-1)


def test_the_training_loop_defers_in_stllr_mode_only():
    assert resolve_chunk(None, "stllr") == DEFAULT_CHUNK > 0
    assert resolve_chunk(None, "stllr_online") == 0 == resolve_chunk(None, "bptt")
    assert resolve_chunk(0, "stllr") == 0
    with pytest.raises(ValueError, match="^chunk: .*'stllr_online'"):
        resolve_chunk(4, "stllr_online")
    torch.manual_seed(0)
    model = build_model("randman_rsnn_stllr", factors=(0.5, 1.0, 1.0, 1.0))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = _steps((100,), 10, torch.float32, rate=0.1).transpose(0, 1)
    y = torch.tensor([1, 0, 2])
    after = []
    for chunk in (0, None):
        model.load_state_dict(state)
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        train_batch(model, x, y, opt, F.cross_entropy, "stllr", window=8, chunk=chunk)
        after.append({k: v.clone() for k, v in model.state_dict().items()})
    for k in state:  # one SGD step of lr 1: the weights moved by the (equal) gradients
        if after[0][k].is_floating_point() and not torch.equal(state[k], after[0][k]):
            torch.testing.assert_close(after[1][k], after[0][k], rtol=1e-5, atol=1e-6)


def test_chunk_in_the_config_and_on_the_command_line():
    cfg = validate_config(
        TrainConfig(arch="randman_rsnn_stllr", dataset="randman", chunk=4), check_data=False
    )
    assert cfg.chunk == 4
    with pytest.raises(ConfigError, match="^--chunk: expected an integer >= 0"):
        validate_config(TrainConfig(arch="randman_rsnn_stllr", dataset="randman", chunk=-1))
    with pytest.raises(ConfigError, match="^--chunk: .*--training-mode stllr"):
        validate_config(
            TrainConfig(
                arch="randman_rsnn_stllr", dataset="randman", chunk=4, training_mode="stllr_online"
            )
        )
    from stllr.cli import build_parser

    args = build_parser().parse_args(["train", "--chunk", "0"])
    assert args.chunk == 0


def test_mac_counts_are_the_same_deferred_and_per_step():
    """The deferred GEMMs do the per-step GEMMs' MACs, counted as weight gradients also when
    the last chunk runs at the context's exit (outside autograd's engine)."""
    from stllr.measure import MacCounter

    counts = []
    for chunk in (0, 3):
        model, shape = _recurrent(torch.float64, -0.7)
        x, y = _steps(shape, 9, torch.float64), torch.tensor([0, 1, 2])
        counter = MacCounter(model, B)
        with counter:
            stllr_window(model, x, y, F.cross_entropy, 7, chunk=chunk)
        counts.append({k: counter.counts.total(kind=k) for k in ("forward", "grad_weight")})
    assert counts[0] == counts[1] and counts[0]["grad_weight"] > 0


def test_measure_sequence_runs_the_deferred_path_and_reports_what_it_held():
    from stllr.measure import measure_sequence

    held = {}
    grads = {}
    for chunk in (0, 4):
        model, shape = _recurrent(torch.float64, -0.7)
        x, y = _steps(shape, 9, torch.float64), torch.tensor([0, 1, 2])
        m = measure_sequence(model, x, y, mode="stllr", window=7, chunk=chunk)
        held[chunk] = m.deferred_bytes
        grads[chunk] = _grads(model)
        macs = m.macs.total(kind="grad_weight")
        assert m.as_dict()["deferred_bytes"] == m.deferred_bytes
        assert macs > 0 and m.macs.total(section="window", kind="grad_weight") == macs
    _assert_close(grads[0], grads[4], 1e-12)
    n, m_in, classes = 5, 6 + 5, 4  # recurrent: z = [x, s_prev]; readout 5 -> 4
    expected = (4 * 2 * B * (n + m_in) + n * m_in + n) + (
        4 * B * (classes + n) + classes * n + classes
    )
    assert held == {0: None, 4: expected * 8}
    with pytest.raises(ValueError, match="^chunk: "):
        measure_sequence(model, x, y, mode="stllr", window=7, chunk=-1)


def test_constants_recomputed_without_a_parameter_change_are_not_refused(monkeypatch):
    """The refusal keys on the parameters' versions, not on the constants object: a wrapper that
    returns fresh constants every step (as tools/mutations does) still defers."""
    from stllr.layers import _STLLRBase

    orig = _STLLRBase._sequence_constants
    monkeypatch.setattr(_STLLRBase, "_sequence_constants", lambda self: orig(self)._replace())
    per_step, deferred, _ = _per_step_and_deferred(_linear, torch.float64, -0.7, 3)
    _assert_close(per_step, deferred, 1e-12)
