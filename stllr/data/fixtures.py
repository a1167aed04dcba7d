"""Writers of tiny but valid dataset folders in the real on-disk formats, for offline tests.

Each writer creates exactly the layout tonic's dataset class expects under ``data_path`` (the
same ``data_path`` a user passes to :func:`stllr.data.get_dataset`), so loading goes through
tonic's own classes, existence checks and file readers, as after a real download:

==============  ==============================================================================
dataset         what is written under ``data_path``
==============  ==============================================================================
SHD             ``SHD/shd_{train,test}.h5`` (HDF5: ``spikes/times`` ragged float16 seconds,
                ``spikes/units`` ragged uint16, ``labels`` uint8, ``extra/keys``,
                ``extra/speaker``, ``extra/meta_info``) + the ``.h5.zip`` archive name
DVSGesture      ``DVSGesture/ibmGesture{Train,Test}/user<NN>_<lighting>/<label>.npy``, int64
                ``(N, 4)`` columns ``x, y, p, t`` with ``t`` in milliseconds (tonic multiplies
                by 1000), >= 100 files per split + the ``.tar.gz`` archive name
NMNIST          ``NMNIST/{Train,Test}/<digit>/<id>.bin``, 5-byte events (x, y, polarity bit
                + 23-bit microsecond timestamp), >= 10000 files per split + ``{train,test}.zip``
CIFAR10DVS      ``CIFAR10DVS/<class>/cifar10_<class>_<i>.aedat4`` (genuine uncompressed AEDAT4,
                readable by the `aedat` package), >= 1000 files + ``CIFAR10DVS.zip``
==============  ==============================================================================

tonic only checks that the archive *exists* (no checksum) and counts extracted files, so the
archives written here are small valid archives holding a note, not the original downloads.
If `aedat` is not installed, stllr reads the ``.aedat4`` files with its numpy reader (the one
documented substitution at the loading boundary; see :class:`stllr.data.real.CIFAR10DVS`).

Explicit samples (``samples=``) are written first so tests can predict exact frames; random
filler samples complete the file counts tonic requires.
"""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from .aedat4 import write_aedat4

__all__ = [
    "write_shd",
    "write_dvsgesture",
    "write_nmnist",
    "write_cifar10dvs",
    "write_all",
    "SHD_KEYS",
]

_NOTE = b"stllr offline fixture: tonic only checks that this archive exists.\n"

SHD_KEYS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "null",
    "eins",
    "zwei",
    "drei",
    "vier",
    "fuenf",
    "sechs",
    "sieben",
    "acht",
    "neun",
]
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def _placeholder_archive(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("STLLR_FIXTURE.txt", _NOTE)
    elif path.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(path, "w:gz") as t:
            info = tarfile.TarInfo("STLLR_FIXTURE.txt")
            info.size = len(_NOTE)
            t.addfile(info, io.BytesIO(_NOTE))
    else:
        path.write_bytes(_NOTE)


# ----------------------------------------------------------------------------- SHD


def write_shd(
    data_path: str | os.PathLike,
    samples: Sequence[tuple[np.ndarray, np.ndarray, int]] | None = None,
    *,
    train: bool = True,
    n_samples: int = 10,
    spikes_per_sample: int = 200,
    max_time_s: float = 1.3,
    seed: int = 0,
) -> Path:
    """Writes ``SHD/shd_{train,test}.h5`` (+ its ``.zip`` name) and returns the ``.h5`` path.

    Parameters:
        samples: ``(times_s, units, label)`` per sample (times in seconds, stored as float16
                 like the published files; units in 0..699; label in 0..19). If None,
                 ``n_samples`` random samples are written.
    """
    import h5py

    rng = np.random.default_rng(seed)
    if samples is None:
        samples = []
        for i in range(n_samples):
            t = np.sort(rng.uniform(0.0, max_time_s, spikes_per_sample))
            samples.append((t, rng.integers(0, 700, spikes_per_sample), i % 20))
    root = Path(data_path) / "SHD"
    root.mkdir(parents=True, exist_ok=True)
    name = "shd_train.h5" if train else "shd_test.h5"
    n = len(samples)
    with h5py.File(root / name, "w") as f:
        times = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float16))
        units = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
        for i, (t, u, _) in enumerate(samples):
            t, u = np.asarray(t), np.asarray(u)
            if t.shape != u.shape:
                raise ValueError(f"sample {i}: times and units differ in length")
            if len(u) and (u.min() < 0 or u.max() > 699):
                raise ValueError(f"sample {i}: units must be in 0..699")
            times[i] = t.astype(np.float16)
            units[i] = u.astype(np.uint16)
        f.create_dataset("labels", data=np.asarray([s[2] for s in samples], dtype=np.uint8))
        f.create_dataset("extra/keys", data=np.asarray([k.encode() for k in SHD_KEYS]))
        f.create_dataset("extra/speaker", data=(np.arange(n) % 10).astype(np.uint8))
        f.create_dataset("extra/meta_info/gender", data=np.asarray([b"female", b"male"] * 5))
        f.create_dataset("extra/meta_info/age", data=np.arange(20, 30, dtype=np.uint8))
        f.create_dataset("extra/meta_info/body_height", data=np.linspace(1.6, 1.9, 10))
    _placeholder_archive(root / (name + ".zip"))
    return root / name


