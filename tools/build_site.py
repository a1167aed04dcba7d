"""Build the course site: static HTML in ``build/docs/`` (``make docs``; open build/docs/index.html).

    python tools/build_site.py [--out-dir DIR] [--repository-url URL] [--branch NAME]

The site holds the notebooks in learning order with their STORED outputs (never executed here: the
outputs are the ones ``make figures`` wrote), ``docs/*.md``, the README (with the notation card the
notebooks link to), CONTRIBUTING and the benchmarks README, and an API reference generated from the
docstrings of every public module (autodoc + napoleon). Sphinx, myst-nb and sphinx-book-theme are
pinned in constraints.txt; the build reads only the repository's files and works offline, and so
does the site: its MathJax is the jupyter-server-mathjax package's MathJax 2, copied into
``_static/mathjax``.

Steps: the sources are staged into ``<work-dir>/src`` laid out like the repository (``docs/site/``
at its root: conf.py, the landing page, the API index), so the notebooks' links such as
``../README.md#notation`` resolve as they do on GitHub; each staged notebook gets a note after its
title on how to run it live (``make lab``, ``jupyter lab``, Binder from ``environment.yml`` +
``postBuild``, with a Binder link only when a repository URL is given: ``--repository-url`` or
``STLLR_REPOSITORY_URL``; the repository has no public URL of its own); each stored ipywidgets view
(which needs a kernel or a CDN script) becomes what its output area held (the figure the widget
drew with its defaults) under a line naming its controls; ``api/<module>.rst`` is written for each
public module. Then Sphinx builds from scratch with warnings as errors (``-W --keep-going``): any
warning fails the build, and the error lists every warning with its file.
"""

from __future__ import annotations

import argparse
import html
import io
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE_DIR = ROOT / "docs" / "site"
DEFAULT_OUT = ROOT / "build" / "docs"
#: repository files that are pages of the site (besides the notebooks and docs/site/)
PAGES = (
    "README.md",
    "CONTRIBUTING.md",
    "benchmarks/README.md",
    "docs/rule.md",
    "docs/measurement.md",
    "docs/experiments.md",
    "docs/claims.md",
    "docs/paper-results.md",
)
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
BINDER_URL = "https://mybinder.org"


class SiteBuildError(RuntimeError):
    """The site did not build: the message lists the warnings (file: line: text)."""


