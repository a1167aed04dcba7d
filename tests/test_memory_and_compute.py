"""stllr.studies.memory_and_compute (notebook 05): the total memory of a training sequence by part,
the recorded GPU run beside this run's saved bytes, the approximate CPU peak in a fresh process,
and the analytic calculator of the notebook's widget. (The Fig. 3 sweep, MACs against the window,
Table 3 and time per step are tested in tests/test_experiments.py.)

References are written out by hand:
- the breakdown of the Fig. 3 MLP 6-5-4-1 (batch B): parameters 30+5+5+1+1 (weight, bias, gain,
  leak, threshold) + 20+4+4+1+1 + 4+1+1+1 (readout, no gain), buffers 3 x 4 factors; gradients on
  weight, bias, gain (and the readout's weight, bias); W~ + the standardisation cache per hidden
  layer 2 M N + 2 N values (the readout is not standardised); states and the saved tensors they
  share from the layer state fields (docs/measurement.md "What each method saves");
- the optimizer part against a real torch.optim.Adam step;
- Eq. 18-23 for a 3-4-2 chain: S = 3*4 + 4*2 = 20, sum N = 9.
"""

from __future__ import annotations

import pytest
import torch

from stllr.measure import sequence, state_bytes
from stllr.models.registry import build_model, get_model_spec
from stllr.studies import memory_and_compute as mc

F32 = 4
DIMS = (6, 5, 4, 1)


def _fig3_breakdown(model, mode, B, T=5, window=2):
    inputs = sequence._random_inputs((DIMS[0],), B, 0, torch.float32, "cpu")
    return mc.memory_breakdown(
        model,
        inputs,
        torch.zeros(B, 1),
        steps=T,
        mode=mode,
        window=window,
        loss_fn=mc._mse_to_zero,
        bptt_loss="last",
    )


# ----------------------------------------------------------------------------- breakdown


def test_memory_breakdown_hand_counts_stllr():
    B = 3
    s, _ = mc.fig3_models(DIMS, seed=3)
    bd = _fig3_breakdown(s, "stllr", B)
    assert (bd["T"], bd["window"], bd["mode"], bd["batch_size"]) == (5, 2, "stllr", B)
    assert bd["weights"] == (30 + 5 + 5 + 2 + 20 + 4 + 4 + 2 + 4 + 1 + 2 + 12) * F32
    assert bd["gradients"] == (30 + 5 + 5 + 20 + 4 + 4 + 4 + 1) * F32
    assert bd["optimizer"] == 2 * bd["gradients"]
    assert bd["weight_copies"] == ((2 * 30 + 2 * 5) + (2 * 20 + 2 * 4)) * F32
    # last step saves: layer 1 x, tr_in [B, 6], tr_out, psi [B, 5]; layer 2 x = s1, tr_in [B, 5],
    # tr_out, psi [B, 4]; readout tr_in [B, 4]; the loss [B, 1] (tests/test_experiments.py)
    assert bd["saved_activations"] == B * (22 + 18 + 4 + 1) * F32
    # shared with the state: pre traces (6, 5) and psi (5, 4) of the hidden layers, s1 (the
    # input of layer 2) and the readout's pre trace (4)
    assert bd["state_saved_overlap"] == B * (6 + 5 + 5 + 4 + 5 + 4) * F32
    # not saved: post traces and membranes (5, 5, 4, 4), s2 (4), the readout's membrane (1)
    assert bd["neuron_states"] == B * (5 + 5 + 4 + 4 + 4 + 1) * F32
    assert bd["neuron_states"] + bd["state_saved_overlap"] == state_bytes(s)["total"]
    assert bd["total"] == sum(bd[p] for p in mc.BREAKDOWN_PARTS)
    assert bd["last_step_at_peak"] and bd["peak"] is None


