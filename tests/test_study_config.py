"""stllr.studies.common.StudyConfig: the four notebook studies (00, 03, 04, 06) get one settings
type; each factory's defaults are what its notebook's prose says, FULL is the paper's SHD setting
(docs/paper-results.md through stllr.studies.paper), and a bad window or epoch count fails at once."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stllr import Factors
from stllr.studies import (
    accuracy_vs_bptt,
    common,
    factor_choices,
    learning_signals,
    paper,
    quickstart,
    sweeps,
)
from stllr.studies.common import DFA_RATE_PENALTY, SMALL_RANDMAN, StudyConfig

ROOT = Path(__file__).resolve().parents[1]
SHD = next(r for r in paper.PAPER_SHD_ROWS if r["key"] == "stllr")  # Table 3: T = 100, T_l = 10


def _prose(stem: str) -> str:
    """The notebook's markdown cells, whitespace collapsed to single spaces."""
    nb = json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text(encoding="utf-8"))
    text = " ".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    return re.sub(r"\s+", " ", text)


def _factories(tmp_path):
    """Each factory's (small, full) config."""
    return {
        "00": (quickstart.quickstart_config(), quickstart.quickstart_config(True, None, tmp_path)),
        "03": (factor_choices.sweep_settings(), factor_choices.sweep_settings(True, tmp_path)),
        "04": (accuracy_vs_bptt.study_config(), accuracy_vs_bptt.study_config(True, tmp_path)),
        "06": (
            learning_signals.signal_config(),
            learning_signals.signal_config(True, data_path=tmp_path),
        ),
    }


def test_every_factory_gives_a_study_config(tmp_path):
    for name, configs in _factories(tmp_path).items():
        for c in configs:
            assert isinstance(c, StudyConfig) and isinstance(c.data, common.DataSpec), name
            assert isinstance(c.factors, Factors) and c.chance == 100.0 / c.num_classes
            assert c.methods and all(1 <= m.window <= c.T for m in c.methods), name
            assert c.data.data_seed == 0


def test_quickstart_small_is_what_notebook_00_says():
    c = quickstart.quickstart_config()
    text = _prose("00_quickstart")
    assert (
        f"{SMALL_RANDMAN['n_units']} input units, each firing exactly once within T = {c.T} steps "
        f"(with {SMALL_RANDMAN['jitter']:g} steps of timing jitter), {c.num_classes} classes, "
        f"{c.num_classes * SMALL_RANDMAN['n_train_per_class']} training and "
        f"{c.num_classes * SMALL_RANDMAN['n_test_per_class']} test samples" in text
    )
    assert f"`100 -> 128 recurrent LIF -> {c.num_classes} leaky readout`" in text
    assert (
        f"the cross-entropy of the readout at each of the last {c.window} of the {c.T} steps, "
        f"summed (the first `T_l = {c.T - c.window}` steps carry no learning signal)" in text
    )
    assert f"at each of the last {c.window} steps calls `loss(out_t, y).backward()`" in text
    assert f"at each of the {c.window} learning steps instead of once" in text
    assert "`factors` are the paper's SHD setting `[0.5, 1, 1, 1]`" in text
    assert "`stllr.studies.common.SMALL_TASK_LR` keeps its choice" in text
    # notebook 00 is the one small-task setting (notebooks 06, 07, 08), nothing of its own
    small = common.small_task_config()
    assert dataclasses.replace(c, methods=[]) == small
    assert (c.full, c.data.dataset, dict(c.data.data_options)) == (False, "randman", SMALL_RANDMAN)
    assert (c.task, c.T, c.num_classes, c.window, c.epochs) == (
        "randman (5 classes, T = 30)",
        30,
        5,
        20,
        12,
    )
    assert (c.arch, c.twin, c.psi, c.factors) == (
        "randman_rsnn_stllr",
        "randman_rsnn_bptt",
        "sigmoid",
        (0.5, 1.0, 1.0, 1.0),
    )
    assert (c.optimizer, c.data.batch_size, c.data.val_batch_size) == ("Adam", 32, 250)
    assert quickstart.quickstart_config(epochs=10).epochs == 10
    # S-TLLR (BP) and the BPTT twin on the same (window) loss, each with notebook 08's rate
    assert [(m.key, m.arch, m.mode, m.feedback_mode, m.window, m.lr) for m in c.methods] == [
        ("stllr", "randman_rsnn_stllr", "stllr", "bp", 20, common.SMALL_TASK_LR["bp"]),
        (
            "bptt_window",
            "randman_rsnn_bptt",
            "bptt_window",
            "bp",
            20,
            common.SMALL_TASK_LR["bptt_window"],
        ),
    ]
    assert all(m.options == {} and m.psi == "sigmoid" for m in c.methods)
    assert c.groups == {} and c.options == {} and c.chance == 20.0


