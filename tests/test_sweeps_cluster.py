"""Sweeps and ``stllr train`` on a Dask cluster (stllr.training.cluster): a local cluster of 2 worker
processes on localhost gives the local runner's numbers bit for bit, through a Client, an address
or STLLR_CLUSTER, with the same cache (written here, resumed without the cluster); a worker killed
mid-trial reruns that trial on another worker and its result enters the sweep once; a trial that
always kills its worker is named in one error after the other trials were cached; bad addresses,
a missing distributed and workers=0 get one-line errors; distributed is imported only when used."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stllr.studies import common as E
from stllr.studies import sweeps
from stllr.training import cluster as C

distributed = pytest.importorskip("distributed")
import dask  # noqa: E402  (installed with distributed)

if str(Path(__file__).parent) not in sys.path:  # pytest puts tests/ there; workers copy sys.path
    sys.path.insert(0, str(Path(__file__).parent))
import _cluster_jobs  # noqa: E402  (the workers import it by name)
from test_sweeps import _methods, tiny_data  # noqa: E402  (the same tiny sweep as the local tests)
from test_sweeps import _numbers as run_numbers  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

RUN = dict(trials=2, epochs=2, lr=2e-3, progress=False)
UNREACHABLE = "tcp://127.0.0.1:9"  # the discard port: nothing listens


def _numbers(sweep):
    """Every run's JSON without the wall-clock times, per method in order."""
    return {key: [run_numbers(r) for r in runs] for key, runs in sweep.items()}


@pytest.fixture(scope="module")
def client():
    """A local cluster: 2 worker processes of one thread each (their nannies set
    OMP_NUM_THREADS=1), a task given up after its second worker death, one task per worker at a
    time (no queued task shares the fate of a dying worker)."""
    settings = {
        "distributed.scheduler.allowed-failures": 1,
        "distributed.scheduler.worker-saturation": 1.0,
    }
    with dask.config.set(settings):
        with distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,
        ) as cluster:
            with distributed.Client(cluster, set_as_default=False) as client:
                yield client


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def serial(data):
    return sweeps.run_trials(_methods(), data, workers=1, **RUN)


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("STLLR_CLUSTER", raising=False)


def test_a_local_cluster_gives_the_local_runners_numbers(
    client, data, serial, tmp_path, monkeypatch, no_env
):
    on_cluster = sweeps.run_trials(_methods(), data, cluster=client, **RUN)
    assert _numbers(on_cluster) == _numbers(serial)
    assert [r.trial for r in on_cluster["bptt"]] == [0, 1] and list(on_cluster) == ["a0", "bptt"]
    assert all(r.model is None for v in on_cluster.values() for r in v)
    # through the address in STLLR_CLUSTER, with the cache written here as trials finish
    monkeypatch.setenv("STLLR_CLUSTER", client.scheduler.address)
    cached = sweeps.run_trials(_methods()[:1], data, cache_dir=tmp_path, **RUN)
    assert _numbers(cached) == {"a0": _numbers(serial)["a0"]}
    assert len(list(tmp_path.glob("a0-t*.json"))) == 2
    # a rerun resumes from the cache without a cluster to reach
    monkeypatch.setenv("STLLR_CLUSTER", UNREACHABLE)
    again = sweeps.run_trials(_methods()[:1], data, cache_dir=tmp_path, **RUN)
    assert _numbers(again) == _numbers(cached)


def _writes(monkeypatch):
    """Count the cache writes of run_trials per file name."""
    counts = {}
    write = sweeps.atomic_write_text

    def counting(path, text, **kw):
        counts[Path(path).name] = counts.get(Path(path).name, 0) + 1
        return write(path, text, **kw)

    monkeypatch.setattr(sweeps, "atomic_write_text", counting)
    return counts


