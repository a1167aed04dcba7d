"""The registered architectures under the reference's ``--arch`` names: :func:`build_model`,
:func:`list_models`, :func:`get_model_spec`, and loading the reference's checkpoints."""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from stllr.functional import CLI_DEFAULT_FACTORS, check_factors, get_psi
from stllr.models.common import (
    SpikingModel,
    normalize_feedback_mode,
    normalize_pooling,
    resolve_activation,
)
from stllr.models.conv import BPTTVGG9, VGG9, BPTTSmallConvNet, SmallConvNet, _check_image_shape
from stllr.models.recurrent import BPTTRecurrentNet, RecurrentNet

__all__ = [
    "MODELS",
    "ModelSpec",
    "build_model",
    "list_models",
    "get_model_spec",
    "adapt_reference_state_dict",
    "load_reference_weights",
    "count_parameters",
]


# ======================================================================================
# Registry
# ======================================================================================
class ModelSpec:
    """One registry entry: how to build ``arch`` and its defaults."""

    def __init__(
        self,
        arch: str,
        family: str,
        is_stllr: bool,
        num_classes: int,
        input_shape: Tuple[int, ...],
        dataset: str,
        builder: Callable[..., SpikingModel],
        description: str,
        twin: str,
    ):
        self.arch = arch
        self.family = family  # "recurrent" (input [B, features]) or "conv" (input [B, C, H, W])
        self.is_stllr = is_stllr
        self.num_classes = num_classes
        self.input_shape = input_shape
        self.dataset = dataset
        self.builder = builder
        self.description = description
        self.twin = twin

    def __call__(self, **kwargs) -> SpikingModel:
        return build_model(self.arch, **kwargs)

    def __repr__(self) -> str:
        return (
            f"ModelSpec({self.arch!r}, dataset={self.dataset!r}, classes={self.num_classes}, "
            f"input={self.input_shape})"
        )


def _rec_stllr(
    num_classes, input_shape, factors, feedback_mode, psi, pooling, reference_baseline, hidden, **kw
):
    return RecurrentNet(
        num_classes,
        input_shape,
        hidden=hidden,
        factors=factors,
        feedback_mode=feedback_mode,
        psi=psi,
        **kw,
    )


def _rec_bptt(
    num_classes, input_shape, factors, feedback_mode, psi, pooling, reference_baseline, hidden, **kw
):
    return BPTTRecurrentNet(
        num_classes,
        input_shape,
        hidden=hidden,
        psi=psi,
        reference_baseline=reference_baseline,
        **kw,
    )


def _vgg_stllr(
    num_classes, input_shape, factors, feedback_mode, psi, pooling, reference_baseline, **kw
):
    return VGG9(
        num_classes,
        input_shape,
        factors=factors,
        feedback_mode=feedback_mode,
        psi=psi,
        pooling=pooling,
        **kw,
    )


def _vgg_bptt(
    num_classes, input_shape, factors, feedback_mode, psi, pooling, reference_baseline, **kw
):
    return BPTTVGG9(
        num_classes,
        input_shape,
        psi=psi,
        pooling=pooling,
        reference_baseline=reference_baseline,
        **kw,
    )


def _cnn_stllr(
    num_classes, input_shape, factors, feedback_mode, psi, pooling, reference_baseline, **kw
):
    return SmallConvNet(
        num_classes,
        input_shape,
        factors=factors,
        feedback_mode=feedback_mode,
        psi=psi,
        pooling=pooling,
        **kw,
    )


def _cnn_bptt(
    num_classes, input_shape, factors, feedback_mode, psi, pooling, reference_baseline, **kw
):
    return BPTTSmallConvNet(num_classes, input_shape, psi=psi, pooling=pooling, **kw)


def _with(fn, **fixed):
    def builder(**kw):
        for k, v in fixed.items():
            kw.setdefault(k, v)
        return fn(**kw)

    return builder


MODELS: Dict[str, ModelSpec] = {}


def _register(arch, family, is_stllr, classes, shape, dataset, builder, description, twin):
    MODELS[arch] = ModelSpec(
        arch, family, is_stllr, classes, shape, dataset, builder, description, twin
    )


_register(
    "stllr_shd_net",
    "recurrent",
    True,
    20,
    (700,),
    "shd",
    _with(_rec_stllr, hidden=450),
    "SHD recurrent SNN 700-450(rec)-20, S-TLLR",
    "bptt_shd_net",
)


