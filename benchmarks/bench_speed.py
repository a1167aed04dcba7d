"""Training time per sequence: S-TLLR (GEMM rule) vs its BPTT twin vs the outer-product form of
the same rule, and the fraction of this machine's GEMM throughput the S-TLLR sequence reaches.

Workloads (registry models; one training sequence = reset, T steps, backward(s), Adam step):
- ``shd``: ``stllr_shd_net`` (recurrent 700 -> 450 -> readout 20), B=32, T=100, learning window
  90 steps, factors [0.5, 1, 1, 1] (the paper's SHD setting); twin ``bptt_shd_net``.
- ``vgg``: ``dvs_vgg_stllr`` (VGG-9, 2x32x32, DVS Gesture size), B=4, T=20, window 5; twin
  ``dvs_vgg_bptt``.

The outer-product form (class :class:`OuterProductRule` below) is written here as the reference
implementation computes the rule: per-sample B x N x M outer products (conv: per-sample
``conv2d_weight``), summed over the batch, and the standardisation's backward by autograd at
every step. It wraps the library's layer for the forward step (same dynamics, same numbers) and
only replaces the backward; the benchmark checks the weight gradients agree with the GEMM form.

    python benchmarks/bench_speed.py [--threads 2] [--repeats 3] [--only shd|vgg] [--profile] [--json]

Targets (2 CPU threads): shd S-TLLR >= 10x faster than the outer-product form and no slower than
BPTT. ``--profile`` prints where the S-TLLR SHD sequence spends its time (torch.profiler).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

import stllr
from stllr import functional as SF
from stllr import measure as M
from stllr.training.loop import bptt_through_time, stllr_window


# ======================================================================================
# The outer-product form of the rule (as the reference computes it)
# ======================================================================================
class OuterProductRule(torch.autograd.Function):
    """Identity on the spikes; backward: the S-TLLR rule with per-sample outer products.

    dL/dW~ = sum_b [ alpha_post (delta_b * tr_out_{t-1,b}) (x) z_b + alpha_pre (delta_b * psi_b) (x) tr_in_b ]
    built as a [B, N, M] tensor (linear / recurrent) or B per-sample conv2d_weight calls (conv),
    then summed over the batch; dL/dW, dL/dgain by autograd through the standardisation.
    """

    @staticmethod
    def forward(ctx, spikes, layer, z, pre_trace, post_prev, psi, x, *params):
        ctx.layer = layer
        ctx.x_shape = x.shape
        ctx.save_for_backward(z, pre_trace, post_prev, psi)
        return spikes.view_as(spikes)

    @staticmethod
    def backward(ctx, delta):
        layer = ctx.layer
        z, pre_trace, post_prev, psi = ctx.saved_tensors
        _, _, alpha_post, alpha_pre = layer.factors_tuple
        g = delta * psi
        e_post = delta * post_prev
        pairs = [(layer.weight, layer.gain)]
        if isinstance(layer, stllr.RecurrentSTLLR):
            pairs.append((layer.weight_rec, layer.gain_rec))
        with torch.enable_grad():
            leaves = [t for pair in pairs for t in pair if t is not None]
            parts = [SF.standardize_weight(w, gn) if gn is not None else w for w, gn in pairs]
            w_tilde = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        wt = w_tilde.detach()
        if isinstance(layer, stllr.Conv2dSTLLR):
            conv = dict(
                stride=layer.stride,
                padding=layer.padding,
                dilation=layer.dilation,
                groups=layer.groups,
            )
            grad_x = (
                torch.nn.grad.conv2d_input(ctx.x_shape, wt, g, **conv)
                if ctx.needs_input_grad[6]
                else None
            )
            per_sample = []
            for b in range(g.shape[0]):  # per-sample weight gradients [B, C_out, C_in, kh, kw]
                gw = alpha_pre * torch.nn.grad.conv2d_weight(
                    pre_trace[b : b + 1], wt.shape, g[b : b + 1], **conv
                )
                if alpha_post != 0.0:
                    gw = gw + alpha_post * torch.nn.grad.conv2d_weight(
                        z[b : b + 1], wt.shape, e_post[b : b + 1], **conv
                    )
                per_sample.append(gw)
            grad_w_tilde = torch.stack(per_sample).sum(0)
            grad_b = g.sum((0, 2, 3))
        else:
            grad_x = g[:, :] @ wt[:, : layer.in_features] if ctx.needs_input_grad[6] else None
            outer = alpha_pre * g.unsqueeze(2) * pre_trace.unsqueeze(1)  # [B, N, M]
            if alpha_post != 0.0:
                outer = outer + alpha_post * e_post.unsqueeze(2) * z.unsqueeze(1)
            grad_w_tilde = outer.sum(0)
            grad_b = g.sum(0)
        grads = torch.autograd.grad(w_tilde, leaves, grad_w_tilde)
        by_param = dict(zip(map(id, leaves), grads))
        params = layer._rule_params_for_outer()
        out = [
            grad_b if p is layer.bias else by_param.get(id(p)) if p is not None else None
            for p in params
        ]
        return (None, None, None, None, None, None, grad_x) + tuple(out)


class OuterProduct(nn.Module):
    """Wraps a library S-TLLR layer (linear / recurrent / conv): its forward step as is, the
    backward by :class:`OuterProductRule`. Reads only the layer's public ``state``."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer
        names = ["weight", "gain", "bias", "weight_rec", "gain_rec"]
        layer._rule_params_for_outer = lambda: [
            getattr(layer, n) for n in names if hasattr(layer, n)
        ]

    def forward(self, x):
        layer = self.layer
        prev = layer.state
        with torch.no_grad():
            spikes = layer(x.detach())
        if not torch.is_grad_enabled():
            return spikes
        st = layer.state
        post_prev = torch.zeros_like(st.post_trace) if prev is None else prev.post_trace
        if isinstance(layer, stllr.RecurrentSTLLR):
            prev_s = torch.zeros_like(st.spikes) if prev is None else prev.spikes
            z = torch.cat((x.detach(), prev_s), dim=1)
        else:
            z = x.detach()
        params = [p for p in layer._rule_params_for_outer()]
        return OuterProductRule.apply(spikes, layer, z, st.pre_trace, post_prev, st.psi, x, *params)


