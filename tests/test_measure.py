"""stllr.measure: the paper's analytic memory/MACs (Eq. 18-23, Table 3), saved-for-backward bytes
against hand counts, measured MACs against the analytic count, and the ``memory`` command."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import pytest
import torch
from torch import nn

import stllr
from stllr import measure as M

F32 = 4  # bytes per float32 value
I64 = 8


# ======================================================================================
# Small models assembled from the layers
# ======================================================================================
class MLP(nn.Module):
    """LinearSTLLR / LinearLIF chain, optionally with a leaky readout (S-TLLR) / integrator (BPTT)."""

    def __init__(self, dims, stllr_rule=True, alpha_post=-0.5, readout=True):
        super().__init__()
        self.is_stllr = stllr_rule
        self.input_shape = (dims[0],)
        f = [0.5, 0.8, alpha_post, 1.0]
        layers = []
        last = len(dims) - 2
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            if readout and i == last:
                layers.append(
                    stllr.LeakyReadout(a, b, factors=[0.0, 0.9, 0.0, 1.0])
                    if stllr_rule
                    else stllr.LeakyIntegrator(a, b)
                )
            else:
                layers.append(
                    stllr.LinearSTLLR(a, b, factors=f) if stllr_rule else stllr.LinearLIF(a, b)
                )
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)

    def reset_state(self):
        stllr.reset_states(self)


class RecNet(nn.Module):
    def __init__(self, n_in=11, hidden=6, classes=3, stllr_rule=True):
        super().__init__()
        self.is_stllr = stllr_rule
        self.input_shape = (n_in,)
        if stllr_rule:
            self.rec = stllr.RecurrentSTLLR(n_in, hidden, factors=[0.5, 0.8, -1.0, 1.0])
            self.out = stllr.LeakyReadout(hidden, classes, factors=[0.0, 0.9, 0.0, 1.0])
        else:
            self.rec = stllr.RecurrentLIF(n_in, hidden)
            self.out = stllr.LeakyIntegrator(hidden, classes)

    def forward(self, x):
        return self.out(self.rec(x))

    def reset_state(self):
        stllr.reset_states(self)


class ConvNet(nn.Module):
    """conv 2->4 (3x3, pad 1) on 6x6 -> conv 4->3 (3x3, stride 2, pad 1) -> 3x3x3; spikes flattened."""

    def __init__(self, stllr_rule=True, alpha_post=-1.0):
        super().__init__()
        self.is_stllr = stllr_rule
        self.input_shape = (2, 6, 6)
        if stllr_rule:
            f = [0.5, 0.8, alpha_post, 1.0]
            self.c1 = stllr.Conv2dSTLLR(2, 4, 3, padding=1, factors=f)
            self.c2 = stllr.Conv2dSTLLR(4, 3, 3, stride=2, padding=1, factors=f)
        else:
            self.c1 = stllr.Conv2dLIF(2, 4, 3, padding=1)
            self.c2 = stllr.Conv2dLIF(4, 3, 3, stride=2, padding=1)

    def forward(self, x):
        return self.c2(self.c1(x)).flatten(1)

    def reset_state(self):
        stllr.reset_states(self)


def spikes(T, B, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((T, B) + tuple(shape), generator=g) < 0.3).float()


def labels(B, classes, seed=1):
    return torch.randint(0, classes, (B,), generator=torch.Generator().manual_seed(seed))


# ======================================================================================
# Analytic formulas: the paper's Table 3 ratios
# ======================================================================================
def test_memory_ratio_is_T_over_2():
    assert M.paper_memory_ratio(10) == 5.0
    assert M.paper_memory_ratio(20) == 10.0
    assert M.paper_memory_ratio(100) == 50.0
    for T in (10, 25, 300):
        assert M.paper_memory(1234, T, "bptt") / M.paper_memory(1234, T, "stllr") == T / 2


@pytest.mark.parametrize(
    "T, window, alpha_post, expected",
    [
        (10, 5, -1.0, 4 / 3),  # CIFAR10-DVS / N-Caltech101, T_l = 5
        (20, 5, -1.0, 8 / 3),  # DVS Gesture, T_l = 15
        (10, 1, -1.0, 20 / 3),  # one learning step
        (10, 10, -1.0, 2 / 3),  # T_l = 0
        (10, 10, 0.0, 1.0),  # T_l = 0, alpha_post = 0: 2 instead of 3
    ],
)
def test_mac_ratio_formula(T, window, alpha_post, expected):
    assert M.paper_mac_ratio(T, window, alpha_post) == pytest.approx(expected)
    assert M.paper_macs(777, T, "bptt") / M.paper_macs(
        777, T, "stllr", window, alpha_post
    ) == pytest.approx(expected)


# (BPTT value, S-TLLR value, T, learning steps, alpha_post) from the paper's Table 3
TABLE3_MAC = [
    (6.82, 5.12, 10, 5, -1.0),
    (6.82, 10.26, 10, 10, -1.0),
    (6.82, 6.82, 10, 10, 0.0),
    (6.06, 2.27, 20, 5, -1.0),
    (22.81, 17.22, 10, 5, -1.0),
]
TABLE3_MEM = [(18.12, 3.62, 10), (16.13, 1.61, 20), (20.15, 4.03, 10), (0.961, 0.019, 100)]


@pytest.mark.parametrize("bptt, stl, T, window, alpha_post", TABLE3_MAC)
def test_table3_mac_ratios(bptt, stl, T, window, alpha_post):
    # Table 3 prints 2-3 significant digits: agree to within that rounding
    assert bptt / stl == pytest.approx(M.paper_mac_ratio(T, window, alpha_post), rel=0.01)


@pytest.mark.parametrize("bptt, stl, T", TABLE3_MEM)
def test_table3_memory_ratios(bptt, stl, T):
    assert bptt / stl == pytest.approx(M.paper_memory_ratio(T), rel=0.03)  # 0.019 has 2 digits


def test_table3_shd_macs_do_not_follow_the_formula():
    # SHD: T = 100, T_l = 10 -> the formula says BPTT costs 0.74x S-TLLR; Table 3 says 0.054 / 0.096
    assert M.paper_mac_ratio(100, 90, 1.0) == pytest.approx(200 / 270)
    assert 0.054 / 0.096 != pytest.approx(200 / 270, rel=0.05)


def test_analytic_argument_errors():
    with pytest.raises(ValueError, match="T"):
        M.paper_memory(10, 0, "bptt")
    with pytest.raises(ValueError, match="window"):
        M.paper_macs(10, 10, "stllr", 11)
    with pytest.raises(ValueError, match="method"):
        M.paper_memory(10, 10, "rtrl")


# ======================================================================================
# Model shapes
# ======================================================================================
def test_model_shapes_mlp_recurrent_conv():
    sh = M.model_shapes(MLP((12, 9, 7, 3)))
    assert sh.neurons == [12, 9, 7, 3]
    assert sh.weight_macs == 12 * 9 + 9 * 7 + 7 * 3  # sum N^(l) N^(l-1)
    sh = M.model_shapes(RecNet(11, 6, 3))
    assert sh.neurons == [11, 6, 3]
    assert sh.weight_macs == 6 * (11 + 6) + 6 * 3  # input + recurrent weights
    sh = M.model_shapes(ConvNet())
    assert sh.neurons == [2 * 36, 4 * 36, 3 * 9]  # C*H*W of each conv output
    assert sh.weight_macs == 4 * 36 * (2 * 9) + 3 * 9 * (4 * 9)
    for twin in (
        MLP((12, 9, 7, 3), stllr_rule=False),
        RecNet(stllr_rule=False),
        ConvNet(stllr_rule=False),
    ):
        M.model_shapes(twin)  # the twins have the same shapes
    assert M.model_shapes(ConvNet(False)).neurons == M.model_shapes(ConvNet()).neurons


def test_model_shapes_needs_an_input_shape():
    net = nn.Sequential(stllr.LinearSTLLR(4, 3))
    with pytest.raises(ValueError, match="input_shape"):
        M.model_shapes(net)
    assert M.model_shapes(net, (4,)).neurons == [4, 3]


def test_registry_vgg_reproduces_table3_absolute_macs_at_half_resolution():
    models = pytest.importorskip("stllr.models")
    # Table 3's VGG-9 MACs match our count on a 16x16 (Gesture) / 24x24 (CIFAR10-DVS) input
    g = M.analytic_costs(models.build_model("dvs_vgg_stllr", input_shape=(2, 16, 16)), 20, 5, -1.0)
    assert g["bptt_macs"] / 1e9 == pytest.approx(6.06, rel=0.005)
    assert g["stllr_macs"] / 1e9 == pytest.approx(2.27, rel=0.005)
    assert g["memory_ratio"] == 10.0
    c = M.model_shapes(models.build_model("dvscifar10_vgg_stllr", input_shape=(2, 24, 24)))
    assert M.paper_macs(c.weight_macs, 10, "bptt") / 1e9 == pytest.approx(6.82, rel=0.005)
    assert M.paper_macs(c.weight_macs, 10, "stllr", 5, -1.0) / 1e9 == pytest.approx(5.12, rel=0.005)
    assert M.paper_macs(c.weight_macs, 10, "stllr", 10, -1.0) / 1e9 == pytest.approx(
        10.26, rel=0.005
    )
    assert M.paper_macs(c.weight_macs, 10, "stllr", 10, 0.0) / 1e9 == pytest.approx(6.82, rel=0.005)


# ======================================================================================
# Saved-tensor tracker basics
# ======================================================================================
def test_tracker_dedups_storages_and_releases_with_the_graph():
    w = torch.randn(5, 7, requires_grad=True)
    x = torch.randn(3, 5)
    a = torch.randn(3, 5, requires_grad=True)
    with M.SavedTensorTracker(batch_size=3) as tr:
        y = x @ w  # saves x (for dL/dw)
        z = (x * 2) @ w  # saves x * 2: another storage
        assert tr.live_bytes == 2 * 3 * 5 * F32
        v = a[1:]  # a view: its storage is a's [3, 5]
        u = (
            v * v.exp()
        ).sum()  # exp saves its result e [2, 5]; mul saves v (a's storage) and e again
        assert tr.live_bytes == 2 * 3 * 5 * F32 + 3 * 5 * F32 + 2 * 5 * F32
        del u, v
        assert tr.live_bytes == 2 * 3 * 5 * F32
        (y.sum() + z.sum()).backward()
        assert tr.live_bytes == 0
    s = tr.stats()
    assert s.peak_bytes == s.total_bytes == 3 * 3 * 5 * F32 + 2 * 5 * F32
    assert s.live_bytes == 0 and s.num_storages == 4 and s.num_saved == 5


def test_tracker_releases_a_node_that_saves_its_own_output():
    v = torch.randn(4, 6, requires_grad=True)
    with M.SavedTensorTracker() as tr:
        r = v.exp()  # exp saves its result
        assert tr.live_bytes == 4 * 6 * F32
        del r
        assert tr.live_bytes == 0


def test_tracker_categories():
    lin = nn.Linear(5, 4)
    x = torch.randn(3, 5, requires_grad=True)
    with M.SavedTensorTracker(lin, batch_size=3) as tr:
        y = lin(x)
    s = tr.stats()
    # addmm saves x (activation, batch first) and W^T (a view of the parameter)
    assert s.total_activation_bytes == 3 * 5 * F32
    assert s.total_parameter_bytes == 4 * 5 * F32
    del y


# ======================================================================================
# Saved bytes against hand counts
# ======================================================================================
B = 5


def CE_SAVED(classes):  # log_softmax result + int64 target
    return B * classes * F32 + B * I64


def stllr_step_bytes_mlp(alpha_post):
    """What one learning step of MLP(12, 9, 7, 3) saves (S-TLLR), by hand.

    LinearSTLLR M -> N saves x_t [B, M], tr_in_t [B, M], tr_out_{t-1} [B, N], psi_t [B, N]
    (x_t and tr_out_{t-1} only if alpha_post != 0: the non-causal term); layer 2's x_t is
    layer 1's spike tensor (its own storage). LeakyReadout saves tr_in [B, 7]. The per-sequence
    standardised weight is held by the layer, not saved. Cross-entropy saves log_softmax [B, 3]
    and the int64 target [B].
    """
    if alpha_post != 0:
        layers = (12 + 12 + 9 + 9) + (9 + 9 + 7 + 7)
    else:
        layers = (12 + 9) + (9 + 7)
    return B * (layers + 7) * F32 + CE_SAVED(3)


@pytest.mark.parametrize("alpha_post", [-0.5, 0.0])
def test_stllr_saved_bytes_hand_count_and_constant_in_T(alpha_post):
    torch.manual_seed(0)
    net = MLP((12, 9, 7, 3), alpha_post=alpha_post)
    expected = stllr_step_bytes_mlp(alpha_post)
    for T, window in ((4, 1), (4, 4), (12, 3), (20, 20)):
        m = M.measure_sequence(net, spikes(T, B, (12,)), labels(B, 3), window=window, macs=False)
        assert m.saved.peak_activation_bytes == expected
        assert m.saved.peak_bytes == expected + F32  # + nll_loss's scalar total_weight
        assert m.saved.total_activation_bytes == window * expected
        assert m.saved.live_bytes == 0  # every step's graph was freed


def test_stllr_saved_bytes_recurrent_and_conv_hand_count():
    torch.manual_seed(0)
    # RecurrentSTLLR 11 -> 6: z_t = [x_t, s_{t-1}] [B, 17] and its trace [B, 17], tr_out_{t-1}, psi [B, 6];
    # readout tr_in [B, 6]; CE
    m = M.measure_sequence(RecNet(11, 6, 3), spikes(6, B, (11,)), labels(B, 3), window=4)
    assert m.saved.peak_activation_bytes == B * (17 + 17 + 6 + 6 + 6) * F32 + CE_SAVED(3)
    # Conv2dSTLLR: x_t, tr_in (input shape), tr_out_{t-1}, psi (output shape); CE on 27 "classes"
    m = M.measure_sequence(ConvNet(), spikes(5, B, (2, 6, 6)), labels(B, 27), window=2)
    c1 = 2 * (2 * 36) + 2 * (4 * 36)
    c2 = 2 * (4 * 36) + 2 * (3 * 9)
    assert m.saved.peak_activation_bytes == B * (c1 + c2) * F32 + CE_SAVED(27)


def test_bptt_saved_bytes_hand_count_linear_in_T():
    """BPTT twin of MLP(12, 9, 7, 3), per step: the first layer's addmm saves x_t [B, 12];
    each LIF layer's surrogate spike saves v_t [B, N]; the next layer's addmm saves the spikes
    s_t [B, N] (layer 2 and the integrator). Per step 12 + (9 + 9) + (7 + 7) = 44 values per
    sample; the loss adds CE's log_softmax and target once. Weight-sized tensors (the
    standardisation's graph, W~) and scalars (beta, theta) are not activations."""
    torch.manual_seed(0)
    for T in (3, 7):
        net = MLP((12, 9, 7, 3), stllr_rule=False)
        x, y = spikes(T, B, (12,)), labels(B, 3)
        net.reset_state()
        with M.SavedTensorTracker(net, batch_size=B) as tr:
            acc = None
            for t in range(T):
                out = net(x[t].clone())
                acc = out if acc is None else acc + out
            loss = nn.functional.cross_entropy(acc, y)
            held = tr.live_activation_bytes  # what the graph holds at the end of forward
            loss.backward()
        assert held == T * B * 44 * F32 + CE_SAVED(3)
        s = tr.stats()
        # the peak adds at most the last step's transient psi(v) graph (lif_step computes psi)
        assert held <= s.peak_activation_bytes <= held + 2 * B * 9 * F32
        assert s.live_activation_bytes == 0