def test_a_worker_killed_mid_trial_reruns_the_trial_once_in_another_process(
    client, data, serial, tmp_path, monkeypatch, no_env
):
    markers = tmp_path / "markers"
    markers.mkdir()
    writes = _writes(monkeypatch)
    sweep = sweeps.run_trials(
        _methods()[:1],
        data,
        cluster=client.scheduler.address,
        train=_cluster_jobs.train_or_die,
        train_options={"marker_dir": str(markers), "die": [["a0", 1, "once"]]},
        cache_dir=tmp_path / "cache",
        **RUN,
    )
    attempts = sorted(p.name for p in markers.iterdir())
    # trial 1 (seed 1) killed its worker on its first attempt and finished on its second
    assert {"a0-s1-attempt1", "a0-s1-attempt2", "a0-s1-done2"} <= set(attempts)
    assert "a0-s1-done1" not in attempts and "a0-s0-done1" in attempts
    pid = {n: (markers / n).read_text() for n in ("a0-s1-attempt1", "a0-s1-attempt2")}
    assert pid["a0-s1-attempt1"] != pid["a0-s1-attempt2"]  # the first process is gone
    # the sweep is the local runner's, each trial once, each result written to the cache once
    assert _numbers(sweep) == {"a0": _numbers(serial)["a0"]}
    assert sorted(writes.values()) == [1, 1] and len(writes) == 2
    assert len(list((tmp_path / "cache").glob("*.json"))) == 2


def test_a_trial_that_always_kills_its_worker_is_named_after_the_others_are_cached(
    client, data, serial, tmp_path, no_env
):
    markers = tmp_path / "markers"
    markers.mkdir()
    cache = tmp_path / "cache"
    with pytest.raises(C.ClusterError) as err:
        sweeps.run_trials(
            _methods()[:1],
            data,
            cluster=client,
            train=_cluster_jobs.train_or_die,
            train_options={"marker_dir": str(markers), "die": [["a0", 1, "always"]]},
            cache_dir=cache,
            **RUN,
        )
    message = str(err.value)
    assert "\n" not in message and "1 of 2 task(s) could not run" in message
    assert message.endswith(": a0 trial 1; the other 1 finished") and "died 2 times" in message
    assert sorted(p.name for p in markers.glob("a0-s1-*")) == ["a0-s1-attempt1", "a0-s1-attempt2"]
    (saved,) = cache.glob("*.json")  # trial 0 was cached, trial 1 was not
    assert saved.name.startswith("a0-t0-")
    run = E.RunResult.from_json(json.loads(saved.read_text()))
    assert _numbers({"a0": [run]})["a0"] == _numbers(serial)["a0"][:1]


def test_an_exception_of_the_train_function_is_raised_as_it_is(client, data, tmp_path, no_env):
    with pytest.raises(FileNotFoundError, match="no-such-folder"):
        sweeps.run_trials(
            _methods()[:1],
            data,
            cluster=client,
            train=_cluster_jobs.train_or_die,
            train_options={"marker_dir": str(tmp_path / "no-such-folder"), "die": []},
            **RUN,
        )


def test_one_line_errors(data, monkeypatch, no_env):
    args = dict(trials=1, epochs=1, lr=1e-3, progress=False)
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(C.ClusterError) as err:
            sweeps.run_trials(_methods()[:1], data, cluster=UNREACHABLE, **args)
        assert re.match(
            rf"^cluster: no Dask scheduler answered at '{UNREACHABLE}' within 1 s", str(err.value)
        )
        monkeypatch.setenv("STLLR_CLUSTER", UNREACHABLE)
        with pytest.raises(C.ClusterError, match=r"^STLLR_CLUSTER: no Dask scheduler answered"):
            sweeps.run_trials(_methods()[:1], data, **args)
    assert "\n" not in str(err.value) and "unset STLLR_CLUSTER" in str(err.value)
    # workers=0 keeps the models here: it trains in this process even with STLLR_CLUSTER set ...
    here = sweeps.run_trials(_methods()[:1], data, workers=0, **args)
    assert here["a0"][0].model is not None
    # ... and refuses an explicit cluster
    with pytest.raises(ValueError, match=r"^workers: 0 keeps the models in this process"):
        sweeps.run_trials(_methods()[:1], data, workers=0, cluster=UNREACHABLE, **args)
    for bad, match in (("", "cluster: expected a Dask scheduler address"), (8786, "got int")):
        with pytest.raises(ValueError, match=match):
            sweeps.run_trials(_methods()[:1], data, cluster=bad, **args)
    monkeypatch.setenv("STLLR_CLUSTER", "  ")  # empty: this machine
    assert C.resolve_cluster(None) == (None, "STLLR_CLUSTER")
    monkeypatch.setitem(sys.modules, "distributed", None)  # not installed
    with pytest.raises(
        C.ClusterError,
        match=r"^cluster: Dask distributed is not installed: pip install 'stllr\[cluster\]'$",
    ):
        sweeps.run_trials(_methods()[:1], data, cluster=UNREACHABLE, **args)


