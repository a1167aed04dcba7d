"""Small helpers shared by models, training and notebooks."""
from __future__ import annotations

from torch import nn


def reset_states(module: nn.Module) -> None:
    """Call ``reset_state()`` on every stateful layer inside ``module`` (start of a new sequence)."""
    for m in module.modules():
        if getattr(m, "_stateful", False):
            m.reset_state()
