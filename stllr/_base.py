"""The part every layer with state between time steps shares: state moves with ``.to()``, a
batch size that changes mid-sequence is an error, the reference's state_dicts load, and
:func:`reset_states` starts a new sequence for every such layer of a model."""

from __future__ import annotations

from torch import nn


class StatefulLayer(nn.Module):
    """Base class. Subclasses keep ``self.state``: ``None`` between sequences, else a NamedTuple
    of tensors (or ``None`` entries) whose ``membrane`` field has the batch as first dimension."""

    _stateful = True  # stllr.reset_states() resets every module that says so
    state = None

    def reset_state(self) -> None:
        """Forget the state: call between sequences."""
        self.state = None
        self._invalidate_cache()

    def _invalidate_cache(self) -> None:
        """Drop anything cached from the parameters (called when they may have changed)."""

    @property
    def membrane(self):
        return None if self.state is None else self.state.membrane

    def _check_batch(self, x) -> None:
        if self.state is not None and self.state.membrane.shape[0] != x.shape[0]:
            raise ValueError(
                f"x: batch size {x.shape[0]} differs from the layer state's "
                f"{self.state.membrane.shape[0]}; call reset_state() between sequences"
            )

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        if self.state is not None:  # the state follows .to(device / dtype), .double(), ...
            self.state = type(self.state)(*(None if t is None else fn(t) for t in self.state))
        self._invalidate_cache()
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The reference may store leak/threshold as [1]-shaped tensors; ours are scalars.
        for name in ("leak", "threshold"):
            key = prefix + name
            if key in state_dict and state_dict[key].numel() == 1:
                state_dict[key] = state_dict[key].reshape(())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._invalidate_cache()


def reset_states(module: nn.Module) -> None:
    """Call ``reset_state()`` on every stateful layer inside ``module`` (start of a new sequence)."""
    for m in module.modules():
        if getattr(m, "_stateful", False):
            m.reset_state()


def reset_sequence(model: nn.Module) -> None:
    """Start a new sequence for ``model``: its own ``reset_state()`` where it has one (a model of
    :mod:`stllr.models`: layer states, dropout masks, the feedback context), then every stateful
    layer inside (so a bare stack of layers, or a model whose ``reset_state`` misses one, starts
    clean too)."""
    if callable(getattr(model, "reset_state", None)):
        model.reset_state()
    reset_states(model)