def test_a_worker_running_two_tasks_at_once_is_refused(monkeypatch):
    class Worker:
        address = "tcp://10.0.0.1:4000"
        state = type("State", (), {"nthreads": 2})()

    monkeypatch.setattr(distributed, "get_worker", lambda: Worker())
    with pytest.raises(
        C.ClusterError,
        match=r"tcp://10.0.0.1:4000 runs 2 tasks at once; start workers with --nthreads 1",
    ):
        C._one_task_per_process(len, ([1],))
    Worker.state.nthreads = 1
    assert C._one_task_per_process(len, ([1, 2],)) == 2


def test_distributed_is_imported_only_when_a_cluster_is_used():
    code = (
        "import sys, stllr.studies.sweeps, stllr.cli, stllr.training.run\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------------- the CLI
RANDMAN = ["-o", "n_train_per_class=4", "-o", "n_test_per_class=2", "-o", "n_steps=12"]


def _train(tmp_path, name, *extra):
    from stllr.cli import main

    argv = ["train", "--arch", "randman_rsnn_stllr", "--dataset", "randman", "--no-progress"]
    argv += ["--data-path", str(tmp_path / "data"), "--save-path", str(tmp_path / name)]
    argv += ["--trials", "2", "--epochs", "1", "--batch-size", "8", "--lr", "0.01", *RANDMAN]
    return main(argv + list(extra))


def _metrics(save):
    results = json.loads((save / "results.json").read_text())
    keys = ("epoch", "train_acc", "train_loss", "test_acc", "test_loss", "lr")
    return [
        (t["trial"], t["seed"], [tuple(e[k] for k in keys) for e in t["epochs"]])
        for t in results["trials"]
    ], results


def test_stllr_train_cluster_equals_the_local_run_and_resumes(client, tmp_path, capsys, no_env):
    assert _train(tmp_path, "local") == 0
    assert _train(tmp_path, "cluster", "--cluster", client.scheduler.address) == 0
    local, _ = _metrics(tmp_path / "local")
    remote, results = _metrics(tmp_path / "cluster")
    assert remote == local and [t[0] for t in remote] == [1, 2]
    assert results["summary"]["trials_done"] == 2 and results["config"]["cluster"]
    assert (
        results["num_parameters"]
        == json.loads((tmp_path / "local" / "results.json").read_text())["num_parameters"]
    )
    names = sorted(p.name for p in (tmp_path / "cluster").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "local").iterdir())  # the same files
    log = (tmp_path / "cluster" / "log.log").read_text()
    assert "trial 2 epoch 1/1" in log and "on a Dask worker" in log and "final test accuracy" in log
    # --resume: finished trials are not sent again (no cluster is reached)
    capsys.readouterr()
    assert _train(tmp_path, "cluster", "--resume", "--cluster", UNREACHABLE) == 0
    assert _metrics(tmp_path / "cluster")[0] == local
    assert "trial 2: already trained for 1 epochs" in capsys.readouterr().err


def test_stllr_train_cluster_errors(tmp_path, capsys, monkeypatch, no_env):
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        assert _train(tmp_path, "x", "--cluster", UNREACHABLE) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith(
            f"stllr train: error: --cluster: no Dask scheduler answered at '{UNREACHABLE}'"
        )
        monkeypatch.setenv("STLLR_CLUSTER", UNREACHABLE)
        assert _train(tmp_path, "x") == 2
        assert "error: STLLR_CLUSTER: no Dask scheduler" in capsys.readouterr().err
    assert _train(tmp_path, "x", "--cluster", "") == 2
    assert "error: --cluster: expected a Dask scheduler address" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert _train(tmp_path, "x", "--cluster", UNREACHABLE) == 2
    assert "not under torchrun (WORLD_SIZE=2)" in capsys.readouterr().err
