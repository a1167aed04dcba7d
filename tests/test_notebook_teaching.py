"""Every notebook has the teaching frame the suite promises (issue 13): a numbered title that
matches its file, learning objectives, prerequisites, the link to the README's notation card, short
markdown cells and a key-takeaways box; the teaching notebooks have exercises with a revealable
solution and a check; the README's tour lists the notebooks in their learning order, a thumbnail
each, and the notation card it links exists."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
README = (ROOT / "README.md").read_text()
#: the notebooks where the learner writes code (an exercise, a solution to reveal, a check)
TEACHING = {
    "01_lif_and_traces",
    "02_rule_from_scratch",
    "03_stdp_window",
    "04_online_rules",
    "12_online_and_your_data",
}
#: "about 12 lines" (issue 13): a cell longer than this is split around a figure or code
MAX_MARKDOWN_LINES = 14


def _markdown(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "markdown"]


@pytest.fixture(scope="module", params=NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def notebook(request):
    return request.param.stem, nbformat.read(request.param, as_version=4)


def test_the_suite_is_numbered_without_gaps_and_teaching_notebooks_exist():
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    assert numbers == list(range(len(NOTEBOOKS))), f"notebook numbers: {numbers}"
    missing = TEACHING - {p.stem for p in NOTEBOOKS}
    assert not missing, f"teaching notebooks missing: {sorted(missing)}"


def test_title_objectives_prerequisites_notation_takeaways(notebook):
    stem, nb = notebook
    md = _markdown(nb)
    title = md[0].splitlines()[0]
    assert re.match(rf"# {stem[:2]} · \S", title), f"{stem}: first line {title!r}"
    text = "\n".join(md)
    assert re.search(r"Learning objectives|By the end you can", text), f"{stem}: no objectives"
    assert "**Prerequisites" in text, f"{stem}: no prerequisites"
    assert "(../README.md#notation)" in text, f"{stem}: no link to the notation card"
    assert "Key takeaways" in md[-1], f"{stem}: the last markdown cell is not the takeaways box"


def test_markdown_cells_are_short(notebook):
    stem, nb = notebook
    long = [
        (i, len(c.source.splitlines()))
        for i, c in enumerate(nb.cells)
        if c.cell_type == "markdown" and len(c.source.splitlines()) > MAX_MARKDOWN_LINES
    ]
    assert not long, f"{stem}: markdown cells (index, lines) over {MAX_MARKDOWN_LINES}: {long}"


def test_teaching_notebooks_have_exercises_with_solutions_and_checks(notebook):
    stem, nb = notebook
    if stem not in TEACHING:
        pytest.skip("a study notebook: exercises are optional")
    md = "\n".join(_markdown(nb))
    assert re.search(r"Exercise", md), f"{stem}: no exercise"
    assert "<details>" in md, f"{stem}: no solution to reveal"
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert any(re.search(r"^\s*assert ", s, re.M) for s in code), (
        f"{stem}: no cell checks an answer"
    )


def test_readme_tour_is_the_suite_in_order_with_a_thumbnail_each():
    rows = re.findall(
        r"^\| \[`(\d\d_\w+)`\]\(notebooks/(\d\d_\w+)\.ipynb\) \|.*\| !\[\]\((.+?)\) \|$",
        README,
        flags=re.M,
    )
    assert [r[0] for r in rows] == [p.stem for p in NOTEBOOKS]
    assert all(r[0] == r[1] for r in rows)
    for stem, _, image in rows:
        assert image.startswith(f"figures/{stem[:2]}_"), (
            f"{stem}: thumbnail {image} is another notebook's"
        )
        assert (ROOT / image).is_file(), f"{stem}: thumbnail {image} does not exist"


def test_the_notation_card_exists_and_names_each_symbol_once():
    card = README.split("## Notation\n", 1)[1].split("\n## ", 1)[0]
    symbols = re.findall(r"^\| ([^|]+) \|", card, flags=re.M)[1:]  # after the header row
    names = [s.strip("` ") for row in symbols for s in row.split(",")]
    for needed in (
        "B",
        "T",
        "T_l",
        "d = T - T_l",
        "psi",
        "delta_t",
        "F",
        "lambda_pre",
        "alpha_post",
    ):
        assert needed in names, f"notation card lacks {needed}"
    assert len(names) == len(set(names)), f"a symbol appears twice: {names}"
