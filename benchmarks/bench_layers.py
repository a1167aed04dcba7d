"""Time of one training sequence of the SHD-sized recurrent network, three ways.

Network: RecurrentSTLLR 700 -> 450 (leak 5, rational psi, weight standardisation) + LeakyReadout
450 -> 20 (leak 5, factors [0, 0.99, 0, 1]); B=32, T=100, learning signal (CE + backward) on the
last 90 steps, one optimizer step. Compared:

1. ``stllr``: our layers (rule backward as GEMMs, standardised weight cached per sequence), the
   weight gradients per step (``chunk=0``); ``deferred``: the same layers as the training loop runs
   them (:func:`stllr.deferred_updates`, ``DEFAULT_CHUNK`` learning steps per GEMM).
2. ``outer``: the same layers and the same numbers, but the weight gradient built from per-sample
   B x N x M outer products summed over the batch, as the reference implementation does.
3. ``bptt``: the BPTT twin (RecurrentLIF + LeakyIntegrator), CE on the summed logits, one backward.

Prints seconds per sequence (median of --repeats) and the ratios measured in this run. Also
checks that ``stllr`` and ``outer`` produce the same gradients (they must: same rule).

    python benchmarks/bench_layers.py [--threads 2] [--repeats 5] [--json] [--quick]

``--quick`` is a smoke run (seconds): the same network and code paths with B=2, T=5, window=4
and one timed repeat; its numbers are not the benchmark's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

import stllr
from stllr import measure
from stllr.training.loop import DEFAULT_CHUNK, bptt_through_time, stllr_window

# Network widths (SHD-sized): inputs, hidden recurrent neurons, classes.
N_INPUTS, N_HIDDEN, N_CLASSES = 700, 450, 20
# Sequence shape: batch size, time steps, and how many of the last steps carry a learning signal.
FULL_SHAPE = {"batch": 32, "steps": 100, "window": 90}
QUICK_SHAPE = {"batch": 2, "steps": 5, "window": 4}  # --quick: a smoke run, not a measurement


class OuterProductRecurrentSTLLR(stllr.RecurrentSTLLR):
    """Same forward and the same rule, but dL/dW~ from per-sample outer products [B, N, M]."""

    def _rule_backward(self, delta, saved, c, needs):
        x_in, pre_trace, post_prev, psi_t = saved
        alpha_post, alpha_pre = c.alpha_post, c.alpha_pre
        g = delta * psi_t
        grad_x = g @ c.w_tilde[:, : self.in_features] if needs[4] else None
        per_sample = alpha_pre * g.unsqueeze(2) * pre_trace.unsqueeze(1)  # [B, N, M+N]
        if alpha_post != 0.0:
            per_sample = per_sample + alpha_post * (delta * post_prev).unsqueeze(
                2
            ) * x_in.unsqueeze(1)
        grad_w_tilde = per_sample.sum(0)
        gw, gg = self._standardization_backward(
            grad_w_tilde[:, : self.in_features].contiguous(), c.ws_caches[0]
        )
        gwr, ggr = self._standardization_backward(
            grad_w_tilde[:, self.in_features :].contiguous(), c.ws_caches[1]
        )
        return self._pack(grad_x, [gw, gg, gwr, ggr], g.sum(0) if self.bias is not None else None)


def build(kind: str, seed: int = 0):
    torch.manual_seed(seed)
    factors = [0.5, 1.0, 1.0, 1.0]  # the paper's SHD factors
    if kind in ("stllr", "deferred", "outer"):
        cls = OuterProductRecurrentSTLLR if kind == "outer" else stllr.RecurrentSTLLR
        hidden = cls(N_INPUTS, N_HIDDEN, leak=5.0, factors=factors, psi="rational")
        readout = stllr.LeakyReadout(N_HIDDEN, N_CLASSES, leak=5.0, factors=[0.0, 0.99, 0.0, 1.0])
    else:
        hidden = stllr.RecurrentLIF(N_INPUTS, N_HIDDEN, leak=5.0, psi="rational")
        readout = stllr.LeakyIntegrator(N_HIDDEN, N_CLASSES, leak=5.0)
    torch.nn.init.kaiming_normal_(hidden.weight)
    torch.nn.init.kaiming_normal_(readout.weight)
    return torch.nn.Sequential(hidden, readout)


def make_data(batch: int, steps: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(steps, batch, N_INPUTS, generator=g) < 0.04).float()  # SHD-like sparse input
    y = torch.randint(0, N_CLASSES, (batch,), generator=g)
    return x, y


def run_sequence(kind: str, net, opt, x, y, window: int) -> None:
    """One training sequence by the library's loops (:mod:`stllr.training.loop`), x [T, B, M],
    then one optimizer step."""
    opt.zero_grad(set_to_none=True)
    if kind == "bptt":
        bptt_through_time(net, x, y, F.cross_entropy)
    else:
        chunk = DEFAULT_CHUNK if kind == "deferred" else 0
        stllr_window(net, x, y, F.cross_entropy, window, chunk=chunk)
    opt.step()


def time_kind(kind: str, repeats: int, x, y, window: int) -> float:
    net = build(kind)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    run_sequence(kind, net, opt, x, y, window)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run_sequence(kind, net, opt, x, y, window)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def gradients_agree(x, y, window: int) -> float:
    """Max relative difference of the outer-product and the deferred gradients from the per-step
    GEMM ones (one sequence): ``{"outer": ..., "deferred": ...}``."""
    grads = {}
    for kind in ("stllr", "outer", "deferred"):
        net = build(kind)
        opt = torch.optim.SGD(net.parameters(), lr=0.0)
        run_sequence(kind, net, opt, x, y, window)
        grads[kind] = [p.grad for p in net.parameters() if p.grad is not None]
    return {
        k: max(
            float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
            for a, b in zip(grads[k], grads["stllr"])
        )
        for k in ("outer", "deferred")
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed sequences per method, median reported (default 5; --quick: 1)",
    )
    ap.add_argument("--json", action="store_true", help="print a JSON object instead of a table")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run in seconds: B=2, T=5, window=4, 1 repeat (checks the script, measures nothing)",
    )
    args = ap.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        ap.error(f"--repeats: expected an integer >= 1, got {args.repeats}")
    shape = QUICK_SHAPE if args.quick else FULL_SHAPE
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 5)
    window = shape["window"]
    torch.set_num_threads(args.threads)
    x, y = make_data(shape["batch"], shape["steps"])
    rel = gradients_agree(x, y, window)
    outer_repeats = repeats if args.quick else max(2, repeats // 2)
    res = {
        k: time_kind(k, outer_repeats if k == "outer" else repeats, x, y, window)
        for k in ("deferred", "stllr", "outer", "bptt")
    }
    out = {
        "machine": measure.machine_description(),
        "config": (
            f"B={shape['batch']}, {N_INPUTS}->{N_HIDDEN} recurrent + {N_CLASSES} readout, "
            f"T={shape['steps']}, window={window}"
            + (" (--quick: smoke run, not a measurement)" if args.quick else "")
        ),
        "seconds_per_sequence": res,
        "outer_over_stllr": res["outer"] / res["stllr"],
        "bptt_over_stllr": res["bptt"] / res["stllr"],
        "outer_over_deferred": res["outer"] / res["deferred"],
        "bptt_over_deferred": res["bptt"] / res["deferred"],
        "max_rel_grad_diff_stllr_vs_outer": rel["outer"],
        "max_rel_grad_diff_stllr_vs_deferred": rel["deferred"],
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return out
    print(out["config"], "|", out["machine"])
    for k, v in res.items():
        print(f"  {k:8s} {v * 1e3:9.1f} ms / sequence")
    print(
        f"  outer-product / S-TLLR : {out['outer_over_deferred']:.1f}x deferred, "
        f"{out['outer_over_stllr']:.1f}x per step  (target >= 10x)"
    )
    print(
        f"  BPTT / S-TLLR          : {out['bptt_over_deferred']:.2f}x deferred, "
        f"{out['bptt_over_stllr']:.2f}x per step  (target >= 1.0x)"
    )
    print(
        f"  same gradients (max rel diff to per step): outer {rel['outer']:.1e}, "
        f"deferred {rel['deferred']:.1e}"
    )
    return out


if __name__ == "__main__":
    main()
