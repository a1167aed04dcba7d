"""stllr.analysis.claims: a claim that holds prints one digit-free line; one that fails raises with the numbers."""

from __future__ import annotations

import json

import pytest

from stllr.analysis.claims import ClaimError, Claims


def test_held_claims_print_fixed_lines_without_measured_digits(capsys):
    check = Claims()
    check.mean_above("S-TLLR mean accuracy", [61.25, 66.5, 64.0], 40.0, "2x chance")
    check.mean_below("plain DFA mean accuracy", [21.5, 23.0], 30.0)
    check.mean_exceeds("S-TLLR", [70.0, 72.0], "BPTT", [50.0, 55.5], margin=5.0)
    check.increasing("accuracy", ["l 0", "l 0.5", "l 1"], [20.0, 40.0, 60.0], min_step=2.0)
    check.within("best lambda_pre", 0.99, 0.9, 1.0, unit="")
    check.verify()
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "holds: S-TLLR mean accuracy > 40 % (2x chance)",
        "holds: plain DFA mean accuracy < 30 %",
        "holds: S-TLLR > BPTT by more than 5 points",
        "holds: accuracy increases from l 0 to l 1 by more than 2 points per step",
        "holds: best lambda_pre in [0.9, 1]",
    ]
    for measured in ("61.25", "63.9", "21.5", "55.5", "0.99"):
        assert all(measured not in line for line in out)


@pytest.mark.parametrize(
    "build, measured",
    [
        (lambda c: c.mean_above("acc", [39.0, 40.0], 40.0), "39.5"),
        (lambda c: c.mean_below("acc", [29.0, 31.5], 30.0), "30.25"),
        (lambda c: c.mean_exceeds("A", [60.0], "B", [56.0], margin=5.0), "+4"),
        (lambda c: c.increasing("acc", ["a", "b", "c"], [20.0, 30.0, 29.0]), "29"),
        (lambda c: c.within("x", 0.75, 0.9, 1.0), "0.75"),
    ],
)
def test_failed_claim_raises_with_the_measured_numbers(build, measured, capsys):
    check = Claims()
    check.mean_above("a claim that holds", [50.0], 40.0)
    build(check)
    with pytest.raises(ClaimError) as err:
        check.verify()
    assert measured in str(err.value)
    assert "1 claim(s) do not hold" in str(err.value)
    out = capsys.readouterr().out
    assert "holds: a claim that holds" in out and "DOES NOT HOLD: " in out


@pytest.mark.parametrize(
    "build, slack",
    [
        (lambda c: c.mean_above("acc", [50.0, 52.0], 40.0), 11.0),
        (lambda c: c.mean_below("acc", [21.0, 23.0], 35.0), 13.0),
        (lambda c: c.mean_exceeds("A", [70.0], "B", [52.0], margin=10.0), 8.0),
        (lambda c: c.increasing("acc", ["a", "b", "c"], [20.0, 30.0, 33.0], min_step=2.0), 1.0),
        (lambda c: c.within("x", 0.95, 0.9, 1.0), 0.05),
        (lambda c: c.mean_above("acc", [39.0], 40.0), -1.0),
    ],
)
def test_slack_is_the_distance_to_failing(build, slack):
    check = Claims()
    build(check)
    assert check.claims[0].slack == pytest.approx(slack)
    assert check.claims[0].holds == (slack > 0)


def test_boundaries_are_strict():
    """A mean exactly at the threshold does not count as above it (the check can fail)."""
    check = Claims()
    check.mean_above("acc", [40.0], 40.0)
    with pytest.raises(ClaimError):
        check.verify()


@pytest.mark.parametrize(
    "build",
    [
        lambda c: c.mean_above("cos", [float("nan")], 0.7),
        lambda c: c.mean_below("cos", [float("nan"), 0.1], 0.7),
        lambda c: c.mean_exceeds("A", [float("nan")], "B", [0.2]),
        lambda c: c.increasing("cos", ["a", "b", "c"], [0.1, float("nan"), 0.9]),
        lambda c: c.within("cos", float("nan"), 0.0, 1.0),
    ],
)
def test_a_nan_measurement_fails_the_claim(build):
    """A cosine of a zero update is NaN: that must fail the claim, not pass it or crash."""
    check = Claims(unit="")
    build(check)
    with pytest.raises(ClaimError, match="nan"):
        check.verify()


