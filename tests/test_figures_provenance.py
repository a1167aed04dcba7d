"""figures/ and the stored notebooks come from one run of ``make figures`` (tools/make_figures.py).

figures/MANIFEST.json names, for every notebook, the run id that made it and the sha256 of every
figure file it wrote; the executed notebook carries the same run id in ``metadata["stllr"]``.
``stllr.plotting.style.savefig`` shows the saved PNG file itself in the notebook (and notebook 10 shows its
GIF from the file), so each PNG / GIF in figures/ must be byte-identical to an image embedded in
its notebook. SVGs cannot be compared with an embedded image: their sha256 in the manifest entry
(the entry whose run id is the notebook's) says they were written in that same run.

STLLR_PROVENANCE_ROOT=DIR checks DIR/figures and DIR/notebooks instead (a ``--out-dir`` run).
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from make_figures import EMBEDDED_MIME, embedded_images, sha256_bytes  # noqa: E402  (the writer's own helpers)

ROOT = Path(os.environ.get("STLLR_PROVENANCE_ROOT") or Path(__file__).resolve().parents[1])
FIGURES = ROOT / "figures"
MANIFEST = FIGURES / "MANIFEST.json"
REGENERATE = "regenerate with `make figures` (all notebooks, one run)"


def _manifest() -> dict:
    return json.loads(MANIFEST.read_text())["notebooks"] if MANIFEST.exists() else {}


def _notebook(entry: dict):
    return nbformat.read(ROOT / entry["notebook"], as_version=4)


ENTRIES = sorted(_manifest().items())


def test_manifest_exists_and_lists_notebooks():
    assert MANIFEST.exists(), f"{MANIFEST} is missing: {REGENERATE}"
    assert ENTRIES, f"{MANIFEST} lists no notebook"


@pytest.mark.parametrize("stem,entry", ENTRIES, ids=[stem for stem, _ in ENTRIES])
def test_notebook_carries_the_manifest_run_id(stem, entry):
    assert entry.get("run_id"), f"MANIFEST.json entry {stem} has no run_id: {REGENERATE}"
    nb = _notebook(entry)
    run_id = nb["metadata"].get("stllr", {}).get("run_id")
    assert run_id == entry["run_id"], (
        f"{entry['notebook']} was executed by run {run_id}, but figures/MANIFEST.json says its figures come from "
        f"run {entry['run_id']}: {REGENERATE}"
    )


@pytest.mark.parametrize("stem,entry", ENTRIES, ids=[stem for stem, _ in ENTRIES])
def test_figures_are_the_ones_the_stored_notebook_made(stem, entry):
    figures = entry.get("figures")
    assert isinstance(figures, dict) and figures, (
        f"MANIFEST.json entry {stem} lists no figure sha256: {REGENERATE}"
    )
    embedded = embedded_images(_notebook(entry))
    problems = []
    for name, info in sorted(figures.items()):
        path = FIGURES / name
        if not path.exists():
            problems.append(f"{name}: listed in the manifest but missing from figures/")
            continue
        digest = sha256_bytes(path.read_bytes())
        if digest != info["sha256"]:
            problems.append(
                f"{name}: not the file run {entry['run_id']} wrote (sha256 {digest[:12]}, "
                f"manifest {info['sha256'][:12]})"
            )
        mime = EMBEDDED_MIME.get(path.suffix)
        if mime and digest not in embedded[mime]:
            problems.append(f"{name}: no {mime} output of {entry['notebook']} has these bytes")
    # every image the notebook shows is one of its figure files: a second render of a saved figure
    # (the inline backend drawing it again) or a figure shown but not saved fails here
    listed = {
        mime: {
            info["sha256"]
            for name, info in figures.items()
            if EMBEDDED_MIME.get(Path(name).suffix) == mime
        }
        for mime in EMBEDDED_MIME.values()
    }
    for mime, digests in embedded.items():
        extra = [d for d in digests if d not in listed[mime]]
        if extra:
            problems.append(
                f"{len(extra)} {mime} output(s) of {entry['notebook']} are not figure files of this run"
            )
        repeated = sorted({d for d in digests if digests.count(d) > 1})
        if repeated:
            problems.append(
                f"{len(repeated)} {mime} figure(s) shown more than once in {entry['notebook']}"
            )
    assert not problems, f"{stem} ({REGENERATE}):\n  " + "\n  ".join(problems)


def test_every_figure_file_is_listed_once():
    listed: dict[str, list[str]] = {}
    for stem, entry in ENTRIES:
        for name in entry.get("figures") or {}:
            listed.setdefault(name, []).append(stem)
    on_disk = sorted(p.name for p in FIGURES.iterdir() if p.is_file() and p.name != MANIFEST.name)
    unlisted = [name for name in on_disk if name not in listed]
    twice = {name: stems for name, stems in listed.items() if len(stems) > 1}
    assert not unlisted, (
        f"files in figures/ that no manifest entry lists (stale or hand-made?): {unlisted}"
    )
    assert not twice, f"figure files listed by more than one notebook: {twice}"


# ------------------------------------------------------------------------ savefig in a kernel


def test_savefig_shows_the_saved_png_bytes_and_closes_the_figure(tmp_path, monkeypatch):
    import IPython.display

    from stllr.plotting import style as P

    shown = []
    monkeypatch.setattr(P, "_in_ipython_kernel", lambda: True)
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append(obj))
    fig, ax = P.plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [1, 0])
    text = repr(fig)
    paths = P.savefig(fig, "demo", tmp_path)
    assert paths == [str(tmp_path / "demo.png"), str(tmp_path / "demo.svg")]
    assert len(shown) == 1
    png = (tmp_path / "demo.png").read_bytes()
    data = shown[0]._repr_png_()
    data = data[0] if isinstance(data, tuple) else data
    assert (base64.b64decode(data) if isinstance(data, str) else data) == png
    assert repr(shown[0]) == text  # the plain-text alternative stays the figure's own
    assert not P.plt.fignum_exists(fig.number)  # the inline backend will not draw it again


def test_savefig_outside_a_kernel_shows_nothing(tmp_path, monkeypatch):
    import IPython.display

    from stllr.plotting import style as P

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append(obj))
    assert not P._in_ipython_kernel()
    fig, _ = P.plt.subplots(figsize=(3, 2))
    P.savefig(fig, "demo", tmp_path, formats=("png",))
    assert shown == [] and P.plt.fignum_exists(fig.number)
    P.plt.close(fig)