def test_memory_breakdown_hand_counts_bptt():
    B = 3
    _, b = mc.fig3_models(DIMS, seed=3)
    bd = _fig3_breakdown(b, "bptt", B, T=5)
    assert bd["weights"] == (30 + 5 + 5 + 2 + 20 + 4 + 4 + 2 + 4 + 1 + 2) * F32  # no buffers
    assert bd["gradients"] == (30 + 5 + 5 + 20 + 4 + 4 + 4 + 1) * F32
    assert bd["saved_activations"] == B * (24 * 5 + 1) * F32  # linear in T
    assert bd["state_saved_overlap"] == B * (5 + 4) * F32  # s1, s2: the next layers' inputs
    assert bd["neuron_states"] == B * (5 + 4 + 1) * F32  # the membranes
    assert bd["neuron_states"] + bd["state_saved_overlap"] == state_bytes(b)["total"]
    # the standardised weights W~ of both hidden layers, and more (the graph of W~)
    assert bd["weight_copies"] > (30 + 20) * F32


def test_optimizer_part_is_what_adam_keeps():
    s, _ = mc.fig3_models(DIMS, seed=3)
    bd = _fig3_breakdown(s, "stllr", 3)
    opt = torch.optim.Adam(s.parameters(), lr=1e-3)
    opt.step()
    moments = sum(
        t.numel() * t.element_size()
        for st in opt.state.values()
        for k, t in st.items()
        if k in ("exp_avg", "exp_avg_sq")
    )
    assert moments == bd["optimizer"]
    x = sequence._random_inputs((DIMS[0],), 3, 0, torch.float32, "cpu")
    for moments in (0, 1):  # plain SGD, SGD with momentum
        bd1 = mc.memory_breakdown(
            s, x, torch.zeros(3, 1), steps=3, loss_fn=mc._mse_to_zero, optimizer_moments=moments
        )
        assert bd1["optimizer"] == moments * bd1["gradients"]


def test_breakdown_scales_exactly_with_the_batch():
    s, b = mc.fig3_models(DIMS, seed=3)
    for model, mode in ((s, "stllr"), (b, "bptt")):
        small = _fig3_breakdown(model, mode, 3)
        model.zero_grad(set_to_none=True)
        large = _fig3_breakdown(model, mode, 6)
        scaled = mc.breakdown_at_batch(small, 6)
        for part in mc.BREAKDOWN_PARTS + ("total", "batch_size", "state_saved_overlap"):
            assert scaled[part] == large[part], (mode, part)
        for part in set(mc.BREAKDOWN_PARTS) - set(mc.BATCH_PARTS):
            assert small[part] == large[part], (mode, part)


def test_breakdown_at_batch_errors():
    bd = {p: 8 for p in mc.BREAKDOWN_PARTS}
    bd.update(batch_size=3, total=48, state_saved_overlap=0, peak=None)
    with pytest.raises(ValueError, match="neuron_states"):
        mc.breakdown_at_batch(bd, 6)  # 8 bytes are not a whole number per sample of 3
    with pytest.raises(ValueError, match="batch_size"):
        mc.breakdown_at_batch(dict(bd, neuron_states=9, saved_activations=9), 0)


def test_memory_breakdown_argument_errors():
    s, _ = mc.fig3_models(DIMS, seed=3)
    x = sequence._random_inputs((6,), 3, 0, torch.float32, "cpu")
    with pytest.raises(ValueError, match="optimizer_moments"):
        mc.memory_breakdown(s, x, torch.zeros(3, 1), steps=2, optimizer_moments=-1)
    with pytest.raises(ValueError, match="steps"):
        mc.memory_breakdown(s, x, torch.zeros(3, 1), steps=0)
    with pytest.raises(ValueError, match="window"):
        mc.memory_breakdown(s, x, torch.zeros(3, 1), steps=2, window=3)


def test_memory_vs_T_breakdown_leaves_the_rows_identical():
    plain = mc.memory_vs_T(Ts=(3, 6), batch_size=3, dims=DIMS, window=2)
    with_bd = mc.memory_vs_T(Ts=(3, 6), batch_size=3, dims=DIMS, window=2, breakdown=True)
    for a, b in zip(plain, with_bd):
        assert {k: v for k, v in b.items() if not k.endswith("_breakdown")} == a
        for name in ("stllr", "bptt"):
            assert b[f"{name}_breakdown"]["saved_activations"] == a[f"{name}_saved_bytes"]
            assert b[f"{name}_breakdown"]["saved_peak_bytes"] == a[f"{name}_saved_bytes_all"]
            assert b[f"{name}_breakdown"]["T"] == a["T"]