# ----------------------------------------------------------------------------- DVS Gesture


def _random_gesture(rng: np.random.Generator, duration_ms: float, n_events: int) -> np.ndarray:
    t = np.sort(rng.integers(0, int(duration_ms), n_events))
    return np.stack(
        [
            rng.integers(0, 128, n_events),
            rng.integers(0, 128, n_events),
            rng.integers(0, 2, n_events),
            t,
        ],
        axis=1,
    ).astype(np.int64)


def write_dvsgesture(
    data_path: str | os.PathLike,
    recordings: Sequence[tuple[int, str, int, np.ndarray]] | None = None,
    *,
    train: bool = True,
    n_users: int | None = None,
    lightings: Sequence[str] | None = None,
    duration_ms: tuple[float, float] = (2000.0, 4000.0),
    events_per_recording: int = 200,
    seed: int = 0,
) -> list[Path]:
    """Writes ``DVSGesture/ibmGesture{Train,Test}/user<NN>_<lighting>/<label>.npy`` files and the
    archive name; returns the written paths.

    Parameters:
        recordings: ``(user, lighting, label, events)`` with ``events`` ``(N, 4)`` integer
                    columns ``x, y, p, t_ms`` (sorted by time). Written first.
        n_users, lightings: random filler recordings, one per (user, lighting, label 0..10);
                    defaults give >= 100 files per split (tonic's minimum): train users
                    1..10 x ("fluorescent",), test users 24..29 x ("fluorescent", "led").
    """
    rng = np.random.default_rng(seed + (0 if train else 1))
    folder = "ibmGestureTrain" if train else "ibmGestureTest"
    root = Path(data_path) / "DVSGesture"
    if n_users is None:
        n_users = 10 if train else 6
    if lightings is None:
        lightings = ("fluorescent",) if train else ("fluorescent", "led")
    first_user = 1 if train else 24
    written: dict[Path, np.ndarray] = {}
    for user, lighting, label, events in recordings or []:
        events = np.asarray(events)
        if events.ndim != 2 or events.shape[1] != 4:
            raise ValueError("DVSGesture events must be (N, 4): x, y, p, t_ms")
        written[root / folder / f"user{int(user):02d}_{lighting}" / f"{int(label)}.npy"] = (
            events.astype(np.int64)
        )
    for u in range(first_user, first_user + n_users):
        for lighting in lightings:
            for label in range(11):
                path = root / folder / f"user{u:02d}_{lighting}" / f"{label}.npy"
                if path not in written:
                    written[path] = _random_gesture(
                        rng, rng.uniform(*duration_ms), events_per_recording
                    )
    for path, events in written.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, events)
    _placeholder_archive(root / f"{folder}.tar.gz")
    return list(written)


# ----------------------------------------------------------------------------- N-MNIST


def encode_nmnist(x: np.ndarray, y: np.ndarray, t_us: np.ndarray, p: np.ndarray) -> bytes:
    """N-MNIST 5-byte events: x, y, then polarity bit 7 + 23-bit timestamp (big-endian)."""
    x, y, t, p = (np.asarray(a).astype(np.int64) for a in (x, y, t_us, p))
    if len(t) and (t.min() < 0 or t.max() >= 2**23):
        raise ValueError("N-MNIST timestamps must be in [0, 2**23) us")
    if len(x) and (x.min() < 0 or x.max() > 33 or y.min() < 0 or y.max() > 33):
        raise ValueError("N-MNIST coordinates must be in 0..33")
    raw = np.empty((len(t), 5), dtype=np.uint8)
    raw[:, 0], raw[:, 1] = x, y
    raw[:, 2] = ((p & 1) << 7) | ((t >> 16) & 0x7F)
    raw[:, 3] = (t >> 8) & 0xFF
    raw[:, 4] = t & 0xFF
    return raw.tobytes()


