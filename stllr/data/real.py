"""The four recorded datasets, read through tonic with the reference (S-TLLR) preprocessing.

======================  ====================================================================
dataset                 frames returned per sample
======================  ====================================================================
``shd``                 ``[T <= 100, 700]`` spike counts in 10 ms bins of the first second
``dvsgesture``          train: ``[20, 2, 32, 32]`` (1.575 s slices); test: ``[T, 2, 32, 32]``
``cifar10dvs``          ``[10, 2, 48, 48]`` (10 bins of equal event counts), normalised
``nmnist``              ``[T ~ 30, 2, 34, 34]`` counts in 10 ms bins
======================  ====================================================================

Nothing here downloads: if the files tonic expects are missing, :class:`DatasetNotFoundError`
says which command fetches them (``python data_scripts/download.py NAME --data-path DIR``).
tonic's own ``_check_exists`` decides whether a dataset is present, so "present" means exactly
what it means to tonic.

Deterministic preprocessing (events -> frames -> resize) is cached per sample under
``<data_path>/stllr_cache`` (atomic writes); random augmentation is applied after the cache.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import tonic
import tonic.dataset
import tonic.io
import torch
from tonic.slicers import SliceByTime
from tonic.transforms import ToFrame
from tqdm.auto import tqdm

from ._cache import SampleCache, atomic_save_npz, cache_key
from .transforms import Compose, FirstWindow, Normalize, RandomCrop, Resize

__all__ = [
    "DatasetNotFoundError",
    "REAL_DATASETS",
    "download_command",
    "probe",
    "is_available",
    "require_dataset",
    "CIFAR10DVS",
    "TonicFrames",
    "SlicedEvents",
    "shd",
    "dvsgesture",
    "cifar10dvs",
    "nmnist",
]

CIFAR10DVS_MEAN = (0.2728, 0.1295)
CIFAR10DVS_STD = (0.2225, 0.1290)


class DatasetNotFoundError(FileNotFoundError):
    """A recorded dataset is not on disk; the message contains the command that fetches it."""


def download_command(name: str, data_path: str | os.PathLike) -> str:
    """The shell command that downloads dataset ``name`` into ``data_path``."""
    return f"python data_scripts/download.py {name} --data-path {shlex.quote(os.fspath(data_path))}"


# ----------------------------------------------------------------------------- existence checks


@dataclass(frozen=True)
class _RealSpec:
    tonic_name: str  # attribute of tonic.datasets
    split_attrs: Callable[[type, bool], dict]  # attributes tonic's __init__ sets for a split
    has_splits: bool = True

    @property
    def cls(self) -> type:
        return getattr(tonic.datasets, self.tonic_name)


REAL_DATASETS: dict[str, _RealSpec] = {
    "shd": _RealSpec(
        "SHD",
        lambda c, train: {
            "filename": c.train_zip if train else c.test_zip,
            "url": c.base_url + (c.train_zip if train else c.test_zip),
            "file_md5": c.train_md5 if train else c.test_md5,
        },
    ),
    "dvsgesture": _RealSpec(
        "DVSGesture",
        lambda c, train: {
            "filename": c.train_filename if train else c.test_filename,
            "url": c.train_url if train else c.test_url,
            "file_md5": c.train_md5 if train else c.test_md5,
            "folder_name": "ibmGestureTrain" if train else "ibmGestureTest",
        },
    ),
    "nmnist": _RealSpec(
        "NMNIST",
        lambda c, train: {
            "filename": c.train_filename if train else c.test_filename,
            "url": c.train_url if train else c.test_url,
            "file_md5": c.train_md5 if train else c.test_md5,
            "folder_name": c.train_folder if train else c.test_folder,
        },
    ),
    # One archive holds both splits (per class: first 90% train, last 10% test).
    "cifar10dvs": _RealSpec("CIFAR10DVS", lambda c, train: {}, has_splits=False),
}


def probe(name: str, data_path: str | os.PathLike, train: bool = True) -> tonic.dataset.Dataset:
    """A tonic dataset object with the attributes its ``__init__`` would set for this split, but
    built without running ``__init__`` (which would download): use it to call tonic's own
    ``_check_exists()`` or to read ``url``, ``filename``, ``location_on_system``."""
    spec = REAL_DATASETS[name]
    cls = spec.cls
    obj = cls.__new__(cls)
    tonic.dataset.Dataset.__init__(obj, os.fspath(data_path))
    for key, value in spec.split_attrs(cls, train).items():
        setattr(obj, key, value)
    if "folder_name" not in spec.split_attrs(cls, train):
        obj.folder_name = cls.folder_name
    return obj


def is_available(name: str, data_path: str | os.PathLike, train: bool = True) -> bool:
    """True when tonic would find dataset ``name`` (this split) without downloading."""
    return bool(probe(name, data_path, train)._check_exists())


def require_dataset(name: str, data_path: str | os.PathLike, train: bool = True) -> None:
    """Raises :class:`DatasetNotFoundError` unless tonic would find the dataset on disk."""
    obj = probe(name, data_path, train)
    if obj._check_exists():
        return
    archive = Path(obj.location_on_system, obj.filename)
    split = (
        ""
        if not REAL_DATASETS[name].has_splits
        else (" (train split)" if train else " (test split)")
    )
    state = (
        f"the archive {archive} is there but its extracted files are missing or incomplete"
        if archive.is_file()
        else f"{archive} does not exist"
    )
    raise DatasetNotFoundError(
        f"Dataset {name!r}{split} not found under {os.fspath(data_path)!r}: {state}.\n"
        f"Download it (nothing is downloaded implicitly) with:\n\n"
        f"    {download_command(name, data_path)}\n"
    )


# ----------------------------------------------------------------------------- dataset plumbing


class CIFAR10DVS(tonic.datasets.CIFAR10DVS):
    """tonic's ``CIFAR10DVS`` (same folder, existence check and file listing) whose files are read
    with the `aedat` package when it is installed (tonic's reader) and otherwise with stllr's numpy
    AEDAT4 reader (:func:`stllr.data.aedat4.read_aedat4`).

    Parameters:
        save_to: data folder (the dataset lives in ``save_to/CIFAR10DVS``).
        reader: "auto", "aedat" (tonic.io.read_aedat4) or "numpy".
    """

    def __init__(self, save_to: str, reader: str = "auto", **kwargs):
        super().__init__(save_to, **kwargs)
        self.reader = _aedat_reader(reader)

    def __getitem__(self, index):
        events = self.reader(self.data[index])
        events.dtype.names = ["t", "x", "y", "p"]
        target = self.targets[index]
        if self.transform is not None:
            events = self.transform(events)
        if self.target_transform is not None:
            target = self.target_transform(target)
        if self.transforms is not None:
            events, target = self.transforms(events, target)
        return events, target


def _aedat_reader(reader: str) -> Callable[[str], np.ndarray]:
    if reader not in ("auto", "aedat", "numpy"):
        raise ValueError(f"reader must be 'auto', 'aedat' or 'numpy', got {reader!r}")
    if reader == "aedat" or (reader == "auto" and importlib.util.find_spec("aedat") is not None):
        return tonic.io.read_aedat4
    from .aedat4 import read_aedat4

    return read_aedat4


class SlicedEvents(torch.utils.data.Dataset):
    """Cuts every recording of ``dataset`` with a tonic slicer (like ``tonic.SlicedDataset``), with
    the slice table cached atomically in ``metadata_path`` (an ``.npz``).

    Returns ``(events_slice, target)``; ``targets`` lists the target of every slice.
    """

    def __init__(self, dataset, slicer, metadata_path: str | os.PathLike | None = None):
        self.dataset = dataset
        self.slicer = slicer
        table = None
        if metadata_path is not None and Path(metadata_path).is_file():
            try:
                with np.load(metadata_path) as z:
                    if int(z["n_recordings"]) == len(dataset):
                        table = z["table"]
            except (OSError, ValueError, KeyError):
                table = None
        if table is None:
            rows = []
            for i in tqdm(range(len(dataset)), desc="slicing recordings", leave=False):
                events, target = dataset[i]
                for start, end in slicer.get_slice_metadata(events, target):
                    rows.append((i, start, end))
            table = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
            if metadata_path is not None:
                atomic_save_npz(metadata_path, table=table, n_recordings=np.int64(len(dataset)))
        self.table = table
        base_targets = list(getattr(dataset, "targets"))
        self.targets = [base_targets[int(r)] for r in table[:, 0]]

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index):
        rec, start, end = (int(v) for v in self.table[index])
        events, target = self.dataset[rec]
        return events[start:end], target


class TonicFrames(torch.utils.data.Dataset):
    """``(frames, label)`` pairs from a tonic event dataset.

    ``to_frames(events) -> float tensor`` is the deterministic part (cached per sample when
    ``cache`` is given), ``augment(frames)`` the random part applied on every access.

    Parameters:
        events_dataset: indexable returning ``(events, target)``.
        targets: label of every item (read without loading events).
        to_frames: events -> float32 tensor ``[T, ...]``.
        augment: optional frames -> frames (after the cache).
        cache: optional :class:`SampleCache`.
        indices: optional subset of ``events_dataset`` to expose (in this order).
    """

    def __init__(
        self,
        events_dataset,
        targets: Sequence[int],
        to_frames: Callable[[np.ndarray], torch.Tensor],
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        cache: SampleCache | None = None,
        indices: Sequence[int] | None = None,
        *,
        num_classes: int,
        input_shape: tuple[int, ...],
        T: int,
        sensor_size: tuple[int, int, int],
        classes: Sequence[str] | None = None,
        name: str = "",
    ):
        self.events_dataset = events_dataset
        self.indices = (
            np.arange(len(targets)) if indices is None else np.asarray(indices, dtype=np.int64)
        )
        self.targets = np.asarray([int(targets[i]) for i in self.indices], dtype=np.int64)
        self.to_frames = to_frames
        self.augment = augment
        self.cache = cache
        self.num_classes = num_classes
        self.input_shape = tuple(input_shape)
        self.T = T
        self.sensor_size = tuple(sensor_size)
        self.classes = (
            list(classes) if classes is not None else [str(i) for i in range(num_classes)]
        )
        self.name = name

    def __len__(self) -> int:
        return len(self.indices)

    def events(self, index: int) -> np.ndarray:
        """The raw tonic events of item ``index``."""
        return self.events_dataset[int(self.indices[index])][0]

    def frames(self, index: int) -> torch.Tensor:
        """Deterministic (cached) frames of item ``index``, before augmentation."""
        base = int(self.indices[index])
        if self.cache is not None:
            cached = self.cache.load(base)
            if cached is not None:
                return torch.from_numpy(cached)
        events, _ = self.events_dataset[base]
        frames = self.to_frames(events).float().contiguous()
        if self.cache is not None:
            self.cache.save(base, frames.numpy())
        return frames

    def __getitem__(self, index: int):
        frames = self.frames(index)
        if self.augment is not None:
            frames = self.augment(frames)
        return frames, int(self.targets[index])

    def __repr__(self) -> str:
        return f"TonicFrames({self.name!r}, n={len(self)}, cache={self.cache})"


def _frames_tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))


def _frames_of(events: np.ndarray, to_frame: ToFrame, empty_shape: tuple[int, ...]) -> np.ndarray:
    if len(events) == 0:
        return np.zeros(empty_shape, dtype=np.float32)
    return to_frame(events)


def _cache_for(
    enabled: bool, data_path, cache_dir, name: str, split: str, params: dict[str, Any]
) -> SampleCache | None:
    if not enabled:
        return None
    root = Path(cache_dir) if cache_dir is not None else Path(data_path) / "stllr_cache"
    return SampleCache(
        root / name / f"{split}-{cache_key({'name': name, 'split': split, **params})}"
    )


def _files_key(files: Sequence[str]) -> str:
    """Digest of the (ordered) file list: the per-index cache is only valid for the same files."""
    return cache_key({"files": [os.fspath(f) for f in files]})


def _check_positive(**kwargs) -> None:
    for key, value in kwargs.items():
        if value is None or value <= 0:
            raise ValueError(f"{key} must be > 0, got {value!r}")


# ----------------------------------------------------------------------------- SHD


def shd(
    data_path: str | os.PathLike,
    train: bool = True,
    *,
    duration_us: float = 1_000_000,
    time_window_us: float = 10_000,
    cache: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> TonicFrames:
    """Spiking Heidelberg Digits via ``tonic.datasets.SHD``.

    Events ``(t us, x unit, p)`` on sensor (700, 1, 1) -> first ``duration_us`` after the first
    event -> ``ToFrame(time_window=time_window_us)`` counts -> float32 ``[T, 700]`` with
    ``T <= duration_us / time_window_us`` (tonic drops a trailing incomplete bin). 20 classes.
    """
    _check_positive(duration_us=duration_us, time_window_us=time_window_us)
    require_dataset("shd", data_path, train)
    base = tonic.datasets.SHD(os.fspath(data_path), train=train)
    import h5py

    with h5py.File(os.path.join(base.location_on_system, base.data_filename), "r") as f:
        labels = f["labels"][()].astype(np.int64)
    sensor = tonic.datasets.SHD.sensor_size
    crop = FirstWindow(duration=duration_us)
    to_frame = ToFrame(sensor_size=sensor, time_window=time_window_us)

    def to_frames(events):
        frames = _frames_of(crop(events), to_frame, (1, 1, sensor[0]))
        return _frames_tensor(frames).reshape(-1, sensor[0])

    h5_path = os.path.join(base.location_on_system, base.data_filename)
    params = {
        "duration_us": duration_us,
        "time_window_us": time_window_us,
        "n": len(labels),
        "bytes": os.path.getsize(h5_path),
        "mtime_ns": os.stat(h5_path).st_mtime_ns,
    }
    classes = [
        k.decode() if isinstance(k, bytes) else str(k) for k in np.asarray(base.classes).ravel()
    ]
    return TonicFrames(
        base,
        labels,
        to_frames,
        cache=_cache_for(cache, data_path, cache_dir, "shd", "train" if train else "test", params),
        num_classes=20,
        input_shape=(sensor[0],),
        T=int(round(duration_us / time_window_us)),
        sensor_size=sensor,
        classes=classes if len(classes) == 20 else None,
        name="shd",
    )


# ----------------------------------------------------------------------------- DVS Gesture


def dvsgesture(
    data_path: str | os.PathLike,
    train: bool = True,
    *,
    slice_us: float = 1_575_000,
    time_window_us: float = 75_000,
    n_frames: int = 20,
    size: int = 32,
    augment: bool = True,
    crop_padding: int = 4,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> TonicFrames:
    """IBM DVS Gesture via ``tonic.datasets.DVSGesture`` (11 classes, sensor (128, 128, 2)).

    Train: recordings cut into ``slice_us`` slices (tonic ``SliceByTime``) -> ``n_frames`` bins
    of ``time_window_us`` from each slice's first event (tonic ``ToFrame``) -> bilinear resize to
    ``size`` -> float32 ``[20, 2, 32, 32]``; augmentation ``RandomCrop(size, padding)``.
    Test: whole recordings -> ``ToFrame(time_window_us)`` -> resize -> ``[T, 2, 32, 32]``
    (T varies; batches are zero-padded). Frames are cached on disk.
    """
    _check_positive(slice_us=slice_us, time_window_us=time_window_us, n_frames=n_frames, size=size)
    require_dataset("dvsgesture", data_path, train)
    base = tonic.datasets.DVSGesture(os.fspath(data_path), train=train)
    sensor = tonic.datasets.DVSGesture.sensor_size
    resize = Resize(size)
    empty = (1, sensor[2], sensor[1], sensor[0])
    split = "train" if train else "test"
    params: dict[str, Any] = {
        "time_window_us": time_window_us,
        "size": size,
        "files": _files_key(base.data),
    }
    if train:
        params.update(slice_us=slice_us, n_frames=n_frames)
        cache_root = Path(cache_dir) if cache_dir is not None else Path(data_path) / "stllr_cache"
        meta = (
            cache_root
            / "dvsgesture"
            / f"slices-{split}-{cache_key({'slice_us': slice_us, 'files': _files_key(base.data)})}.npz"
        )
        events_ds = SlicedEvents(base, SliceByTime(time_window=slice_us), meta)

        def to_frames(events):
            if len(events) == 0:
                return resize(torch.zeros((n_frames, *empty[1:])))
            t0 = int(events["t"][0])
            tf = ToFrame(
                sensor_size=sensor,
                time_window=time_window_us,
                start_time=t0,
                end_time=t0 + n_frames * time_window_us,
            )
            return resize(_frames_tensor(tf(events)))

        T = n_frames
    else:
        events_ds = base
        to_frame = ToFrame(sensor_size=sensor, time_window=time_window_us)

        def to_frames(events):
            return resize(_frames_tensor(_frames_of(events, to_frame, empty)))

        T = n_frames
    aug = RandomCrop(size, padding=crop_padding) if (train and augment) else None
    return TonicFrames(
        events_ds,
        events_ds.targets,
        to_frames,
        augment=aug,
        cache=_cache_for(cache, data_path, cache_dir, "dvsgesture", split, params),
        num_classes=11,
        input_shape=(2, size, size),
        T=T,
        sensor_size=sensor,
        classes=tonic.datasets.DVSGesture.classes,
        name="dvsgesture",
    )


# ----------------------------------------------------------------------------- CIFAR10-DVS


def _natural_key(path: str):
    return [
        int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", os.path.basename(path))
    ]


def cifar10dvs_split(
    files: Sequence[str], targets: Sequence[int], train: bool, train_fraction: float = 0.9
) -> list[int]:
    """Indices of the train (first ``train_fraction`` of each class, in natural file-name order)
    or test (the rest) split; on the full dataset: first 900 / last 100 per class."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    chosen = []
    for c in sorted(set(int(t) for t in targets)):
        idx = sorted(
            (i for i, t in enumerate(targets) if int(t) == c), key=lambda i: _natural_key(files[i])
        )
        n_train = int(round(train_fraction * len(idx)))
        chosen.extend(idx[:n_train] if train else idx[n_train:])
    return chosen


def cifar10dvs(
    data_path: str | os.PathLike,
    train: bool = True,
    *,
    n_frames: int = 10,
    size: int = 48,
    augment: bool = True,
    crop_padding: int = 4,
    normalize: bool = True,
    mean: tuple[float, float] = CIFAR10DVS_MEAN,
    std: tuple[float, float] = CIFAR10DVS_STD,
    train_fraction: float = 0.9,
    reader: str = "auto",
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> TonicFrames:
    """CIFAR10-DVS via tonic's ``CIFAR10DVS`` (10 classes, sensor (128, 128, 2)).

    Events -> ``ToFrame(n_event_bins=n_frames)`` (bins of equal event counts) -> bilinear resize
    to ``size`` -> [train: ``RandomCrop(size, padding)``] -> per-polarity normalisation ->
    float32 ``[10, 2, 48, 48]``. Split per class: first 90 % of the files (natural name order)
    train, last 10 % test (900 / 100 on the full dataset).
    """
    _check_positive(n_frames=n_frames, size=size)
    require_dataset("cifar10dvs", data_path, True)
    base = CIFAR10DVS(os.fspath(data_path), reader=reader)
    indices = cifar10dvs_split(base.data, base.targets, train, train_fraction)
    sensor = tonic.datasets.CIFAR10DVS.sensor_size
    resize = Resize(size)
    to_frame = ToFrame(sensor_size=sensor, n_event_bins=n_frames)
    empty = (n_frames, sensor[2], sensor[1], sensor[0])

    def to_frames(events):
        return resize(_frames_tensor(_frames_of(events, to_frame, empty)))

    post = []
    if train and augment:
        post.append(RandomCrop(size, padding=crop_padding))
    if normalize:
        post.append(Normalize(tuple(mean), tuple(std)))
    params = {"n_frames": n_frames, "size": size, "files": _files_key(base.data)}
    return TonicFrames(
        base,
        base.targets,
        to_frames,
        augment=Compose(post) if post else None,
        cache=_cache_for(cache, data_path, cache_dir, "cifar10dvs", "all", params),
        indices=indices,
        num_classes=10,
        input_shape=(2, size, size),
        T=n_frames,
        sensor_size=sensor,
        classes=list(tonic.datasets.CIFAR10DVS.classes),
        name="cifar10dvs",
    )


# ----------------------------------------------------------------------------- N-MNIST


def nmnist(
    data_path: str | os.PathLike,
    train: bool = True,
    *,
    time_window_us: float = 10_000,
    augment: bool = True,
    crop_padding: int = 4,
    first_saccade_only: bool = False,
    cache: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> TonicFrames:
    """N-MNIST via ``tonic.datasets.NMNIST`` (10 classes, sensor (34, 34, 2)).

    Events -> ``ToFrame(time_window=time_window_us)`` -> float32 ``[T ~ 30, 2, 34, 34]``;
    train augmentation ``RandomCrop(34, padding)``.
    """
    _check_positive(time_window_us=time_window_us)
    require_dataset("nmnist", data_path, train)
    base = tonic.datasets.NMNIST(
        os.fspath(data_path), train=train, first_saccade_only=first_saccade_only
    )
    sensor = tonic.datasets.NMNIST.sensor_size
    to_frame = ToFrame(sensor_size=sensor, time_window=time_window_us)
    empty = (1, sensor[2], sensor[1], sensor[0])

    def to_frames(events):
        return _frames_tensor(_frames_of(events, to_frame, empty))

    split = "train" if train else "test"
    params = {
        "time_window_us": time_window_us,
        "first_saccade_only": first_saccade_only,
        "files": _files_key(base.data),
    }
    return TonicFrames(
        base,
        base.targets,
        to_frames,
        augment=RandomCrop(sensor[0], padding=crop_padding) if (train and augment) else None,
        cache=_cache_for(cache, data_path, cache_dir, "nmnist", split, params),
        num_classes=10,
        input_shape=(sensor[2], sensor[1], sensor[0]),
        T=30,
        sensor_size=sensor,
        classes=list(tonic.datasets.NMNIST.classes),
        name="nmnist",
    )
