"""What the notebook studies share: a :class:`Method` (how to train), a :class:`RunResult`
(what one run gave), a :class:`StudyConfig` (a study's settings, with its data as a
:class:`DataSpec`), the procedural tasks' settings (:data:`RANDMAN_TASK`, :data:`SMALL_RANDMAN`),
the DFA firing-rate penalty (:data:`DFA_RATE_PENALTY`), datasets and loaders, and
:func:`train_method` (the code of ``stllr train``) for one run. Many runs (trials, in worker
processes, cached): :func:`stllr.studies.sweeps.run_trials`."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stllr._checks import check_positive_int
from stllr.functional import Factors, check_factors
from stllr.models.registry import build_model, get_model_spec
from stllr.training.config import make_optimizer
from stllr.training.loop import run_epoch, seed_everything

__all__ = [
    "RANDMAN_TASK",
    "SMALL_RANDMAN",
    "DFA_RATE_PENALTY",
    "SMALL_TASK_WINDOW",
    "SMALL_TASK_EPOCHS",
    "SMALL_TASK_LR_GRID",
    "SMALL_TASK_VALIDATION",
    "SMALL_TASK_LR",
    "SMALL_TASK_METHODS",
    "Method",
    "RunResult",
    "DataSpec",
    "StudyConfig",
    "randman_config",
    "small_task_config",
    "small_task_method",
    "paper_shd_config",
    "num_threads",
    "load_datasets",
    "loaders_for",
    "build_model_for",
    "train_method",
    "format_table",
]

#: The procedural spike-timing task of ``benchmarks/accuracy.py`` (randman options): 10 classes,
#: 100 input units each firing once in T = 50 steps with a timing jitter of 2 steps,
#: 1000 training / 500 test samples; only the joint spike timing tells the class.
RANDMAN_TASK = {
    "n_classes": 10,
    "n_units": 100,
    "n_steps": 50,
    "n_train_per_class": 100,
    "n_test_per_class": 50,
    "manifold_dim": 2,
    "alpha": 2.0,
    "jitter": 2.0,
    "seed": 0,
}


#: A small randman task for sweeps on a laptop (notebooks 06, 07, 08): :data:`RANDMAN_TASK` with 5
#: classes, T = 30, 300 training and 200 test samples. ``randman_rsnn_stllr`` trains one epoch of it
#: in about 0.25 s on one thread.
SMALL_RANDMAN = dict(
    RANDMAN_TASK, n_classes=5, n_steps=30, n_train_per_class=60, n_test_per_class=40
)


#: The firing-rate penalty that lets DFA train the recurrent randman network (docs/experiments.md):
#: ``rate_reg * (s_t - rate_target) / batch`` added at the hook (keyword arguments of
#: :func:`stllr.models.build_model`, see :class:`stllr.signals.LearningSignal`).
DFA_RATE_PENALTY = {"rate_reg": 0.3, "rate_target": 0.03}


# --------------------------------------------------------------- the one small-task setting
# Notebooks 00, 06, 07 and 08 train on one setting (:func:`small_task_config`): the task
# SMALL_RANDMAN, the learning signal on the last SMALL_TASK_WINDOW steps, SMALL_TASK_EPOCHS epochs,
# and for each method the learning rate that notebook 08's validation sweep chose.

#: Learning steps of the small-task setting: the last 20 of T = 30 (T_l = 10, where the paper's
#: SHD runs start theirs, of 100); also the window of the windowed-loss BPTT twin.
SMALL_TASK_WINDOW = 20

#: Training epochs of the small-task setting (about 1.5 s per S-TLLR run on one thread).
SMALL_TASK_EPOCHS = 12

#: The learning rates notebook 08 tries per method (Adam), on a validation split.
SMALL_TASK_LR_GRID = (5e-3, 1e-2, 2e-2)

#: Training samples held out as the validation split of that sweep (of 300; 240 train on).
SMALL_TASK_VALIDATION = 60

#: Each method of :data:`SMALL_TASK_METHODS` with its learning rate, as the validation sweep
#: chose it (:func:`stllr.studies.accuracy_vs_bptt.choose_lr`: the highest mean final validation
#: accuracy over 3 seeds, a tie to the smaller rate; the record of that sweep is
#: :data:`stllr.studies.accuracy_vs_bptt.RECORDED_LR_SWEEP`, tests/test_accuracy_study.py checks it).
#: ``dfa`` (plain DFA, not in the sweep) takes ``dfa_rate``'s.
SMALL_TASK_LR = {
    "bp": 2e-2,
    "bp_rate": 1e-2,
    "dfa_rate": 1e-2,
    "dfa": 1e-2,
    "bptt_window": 2e-2,
    "bptt": 2e-2,
}

#: The methods of the small-task setting: ``kind: (label, S-TLLR or BPTT, training mode, learning
#: signal, build_model options)``. ``bptt_window`` trains the BPTT twin on the loss S-TLLR
#: differentiates (the per-step losses of the window), ``bptt`` on the loss of the summed logits.
SMALL_TASK_METHODS = {
    "bp": ("S-TLLR (BP)", "stllr", "stllr", "bp", {}),
    "bp_rate": ("S-TLLR (BP + rate penalty)", "stllr", "stllr", "bp", DFA_RATE_PENALTY),
    "dfa_rate": ("S-TLLR (DFA + rate penalty)", "stllr", "stllr", "dfa", DFA_RATE_PENALTY),
    "dfa": ("S-TLLR (DFA)", "stllr", "stllr", "dfa", {}),
    "bptt_window": ("BPTT (loss of the window)", "bptt", "bptt_window", "bp", {}),
    "bptt": ("BPTT (loss of the summed logits)", "bptt", "bptt", "bp", {}),
}


# ======================================================================================
# Small utilities
# ======================================================================================
@contextlib.contextmanager
def num_threads(n: Optional[int]):
    """``with num_threads(1): ...``: torch intra-op threads inside the block (None: unchanged)."""
    if n is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def format_table(rows: Sequence[Dict[str, Any]], columns: Sequence[Tuple[str, str, str]]) -> str:
    """Plain-text table. ``columns``: (key, header, format spec such as ``'.2f'``; ``''``: text,
    left-aligned); a missing or None value prints ``-``. Column widths depend on the header and
    values only (reproducible)."""
    cells = []
    for r in rows:
        line = []
        for key, _, fmt in columns:
            v = r.get(key)
            line.append("-" if v is None else (format(v, fmt) if fmt else str(v)))
        cells.append(line)
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (_, h, _) in enumerate(columns)]
    left = [not fmt for _, _, fmt in columns]  # text columns left-aligned, numbers right-aligned

    def just(v, w, i):
        return v.ljust(w) if left[i] else v.rjust(w)

    out = ["  ".join(just(h, w, i) for i, ((_, h, _), w) in enumerate(zip(columns, widths)))]
    out.append("  ".join("-" * w for w in widths))
    for c in cells:
        out.append("  ".join(just(v, w, i) for i, (v, w) in enumerate(zip(c, widths))))
    return "\n".join(line.rstrip() for line in out)


# ======================================================================================
# Training S-TLLR and its BPTT twin (notebook 00)
# ======================================================================================
@dataclass
class Method:
    """One way of training: an arch of the registry, its training mode and the rule's settings."""

    key: str
    label: str
    arch: str
    #: the training mode of :func:`stllr.training.loop.train_batch`: ``stllr``, ``stllr_online``,
    #: ``bptt`` or ``bptt_window`` (BPTT on S-TLLR's windowed loss)
    mode: str
    factors: Sequence[float] = (0.5, 1.0, 1.0, 1.0)
    window: int = 45
    psi: Optional[str] = None
    feedback_mode: str = "bp"
    #: extra keyword arguments of :func:`stllr.models.build_model`, e.g. ``{"rate_reg": 0.3}``
    options: Dict[str, Any] = field(default_factory=dict)
    #: this method's own learning rate (None: the one a sweep or study passes to all methods)
    lr: Optional[float] = None

    def __post_init__(self):
        if self.lr is not None:
            lr = self.lr
            if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
                raise ValueError(f"lr: expected a positive number or None, got {lr!r}")
            self.lr = float(lr)

    def to_json(self) -> Dict[str, Any]:
        """The fields as JSON-ready data (``factors`` as a list of floats; ``lr`` only when set,
        so a sweep cache written before the field existed still matches)."""
        d = dataclasses.asdict(self)
        d["factors"] = [float(f) for f in self.factors]
        if d["lr"] is None:
            del d["lr"]
        return d

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "Method":
        """The :class:`Method` of :meth:`to_json`'s data."""
        return cls(**{**data, "factors": tuple(data["factors"])})


