"""Shared pytest configuration and fixtures for the package tests."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_configure(config):
    # Registered here rather than in pyproject.toml (editing that rebuilds the Makefile's venv).
    config.addinivalue_line(
        "markers",
        "browser: drives JupyterLab in headless Chromium (deselect with -m 'not browser')",
    )


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
