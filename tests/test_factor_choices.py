"""stllr.studies.factor_choices (notebook 07): the sweep grids hold the paper's factors, the paper's numbers
equal the published tables, the helpers compute what they say, the plots draw what they claim."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from stllr.analysis.stdp import stdp_window_analytic  # noqa: E402
from stllr.plotting.style import plt  # noqa: E402
from stllr.studies import factor_choices as FC  # noqa: E402
from stllr.studies import paper, sweeps  # noqa: E402
from stllr.studies.common import (  # noqa: E402
    DFA_RATE_PENALTY,
    SMALL_RANDMAN,
    SMALL_TASK_EPOCHS,
    SMALL_TASK_LR,
    SMALL_TASK_METHODS,
    SMALL_TASK_WINDOW,
    DataSpec,
    Method,
    RunResult,
)

ROOT = Path(__file__).resolve().parents[1]
SPEC_ORDER = (0.0, 1.0, -1.0)  # the spec's column order: a_post = 0, +1, -1
SPEC_NAMES = {"Gesture": "DVS Gesture", "NCALTECH101": "N-CALTECH101", "SHD": "SHD"}


def _spec_table(heading):
    """The body rows (cells stripped) of the first table under the ``## heading...`` line of
    docs/paper-results.md (the paper's results as the paper prints them)."""
    lines = (ROOT / "docs" / "paper-results.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("## " + heading))
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif rows:
            break
    return [r for r in rows[1:] if not set("".join(r)) <= set("-")]  # no header, no |---|


def _mean_std(cell):
    mean, std = (float(v) for v in cell.split("+-"))
    return mean, std


def test_paper_table2_equals_the_spec():
    rows = _spec_table("alpha_post ablation (paper Table 2")
    assert len(rows) == 4 and [r[0] for r in rows] == list(paper.PAPER_TABLE2)
    for ds, model, T, T_l, factors, *accs in rows:
        got = paper.PAPER_TABLE2[ds]
        assert (got["model"], got["T"], got["T_l"]) == (model, int(T), int(T_l))
        assert got["factors"] == tuple(float(f) for f in factors.strip("()").split(","))
        for a, cell in zip(SPEC_ORDER, accs):
            assert got["acc"][a] == _mean_std(cell)
    assert paper.TABLE2_SHD_FACTORS == paper.PAPER_TABLE2["SHD"]["factors"] == (0.5, 1.0, 1.0)


def test_paper_table5_equals_the_spec():
    rows = _spec_table("psi ablation (paper Table 5)")
    assert sum(len(v) for v in paper.PAPER_TABLE5.values()) == len(rows) == 9
    for ds, eq, *accs in rows:
        got = paper.PAPER_TABLE5[SPEC_NAMES[ds]][int(eq)]
        assert got == {a: float(v) for a, v in zip(SPEC_ORDER, accs)}
    # Table 2 repeats Table 5 where the psi matches (SHD: rational, Gesture: triangle)
    t2, t5 = paper.PAPER_TABLE2, paper.PAPER_TABLE5
    assert {a: m for a, (m, _) in t2["SHD"]["acc"].items()} == t5["SHD"][25]
    assert {a: m for a, (m, _) in t2["DVS Gesture"]["acc"].items()} == t5["DVS Gesture"][26]


def test_paper_table3_equals_the_spec():
    rows = _spec_table("Main results (paper Table 3")
    assert len(rows) == len(paper.PAPER_TABLE3) == 11
    for (ds, method, _, T, _, acc, mac, mem), got in zip(rows, paper.PAPER_TABLE3):
        assert (got["dataset"], got["T"]) == (ds, int(T))
        assert method.startswith(got["method"].split(" (")[0])
        assert (got["acc"], got["acc_std"]) == _mean_std(acc)
        assert (got["mac_e9"], got["mem_mb"]) == (float(mac), float(mem))
    # the SHD rows as the notebooks use them (00, 04, 06)
    shd = {r[1]: _mean_std(r[5]) for r in rows if r[0] == "SHD"}
    assert paper.PAPER_SHD_ACCURACY == {
        "bptt": shd["BPTT"],
        "stllr": shd["S-TLLR (BP)"],
        "stllr_dfa": shd["S-TLLR (DFA)"],
    }
    assert [(r["key"], r["method"], r["acc"], r["T"], r["T_l"]) for r in paper.PAPER_SHD_ROWS] == [
        ("stllr", "S-TLLR (BP)", shd["S-TLLR (BP)"], 100, 10),
        ("stllr_dfa", "S-TLLR (DFA)", shd["S-TLLR (DFA)"], 100, 10),
        ("bptt", "BPTT", shd["BPTT"], 100, None),
    ]
    assert paper.PAPER_SHD_SIGNALS == {"bp": shd["S-TLLR (BP)"], "dfa": shd["S-TLLR (DFA)"]}


def test_paper_fig5_factors_equal_the_spec():
    text = (ROOT / "docs" / "paper-results.md").read_text(encoding="utf-8")
    assert "5: box plots, accuracy vs lambda_pre (BP; l_post 0.2, a_post -1, a_pre 1)" in text
    assert paper.FIG5_FACTORS == {"lambda_post": 0.2, "alpha_post": -1.0, "alpha_pre": 1.0}


def test_default_grid_is_the_shared_setting_with_the_papers_factors():
    s = FC.sweep_settings()
    g = s.groups
    assert list(g) == [
        "bp",
        "bp_rate",
        "dfa",
        "dfa_plain",
        "lambda_pre",
        "lambda_pre_fast",
        "psi",
    ]
    table2 = [(0.5, 1.0, a, 1.0) for a in (-1.0, 0.0, 1.0)]  # Table 2, SHD row
    assert [m.factors for m in g["bp"]] == table2
    assert [m.factors for m in g["bp_rate"]] == [m.factors for m in g["dfa"]] == table2
    # each kind of method with its learning rate and options of the one small-task setting
    for group, kind in (("bp", "bp"), ("bp_rate", "bp_rate"), ("dfa", "dfa_rate")):
        for m in g[group]:
            _, _, _, signal, options = SMALL_TASK_METHODS[kind]
            assert (m.lr, m.feedback_mode, m.options) == (SMALL_TASK_LR[kind], signal, options)
    assert SMALL_TASK_LR["bp"] == 2e-2 and SMALL_TASK_LR["dfa_rate"] == SMALL_TASK_LR["bp_rate"]
    assert all(m.options == DFA_RATE_PENALTY for m in g["bp_rate"] + g["dfa"])
    assert [(m.feedback_mode, m.options, m.factors[2], m.lr) for m in g["dfa_plain"]] == [
        ("dfa", {}, 1.0, SMALL_TASK_LR["dfa"])
    ]
    # Fig. 5: BP, lambda_post 0.2, alpha_post -1, alpha_pre 1, lambda_pre around both betas
    assert [m.factors for m in g["lambda_pre"]] == [
        (0.2, lp, -1.0, 1.0) for lp in (0.0, 0.5, 0.75, 0.88, 0.95, 1.0)
    ]
    assert [m.factors for m in g["lambda_pre_fast"]] == [
        (0.2, lp, -1.0, 1.0) for lp in (0.5, 0.75, 0.88, 0.95, 1.0)
    ]
    assert all(m.options == {} for m in g["lambda_pre"] + g["psi"])
    assert all(m.options == {"leak": 2.0} for m in g["lambda_pre_fast"])
    assert all(
        m.feedback_mode == "bp" and m.lr == SMALL_TASK_LR["bp"]
        for m in g["lambda_pre"] + g["lambda_pre_fast"] + g["psi"]
    )
    # Table 5: psi x alpha_post with Table 2's SHD factors
    assert [(m.psi, m.factors) for m in g["psi"]] == [
        (psi, f) for psi in ("rational", "triangle", "sigmoid") for f in table2
    ]
    assert all(m.psi == "sigmoid" for gr in ("bp", "bp_rate", "dfa", "lambda_pre") for m in g[gr])
    assert all(m.mode == "stllr" and m.arch == "randman_rsnn_stllr" for m in s.methods)
    assert all(m.window == SMALL_TASK_WINDOW == 20 for m in s.methods)
    keys = [m.key for m in s.methods]
    assert len(set(keys)) == len(keys) == 30
    assert s.data.dataset == "randman" and dict(s.data.data_options) == SMALL_RANDMAN
    assert s.chance == 20.0 and s.epochs == SMALL_TASK_EPOCHS == 12
    assert s.options["sweep_epochs"] == FC.SWEEP_EPOCHS == 4
    assert s.options["group_epochs"] == {
        "bp": 12,
        "bp_rate": 12,
        "dfa": 12,
        "dfa_plain": 12,
        "lambda_pre": 4,
        "lambda_pre_fast": 4,
        "psi": 4,
    }
    assert s.options["leaks"] == {"lambda_pre": 5.0, "lambda_pre_fast": 2.0}
    assert FC.sweep_settings(epochs=3).epochs == 3
    assert FC.sweep_settings(sweep_epochs=6).options["group_epochs"]["psi"] == 6
    with pytest.raises(ValueError, match="^sweep_epochs: "):
        FC.sweep_settings(sweep_epochs=0)


def test_full_grid_is_the_papers_shd_setting(tmp_path):
    s = FC.sweep_settings(True, tmp_path, "cuda")
    assert (s.arch, s.psi, s.window, s.T, s.lr, s.epochs) == (
        "stllr_shd_net",
        "rational",
        90,
        100,
        2e-4,
        200,
    )
    assert (s.data.dataset, s.data.batch_size, s.data.data_path) == (
        "shd",
        128,
        str(tmp_path),
    )
    assert s.groups["dfa_plain"] == [] and all(
        m.options == {} for m in s.groups["dfa"]
    )  # DFA as in the paper
    assert (
        all(m.arch == "stllr_shd_net" and m.window == 90 for m in s.methods)
        and s.options["device"] == "cuda"
    )
    # no rate penalty, so no BP + penalty control; every run at the study's lr and 200 epochs
    assert "bp_rate" not in s.groups and all(m.lr is None for m in s.methods)
    assert set(s.options["group_epochs"].values()) == {200} and s.options["sweep_epochs"] == 200
    assert all(m.psi == "rational" for m in s.groups["bp"] + s.groups["lambda_pre"])
    assert [m.psi for m in s.groups["psi"]] == [p for p in FC.PSIS for _ in range(3)]
    assert s.options["leaks"] == {"lambda_pre": 5.0, "lambda_pre_fast": 2.0}


def test_full_needs_the_data(tmp_path):
    with pytest.raises(ValueError, match="DATA_PATH"):
        FC.sweep_settings(True, None)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        FC.sweep_settings(True, tmp_path / "missing")


def test_method_builders_keys_labels_and_options():
    ms = FC.alpha_post_methods(
        "randman_rsnn_stllr",
        "dfa",
        window=7,
        psi="triangle",
        lambda_post=0.2,
        lambda_pre=0.75,
        options={"rate_reg": 0.1},
        name="DFA x",
    )
    assert [m.key for m in ms] == ["dfa_a-1", "dfa_a0", "dfa_a+1"]
    assert ms[2].label == "DFA x, alpha_post +1" and ms[0].factors == (0.2, 0.75, -1.0, 1.0)
    assert ms[0].options == {"rate_reg": 0.1} and ms[0].options is not ms[1].options
    lp = FC.lambda_pre_methods("x", window=3, psi=None, lambda_pres=(0.0, 0.9))
    assert [m.key for m in lp] == ["lpre_0", "lpre_0.9"] and lp[1].factors == (0.2, 0.9, -1.0, 1.0)
    table = FC.methods_table(ms)
    assert "[0.2, 0.75, -1, 1]" in table and "rate_reg 0.1" in table and "triangle" in table


def test_paper_values_match_methods_by_alpha_post():
    bp = FC.sweep_settings().groups["bp"]
    assert FC.paper_values(bp, "SHD") == {
        "bp_a-1": (74.69, 0.47),
        "bp_a0": (77.09, 0.33),
        "bp_a+1": (78.23, 1.84),
    }
    assert FC.paper_values(bp, "N-CALTECH101", table=5, psi=27) == {
        "bp_a-1": 66.33,
        "bp_a0": 62.24,
        "bp_a+1": 53.42,
    }
    with pytest.raises(ValueError):
        FC.paper_values(bp, "SHD", table=5)
    text = FC.paper_table()
    assert "78.23 +- 1.84" in text and "psi Eq. 26" in text and len(text.splitlines()) == 2 + 4 + 9


def test_membrane_decay_is_sigmoid_of_the_leak():
    assert FC.membrane_decay("randman_rsnn_stllr") == pytest.approx(
        1 / (1 + math.exp(-5.0)), abs=1e-7
    )
    assert FC.membrane_decay("randman_rsnn_stllr", leak=2.0) == pytest.approx(
        1 / (1 + math.exp(-2.0)), abs=1e-7
    )
    assert FC.membrane_leak("randman_rsnn_stllr") == pytest.approx(5.0)
    assert FC.membrane_leak("randman_rsnn_stllr", leak=2.0) == pytest.approx(2.0)
    assert FC.membrane_decay("randman_rsnn_stllr", leak=FC.FAST_LEAK) == pytest.approx(
        0.8808, abs=1e-4
    )


def test_alpha_post_effects():
    eff = FC.alpha_post_effects({-1.0: (70.0, 3.0), 0.0: (72.0, 4.0), 1.0: (75.0, 0.0)})
    assert eff[-1.0] == pytest.approx((-2.0, 5.0)) and eff[1.0] == pytest.approx((3.0, 4.0))
    assert FC.alpha_post_effects({0.0: 50.0, 1.0: 49.0}) == {1.0: (-1.0, 0.0)}


def _fake_sweep(accs):
    """A Sweep whose trials end at the given final test accuracies {key: [acc per trial]}."""
    sw = sweeps.Sweep(labels={k: f"label {k}" for k in accs})
    for k, values in accs.items():
        m = Method(k, f"label {k}", "randman_rsnn_stllr", "stllr")
        sw[k] = [
            RunResult(m, i, i, [{"epoch": 0, "test_acc": 20.0}, {"epoch": 1, "test_acc": v}])
            for i, v in enumerate(values)
        ]
    return sw


def test_subsweep_values_and_paired_differences():
    sw = _fake_sweep(
        {"bp_a-1": [60, 62, 64], "bp_a0": [61, 65, 64], "bp_a+1": [70, 71, 72], "x": [1, 2, 3]}
    )
    bp = FC.sweep_settings().groups["bp"]
    sub = FC.subsweep(sw, bp)
    assert list(sub) == ["bp_a-1", "bp_a0", "bp_a+1"] and sub.labels["bp_a0"] == "label bp_a0"
    vals = FC.sweep_alpha_values(sw, bp)
    assert vals[1.0] == pytest.approx((71.0, 1.0)) and vals[-1.0] == pytest.approx((62.0, 2.0))
    d = FC.paired_differences(sw, "bp_a-1", "bp_a0")
    assert list(d["values"]) == [-1, -3, 0] and d["wins"] == 0 and d["n"] == 3
    assert d["mean"] == pytest.approx(-4 / 3) and d["std"] == pytest.approx(
        np.std([-1, -3, 0], ddof=1)
    )


def test_plot_alpha_post_effects_draws_the_expected_bars():
    groups = [
        dict(label="SHD (paper)", values=paper.PAPER_TABLE2["SHD"]["acc"], source="paper"),
        dict(
            label="ours",
            values={-1.0: (60.0, 3.0), 0.0: (65.0, 4.0), 1.0: (66.0, 0.0)},
            source="ours",
        ),
    ]
    fig = FC.plot_alpha_post_effects(groups)
    ax = fig.axes[0]
    bars = [
        p
        for c in ax.containers
        if isinstance(c, matplotlib.container.BarContainer)
        for p in c.patches
    ]
    assert [round(b.get_height(), 2) for b in bars] == [-2.4, 1.14, -5.0, 1.0]
    assert [bool(b.get_hatch()) for b in bars] == [
        True,
        True,
        False,
        False,
    ]  # paper hatched, ours solid
    colors = [matplotlib.colors.to_rgb(FC.ALPHA_COLORS[a]) for a in (-1.0, 1.0)]
    assert [b.get_facecolor()[:3] for b in bars[:2]] == colors
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[0].startswith("SHD (paper)") and "77.1%" in ticks[0] and "65.0%" in ticks[1]
    plt.close(fig)


def test_box_plots_draw_one_box_per_setting_and_mark_beta():
    s = FC.sweep_settings()
    g = s.groups
    rng = np.random.default_rng(0)
    sw = _fake_sweep({m.key: list(rng.uniform(30, 70, 5)) for m in s.methods})
    fig = FC.plot_alpha_post_boxes(
        sw,
        [("BP", g["bp"]), ("BP + penalty", g["bp_rate"]), ("DFA", g["dfa"])],
        extra=g["dfa_plain"],
        chance=20.0,
    )
    ax_bp, ax_rate, ax_dfa = fig.axes
    assert [t.get_text() for t in ax_bp.get_xticklabels()] == ["-1", "0", "+1"]
    assert (
        len(ax_dfa.get_xticklabels()) == 4
        and "no penalty" in ax_dfa.get_xticklabels()[3].get_text()
    )
    dots = [c for c in ax_bp.collections if c.get_offsets().shape[0] == 5]
    assert len(dots) == 3 and np.allclose(
        sorted(dots[0].get_offsets()[:, 1]), sorted(sw.accuracies("bp_a-1"))
    )
    plain = [
        ln for ln in ax_bp.get_lines() if ln.get_linestyle() == "-" and len(ln.get_xdata()) == 3
    ]
    assert plain == []  # no per-seed lines unless paired=True
    plt.close(fig)
    fig = FC.plot_lambda_pre_boxes(sw, g["lambda_pre"], beta=0.9, chance=20.0)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "0.5", "0.75", "0.88", "0.95", "1"]
    vlines = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(vlines) == 1 and vlines[0].get_xdata()[0] == pytest.approx(
        3 + 0.02 / 0.07
    )  # 0.9 between 0.88 (box 3) and 0.95 (box 4)
    plt.close(fig)


def test_paired_plots_draw_one_line_per_seed_through_its_dots():
    """paired=True: trial k's line passes through trial k's dot in every box of a panel."""
    s = FC.sweep_settings()
    g = s.groups
    rng = np.random.default_rng(1)
    sw = _fake_sweep({m.key: list(rng.uniform(30, 70, 5)) for m in s.methods})
    fig = FC.plot_alpha_post_boxes(
        sw, [("BP", g["bp"]), ("DFA", g["dfa"])], extra=g["dfa_plain"], paired=True
    )
    for ax, methods in zip(fig.axes, (g["bp"], g["dfa"])):
        lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 3 and ln.get_alpha()]
        assert len(lines) == 5  # one per trial, none through the extra (plain DFA) box
        dots = {}
        for c in ax.collections:
            off = c.get_offsets()
            if off.shape[0] == 5:
                dots[int(round(off[:, 0].mean()))] = off
        for k, ln in enumerate(lines):
            expect = [sw.accuracies(m.key)[k] for m in methods]
            assert np.allclose(ln.get_ydata(), expect)
            for box, (x, y) in enumerate(zip(ln.get_xdata(), ln.get_ydata())):
                assert np.allclose(dots[box][k], (x, y))  # the same jittered position
    plt.close(fig)
    fig, axes = plt.subplots(1, 2)
    out = FC.plot_lambda_pre_boxes(sw, g["lambda_pre_fast"], beta=0.88, ax=axes[1], paired=True)
    assert out is fig and not axes[0].get_lines()
    lines = [ln for ln in axes[1].get_lines() if len(ln.get_xdata()) == 5 and ln.get_alpha()]
    assert len(lines) == 5 + 1  # a line per trial and the line of the means
    vlines = [ln for ln in axes[1].get_lines() if ln.get_linestyle() == "--"]
    assert vlines[0].get_xdata()[0] == pytest.approx(2.0)  # beta 0.88 on the box of 0.88
    plt.close(fig)


