"""The course site (``make docs``, tools/build_site.py): built once, checked as files and in Chromium.

The module fixture builds the site from the repository into a temporary folder (warnings are
errors: a warning fails the fixture with its text). Without a browser: the build's page count and
time, the table of contents in learning order (notebooks/ by number), every notebook page showing
each figure the stored notebook holds (cell outputs, and the figure each widget's output area
drew), a page for every public module, the run-it-live note (no launch link without a repository
URL), no asset from another host in any page. A second build, of a copy of the repository with a
broken link and with a repository URL, fails naming the file and the warning, and its pages
(Sphinx keeps going) carry the Binder links.

In headless Chromium (playwright, Debian's ``chromium`` as in tests/test_browser_widgets.py; with
STLLR_SKIP_BROWSER=1 a missing Chromium skips it), the site served by a local http server: every
page of the table of contents answers 200, every ``<img>`` loaded, every same-origin link resolves
(the file exists, an ``#anchor`` is an id on its page), MathJax rendered every formula without an
error, no JavaScript error (page errors and console errors) and no request to any other host
(the site works offline). Screenshots: ``build/test-browser/site-*.png``.
"""

from __future__ import annotations

import functools
import html
import http.server
import json
import re
import shutil
import socket
import sys
import threading
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import build_site  # noqa: E402

# Sphinx 9's notices about extensions' use of APIs it removes in Sphinx 11
pytestmark = pytest.mark.filterwarnings("ignore::sphinx.deprecation.RemovedInSphinx11Warning")

SHOTS = ROOT / "build" / "test-browser"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
EXAMPLE_REPOSITORY = "https://github.com/example-org/stllr"
#: pages of the site that are no document (Sphinx's generated indexes)
GENERATED = {"genindex.html", "search.html", "py-modindex.html"}


# ---------------------------------------------------------------------------------------------
# the build


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("site") / "docs"
    result = build_site.build_site(out)  # SiteBuildError (every warning) fails here
    print(f"\nsite: {result['pages']} pages in {result['seconds']:.1f} s")
    return {**result, "out": out}


class _Page(HTMLParser):
    """ids, the sidebar's links, and the ``<img>`` inside notebook cell outputs of one page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.nav_links: list[str] = []
        self.output_images = 0
        self.remote_assets: list[str] = []
        self._stack: list[tuple[str, bool, bool]] = []  # tag, in nav, in a cell output

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        in_nav, in_output = self._stack[-1][1:] if self._stack else (False, False)
        in_nav = in_nav or (tag == "nav" and "bd-docs-nav" in cls)
        in_output = in_output or (tag == "div" and "cell_output" in cls)
        for key in ("id", "name"):
            if a.get(key):
                self.ids.add(a[key])
        if tag == "a" and in_nav and a.get("href"):
            self.nav_links.append(a["href"])
        if tag == "img" and in_output:
            self.output_images += 1
        asset = a.get("src") if tag in ("img", "script", "iframe") else None
        if tag == "link" and a.get("rel") in ("stylesheet", "preload", "icon"):
            asset = a.get("href")
        if asset and (asset.startswith(("http:", "https:", "//"))):
            self.remote_assets.append(asset)
        if tag not in ("img", "br", "hr", "meta", "link", "input", "source", "wbr"):
            self._stack.append((tag, in_nav, in_output))

    def handle_endtag(self, tag):
        for i in range(len(self._stack) - 1, -1, -1):  # tolerate unclosed tags
            if self._stack[i][0] == tag:
                del self._stack[i:]
                break


def _parse(path: Path) -> _Page:
    p = _Page()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def _toc_pages(out: Path) -> list[str]:
    """The landing page and every page of its table of contents, in order (paths in the site)."""
    pages = ["index.html"]
    for href in _parse(out / "index.html").nav_links:
        page = urldefrag(href)[0]
        if page and page not in pages:
            pages.append(page)
    return pages


def _expected_images(nb_path: Path) -> int:
    """Image outputs of a stored notebook: in the cells, and in the output areas of its widget
    views (the figure a slider demo drew, kept in the notebook's widget state)."""
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    state = nb["metadata"].get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})

    def in_widget(model_id: str) -> int:
        model = state.get(model_id, {})
        s = model.get("state", {})
        n = sum(
            any(k.startswith("image/") for k in o.get("data", {})) for o in s.get("outputs", [])
        )
        return n + sum(in_widget(c.removeprefix("IPY_MODEL_")) for c in s.get("children", []))

    count = 0
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_VIEW in data:
                count += in_widget(data[WIDGET_VIEW]["model_id"])
            elif any(k.startswith("image/") for k in data):
                count += 1
    return count


