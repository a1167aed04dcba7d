"""``stllr memory``: measured and analytic memory / MACs of S-TLLR vs its BPTT twin.

    python -m stllr memory --arch stllr_shd_net --T 10 25 50 100 200 300 [--delay-ls K]
                           [--batch-size B] [--json]

For each T, one training sequence of the S-TLLR arch (learning window ``min(K, T)`` steps) and
one of its BPTT twin (loss on the summed logits) are run on random spike inputs; the command
prints the peak bytes saved for backward (activations), the paper's analytic memory (Eq. 18-19),
their ratios, and the MACs executed (counted from the matmuls/convolutions, forward + backward)
beside the paper's analytic MACs (Eq. 20-21). ``--json`` prints the same rows as a JSON list.

The lead's ``stllr/cli.py`` registers the command with :func:`add_memory_subcommand` and calls
``args.func(args)``; ``python -m stllr.cli.memory memory ...`` runs it standalone."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Optional, Sequence

from stllr._checks import check_positive_int

__all__ = [
    "add_memory_subcommand",
    "run_memory",
    "format_rows",
    "twin_arch",
    "main",
    "DEFAULT_DELAY_LS",
    "DEFAULT_TS",
]

#: The paper's learning window T - T_l per dataset (paper Table 3 / rule.md "Training modes").
DEFAULT_DELAY_LS = {"shd": 90, "dvsgesture": 5, "cifar10dvs": 5, "nmnist": 5, "ncaltech101": 5}


#: Fig. 3's sequence lengths.
DEFAULT_TS = (10, 25, 50, 100, 200, 300)


PROG = "stllr memory"


class _UsageError(Exception):
    pass


def _fail(msg: str) -> None:
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def _positive_int(text, name: str) -> int:
    """``text`` (a command-line word) as a positive integer, else a usage error quoting it."""
    try:
        return check_positive_int(int(str(text), 10), name)
    except ValueError:
        raise _UsageError(f"{name}: expected a positive integer, got {text!r}") from None


def twin_arch(arch: str) -> str:
    """The other member of an S-TLLR / BPTT pair (registry ``twin``, else the name with the
    ``stllr`` and ``bptt`` tokens swapped)."""
    from stllr import models

    try:
        spec = models.get_model_spec(arch)
        twin = getattr(spec, "twin", None)
        if twin:
            return twin
        arch = spec.arch
    except ValueError:
        raise
    tokens = arch.split("_")
    swapped = ["bptt" if t == "stllr" else "stllr" if t == "bptt" else t for t in tokens]
    twin = "_".join(swapped)
    if twin == arch or twin not in models.MODELS:
        raise ValueError(f"arch {arch!r} has no BPTT/S-TLLR twin in the registry")
    return twin


def add_memory_subcommand(subparsers) -> argparse.ArgumentParser:
    """Register ``memory`` on an ``argparse`` subparsers object; sets ``func=run_memory``."""
    p = subparsers.add_parser(
        "memory",
        help="measured and analytic memory and MACs, S-TLLR vs BPTT, per T",
        description="For each T: peak bytes saved for backward (measured) and the paper's analytic "
        "memory (Eq. 18-19), their BPTT/S-TLLR ratio, and MACs executed vs analytic "
        "(Eq. 20-21), for an S-TLLR arch and its BPTT twin.",
    )
    p.add_argument(
        "--arch", required=True, help="an S-TLLR or BPTT arch of the registry (its twin is found)"
    )
    p.add_argument(
        "--T",
        nargs="+",
        default=[str(t) for t in DEFAULT_TS],
        metavar="T",
        help="sequence lengths (default: %(default)s, the paper's Fig. 3)",
    )
    p.add_argument(
        "--delay-ls",
        default=None,
        metavar="K",
        help="learning window T - T_l (clamped to T); default: the paper's for the dataset "
        f"({', '.join(f'{k} {v}' for k, v in DEFAULT_DELAY_LS.items())}), else all T steps",
    )
    p.add_argument(
        "--batch-size", default="4", metavar="B", help="batch size of the measured run (default 4)"
    )
    p.add_argument(
        "--input-shape",
        nargs="+",
        default=None,
        metavar="N",
        help="one sample's input shape, e.g. 700 or 2 32 32 (default: the arch's dataset)",
    )
    p.add_argument("--num-classes", default=None, metavar="C", help="default: the arch's dataset")
    p.add_argument(
        "--factors",
        nargs=4,
        default=None,
        metavar="F",
        help="lambda_post lambda_pre alpha_post alpha_pre of the S-TLLR model (default: the CLI default)",
    )
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--seed", default="0", help="seed of the weights and the random inputs")
    p.add_argument(
        "--peak",
        action="store_true",
        help="also measure peak memory (GPU allocator; CPU peak RSS, approximate)",
    )
    p.add_argument(
        "--json", action="store_true", help="print a JSON list of rows instead of the table"
    )
    p.set_defaults(func=run_memory)
    return p


def _resolve(args):
    from stllr import models

    try:
        spec = models.get_model_spec(args.arch)
    except ValueError as e:
        raise _UsageError(str(e).splitlines()[0]) from None
    try:
        twin = twin_arch(spec.arch)
    except ValueError as e:
        raise _UsageError(str(e)) from None
    stllr_arch, bptt_arch = (spec.arch, twin) if spec.is_stllr else (twin, spec.arch)
    Ts = [_positive_int(t, "--T") for t in args.T]
    batch = _positive_int(args.batch_size, "--batch-size")
    seed = int(args.seed) if str(args.seed).lstrip("-").isdigit() else None
    if seed is None:
        raise _UsageError(f"--seed: expected an integer, got {args.seed!r}")
    if args.delay_ls is not None:
        delay = _positive_int(args.delay_ls, "--delay-ls")
    else:
        delay = DEFAULT_DELAY_LS.get(getattr(spec, "dataset", ""), None)
    input_shape = None
    if args.input_shape is not None:
        input_shape = tuple(_positive_int(s, "--input-shape") for s in args.input_shape)
    num_classes = (
        None if args.num_classes is None else _positive_int(args.num_classes, "--num-classes")
    )
    factors = None
    if args.factors is not None:
        try:
            factors = [float(f) for f in args.factors]
        except ValueError:
            raise _UsageError(f"--factors: expected 4 numbers, got {args.factors}") from None
    return stllr_arch, bptt_arch, Ts, batch, seed, delay, input_shape, num_classes, factors


def _build(arch, num_classes, input_shape, factors, seed, device):
    import torch

    from stllr import models

    torch.manual_seed(seed)
    kw = {}
    if factors is not None and models.get_model_spec(arch).is_stllr:
        kw["factors"] = factors
    try:
        model = models.build_model(arch, num_classes=num_classes, input_shape=input_shape, **kw)
    except ValueError as e:
        raise _UsageError(str(e).splitlines()[0]) from None
    return model.to(device).train()


def _batch_collisions(model, batch: int) -> list:
    """Weight row counts equal to the batch size (saved weight-sized tensors would be counted as
    activations)."""
    out = set()
    for p in model.parameters():
        if p.dim() >= 2 and p.shape[0] == batch:
            out.add(int(p.shape[0]))
    return sorted(out)


def run_memory(args) -> int:
    """Entry point of ``stllr memory`` (``args`` from :func:`add_memory_subcommand`)."""
    import torch

    from stllr import measure

    try:
        stllr_arch, bptt_arch, Ts, batch, seed, delay, input_shape, num_classes, factors = _resolve(
            args
        )
        if str(args.device).startswith("cuda") and not torch.cuda.is_available():
            raise _UsageError("--device cuda: CUDA is not available on this machine")
        device = torch.device(args.device)
        s_model = _build(stllr_arch, num_classes, input_shape, factors, seed, device)
        b_model = _build(bptt_arch, num_classes, input_shape, None, seed, device)
    except _UsageError as e:
        _fail(str(e))
    except RuntimeError as e:  # e.g. an unknown device string
        _fail(str(e).splitlines()[0])
    if _batch_collisions(b_model, batch) or _batch_collisions(s_model, batch):
        print(
            f"{PROG}: warning: --batch-size {batch} equals a layer width; weight-sized saved tensors "
            "of that layer count as activations (choose another batch size)",
            file=sys.stderr,
        )
    rows = measure.compare(
        s_model, b_model, Ts, window=delay, batch_size=batch, seed=seed, peak=args.peak
    )
    for r in rows:
        r["stllr_arch"], r["bptt_arch"] = stllr_arch, bptt_arch
    if args.json:
        print(json.dumps(rows, indent=1, default=_json_default))
    else:
        print(format_rows(rows, stllr_arch, bptt_arch, delay, peak=args.peak))
    return 0


def _json_default(o):
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    raise TypeError(type(o).__name__)


def _bytes(n) -> str:
    n = float(n)
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3f} {unit}"
    return f"{n:.0f} B"


def _macs(n) -> str:
    n = float(n)
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3f}{unit}"
    return f"{n:.0f}"


COLUMNS = (
    "T",
    "window",
    "BPTT mem an.",
    "BPTT mem meas.",
    "S-TLLR mem an.",
    "S-TLLR mem meas.",
    "mem ratio an.",
    "mem ratio meas.",
    "BPTT MAC an.",
    "BPTT MAC meas.",
    "S-TLLR MAC an.",
    "S-TLLR MAC meas.",
    "MAC ratio an.",
    "MAC ratio meas.",
)


def row_cells(r: dict) -> list:
    """The table cells of one JSON row (the table is built from exactly these)."""
    return [
        str(r["T"]),
        str(r["window"]),
        _bytes(r["bptt_analytic"]),
        _bytes(r["bptt_saved_bytes"]),
        _bytes(r["stllr_analytic"]),
        _bytes(r["stllr_saved_bytes"]),
        f"{r['memory_ratio_analytic']:.2f}",
        f"{r['memory_ratio']:.2f}",
        _macs(r["bptt_macs_analytic"]),
        _macs(r["bptt_macs"]),
        _macs(r["stllr_macs_analytic"]),
        _macs(r["stllr_macs"]),
        f"{r['mac_ratio_analytic']:.2f}",
        f"{r['mac_ratio']:.2f}",
    ]


def format_rows(
    rows: Sequence[dict],
    stllr_arch: str = "",
    bptt_arch: str = "",
    delay: Optional[int] = None,
    peak: bool = False,
) -> str:
    """The human-readable table of ``stllr memory`` for the rows of :func:`stllr.measure.compare`."""
    if not rows:
        return "(no rows)"
    r0 = rows[0]
    window = f"min({delay}, T)" if delay is not None else "all T"
    lines = [
        f"S-TLLR {stllr_arch} vs BPTT {bptt_arch}; batch {r0['batch_size']}; learning window {window} steps; "
        f"alpha_post {r0['alpha_post']:g}",
        "mem: bytes saved for backward (peak, activations) measured vs paper Eq. 18-19 (x batch x bytes/value); "
        "MAC: executed (forward + backward matmuls/convs) vs paper Eq. 20-21 (x batch)",
    ]
    cells = [list(COLUMNS)] + [row_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    for c in cells:
        lines.append("  ".join(v.rjust(w) for v, w in zip(c, widths)))
    if peak and "stllr_peak" in r0:
        lines.append(
            "peak memory increase during the sequence ("
            + r0["stllr_peak"]["method"]
            + (", approximate" if r0["stllr_peak"]["approximate"] else "")
            + "):"
        )
        for r in rows:
            lines.append(
                f"  T={r['T']}: BPTT {_bytes(r['bptt_peak']['increase_bytes'])}, "
                f"S-TLLR {_bytes(r['stllr_peak']['increase_bytes'])}"
            )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Standalone entry: ``python -m stllr.cli.memory memory --arch ...``."""
    parser = argparse.ArgumentParser(prog="stllr")
    sub = parser.add_subparsers(dest="command", required=True)
    add_memory_subcommand(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