def test_paired_alpha_effects_are_mean_and_std_of_per_seed_differences():
    sw = _fake_sweep({"bp_a-1": [60, 62, 70], "bp_a0": [61, 65, 64], "bp_a+1": [70, 71, 75]})
    bp = FC.sweep_settings().groups["bp"]
    eff = FC.paired_alpha_effects(sw, bp)
    d_minus, d_plus = np.array([-1, -3, 6]), np.array([9, 6, 11])
    assert eff[-1.0] == pytest.approx((d_minus.mean(), d_minus.std(ddof=1)))
    assert eff[1.0] == pytest.approx((d_plus.mean(), d_plus.std(ddof=1)))
    # the unpaired spread of the same numbers is another (here larger) quantity
    unpaired = FC.alpha_post_effects(FC.sweep_alpha_values(sw, bp))
    assert unpaired[1.0][1] > eff[1.0][1]
    with pytest.raises(ValueError, match="^methods: "):
        FC.paired_alpha_effects(sw, [bp[0], bp[2]])


def test_plot_alpha_post_effects_draws_given_paired_effects():
    groups = [
        dict(
            label="ours",
            values={-1.0: (60.0, 3.0), 0.0: (65.0, 4.0), 1.0: (66.0, 0.0)},
            effects={-1.0: (-4.0, 1.5), 1.0: (2.0, 0.5)},
            source="ours",
        )
    ]
    fig = FC.plot_alpha_post_effects(groups)
    ax = fig.axes[0]
    bars = [
        p
        for c in ax.containers
        if isinstance(c, matplotlib.container.BarContainer)
        for p in c.patches
    ]
    assert [round(b.get_height(), 2) for b in bars] == [-4.0, 2.0]
    caps = [c for c in ax.containers if isinstance(c, matplotlib.container.ErrorbarContainer)]
    spans = sorted(
        float(np.ptp(seg[:, 1])) for c in caps for lc in c.lines[2] for seg in lc.get_segments()
    )
    assert spans == pytest.approx([1.0, 3.0])  # 2 x the given errors
    assert "65.0%" in ax.get_xticklabels()[0].get_text()
    plt.close(fig)