@dataclass
class RunResult:
    """One trained run of a :class:`Method` (:func:`train_method`; many:
    :func:`stllr.studies.sweeps.run_trials`).

    ``seed``: the run's seed; ``trial``: its index in a sweep (0 for a single run).
    ``history``: per epoch (0 = before training, test only) ``epoch``, ``train_acc``,
    ``train_loss``, ``test_acc``, ``test_loss`` (%, mean CE of the logits summed over T) and, from
    :func:`train_method`, ``train_time`` / ``test_time`` (s). ``model``: the trained network, None
    when the run was loaded from a sweep's cache or came from a worker process. ``records``: one
    dict per recorded batch (notebook 06, :func:`stllr.studies.learning_signals.train_recording`;
    else empty). ``seconds``: wall clock of the whole run.
    """

    method: Method
    seed: int
    trial: int
    history: List[Dict[str, Any]]
    num_parameters: int = 0
    model: Optional[nn.Module] = field(default=None, repr=False, compare=False)
    records: List[Dict[str, Any]] = field(default_factory=list)
    seconds: float = field(default=0.0, compare=False)

    @property
    def final(self) -> Dict[str, Any]:
        """The last epoch's entry of ``history``."""
        return self.history[-1]

    @property
    def final_test_acc(self) -> float:
        """Test accuracy (%) after the last epoch."""
        return float(self.history[-1]["test_acc"])

    @property
    def best_test_acc(self) -> float:
        """Best test accuracy (%) over the trained epochs (epoch 0 when there are none)."""
        return (
            float(max(h["test_acc"] for h in self.history[1:]))
            if len(self.history) > 1
            else float(self.history[0]["test_acc"])
        )

    def series(self, key: str) -> np.ndarray:
        """``key`` of every record [records] when the records hold it (e.g. ``epoch`` of notebook
        06's recorded batches), else of every epoch of ``history`` where it is set [epochs]."""
        if self.records and key in self.records[0]:
            return np.array([r[key] for r in self.records], dtype=float)
        return np.array([h[key] for h in self.history if h.get(key) is not None], dtype=float)

    def to_json(self) -> Dict[str, Any]:
        """Everything but the model, as JSON-ready data (:meth:`from_json` reads it back)."""
        return {
            "method": self.method.to_json(),
            "seed": self.seed,
            "trial": self.trial,
            "history": self.history,
            "num_parameters": self.num_parameters,
            "records": self.records,
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "RunResult":
        """The :class:`RunResult` of :meth:`to_json`'s data (``model`` None)."""
        return cls(**{**data, "method": Method.from_json(data["method"])})


def _subset(dataset, n: Optional[int], seed: int):
    if n is None or n >= len(dataset):
        return dataset
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(dataset), generator=g)[: int(n)].sort().values.tolist()
    sub = torch.utils.data.Subset(dataset, idx)
    for attr in ("num_classes", "input_shape", "T"):
        if hasattr(dataset, attr):
            setattr(sub, attr, getattr(dataset, attr))
    return sub


