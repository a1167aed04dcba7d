"""Convolutions and event frames (notebook 11): ``Conv2dSTLLR`` on the procedural ``moving_shapes``
task in the paper's DVS Gesture setting (T = 20 frames, learning signal on the last d = 5, factors
(0.2, 0.75, -1, 1), triangle psi) against its BPTT twin, and how long the learning window must be
when every few frames carry the class.

Four parts, each on the study machinery (:func:`stllr.studies.sweeps.run_trials` over seeds,
:func:`stllr.studies.common.train_method`, the library's loops over time):

1. *the conv form of the rule*: :func:`conv_rule_by_autograd` writes the rule of one
   ``Conv2dSTLLR`` layer over a learning window in plain torch (paper Eq. 10-13, docs/rule.md) and
   lets autograd do the convolution's weight gradient and the weight standardisation's backward;
   it equals the layer's ``.grad`` to float64 rounding (:func:`make_conv_problem`,
   :func:`layer_grads`);
2. *a learning rate per method*: S-TLLR and the BPTT twin at each rate of ``options["lr_grid"]``
   on a validation split of the training set (:func:`lr_methods`; the rows and the choice are
   :func:`stllr.studies.accuracy_vs_bptt.lr_rows` / ``choose_lr``); the rates it chose are
   :data:`SHAPES_LR`;
3. *the comparison*: S-TLLR (BP, last 5 of 20 steps) and the BPTT twin (loss of the summed logits,
   the paper's Gesture baseline), train and test accuracy and time per epoch
   (:func:`comparison_methods`, :func:`comparison_rows`), and the memory of one training sequence
   of each (:func:`memory_rows`: bytes saved for backward, exact);
4. *the window*: S-TLLR with the learning signal on all 20 steps beside the last 5
   (:func:`window_methods`, :func:`window_accuracies`).

:func:`study_config` gives the defaults (16 x 16 frames, the registry's 2-16-32 conv net, seconds per run) and,
with ``full=True``, the paper's DVS Gesture VGG-9 setting on the real data."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from stllr.analysis.metrics import mean_std
from stllr.plotting.style import PAPER_STYLE, _clean, plt
from stllr.studies import accuracy_vs_bptt
from stllr.studies.common import DataSpec, Method, StudyConfig, format_table
from stllr.studies.sweeps import Sweep

__all__ = [
    "SHAPES_TASK",
    "SHAPES_CHANNELS",
    "GESTURE_T",
    "GESTURE_WINDOW",
    "GESTURE_FACTORS",
    "SHAPES_EPOCHS",
    "SHAPES_LR_GRID",
    "SHAPES_VALIDATION",
    "SHAPES_LR_SWEEP",
    "SHAPES_LR_SWEEP_VERSION",
    "SHAPES_LR",
    "SHAPES_WINDOWS",
    "study_config",
    "comparison_methods",
    "readout_method",
    "window_methods",
    "lr_methods",
    "recorded_lr_rows",
    "comparison_rows",
    "comparison_table",
    "window_accuracies",
    "window_table",
    "memory_rows",
    "memory_table",
    "sample_per_class",
    "plot_samples",
    "plot_accuracy",
    "plot_memory",
    "ConvProblem",
    "make_conv_problem",
    "spike_loss",
    "layer_grads",
    "conv_rule_by_autograd",
    "relative_error",
]

#: The default task: ``moving_shapes`` (stllr.data) on a 16 x 16 sensor, T = 20 frames of 10 ms,
#: 4 directions of motion, 200 training and 60 test samples; small shapes (3-5 px) moving 0.4-0.6
#: px per frame stay on the sensor for the whole sequence, so the motion (the class) is visible in
#: any few consecutive frames, as a gesture is in DVS Gesture's.
SHAPES_TASK = dict(
    n_classes=4,
    size=16,
    n_steps=20,
    n_train_per_class=50,
    n_test_per_class=15,
    shape_size=(3, 5),
    speed=(0.4, 0.6),
    noise_per_frame=1.0,
    seed=0,
)

#: Channels of the two conv layers of ``shapes_cnn_stllr`` / ``shapes_cnn_bptt`` (the registry's).
SHAPES_CHANNELS = (16, 32)

#: The paper's DVS Gesture setting (Table 3, README of the reference): T = 20 frames, the learning
#: signal on the last 5 (T_l = 15), factors [lambda_post, lambda_pre, alpha_post, alpha_pre].
GESTURE_T = 20
GESTURE_WINDOW = 5
GESTURE_FACTORS = (0.2, 0.75, -1.0, 1.0)

#: Training epochs of the default setting.
SHAPES_EPOCHS = 6

#: The learning rates the validation sweep tries per method (Adam).
SHAPES_LR_GRID = (5e-3, 1e-2, 2e-2)

#: Training samples held out as the validation split of that sweep (of 200; 160 train on).
SHAPES_VALIDATION = 40

#: The validation sweep behind :data:`SHAPES_LR`, as run when the setting was fixed (2026-12-01, Intel
#: Xeon Sapphire Rapids, one thread per run; :func:`lr_methods` trained on 160 of the 200 training
#: samples, evaluated on the other 40, 3 seeds, :data:`SHAPES_EPOCHS` epochs): ``{method key: {lr:
#: (mean, std) final validation accuracy %}}``. Notebook 11 reruns the grid with ``LR_SWEEP = True``.
SHAPES_LR_SWEEP = {
    "stllr": {5e-3: (75.83, 11.27), 1e-2: (85.00, 10.00), 2e-2: (80.83, 12.83)},
    "bptt": {5e-3: (100.00, 0.00), 1e-2: (100.00, 0.00), 2e-2: (99.17, 1.44)},
}

#: The stllr version (numerics) that ran :data:`SHAPES_LR_SWEEP`: tests/test_conv_event_frames.py
#: fails when it is not the package's (bump the version when training numbers change, then rerun the
#: sweep with ``LR_SWEEP = True`` and record it here).
SHAPES_LR_SWEEP_VERSION = "0.2.0"

#: The rate per method, as that sweep chose it (the highest mean final validation accuracy, a tie
#: to the smaller rate: :func:`stllr.studies.accuracy_vs_bptt.choose_lr`). BPTT ties at 5e-3 and
#: 1e-2, so S-TLLR's rate would have been fair to it too.
SHAPES_LR = {"stllr": 1e-2, "bptt": 5e-3}

#: Learning windows d of the window study: the paper's 5 (the main comparison's run) and all 20.
SHAPES_WINDOWS = (5, 20)


def study_config(full: bool = False, data_path=None, epochs: Optional[int] = None) -> StudyConfig:
    """The settings of notebook 11, a :class:`~stllr.studies.common.StudyConfig`.

    Parameters:
        full: False: :data:`SHAPES_TASK` with ``shapes_cnn_stllr`` / ``shapes_cnn_bptt`` (channels
            :data:`SHAPES_CHANNELS`, leak 2 i.e. beta 0.88, max pooling), psi triangle, factors
            :data:`GESTURE_FACTORS`, learning signal on the last :data:`GESTURE_WINDOW` of T = 20
            steps, :data:`SHAPES_EPOCHS` epochs, Adam, batch 16, each method at its rate of
            :data:`SHAPES_LR`. True: the paper's DVS Gesture run: ``dvs_vgg_stllr`` /
            ``dvs_vgg_bptt`` (VGG-9, leak 0 i.e. beta 0.5) on the real DVS Gesture under
            ``data_path`` (train: 20 frames of 75 ms, 32 x 32), the same factors, psi and window,
            Adam lr 1e-3 for both (the reference's default), batch 16, 300 epochs (the paper adds
            a cosine schedule over 300 epochs: ``stllr train ... --scheduler 300``).
        data_path: the procedural cache (default ``stllr.data``'s) or, FULL, the folder holding
            DVS Gesture.
        epochs: training epochs (default :data:`SHAPES_EPOCHS`, FULL 300).

    ``methods``: :func:`comparison_methods`; ``options``: ``windows`` (:func:`window_methods`),
    ``lr_grid`` and ``validation`` (:func:`lr_methods`; small task only), ``model_options``.

    Raises a one-line ``ValueError`` naming ``data_path`` (FULL without one) or ``epochs``.

    Example:
        >>> c = study_config()
        >>> c.T, c.window, tuple(c.factors), c.psi, [m.key for m in c.methods]
        (20, 5, (0.2, 0.75, -1.0, 1.0), 'triangle', ['stllr', 'bptt'])
    """
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int)):
        raise ValueError(f"epochs: expected a positive integer or None, got {epochs!r}")
    if full:
        if not data_path:
            raise ValueError(
                "data_path: FULL=True trains on the real DVS Gesture: set DATA_PATH to the folder "
                "holding it (python data_scripts/download.py dvsgesture --data-path DIR)"
            )
        config = StudyConfig(
            full=True,
            data=DataSpec("dvsgesture", data_path=str(data_path), batch_size=16, val_batch_size=16),
            task="DVS Gesture (11 classes, T = 20 frames of 75 ms, 32 x 32)",
            num_classes=11,
            T=GESTURE_T,
            arch="dvs_vgg_stllr",
            twin="dvs_vgg_bptt",
            psi="triangle",
            factors=GESTURE_FACTORS,
            window=GESTURE_WINDOW,
            optimizer="Adam",
            lr=1e-3,
            epochs=300 if epochs is None else epochs,
            options={"windows": SHAPES_WINDOWS, "model_options": {}},
        )
    else:
        task = dict(SHAPES_TASK)
        config = StudyConfig(
            full=False,
            data=DataSpec(
                "moving_shapes",
                data_path=None if data_path is None else str(data_path),
                data_options=task,
                batch_size=16,
                val_batch_size=100,
            ),
            task=(
                f"moving_shapes ({task['n_classes']} directions, T = {task['n_steps']} frames, "
                f"{task['size']} x {task['size']})"
            ),
            num_classes=task["n_classes"],
            T=task["n_steps"],
            arch="shapes_cnn_stllr",
            twin="shapes_cnn_bptt",
            psi="triangle",
            factors=GESTURE_FACTORS,
            window=GESTURE_WINDOW,
            optimizer="Adam",
            lr=SHAPES_LR["stllr"],
            epochs=SHAPES_EPOCHS if epochs is None else epochs,
            options={
                "windows": SHAPES_WINDOWS,
                "lr_grid": SHAPES_LR_GRID,
                "validation": SHAPES_VALIDATION,
                "model_options": {"channels": list(SHAPES_CHANNELS)},
            },
        )
    config.methods = comparison_methods(config)
    return config


def _method(config: StudyConfig, key: str, window: Optional[int] = None) -> Method:
    """``stllr`` (S-TLLR, BP signal, the last ``window`` steps) or ``bptt`` (the twin)."""
    d = config.window if window is None else int(window)
    lr = None if config.full else SHAPES_LR[key]
    options = dict(config.options.get("model_options", {}))
    if key == "stllr":
        label = f"S-TLLR (BP), last {d} of {config.T} steps"
        arch, mode = config.arch, "stllr"
    else:
        label = "BPTT twin (loss of the summed logits)"
        arch, mode = config.twin, "bptt"
    return Method(
        key,
        label,
        arch,
        mode,
        factors=tuple(config.factors),
        window=d,
        psi=config.psi,
        feedback_mode="bp",
        options=options,
        lr=lr,
    )


def comparison_methods(config: StudyConfig) -> List[Method]:
    """S-TLLR (BP) with the learning signal on the last ``config.window`` steps (key ``stllr``) and
    the BPTT twin trained on the cross-entropy of the logits summed over all T (key ``bptt``, the
    training mode of the paper's Gesture baseline), each at its :data:`SHAPES_LR` rate (FULL: the
    study's one rate)."""
    return [_method(config, "stllr"), _method(config, "bptt")]


def readout_method(config: StudyConfig) -> Method:
    """The control of the comparison (key ``readout``): the S-TLLR method with both conv layers
    frozen at their initial weights (``train_conv=False``), so only the linear readout learns, on
    random conv features. What S-TLLR adds by training the conv layers is its margin over this."""
    m = _method(config, "stllr")
    return dataclasses.replace(
        m,
        key="readout",
        label=f"readout only (conv layers frozen), last {m.window} of {config.T} steps",
        options={**m.options, "train_conv": False},
    )


def _check_windows(config: StudyConfig, windows) -> List[int]:
    out = []
    for d in windows:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 1 <= d <= config.T:
            raise ValueError(f"windows: expected integers in [1, T={config.T}], got {d!r}")
        out.append(int(d))
    return out


def window_methods(config: StudyConfig, windows: Optional[Sequence[int]] = None) -> List[Method]:
    """S-TLLR (BP) with the learning signal on the last ``d`` steps for each ``d`` of ``windows``
    (default ``config.options["windows"]``) other than ``config.window`` (that one is the
    comparison's ``stllr``); keys ``d<d>``, S-TLLR's rate."""
    windows = config.options["windows"] if windows is None else windows
    return [
        dataclasses.replace(_method(config, "stllr", d), key=f"d{d}")
        for d in _check_windows(config, windows)
        if d != config.window
    ]


def lr_methods(config: StudyConfig, grid: Optional[Sequence[float]] = None) -> List[Method]:
    """Both comparison methods at every rate of ``grid`` (default ``config.options["lr_grid"]``),
    keys ``<key>@<lr>`` (the form :func:`stllr.studies.accuracy_vs_bptt.lr_rows` reads), to be
    trained on ``config.data.validation_split(config.options["validation"])``."""
    grid = config.options.get("lr_grid") if grid is None else grid
    if not grid:
        raise ValueError("grid: expected learning rates (config.options has no 'lr_grid')")
    out = []
    for m in comparison_methods(config):
        for lr in grid:
            if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
                raise ValueError(f"grid: expected positive learning rates, got {lr!r}")
            label = m.label.split(",")[0] if m.key == "stllr" else m.label
            out.append(
                dataclasses.replace(
                    m, key=f"{m.key}@{lr:g}", label=f"{label}, lr {lr:g}", lr=float(lr)
                )
            )
    return out


def recorded_lr_rows(config: StudyConfig) -> List[Dict[str, Any]]:
    """:data:`SHAPES_LR_SWEEP` as the rows of :func:`stllr.studies.accuracy_vs_bptt.lr_rows`
    (``key``, ``label``, ``lr``, ``n`` 3, ``mean``, ``std``, ``chosen``; no ``train``), so
    ``lr_table`` prints them."""
    from stllr.studies.accuracy_vs_bptt import choose_lr

    labels = {m.key.split("@")[0]: m.label.rsplit(", lr ", 1)[0] for m in lr_methods(config)}
    rows = [
        dict(key=key, label=labels[key], lr=lr, n=3, mean=m, std=sd, train=None)
        for key, by_lr in SHAPES_LR_SWEEP.items()
        for lr, (m, sd) in by_lr.items()
    ]
    chosen = choose_lr(rows)
    for r in rows:
        r["chosen"] = r["lr"] == chosen[r["key"]]
    return rows


# ======================================================================================
# Results
# ======================================================================================
def comparison_rows(sweep: Sweep) -> List[Dict[str, Any]]:
    """Per method of ``sweep``: :func:`stllr.studies.accuracy_vs_bptt.comparison_rows` (``key``,
    ``label``, ``lr``, ``n``, mean / std of the final ``test`` and ``train`` accuracy, %; train:
    measured while the last epoch trained) plus ``epoch_s``, the mean training time of one epoch
    (s, over all epochs and trials; the machine's load counts)."""
    rows = accuracy_vs_bptt.comparison_rows(sweep)
    for row in rows:
        runs = sweep[row["key"]]
        times = [h["train_time"] for r in runs for h in r.history[1:] if h.get("train_time")]
        row["epoch_s"] = float(np.mean(times)) if times else float("nan")
    return rows


def comparison_table(rows: Sequence[Dict[str, Any]]) -> str:
    """Text table of :func:`comparison_rows`."""
    table = [
        dict(
            r,
            lr="-" if r["lr"] is None else f"{r['lr']:g}",
            train_s=f"{r['train']:.1f} +- {r['train_std']:.1f}",
            test_s=f"{r['test']:.1f} +- {r['test_std']:.1f}",
        )
        for r in rows
    ]
    return format_table(
        table,
        [
            ("label", "method", ""),
            ("lr", "lr", ""),
            ("n", "seeds", "d"),
            ("train_s", "train acc %", ""),
            ("test_s", "test acc %", ""),
            ("epoch_s", "s per epoch", ".2f"),
        ],
    )


def window_accuracies(
    main: Sweep, windows: Sweep, config: StudyConfig, metric: str = "test"
) -> Dict[int, np.ndarray]:
    """``{d: final accuracies of the seeds}`` of S-TLLR for every window: ``d<d>`` of ``windows``
    and ``config.window`` from ``main``'s ``stllr``, ordered by d. ``metric``: ``'test'`` or
    ``'train'`` (the last epoch's training accuracy)."""
    if metric not in ("test", "train"):
        raise ValueError(f"metric: expected 'test' or 'train', got {metric!r}")

    def acc(runs):
        key = "test_acc" if metric == "test" else "train_acc"
        return np.array([r.final[key] for r in runs], dtype=float)

    out = {int(k[1:]): acc(runs) for k, runs in windows.items() if k[:1] == "d"}
    out[config.window] = acc(main["stllr"])
    return dict(sorted(out.items()))


def window_table(test: Dict[int, np.ndarray], train: Dict[int, np.ndarray], T: int) -> str:
    """Text table: per window d, T_l = T - d, seeds, train and test accuracy (mean +- std)."""
    rows = []
    for d in test:
        te, tr = mean_std(test[d], exact=False), mean_std(train[d], exact=False)
        rows.append(
            dict(
                d=d,
                T_l=T - d,
                n=len(test[d]),
                train=f"{tr[0]:.1f} +- {tr[1]:.1f}",
                test=f"{te[0]:.1f} +- {te[1]:.1f}",
            )
        )
    return format_table(
        rows,
        [
            ("d", "learning steps d", "d"),
            ("T_l", "T_l", "d"),
            ("n", "seeds", "d"),
            ("train", "train acc %", ""),
            ("test", "test acc %", ""),
        ],
    )


# ======================================================================================
# Memory of one training sequence
# ======================================================================================
def memory_rows(
    config: StudyConfig,
    batch_size: int = 10,
    seed: int = 0,
    chunk: Optional[int] = None,
    peak: bool = False,
) -> List[Dict[str, Any]]:
    """One training sequence of each comparison method on the first ``batch_size`` training samples
    (all of T steps: DVS Gesture's test recordings vary in length),
    measured with :func:`stllr.measure.measure_sequence` (no optimizer step); S-TLLR twice: with
    the weight gradients computed at every learning step (the rule as the paper writes it, key
    ``stllr_step``) and deferred as the training loop runs it (key ``stllr``).

    Parameters:
        config: :func:`study_config`'s settings (its data are loaded).
        batch_size: samples in the sequence (pick one that differs from every layer width: the
            tracker tells activations by their first dimension).
        seed: of the model's initial weights.
        chunk: the deferral chunk of ``stllr`` (None: the training loop's
            :data:`stllr.training.loop.DEFAULT_CHUNK`; at most the window is used).
        peak: also measure the process's peak resident memory (approximate, CPU-dependent).

    Rows: ``key``, ``label``, ``batch``, ``saved`` (the peak of activations saved for backward,
    bytes), ``deferred`` (the most the deferred weight gradients' operand buffers held; else 0),
    ``state`` (the layers' state after the sequence), ``total`` (their sum) and ``peak_increase``
    (bytes above the start, None without ``peak``). All but the peak depend on the shapes only:
    the same on every machine.
    """
    from stllr import measure
    from stllr.studies.common import build_model_for, num_threads
    from stllr.training.loop import DEFAULT_CHUNK, check_chunk, seed_everything

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    chunk = DEFAULT_CHUNK if chunk is None else check_chunk(chunk)
    train_set, _, info = config.data.load()
    if batch_size > len(train_set):
        raise ValueError(f"batch_size: expected at most {len(train_set)} samples, got {batch_size}")
    frames = torch.stack([train_set[i][0] for i in range(batch_size)]).transpose(0, 1)
    labels = torch.tensor([int(train_set[i][1]) for i in range(batch_size)])
    stllr, bptt = comparison_methods(config)
    d = stllr.window
    cases = (
        ("stllr_step", f"S-TLLR, weight gradients at each of the {d} steps", stllr, 0),
        ("stllr", f"S-TLLR, deferred ({min(chunk, d)} steps per GEMM, as trained)", stllr, chunk),
        ("bptt", f"BPTT twin, graph of all {config.T} steps", bptt, 0),
    )
    rows = []
    with num_threads(1):
        for key, label, m, k in cases:
            seed_everything(seed)
            model = build_model_for(m, info)
            r = measure.measure_sequence(
                model,
                frames.contiguous(),
                labels,
                mode=m.mode,
                window=m.window if m.mode == "stllr" else None,
                saved=True,
                macs=False,
                peak=peak,
                chunk=k,
            )
            state = int(r.state["total"])
            deferred = int(r.deferred_bytes or 0)
            saved = int(r.saved.peak_activation_bytes)
            rows.append(
                dict(
                    key=key,
                    label=label,
                    batch=batch_size,
                    saved=saved,
                    deferred=deferred,
                    state=state,
                    total=saved + deferred + state,
                    peak_increase=None if r.peak is None else int(r.peak.increase_bytes),
                )
            )
    return rows


def memory_table(rows: Sequence[Dict[str, Any]]) -> str:
    """Text table of :func:`memory_rows`' exact parts, in kB (1e3 bytes)."""
    table = [
        dict(
            r,
            saved_kb=r["saved"] / 1e3,
            deferred_kb=r["deferred"] / 1e3,
            state_kb=r["state"] / 1e3,
            total_kb=r["total"] / 1e3,
        )
        for r in rows
    ]
    return format_table(
        table,
        [
            ("label", "method", ""),
            ("saved_kb", "saved for backward kB", ".1f"),
            ("deferred_kb", "deferred operands kB", ".1f"),
            ("state_kb", "neuron state kB", ".1f"),
            ("total_kb", "total kB", ".1f"),
        ],
    )


# ======================================================================================
# Figures
# ======================================================================================
def sample_per_class(dataset) -> List[int]:
    """The index of the first sample of every class of ``dataset`` (class order)."""
    targets = [int(dataset[i][1]) for i in range(len(dataset))]
    n = int(dataset.num_classes)
    missing = [c for c in range(n) if c not in targets]
    if missing:
        raise ValueError(f"dataset: no sample of class(es) {missing}")
    return [targets.index(c) for c in range(n)]


def plot_samples(dataset, steps: Sequence[int], window: Optional[int] = None):
    """One sample of every class (rows) at the frames ``steps`` (columns), ON events red, OFF blue
    (:func:`stllr.studies.event_data.frames_rgb`); ``window``: the columns among the last
    ``window`` steps get a dark frame (they carry the learning signal). Returns the figure."""
    from stllr.studies.event_data import frames_rgb

    idx = sample_per_class(dataset)
    T = int(dataset.T)
    steps = [int(s) for s in steps]
    if not steps or any(not 0 <= s < T for s in steps):
        raise ValueError(f"steps: expected frame indices in [0, {T}), got {steps}")
    classes = getattr(dataset, "classes", None) or [str(c) for c in range(len(idx))]
    fig, axes = plt.subplots(
        len(idx), len(steps), figsize=(1.1 * len(steps) + 0.6, 1.15 * len(idx)), squeeze=False
    )
    for row, i in enumerate(idx):
        rgb = frames_rgb(dataset[i][0])
        for col, t in enumerate(steps):
            ax = axes[row][col]
            ax.imshow(rgb[t], interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            learning = window is not None and t >= T - window
            for spine in ax.spines.values():
                spine.set_color("black" if learning else "0.75")
                spine.set_linewidth(2.0 if learning else 0.8)
            if row == 0:
                ax.set_title(f"t = {t}", fontsize=8, fontweight="bold" if learning else "normal")
            if col == 0:
                ax.set_ylabel(classes[row], fontsize=8)
    title = "moving_shapes: one sample per direction (ON red, OFF blue)"
    if window is not None:
        title += f"; thick frames: the last {window} steps, where the learning signal is"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_accuracy(
    main: Sweep,
    test: Dict[int, np.ndarray],
    train: Dict[int, np.ndarray],
    config: StudyConfig,
):
    """Two panels, every seed a point and the mean a bar: final test (filled) and train (open)
    accuracy of S-TLLR (last ``config.window`` steps) and the BPTT twin (left), and of S-TLLR
    against the learning window d (right); chance dotted. ``test`` / ``train``:
    :func:`window_accuracies`. Returns the figure."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.9), gridspec_kw={"width_ratios": [1.0, 1.3]})
    colors = {"stllr": PAPER_STYLE["stllr"], "bptt": PAPER_STYLE["bptt"]}

    def points(a, x, values, color, filled):
        jitter = np.linspace(-0.08, 0.08, len(values)) if len(values) > 1 else np.zeros(1)
        a.scatter(
            x + jitter,
            values,
            s=22,
            color=color if filled else "white",
            edgecolors=color,
            zorder=3,
        )

    names = []
    for i, key in enumerate(main):
        runs = main[key]
        te = np.array([r.final["test_acc"] for r in runs])
        tr = np.array([r.final["train_acc"] for r in runs])
        c = colors.get(key, "0.4")
        ax.bar(i - 0.18, te.mean(), width=0.34, color=c, alpha=0.35)
        ax.bar(i + 0.18, tr.mean(), width=0.34, color="none", edgecolor=c)
        points(ax, i - 0.18, te, c, True)
        points(ax, i + 0.18, tr, c, False)
        names.append(main.labels.get(key, key).replace(" (", "\n(").replace(", last", ",\nlast"))
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=8)
    ax.set_title(f"final accuracy, {min(len(v) for v in main.values())} seeds each", fontsize=10)
    c = colors["stllr"]
    for j, d in enumerate(test):
        bx.bar(j - 0.18, test[d].mean(), width=0.34, color=c, alpha=0.35)
        bx.bar(j + 0.18, train[d].mean(), width=0.34, color="none", edgecolor=c)
        points(bx, j - 0.18, test[d], c, True)
        points(bx, j + 0.18, train[d], c, False)
    bx.set_xticks(range(len(test)))
    bx.set_xticklabels(
        [f"d = {d}\n(T_l = {config.T - d})" + (" *" if d == config.window else "") for d in test],
        fontsize=8,
    )
    bx.set_title(
        f"S-TLLR: learning signal on the last d of T = {config.T} steps (* the paper's)",
        fontsize=10,
    )
    for a in (ax, bx):
        a.axhline(config.chance, color="0.6", ls=":", lw=1)
        a.set_ylim(0, 104)
        a.set_ylabel("final accuracy (%)")
        _clean(a)
    ax.text(len(names) - 0.5, config.chance + 1, "chance", color="0.4", fontsize=8, ha="right")
    handles = [
        plt.Line2D([], [], marker="o", ls="", color="0.3", label="test (a seed)"),
        plt.Line2D(
            [], [], marker="o", ls="", color="0.3", markerfacecolor="white", label="train (a seed)"
        ),
    ]
    bx.legend(handles=handles, frameon=False, fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def plot_memory(rows: Sequence[Dict[str, Any]]):
    """Stacked bars of :func:`memory_rows`: saved for backward, deferred operands and neuron state
    (kB) per method, with the total written above. Returns the figure."""
    parts = (
        ("saved", "saved for backward", "#d62728"),
        ("deferred", "deferred weight-gradient operands", "#ff9896"),
        ("state", "neuron state (membranes, traces)", "#7f7f7f"),
    )
    fig, ax = plt.subplots(figsize=(6.2, 3.6))
    x = np.arange(len(rows))
    bottom = np.zeros(len(rows))
    for key, label, color in parts:
        v = np.array([r[key] / 1e3 for r in rows], dtype=float)
        ax.bar(x, v, bottom=bottom, color=color, width=0.55, label=label)
        bottom += v
    for xi, r in zip(x, rows):
        ax.text(xi, r["total"] / 1e3, f"{r['total'] / 1e3:.0f} kB", ha="center", va="bottom")
    ax.set_xticks(x)
    ax.set_xticklabels([r["label"].replace(", ", ",\n").replace(" (", "\n(") for r in rows])
    ax.tick_params(axis="x", labelsize=8)
    ax.set_ylabel("kB held by one training sequence")
    batch = rows[0]["batch"] if rows else 0
    ax.set_title(f"memory of one training sequence (batch {batch}), exact bytes", fontsize=10)
    ax.set_ylim(0, 1.15 * max(r["total"] for r in rows) / 1e3)
    ax.legend(frameon=False, fontsize=8)
    _clean(ax)
    fig.tight_layout()
    return fig


# ======================================================================================
# The conv form of the rule, by autograd (float64)
# ======================================================================================
class ConvProblem(NamedTuple):
    """One ``Conv2dSTLLR`` layer (float64, standardised weights) and its inputs: ``x`` [T, B,
    C_in, H, W] binary input spikes, ``y`` [B, C_out, H', W'] a target spike map (the per-step loss
    is :func:`spike_loss`), ``window`` the learning steps."""

    layer: torch.nn.Module
    x: torch.Tensor
    y: torch.Tensor
    window: int


def make_conv_problem(
    in_channels: int = 2,
    out_channels: int = 3,
    size: int = 6,
    batch: int = 2,
    steps: int = 8,
    window: int = 5,
    factors: Sequence[float] = GESTURE_FACTORS,
    stride: int = 1,
    padding: int = 1,
    seed: int = 0,
    rate: float = 0.3,
) -> ConvProblem:
    """A small float64 conv problem (:class:`ConvProblem`): ``Conv2dSTLLR(in_channels,
    out_channels, 3, stride, padding)`` with the triangle psi, leak 2, threshold 0.6, soft reset,
    weight standardisation and a random gain and bias (so every part of the rule is exercised);
    Bernoulli(``rate``) input spikes [steps, batch, in_channels, size, size].

    Raises a one-line ``ValueError`` naming ``window`` (outside [1, steps]) or ``steps``."""
    from stllr import Conv2dSTLLR

    for name, v in (("steps", steps), ("batch", batch), ("size", size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= steps:
        raise ValueError(f"window: expected an integer in [1, steps={steps}], got {window!r}")
    g = torch.Generator().manual_seed(seed)
    layer = Conv2dSTLLR(
        in_channels,
        out_channels,
        3,
        stride,
        padding,
        factors=list(factors),
        psi="triangle",
        leak=2.0,
        threshold=0.6,
        dtype=torch.float64,
    )
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g, dtype=torch.float64))
        layer.gain.copy_(1.0 + 0.5 * torch.rand(layer.gain.shape, generator=g, dtype=torch.float64))
        layer.bias.copy_(0.3 * torch.randn(layer.bias.shape, generator=g, dtype=torch.float64))
    x = (torch.rand((steps, batch, in_channels, size, size), generator=g) < rate).double()
    h_out = (size + 2 * padding - 3) // stride + 1
    y = (torch.rand((batch, out_channels, h_out, h_out), generator=g) < 0.5).double()
    return ConvProblem(layer, x, y, window)


def spike_loss(s_t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The per-step loss of :class:`ConvProblem`: ``0.5 * sum((s_t - y)^2)``, so the learning
    signal is ``delta_t = s_t - y``."""
    return 0.5 * ((s_t - y) ** 2).sum()


def layer_grads(p: ConvProblem, chunk: int = 0) -> Dict[str, torch.Tensor]:
    """``{"weight", "gain", "bias"}``: the layer's ``.grad`` after one
    :func:`stllr.training.loop.stllr_window` of ``p`` (``chunk``: 0 per step, > 0 deferred as
    the training loop does). The layer's gradients are cleared first and after."""
    from stllr.training.loop import stllr_window

    layer = p.layer
    layer.zero_grad(set_to_none=True)
    stllr_window(layer, p.x, p.y, spike_loss, p.window, chunk=chunk)
    out = {n: getattr(layer, n).grad.detach().clone() for n in ("weight", "gain", "bias")}
    layer.zero_grad(set_to_none=True)
    layer.reset_state()
    return out


def conv_rule_by_autograd(p: ConvProblem) -> Dict[str, torch.Tensor]:
    """The rule for ``p.layer`` over the last ``p.window`` steps, written from docs/rule.md in plain
    torch; autograd does the two convolutions' weight gradients and the standardisation's backward.

    The forward runs without a graph (every state detached: steps 1-7 of rule.md); at each learning
    step the surrogate ``alpha_pre <conv2d(tr_in_t, W~), delta_t psi_t> + alpha_post <conv2d(x_t,
    W~), delta_t tr_out_{t-1}> + <delta_t psi_t, b>`` is added, with every factor but ``W~`` (a
    function of W and gain) and b held constant: its gradient is the rule (Eq. 10-13 in conv form).
    Returns ``{"weight", "gain", "bias"}`` (dL/dW, dL/dgain, dL/db)."""
    layer = p.layer
    lam_post, lam_pre, a_post, a_pre = (float(f) for f in layer.factors)
    beta = float(torch.sigmoid(layer.leak.detach()))
    theta = max(float(layer.threshold), 0.5)
    conv = dict(stride=layer.stride, padding=layer.padding)
    W = layer.weight.detach().clone().requires_grad_(True)
    gain = layer.gain.detach().clone().requires_grad_(True)
    b = layer.bias.detach().clone().requires_grad_(True)
    rows = W.reshape(W.shape[0], -1)
    centered = rows - rows.mean(dim=1, keepdim=True)
    scale = torch.sqrt(rows.var(dim=1, unbiased=True, keepdim=True) * rows.shape[1] + 1e-4)
    w_tilde = gain * (centered / scale).reshape(W.shape)  # weight standardisation
    T = p.x.shape[0]
    u = tr_in = tr_out = None
    surrogate = 0.0
    for t in range(T):
        x_t = p.x[t]
        with torch.no_grad():
            tr_in = x_t if tr_in is None else lam_pre * tr_in + x_t
            m = F.conv2d(x_t, w_tilde, b, **conv) + (0.0 if u is None else beta * u)
            v = m - theta
            s = (v > 0).to(m.dtype)
            psi = 0.3 * torch.clamp(1.0 - v.abs(), min=0.0)  # triangle, Eq. 26
            tr_prev = torch.zeros_like(psi) if tr_out is None else tr_out
            tr_out = lam_post * tr_prev + psi
            u = m - theta * s  # soft reset
        if t >= T - p.window:
            delta = s - p.y  # d spike_loss / d s_t
            surrogate = (
                surrogate
                + a_pre * (F.conv2d(tr_in, w_tilde, **conv) * (delta * psi)).sum()
                + a_post * (F.conv2d(x_t, w_tilde, **conv) * (delta * tr_prev)).sum()
                + ((delta * psi).sum((0, 2, 3)) * b).sum()
            )
    gw, gg, gb = torch.autograd.grad(surrogate, (W, gain, b))
    return {"weight": gw, "gain": gg, "bias": gb}


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max |a - b| / max(max |b|, 1e-300)``."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))