def test_psi_table_sets_ours_beside_table5():
    g = FC.sweep_settings().groups
    values = {m.key: [50.0 + i, 52.0 + i] for i, m in enumerate(g["psi"])}
    sw = _fake_sweep(values)
    text = FC.psi_table(sw, g["psi"], "SHD")
    lines = text.splitlines()
    assert len(lines) == 2 + 3
    rational = next(line for line in lines if line.startswith("rational (Eq. 25)"))
    assert "51.0 +- 1.4" in rational and "53.0 +- 1.4" in rational  # alpha_post -1 and +1
    for a in (-1.0, 0.0, 1.0):
        assert f"{paper.PAPER_TABLE5['SHD'][25][a]:.2f}" in rational
    sigmoid = next(line for line in lines if line.startswith("sigmoid (Eq. 27)"))
    assert f"{paper.PAPER_TABLE5['SHD'][27][1.0]:.2f}" in sigmoid
    assert "trials" in lines[0] and " 2 " in rational


def test_merge_sweeps_keeps_order_labels_and_refuses_a_key_twice():
    a = _fake_sweep({"x": [1.0], "y": [2.0]})
    b = _fake_sweep({"z": [3.0]})
    a.settings, b.settings = {"epochs": 12}, {"epochs": 4}
    m = FC.merge_sweeps(a, b)
    assert list(m) == ["x", "y", "z"] and m.labels["z"] == "label z"
    assert m.settings == {"parts": [{"epochs": 12}, {"epochs": 4}]}
    assert list(m.accuracies("z")) == [3.0]
    with pytest.raises(ValueError, match="^parts: "):
        FC.merge_sweeps(a, _fake_sweep({"x": [0.0]}))


