"""stllr: S-TLLR, an STDP-inspired three-factor temporal local learning rule for spiking
neural networks (Apolinario & Roy, TMLR 2025), with BPTT twins, learning signals and tools
to measure it."""

from stllr._base import reset_states

from . import functional
from ._checks import input_checks, set_input_checks
from .bptt import Conv2dLIF, LeakyIntegrator, LinearLIF, RecurrentLIF, surrogate_spike
from .deferral import DeferredUpdates, deferred_updates
from .functional import (
    CLI_DEFAULT_FACTORS,
    DEFAULT_FACTORS,
    PSI_FUNCTIONS,
    Factors,
    fast_sigmoid,
    get_psi,
    lif_step,
    rational,
    sigmoid,
    standardize_weight,
    trace_step,
    triangle,
)
from .layers import Conv2dSTLLR, LeakyReadout, LinearSTLLR, RecurrentSTLLR, STLLRState
from .neurons import LIFNeuron, SecondaryActivation
from .signals import FEEDBACK_MODES, FeedbackContext, LearningSignal, OutputErrorTap

__version__ = "0.2.0"

__all__ = [
    "functional",
    "input_checks",
    "set_input_checks",
    "LinearSTLLR",
    "RecurrentSTLLR",
    "Conv2dSTLLR",
    "LeakyReadout",
    "STLLRState",
    "deferred_updates",
    "DeferredUpdates",
    "LinearLIF",
    "RecurrentLIF",
    "Conv2dLIF",
    "LeakyIntegrator",
    "surrogate_spike",
    "LIFNeuron",
    "SecondaryActivation",
    "FeedbackContext",
    "OutputErrorTap",
    "LearningSignal",
    "FEEDBACK_MODES",
    "rational",
    "triangle",
    "sigmoid",
    "fast_sigmoid",
    "PSI_FUNCTIONS",
    "get_psi",
    "lif_step",
    "trace_step",
    "standardize_weight",
    "Factors",
    "DEFAULT_FACTORS",
    "CLI_DEFAULT_FACTORS",
    "reset_states",
    "__version__",
]
