"""The studies' trial runner: training runs (settings x trials), in this process or in parallel
worker processes, resumable.

Every notebook that trains (00, 06, 07, 08, 11, 12) trains through :func:`run_trials`: every setting (a
:class:`stllr.studies.common.Method`) with one or several seeds, each run by ``train`` (default
:func:`stllr.studies.common.train_method`, the code of ``stllr train``; notebook 06:
:func:`stllr.studies.learning_signals.train_recording`), one torch thread per run and one run per
worker process, so two cores train two networks at once; ``workers=0`` trains in this process and
keeps the trained models. Each run is a :class:`stllr.studies.common.RunResult`.

A trial's result does not depend on where it ran: trial ``k`` seeds the model and the batch order
with ``seed + k`` (or every trial's batch order with ``batch_seed``), the data are fixed by
``data.data_seed``, and every run uses one thread, so ``workers=2``, ``1`` and ``0`` give
bit-identical numbers (tested). With ``cache_dir`` each finished trial is written there at once
(JSON, atomic), and a rerun with the same settings loads it instead of training again: an
interrupted sweep resumes where it stopped.

On a Dask cluster (``cluster="tcp://host:8786"``, a ``distributed.Client``, or the environment
variable ``STLLR_CLUSTER``) every trial is one task on a worker (the same job function and the same
numbers); this process writes each finished trial to the cache as it arrives, so the workers need
no shared filesystem. See docs/experiments.md, "Sweeps and trials on a cluster".

Example::

    from stllr.studies import common, sweeps
    data = common.DataSpec("randman", data_options=common.SMALL_RANDMAN)
    methods = [common.Method("a0", "alpha_post 0", "randman_rsnn_stllr", "stllr",
                             (0.5, 1, 0, 1), 25, "sigmoid")]
    sweep = sweeps.run_trials(methods, data, trials=5, epochs=8, lr=2e-3)
    sweeps.summary_table(sweep)"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from stllr._checks import check_positive_int
from stllr._io import atomic_write_text
from stllr.analysis.metrics import mean_std
from stllr.studies.common import DataSpec, Method, RunResult, format_table, train_method
from stllr.training.cluster import connect, resolve_cluster, run_tasks

__all__ = [
    "Sweep",
    "run_trials",
    "default_workers",
    "summary_rows",
    "summary_table",
    "learning_curve",
]


class Sweep(dict):
    """``{method key: [RunResult of trial 0, 1, ...]}`` in the order the methods were given, plus
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
def _job(
    method: Method,
    data: DataSpec,
    trial: int,
    seed: int,
    batch_seed: Optional[int],
    epochs: int,
    lr: float,
    optimizer: str,
    device: str,
    threads: Optional[int],
    train: Callable[..., RunResult],
    train_options: Dict[str, Any],
) -> Dict[str, Any]:
    return {
        "method": method.to_json(),
        "data": data.as_dict(),
        "trial": trial,
        "seed": seed + trial,
        "batch_seed": seed + trial if batch_seed is None else batch_seed,
        "epochs": epochs,
        "lr": lr if method.lr is None else method.lr,
        "optimizer": optimizer,
        "device": str(device),
        "threads": threads,
        "train": f"{train.__module__}.{train.__qualname__}",
        "train_options": train_options,
    }


def _job_id(job: Dict[str, Any]) -> str:
    from stllr import __version__

    blob = json.dumps({**job, "version": __version__}, sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in job["method"]["key"])
    return f"{safe}-t{job['trial']}-{digest}"


def _run_job(
    job: Dict[str, Any], train: Callable[..., RunResult], method: Optional[Method] = None
) -> RunResult:
    """Train one trial with ``train`` (``method``: the job's Method object, else rebuilt from
    the job)."""
    method = Method.from_json(job["method"]) if method is None else method
    train_set, test_set, info = DataSpec(**job["data"]).load()
    info = dict(info, seed=job["batch_seed"])  # the trial's batch order
    run = train(
        method,
        train_set,
        test_set,
        info,
        epochs=job["epochs"],
        lr=job["lr"],
        optimizer=job["optimizer"],
        seed=job["seed"],
        device=job["device"],
        threads=job["threads"],
        **job["train_options"],
    )
    run.trial = job["trial"]
    return run


