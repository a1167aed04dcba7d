"""Many short training runs (settings x trials), in parallel worker processes, resumable.

Notebooks 03 (factor choices) and 04 (accuracy vs BPTT) train the same small network dozens of
times: every setting (a :class:`stllr.studies.common.Method`) with several seeds. :func:`run_trials`
runs them with :func:`stllr.studies.common.train_method` (the code of ``stllr train``), one torch
thread per run and one run per worker process, so two cores train two networks at once.

A trial's result does not depend on where it ran: trial ``k`` seeds the model and the batch order
with ``seed + k``, the data are fixed by ``data.data_seed``, and every run uses one thread, so
``workers=2`` and ``workers=1`` give bit-identical numbers (tested). With ``cache_dir`` each
finished trial is written there at once (JSON, atomic), and a rerun with the same settings loads it
instead of training again: an interrupted sweep resumes where it stopped.

Example::

    from stllr.studies import common, sweeps
    data = sweeps.DataSpec("randman", data_options=common.SMALL_RANDMAN)
    methods = [common.Method("a0", "alpha_post 0", "randman_rsnn_stllr", "stllr",
                             (0.5, 1, 0, 1), 25, "sigmoid")]
    sweep = sweeps.run_trials(methods, data, trials=5, epochs=8, lr=2e-3)
    sweeps.summary_table(sweep)"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from stllr._checks import check_positive_int
from stllr._io import atomic_write_text
from stllr.analysis.metrics import mean_std
from stllr.studies.common import Method, format_table, make_loaders, train_method

__all__ = [
    "DataSpec",
    "TrialResult",
    "Sweep",
    "run_trials",
    "summary_rows",
    "summary_table",
    "learning_curve",
]


@dataclass(frozen=True)
class DataSpec:
    """Where a sweep's data come from (arguments of :func:`stllr.studies.common.make_loaders`).

    ``data_seed`` fixes the data (the random subsets of ``max_train`` / ``max_test``); each trial
    shuffles batches with its own seed.
    """

    dataset: str
    data_path: Optional[str] = None
    data_options: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int = 32
    val_batch_size: int = 250
    max_train: Optional[int] = None
    max_test: Optional[int] = None
    data_seed: int = 0

    def as_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["data_options"] = dict(self.data_options)
        d["data_path"] = None if self.data_path is None else str(self.data_path)
        return d


@dataclass
class TrialResult:
    """One trained run: ``history`` as :class:`stllr.studies.common.RunResult` (epoch 0 = before training)."""

    key: str
    label: str
    trial: int
    seed: int
    history: List[Dict[str, Any]]
    num_parameters: int = 0

    @property
    def final_test_acc(self) -> float:
        return float(self.history[-1]["test_acc"])

    @property
    def best_test_acc(self) -> float:
        return (
            float(max(h["test_acc"] for h in self.history[1:]))
            if len(self.history) > 1
            else float(self.history[0]["test_acc"])
        )

    def to_json(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


class Sweep(dict):
    """``{method key: [TrialResult of trial 0, 1, ...]}`` in the order the methods were given, plus
    ``labels`` (key -> label) and ``settings`` (what was run)."""

    def __init__(
        self,
        *args,
        labels: Optional[Dict[str, str]] = None,
        settings: Optional[Dict[str, Any]] = None,
    ):
        super().__init__(*args)
        self.labels = dict(labels or {})
        self.settings = dict(settings or {})

    def subset(self, keys: Sequence[str]) -> "Sweep":
        """The part of this sweep that holds ``keys`` (in that order), e.g. for one table or plot."""
        missing = [k for k in keys if k not in self]
        if missing:
            raise KeyError(f"keys: not in this sweep: {missing}; it holds {list(self)}")
        return Sweep(
            {k: self[k] for k in keys},
            labels={k: self.labels.get(k, k) for k in keys},
            settings=self.settings,
        )

    def accuracies(self, key: str, metric: str = "final") -> np.ndarray:
        """Test accuracies (%) of ``key``'s trials: ``metric`` 'final' (last epoch) or 'best'."""
        if metric not in ("final", "best"):
            raise ValueError(f"metric: expected 'final' or 'best', got {metric!r}")
        return np.array(
            [r.final_test_acc if metric == "final" else r.best_test_acc for r in self[key]]
        )