def notebooks(root: Path = ROOT) -> list[Path]:
    """The suite's notebooks in learning order (``notebooks/NN_*.ipynb``, by number)."""
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def public_modules(root: Path = ROOT) -> list[str]:
    """Dotted names of the public modules of ``stllr`` (no part starting with ``_``), sorted."""
    names = []
    for path in sorted((root / "stllr").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(p.startswith("_") for p in parts):
            continue
        names.append(".".join(parts))
    return sorted(names)


def binder_link(repository_url: str, branch: str, path: str) -> str:
    """Binder URL that opens ``path`` (relative to the repository root) in JupyterLab.

    Parameters:
        repository_url: the repository's public URL (``https://github.com/ORG/REPO``, a GitLab URL or
            any git URL Binder can clone).
        branch: the branch or tag to build.
        path: the notebook's path in the repository, e.g. ``notebooks/00_quickstart.ipynb``.
    """
    url = repository_url.strip().rstrip("/")
    if not url:
        raise ValueError("repository_url: empty; give the repository's public URL")
    m = re.fullmatch(r"https?://(github\.com|gitlab\.com)/([^/]+)/([^/]+?)(\.git)?", url)
    if m and m.group(1) == "github.com":
        base = f"{BINDER_URL}/v2/gh/{m.group(2)}/{m.group(3)}/{branch}"
    elif m:
        base = f"{BINDER_URL}/v2/gl/{m.group(2)}%2F{m.group(3)}/{branch}"
    else:
        from urllib.parse import quote

        base = f"{BINDER_URL}/v2/git/{quote(url, safe='')}/{branch}"
    return f"{base}?urlpath=lab/tree/{path}"


def launch_note(notebook: str, repository_url: str | None = None, branch: str = "main") -> str:
    """Markdown of the "run it live" note put after a notebook page's title.

    Parameters:
        notebook: the notebook's file name, e.g. ``01_lif_and_traces.ipynb``.
        repository_url: the repository's public URL; without it the note gives the Binder recipe
            and no link (the repository has no public URL of its own).
        branch: the branch Binder builds.
    """
    path = f"notebooks/{notebook}"
    if repository_url:
        binder = (
            f"or [launch it on Binder]({binder_link(repository_url, branch, path)}) (Binder builds "
            "the environment from the repository's `environment.yml` and `postBuild`)"
        )
    else:
        binder = (
            "or on Binder: its environment is the repository's `environment.yml` (pins equal to "
            "`constraints.txt`) and `postBuild`; give a BinderHub the repository's URL and open "
            f"`{path}` (build this site with `STLLR_REPOSITORY_URL=... make docs` for a launch link)"
        )
    return "\n".join(
        [
            ":::{admonition} Run this notebook live",
            ":class: tip stllr-launch",
            "This page shows the outputs `make figures` stored; it is not re-executed, and a slider",
            "demo shows the figure it drew with its default values. To run the notebook and move",
            "its sliders: in a clone of the repository `make lab` (builds `.venv` once, then opens",
            f"JupyterLab on `notebooks/`), or `.venv/bin/jupyter lab {path}` after `make venv`,",
            f"{binder}.",
            ":::",
        ]
    )


def _plain(text: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", text)).strip()


def _control_value(state: dict):
    labels = state.get("_options_labels")
    index = state.get("index")
    if labels is not None:
        if isinstance(index, int) and 0 <= index < len(labels):
            return labels[index]
        if isinstance(index, (list, tuple)):
            return ", ".join(labels[i] for i in index)
        return None
    return state.get("value")


def static_widget_outputs(model_id: str, models: dict) -> list[dict]:
    """What a stored ipywidgets view shows, as plain notebook outputs for a static page.

    The outputs its output areas (``ipywidgets.Output``) held, in order (the demo's figure and
    text as it drew them with its defaults), after one HTML line naming its controls and their
    values, or with the text of its labels (a progress bar: its description and count).

    Parameters:
        model_id: the view's ``model_id``.
        models: the notebook's widget state, ``metadata["widgets"][WIDGET_STATE]["state"]``.
    """
    controls: list[tuple[str, object]] = []
    texts: list[str] = []
    outputs: list[dict] = []

    def walk(mid: str) -> None:
        model = models.get(mid)
        if model is None:
            return
        name, state = model.get("model_name", ""), model.get("state", {})
        if name == "OutputModel":
            outputs.extend(state.get("outputs", []))
            return
        for child in state.get("children", []):
            walk(str(child).removeprefix("IPY_MODEL_"))
        if name in ("HTMLModel", "HTMLMathModel", "LabelModel"):
            if _plain(str(state.get("value", ""))):
                texts.append(_plain(str(state.get("value", ""))))
        elif name in ("FloatProgressModel", "IntProgressModel"):
            texts.append(f"{state.get('value', 0):g}/{state.get('max', 0):g}")
        elif "value" in state or "_options_labels" in state:
            controls.append((state.get("description", "") or "value", _control_value(state)))

    walk(model_id)
    result = []
    if controls:
        items = ", ".join(
            f"<code>{html.escape(str(d))} = {html.escape(str(v))}</code>" for d, v in controls
        )
        line = (
            "<p><strong>Interactive demo</strong> (its controls need a running kernel; shown "
            f"with its defaults): {items}</p>"
        )
    elif texts:
        line = f"<p>{html.escape(' '.join(texts))}</p>"
    else:
        line = ""
    if line:
        result.append(
            {
                "output_type": "display_data",
                "data": {
                    "text/html": f'<div class="stllr-static-widget">{line}</div>',
                    "text/plain": _plain(line),
                },
                "metadata": {},
            }
        )
    for out in outputs:
        kind = out.get("output_type")
        if kind == "stream":
            result.append(
                {"output_type": "stream", "name": out.get("name", "stdout"), "text": out["text"]}
            )
        elif kind in ("display_data", "execute_result"):
            result.append(
                {
                    "output_type": "display_data",
                    "data": out.get("data", {}),
                    "metadata": out.get("metadata", {}),
                }
            )
        elif kind == "error":
            result.append(out)
    return result


def stage_notebook(src: Path, dst: Path, repository_url: str | None, branch: str) -> None:
    """Copy a notebook for the site: the launch note after its first cell, widget views made
    static (:func:`static_widget_outputs`), the widget state dropped. The stored notebook is
    only read."""
    nb = json.loads(src.read_text(encoding="utf-8"))
    models = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb["cells"]:
        if cell.get("cell_type") != "code":
            continue
        new = []
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                new.append(out)
            else:
                new.extend(static_widget_outputs(view["model_id"], models))
        cell["outputs"] = new
    nb.get("metadata", {}).pop("widgets", None)
    note = {
        "cell_type": "markdown",
        "id": "site-launch-note",
        "metadata": {},
        "source": launch_note(src.name, repository_url, branch),
    }
    nb["cells"].insert(1, note)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")


def _api_page(module: str, root: Path = ROOT) -> str:
    title = f"``{module}``"
    lines = [title, "=" * len(title), ""]
    if module == "stllr":
        # the package's __all__ comes from the rule's modules (each has its page) and from two
        # internal ones, documented here
        lines += [
            ".. automodule:: stllr",
            "   :no-members:",
            "",
            "Its names are those of the rule's modules (the pages below), and:",
            "",
            ".. autofunction:: stllr.reset_states",
            ".. autofunction:: stllr.input_checks",
            ".. autofunction:: stllr.set_input_checks",
            "",
        ]
    elif (root / module.replace(".", "/") / "__init__.py").is_file():
        lines += [f".. automodule:: {module}", "   :no-members:", ""]
    else:
        lines += [f".. automodule:: {module}", ""]
    return "\n".join(lines)


def _mathjax_dir() -> Path:
    try:
        import jupyter_server_mathjax
    except ImportError as e:
        raise SiteBuildError(
            "jupyter-server-mathjax is not installed (the site's offline MathJax): "
            "pip install -c constraints.txt jupyter-server-mathjax"
        ) from e
    return Path(jupyter_server_mathjax.__file__).resolve().parent / "static"


def stage(src: Path, repository_url: str | None = None, branch: str = "main", root: Path = ROOT):
    """Lay out the site's sources in ``src`` (emptied first); see the module docstring."""
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(root / "docs" / "site", src, ignore=shutil.ignore_patterns("__pycache__"))
    for page in PAGES:
        (src / page).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / page, src / page)
    # the images the pages show from the repository (the README's tour thumbnails)
    for page in PAGES:
        text = (root / page).read_text(encoding="utf-8")
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text):
            if "://" in target:
                continue
            image = ((root / page).parent / target).resolve()
            dest = src / image.relative_to(root.resolve())
            if image.is_file():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(image, dest)
    for nb in notebooks(root):
        stage_notebook(nb, src / "notebooks" / nb.name, repository_url, branch)
    for module in public_modules(root):
        (src / "api" / f"{module}.rst").write_text(_api_page(module, root), encoding="utf-8")
    mathjax = _mathjax_dir()
    shutil.copytree(  # MathJax without its translations, but English (it loads localization/en)
        mathjax,
        src / "_static" / "mathjax",
        ignore=lambda folder, names: (
            [n for n in names if n != "en"] if Path(folder).name == "localization" else []
        ),
    )
    settings = {"repository_url": repository_url or "", "branch": branch}
    (src / "_site_settings.json").write_text(json.dumps(settings), encoding="utf-8")


