"""stllr.plotting.neuron (notebooks 01 and 03): what each figure draws, read back from the axes and
compared with the record or the window it was given."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import stllr  # noqa: E402
from stllr.analysis.stdp import record_layer, stdp_window_analytic  # noqa: E402
from stllr.plotting.neuron import (  # noqa: E402
    STDP_YLABEL,
    plot_neuron_record,
    plot_psi_at_spikes,
    plot_psi_functions,
    plot_stdp_window,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _record(psi="rational", T=30):
    layer = stllr.LinearSTLLR(
        4,
        1,
        psi=psi,
        weight_standardization=False,
        dtype=torch.float64,
        factors=[0.5, 0.8, -0.2, 1],
    )
    with torch.no_grad():
        layer.weight.fill_(0.3)
        layer.bias.zero_()
    g = torch.Generator().manual_seed(0)
    inputs = (torch.rand(T, 1, 4, generator=g, dtype=torch.float64) < 0.3).double()
    return record_layer(layer, inputs)


def test_neuron_record_every_panel_has_a_y_label_and_the_spikes_on_the_psi_panel():
    rec = _record()
    assert rec["spikes"].sum() > 0
    fig = plot_neuron_record(rec, synapse=2)
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert len(labels) == 4 and all(labels)
    assert "2" in labels[0] and "dL/dW[2]" in labels[3]
    (spike_line,) = [ln for ln in fig.axes[2].lines if ln.get_label() == "output spike"]
    np.testing.assert_array_equal(spike_line.get_xdata(), np.flatnonzero(rec["spikes"] > 0))


def test_psi_functions_highlight_several():
    fig = plot_psi_functions(highlight=["rational", "sigmoid"])
    widths = {ln.get_label().split()[0]: ln.get_linewidth() for ln in fig.axes[0].lines}
    assert widths["rational"] == widths["sigmoid"] > widths["triangle"] == widths["fast_sigmoid"]
    fig = plot_psi_functions(highlight="triangle")
    widths = {ln.get_label().split()[0]: ln.get_linewidth() for ln in fig.axes[0].lines}
    assert widths["triangle"] > widths["rational"]


def test_psi_at_spikes_draws_each_step_and_the_spike_membranes():
    records = {"rational": _record("rational"), "sigmoid": _record("sigmoid")}
    fig = plot_psi_at_spikes(records)
    ax_v, ax_t = fig.axes
    for name, rec in records.items():
        v = rec["membrane_pre_reset"] - rec["theta"]
        dots = [
            ln
            for ln in ax_v.lines
            if ln.get_marker() == "o" and np.array_equal(ln.get_ydata(), rec["psi"])
        ]
        assert len(dots) == 1 and np.array_equal(dots[0].get_xdata(), v), name
        (line,) = [ln for ln in ax_t.lines if ln.get_label().startswith(name)]
        np.testing.assert_array_equal(line.get_ydata(), rec["psi"])
    rec = records["rational"]
    (ticks,) = [ln for ln in ax_v.lines if ln.get_label() == "v at an output spike"]
    np.testing.assert_array_equal(
        ticks.get_xdata(), (rec["membrane_pre_reset"] - rec["theta"])[rec["spikes"] > 0]
    )
    with pytest.raises(ValueError, match="^records: "):
        plot_psi_at_spikes({})
    with pytest.raises(ValueError, match="^records: "):
        plot_psi_at_spikes({"relu": rec})


def test_stdp_window_halves_are_not_joined_and_stems_reach_the_values():
    dts = np.arange(-3, 4)
    w = stdp_window_analytic(dts, [0.5, 0.8, -1.0, 1.0])
    fig = plot_stdp_window(
        dts, {"line": w, "stems": 2 * w}, styles={"line": {"ls": "-"}, "stems": {"stem": True}}
    )
    ax = fig.axes[0]
    assert ax.get_ylabel() == STDP_YLABEL and "delta = +1" in STDP_YLABEL
    halves = [ln for ln in ax.lines if ln.get_linestyle() == "-" and len(ln.get_xdata()) > 2]
    # one line per half: no segment from dt = -1 to dt = 0
    assert [list(ln.get_xdata()) for ln in halves] == [[-3, -2, -1], [0, 1, 2, 3]]
    np.testing.assert_array_equal(np.concatenate([ln.get_ydata() for ln in halves]), w)
    assert halves[0].get_color() == halves[1].get_color()
    (stems,) = ax.collections
    segments = stems.get_segments()
    np.testing.assert_array_equal([s[0] for s in segments], np.c_[dts, np.zeros(7)])
    np.testing.assert_array_equal([s[1] for s in segments], np.c_[dts, 2 * w])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["line", "stems"]
    with pytest.raises(ValueError, match="^curves: "):
        plot_stdp_window(dts, {"short": w[:3]})
