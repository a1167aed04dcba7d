"""Data parallelism: samplers, and 2 gloo processes (torchrun) training exactly like one process on
the same global batch."""

from __future__ import annotations

import contextlib
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stllr import cli
from stllr.cli import train as cli_train
from stllr.data import get_loaders
from stllr.training import config, loop, run
from stllr.training import distributed as D
from stllr.training.config import TrainConfig

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
        union = sorted(i for sh in shards for i in sh[b * local_bs : (b + 1) * local_bs])
        assert union == sorted(padded[b * world * local_bs : (b + 1) * world * local_bs])
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
    "stllr_dfa": [
        "--arch",
        "randman_rsnn_stllr",
        "--feedback-mode",
        "DFA",
        "--label-encoding",
        "one-hot",
        "--delay-ls",
        "6",
    ],
    "bptt": ["--arch", "randman_rsnn_bptt", "--training-mode", "bptt"],
}
METRICS = ("train_acc", "train_loss", "test_acc", "test_loss", "train_samples", "test_samples")


def _train_args(data: Path, case: str) -> list:
    return (
        [
            "--dataset",
            "randman",
            "--data-path",
            str(data),
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--val-batch-size",
            "4",
            "--optimizer",
            "SGD",
            "--lr",
            "0.01",
            "--cpu",
            "--no-progress",
            "--print-freq",
            "1000",
        ]
        + [f"-o{k}={v}" for k, v in DATA.items()]
        + CASES[case]
    )


def _config(data: Path, case: str) -> TrainConfig:
    """The TrainConfig ``stllr train`` builds from the test's flags."""
    args = cli.build_parser().parse_args(["train"] + _train_args(data, case))
    return config.validate_config(cli_train.config_from_args(args))


@contextlib.contextmanager
def _one_thread():
    """The ranks run with OMP_NUM_THREADS=1: the reference runs the same single-threaded kernels."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _KeepGrads:
    """Optimizer stand-in for train_batch: zero_grad as usual, step() does nothing (the gradients
    stay in ``.grad`` for the simulated all-reduce)."""

    def __init__(self, params):
        self.params = list(params)

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None

    def step(self):
        pass


def _simulate_ranks(cfg: TrainConfig, world: int, dtype=torch.float32):
    """Trial 1, epoch 1 of ``cfg`` in THIS process, computed the way ``world`` data-parallel ranks
    compute it, rank after rank, with the library's own pieces (sampler, loaders, train_batch,
    optimizer, predict): for every step, each rank's local batch gives its gradient (same kernels,
    same shapes, same operands as in that rank); the gradients are combined exactly as
    ``distributed.allreduce_gradients`` does (one flat SUM, then ``/ world``: with 2 ranks the sum
    is the single correctly rounded ``g0 + g1`` in any order), then one optimizer step. The metrics
    are summed over the ranks the way ``allreduce_sum`` does. ``world=1`` is plain single-process
    training on the global batch, operation for operation what ``stllr train`` does.

    Returns (state_dict, metrics, max |averaged gradient| over all steps)."""
    seed = cfg.seed  # trial 1
    data = run._load_data(cfg, D.DistContext())
    loop.seed_everything(seed)
    model = run._build(cfg, data.info).to(dtype)
    optimizer = config.make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.weight_decay)
    loss_fn = config.make_loss(cfg.loss, model.num_classes)
    params = [p for p in model.parameters() if p.requires_grad]

    def sampler(r):
        s = D.ShardedShuffleSampler(len(data.train_set), world, r, seed=seed)
        s.set_epoch(1)
        return s

    def add(stats, pred, labels):  # run_epoch's bookkeeping
        stats[0] += float((pred.argmax(1) == labels).sum())
        stats[1] += float(loss_fn(pred, labels)) * labels.shape[0]
        stats[2] += labels.shape[0]

    def totals(stats):  # allreduce_sum (float64) over the ranks
        return [sum(st[i] for st in stats) for i in range(3)]

    train_loaders = [
        run._make_loader(data.train_set, cfg.batch_size // world, sampler(r), None, data.collate)
        for r in range(world)
    ]
    train_stats = [[0.0, 0.0, 0.0] for _ in range(world)]
    max_grad = 0.0
    model.train()
    for batches in zip(*train_loaders):  # every rank has the same number of local batches
        flats = []
        for r, (frames, labels) in enumerate(batches):
            frames, labels = frames.to(dtype), labels.to(torch.int64).view(-1)
            pred = loop.train_batch(
                model, frames, labels, _KeepGrads(params), loss_fn, cfg.training_mode, cfg.delay_ls
            )
            with_grad = [p for p in params if p.grad is not None]
            flats.append(torch.cat([p.grad.reshape(-1) for p in with_grad]))
            add(train_stats[r], pred, labels)
        flat = flats[0]
        for f in flats[1:]:
            flat = flat + f
        flat = flat / world
        max_grad = max(max_grad, float(flat.abs().max()))
        offset = 0
        for p in with_grad:
            p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
            offset += p.numel()
        optimizer.step()
    model.eval()
    val_bs = math.ceil(cfg.val_batch_size / world)
    test_stats = [[0.0, 0.0, 0.0] for _ in range(world)]
    for r in range(world):
        loader = run._make_loader(
            data.test_set,
            val_bs,
            D.EvalShardSampler(len(data.test_set), world, r),
            None,
            data.collate,
        )
        for frames, labels in loader:
            labels = labels.to(torch.int64).view(-1)
            add(test_stats[r], loop.predict(model, frames.to(dtype)), labels)
    (tr_c, tr_l, tr_n), (te_c, te_l, te_n) = totals(train_stats), totals(test_stats)
    metrics = {
        "train_acc": 100.0 * tr_c / tr_n,
        "train_loss": tr_l / tr_n,
        "train_samples": int(tr_n),
        "test_acc": 100.0 * te_c / te_n,
        "test_loss": te_l / te_n,
        "test_samples": int(te_n),
    }
    return model.state_dict(), metrics, max_grad


def _assert_bitwise_equal(got: dict, want: dict, what: str):
    assert got.keys() == want.keys()
    for k, v in want.items():
        if not torch.equal(got[k], v):
            diff = float((got[k].double() - v.double()).abs().max())
            pytest.fail(
                f"{what}: {k} differs (max |diff| {diff:.3e}); the two computations should run the same "
                f"floating-point operations on the same operands"
            )


# Each rank runs ``python -m stllr ARGS`` (runpy, as -m does), then checks that gloo's threads are
# gone once it returned: destroy_process_group() must have freed the process group, so that no
# gloo thread is still running while the interpreter shuts down (see
# distributed._import_modules_that_capture_world). Linux thread names; elsewhere nothing is checked.
_RANK_ENTRY = """
import os, runpy, sys

