"""Memory vs T in the paper's Fig. 3 setup: S-TLLR flat, BPTT linear.

Network (paper Fig. 3): MLP 1000-1000-1000-1000-1 (input dim 1000, three spiking hidden layers of
1000, one output), loss at the last step only. S-TLLR: three LinearSTLLR layers (factors
[0.2, 0.75, -1, 1], the reference CLI default) + LeakyReadout; learning window 1 step (the last).
BPTT: the twins (LinearLIF + LeakyIntegrator), graph kept through all T steps, loss on the last
step's output. Loss: mean squared output (the paper's figure measures memory, not learning).

Measured for each T in {10, 25, 50, 100, 200, 300} (S-TLLR also at 1000):
- bytes saved for backward (``stllr.measure.SavedTensorTracker``; peak, activations and all),
- the paper's analytic memory (Eq. 18-19) at this batch size, float32,
- the peak memory increase of the sequence: GPU allocator peak if CUDA is available (the figure's
  quantity, batch 512), else the process peak RSS on CPU (approximate).

    python benchmarks/bench_memory.py [--batch-size 16] [--device cpu|cuda] [--threads 2] [--json]

Checks printed at the end: BPTT / S-TLLR saved-bytes ratio at T=100 (target >= 40x) and the
S-TLLR saved bytes constant within 1% from T=10 to T=1000.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from stllr.measure import analytic, machine, sequence
from stllr.studies.memory_and_compute import Fig3MLP

TS = (10, 25, 50, 100, 200, 300)
T_CONSTANCY = 1000
DIMS = (1000, 1000, 1000, 1000, 1)
FACTORS = (0.2, 0.75, -1.0, 1.0)


def mse(out, target):
    return ((out - target) ** 2).mean()


def run(batch_size: int, device: torch.device, Ts, t_const: int, peak: bool = True):
    torch.manual_seed(0)
    s_model = Fig3MLP(True, DIMS, FACTORS).to(device)
    b_model = Fig3MLP(False, DIMS, FACTORS).to(device)
    b_model.load_state_dict(s_model.state_dict(), strict=False)
    shapes = analytic.model_shapes(s_model)
    target = torch.zeros(batch_size, 1, device=device)
    inputs = sequence._random_inputs((DIMS[0],), batch_size, 0, torch.float32, device)
    rows = []
    for T in sorted(set(Ts) | {t_const}):
        ana = analytic.analytic_costs(shapes, T, 1, -1.0, batch_size, 4)
        row = {
            "T": T,
            "stllr_analytic": ana["stllr_memory_bytes"],
            "bptt_analytic": ana["bptt_memory_bytes"],
        }
        for name, model, mode in (("stllr", s_model, "stllr"), ("bptt", b_model, "bptt")):
            if name == "bptt" and T not in Ts:
                continue
            m = sequence.measure_sequence(
                model,
                inputs,
                target,
                steps=T,
                mode=mode,
                window=1,
                loss_fn=mse,
                bptt_loss="last",
                macs=False,
                peak=peak,
            )
            model.reset_state()
            model.zero_grad(set_to_none=True)
            row[f"{name}_saved_bytes"] = m.saved.peak_activation_bytes
            row[f"{name}_saved_bytes_all"] = m.saved.peak_bytes
            row[f"{name}_seconds"] = round(m.seconds, 3)
            if peak:
                row[f"{name}_peak_increase"] = m.peak.increase_bytes
                row["peak_method"] = m.peak.method + (
                    " (approximate)" if m.peak.approximate else ""
                )
        if "bptt_saved_bytes" in row:
            row["memory_ratio"] = row["bptt_saved_bytes"] / row["stllr_saved_bytes"]
        rows.append(row)
    return rows


def mb(n):
    return f"{n / 1e6:9.3f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--batch-size", type=int, default=None, help="default 512 on GPU (as the paper), 16 on CPU"
    )
    ap.add_argument("--device", default=None, help="cuda if available, else cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--T", type=int, nargs="+", default=list(TS))
    ap.add_argument("--no-peak", action="store_true", help="skip the peak-memory measurement")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    batch = args.batch_size or (512 if device.type == "cuda" else 16)
    t0 = time.time()
    rows = run(batch, device, args.T, T_CONSTANCY, peak=not args.no_peak)
    by_t = {r["T"]: r for r in rows}
    ratio100 = by_t[100]["memory_ratio"] if 100 in by_t and "memory_ratio" in by_t[100] else None
    s_vals = [r["stllr_saved_bytes"] for r in rows]
    spread = (max(s_vals) - min(s_vals)) / min(s_vals)
    summary = {
        "machine": machine.machine_description(),
        "load_average_after": machine.load_average(),
        "device": str(device),
        "batch_size": batch,
        "seconds": round(time.time() - t0, 1),
        "ratio_at_T100": ratio100,
        "stllr_spread_T10_T1000": spread,
        "target_ratio_ge_40": None if ratio100 is None else ratio100 >= 40,
        "target_constant_within_1pct": spread <= 0.01,
    }
    if args.json:
        print(json.dumps({"summary": summary, "rows": rows}, indent=1))
        return 0
    print(
        f"Fig. 3 setup: MLP {'-'.join(map(str, DIMS))}, loss at the last step, batch {batch}, {device}"
    )
    print(f"machine: {summary['machine']}")
    print(
        "MB (1e6 bytes). saved = peak bytes saved for backward (activations; 'all' adds weight-sized tensors);"
        " analytic = paper Eq. 18-19 x batch x 4 B"
    )
    hdr = (
        f"{'T':>5} {'S-TLLR saved':>12} {'all':>9} {'analytic':>9} | {'BPTT saved':>10} {'all':>9} "
        f"{'analytic':>9} | {'ratio':>7} {'T/2':>6}"
    )
    if not args.no_peak:
        hdr += f" | {'peak+ S-TLLR':>12} {'peak+ BPTT':>10}"
    print(hdr)
    for r in rows:
        line = (
            f"{r['T']:>5} {mb(r['stllr_saved_bytes']):>12} {mb(r['stllr_saved_bytes_all'])} "
            f"{mb(r['stllr_analytic'])} | "
        )
        if "bptt_saved_bytes" in r:
            line += (
                f"{mb(r['bptt_saved_bytes']):>10} {mb(r['bptt_saved_bytes_all'])} {mb(r['bptt_analytic'])} | "
                f"{r['memory_ratio']:7.1f} {r['T'] / 2:6.1f}"
            )
        else:
            line += f"{'-':>10} {'-':>9} {mb(r['bptt_analytic'])} | {'-':>7} {r['T'] / 2:6.1f}"
        if not args.no_peak:
            line += f" | {mb(r['stllr_peak_increase']):>12} " + (
                f"{mb(r['bptt_peak_increase']):>10}" if "bptt_peak_increase" in r else f"{'-':>10}"
            )
        print(line)
    if not args.no_peak:
        print(f"peak+: peak memory increase during the sequence, {rows[0]['peak_method']}")
    if ratio100 is not None:
        print(
            f"BPTT / S-TLLR saved bytes at T=100: {ratio100:.1f}x (target >= 40x: "
            f"{'met' if ratio100 >= 40 else 'MISSED'})"
        )
    print(
        f"S-TLLR saved bytes, T=10..{T_CONSTANCY}: spread {100 * spread:.3f}% (target <= 1%: "
        f"{'met' if spread <= 0.01 else 'MISSED'})"
    )
    print(f"total {summary['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