def load_datasets(
    dataset: str,
    data_path=None,
    batch_size: int = 32,
    val_batch_size: int = 250,
    seed: int = 0,
    data_options: Optional[Dict[str, Any]] = None,
    max_train: Optional[int] = None,
    max_test: Optional[int] = None,
    validation: Optional[int] = None,
):
    """``(train_set, test_set, info)`` of :func:`stllr.data.get_dataset` (``max_train`` /
    ``max_test``: a fixed random subset). Loaders come from :func:`loaders_for` so that every method
    sees the same batches in the same order.

    ``validation``: ``n`` of the training samples (a random subset fixed by ``seed``) are returned
    in place of the test set, and the rest as the training set (the test set is not loaded);
    ``info['evaluation']`` says which (``'test'`` or ``'validation'``)."""
    from stllr import data as sdata

    options = dict(data_options or {})
    train_set = _subset(sdata.get_dataset(dataset, data_path, True, **options), max_train, seed)
    if validation is None:
        test_set = _subset(
            sdata.get_dataset(dataset, data_path, False, **options), max_test, seed + 1
        )
    else:
        train_set, test_set = _split(train_set, validation, seed + 2)
    info = {
        "dataset": dataset,
        "num_classes": int(test_set.num_classes),
        "input_shape": tuple(int(s) for s in test_set.input_shape),
        "T": getattr(test_set, "T", None),
        "n_train": len(train_set),
        "n_test": len(test_set),
        "batch_size": batch_size,
        "val_batch_size": val_batch_size,
        "seed": seed,
        "evaluation": "test" if validation is None else "validation",
    }
    return train_set, test_set, info