class _Tee(io.StringIO):
    def __init__(self, echo):
        super().__init__()
        self.echo = echo

    def write(self, s):
        if self.echo is not None:
            self.echo.write(s)
        return super().write(s)


def build_site(
    out_dir: Path | str = DEFAULT_OUT,
    *,
    repository_url: str | None = None,
    branch: str = "main",
    work_dir: Path | str | None = None,
    root: Path | str = ROOT,
    quiet: bool = True,
) -> dict:
    """Build the site into ``out_dir`` (emptied first) from scratch, warnings as errors.

    Parameters:
        out_dir: the HTML folder (``index.html`` the landing page); default ``build/docs``.
        repository_url: the repository's public URL for the notebooks' Binder links and the
            theme's launch buttons; ``None``: no link, the run-it-yourself instructions only.
        branch: the branch the Binder links build.
        work_dir: staging folder (sources in ``src/``, Sphinx's doctrees); default
            ``<out_dir>-work`` beside ``out_dir``. myst-nb writes the output images it extracts to
            ``jupyter_execute/`` beside ``out_dir``.
        root: the repository whose files are built (tests use a copy).
        quiet: without Sphinx's progress output (warnings are collected either way).

    Returns ``{"pages": int, "seconds": float, "warnings": []}`` (pages: the documents built,
    the landing page, notebooks, docs and API pages). Raises :class:`SiteBuildError` listing every
    warning when there is one.
    """
    from sphinx.application import Sphinx
    from sphinx.util.console import nocolor
    from sphinx.util.docutils import docutils_namespace, patch_docutils

    nocolor()  # plain text in the collected warnings and the error

    out_dir, root = Path(out_dir).resolve(), Path(root).resolve()
    work = Path(work_dir).resolve() if work_dir else out_dir.with_name(out_dir.name + "-work")
    started = time.perf_counter()
    src, doctrees = work / "src", work / "doctrees"
    for d in (out_dir, doctrees):
        if d.exists():
            shutil.rmtree(d)
    stage(src, repository_url=repository_url, branch=branch, root=root)
    warnings = _Tee(None if quiet else sys.stderr)
    status = None if quiet else sys.stdout
    with patch_docutils(src), docutils_namespace():
        app = Sphinx(
            srcdir=src,
            confdir=src,
            outdir=out_dir,
            doctreedir=doctrees,
            buildername="html",
            status=status,
            warning=warnings,
            freshenv=True,
            warningiserror=True,
            keep_going=True,
        )
        app.build(force_all=True)
        pages = len(app.env.found_docs)
    found = [line for line in warnings.getvalue().splitlines() if line.strip()]
    seconds = time.perf_counter() - started
    if found or app.statuscode:
        shown = [
            line.replace(str(src) + os.sep, "").replace(str(root) + os.sep, "") for line in found
        ]
        raise SiteBuildError(
            f"the site build failed with {len(shown)} warning(s) (warnings are errors; paths "
            f"relative to the repository, staged in {src}):\n" + "\n".join(shown)
        )
    return {"pages": pages, "seconds": seconds, "warnings": found}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT, help="default build/docs")
    parser.add_argument(
        "--repository-url",
        default=os.environ.get("STLLR_REPOSITORY_URL") or None,
        help="the repository's public URL for Binder launch links (default $STLLR_REPOSITORY_URL)",
    )
    parser.add_argument("--branch", default=os.environ.get("STLLR_REPOSITORY_BRANCH", "main"))
    args = parser.parse_args(argv)
    print(f">> building the course site into {args.out_dir} (Sphinx, warnings are errors)")
    try:
        result = build_site(
            args.out_dir, repository_url=args.repository_url, branch=args.branch, quiet=False
        )
    except SiteBuildError as e:
        print(f"\nmake docs: {e}", file=sys.stderr)
        return 1
    print(
        f">> {result['pages']} pages in {result['seconds']:.1f} s: "
        f"open {Path(args.out_dir).resolve() / 'index.html'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