def test_pair_breakdown_on_a_registered_model():
    torch.manual_seed(0)
    s = build_model("randman_rsnn_stllr")
    b = build_model(get_model_spec("randman_rsnn_stllr").twin)
    short = mc.pair_breakdown(s, b, T=4, window=2, batch_size=3)
    long = mc.pair_breakdown(s, b, T=8, window=2, batch_size=3)
    assert short["stllr"]["window"] == 2 and short["bptt"]["window"] == 4
    # S-TLLR: nothing depends on T; BPTT: the saved activations grow with it
    for part in mc.BREAKDOWN_PARTS:
        assert short["stllr"][part] == long["stllr"][part], part
    assert long["bptt"]["saved_activations"] > 1.5 * short["bptt"]["saved_activations"]
    for pb in (short, long):
        for bd in pb.values():
            assert bd["optimizer"] == 2 * bd["gradients"]
    assert all(p.grad is None for p in s.parameters())  # left clean for the next use


def _fake_bd(T, B, act, rest=100, states=10):
    bd = dict(
        T=T,
        batch_size=B,
        weights=rest,
        gradients=0,
        optimizer=0,
        weight_copies=0,
        neuron_states=states,
        saved_activations=act,
        state_saved_overlap=0,
        peak=None,
    )
    bd["total"] = sum(bd[p] for p in mc.BREAKDOWN_PARTS)
    return bd


def test_breakdown_rows_and_where_activations_dominate():
    # per sample: BPTT saves 10 T bytes, S-TLLR 20; 100 weight bytes and 10 state bytes per sample
    cases = [(f"T={T}", _fake_bd(T, 1, 20), _fake_bd(T, 1, 10 * T)) for T in (1, 5, 20)]
    rows = mc.breakdown_rows(cases, [1, 10])
    assert [(r["T"], r["batch"]) for r in rows] == [
        (1, 1),
        (1, 10),
        (5, 1),
        (5, 10),
        (20, 1),
        (20, 10),
    ]
    r = rows[3]  # T = 5, batch 10: BPTT 100 + 100 + 500, S-TLLR 100 + 100 + 200
    assert r["bptt_total_mb"] == pytest.approx(700 / 1e6)
    assert r["stllr_total_mb"] == pytest.approx(400 / 1e6)
    assert r["total_ratio"] == pytest.approx(700 / 400)
    assert r["saved_ratio"] == pytest.approx(500 / 200)
    assert r["bptt_act_share"] == pytest.approx(500 / 700)
    assert r["bptt_weight_share"] == pytest.approx(100 / 700)
    # BPTT's activations pass half of the total: batch 1 at T = 20 (200 of 310), batch 10 at T = 5
    assert mc.activations_dominate_from(rows) == {1: 20, 10: 5}
    # S-TLLR's: never at batch 1 (20 of 130), at batch 10 (200 of 400: not more than half) neither
    assert mc.activations_dominate_from(rows, "stllr") == {1: None, 10: None}
    with pytest.raises(ValueError, match="method"):
        mc.activations_dominate_from(rows, "dfa")


# ----------------------------------------------------------------------------- recorded run, peak


def test_read_recorded_fig3_from_the_stored_log():
    rec = mc.read_recorded_fig3()
    assert rec["batch_size"] == 512 and rec["device"] == "cuda" and rec["gpu"] == "H200"
    assert rec["peak_method"] == "torch.cuda.max_memory_allocated"
    assert [r["T"] for r in rec["rows"]] == [10, 25, 50, 100, 200, 300, 1000]
    r100 = next(r for r in rec["rows"] if r["T"] == 100)
    assert (r100["stllr_saved_mb"], r100["bptt_saved_mb"]) == (26.626, 1433.602)
    assert (r100["stllr_peak_mb"], r100["bptt_peak_mb"]) == (67.039, 1528.479)
    assert r100["peak_ratio"] == pytest.approx(1528.479 / 67.039)
    assert r100["saved_ratio"] == 53.8 and r100["ratio_T2"] == 50.0
    last = rec["rows"][-1]
    assert last["bptt_saved_mb"] is None and last["peak_ratio"] is None