def _split(dataset, n: int, seed: int):
    """``(rest, held_out)``: ``n`` samples of ``dataset`` (a random subset fixed by ``seed``) and
    the others, both keeping the dataset's ``num_classes`` / ``input_shape`` / ``T``."""
    n = check_positive_int(n, "validation")
    if n >= len(dataset):
        raise ValueError(
            f"validation: expected fewer than the {len(dataset)} training samples, got {n}"
        )
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(dataset), generator=g)
    parts = []
    for idx in (order[n:], order[:n]):
        sub = torch.utils.data.Subset(dataset, idx.sort().values.tolist())
        for attr in ("num_classes", "input_shape", "T"):
            if hasattr(dataset, attr):
                setattr(sub, attr, getattr(dataset, attr))
        parts.append(sub)
    return parts[0], parts[1]


def loaders_for(train_set, test_set, info: Dict[str, Any]):
    """Fresh DataLoaders with a shuffling generator seeded from ``info['seed']``."""
    from stllr.data import pad_collate

    g = torch.Generator()
    g.manual_seed(int(info["seed"]))
    train = torch.utils.data.DataLoader(
        train_set, batch_size=info["batch_size"], shuffle=True, generator=g, collate_fn=pad_collate
    )
    test = torch.utils.data.DataLoader(
        test_set, batch_size=info["val_batch_size"], shuffle=False, collate_fn=pad_collate
    )
    return train, test


def build_model_for(method: Method, info: Dict[str, Any]) -> nn.Module:
    """``method``'s model (:func:`stllr.models.build_model` of ``method.arch`` with its psi,
    factors, feedback mode and options), sized for the data of ``info`` (``num_classes``,
    ``input_shape``, as :func:`load_datasets` gives them)."""
    spec = get_model_spec(method.arch)
    kw = dict(num_classes=info["num_classes"], input_shape=info["input_shape"], psi=method.psi)
    if spec.is_stllr:
        kw.update(factors=list(method.factors), feedback_mode=method.feedback_mode)
    kw.update(method.options)
    return build_model(method.arch, **kw)