# ----------------------------------------------------------------------------------- running
def _method_dict(method: Method) -> Dict[str, Any]:
    d = dataclasses.asdict(method)
    d["factors"] = [float(f) for f in method.factors]
    return d


def _job(
    method: Method,
    data: DataSpec,
    trial: int,
    seed: int,
    epochs: int,
    lr: float,
    optimizer: str,
    device: str,
) -> Dict[str, Any]:
    return {
        "method": _method_dict(method),
        "data": data.as_dict(),
        "trial": trial,
        "seed": seed + trial,
        "epochs": epochs,
        "lr": lr,
        "optimizer": optimizer,
        "device": str(device),
    }


def _job_id(job: Dict[str, Any]) -> str:
    from stllr import __version__

    blob = json.dumps({**job, "version": __version__}, sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in job["method"]["key"])
    return f"{safe}-t{job['trial']}-{digest}"


_DATA_CACHE: Dict[str, Any] = {}


def _data_for(spec: Dict[str, Any]):
    key = json.dumps(spec, sort_keys=True, default=str)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # one dataset per process is enough
        _DATA_CACHE[key] = make_loaders(
            spec["dataset"],
            spec["data_path"],
            spec["batch_size"],
            spec["val_batch_size"],
            spec["data_seed"],
            spec["data_options"],
            spec["max_train"],
            spec["max_test"],
        )
    return _DATA_CACHE[key]


def _run_job(job: Dict[str, Any]) -> Dict[str, Any]:
    """Train one trial (top level, so worker processes can run it)."""
    m = dict(job["method"])
    method = Method(**{**m, "factors": tuple(m["factors"])})
    train_set, test_set, info = _data_for(job["data"])
    info = dict(info, seed=job["seed"])  # the trial's batch order
    run = train_method(
        method,
        train_set,
        test_set,
        info,
        epochs=job["epochs"],
        lr=job["lr"],
        optimizer=job["optimizer"],
        seed=job["seed"],
        device=job["device"],
        threads=1,
    )
    return TrialResult(
        method.key, method.label, job["trial"], job["seed"], run.history, run.num_parameters
    ).to_json()


def _load_cached(path: Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_trials(
    methods: Sequence[Method],
    data: DataSpec,
    *,
    trials: int = 5,
    epochs: int,
    lr: float,
    optimizer: str = "Adam",
    seed: int = 0,
    workers: Optional[int] = None,
    device: str = "cpu",
    cache_dir=None,
    progress: bool = True,
) -> Sweep:
    """Train every method ``trials`` times (trial k: seed ``seed + k``) and return a :class:`Sweep`.

    Args:
        methods: settings to compare; their ``key`` must be unique.
        data: the dataset (:class:`DataSpec`), the same for every run.
        trials, epochs, lr, optimizer: per run, as ``stllr train``.
        workers: processes training at once (default: 2 on CPU, capped by the cores; 1 on a GPU).
            ``1`` trains in this process. Every run uses one torch thread, so the numbers do not
            depend on ``workers``.
        cache_dir: folder for finished trials (created); a rerun with identical settings loads them.
        progress: a progress bar over all runs (stderr).

    With ``workers > 1`` the runs go to spawned processes: in a script, call this under
    ``if __name__ == "__main__":`` (Python's rule for spawned workers; notebooks need nothing).
    """
    methods = list(methods)
    if not methods:
        raise ValueError("methods: expected at least one stllr.studies.common.Method, got none")
    for m in methods:
        if not isinstance(m, Method):
            raise TypeError(
                f"methods: expected stllr.studies.common.Method objects, got {type(m).__name__}"
            )
    keys = [m.key for m in methods]
    if len(set(keys)) != len(keys):
        raise ValueError(f"methods: keys must be unique, got {keys}")
    if not isinstance(data, DataSpec):
        raise TypeError(
            f"data: expected a stllr.studies.sweeps.DataSpec, got {type(data).__name__}"
        )
    trials = check_positive_int(trials, "trials", allow_numpy=True)
    epochs = check_positive_int(epochs, "epochs", minimum=0, allow_numpy=True)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr: expected a positive number, got {lr!r}")
    if workers is None:
        workers = 1 if str(device).startswith("cuda") else max(1, min(2, os.cpu_count() or 1))
    workers = check_positive_int(workers, "workers", allow_numpy=True)

    jobs = [
        _job(m, data, t, seed, epochs, float(lr), optimizer, device)
        for m in methods
        for t in range(trials)
    ]
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    results: List[Optional[Dict[str, Any]]] = [None] * len(jobs)
    todo = []
    for i, job in enumerate(jobs):
        cached = _load_cached(cache / f"{_job_id(job)}.json") if cache is not None else None
        if cached is not None:
            results[i] = cached
        else:
            todo.append(i)

    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="trials", file=sys.stderr)

    def finished(i, result):
        results[i] = result
        if cache is not None:
            atomic_write_text(
                cache / f"{_job_id(jobs[i])}.json", json.dumps(result), open_permissions=True
            )
        if bar is not None:
            bar.update(1)

    try:
        if workers == 1 or len(todo) <= 1:
            for i in todo:
                finished(i, _run_job(jobs[i]))
        else:
            ctx = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
            with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx) as pool:
                futures = {pool.submit(_run_job, jobs[i]): i for i in todo}
                try:
                    from concurrent.futures import as_completed

                    for fut in as_completed(futures):
                        finished(futures[fut], fut.result())
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    finally:
        if bar is not None:
            bar.close()

    sweep = Sweep(
        labels={m.key: m.label for m in methods},
        settings={
            "data": data.as_dict(),
            "trials": trials,
            "epochs": epochs,
            "lr": lr,
            "optimizer": optimizer,
            "seed": seed,
            "device": str(device),
        },
    )
    for m in methods:
        sweep[m.key] = []
    for r in results:
        sweep[r["key"]].append(TrialResult(**r))
    return sweep