_register(
    "bptt_shd_net",
    "recurrent",
    False,
    20,
    (700,),
    "shd",
    _with(_rec_bptt, hidden=450),
    "SHD recurrent SNN 700-450(rec)-20, BPTT twin",
    "stllr_shd_net",
)


_register(
    "dvs_vgg_stllr",
    "conv",
    True,
    11,
    (2, 32, 32),
    "dvsgesture",
    _vgg_stllr,
    "DVS Gesture VGG-9, S-TLLR",
    "dvs_vgg_bptt",
)


_register(
    "dvs_vgg_bptt",
    "conv",
    False,
    11,
    (2, 32, 32),
    "dvsgesture",
    _vgg_bptt,
    "DVS Gesture VGG-9, BPTT twin",
    "dvs_vgg_stllr",
)


_register(
    "dvscifar10_vgg_stllr",
    "conv",
    True,
    10,
    (2, 48, 48),
    "cifar10dvs",
    _with(_vgg_stllr, dropout=0.1),
    "CIFAR10-DVS VGG-9 (dropout 0.1), S-TLLR",
    "dvscifar10_vgg_bptt",
)


_register(
    "dvscifar10_vgg_bptt",
    "conv",
    False,
    10,
    (2, 48, 48),
    "cifar10dvs",
    _with(_vgg_bptt, dropout=0.1),
    "CIFAR10-DVS VGG-9 (dropout 0.1), BPTT twin",
    "dvscifar10_vgg_stllr",
)


_register(
    "nmnist_vgg_stllr",
    "conv",
    True,
    10,
    (2, 34, 34),
    "nmnist",
    _vgg_stllr,
    "N-MNIST VGG-9, S-TLLR",
    "nmnist_vgg_bptt",
)


_register(
    "nmnist_vgg_bptt",
    "conv",
    False,
    10,
    (2, 34, 34),
    "nmnist",
    _vgg_bptt,
    "N-MNIST VGG-9, BPTT twin (not in the reference)",
    "nmnist_vgg_stllr",
)


_register(
    "randman_rsnn_stllr",
    "recurrent",
    True,
    10,
    (100,),
    "randman",
    _with(_rec_stllr, hidden=128),
    "procedural spike-timing task: recurrent SNN 100-128(rec)-10, S-TLLR",
    "randman_rsnn_bptt",
)


_register(
    "randman_rsnn_bptt",
    "recurrent",
    False,
    10,
    (100,),
    "randman",
    _with(_rec_bptt, hidden=128),
    "procedural spike-timing task: recurrent SNN 100-128(rec)-10, BPTT twin",
    "randman_rsnn_stllr",
)


_register(
    "shapes_cnn_stllr",
    "conv",
    True,
    4,
    (2, 32, 32),
    "moving_shapes",
    _cnn_stllr,
    "procedural moving shapes: conv SNN 2-16-32 + linear, S-TLLR",
    "shapes_cnn_bptt",
)


_register(
    "shapes_cnn_bptt",
    "conv",
    False,
    4,
    (2, 32, 32),
    "moving_shapes",
    _cnn_bptt,
    "procedural moving shapes: conv SNN 2-16-32 + linear, BPTT twin",
    "shapes_cnn_stllr",
)


#: Names the reference's README uses for archs that exist under another name.
ARCH_ALIASES = {"dvscifar10_vgg11_stllr": "dvscifar10_vgg_stllr"}


def list_models() -> list:
    """Registered arch names, sorted."""
    return sorted(MODELS)


def get_model_spec(arch: str) -> ModelSpec:
    """The registry entry of ``arch`` (README aliases accepted); ValueError for unknown names."""
    key = ARCH_ALIASES.get(arch, arch)
    if key not in MODELS:
        raise ValueError(f"unknown arch {arch!r}; expected one of: {', '.join(list_models())}")
    return MODELS[key]