def test_factor_choices_small_is_what_notebook_07_says():
    c = factor_choices.sweep_settings()
    text = _prose("07_factor_choices")
    assert (
        f"{c.num_classes} classes, {SMALL_RANDMAN['n_units']} input units each firing once in "
        f"T = {c.T} steps, {c.num_classes * SMALL_RANDMAN['n_train_per_class']} training and "
        f"{c.num_classes * SMALL_RANDMAN['n_test_per_class']} test samples" in text
    )
    assert f"Chance is {c.chance:g} %" in text
    assert (
        f"psi = {c.psi} (Eq. 27), a learning signal at the last {c.window} of the {c.T} steps "
        f"(`T_l = {c.T - c.window}`" in text
    )
    # the one small-task setting, each method's learning rate as the prose lists it
    assert (c.window, c.epochs) == (common.SMALL_TASK_WINDOW, common.SMALL_TASK_EPOCHS)
    assert f"Adam, batch {c.data.batch_size}, {c.epochs} epochs: the setting" in text
    assert (c.optimizer, c.lr, c.data.batch_size) == ("Adam", common.SMALL_TASK_LR["bp"], 32)
    lr = common.SMALL_TASK_LR
    assert (
        f"BP {lr['bp']:g}, BP + rate penalty {lr['bp_rate']:g}, DFA + rate penalty "
        f"{lr['dfa_rate']:g}, plain DFA {lr['dfa']:g}" in text
    )
    kinds = {"bp": "bp", "bp_rate": "bp_rate", "dfa": "dfa_rate", "dfa_plain": "dfa"}
    for group, kind in kinds.items():
        assert all(m.lr == lr[kind] for m in c.groups[group]), group
    assert all(
        m.lr == lr["bp"] for g in ("lambda_pre", "lambda_pre_fast", "psi") for m in c.groups[g]
    )
    # the short sweeps, as the prose says
    sweep_epochs = c.options["sweep_epochs"]
    assert f"train `SWEEP_EPOCHS = {sweep_epochs}` epochs" in text
    assert f"Why the two sweeps train {sweep_epochs} epochs, not {c.epochs}" in text
    assert {g: e for g, e in c.options["group_epochs"].items() if e != c.epochs} == {
        "lambda_pre": sweep_epochs,
        "lambda_pre_fast": sweep_epochs,
        "psi": sweep_epochs,
    }
    lps = [m.factors[1] for m in c.groups["lambda_pre"]]
    assert "`lambda_pre` in {" + ", ".join(f"{lp:g}" for lp in lps) + "}" in text
    assert [m.factors[1] for m in c.groups["lambda_pre_fast"]] == lps[1:]  # "without 0"
    leak = c.options["leaks"]["lambda_pre_fast"]
    assert f"hidden `leak = {leak:g}`, `beta = sigmoid({leak:g}) = 0.88`" in text
    assert f"{len(c.methods)} settings (5 trials each, 3 for the psi grid)" in text
    assert (
        f"`rate_reg = {DFA_RATE_PENALTY['rate_reg']:g}`, "
        f"`rate_target = {DFA_RATE_PENALTY['rate_target']:g}`" in text
    )
    assert c.options["dfa_options"] == DFA_RATE_PENALTY
    assert c.options["plain_dfa_alphas"] == (1.0,) and c.options["device"] == "cpu"
    assert list(c.groups) == [
        "bp",
        "bp_rate",
        "dfa",
        "dfa_plain",
        "lambda_pre",
        "lambda_pre_fast",
        "psi",
    ]
    assert c.methods == [m for g in c.groups.values() for m in g]
    assert (c.twin, c.task, c.chance) == (None, "randman (5 classes, T = 30)", 20.0)