def test_memory_ratio_grows_with_T_and_state_bytes():
    torch.manual_seed(0)
    s, b = MLP((12, 9, 7, 3)), MLP((12, 9, 7, 3), stllr_rule=False)
    rows = M.compare(s, b, [4, 16], window=2, batch_size=B)
    assert (
        rows[0]["stllr_saved_bytes"] == rows[1]["stllr_saved_bytes"] == stllr_step_bytes_mlp(-0.5)
    )
    per_step = B * 44 * F32
    assert rows[1]["bptt_saved_bytes"] - rows[0]["bptt_saved_bytes"] == 12 * per_step
    assert rows[1]["memory_ratio"] > 3 * rows[0]["memory_ratio"]
    # state after the sequence: S-TLLR layers keep pre/post traces, membrane, spikes, psi
    traces = B * ((12 + 9) + (9 + 7) + 7) * F32
    assert rows[0]["stllr_trace_bytes"] == traces
    assert (
        rows[0]["stllr_state_bytes"] == traces + B * (3 * 9 + 3 * 7 + 3) * F32
    )  # + membrane/spikes/psi; u
    st = M.state_bytes(s)  # compare() resets the states afterwards
    assert st["total"] == 0


# ======================================================================================
# Measured MACs against the analytic count
# ======================================================================================
def _relations(
    net, twin, shape, classes, T, window, alpha_post, first_layer_macs, loss_classes=None
):
    sh = M.model_shapes(net)
    S = sh.weight_macs
    x, y = spikes(T, B, shape), labels(B, loss_classes or classes)
    ms = M.measure_sequence(net, x, y, window=window).macs
    mb = M.measure_sequence(twin, x, y).macs
    # S-TLLR: the paper counts forward + weight-gradient MACs of the learning-window steps
    paper_terms = ms.total("window", "forward") + ms.total("window", "grad_weight")
    assert paper_terms == M.paper_macs(S, T, "stllr", window, alpha_post) * B
    assert ms.total("pre_window", "forward") == (T - window) * B * S  # forward-only steps
    assert ms.total(kind="grad_input") == window * B * (S - first_layer_macs)  # one-step spatial BP
    # BPTT: forward + weight gradients = 2 T S exactly; grad_input on top
    assert mb.forward + mb.total(kind="grad_weight") == M.paper_macs(S, T, "bptt") * B
    assert mb.total(kind="grad_input") == T * B * (S - first_layer_macs)
    return ms, mb