def train_method(
    method: Method,
    train_set,
    test_set,
    info: Dict[str, Any],
    *,
    epochs: int,
    lr: float,
    optimizer: str = "Adam",
    seed: int = 0,
    device="cpu",
    threads: Optional[int] = 1,
    progress: bool = False,
    make_train_step: Optional[Callable[[nn.Module, torch.optim.Optimizer, int], Callable]] = None,
) -> RunResult:
    """Train ``method`` for ``epochs`` epochs (stllr.training.loop.run_epoch, the same code as ``stllr
    train``) and evaluate on the test set after each epoch (and once before training, epoch 0).

    Seeds python/numpy/torch with ``seed`` before building the model; the loaders are rebuilt with
    the data seed, so every method sees the same batches. History entries: epoch, train_acc,
    train_loss, test_acc, test_loss (%, mean CE of the logits summed over T), train_time,
    test_time (s). Returns a :class:`RunResult` (trial 0) with the trained model.

    ``make_train_step(model, optimizer, batches_per_epoch)``: optional; the ``step(frames, labels)
    -> pred`` it returns trains each batch instead of :func:`stllr.training.loop.train_batch`
    (``run_epoch``'s ``train_step``), e.g. to record the learning signals (notebook 06).
    """
    device = torch.device(device)
    t0 = time.perf_counter()
    with num_threads(threads):
        seed_everything(seed)
        model = build_model_for(method, info).to(device)
        opt = make_optimizer(optimizer, model.parameters(), lr)
        train_loader, test_loader = loaders_for(train_set, test_set, info)
        step = None if make_train_step is None else make_train_step(model, opt, len(train_loader))
        te = run_epoch(model, test_loader, optimizer=None, loss_fn=F.cross_entropy, device=device)
        history = [
            {
                "epoch": 0,
                "train_acc": None,
                "train_loss": None,
                "test_acc": te["acc"],
                "test_loss": te["loss"],
                "train_time": None,
                "test_time": te["time"],
            }
        ]
        for epoch in range(1, epochs + 1):
            tr = run_epoch(
                model,
                train_loader,
                optimizer=opt,
                loss_fn=F.cross_entropy,
                mode=method.mode,
                window=method.window,
                device=device,
                progress=progress,
                desc=f"{method.label} epoch {epoch}",
                train_step=step,
            )
            te = run_epoch(
                model, test_loader, optimizer=None, loss_fn=F.cross_entropy, device=device
            )
            history.append(
                {
                    "epoch": epoch,
                    "train_acc": tr["acc"],
                    "train_loss": tr["loss"],
                    "test_acc": te["acc"],
                    "test_loss": te["loss"],
                    "train_time": tr["time"],
                    "test_time": te["time"],
                }
            )
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return RunResult(method, seed, 0, history, n_params, model, seconds=time.perf_counter() - t0)


# ======================================================================================
# A study's settings (notebooks 00, 06, 07, 08)
# ======================================================================================
@dataclass(frozen=True)
class DataSpec:
    """Where a study's data come from (arguments of :func:`load_datasets`).

    ``data_seed`` fixes the data (the random subsets of ``max_train`` / ``max_test`` and of
    ``validation``) and the batch order of ``info['seed']``; each trial of
    :func:`stllr.studies.sweeps.run_trials` shuffles batches with its own seed (or its
    ``batch_seed``).

    ``validation``: hold out this many training samples (a fixed random subset) and evaluate on
    them instead of the test set; the runs then train on the rest of the training set and never
    see the test set (for choosing settings, such as a learning rate, without the test set).
    """

    dataset: str
    data_path: Optional[str] = None
    data_options: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int = 32
    val_batch_size: int = 250
    max_train: Optional[int] = None
    max_test: Optional[int] = None
    data_seed: int = 0
    validation: Optional[int] = None

    def __post_init__(self):
        if self.validation is not None:
            object.__setattr__(
                self, "validation", check_positive_int(self.validation, "validation")
            )

    def as_dict(self) -> Dict[str, Any]:
        """The fields as JSON-ready data (the sweep cache's key; ``validation`` only when set, so
        a cache written before the field existed still matches)."""
        d = dataclasses.asdict(self)
        d["data_options"] = dict(self.data_options)
        d["data_path"] = None if self.data_path is None else str(self.data_path)
        if d["validation"] is None:
            del d["validation"]
        return d

    def validation_split(self, n: int) -> "DataSpec":
        """The same data with ``n`` training samples held out for evaluation
        (:attr:`validation`)."""
        return dataclasses.replace(self, validation=int(n))

    def with_seed(self, seed: int) -> "DataSpec":
        """The same data fixed by ``seed`` (``data_seed``)."""
        return dataclasses.replace(self, data_seed=int(seed))

    def load(self):
        """``(train_set, test_set, info)`` of :func:`load_datasets`, kept in this process for the
        next call and for :func:`stllr.studies.sweeps.run_trials` (one dataset at a time)."""
        spec = self.as_dict()
        key = json.dumps(spec, sort_keys=True, default=str)
        if key not in _DATA_CACHE:
            _DATA_CACHE.clear()  # one dataset per process is enough
            _DATA_CACHE[key] = load_datasets(
                spec["dataset"],
                spec["data_path"],
                spec["batch_size"],
                spec["val_batch_size"],
                spec["data_seed"],
                spec["data_options"],
                spec["max_train"],
                spec["max_test"],
                validation=spec.get("validation"),
            )
        return _DATA_CACHE[key]


