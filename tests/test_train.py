"""Training loop semantics (window, one step per batch, online mode, BPTT), optimisers, losses,
output files, bit-for-bit resume and reruns of single trials."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from stllr import _io
from stllr.models.registry import build_model
from stllr.training import checkpoint, config
from stllr.training.config import TrainConfig, make_loss, make_optimizer, make_scheduler
from stllr.training.loop import train_batch
from stllr.training.run import train

pytestmark = pytest.mark.usefixtures("one_thread")


def _batch(B=6, steps=8, n=100, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(B, steps, n, generator=g) < 0.2).float(), torch.randint(
        0, classes, (B,), generator=g
    )


def _seeded_model(arch="randman_rsnn_stllr"):
    """``arch`` built right after ``torch.manual_seed(0)``."""
    torch.manual_seed(0)
    return build_model(arch)


def _snapshot(model):
    """A copy of ``model``'s state_dict, to start again from."""
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_one_sgd_step(model, state, grads):
    """Every parameter named in ``grads`` is ``state[name] - grads[name]`` (one SGD step, lr 1)."""
    params = dict(model.named_parameters())
    for n, g in grads.items():
        torch.testing.assert_close(params[n].detach(), state[n] - g, rtol=1e-5, atol=1e-6)


class _GradModeSpy:
    def __init__(self, model):
        self.modes = []
        model.register_forward_pre_hook(lambda m, inp: self.modes.append(torch.is_grad_enabled()))


class _StepCounter:
    def __init__(self, opt):
        self.n = 0
        opt.register_step_post_hook(lambda *a: setattr(self, "n", self.n + 1))


def test_stllr_mode_window_no_grad_before_and_one_step_per_batch():
    model = _seeded_model()
    spy = _GradModeSpy(model)
    opt = make_optimizer("SGD", model.parameters(), 0.1)
    steps = _StepCounter(opt)
    x, y = _batch(steps=8)
    pred = train_batch(model, x, y, opt, F.cross_entropy, "stllr", window=3)
    assert spy.modes == [False] * 5 + [True] * 3  # t >= T - window carry a learning signal
    assert steps.n == 1
    assert not pred.requires_grad and pred.shape == (6, 10)


def test_after_backward_sees_each_window_step_before_the_optimizer_step():
    model = _seeded_model()
    opt = make_optimizer("SGD", model.parameters(), 0.1)
    steps = _StepCounter(opt)
    seen = []
    w = model.fc_out.weight if hasattr(model, "fc_out") else next(model.parameters())

    def after_backward(t):
        seen.append((t, steps.n, w.grad is not None))

    x, y = _batch(steps=8)
    train_batch(
        model, x, y, opt, F.cross_entropy, "stllr", window=3, after_backward=after_backward, chunk=0
    )
    assert seen == [(5, 0, True), (6, 0, True), (7, 0, True)]  # per step: .grad after each backward
    seen.clear()
    model.zero_grad(set_to_none=True)
    train_batch(model, x, y, opt, F.cross_entropy, "stllr", window=3, after_backward=after_backward)
    # deferred (the default): .grad is written when the sequence ends, before the optimizer step
    assert seen == [(5, 1, False), (6, 1, False), (7, 1, False)] and w.grad is not None
    seen.clear()
    train_batch(
        model, x, y, opt, F.cross_entropy, "stllr_online", window=2, after_backward=after_backward
    )
    assert [(t, n) for t, n, _ in seen] == [
        (6, 2),
        (7, 3),
    ]  # online: before that step's optimizer step


def test_stllr_mode_gradient_is_the_sum_over_the_window():
    model = _seeded_model()
    state = _snapshot(model)
    x, y = _batch(steps=7)
    # manual: run the steps, backward every window step, no optimizer step
    model.reset_state()
    for t in range(7):
        if t < 4:
            with torch.no_grad():
                model(x[:, t])
        else:
            F.cross_entropy(model(x[:, t]), y).backward()
    manual = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.load_state_dict(state)
    model.zero_grad(set_to_none=True)
    opt = make_optimizer("SGD", model.parameters(), 1.0)
    train_batch(model, x, y, opt, F.cross_entropy, "stllr", window=3)
    _assert_one_sgd_step(model, state, manual)


def test_delay_ls_longer_than_the_sequence_uses_every_step():
    model = _seeded_model()
    spy = _GradModeSpy(model)
    x, y = _batch(steps=4)
    train_batch(
        model, x, y, make_optimizer("Adam", model.parameters(), 1e-3), F.cross_entropy, "stllr", 90
    )
    assert spy.modes == [True] * 4


