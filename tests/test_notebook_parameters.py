"""Every notebook's ``parameters`` cell is one papermill understands, and every notebook takes its
figures folder from ``STLLR_FIGURES_DIR`` (how tools/make_figures.py and ``make test`` redirect it).

papermill's own parser (``papermill.inspection._infer_parameters``, the Python translator's
``inspect``) reads the cell when parameters are passed (``make figures FULL=1``, ``papermill -p``,
``papermill --help-notebook``): a line it cannot parse is logged as "Unable to parse line N" and
that parameter is silently left out of its list (e.g. a second ``=`` in the comment:
``LEAK = 2.0  # beta = sigmoid(leak)``).
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
FIGURES_DIR_LINE = 'FIGURES_DIR = os.environ.get("STLLR_FIGURES_DIR", FIGURES_DIR)'


def _parameters_cell(nb):
    cells = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged 'parameters', found {len(cells)}"
    return cells[0], nb.cells[cells[0]]


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        if record.levelno >= logging.WARNING:
            self.messages.append(record.getMessage())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_parameters_cell_parses_cleanly_with_papermill(path):
    from papermill.inspection import _infer_parameters
    from papermill.iorw import load_notebook_node
    from papermill.log import logger

    nb = load_notebook_node(str(path))  # as papermill reads it (it adds the metadata it expects)
    _, cell = _parameters_cell(nb)
    handler = _Records()
    logger.addHandler(handler)
    try:
        params = _infer_parameters(nb)
    finally:
        logger.removeHandler(handler)
    assert not handler.messages, f"{path.name}, parameters cell: " + "; ".join(handler.messages)

    # papermill finds exactly the names the cell assigns, with the same default values
    assigned = {}
    for node in ast.parse(cell.source).body:
        assert (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ), (
            f"{path.name}, parameters cell line {node.lineno}: only `NAME = value` lines belong there"
        )
        assigned[node.targets[0].id] = ast.literal_eval(node.value)
    found = {p.name: p.default for p in params}
    assert list(found) == list(assigned), (
        f"{path.name}: papermill sees {list(found)}, the cell assigns {list(assigned)}"
    )
    for name, default in found.items():
        assert ast.literal_eval(default) == assigned[name], (
            f"{path.name}: papermill reads {name} = {default!r}, the cell assigns {assigned[name]!r}"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_figures_dir_comes_from_the_environment_before_any_figure(path):
    nb = nbformat.read(path, as_version=4)
    index, cell = _parameters_cell(nb)
    assert "FIGURES_DIR" in cell.source, f"{path.name}: the parameters cell defines no FIGURES_DIR"
    code = [(i, c.source) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    reads = [
        i for i, src in code if any(line.strip() == FIGURES_DIR_LINE for line in src.splitlines())
    ]
    first_use = next((i for i, src in code if "savefig(" in src or "save_gif(" in src), None)
    assert reads, f"{path.name}: no cell has the line `{FIGURES_DIR_LINE}`"
    assert reads[0] > index and (first_use is None or reads[0] <= first_use), (
        f"{path.name}: STLLR_FIGURES_DIR is read in cell {reads[0]}, after the first figure (cell {first_use})"
    )
