"""Regenerate the notebooks' stored outputs and every figure in one run: execute each notebook in
notebooks/ through papermill with its defaults, write the executed notebook over the stored one
(cleaned of papermill's per-cell timing metadata), its figures into figures/, and record in
figures/MANIFEST.json which run made them.

    python tools/make_figures.py [--only 03_stdp_window ...] [--out-dir DIR]
    python tools/make_figures.py --full [--data-path DIR] [--device cuda]     # -> build/full/
    python tools/make_figures.py --full --cluster tcp://scheduler:8786 --only 07_factor_choices

Provenance: every run gets a run id (UTC time + random suffix). It is written into each executed
notebook's metadata (``metadata["stllr"]["run_id"]``) and into that notebook's MANIFEST.json entry,
with the sha256 of every figure file the notebook wrote in that run. ``stllr.plotting.style.savefig`` shows
the saved PNG file itself in the notebook, so each PNG (and the GIF, shown from its file) is
byte-identical to an image embedded in the notebook; tests/test_figures_provenance.py checks it.

A notebook runs with ``STLLR_FIGURES_DIR`` pointing at a fresh staging folder; only when it
succeeds are its old figures (same ``NN_`` prefix) replaced and the stored notebook overwritten,
so a failing notebook leaves notebooks/, figures/ and its manifest entry as they were. Its
executed copy, with the traceback, stays under build/make_figures/<run id>/.

The default run writes over the committed notebooks/ and figures/. A run with parameters
(--full, --data-path, --device) is injected with them by papermill and writes to build/full/
unless --out-dir says otherwise: its outputs are not the committed, nbval-checked ones.
``--cluster ADDRESS`` (a Dask scheduler) is injected as ``CLUSTER`` into the notebooks whose
parameters cell has that name (their sweeps then train on the cluster's workers; the others run
as without it); see docs/experiments.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
STAGING = ROOT / "build" / "make_figures"
FIGURE_SUFFIXES = (".png", ".svg", ".gif")
EMBEDDED_MIME = {
    ".png": "image/png",
    ".gif": "image/gif",
}  # what a notebook output can hold byte for byte
# cell metadata papermill/nbclient add on every run (timings, status): dropped from stored notebooks
VOLATILE_CELL_METADATA = ("papermill", "execution")


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def git_commit() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
        return head.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def embedded_images(nb) -> dict[str, list[str]]:
    """sha256 of every image/png and image/gif output of the notebook's code cells, by MIME type."""
    found: dict[str, list[str]] = {mime: [] for mime in EMBEDDED_MIME.values()}
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            for mime, value in out.get("data", {}).items():
                if mime in found:
                    text = "".join(value) if isinstance(value, list) else value
                    found[mime].append(sha256_bytes(base64.b64decode(text)))
    return found


def clean_notebook(nb, run_id: str, parameters: dict) -> None:
    """Drop papermill's run-specific metadata; record the run id."""
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        for key in VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)
        if cell.metadata.get("tags") == []:
            del cell.metadata["tags"]  # papermill adds an empty list to every cell
    nb.metadata["stllr"] = {"run_id": run_id, "parameters": parameters}


def kernel_config(tmpdir: Path):
    """Kernel transport for the run: IPC sockets in a private folder where the OS has them (no TCP
    port open on the machine, and no ipykernel warning about unencrypted TCP); elsewhere TCP with
    CurveZMQ keys provisioned by the kernel manager when pyzmq supports it."""
    from traitlets.config import Config

    cfg = Config()
    if os.name == "posix":
        cfg.KernelManager.transport = "ipc"
        cfg.KernelManager.ip = str(tmpdir / "kernel")
    else:  # pragma: no cover - Windows has no IPC transport in ZeroMQ
        import zmq

        if zmq.has("curve"):
            cfg.KernelManager.transport_encryption = "auto"
    return cfg


@contextlib.contextmanager
def environ(**variables: str):
    """Set environment variables for the kernels started inside (a kernel inherits the
    environment), and restore the previous values afterwards."""
    saved = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def execute(nb_path: Path, out_path: Path, parameters: dict, figures_dir: Path, tmpdir: Path):
    """Run one notebook (kernel cwd: notebooks/) with its figures going to ``figures_dir``."""
    import papermill as pm

    with environ(STLLR_FIGURES_DIR=str(figures_dir)):
        return pm.execute_notebook(
            str(nb_path),
            str(out_path),
            parameters=parameters or None,
            cwd=str(NOTEBOOKS),
            kernel_name="python3",
            progress_bar=False,
            record_timing=False,
            config=kernel_config(tmpdir),
        )