def test_tensors_and_arrays_are_accepted(capsys):
    import numpy as np
    import torch

    check = Claims(unit="degrees")
    check.mean_below("a 0-d tensor", torch.tensor([50.0, 60.0]).mean(), 75.0)
    check.mean_below("a tensor", torch.tensor([50.0, 60.0]), 75.0)
    check.mean_above("a numpy scalar", np.float64(80.0), 75.0)
    check.mean_above("an array", np.array([80.0, 90.0]), 75.0)
    check.verify()
    assert capsys.readouterr().out.count("holds: ") == 4


def test_bad_input_is_named():
    check = Claims()
    with pytest.raises(ValueError, match="values: expected at least one value"):
        check.mean_above("acc", [], 1.0)
    with pytest.raises(TypeError, match="values: expected a number"):
        check.mean_above("acc", ["x"], 1.0)
    with pytest.raises(ValueError, match="labels: expected one label per mean"):
        check.increasing("acc", ["a"], [1.0, 2.0])
    with pytest.raises(ValueError, match="no claims"):
        Claims().verify()


def test_claims_log_records_values(tmp_path, monkeypatch, capsys):
    log = tmp_path / "claims.jsonl"
    monkeypatch.setenv("STLLR_CLAIMS_LOG", str(log))
    monkeypatch.setenv("STLLR_NOTEBOOK", "00_quickstart")
    check = Claims()
    check.mean_above("acc", [50.0, 52.0], 40.0)
    check.verify()
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert rows == [
        {
            "notebook": "00_quickstart",
            "text": "acc > 40 %",
            "holds": True,
            "measured": "mean 51 % of [50, 52]",
            "values": {"values": [50.0, 52.0], "threshold": 40.0},
            "slack": 11.0,
        }
    ]


TRAINING_NOTEBOOKS = [
    "00_quickstart",
    "07_factor_choices",
    "08_accuracy_vs_bptt",
    "06_learning_signals",
    "09_gradient_alignment",
    "11_conv_event_frames",
    "12_online_and_your_data",
]


@pytest.mark.parametrize("stem", TRAINING_NOTEBOOKS)
def test_training_notebooks_check_claims_in_compared_cells(stem):
    """Every notebook that trains states its conclusions as claims, in cells nbval compares; the
    cells that print training outcomes are the ones marked as varying."""
    from pathlib import Path

    import nbformat

    nb = nbformat.read(
        Path(__file__).resolve().parents[1] / "notebooks" / f"{stem}.ipynb", as_version=4
    )
    claim_cells = [c for c in nb.cells if c.cell_type == "code" and ".verify()" in c.source]
    assert claim_cells, f"{stem}: no claims cell"
    for c in claim_cells:
        assert "NBVAL_IGNORE_OUTPUT" not in c.source, (
            f"{stem}: a claims cell must be compared by nbval"
        )
        text = "".join("".join(out.get("text", "")) for out in c.get("outputs", []))
        assert "holds: " in text and "DOES NOT HOLD" not in text and "ClaimError" not in text, (
            f"{stem}: the stored output of a claims cell does not show its claims holding: {text!r}"
        )


def test_nbval_ignore_markers_are_recognised():
    """nbval honours a marker comment only when the comment is exactly the marker: a reason must go
    on its own line (found when '# NBVAL_IGNORE_OUTPUT  (why)' silently compared a varying cell)."""
    from pathlib import Path

    import nbformat

    for path in sorted(
        (Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb")
    ):
        for cell in nbformat.read(path, as_version=4).cells:
            for line in cell.source.splitlines():
                if "NBVAL_" in line and line.lstrip().startswith("#"):
                    assert line.strip().lstrip("#").strip() in (
                        "NBVAL_IGNORE_OUTPUT",
                        "NBVAL_SKIP",
                        "NBVAL_CHECK_OUTPUT",
                        "NBVAL_RAISES_EXCEPTION",
                    ), f"{path.name}: nbval does not recognise the marker line {line!r}"
