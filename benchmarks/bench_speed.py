"""Training time per sequence: S-TLLR (GEMM rule, deferred and per step) vs its BPTT twin vs the
outer-product form of the same rule, and the fraction of this machine's GEMM throughput the S-TLLR
sequence reaches.

Kinds: ``deferred`` (the training loop's default: :func:`stllr.deferred_updates`, one weight-gradient
GEMM per ``DEFAULT_CHUNK`` learning steps and one standardisation backward per sequence), ``stllr``
(per step: ``chunk=0``, a GEMM and the standardisation backward at every learning step), ``bptt``
(the twin), ``outer`` (the rule as the reference computes it, per step).

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

    python benchmarks/bench_speed.py [--threads 2] [--repeats 3] [--only shd|vgg] [--profile]
                                     [--chunks 1,4,16,90] [--epoch] [--json]

Targets (2 CPU threads), shd: S-TLLR >= 10x faster than the outer-product form, deferred S-TLLR no
slower than BPTT and at >= 40 % of the GEMM throughput. ``--chunks``: time and memory held per
chunk size (SHD net), beside the BPTT twin's saved bytes. ``--epoch``: time per SHD training epoch
at the paper's batch (128; 8156 training samples), estimated from sequences. ``--profile``: where
the deferred S-TLLR SHD sequence spends its time (torch.profiler).
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
from stllr.training.loop import DEFAULT_CHUNK, bptt_through_time, stllr_window


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


KINDS = ("deferred", "stllr", "bptt", "outer")


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


def sequence(model, opt, x, y, kind, window, chunk=DEFAULT_CHUNK):
    """One training sequence by the library's loops (:mod:`stllr.training.loop`, as
    ``train_batch``), x [T, B, ...], then one optimizer step. ``kind``: one of :data:`KINDS`
    (``deferred`` runs with ``chunk``)."""
    opt.zero_grad(set_to_none=True)
    if kind == "bptt":
        bptt_through_time(model, x, y, F.cross_entropy)
    else:
        stllr_window(model, x, y, F.cross_entropy, window, chunk=chunk if kind == "deferred" else 0)
    opt.step()


def time_interleaved(models, x, y, window, repeats, chunks=None):
    """Median seconds per sequence of each model; the models take turns (one sequence each per
    round) so that a change of machine load hits all of them alike. ``models``: {label: model};
    the label's kind is its part before ``@`` (``deferred@4``: chunk 4, from ``chunks``)."""
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-6) for k, m in models.items()}
    chunks = chunks or {}

    def run(k):
        kind = k.split("@")[0]
        sequence(models[k], opts[k], x, y, kind, window, chunks.get(k, DEFAULT_CHUNK))

    for k in models:  # warm-up
        run(k)
    times = {k: [] for k in models}
    for _ in range(repeats):
        for k in models:
            t0 = time.perf_counter()
            run(k)
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}, times


