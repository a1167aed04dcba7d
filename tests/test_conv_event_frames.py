"""stllr.studies.conv_event_frames (notebook 11): the study's configuration is the one the notebook
describes, a tiny run through the study machinery gives well-formed results, bad input fails with
one clear line, and a Conv2dSTLLR layer's gradient over a learning window equals the rule written
out in plain torch with autograd doing the convolution and the standardisation (float64)."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from stllr.studies import accuracy_vs_bptt, sweeps  # noqa: E402
from stllr.studies import conv_event_frames as cef  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "11_conv_event_frames.ipynb"
TOL = 1e-12


def _parameters():
    nb = json.loads(NOTEBOOK.read_text())
    (cell,) = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    out = {}
    for node in ast.parse("".join(cell["source"])).body:
        out[node.targets[0].id] = ast.literal_eval(node.value)
    return out, nb


# ------------------------------------------------------------------------------ configuration
def test_config_is_the_papers_gesture_setting_on_moving_shapes():
    c = cef.study_config()
    assert not c.full and c.data.dataset == "moving_shapes"
    assert dict(c.data.data_options) == cef.SHAPES_TASK
    assert (c.T, c.window, c.T - c.window) == (20, 5, 15)  # Gesture: last 5 of 20 (T_l = 15)
    assert tuple(c.factors) == (0.2, 0.75, -1.0, 1.0) and c.psi == "triangle"
    assert (c.arch, c.twin) == ("shapes_cnn_stllr", "shapes_cnn_bptt")
    assert c.options["model_options"] == {"channels": [16, 32]}
    assert c.epochs == cef.SHAPES_EPOCHS and c.optimizer == "Adam" and c.data.batch_size == 16
    assert c.num_classes == 4 and c.chance == 25.0
    stllr, bptt = c.methods
    assert (stllr.key, stllr.mode, stllr.window, stllr.lr) == ("stllr", "stllr", 5, 1e-2)
    assert (bptt.key, bptt.mode, bptt.arch, bptt.lr) == ("bptt", "bptt", "shapes_cnn_bptt", 5e-3)
    assert [m.key for m in cef.window_methods(c)] == [f"d{d}" for d in cef.SHAPES_WINDOWS if d != 5]
    assert all(m.mode == "stllr" and m.lr == stllr.lr for m in cef.window_methods(c))


def test_the_rates_used_are_the_recorded_sweeps_choice():
    import stllr

    assert cef.SHAPES_LR_SWEEP_VERSION == stllr.__version__, (
        f"the recorded learning-rate sweep of notebook 11 was made by stllr "
        f"{cef.SHAPES_LR_SWEEP_VERSION}, this is {stllr.__version__}: rerun notebook 11 with "
        "LR_SWEEP = True and record its means in conv_event_frames.SHAPES_LR_SWEEP"
    )
    assert list(cef.SHAPES_LR_SWEEP) == [m.key for m in cef.study_config().methods]
    assert all(tuple(by_lr) == cef.SHAPES_LR_GRID for by_lr in cef.SHAPES_LR_SWEEP.values())
    rows = cef.recorded_lr_rows(cef.study_config())
    chosen = accuracy_vs_bptt.choose_lr(rows)
    assert chosen == cef.SHAPES_LR
    assert {r["lr"] for r in rows} == set(cef.SHAPES_LR_GRID)
    assert sum(r["chosen"] for r in rows) == 2
    assert "<" in accuracy_vs_bptt.lr_table(rows)


def test_notebook_parameters_and_calls_match_the_module():
    params, nb = _parameters()
    assert params["TRIALS"] >= 3 and params["EPOCHS"] is None and params["FULL"] is False
    assert params["LR_SWEEP"] is False
    source = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "cef.study_config(FULL, DATA_PATH, EPOCHS)" in source
    assert "sweeps.run_trials(config.methods + w_methods" in source
    assert "cef.memory_rows(config" in source


def test_full_is_the_dvs_gesture_vgg9():
    c = cef.study_config(full=True, data_path="/nonexistent/datasets")
    assert c.full and c.data.dataset == "dvsgesture" and c.data.data_path == "/nonexistent/datasets"
    assert (c.arch, c.twin, c.num_classes, c.T, c.window) == (
        "dvs_vgg_stllr",
        "dvs_vgg_bptt",
        11,
        20,
        5,
    )
    assert c.epochs == 300 and c.lr == 1e-3 and c.data.batch_size == 16
    assert all(m.lr is None for m in c.methods)  # one rate for both, as the paper


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: cef.study_config(full=True), "data_path"),
        (lambda: cef.study_config(epochs=2.5), "epochs"),
        (lambda: cef.study_config(epochs=0), "epochs"),
        (lambda: cef.window_methods(cef.study_config(), [0]), "windows"),
        (lambda: cef.window_methods(cef.study_config(), [21]), "windows"),
        (lambda: cef.lr_methods(cef.study_config(), [-1e-3]), "grid"),
        (lambda: cef.make_conv_problem(window=0), "window"),
        (lambda: cef.make_conv_problem(steps=4, window=5), "window"),
        (lambda: cef.make_conv_problem(batch=0), "batch"),
    ],
)
def test_bad_input_raises_one_line_naming_the_argument(call, name):
    with pytest.raises(ValueError) as err:
        call()
    msg = str(err.value)
    assert "\n" not in msg and name in msg


# ------------------------------------------------------------------------------ a tiny run
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The study on an 8 x 8 task of 16 + 8 samples, 1 epoch, 2 seeds, in this process."""
    path = tmp_path_factory.mktemp("shapes")
    c = cef.study_config(data_path=str(path), epochs=1)
    task = dict(cef.SHAPES_TASK, size=8, n_train_per_class=4, n_test_per_class=2, shape_size=(2, 3))
    c.data = dataclasses.replace(c.data, data_options=task, val_batch_size=8)
    c.methods = cef.comparison_methods(c)
    w = cef.window_methods(c)
    runs = sweeps.run_trials(
        c.methods + w, c.data, trials=2, epochs=1, workers=0, progress=False, seed=3
    )
    return c, runs, w


