"""Small training and comparison helpers for the notebooks: train an S-TLLR model and its BPTT
twin side by side, measure what each keeps for the backward pass, and recompute the paper's
memory and MAC comparisons (Section 4.3, Eq. 18-23; Fig. 3; Table 3) from real layer shapes.

Everything here is deterministic for a given seed and thread count (accuracies, saved bytes,
MACs); only the ``*_time`` / ``seconds`` fields are wall-clock measurements.

Two groups:

- training (notebook 00): :func:`quickstart_config`, :func:`make_loaders`, :func:`train_method`,
  :func:`compare_methods`, :func:`training_memory`, :func:`results_table`, :func:`timing_table`;
- memory and compute (notebook 05): :class:`Fig3MLP`, :func:`memory_vs_T`, :func:`macs_vs_window`,
  :func:`table3_recomputed`, :func:`time_per_step`, :data:`PAPER_TABLE3`.

``threads``: small spiking models run fastest, and with steady timings, on one thread (every small
op's thread barrier waits for a descheduled thread on a shared CPU), so the helpers default to
``threads=1`` for their own work and restore the caller's setting afterwards. ``None`` leaves the
thread count alone.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from . import measure as M
from .models import build_model, get_model_spec
from .train import make_optimizer, run_epoch, seed_everything

__all__ = [
    "RANDMAN_TASK", "PAPER_SHD_ACCURACY", "PAPER_TABLE3", "FIG3_DIMS", "FIG3_TS", "Method", "RunResult",
    "num_threads", "quickstart_config", "make_loaders", "train_method", "compare_methods",
    "training_memory", "results_table", "epoch_table", "timing_table", "loaders_for", "format_table",
    "Fig3MLP", "fig3_models", "memory_vs_T", "macs_vs_window", "paper_mac_points",
    "table3_recomputed", "time_per_step",
]

#: The procedural spike-timing task of ``benchmarks/accuracy.py`` (randman options): 10 classes,
#: 100 input units each firing once in T = 50 steps with a timing jitter of 2 steps,
#: 1000 training / 500 test samples; only the joint spike timing tells the class.
RANDMAN_TASK = {"n_classes": 10, "n_units": 100, "n_steps": 50, "n_train_per_class": 100, "n_test_per_class": 50,
                "manifold_dim": 2, "alpha": 2.0, "jitter": 2.0, "seed": 0}

#: Paper Table 3, SHD (LIF-RSNN, T = 100, 200 epochs): test accuracy %, mean and std over 5 trials.
PAPER_SHD_ACCURACY = {"bptt": (70.57, 0.96), "stllr": (78.24, 1.84), "stllr_dfa": (74.60, 0.52)}

#: Paper Table 3 (arXiv 2306.15220v4), VGG-9 and LIF-RSNN rows. ``T_l``: first step with a learning
#: signal (window = T - T_l); MACs x1e9 and memory MB for batch size 1 as printed.
PAPER_TABLE3 = [
    dict(dataset="DVS CIFAR10", method="BPTT", T=10, T_l=None, alpha_post=None, acc=75.44, mac_e9=6.82, mem_mb=18.12),
    dict(dataset="DVS CIFAR10", method="S-TLLR", T=10, T_l=5, alpha_post=-1.0, acc=73.93, mac_e9=5.12, mem_mb=3.62),
    dict(dataset="DVS CIFAR10", method="S-TLLR", T=10, T_l=0, alpha_post=-1.0, acc=75.6, mac_e9=10.26, mem_mb=3.62),
    dict(dataset="DVS CIFAR10", method="S-TLLR", T=10, T_l=0, alpha_post=0.0, acc=74.8, mac_e9=6.82, mem_mb=3.62),
    dict(dataset="DVS Gesture", method="BPTT", T=20, T_l=None, alpha_post=None, acc=95.58, mac_e9=6.06, mem_mb=16.13),
    dict(dataset="DVS Gesture", method="S-TLLR", T=20, T_l=15, alpha_post=-1.0, acc=97.72, mac_e9=2.27, mem_mb=1.61),
    dict(dataset="N-CALTECH101", method="BPTT", T=10, T_l=None, alpha_post=None, acc=65.92, mac_e9=22.81, mem_mb=20.15),
    dict(dataset="N-CALTECH101", method="S-TLLR", T=10, T_l=5, alpha_post=-1.0, acc=66.058, mac_e9=17.22, mem_mb=4.03),
    dict(dataset="SHD", method="BPTT", T=100, T_l=None, alpha_post=None, acc=70.57, mac_e9=0.054, mem_mb=0.961),
    dict(dataset="SHD", method="S-TLLR (BP)", T=100, T_l=10, alpha_post=1.0, acc=78.24, mac_e9=0.096, mem_mb=0.019),
    dict(dataset="SHD", method="S-TLLR (DFA)", T=100, T_l=10, alpha_post=1.0, acc=74.60, mac_e9=0.096, mem_mb=0.019),
]

#: Registered S-TLLR model and the stated input shape of each Table 3 dataset (None: not registered).
TABLE3_MODELS = {
    "DVS CIFAR10": ("dvscifar10_vgg_stllr", (2, 48, 48)),
    "DVS Gesture": ("dvs_vgg_stllr", (2, 32, 32)),
    "N-CALTECH101": None,
    "SHD": ("stllr_shd_net", (700,)),
}

#: Paper Fig. 3: MLP 1000-1000-1000-1000-1 (input 1000, three spiking hidden layers, one output).
FIG3_DIMS = (1000, 1000, 1000, 1000, 1)
FIG3_TS = (10, 25, 50, 100, 200, 300)


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
    mode: str  # "stllr" or "bptt"
    factors: Sequence[float] = (0.5, 1.0, 1.0, 1.0)
    delay_ls: int = 45
    psi: Optional[str] = None
    feedback_mode: str = "bp"
    #: extra keyword arguments of :func:`stllr.models.build_model`, e.g. ``{"rate_reg": 0.3}``
    options: Dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    """What :func:`train_method` returns: per-epoch metrics (epoch 0 = before training, test only)."""

    method: Method
    history: List[Dict[str, Any]]
    model: nn.Module = field(repr=False)
    num_parameters: int = 0

    @property
    def final(self) -> Dict[str, Any]:
        return self.history[-1]

    @property
    def best_test_acc(self) -> float:
        return max(h["test_acc"] for h in self.history[1:]) if len(self.history) > 1 else self.history[0]["test_acc"]

    def series(self, key: str) -> List[float]:
        return [h[key] for h in self.history if h.get(key) is not None]


def quickstart_config(full: bool = False, epochs: Optional[int] = None, data_path=None) -> Dict[str, Any]:
    """The settings of notebook 00.

    ``full=False``: the procedural randman task (:data:`RANDMAN_TASK`, T = 50) with
    ``randman_rsnn_stllr`` / ``randman_rsnn_bptt`` and the settings of ``benchmarks/accuracy.py``
    (Adam lr 2e-3, batch 32, psi = surrogate = sigmoid, S-TLLR factors 0.5 1 1 1, learning signal on
    the last 45 of 50 steps), ``epochs`` default 8.
    ``full=True``: the paper's SHD setting (Table 3; docs/experiments.md): ``stllr_shd_net`` /
    ``bptt_shd_net`` on real SHD from ``data_path`` (T = 100), Adam lr 2e-4, batch 128, factors
    0.5 1 1 1, learning signal on the last 90 of 100 steps, psi rational (the reference default),
    200 epochs.
    """
    if full:
        if not data_path:
            raise ValueError("FULL=True trains on the real SHD dataset: set DATA_PATH to the folder holding it "
                             "(python data_scripts/download.py shd --data-path DIR)")
        cfg = dict(dataset="shd", data_path=data_path, data_options={}, epochs=200 if epochs is None else epochs,
                   optimizer="Adam", lr=2e-4, batch_size=128, val_batch_size=128, T=100,
                   methods=[Method("stllr", "S-TLLR", "stllr_shd_net", "stllr", (0.5, 1.0, 1.0, 1.0), 90, None),
                            Method("bptt", "BPTT", "bptt_shd_net", "bptt", (0.5, 1.0, 1.0, 1.0), 90, None)])
    else:
        cfg = dict(dataset="randman", data_path=data_path, data_options=dict(RANDMAN_TASK),
                   epochs=8 if epochs is None else epochs, optimizer="Adam", lr=2e-3, batch_size=32,
                   val_batch_size=250, T=RANDMAN_TASK["n_steps"],
                   methods=[Method("stllr", "S-TLLR", "randman_rsnn_stllr", "stllr", (0.5, 1.0, 1.0, 1.0), 45,
                                   "sigmoid"),
                            Method("bptt", "BPTT", "randman_rsnn_bptt", "bptt", (0.5, 1.0, 1.0, 1.0), 45,
                                   "sigmoid")])
    cfg["full"] = bool(full)
    return cfg


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


def make_loaders(dataset: str, data_path=None, batch_size: int = 32, val_batch_size: int = 250, seed: int = 0,
                 data_options: Optional[Dict[str, Any]] = None, max_train: Optional[int] = None,
                 max_test: Optional[int] = None):
    """``(train_set, test_set, info)`` of :func:`stllr.data.get_dataset` (``max_train`` /
    ``max_test``: a fixed random subset). Loaders come from :func:`loaders_for` so that every method
    sees the same batches in the same order."""
    from . import data as sdata

    options = dict(data_options or {})
    train_set = _subset(sdata.get_dataset(dataset, data_path, True, **options), max_train, seed)
    test_set = _subset(sdata.get_dataset(dataset, data_path, False, **options), max_test, seed + 1)
    info = {"dataset": dataset, "num_classes": int(test_set.num_classes),
            "input_shape": tuple(int(s) for s in test_set.input_shape), "T": getattr(test_set, "T", None),
            "n_train": len(train_set), "n_test": len(test_set), "batch_size": batch_size,
            "val_batch_size": val_batch_size, "seed": seed}
    return train_set, test_set, info


def loaders_for(train_set, test_set, info: Dict[str, Any]):
    """Fresh DataLoaders with a shuffling generator seeded from ``info['seed']``."""
    from .data import pad_collate

    g = torch.Generator()
    g.manual_seed(int(info["seed"]))
    train = torch.utils.data.DataLoader(train_set, batch_size=info["batch_size"], shuffle=True, generator=g,
                                        collate_fn=pad_collate)
    test = torch.utils.data.DataLoader(test_set, batch_size=info["val_batch_size"], shuffle=False,
                                       collate_fn=pad_collate)
    return train, test


def _build(method: Method, info: Dict[str, Any]) -> nn.Module:
    spec = get_model_spec(method.arch)
    kw = dict(num_classes=info["num_classes"], input_shape=info["input_shape"], psi=method.psi)
    if spec.is_stllr:
        kw.update(factors=list(method.factors), feedback_mode=method.feedback_mode)
    kw.update(method.options)
    return build_model(method.arch, **kw)


def train_method(method: Method, train_set, test_set, info: Dict[str, Any], *, epochs: int, lr: float,
                 optimizer: str = "Adam", seed: int = 0, device="cpu", threads: Optional[int] = 1,
                 progress: bool = False) -> RunResult:
    """Train ``method`` for ``epochs`` epochs (stllr.train.run_epoch, the same code as ``stllr
    train``) and evaluate on the test set after each epoch (and once before training, epoch 0).

    Seeds python/numpy/torch with ``seed`` before building the model; the loaders are rebuilt with
    the data seed, so every method sees the same batches. History entries: epoch, train_acc,
    train_loss, test_acc, test_loss (%, mean CE of the logits summed over T), train_time,
    test_time (s).
    """
    device = torch.device(device)
    with num_threads(threads):
        seed_everything(seed)
        model = _build(method, info).to(device)
        opt = make_optimizer(optimizer, model.parameters(), lr)
        train_loader, test_loader = loaders_for(train_set, test_set, info)
        te = run_epoch(model, test_loader, optimizer=None, loss_fn=F.cross_entropy, device=device)
        history = [{"epoch": 0, "train_acc": None, "train_loss": None, "test_acc": te["acc"],
                    "test_loss": te["loss"], "train_time": None, "test_time": te["time"]}]
        for epoch in range(1, epochs + 1):
            tr = run_epoch(model, train_loader, optimizer=opt, loss_fn=F.cross_entropy, mode=method.mode,
                           delay_ls=method.delay_ls, device=device, progress=progress,
                           desc=f"{method.label} epoch {epoch}")
            te = run_epoch(model, test_loader, optimizer=None, loss_fn=F.cross_entropy, device=device)
            history.append({"epoch": epoch, "train_acc": tr["acc"], "train_loss": tr["loss"], "test_acc": te["acc"],
                            "test_loss": te["loss"], "train_time": tr["time"], "test_time": te["time"]})
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return RunResult(method, history, model, n_params)


def compare_methods(config: Dict[str, Any], *, seed: int = 0, device="cpu", threads: Optional[int] = 1,
                    max_train: Optional[int] = None, max_test: Optional[int] = None,
                    progress: bool = False, data=None) -> Tuple[Dict[str, RunResult], Dict[str, Any]]:
    """Train every method of ``config`` (:func:`quickstart_config`) with the same seed and batches.
    ``data``: ``(train_set, test_set, info)`` of :func:`make_loaders` (loaded here if None).
    Returns ``({key: RunResult}, data info)``."""
    if data is None:
        data = make_loaders(config["dataset"], config["data_path"], config["batch_size"],
                            config["val_batch_size"], seed, config["data_options"], max_train, max_test)
    train_set, test_set, info = data
    info = dict(info)
    runs = {}
    for method in config["methods"]:
        runs[method.key] = train_method(method, train_set, test_set, info, epochs=config["epochs"],
                                        lr=config["lr"], optimizer=config["optimizer"], seed=seed, device=device,
                                        threads=threads, progress=progress)
    info["train_set"], info["test_set"] = train_set, test_set
    return runs, info


def training_memory(runs: Dict[str, RunResult], info: Dict[str, Any], *, batch_size: Optional[int] = None,
                    threads: Optional[int] = 1) -> Dict[str, Dict[str, Any]]:
    """Bytes saved for backward during ONE training sequence of each trained model, measured with
    :class:`stllr.measure.SavedTensorTracker` on the first training batch (peak, activations only),
    beside the paper's Eq. 18-19 for the same model shapes and T.

    Per method: ``saved_bytes`` (the batch), ``saved_bytes_per_sample``, ``analytic_bytes_per_sample``
    (float32), ``state_bytes`` (layer states, both methods), ``T``, ``batch_size``, plus
    ``memory_ratio`` / ``memory_ratio_analytic`` (BPTT / S-TLLR) under the key ``"ratio"``.
    """
    from .data import pad_collate

    bs = min(batch_size or info["batch_size"], len(info["train_set"]))
    frames, labels = pad_collate([info["train_set"][i] for i in range(bs)])
    device = next(next(iter(runs.values())).model.parameters()).device
    x = frames.transpose(0, 1).contiguous().to(device, dtype=torch.float32)
    y = labels.to(device, dtype=torch.int64)
    T = int(x.shape[0])
    out: Dict[str, Dict[str, Any]] = {}
    with num_threads(threads):
        for key, run in runs.items():
            model, m = run.model, run.method
            was_training = model.training
            model.train()
            d = min(int(m.delay_ls), T)
            meas = M.measure_sequence(model, x, y, mode=m.mode, delay_ls=d if m.mode == "stllr" else None,
                                      macs=False)
            model.zero_grad(set_to_none=True)
            model.reset_state()
            model.train(was_training)
            ana = M.analytic_costs(model, T, d, batch_size=1)
            analytic = ana["stllr_memory_bytes"] if m.mode == "stllr" else ana["bptt_memory_bytes"]
            out[key] = {"label": m.label, "mode": m.mode, "T": T, "delay_ls": d, "batch_size": bs,
                        "saved_bytes": meas.saved.peak_activation_bytes,
                        "saved_bytes_per_sample": meas.saved.peak_activation_bytes / bs,
                        "saved_bytes_all": meas.saved.peak_bytes,
                        "analytic_bytes_per_sample": analytic, "state_bytes": meas.state["total"],
                        "sum_neurons": ana["sum_neurons"]}
    s = next((v for v in out.values() if v["mode"] == "stllr"), None)
    b = next((v for v in out.values() if v["mode"] == "bptt"), None)
    if s and b:
        out["ratio"] = {"memory_ratio": b["saved_bytes"] / s["saved_bytes"],
                        "memory_ratio_analytic": b["analytic_bytes_per_sample"] / s["analytic_bytes_per_sample"],
                        "T": T}
    return out


def results_table(runs: Dict[str, RunResult], memory: Optional[Dict[str, Dict[str, Any]]] = None,
                  paper: Optional[Dict[str, Tuple[float, float]]] = None) -> str:
    """Accuracy and memory side by side (deterministic numbers only; times: :func:`timing_table`)."""
    rows = []
    for key, run in runs.items():
        r = {"method": run.method.label, "params": run.num_parameters, "train": run.final["train_acc"],
             "test": run.final["test_acc"], "best": run.best_test_acc}
        if memory and key in memory:
            r["saved_kb"] = memory[key]["saved_bytes_per_sample"] / 1e3
            r["analytic_kb"] = memory[key]["analytic_bytes_per_sample"] / 1e3
        if paper and key in paper:
            r["paper"] = f"{paper[key][0]:.2f} +- {paper[key][1]:.2f}"
        rows.append(r)
    cols = [("method", "method", ""), ("params", "params", "d"), ("train", "train acc %", ".2f"),
            ("test", "test acc %", ".2f"), ("best", "best test %", ".2f")]
    if memory:
        cols += [("saved_kb", "saved kB/sample (measured)", ".1f"), ("analytic_kb", "Eq.18-19 kB/sample", ".1f")]
    if paper:
        cols += [("paper", "paper SHD test %", "")]
    return format_table(rows, cols)


def epoch_table(runs: Dict[str, RunResult], every: int = 1) -> str:
    """Train and test accuracy (%) of every method per epoch (every ``every``-th epoch and the last)."""
    keys = list(runs)
    n = len(next(iter(runs.values())).history)
    rows = []
    for i in range(n):
        if i % every and i != n - 1:
            continue
        r = {"epoch": runs[keys[0]].history[i]["epoch"]}
        for k in keys:
            h = runs[k].history[i]
            r[f"{k}_train"], r[f"{k}_test"] = h["train_acc"], h["test_acc"]
        rows.append(r)
    cols = [("epoch", "epoch", "d")]
    for k in keys:
        lab = runs[k].method.label
        cols += [(f"{k}_train", f"{lab} train %", ".2f"), (f"{k}_test", f"{lab} test %", ".2f")]
    return format_table(rows, cols)


def timing_table(runs: Dict[str, RunResult]) -> str:
    """Mean training and test time per epoch (wall clock, noisy on a shared machine)."""
    rows = []
    for run in runs.values():
        tr = run.series("train_time")
        te = [h["test_time"] for h in run.history[1:]]
        rows.append({"method": run.method.label, "train": sum(tr) / max(len(tr), 1),
                     "test": sum(te) / max(len(te), 1), "total": sum(tr) + sum(te)})
    return format_table(rows, [("method", "method", ""), ("train", "train s/epoch", ".2f"),
                               ("test", "test s/epoch", ".2f"), ("total", "total s", ".1f")])


# ======================================================================================
# Memory and compute (notebook 05)
# ======================================================================================
class Fig3MLP(nn.Module):
    """The paper's Fig. 3 network, one step per ``forward``: ``dims`` = (input, hidden..., output);
    S-TLLR: LinearSTLLR hidden layers (factors [0.2, 0.75, -1, 1], the reference CLI default) and a
    LeakyReadout; BPTT: the twins LinearLIF + LeakyIntegrator (same initial weights when built by
    :func:`fig3_models`)."""

    def __init__(self, stllr_rule: bool, dims: Sequence[int] = FIG3_DIMS, factors=(0.2, 0.75, -1.0, 1.0)):
        super().__init__()
        from .bptt import LeakyIntegrator, LinearLIF
        from .layers import LeakyReadout, LinearSTLLR

        self.is_stllr = bool(stllr_rule)
        self.input_shape = (int(dims[0]),)
        layers = []
        for a, b in zip(dims[:-2], dims[1:-1]):
            layers.append(LinearSTLLR(a, b, factors=list(factors)) if stllr_rule else LinearLIF(a, b))
        a, b = dims[-2], dims[-1]
        layers.append(LeakyReadout(a, b, factors=[0.0, 0.99, 0.0, 1.0]) if stllr_rule else LeakyIntegrator(a, b))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)

    def reset_state(self):
        from .utils import reset_states

        reset_states(self)


def _mse_to_zero(out, target):
    return ((out - target) ** 2).mean()


def fig3_models(dims: Sequence[int] = FIG3_DIMS, device="cpu", seed: int = 0):
    """(S-TLLR MLP, BPTT MLP) of Fig. 3 with the same initial weights."""
    torch.manual_seed(seed)
    s = Fig3MLP(True, dims).to(device)
    b = Fig3MLP(False, dims).to(device)
    b.load_state_dict(s.state_dict(), strict=False)
    return s, b


def memory_vs_T(Ts: Iterable[int] = FIG3_TS, batch_size: int = 8, device="cpu", dims: Sequence[int] = FIG3_DIMS,
                delay_ls: int = 1, seed: int = 0, peak: Optional[bool] = None,
                threads: Optional[int] = 1) -> List[Dict[str, Any]]:
    """Paper Fig. 3: one training sequence per T of the S-TLLR MLP (learning signal on the last
    ``delay_ls`` steps, loss at the last step) and of its BPTT twin (graph through all T, loss on the
    last step's output, mean squared output as in ``benchmarks/bench_memory.py``).

    Rows: T, ``stllr_saved_bytes`` / ``bptt_saved_bytes`` (measured peak saved activations),
    ``*_saved_bytes_all`` (with weight-sized tensors), ``stllr_analytic`` / ``bptt_analytic``
    (Eq. 18-19 x batch x 4 B), ``memory_ratio`` (measured), ``memory_ratio_analytic`` (T/2), and with
    ``peak`` (default: on CUDA only) ``stllr_peak_bytes`` / ``bptt_peak_bytes`` =
    ``torch.cuda.max_memory_allocated`` increase during the sequence (exact on GPU; approximate RSS on CPU).
    """
    device = torch.device(device)
    if peak is None:
        peak = device.type == "cuda"
    rows = []
    with num_threads(threads):
        s_model, b_model = fig3_models(dims, device, seed)
        shapes = M.model_shapes(s_model)
        target = torch.zeros(batch_size, dims[-1], device=device)
        inputs = M._random_inputs((dims[0],), batch_size, seed, torch.float32, device)
        for T in Ts:
            ana = M.analytic_costs(shapes, int(T), min(delay_ls, int(T)), -1.0, batch_size, 4)
            row = {"T": int(T), "batch_size": batch_size, "stllr_analytic": ana["stllr_memory_bytes"],
                   "bptt_analytic": ana["bptt_memory_bytes"], "memory_ratio_analytic": ana["memory_ratio"]}
            for name, model, mode in (("stllr", s_model, "stllr"), ("bptt", b_model, "bptt")):
                m = M.measure_sequence(model, inputs, target, steps=int(T), mode=mode,
                                       delay_ls=min(delay_ls, int(T)), loss_fn=_mse_to_zero, bptt_loss="last",
                                       macs=False, peak=peak)
                model.reset_state()
                model.zero_grad(set_to_none=True)
                row[f"{name}_saved_bytes"] = m.saved.peak_activation_bytes
                row[f"{name}_saved_bytes_all"] = m.saved.peak_bytes
                if peak:
                    row[f"{name}_peak_bytes"] = m.peak.increase_bytes
                    row["peak_method"] = m.peak.method
            row["memory_ratio"] = row["bptt_saved_bytes"] / row["stllr_saved_bytes"]
            rows.append(row)
    return rows


def macs_vs_window(arch: str = "stllr_shd_net", T: int = 100, windows: Sequence[int] = (1, 5, 10, 25, 50, 75, 90, 100),
                   batch_size: int = 4, factors=(0.5, 1.0, 1.0, 1.0), seed: int = 0,
                   threads: Optional[int] = 1) -> Dict[str, Any]:
    """MACs of one training sequence against the learning window ``d = T - T_l`` (Eq. 20-23),
    counted by :class:`stllr.measure.MacCounter` on a registered S-TLLR model and its BPTT twin, beside
    the analytic counts. Also the same with ``alpha_post = 0`` (2 instead of 3 in Eq. 21).

    Returns ``{"shapes": ModelShapes, "bptt": {...}, "rows": [...]}``; each row (one window, per
    batch of ``batch_size``): ``stllr_macs`` (all executed), ``stllr_paper_terms`` (window forward +
    weight gradients: what Eq. 21 counts), ``stllr_pre_window`` (forward of the steps before the
    window), ``stllr_grad_input``, ``stllr_analytic``, the same ``*_a0`` for alpha_post = 0, and the
    ratios ``mac_ratio_analytic`` (2T/3d), ``mac_ratio_paper_terms`` and ``mac_ratio`` (all MACs).
    """
    spec = get_model_spec(arch)
    with num_threads(threads):
        torch.manual_seed(seed)
        s_model = build_model(arch, factors=list(factors))
        f0 = list(factors)
        f0[2] = 0.0
        s0_model = build_model(arch, factors=f0)
        b_model = build_model(spec.twin)
        shapes = M.model_shapes(s_model)
        inputs = M._random_inputs(shapes.input_shape, batch_size, seed, torch.float32, torch.device("cpu"))
        g = torch.Generator().manual_seed(seed)
        target = torch.randint(0, shapes.num_classes, (batch_size,), generator=g)
        mb = M.measure_sequence(b_model, inputs, target, steps=T, mode="bptt", saved=False)
        bk = mb.macs.by_kind()
        bptt = {"macs": mb.macs.total(), "paper_terms": bk["forward"] + bk["grad_weight"],
                "grad_input": bk["grad_input"], "analytic": M.paper_macs(shapes.weight_macs, T, "bptt") * batch_size}
        rows = []
        for d in windows:
            d = int(d)
            row = {"T": T, "window": d, "T_l": T - d, "batch_size": batch_size}
            for suffix, model, a_post in (("", s_model, float(factors[2])), ("_a0", s0_model, 0.0)):
                ms = M.measure_sequence(model, inputs, target, steps=T, mode="stllr", delay_ls=d, saved=False)
                c = ms.macs
                row[f"stllr_macs{suffix}"] = c.total()
                row[f"stllr_paper_terms{suffix}"] = c.total("window", "forward") + c.total("window", "grad_weight")
                row[f"stllr_pre_window{suffix}"] = c.total("pre_window")
                row[f"stllr_grad_input{suffix}"] = c.total(kind="grad_input")
                row[f"stllr_analytic{suffix}"] = M.paper_macs(shapes.weight_macs, T, "stllr", d, a_post) * batch_size
            row["mac_ratio_analytic"] = M.paper_mac_ratio(T, d, float(factors[2]))
            row["mac_ratio_analytic_a0"] = M.paper_mac_ratio(T, d, 0.0)
            row["mac_ratio_paper_terms"] = bptt["paper_terms"] / row["stllr_paper_terms"]
            row["mac_ratio"] = bptt["macs"] / row["stllr_macs"]
            rows.append(row)
    return {"arch": arch, "shapes": shapes, "T": T, "batch_size": batch_size, "bptt": bptt, "rows": rows}


def _paper_pairs():
    """(S-TLLR row, its dataset's BPTT row) of Table 3."""
    bptt = {r["dataset"]: r for r in PAPER_TABLE3 if r["method"] == "BPTT"}
    return [(r, bptt[r["dataset"]]) for r in PAPER_TABLE3 if r["method"] != "BPTT"]


def paper_mac_points() -> List[Dict[str, Any]]:
    """Table 3's published MAC ratios (BPTT / S-TLLR) with their T, window and alpha_post."""
    out = []
    for s, b in _paper_pairs():
        d = s["T"] - s["T_l"]
        out.append({"dataset": s["dataset"], "method": s["method"], "T": s["T"], "window": d,
                    "alpha_post": s["alpha_post"], "ratio": b["mac_e9"] / s["mac_e9"],
                    "formula": M.paper_mac_ratio(s["T"], d, s["alpha_post"])})
    return out


def table3_recomputed(half_resolution: bool = True) -> List[Dict[str, Any]]:
    """Table 3 recomputed from the registered models' layer shapes (:func:`stllr.measure.model_shapes`
    + :func:`stllr.measure.analytic_costs`, batch 1) beside the published numbers.

    One row per Table 3 row: ``mem_ratio`` / ``mac_ratio`` (ours, Eq. 22-23 on the model) and
    ``paper_mem_ratio`` / ``paper_mac_ratio`` (BPTT row / this row, from the printed MB and MACs);
    ``macs_e9`` (ours at the stated input resolution), ``macs_e9_half`` (VGG at half the stated
    height and width, see docs/measurement.md), ``paper_mac_e9``; ``values_e6`` (Eq. 18-19 stored
    values, ours at the stated resolution) and ``paper_mem_mb``. N-CALTECH101 has no registered
    model: its ratios come from the formulas alone (they do not depend on the model).
    """
    shapes_cache: Dict[Tuple[str, tuple], Any] = {}

    def shapes_of(arch, shape):
        key = (arch, shape)
        if key not in shapes_cache:
            torch.manual_seed(0)
            shapes_cache[key] = M.model_shapes(build_model(arch, input_shape=shape))
        return shapes_cache[key]

    bptt_rows = {r["dataset"]: r for r in PAPER_TABLE3 if r["method"] == "BPTT"}
    rows = []
    for r in PAPER_TABLE3:
        T = r["T"]
        is_bptt = r["method"] == "BPTT"
        d = T if is_bptt else T - r["T_l"]
        a_post = -1.0 if r["alpha_post"] is None else r["alpha_post"]
        b = bptt_rows[r["dataset"]]
        row = {"dataset": r["dataset"], "method": r["method"], "T": T, "window": None if is_bptt else d,
               "alpha_post": r["alpha_post"], "paper_acc": r["acc"], "paper_mac_e9": r["mac_e9"],
               "paper_mem_mb": r["mem_mb"],
               "paper_mem_ratio": None if is_bptt else b["mem_mb"] / r["mem_mb"],
               "paper_mac_ratio": None if is_bptt else b["mac_e9"] / r["mac_e9"],
               "mem_ratio": None if is_bptt else M.paper_memory_ratio(T),
               "mac_ratio": None if is_bptt else M.paper_mac_ratio(T, d, a_post),
               "model": None, "input_shape": None}
        entry = TABLE3_MODELS.get(r["dataset"])
        if entry is not None:
            arch, shape = entry
            sh = shapes_of(arch, shape)
            ana = M.analytic_costs(sh, T, d, a_post, 1, 4)
            key = "bptt" if is_bptt else "stllr"
            row.update(model=arch, input_shape=shape, macs_e9=ana[f"{key}_macs"] / 1e9,
                       values_e6=ana[f"{key}_memory_values"] / 1e6, sum_neurons=sh.sum_neurons)
            if not is_bptt:
                row["mem_ratio"], row["mac_ratio"] = ana["memory_ratio"], ana["mac_ratio"]
            if half_resolution and len(shape) == 3:
                half = (shape[0], shape[1] // 2, shape[2] // 2)
                sh2 = shapes_of(arch, half)
                ana2 = M.analytic_costs(sh2, T, d, a_post, 1, 4)
                row["macs_e9_half"] = ana2[f"{key}_macs"] / 1e9
                row["values_e6_half"] = ana2[f"{key}_memory_values"] / 1e6
                row["half_shape"] = half
        rows.append(row)
    return rows


def time_per_step(cases: Sequence[Tuple[str, nn.Module, str, int, int, int]], repeats: int = 3,
                  threads: Optional[int] = 1, seed: int = 0) -> List[Dict[str, Any]]:
    """Wall-clock training time per time step (best of ``repeats`` sequences, no measuring hooks).

    ``cases``: (label, model, mode, T, delay_ls, batch_size). Rows: label, mode, T, window, batch,
    ``seconds`` (one sequence), ``ms_per_step``.
    """
    rows = []
    with num_threads(threads):
        for label, model, mode, T, d, bs in cases:
            shapes = M.model_shapes(model)
            p = next(model.parameters())
            inputs = M._random_inputs(shapes.input_shape, bs, seed, p.dtype, p.device)
            g = torch.Generator().manual_seed(seed)
            target = torch.randint(0, max(shapes.num_classes, 2), (bs,), generator=g).to(p.device)
            loss = None
            if shapes.num_classes == 1:
                target = torch.zeros(bs, 1, device=p.device)
                loss = _mse_to_zero
            best = math.inf
            for _ in range(repeats):
                m = M.measure_sequence(model, inputs, target, steps=T, mode=mode, delay_ls=d if mode == "stllr" else None,
                                       loss_fn=loss, bptt_loss="last" if loss is not None else "sum",
                                       saved=False, macs=False)
                best = min(best, m.seconds)
            model.zero_grad(set_to_none=True)
            model.reset_state()
            rows.append({"label": label, "mode": mode, "T": T, "window": d if mode == "stllr" else T, "batch": bs,
                         "seconds": best, "ms_per_step": 1e3 * best / T})
    return rows
