"""stllr.studies.sweeps: trials run in worker processes equal trials run here (with or without the
models kept), the cache resumes, another ``train`` and a fixed batch order reach every run, results
round-trip through JSON, summaries are the textbook statistics."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
import torch

from stllr._checks import check_positive_int
from stllr._io import OPEN_FILE_MODE
from stllr.studies import common as E
from stllr.studies import sweeps

TINY = dict(
    E.SMALL_RANDMAN,
    n_classes=3,
    n_steps=12,
    n_units=40,
    n_train_per_class=16,
    n_test_per_class=8,
)


def _methods():
    return [
        E.Method(
            "a0", "alpha_post 0", "randman_rsnn_stllr", "stllr", (0.5, 1.0, 0.0, 1.0), 6, "sigmoid"
        ),
        E.Method(
            "bptt",
            "BPTT",
            "randman_rsnn_bptt",
            "bptt",
            (0.5, 1.0, 1.0, 1.0),
            6,
            "sigmoid",
            options={"hidden": 24},
        ),
    ]


def tiny_data(folder) -> E.DataSpec:
    """The tiny randman task of these tests (also tests/test_sweeps_cluster.py's), cached in folder."""
    return E.DataSpec(
        "randman", data_path=str(folder), data_options=TINY, batch_size=8, val_batch_size=24
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("data"))


def _acc(sweep):
    return {
        k: [[(h["test_acc"], h["train_loss"]) for h in r.history] for r in v]
        for k, v in sweep.items()
    }


def _numbers(run):
    """A run's JSON without the wall-clock times."""
    d = run.to_json()
    d["history"] = [{k: v for k, v in h.items() if not k.endswith("_time")} for h in d["history"]]
    del d["seconds"]
    return d


@pytest.fixture(scope="module")
def serial(data):
    return sweeps.run_trials(
        _methods(), data, trials=2, epochs=2, lr=2e-3, workers=1, progress=False
    )


def test_workers_do_not_change_the_numbers(data, serial):
    parallel = sweeps.run_trials(
        _methods(), data, trials=2, epochs=2, lr=2e-3, workers=2, progress=False
    )
    assert _acc(parallel) == _acc(serial)
    assert list(parallel) == ["a0", "bptt"] and [r.trial for r in parallel["a0"]] == [0, 1]
    assert [r.seed for r in parallel["a0"]] == [0, 1]
    assert all(r.model is None for v in parallel.values() for r in v)
    assert all(r.model is None for v in serial.values() for r in v)


def test_in_process_keeps_models_and_methods(data, serial):
    methods = _methods()
    here = sweeps.run_trials(methods, data, trials=2, epochs=2, lr=2e-3, workers=0, progress=False)
    assert [[_numbers(r) for r in v] for v in here.values()] == [
        [_numbers(r) for r in v] for v in serial.values()
    ]
    assert here["a0"][1].method is methods[0] and serial["a0"][1].method == methods[0]
    assert all(isinstance(r.model, torch.nn.Module) for v in here.values() for r in v)
    n = sum(p.numel() for p in here["bptt"][0].model.parameters() if p.requires_grad)
    assert n == here["bptt"][0].num_parameters


def test_trial_k_equals_train_method_with_seed_plus_k(data, serial):
    train_set, test_set, info = E.load_datasets("randman", data.data_path, 8, 24, 0, TINY)
    run = E.train_method(
        _methods()[0], train_set, test_set, dict(info, seed=1), epochs=2, lr=2e-3, seed=1
    )
    assert [h["test_acc"] for h in run.history] == [h["test_acc"] for h in serial["a0"][1].history]
    assert (run.seed, run.trial, serial["a0"][1].seed, serial["a0"][1].trial) == (1, 0, 1, 1)
    # options reach build_model: the BPTT net has 24 hidden units
    assert serial["bptt"][0].num_parameters < serial["a0"][0].num_parameters
    # the trials differ (different seeds)
    assert serial["a0"][0].history != serial["a0"][1].history


def test_cache_resumes_without_training(data, serial, tmp_path, monkeypatch):
    methods = _methods()[:1]
    first = sweeps.run_trials(
        methods, data, trials=2, epochs=2, lr=2e-3, workers=1, progress=False, cache_dir=tmp_path
    )
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == 2 and json.loads(files[0].read_text())["method"]["key"] == "a0"
    # written atomically (no temporary file left), readable as a plain open() would make them
    assert sorted(tmp_path.iterdir()) == files
    assert all(f.stat().st_mode & 0o777 == OPEN_FILE_MODE for f in files)

    def boom(*args, **kwargs):
        raise AssertionError("trained again although cached")

    monkeypatch.setattr(sweeps, "_run_job", boom)
    again = sweeps.run_trials(
        methods, data, trials=2, epochs=2, lr=2e-3, workers=1, progress=False, cache_dir=tmp_path
    )
    assert _acc(again) == _acc(first) == {"a0": _acc(serial)["a0"]}
    assert [r.to_json() for r in again["a0"]] == [r.to_json() for r in first["a0"]]
    assert again["a0"][0].method == methods[0] and again["a0"][0].model is None
    # in this process too (workers=0), cached runs come back without a model
    here = sweeps.run_trials(
        methods, data, trials=2, epochs=2, lr=2e-3, workers=0, progress=False, cache_dir=tmp_path
    )
    assert _acc(here) == _acc(first) and here["a0"][0].model is None
    # other settings are not served from the cache
    with pytest.raises(AssertionError, match="trained again"):
        sweeps.run_trials(
            methods,
            data,
            trials=2,
            epochs=2,
            lr=1e-3,
            workers=1,
            progress=False,
            cache_dir=tmp_path,
        )


def test_subset(serial):
    sub = serial.subset(["bptt"])
    assert (
        list(sub) == ["bptt"] and sub["bptt"] is serial["bptt"] and sub.labels == {"bptt": "BPTT"}
    )
    assert sub.settings == serial.settings
    with pytest.raises(KeyError, match="keys"):
        serial.subset(["nope"])


def test_summary_statistics(serial):
    rows = {r["key"]: r for r in sweeps.summary_rows(serial)}
    acc = [r.history[-1]["test_acc"] for r in serial["a0"]]
    assert rows["a0"]["mean"] == pytest.approx(sum(acc) / 2)
    assert rows["a0"]["std"] == pytest.approx(
        abs(acc[0] - acc[1]) / np.sqrt(2)
    )  # sample std of two values
    best = [max(h["test_acc"] for h in r.history[1:]) for r in serial["a0"]]
    assert sweeps.summary_rows(serial, "best")[0]["max"] == max(best)
    table = sweeps.summary_table(serial, paper={"a0": (77.09, 0.33)}, paper_title="paper SHD")
    assert "77.09 +- 0.33" in table and "paper SHD" in table and table.count("\n") == 3
    noted = sweeps.summary_table(
        serial, paper={"a0": (77.09, 0.33)}, paper_notes={"a0": "* a note", "zz": "* not shown"}
    ).splitlines()
    assert noted[2].endswith("77.09 +- 0.33 *") and noted[-1] == "* a note" and len(noted) == 5
    lc = sweeps.learning_curve(serial, "a0")
    assert lc["values"].shape == (2, 3) and lc["epoch"].tolist() == [0, 1, 2]
    assert sweeps.learning_curve(serial, "a0", "train_acc")["epoch"].tolist() == [1, 2]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(trials=0), "trials"),
        (dict(workers=-1), "workers"),
        (dict(lr=-1.0), "lr"),
        (dict(epochs=-1), "epochs"),
    ],
)
def test_bad_arguments_are_named(data, kwargs, match):
    args = dict(trials=1, epochs=1, lr=1e-3, progress=False)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        sweeps.run_trials(_methods(), data, **args)


