"""Tests of stllr.data: recorded datasets through tonic on offline fixtures, the procedural
tasks, caching, loaders, errors and the two data scripts."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tonic
import torch

import stllr._io as _io
import stllr.data._cache as cache_mod
import stllr.data.moving_shapes as ms_mod
import stllr.data.randman as rm_mod
from stllr.data import (
    DATASETS,
    DatasetNotFoundError,
    dataset_options,
    get_dataset,
    get_loaders,
    pad_collate,
    real,
)
from stllr.data import fixtures as fx
from stllr.data.aedat4 import read_aedat4, write_aedat4

REPO = Path(__file__).resolve().parents[1]
SMALL_RANDMAN = dict(n_units=20, n_classes=4, n_train_per_class=12, n_test_per_class=5, n_steps=30)
SMALL_SHAPES = dict(n_train_per_class=10, n_test_per_class=4, size=16, n_steps=8, shape_size=(3, 5))


@pytest.fixture(autouse=True)
def _no_download(monkeypatch):
    """Any implicit download attempt by tonic fails the test."""

    def refuse(self):
        raise AssertionError(f"tonic tried to download {self!r}")

    monkeypatch.setattr(tonic.dataset.Dataset, "download", refuse)


@pytest.fixture(scope="module")
def fast_dir(tmp_path_factory):
    """Folder factory for fixtures with thousands of files (tonic's minimum counts): on tmpfs
    when available (file creation on a busy disk can take many seconds), else a pytest tmp dir."""
    made = []

    def make(name: str) -> Path:
        shm = Path("/dev/shm")
        if shm.is_dir() and os.access(shm, os.W_OK):
            path = Path(tempfile.mkdtemp(prefix=f"stllr-test-{name}-", dir=shm))
            made.append(path)
            return path
        return tmp_path_factory.mktemp(name)

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(
        f"_script_{name}", REPO / "data_scripts" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ============================================================================ SHD

# Spike times (s) / units of a sample with a known frame decomposition. Stored as float16
# like the published file; t0 = first spike, window [t0, t0 + 1 s), 10 ms bins.
SHD_TIMES = [0.05, 0.0512, 0.3, 0.3, 0.7, 1.0, 1.049, 1.06, 1.3]
SHD_UNITS = [3, 3, 10, 699, 0, 5, 6, 7, 8]
SHD_SHORT = ([0.2, 0.203, 0.251], [1, 2, 3])


def expected_shd_frames(times_s, units, window_us=1_000_000, bin_us=10_000):
    """Independent re-implementation of the SHD preprocessing (float16 s -> int us, crop to the
    first second after the first spike, count in 10 ms bins; like tonic's ToFrame, a trailing
    incomplete bin is dropped)."""
    t = (np.asarray(times_s, dtype=np.float16).astype(np.float64) * 1e6).astype(np.int64)
    u = np.asarray(units)
    t0 = t.min()
    keep = t < t0 + window_us
    t, u = t[keep], u[keep]
    n_bins = max((t.max() - t0 - bin_us) // bin_us + 1, 1)
    b = (t - t0) // bin_us
    out = np.zeros((n_bins, 700), dtype=np.float32)
    np.add.at(out, (b[b < n_bins], u[b < n_bins]), 1)
    return out


@pytest.fixture
def shd_dir(tmp_path):
    samples = [(SHD_TIMES, SHD_UNITS, 7), (*SHD_SHORT, 12)]
    rng = np.random.default_rng(1)
    for i in range(4):
        t = np.sort(rng.uniform(0, 1.4, 300))
        samples.append((t, rng.integers(0, 700, 300), i))
    fx.write_shd(tmp_path, samples, train=True)
    fx.write_shd(tmp_path, samples[:2], train=False)
    return tmp_path, samples


def test_shd_frames_exact_counts(shd_dir):
    shd_dir, samples = shd_dir
    ds = get_dataset("shd", shd_dir)
    assert isinstance(ds.events_dataset, tonic.datasets.SHD)  # tonic's own class reads the file
    assert len(ds) == 6 and ds.num_classes == 20 and ds.input_shape == (700,)
    frames, label = ds[0]
    assert label == 7 and frames.dtype == torch.float32
    expected = expected_shd_frames(SHD_TIMES, SHD_UNITS)
    assert frames.shape == expected.shape == (99, 700)
    np.testing.assert_array_equal(frames.numpy(), expected)
    # hand-checked entries: both spikes of unit 3 in bin 0, t=0.3 s -> bin 25, 0.7 -> 65, 1.0 -> 95
    assert frames[0, 3] == 2 and frames[25, 10] == 1 and frames[25, 699] == 1
    assert frames[65, 0] == 1 and frames[95, 5] == 1
    assert (
        frames.sum() == 6
    )  # 1.06 s and 1.3 s are after the first second; 1.049 s is in the dropped last bin
    for i in range(2, 6):  # random 1.4 s samples: cropped to 1 s, T <= 100
        f, label = ds[i]
        assert label == samples[i][2] and f.shape[0] <= 100
        np.testing.assert_array_equal(f.numpy(), expected_shd_frames(samples[i][0], samples[i][1]))


def test_shd_loader_pads_to_batch_max(shd_dir):
    shd_dir, _ = shd_dir
    train_loader, test_loader, info = get_loaders(
        "shd", shd_dir, batch_size=4, val_batch_size=2, seed=0
    )
    assert info["num_classes"] == 20 and info["input_shape"] == (700,) and info["T"] == 100
    frames, labels = next(iter(test_loader))
    assert frames.dtype == torch.float32 and labels.dtype == torch.int64
    short = expected_shd_frames(*SHD_SHORT)
    assert frames.shape == (2, 99, 700)  # padded to the longest sample of the batch
    assert labels.tolist() == [7, 12]
    np.testing.assert_array_equal(frames[1, : len(short)].numpy(), short)
    assert frames[1, len(short) :].abs().sum() == 0
    for frames, _ in train_loader:
        assert frames.ndim == 3 and frames.shape[2] == 700 and frames.shape[1] <= 100


# ============================================================================ missing data


@pytest.mark.parametrize("name", ["shd", "dvsgesture", "cifar10dvs", "nmnist"])
def test_missing_dataset_error_names_download_command(tmp_path, name):
    data_path = tmp_path / "data"
    with pytest.raises(DatasetNotFoundError) as err:
        get_dataset(name, data_path)
    assert isinstance(err.value, FileNotFoundError)
    assert f"python data_scripts/download.py {name} --data-path {data_path}" in str(err.value)
    assert not (data_path / "stllr_cache").exists()


def test_archive_without_extracted_files_is_reported(tmp_path):
    fx.write_dvsgesture(tmp_path, train=True)
    for p in (tmp_path / "DVSGesture" / "ibmGestureTrain").rglob("*.npy"):
        if int(p.stem) > 4:
            p.unlink()  # archive present, extraction incomplete (< 100 files)
    with pytest.raises(
        DatasetNotFoundError, match="extracted files are missing or incomplete"
    ) as err:
        get_dataset("dvsgesture", tmp_path)
    assert real.download_command("dvsgesture", tmp_path) in str(err.value)


# ============================================================================ DVS Gesture

# x, y, p, t_ms: 3.2 s -> two 1.575 s slices; the 3.3 s event is past the second slice
DVS_EVENTS = np.array(
    [
        [10, 20, 1, 100],
        [10, 20, 1, 100],
        [50, 60, 0, 175],
        [70, 80, 1, 1000],
        [5, 5, 1, 1674],
        [30, 40, 0, 1700],
        [31, 41, 1, 3000],
        [1, 1, 1, 3300],
    ],
    dtype=np.int64,
)


@pytest.fixture(scope="module")
def dvs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("dvs")
    fx.write_dvsgesture(root, [(1, "fluorescent", 3, DVS_EVENTS)], train=True)
    fx.write_dvsgesture(root, [(24, "fluorescent", 5, DVS_EVENTS)], train=False)
    return root


def test_dvsgesture_train_slices_and_frames(dvs_dir):
    ds = get_dataset("dvsgesture", dvs_dir, size=128, augment=False, cache=False)
    sliced = ds.events_dataset
    assert isinstance(sliced.dataset, tonic.datasets.DVSGesture)
    rec = sliced.dataset.data.index(
        str(dvs_dir / "DVSGesture" / "ibmGestureTrain" / "user01_fluorescent" / "3.npy")
    )
    rows = np.nonzero(sliced.table[:, 0] == rec)[0]
    assert len(rows) == 2  # 3.2 s recording -> 2 full 1.575 s slices
    first, second = ds[int(rows[0])], ds[int(rows[1])]
    assert first[1] == second[1] == 3
    f = first[0]
    assert f.shape == (20, 2, 128, 128)
    exp = torch.zeros_like(f)
    exp[0, 1, 20, 10] = 2  # t = 100 ms (slice start), twice
    exp[1, 0, 60, 50] = 1  # 175 ms -> bin 1
    exp[12, 1, 80, 70] = 1  # 1000 ms -> bin 12; 1674 ms is in the 21st bin and dropped
    assert torch.equal(f, exp)
    g = second[0]
    exp = torch.zeros_like(g)
    exp[0, 0, 40, 30] = 1  # 1700 ms starts slice 2
    exp[17, 1, 41, 31] = 1  # 3000 ms -> (3000 - 1700) // 75 = 17
    assert torch.equal(g, exp)


def test_dvsgesture_default_pipeline_and_cache(dvs_dir, monkeypatch):
    ds = get_dataset("dvsgesture", dvs_dir)
    assert ds.num_classes == 11 and ds.input_shape == (2, 32, 32) and ds.T == 20
    frames, label = ds[0]
    assert (
        frames.shape == (20, 2, 32, 32) and frames.dtype == torch.float32
    )  # RandomCrop(32, pad 4)
    cached = ds.cache.path(0)
    assert cached.is_file() and not list(cached.parent.glob("*.tmp"))
    # bilinear antialiased 128 -> 32 keeps the mass of interior events (count / 16)
    plain = get_dataset("dvsgesture", dvs_dir, augment=False)
    rec = plain.events_dataset.dataset.data.index(
        str(dvs_dir / "DVSGesture" / "ibmGestureTrain" / "user01_fluorescent" / "3.npy")
    )
    row = int(np.nonzero(plain.events_dataset.table[:, 0] == rec)[0][0])
    assert torch.allclose(plain[row][0].sum(), torch.tensor(4 / 16))
    # second access comes from the disk cache: loading events again would fail
    monkeypatch.setattr(real.SlicedEvents, "__getitem__", lambda self, i: pytest.fail("cache miss"))
    assert torch.equal(plain.frames(row), plain.frames(row))


def test_dvsgesture_test_split_uses_full_recordings(dvs_dir):
    ds = get_dataset("dvsgesture", dvs_dir, train=False, size=128, cache=False)
    idx = ds.events_dataset.data.index(
        str(dvs_dir / "DVSGesture" / "ibmGestureTest" / "user24_fluorescent" / "5.npy")
    )
    frames, label = ds[idx]
    assert label == 5
    # whole 3.2 s recording in 75 ms bins from the first event: floor((3.2 s - 75 ms) / 75 ms) + 1
    assert frames.shape == (42, 2, 128, 128)
    assert frames.sum() == 8 - 1  # the 3.3 s event falls in the dropped incomplete last bin
    # bins counted from the first event (100 ms): 1000 -> 12, 1674 -> 20, 1700 -> 21, 3000 -> 38
    assert frames[0, 1, 20, 10] == 2 and frames[1, 0, 60, 50] == 1 and frames[12, 1, 80, 70] == 1
    assert frames[20, 1, 5, 5] == 1 and frames[21, 0, 40, 30] == 1 and frames[38, 1, 41, 31] == 1


# ============================================================================ N-MNIST

NMNIST_EVENTS = np.array(  # x, y, t_us, p
    [[0, 0, 0, 1], [33, 33, 5000, 0], [10, 20, 15000, 1], [10, 20, 19999, 1], [5, 6, 45000, 0]]
)


@pytest.fixture(scope="module")
def nmnist_dir(fast_dir):
    root = fast_dir("nmnist")
    fx.write_nmnist(root, [(NMNIST_EVENTS, 7)], train=True)  # 10 x 1000 files: tonic's minimum
    return root


def test_nmnist_frames_and_augmentation(nmnist_dir):
    ds = get_dataset("nmnist", nmnist_dir, augment=False)
    assert isinstance(ds.events_dataset, tonic.datasets.NMNIST) and len(ds) == 10000
    frames, label = ds[7000]  # first file of digit 7 in tonic's (sorted) order
    assert label == 7 and ds.events_dataset.data[7000].endswith("7/00000.bin")
    exp = torch.zeros(4, 2, 34, 34)  # 45 ms of events -> 4 complete 10 ms bins
    exp[0, 1, 0, 0] = 1
    exp[0, 0, 33, 33] = 1
    exp[1, 1, 20, 10] = 2
    assert torch.equal(frames, exp)
    aug = get_dataset("nmnist", nmnist_dir)
    torch.manual_seed(0)
    crops = [aug[7000][0] for _ in range(8)]
    assert all(c.shape == (4, 2, 34, 34) for c in crops)
    assert all(c.sum() <= 4 for c in crops) and any(not torch.equal(c, exp) for c in crops)


# ============================================================================ CIFAR10-DVS

CIFAR_EVENTS = np.stack(  # t_us, x, y, p: 25 events -> 10 bins of 2 events, last 5 dropped
    [np.arange(25) * 1000, np.arange(25) + 40, np.full(25, 64), np.arange(25) % 2], axis=1
)


@pytest.fixture(scope="module")
def cifar_dir(fast_dir):
    root = fast_dir("cifar")
    fx.write_cifar10dvs(root, [(CIFAR_EVENTS, 2)])  # 10 x 100 AEDAT4 files: tonic's minimum
    return root


def test_cifar10dvs_event_bins_split_and_normalisation(cifar_dir):
    raw = get_dataset(
        "cifar10dvs", cifar_dir, size=128, augment=False, normalize=False, cache=False
    )
    assert isinstance(raw.events_dataset, tonic.datasets.CIFAR10DVS)
    assert (
        len(raw) == 900
        and len(get_dataset("cifar10dvs", cifar_dir, train=False, cache=False)) == 100
    )
    i = 180  # classes 0 and 1 contribute 90 training files each; then bird 0
    assert raw.events_dataset.data[raw.indices[i]].endswith("bird/cifar10_bird_0.aedat4")
    frames, label = raw[i]
    assert label == 2 and frames.shape == (10, 2, 128, 128)
    exp = torch.zeros_like(frames)
    for k in range(20):
        exp[k // 2, k % 2, 64, 40 + k] = 1
    assert torch.equal(frames, exp)
    test = get_dataset("cifar10dvs", cifar_dir, train=False)
    names = [os.path.basename(test.events_dataset.data[j]) for j in test.indices[:10]]
    assert names == [f"cifar10_airplane_{n}.aedat4" for n in range(90, 100)]  # last 10 %
    frames, label = test[0]
    assert frames.shape == (10, 2, 48, 48) and label == 0
    mean = torch.tensor(real.CIFAR10DVS_MEAN).view(2, 1, 1)
    std = torch.tensor(real.CIFAR10DVS_STD).view(2, 1, 1)
    assert torch.allclose(frames * std + mean, test.frames(0), atol=1e-5)
    train = get_dataset("cifar10dvs", cifar_dir)
    assert train[0][0].shape == (10, 2, 48, 48)


def test_aedat4_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    t = np.sort(rng.integers(0, 10**6, 5000))
    x, y, p = rng.integers(0, 128, 5000), rng.integers(0, 128, 5000), rng.integers(0, 2, 5000)
    write_aedat4(tmp_path / "a.aedat4", t, x, y, p, events_per_packet=1000)
    ev = read_aedat4(tmp_path / "a.aedat4")
    assert len(ev) == 5000 and (ev["t"] == t).all() and (ev["x"] == x).all()
    assert (ev["y"] == y).all() and (ev["on"] == p.astype(bool)).all()


def test_aedat4_fixture_readable_by_aedat_package(tmp_path):
    aedat = pytest.importorskip("aedat")
    write_aedat4(tmp_path / "a.aedat4", [5, 7, 9], [1, 2, 3], [4, 5, 6], [1, 0, 1])
    decoded = np.concatenate([pk["events"] for pk in aedat.Decoder(str(tmp_path / "a.aedat4"))])
    mine = read_aedat4(tmp_path / "a.aedat4")
    for a, b in zip(("t", "x", "y", "on"), decoded.dtype.names):
        assert (mine[a] == decoded[b]).all()


# ============================================================================ randman


def test_randman_deterministic_and_seeded():
    a = rm_mod.generate_randman(**{**rm_mod.RANDMAN_DEFAULTS, **SMALL_RANDMAN})
    b = rm_mod.generate_randman(**{**rm_mod.RANDMAN_DEFAULTS, **SMALL_RANDMAN})
    c = rm_mod.generate_randman(**{**rm_mod.RANDMAN_DEFAULTS, **SMALL_RANDMAN, "seed": 1})
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["train_t"], c["train_t"])
    d = rm_mod.generate_randman(
        **{**rm_mod.RANDMAN_DEFAULTS, **SMALL_RANDMAN, "n_test_per_class": 9}
    )
    np.testing.assert_array_equal(
        a["train_t"], d["train_t"]
    )  # test size does not touch training data


def test_randman_every_unit_fires_fixed_count_and_class_is_in_timing(tmp_path):
    ds = get_dataset("randman", tmp_path, n_spikes=2, **SMALL_RANDMAN)
    assert ds.sensor_size == (20, 1, 1) and ds.input_shape == (20,) and ds.T == 30
    frames = np.stack([ds[i][0].numpy() for i in range(len(ds))])
    assert frames.shape == (48, 30, 20) and ds[0][0].dtype == torch.float32
    assert (frames.sum(1) == 2).all()  # every unit, every sample: exactly n_spikes spikes
    ev = ds.events(0)
    assert ev.dtype.names == ("t", "x", "p") and np.all(np.diff(ev["t"]) >= 0)
    exp = np.zeros((30, 20), dtype=np.float32)
    np.add.at(exp, (ev["t"] // ds.dt_us, ev["x"]), 1)
    np.testing.assert_array_equal(frames[0], exp)

    # default task: counts carry nothing, each unit's mean firing time carries ~nothing, the
    # joint timing pattern identifies the class (1-nearest neighbour far above chance)
    tr, te = get_dataset("randman", tmp_path), get_dataset("randman", tmp_path, train=False)
    assert len(tr) == 1000 and len(te) == 250 and tr.num_classes == 10

    def spike_steps(d):
        out = np.empty((len(d), 100), dtype=np.int64)
        for i in range(len(d)):
            f = d[i][0].numpy()
            assert (f.sum(0) == 1).all()  # one spike per unit
            out[i] = f.argmax(0)
        return out

    xt, xv = spike_steps(tr), spike_steps(te)
    class_means = np.stack([xt[tr.targets == c].mean(0) for c in range(10)])
    assert np.abs(class_means - (tr.T - 1) / 2).mean() < 2.5  # marginals ~ uniform in every class
    nearest = tr.targets[((xv[:, None, :] - xt[None]) ** 2).sum(-1).argmin(1)]
    assert (nearest == te.targets).mean() > 0.5


# ============================================================================ moving shapes


def test_moving_shapes_deterministic_and_event_format(tmp_path):
    a = ms_mod.generate_moving_shapes(**SMALL_SHAPES)
    b = ms_mod.generate_moving_shapes(**SMALL_SHAPES)
    c = ms_mod.generate_moving_shapes(**{**SMALL_SHAPES, "seed": 5})
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["train_t"], c["train_t"])
    ds = get_dataset("moving_shapes", tmp_path, **SMALL_SHAPES)
    ev = ds.events(3)
    assert ev.dtype == tonic.io.events_struct and np.all(np.diff(ev["t"]) >= 0)
    assert ev["t"].min() >= 0 and ev["t"].max() < 8 * ds.dt_us
    assert ev["x"].max() < 16 and ev["y"].max() < 16
    frames, label = ds[3]
    assert frames.shape == (8, 2, 16, 16) and 0 <= label < 4
    exp = np.zeros((8, 2, 16, 16), dtype=np.float32)
    np.add.at(exp, (ev["t"] // ds.dt_us, ev["p"].astype(int), ev["y"], ev["x"]), 1)
    np.testing.assert_array_equal(frames.numpy(), exp)


def test_moving_shapes_class_needs_motion_not_counts(tmp_path):
    opts = dict(n_train_per_class=80, n_test_per_class=40)
    tr = get_dataset("moving_shapes", tmp_path, **opts)
    te = get_dataset("moving_shapes", tmp_path, train=False, **opts)
    assert tr.input_shape == (2, 32, 32) and tr.T == 20 and tr.num_classes == 4
    dirs = ms_mod.direction_vectors(4)
    ys, xs = np.mgrid[0:32, 0:32]

    def centroid(img):
        return np.array([(img * xs).sum(), (img * ys).sum()]) / img.sum()

    def features(ds):
        counts, moved, ahead = [], [], []
        for i in range(len(ds)):
            f, c = ds[i]
            f = f.numpy()
            counts.append(f.sum((2, 3)).ravel())  # events per frame and polarity
            on = f[:, 1]
            moved.append(centroid(on[-5:].sum(0)) - centroid(on[:5].sum(0)))
            g = f[10]
            if g[0].sum() >= 3 and g[1].sum() >= 3:
                ahead.append((centroid(g[1]) - centroid(g[0])) @ dirs[c] > 0)
        return np.stack(counts), np.stack(moved), ahead

    ctr, moved, ahead = features(tr)
    cte, _, _ = features(te)
    # 1) event counts per frame and polarity do not reveal the class (nearest centroid ~ chance)
    centroids = np.stack([ctr[tr.targets == c].mean(0) for c in range(4)])
    pred = ((cte[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert (pred == te.targets).mean() < 0.45
    # 2) the ON events' centroid moves in the labelled direction
    assert ((moved @ dirs.T).argmax(1) == tr.targets).mean() > 0.9
    # 3) one frame is ambiguous: ON ahead of OFF (along the motion) about half the time
    assert len(ahead) > 100 and 0.3 < np.mean(ahead) < 0.7


# ============================================================================ caches


def test_procedural_cache_reused_and_keyed_on_parameters(tmp_path, monkeypatch):
    calls = []
    original = rm_mod.generate_randman
    monkeypatch.setattr(rm_mod, "generate_randman", lambda **kw: calls.append(kw) or original(**kw))
    a = get_dataset("randman", tmp_path, **SMALL_RANDMAN)
    path = a.cache_file
    mtime = path.stat().st_mtime_ns
    b = get_dataset("randman", tmp_path, train=False, **SMALL_RANDMAN)
    c = get_dataset("randman", tmp_path, **SMALL_RANDMAN)
    assert len(calls) == 1 and path.stat().st_mtime_ns == mtime and b.cache_file == path
    assert torch.equal(a[5][0], c[5][0])
    get_dataset("randman", tmp_path, **{**SMALL_RANDMAN, "jitter": 1.0})
    assert len(calls) == 2 and len(list(path.parent.glob("randman-*.npz"))) == 2


def test_interrupted_cache_write_leaves_nothing_trusted(tmp_path, monkeypatch):
    real_savez = np.savez

    def dying_savez(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_mod.np, "savez", dying_savez)
    with pytest.raises(KeyboardInterrupt):
        get_dataset("randman", tmp_path, **SMALL_RANDMAN)
    folder = tmp_path / "procedural"
    assert list(folder.iterdir()) == []  # no final file, temp file removed
    monkeypatch.setattr(cache_mod.np, "savez", real_savez)
    # a temp file left by a killed process (no cleanup possible) is ignored
    stale = folder / ".randman-0123.npz.abcd.tmp"
    stale.write_bytes(b"garbage")
    ds = get_dataset("randman", tmp_path, **SMALL_RANDMAN)
    fresh = get_dataset("randman", None, cache=False, **SMALL_RANDMAN)
    assert ds.cache_file.is_file() and torch.equal(ds[0][0], fresh[0][0])
    # a corrupted final file (e.g. disk error) is detected and rebuilt
    ds.cache_file.write_bytes(b"PK\x03\x04 truncated")
    again = get_dataset("randman", tmp_path, **SMALL_RANDMAN)
    assert torch.equal(again[0][0], fresh[0][0])


def test_sample_cache_atomic(tmp_path, monkeypatch):
    cache = cache_mod.SampleCache(tmp_path / "c")
    cache.save(3, np.arange(4.0))
    np.testing.assert_array_equal(cache.load(3), np.arange(4.0))
    assert cache.load(4) is None

    def dying_save(f, arr, allow_pickle=False):
        f.write(b"\x93NUMPY partial")
        raise OSError("disk full")

    monkeypatch.setattr(cache_mod.np, "save", dying_save)
    with pytest.raises(OSError):
        cache.save(4, np.ones(3))
    assert cache.load(4) is None and sorted(p.name for p in cache.folder.iterdir()) == ["3.npy"]
    assert (cache.folder / "3.npy").stat().st_mode & 0o777 == _io.OPEN_FILE_MODE


def test_atomic_open_moves_into_place_only_on_success(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "f.bin"
    with _io.atomic_open(target, "wb") as f:  # parent folder created
        (tmp,) = target.parent.iterdir()
        assert tmp.name.startswith("f.bin.") and tmp.name.endswith(".tmp")
        f.write(b"one")
    assert target.read_bytes() == b"one" and target.stat().st_mode & 0o777 == 0o600  # mkstemp's
    synced = []
    monkeypatch.setattr(_io.os, "fsync", lambda fd: synced.append(fd))
    with _io.atomic_open(target, "wb", hidden=True, open_permissions=True, fsync=True) as f:
        assert sorted(p.name[:7] for p in target.parent.iterdir()) == [".f.bin.", "f.bin"]
        f.write(b"two")
    assert target.read_bytes() == b"two" and len(synced) == 1
    assert target.stat().st_mode & 0o777 == _io.OPEN_FILE_MODE
    with pytest.raises(KeyboardInterrupt):
        with _io.atomic_open(target, "w", encoding="utf-8") as f:
            f.write("half")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"two" and [p.name for p in target.parent.iterdir()] == ["f.bin"]
    _io.atomic_write_text(target, "a\r\nb\n")  # newlines kept as given
    assert target.read_bytes() == b"a\r\nb\n"


# ============================================================================ loaders and API


def test_loaders_batch_first_and_seeded_shuffle(tmp_path):
    tr, te, info = get_loaders(
        "randman", tmp_path, batch_size=16, val_batch_size=20, seed=3, **SMALL_RANDMAN
    )
    assert info == {
        "name": "randman",
        "num_classes": 4,
        "input_shape": (20,),
        "T": 30,
        "sensor_size": (20, 1, 1),
        "classes": ["0", "1", "2", "3"],
        "n_train": 48,
        "n_test": 20,
    }
    frames, labels = next(iter(tr))
    assert (
        frames.shape == (16, 30, 20)
        and frames.dtype == torch.float32
        and labels.dtype == torch.int64
    )
    order = lambda loader: torch.cat([y for _, y in loader]).tolist()  # noqa: E731
    again, _, _ = get_loaders("randman", tmp_path, batch_size=16, seed=3, **SMALL_RANDMAN)
    other, _, _ = get_loaders("randman", tmp_path, batch_size=16, seed=4, **SMALL_RANDMAN)
    first_epoch = next(iter(again))[1].tolist()
    assert labels.tolist() == first_epoch  # same seed, same order
    assert order(again) != order(again)  # a new permutation every epoch
    assert first_epoch != next(iter(other))[1].tolist()  # another seed, another order
    assert order(te) == sorted(order(te))  # test loader is not shuffled
    frames, _ = next(iter(get_loaders("moving_shapes", tmp_path, batch_size=5, **SMALL_SHAPES)[0]))
    assert frames.shape == (5, 8, 2, 16, 16)


def test_pad_collate_time_first():
    frames, labels = pad_collate([(torch.ones(2, 3), 1), (torch.ones(4, 3), 0)], batch_first=False)
    assert frames.shape == (4, 2, 3) and labels.tolist() == [1, 0]
    assert frames[2:, 0].sum() == 0 and frames[:, 1].sum() == 12


def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(
        ValueError,
        match="name must be one of shd, dvsgesture, cifar10dvs, nmnist, randman, moving_shapes",
    ):
        get_dataset("mnist", tmp_path)
    with pytest.raises(ValueError, match="name must be one of"):
        get_loaders("cifar10", tmp_path)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['n_unit'\] for dataset 'randman'"):
        get_dataset("randman", tmp_path, n_unit=5)
    with pytest.raises(TypeError, match="unknown option"):
        get_dataset("shd", tmp_path, n_frames=3)
    with pytest.raises(ValueError, match="n_classes must be >= 2"):
        get_dataset("randman", tmp_path, n_classes=1)
    with pytest.raises(ValueError, match="n_classes must be 4 or 8"):
        get_dataset("moving_shapes", tmp_path, n_classes=5)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        get_loaders("randman", tmp_path, batch_size=0)
    assert set(DATASETS) == {
        "shd",
        "dvsgesture",
        "cifar10dvs",
        "nmnist",
        "randman",
        "moving_shapes",
    }
    assert (
        dataset_options("randman")["n_units"] == 100
        and dataset_options("shd")["time_window_us"] == 10_000
    )


# ============================================================================ scripts


def test_download_script_help_and_dry_run(tmp_path, shd_dir, capsys):
    shd_dir, _ = shd_dir
    script = _load_script("download")
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--help"])
    assert exit_info.value.code == 0
    assert "shd" in capsys.readouterr().out
    assert script.main(["nmnist", "--data-path", str(tmp_path / "empty"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert (
        "nmnist [train]: missing" in out and "nmnist [test]: missing" in out and "https://" in out
    )
    assert not (tmp_path / "empty").exists()
    assert script.main(["shd", "--data-path", str(shd_dir), "--dry-run"]) == 0
    assert "shd [train]: present" in capsys.readouterr().out
    assert script.main(["shd", "--data-path", str(shd_dir)]) == 0  # present: nothing fetched
    with pytest.raises(SystemExit):
        script.main(["imagenet", "--data-path", str(tmp_path)])


def test_make_synthetic_script(tmp_path, capsys):
    script = _load_script("make_synthetic")
    args = [
        "randman",
        "--data-path",
        str(tmp_path),
        "--n-units",
        "12",
        "--n-classes",
        "3",
        "--n-train-per-class",
        "4",
        "--n-test-per-class",
        "2",
        "--seed",
        "9",
    ]
    assert script.main(args) == 0
    out = capsys.readouterr().out
    assert "train / test:  12 / 6 samples, 3 classes" in out and "(50, 12)" in out
    assert len(list((tmp_path / "procedural").glob("randman-*.npz"))) == 1
    assert script.main(["moving_shapes", "--data-path", str(tmp_path), "--n-classes", "3"]) == 2


def test_get_loaders_passes_the_generation_seed_as_data_seed(tmp_path):
    # ``seed`` is the shuffle seed of the loaders; the procedural task's own seed is data_seed
    a = get_loaders("randman", tmp_path, batch_size=8, seed=1, data_seed=5, **SMALL_RANDMAN)[2]
    ds5 = get_dataset("randman", tmp_path, True, seed=5, **SMALL_RANDMAN)
    ds6 = get_dataset("randman", tmp_path, True, seed=6, **SMALL_RANDMAN)
    loader5 = get_loaders(
        "randman", tmp_path, batch_size=len(ds5), seed=1, data_seed=5, **SMALL_RANDMAN
    )[0]
    frames, labels = next(iter(loader5))
    # every unit fires once in every sample, so compare spike timing: a time-weighted total
    weight = torch.arange(frames.shape[1], dtype=torch.float64).view(1, -1, 1)

    def timing(x):
        return float((x.double() * weight).sum())

    assert a["n_train"] == len(ds5)
    # the same samples as the seed-5 dataset (in shuffled order), not the seed-6 ones
    assert timing(frames) == pytest.approx(
        timing(torch.stack([ds5[i][0] for i in range(len(ds5))]))
    )
    assert timing(frames) != pytest.approx(
        timing(torch.stack([ds6[i][0] for i in range(len(ds6))]))
    )
