"""Online S-TLLR and a recipe for your own data (notebook 12).

Two parts:

1. *online*: the ``stllr_online`` training mode (an optimizer step at every learning step, the
   weights change within a sequence) against the accumulated ``stllr`` mode (one step per batch)
   on the small task, each mode at a learning rate chosen on a validation split
   (:func:`study_config`, :func:`mode_methods`, :func:`train_with_test`); one sequence's weight
   change step by step (:func:`sequence_weight_changes`), the small-rate limit where the online
   steps sum to the accumulated update (:func:`online_sum_vs_accumulated`), and the bytes saved
   for backward against T (:func:`saved_bytes_vs_T`);
2. *your own data*: numpy event arrays and a tonic dataset turned into the package's
   ``(frames [T, ...], label)`` datasets (:func:`events_dataset`, :class:`FolderEvents`,
   :func:`write_folder_events`, :func:`tonic_frames`), a user's module checked against the
   library's model (:func:`load_matching`, :func:`gradient_errors`), and two cheap measurements
   behind the advice on the factors (:func:`information_profile`, :func:`psi_coverage`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tonic
import torch
import torch.nn.functional as F
from torch import nn

from stllr.data import EventFramesDataset, TonicFrames
from stllr.data.real import SlicedEvents
from stllr.functional import get_psi
from stllr.layers import LinearSTLLR
from stllr.measure.saved import SavedTensorTracker
from stllr.plotting.style import PAPER_STYLE, _clean, plt
from stllr.studies.common import (
    SMALL_TASK_LR,
    SMALL_TASK_VALIDATION,
    DataSpec,
    Method,
    RunResult,
    StudyConfig,
    load_datasets,
    loaders_for,
    paper_shd_config,
    small_task_config,
    small_task_method,
    train_method,
)
from stllr.training.loop import bptt_through_time, run_epoch, stllr_window, time_major

__all__ = [
    "MODES",
    "MODE_LABELS",
    "ONLINE_LR_GRID",
    "STUDY_EPOCHS",
    "study_config",
    "mode_methods",
    "train_with_test",
    "chosen_runs",
    "sequence_weight_changes",
    "online_sum_vs_accumulated",
    "saved_bytes_vs_T",
    "plot_weight_changes",
    "plot_comparison",
    "plot_factor_checks",
    "frame_shape_for",
    "events_dataset",
    "FolderEvents",
    "write_folder_events",
    "tonic_frames",
    "load_matching",
    "gradient_errors",
    "information_profile",
    "psi_coverage",
    "AUDIO_EVENT_DTYPE",
    "toy_recordings",
]

#: The two S-TLLR training modes compared (rule.md "Training modes").
MODES = ("stllr", "stllr_online")

#: Their labels in tables and figures.
MODE_LABELS = {
    "stllr": "accumulated (stllr: one step per batch)",
    "stllr_online": "online (stllr_online: a step per learning step)",
}

#: The learning rates tried for the online mode (Adam): the small-task grid
#: (:data:`stllr.studies.common.SMALL_TASK_LR_GRID`) divided by 10, since online takes d = 20
#: optimizer steps per batch where the accumulated mode takes one.
ONLINE_LR_GRID = (5e-4, 1e-3, 2e-3)

#: Epochs of this notebook's runs (the small-task setting trains 12; 4 fit its time budget).
STUDY_EPOCHS = 4


# ======================================================================================
# 1. Online against accumulated
# ======================================================================================
def study_config(full: bool = False, data_path=None, epochs: Optional[int] = None) -> StudyConfig:
    """The settings of the online comparison, a :class:`~stllr.studies.common.StudyConfig`.

    ``full=False``: the small-task setting (:func:`stllr.studies.common.small_task_config`: randman
    with 5 classes and T = 30, ``randman_rsnn_stllr``, psi sigmoid, factors (0.5, 1, 1, 1), the
    learning signal on the last 20 steps, Adam, batch 32) for :data:`STUDY_EPOCHS` epochs; options
    ``lr_grids`` (per mode: the accumulated mode at its small-task rate, the online mode on
    :data:`ONLINE_LR_GRID`) and ``validation`` (training samples held out to choose the rate).
    ``full=True``: the paper's SHD setting (:func:`stllr.studies.common.paper_shd_config`, 200
    epochs, the accumulated mode at the paper's 2e-4, the online mode at that rate divided by 80,
    40 and 20: it takes 90 steps per batch).

    Example:
        >>> c = study_config()
        >>> c.window, c.epochs, c.options["lr_grids"]["stllr_online"]
        (20, 4, (0.0005, 0.001, 0.002))
    """
    epochs = STUDY_EPOCHS if epochs is None and not full else epochs
    if full:
        config = paper_shd_config(data_path, epochs)
        grids = {"stllr": (config.lr,), "stllr_online": tuple(config.lr / k for k in (80, 40, 20))}
        config.options = {"lr_grids": grids, "validation": 800}
    else:
        config = small_task_config(data_path, epochs)
        grids = {"stllr": (SMALL_TASK_LR["bp"],), "stllr_online": tuple(ONLINE_LR_GRID)}
        config.options = {"lr_grids": grids, "validation": SMALL_TASK_VALIDATION}
    return config


def mode_methods(
    config: StudyConfig, grids: Optional[Mapping[str, Sequence[float]]] = None
) -> List[Method]:
    """S-TLLR (BP signal) in each training mode at each of its learning rates: keys
    ``<mode>@<lr>``, labels ``<mode label>, lr <lr>`` (what
    :func:`stllr.studies.accuracy_vs_bptt.lr_rows` reads).

    Parameters:
        config: :func:`study_config`'s settings.
        grids: ``{mode: learning rates}`` with modes of :data:`MODES` (default
            ``config.options["lr_grids"]``).
    """
    grids = config.options.get("lr_grids") if grids is None else grids
    if not isinstance(grids, Mapping) or not grids:
        raise ValueError(f"grids: expected {{mode: learning rates}}, got {grids!r}")
    base = small_task_method(config, "bp")
    out = []
    for mode, rates in grids.items():
        if mode not in MODES:
            raise ValueError(f"grids: modes must be among {MODES}, got {mode!r}")
        for lr in rates:
            if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
                raise ValueError(f"grids: expected positive learning rates, got {lr!r}")
            out.append(
                dataclasses.replace(
                    base,
                    key=f"{mode}@{lr:g}",
                    label=f"{MODE_LABELS[mode]}, lr {lr:g}",
                    mode=mode,
                    lr=float(lr),
                )
            )
    return out


_TEST_SETS: Dict[str, Any] = {}


def train_with_test(
    method: Method, train_set, val_set, info: Dict[str, Any], *, test_data: Dict[str, Any], **kw
) -> RunResult:
    """:func:`stllr.studies.common.train_method` on a validation split (its history's
    ``test_acc`` is the validation accuracy), then the trained network evaluated once on the test
    set: ``history[-1]["test_set_acc"]`` (%). A ``train`` of
    :func:`stllr.studies.sweeps.run_trials` (``train_options={"test_data": spec.as_dict()}``).

    Parameters:
        method, train_set, val_set, info, kw: as :func:`~stllr.studies.common.train_method`.
        test_data: the :meth:`~stllr.studies.common.DataSpec.as_dict` of the data without the
            validation split (its test set is loaded once per process).
    """
    result = train_method(method, train_set, val_set, info, **kw)
    key = json.dumps(test_data, sort_keys=True, default=str)
    if key not in _TEST_SETS:
        spec = DataSpec(**{**test_data, "validation": None})
        _TEST_SETS.clear()
        _TEST_SETS[key] = load_datasets(
            spec.dataset,
            spec.data_path,
            spec.batch_size,
            spec.val_batch_size,
            spec.data_seed,
            dict(spec.data_options),
            spec.max_train,
            spec.max_test,
        )
    _, test_set, test_info = _TEST_SETS[key]
    _, loader = loaders_for(test_set, test_set, test_info)
    model = result.model
    with torch.no_grad():
        te = run_epoch(
            model, loader, optimizer=None, loss_fn=F.cross_entropy, device=kw.get("device", "cpu")
        )
    result.history[-1]["test_set_acc"] = te["acc"]
    return result


def chosen_runs(sweep, chosen: Mapping[str, float]) -> Dict[str, List[RunResult]]:
    """``{mode: runs}``: the runs of each mode at its chosen rate (``chosen``: ``{mode: lr}``,
    as :func:`stllr.studies.accuracy_vs_bptt.choose_lr` returns it)."""
    out = {}
    for mode, lr in chosen.items():
        key = f"{mode}@{lr:g}"
        if key not in sweep:
            raise ValueError(f"chosen: no runs {key!r} in the sweep (keys {sorted(sweep)})")
        out[mode] = list(sweep[key])
    return out


def _trainable(model: nn.Module) -> List[torch.Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def _flat(params: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


def sequence_weight_changes(
    model: nn.Module,
    frames: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    mode: str,
    window: int,
    loss_fn: Callable = F.cross_entropy,
) -> Dict[str, np.ndarray]:
    """One training sequence in ``mode``, as :func:`stllr.training.loop.train_batch` runs it (the
    same weights after it), with the weights read after every step.

    Parameters:
        model: an S-TLLR model; frames: one batch ``[B, T, ...]``; labels ``[B]``;
        optimizer: over the model's parameters (it is stepped); mode: ``stllr`` or
        ``stllr_online``; window: d, the learning steps; loss_fn: ``(logits, labels) -> loss``.

    Returns ``step`` [T] (the norm of the change of all trainable parameters during step t:
    zero before the window; for ``stllr`` zero until the one optimizer step after the last step)
    and ``cumulative`` [T] (the norm of the change since the start of the sequence).
    """
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    x = time_major(frames)
    T = len(x)
    params = _trainable(model)
    start = _flat(params)
    last = [start]
    changes = np.zeros(T)
    cumulative = np.zeros(T)

    def record(t):
        now = _flat(params)
        changes[t] = float((now - last[0]).norm())
        cumulative[t:] = float((now - start).norm())
        last[0] = now

    if mode == "stllr_online":

        def after(t):
            optimizer.step()
            record(t)

        stllr_window(
            model,
            x,
            labels,
            loss_fn,
            window,
            before_forward=lambda t: optimizer.zero_grad(set_to_none=True),
            after_backward=after,
        )
    else:
        optimizer.zero_grad(set_to_none=True)
        stllr_window(model, x, labels, loss_fn, window)
        optimizer.step()
        record(T - 1)
    return {"step": changes, "cumulative": cumulative}


def online_sum_vs_accumulated(
    model: nn.Module, frames: torch.Tensor, labels: torch.Tensor, window: int, lr: float
) -> float:
    """Relative difference between the weight change of one ``stllr_online`` sequence and of one
    ``stllr`` sequence, both with plain SGD at rate ``lr`` from the same weights: the online steps
    add up to the accumulated update as ``lr -> 0`` (the difference is of order ``lr``).

    Parameters:
        model: an S-TLLR model (copied twice, left unchanged); frames ``[B, T, ...]``;
        labels ``[B]``; window: d; lr: the SGD rate (> 0).

    Returns ``|dW_online - dW_accumulated| / |dW_accumulated|`` over all trainable parameters.
    """
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr: expected a positive number, got {lr!r}")
    import copy

    deltas = []
    for mode in MODES:
        m = copy.deepcopy(model)
        before = _flat(_trainable(m))
        opt = torch.optim.SGD(_trainable(m), lr=float(lr))
        sequence_weight_changes(m, frames, labels, opt, mode, window)
        deltas.append(_flat(_trainable(m)) - before)
    acc, onl = deltas
    return float((onl - acc).norm() / acc.norm())


def saved_bytes_vs_T(
    stllr_model: nn.Module,
    bptt_model: nn.Module,
    Ts: Sequence[int],
    *,
    window: Callable[[int], int] = lambda T: T,
    batch_size: int = 4,
    seed: int = 0,
) -> List[Dict[str, int]]:
    """Peak bytes of activations saved for backward in one training sequence, per T: the
    ``stllr_online`` mode (an SGD step at every learning step) and BPTT on the summed logits.

    Parameters:
        stllr_model, bptt_model: twins of the registry (same input shape); Ts: sequence lengths;
        window: T -> d (default: every step learns); batch_size: B; seed: the Bernoulli(0.2)
        inputs and random labels.

    Returns one dict per T: ``T``, ``window``, ``online`` and ``bptt`` (bytes).
    """
    rows = []
    shape = tuple(stllr_model.input_shape)
    classes = int(stllr_model.num_classes)
    for T in Ts:
        T = int(T)
        if T < 1:
            raise ValueError(f"Ts: expected positive sequence lengths, got {T!r}")
        g = torch.Generator().manual_seed(seed)
        frames = (torch.rand((batch_size, T) + shape, generator=g) < 0.2).float()
        labels = torch.randint(0, classes, (batch_size,), generator=g)
        d = int(window(T))
        row = {"T": T, "window": d}
        opt = torch.optim.SGD(_trainable(stllr_model), lr=0.0)
        with SavedTensorTracker(stllr_model, batch_size) as tr:
            sequence_weight_changes(stllr_model, frames, labels, opt, "stllr_online", d)
        row["online"] = tr.stats().peak_activation_bytes
        with SavedTensorTracker(bptt_model, batch_size) as tr:
            bptt_through_time(bptt_model, time_major(frames), labels, F.cross_entropy)
        row["bptt"] = tr.stats().peak_activation_bytes
        stllr_model.zero_grad(set_to_none=True)
        bptt_model.zero_grad(set_to_none=True)
        rows.append(row)
    return rows


def plot_weight_changes(traces: Mapping[str, Mapping[str, np.ndarray]], window: int, title=""):
    """Two panels over the steps of one sequence: the norm of the weight change at each step, and
    the cumulative change since the sequence began, one line per mode (``traces``: ``{mode:
    sequence_weight_changes(...)}``); the first learning step ``T_l = T - window`` is marked."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    colors = {"stllr": PAPER_STYLE["stllr"], "stllr_online": "#ff7f0e"}
    for mode, tr in traces.items():
        steps = np.arange(len(tr["step"]))
        axes[0].plot(steps, tr["step"], "o-", ms=3, color=colors.get(mode), label=MODE_LABELS[mode])
        axes[1].plot(steps, tr["cumulative"], "-", color=colors.get(mode), label=MODE_LABELS[mode])
    T = len(next(iter(traces.values()))["step"])
    for ax, ylabel in zip(axes, ("|W_t - W_(t-1)|", "|W_t - W_0|")):
        ax.axvline(T - window - 0.5, color="k", lw=0.7, ls="--")
        ax.set_xlabel("step t of the sequence")
        ax.set_ylabel(ylabel)
        _clean(ax)
    axes[0].set_title("weight change at each step")
    axes[1].set_title("cumulative change in the sequence")
    axes[0].text(T - window - 0.3, axes[0].get_ylim()[1] * 0.9, "T_l", fontsize=9)
    axes[1].legend(fontsize=8, frameon=False, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# ======================================================================================
# 2. Your own data
# ======================================================================================
def _check_sensor(sensor_size) -> Tuple[int, int, int]:
    if (
        not isinstance(sensor_size, (tuple, list))
        or len(sensor_size) != 3
        or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in sensor_size)
    ):
        raise ValueError(
            f"sensor_size: expected tonic's (W, H, P), three positive integers, got {sensor_size!r}"
        )
    return tuple(int(s) for s in sensor_size)


