"""stllr.studies.learning_signals (notebook 06): the BP / DFA / sDFA signals of one batch against independent
references, the angles, training while recording (identical to the plain training code), summaries.

References are computed here without the module: the BP signal by autograd (dL/ds_t of the same step's
loss with respect to the hidden layer's output) and by the chain rule written out (the readout is
u_t = beta u_{t-1} + s_t W^T + b with u_{t-1} detached, so dL/ds_t = e_t W); the DFA / sDFA signals
from the logits: e_t = (softmax(logits_t) - onehot(y)) / batch, then e_t F and sign(e_t) F / batch.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stllr.analysis.metrics import angle_degrees, cosine_similarity, mean_std
from stllr.models.registry import build_model
from stllr.studies import common as E
from stllr.studies import learning_signals as LS
from stllr.studies import paper
from stllr.training.config import make_optimizer
from stllr.training.loop import seed_everything, train_batch

DT = torch.float64
B, T, M, H, C, WINDOW = 6, 8, 10, 12, 4, 5


def _model(mode="bp", seed=0, rate_reg=0.0, dtype=DT):
    torch.manual_seed(seed)
    kw = dict(rate_reg=rate_reg, rate_target=0.03) if rate_reg else {}
    model = build_model(
        "randman_rsnn_stllr",
        num_classes=C,
        input_shape=(M,),
        hidden=H,
        factors=[0.5, 1, 1, 1],
        feedback_mode=mode,
        psi="sigmoid",
        **kw,
    )
    return model.to(dtype)


def _batch(seed=1, dtype=DT):
    g = torch.Generator().manual_seed(seed)
    frames = (torch.rand(B, T, M, generator=g) < 0.3).to(
        dtype
    )  # [B, T, M] as the loaders give them
    labels = torch.randint(0, C, (B,), generator=g)
    return frames, labels


def _onehot_error(logits, y):
    p = torch.exp(logits - logits.max(1, keepdim=True).values)
    p = p / p.sum(1, keepdim=True)
    oh = torch.zeros_like(p)
    oh[torch.arange(len(y)), y] = 1.0
    return (p - oh) / logits.shape[0]


def _reference_logits(model, frames):
    """Logits of every step (no learning), [T, B, C]."""
    x = frames.transpose(0, 1)
    model.reset_state()
    with torch.no_grad():
        out = torch.stack([model(x[t]) for t in range(x.shape[0])])
    model.reset_state()
    return out


# ---------------------------------------------------------------------------------------------
# angles
# ---------------------------------------------------------------------------------------------
def test_angle_of_identical_opposite_orthogonal_and_zero_signals():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 5, 7, generator=g, dtype=DT)
    assert angle_degrees(a, a) == pytest.approx(0.0, abs=1e-5)
    assert angle_degrees(a, 3.5 * a) == pytest.approx(0.0, abs=1e-5)  # scale does not matter
    assert angle_degrees(a, -a) == pytest.approx(180.0, abs=1e-5)
    e1, e2 = torch.zeros(4), torch.zeros(4)
    e1[0], e2[1] = 2.0, -1.0
    assert angle_degrees(e1, e2) == pytest.approx(90.0)
    assert angle_degrees(e1, e1 + e2.abs() * 2) == pytest.approx(45.0)
    assert math.isnan(angle_degrees(torch.zeros(4), e1))
    assert cosine_similarity(e1, e1 + e2.abs() * 2) == pytest.approx(math.sqrt(0.5))


def test_stepwise_angles_flatten_each_step_over_batch_and_neurons():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(4, 3, 6, generator=g, dtype=DT)
    b = torch.randn(4, 3, 6, generator=g, dtype=DT)
    b[2] = -a[2]
    got = LS.stepwise_angles(a, b)
    assert got.shape == (4,)
    for i in range(4):
        c = float((a[i].flatten() @ b[i].flatten()) / (a[i].norm() * b[i].norm()))
        assert got[i] == pytest.approx(math.degrees(math.acos(max(-1, min(1, c)))), abs=1e-6)
    assert got[2] == pytest.approx(180.0, abs=1e-5)
    with pytest.raises(ValueError, match="shapes differ"):
        LS.stepwise_angles(a, b[:, :2])


# ---------------------------------------------------------------------------------------------
# one batch: the signals against independent references
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["bp", "dfa"])
def test_bp_signal_equals_autograd_dL_ds_and_the_chain_rule(mode):
    model = _model(mode)
    frames, labels = _batch()
    sig = LS.signals_for_batch(model, frames, labels, WINDOW)
    assert sig.steps == list(range(T - WINDOW, T))
    assert sig.bp.shape == sig.dfa.shape == sig.sdfa.shape == sig.spikes.shape == (WINDOW, B, H)
    assert sig.error.shape == (WINDOW, B, C)

    # autograd reference on a BP copy: dL_t/ds_t at each window step, s_t captured after the hidden layer
    ref = copy.deepcopy(model)
    for m in ref.modules():
        if hasattr(m, "mode") and hasattr(m, "feedback"):
            m.mode = "bp"
    captured = []
    handle = ref.linear1.register_forward_hook(lambda mod, inp, out: captured.append(out))
    x = frames.transpose(0, 1)
    ref.reset_state()
    auto = []
    for t in range(T):
        if t < T - WINDOW:
            with torch.no_grad():
                ref(x[t])
            continue
        out = ref(x[t])
        (g,) = torch.autograd.grad(F.cross_entropy(out, labels), captured[-1])
        auto.append(g)
    handle.remove()
    torch.testing.assert_close(sig.bp, torch.stack(auto), rtol=1e-10, atol=1e-14)

    # the chain rule written out: e_t W_out, e_t from the logits
    logits = _reference_logits(model, frames)[T - WINDOW :]
    e = torch.stack([_onehot_error(logits[i], labels) for i in range(WINDOW)])
    torch.testing.assert_close(sig.error, e, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(sig.bp, e @ model.last_layer.weight.detach(), rtol=1e-10, atol=1e-14)


def test_dfa_and_sdfa_signals_equal_e_times_B_written_out():
    model = _model("bp")
    frames, labels = _batch(2)
    sig = LS.signals_for_batch(model, frames, labels, WINDOW)
    Bm = model.linear1_hook.feedback.detach()
    assert Bm.shape == (C, H)
    torch.testing.assert_close(sig.feedback, Bm)
    logits = _reference_logits(model, frames)[T - WINDOW :]
    for i in range(WINDOW):
        e = _onehot_error(logits[i], labels)
        dfa = torch.zeros(B, H, dtype=DT)
        sdfa = torch.zeros(B, H, dtype=DT)
        for b in range(B):
            for c in range(C):
                dfa[b] += e[b, c] * Bm[c]
                sdfa[b] += (1.0 if e[b, c] > 0 else -1.0 if e[b, c] < 0 else 0.0) / B * Bm[c]
        torch.testing.assert_close(sig.dfa[i], dfa, rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(sig.sdfa[i], sdfa, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("mode", ["dfa", "sdfa"])
def test_formed_signal_equals_what_the_models_own_hook_delivers(mode):
    """A DFA / sDFA model's hook replaces the gradient by exactly the signal formed here (its last step)."""
    model = _model(mode)
    frames, labels = _batch(3)
    sig = LS.signals_for_batch(model, frames, labels, WINDOW)
    hook = model.linear1_hook
    hook.record = True
    x = frames.transpose(0, 1)
    model.reset_state()
    for t in range(T):
        out = model(x[t])
        F.cross_entropy(out, labels).backward()
    torch.testing.assert_close(hook.last_signal, getattr(sig, mode)[-1], rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(hook.last_bp_grad, sig.bp[-1], rtol=1e-10, atol=1e-14)


def test_spikes_are_the_hidden_output_and_the_model_is_left_unchanged():
    model = _model("dfa")
    before = copy.deepcopy(model.state_dict())
    frames, labels = _batch(4)
    captured = []
    handle = model.linear1.register_forward_hook(
        lambda mod, inp, out: captured.append(out.detach())
    )
    sig = LS.signals_for_batch(model, frames, labels, WINDOW)
    handle.remove()
    torch.testing.assert_close(sig.spikes, torch.stack(captured[T - WINDOW :]))
    assert set(torch.unique(sig.spikes).tolist()) <= {0.0, 1.0}
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert all(p.grad is None for p in model.parameters())
    assert model.linear1_hook.record is False
    assert len(model.linear1_hook._forward_hooks) == 0


def test_readout_equal_to_B_gives_angle_zero_and_random_B_is_near_orthogonal():
    model = _model("dfa")
    frames, labels = _batch(5)
    # at initialisation F and W_out are independent random matrices: the signals are far from aligned
    sig = LS.signals_for_batch(model, frames, labels, WINDOW)
    assert (sig.angles("dfa") > 45).all()
    with torch.no_grad():
        model.last_layer.weight.copy_(0.7 * model.linear1_hook.feedback)
    assert LS.readout_angle(model) == pytest.approx(0.0, abs=1e-5)
    sig = LS.signals_for_batch(model, frames, labels, WINDOW)
    assert torch.allclose(sig.angles("dfa"), torch.zeros(WINDOW, dtype=DT), atol=1e-4)
    assert torch.allclose(sig.cosines("dfa"), torch.ones(WINDOW, dtype=DT), atol=1e-10)
    with torch.no_grad():
        model.last_layer.weight.copy_(-model.linear1_hook.feedback)
    assert LS.readout_angle(model) == pytest.approx(180.0, abs=1e-5)
    opt = make_optimizer("SGD", model.parameters(), 0.0)
    _, rec = LS.train_batch_recording(model, frames, labels, opt, F.cross_entropy, WINDOW)
    assert rec["angle_feedback"] == pytest.approx(180.0, abs=1e-4)
    assert rec["angle_readout"] == pytest.approx(180.0, abs=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dfa_with_readout_feedback_trains_exactly_as_bp(dtype):
    """F := W_out makes DFA's e_t F the chain rule e_t W_out: the same .grad as BP, bit for bit,
    for every parameter; with its own random F it differs in the hidden layer only."""
    frames, labels = _batch(3, dtype)
    bp = _model("bp", seed=4, dtype=dtype)
    dfa = _model("dfa", seed=4, dtype=dtype)
    dfa.load_state_dict(bp.state_dict())
    grads = {}

    def update(model):
        model.zero_grad(set_to_none=True)
        opt = make_optimizer("SGD", model.parameters(), 0.0)
        train_batch(model, frames, labels, opt, F.cross_entropy, "stllr", WINDOW)
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    grads["bp"] = update(bp)
    grads["dfa_random_B"] = update(dfa)
    assert not torch.equal(grads["dfa_random_B"]["linear1.weight"], grads["bp"]["linear1.weight"])
    assert torch.equal(grads["dfa_random_B"]["last_layer.weight"], grads["bp"]["last_layer.weight"])
    assert LS.feedback_from_readout(dfa) is dfa
    assert torch.equal(dfa.linear1_hook.feedback, dfa.last_layer.weight.detach())
    grads["dfa_B_is_W_out"] = update(dfa)
    assert grads["dfa_B_is_W_out"].keys() == grads["bp"].keys()
    for name, g in grads["bp"].items():
        assert torch.equal(grads["dfa_B_is_W_out"][name], g), name


def test_readout_angle_is_nan_when_the_readout_does_not_map_the_hooked_layer():
    model = build_model("shapes_cnn_stllr", feedback_mode="dfa")
    assert LS.readout_weight(model) is None
    assert math.isnan(LS.readout_angle(model))
    with pytest.raises(ValueError, match="no LearningSignal"):
        LS.signal_hook(build_model("randman_rsnn_bptt"))
    with pytest.raises(ValueError, match="^model: expected a readout"):
        LS.feedback_from_readout(model)


# ---------------------------------------------------------------------------------------------
# training while recording
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode,rate_reg", [("bp", 0.0), ("dfa", 0.0), ("dfa", 0.3), ("sdfa", 0.3)])
def test_recording_batch_trains_bit_for_bit_like_train_batch(mode, rate_reg):
    a = _model(mode, rate_reg=rate_reg)
    b = copy.deepcopy(a)
    oa = make_optimizer("Adam", a.parameters(), 1e-2)
    ob = make_optimizer("Adam", b.parameters(), 1e-2)
    for seed in (6, 7):
        frames, labels = _batch(seed)
        pa, rec = LS.train_batch_recording(a, frames, labels, oa, F.cross_entropy, WINDOW)
        pb = train_batch(b, frames, labels, ob, F.cross_entropy, "stllr", WINDOW)
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(va, vb, rtol=0, atol=0, msg=k)
    assert a.linear1_hook.record is False
    assert 0.0 <= rec["rate"] <= 1.0
    assert 0.0 <= rec["angle_feedback"] <= 180.0
    if mode == "bp":
        assert rec["angle_signal"] == pytest.approx(
            0.0, abs=1e-5
        )  # the delivered signal IS the BP signal
        assert rec["signal_norm_ratio"] == pytest.approx(1.0)
    elif rate_reg == 0.0:
        assert rec["angle_signal"] == pytest.approx(rec["angle_feedback"], abs=1e-6)


def test_recording_batch_angles_match_the_one_batch_signals():
    model = _model("dfa")
    frames, labels = _batch(8)
    sig = LS.signals_for_batch(model, frames, labels, WINDOW)
    rate_ref = []
    h = model.linear1.register_forward_hook(
        lambda mod, inp, out: rate_ref.append(out.detach().mean())
    )
    opt = make_optimizer("SGD", model.parameters(), 0.0)
    _, rec = LS.train_batch_recording(model, frames, labels, opt, F.cross_entropy, WINDOW)
    h.remove()
    assert rec["angle_feedback"] == pytest.approx(float(sig.angles("dfa").mean()), abs=1e-6)
    assert rec["cos_feedback"] == pytest.approx(float(sig.cosines("dfa").mean()), abs=1e-9)
    assert rec["rate"] == pytest.approx(float(torch.stack(rate_ref).mean()), rel=1e-6)
    assert rec["angle_readout"] == pytest.approx(LS.readout_angle(model), abs=1e-6)


def _tiny_config(tmp_path):
    cfg = LS.signal_config(epochs=2, data_path=str(tmp_path / "data"))
    tiny = dict(
        E.SMALL_RANDMAN,
        n_classes=3,
        n_units=20,
        n_steps=10,
        n_train_per_class=8,
        n_test_per_class=4,
    )
    data = dataclasses.replace(cfg.data, data_options=tiny, batch_size=8, val_batch_size=12)
    cfg = dataclasses.replace(
        cfg, data=data, num_classes=3, window=6, T=10, options={**cfg.options, "record_every": 2}
    )
    cfg.methods = LS.signal_methods(cfg)
    return cfg


def test_train_recording_matches_train_method_and_records_every_nth_batch(tmp_path):
    cfg = _tiny_config(tmp_path)
    train_set, test_set, info = LS.load_data(cfg, 0)
    method = cfg.methods[1]  # DFA
    assert (method.feedback_mode, method.window, method.options) == ("dfa", 6, {})
    run = LS.train_recording(
        method, train_set, test_set, info, epochs=2, lr=cfg.lr, seed=3, record_every=2
    )
    # the same training through the plain path of notebook 00 (stllr.training.loop.run_epoch)
    res = E.train_method(method, train_set, test_set, info, epochs=2, lr=cfg.lr, seed=3)
    assert [h["test_acc"] for h in run.history] == [h["test_acc"] for h in res.history]
    assert [h["train_acc"] for h in run.history[1:]] == pytest.approx(
        [h["train_acc"] for h in res.history[1:]]
    )
    for (k, va), vb in zip(run.model.state_dict().items(), res.model.state_dict().values()):
        torch.testing.assert_close(va, vb, rtol=0, atol=0, msg=k)
    assert run.num_parameters == res.num_parameters and (run.seed, run.trial) == (3, 0)
    per_epoch = math.ceil(len(train_set) / cfg.data.batch_size)
    assert [r["batch"] for r in run.records] == list(range(0, 2 * per_epoch, 2))
    assert run.records[0]["epoch"] == 0.0
    assert run.series("angle_feedback").shape == (len(run.records),)
    assert run.series("test_acc").shape == (3,)


def test_run_trials_summary_and_table(tmp_path):
    cfg = _tiny_config(tmp_path)
    data = cfg.data.with_seed(0)
    runs = LS.run_trials(cfg.methods[:2], data, cfg, trials=2, seed=5, epochs=1)
    assert list(runs) == ["bp", "dfa"] and [r.seed for r in runs["bp"]] == [5, 6]
    assert [r.trial for r in runs["bp"]] == [0, 1] and runs["bp"][1].method is cfg.methods[0]
    # trial k of every method starts from the same weights (same seed): the same epoch-0 accuracy
    assert runs["bp"][0].history[0]["test_acc"] == runs["dfa"][0].history[0]["test_acc"]
    # every trial sees the batches of the data seed: trial 1 is train_recording with seed 6
    train_set, test_set, info = data.load()
    one = LS.train_recording(
        cfg.methods[1],
        train_set,
        test_set,
        info,
        epochs=1,
        lr=cfg.methods[1].lr,
        seed=6,
        record_every=2,
    )

    def untimed(history):
        return [{k: v for k, v in h.items() if not k.endswith("_time")} for h in history]

    assert untimed(one.history) == untimed(runs["dfa"][1].history)
    assert one.records == runs["dfa"][1].records
    rows = LS.summarise_trials(runs)
    finals = [r.final["test_acc"] for r in runs["dfa"]]
    assert rows[1]["test"] == pytest.approx(np.mean(finals))
    assert rows[1]["test_std"] == pytest.approx(np.std(finals, ddof=1))
    assert rows[1]["angle_start"] == pytest.approx(
        np.mean([r.records[0]["angle_feedback"] for r in runs["dfa"]])
    )
    table = LS.summary_table(rows, paper.PAPER_SHD_SIGNALS, kind="accuracy")
    assert "78.24 +- 1.84" in table and "74.60 +- 0.52" in table and "angle" not in table
    assert table.splitlines()[0].startswith("learning signal")
    table = LS.summary_table(rows, kind="alignment")
    assert "angle(W_out, F)" in table and "final test" not in table
    assert f"{rows[1]['angle_start']:.1f} -> {rows[1]['angle_end']:.1f}" in table
    with pytest.raises(ValueError, match="kind"):
        LS.summary_table(rows, kind="bogus")


def test_mean_std_and_configs():
    assert mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert mean_std([4.0]) == (4.0, 0.0)
    with pytest.raises(ValueError, match="DATA_PATH"):
        LS.signal_config(full=True)
    full = LS.signal_config(full=True, data_path="/nonexistent")
    assert (full.data.dataset, full.arch, full.window, full.T, full.lr) == (
        "shd",
        "stllr_shd_net",
        90,
        100,
        2e-4,
    )
    assert full.epochs == 200 and list(full.factors) == [0.5, 1.0, 1.0, 1.0]
    assert [m.arch for m in full.methods] == ["stllr_shd_net"] * len(LS.SIGNALS)
    assert {m.lr for m in full.methods} == {None}  # FULL: the paper's lr for every signal
    small = LS.signal_config()
    assert small.data.data_options["n_classes"] == 5 and small.window <= small.T
    keys = ["bp", "dfa", "dfa_frozen", "dfa_rate", "bp_rate", "sdfa_rate"]
    assert [m.key for m in small.methods] == keys == list(LS.SIGNALS)
    assert [m.feedback_mode for m in small.methods] == ["bp", "dfa", "dfa", "dfa", "bp", "sdfa"]
    assert {(m.arch, m.mode, m.factors, m.window, m.psi) for m in small.methods} == {
        ("randman_rsnn_stllr", "stllr", (0.5, 1.0, 1.0, 1.0), 20, "sigmoid")
    }
    pen = E.DFA_RATE_PENALTY
    assert [m.options for m in small.methods] == [
        {},
        {},
        {"train_recurrent": False},
        pen,
        pen,
        pen,
    ]
    assert paper.PAPER_SHD_SIGNALS == {"bp": (78.24, 1.84), "dfa": (74.60, 0.52)}
    info = {"num_classes": 3, "input_shape": (7,)}
    (dfa_rate,) = LS.signal_methods(
        dataclasses.replace(small, options={"model_options": {"hidden": 16}}), ["dfa_rate"]
    )
    assert dfa_rate.options == {"hidden": 16, **E.DFA_RATE_PENALTY}
    model = E.build_model_for(dfa_rate, info)
    assert model.linear1.out_features == 16 and model.num_classes == 3
    assert (
        model.linear1_hook.mode,
        model.linear1_hook.rate_reg,
        model.linear1_hook.rate_target,
    ) == ("dfa", 0.3, 0.03)
    with pytest.raises(ValueError, match="^keys: expected keys of SIGNALS"):
        LS.signal_methods(small, ["bp", "nope"])


def test_small_setting_is_the_shared_one_with_each_kinds_learning_rate():
    """Notebook 06 trains in the one small-task setting (common.small_task_config) and each signal
    with notebook 08's rate for its kind: the methods the four notebooks share are the same Method
    as common.small_task_method builds (labels aside), so they train identically."""
    small = LS.signal_config()
    shared = E.small_task_config()
    for field in ("data", "task", "T", "arch", "psi", "factors", "window", "optimizer", "lr"):
        assert getattr(small, field) == getattr(shared, field), field
    assert (small.epochs, small.twin) == (E.SMALL_TASK_EPOCHS, None)
    assert LS.signal_config(epochs=3).epochs == 3
    by_key = {m.key: m for m in small.methods}
    for key, kind in LS.SIGNAL_LR_KIND.items():
        assert by_key[key].lr == E.SMALL_TASK_LR[kind], key
    for kind in ("bp", "dfa", "dfa_rate", "bp_rate"):
        ref = E.small_task_method(shared, kind)
        ours = by_key[kind]
        assert dataclasses.replace(ours, label=ref.label) == ref, kind
    frozen = E.small_task_method(
        shared, "dfa", key="dfa_frozen", options={"train_recurrent": False}
    )
    assert dataclasses.replace(by_key["dfa_frozen"], label=frozen.label) == frozen
    # another key: the rate of its signal, _rate with a penalty; an explicit lr wins
    assert LS.signal_method(small, "x", "x", "sdfa", rate_reg=1.0).lr == E.SMALL_TASK_LR["dfa_rate"]
    assert LS.signal_method(small, "x", "x", "bp").lr == E.SMALL_TASK_LR["bp"]
    assert LS.signal_method(small, "x", "x", "dfa").lr == E.SMALL_TASK_LR["dfa"]
    assert LS.signal_method(small, "x", "x", "bp", lr=3e-3).lr == 3e-3


def test_frozen_recurrent_weights_stay_at_their_initial_values(tmp_path):
    """DFA with W_rec frozen (``train_recurrent=False``): after training W_rec and its gain equal
    the initial ones, bit for bit, while the input weights and the readout changed; plain DFA
    from the same seed changes W_rec."""
    cfg = _tiny_config(tmp_path)
    train_set, test_set, info = LS.load_data(cfg, 0)
    by_key = {m.key: m for m in cfg.methods}
    trained = {}
    for key in ("dfa", "dfa_frozen"):
        seed_everything(2)  # the initial weights train_recording builds with seed 2
        initial = E.build_model_for(by_key[key], info).state_dict()
        initial = {k: v.clone() for k, v in initial.items()}
        run = LS.train_recording(
            by_key[key], train_set, test_set, info, epochs=1, lr=1e-2, seed=2, record_every=3
        )
        trained[key] = (initial, run.model.state_dict(), run)
    init, after, run = trained["dfa_frozen"]
    for name in ("linear1.weight_rec", "linear1.gain_rec"):
        assert torch.equal(after[name], init[name]), name
    for name in ("linear1.weight", "last_layer.weight"):
        assert not torch.equal(after[name], init[name]), name
    frozen = dict(run.model.named_parameters())
    assert not frozen["linear1.weight_rec"].requires_grad
    assert run.num_parameters == trained["dfa"][2].num_parameters - sum(
        frozen[n].numel() for n in ("linear1.weight_rec", "linear1.gain_rec")
    )
    init, after, _ = trained["dfa"]
    assert torch.equal(init["linear1.weight_rec"], trained["dfa_frozen"][0]["linear1.weight_rec"])
    assert not torch.equal(after["linear1.weight_rec"], init["linear1.weight_rec"])


def test_accuracy_table_shows_each_methods_learning_rate(tmp_path):
    cfg = _tiny_config(tmp_path)
    runs = LS.run_trials(cfg.methods[:2], cfg.data, cfg, trials=1, epochs=1)
    rows = LS.summarise_trials(runs)
    assert [r["lr"] for r in rows] == [m.lr for m in cfg.methods[:2]] == [2e-2, 1e-2]
    header, _, bp, dfa = LS.summary_table(rows, kind="accuracy").splitlines()
    assert header.split()[:4] == ["learning", "signal", "trials", "lr"]
    assert bp.split()[:3] == ["BP", "1", "0.02"] and dfa.split()[:3] == ["DFA", "1", "0.01"]
    # trained with its own rate: the run's lr is the method's, not the study's fallback
    one = LS.train_recording(
        cfg.methods[1], *cfg.data.load(), epochs=1, lr=cfg.methods[1].lr, seed=0, record_every=2
    )
    assert [h["test_acc"] for h in one.history] == [h["test_acc"] for h in runs["dfa"][0].history]
    without = [dict(r, lr=None) for r in rows]
    assert " lr " not in LS.summary_table(without, kind="accuracy").splitlines()[0] + " "


def test_plots_draw(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    cfg = _tiny_config(tmp_path)
    methods = cfg.methods + [LS.signal_method(cfg, "mine", "sDFA 1.0", "sdfa", rate_reg=1.0)]
    runs = LS.run_trials(methods, cfg.data, cfg, trials=2, epochs=1)
    frames, labels = next(iter(E.loaders_for(*LS.load_data(cfg))[0]))
    sig = LS.signals_for_batch(runs["dfa"][0].model, frames, labels, cfg.window)
    import matplotlib.pyplot as plt

    for fig in (
        LS.plot_signals(sig),
        LS.plot_accuracy(runs, paper.PAPER_SHD_SIGNALS, chance=100 / 3),
        LS.plot_feedback_alignment(runs),
    ):
        assert len(fig.axes) >= 2
        plt.close(fig)