def test_factor_windows_plot_the_analytic_windows():
    dts = np.arange(-4, 6)
    fig = FC.plot_factor_windows(dts, beta=0.99)
    a, b = fig.axes
    lines = {ln.get_label(): ln for ln in a.get_lines()}
    for alpha in (-1.0, 0.0, 1.0):
        name = f"alpha_post {'0' if alpha == 0 else f'{alpha:+g}'}"
        assert np.allclose(
            lines[name].get_ydata(), stdp_window_analytic(dts, [0.5, 1.0, alpha, 1.0])
        )
    lines = {ln.get_label(): ln for ln in b.get_lines()}
    assert np.allclose(lines["lambda_pre 0.5"].get_ydata(), 0.5 ** np.arange(6))
    assert np.allclose(lines["membrane beta^dt (beta = 0.990)"].get_ydata(), 0.99 ** np.arange(6))
    plt.close(fig)


def test_factor_windows_label_the_gradient_and_draw_each_beta():
    fig = FC.plot_factor_windows(np.arange(-2, 4), beta=(0.99, 0.88))
    a, b = fig.axes
    assert "dL/dW for delta = +1" in a.get_ylabel() and "-lr" in a.get_ylabel()
    assert "dL/dW for delta = +1" in b.get_ylabel()
    lines = {ln.get_label(): ln for ln in b.get_lines()}
    assert np.allclose(lines["membrane beta^dt (beta = 0.880)"].get_ydata(), 0.88 ** np.arange(4))
    assert np.allclose(lines["membrane beta^dt (beta = 0.990)"].get_ydata(), 0.99 ** np.arange(4))
    plt.close(fig)