def test_stllr_online_steps_every_window_step_and_keeps_no_graph():
    model = _seeded_model()
    opt = make_optimizer("Adam", model.parameters(), 1e-3)
    steps = _StepCounter(opt)
    x, y = _batch(steps=8)
    w0 = model.linear1.weight.detach().clone()
    pred = train_batch(model, x, y, opt, F.cross_entropy, "stllr_online", window=3)
    assert steps.n == 3
    assert (
        not pred.requires_grad and pred.grad_fn is None
    )  # the reference keeps every step's graph alive
    assert not torch.equal(model.linear1.weight, w0)


def test_bptt_mode_is_one_backward_of_the_summed_logits():
    model = _seeded_model("randman_rsnn_bptt")
    state = _snapshot(model)
    x, y = _batch(steps=5)
    model.reset_state()
    total = sum(model(x[:, t]) for t in range(5))
    F.cross_entropy(total, y).backward()
    manual = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.load_state_dict(state)
    model.zero_grad(set_to_none=True)
    opt = make_optimizer("SGD", model.parameters(), 1.0)
    steps = _StepCounter(opt)
    pred = train_batch(model, x, y, opt, F.cross_entropy, "bptt")
    assert steps.n == 1
    torch.testing.assert_close(pred, total.detach())
    _assert_one_sgd_step(model, state, manual)


def test_bptt_window_mode_is_one_backward_of_the_window_losses():
    model = _seeded_model("randman_rsnn_bptt")
    state = _snapshot(model)
    x, y = _batch(steps=7)
    # reference: autograd of the per-step CE of the last 3 steps, written out
    model.reset_state()
    outs = [model(x[:, t]) for t in range(7)]
    loss = sum(F.cross_entropy(o, y) for o in outs[4:])
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params)
    model.load_state_dict(state)
    opt = make_optimizer("SGD", model.parameters(), 1.0)
    steps = _StepCounter(opt)
    pred = train_batch(model, x, y, opt, F.cross_entropy, "bptt_window", window=3)
    assert steps.n == 1
    torch.testing.assert_close(
        pred, torch.stack([o.detach() for o in outs]).sum(0)
    )  # prediction: all T
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    _assert_one_sgd_step(model, state, dict(zip(names, grads)))


def test_bptt_window_needs_a_bptt_arch(tmp_path):
    with pytest.raises(config.ConfigError, match="bptt_window needs a BPTT arch"):
        config.validate_config(
            TrainConfig(arch="randman_rsnn_stllr", dataset="randman", training_mode="bptt_window"),
            check_data=False,
        )
    config.validate_config(
        TrainConfig(arch="randman_rsnn_bptt", dataset="randman", training_mode="bptt_window"),
        check_data=False,
    )


def test_optimizers_schedulers_losses():
    p = [torch.nn.Parameter(torch.zeros(3))]
    assert isinstance(make_optimizer("Adam", p, 1e-3), torch.optim.Adam)
    for name in ("RMSProp", "rmsprop", "RMSprop"):  # the reference can never select RMSprop
        assert isinstance(make_optimizer(name, p, 1e-3), torch.optim.RMSprop)
    for name in ("Rprop", "RProp"):
        assert isinstance(make_optimizer(name, p, 1e-3), torch.optim.Rprop)
    nag = make_optimizer("NAG", p, 1e-2, weight_decay=1e-4)
    g = nag.param_groups[0]
    assert (
        isinstance(nag, torch.optim.SGD)
        and g["nesterov"]
        and g["momentum"] == 0.9
        and g["weight_decay"] == 1e-4
    )
    sgd = make_optimizer("SGD", p, 1e-2)
    assert sgd.param_groups[0]["momentum"] == 0
    assert make_scheduler(sgd, 0) is None
    sched = make_scheduler(sgd, 4)
    lrs = []
    for _ in range(4):
        lrs.append(sgd.param_groups[0]["lr"])
        sgd.step()
        sched.step()
    assert (
        lrs[0] == 1e-2
        and lrs[2] == pytest.approx(5e-3)
        and sgd.param_groups[0]["lr"] == pytest.approx(0.0)
    )
    logits, y = torch.randn(4, 3), torch.tensor([0, 2, 1, 1])
    assert make_loss("CE", 3)(logits, y) == pytest.approx(F.cross_entropy(logits, y).item())
    assert make_loss("MSE", 3)(logits, y) == pytest.approx(
        F.mse_loss(logits, F.one_hot(y, 3).float()).item()
    )
    assert make_loss("BCE", 3)(logits, y) == pytest.approx(
        F.binary_cross_entropy_with_logits(logits, F.one_hot(y, 3).float()).item()
    )