_DATA_CACHE: Dict[str, Any] = {}


@dataclass
class StudyConfig:
    """The settings of one notebook study (00, 06, 07, 08), as their factories give them
    (:func:`stllr.studies.quickstart.quickstart_config`,
    :func:`stllr.studies.factor_choices.sweep_settings`,
    :func:`stllr.studies.accuracy_vs_bptt.study_config`,
    :func:`stllr.studies.learning_signals.signal_config`).

    Parameters:
        full: the paper's setting (real SHD, 200 epochs) instead of the small default task.
        data: the dataset, its options and batch sizes (:class:`DataSpec`).
        task: one line naming the task, e.g. ``"randman (5 classes, T = 30)"``.
        num_classes: classes of the task (:attr:`chance` is ``100 / num_classes``).
        T: time steps per sample.
        arch: the S-TLLR model of the registry (:func:`stllr.models.build_model`).
        twin: its BPTT twin (None where the study trains none).
        psi: the secondary activation (None: the layers' default, rational).
        factors: ``[lambda_post, lambda_pre, alpha_post, alpha_pre]`` of the S-TLLR methods
            (notebook 07: the centre of its grid, Table 2's SHD row with alpha_post +1).
        window: learning steps, the last ``window`` of T carry a learning signal (1 <= window <= T).
        optimizer, lr, epochs: per run, as ``stllr train`` (epochs >= 1).
        methods: every :class:`Method` the study trains by default.
        groups: the methods by sweep (notebook 07: ``bp``, ``bp_rate``, ``dfa``, ``dfa_plain``,
            ``lambda_pre``, ``lambda_pre_fast``, ``psi``); empty elsewhere.
        options: what only one study needs (04: ``windows``, ``control_windows``, ``lr_grid``,
            ``validation``; 06: ``record_every``, ``model_options``; 03: ``dfa_options``,
            ``plain_dfa_alphas``, ``device``, ``sweep_epochs``, ``group_epochs``, ``leaks``).

    Raises a one-line ``ValueError`` naming the field for a ``window`` outside [1, T], an
    ``epochs`` below 1, a non-positive ``T`` or ``num_classes`` or malformed ``factors``.

    Example:
        >>> from stllr.studies import accuracy_vs_bptt
        >>> config = accuracy_vs_bptt.study_config()
        >>> config.data.dataset, config.T, config.window, config.chance
        ('randman', 30, 20, 20.0)
    """

    full: bool
    data: DataSpec
    task: str
    num_classes: int
    T: int
    arch: str
    twin: Optional[str]
    psi: Optional[str]
    factors: Factors
    window: int
    optimizer: str
    lr: float
    epochs: int
    methods: List[Method] = field(default_factory=list)
    groups: Dict[str, List[Method]] = field(default_factory=dict)
    options: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.data, DataSpec):
            raise TypeError(
                f"data: expected a stllr.studies.common.DataSpec, got {type(self.data).__name__}"
            )
        self.num_classes = check_positive_int(self.num_classes, "num_classes", allow_numpy=True)
        self.T = check_positive_int(self.T, "T", allow_numpy=True)
        w = self.window
        if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or not 1 <= w <= self.T:
            raise ValueError(f"window: expected an integer in [1, T={self.T}], got {w!r}")
        self.window = int(w)
        self.epochs = check_positive_int(self.epochs, "epochs", allow_numpy=True)
        self.factors = check_factors(self.factors)

    @property
    def chance(self) -> float:
        """Accuracy (%) of guessing: ``100 / num_classes``."""
        return 100.0 / self.num_classes