def test_grid_methods_train(tmp_path):
    """Every kind of method in the grid builds and trains (BP, DFA with the rate penalty, plain DFA)."""
    tiny = dict(
        SMALL_RANDMAN,
        n_classes=3,
        n_steps=10,
        n_units=30,
        n_train_per_class=8,
        n_test_per_class=4,
    )
    data = DataSpec(
        "randman", data_path=str(tmp_path), data_options=tiny, batch_size=8, val_batch_size=12
    )
    g = FC.sweep_settings().groups
    methods = [
        Method(**{**m.__dict__, "window": 5}) for m in (g["bp"][0], g["dfa"][2], g["dfa_plain"][0])
    ]
    sw = sweeps.run_trials(methods, data, trials=1, epochs=1, lr=4e-3, workers=1, progress=False)
    assert list(sw) == ["bp_a-1", "dfa_a+1", "dfa_plain_a+1"]
    assert all(len(v) == 1 and len(v[0].history) == 2 for v in sw.values())


def test_run_sweeps_trains_each_group_with_its_epochs_and_trials(tmp_path):
    """run_sweeps: each group for its epochs, the psi group with psi_trials, paired seeds; the
    same numbers as run_trials called on one group; a method that trains as one of a longer group
    is read from the longer runs, and equals a run of its own."""
    import dataclasses

    tiny = dict(
        SMALL_RANDMAN, n_classes=3, n_steps=10, n_units=30, n_train_per_class=8, n_test_per_class=4
    )
    data = DataSpec(
        "randman", data_path=str(tmp_path), data_options=tiny, batch_size=8, val_batch_size=12
    )
    s = FC.sweep_settings(epochs=2, sweep_epochs=1)
    small = lambda ms: [Method(**{**m.__dict__, "window": 5}) for m in ms]  # noqa: E731
    psi = {m.key: m for m in s.groups["psi"]}
    groups = {
        "bp": small(s.groups["bp"][:1]),
        "lambda_pre_fast": small(s.groups["lambda_pre_fast"][:1]),
        "psi": small([psi["psi_rational_a-1"], psi["psi_sigmoid_a-1"]]),
    }
    s = dataclasses.replace(s, data=data, groups=groups)
    plan = FC.sweep_plan(s, trials=2, psi_trials=1)
    assert plan["reused"] == {"psi_sigmoid_a-1": ("bp_a-1", 1, 1)}
    assert (plan["runs"], plan["run_epochs"]) == (2 + 2 + 1, 2 * 2 + 2 * 1 + 1 * 1)
    assert FC.sweep_plan(s, trials=2, psi_trials=1, reuse=False)["runs"] == 6
    assert FC.sweep_plan(s, trials=2, psi_trials=3)["reused"] == {}  # more trials than the source
    sw = FC.run_sweeps(s, trials=2, psi_trials=1, workers=1)
    assert list(sw) == ["bp_a-1", "lpre_fast_0.5", "psi_rational_a-1", "psi_sigmoid_a-1"]
    assert [len(sw[k]) for k in sw] == [2, 2, 1, 1]
    assert [len(sw[k][0].history) - 1 for k in sw] == [2, 1, 1, 1]  # epochs per group
    assert [r.seed for r in sw["bp_a-1"]] == [0, 1] and sw["psi_rational_a-1"][0].seed == 0
    alone = sweeps.run_trials(groups["bp"], data, trials=2, epochs=2, workers=1, progress=False)
    assert list(alone.accuracies("bp_a-1")) == list(sw.accuracies("bp_a-1"))
    own = sweeps.run_trials(groups["psi"][1:], data, trials=1, epochs=1, workers=1, progress=False)
    got = sw["psi_sigmoid_a-1"][0]
    assert got.method.key == "psi_sigmoid_a-1" and got.seconds == 0.0
    for key in ("test_acc", "test_loss", "train_acc", "train_loss"):
        assert [h[key] for h in got.history] == [h[key] for h in own["psi_sigmoid_a-1"][0].history]
    assert sw["lpre_fast_0.5"][0].method.options == {"leak": 2.0}
    with pytest.raises(ValueError, match="^groups: "):
        FC.run_sweeps(s, groups=["nope"])