def build_model(
    arch: str,
    num_classes: Optional[int] = None,
    input_shape: Optional[Sequence[int]] = None,
    factors=CLI_DEFAULT_FACTORS,
    feedback_mode: str = "bp",
    psi: Optional[str] = None,
    pooling: Optional[str] = None,
    reference_baseline: bool = False,
    **kw,
) -> SpikingModel:
    """Build the model registered as ``arch``.

    Args:
        arch: a name of :data:`MODELS` (see :func:`list_models`).
        num_classes, input_shape: default to the arch's dataset (e.g. 20 and (700,) for SHD); the
            input shape excludes batch and time: (features,) or (channels, height, width).
        factors: ``[lambda_post, lambda_pre, alpha_post, alpha_pre]`` of the S-TLLR hidden layers
            (default: the reference's command-line default [0.2, 0.75, -1, 1]); ignored by BPTT twins.
        feedback_mode: ``'bp'``, ``'dfa'`` or ``'sdfa'`` (case-insensitive); BPTT twins accept ``'bp'`` only.
        psi: secondary activation / surrogate (a psi name or a reference ``--activation`` name);
            ``None`` = the reference default of the layer type (rational for recurrent, triangle for conv).
        pooling: ``'MAX'`` (default) or ``'AVG'`` for the conv models.
        reference_baseline: BPTT twins only: build the reference's baseline instead of the matched twin.
        **kw: model-specific options: ``hidden`` and ``train_recurrent`` (recurrent nets), ``rate_reg`` and
            ``rate_target`` (recurrent S-TLLR nets), ``channels``
            (conv), ``dropout``, ``dropout_rescale``, ``leak``.
    """
    spec = get_model_spec(arch)
    num_classes = spec.num_classes if num_classes is None else num_classes
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes: expected an integer >= 2, got {num_classes!r}")
    input_shape = spec.input_shape if input_shape is None else tuple(int(s) for s in input_shape)
    if spec.family == "recurrent" and len(input_shape) != 1:
        raise ValueError(
            f"{spec.arch}: expects a 1-D input shape (features,), got {tuple(input_shape)}"
        )
    if spec.family == "conv":
        _check_image_shape(input_shape, spec.arch)
    factors = check_factors(factors)
    mode = normalize_feedback_mode(feedback_mode)
    if not spec.is_stllr and mode != "bp":
        raise ValueError(
            f"{spec.arch}: a BPTT model takes no DFA/sDFA learning signal (feedback mode {feedback_mode!r})"
        )
    psi_name = resolve_activation(psi)
    if psi_name is not None:
        get_psi(psi_name)
    pooling = normalize_pooling(pooling)
    if reference_baseline and spec.is_stllr:
        reference_baseline = False  # only BPTT baselines differ; S-TLLR models are the reference's
    model = spec.builder(
        num_classes=num_classes,
        input_shape=input_shape,
        factors=factors,
        feedback_mode=mode,
        psi=psi_name,
        pooling=pooling,
        reference_baseline=bool(reference_baseline),
        **kw,
    )
    model.arch = spec.arch
    return model


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# ======================================================================================
# The reference's checkpoints
# ======================================================================================
def adapt_reference_state_dict(model: SpikingModel, state_dict: dict) -> dict:
    """Translate a state_dict of the reference implementation (or one saved from DataParallel /
    DDP with ``module.`` prefixes) to ``model``'s keys and shapes: strips ``module.``, renames the
    reference's BPTT module names (``lifN.*``, ``linear1_rec.*``) and DFA matrices
    (``*_hook.fixed_fb_weights``), and reshapes tensors whose element count matches (gains stored
    as [N,1,1,1], scalars stored as [1])."""
    own = model.state_dict()
    out = {}
    for key, value in state_dict.items():
        k = key
        while k.startswith("module."):
            k = k[len("module.") :]
        k = model.reference_key(k) if hasattr(model, "reference_key") else k
        if (
            k in own
            and isinstance(value, torch.Tensor)
            and value.shape != own[k].shape
            and value.numel() == own[k].numel()
        ):
            value = value.reshape(own[k].shape)
        out[k] = value
    return out


def load_reference_weights(model: SpikingModel, state_dict: dict, strict: bool = False):
    """Load a (possibly reference-format) state_dict into ``model``.

    Returns ``(missing_keys, unexpected_keys)``. Raises ValueError when no key matches at all (a
    checkpoint of another architecture) or a matching key has an incompatible shape.
    """
    sd = adapt_reference_state_dict(model, state_dict)
    own = model.state_dict()
    matched = [k for k in sd if k in own]
    if not matched:
        raise ValueError(
            "checkpoint: none of its keys match the model "
            f"{getattr(model, 'arch', type(model).__name__)} (wrong --arch?)"
        )
    for k in matched:
        if isinstance(sd[k], torch.Tensor) and sd[k].shape != own[k].shape:
            raise ValueError(
                f"checkpoint: {k} has shape {tuple(sd[k].shape)}, the model expects {tuple(own[k].shape)}"
            )
    result = model.load_state_dict(sd, strict=strict)
    return list(result.missing_keys), list(result.unexpected_keys)