def _public_modules() -> list[str]:
    """Public modules of stllr, from the files (independent of tools/build_site.py)."""
    mods = set()
    for path in (ROOT / "stllr").rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        if not any(p.startswith("_") for p in parts):
            mods.add(".".join(parts))
    return sorted(mods)


def test_build_counts_its_pages(site):
    out = site["out"]
    assert site["warnings"] == []
    html_pages = {
        p.relative_to(out).as_posix()
        for p in out.rglob("*.html")
        if not p.relative_to(out).parts[0].startswith("_")
    }
    assert site["pages"] == len(html_pages - GENERATED), sorted(html_pages)
    assert set(_toc_pages(out)) == html_pages - GENERATED, "pages outside the table of contents"
    # the build time is printed (the fixture), not asserted: a timed test fails on a slow machine


def test_toc_is_the_learning_order(site):
    toc = [p for p in _toc_pages(site["out"]) if p.startswith("notebooks/")]
    stored = [f"notebooks/{nb.stem}.html" for nb in sorted((ROOT / "notebooks").glob("*.ipynb"))]
    assert toc == stored
    numbers = [int(Path(p).name[:2]) for p in toc]
    assert numbers == list(range(len(toc))), f"not numbered 00, 01, ... without gaps: {numbers}"


@pytest.mark.parametrize("nb", sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")))
def test_notebook_page_shows_every_stored_figure_and_how_to_run_it(site, nb):
    page_path = site["out"] / "notebooks" / nb.replace(".ipynb", ".html")
    page = _parse(page_path)
    expected = _expected_images(ROOT / "notebooks" / nb)
    assert expected > 0, f"{nb}: the stored notebook holds no figure"
    assert page.output_images == expected, (
        f"{nb}: {page.output_images} images in the page's cell outputs, the notebook stores {expected}"
    )
    source = page_path.read_text(encoding="utf-8")
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", source)).split())
    for needed in ("make lab", f"jupyter lab notebooks/{nb}", "environment.yml", "postBuild"):
        assert needed in text, f"{nb}: the page does not say how to run it ({needed!r})"
    assert "mybinder.org" not in source, f"{nb}: a launch link without a repository URL"


def test_landing_page_names_the_notebooks_with_sliders():
    """The landing page's list of slider notebooks is the notebooks whose stored widget state
    holds a slider (a progress bar is a widget too, not a slider)."""
    with_widgets = [
        nb.name[:2]
        for nb in sorted((ROOT / "notebooks").glob("*.ipynb"))
        if re.search(r'"[A-Za-z]*SliderModel"', nb.read_text(encoding="utf-8"))
    ]
    text = " ".join((ROOT / "docs" / "site" / "index.md").read_text(encoding="utf-8").split())
    listed = re.search(r"The sliders of notebooks ([0-9, and]+) need a running kernel", text)
    assert listed, "docs/site/index.md no longer says which notebooks have sliders"
    assert re.findall(r"[0-9]{2}", listed.group(1)) == with_widgets


def test_every_public_module_has_an_api_page(site):
    out = site["out"]
    index = (out / "api" / "index.html").read_text(encoding="utf-8")
    for module in _public_modules():
        page = out / "api" / f"{module}.html"
        assert page.is_file(), f"no API page for {module}"
        assert f"module-{module}" in _parse(page).ids, f"{page.name} does not document {module}"
        assert f'href="{module}.html"' in index, f"api/index.html does not link {module}"
    functional = (out / "api" / "stllr.functional.html").read_text(encoding="utf-8")
    for name in ("stllr.functional.lif_step", "stllr.functional.Factors"):
        assert f'id="{name}"' in functional, f"{name} is not documented"


def test_no_page_loads_an_asset_from_another_host(site):
    out = site["out"]
    remote = {}
    for path in out.rglob("*.html"):
        found = _parse(path).remote_assets
        if found:
            remote[path.relative_to(out).as_posix()] = found
    assert remote == {}
    assert (out / "_static" / "mathjax" / "MathJax.js").is_file()


def test_binder_link():
    path = "notebooks/00_quickstart.ipynb"
    assert build_site.binder_link("https://github.com/org/repo.git", "main", path) == (
        "https://mybinder.org/v2/gh/org/repo/main?urlpath=lab/tree/notebooks/00_quickstart.ipynb"
    )
    assert build_site.binder_link("https://gitlab.com/org/repo/", "v1", path).startswith(
        "https://mybinder.org/v2/gl/org%2Frepo/v1?urlpath=lab/tree/"
    )
    assert build_site.binder_link("https://git.example.org/a/b", "main", path).startswith(
        "https://mybinder.org/v2/git/https%3A%2F%2Fgit.example.org%2Fa%2Fb/main?"
    )
    with pytest.raises(ValueError, match="repository_url"):
        build_site.binder_link(" ", "main", path)


def _small_repository(root: Path) -> list[str]:
    """A repository of two notebooks and stub pages (a build of seconds, not of the whole site):
    docs/site/ with its conf.py and assets, the landing page listing what is there, no API pages.
    Returns the notebooks' file names."""
    site = root / "docs" / "site"
    shutil.copytree(ROOT / "docs" / "site", site, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "notebooks").mkdir()
    stored = sorted((ROOT / "notebooks").glob("*.ipynb"))
    names = [nb.name for nb in stored[:2]]
    for nb in stored:  # two real ones; the others (which they link to) as one-cell stubs
        if nb.name in names:
            shutil.copy2(nb, root / "notebooks" / nb.name)
        else:
            stub = {
                "cells": [
                    {
                        "cell_type": "markdown",
                        "id": "stub",
                        "metadata": {},
                        "source": f"# {nb.stem}\n\nA stub notebook.",
                    }
                ],
                "metadata": {},
                "nbformat": 4,
                "nbformat_minor": 5,
            }
            (root / "notebooks" / nb.name).write_text(json.dumps(stub), encoding="utf-8")
    for page in build_site.PAGES:
        (root / page).parent.mkdir(parents=True, exist_ok=True)
        (root / page).write_text(f"# {page}\n\n## Notation\n\nA stub page.\n", encoding="utf-8")
    toc = [f"notebooks/{nb.stem}" for nb in stored]
    toc += [str(Path(p).with_suffix("")) for p in build_site.PAGES] + ["api/index"]
    (site / "index.md").write_text(
        "# A small site\n\n```{toctree}\n" + "\n".join(toc) + "\n```\n", encoding="utf-8"
    )
    (site / "api" / "index.md").write_text("# API\n\nNo modules here.\n", encoding="utf-8")
    return names


def test_a_warning_fails_the_build_and_a_repository_url_gives_launch_links(tmp_path):
    repo = tmp_path / "repo"
    names = _small_repository(repo)
    out = tmp_path / "docs"
    assert build_site.build_site(out, root=repo)["warnings"] == []  # the small site is clean
    rule = repo / "docs" / "rule.md"
    rule.write_text(rule.read_text() + "\nSee [the missing page](missing-page.md).\n")
    with pytest.raises(build_site.SiteBuildError) as e:
        build_site.build_site(out, repository_url=EXAMPLE_REPOSITORY, root=repo)
    message = str(e.value)
    assert "docs/rule.md:7" in message and "missing-page.md" in message, message
    assert message.count("WARNING") == 1, message
    # keep-going wrote every page: with the URL, each notebook page links Binder (its note, the
    # theme's launch button)
    for name in names:
        text = (out / "notebooks" / f"{Path(name).stem}.html").read_text(encoding="utf-8")
        link = (
            f"https://mybinder.org/v2/gh/example-org/stllr/main?urlpath=lab/tree/notebooks/{name}"
        )
        assert text.count(link) >= 2, f"{name}: Binder link in the note and the launch button"


# ---------------------------------------------------------------------------------------------
# in Chromium


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served(site):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = functools.partial(_QuietHandler, directory=str(site["out"]))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.shutdown()
        server.server_close()


_WAIT_MATH = """() => new Promise(resolve => {
  if (!window.MathJax || !window.MathJax.Hub) { resolve(false); return; }
  window.MathJax.Hub.Queue(() => resolve(true));
})"""
_WAIT_IMAGES = """() => Promise.all([...document.images].map(img => {
  img.loading = 'eager';
  return img.complete ? null : new Promise(r => { img.onload = img.onerror = r; });
}))"""
_BROKEN_IMAGES = """() => [...document.images]
  .filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.src)"""
_LINKS = "() => [...document.querySelectorAll('a[href]')].map(a => a.href)"
#: formulas that MathJax did not render, and errors among those it did (MathJax 2, HTML-CSS output)
_MATH = """() => {
  const math = [...document.querySelectorAll('.math.notranslate')];  // Sphinx's, not MathJax's
  const failed = m => !m.querySelector('.MathJax') || /Math Processing Error/.test(m.textContent)
    || m.querySelector('.MathJax_Error, .merror');
  const unrendered = math.filter(failed).map(m => m.textContent.slice(0, 80));
  const hasError = n => !!n && (n.type === 'merror' || (n.data || []).some(hasError));
  const errors = MathJax.Hub.getAllJax().filter(j => hasError(j.root))
    .map(j => j.originalText.slice(0, 80));
  return {count: math.length, rendered: document.querySelectorAll('.MathJax').length, unrendered, errors};
}"""


class _Links:
    """Same-origin link targets, fetched once each: status and the ids of HTML pages."""

    def __init__(self):
        self.cache: dict[str, tuple[int, set[str] | None]] = {}

    def get(self, url: str) -> tuple[int, set[str] | None]:
        if url not in self.cache:
            try:
                with urllib.request.urlopen(url, timeout=20) as r:
                    body, status = r.read(), r.status
                    is_html = "html" in r.headers.get("Content-Type", "")
                ids = None
                if is_html:
                    p = _Page()
                    p.feed(body.decode("utf-8", "replace"))
                    ids = p.ids
                self.cache[url] = (status, ids)
            except urllib.error.HTTPError as e:
                self.cache[url] = (e.code, None)
        return self.cache[url]

    def problem(self, link: str) -> str | None:
        url, anchor = urldefrag(link)
        status, ids = self.get(url)
        if status != 200:
            return f"{link} -> HTTP {status}"
        if anchor and ids is not None and anchor not in ids:
            return f"{link}: no id {anchor!r} on {urlparse(url).path}"
        return None


def _shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    print(f"\nscreenshot: {path}")
    return path


@pytest.mark.browser
def test_every_toc_page_in_chromium(site, served, browser):
    origin = urlparse(served).netloc
    pages = _toc_pages(site["out"])
    problems: list[str] = []
    outside: list[str] = []
    current = {"page": ""}
    context = browser.new_context(viewport={"width": 1400, "height": 1000})

    def route(r):  # the site must not need the network: record and refuse every other host
        if urlparse(r.request.url).scheme in ("http", "https") and (
            urlparse(r.request.url).netloc != origin
        ):
            outside.append(f"{current['page']}: {r.request.url}")
            r.abort()
        else:
            r.continue_()

    context.route("**/*", route)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.on("pageerror", lambda e: problems.append(f"{current['page']}: JavaScript error {e}"))
    page.on(
        "response",
        lambda r: (
            problems.append(f"{current['page']}: HTTP {r.status} for {r.url}")
            if r.status >= 400
            else None
        ),
    )
    page.on(
        "console",
        lambda m: (
            problems.append(f"{current['page']}: console error {m.text}")
            if m.type == "error"
            else None
        ),
    )
    links = _Links()
    math_pages = {}
    for old in SHOTS.glob("site-*.png"):
        old.unlink()
    try:
        for path in pages:
            current["page"] = path
            response = page.goto(served + path, wait_until="load")
            if response is None or response.status != 200:
                problems.append(f"{path}: HTTP {response.status if response else 'no response'}")
                continue
            page.evaluate(_WAIT_IMAGES)
            if page.evaluate(_WAIT_MATH):
                math = page.evaluate(_MATH)
                math_pages[path] = math["rendered"]
                if math["unrendered"] or math["errors"] or math["count"] == 0:
                    problems.append(f"{path}: math {math}")
            for src in page.evaluate(_BROKEN_IMAGES):
                problems.append(f"{path}: image did not load: {src}")
            for link in sorted(set(page.evaluate(_LINKS))):
                if urlparse(link).netloc == origin:
                    problem = links.problem(link)
                    if problem:
                        problems.append(f"{path}: link {problem}")
            if path == "index.html":
                _shot(page, "site-index")
            if path == "notebooks/01_lif_and_traces.html":
                _shot(page, "site-notebook")
                widget = page.locator(".stllr-static-widget")
                if widget.count():
                    widget.first.scroll_into_view_if_needed()
                    _shot(page, "site-notebook-widget")
                else:
                    problems.append(f"{path}: no static view of the slider demo")
    finally:
        context.close()
    assert not outside, "requests left localhost (the site must work offline):\n" + "\n".join(
        outside[:20]
    )
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:40])
    # the notebooks with LaTeX are typeset (02 derives the rule)
    assert math_pages.get("notebooks/02_rule_from_scratch.html", 0) > 20, math_pages
    assert len(links.cache) > len(pages), "the link check followed too few links"
    assert (SHOTS / "site-index.png").is_file() and (SHOTS / "site-notebook.png").is_file()