@pytest.mark.parametrize("alpha_post", [-0.5, 0.0])
def test_macs_equal_analytic_mlp(alpha_post):
    torch.manual_seed(0)
    net = MLP((12, 9, 7, 3), alpha_post=alpha_post, readout=False)
    twin = MLP((12, 9, 7, 3), stllr_rule=False, readout=False)
    ms, mb = _relations(
        net, twin, (12,), 3, T=6, window=2, alpha_post=alpha_post, first_layer_macs=12 * 9
    )
    # the weight-standardisation backward does one row-wise dot product per weight (weight-sized)
    assert ms.total(kind="backward_other") <= 2 * (12 * 9 + 9 * 7 + 7 * 3)
    assert mb.total(kind="backward_other") == 0


def test_macs_equal_analytic_conv():
    torch.manual_seed(0)
    _relations(
        ConvNet(),
        ConvNet(False),
        (2, 6, 6),
        27,
        T=5,
        window=3,
        alpha_post=-1.0,
        first_layer_macs=4 * 36 * 2 * 9,
    )


def test_macs_with_readout_differ_by_its_missing_noncausal_term():
    """With a LeakyReadout (one weight term: no non-causal part) the measured forward + weight
    terms are the paper's 3 (T - T_l) S minus (T - T_l) x the readout's MACs."""
    torch.manual_seed(0)
    net = MLP((12, 9, 7, 3))
    T, window = 6, 2
    ms = M.measure_sequence(net, spikes(T, B, (12,)), labels(B, 3), window=window).macs
    S = M.model_shapes(net).weight_macs
    paper = M.paper_macs(S, T, "stllr", window, -0.5) * B
    assert (
        ms.total("window", "forward") + ms.total("window", "grad_weight")
        == paper - window * B * 7 * 3
    )