def frame_shape_for(sensor_size) -> Tuple[int, ...]:
    """The per-step frame shape of tonic's ``ToFrame`` for ``sensor_size = (W, H, P)``:
    ``(W,)`` for an audio-like sensor (H = P = 1, fields t, x, p), else ``(P, H, W)``.

    Example:
        >>> frame_shape_for((700, 1, 1)), frame_shape_for((32, 32, 2))
        ((700,), (2, 32, 32))
    """
    W, H, P = _check_sensor(sensor_size)
    return (W,) if H == 1 and P == 1 else (P, H, W)


def _check_events(events, sensor_size, name="events") -> None:
    W, H, P = sensor_size
    for i, ev in enumerate(events):
        names = getattr(getattr(ev, "dtype", None), "names", None)
        if not isinstance(ev, np.ndarray) or names is None:
            raise ValueError(
                f"{name}: expected numpy structured arrays with fields t, x(, y), p; item {i} is "
                f"{type(ev).__name__}{'' if names is None else ' without fields'}"
            )
        need = ("t", "x", "p") + (("y",) if H > 1 else ())
        missing = [f for f in need if f not in names]
        if missing:
            raise ValueError(f"{name}: item {i} lacks the field(s) {missing}; it has {list(names)}")
        if len(ev) and (ev["x"].min() < 0 or ev["x"].max() >= W):
            raise ValueError(f"{name}: item {i} has x outside [0, {W}) of sensor_size")
        if len(ev) and H > 1 and (ev["y"].min() < 0 or ev["y"].max() >= H):
            raise ValueError(f"{name}: item {i} has y outside [0, {H}) of sensor_size")
        if len(ev) and (ev["t"].min() < 0):
            raise ValueError(f"{name}: item {i} has negative timestamps t")