def test_accuracy_vs_bptt_small_is_what_notebook_08_says():
    c = accuracy_vs_bptt.study_config()
    text = _prose("08_accuracy_vs_bptt")
    assert f"once within T = {c.T} steps, {c.num_classes} classes" in text
    assert "`[lambda_post, lambda_pre, alpha_post, alpha_pre] = [0.5, 1, 1, 1]`" in text
    assert c.factors == (0.5, 1.0, 1.0, 1.0)
    assert (
        f"learning signal on the last {c.window} of {c.T} steps (`T_l = {c.T - c.window}`" in text
    )
    assert f"{c.epochs} epochs, Adam, batch {c.data.batch_size}" in text
    assert f"T = {c.T} and trains for {c.epochs} epochs" in text
    assert f"(`rate_reg = {DFA_RATE_PENALTY['rate_reg']:g}`, e-prop style)" in text
    n = c.options["validation"]
    assert f"on {300 - n} of the 300 training samples and evaluated on the other {n}" in text
    assert (c.arch, c.twin, c.psi, c.lr, c.data.batch_size) == (
        "randman_rsnn_stllr",
        "randman_rsnn_bptt",
        "sigmoid",
        2e-2,
        32,
    )
    assert c.options == {
        "windows": (1, 5, 10, 20, 30),
        "control_windows": (1, 5, 10),
        "lr_grid": (5e-3, 1e-2, 2e-2),
        "validation": 60,
    }
    assert c.chance == 20.0 and c.data.max_train is None
    assert [m.key for m in c.methods] == [
        "stllr",
        "stllr_bp_rate",
        "stllr_dfa",
        "bptt_window",
        "bptt",
    ]
    assert c.methods == accuracy_vs_bptt.comparison_methods(c)


def test_learning_signals_small_is_what_notebook_06_says():
    c = learning_signals.signal_config()
    text = _prose("06_learning_signals")
    assert (
        f"(`rate_reg = {DFA_RATE_PENALTY['rate_reg']:g}`, "
        f"`rate_target = {DFA_RATE_PENALTY['rate_target']:g}`)" in text
    )
    # the one small-task setting (common.small_task_config), as the notebook says
    assert "the one small-task setting that notebooks 00, 07 and 08 use" in text
    assert "`common.small_task_config`" in text and "`common.SMALL_TASK_LR`" in text
    assert (c.data.dataset, dict(c.data.data_options), c.num_classes, c.T, c.window) == (
        "randman",
        SMALL_RANDMAN,
        5,
        30,
        common.SMALL_TASK_WINDOW,
    )
    assert (c.optimizer, c.lr, c.data.batch_size, c.psi, c.epochs) == (
        "Adam",
        common.SMALL_TASK_LR["bp"],
        32,
        "sigmoid",
        common.SMALL_TASK_EPOCHS,
    )
    assert c.options == {"record_every": 1, "model_options": {}} and c.twin is None
    keys = ["bp", "dfa", "dfa_frozen", "dfa_rate", "bp_rate", "sdfa_rate"]
    assert [m.key for m in c.methods] == keys
    # "the three DFA variants it does not cover ... take the rate of DFA + rate penalty"
    assert "take the rate of DFA + rate penalty" in text
    lr = {m.key: m.lr for m in c.methods}
    assert lr == {
        "bp": common.SMALL_TASK_LR["bp"],
        "bp_rate": common.SMALL_TASK_LR["bp_rate"],
        "dfa_rate": common.SMALL_TASK_LR["dfa_rate"],
        "dfa": common.SMALL_TASK_LR["dfa_rate"],
        "dfa_frozen": common.SMALL_TASK_LR["dfa_rate"],
        "sdfa_rate": common.SMALL_TASK_LR["dfa_rate"],
    }
    # "W_rec (and their gain) kept at their initial values (`build_model(..., train_recurrent=False)`)"
    assert "`build_model(..., train_recurrent=False)`" in text
    assert {m.key for m in c.methods if m.options.get("train_recurrent") is False} == {"dfa_frozen"}


