"""stllr.studies.common (notebooks 00 and 05): tables, the Fig. 3 MLP, saved memory against T, MACs against
the learning window, Table 3 recomputed, time per step, training memory.

References are counted by hand from the layer shapes (docs/measurement.md gives the relations):
- saved bytes per learning step of S-TLLR: every LinearSTLLR M -> N keeps x_t, tr_in_t [B, M] and
  tr_out_{t-1}, psi_t [B, N]; a LeakyReadout keeps tr_in [B, M]; the loss keeps its own inputs;
- saved bytes of BPTT per step: each layer's input (x_t or s_t) and each LIF's v_t;
- MACs of one sequence: forward S per step; the rule's fused weight GEMM 2 B N K per S-TLLR layer and
  B N K for the readout; BPTT 2 T S B minus the missing s_{-1} W_rec product;
- Table 3's ratios from its printed numbers, T/2 and 2T/(3d) written out; SHD's absolute numbers
  from 700-450(rec)-20.
"""

from __future__ import annotations

import math

import pytest
import torch

from stllr.bptt import LeakyIntegrator, LinearLIF
from stllr.layers import LeakyReadout, LinearSTLLR
from stllr.models.registry import build_model
from stllr.studies import common, memory_and_compute, paper, quickstart

F32, I64 = 4, 8


# ----------------------------------------------------------------------------- tables


def test_format_table_alignment_and_missing_values():
    rows = [{"name": "a", "x": 1.5, "n": 3}, {"name": "long name", "x": None, "n": 12}]
    cols = [
        ("name", "method", ""),
        ("x", "x value", ".2f"),
        ("n", "n", "d"),
        ("missing", "extra", ""),
    ]
    assert common.format_table(rows, cols).splitlines() == [
        "method     x value   n  extra",
        "---------  -------  --  -----",
        "a             1.50   3  -",  # text left-aligned, numbers right-aligned, trailing blanks cut
        "long name        -  12  -",  # None and a missing key print "-"
    ]
    assert common.format_table([], [("a", "alpha", "")]).splitlines() == ["alpha", "-----"]


def test_num_threads_restores_the_setting():
    before = torch.get_num_threads()
    with common.num_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with common.num_threads(None):
        assert torch.get_num_threads() == before


# ----------------------------------------------------------------------------- Fig. 3 MLP

DIMS = (6, 5, 4, 1)


