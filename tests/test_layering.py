"""The package's layering (CONTRIBUTING.md), checked twice: on the source (every import statement of
every file, those inside functions too) and on what a fresh interpreter loads. The rule at the top
of stllr/ imports no subpackage; models and data sit on it, training on them, measure and analysis
beside training; studies and plotting (the only users of matplotlib) and the cli on top, and nothing
imports the cli."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "stllr"

#: the rule: the modules at the top of stllr/ (``__init__.py`` among them)
RULE = (
    "__init__",
    "functional",
    "layers",
    "deferral",
    "bptt",
    "neurons",
    "signals",
    "_base",
    "_checks",
    "_io",
)
SUBPACKAGES = ("models", "data", "measure", "analysis", "training", "studies", "plotting", "cli")
PLOTTING_LIBS = ("matplotlib", "ipywidgets", "IPython")
_TOP = ("stllr.studies", "stllr.plotting", "stllr.cli")

#: part -> (the modules it must not import, what the rule says); a part is "rule" or a subpackage
LAYERS = {
    "rule": (
        tuple(f"stllr.{s}" for s in SUBPACKAGES) + PLOTTING_LIBS,
        "the rule imports no subpackage of stllr and no plotting library",
    ),
    **{
        part: (
            ("stllr.training",) + _TOP + PLOTTING_LIBS,
            f"stllr.{part} sits below training: no training, studies, plotting, cli, matplotlib",
        )
        for part in ("models", "data")
    },
    **{
        part: (
            _TOP + PLOTTING_LIBS,
            f"stllr.{part} imports no studies, plotting, cli, matplotlib",
        )
        for part in ("measure", "analysis", "training")
    },
    "cli": (
        ("stllr.studies", "stllr.plotting") + PLOTTING_LIBS,
        "stllr.cli (and python -m stllr) imports no studies, plotting, matplotlib",
    ),
    "studies": (("stllr.cli",), "stllr.studies imports nothing from stllr.cli"),
    "plotting": (("stllr.cli",), "stllr.plotting imports nothing from stllr.cli"),
}


def _part(path: Path) -> str:
    """The part of the package a file of stllr/ belongs to (``__main__.py``: the cli's)."""
    rel = path.relative_to(PKG)
    if len(rel.parts) > 1:
        return rel.parts[0]
    return "cli" if rel.stem == "__main__" else "rule"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _files():
    return sorted(PKG.rglob("*.py"))


def _imports(path: Path):
    """``(line, module)`` for every module a file imports, relative imports resolved; for
    ``from a import b`` both ``a`` and ``a.b`` (b may be a submodule)."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            yield node.lineno, module
            for alias in node.names:
                yield node.lineno, f"{module}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            yield node.lineno, node.args[0].value


def _forbidden(module: str, part: str):
    """The forbidden prefix ``module`` falls under for ``part``, or None."""
    for prefix in LAYERS[part][0]:
        if module == prefix or module.startswith(prefix + "."):
            return prefix
    return None


def _loaded_against(modules, part: str):
    """The forbidden prefixes of ``part`` that some of ``modules`` (``sys.modules``) fall under."""
    return sorted({p for p in map(lambda m: _forbidden(m, part), modules) if p}, key=str.lower)


def test_every_file_of_the_package_has_a_layer():
    parts = {_part(p) for p in _files()}
    assert parts <= set(LAYERS), (
        f"subpackages without a place in LAYERS: {sorted(parts - set(LAYERS))}"
    )
    top = {p.stem for p in PKG.glob("*.py")} - {"__main__"}
    assert top == set(RULE), (
        f"the modules at the top of stllr/ are the rule: add {sorted(top - set(RULE))} to RULE, "
        f"drop {sorted(set(RULE) - top)}"
    )
    subs = {p.parent.name for p in PKG.glob("*/__init__.py")}
    assert subs == set(SUBPACKAGES), f"SUBPACKAGES lacks {sorted(subs - set(SUBPACKAGES))}"


def test_imports_in_the_source_follow_the_layers():
    broken = []
    for path in _files():
        part = _part(path)
        seen = set()
        for line, module in _imports(path):
            prefix = _forbidden(module, part)
            if prefix and (line, prefix) not in seen:
                seen.add((line, prefix))
                broken.append(
                    f"{path.relative_to(ROOT)}:{line} imports {module} ({LAYERS[part][1]})"
                )
    assert not broken, "imports that break the layering:\n" + "\n".join(broken)


def _modules_of(part: str):
    """Every module of a part (for "rule": ``stllr`` and its top modules; the cli's: ``stllr.__main__``)."""
    if part == "rule":
        return ["stllr"] + [f"stllr.{m}" for m in RULE if m != "__init__"]
    modules = [_module_name(p) for p in sorted((PKG / part).rglob("*.py"))]
    return modules + (["stllr.__main__"] if part == "cli" else [])


def test_the_rule_alone_loads_no_subpackage_and_no_matplotlib():
    """The plain ``import stllr`` of a notebook or a user: a fresh interpreter's sys.modules."""
    out = subprocess.run(
        [sys.executable, "-c", "import stllr; import sys; print(sorted(sys.modules))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    loaded = _loaded_against(ast.literal_eval(out), "rule")
    assert not loaded, f"import stllr loads {', '.join(loaded)} ({LAYERS['rule'][1]})"


def test_importing_each_part_loads_nothing_it_may_not_import():
    """Each part's every module imported in a fresh interpreter (all parts side by side)."""
    script = (
        "import importlib, json, sys\n"
        "for name in sys.argv[1:]:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    procs = {
        part: subprocess.Popen(
            [sys.executable, "-c", script, *_modules_of(part)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for part in LAYERS
    }
    broken = []
    for part, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        if proc.returncode != 0:
            last = err.strip().splitlines()[-1] if err.strip() else f"exit status {proc.returncode}"
            broken.append(f"importing {part} fails: {last}")
            continue
        loaded = _loaded_against(json.loads(out), part)
        if loaded:
            broken.append(f"importing {part} loads {', '.join(loaded)} ({LAYERS[part][1]})")
    assert not broken, (
        "modules loaded against the layering (test_imports_in_the_source_follow_the_layers names "
        "the file):\n" + "\n".join(broken)
    )
