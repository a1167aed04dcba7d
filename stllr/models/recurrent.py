"""The recurrent network of the paper's SHD experiments and its BPTT twin."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from stllr.bptt import LeakyIntegrator, RecurrentLIF
from stllr.functional import CLI_DEFAULT_FACTORS
from stllr.layers import LeakyReadout, RecurrentSTLLR
from stllr.models.common import SpikingModel, _kaiming_normal_linear, _set_recurrent_trainable
from stllr.signals import OutputErrorTap

__all__ = ["RecurrentNet", "BPTTRecurrentNet"]


class RecurrentNet(SpikingModel):
    """S-TLLR recurrent network of the reference's SHD model (``AudioNet``).

    RecurrentSTLLR in -> hidden (leak 5, threshold 0.6, soft reset, weight standardisation on W and
    W_rec, psi rational by default) -> learning-signal hook [classes, hidden] -> LeakyReadout
    hidden -> classes (leak 5, factors [0, 0.99, 0, 1], raw weight) -> output-error tap.
    Init: kaiming-normal ``weight``s, zero biases, ``weight_rec`` kaiming-uniform(a=sqrt 5).
    ``rate_reg`` / ``rate_target``: activity regularisation added at the hook (off by default, as the
    reference; see :class:`~stllr.signals.LearningSignal`). x_t [B, in] -> logits [B, classes].
    """

    is_stllr = True

    def __init__(
        self,
        num_classes: int = 20,
        input_shape=(700,),
        hidden: int = 450,
        factors=CLI_DEFAULT_FACTORS,
        feedback_mode: str = "bp",
        psi: Optional[str] = None,
        leak: float = 5.0,
        readout_leak: float = 5.0,
        readout_factors=(0.0, 0.99, 0.0, 1.0),
        train_recurrent: bool = True,
        rate_reg: float = 0.0,
        rate_target: float = 0.03,
    ):
        super().__init__(num_classes, input_shape, feedback_mode)
        n_in = self.input_shape[0]
        self.linear1 = RecurrentSTLLR(
            n_in,
            hidden,
            bias=True,
            threshold=0.6,
            leak=leak,
            factors=factors,
            reset="soft",
            psi=psi or "rational",
            weight_standardization=True,
        )
        self.linear1_hook = self._hook((hidden,), rate_reg=rate_reg, rate_target=rate_target)
        self.last_layer = LeakyReadout(
            hidden, num_classes, bias=True, leak=readout_leak, factors=readout_factors
        )
        self.output_tap = OutputErrorTap(self.feedback_context)
        _kaiming_normal_linear(self.linear1)
        _kaiming_normal_linear(self.last_layer)
        _set_recurrent_trainable(self.linear1, train_recurrent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear1(x)
        x = self.linear1_hook(x)
        return self.output_tap(self.last_layer(x))


class BPTTRecurrentNet(SpikingModel):
    """BPTT twin of :class:`RecurrentNet` (the reference's ``BPTTAudioNet``).

    RecurrentLIF in -> hidden (standardised W and W_rec, surrogate psi rational) -> LeakyIntegrator
    hidden -> classes (plain weight, leak 5). Matched twin: hidden leak 5 and the S-TLLR model's
    initialisation. ``reference_baseline=True``: hidden leak 15 and kaiming-normal W_rec, as the
    reference's baseline.
    """

    is_stllr = False

    def __init__(
        self,
        num_classes: int = 20,
        input_shape=(700,),
        hidden: int = 450,
        psi: Optional[str] = None,
        leak: float = 5.0,
        readout_leak: float = 5.0,
        reference_baseline: bool = False,
        train_recurrent: bool = True,
    ):
        super().__init__(num_classes, input_shape, "bp")
        n_in = self.input_shape[0]
        if reference_baseline:
            leak = 15.0
        self.reference_baseline = bool(reference_baseline)
        self.linear1 = RecurrentLIF(
            n_in,
            hidden,
            bias=True,
            threshold=0.6,
            leak=leak,
            reset="soft",
            psi=psi or "rational",
            weight_standardization=True,
        )
        self.last_layer = LeakyIntegrator(hidden, num_classes, bias=True, leak=readout_leak)
        _kaiming_normal_linear(self.linear1)
        _kaiming_normal_linear(self.last_layer)
        if reference_baseline:
            nn.init.kaiming_normal_(self.linear1.weight_rec)
        _set_recurrent_trainable(self.linear1, train_recurrent)

    _reference_renames = {
        "linear1_rec.weight": "linear1.weight_rec",
        "linear1_rec.gain": "linear1.gain_rec",
        "lif1.": "linear1.",
        "lif2.": "last_layer.",
    }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(self.linear1(x))
