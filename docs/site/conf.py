"""Sphinx configuration of the course site (``make docs``; built by tools/build_site.py).

tools/build_site.py copies this folder with the repository's notebooks and docs into a staging
folder laid out like the repository (so ``../README.md#notation`` and ``../docs/rule.md`` resolve),
writes the API pages and ``_site_settings.json`` (the repository URL for launch links, if given)
there, and runs Sphinx on it with warnings as errors. Everything the pages load ships with the site:
the theme's own assets and MathJax 2 from the ``jupyter-server-mathjax`` package
(``_static/mathjax``); no CDN.
"""

from __future__ import annotations

import json
from pathlib import Path

import stllr

HERE = Path(__file__).resolve().parent
SETTINGS = (
    json.loads((HERE / "_site_settings.json").read_text())
    if (HERE / "_site_settings.json").is_file()
    else {}
)
REPOSITORY_URL = SETTINGS.get("repository_url") or ""
BRANCH = SETTINGS.get("branch") or "main"
# sphinx-book-theme knows these hosts; for another host only the pages' own Binder link is shown
THEME_KNOWS_HOST = any(h in REPOSITORY_URL for h in ("github.com", "gitlab.com", "bitbucket.org"))

project = "stllr: the S-TLLR course"
author = "The stllr contributors"
copyright = "The stllr contributors (MIT licence)"
release = version = stllr.__version__

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]
root_doc = "index"
exclude_patterns = ["_site_settings.json", "jupyter_execute"]

# the notebooks as `make figures` stored them: never executed here
nb_execution_mode = "off"
nb_merge_streams = True
# widgets cannot run on a static page and their JavaScript comes from a CDN: off. tools/build_site.py
# turns each stored widget view into the figure (and text) its output area held, with its controls
nb_ipywidgets_js = {}
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_dmath_double_inline = True
myst_heading_anchors = 3  # README.md#notation and the docs' sections

# API reference: Google-style docstrings ("Parameters:", "Args:", "Example:")
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_inherit_docstrings = (
    False  # torch's own docstrings (forward, backward) hold labels of its docs
)

# MathJax 2.7 from jupyter-server-mathjax, copied into _static/mathjax. That package ships the
# combined configuration (TeX input, HTML-CSS output, extensions in one file) and the STIX web fonts
# only, as the classic Jupyter notebook uses them
mathjax_path = "mathjax/MathJax.js"
myst_update_mathjax = False
mathjax2_config = {
    "config": ["TeX-AMS-MML_HTMLorMML-full.js"],
    "tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]]},
    "HTML-CSS": {
        "availableFonts": [],
        "imageFont": None,
        "preferredFont": None,
        "webFont": "STIX-Web",
        # MathJax's blank measuring font, url('about:blank'), is a CORS error in Chromium: a local
        # font name instead (not installed anywhere: the same fallback, no request)
        "styles": {"@font-face": {"font-family": "MathJax_Blank", "src": "local('MathJax_Blank')"}},
    },
    "messageStyle": "none",
}

html_theme = "sphinx_book_theme"
html_title = "stllr: the S-TLLR course"
html_static_path = ["_static"]
html_favicon = "_static/favicon.svg"  # else browsers ask for /favicon.ico
html_css_files = ["stllr.css"]
html_last_updated_fmt = None
# light or dark as the reader's system (left empty, the theme logs a console error on a first visit)
html_context = {"default_mode": "auto"}
html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "show_toc_level": 2,
    "use_download_button": True,
    "use_fullscreen_button": True,
    "navigation_with_keys": False,
}
if REPOSITORY_URL and THEME_KNOWS_HOST:
    html_theme_options.update(
        {
            "repository_url": REPOSITORY_URL,
            "repository_branch": BRANCH,
            "path_to_docs": "",
            "use_repository_button": True,
            "launch_buttons": {
                "binderhub_url": "https://mybinder.org",
                "notebook_interface": "jupyterlab",
            },
        }
    )