def write_nmnist(
    data_path: str | os.PathLike,
    samples: Sequence[tuple[np.ndarray, int]] | None = None,
    *,
    train: bool = True,
    n_per_class: int = 1000,
    events_per_sample: int = 6,
    max_time_us: int = 300_000,
    seed: int = 0,
) -> list[Path]:
    """Writes ``NMNIST/{Train,Test}/<digit>/<id>.bin`` and the archive name; returns the paths.

    Parameters:
        samples: ``(events, digit)`` with ``events`` ``(N, 4)`` integer columns ``x, y, t_us, p``;
                 written first in their class folder (they sort first, so explicit sample ``j``
                 of a class is that class's ``j``-th file in tonic's order).
        n_per_class: files per class including explicit ones (1000 -> 10000 files, tonic's
                 minimum per split).
    """
    rng = np.random.default_rng(seed + (0 if train else 1))
    root = Path(data_path) / "NMNIST"
    folder = root / ("Train" if train else "Test")
    per_class: dict[int, list[np.ndarray]] = {d: [] for d in range(10)}
    for events, digit in samples or []:
        per_class[int(digit)].append(np.asarray(events))
    # Random filler, encoded in one go: row k is the k-th filler file.
    n_fill = sum(max(n_per_class - len(v), 0) for v in per_class.values())
    n = events_per_sample
    filler = encode_nmnist(
        rng.integers(0, 34, (n_fill, n)).ravel(),
        rng.integers(0, 34, (n_fill, n)).ravel(),
        np.sort(rng.integers(0, max_time_us, (n_fill, n)), axis=1).ravel(),
        rng.integers(0, 2, (n_fill, n)).ravel(),
    )
    written, k = [], 0
    for digit in range(10):
        (folder / str(digit)).mkdir(parents=True, exist_ok=True)
        explicit = per_class[digit]
        for i in range(max(n_per_class, len(explicit))):
            if i < len(explicit):
                ev = explicit[i]
                blob = encode_nmnist(ev[:, 0], ev[:, 1], ev[:, 2], ev[:, 3])
            else:
                blob = filler[5 * n * k : 5 * n * (k + 1)]
                k += 1
            path = folder / str(digit) / f"{i:05d}.bin"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, blob)
            finally:
                os.close(fd)
            written.append(path)
    _placeholder_archive(root / ("train.zip" if train else "test.zip"))
    return written


# ----------------------------------------------------------------------------- CIFAR10-DVS


def write_cifar10dvs(
    data_path: str | os.PathLike,
    samples: Sequence[tuple[np.ndarray, int]] | None = None,
    *,
    n_per_class: int = 100,
    events_per_sample: int = 100,
    max_time_us: int = 1_000_000,
    seed: int = 0,
) -> list[Path]:
    """Writes ``CIFAR10DVS/<class>/cifar10_<class>_<i>.aedat4`` and ``CIFAR10DVS.zip``.

    Parameters:
        samples: ``(events, class_index)`` with ``events`` ``(N, 4)`` integer columns
                 ``t_us, x, y, p``; explicit sample ``j`` of a class is file ``<i> = j``.
        n_per_class: files per class including explicit ones (100 -> 1000 files, tonic's
                 minimum; the stllr split puts the first 90 % of each class in train).
    """
    rng = np.random.default_rng(seed)
    root = Path(data_path) / "CIFAR10DVS"
    per_class: dict[int, list[np.ndarray]] = {c: [] for c in range(10)}
    for events, c in samples or []:
        per_class[int(c)].append(np.asarray(events))
    written = []
    for c, name in enumerate(CIFAR10_CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        explicit = per_class[c]
        for i in range(max(n_per_class, len(explicit))):
            if i < len(explicit):
                ev = explicit[i]
                t, x, y, p = ev[:, 0], ev[:, 1], ev[:, 2], ev[:, 3]
            else:
                n = events_per_sample
                t = np.sort(rng.integers(0, max_time_us, n))
                x, y, p = rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n)
            path = root / name / f"cifar10_{name}_{i}.aedat4"
            write_aedat4(path, t, x, y, p, sensor_size=(128, 128))
            written.append(path)
    _placeholder_archive(root / "CIFAR10DVS.zip")
    return written


def write_all(data_path: str | os.PathLike, seed: int = 0) -> None:
    """Writes every fixture (both splits) under ``data_path`` (a few seconds; ~22k files)."""
    for train in (True, False):
        write_shd(data_path, train=train, seed=seed)
        write_dvsgesture(data_path, train=train, seed=seed)
        write_nmnist(data_path, train=train, seed=seed)
    write_cifar10dvs(data_path, seed=seed)