try:
    runpy.run_module("stllr", run_name="__main__", alter_sys=True)
    rc = 0
except SystemExit as e:
    rc = e.code if isinstance(e.code, int) else int(e.code is not None)
tasks = "/proc/self/task"
names = []
if os.path.isdir(tasks):
    for tid in os.listdir(tasks):
        try:
            with open(os.path.join(tasks, tid, "comm")) as f:
                names.append(f.read().strip())
        except OSError:
            pass
left = sorted(n for n in names if "gloo" in n)
if left:
    print(f"rank {os.environ.get('RANK')}: gloo threads still running after stllr train returned "
          f"(the process group was not freed): {left}", file=sys.stderr, flush=True)
    rc = rc or 3
sys.exit(rc)
"""


def _torchrun(args: list, tmp_path: Path) -> subprocess.CompletedProcess:
    """``python -m stllr ARGS`` in 2 gloo processes (torchrun). PYTHONFAULTHANDLER=1: a rank that
    dies of a signal (SIGABRT, SIGSEGV, ...) prints the Python stacks of all its threads to the
    captured stderr, which the test's failure message shows."""
    entry = tmp_path / "rank_entry.py"
    entry.write_text(_RANK_ENTRY)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1")
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(entry),
    ] + args
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_two_gloo_processes_train_like_one_on_the_global_batch(tmp_path, case):
    """2 gloo ranks (torchrun, local batch 4) == one process on the global batch 8, in two exact steps:

    1. the ranks' result is bit for bit :func:`_simulate_ranks` (world 2): the two half-batch
       gradients, each computed in this process with the same kernels on the same operands as in
       its rank, summed and halved exactly as the all-reduce does. Exact by construction on any
       CPU: nothing differs but the process. This checks the samplers, the initial broadcast, the
       one all-reduce per batch, the step padding and the metric sums;
    2. :func:`_simulate_ranks` with world 1 is, bit for bit, a real single-process ``stllr train``
       on the global batch (so the simulation is the library's training, not a re-implementation);
       and ``test_averaged_half_batch_gradients_are_the_global_batch_gradient_in_float64`` shows
       world 2 == world 1 up to float64 rounding (the mean of two half-batch means is the mean
       of the batch). In float32 that last step differs by rounding only (~5e-6 after 4 steps,
       depending on the CPU's kernels), which is why it is checked in float64.
    """
    data = tmp_path / "data"
    get_loaders("randman", data, 2, 2, **DATA)  # generate the cache once, before the ranks start
    proc = _torchrun(
        ["train", "--save-path", str(tmp_path / "ddp")] + _train_args(data, case), tmp_path
    )
    if proc.returncode != 0:
        # no retry: a crash is a bug to see (faulthandler's stacks are in the stderr)
        pytest.fail(f"torchrun failed (exit status {proc.returncode}):\n{proc.stderr[-12000:]}")
    assert (
        "data parallel: 2 processes (gloo), local batch 4"
        in (tmp_path / "ddp" / "log.log").read_text()
    )
    ddp = torch.load(tmp_path / "ddp" / "trial_1_last.pth.tar", weights_only=True)

    cfg = _config(data, case)
    with _one_thread():
        ranks_state, ranks_metrics, _ = _simulate_ranks(cfg, world=2)
        single_state, single_metrics, _ = _simulate_ranks(cfg, world=1)
        assert (
            cli.main(["train", "--save-path", str(tmp_path / "single")] + _train_args(data, case))
            == 0
        )
    single = torch.load(tmp_path / "single" / "trial_1_last.pth.tar", weights_only=True)

    _assert_bitwise_equal(ddp["state_dict"], ranks_state, "2 gloo ranks vs their simulation")
    (ea,), (eb,) = ddp["history"], single["history"]
    assert {k: ea[k] for k in METRICS} == ranks_metrics
    _assert_bitwise_equal(
        single["state_dict"], single_state, "stllr train (1 process) vs the simulation, world 1"
    )
    assert {k: eb[k] for k in METRICS} == single_metrics
    assert (
        ea["train_samples"] == eb["train_samples"] == 30
        and ea["test_samples"] == eb["test_samples"] == 20
    )