def test_tiny_run_gives_well_formed_results(tiny):
    c, runs, w = tiny
    main = runs.subset([m.key for m in c.methods])
    windows = runs.subset([m.key for m in w])
    rows = cef.comparison_rows(main)
    assert [r["key"] for r in rows] == ["stllr", "bptt"]
    for r in rows:
        assert r["n"] == 2 and 0 <= r["test"] <= 100 and 0 <= r["train"] <= 100
        assert r["epoch_s"] > 0 and r["lr"] == cef.SHAPES_LR[r["key"]]
    table = cef.comparison_table(rows)
    assert "S-TLLR (BP), last 5 of 20 steps" in table and "s per epoch" in table
    test = cef.window_accuracies(main, windows, c, "test")
    train = cef.window_accuracies(main, windows, c, "train")
    assert list(test) == sorted(cef.SHAPES_WINDOWS) == list(train)
    assert np.array_equal(test[5], main.accuracies("stllr"))
    assert all(len(v) == 2 for v in test.values())
    assert "learning steps d" in cef.window_table(test, train, c.T)
    with pytest.raises(ValueError, match="metric"):
        cef.window_accuracies(main, windows, c, "best")
    fig = cef.plot_accuracy(main, test, train, c)
    assert len(fig.axes) == 2
    train_set, _, _ = c.data.load()
    fig = cef.plot_samples(train_set, [0, 10, 19], window=5)
    assert len(fig.axes) == 4 * 3
    with pytest.raises(ValueError, match="steps"):
        cef.plot_samples(train_set, [20])


def test_tiny_run_trains_with_each_methods_own_mode_and_window(tiny):
    _, runs, _ = tiny
    assert runs["stllr"][0].method.window == 5 and runs["d20"][0].method.window == 20
    assert runs["bptt"][0].method.mode == "bptt"
    # the same seed gives the S-TLLR methods the same initial test accuracy (same weights, data)
    assert runs["stllr"][0].history[0]["test_acc"] == runs["d20"][0].history[0]["test_acc"]