def grad_agreement(cfg, x, y):
    """Max relative differences of the weight gradients of one sequence: float32 per-step GEMM
    form vs the outer-product form (``outer``) and vs the deferred form (``deferred``), and the
    per-step and deferred float32 forms vs a float64 per-step run (``per_step_vs_f64``,
    ``deferred_vs_f64``: which of the two is nearer the exact sum). Parameters whose gradient is
    all zero are skipped."""
    grads = {}
    runs = {
        "stllr": ("stllr", 0, torch.float32),
        "outer": ("outer", 0, torch.float32),
        "deferred": ("stllr", DEFAULT_CHUNK, torch.float32),
        "f64": ("stllr", 0, torch.float64),
    }
    for name, (kind, chunk, dtype) in runs.items():
        model = build(cfg, kind).to(dtype)
        model.zero_grad(set_to_none=True)
        stllr_window(model, x.to(dtype), y, F.cross_entropy, cfg["window"], chunk=chunk)
        grads[name] = {
            n.replace(".layer.", "."): p.grad.detach().double().clone()
            for n, p in model.named_parameters()
            if p.grad is not None
        }

    def worst(a, b):
        out = 0.0
        for n, g in grads[b].items():
            scale = float(g.abs().max())
            if scale > 0:
                out = max(out, float((grads[a][n] - g).abs().max()) / scale)
        return out

    return {
        "outer": worst("outer", "stllr"),
        "deferred": worst("deferred", "stllr"),
        "per_step_vs_f64": worst("stllr", "f64"),
        "deferred_vs_f64": worst("deferred", "f64"),
    }


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
    models = {kind: build(cfg, "stllr" if kind == "deferred" else kind) for kind in KINDS}
    med, times = time_interleaved(models, x, y, cfg["window"], repeats)
    for kind in models:
        res[f"{kind}_s"] = med[kind]
        res[f"{kind}_all_s"] = [round(t, 3) for t in times[kind]]
    del models
    for kind in ("stllr", "deferred"):
        model = build(cfg, "stllr")
        counter = M.MacCounter(model, cfg["B"])
        with counter:
            stllr_window(
                model,
                x,
                y,
                F.cross_entropy,
                cfg["window"],
                chunk=DEFAULT_CHUNK if kind == "deferred" else 0,
            )
        res[f"{kind}_macs"] = counter.counts.total()
    for kind in ("stllr", "deferred"):
        res[f"outer_over_{kind}"] = res["outer_s"] / res[f"{kind}_s"]
        res[f"bptt_over_{kind}"] = res["bptt_s"] / res[f"{kind}_s"]
    res["stllr_over_deferred"] = res["stllr_s"] / res["deferred_s"]
    agree = grad_agreement(cfg, x, y)
    res["grad_rel_diff_outer_vs_gemm"] = agree["outer"]
    res["grad_rel_diff_deferred_vs_per_step"] = agree["deferred"]
    res["grad_rel_err_per_step_vs_float64"] = agree["per_step_vs_f64"]
    res["grad_rel_err_deferred_vs_float64"] = agree["deferred_vs_f64"]
    return res


def chunk_table(chunks, repeats):
    """SHD net: seconds per sequence and memory held by the deferral per chunk size, beside the
    per-step rule and the BPTT twin (its saved bytes: :class:`stllr.measure.SavedTensorTracker`)."""
    cfg = WORKLOADS["shd"]
    x, y = make_inputs(cfg, (700,))
    models = {f"deferred@{c}": build(cfg, "stllr") for c in chunks}
    models["stllr"] = build(cfg, "stllr")
    models["bptt"] = build(cfg, "bptt")
    labels = {f"deferred@{c}": c for c in chunks}
    med, _ = time_interleaved(models, x, y, cfg["window"], repeats, chunks=labels)
    rows = []
    for c in chunks:
        model = build(cfg, "stllr")
        with stllr.deferred_updates(model, min(c, cfg["window"])) as d:
            stllr_window(model, x, y, F.cross_entropy, cfg["window"])
        rows.append({"chunk": c, "s": med[f"deferred@{c}"], "held_bytes": d.peak_bytes})
    twin = build(cfg, "bptt")
    tracker = M.SavedTensorTracker(twin, cfg["B"])
    with tracker:
        bptt_through_time(twin, x, y, F.cross_entropy)
    return {
        "rows": rows,
        "per_step_s": med["stllr"],
        "bptt_s": med["bptt"],
        "bptt_saved_peak_bytes": tracker.stats().peak_bytes,
    }


def projection_check(repeats):
    """Would precomputing the first layer's input projection pay on the SHD net? Its forward GEMM
    per step is ``[x_t, s_{t-1}] [W~ | W~_rec]^T`` ([B, 1150] x [1150, 450]); precomputed, it is one
    ``x W~^T`` for all T steps ([T B, 700] x [700, 450]) plus ``s_{t-1} W~_rec^T`` per step. Returns
    the median seconds of both (GEMMs alone, the sequence's shapes)."""
    cfg = WORKLOADS["shd"]
    B, T, M, N = cfg["B"], cfg["T"], 700, 450
    g = torch.Generator().manual_seed(0)
    z = (torch.rand(T, B, M + N, generator=g) < 0.05).float()
    w = torch.randn(N, M + N, generator=g) / (M + N) ** 0.5
    w_in, w_rec = w[:, :M].contiguous(), w[:, M:].contiguous()
    bias = torch.zeros(N)

    def per_step():
        for t in range(T):
            F.linear(z[t], w, bias)

    def precomputed():
        F.linear(z[:, :, :M].reshape(T * B, M), w_in, bias)
        for t in range(T):
            F.linear(z[t, :, M:], w_rec)

    out = {}
    for name, fn in (("per_step_s", per_step), ("precomputed_s", precomputed)):
        fn()
        times = []
        for _ in range(max(repeats, 5)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times)
    return out


