"""The reference networks of the S-TLLR paper, their BPTT twins, and small models for the
procedural tasks, under the reference's ``--arch`` names.

Every model runs ONE time step per ``forward(x_t)`` and returns the logits of that step
``[B, num_classes]``; ``reset_state()`` starts a new sequence. Modules:
:mod:`~stllr.models.common` (base class, dropout, pooling), :mod:`~stllr.models.recurrent`
(SHD), :mod:`~stllr.models.conv` (VGG-9, small conv net), :mod:`~stllr.models.registry`
(:func:`build_model` and the ``--arch`` names).

Example:
    >>> from stllr.models import build_model, list_models
    >>> "stllr_shd_net" in list_models()
    True
"""

from stllr.models.common import (
    ACTIVATIONS,
    SequenceDropout,
    SpikingModel,
    normalize_feedback_mode,
    normalize_pooling,
    resolve_activation,
)
from stllr.models.conv import BPTTVGG9, VGG9, BPTTSmallConvNet, SmallConvNet
from stllr.models.recurrent import BPTTRecurrentNet, RecurrentNet
from stllr.models.registry import (
    MODELS,
    ModelSpec,
    adapt_reference_state_dict,
    build_model,
    count_parameters,
    get_model_spec,
    list_models,
    load_reference_weights,
)

__all__ = [
    "MODELS",
    "ModelSpec",
    "build_model",
    "list_models",
    "get_model_spec",
    "adapt_reference_state_dict",
    "load_reference_weights",
    "count_parameters",
    "SequenceDropout",
    "SpikingModel",
    "normalize_feedback_mode",
    "normalize_pooling",
    "resolve_activation",
    "ACTIVATIONS",
    "RecurrentNet",
    "BPTTRecurrentNet",
    "VGG9",
    "BPTTVGG9",
    "SmallConvNet",
    "BPTTSmallConvNet",
]
