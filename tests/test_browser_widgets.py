"""The widget demos work in a real JupyterLab, driven by headless Chromium (playwright).

For notebooks 01, 03 and 05: open a copy in JupyterLab, run all cells from the Run menu, wait until
the kernel is idle and every code cell has an execution count, check that the ipywidgets sliders
render, move one slider with the keyboard and check that the demo's plot was redrawn (the
``<img>`` data changed) without an error in any output. Screenshots before and after the move
go to ``build/test-browser/``. The copy of 05 holds only its parameters, imports and calculator cells
(``DEMO_CELLS``): the demo as a user runs it, without the measurements before it.

Chromium comes from the system (``chromium`` or ``chromium-browser`` on PATH; ``make test``
installs it with tools/ensure_chromium.sh); with STLLR_SKIP_BROWSER=1 a missing Chromium skips
this test. Deselect it with ``-m "not browser"``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "build" / "test-browser"
#: notebook -> description of the slider the test moves
NOTEBOOKS = {
    "01_lif_and_traces.ipynb": "leak",
    "03_stdp_window.ipynb": "alpha_post",
    "05_memory_and_compute.ipynb": "T",
}
#: notebooks whose copy keeps only these cells (ids): the parameters, the imports and the demo, in
#: the stored order and with the stored code, so the browser runs the demo as a user does without
#: the minute of measurements before it (05: the memory calculator at the end)
DEMO_CELLS = {"05_memory_and_compute.ipynb": ("cell-01", "cell-02", "calc-print", "calc-widget")}
WIDGETS_EXTENSION = "@jupyter-widgets/jupyterlab-manager"
SERVER_START_S = 120
RUN_ALL_S = 240
REDRAW_S = 90
#: user settings for the test's JupyterLab (its own settings dir): no autosave, no news popup,
#: every cell kept in the DOM (no windowing), no pending-input dialogs
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}
ERROR_TEXT = re.compile(r"Traceback|Error\b")


def _copy_notebook(src: Path, dst: Path, keep=None) -> None:
    """Copy a notebook; with ``keep`` (cell ids) only those cells, which must all exist."""
    if keep is None:
        shutil.copy2(src, dst)
        return
    nb = json.loads(src.read_text())
    cells = [c for c in nb["cells"] if c.get("id") in keep]
    missing = sorted(set(keep) - {c.get("id") for c in cells})
    assert not missing, f"{src.name}: the demo's cells {missing} are gone (update DEMO_CELLS)"
    nb["cells"] = cells
    dst.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    def __init__(self, base: Path):
        self.base = base
        self.root = base / "notebooks"
        self.runtime = base / "runtime"
        self.log_path = base / "jupyter-lab.log"
        self.port = _free_port()
        self.token = secrets.token_hex(24)
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for var in (
            "JUPYTER_PATH",
            "JUPYTERLAB_DIR",
            "MPLBACKEND",
        ):  # the venv's own lab + extensions
            env.pop(var, None)
        env.update(
            {
                # the user's config, kernels, settings and workspaces stay untouched; the venv's
                # share/jupyter (the widgets lab extension, the kernel) is still on the data path
                "JUPYTER_CONFIG_DIR": str(self.base / "config"),
                "JUPYTER_DATA_DIR": str(self.base / "data"),
                "JUPYTER_RUNTIME_DIR": str(self.runtime),
                "JUPYTERLAB_SETTINGS_DIR": str(self.base / "settings"),
                "JUPYTERLAB_WORKSPACES_DIR": str(self.base / "workspaces"),
                "JUPYTER_PREFER_ENV_PATH": "1",
                "IPYTHONDIR": str(self.base / "ipython"),
                "STLLR_FIGURES_DIR": str(self.base / "figures"),
                "OMP_NUM_THREADS": "2",
                "OMP_WAIT_POLICY": "PASSIVE",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return "(no server log)"

    def api(self, method: str, path: str, timeout: float = 10):
        req = urllib.request.Request(
            self.url + path,
            method=method,
            data=b"" if method == "POST" else None,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def start(self):
        self.root.mkdir(parents=True)
        for nb in NOTEBOOKS:  # copies: JupyterLab never writes to the stored notebooks
            _copy_notebook(ROOT / "notebooks" / nb, self.root / nb, DEMO_CELLS.get(nb))
        for name, values in LAB_SETTINGS.items():
            path = self.base / "settings" / f"{name}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        cmd = [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--ServerApp.shutdown_no_activity_timeout=900",
            "--MappingKernelManager.cull_idle_timeout=900",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers
            cmd.append("--allow-root")
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.root,
            env=self.env(),
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"jupyter lab exited with code {self.proc.returncode} while starting; "
                    f"server log:\n{self.log()}"
                )
            try:
                self.api("GET", "/api/status", timeout=5)
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"jupyter lab did not answer {self.url}/api/status within {SERVER_START_S} s; "
                    f"server log:\n{self.log()}"
                )
            time.sleep(0.5)

    def _kernel_pids(self) -> list[int]:
        """Kernels of this server: processes whose command line names a file in its runtime dir."""
        pids = []
        marker = str(self.runtime).encode()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                try:
                    if marker in (entry / "cmdline").read_bytes():
                        pids.append(int(entry.name))
                except OSError:
                    pass
        return pids

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:  # kernels first, then the server, through the API
                for session in self.api("GET", "/api/sessions"):
                    self.api("DELETE", f"/api/sessions/{session['id']}")
                self.api("POST", "/api/shutdown")
                self.proc.wait(timeout=20)
            except Exception:
                pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        if Path("/proc").is_dir():
            for pid in self._kernel_pids():  # left-over kernels (server killed hard)
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        self.log_file.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, chromium_launch):
    server = LabServer(tmp_path_factory.mktemp("jupyterlab"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _wait_until(predicate, timeout_s: float, message, poll_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message() if callable(message) else message)
        time.sleep(poll_s)


def _kernel_state(lab: LabServer, nb: str) -> str | None:
    for session in lab.api("GET", "/api/sessions"):
        if session.get("path") == nb and session.get("kernel"):
            return session["kernel"].get("execution_state")
    return None


def _prompts(page) -> list[str]:
    return page.locator(".jp-CodeCell .jp-InputArea-prompt").all_inner_texts()


def _error_outputs(page) -> list[str]:
    """Texts of error outputs and of stderr outputs that look like a traceback or an error."""
    texts = page.locator(
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
    ).all_inner_texts()
    return [t for t in texts if ERROR_TEXT.search(t)]


def _shot(page, target, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    target.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(path))
    print(f"\nscreenshot: {path}")
    return path


def _menu(page, menu: str, item: str):
    """Click ``menu > item`` in JupyterLab's menu bar."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(rf"^{re.escape(menu)}$")).click()
    page.locator(
        ".lm-Menu:visible .lm-Menu-item .lm-Menu-itemLabel",
        has_text=re.compile(rf"^{re.escape(item)}$"),
    ).click()