def _train_twice(method, train_set, test_set, info, *, factor, **kw):
    """A ``train`` of run_trials: train_method, with each accuracy times ``factor``."""
    run = E.train_method(method, train_set, test_set, info, **kw)
    run.records = [{"batch_seed": info["seed"], "threads": kw["threads"]}]
    run.history = [dict(h, test_acc=factor * h["test_acc"]) for h in run.history]
    return run


def test_train_and_batch_seed_reach_every_run(data, serial, tmp_path):
    methods = _methods()[:1]
    args = dict(trials=2, epochs=2, lr=2e-3, progress=False, cache_dir=tmp_path)
    sw = sweeps.run_trials(
        methods, data, train=_train_twice, train_options={"factor": 2.0}, workers=1, **args
    )
    assert [[h["test_acc"] for h in r.history] for r in sw["a0"]] == [
        [2.0 * h["test_acc"] for h in r.history] for r in serial["a0"]
    ]
    assert [r.records for r in sw["a0"]] == [[{"batch_seed": k, "threads": 1}] for k in (0, 1)]
    # train and its options are part of the cache key
    other = sweeps.run_trials(
        methods, data, train=_train_twice, train_options={"factor": 3.0}, workers=0, **args
    )
    assert other["a0"][0].history[0]["test_acc"] == 1.5 * sw["a0"][0].history[0]["test_acc"]
    assert len(list(tmp_path.glob("*.json"))) == 4
    # a fixed batch order: trial 1 keeps seed 1 for its weights but shuffles as batch_seed says
    fixed = sweeps.run_trials(
        methods, data, trials=2, epochs=2, lr=2e-3, workers=0, batch_seed=0, progress=False
    )
    train_set, test_set, info = data.load()
    run = E.train_method(methods[0], train_set, test_set, info, epochs=2, lr=2e-3, seed=1)
    run.trial = 1
    assert info["seed"] == 0 and _numbers(fixed["a0"][1]) == _numbers(run)
    assert _numbers(fixed["a0"][0]) == _numbers(serial["a0"][0])