# ----------------------------------------------------------------------------------- summaries
def summary_rows(sweep: Sweep, metric: str = "final") -> List[Dict[str, Any]]:
    """Per method: ``key, label, n, mean, std, min, max`` of the test accuracy (%) over trials;
    ``std`` is the sample standard deviation (ddof = 1; 0 for a single trial)."""
    rows = []
    for key in sweep:
        acc = sweep.accuracies(key, metric)
        mean, std = mean_std(acc, exact=False)
        rows.append(
            {
                "key": key,
                "label": sweep.labels.get(key, key),
                "n": len(acc),
                "mean": mean,
                "std": std,
                "min": float(acc.min()),
                "max": float(acc.max()),
            }
        )
    return rows


def summary_table(
    sweep: Sweep,
    metric: str = "final",
    paper: Optional[Mapping[str, Any]] = None,
    paper_title: str = "paper",
) -> str:
    """A text table of :func:`summary_rows`; ``paper``: ``{key: (mean, std)}`` or ``{key: mean}``
    printed in an extra column (``-`` where absent)."""
    rows = summary_rows(sweep, metric)
    columns = [
        ("label", "setting", ""),
        ("n", "trials", "d"),
        ("acc", f"test acc % ({metric})", ""),
        ("range", "min - max", ""),
    ]
    table = []
    for r in rows:
        row = {
            "label": r["label"],
            "n": r["n"],
            "acc": f"{r['mean']:.2f} +- {r['std']:.2f}",
            "range": f"{r['min']:.1f} - {r['max']:.1f}",
        }
        if paper is not None:
            p = paper.get(r["key"])
            row["paper"] = (
                "-"
                if p is None
                else (f"{p[0]:.2f} +- {p[1]:.2f}" if isinstance(p, (tuple, list)) else f"{p:.2f}")
            )
        table.append(row)
    if paper is not None:
        columns.append(("paper", paper_title, ""))
    return format_table(table, columns)


def learning_curve(sweep: Sweep, key: str, series: str = "test_acc") -> Dict[str, np.ndarray]:
    """Mean and std over trials of ``series`` per epoch: ``{"epoch", "mean", "std", "values" [trials, epochs]}``.
    Epoch 0 (before training) has no ``train_*`` values and is left out for those."""
    runs = sweep[key]
    epochs = [h["epoch"] for h in runs[0].history if h.get(series) is not None]
    values = np.array(
        [[h[series] for h in r.history if h.get(series) is not None] for r in runs], dtype=float
    )
    return {
        "epoch": np.array(epochs),
        "mean": values.mean(0),
        "std": values.std(0, ddof=1) if len(runs) > 1 else np.zeros(values.shape[1]),
        "values": values,
    }
