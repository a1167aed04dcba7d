"""Jobs on a Dask distributed cluster: the engine behind ``stllr train --cluster`` and
:func:`stllr.studies.sweeps.run_trials` ``cluster=``.

A cluster is a Dask scheduler with workers (``dask scheduler`` and ``dask worker``, or
dask-jobqueue's ``SLURMCluster`` / ``PBSCluster`` on a batch system, or a
``distributed.LocalCluster``). :func:`connect` reaches it from its address (``"tcp://host:8786"``)
or takes a ``distributed.Client``; :func:`run_tasks` submits picklable jobs and yields each result
as it finishes. A task whose worker dies (killed, out of memory, a lost node) is rescheduled by
Dask on another worker, up to ``distributed.scheduler.allowed-failures`` times (default 3); a task
that keeps killing its workers is reported by one :class:`ClusterError` naming it, after every
other task has finished and been handed to the caller (nothing lost, nothing counted twice: one
result per job key).

``distributed`` is imported only here, only when a cluster is used (``pip install
'stllr[cluster]'``): ``import stllr`` and ``stllr train`` stay light."""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple

__all__ = [
    "CLUSTER_ENV",
    "ClusterError",
    "cluster_from_env",
    "resolve_cluster",
    "connect",
    "run_tasks",
]

#: the environment variable that names the default cluster (an address; empty: none)
CLUSTER_ENV = "STLLR_CLUSTER"


class ClusterError(RuntimeError):
    """A cluster could not be used or a job could not run on it (one-line message)."""


def cluster_from_env() -> Optional[str]:
    """The address in ``STLLR_CLUSTER`` (stripped), or None when it is unset or empty."""
    value = os.environ.get(CLUSTER_ENV, "").strip()
    return value or None


def resolve_cluster(cluster: Any, name: str = "cluster") -> Tuple[Any, str]:
    """``(cluster, the name its errors use)``: ``cluster`` itself when given (an address string
    or a ``distributed.Client``), else :func:`cluster_from_env` named ``STLLR_CLUSTER`` (None:
    no cluster).

    Parameters:
        cluster: None, an address such as ``"tcp://host:8786"``, or a ``distributed.Client``.
        name: how the caller calls the argument (``"cluster"``, ``"--cluster"``).
    """
    if cluster is None:
        return cluster_from_env(), CLUSTER_ENV
    if isinstance(cluster, str):
        if not cluster.strip():
            raise ValueError(
                f"{name}: expected a Dask scheduler address such as 'tcp://host:8786', got {cluster!r}"
            )
        return cluster.strip(), name
    if type(cluster).__name__ == "Client" and type(cluster).__module__.startswith("distributed"):
        return cluster, name
    raise ValueError(
        f"{name}: expected a Dask scheduler address ('tcp://host:8786') or a distributed.Client, "
        f"got {type(cluster).__name__}"
    )


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ClusterError(
            "cluster: Dask distributed is not installed: pip install 'stllr[cluster]'"
        ) from None
    return distributed


@contextlib.contextmanager
def connect(cluster: Any, *, name: str = "cluster", timeout: Optional[float] = None):
    """``with connect(address) as client: ...``: a ``distributed.Client`` of the scheduler at
    ``cluster`` (closed at the end), or ``cluster`` itself when it is a Client (left open).

    Parameters:
        cluster: an address (``"tcp://host:8786"``) or a ``distributed.Client``.
        name: the argument's name in the error messages (``cluster``, ``--cluster``,
            ``STLLR_CLUSTER``).
        timeout: seconds to wait for the scheduler (default: Dask's
            ``distributed.comm.timeouts.connect``, 30 s unless configured).

    Raises:
        ClusterError: distributed is not installed, or no scheduler answered in time.
    """
    distributed = _distributed()
    if isinstance(cluster, distributed.Client):
        yield cluster
        return
    if timeout is None:
        import dask.config
        from dask.utils import parse_timedelta

        timeout = parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), "s")
    try:
        client = distributed.Client(cluster, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        why = " ".join(str(e).split()) or type(e).__name__
        raise ClusterError(
            f"{name}: no Dask scheduler answered at {cluster!r} within {timeout:g} s ({why}); "
            f"start one (dask scheduler; dask worker ADDRESS --nthreads 1) or unset {CLUSTER_ENV} "
            "to run on this machine"
        ) from None
    try:
        yield client
    finally:
        client.close()


def _one_task_per_process(fn: Callable[..., Any], args: Tuple[Any, ...]) -> Any:
    """``fn(*args)`` on a worker that runs one task at a time (a run seeds torch's global
    generators and sets its threads: two in one process would change each other's numbers)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # not on a worker (e.g. run inline)
        worker = None
    n = int(getattr(getattr(worker, "state", None), "nthreads", 1) or 1)
    if n > 1:
        raise ClusterError(
            f"cluster: the worker {worker.address} runs {n} tasks at once; start workers with "
            "--nthreads 1 (several per machine: --nworkers N), since each run seeds torch's global "
            "generators"
        )
    return fn(*args)


def run_tasks(
    client,
    fn: Callable[..., Any],
    jobs: Mapping[str, Sequence[Any]],
    *,
    labels: Optional[Mapping[str, str]] = None,
) -> Iterator[Tuple[str, Any]]:
    """Run ``fn(*jobs[key])`` for every key as a task of ``client``'s cluster; yield ``(key,
    result)`` as each finishes (any order, each key once).

    Parameters:
        client: a ``distributed.Client`` (from :func:`connect`).
        fn: a picklable function (module level, importable by the workers, or cloudpickled).
        jobs: ``{key: arguments}``; the key names the job (unique).
        labels: ``{key: text}`` for the error message (default the key).

    A task whose worker died is rescheduled by Dask (``distributed.scheduler.allowed-failures``
    times); the tasks that still could not run raise one :class:`ClusterError` naming them, after
    every other task was yielded. An exception raised by ``fn`` itself cancels the tasks not yet
    finished and is raised as it is (the same as in a local process pool).
    """
    distributed = _distributed()
    from distributed.scheduler import KilledWorker

    labels = dict(labels or {})
    run = uuid.uuid4().hex[:8]  # task keys of this call only (no sharing with another run)
    futures: Dict[Any, str] = {}
    for key, args in jobs.items():
        fut = client.submit(_one_task_per_process, fn, tuple(args), key=f"stllr-{key}-{run}")
        futures[fut] = key
    seen = set()
    lost = []
    try:
        for fut in distributed.as_completed(list(futures), loop=client.loop):
            key = futures[fut]
            if key in seen:  # as_completed yields each future once; a key is never counted twice
                continue
            if fut.status == "error":
                exc = fut.exception()
                if isinstance(exc, KilledWorker):
                    lost.append((key, exc))
                    continue
                fut.result()  # raises fn's own exception with its traceback
            seen.add(key)
            result = fut.result()
            fut.release()  # its data leaves the worker: a worker lost later costs no rerun
            yield key, result
    finally:
        pending = [f for f in futures if not f.done()]
        if pending:
            client.cancel(pending)
        for f in futures:
            f.release()
    if lost:
        tries = getattr(lost[0][1], "allowed_failures", None)
        times = "" if tries is None else f" {int(tries) + 1} time" + "s" * (int(tries) > 0)
        names = ", ".join(labels.get(k, k) for k, _ in lost)
        raise ClusterError(
            f"cluster: {len(lost)} of {len(jobs)} task(s) could not run, a worker running each "
            f"died{times} (distributed.scheduler.allowed-failures): {names}; the other "
            f"{len(jobs) - len(lost)} finished"
        )
