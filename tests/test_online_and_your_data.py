"""stllr.studies.online_and_your_data (notebook 12): the online mode's per-step weight changes
against the library's train_batch, the small-rate limit, saved bytes against T, the event-array
and tonic wrappers against frames counted by hand, a user's module against the library model,
and the one-line errors for bad input."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import stllr
from stllr.models import build_model
from stllr.studies import online_and_your_data as od
from stllr.studies.common import Method
from stllr.training.loop import stllr_window, time_major, train_batch

CLASSES, INPUTS, HIDDEN, T = 3, 16, 24, 12


def _net(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return build_model(
        "randman_rsnn_stllr",
        num_classes=CLASSES,
        input_shape=(INPUTS,),
        hidden=HIDDEN,
        psi="sigmoid",
        factors=[0.5, 1, 1, 1],
    ).to(dtype)


def _batch(seed=0, B=6, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    frames = (torch.rand(B, T, INPUTS, generator=g) < 0.3).to(dtype)
    labels = torch.randint(0, CLASSES, (B,), generator=g)
    return frames, labels


def _by_hand(events, units, dt, steps):
    """Frames counted one event at a time (the reference for the wrappers)."""
    out = np.zeros((steps, units), dtype=np.int64)
    for t, x in zip(events["t"].tolist(), events["x"].tolist()):
        if t < steps * dt:
            out[t // dt, x] += 1
    return out


# ----------------------------------------------------------------------------- part 1
@pytest.mark.parametrize("mode", od.MODES)
def test_sequence_weight_changes_ends_where_train_batch_does(mode):
    frames, labels = _batch()
    a, b = _net(), _net()
    oa, ob = (torch.optim.Adam(m.parameters(), lr=1e-3) for m in (a, b))
    train_batch(a, frames, labels, oa, F.cross_entropy, mode, 8, chunk=0)
    tr = od.sequence_weight_changes(b, frames, labels, ob, mode, 8)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert tr["step"].shape == (T,) and tr["cumulative"].shape == (T,)
    assert np.all(tr["step"][: T - 8] == 0)  # no change before the window
    if mode == "stllr":
        assert np.all(tr["step"][:-1] == 0) and tr["step"][-1] > 0
        assert tr["cumulative"][-1] == pytest.approx(tr["step"][-1])
    else:
        assert np.all(tr["step"][T - 8 :] > 0)  # a change at every learning step
        # the cumulative change is the norm of the summed changes: at most their sum
        assert tr["cumulative"][-1] <= tr["step"].sum() + 1e-12
    start = torch.cat([p.detach().reshape(-1) for p in _net().parameters()])
    end = torch.cat([p.detach().reshape(-1) for p in b.parameters()])
    assert tr["cumulative"][-1] == pytest.approx(float((end - start).norm()), rel=1e-12)


def test_online_sum_approaches_accumulated_as_lr_shrinks():
    frames, labels = _batch()
    net = _net()
    before = copy.deepcopy(net.state_dict())
    gaps = [od.online_sum_vs_accumulated(net, frames, labels, 8, lr) for lr in (1e-7, 1e-5, 1e-3)]
    assert gaps[0] < 1e-4 and gaps[0] < gaps[1] < gaps[2]
    # first order in lr: 100x the rate, about 100x the gap
    assert 20 < gaps[1] / gaps[0] < 500
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])  # the model is left unchanged
    with pytest.raises(ValueError, match="^lr: "):
        od.online_sum_vs_accumulated(net, frames, labels, 8, 0.0)


def test_saved_bytes_constant_in_T_for_online_and_linear_for_bptt():
    s = build_model("randman_rsnn_stllr", num_classes=3, input_shape=(10,), hidden=8)
    b = build_model("randman_rsnn_bptt", num_classes=3, input_shape=(10,), hidden=8)
    rows = od.saved_bytes_vs_T(s, b, [5, 10, 20], batch_size=2)
    online = [r["online"] for r in rows]
    bptt = [r["bptt"] for r in rows]
    assert online[0] > 0 and len(set(online)) == 1
    # BPTT keeps every step: the bytes per step are the same at every T
    assert (bptt[1] - bptt[0]) * 2 == bptt[2] - bptt[1]
    assert bptt[1] > bptt[0] > online[0] and bptt[2] > 5 * online[2]
    with pytest.raises(ValueError, match="^Ts: "):
        od.saved_bytes_vs_T(s, b, [0])


def test_mode_methods_and_config():
    c = od.study_config()
    ms = od.mode_methods(c)
    assert [m.key for m in ms] == [
        "stllr@0.02",
        "stllr_online@0.0005",
        "stllr_online@0.001",
        "stllr_online@0.002",
    ]
    assert all(isinstance(m, Method) and m.window == 20 and m.psi == "sigmoid" for m in ms)
    assert [m.mode for m in ms] == ["stllr"] + ["stllr_online"] * 3
    with pytest.raises(ValueError, match="^grids: "):
        od.mode_methods(c, {"bptt": [1e-3]})
    with pytest.raises(ValueError, match="^grids: "):
        od.mode_methods(c, {"stllr": [-1.0]})


# ----------------------------------------------------------------------------- part 2
def test_events_dataset_equals_frames_counted_by_hand():
    events, labels = od.toy_recordings(n_per_class=4, seed=3)
    # an event after T * dt is dropped; one exactly on a step boundary counts in the later step
    extra = np.array([(12 * 10_000, 0, 0), (3 * 10_000, 5, 0)], dtype=od.AUDIO_EVENT_DTYPE)
    events[0] = np.sort(np.concatenate([events[0], extra]), order="t")
    ds = od.events_dataset(events, labels, (16, 1, 1), 10_000, 12)
    assert len(ds) == 12 and ds.T == 12 and ds.input_shape == (16,) and ds.num_classes == 3
    for i, ev in enumerate(events):
        frames, label = ds[i]
        assert frames.dtype == torch.float32 and label == labels[i]
        assert np.array_equal(frames.numpy(), _by_hand(ev, 16, 10_000, 12))


def test_events_dataset_camera_shape():
    dt = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
    ev = np.array([(1, 2, 0, 1), (3, 0, 1500, 0), (3, 0, 1600, 0)], dtype=dt)
    ds = od.events_dataset([ev], [0], (4, 3, 2), 1000, 2)
    frames, _ = ds[0]
    expected = np.zeros((2, 2, 3, 4))
    expected[0, 1, 2, 1] = 1
    expected[1, 0, 0, 3] = 2
    assert ds.input_shape == (2, 3, 4)
    assert np.array_equal(frames.numpy(), expected)


def test_tonic_dataset_matches_events_dataset_and_slices(tmp_path):
    events, labels = od.toy_recordings(n_per_class=2, seed=1)
    od.write_folder_events(tmp_path, list(zip(events, labels)))
    rec = od.FolderEvents(tmp_path, (16, 1, 1))
    assert len(rec) == 6 and rec.classes == ["class_0", "class_1", "class_2"]
    frames = od.tonic_frames(rec, 10_000, 12)
    for j, f in enumerate(rec.data):
        i = int(f.rsplit("/", 1)[-1][:-4])
        assert rec.targets[j] == labels[i]
        assert np.array_equal(frames[j][0].numpy(), _by_hand(events[i], 16, 10_000, 12))
    sliced = od.tonic_frames(rec, 10_000, 6, slice_us=60_000)
    assert len(sliced) == 12  # two slices of each 120 ms recording (the last one incomplete)
    ev = rec[0][0]
    t0 = int(ev["t"][0])
    first = ev[ev["t"] < t0 + 60_000].copy()
    first["t"] -= t0
    assert np.array_equal(sliced[0][0].numpy(), _by_hand(first, 16, 10_000, 6))


class _UserNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.rec = stllr.RecurrentSTLLR(
            INPUTS, HIDDEN, leak=5.0, factors=[0.5, 1, 1, 1], psi="sigmoid"
        )
        self.readout = stllr.LeakyReadout(HIDDEN, CLASSES, leak=5.0, factors=[0, 0.99, 0, 1])

    def forward(self, x):
        return self.readout(self.rec(x))


def test_user_module_gradient_equals_library_model():
    frames, labels = _batch(seed=2)
    user, lib = _UserNet().double(), _net()
    rename = {"linear1.": "rec.", "last_layer.": "readout."}
    copied = od.load_matching(user, lib, rename)
    assert "rec.weight_rec" in copied and "readout.weight" in copied
    for m in (user, lib):
        stllr_window(m, time_major(frames), labels, F.cross_entropy, 8)
    errors = od.gradient_errors(user, lib, rename)
    assert set(errors) == {
        "rec.weight",
        "rec.bias",
        "rec.gain",
        "rec.weight_rec",
        "rec.gain_rec",
        "readout.weight",
        "readout.bias",
    }
    assert max(errors.values()) < 1e-12
    # an independent reference: the readout's weight gradient is sum_t delta_t^T tr_in_t by the rule
    assert float(lib.last_layer.weight.grad.abs().sum()) > 0
    user.zero_grad()
    with pytest.raises(ValueError, match="no gradient"):
        od.gradient_errors(user, lib, rename)
    with pytest.raises(ValueError, match="^rename: "):
        od.load_matching(user, lib, {"linear1.": "rec."})


def test_information_profile_finds_the_informative_steps():
    events, labels = od.toy_recordings(n_per_class=30, seed=0, informative=(2, 5))
    ds = od.events_dataset(events, labels, (16, 1, 1), 10_000, 12)
    frames = torch.stack([ds[i][0] for i in range(len(ds))])
    prof = od.information_profile(frames, torch.as_tensor(labels))
    assert prof.shape == (12,)
    assert prof[2:5].min() > 70 and np.delete(prof, [2, 3, 4]).max() < 60
    # one step by hand: nearest class mean of frame 3
    k = len(labels) // 2
    x = frames[:, 3].double()
    means = torch.stack([x[:k][torch.as_tensor(labels[:k]) == c].mean(0) for c in range(3)])
    pred = ((x[k:, None] - means[None]) ** 2).sum(-1).argmin(1).numpy()
    assert prof[3] == pytest.approx(100 * np.mean(pred == labels[k:]))


def test_psi_coverage_against_direct_membranes():
    layer = stllr.RecurrentSTLLR(INPUTS, HIDDEN, leak=5.0, psi="rational").double()
    frames, _ = _batch(seed=4)
    x = time_major(frames)
    cov = od.psi_coverage(layer, x, psis=("rational", "sigmoid"))
    assert layer.psi is stllr.rational and layer.state is None  # restored
    # the membranes by hand: v_t = m_t - theta, m_t = u_t + theta s_t (soft reset) from the state
    theta = max(float(layer.threshold), 0.5)
    vs = []
    layer.reset_state()
    with torch.no_grad():
        for t in range(T):
            s = layer(x[t])
            vs.append(layer.state.membrane + theta * s - theta)
    v = torch.stack(vs)
    assert cov["rational"] == pytest.approx(100 * float((stllr.rational(v) > 0.1).double().mean()))
    assert cov["sigmoid"] == pytest.approx(100 * float((stllr.sigmoid(v) > 0.1).double().mean()))
    assert cov["sigmoid"] > 5 * cov["rational"]


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        (dict(sensor_size=(16, 1)), "sensor_size"),
        (dict(time_window_us=0), "time_window_us"),
        (dict(n_steps=2.5), "n_steps"),
        (dict(labels=[0, 1]), "labels"),
        (dict(num_classes=1), "num_classes"),
    ],
)
def test_events_dataset_bad_input_names_the_argument(kwargs, arg):
    events, labels = od.toy_recordings(n_per_class=1)
    args = dict(
        events=events, labels=labels, sensor_size=(16, 1, 1), time_window_us=1000, n_steps=5
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=f"^{arg}: ") as err:
        od.events_dataset(**args)
    assert "\n" not in str(err.value)


def test_events_dataset_bad_events():
    events, labels = od.toy_recordings(n_per_class=1)
    with pytest.raises(ValueError, match="^events: .*outside"):
        od.events_dataset(events, labels, (8, 1, 1), 1000, 5)  # units up to 15 on an 8-unit sensor
    with pytest.raises(ValueError, match="^events: .*lacks"):
        bad = [np.zeros(3, dtype=[("t", "<i8"), ("x", "<i8")])] * 3
        od.events_dataset(bad, labels, (16, 1, 1), 1000, 5)
    with pytest.raises(ValueError, match="^events: "):
        od.events_dataset(events[0], labels[:1], (16, 1, 1), 1000, 5)
    with pytest.raises(ValueError, match="^sensor_size: "):
        od.frame_shape_for((0, 1, 1))


def test_tonic_frames_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="^save_to: "):
        od.FolderEvents(tmp_path, (16, 1, 1))
    events, labels = od.toy_recordings(n_per_class=1)
    od.write_folder_events(tmp_path, list(zip(events, labels)))
    rec = od.FolderEvents(tmp_path, (16, 1, 1))
    with pytest.raises(ValueError, match="^slice_us: "):
        od.tonic_frames(rec, 1000, 5, slice_us=-1)
    with pytest.raises(ValueError, match="^dataset: "):
        od.tonic_frames([(events[0], 0)], 1000, 5, sensor_size=(16, 1, 1))
    with pytest.raises(ValueError, match="^train_fraction: "):
        od.information_profile(torch.zeros(4, 3, 2), torch.zeros(4), train_fraction=1.0)
