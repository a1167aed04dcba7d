"""The three places that name dependencies agree: pyproject.toml, constraints.txt, environment.yml."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[_name(name)] = version
    return pins


def _pyproject_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return reqs


def _environment_pip() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["name"] == "stllr"
    assert "python=3.11" in env["dependencies"]
    pip = [d for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, "environment.yml needs exactly one pip section"
    return pip[0]["pip"]


def test_every_pyproject_dependency_is_pinned_in_constraints():
    pins = _constraints()
    missing = [r for r in _pyproject_requirements() if _name(r) not in pins]
    assert not missing, f"pyproject dependencies without a pin in constraints.txt: {missing}"
    assert pins["torch"] == "2.13.0", "the Makefile's fast CPU install relies on torch==2.13.0"


def test_environment_yml_pins_equal_constraints_and_cover_pyproject():
    pins = _constraints()
    pip = _environment_pip()
    assert "-e .[notebooks,test,docs,cluster]" in pip
    env_pins = {}
    for entry in pip:
        if entry.startswith("-e"):
            continue
        name, _, version = entry.partition("==")
        assert version, f"environment.yml: {entry!r} is not an exact pin"
        env_pins[_name(name)] = version
    for name, version in env_pins.items():
        assert pins.get(name) == version, (
            f"{name}: environment.yml pins {version}, constraints.txt {pins.get(name)}"
        )
    missing = {_name(r) for r in _pyproject_requirements()} - set(env_pins)
    assert not missing, f"environment.yml lacks pins for {sorted(missing)}"


def test_makefile_installs_with_the_constraints_and_stamps_on_their_hash():
    makefile = (ROOT / "Makefile").read_text()
    assert "-c constraints.txt" in makefile
    assert re.search(r"cat pyproject.toml constraints.txt \| sha256sum", makefile)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def test_spikingjelly_is_installed_without_its_declared_dependencies_everywhere():
    """SpikingJelly (notebook 04) is pinned in constraints.txt and installed with --no-deps by the
    Makefile's venv and by Binder's postBuild, at the same version."""
    pins = _constraints()
    assert "spikingjelly" in pins
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet --no-deps -c constraints.txt spikingjelly" in makefile
    post_build = (ROOT / "postBuild").read_text()
    assert f"pip install --no-deps spikingjelly=={pins['spikingjelly']}" in post_build
    assert f"spikingjelly=={pins['spikingjelly']}" in (ROOT / "environment.yml").read_text()
