"""Runs the notebooks' claims outside nbval: their spread over seeds and kernels, and mutations.

    python tools/claim_runs.py spread [--only 00_quickstart ...] [--seeds 0 1 2] [--kernels default avx2]
    python tools/claim_runs.py mutate [--only ...] [--mutations alpha_pre_zero zero_signal ...]
    python tools/claim_runs.py report build/claims/*.json     # markdown tables for docs/claims.md

Each run executes a copy of a notebook top to bottom in a fresh kernel (cells after an error still
run), with ``STLLR_CLAIMS_LOG`` set, so every claim a notebook checks (:mod:`stllr.analysis.claims`) is
recorded with its measured values.

``spread`` runs each notebook with every ``SEED`` and every kernel variant (``default``; ``avx2``:
``ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=COMPATIBLE``) and prints, per claim, the measured values of every
run and the smallest margin to its threshold: the evidence behind the tolerances in ``docs/claims.md``.

``mutate`` runs each notebook once per deliberate breakage of the rule (``tools/mutations``:
``alpha_pre = 0``, a wrong ``lambda_pre``, a zero learning signal, BPTT instead of S-TLLR) and prints
which claims caught it (failed), and which cells raised something else.

Results are also written as JSON (``--out``, default ``build/claims/<command>.json``); ``report``
turns any number of them into the tables of ``docs/claims.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from make_figures import environ, kernel_config  # tools/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
OUT = ROOT / "build" / "claims"
TRAINING_NOTEBOOKS = [
    "00_quickstart",
    "07_factor_choices",
    "08_accuracy_vs_bptt",
    "06_learning_signals",
    "09_gradient_alignment",
    "11_conv_event_frames",
    "12_online_and_your_data",
]
KERNELS = {"default": {}, "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE"}}
MUTATIONS = ("alpha_pre_zero", "lambda_pre_swapped", "zero_signal", "bptt_instead")


def run_notebook(
    stem: str, seed: int | None = None, env: dict | None = None, timeout: int = 900
) -> dict:
    """Execute notebooks/<stem>.ipynb in a fresh kernel; returns its claims and cell errors."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / f"{stem}.ipynb", as_version=4)
    if seed is not None:
        at = next(
            (i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])), None
        )
        if at is None:
            raise SystemExit(f"{stem}: no cell tagged 'parameters' to override SEED in")
        nb.cells.insert(at + 1, nbformat.v4.new_code_cell(f"SEED = {int(seed)}"))
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "claims.jsonl"
        t0 = time.perf_counter()
        with environ(
            STLLR_CLAIMS_LOG=str(log),
            STLLR_NOTEBOOK=stem,
            STLLR_FIGURES_DIR=str(Path(tmp) / "fig"),
            OMP_NUM_THREADS="2",
            OMP_WAIT_POLICY="PASSIVE",
            **(env or {}),
        ):
            NotebookClient(
                nb,
                timeout=timeout,
                kernel_name="python3",
                allow_errors=True,
                resources={"metadata": {"path": str(NOTEBOOKS)}},
                config=kernel_config(Path(tmp)),
            ).execute()
        claims = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    errors = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors.append(
                    {
                        "cell": i,
                        "ename": out["ename"],
                        "evalue": out["evalue"].splitlines()[0][:200],
                    }
                )
    return {
        "notebook": stem,
        "seed": seed,
        "env": env or {},
        "seconds": round(time.perf_counter() - t0, 1),
        "claims": claims,
        "errors": errors,
    }


def spread(args) -> dict:
    runs = []
    for stem in args.only or TRAINING_NOTEBOOKS:
        for kernel in args.kernels:
            for seed in args.seeds:
                r = run_notebook(stem, seed, KERNELS[kernel])
                r["kernel"] = kernel
                runs.append(r)
                bad = [c["text"] for c in r["claims"] if not c["holds"]]
                print(
                    f"{stem} seed {seed} {kernel}: {len(r['claims'])} claims, {len(bad)} failed, "
                    f"{len(r['errors'])} cell errors, {r['seconds']:.0f} s",
                    flush=True,
                )
                for text in bad:
                    print(f"    FAILED: {text}", flush=True)
    print("\nper claim: smallest margin over all runs, and the measured values")
    by_claim: dict = {}
    for r in runs:
        for c in r["claims"]:
            by_claim.setdefault((r["notebook"], c["text"]), []).append((r["seed"], r["kernel"], c))
    for (stem, text), items in by_claim.items():
        margins = [c["slack"] for _, _, c in items if c.get("slack") is not None]
        low = f"{min(margins):+.3g}" if margins else "-"
        print(
            f"{stem}: {text}\n    min margin {low}; "
            + "; ".join(f"seed {s} {k}: {c['measured']}" for s, k, c in items)
        )
    return {"runs": runs}