def randman_config(
    data_options: Mapping[str, Any],
    data_path=None,
    *,
    window: int,
    lr: float,
    epochs: int,
    **fields,
) -> StudyConfig:
    """A study on the procedural randman task (``full=False``, where every notebook starts):
    ``randman_rsnn_stllr`` / ``randman_rsnn_bptt`` with psi sigmoid, factors (0.5, 1, 1, 1), Adam,
    batch 32 (test 250); ``task``, ``num_classes`` and ``T`` follow from ``data_options``.

    Parameters:
        data_options: the randman options (:data:`RANDMAN_TASK`, :data:`SMALL_RANDMAN`).
        data_path: where the generated data are cached (default: ``stllr.data``'s).
        window, lr, epochs: the study's learning window, learning rate and epochs.
        fields: other :class:`StudyConfig` fields to set (``twin=None``, ``factors``, ``options``).

    Example:
        >>> randman_config(SMALL_RANDMAN, window=25, lr=5e-3, epochs=12).task
        'randman (5 classes, T = 30)'
    """
    T, num_classes = data_options["n_steps"], data_options["n_classes"]
    settings = dict(
        full=False,
        data=DataSpec(
            "randman",
            data_path=None if data_path is None else str(data_path),
            data_options=dict(data_options),
        ),
        task=f"randman ({num_classes} classes, T = {T})",
        num_classes=num_classes,
        T=T,
        arch="randman_rsnn_stllr",
        twin="randman_rsnn_bptt",
        psi="sigmoid",
        factors=(0.5, 1.0, 1.0, 1.0),
        window=window,
        optimizer="Adam",
        lr=lr,
        epochs=epochs,
    )
    settings.update(fields)
    return StudyConfig(**settings)


def small_task_config(data_path=None, epochs: Optional[int] = None, **fields) -> StudyConfig:
    """The one small-task setting of notebooks 00, 06, 07 and 08: :data:`SMALL_RANDMAN` (5
    classes, T = 30), ``randman_rsnn_stllr`` / ``randman_rsnn_bptt``, psi sigmoid, factors
    (0.5, 1, 1, 1), learning signal on the last :data:`SMALL_TASK_WINDOW` steps,
    :data:`SMALL_TASK_EPOCHS` epochs, Adam, batch 32, ``lr`` the S-TLLR (BP) rate of
    :data:`SMALL_TASK_LR` (each method of :func:`small_task_method` carries its own).

    Parameters:
        data_path: where the generated data are cached (default: ``stllr.data``'s).
        epochs: training epochs (default :data:`SMALL_TASK_EPOCHS`).
        fields: other :class:`StudyConfig` fields to set (``options``, ``methods``, ...).

    Example:
        >>> c = small_task_config()
        >>> c.task, c.window, c.epochs, c.lr
        ('randman (5 classes, T = 30)', 20, 12, 0.02)
    """
    return randman_config(
        SMALL_RANDMAN,
        data_path,
        window=SMALL_TASK_WINDOW,
        lr=SMALL_TASK_LR["bp"],
        epochs=SMALL_TASK_EPOCHS if epochs is None else int(epochs),
        **fields,
    )