def test_config_validation_normalises_reference_spellings():
    cfg = config.validate_config(
        TrainConfig(
            arch="dvscifar10_vgg11_stllr",
            dataset="CIFAR10DVS",
            optimizer="RMSProp",
            feedback_mode="sdfa",
            label_encoding="one-hot",
            scheduler="cosine",
            epochs=7,
            pooling="avg",
        ),
        check_data=False,
    )
    assert (
        cfg.arch,
        cfg.dataset,
        cfg.optimizer,
        cfg.feedback_mode,
        cfg.scheduler,
        cfg.pooling,
    ) == ("dvscifar10_vgg_stllr", "cifar10dvs", "RMSprop", "sDFA", 7, "AVG")
    with pytest.raises(config.ConfigError, match="--scheduler"):
        config.validate_config(
            TrainConfig(arch="randman_rsnn_stllr", dataset="randman", scheduler="step")
        )


RANDMAN = {"n_train_per_class": 4, "n_test_per_class": 2, "n_steps": 12}
SHAPES = {"n_train_per_class": 4, "n_test_per_class": 2, "n_steps": 6}


def _cfg(tmp_path, name, **kw):
    base = dict(
        arch="randman_rsnn_stllr",
        dataset="randman",
        data_path=str(tmp_path / "data"),
        save_path=str(tmp_path / name),
        batch_size=8,
        val_batch_size=8,
        delay_ls=6,
        lr=1e-2,
        epochs=2,
        progress=False,
        data_options=dict(RANDMAN),
        scheduler=2,
    )
    base.update(kw)
    return TrainConfig(**base)


def _weights(save, trial=1):
    return torch.load(Path(save) / f"trial_{trial}_last.pth.tar", weights_only=True)["state_dict"]


def _metrics(results, trial=0):
    return [
        (e["epoch"], e["train_acc"], e["train_loss"], e["test_acc"], e["test_loss"], e["lr"])
        for e in results["trials"][trial]["epochs"]
    ]


CASES = {
    "stllr_bp": {},
    "stllr_dfa_sgd": dict(feedback_mode="DFA", label_encoding="one-hot", optimizer="NAG"),
    "stllr_online": dict(training_mode="stllr_online"),
    "bptt": dict(arch="randman_rsnn_bptt", training_mode="bptt"),
    "shapes_dropout": dict(
        arch="shapes_cnn_stllr",
        dataset="moving_shapes",
        data_options=dict(SHAPES),
        delay_ls=3,
        model_options={"dropout": 0.2},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, case):
    kw = CASES[case]
    full = train(_cfg(tmp_path, "full", **kw))
    train(_cfg(tmp_path, "split", epochs=1, **kw))  # "interrupted" after epoch 1
    resumed = train(_cfg(tmp_path, "split", resume=True, **kw))
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "split")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert _metrics(full) == _metrics(resumed)
    assert len(_metrics(resumed)) == 2
    # results files reflect the whole run
    saved = json.loads((tmp_path / "split" / "results.json").read_text())
    assert _metrics(saved) == _metrics(full)


def test_resume_refuses_a_different_run_and_skips_finished_trials(tmp_path):
    train(_cfg(tmp_path, "r", epochs=1))
    with pytest.raises(config.ConfigError, match="lr"):
        train(_cfg(tmp_path, "r", resume=True, lr=5e-3))
    again = train(_cfg(tmp_path, "r", epochs=1, resume=True))  # nothing left to do
    assert len(again["trials"][0]["epochs"]) == 1