def _run_job_json(job: Dict[str, Any], train: Callable[..., RunResult]) -> Dict[str, Any]:
    """One trial as a worker process returns it (top level, so worker processes can run it):
    :meth:`RunResult.to_json`, no model."""
    return _run_job(job, train).to_json()


def _load_cached(path: Path) -> Optional[RunResult]:
    try:
        return RunResult.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def default_workers(device: str = "cpu") -> int:
    """The ``workers`` of :func:`run_trials` when none is given: ``STLLR_WORKERS`` (an integer
    >= 0) if that environment variable is set, else 1 on a GPU and 2 on CPU (capped by the cores).

    Example:
        >>> import os
        >>> from stllr.studies.sweeps import default_workers
        >>> default_workers("cuda") if "STLLR_WORKERS" not in os.environ else 1
        1
    """
    value = os.environ.get("STLLR_WORKERS", "").strip()
    if value:
        try:
            workers = int(value)
        except ValueError:
            workers = -1
        if workers < 0:
            raise ValueError(
                f"STLLR_WORKERS: expected an integer >= 0 (processes training at once), got {value!r}"
            )
        return workers
    return 1 if str(device).startswith("cuda") else max(1, min(2, os.cpu_count() or 1))


def run_trials(
    methods: Sequence[Method],
    data: DataSpec,
    *,
    trials: int = 5,
    epochs: int,
    lr: Optional[float] = None,
    optimizer: str = "Adam",
    seed: int = 0,
    workers: Optional[int] = None,
    device: str = "cpu",
    threads: Optional[int] = 1,
    batch_seed: Optional[int] = None,
    train: Callable[..., RunResult] = train_method,
    train_options: Optional[Mapping[str, Any]] = None,
    cache_dir=None,
    progress: bool = True,
    cluster=None,
) -> Sweep:
    """Train every method ``trials`` times (trial k: seed ``seed + k``) and return a :class:`Sweep`
    of ``{key: [RunResult of trial 0, 1, ...]}``.

    Args:
        methods: settings to compare; their ``key`` must be unique.
        data: the dataset (:class:`~stllr.studies.common.DataSpec`), the same for every run.
        trials, epochs, lr, optimizer: per run, as ``stllr train``; a method with its own ``lr``
            (:attr:`~stllr.studies.common.Method.lr`) trains with that one (``lr`` may then be
            None).
        workers: processes training at once (default: the environment variable
            ``STLLR_WORKERS`` if set, else 2 on CPU, capped by the cores, and 1 on a GPU; ``make
            test`` sets ``STLLR_WORKERS=1`` because its parts already run side by side).
            ``1`` trains in this process, ``0`` too and keeps each run's trained ``model`` and
            its Method object (else ``model`` is None and ``method`` a copy, as from a worker).
        threads: torch threads per run (1: the numbers do not depend on ``workers``).
        batch_seed: the batch order of every trial (default None: trial k shuffles with
            ``seed + k``).
        train: one run, called as ``train(method, train_set, test_set, info, epochs=, lr=,
            optimizer=, seed=, device=, threads=, **train_options)`` with ``info['seed']`` the
            batch order; returns a :class:`~stllr.studies.common.RunResult`. Default
            :func:`~stllr.studies.common.train_method`; with ``workers > 1`` a module-level
            function (worker processes import it).
        train_options: further keyword arguments of ``train`` (JSON data: part of the cache key).
        cache_dir: folder for finished trials (created); a rerun with identical settings loads them.
        progress: a progress bar over all runs (stderr).
        cluster: a Dask scheduler address (``"tcp://host:8786"``) or a ``distributed.Client``:
            every trial runs as a task on its workers (``workers`` is then not used, except 0);
            default None: the environment variable ``STLLR_CLUSTER`` if set and not empty, else
            this machine. ``workers=0`` (keep the models) always trains in this process, even with
            ``STLLR_CLUSTER`` set; with an explicit ``cluster`` it is an error. A trial whose
            worker dies is rerun on another worker (Dask's
            ``distributed.scheduler.allowed-failures``); trials that keep killing their workers
            raise one error naming them, after every other trial was cached.

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
            f"data: expected a stllr.studies.common.DataSpec, got {type(data).__name__}"
        )
    trials = check_positive_int(trials, "trials", allow_numpy=True)
    epochs = check_positive_int(epochs, "epochs", minimum=0, allow_numpy=True)
    if lr is None:
        without = [m.key for m in methods if m.lr is None]
        if without:
            raise ValueError(
                f"lr: expected a positive number (methods {without} have no lr of their own), "
                "got None"
            )
    elif isinstance(lr, bool) or not (
        isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0
    ):
        raise ValueError(f"lr: expected a positive number, got {lr!r}")
    if workers is not None:
        workers = check_positive_int(workers, "workers", minimum=0, allow_numpy=True)
    if cluster is not None and workers == 0:
        raise ValueError(
            "workers: 0 keeps the models in this process, so it cannot run on a cluster; "
            "pass cluster=None (or workers=None)"
        )
    cluster, cluster_name = (None, "") if workers == 0 else resolve_cluster(cluster)
    if workers is None:
        workers = default_workers(device)
    train_options = dict(train_options or {})

    pairs = [(m, t) for m in methods for t in range(trials)]
    jobs = [
        _job(
            m,
            data,
            t,
            seed,
            batch_seed,
            epochs,
            None if lr is None else float(lr),
            optimizer,
            device,
            threads,
            train,
            train_options,
        )
        for m, t in pairs
    ]
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    results: List[Optional[RunResult]] = [None] * len(jobs)
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

    def finished(i, result: RunResult):
        results[i] = result
        if cache is not None:
            atomic_write_text(
                cache / f"{_job_id(jobs[i])}.json",
                json.dumps(result.to_json()),
                open_permissions=True,
            )
        if bar is not None:
            bar.update(1)

    try:
        if cluster is not None and todo:
            with connect(cluster, name=cluster_name) as client:
                ids = {_job_id(jobs[i]): i for i in todo}
                labels = {j: f"{pairs[i][0].key} trial {pairs[i][1]}" for j, i in ids.items()}
                tasks = {j: (jobs[i], train) for j, i in ids.items()}
                for j, result in run_tasks(client, _run_job_json, tasks, labels=labels):
                    finished(ids[j], RunResult.from_json(result))
        elif workers == 0:
            for i in todo:
                finished(i, _run_job(jobs[i], train, pairs[i][0]))
        elif workers == 1 or len(todo) <= 1:
            for i in todo:
                finished(i, RunResult.from_json(_run_job_json(jobs[i], train)))
        else:
            ctx = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
            with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx) as pool:
                futures = {pool.submit(_run_job_json, jobs[i], train): i for i in todo}
                try:
                    from concurrent.futures import as_completed

                    for fut in as_completed(futures):
                        finished(futures[fut], RunResult.from_json(fut.result()))
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
        sweep[r.method.key].append(r)
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
    paper_notes: Optional[Mapping[str, str]] = None,
) -> str:
    """A text table of :func:`summary_rows`; ``paper``: ``{key: (mean, std)}`` or ``{key: mean}``
    printed in an extra column (``-`` where absent); ``paper_notes``: ``{key: note}``: that key's
    published number is marked ``*`` and the note printed under the table (e.g.
    :data:`stllr.studies.paper.PAPER_SHD_BPTT_NOTE`)."""
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
            if p is not None and paper_notes and r["key"] in paper_notes:
                row["paper"] += " *"
        table.append(row)
    if paper is not None:
        columns.append(("paper", paper_title, ""))
    text = format_table(table, columns)
    notes = [n for k, n in (paper_notes or {}).items() if paper and k in paper and k in sweep]
    return "\n".join([text] + notes)


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