def events_dataset(
    events: Sequence[np.ndarray],
    labels: Sequence[int],
    sensor_size,
    time_window_us: int,
    n_steps: int,
    *,
    num_classes: Optional[int] = None,
    classes: Optional[Sequence[str]] = None,
    name: str = "my_events",
) -> EventFramesDataset:
    """Your numpy event arrays as the package's dataset of ``(frames float32 [n_steps, ...],
    label)``, binned with tonic's ``ToFrame`` (:class:`stllr.data.EventFramesDataset`, what the
    procedural tasks use): frame t counts the events with ``t * time_window_us <= t_us < (t + 1)
    * time_window_us`` (events at or after ``n_steps * time_window_us`` are dropped).

    Parameters:
        events: one tonic structured array per sample, fields ``t`` (microseconds), ``x``, ``p``
            (and ``y`` for a 2-d sensor), e.g. ``np.dtype([("t", "<i8"), ("x", "<i8"), ("p",
            "<i8")])``; samples: N; labels: N ints in ``[0, num_classes)``;
        sensor_size: tonic's ``(W, H, P)``: ``(units, 1, 1)`` for audio-like data, ``(W, H, 2)``
            for a camera; time_window_us: the real time of one step; n_steps: T;
        num_classes: default ``max(labels) + 1``; classes: names; name: the dataset's name.

    Returns a dataset with ``num_classes``, ``input_shape`` (:func:`frame_shape_for`), ``T``,
    ``sensor_size``, ``classes`` and ``targets``; batch it with ``DataLoader(...,
    collate_fn=stllr.data.pad_collate)``.
    """
    sensor = _check_sensor(sensor_size)
    if isinstance(events, np.ndarray) and events.dtype.names is not None:
        raise ValueError(
            "events: expected a list of structured arrays (one per sample), got one array"
        )
    events = list(events)
    labels = np.asarray(labels)
    if (
        labels.ndim != 1
        or len(labels) != len(events)
        or not np.issubdtype(labels.dtype, np.integer)
    ):
        raise ValueError(
            f"labels: expected {len(events)} integers (one per sample of events), got "
            f"{labels.dtype} of shape {labels.shape}"
        )
    if not len(events):
        raise ValueError("events: expected at least one sample, got none")
    for arg, v in (("time_window_us", time_window_us), ("n_steps", n_steps)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{arg}: expected a positive integer, got {v!r}")
    if labels.min() < 0:
        raise ValueError(f"labels: expected labels >= 0, got {int(labels.min())}")
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    if (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, (int, np.integer))
        or num_classes <= labels.max()
    ):
        raise ValueError(f"num_classes: expected an integer above every label, got {num_classes!r}")
    _check_events(events, sensor)
    return EventFramesDataset(
        events,
        labels.astype(np.int64),
        sensor_size=sensor,
        n_steps=int(n_steps),
        dt_us=int(time_window_us),
        frame_shape=frame_shape_for(sensor),
        num_classes=int(num_classes),
        classes=classes,
        name=name,
    )


