"""Data parallelism: samplers, and 2 gloo processes (torchrun) training exactly like one process on
the same global batch."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stllr import distributed as D
from stllr.data import get_loaders
from stllr.train import TrainConfig

REPO = Path(__file__).resolve().parents[1]


def test_sharded_sampler_batches_are_the_single_process_batches():
    n, world, local_bs = 23, 2, 3
    single = D.ShardedShuffleSampler(n, 1, 0, seed=5)
    single.set_epoch(3)
    order = list(single)
    assert sorted(order) == list(range(n))
    shards = []
    for rank in range(world):
        s = D.ShardedShuffleSampler(n, world, rank, seed=5)
        s.set_epoch(3)
        shards.append(list(s))
        assert len(shards[-1]) == len(s) == 12  # equal counts (padded by wrapping around)
    padded = order + order[: 24 - n]
    for b in range(4):  # local batch b of every rank == global batch b of one process
        union = sorted(i for sh in shards for i in sh[b * local_bs:(b + 1) * local_bs])
        assert union == sorted(padded[b * world * local_bs:(b + 1) * world * local_bs])
    again = D.ShardedShuffleSampler(n, 1, 0, seed=5)
    again.set_epoch(3)
    assert list(again) == order  # a pure function of (seed, epoch)
    again.set_epoch(4)
    assert list(again) != order


def test_eval_sampler_covers_each_sample_once():
    got = sorted(i for r in range(3) for i in D.EvalShardSampler(10, 3, r))
    assert got == list(range(10))


def test_single_process_helpers_are_no_ops():
    ctx = D.init_distributed(cpu=True)
    assert not ctx.enabled and ctx.is_main and ctx.device.type == "cpu"
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    D.allreduce_gradients([p], ctx)
    assert torch.equal(p.grad, torch.full((3,), 2.0))
    assert D.allreduce_sum([1, 2.5], ctx) == [1.0, 2.5]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DATA = {"n_train_per_class": 3, "n_test_per_class": 2, "n_steps": 12}
CASES = {
    "stllr_dfa": ["--arch", "randman_rsnn_stllr", "--feedback-mode", "DFA", "--label-encoding", "one-hot",
                  "--delay-ls", "6"],
    "bptt": ["--arch", "randman_rsnn_bptt", "--training-mode", "bptt"],
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_two_gloo_processes_train_like_one_on_the_global_batch(tmp_path, case):
    data = tmp_path / "data"
    get_loaders("randman", data, 2, 2, **DATA)  # generate the cache once, before the ranks start
    common = ["--dataset", "randman", "--data-path", str(data), "--epochs", "1", "--batch-size", "8",
              "--val-batch-size", "4", "--optimizer", "SGD", "--lr", "0.01", "--cpu", "--no-progress",
              "--print-freq", "1000"] + [f"-o{k}={v}" for k, v in DATA.items()] + CASES[case]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    for attempt in range(2):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
               "-m", "stllr", "train", "--save-path", str(tmp_path / f"ddp{attempt}")] + common
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        # Known open problem: about 1 run in 10 on a loaded 2-core machine, one rank dies of SIGABRT
        # inside the launcher (not a wrong result). Such a crash, and only that, is retried once on a
        # fresh port; the equality below is never relaxed.
        if proc.returncode == 0 or "Signal 6 (SIGABRT)" not in proc.stderr:
            break
    (tmp_path / f"ddp{attempt}").rename(tmp_path / "ddp")
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if "Error" in ln or "error" in ln or "Traceback" in ln]
        pytest.fail("torchrun failed:\n" + "\n".join(lines[-20:]) + "\n---\n" + proc.stderr[-1500:])
    assert "data parallel: 2 processes (gloo), local batch 4" in (tmp_path / "ddp" / "log.log").read_text()

    from stllr import cli

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert cli.main(["train", "--save-path", str(tmp_path / "single")] + common) == 0
    finally:
        torch.set_num_threads(threads)
    a = torch.load(tmp_path / "ddp" / "trial_1_last.pth.tar", weights_only=True)
    b = torch.load(tmp_path / "single" / "trial_1_last.pth.tar", weights_only=True)
    for k, v in b["state_dict"].items():
        # float32 sums in another order: equal to ~1e-6
        torch.testing.assert_close(a["state_dict"][k], v, rtol=1e-5, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")
    (ea,), (eb,) = a["history"], b["history"]
    assert ea["train_samples"] == eb["train_samples"] == 30 and ea["test_samples"] == eb["test_samples"] == 20
    assert ea["test_acc"] == pytest.approx(eb["test_acc"]) and ea["train_acc"] == pytest.approx(eb["train_acc"])
    assert ea["train_loss"] == pytest.approx(eb["train_loss"], rel=1e-5)
    # and training did move the weights (the comparison is not between two initialisations)
    from stllr.train import _build, seed_everything, validate_config

    seed_everything(1234)
    fresh = _build(validate_config(TrainConfig(arch=CASES[case][1], dataset="randman", training_mode=
                                               "bptt" if case == "bptt" else "stllr")), {
        "num_classes": 10, "input_shape": (100,)})
    assert not torch.equal(fresh.linear1.weight, b["state_dict"]["linear1.weight"])