def to_outer_product(model: nn.Module) -> nn.Module:
    """Replace every spiking S-TLLR layer of ``model`` (not the readout) by its outer-product form."""
    for name, child in list(model.named_children()):
        if isinstance(child, (stllr.LinearSTLLR, stllr.Conv2dSTLLR)):
            setattr(model, name, OuterProduct(child))
        else:
            to_outer_product(child)
    return model


# ======================================================================================
# Workloads
# ======================================================================================
WORKLOADS = {
    "shd": dict(
        stllr="stllr_shd_net",
        bptt="bptt_shd_net",
        B=32,
        T=100,
        window=90,
        factors=(0.5, 1.0, 1.0, 1.0),
        rate=0.05,
    ),
    "vgg": dict(
        stllr="dvs_vgg_stllr",
        bptt="dvs_vgg_bptt",
        B=4,
        T=20,
        window=5,
        factors=(0.2, 0.75, -1.0, 1.0),
        rate=0.1,
    ),
}


def build(cfg, kind, seed=0):
    from stllr.models.registry import build_model

    torch.manual_seed(seed)
    if kind == "bptt":
        model = build_model(cfg["bptt"])
    else:
        model = build_model(cfg["stllr"], factors=cfg["factors"])
        if kind == "outer":
            to_outer_product(model)
    return model.train()


def make_inputs(cfg, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand((cfg["T"], cfg["B"]) + tuple(shape), generator=g) < cfg["rate"]).float()
    y = torch.randint(0, 10, (cfg["B"],), generator=g)
    return x, y


def sequence(model, opt, x, y, mode, window):
    """One training sequence by the library's loops (:mod:`stllr.training.loop`, as
    stllr.measure.run_sequence), x [T, B, ...], then one optimizer step."""
    opt.zero_grad(set_to_none=True)
    if mode == "bptt":
        bptt_through_time(model, x, y, F.cross_entropy)
    else:
        stllr_window(model, x, y, F.cross_entropy, window)
    opt.step()


def time_interleaved(models, x, y, window, repeats):
    """Median seconds per sequence of each model; the models take turns (one sequence each per
    round) so that a change of machine load hits all of them alike."""
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-6) for k, m in models.items()}
    modes = {k: "bptt" if k == "bptt" else "stllr" for k in models}
    for k, m in models.items():  # warm-up
        sequence(m, opts[k], x, y, modes[k], window)
    times = {k: [] for k in models}
    for _ in range(repeats):
        for k, m in models.items():
            t0 = time.perf_counter()
            sequence(m, opts[k], x, y, modes[k], window)
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}, times


def grad_agreement(cfg, x, y):
    """Max relative difference of the weight gradients, GEMM vs outer-product form (one sequence)."""
    grads = {}
    for kind in ("stllr", "outer"):
        model = build(cfg, kind)
        model.zero_grad(set_to_none=True)
        stllr_window(model, x, y, F.cross_entropy, cfg["window"])
        grads[kind] = {
            n.replace(".layer.", "."): p.grad.clone()
            for n, p in model.named_parameters()
            if p.grad is not None
        }
    worst = 0.0
    for n, g in grads["stllr"].items():
        o = grads["outer"][n]
        worst = max(worst, float((g - o).abs().max() / g.abs().max().clamp_min(1e-30)))
    return worst