class FolderEvents(tonic.dataset.Dataset):
    """A tonic dataset of your own recordings: ``<save_to>/FolderEvents/<class>/<name>.npy``, one
    structured event array per file (:func:`write_folder_events` writes them), classes in sorted
    folder order. ``dataset[i]`` is ``(events, target)`` as every tonic dataset's; ``sensor_size``
    is the class attribute tonic datasets carry (set it per instance here).

    Parameters:
        save_to: the root folder; sensor_size: tonic's ``(W, H, P)``; transform,
            target_transform: tonic's.
    """

    def __init__(self, save_to: str, sensor_size, transform=None, target_transform=None):
        super().__init__(os.fspath(save_to), transform=transform, target_transform=target_transform)
        self.sensor_size = _check_sensor(sensor_size)
        root = Path(self.location_on_system)
        if not self._check_exists():
            raise FileNotFoundError(
                f"save_to: no class folders with .npy event files under {root} "
                "(write them with write_folder_events)"
            )
        self.classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        for k, c in enumerate(self.classes):
            for f in sorted((root / c).glob("*.npy")):
                self.data.append(str(f))
                self.targets.append(k)

    def _check_exists(self) -> bool:
        root = Path(self.location_on_system)
        return root.is_dir() and any(root.glob("*/*.npy"))

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        events = np.load(self.data[index])
        target = self.targets[index]
        if self.transform is not None:
            events = self.transform(events)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return events, target


