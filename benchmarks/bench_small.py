"""Seconds per epoch of the small task (the many short runs of notebooks 00, 06, 07, 08, 11, 12).

The setting of :func:`stllr.studies.common.small_task_config` (:data:`~stllr.studies.common.SMALL_RANDMAN`:
5 classes, T = 30, 300 training / 200 test samples, batch 32 -> 10 training batches, test batch 250;
``randman_rsnn_stllr`` / ``randman_rsnn_bptt``, learning signal on the last 20 steps), each method
of :func:`~stllr.studies.common.small_task_method` with its learning rate. These runs are
dispatch-bound (many small ops per time step), so what counts is Python and operator overhead.

For each kind one model is built (seed 0) and trained epoch after epoch; the kinds take turns
(interleaved) so that a change in the machine's load hits all of them alike. Printed per kind: the
median (and min) wall seconds and the median CPU seconds of this process (less sensitive to other
load on a shared machine) of a training epoch (``run_epoch`` with the optimizer, 10 batches), of a
test epoch (no learning, 1 batch of 200), and ms per training batch.

    python benchmarks/bench_small.py [--threads 1] [--repeats 7] [--kinds bp,dfa_rate,bptt]
                                     [--profile KIND] [--json FILE]

``--profile KIND``: cProfile of one training epoch of KIND (top 25 functions by own time) instead.
Results: benchmarks/README.md ("bench_small.py"), benchmarks/results/bench_small.json.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import platform
import pstats
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import stllr
from stllr.studies import common as E
from stllr.training.config import make_optimizer
from stllr.training.loop import run_epoch, seed_everything

DEFAULT_KINDS = ("bp", "dfa_rate", "bptt")


class _Run:
    """One kind's model, optimizer and loaders (the objects :func:`E.train_method` builds)."""

    def __init__(self, kind, data):
        cfg = E.small_task_config()
        self.method = E.small_task_method(cfg, kind)
        train_set, test_set, self.info = data
        seed_everything(0)
        self.model = E.build_model_for(self.method, self.info)
        self.opt = make_optimizer("Adam", self.model.parameters(), self.method.lr)
        self.train_loader, self.test_loader = E.loaders_for(train_set, test_set, self.info)

    def train_epoch(self):
        """(wall, CPU) seconds of one training epoch."""
        t0, c0 = time.perf_counter(), time.process_time()
        run_epoch(
            self.model,
            self.train_loader,
            optimizer=self.opt,
            loss_fn=F.cross_entropy,
            mode=self.method.mode,
            window=self.method.window,
        )
        return time.perf_counter() - t0, time.process_time() - c0

    def test_epoch(self):
        """(wall, CPU) seconds of one test epoch."""
        t0, c0 = time.perf_counter(), time.process_time()
        run_epoch(self.model, self.test_loader, optimizer=None, loss_fn=F.cross_entropy)
        return time.perf_counter() - t0, time.process_time() - c0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--kinds", default=",".join(DEFAULT_KINDS))
    p.add_argument("--profile", default=None, metavar="KIND")
    p.add_argument("--json", default=None, metavar="FILE")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = E.small_task_config().data.load()
    if args.profile:
        run = _Run(args.profile, data)
        run.train_epoch()  # warm-up
        prof = cProfile.Profile()
        prof.enable()
        run.train_epoch()
        prof.disable()
        pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(25)
        return 0
    kinds = [k for k in args.kinds.split(",") if k]
    runs = {k: _Run(k, data) for k in kinds}
    for r in runs.values():  # warm-up: one epoch each
        r.train_epoch()
        r.test_epoch()
    train_s = {k: [] for k in kinds}
    test_s = {k: [] for k in kinds}
    for _ in range(args.repeats):
        for k in kinds:  # interleaved
            train_s[k].append(runs[k].train_epoch())
            test_s[k].append(runs[k].test_epoch())
    batches = len(next(iter(runs.values())).train_loader)
    print(
        f"small task, torch {torch.__version__}, stllr {stllr.__version__}, {args.threads} thread(s), "
        f"{args.repeats} interleaved epochs per kind, {batches} training batches per epoch"
    )
    print(
        f"{'kind':12s} {'train s/epoch':>14s} {'(min)':>7s} {'CPU s/epoch':>12s} {'ms/batch':>9s} "
        f"{'test s/epoch':>13s}"
    )
    rows = {}
    for k in kinds:
        wall = [w for w, _ in train_s[k]]
        cpu = [c for _, c in train_s[k]]
        med = statistics.median(wall)
        rows[k] = {
            "train_s_per_epoch": med,
            "train_s_min": min(wall),
            "train_cpu_s_per_epoch": statistics.median(cpu),
            "ms_per_batch": 1e3 * med / batches,
            "test_s_per_epoch": statistics.median([w for w, _ in test_s[k]]),
            "train_s_all": wall,
            "train_cpu_s_all": cpu,
        }
        print(
            f"{k:12s} {med:14.3f} {min(wall):7.3f} {rows[k]['train_cpu_s_per_epoch']:12.3f} "
            f"{1e3 * med / batches:9.1f} {rows[k]['test_s_per_epoch']:13.3f}"
        )
    if args.json:
        out = {
            "torch": torch.__version__,
            "stllr": stllr.__version__,
            "threads": args.threads,
            "repeats": args.repeats,
            "machine": platform.processor() or platform.machine(),
            "kinds": rows,
        }
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