#: SHD training set size (samples) and the paper's batch size
SHD_TRAIN_SAMPLES, SHD_PAPER_BATCH = 8156, 128


def epoch_estimate(repeats):
    """Seconds per SHD training epoch at batch 128: seconds per sequence (median of ``repeats``,
    the kinds taking turns) x the number of batches, ceil(8156 / 128) = 64 (data loading aside)."""
    cfg = dict(WORKLOADS["shd"], B=SHD_PAPER_BATCH)
    x, y = make_inputs(cfg, (700,))
    kinds = ("deferred", "stllr", "bptt")
    models = {k: build(cfg, "stllr" if k == "deferred" else k) for k in kinds}
    med, _ = time_interleaved(models, x, y, cfg["window"], repeats)
    batches = -(-SHD_TRAIN_SAMPLES // SHD_PAPER_BATCH)
    return {"batches": batches, **{f"{k}_epoch_s": med[k] * batches for k in kinds}}


def profile_shd(rows=20):
    from torch.profiler import ProfilerActivity, profile

    cfg = WORKLOADS["shd"]
    x, y = make_inputs(cfg, (700,))
    model = build(cfg, "stllr")
    opt = torch.optim.Adam(model.parameters(), lr=1e-6)
    sequence(model, opt, x, y, "deferred", cfg["window"])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        sequence(model, opt, x, y, "deferred", cfg["window"])
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def _parse_chunks(text):
    try:
        chunks = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        chunks = []
    if not chunks or any(c < 1 for c in chunks):
        raise argparse.ArgumentTypeError(f"expected chunk sizes >= 1 like 1,4,16,90, got {text!r}")
    return chunks


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", choices=sorted(WORKLOADS), default=None)
    ap.add_argument(
        "--chunks",
        type=_parse_chunks,
        default=None,
        help="also: time and memory held per chunk size on the SHD net, e.g. 1,4,16,90",
    )
    ap.add_argument(
        "--projection",
        action="store_true",
        help="also: the SHD net's first-layer forward GEMMs per step vs an input projection "
        "precomputed for the sequence",
    )
    ap.add_argument(
        "--epoch", action="store_true", help="also: seconds per SHD epoch at batch 128 (estimate)"
    )
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
    chunks = chunk_table(args.chunks, args.repeats) if args.chunks else None
    epoch = epoch_estimate(args.repeats) if args.epoch else None
    projection = projection_check(args.repeats) if args.projection else None
    # the machine's throughput: the best of a measurement before and after (load varies)
    gemm = max(gemm_before, M.gemm_throughput(2048, repeats=10))
    for r in results:
        for kind in ("stllr", "deferred"):
            r[f"{kind}_gmac_per_s"] = r[f"{kind}_macs"] / r[f"{kind}_s"] / 1e9
            r[f"{kind}_gemm_fraction"] = r[f"{kind}_macs"] / r[f"{kind}_s"] / gemm
    shd = next((r for r in results if r["workload"] == "shd"), None)
    summary = {
        "machine": M.machine_description(),
        "gemm_gmac_per_s": gemm / 1e9,
        "load_average_before": load_before,
        "load_average_after": M.load_average(),
        "default_chunk": DEFAULT_CHUNK,
    }
    if shd is not None:
        summary["target_outer_10x"] = shd["outer_over_deferred"] >= 10
        summary["target_not_slower_than_bptt"] = shd["bptt_over_deferred"] >= 1.0
        summary["target_gemm_40_percent"] = shd["deferred_gemm_fraction"] >= 0.4
    if args.json:
        out = {
            "summary": summary,
            "results": results,
            "chunks": chunks,
            "epoch": epoch,
            "projection": projection,
        }
        print(json.dumps(out, indent=1))
        return 0
    print(
        f"machine: {summary['machine']}; 2048^3 matmul: {gemm / 1e9:.1f} GMAC/s; "
        f"1-min load average before/after: {load_before}/{summary['load_average_after']}"
    )
    print(
        f"{'workload':<8} {'B':>3} {'T':>4} {'win':>4} | {'deferred':>8} {'per step':>8} {'BPTT':>7} "
        f"{'outer':>7} | {'BPTT/def':>8} {'BPTT/step':>9} {'outer/def':>9} | {'GMAC':>5} "
        f"{'def GEMM%':>9} {'step GEMM%':>10} | grad diff outer, deferred"
    )
    for r in results:
        print(
            f"{r['workload']:<8} {r['B']:>3} {r['T']:>4} {r['window']:>4} | {r['deferred_s']:8.3f} "
            f"{r['stllr_s']:8.3f} {r['bptt_s']:7.3f} {r['outer_s']:7.3f} | "
            f"{r['bptt_over_deferred']:7.2f}x {r['bptt_over_stllr']:8.2f}x "
            f"{r['outer_over_deferred']:8.1f}x | {r['deferred_macs'] / 1e9:5.2f} "
            f"{100 * r['deferred_gemm_fraction']:8.1f}% {100 * r['stllr_gemm_fraction']:9.1f}% | "
            f"{r['grad_rel_diff_outer_vs_gemm']:.1e}, {r['grad_rel_diff_deferred_vs_per_step']:.1e}"
        )
    print(
        "seconds: median training time per sequence (forward, rule/BPTT backward, Adam step); "
        f"deferred: chunk {DEFAULT_CHUNK} (the training loop's default); per step: chunk 0; "
        "GMAC: matmul/conv MACs the S-TLLR sequence executes (stllr.measure.MacCounter; the same "
        "deferred and per step); grad diff: max relative difference of the float32 weight "
        "gradients of one sequence from the per-step form"
    )
    for r in results:
        print(
            f"{r['workload']}: float32 weight gradients vs a float64 run (max relative error): per "
            f"step {r['grad_rel_err_per_step_vs_float64']:.1e}, deferred "
            f"{r['grad_rel_err_deferred_vs_float64']:.1e}"
        )
    if chunks is not None:
        print(
            f"SHD net, memory held by the deferral per chunk (BPTT twin: {chunks['bptt_s']:.3f} s, "
            f"saved {chunks['bptt_saved_peak_bytes'] / 2**20:.1f} MiB; per step: "
            f"{chunks['per_step_s']:.3f} s, nothing held):"
        )
        print(f"{'chunk':>6} | {'s / seq':>8} | {'held MiB':>8} | {'of BPTT saved':>13}")
        for row in chunks["rows"]:
            print(
                f"{row['chunk']:>6} | {row['s']:8.3f} | {row['held_bytes'] / 2**20:8.2f} | "
                f"{100 * row['held_bytes'] / chunks['bptt_saved_peak_bytes']:12.1f}%"
            )
    if projection is not None:
        print(
            f"SHD net, first layer's forward GEMMs over a sequence: per step "
            f"{1e3 * projection['per_step_s']:.1f} ms; input projection precomputed "
            f"{1e3 * projection['precomputed_s']:.1f} ms (one [T B, 700] GEMM + 100 recurrent ones)"
        )
    if epoch is not None:
        print(
            f"SHD epoch at batch {SHD_PAPER_BATCH} ({epoch['batches']} batches of sequences, data "
            f"loading aside): deferred {epoch['deferred_epoch_s']:.1f} s, per step "
            f"{epoch['stllr_epoch_s']:.1f} s, BPTT {epoch['bptt_epoch_s']:.1f} s"
        )
    if shd is not None:
        ok = {True: "met", False: "MISSED"}
        print(
            f"targets (shd, deferred): outer-product >= 10x slower: "
            f"{ok[summary['target_outer_10x']]} ({shd['outer_over_deferred']:.1f}x); "
            f"no slower than BPTT: {ok[summary['target_not_slower_than_bptt']]} "
            f"(BPTT/S-TLLR {shd['bptt_over_deferred']:.2f}x); >= 40% of GEMM throughput: "
            f"{ok[summary['target_gemm_40_percent']]} ({100 * shd['deferred_gemm_fraction']:.1f}%)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