def parameter_names(nb_path: Path) -> set:
    """The names the notebook's cell tagged ``parameters`` assigns (empty when it has none)."""
    import ast

    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    names = set()
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            for node in ast.parse(source).body:
                if isinstance(node, ast.Assign):
                    names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--full", action="store_true", help="paper-scale run (real data, long training)"
    )
    ap.add_argument("--data-path", default=None, help="folder with the real datasets (with --full)")
    ap.add_argument("--device", default=None, help="torch device for --full runs, e.g. cuda")
    ap.add_argument(
        "--cluster",
        default=None,
        metavar="ADDRESS",
        help="a Dask scheduler (tcp://host:8786): CLUSTER of the notebooks that have it (their "
        "sweeps train on its workers)",
    )
    ap.add_argument("--only", nargs="*", default=None, help="notebook names (stems) to run")
    ap.add_argument(
        "--out-dir",
        default=None,
        help="write DIR/notebooks/*.ipynb and DIR/figures/ (with its MANIFEST.json) instead of the "
        "committed notebooks/ and figures/ (default: the repository; build/full with parameters)",
    )
    args = ap.parse_args(argv)

    import nbformat
    from papermill.exceptions import PapermillExecutionError

    import stllr

    notebooks = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        notebooks = [nb for nb in notebooks if nb.stem in set(args.only)]
        missing = set(args.only) - {nb.stem for nb in notebooks}
        if missing:
            print(f"--only: unknown notebook(s) {sorted(missing)}", file=sys.stderr)
            return 2
    params: dict = {}
    if args.full:
        params["FULL"] = True
    if args.data_path:
        params["DATA_PATH"] = str(Path(args.data_path).resolve())
    if args.device:
        params["DEVICE"] = args.device
    out_root = (
        Path(args.out_dir).resolve()
        if args.out_dir
        else (ROOT / "build" / "full" if params or args.cluster else ROOT)
    )
    out_notebooks, out_figures = out_root / "notebooks", out_root / "figures"
    out_notebooks.mkdir(parents=True, exist_ok=True)
    out_figures.mkdir(parents=True, exist_ok=True)
    manifest_path = out_figures / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest.setdefault("notebooks", {})
    for stem in [s for s in manifest["notebooks"] if not (out_notebooks / f"{s}.ipynb").exists()]:
        print(f"manifest: dropping {stem} (no notebooks/{stem}.ipynb any more)", flush=True)
        del manifest["notebooks"][stem]

    run_id = new_run_id()
    run_dir = STAGING / run_id
    commit = git_commit()

    def rel(p):
        return str(p.relative_to(out_root))

    print(
        f"run {run_id}: {len(notebooks)} notebook(s) -> {rel(out_notebooks)}/, {rel(out_figures)}/"
        + (f" (parameters {params})" if params else "")
        + (f" (CLUSTER {args.cluster!r} where a notebook has it)" if args.cluster else "")
        + ("" if out_root == ROOT else f" under {out_root}"),
        flush=True,
    )
    for i, nb_path in enumerate(notebooks, 1):
        stem, prefix = nb_path.stem, nb_path.stem.split("_", 1)[0] + "_"
        staged = run_dir / stem
        staged_figures = staged / "figures"
        staged_figures.mkdir(parents=True)
        print(f"[{i}/{len(notebooks)}] {nb_path.name} ...", end="", flush=True)
        nb_params = dict(params)
        if args.cluster and "CLUSTER" in parameter_names(nb_path):
            nb_params["CLUSTER"] = args.cluster
        t0 = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(prefix="stllr-kernel-") as tmp:
                nb = execute(nb_path, staged / nb_path.name, nb_params, staged_figures, Path(tmp))
        except PapermillExecutionError as err:
            print(
                f" FAILED in cell {err.cell_index} (execution count {err.exec_count}): {err.ename}: {err.evalue}\n"
                f"    executed copy with the traceback: {staged / nb_path.name}; "
                f"{nb_path.name}, its figures and its manifest entry are unchanged",
                flush=True,
            )
            return 1
        seconds = time.perf_counter() - t0

        clean_notebook(nb, run_id, nb_params)
        embedded = embedded_images(nb)
        figures, not_embedded = {}, []
        for f in sorted(staged_figures.iterdir()):
            if f.suffix not in FIGURE_SUFFIXES or not f.name.startswith(prefix):
                print(
                    f"\n    unexpected file {f.name} written by {nb_path.name}: not a {prefix}* figure",
                    flush=True,
                )
                return 1
            digest = sha256_bytes(f.read_bytes())
            figures[f.name] = {"sha256": digest, "bytes": f.stat().st_size}
            mime = EMBEDDED_MIME.get(f.suffix)
            if mime and digest not in embedded[mime]:
                not_embedded.append(f.name)

        # commit this notebook's results: old NN_* figures out, the new ones in, then the notebook
        for old in out_figures.glob(prefix + "*"):
            if old.suffix in FIGURE_SUFFIXES:
                old.unlink()
        for f in staged_figures.iterdir():
            shutil.copy2(f, out_figures / f.name)
        nbformat.write(nb, str(out_notebooks / nb_path.name))
        manifest["notebooks"][stem] = {
            "notebook": f"notebooks/{nb_path.name}",
            "run_id": run_id,
            "parameters": nb_params,
            "stllr_version": stllr.__version__,
            "git_commit": commit,
            "finished": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "seconds": round(seconds, 1),
            "figures": figures,
        }
        manifest["notebooks"] = dict(sorted(manifest["notebooks"].items()))
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(staged)
        n_shown = sum(1 for f in figures if f.endswith((".png", ".gif"))) - len(not_embedded)
        print(
            f" done in {seconds:.0f} s, {len(figures)} figure files ({n_shown} shown in the notebook)",
            flush=True,
        )
        if not_embedded:
            print(
                f"    not shown byte for byte in the notebook (use stllr.plotting.style.savefig / display the file): "
                f"{', '.join(not_embedded)}",
                flush=True,
            )
    shutil.rmtree(run_dir, ignore_errors=True)
    try:
        STAGING.rmdir()  # only when no earlier failed run's copy is kept there
    except OSError:
        pass
    print(f"wrote {rel(manifest_path)} (run {run_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