def test_memory_rows_are_exact_and_ordered(tiny):
    c, _, _ = tiny
    a = cef.memory_rows(c, batch_size=6)
    b = cef.memory_rows(c, batch_size=6)
    assert [r["key"] for r in a] == ["stllr_step", "stllr", "bptt"]
    strip = [{k: v for k, v in r.items() if k != "peak_increase"} for r in a]
    assert strip == [{k: v for k, v in r.items() if k != "peak_increase"} for r in b]
    m = {r["key"]: r for r in a}
    assert m["stllr_step"]["saved"] == m["stllr"]["saved"] > 0
    assert m["stllr_step"]["deferred"] == 0 < m["stllr"]["deferred"]
    assert m["bptt"]["deferred"] == 0
    assert m["bptt"]["saved"] > 10 * m["stllr"]["saved"]  # 20 steps' maps against one step's
    assert all(r["total"] == r["saved"] + r["deferred"] + r["state"] for r in a)
    assert "saved for backward kB" in cef.memory_table(a)
    assert len(cef.plot_memory(a).axes) == 1
    with pytest.raises(ValueError, match="batch_size"):
        cef.memory_rows(c, batch_size=0)


# ------------------------------------------------------------------------------ the rule
@pytest.mark.parametrize(
    "factors", [(0.2, 0.75, -1.0, 1.0), (0.5, 0.9, 0.7, 0.5), (0.2, 0.75, 0.0, 1.0)]
)
@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 0)])
@pytest.mark.parametrize("chunk", [0, 2, 16])
def test_conv_layer_equals_the_rule_by_autograd(factors, stride, padding, chunk):
    p = cef.make_conv_problem(factors=factors, stride=stride, padding=padding, seed=1)
    ref = cef.conv_rule_by_autograd(p)
    got = cef.layer_grads(p, chunk=chunk)
    for name in ("weight", "gain", "bias"):
        assert got[name].dtype == torch.float64
        assert float(ref[name].abs().max()) > 1e-3, name  # not a trivially zero gradient
        assert cef.relative_error(got[name], ref[name]) < TOL, name


def test_the_reference_sees_both_terms_and_the_window():
    base = cef.make_conv_problem(seed=2)
    ref = cef.conv_rule_by_autograd(base)["weight"]
    no_post = cef.make_conv_problem(factors=(0.2, 0.75, 0.0, 1.0), seed=2)
    assert cef.relative_error(cef.conv_rule_by_autograd(no_post)["weight"], ref) > 1e-3
    short = base._replace(window=1)
    assert cef.relative_error(cef.conv_rule_by_autograd(short)["weight"], ref) > 1e-3
    # the problem's layer fires sometimes, not always
    layer = base.layer
    with torch.no_grad():
        rate = float(torch.stack([layer(x) for x in base.x]).mean())
    layer.reset_state()
    assert 0.02 < rate < 0.9


def test_spike_loss_gives_delta_s_minus_y():
    s = torch.tensor([[0.0, 1.0, 1.0]], requires_grad=True)
    y = torch.tensor([[1.0, 1.0, 0.0]])
    cef.spike_loss(s, y).backward()
    assert torch.equal(s.grad, s.detach() - y)


def test_sample_per_class_finds_every_class(tiny):
    c, _, _ = tiny
    train_set, _, _ = c.data.load()
    idx = cef.sample_per_class(train_set)
    assert [int(train_set[i][1]) for i in idx] == list(range(c.num_classes))


def test_the_readout_control_trains_only_the_readout():
    """readout_method: the comparison's S-TLLR method with the conv layers frozen; a training
    batch through the library's loop moves the readout and leaves both conv layers as they were."""
    from stllr.studies.common import build_model_for
    from stllr.training.loop import train_batch

    config = cef.study_config()
    m = cef.readout_method(config)
    s = cef._method(config, "stllr")
    assert (m.key, m.mode, m.window, m.lr, m.factors) == (
        "readout",
        s.mode,
        s.window,
        s.lr,
        s.factors,
    )
    assert m.options == {**s.options, "train_conv": False}
    torch.manual_seed(0)
    info = {"num_classes": 4, "input_shape": (2, 16, 16), "T": 6}
    model = build_model_for(dataclasses.replace(m, window=3), info)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable == list(model.linear.parameters())
    opt = torch.optim.Adam(trainable, lr=1e-2)
    frames = (torch.rand(5, 6, 2, 16, 16) < 0.3).float()  # [B, T, C, H, W]
    train_batch(
        model,
        frames,
        torch.tensor([0, 1, 2, 3, 0]),
        opt,
        torch.nn.functional.cross_entropy,
        mode="stllr",
        window=3,
    )
    after = model.state_dict()
    assert all(
        torch.equal(before[k], after[k]) for k in before if k.startswith(("conv1.", "conv2."))
    )
    assert not torch.equal(before["linear.weight"], after["linear.weight"])