def test_the_notebooks_plan_reuses_the_psi_grids_sigmoid_row():
    s = FC.sweep_settings()
    plan = FC.sweep_plan(s, trials=5, psi_trials=3)
    assert plan["reused"] == {f"psi_sigmoid_a{a}": (f"bp_a{a}", 4, 3) for a in ("-1", "0", "+1")}
    assert plan["runs"] == 10 * 5 + 11 * 5 + 6 * 3
    assert plan["run_epochs"] == 10 * 5 * 12 + 11 * 5 * 4 + 6 * 3 * 4


def test_full_grid_runs_on_shd_files(tmp_path):
    """The FULL code path (stllr_shd_net, real SHD file format, cache) on a tiny offline SHD fixture."""
    from stllr.data import fixtures

    for train in (True, False):
        fixtures.write_shd(tmp_path, train=train, n_samples=4)
    s = FC.sweep_settings(True, tmp_path, epochs=1)
    data = DataSpec(**{**s.data.as_dict(), "batch_size": 2, "val_batch_size": 4})
    methods = [s.groups["dfa"][2], s.groups["lambda_pre"][0]]
    sw = sweeps.run_trials(
        methods,
        data,
        trials=1,
        epochs=s.epochs,
        lr=s.lr,
        workers=1,
        progress=False,
        cache_dir=tmp_path / "cache",
    )
    assert list(sw) == ["dfa_a+1", "lpre_0"] and len(list((tmp_path / "cache").glob("*.json"))) == 2
    assert sw["dfa_a+1"][0].num_parameters > 300_000  # the 700 -> 450 -> 20 SHD network