def test_run_result_json_round_trip(serial):
    run = dataclasses.replace(serial["bptt"][1], records=[{"batch": 0, "rate": 0.25}])
    back = E.RunResult.from_json(json.loads(json.dumps(run.to_json())))
    assert back == run and back.method.options == {"hidden": 24} and back.model is None
    assert back.final_test_acc == run.history[-1]["test_acc"] and back.trial == 1
    assert back.best_test_acc == max(h["test_acc"] for h in run.history[1:])
    assert back.series("test_acc").tolist() == [h["test_acc"] for h in run.history]
    assert back.series("train_acc").shape == (2,) and back.series("rate").tolist() == [0.25]


def test_data_spec_with_seed_and_load(data):
    spec = E.DataSpec(
        "randman", data_path=data.data_path, data_options=TINY, batch_size=8, val_batch_size=24
    ).with_seed(0)
    assert spec == data and data.with_seed(3) == dataclasses.replace(data, data_seed=3)
    assert spec.load() is data.load()  # kept in this process
    train_set, test_set, info = spec.load()
    assert (info["n_train"], info["n_test"], info["seed"]) == (48, 24, 0)
    assert data.with_seed(3).load()[2]["seed"] == 3  # the batch order of info["seed"]


def test_check_positive_int_options():
    """The one integer check behind sweeps (numpy integers, epochs >= 0), the layers, the train
    config (ConfigError, None allowed) and the memory CLI."""
    assert check_positive_int(3, "n") == 3
    assert check_positive_int(np.int64(3), "n", allow_numpy=True) == 3
    assert type(check_positive_int(np.int64(3), "n", allow_numpy=True)) is int
    assert check_positive_int(0, "epochs", minimum=0) == 0
    assert check_positive_int(None, "--max-batches", allow_none=True) is None
    for bad in (0, -1, True, 2.0, "3", None, np.int64(3)):
        with pytest.raises(
            ValueError, match=re.escape(f"n: expected a positive integer, got {bad!r}")
        ):
            check_positive_int(bad, "n")
    with pytest.raises(ValueError, match="^epochs: expected an integer >= 0, got -1$"):
        check_positive_int(-1, "epochs", minimum=0, allow_numpy=True)
    with pytest.raises(KeyError, match="--trials: expected a positive integer, got 0"):
        check_positive_int(0, "--trials", error=KeyError)


def test_bad_methods_and_data(data):
    with pytest.raises(ValueError, match="unique"):
        sweeps.run_trials(_methods()[:1] * 2, data, epochs=1, lr=1e-3)
    with pytest.raises(ValueError, match="at least one"):
        sweeps.run_trials([], data, epochs=1, lr=1e-3)
    with pytest.raises(TypeError, match="DataSpec"):
        sweeps.run_trials(_methods(), {"dataset": "randman"}, epochs=1, lr=1e-3)


def test_plots_draw_every_trial(serial):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stllr.plotting.training import plot_learning_curves, plot_trial_boxes

    fig, (a, b) = plt.subplots(1, 2)
    plot_trial_boxes(a, serial, paper={"a0": (50.0, 2.0)})
    from matplotlib.collections import PathCollection

    dots = np.concatenate(
        [c.get_offsets()[:, 1] for c in a.collections if isinstance(c, PathCollection)]
    )
    assert sorted(dots.tolist()) == sorted(
        np.concatenate([serial.accuracies(k) for k in serial]).tolist()
    )
    assert [t.get_text() for t in a.get_xticklabels()] == ["alpha_post 0", "BPTT"]
    plot_learning_curves(b, serial)
    assert [l.get_label() for l in b.get_lines()] == ["alpha_post 0", "BPTT"]
    plt.close(fig)