# float64 tolerance of the comparison below, from an error analysis (not tuned to a CPU). The two
# computations are the same mathematics (the mean of two half-batch means is the mean of the batch)
# and differ only in rounding: each gradient entry is a sum over the batch (and time, and a layer's
# fan-in) accumulated in another order or blocking. Such a sum of n terms changes by at most
# n*u*sum|terms| (u = 2**-53 = 1.1e-16). Here n <= B*T*fan_in = 8*12*228 < 2.2e4, and sum|terms| is
# taken <= G = 100, the gradients' scale (largest averaged gradient entry: 61 in bptt, 5 in stllr;
# asserted < F64_MAX_GRAD): a step's gradients differ by < 2.2e4 * 1.1e-16 * 100 = 2.4e-10, its SGD
# update (lr 0.01) by < 2.4e-12, the 4 steps' by < 1e-11 if the dynamics do not amplify it.
# F64_ATOL = 1e-9 allows a 100x amplification over the 4 steps and stays orders of magnitude below
# what the check must catch: float32 rounding (5e-6 to 7e-6, depending on the kernels), a wrong
# reduction (a sum instead of the mean: > 7e-2; a 12% larger step: > 1e-2) and the parameters'
# movement (> 2e-4; asserted > 1e-4). Measured on AVX-512 and forced AVX2/MKL_CBWR kernels: < 6e-16.
# A spike flipped by rounding (a membrane potential within ~1e-13 of the threshold) would fail the
# check, not pass it wrongly.
F64_ATOL = 1e-9
F64_MAX_GRAD = 100.0


@pytest.mark.parametrize("case", list(CASES))
def test_averaged_half_batch_gradients_are_the_global_batch_gradient_in_float64(tmp_path, case):
    """Averaging the 2 ranks' half-batch gradients (as the all-reduce does) trains like the global
    batch: one epoch (4 SGD steps) of both in float64, equal to F64_ATOL (see above)."""
    data = tmp_path / "data"
    get_loaders("randman", data, 2, 2, **DATA)
    cfg = _config(data, case)
    with _one_thread():
        two, two_metrics, g2 = _simulate_ranks(cfg, world=2, dtype=torch.float64)
        one, one_metrics, g1 = _simulate_ranks(cfg, world=1, dtype=torch.float64)
    assert max(g1, g2) < F64_MAX_GRAD  # the premise of F64_ATOL
    loop.seed_everything(cfg.seed)
    fresh = run._build(cfg, {"num_classes": 10, "input_shape": (100,)}).to(torch.float64)
    for k, v in one.items():
        torch.testing.assert_close(two[k], v, rtol=0, atol=F64_ATOL, msg=lambda m, k=k: f"{k}: {m}")
    for name, p in fresh.named_parameters():
        if p.requires_grad:  # training moved every trainable parameter far beyond the tolerance
            assert float((one[name] - p.detach()).abs().max()) > 1e5 * F64_ATOL, name
    for k in METRICS:
        assert two_metrics[k] == pytest.approx(one_metrics[k], rel=1e-12), k