def test_full_configs_are_the_papers_shd_setting(tmp_path):
    """Table 3's SHD rows (T = 100, T_l = 10): stllr_shd_net, Adam lr 2e-4, batch 128, 200 epochs."""
    for name, (_, c) in _factories(tmp_path).items():
        assert (c.full, c.data.dataset, c.data.data_path, c.num_classes) == (
            True,
            "shd",
            str(tmp_path),
            20,
        ), name
        assert (c.T, c.T - c.window) == (SHD["T"], SHD["T_l"]), name
        assert (c.arch, c.optimizer, c.lr, c.epochs) == ("stllr_shd_net", "Adam", 2e-4, 200), name
        assert (c.data.batch_size, c.data.val_batch_size, dict(c.data.data_options)) == (
            128,
            128,
            {},
        )
        assert c.factors == (0.5, 1.0, 1.0, 1.0) and c.chance == 5.0 == 100.0 / 20
        assert c.task == "SHD (20 classes, T = 100)", name
    full = _factories(tmp_path)
    assert full["00"][1].psi is None and full["04"][1].psi is None and full["06"][1].psi is None
    assert full["03"][1].psi == "rational"  # Table 2 / 5's SHD setting, Eq. 25 named
    c = full["03"][1]
    assert (
        f"T = {c.T}, a window of {c.window} steps, psi {c.psi}, lr 2e-4, "
        f"batch {c.data.batch_size}, {c.epochs} epochs" in _prose("07_factor_choices")
    )
    assert full["00"][1].twin == full["04"][1].twin == "bptt_shd_net"
    assert full["04"][1].options["windows"] == (1, 10, 25, 50, 90, 100)
    assert full["06"][1].options["record_every"] == 20
    assert full["03"][1].options["dfa_options"] == {} and full["03"][1].groups["dfa_plain"] == []


def test_epochs_argument_reaches_the_config(tmp_path):
    assert quickstart.quickstart_config(True, 3, tmp_path).epochs == 3
    assert factor_choices.sweep_settings(epochs=3).epochs == 3
    assert accuracy_vs_bptt.study_config(epochs=3).epochs == 3
    assert learning_signals.signal_config(epochs=3).epochs == 3


def test_chance_equals_notebook_03s_former_values(tmp_path):
    """notebook 07 used ``100.0 / SMALL_RANDMAN["n_classes"]`` and ``100.0 / 20`` (SHD)."""
    assert factor_choices.sweep_settings().chance == 100.0 / SMALL_RANDMAN["n_classes"]
    assert factor_choices.sweep_settings(True, tmp_path).chance == 100.0 / 20


def test_bad_window_or_epochs_raise_one_line_naming_the_field():
    c = accuracy_vs_bptt.study_config()
    for bad in (0, -1, 31, 2.5, True):
        with pytest.raises(ValueError, match=r"^window: expected an integer in \[1, T=30\], got "):
            dataclasses.replace(c, window=bad)
    for bad in (0, -3, 1.5, None):
        with pytest.raises(ValueError, match=r"^epochs: expected a positive integer, got "):
            dataclasses.replace(c, epochs=bad)
    with pytest.raises(ValueError, match="^epochs: "):
        factor_choices.sweep_settings(epochs=0)
    with pytest.raises(ValueError, match="^epochs: "):
        quickstart.quickstart_config(epochs=0)
    with pytest.raises(ValueError, match=r"^window: .*T=10"):
        dataclasses.replace(c, T=10)  # the default window 25 no longer fits
    with pytest.raises(ValueError, match="^factors: "):
        dataclasses.replace(c, factors=(0.5, 1.0, 1.0))
    with pytest.raises(TypeError, match="^data: expected a stllr.studies.common.DataSpec"):
        dataclasses.replace(c, data={"dataset": "randman"})
    for bad in ("window", "epochs"):
        try:
            dataclasses.replace(c, **{bad: 0})
        except ValueError as e:
            assert "\n" not in str(e) and str(e).startswith(f"{bad}: ")


def test_data_spec_lives_in_common_and_common_does_not_import_sweeps():
    assert "DataSpec" in common.__all__ and "DataSpec" not in sweeps.__all__
    assert not hasattr(common.DataSpec, "from_config")
    code = (
        "import sys; import stllr.studies.common; sys.exit('stllr.studies.sweeps' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_small_task_method_takes_another_training_mode():
    from stllr.studies.common import small_task_config, small_task_method

    config = small_task_config()
    assert small_task_method(config, "bp").mode == "stllr"
    assert small_task_method(config, "bptt").mode == "bptt"
    online = small_task_method(config, "bp", mode="stllr_online", lr=1e-3)
    assert (online.mode, online.lr, online.arch) == ("stllr_online", 1e-3, config.arch)