def test_validation_split_holds_out_training_samples_and_never_loads_the_test_set(data):
    """``DataSpec.validation``: n training samples (fixed by the data seed) replace the test set;
    the runs train on the rest; the two parts are disjoint and together the training set."""
    full_train, test_set, _ = data.load()
    spec = data.validation_split(12)
    assert spec.validation == 12 and data.validation is None
    assert "validation" not in data.as_dict() and spec.as_dict()["validation"] == 12
    train, val, info = spec.load()
    assert (len(train), len(val), info["n_train"], info["n_test"]) == (36, 12, 36, 12)
    assert info["evaluation"] == "validation" and data.load()[2]["evaluation"] == "test"
    assert train.num_classes == val.num_classes == full_train.num_classes
    key = [tuple(full_train[i][0].flatten().tolist()) for i in range(len(full_train))]
    rows = lambda ds: {tuple(ds[i][0].flatten().tolist()) for i in range(len(ds))}  # noqa: E731
    assert rows(train).isdisjoint(rows(val)) and rows(train) | rows(val) == set(key)
    tests = rows(test_set)
    assert rows(val).isdisjoint(tests)
    # the same seed holds out the same samples; another seed others
    again = E.load_datasets("randman", data.data_path, 8, 24, 0, TINY, validation=12)[1]
    assert rows(again) == rows(val)
    other = E.load_datasets("randman", data.data_path, 8, 24, 5, TINY, validation=12)[1]
    assert rows(other) != rows(val)
    with pytest.raises(ValueError, match=r"^validation: expected fewer than the 48"):
        E.load_datasets("randman", data.data_path, 8, 24, 0, TINY, validation=48)
    with pytest.raises(ValueError, match="validation"):
        E.DataSpec("randman", validation=0)


def test_a_methods_own_lr_trains_that_run_and_keys_its_cache(data, serial, tmp_path):
    a0 = _methods()[0]
    own = dataclasses.replace(a0, key="a0_own", lr=2e-3)
    sw = sweeps.run_trials([own], data, trials=2, epochs=2, lr=9e-3, workers=1, progress=False)
    # lr 2e-3 of the method wins over the sweep's 9e-3: the same numbers as the serial sweep's a0
    assert [[h["test_acc"] for h in r.history] for r in sw["a0_own"]] == [
        [h["test_acc"] for h in r.history] for r in serial["a0"]
    ]
    # without an lr of its own a method needs the sweep's
    sweeps.run_trials([own], data, trials=1, epochs=1, workers=1, progress=False)
    with pytest.raises(ValueError, match=r"^lr: expected a positive number \(methods \['a0'\]"):
        sweeps.run_trials([a0, own], data, trials=1, epochs=1, progress=False)
    # lr None leaves the JSON (and so old cache keys) as before; a set lr is part of it
    assert "lr" not in a0.to_json() and own.to_json()["lr"] == 2e-3
    assert E.Method.from_json(own.to_json()) == own
    with pytest.raises(ValueError, match=r"^lr: expected a positive number or None"):
        dataclasses.replace(a0, lr=0.0)
    first = sweeps.run_trials(
        [own], data, trials=1, epochs=1, workers=1, progress=False, cache_dir=tmp_path
    )
    faster = dataclasses.replace(own, lr=4e-3)
    sweeps.run_trials(
        [faster], data, trials=1, epochs=1, workers=1, progress=False, cache_dir=tmp_path
    )
    assert len(list(tmp_path.glob("*.json"))) == 2 and first["a0_own"][0].method.lr == 2e-3


def test_stllr_workers_sets_the_default_and_is_validated(monkeypatch):
    monkeypatch.delenv("STLLR_WORKERS", raising=False)
    assert sweeps.default_workers("cuda") == 1
    assert sweeps.default_workers("cpu") in (1, 2)
    for value, expected in (("0", 0), ("1", 1), (" 3 ", 3)):
        monkeypatch.setenv("STLLR_WORKERS", value)
        assert sweeps.default_workers("cpu") == expected
        assert sweeps.default_workers("cuda") == expected
    for bad in ("two", "-1", "1.5"):
        monkeypatch.setenv("STLLR_WORKERS", bad)
        with pytest.raises(ValueError, match=r"^STLLR_WORKERS: expected an integer >= 0") as err:
            sweeps.default_workers()
        assert "\n" not in str(err.value)


def test_stllr_workers_1_trains_in_this_process_with_the_same_numbers(data, serial, monkeypatch):
    """make test sets STLLR_WORKERS=1: run_trials(workers=None) then spawns no process, and the
    numbers are the serial run's (an explicit ``workers`` still wins)."""

    class NoPool:
        def __init__(self, *args, **kwargs):
            raise AssertionError("a worker process was started")

    monkeypatch.setattr(sweeps, "ProcessPoolExecutor", NoPool)
    monkeypatch.setenv("STLLR_WORKERS", "1")
    here = sweeps.run_trials(_methods(), data, trials=2, epochs=2, lr=2e-3, progress=False)
    assert _acc(here) == _acc(serial)
    with pytest.raises(AssertionError, match="a worker process was started"):
        sweeps.run_trials(_methods(), data, trials=2, epochs=2, lr=2e-3, workers=2, progress=False)