def write_folder_events(
    save_to, samples: Sequence[Tuple[np.ndarray, int]], classes: Optional[Sequence[str]] = None
) -> Path:
    """Write ``samples`` (``(events, label)`` pairs) as :class:`FolderEvents` expects them:
    ``<save_to>/FolderEvents/<class name>/<index>.npy`` (class names default ``class_<k>``).
    Returns the dataset's folder."""
    root = Path(save_to) / FolderEvents.__name__
    for i, (events, label) in enumerate(samples):
        if not isinstance(events, np.ndarray) or events.dtype.names is None:
            raise ValueError(f"samples: item {i} is not a structured event array")
        name = classes[int(label)] if classes is not None else f"class_{int(label)}"
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{i:05d}.npy", events)
    return root


def tonic_frames(
    dataset,
    time_window_us: int,
    n_steps: int,
    *,
    sensor_size=None,
    slice_us: Optional[int] = None,
    num_classes: Optional[int] = None,
    classes: Optional[Sequence[str]] = None,
) -> TonicFrames:
    """A tonic dataset (any indexable of ``(events, target)`` with ``targets``) as the package's
    :class:`stllr.data.TonicFrames` of ``(frames float32 [n_steps, ...], label)``.

    Frame t counts the events in ``[t0 + t * time_window_us, t0 + (t + 1) * time_window_us)``:
    ``t0 = 0`` for whole recordings (the binning of :func:`events_dataset`), and with ``slice_us``
    every recording is first cut into slices of ``slice_us`` (tonic's ``SliceByTime`` from the
    first event, the last slice kept when incomplete, through
    :class:`stllr.data.real.SlicedEvents`, one sample per slice) and ``t0`` is each slice's first
    event. Steps past the events are zero frames.

    Parameters:
        dataset: e.g. :class:`FolderEvents` or a ``tonic.datasets`` object;
        time_window_us: real time per step; n_steps: T;
        sensor_size: default ``dataset.sensor_size``; slice_us: None or the slice length;
        num_classes: default ``max(targets) + 1``; classes: default ``dataset.classes``.
    """
    from tonic.slicers import SliceByTime
    from tonic.transforms import ToFrame

    sensor = _check_sensor(
        sensor_size if sensor_size is not None else getattr(dataset, "sensor_size", None)
    )
    for arg, v in (("time_window_us", time_window_us), ("n_steps", n_steps)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{arg}: expected a positive integer, got {v!r}")
    if not hasattr(dataset, "targets"):
        raise ValueError("dataset: expected a tonic dataset with a targets list")
    shape = frame_shape_for(sensor)
    T, dt = int(n_steps), int(time_window_us)
    source = dataset
    if slice_us is not None:
        if (
            isinstance(slice_us, bool)
            or not isinstance(slice_us, (int, np.integer))
            or slice_us < 1
        ):
            raise ValueError(f"slice_us: expected None or a positive integer, got {slice_us!r}")
        with contextlib.redirect_stderr(io.StringIO()):  # SlicedEvents' progress bar
            source = SlicedEvents(
                dataset, SliceByTime(time_window=int(slice_us), include_incomplete=True)
            )

    def to_frames(events: np.ndarray) -> torch.Tensor:
        if len(events) == 0:
            return torch.zeros((T,) + shape)
        t0 = 0 if slice_us is None else int(events["t"][0])
        frame = ToFrame(sensor_size=sensor, time_window=dt, start_time=t0, end_time=t0 + T * dt)
        counts = frame(events.copy())
        return torch.from_numpy(np.ascontiguousarray(counts, dtype=np.float32)).reshape(
            (T,) + shape
        )

    targets = list(source.targets)
    num_classes = int(max(targets)) + 1 if num_classes is None else int(num_classes)
    return TonicFrames(
        source,
        targets,
        to_frames,
        num_classes=num_classes,
        input_shape=shape,
        T=T,
        sensor_size=sensor,
        classes=classes if classes is not None else getattr(dataset, "classes", None),
        name=type(dataset).__name__,
    )


def load_matching(user: nn.Module, library: nn.Module, rename: Mapping[str, str]) -> List[str]:
    """Copy ``library``'s parameters into ``user``'s (``rename``: library prefix -> user prefix,
    e.g. ``{"linear1.": "rec.", "last_layer.": "readout."}``); the library's buffers that the
    user's module lacks (the hook's feedback matrix) are left out. Returns the copied names (the
    user's). Raises when a parameter of ``user`` gets no value."""
    state = {}
    for key, value in library.state_dict().items():
        for old, new in rename.items():
            if key.startswith(old):
                state[new + key[len(old) :]] = value
    wanted = {k for k, _ in user.named_parameters()}
    missing = sorted(wanted - set(state))
    if missing:
        raise ValueError(f"rename: no library parameter maps to the user's {missing}")
    user.load_state_dict({k: v for k, v in state.items() if k in user.state_dict()}, strict=False)
    return sorted(k for k in state if k in wanted)


def gradient_errors(
    user: nn.Module, library: nn.Module, rename: Mapping[str, str]
) -> Dict[str, float]:
    """``{user parameter name: |grad_user - grad_library| / |grad_library|}`` after both have run
    the same training sequence (``rename`` as :func:`load_matching`); parameters without a
    gradient on both sides (leak, threshold) are left out, one without it on one side raises."""
    lib = dict(library.named_parameters())
    out = {}
    for name, p in user.named_parameters():
        src = None
        for old, new in rename.items():
            if name.startswith(new):
                src = old + name[len(new) :]
        if src not in lib:
            raise ValueError(f"rename: the user's {name!r} has no library counterpart")
        a, b = p.grad, lib[src].grad
        if a is None and b is None:  # e.g. leak and threshold: the rule gives them none
            continue
        if a is None or b is None:
            raise ValueError(f"{name}: no gradient ({'user' if a is None else 'library'} side)")
        denom = float(b.norm()) or 1.0
        out[name] = float((a - b).norm()) / denom
    return out


def information_profile(
    frames: torch.Tensor, labels: torch.Tensor, *, train_fraction: float = 0.5
) -> np.ndarray:
    """Where the class information lies in time: for every step t, the test accuracy (%) of a
    nearest-class-mean classifier on that step's frame alone (class means from the first
    ``train_fraction`` of the samples, tested on the rest; float64, squared distances).

    Parameters:
        frames: ``[N, T, ...]`` (samples N); labels ``[N]``; train_fraction in (0, 1).

    Returns ``[T]`` accuracies (%). Chance is about ``100 / classes``.
    """
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction: expected a number in (0, 1), got {train_fraction!r}")
    x = torch.as_tensor(frames, dtype=torch.float64)
    y = torch.as_tensor(labels).long()
    if x.dim() < 3 or y.shape != (x.shape[0],):
        raise ValueError(
            f"frames: expected [N, T, ...] with labels [N], got {list(x.shape)} and {list(y.shape)}"
        )
    n = x.shape[0]
    k = int(round(n * train_fraction))
    if not 0 < k < n:
        raise ValueError(f"train_fraction: leaves no train or no test sample of {n}")
    x = x.reshape(n, x.shape[1], -1)
    classes = torch.unique(y[:k])
    means = torch.stack([x[:k][y[:k] == c].mean(0) for c in classes])  # [C, T, F]
    d = ((x[k:, None] - means[None]) ** 2).sum(-1)  # [n - k, C, T]
    pred = classes[d.argmin(1)]  # [n - k, T]
    return (pred == y[k:, None]).double().mean(0).numpy() * 100.0


class _RecordingPsi:
    """A psi that records the membranes it sees (v_t) and returns ``psi(v)``."""

    def __init__(self, psi):
        self.psi = get_psi(psi)
        self.__name__ = getattr(self.psi, "__name__", "recording")
        self.seen: List[torch.Tensor] = []

    def __call__(self, v):
        self.seen.append(v.detach().clone())
        return self.psi(v)


def psi_coverage(
    layer: LinearSTLLR,
    x: torch.Tensor,
    psis: Sequence[str] = ("rational", "triangle", "sigmoid", "fast_sigmoid"),
    fraction: float = 0.1,
) -> Dict[str, float]:
    """How many neuron-steps each psi lets the learning signal through: run ``layer`` (its psi
    replaced, for this run only, by one that records v_t = m_t - theta; the forward pass does not
    depend on psi) over ``x`` without learning, then for every psi the share (%) of
    (sample, step, neuron) entries with ``psi(v_t) > fraction * max psi``.

    Parameters:
        layer: an S-TLLR layer (LinearSTLLR or RecurrentSTLLR); x: its input ``[T, B, M]``;
        psis: names of :data:`stllr.functional.PSI_FUNCTIONS`; fraction: of each psi's peak.

    Returns ``{psi name: share %}``.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction: expected a number in (0, 1), got {fraction!r}")
    recorder = _RecordingPsi(layer.psi)
    original = layer.psi
    layer.psi = recorder
    try:
        layer.reset_state()
        with torch.no_grad():
            for t in range(len(x)):
                layer(x[t])
    finally:
        layer.psi = original
        layer.reset_state()
    v = torch.stack(recorder.seen).double()
    grid = torch.linspace(-3, 3, 60001, dtype=torch.float64)
    out = {}
    for name in psis:
        fn = get_psi(name)
        peak = float(fn(grid).max())
        out[name] = float((fn(v) > fraction * peak).double().mean()) * 100.0
    return out


#: The event dtype of tonic's audio-like datasets (SHD): time (us), unit, polarity.
AUDIO_EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<i8"), ("p", "<i8")])


def toy_recordings(
    n_per_class: int = 40,
    *,
    units: int = 16,
    classes: int = 3,
    steps: int = 12,
    step_us: int = 10_000,
    informative: Tuple[int, int] = (3, 8),
    rate: float = 0.08,
    signal_rate: float = 0.5,
    seed: int = 0,
) -> Tuple[List[np.ndarray], np.ndarray]:
    """A stand-in for your own recordings: audio-like events (:data:`AUDIO_EVENT_DTYPE`) of
    ``units`` input units over ``steps * step_us`` microseconds. Every unit fires at random
    (probability ``rate`` per step); during the steps ``informative = (first, stop)`` the units
    of the sample's class (``units // classes`` of them) fire with ``signal_rate`` per step:
    only those steps carry the class. Samples are interleaved by class (0, 1, 2, 0, ...).

    Returns ``(events, labels)``: a list of structured arrays (sorted by ``t``) and int64 labels.
    """
    rng = np.random.default_rng(seed)
    group = units // classes
    events, labels = [], []
    for i in range(n_per_class * classes):
        label = i % classes
        p = np.full((steps, units), rate)
        p[informative[0] : informative[1], label * group : (label + 1) * group] = signal_rate
        step, unit = np.nonzero(rng.random((steps, units)) < p)
        t = step * step_us + rng.integers(0, step_us, size=len(step))
        order = np.argsort(t, kind="stable")
        ev = np.zeros(len(t), dtype=AUDIO_EVENT_DTYPE)
        ev["t"], ev["x"] = t[order], unit[order]
        events.append(ev)
        labels.append(label)
    return events, np.asarray(labels, dtype=np.int64)


def plot_comparison(sweep, chosen: Mapping[str, float], chance: Optional[float] = None):
    """Left: the final validation accuracy of every run against its learning rate (a dot per
    seed, the mean as a line), per mode; the chosen rates circled. Right: the test accuracy of the
    runs at each mode's chosen rate (a dot per seed, the mean as a bar). ``sweep``: a
    :func:`mode_methods` sweep trained with :func:`train_with_test`; ``chosen``: ``{mode: lr}``."""
    colors = {"stllr": PAPER_STYLE["stllr"], "stllr_online": "#ff7f0e"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1.4, 1]})
    ax = axes[0]
    for mode in MODES:
        keys = [k for k in sweep if k.split("@")[0] == mode]
        if not keys:
            continue
        lrs = np.array([sweep[k][0].method.lr for k in keys])
        accs = [np.array([r.final_test_acc for r in sweep[k]]) for k in keys]
        for lr, a in zip(lrs, accs):
            ax.plot(np.full(len(a), lr), a, "o", ms=4, alpha=0.6, color=colors[mode])
        order = np.argsort(lrs)
        ax.plot(
            lrs[order],
            [accs[i].mean() for i in order],
            "-",
            color=colors[mode],
            label=MODE_LABELS[mode],
        )
        if mode in chosen:
            i = int(np.flatnonzero(np.isclose(lrs, chosen[mode]))[0])
            ax.plot(lrs[i], accs[i].mean(), "o", ms=13, mfc="none", mec=colors[mode], mew=1.5)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (Adam)")
    ax.set_ylabel("final validation accuracy (%)")
    ax.set_title("choosing each mode's rate on the validation split (circled: chosen)")
    ax.legend(fontsize=8, frameon=False)
    ax = axes[1]
    for i, (mode, runs) in enumerate(chosen_runs(sweep, chosen).items()):
        acc = np.array([r.final["test_set_acc"] for r in runs])
        ax.bar(i, acc.mean(), color=colors[mode], alpha=0.35, width=0.6)
        ax.plot(np.full(len(acc), i), acc, "o", color=colors[mode], ms=5)
    ax.set_xticks(range(len(chosen)))
    ax.set_xticklabels([f"{m}\nlr {chosen[m]:g}" for m in chosen], fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("test set, at the chosen rates")
    for a in axes:
        if chance is not None:
            a.axhline(chance, color="k", lw=0.7, ls=":")
        _clean(a)
    fig.tight_layout()
    return fig


def plot_factor_checks(
    profile: Sequence[float], coverage: Mapping[str, float], window: int, chance: float
):
    """Left: :func:`information_profile` per step, the learning window (the last ``window``
    steps) shaded, chance dotted. Right: :func:`psi_coverage` per psi (log scale)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.3), gridspec_kw={"width_ratios": [1.5, 1]})
    ax = axes[0]
    T = len(profile)
    ax.bar(np.arange(T), profile, color=PAPER_STYLE["stllr"], alpha=0.8)
    ax.axvspan(T - window - 0.5, T - 0.5, color="#ff7f0e", alpha=0.12, label=f"window d = {window}")
    ax.axhline(chance, color="k", lw=0.7, ls=":", label="chance")
    ax.set_xlabel("step t")
    ax.set_ylabel("accuracy from frame t alone (%)")
    ax.set_title("where the class information is (nearest class mean)")
    ax.legend(fontsize=8, frameon=False, loc="upper right")
    ax = axes[1]
    names = list(coverage)
    ax.bar(range(len(names)), [coverage[n] for n in names], color="#7f7f7f")
    for i, n in enumerate(names):
        ax.text(i, coverage[n], f"{coverage[n]:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=8)
    ax.set_ylabel("neuron-steps with psi > peak / 10 (%)")
    ax.set_title("how much of the layer each psi reaches")
    for a in axes:
        _clean(a)
    fig.tight_layout()
    return fig