def test_fig3_mlp_layers_and_shared_initial_weights():
    s, b = memory_and_compute.fig3_models(DIMS, seed=3)
    assert s.is_stllr and not b.is_stllr and s.input_shape == (6,)
    assert [type(m) for m in s.layers] == [LinearSTLLR, LinearSTLLR, LeakyReadout]
    assert [type(m) for m in b.layers] == [LinearLIF, LinearLIF, LeakyIntegrator]
    assert [(m.in_features, m.out_features) for m in s.layers] == [(6, 5), (5, 4), (4, 1)]
    assert s.layers[0].factors.tolist() == pytest.approx(
        [0.2, 0.75, -1.0, 1.0]
    )  # reference CLI default
    assert s.layers[2].factors.tolist() == pytest.approx([0.0, 0.99, 0.0, 1.0])
    bp = dict(b.named_parameters())
    for name, p in s.named_parameters():
        assert torch.equal(bp[name], p), name
    x = (torch.rand(5, 3, 6, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    s.reset_state(), b.reset_state()
    with torch.no_grad():
        for t in range(5):
            assert torch.equal(s(x[t]), b(x[t]))  # same forward dynamics
    s2, _ = memory_and_compute.fig3_models(DIMS, seed=3)
    assert torch.equal(s2.layers[0].weight, s.layers[0].weight)  # seeded


def test_memory_vs_T_hand_counts():
    """Fig3MLP 6-5-4-1, batch 3, loss = mean squared last output.
    S-TLLR (last step only): (6+6+5+5) + (5+5+4+4) + 4 (readout tr_in) values per sample, plus the
    loss's saved (out - 0) [B, 1]: constant in T. BPTT: per step x_t 6, v 5, s 5, v 4, s 4 = 24 values,
    plus the loss's [B, 1] once: linear in T."""
    B = 3
    rows = memory_and_compute.memory_vs_T(Ts=(3, 6, 9), batch_size=B, dims=DIMS, window=1)
    assert [r["T"] for r in rows] == [3, 6, 9]
    stllr = B * (22 + 18 + 4 + 1) * F32
    for r in rows:
        T = r["T"]
        assert r["batch_size"] == B
        assert r["stllr_saved_bytes"] == stllr
        assert r["bptt_saved_bytes"] == B * (24 * T + 1) * F32
        assert r["memory_ratio"] == pytest.approx((24 * T + 1) / 45)
        # Eq. 18-19: sum N = 6 + 5 + 4 + 1 = 16 values per neuron-step, float32, times the batch
        assert r["stllr_analytic"] == 2 * 16 * B * F32
        assert r["bptt_analytic"] == T * 16 * B * F32
        assert r["memory_ratio_analytic"] == T / 2
        assert "stllr_peak_bytes" not in r  # peak is off on CPU by default
    # exact ratios between two T: S-TLLR 1, BPTT (24*9 + 1) / (24*3 + 1)
    assert rows[2]["stllr_saved_bytes"] / rows[0]["stllr_saved_bytes"] == 1
    assert rows[2]["bptt_saved_bytes"] / rows[0]["bptt_saved_bytes"] == pytest.approx(217 / 73)
    assert rows[2]["bptt_saved_bytes"] - rows[1]["bptt_saved_bytes"] == 3 * B * 24 * F32


def test_memory_vs_T_window_larger_than_T_is_clipped():
    rows = memory_and_compute.memory_vs_T(Ts=(2,), batch_size=3, dims=DIMS, window=5)
    assert rows[0]["stllr_saved_bytes"] == 3 * 45 * F32  # one step's graph alive at a time


# ----------------------------------------------------------------------------- MACs


@pytest.fixture(scope="module")
def macs():
    return memory_and_compute.macs_vs_window(
        arch="randman_rsnn_stllr", T=6, windows=(1, 3, 6), batch_size=3
    )


def test_macs_vs_window_hand_counts(macs):
    """randman_rsnn: RecurrentSTLLR 100 -> 128 (fused [W, W_rec]: K = 228) and LeakyReadout 128 -> 10."""
    M_, N, C, B, T = 100, 128, 10, 3, 6
    S = N * (M_ + N) + N * C
    assert macs["shapes"].weight_macs == S and macs["T"] == T and macs["batch_size"] == B
    bp = macs["bptt"]
    # BPTT: forward + weight gradient 2 T S B, minus the missing s_{-1} W_rec at t = 0 (forward and backward)
    assert bp["paper_terms"] == 2 * T * S * B - 2 * B * N * N
    # gradients w.r.t. the readout input at every step and through s_{t-1} at t >= 1
    assert bp["grad_input"] == T * B * N * C + (T - 1) * B * N * N
    assert bp["macs"] == bp["paper_terms"] + bp["grad_input"]
    assert bp["analytic"] == 2 * T * S * B
    for row, d in zip(macs["rows"], (1, 3, 6)):
        assert (row["window"], row["T_l"], row["batch_size"]) == (d, T - d, B)
        # window: forward S + fused causal/non-causal GEMM 2 N K of the hidden layer + readout N C, per sample
        assert row["stllr_paper_terms"] == d * B * (3 * N * (M_ + N) + 2 * N * C)
        assert (
            row["stllr_paper_terms_a0"] == d * B * 2 * S
        )  # alpha_post = 0: one weight term everywhere
        assert row["stllr_pre_window"] == row["stllr_pre_window_a0"] == (T - d) * S * B
        assert (
            row["stllr_grad_input"] == d * B * N * C
        )  # the readout's delta W; the input needs no gradient
        assert (
            row["stllr_macs"]
            >= row["stllr_paper_terms"] + row["stllr_pre_window"] + row["stllr_grad_input"]
        )
        assert row["stllr_analytic"] == 3 * d * S * B and row["stllr_analytic_a0"] == 2 * d * S * B
        # the ratios: Eq. 23 exactly, and the measured ones from the hand counts
        assert row["mac_ratio_analytic"] == pytest.approx(2 * T / (3 * d))
        assert row["mac_ratio_analytic_a0"] == pytest.approx(T / d)
        assert row["mac_ratio_paper_terms"] == pytest.approx(
            (2 * T * S - 2 * N * N) / (d * (3 * N * (M_ + N) + 2 * N * C)), rel=1e-12
        )
        assert row["mac_ratio"] == pytest.approx(bp["macs"] / row["stllr_macs"], rel=1e-12)


# ----------------------------------------------------------------------------- Table 3


def test_paper_mac_points_from_the_printed_table():
    pts = memory_and_compute.paper_mac_points()
    assert len(pts) == 7  # every S-TLLR row
    first = pts[0]
    assert (first["dataset"], first["T"], first["window"], first["alpha_post"]) == (
        "DVS CIFAR10",
        10,
        5,
        -1.0,
    )
    assert first["ratio"] == pytest.approx(6.82 / 5.12) and first["formula"] == pytest.approx(
        20 / 15
    )
    by = {(p["dataset"], p["window"], p["alpha_post"]): p for p in pts}
    assert by[("DVS CIFAR10", 10, 0.0)]["formula"] == pytest.approx(1.0)  # 2T / (2T)
    assert by[("DVS CIFAR10", 10, -1.0)]["ratio"] == pytest.approx(6.82 / 10.26)
    assert by[("DVS Gesture", 5, -1.0)]["formula"] == pytest.approx(40 / 15)
    assert by[("N-CALTECH101", 5, -1.0)]["ratio"] == pytest.approx(22.81 / 17.22)
    shd = by[("SHD", 90, 1.0)]
    assert shd["ratio"] == pytest.approx(0.054 / 0.096) and shd["formula"] == pytest.approx(
        200 / 270
    )


@pytest.fixture(scope="module")
def table3():
    return memory_and_compute.table3_recomputed()


def test_table3_ratios(table3):
    assert len(table3) == len(paper.PAPER_TABLE3) == 11
    for row, published in zip(table3, paper.PAPER_TABLE3):
        assert (row["dataset"], row["method"], row["T"]) == (
            published["dataset"],
            published["method"],
            published["T"],
        )
        if published["method"] == "BPTT":
            assert (
                row["window"] is None
                and row["mem_ratio"] is None
                and row["paper_mem_ratio"] is None
            )
            continue
        T, d = published["T"], published["T"] - published["T_l"]
        assert row["window"] == d
        assert row["mem_ratio"] == T / 2  # Eq. 22 for every configuration
        k = 2 if published["alpha_post"] == 0 else 3
        assert row["mac_ratio"] == pytest.approx(2 * T / (k * d), rel=1e-12)
        bptt = next(
            p
            for p in paper.PAPER_TABLE3
            if p["dataset"] == published["dataset"] and p["method"] == "BPTT"
        )
        assert row["paper_mem_ratio"] == pytest.approx(bptt["mem_mb"] / published["mem_mb"])
        assert row["paper_mac_ratio"] == pytest.approx(bptt["mac_e9"] / published["mac_e9"])
        if published["dataset"] != "SHD":
            # the VGG rows' published memory ratios are T/2 to their printed precision
            assert row["paper_mem_ratio"] == pytest.approx(T / 2, rel=5e-3)
    nc = [r for r in table3 if r["dataset"] == "N-CALTECH101"]
    assert all(r["model"] is None and "macs_e9" not in r for r in nc)  # no registered model


def test_table3_shd_absolute_numbers_by_hand(table3):
    """700-450(rec)-20: S = 450 (700 + 450) + 450 * 20 = 526,500 MACs per step; sum N = 1170."""
    S, sum_n = 450 * (700 + 450) + 450 * 20, 700 + 450 + 20
    bptt, stl = [r for r in table3 if r["dataset"] == "SHD"][:2]
    assert bptt["model"] == "stllr_shd_net" and bptt["sum_neurons"] == sum_n
    assert bptt["macs_e9"] == pytest.approx(2 * 100 * S / 1e9)  # 0.1053
    assert stl["macs_e9"] == pytest.approx(3 * 90 * S / 1e9)  # 0.142155
    assert bptt["values_e6"] == pytest.approx(100 * sum_n / 1e6)
    assert stl["values_e6"] == pytest.approx(2 * sum_n / 1e6)
    assert "macs_e9_half" not in stl  # 1-D input: no half resolution


def test_table3_vgg_half_resolution_matches_the_printed_macs(table3):
    """docs/measurement.md: the VGG-9 rows are reproduced at half the stated height and width."""
    vgg = [r for r in table3 if r["dataset"] in ("DVS CIFAR10", "DVS Gesture")]
    assert len(vgg) == 6
    for r in vgg:
        c, h, w = r["input_shape"]
        assert r["half_shape"] == (c, h // 2, w // 2)
        assert r["macs_e9_half"] == pytest.approx(r["paper_mac_e9"], rel=1e-2)
        assert r["macs_e9"] == pytest.approx(4 * r["macs_e9_half"], rel=1e-3)  # 4x the pixels
        if r["method"] != "BPTT":
            base = next(b for b in vgg if b["dataset"] == r["dataset"] and b["method"] == "BPTT")
            assert base["macs_e9"] / r["macs_e9"] == pytest.approx(r["mac_ratio"], rel=1e-12)
            assert base["values_e6"] / r["values_e6"] == pytest.approx(r["T"] / 2, rel=1e-12)


# ----------------------------------------------------------------------------- time per step


def test_time_per_step_rows():
    s, b = memory_and_compute.fig3_models(DIMS)
    torch.manual_seed(0)
    rec = build_model("randman_rsnn_stllr", num_classes=3, input_shape=(6,), hidden=5)
    before = torch.get_num_threads()
    rows = memory_and_compute.time_per_step(
        [
            ("mlp s", s, "stllr", 5, 2, 3),
            ("mlp b", b, "bptt", 5, 2, 3),
            ("rec", rec, "stllr", 4, 4, 2),
            ("rec deferred", rec, "stllr", 4, 4, 2, 3),
        ],
        repeats=2,
    )
    assert torch.get_num_threads() == before
    keys = ("label", "mode", "T", "window", "batch", "chunk")
    assert [tuple(r[k] for k in keys) for r in rows] == [
        ("mlp s", "stllr", 5, 2, 3, 0),
        ("mlp b", "bptt", 5, 5, 3, None),
        ("rec", "stllr", 4, 4, 2, 0),
        ("rec deferred", "stllr", 4, 4, 2, 3),
    ]  # BPTT: window T, no chunk
    for r in rows:
        assert set(r) == set(keys) | {"seconds", "ms_per_step"}
        assert r["seconds"] > 0 and math.isfinite(r["seconds"])
        assert r["ms_per_step"] == pytest.approx(1e3 * r["seconds"] / r["T"])
    for m in (s, b, rec):
        assert all(p.grad is None for p in m.parameters())  # left clean
    assert s.layers[0].state is None and rec.linear1.state is None


# ----------------------------------------------------------------------------- training memory and results

M_IN, HID, CLS, BS, T_SEQ = 6, 5, 3, 4, 7


def _runs():
    torch.manual_seed(0)
    s = build_model(
        "randman_rsnn_stllr",
        num_classes=CLS,
        input_shape=(M_IN,),
        hidden=HID,
        factors=[0.5, 1, 1, 1],
    )
    b = build_model("randman_rsnn_bptt", num_classes=CLS, input_shape=(M_IN,), hidden=HID)
    ms = common.Method(
        "stllr", "S-TLLR", "randman_rsnn_stllr", "stllr", (0.5, 1.0, 1.0, 1.0), window=3
    )
    mb = common.Method("bptt", "BPTT", "randman_rsnn_bptt", "bptt", window=3)
    hist_s = [
        {"epoch": 0, "train_acc": None, "test_acc": 10.0},
        {"epoch": 1, "train_acc": 50.0, "test_acc": 62.5},
        {"epoch": 2, "train_acc": 75.0, "test_acc": 60.0},
    ]
    hist_b = [
        {"epoch": 0, "train_acc": None, "test_acc": 10.0},
        {"epoch": 1, "train_acc": 40.0, "test_acc": 33.3333},
    ]
    return {
        "stllr": common.RunResult(ms, 0, 0, hist_s, 123, s),
        "bptt": common.RunResult(mb, 0, 0, hist_b, 45, b),
    }


def _info():
    g = torch.Generator().manual_seed(2)
    lengths = [7, 5, 7, 6, 7]  # padded to the longest of the first batch_size samples (7)
    train = [
        ((torch.rand(n, M_IN, generator=g) < 0.4).float(), i % CLS) for i, n in enumerate(lengths)
    ]
    return {"batch_size": BS, "train_set": train}


def test_training_memory_hand_counts():
    runs, info = _runs(), _info()
    out = quickstart.training_memory(runs, info)
    s, b, ratio = out["stllr"], out["bptt"], out["ratio"]
    assert (s["T"], s["window"], s["batch_size"], s["mode"], s["label"]) == (
        T_SEQ,
        3,
        BS,
        "stllr",
        "S-TLLR",
    )
    assert (b["T"], b["batch_size"], b["mode"]) == (T_SEQ, BS, "bptt")
    z = M_IN + HID  # the recurrent layer's input [x_t, s_{t-1}]
    ce = BS * CLS * F32 + BS * I64  # log_softmax and the int64 target
    # S-TLLR, one step: z_t and tr_in [B, z], tr_out_{t-1} and psi [B, N]; readout tr_in [B, N]
    assert s["saved_bytes"] == BS * (2 * z + 3 * HID) * F32 + ce
    # BPTT, every step: x_t [B, M], v_t [B, N], s_t [B, N] (read by the readout, and by W_rec next step)
    assert b["saved_bytes"] == T_SEQ * BS * (M_IN + 2 * HID) * F32 + ce
    assert s["saved_bytes_per_sample"] == s["saved_bytes"] / BS
    # Eq. 18-19 per sample, float32: sum N = 6 + 5 + 3
    assert (
        s["analytic_bytes_per_sample"] == 2 * 14 * F32
        and b["analytic_bytes_per_sample"] == T_SEQ * 14 * F32
    )
    assert s["sum_neurons"] == b["sum_neurons"] == 14
    # states after the sequence: S-TLLR pre trace [B, z], post trace, membrane, spikes, psi [B, N] and the
    # readout's trace [B, N] and membrane [B, C]; BPTT membrane and spikes [B, N], readout membrane [B, C]
    assert s["state_bytes"] == BS * (z + 4 * HID + HID + CLS) * F32
    assert b["state_bytes"] == BS * (2 * HID + CLS) * F32
    assert ratio == {
        "memory_ratio": b["saved_bytes"] / s["saved_bytes"],
        "memory_ratio_analytic": T_SEQ / 2,
        "T": T_SEQ,
    }
    for run in runs.values():
        assert run.model.training and all(p.grad is None for p in run.model.parameters())
    # batch_size caps at the training set; one method: no ratio
    only = quickstart.training_memory({"stllr": runs["stllr"]}, info, batch_size=99)
    assert only["stllr"]["batch_size"] == 5 and "ratio" not in only


def test_training_memory_of_window_bptt_hand_counts():
    """BPTT on the loss of the window (the matched control of notebook 00): the graph of every step
    as BPTT, and the cross-entropy of each of the last ``window`` steps keeps its own log_softmax
    (the int64 target is one storage for all of them); Eq. 18-19 as BPTT's."""
    runs, info = _runs(), _info()
    mw = common.Method("bptt_window", "BPTT (window)", "randman_rsnn_bptt", "bptt_window", window=3)
    runs = {
        "stllr": runs["stllr"],
        "bptt_window": common.RunResult(mw, 0, 0, runs["bptt"].history, 45, runs["bptt"].model),
    }
    out = quickstart.training_memory(runs, info)
    w, s = out["bptt_window"], out["stllr"]
    assert (w["mode"], w["T"], w["window"], w["batch_size"]) == ("bptt_window", T_SEQ, 3, BS)
    graph = T_SEQ * BS * (M_IN + 2 * HID) * F32  # x_t, v_t, s_t of every step, as BPTT
    assert w["saved_bytes"] == graph + 3 * BS * CLS * F32 + BS * I64
    assert w["analytic_bytes_per_sample"] == T_SEQ * 14 * F32
    assert w["state_bytes"] == BS * (2 * HID + CLS) * F32
    assert out["ratio"] == {
        "memory_ratio": w["saved_bytes"] / s["saved_bytes"],
        "memory_ratio_analytic": T_SEQ / 2,
        "T": T_SEQ,
    }
    model = runs["bptt_window"].model
    assert model.training and all(p.grad is None for p in model.parameters())
    # the same model measured as plain BPTT (loss of the summed logits): one loss term only
    plain = quickstart.training_memory({"bptt": _runs()["bptt"]}, info)["bptt"]
    assert plain["saved_bytes"] == graph + BS * CLS * F32 + BS * I64


def test_results_table_rows():
    runs = _runs()
    memory = {"stllr": {"saved_bytes_per_sample": 1234.0, "analytic_bytes_per_sample": 112.0}}
    lines = quickstart.results_table(
        runs, memory=memory, paper={"stllr": (78.24, 1.84)}
    ).splitlines()
    assert lines[0].split("  ")[:6] == [
        "method",
        "params",
        "train acc %",
        "test acc %",
        "train - test",
        "best test %",
    ]
    assert "saved kB/sample (measured)" in lines[0] and "paper SHD test %" in lines[0]
    s = lines[2].split()
    # final train/test, their difference (points), best test over epochs >= 1
    assert s[:6] == ["S-TLLR", "123", "75.00", "60.00", "+15.00", "62.50"]
    assert s[6:] == ["1.2", "0.1", "78.24", "+-", "1.84"]  # kB/sample
    b = lines[3].split()
    assert b == ["BPTT", "45", "40.00", "33.33", "+6.67", "33.33", "-", "-", "-"]
    assert (
        len(quickstart.results_table(runs).splitlines()[0].split("  ")) == 6
    )  # no memory / paper columns
    # with the paper's BPTT number: marked, and the note that it is not a matched model under the table
    lines = quickstart.results_table(runs, paper=paper.PAPER_SHD_ACCURACY).splitlines()
    assert lines[3].split()[-4:] == ["70.57", "+-", "0.96", "*"]
    assert lines[-1] == paper.PAPER_SHD_BPTT_NOTE
    # a method without a paper row of its own key gets the row of its kind: the window-loss BPTT
    # the paper's BPTT (still marked), S-TLLR with DFA the paper's S-TLLR (DFA)
    mw = common.Method("bptt_window", "BPTT (window)", "randman_rsnn_bptt", "bptt_window")
    md = common.Method("dfa", "S-TLLR (DFA)", "randman_rsnn_stllr", "stllr", feedback_mode="dfa")
    kinds = {
        "bptt_window": common.RunResult(mw, 0, 0, runs["bptt"].history, 45),
        "dfa": common.RunResult(md, 0, 0, runs["stllr"].history, 123),
    }
    lines = quickstart.results_table(kinds, paper=paper.PAPER_SHD_ACCURACY).splitlines()
    bptt, dfa = paper.PAPER_SHD_ACCURACY["bptt"], paper.PAPER_SHD_ACCURACY["stllr_dfa"]
    assert lines[2].endswith(f"{bptt[0]:.2f} +- {bptt[1]:.2f} *")
    assert lines[3].endswith(f"{dfa[0]:.2f} +- {dfa[1]:.2f}")
    assert lines[-1] == paper.PAPER_SHD_BPTT_NOTE
    # no row of its kind (S-TLLR with DFA is not S-TLLR with BP): no number, no note
    only = quickstart.results_table({"dfa": kinds["dfa"]}, paper={"stllr": (1.0, 0.5)})
    assert only.splitlines()[-1].split()[-1] == "-" and "1.00" not in only
    assert paper.PAPER_SHD_BPTT_NOTE not in only


def test_quickstart_full_trains_the_papers_two_methods(tmp_path):
    """FULL: S-TLLR and BPTT on the loss of the summed logits (the reference's baseline), both at
    the study's one rate (no rate of their own), the paper's window of 90 of 100 steps."""
    c = quickstart.quickstart_config(True, None, tmp_path)
    assert [(m.key, m.label, m.arch, m.mode, m.window, m.psi, m.lr) for m in c.methods] == [
        ("stllr", "S-TLLR", "stllr_shd_net", "stllr", 90, None, None),
        ("bptt", "BPTT", "bptt_shd_net", "bptt", 90, None, None),
    ]
    assert (c.lr, c.epochs) == (2e-4, 200)
    assert all(m.factors == (0.5, 1.0, 1.0, 1.0) and m.feedback_mode == "bp" for m in c.methods)
    with pytest.raises(ValueError, match="^data_path: "):
        quickstart.quickstart_config(True)
