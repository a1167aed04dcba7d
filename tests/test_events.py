"""stllr.studies.event_data (notebook 10): event arrays, frames, rasters, trace time scales, file formats.

References are hand-computed on a few events (counts per window written out with np.add.at, colours
from the module's documented formula, trace recursions by a loop) or come from the real file readers:
synthetic recordings are written with stllr.data.fixtures in the published SHD / DVS Gesture formats
and read back through tonic and stllr.data.get_dataset.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from stllr.data import fixtures as fx
from stllr.data import get_dataset
from stllr.studies import event_data as EV

plt = pytest.importorskip("matplotlib.pyplot")

AUDIO = np.dtype([("t", "<i8"), ("x", "<i8"), ("p", "<i8")])
VISION = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])

#: (t us, unit, polarity): unit 2 fires once ON and once OFF in the first millisecond
AUDIO_EVENTS = np.array(
    [(0, 0, 1), (500, 2, 1), (999, 2, 0), (1000, 1, 1), (2500, 3, 0)], dtype=AUDIO
)
#: (x, y, t us, p) on a 3 x 3 sensor
VISION_EVENTS = np.array(
    [(0, 0, 0, 1), (1, 2, 10, 0), (1, 2, 20, 0), (2, 1, 1500, 1), (2, 1, 1600, 0)], dtype=VISION
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def hand_frames(t_us, index, shape, window_us, n_frames, start_us=0):
    """Counts per window: frame k holds the events with start + k w <= t < start + (k + 1) w."""
    out = np.zeros((n_frames,) + shape, dtype=np.int64)
    k = (np.asarray(t_us) - start_us) // window_us
    keep = (k >= 0) & (k < n_frames)
    np.add.at(out, (k[keep],) + tuple(np.asarray(i)[keep] for i in index), 1)
    return out


# ----------------------------------------------------------------------------- events


def test_is_vision_by_fields():
    assert EV.is_vision(VISION_EVENTS) is True
    assert EV.is_vision(AUDIO_EVENTS) is False
    with pytest.raises(ValueError, match="fields t and x"):
        EV.is_vision(np.zeros(3, dtype=[("a", "<i8"), ("t", "<i8")]))
    with pytest.raises(ValueError, match="fields t and x"):
        EV.is_vision(np.zeros(3))


def test_describe_events_hand_computed():
    # 5 events over 2.5 ms -> 2000 events/s; 3 ON, 2 OFF
    assert EV.describe_events(AUDIO_EVENTS, (4, 1, 2)) == (
        "5 events, t from 0.0 to 2.5 ms (2.5 ms), 2000 events/s, ON 3 / OFF 2, sensor (4, 1, 2)"
    )
    shifted = AUDIO_EVENTS.copy()
    shifted["t"] += 10_000
    shifted["p"] = 1  # one polarity: no ON/OFF split; no sensor given
    assert EV.describe_events(shifted) == "5 events, t from 10.0 to 12.5 ms (2.5 ms), 2000 events/s"
    assert (
        EV.describe_events(AUDIO_EVENTS[:1]) == "1 events, t from 0.0 to 0.0 ms (0.0 ms)"
    )  # no rate for 0 ms
    assert EV.describe_events(AUDIO_EVENTS[:0]) == "0 events"


def test_to_frames_audio_counts_with_polarities_summed():
    f = EV.to_frames(AUDIO_EVENTS, (4, 1, 2), time_window_us=1000, start_time=0, end_time=4000)
    assert f.shape == (4, 4)  # [T, X]
    expected = hand_frames(AUDIO_EVENTS["t"], (AUDIO_EVENTS["x"],), (4,), 1000, 4)
    assert np.array_equal(f, expected)
    assert f[0, 2] == 2  # one ON and one OFF event of unit 2: summed
    # n_time_bins (tonic's SliceByTimeBins): bins of (t_last - t_first) // n from the first event, end
    # exclusive, so the last event (t = 2.5 ms) falls outside: [0, 1.25 ms), [1.25 ms, 2.5 ms)
    f2 = EV.to_frames(AUDIO_EVENTS, (4, 1, 2), n_time_bins=2)
    assert np.array_equal(f2, hand_frames(AUDIO_EVENTS["t"], (AUDIO_EVENTS["x"],), (4,), 1250, 2))
    # the input array is left alone (ToFrame works on a copy)
    assert np.array_equal(AUDIO_EVENTS["p"], [1, 1, 0, 1, 0])


def test_to_frames_vision_counts_by_polarity_and_pixel():
    f = EV.to_frames(VISION_EVENTS, (3, 3, 2), time_window_us=1000, start_time=0, end_time=2000)
    assert f.shape == (2, 2, 3, 3)  # [T, P, H, W]
    ev = VISION_EVENTS
    expected = hand_frames(ev["t"], (ev["p"], ev["y"], ev["x"]), (2, 3, 3), 1000, 2)
    assert np.array_equal(f, expected)
    assert f[0, 0, 2, 1] == 2 and f[1, 1, 1, 2] == 1 and f[1, 0, 1, 2] == 1


def test_frames_rgb_follows_its_colour_formula():
    frames = np.zeros((1, 2, 1, 4))
    frames[0, 1, 0, 0] = 4  # ON only, full intensity
    frames[0, 0, 0, 1] = 4  # OFF only
    frames[0, 1, 0, 2] = 2  # ON at half intensity
    rgb = EV.frames_rgb(torch.tensor(frames), vmax=4.0)
    assert rgb.shape == (1, 1, 4, 3)
    assert np.allclose(rgb[0, 0, 0], [1.0, 0.15, 0.15])  # red
    assert np.allclose(rgb[0, 0, 1], [0.15, 0.15, 1.0])  # blue
    assert np.allclose(rgb[0, 0, 2], [1.0, 0.575, 0.575])  # light red
    assert np.allclose(rgb[0, 0, 3], [1.0, 1.0, 1.0])  # white background
    # default vmax: the 99th percentile of the non-zero counts (np.percentile written out)
    f = np.zeros((2, 2, 2, 2))
    f[0, 1, 0, 0], f[1, 0, 1, 1], f[1, 1, 0, 1] = 1, 3, 100
    nz = np.sort(f[f > 0])
    pos = 0.99 * (len(nz) - 1)
    vmax = nz[int(pos)] + (pos - int(pos)) * (nz[int(pos) + 1] - nz[int(pos)])
    assert np.allclose(EV.frames_rgb(f), EV.frames_rgb(f, vmax=vmax))
    assert np.allclose(EV.frames_rgb(np.zeros((1, 2, 2, 2))), 1.0)  # no events: all white, vmax 1
    with pytest.raises(ValueError, match=r"\[T, 2, H, W\]"):
        EV.frames_rgb(np.zeros((1, 3, 2, 2)))


def test_frames_rgb_both_polarities_purple():
    frames = np.zeros((1, 2, 1, 1))
    frames[0, :, 0, 0] = 1.0  # ON and OFF at the same pixel
    r, g, b = EV.frames_rgb(frames, vmax=1.0)[0, 0, 0]
    assert r > g + 0.3 and b > g + 0.3  # purple: red and blue, little green
    assert (r, g, b) == pytest.approx((1.0, 0.15, 1.0))


def test_trace_time_constant_rejects_decays_outside_0_1():
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="decay"):
            EV.trace_time_constant_steps(bad)


# ----------------------------------------------------------------------------- time scales


def test_trace_span_and_time_constant():
    assert EV.trace_span_steps(0.0) == 1.0
    assert EV.trace_span_steps(0.9) == pytest.approx(10.0)
    assert EV.trace_span_steps(0.99) == pytest.approx(100.0)
    assert EV.trace_span_steps(1.0) == math.inf
    # the span is what the trace sums for a constant input of 1: 1 + lambda + lambda^2 + ...
    tr = EV.trace_over_time(np.ones((2000, 1)), 0.99)
    assert tr[-1, 0] == pytest.approx(EV.trace_span_steps(0.99), rel=1e-6)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="decay"):
            EV.trace_span_steps(bad)
    # e-folding: lambda^tau = 1/e
    for lam in (0.3, 0.9, 0.99):
        tau = EV.trace_time_constant_steps(lam)
        assert lam**tau == pytest.approx(math.exp(-1.0), rel=1e-12)
    assert EV.trace_time_constant_steps(0.0) == 0.0
    assert EV.trace_time_constant_steps(1.0) == math.inf
    # for lambda near 1 the e-folding time is half a step shorter than the span
    assert EV.trace_span_steps(0.999) - EV.trace_time_constant_steps(0.999) == pytest.approx(
        0.5, abs=1e-3
    )


def test_trace_over_time_is_the_pre_trace_recursion():
    counts = np.array([[1, 0], [0, 2], [1, 1], [0, 0]])
    tr = EV.trace_over_time(counts, 0.5)
    assert tr.dtype == np.float64 and tr.shape == (4, 2)
    assert np.allclose(tr, [[1, 0], [0.5, 2], [1.25, 2], [0.625, 1]])
    assert np.array_equal(EV.trace_over_time(counts, 0.0), counts)  # lambda 0: the input itself
    frames = np.random.default_rng(0).integers(0, 3, (5, 2, 3, 3))
    tr = EV.trace_over_time(frames, 0.7)
    ref = np.zeros((2, 3, 3))
    for t in range(5):
        ref = 0.7 * ref + frames[t]
        assert np.allclose(tr[t], ref)


def test_trace_span_table_rows():
    table = EV.trace_span_table(
        {"a": 0.9, "whole": 1.0, "long": 0.9995}, {"SHD": 10.0, "Gesture": 75.0}
    )
    lines = table.splitlines()
    assert len(lines) == 5 and set(lines[1]) == {"-"} and len(lines[1]) == len(lines[0])
    assert "SHD" in lines[0] and "Gesture" in lines[0]
    a = lines[2].split()
    assert a[:3] == ["a", "0.9", "10.0"] and "100 ms" in lines[2] and "750 ms" in lines[2]
    assert lines[3].split()[:3] == ["whole", "1", "inf"] and lines[3].count("whole sample") == 2
    # 2000 steps: 20 s and 150 s (>= 10,000 ms are printed in seconds)
    assert "2000.0" in lines[4] and "20.0 s" in lines[4] and "150.0 s" in lines[4]


# ----------------------------------------------------------------------------- plots


def test_raster_coordinates_audio_and_vision():
    fig = EV.plot_raster(AUDIO_EVENTS, time_window_us=1000, sensor_size=(4, 1, 2))
    ax = fig.axes[0]
    (pts,) = ax.collections
    assert np.allclose(pts.get_offsets(), np.c_[AUDIO_EVENTS["t"] / 1000.0, AUDIO_EVENTS["x"]])
    assert [line.get_xdata()[0] for line in ax.lines] == pytest.approx(
        [0.0, 1.0, 2.0, 3.0]
    )  # frame edges
    assert ax.get_ylim() == pytest.approx((-0.5, 3.5))
    assert ax.get_xlabel() == "time (ms)" and ax.get_ylabel() == "input unit"

    fig = EV.plot_raster(VISION_EVENTS, axis="y")
    ax = fig.axes[0]
    on, off = ax.collections
    sel_on, sel_off = VISION_EVENTS["p"] == 1, VISION_EVENTS["p"] == 0
    assert np.allclose(
        on.get_offsets(), np.c_[VISION_EVENTS["t"][sel_on] / 1000.0, VISION_EVENTS["y"][sel_on]]
    )
    assert np.allclose(
        off.get_offsets(), np.c_[VISION_EVENTS["t"][sel_off] / 1000.0, VISION_EVENTS["y"][sel_off]]
    )
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ON (2)", "OFF (3)"]
    assert ax.yaxis_inverted()
    with pytest.raises(ValueError, match="axis"):
        EV.plot_raster(VISION_EVENTS, axis="t")


def test_raster_max_events_keeps_every_kth():
    many = np.zeros(10, dtype=AUDIO)
    many["t"] = np.arange(10) * 100
    many["x"] = np.arange(10)
    fig = EV.plot_raster(many, max_events=4)  # ceil(10 / 4) = 3: events 0, 3, 6, 9
    assert np.array_equal(fig.axes[0].collections[0].get_offsets()[:, 1], [0, 3, 6, 9])


def test_plot_frames_and_strip_show_the_frames():
    counts = np.array([[0, 3, 1], [2, 0, 0]])  # [T=2, X=3]
    fig = EV.plot_frames(counts, dt_ms=10)
    im = fig.axes[0].images[0]
    assert np.array_equal(im.get_array(), counts.T)  # time on x, unit on y
    assert im.get_extent() == pytest.approx([0, 20, -0.5, 2.5])
    assert im.get_clim() == (0, 3.0)

    frames = np.zeros((5, 2, 2, 2))
    frames[3, 1, 0, 0] = 1
    fig = EV.plot_frame_strip(frames, n=3, dt_ms=75)
    axes = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in axes] == [
        "t=0\n0 ms",
        "t=2\n150 ms",
        "t=4\n300 ms",
    ]  # stride (5 - 1) // (3 - 1) = 2
    fig = EV.plot_frame_strip(np.zeros((20, 2, 2, 2)), n=10)
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles == [f"t={k}" for k in range(0, 20, 2)]  # not the rounded linspace's 8, 11
    fig = EV.plot_frame_strip(frames, steps=[3])
    (ax,) = fig.axes
    assert np.allclose(ax.images[0].get_array(), EV.frames_rgb(frames)[3])


@pytest.mark.parametrize("T", [1, 2, 5, 19, 20, 25, 100])
@pytest.mark.parametrize("n", [1, 2, 3, 10])
def test_regular_steps_one_stride_from_zero(T, n):
    steps = EV.regular_steps(T, n)
    assert len(steps) == min(n, T) and steps[0] == 0 and steps[-1] <= T - 1
    gaps = set(np.diff(steps).tolist())
    assert len(gaps) <= 1  # one stride
    if len(steps) > 1:
        # the largest stride at which min(n, T) steps fit in T, by search
        best = max(k for k in range(1, T) if (len(steps) - 1) * k <= T - 1)
        assert gaps == {best}


def test_regular_steps_examples_and_errors():
    assert EV.regular_steps(20, 10) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    assert EV.regular_steps(100, 10) == [0, 11, 22, 33, 44, 55, 66, 77, 88, 99]
    assert EV.regular_steps(4, 8) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="^n: "):
        EV.regular_steps(10, 0)
    with pytest.raises(ValueError, match="^T: "):
        EV.regular_steps(0, 3)
    with pytest.raises(ValueError, match="^n: "):
        EV.regular_steps(10, 2.5)


def test_event_cloud_colours_by_time():
    fig = EV.plot_event_cloud(VISION_EVENTS, (3, 3, 2), arrow=(1.0, 0.0))
    ax = fig.axes[0]
    sc = ax.collections[0]
    assert np.allclose(sc.get_offsets(), np.c_[VISION_EVENTS["x"], VISION_EVENTS["y"]])
    assert np.allclose(sc.get_array(), VISION_EVENTS["t"] / 1000.0)
    assert ax.get_ylim() == pytest.approx((2.5, -0.5))  # image convention
    (arrow,) = ax.texts
    assert arrow.xy == pytest.approx(
        (1.5 + 0.9, 1.5)
    )  # from the centre, 30 % of the width to the right


def test_trace_spans_lines():
    fig = EV.plot_trace_spans({"SHD": 10.0}, marks={"a": 0.9}, durations_ms={"sample": 1000.0})
    ax = fig.axes[0]
    curve, mark, duration = ax.lines[0], ax.lines[1], ax.lines[-1]
    assert np.allclose(curve.get_ydata(), 10.0 / curve.get_xdata())  # memory = step / (1 - lambda)
    assert mark.get_xdata()[0] == pytest.approx(0.1) and mark.get_ydata()[0] == pytest.approx(100.0)
    assert list(duration.get_ydata()) == [1000.0, 1000.0]


def test_trace_vs_window_bars_and_trace():
    """Units 0..2 over 6 ms; bars: events of units 1-2 per frame; line: their trace."""
    t_us = (
        np.array([1000, 1200, 2500, 2600, 3100, 5900]) + 7000
    )  # the plot shifts time to the first event
    ev = np.zeros(len(t_us), dtype=AUDIO)
    ev["t"], ev["x"], ev["p"] = t_us, [1, 0, 2, 1, 1, 2], 1
    lam = 0.5
    fig = EV.plot_trace_vs_window(ev, (3, 1, 1), [1.0, 2.0], lam, units=[1, 2], duration_ms=6.0)
    rel = t_us - t_us.min()
    sel = ev["x"] >= 1
    for ax, w in zip(fig.axes[1:], (1, 2)):
        n = math.ceil(6.0 / w)
        counts = np.bincount(rel[sel] // (w * 1000), minlength=n)[:n]
        assert [p.get_height() for p in ax.patches] == list(counts)
        assert [p.get_x() for p in ax.patches] == pytest.approx(list(np.arange(n) * w))
        trace = EV.trace_over_time(counts, lam)
        (line,) = ax.lines
        assert np.allclose(line.get_ydata(), trace) and np.allclose(
            line.get_xdata(), np.arange(1, n + 1) * w
        )
        assert f"T = {n} steps" in ax.texts[0].get_text()


def test_animation_panels_and_gif(tmp_path):
    PIL = pytest.importorskip("PIL.Image")
    frames = np.zeros((4, 2, 3, 3))
    for t in range(4):
        frames[t, 1, 1, t % 3] = 1 + t
    anim, fig = EV.animate_frames(frames, dt_ms=10, trace_lambda=0.5, title="x")
    frame_ax, trace_ax = fig.axes
    anim._func(2)  # draw step 2
    assert np.allclose(frame_ax.images[0].get_array(), EV.frames_rgb(frames)[2])
    assert np.allclose(
        trace_ax.images[0].get_array(), EV.frames_rgb(EV.trace_over_time(frames, 0.5))[2]
    )
    assert fig._suptitle.get_text() == "x\nstep 2, t = 20 ms"
    path = EV.save_gif(anim, tmp_path / "sub" / "a.gif", fps=5)
    assert path == str(tmp_path / "sub" / "a.gif")
    with PIL.open(path) as img:
        assert img.format == "GIF" and img.n_frames == 4


# ----------------------------------------------------------------------------- file formats


def test_moving_shapes_as_gesture_rows_by_hand():
    ev = np.array([(3, 1, 20_000, 1), (0, 2, 5_000, 0), (7, 7, 20_000, 0)], dtype=VISION)
    rows = EV.moving_shapes_as_gesture(ev, scale=4, time_scale=7.5)
    assert rows.dtype == np.int64
    # x*4, y*4, p, round(t_us * 7.5 / 1000) ms, sorted by time (stable for ties)
    assert rows.tolist() == [[0, 8, 0, 38], [12, 4, 1, 150], [28, 28, 0, 150]]


def test_gesture_recording_round_trips_through_the_real_reader(tmp_path):
    ev = np.zeros(6, dtype=VISION)
    ev["x"], ev["y"] = [1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]
    ev["t"], ev["p"] = [0, 10_000, 20_000, 30_000, 40_000, 250_000], [1, 0, 1, 1, 0, 1]
    rows = EV.moving_shapes_as_gesture(ev)
    fx.write_dvsgesture(tmp_path, [(24, "fluorescent", 10, rows)], train=False)
    ds = get_dataset("dvsgesture", tmp_path, train=False, size=128, cache=False)
    k = EV.find_item(ds, os.path.join("user24_fluorescent", "10.npy"))
    got = ds.events(k)
    assert np.array_equal(got["x"], ev["x"] * 4) and np.array_equal(got["y"], ev["y"] * 4)
    assert np.array_equal(got["p"].astype(int), ev["p"])
    assert np.array_equal(
        got["t"], np.round(ev["t"] * 7.5 / 1000).astype(np.int64) * 1000
    )  # ms -> us by tonic
    frames, label = ds[k]
    assert (
        label == 10 and float(frames.sum()) == 5
    )  # 75 ms frames from the first event; last bin incomplete
    with pytest.raises(KeyError, match="no recording"):
        EV.find_item(ds, "user99_led/3.npy")


def test_find_item_through_the_training_slices(tmp_path):
    rows = np.array([[1, 1, 1, 0], [2, 2, 0, 3000]], dtype=np.int64)  # 3 s: two 1.575 s slices
    fx.write_dvsgesture(tmp_path, [(3, "fluorescent", 4, rows)], train=True)
    ds = get_dataset("dvsgesture", tmp_path, train=True, size=128, cache=False, augment=False)
    k = EV.find_item(ds, os.path.join("user03_fluorescent", "4.npy"))
    sliced = ds.events_dataset
    rec = sliced.dataset.data.index(
        str(tmp_path / "DVSGesture" / "ibmGestureTrain" / "user03_fluorescent" / "4.npy")
    )
    assert int(sliced.table[ds.indices[k], 0]) == rec
    assert all(
        int(sliced.table[ds.indices[i], 0]) != rec for i in range(k)
    )  # the first slice of it
    assert ds[k][1] == 4


def test_find_item_of_a_recording_outside_the_split():
    class Base:
        data = ["a/1.npy", "b/2.npy", "c/3.npy"]

    class Split:
        events_dataset = Base()
        indices = np.array([0, 2])

    assert EV.find_item(Split(), "c/3.npy") == 1
    with pytest.raises(KeyError, match="not in this split"):
        EV.find_item(Split(), "b/2.npy")


def test_chirp_samples_sweep_and_shd_round_trip(tmp_path):
    samples = EV.chirp_samples(3, seed=1, duration_s=0.5, n_spikes=400)
    again = EV.chirp_samples(3, seed=1, duration_s=0.5, n_spikes=400)
    assert len(samples) == 3
    for i, ((t, u, label), (t2, u2, _)) in enumerate(zip(samples, again)):
        assert np.array_equal(t, t2) and np.array_equal(u, u2)  # deterministic
        assert label == i % 20 and len(t) == len(u) == 400
        assert np.all(np.diff(t) >= 0) and t.min() >= 0.05 and t.max() <= 0.55
        assert u.dtype == np.int64 and u.min() >= 0 and u.max() <= 699
        r = np.corrcoef(t, u)[0, 1]
        assert (r > 0.5) if i % 2 == 0 else (r < -0.5)  # band sweeping up, then down
    fx.write_shd(tmp_path, samples, train=True)
    ds = get_dataset("shd", tmp_path, train=True)
    for i, (t, u, label) in enumerate(samples):
        ev = ds.events(i)
        assert len(ev) == 400
        assert np.array_equal(np.sort(ev["x"]), np.sort(u))
        assert np.allclose(
            np.sort(ev["t"]) / 1e6, np.sort(t), rtol=1e-3
        )  # float16 seconds in the file
        frames, y = ds[i]
        assert y == label
        # the dataset's frames are EV.to_frames of the same events (10 ms windows from the first event)
        ours = EV.to_frames(ev, ds.sensor_size, time_window_us=10_000)
        assert np.array_equal(frames.numpy(), ours.astype(np.float32))
