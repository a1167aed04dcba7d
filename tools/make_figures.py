"""Regenerate every figure: run each notebook in notebooks/ through papermill with its defaults
(or the paper-scale settings with --full), write executed copies to build/notebooks/, the figures
to figures/, and figures/MANIFEST.json describing what made them.

    python tools/make_figures.py [--full] [--data-path DIR] [--device cuda] [--only 02_stdp_window]

A failing notebook stops the run with a non-zero exit naming the notebook and the cell.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
BUILD = ROOT / "build" / "notebooks"
FIGURES = ROOT / "figures"


def figures_of(stem: str) -> list[str]:
    prefix = stem.split("_", 1)[0] + "_"
    return sorted(p.name for p in FIGURES.glob(prefix + "*") if p.suffix in (".png", ".svg", ".gif"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="paper-scale run (real data, long training)")
    ap.add_argument("--data-path", default=None, help="folder with the real datasets (with --full)")
    ap.add_argument("--device", default=None, help="torch device for --full runs, e.g. cuda")
    ap.add_argument("--only", nargs="*", default=None, help="notebook names (stems) to run")
    args = ap.parse_args(argv)

    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    import stllr

    notebooks = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        notebooks = [nb for nb in notebooks if nb.stem in set(args.only)]
        missing = set(args.only) - {nb.stem for nb in notebooks}
        if missing:
            print(f"--only: unknown notebook(s) {sorted(missing)}", file=sys.stderr)
            return 2
    BUILD.mkdir(parents=True, exist_ok=True)
    FIGURES.mkdir(exist_ok=True)
    params = {"FIGURES_DIR": str(FIGURES)}
    if args.full:
        params["FULL"] = True
    if args.data_path:
        params["DATA_PATH"] = str(Path(args.data_path).resolve())
    if args.device:
        params["DEVICE"] = args.device
    env_backup = os.environ.pop("STLLR_FIGURES_DIR", None)  # the notebooks must write into figures/
    manifest_path = FIGURES / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"notebooks": {}}
    try:
        for i, nb in enumerate(notebooks, 1):
            t0 = time.perf_counter()
            print(f"[{i}/{len(notebooks)}] {nb.name} ...", flush=True)
            try:
                pm.execute_notebook(str(nb), str(BUILD / nb.name), parameters=params, cwd=str(NOTEBOOKS),
                                    kernel_name="python3", progress_bar=False)
            except PapermillExecutionError as err:
                print(f"FAILED: {nb.name}, cell {err.cell_index} (execution count {err.exec_count}): "
                      f"{err.ename}: {err.evalue}", file=sys.stderr)
                return 1
            seconds = time.perf_counter() - t0
            manifest["notebooks"][nb.stem] = {
                "notebook": f"notebooks/{nb.name}",
                "executed_copy": f"build/notebooks/{nb.name}",
                "parameters": {k: v for k, v in params.items() if k != "FIGURES_DIR"},
                "stllr_version": stllr.__version__,
                "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"),
                "seconds": round(seconds, 1),
                "figures": figures_of(nb.stem),
            }
            print(f"[{i}/{len(notebooks)}] {nb.name} done in {seconds:.0f} s, "
                  f"{len(manifest['notebooks'][nb.stem]['figures'])} figure files", flush=True)
    finally:
        if env_backup is not None:
            os.environ["STLLR_FIGURES_DIR"] = env_backup
    manifest["notebooks"] = dict(sorted(manifest["notebooks"].items()))
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {manifest_path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