# ======================================================================================
# Peak memory
# ======================================================================================
def test_peak_memory_meter_cpu():
    with M.PeakMemoryMeter("cpu") as meter:
        a = torch.ones(4_000_000)  # 16 MB
        del a
    r = meter.result
    # RSS counts pages the allocator may already hold: only sanity is checked
    assert r.approximate and r.peak_bytes >= r.start_bytes > 0
    assert r.increase_bytes == r.peak_bytes - r.start_bytes


# ======================================================================================
# The `memory` command
# ======================================================================================
def _run_cli(argv):
    from stllr.cli.memory import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def test_memory_cli_json_and_table_agree():
    pytest.importorskip("stllr.models")
    from stllr.cli.memory import format_rows, row_cells

    argv = [
        "memory",
        "--arch",
        "randman_rsnn_stllr",
        "--T",
        "3",
        "6",
        "--batch-size",
        "3",
        "--delay-ls",
        "2",
    ]
    rc, out, _ = _run_cli(argv + ["--json"])
    assert rc == 0
    rows = json.loads(out)
    assert [r["T"] for r in rows] == [3, 6]
    keys = {
        "T",
        "bptt_saved_bytes",
        "stllr_saved_bytes",
        "bptt_analytic",
        "stllr_analytic",
        "memory_ratio",
        "bptt_macs",
        "stllr_macs",
        "mac_ratio",
    }
    for r in rows:
        assert keys <= set(r)
        assert r["window"] == 2
        assert r["memory_ratio"] == pytest.approx(r["bptt_saved_bytes"] / r["stllr_saved_bytes"])
        assert r["mac_ratio"] == pytest.approx(r["bptt_macs"] / r["stllr_macs"])
        assert r["memory_ratio_analytic"] == r["T"] / 2
        assert r["stllr_arch"] == "randman_rsnn_stllr" and r["bptt_arch"] == "randman_rsnn_bptt"
    assert rows[0]["stllr_saved_bytes"] == rows[1]["stllr_saved_bytes"]
    assert rows[1]["bptt_saved_bytes"] > rows[0]["bptt_saved_bytes"]
    rc, table, _ = _run_cli(argv)
    assert rc == 0
    assert table.strip() == format_rows(rows, "randman_rsnn_stllr", "randman_rsnn_bptt", 2).strip()
    lines = table.strip().splitlines()
    for r, line in zip(rows, lines[-2:]):
        assert line.split() == " ".join(row_cells(r)).split()
    # from the BPTT side the same pair is measured
    rc, out, _ = _run_cli(
        [
            "memory",
            "--arch",
            "randman_rsnn_bptt",
            "--T",
            "3",
            "--batch-size",
            "3",
            "--delay-ls",
            "2",
            "--json",
        ]
    )
    assert rc == 0 and json.loads(out)[0]["stllr_saved_bytes"] == rows[0]["stllr_saved_bytes"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--arch", "no_such_net", "--T", "10"], "unknown arch 'no_such_net'"),
        (
            ["--arch", "stllr_shd_net", "--T", "10", "0"],
            "--T: expected a positive integer, got '0'",
        ),
        (["--arch", "stllr_shd_net", "--T", "ten"], "--T: expected a positive integer, got 'ten'"),
        (["--arch", "stllr_shd_net", "--T", "5", "--batch-size", "-1"], "--batch-size"),
        (["--arch", "stllr_shd_net", "--T", "5", "--delay-ls", "0"], "--delay-ls"),
    ],
)
def test_memory_cli_errors_are_one_line(argv, message):
    pytest.importorskip("stllr.models")
    rc, out, err = _run_cli(["memory"] + argv)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert message in err


def test_measuring_does_not_change_the_gradients():
    x, y = spikes(6, B, (11,)), labels(B, 3)
    for rule in (True, False):
        torch.manual_seed(0)
        net = RecNet(11, 6, 3, stllr_rule=rule)
        M.run_sequence(net, x, y, window=4)
        plain = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
        M.measure_sequence(net, x, y, window=4, peak=True)
        for n, p in net.named_parameters():
            if n in plain:
                assert torch.equal(p.grad, plain[n]), n