@pytest.mark.parametrize("nb", sorted(NOTEBOOKS))
def test_widget_demo_redraws_in_jupyterlab(nb, lab, browser):
    slider_name = NOTEBOOKS[nb]
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page_errors: list[str] = []
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    stem = Path(nb).stem
    for old in SHOTS.glob(f"{stem}-*.png"):  # no stale screenshots from an earlier run
        old.unlink()
    try:
        # ?reset: a fresh layout with only this notebook open (not the previous test's)
        page.goto(f"{lab.url}/lab/tree/{nb}?reset&token={lab.token}")
        config = json.loads(page.locator("#jupyter-config-data").text_content())
        extensions = [e.get("name") for e in config.get("federated_extensions", [])]
        assert WIDGETS_EXTENSION in extensions, (
            f"the ipywidgets lab extension is not loaded (found {extensions}); server log:\n{lab.log()}"
        )

        notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
        notebook.locator(".jp-CodeCell").first.wait_for(state="visible")
        assert notebook.count() == 1, f"{nb}: expected one open notebook, found {notebook.count()}"
        code_cells = notebook.locator(".jp-CodeCell")
        prompts = code_cells.locator(".jp-InputArea-prompt")
        n_code = sum(
            c["cell_type"] == "code" for c in json.loads((lab.root / nb).read_text())["cells"]
        )
        _wait_until(
            lambda: code_cells.count() == n_code,
            60,
            lambda: f"{nb}: {code_cells.count()} of {n_code} code cells rendered",
        )

        def kernel_idle():
            return (
                _kernel_state(lab, nb) == "idle"
                and page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').count() > 0
            )

        _wait_until(
            kernel_idle,
            RUN_ALL_S,
            lambda: (
                f"{nb}: the kernel is not idle (state {_kernel_state(lab, nb)}); log:\n{lab.log()}"
            ),
        )

        # Edit > Clear Outputs of All Cells (the stored outputs and widget views go), then Run > Run All Cells
        notebook.locator(".jp-Cell").first.click()
        _menu(page, "Edit", "Clear Outputs of All Cells")
        _wait_until(
            lambda: (
                notebook.locator(".jp-OutputArea-output").count() == 0
                and all(re.fullmatch(r"\[ \]:", t.strip()) for t in prompts.all_inner_texts())
            ),
            30,
            lambda: f"{nb}: outputs not cleared: prompts {prompts.all_inner_texts()}",
        )
        _menu(page, "Run", "Run All Cells")
        started = time.monotonic()

        def finished():
            texts = prompts.all_inner_texts()
            return (
                len(texts) == n_code
                and all(re.fullmatch(r"\[\d+\]:", t.strip()) for t in texts)
                and kernel_idle()
            )

        _wait_until(
            finished,
            RUN_ALL_S,
            lambda: (
                f"{nb}: Run All Cells did not finish within {RUN_ALL_S} s: prompts "
                f"{prompts.all_inner_texts()} ({n_code} code cells), kernel {_kernel_state(lab, nb)}, "
                f"errors {_error_outputs(page)}; server log:\n{lab.log()}"
            ),
        )
        print(f"\n{nb}: all {n_code} code cells ran in {time.monotonic() - started:.1f} s")
        assert not _error_outputs(page), (
            f"{nb}: error outputs after Run All Cells: {_error_outputs(page)}"
        )

        # the demo: sliders rendered by the widgets extension, a plot in its output widget
        demo = notebook.locator(".widget-vbox", has=page.locator(".widget-slider")).last
        demo.wait_for(state="visible", timeout=60_000)
        sliders = demo.locator(".widget-slider")
        assert sliders.count() >= 2, f"{nb}: expected the demo's sliders, found {sliders.count()}"
        for i in range(sliders.count()):
            assert sliders.nth(i).locator(".noUi-handle").is_visible(), (
                f"{nb}: slider {i} has no visible handle"
            )
        slider = demo.locator(
            ".widget-slider",
            has=page.locator(".widget-label", has_text=re.compile(rf"^{re.escape(slider_name)}$")),
        )
        assert slider.count() == 1, f"{nb}: no slider described {slider_name!r}"
        plot = demo.locator(".widget-output img")
        plot.first.wait_for(state="visible")
        assert plot.count() == 1, (
            f"{nb}: expected one plot in the demo's output, found {plot.count()}"
        )
        src_before = plot.get_attribute("src")
        assert src_before and src_before.startswith("data:image/png;base64,"), (
            f"{nb}: plot src {src_before!r:.80}"
        )
        box = plot.bounding_box()
        assert box and box["width"] > 100 and box["height"] > 100, (
            f"{nb}: plot is not drawn at a size: {box}"
        )
        readout = slider.locator(".widget-readout")
        value_before = readout.inner_text()
        _shot(page, demo, f"{stem}-before")

        # move the slider one step to the right with the keyboard (noUiSlider handle)
        handle = slider.locator(".noUi-handle")
        handle.focus()
        handle.press("ArrowRight")
        _wait_until(
            lambda: readout.inner_text() != value_before,
            30,
            lambda: f"{nb}: slider {slider_name} did not move (readout {readout.inner_text()!r})",
        )
        value_after = readout.inner_text()

        def redrawn():
            img = demo.locator(".widget-output img")
            return img.count() == 1 and img.get_attribute("src") not in (None, src_before)

        _wait_until(
            redrawn,
            REDRAW_S,
            lambda: (
                f"{nb}: the plot did not change within {REDRAW_S} s after {slider_name} "
                f"{value_before} -> {value_after}; widget output "
                f"{demo.locator('.widget-output').all_inner_texts()}; server log:\n{lab.log()}"
            ),
        )
        _wait_until(kernel_idle, REDRAW_S, f"{nb}: kernel busy after the redraw")
        widget_errors = demo.locator(
            '.widget-output [data-mime-type="application/vnd.jupyter.stderr"]'
        )
        assert widget_errors.count() == 0, (
            f"{nb}: the redraw wrote an error: {widget_errors.all_inner_texts()}"
        )
        assert not _error_outputs(page), (
            f"{nb}: error outputs after moving the slider: {_error_outputs(page)}"
        )
        _shot(page, demo, f"{stem}-after")
        print(f"{nb}: {slider_name} {value_before} -> {value_after}, plot redrawn")
        assert not page_errors, f"{nb}: uncaught errors in the page: {page_errors}"
    except Exception:
        try:
            _shot(page, page.locator("body"), f"{stem}-failure")
        except Exception:
            pass
        raise
    finally:
        context.close()
        try:  # free the kernel for the next notebook (the server fixture stops whatever is left)
            for session in lab.api("GET", "/api/sessions"):
                if session.get("path") == nb:
                    lab.api("DELETE", f"/api/sessions/{session['id']}")
        except Exception:
            pass