def test_trials_are_seeded_so_each_reruns_alone(tmp_path):
    both = train(_cfg(tmp_path, "two", trials=2, epochs=1))
    assert [t["seed"] for t in both["trials"]] == [1234, 1235]
    alone = train(_cfg(tmp_path, "alone", trials=2, epochs=1, only_trial=2))
    assert [t["trial"] for t in alone["trials"]] == [2]
    assert _metrics(alone, 0) == _metrics(both, 1)
    a, b = _weights(tmp_path / "two", 2), _weights(tmp_path / "alone", 2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(_weights(tmp_path / "two", 1)["linear1.weight"], a["linear1.weight"])


def test_output_files(tmp_path):
    res = train(_cfg(tmp_path, "files", trials=2, epochs=2))
    save = tmp_path / "files"
    names = sorted(p.name for p in save.iterdir())
    assert names == sorted(
        [
            "results.json",
            "metrics.csv",
            "log.log",
            "trial_1_last.pth.tar",
            "trial_1_model_best.pth.tar",
            "trial_2_last.pth.tar",
            "trial_2_model_best.pth.tar",
        ]
    )
    saved = json.loads((save / "results.json").read_text())
    assert saved["summary"]["trials_done"] == 2 and saved["config"]["arch"] == "randman_rsnn_stllr"
    epoch = saved["trials"][0]["epochs"][0]
    for key in (
        "train_acc",
        "train_loss",
        "test_acc",
        "test_loss",
        "epoch_time",
        "peak_memory_mb",
        "memory_kind",
        "lr",
    ):
        assert key in epoch
    assert epoch["memory_kind"] in ("cpu_peak_rss_approximate", "cpu_process_max_rss_approximate")
    assert epoch["peak_memory_mb"] > 10
    assert epoch["test_samples"] == 20 and epoch["train_samples"] == 40
    rows = list(csv.DictReader((save / "metrics.csv").open()))
    assert len(rows) == 4 and rows[0]["trial"] == "1" and rows[3]["epoch"] == "2"
    assert float(rows[1]["test_acc"]) == pytest.approx(saved["trials"][0]["epochs"][1]["test_acc"])
    log = (save / "log.log").read_text()
    assert "trial 2 epoch 2/2" in log and "final test accuracy" in log
    # best checkpoint in the reference's format
    best = torch.load(save / "trial_1_model_best.pth.tar", weights_only=True)
    assert {"epoch", "state_dict", "best_acc1", "optimizer"} <= set(best)
    assert best["best_acc1"] == max(e["test_acc"] for e in saved["trials"][0]["epochs"])
    last = torch.load(save / "trial_1_last.pth.tar", weights_only=True)
    assert {"state_dict", "optimizer", "scheduler", "rng", "epoch", "history", "config"} <= set(
        last
    )
    assert {"torch", "numpy", "python", "loader"} <= set(last["rng"])
    assert res["summary"]["final_test_acc"] == [
        t["epochs"][-1]["test_acc"] for t in saved["trials"]
    ]


def test_atomic_save_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "ckpt.pth.tar"
    _io.atomic_torch_save({"a": torch.ones(2)}, target)

    def boom(obj, f, *a, **k):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        _io.atomic_torch_save({"a": torch.zeros(2)}, target)
    monkeypatch.undo()
    assert torch.equal(torch.load(target, weights_only=True)["a"], torch.ones(2))  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth.tar"]  # no temp left behind


@pytest.mark.parametrize("delay_ls,noted", [(6, False), (12, False), (45, True)])
def test_delay_ls_larger_than_T_is_noted_in_one_line(tmp_path, delay_ls, noted):
    train(
        _cfg(tmp_path, "run", epochs=1, max_batches=1, delay_ls=delay_ls, scheduler=0)
    )  # randman T = 12
    notes = [
        line
        for line in (tmp_path / "run" / "log.log").read_text().splitlines()
        if "--delay-ls" in line
    ]
    if noted:
        (note,) = notes
        assert note.endswith(
            "note: --delay-ls 45 is larger than T=12 of randman: every time step carries a "
            "learning signal (the same as --delay-ls 12)"
        )
    else:
        assert notes == []


def test_load_checkpoint_refuses_non_checkpoints_in_one_line_without_unsafe_advice(
    tmp_path, non_checkpoints
):
    for path, why in non_checkpoints.items():
        with pytest.raises(checkpoint.CheckpointError) as err:
            checkpoint.load_checkpoint(path)
        msg = str(err.value)
        assert isinstance(err.value, config.ConfigError) and "\n" not in msg
        assert msg.startswith(f"{path} is not an stllr checkpoint ({why}"), msg
        assert (
            checkpoint.CHECKPOINT_EXPECTED in msg
            and "weights_only" not in msg
            and "False" not in msg
        )
    assert checkpoint.load_checkpoint(_save_state_dict(tmp_path))["w"].shape == (
        2,
    )  # a bare state_dict is fine


def _save_state_dict(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "bare.pt")
    return tmp_path / "bare.pt"


def test_resume_from_a_file_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "trial_1_last.pth.tar").write_text("not a checkpoint\n")
    with pytest.raises(
        checkpoint.CheckpointError,
        match=r"^--resume: .*trial_1_last\.pth\.tar is not an stllr checkpoint "
        r"\(it is not a torch\.save file\)",
    ):
        train(_cfg(tmp_path, "run", epochs=1, max_batches=1, resume=True))
