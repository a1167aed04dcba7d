"""Helpers of tests/test_sweeps_cluster.py that Dask workers import (a module of its own: the
workers get the test process's sys.path, and importing it costs no pytest collection): a ``train``
of :func:`stllr.studies.sweeps.run_trials` that kills its own worker process."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from stllr.studies.common import train_method


def _unlink_tqdm_lock():
    """Unlink the named semaphore of tqdm's multiprocessing lock (a progress bar of an earlier
    run in this worker made it), which a SIGKILL would leave to the resource tracker (a warning
    at the end of the tests)."""
    from multiprocessing.synchronize import SemLock

    from tqdm.std import TqdmDefaultWriteLock

    lock = getattr(TqdmDefaultWriteLock, "mp_lock", None)
    name = getattr(getattr(lock, "_semlock", None), "name", None)
    if name:
        SemLock._cleanup(name)


def train_or_die(method, train_set, test_set, info, *, marker_dir, die, **kw):
    """:func:`stllr.studies.common.train_method`, after writing the file ``KEY-sSEED-attemptN``
    (attempt N of this trial) into ``marker_dir``; then, for a trial ``[key, seed, when]`` in
    ``die``, the worker process kills itself with SIGKILL (``when``: ``"once"``, the first attempt
    only; ``"always"``). A finished run writes ``KEY-sSEED-doneN``."""
    folder = Path(marker_dir)
    stem = f"{method.key}-s{kw['seed']}"
    attempt = 1 + len(list(folder.glob(f"{stem}-attempt*")))
    (folder / f"{stem}-attempt{attempt}").write_text(str(os.getpid()))
    for key, seed, when in die:
        if key == method.key and seed == kw["seed"] and (when == "always" or attempt == 1):
            _unlink_tqdm_lock()
            os.kill(os.getpid(), signal.SIGKILL)
    run = train_method(method, train_set, test_set, info, **kw)
    (folder / f"{stem}-done{attempt}").write_text(str(os.getpid()))
    return run