def mutate(args) -> dict:
    runs = []
    env_base = {
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "tools" / "mutations"), os.environ.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
    }
    for stem in args.only or TRAINING_NOTEBOOKS:
        for mutation in args.mutations:
            r = run_notebook(
                stem, None, {**env_base, "STLLR_MUTATION": mutation} if mutation != "none" else {}
            )
            r["mutation"] = mutation
            runs.append(r)
            failed = [c["text"] for c in r["claims"] if not c["holds"]]
            verdict = "CAUGHT" if failed else ("errors only" if r["errors"] else "NOT CAUGHT")
            if mutation == "none":
                verdict = "all claims hold" if not failed and not r["errors"] else "BASELINE FAILS"
            print(
                f"{stem} / {mutation}: {verdict}: {len(failed)} of {len(r['claims'])} claims failed, "
                f"{len(r['errors'])} cell errors, {r['seconds']:.0f} s",
                flush=True,
            )
            for text in failed:
                print(f"    failed: {text}", flush=True)
            for e in r["errors"]:
                if e["ename"] != "ClaimError":
                    print(f"    cell {e['cell']}: {e['ename']}: {e['evalue']}", flush=True)
    return {"runs": runs}


def report(paths) -> str:
    """Markdown: per claim, the measured value of every spread run and the smallest margin; per
    notebook and mutation, the claims that failed."""
    runs = [r for p in paths for r in json.loads(Path(p).read_text())["runs"]]
    spread_runs = [r for r in runs if "kernel" in r]
    mutate_runs = [r for r in runs if "mutation" in r]
    out = []
    if spread_runs:
        out += [
            "| notebook | claim | runs (seed/kernel: measured) | smallest margin |",
            "|---|---|---|---|",
        ]
        by_claim: dict = {}
        for r in spread_runs:
            for c in r["claims"]:
                by_claim.setdefault((r["notebook"], c["text"]), []).append((r, c))
        for (stem, text), items in by_claim.items():
            margins = [c["slack"] for _, c in items if c.get("slack") is not None]
            held = all(c["holds"] for _, c in items)
            runs_txt = "<br>".join(f"{r['seed']}/{r['kernel']}: {c['measured']}" for r, c in items)
            out.append(
                f"| {stem} | {text}{'' if held else ' **(failed in a run)**'} | {runs_txt} | "
                f"{min(margins):+.3g} |"
                if margins
                else f"| {stem} | {text} | {runs_txt} | - |"
            )
    if mutate_runs:
        out += [
            "",
            "| notebook | mutation | claims that failed (caught it) | other errors |",
            "|---|---|---|---|",
        ]
        for r in mutate_runs:
            failed = [c["text"] for c in r["claims"] if not c["holds"]]
            errs = sorted({f"{e['ename']}" for e in r["errors"] if e["ename"] != "ClaimError"})
            cell = (
                "<br>".join(failed)
                if failed
                else ("none" if r["mutation"] != "none" else f"none: all {len(r['claims'])} hold")
            )
            out.append(f"| {r['notebook']} | {r['mutation']} | {cell} | {', '.join(errs) or '-'} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    rp = sub.add_parser("report")
    rp.add_argument("files", nargs="+", help="JSON files written by spread / mutate")
    for name in ("spread", "mutate"):
        p = sub.add_parser(name)
        p.add_argument(
            "--out",
            default=None,
            help="JSON file for the results (default build/claims/<command>.json)",
        )
        p.add_argument(
            "--only",
            nargs="*",
            default=None,
            help="notebook stems (default: the training notebooks)",
        )
        if name == "spread":
            p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
            p.add_argument(
                "--kernels", nargs="*", default=["default", "avx2"], choices=sorted(KERNELS)
            )
        else:
            p.add_argument(
                "--mutations", nargs="*", default=["none", *MUTATIONS], choices=["none", *MUTATIONS]
            )
    args = ap.parse_args(argv)
    if args.command == "report":
        print(report(args.files))
        return 0
    unknown = set(args.only or []) - {p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")}
    if unknown:
        print(f"--only: unknown notebook(s) {sorted(unknown)}", file=sys.stderr)
        return 2
    result = spread(args) if args.command == "spread" else mutate(args)
    path = Path(args.out) if args.out else OUT / f"{args.command}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