def small_task_method(
    config: StudyConfig,
    kind: str,
    *,
    key: Optional[str] = None,
    label: Optional[str] = None,
    lr: Optional[float] = None,
    **changes,
) -> Method:
    """One method of :data:`SMALL_TASK_METHODS` for ``config`` (its arch or twin, factors, psi,
    window), with its learning rate of :data:`SMALL_TASK_LR`.

    Parameters:
        config: a study's settings (:func:`small_task_config`; a FULL config gives the paper's
            settings: no rate of its own, so the study's ``lr``, and plain DFA's options only).
        kind: ``bp``, ``bp_rate``, ``dfa_rate``, ``dfa``, ``bptt_window`` or ``bptt``.
        key, label: default ``kind`` and the label of :data:`SMALL_TASK_METHODS`.
        lr: another learning rate (default: :data:`SMALL_TASK_LR` on the small task, else None).
        changes: other :class:`Method` fields (``factors``, ``window``, ``psi``, ``options``,
            ``mode``: e.g. ``stllr_online`` for an S-TLLR kind).

    Example:
        >>> m = small_task_method(small_task_config(), "dfa_rate")
        >>> m.key, m.mode, m.feedback_mode, m.window, m.lr, m.options["rate_reg"]
        ('dfa_rate', 'stllr', 'dfa', 20, 0.01, 0.3)
    """
    if kind not in SMALL_TASK_METHODS:
        raise ValueError(f"kind: expected one of {sorted(SMALL_TASK_METHODS)}, got {kind!r}")
    name, net, mode, signal, options = SMALL_TASK_METHODS[kind]
    arch = config.arch if net == "stllr" else config.twin
    if arch is None:
        raise ValueError(f"kind: {kind!r} needs a BPTT twin, and this config has none")
    if lr is None and not config.full:
        lr = SMALL_TASK_LR[kind]
    fields = dict(
        factors=tuple(config.factors),
        window=config.window,
        psi=config.psi,
        feedback_mode=signal,
        options=dict(options),
    )
    fields.update(changes)
    fields.setdefault("mode", mode)
    return Method(key or kind, label or name, arch, lr=lr, **fields)


def paper_shd_config(data_path, epochs: Optional[int] = None, **changes) -> StudyConfig:
    """The paper's SHD setting, where every study's ``FULL=True`` starts (Table 3's SHD rows,
    ``docs/paper-results.md``): ``stllr_shd_net`` / ``bptt_shd_net`` on the real SHD under
    ``data_path`` (T = 100, 20 classes), learning signal on the last 90 steps (T_l = 10), factors
    (0.5, 1, 1, 1), psi the arch's default (rational), Adam lr 2e-4, batch 128, ``epochs``
    default 200, no methods yet.

    Parameters:
        data_path: the folder holding SHD (``python data_scripts/download.py shd --data-path DIR``).
        epochs: training epochs (default: the paper's 200).
        changes: fields of :class:`StudyConfig` to set otherwise (``dataclasses.replace``).

    Raises ``ValueError`` when ``data_path`` is not given (the dataset itself is looked for when
    the data are loaded).

    Example:
        >>> paper_shd_config("~/datasets", epochs=3).window  # doctest: +SKIP
        90
    """
    if not data_path:
        raise ValueError(
            "data_path: FULL=True trains on the real SHD dataset: set DATA_PATH to the folder "
            "holding it (python data_scripts/download.py shd --data-path DIR)"
        )
    config = StudyConfig(
        full=True,
        data=DataSpec("shd", data_path=str(data_path), batch_size=128, val_batch_size=128),
        task="SHD (20 classes, T = 100)",
        num_classes=20,
        T=100,
        arch="stllr_shd_net",
        twin="bptt_shd_net",
        psi=None,
        factors=(0.5, 1.0, 1.0, 1.0),
        window=90,
        optimizer="Adam",
        lr=2e-4,
        epochs=200 if epochs is None else int(epochs),
    )
    return dataclasses.replace(config, **changes) if changes else config
