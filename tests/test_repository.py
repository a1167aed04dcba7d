"""A clone is self-contained (no tracked file points outside the repository) and its code is
formatted and linted as pyproject.toml configures ruff."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"(?<![\w/.])(shared/spec/|\.\./shared/|\.\./\.library)")


def _tracked_text_files():
    try:
        out = subprocess.run(
            ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    for name in out.splitlines():
        path = ROOT / name
        if (
            path.suffix in {".py", ".md", ".ipynb", ".cfg", ".toml", ".txt", ".yml", ".sh"}
            or path.name == "Makefile"
        ):
            yield path


def test_no_tracked_file_points_outside_the_repository():
    hits = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()[:100]}"
        for p in _tracked_text_files()
        if p.is_file() and p != Path(__file__).resolve()
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not hits, (
        "files outside the repository are referenced (a clone does not have them):\n"
        + "\n".join(hits)
    )


def test_the_rule_specification_is_in_the_repository():
    assert (ROOT / "docs" / "rule.md").is_file() and (ROOT / "docs" / "paper-results.md").is_file()


RUFF = Path(sys.executable).parent / "ruff"
RUFF_FIX = ".venv/bin/ruff format . && .venv/bin/ruff check --fix ."


@pytest.mark.parametrize("command", [["format", "--check"], ["check"]], ids=["format", "lint"])
def test_the_code_is_formatted_and_linted(command):
    """ruff, as configured in pyproject.toml, finds nothing to change (notebooks are not checked)."""
    assert RUFF.is_file(), f"no ruff beside {sys.executable}: it is in the test extra (make venv)"
    proc = subprocess.run(
        [str(RUFF), *command, "--no-cache", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (
        f"ruff {' '.join(command)} . found something to change:\n{proc.stdout}{proc.stderr}\n"
        f"fix: {RUFF_FIX} (what --fix cannot change, ruff check names: fix that by hand)"
    )
