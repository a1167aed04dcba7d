"""``make test-nbval-forced`` really runs the notebooks on other CPU kernels: the environment the
Makefile sets (ATEN_CPU_CAPABILITY=avx2, MKL_CBWR=COMPATIBLE) reaches the kernel nbval starts as a
subprocess. Checked end to end: the Makefile's own target runs a one-cell notebook under nbval
whose cell fails unless the kernel's torch uses its AVX2 code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]

CHECK = """\
import os
import torch
print(torch.backends.cpu.get_cpu_capability(), os.environ.get("MKL_CBWR"))
assert torch.backends.cpu.get_cpu_capability() == "AVX2", torch.backends.cpu.get_cpu_capability()
assert os.environ.get("MKL_CBWR") == "COMPATIBLE"
"""


def _avx2_available() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
        env={**os.environ, "ATEN_CPU_CAPABILITY": "avx2"},
        capture_output=True,
        text=True,
    )
    return probe.stdout.strip() == "AVX2"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_forced_nbval_variant_reaches_the_kernel(tmp_path):
    if not _avx2_available():
        pytest.skip("this CPU has no AVX2 kernels for torch to force")
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(CHECK)
    cell.execution_count = 1
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="AVX2 COMPATIBLE\n")]
    nb.cells.append(cell)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = tmp_path / "kernel_env.ipynb"
    nbformat.write(nb, str(path))
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    env.pop("ATEN_CPU_CAPABILITY", None)
    env.pop("MKL_CBWR", None)
    run = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "test-nbval-forced",
            f"NOTEBOOKS={path}",
            "PYTEST_ARGS=-p no:cacheprovider -q",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, (
        f"make test-nbval-forced on a kernel check failed:\n{run.stdout[-3000:]}\n{run.stderr[-2000:]}"
    )
    assert "1 passed" in run.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_a_dry_run_of_make_test_prints_the_parts_and_touches_no_log(tmp_path):
    """``make -n test`` (tests/test_readme.py runs one while ``make test`` may be running) reaches
    tools/run_test_parts.sh, whose recipe names $(MAKE): it must print each part's command, with the
    side-by-side settings, and write no log (it used to overwrite the running parts' logs)."""
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "tools", tmp_path / "tools")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    run = subprocess.run(
        ["make", "-n", "test"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert not (tmp_path / "build" / "test-logs").exists()
    for part in ("[package]", "[nbval-native]", "[nbval-forced]"):
        assert part in run.stdout
    assert run.stdout.count("OMP_NUM_THREADS=1 STLLR_WORKERS=1") >= 2  # the notebook parts