def run_workload(name, repeats):
    """Time S-TLLR, BPTT and the outer-product form on one workload; count the S-TLLR MACs."""
    cfg = WORKLOADS[name]
    from stllr.models.registry import get_model_spec

    shape = get_model_spec(cfg["stllr"]).input_shape
    x, y = make_inputs(cfg, shape)
    res = {
        "workload": name,
        "arch": cfg["stllr"],
        "twin": cfg["bptt"],
        "B": cfg["B"],
        "T": cfg["T"],
        "window": cfg["window"],
    }
    models = {kind: build(cfg, kind) for kind in ("stllr", "bptt", "outer")}
    med, times = time_interleaved(models, x, y, cfg["window"], repeats)
    for kind in models:
        res[f"{kind}_s"] = med[kind]
        res[f"{kind}_all_s"] = [round(t, 3) for t in times[kind]]
    del models
    model = build(cfg, "stllr")
    counter = M.MacCounter(model, cfg["B"])
    with counter:
        M.run_sequence(model, x, y, mode="stllr", window=cfg["window"])
    res["stllr_macs"] = counter.counts.total()
    res["outer_over_stllr"] = res["outer_s"] / res["stllr_s"]
    res["bptt_over_stllr"] = res["bptt_s"] / res["stllr_s"]
    res["grad_rel_diff_outer_vs_gemm"] = grad_agreement(cfg, x, y)
    return res


def profile_shd(rows=20):
    from torch.profiler import ProfilerActivity, profile

    cfg = WORKLOADS["shd"]
    x, y = make_inputs(cfg, (700,))
    model = build(cfg, "stllr")
    opt = torch.optim.Adam(model.parameters(), lr=1e-6)
    sequence(model, opt, x, y, "stllr", cfg["window"])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        sequence(model, opt, x, y, "stllr", cfg["window"])
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", choices=sorted(WORKLOADS), default=None)
    ap.add_argument(
        "--profile", action="store_true", help="torch.profiler table of the S-TLLR SHD sequence"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.profile:
        profile_shd()
        return 0
    load_before = M.load_average()
    gemm_before = M.gemm_throughput(2048, repeats=10)
    results = [
        run_workload(n, args.repeats) for n in ([args.only] if args.only else ["shd", "vgg"])
    ]
    # the machine's throughput: the best of a measurement before and after (load varies)
    gemm = max(gemm_before, M.gemm_throughput(2048, repeats=10))
    for r in results:
        r["stllr_gmac_per_s"] = r["stllr_macs"] / r["stllr_s"] / 1e9
        r["gemm_fraction"] = r["stllr_macs"] / r["stllr_s"] / gemm
    shd = next((r for r in results if r["workload"] == "shd"), None)
    summary = {
        "machine": M.machine_description(),
        "gemm_gmac_per_s": gemm / 1e9,
        "load_average_before": load_before,
        "load_average_after": M.load_average(),
    }
    if shd is not None:
        summary["target_outer_10x"] = shd["outer_over_stllr"] >= 10
        summary["target_not_slower_than_bptt"] = shd["bptt_over_stllr"] >= 1.0
    if args.json:
        print(json.dumps({"summary": summary, "results": results}, indent=1))
        return 0
    print(
        f"machine: {summary['machine']}; 2048^3 matmul: {gemm / 1e9:.1f} GMAC/s; "
        f"1-min load average before/after: {load_before}/{summary['load_average_after']}"
    )
    print(
        f"{'workload':<8} {'B':>3} {'T':>4} {'win':>4} | {'S-TLLR s':>9} {'BPTT s':>8} {'outer s':>8} | "
        f"{'BPTT/S-TLLR':>11} {'outer/S-TLLR':>12} | {'S-TLLR GMAC':>11} {'GMAC/s':>7} {'of GEMM':>7} | grad diff"
    )
    for r in results:
        print(
            f"{r['workload']:<8} {r['B']:>3} {r['T']:>4} {r['window']:>4} | {r['stllr_s']:9.3f} {r['bptt_s']:8.3f} "
            f"{r['outer_s']:8.3f} | {r['bptt_over_stllr']:10.2f}x {r['outer_over_stllr']:11.2f}x | "
            f"{r['stllr_macs'] / 1e9:11.2f} {r['stllr_gmac_per_s']:7.1f} {100 * r['gemm_fraction']:6.1f}% | "
            f"{r['grad_rel_diff_outer_vs_gemm']:.1e}"
        )
    print(
        "seconds: median training time per sequence (forward, rule/BPTT backward, Adam step); "
        "GMAC: matmul/conv MACs the S-TLLR sequence executes (stllr.measure.MacCounter)"
    )
    if shd is not None:
        print(
            f"targets (shd): outer-product >= 10x slower than S-TLLR: "
            f"{'met' if summary['target_outer_10x'] else 'MISSED'} ({shd['outer_over_stllr']:.1f}x); "
            f"S-TLLR no slower than BPTT: {'met' if summary['target_not_slower_than_bptt'] else 'MISSED'} "
            f"(BPTT/S-TLLR {shd['bptt_over_stllr']:.2f}x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
