"""Shared pytest configuration and fixtures for the package tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

#: Chromium's flags in the browser tests (headless in a container: no sandbox, GPU, network
#: services or first-run dialogs)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]


def pytest_configure(config):
    # Registered here rather than in pyproject.toml (editing that rebuilds the Makefile's venv).
    config.addinivalue_line(
        "markers",
        "browser: drives JupyterLab in headless Chromium (deselect with -m 'not browser')",
    )


@pytest.fixture(scope="module")
def chromium_launch() -> dict:
    """Keyword arguments of playwright's ``chromium.launch`` for the system's Chromium
    (``chromium`` or ``chromium-browser`` on PATH; ``make test`` installs it with
    tools/ensure_chromium.sh, no browser download). Without it the test fails, or is skipped with
    STLLR_SKIP_BROWSER=1."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("STLLR_SKIP_BROWSER") == "1":
            pytest.skip("chromium not found and STLLR_SKIP_BROWSER=1")
        pytest.fail(
            "chromium (or chromium-browser) is not on PATH: run tools/ensure_chromium.sh "
            "(make test does), or set STLLR_SKIP_BROWSER=1 to skip the browser tests"
        )
    pytest.importorskip("playwright.sync_api")
    return {"executable_path": path, "headless": True, "args": list(CHROMIUM_ARGS)}


@pytest.fixture(scope="module")
def browser(chromium_launch):
    """A headless Chromium (playwright ``Browser``) for the module's tests, closed at the end."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(**chromium_launch)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def one_thread():
    """torch on one thread for the test, restored after: small models run fastest (and steadiest
    on a shared machine) that way. A module takes it for every test with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def non_checkpoints(tmp_path) -> dict[Path, str]:
    """Files that are not checkpoints (in ``tmp_path/not-checkpoints``), each with the reason the
    one-line error gives for it: ``{path: why}``."""
    import argparse
    import pickle

    import torch

    folder = tmp_path / "not-checkpoints"
    folder.mkdir()
    raw = {
        "text.txt": (b"epoch 3: 91.2%\n", "it is not a torch.save file"),
        "random.bin": (bytes(range(256)) * 8, "it is not a torch.save file"),
        "empty.pth.tar": (b"", "the file is empty"),
        "object.pkl": (
            pickle.dumps(argparse.Namespace(a=1)),
            "it is a plain pickle, not a torch.save file",
        ),
    }
    for name, (content, _) in raw.items():
        (folder / name).write_bytes(content)
    saved = {
        "object.pth.tar": (argparse.Namespace(a=1), "it holds Python objects other than tensors"),
        "list.pth.tar": ([torch.zeros(2)], "it holds a list, not a dict"),
        "dict.pth.tar": (
            {"epoch": 3, "acc": 1.0},
            "it holds a dict with keys 'epoch', 'acc' but no 'state_dict'",
        ),
    }
    for name, (obj, _) in saved.items():
        torch.save(obj, folder / name)
    return {folder / name: why for name, (_, why) in {**raw, **saved}.items()}
