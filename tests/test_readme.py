"""The README's example runs as printed and actually trains (weights move, loss is finite)."""
from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs_and_updates_weights():
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    code = blocks[0]
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    hidden, readout = namespace["hidden"], namespace["readout"]
    torch.manual_seed(0)
    fresh_hidden = type(hidden)(700, 450, leak=5.0, factors=[0.5, 1.0, 1.0, 1.0])
    # same seed, same construction order -> same initial weights; the optimizer step moved them
    assert not torch.equal(fresh_hidden.weight, hidden.weight)
    assert hidden.weight.grad is None or torch.count_nonzero(hidden.weight.grad) == 0  # zero_grad ran
    assert torch.isfinite(readout.weight).all()