LOG = """== memory
Fig. 3 setup: MLP 4-3-1, loss at the last step, batch 6, cuda
machine: some CPU, torch 2.0, 2 threads, GPU NVIDIA A100-SXM4-80GB
MB (1e6 bytes). saved = ...
    T S-TLLR saved       all  analytic | BPTT saved       all  analytic |   ratio    T/2 | peak+ S-TLLR peak+ BPTT
    2        1.000     1.000     0.500 |      2.000     3.000     1.000 |     2.0    1.0 |        4.000     10.000
    4        1.000     1.000     0.500 |      4.000     5.000     2.000 |     4.0    2.0 |        4.000      -
peak+: peak memory increase during the sequence, torch.cuda.max_memory_allocated
== next section
"""


def test_read_recorded_fig3_parses_a_log(tmp_path):
    p = tmp_path / "run.log"
    p.write_text(LOG)
    rec = mc.read_recorded_fig3(p)
    assert (rec["batch_size"], rec["device"], rec["gpu"]) == (6, "cuda", "A100-SXM4-80GB")
    assert rec["machine"].startswith("some CPU")
    assert [r["T"] for r in rec["rows"]] == [2, 4]
    assert rec["rows"][0]["peak_ratio"] == 2.5 and rec["rows"][1]["bptt_peak_mb"] is None
    p.write_text("== nothing here\n")
    with pytest.raises(ValueError, match="Fig. 3 setup"):
        mc.read_recorded_fig3(p)


def test_saved_bytes_here_scale_to_the_recorded_gpu_run():
    """This CPU's exact saved bytes at batch 8 x 64 = the H200 run's at batch 512."""
    rows = mc.memory_vs_T(Ts=(10,), batch_size=8)
    out = mc.recorded_vs_measured(rows, mc.read_recorded_fig3())
    assert len(out) == 1 and out[0]["saved_matches"]
    assert out[0]["bptt_saved_scaled_mb"] == 143.362
    assert out[0]["peak_ratio_recorded"] == pytest.approx(208.113 / 100.681)
    wrong = [dict(rows[0], bptt_saved_bytes=rows[0]["bptt_saved_bytes"] + 100)]
    assert not mc.recorded_vs_measured(wrong, mc.read_recorded_fig3())[0]["saved_matches"]


def test_cpu_peak_in_a_fresh_process():
    r = mc.cpu_peak_subprocess("bptt", T=3, batch_size=3, dims=(20, 30, 30, 1), timeout=120)
    assert (r["method"], r["T"], r["batch_size"]) == ("bptt", 3, 3)
    assert r["approximate"] is True
    assert r["memory_kind"] in ("cpu_peak_rss_approximate", "cpu_process_max_rss_approximate")
    assert r["peak_increase_bytes"] >= 0 and r["peak_bytes"] >= r["start_bytes"] > 0
    both = mc.cpu_peaks(T=2, batch_size=3, dims=(20, 30, 1), timeout=120)
    assert sorted(both) == ["bptt", "stllr"] and all(v["T"] == 2 for v in both.values())
    with pytest.raises(ValueError, match="methods"):
        mc.cpu_peaks([], T=2)
    with pytest.raises(ValueError, match="method"):
        mc.cpu_peak_subprocess("dfa", T=3)
    with pytest.raises(ValueError, match="T"):
        mc.cpu_peak_subprocess("stllr", T=0)


# ----------------------------------------------------------------------------- calculator


def test_parse_layer_sizes():
    assert mc.parse_layer_sizes("700-450-20") == (700, 450, 20)
    assert mc.parse_layer_sizes(" 1000, 1000 x 1 ") == (1000, 1000, 1)
    for bad in ("700", "a-b", "0-3", "700--", ""):
        with pytest.raises(ValueError, match="text"):
            mc.parse_layer_sizes(bad)
    with pytest.raises(ValueError, match="text"):
        mc.parse_layer_sizes(700)


