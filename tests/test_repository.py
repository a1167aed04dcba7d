"""A clone is self-contained: no tracked file points at a file outside the repository."""

from __future__ import annotations

import re
import subprocess
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