def test_analytic_breakdown_against_the_equations():
    # chain 3-4-2: S = 3*4 + 4*2 = 20 weights, sum N = 9; T = 10, d = 4, batch 5, float32
    r = mc.analytic_breakdown((3, 4, 2), T=10, window=4, alpha_post=-1.0, batch_size=5)
    assert (r["S"], r["sum_neurons"], r["T_l"]) == (20, 9, 6)
    s, b = r["stllr"]["values"], r["bptt"]["values"]
    assert (s["weights"], s["gradients"], s["optimizer"]) == (20, 20, 40)
    assert s["activations"] == 2 * 9 * 5  # Eq. 19 x batch
    assert b["activations"] == 10 * 9 * 5  # Eq. 18 x batch
    assert (s["total"], b["total"]) == (170, 530)
    assert r["stllr"]["bytes"]["total"] == 170 * F32 and r["bptt"]["bytes"]["activations"] == 1800
    assert r["memory_ratio"] == 10 / 2  # Eq. 22
    assert r["total_ratio"] == pytest.approx(530 / 170)
    assert r["bptt"]["macs"] == 2 * 10 * 20 * 5  # Eq. 20
    assert r["stllr"]["macs"] == 3 * 4 * 20 * 5  # Eq. 21
    assert r["mac_ratio"] == pytest.approx(2 * 10 / (3 * 4))  # Eq. 23
    r0 = mc.analytic_breakdown("3-4-2", T=10, window=4, alpha_post=0.0, batch_size=5)
    assert r0["stllr"]["macs"] == 2 * 4 * 20 * 5 and r0["mac_ratio"] == pytest.approx(10 / 4)
    assert r0["stllr"]["values"] == s  # the analytic memory does not depend on alpha_post
    sgd = mc.analytic_breakdown((3, 4, 2), T=10, optimizer_moments=0, bytes_per_value=2)
    assert sgd["window"] == 10 and sgd["stllr"]["bytes"]["total"] == (20 + 20 + 18) * 2
    assert sgd["mac_ratio"] == pytest.approx(2 / 3)


def test_analytic_breakdown_errors():
    for kwargs, name in (
        (dict(dims=(3,), T=5), "dims"),
        (dict(dims=(3, 0), T=5), "dims"),
        (dict(dims=(3, 2), T=0), "T"),
        (dict(dims=(3, 2), T=5, window=6), "window"),
        (dict(dims=(3, 2), T=5, batch_size=0), "batch_size"),
        (dict(dims=(3, 2), T=5, bytes_per_value=0), "bytes_per_value"),
        (dict(dims=(3, 2), T=5, optimizer_moments=-1), "optimizer_moments"),
    ):
        with pytest.raises(ValueError, match=name):
            mc.analytic_breakdown(**kwargs)


def test_format_analytic_breakdown():
    r = mc.analytic_breakdown((1000, 1000, 1000, 1000, 1), T=100, window=1, batch_size=512)
    text = mc.format_analytic_breakdown(r)
    assert "S = sum N^(l) N^(l-1) = 3,001,000" in text
    assert "T/2 = 50x" in text and "66.667x" in text
    assert "819.405 MB" in text  # Eq. 18: 100 x 4001 x 512 x 4 bytes
    assert "16.388 MB" in text  # Eq. 19: 2 x 4001 x 512 x 4 bytes
    assert "alpha_post = 0" in mc.format_analytic_breakdown(
        mc.analytic_breakdown((4, 2), T=4, alpha_post=0.0)
    )


# ----------------------------------------------------------------------------- plots


def test_memory_plots_label_saved_bytes_and_peak():
    pytest.importorskip("matplotlib")
    from stllr.plotting.memory import (
        plot_analytic_breakdown,
        plot_memory_breakdown,
        plot_memory_vs_T,
    )
    from stllr.plotting.style import plt

    rows = mc.memory_vs_T(Ts=(3, 6), batch_size=3, dims=DIMS, window=1, breakdown=True)
    fig = plot_memory_vs_T(rows)
    assert len(fig.axes) == 2
    assert "bytes saved for backward" in fig.axes[0].get_title()
    plt.close(fig)
    fig = plot_memory_vs_T(rows, recorded=mc.read_recorded_fig3())
    assert len(fig.axes) == 3 and "H200" in fig.axes[1].get_title()
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert any("peak" in t for t in labels) and any("saved for backward" in t for t in labels)
    plt.close(fig)
    groups = [(f"T = {r['T']}", r["stllr_breakdown"], r["bptt_breakdown"]) for r in rows]
    fig = plot_memory_breakdown([("a", groups), ("b", groups[:1])])
    assert len(fig.axes) == 2
    plt.close(fig)
    fig = plot_analytic_breakdown(mc.analytic_breakdown((3, 4, 2), T=10))
    assert "Eq. 22" in fig.axes[0].get_title()
    plt.close(fig)
