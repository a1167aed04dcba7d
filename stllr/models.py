"""The reference networks of the S-TLLR paper, their BPTT twins, and small models for the
procedural tasks, under the reference's ``--arch`` names.

Every model runs ONE time step per ``forward(x_t)`` and returns the logits of that step
``[B, num_classes]``; ``reset_state()`` starts a new sequence (all layer states forgotten, new
dropout masks). Attributes: ``arch``, ``is_stllr``, ``num_classes``, ``input_shape``,
``feedback_mode`` and ``feedback_context`` (``None`` for the BPTT twins).

S-TLLR models put an :class:`~stllr.signals.OutputErrorTap` on the logits and a
:class:`~stllr.signals.LearningSignal` hook after every hidden spiking layer (after dropout and
pooling, as in the reference), so the same model trains with a BP, DFA or sDFA learning signal.
BPTT twins have the same topology with surrogate-gradient LIF layers and keep the autograd graph
through time.

Registry (``MODELS``; ``build_model(arch, ...)``; ``list_models()``)::

    stllr_shd_net / bptt_shd_net             SHD: recurrent 700 -> 450 -> leaky readout 20
    dvs_vgg_stllr / dvs_vgg_bptt             DVS Gesture: VGG-9, 2x32x32, 11 classes
    dvscifar10_vgg_stllr / dvscifar10_vgg_bptt   CIFAR10-DVS: VGG-9, 2x48x48, dropout 0.1
    nmnist_vgg_stllr / nmnist_vgg_bptt       N-MNIST: VGG-9, 2x34x34, 10 classes
    randman_rsnn_stllr / randman_rsnn_bptt   procedural spike-timing task: recurrent 100 -> 128 -> 10
    shapes_cnn_stllr / shapes_cnn_bptt       procedural moving shapes: small conv net, 2x32x32

Differences from the reference, on purpose (see docs/experiments.md):

- Dropout keeps one 0/1 mask per sequence like the reference, but rescales the kept units by
  ``1/(1-p)`` (inverted dropout), so train and test activity have the same scale. The reference
  does not rescale; ``build_model(..., dropout_rescale=False)`` restores its behaviour.
- The BPTT twins are matched to their S-TLLR model by default: same leaks, same pooling, same
  initialisation. The reference's BPTT baselines differ beyond the learning rule (SHD: hidden
  leak 15 instead of 5 and a kaiming-normal recurrent weight; VGG: always average pooling and a
  default-initialised classifier bias). ``reference_baseline=True`` (CLI ``--reference-baseline``)
  builds the reference's baseline instead.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from .bptt import Conv2dLIF, LeakyIntegrator, RecurrentLIF
from .functional import CLI_DEFAULT_FACTORS, check_factors, get_psi
from .layers import Conv2dSTLLR, LeakyReadout, RecurrentSTLLR
from .signals import FEEDBACK_MODES, FeedbackContext, LearningSignal, OutputErrorTap
from .utils import reset_states

__all__ = [
    "MODELS", "ModelSpec", "build_model", "list_models", "get_model_spec", "SequenceDropout",
    "SpikingModel", "RecurrentNet", "BPTTRecurrentNet", "VGG9", "BPTTVGG9", "SmallConvNet",
    "BPTTSmallConvNet", "normalize_feedback_mode", "normalize_pooling", "resolve_activation",
    "ACTIVATIONS", "adapt_reference_state_dict", "load_reference_weights", "count_parameters",
]

VGG_CHANNELS = (64, 128, 256, 256, 512, 512, 512, 512)
#: Index (0-based) of the VGG conv layers followed by a 2x2 pooling.
VGG_POOL_AFTER = (1, 3, 5)
#: Attribute names of the reference's VGG conv layers (kept so its checkpoints load).
VGG_NAMES = ("conv1", "conv2", "conv3", "conv4", "conv8", "conv9", "conv11", "conv12")
#: Reference BPTT VGG: the LIF module belonging to each conv layer.
VGG_LIF_NAMES = ("lif1", "lif2", "lif3", "lif4", "lif8", "lif9", "lif11", "lif12")

#: ``--activation`` values of the reference (its ``surrogate_gradients.__all__``) and ours, mapped
#: to a psi name. ``None`` means "the layer type's reference default" (LinearSpike).
ACTIVATIONS: Dict[str, Optional[str]] = {
    "LinearSpike": None,
    "GradSigmoid": "sigmoid",
    "STLLRConv2dSigmoid": "sigmoid",
    "STLLRLinearRecGradSigmoid": "sigmoid",
    "STLLRConv2dGradExp": "rational",
    "STLLRLinearRecGradNorm": "triangle",
    "rational": "rational",
    "triangle": "triangle",
    "sigmoid": "sigmoid",
    "fast_sigmoid": "fast_sigmoid",
    "fast-sigmoid": "fast_sigmoid",
}
_UNSUPPORTED_ACTIVATIONS = {
    "Surrogate": "its triangle is centred on 0.6 of the raw membrane, not on the threshold crossing",
    "STLLRConv2dGradNormOut": "it is a different rule (post trace of output spikes, not of psi)",
}


def resolve_activation(activation: Optional[str]) -> Optional[str]:
    """Map a reference ``--activation`` name (or a psi name) to a psi name, ``None`` = default."""
    if activation is None:
        return None
    for name, psi in ACTIVATIONS.items():
        if name.lower() == str(activation).lower():
            return psi
    for name, why in _UNSUPPORTED_ACTIVATIONS.items():
        if name.lower() == str(activation).lower():
            raise ValueError(f"activation {activation!r} is not supported: {why}")
    raise ValueError(f"activation: unknown {activation!r}; expected one of {sorted(ACTIVATIONS)}")


def normalize_feedback_mode(mode: str) -> str:
    """'BP'/'bp' -> 'bp', 'DFA' -> 'dfa', 'sDFA' -> 'sdfa'."""
    key = str(mode).lower()
    if key in FEEDBACK_MODES:
        return key
    if key in ("sbp", "localloss", "drtp", "fa"):
        raise ValueError(f"feedback mode {mode!r} is not supported by stllr (choose BP, DFA or sDFA)")
    raise ValueError(f"feedback mode: unknown {mode!r}; expected BP, DFA or sDFA")


def normalize_pooling(pooling: Optional[str]) -> str:
    if pooling is None:
        return "MAX"
    key = str(pooling).upper()
    if key not in ("MAX", "AVG"):
        raise ValueError(f"pooling: expected MAX or AVG, got {pooling!r}")
    return key


def _pool(kind: str) -> nn.Module:
    return nn.MaxPool2d(2, 2) if kind == "MAX" else nn.AvgPool2d(2, 2)


# ======================================================================================
# Building blocks
# ======================================================================================
class SequenceDropout(nn.Module):
    """Dropout with ONE 0/1 mask per sequence (drawn at the first step after ``reset_state()``,
    reused at every step), active in training mode only.

    Unlike the reference (``DropoutLIF``), kept units are rescaled by ``1/(1-p)`` (``rescale=True``),
    so the expected input of the next layer is the same in training and evaluation.
    """

    _stateful = True

    def __init__(self, p: float = 0.0, rescale: bool = True):
        super().__init__()
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"p: dropout probability must be in [0, 1), got {p}")
        self.p = float(p)
        self.rescale = bool(rescale)
        self.mask: Optional[torch.Tensor] = None

    def reset_state(self) -> None:
        self.mask = None

    def extra_repr(self) -> str:
        return f"p={self.p}, rescale={self.rescale}, mask=per-sequence"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.mask is None or self.mask.shape != x.shape or self.mask.device != x.device:
            keep = torch.full_like(x, 1.0 - self.p, requires_grad=False)
            mask = torch.bernoulli(keep)
            if self.rescale:
                mask = mask / (1.0 - self.p)
            self.mask = mask
        return x * self.mask


def _kaiming_normal_linear(layer) -> None:
    nn.init.kaiming_normal_(layer.weight)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)


def _kaiming_normal_conv(layer) -> None:
    nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class SpikingModel(nn.Module):
    """Common interface of the registry's models (one step per ``forward``)."""

    arch: str = ""
    is_stllr: bool = False

    def __init__(self, num_classes: int, input_shape: Tuple[int, ...], feedback_mode: str = "bp"):
        super().__init__()
        self.num_classes = int(num_classes)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.feedback_mode = feedback_mode
        self.feedback_context: Optional[FeedbackContext] = FeedbackContext() if self.is_stllr else None

    def _hook(self, shape, **options) -> LearningSignal:
        return LearningSignal(shape, self.num_classes, mode=self.feedback_mode, context=self.feedback_context,
                              **options)

    def reset_state(self) -> None:
        """Start a new sequence: forget every layer state, draw new dropout masks."""
        reset_states(self)
        if self.feedback_context is not None:
            self.feedback_context.clear()

    # state_dict keys of the reference's checkpoints that name our parameters differently
    _reference_renames: Dict[str, str] = {}

    def reference_key(self, key: str) -> str:
        """Our state_dict key for a key of the reference implementation's state_dict."""
        for old, new in self._reference_renames.items():
            if key.startswith(old):
                return new + key[len(old):]
        if key.endswith("_hook.fixed_fb_weights"):
            return key[: -len("fixed_fb_weights")] + "feedback"
        return key

    def extra_repr(self) -> str:
        return (f"arch={self.arch!r}, num_classes={self.num_classes}, input_shape={self.input_shape}, "
                f"feedback_mode={self.feedback_mode!r}")


# ======================================================================================
# Recurrent networks (SHD, randman)
# ======================================================================================
def _set_recurrent_trainable(layer, trainable: bool) -> None:
    """``train_recurrent=False``: keep W_rec (and its gain) at their initial values (a diagnostic:
    e.g. DFA with fixed recurrent weights)."""
    for p in (layer.weight_rec, getattr(layer, "gain_rec", None)):
        if p is not None:
            p.requires_grad_(bool(trainable))


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

    def __init__(self, num_classes: int = 20, input_shape=(700,), hidden: int = 450, factors=CLI_DEFAULT_FACTORS,
                 feedback_mode: str = "bp", psi: Optional[str] = None, leak: float = 5.0,
                 readout_leak: float = 5.0, readout_factors=(0.0, 0.99, 0.0, 1.0), train_recurrent: bool = True,
                 rate_reg: float = 0.0, rate_target: float = 0.03):
        super().__init__(num_classes, input_shape, feedback_mode)
        n_in = self.input_shape[0]
        self.linear1 = RecurrentSTLLR(n_in, hidden, bias=True, threshold=0.6, leak=leak, factors=factors,
                                      reset="soft", psi=psi or "rational", weight_standardization=True)
        self.linear1_hook = self._hook((hidden,), rate_reg=rate_reg, rate_target=rate_target)
        self.last_layer = LeakyReadout(hidden, num_classes, bias=True, leak=readout_leak, factors=readout_factors)
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

    def __init__(self, num_classes: int = 20, input_shape=(700,), hidden: int = 450, psi: Optional[str] = None,
                 leak: float = 5.0, readout_leak: float = 5.0, reference_baseline: bool = False,
                 train_recurrent: bool = True):
        super().__init__(num_classes, input_shape, "bp")
        n_in = self.input_shape[0]
        if reference_baseline:
            leak = 15.0
        self.reference_baseline = bool(reference_baseline)
        self.linear1 = RecurrentLIF(n_in, hidden, bias=True, threshold=0.6, leak=leak, reset="soft",
                                    psi=psi or "rational", weight_standardization=True)
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


# ======================================================================================
# VGG-9 (DVS Gesture, CIFAR10-DVS, N-MNIST)
# ======================================================================================
def _vgg_shapes(input_shape, channels):
    """Output shape (C, H, W) after each block (conv -> dropout -> [pool])."""
    _, h, w = input_shape
    shapes = []
    for i, c in enumerate(channels):
        if i in VGG_POOL_AFTER:
            h, w = h // 2, w // 2
        shapes.append((c, h, w))
    return shapes


def _check_image_shape(input_shape, arch, min_hw=8):
    if len(input_shape) != 3:
        raise ValueError(f"{arch}: expects an image input shape (channels, height, width), got {tuple(input_shape)}")
    if min(input_shape[1:]) < min_hw:
        raise ValueError(f"{arch}: input height and width must be >= {min_hw}, got {tuple(input_shape)}")


class VGG9(SpikingModel):
    """S-TLLR VGG-9 of the reference (``models/vgg_stllr``).

    8 Conv2dSTLLR 3x3 (stride 1, pad 1, bias; leak 0 i.e. beta 0.5, threshold 0.6, soft reset,
    standardised weights, psi triangle by default) with channels 64, 128 | pool | 256, 256 | pool |
    512, 512 | pool | 512, 512; per block conv -> dropout (one mask per sequence) -> [pool] ->
    learning-signal hook; then global average pooling and a plain Linear(512, classes) giving the
    logits of every step. Init kaiming-normal (fan_out, relu) for convs, kaiming-normal for the
    classifier, zero biases. x_t [B, C, H, W] -> logits [B, classes].
    """

    is_stllr = True

    def __init__(self, num_classes: int, input_shape, factors=CLI_DEFAULT_FACTORS, feedback_mode: str = "bp",
                 psi: Optional[str] = None, pooling: str = "MAX", dropout: float = 0.0,
                 dropout_rescale: bool = True, channels: Sequence[int] = VGG_CHANNELS, leak: float = 0.0):
        super().__init__(num_classes, input_shape, feedback_mode)
        channels = tuple(int(c) for c in channels)
        if len(channels) != 8:
            raise ValueError(f"channels: VGG-9 has 8 conv layers, got {len(channels)} channel counts")
        self.pooling = normalize_pooling(pooling)
        shapes = _vgg_shapes(self.input_shape, channels)
        c_in = self.input_shape[0]
        for i, (name, c) in enumerate(zip(VGG_NAMES, channels)):
            setattr(self, name, Conv2dSTLLR(c_in, c, 3, 1, 1, bias=True, threshold=0.6, leak=leak, factors=factors,
                                            reset="soft", psi=psi or "triangle", weight_standardization=True))
            setattr(self, f"dropout{i + 1}", SequenceDropout(dropout, dropout_rescale))
            if i in VGG_POOL_AFTER:
                setattr(self, f"pool{i + 1}", _pool(self.pooling))
            setattr(self, f"{name}_hook", self._hook(shapes[i]))
            c_in = c
        self.globalpool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear16 = nn.Linear(channels[-1], num_classes, bias=True)
        self.output_tap = OutputErrorTap(self.feedback_context)
        for name in VGG_NAMES:
            _kaiming_normal_conv(getattr(self, name))
        _kaiming_normal_linear(self.linear16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, name in enumerate(VGG_NAMES):
            x = getattr(self, name)(x)
            x = getattr(self, f"dropout{i + 1}")(x)
            if i in VGG_POOL_AFTER:
                x = getattr(self, f"pool{i + 1}")(x)
            x = getattr(self, f"{name}_hook")(x)
        x = self.globalpool(x).flatten(1)
        return self.output_tap(self.linear16(x))


class BPTTVGG9(SpikingModel):
    """BPTT twin of :class:`VGG9`: Conv2dLIF layers (surrogate psi, triangle by default), same
    dropout, pooling and classifier; graph kept through time.

    Matched twin: honours ``pooling`` and uses the S-TLLR model's initialisation.
    ``reference_baseline=True``: always average pooling (the reference ignores ``--pooling`` for its
    BPTT VGG) and a default-initialised (uniform) classifier bias.
    """

    is_stllr = False

    def __init__(self, num_classes: int, input_shape, psi: Optional[str] = None, pooling: str = "MAX",
                 dropout: float = 0.0, dropout_rescale: bool = True, channels: Sequence[int] = VGG_CHANNELS,
                 leak: float = 0.0, reference_baseline: bool = False):
        super().__init__(num_classes, input_shape, "bp")
        channels = tuple(int(c) for c in channels)
        if len(channels) != 8:
            raise ValueError(f"channels: VGG-9 has 8 conv layers, got {len(channels)} channel counts")
        self.reference_baseline = bool(reference_baseline)
        self.pooling = "AVG" if reference_baseline else normalize_pooling(pooling)
        c_in = self.input_shape[0]
        for i, (name, c) in enumerate(zip(VGG_NAMES, channels)):
            setattr(self, name, Conv2dLIF(c_in, c, 3, 1, 1, bias=True, threshold=0.6, leak=leak, reset="soft",
                                          psi=psi or "triangle", weight_standardization=True))
            setattr(self, f"dropout{i + 1}", SequenceDropout(dropout, dropout_rescale))
            if i in VGG_POOL_AFTER:
                setattr(self, f"pool{i + 1}", _pool(self.pooling))
            c_in = c
        self.globalpool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear16 = nn.Linear(channels[-1], num_classes, bias=True)
        for name in VGG_NAMES:
            _kaiming_normal_conv(getattr(self, name))
        if reference_baseline:
            nn.init.kaiming_normal_(self.linear16.weight)  # bias keeps nn.Linear's default init
        else:
            _kaiming_normal_linear(self.linear16)

    _reference_renames = {f"{lif}.": f"{conv}." for lif, conv in zip(VGG_LIF_NAMES, VGG_NAMES)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, name in enumerate(VGG_NAMES):
            x = getattr(self, name)(x)
            x = getattr(self, f"dropout{i + 1}")(x)
            if i in VGG_POOL_AFTER:
                x = getattr(self, f"pool{i + 1}")(x)
        return self.linear16(self.globalpool(x).flatten(1))


# ======================================================================================
# Small conv net (procedural moving shapes)
# ======================================================================================
class SmallConvNet(SpikingModel):
    """Small S-TLLR conv net for the procedural DVS-like task (and quick experiments).

    conv1 3x3 C_in -> c1 | pool | hook, conv2 3x3 c1 -> c2 | pool | hook, global average pooling,
    Linear(c2, classes). LIF settings as the VGG (threshold 0.6, soft reset, standardised weights,
    psi triangle) but leak 2.0 (beta 0.88) by default, so a neuron integrates over a few frames.
    x_t [B, C, H, W] -> logits [B, classes].
    """

    is_stllr = True

    def __init__(self, num_classes: int, input_shape=(2, 32, 32), factors=CLI_DEFAULT_FACTORS,
                 feedback_mode: str = "bp", psi: Optional[str] = None, pooling: str = "MAX",
                 channels: Sequence[int] = (16, 32), leak: float = 2.0, dropout: float = 0.0,
                 dropout_rescale: bool = True):
        super().__init__(num_classes, input_shape, feedback_mode)
        c1, c2 = (int(c) for c in channels)
        self.pooling = normalize_pooling(pooling)
        _, h, w = self.input_shape
        kw = dict(bias=True, threshold=0.6, leak=leak, factors=factors, reset="soft", psi=psi or "triangle",
                  weight_standardization=True)
        self.conv1 = Conv2dSTLLR(self.input_shape[0], c1, 3, 1, 1, **kw)
        self.dropout1 = SequenceDropout(dropout, dropout_rescale)
        self.pool1 = _pool(self.pooling)
        self.conv1_hook = self._hook((c1, h // 2, w // 2))
        self.conv2 = Conv2dSTLLR(c1, c2, 3, 1, 1, **kw)
        self.dropout2 = SequenceDropout(dropout, dropout_rescale)
        self.pool2 = _pool(self.pooling)
        self.conv2_hook = self._hook((c2, h // 4, w // 4))
        self.globalpool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear = nn.Linear(c2, num_classes, bias=True)
        self.output_tap = OutputErrorTap(self.feedback_context)
        _kaiming_normal_conv(self.conv1)
        _kaiming_normal_conv(self.conv2)
        _kaiming_normal_linear(self.linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1_hook(self.pool1(self.dropout1(self.conv1(x))))
        x = self.conv2_hook(self.pool2(self.dropout2(self.conv2(x))))
        return self.output_tap(self.linear(self.globalpool(x).flatten(1)))


class BPTTSmallConvNet(SpikingModel):
    """BPTT twin of :class:`SmallConvNet` (Conv2dLIF layers, same topology and init)."""

    is_stllr = False

    def __init__(self, num_classes: int, input_shape=(2, 32, 32), psi: Optional[str] = None, pooling: str = "MAX",
                 channels: Sequence[int] = (16, 32), leak: float = 2.0, dropout: float = 0.0,
                 dropout_rescale: bool = True):
        super().__init__(num_classes, input_shape, "bp")
        c1, c2 = (int(c) for c in channels)
        self.pooling = normalize_pooling(pooling)
        kw = dict(bias=True, threshold=0.6, leak=leak, reset="soft", psi=psi or "triangle",
                  weight_standardization=True)
        self.conv1 = Conv2dLIF(self.input_shape[0], c1, 3, 1, 1, **kw)
        self.dropout1 = SequenceDropout(dropout, dropout_rescale)
        self.pool1 = _pool(self.pooling)
        self.conv2 = Conv2dLIF(c1, c2, 3, 1, 1, **kw)
        self.dropout2 = SequenceDropout(dropout, dropout_rescale)
        self.pool2 = _pool(self.pooling)
        self.globalpool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear = nn.Linear(c2, num_classes, bias=True)
        _kaiming_normal_conv(self.conv1)
        _kaiming_normal_conv(self.conv2)
        _kaiming_normal_linear(self.linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.dropout1(self.conv1(x)))
        x = self.pool2(self.dropout2(self.conv2(x)))
        return self.linear(self.globalpool(x).flatten(1))


# ======================================================================================
# Registry
# ======================================================================================
class ModelSpec:
    """One registry entry: how to build ``arch`` and its defaults."""

    def __init__(self, arch: str, family: str, is_stllr: bool, num_classes: int, input_shape: Tuple[int, ...],
                 dataset: str, builder: Callable[..., SpikingModel], description: str, twin: str):
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
        return f"ModelSpec({self.arch!r}, dataset={self.dataset!r}, classes={self.num_classes}, input={self.input_shape})"


def _rec_stllr(num_classes, input_shape, factors, feedback_mode, psi, pooling, reference_baseline, hidden, **kw):
    return RecurrentNet(num_classes, input_shape, hidden=hidden, factors=factors, feedback_mode=feedback_mode,
                        psi=psi, **kw)


def _rec_bptt(num_classes, input_shape, factors, feedback_mode, psi, pooling, reference_baseline, hidden, **kw):
    return BPTTRecurrentNet(num_classes, input_shape, hidden=hidden, psi=psi, reference_baseline=reference_baseline,
                            **kw)


def _vgg_stllr(num_classes, input_shape, factors, feedback_mode, psi, pooling, reference_baseline, **kw):
    return VGG9(num_classes, input_shape, factors=factors, feedback_mode=feedback_mode, psi=psi, pooling=pooling, **kw)


def _vgg_bptt(num_classes, input_shape, factors, feedback_mode, psi, pooling, reference_baseline, **kw):
    return BPTTVGG9(num_classes, input_shape, psi=psi, pooling=pooling, reference_baseline=reference_baseline, **kw)


def _cnn_stllr(num_classes, input_shape, factors, feedback_mode, psi, pooling, reference_baseline, **kw):
    return SmallConvNet(num_classes, input_shape, factors=factors, feedback_mode=feedback_mode, psi=psi,
                        pooling=pooling, **kw)


def _cnn_bptt(num_classes, input_shape, factors, feedback_mode, psi, pooling, reference_baseline, **kw):
    return BPTTSmallConvNet(num_classes, input_shape, psi=psi, pooling=pooling, **kw)


def _with(fn, **fixed):
    def builder(**kw):
        for k, v in fixed.items():
            kw.setdefault(k, v)
        return fn(**kw)
    return builder


MODELS: Dict[str, ModelSpec] = {}


def _register(arch, family, is_stllr, classes, shape, dataset, builder, description, twin):
    MODELS[arch] = ModelSpec(arch, family, is_stllr, classes, shape, dataset, builder, description, twin)


_register("stllr_shd_net", "recurrent", True, 20, (700,), "shd", _with(_rec_stllr, hidden=450),
          "SHD recurrent SNN 700-450(rec)-20, S-TLLR", "bptt_shd_net")
_register("bptt_shd_net", "recurrent", False, 20, (700,), "shd", _with(_rec_bptt, hidden=450),
          "SHD recurrent SNN 700-450(rec)-20, BPTT twin", "stllr_shd_net")
_register("dvs_vgg_stllr", "conv", True, 11, (2, 32, 32), "dvsgesture", _vgg_stllr,
          "DVS Gesture VGG-9, S-TLLR", "dvs_vgg_bptt")
_register("dvs_vgg_bptt", "conv", False, 11, (2, 32, 32), "dvsgesture", _vgg_bptt,
          "DVS Gesture VGG-9, BPTT twin", "dvs_vgg_stllr")
_register("dvscifar10_vgg_stllr", "conv", True, 10, (2, 48, 48), "cifar10dvs", _with(_vgg_stllr, dropout=0.1),
          "CIFAR10-DVS VGG-9 (dropout 0.1), S-TLLR", "dvscifar10_vgg_bptt")
_register("dvscifar10_vgg_bptt", "conv", False, 10, (2, 48, 48), "cifar10dvs", _with(_vgg_bptt, dropout=0.1),
          "CIFAR10-DVS VGG-9 (dropout 0.1), BPTT twin", "dvscifar10_vgg_stllr")
_register("nmnist_vgg_stllr", "conv", True, 10, (2, 34, 34), "nmnist", _vgg_stllr,
          "N-MNIST VGG-9, S-TLLR", "nmnist_vgg_bptt")
_register("nmnist_vgg_bptt", "conv", False, 10, (2, 34, 34), "nmnist", _vgg_bptt,
          "N-MNIST VGG-9, BPTT twin (not in the reference)", "nmnist_vgg_stllr")
_register("randman_rsnn_stllr", "recurrent", True, 10, (100,), "randman", _with(_rec_stllr, hidden=128),
          "procedural spike-timing task: recurrent SNN 100-128(rec)-10, S-TLLR", "randman_rsnn_bptt")
_register("randman_rsnn_bptt", "recurrent", False, 10, (100,), "randman", _with(_rec_bptt, hidden=128),
          "procedural spike-timing task: recurrent SNN 100-128(rec)-10, BPTT twin", "randman_rsnn_stllr")
_register("shapes_cnn_stllr", "conv", True, 4, (2, 32, 32), "moving_shapes", _cnn_stllr,
          "procedural moving shapes: conv SNN 2-16-32 + linear, S-TLLR", "shapes_cnn_bptt")
_register("shapes_cnn_bptt", "conv", False, 4, (2, 32, 32), "moving_shapes", _cnn_bptt,
          "procedural moving shapes: conv SNN 2-16-32 + linear, BPTT twin", "shapes_cnn_stllr")

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


def build_model(arch: str, num_classes: Optional[int] = None, input_shape: Optional[Sequence[int]] = None,
                factors=CLI_DEFAULT_FACTORS, feedback_mode: str = "bp", psi: Optional[str] = None,
                pooling: Optional[str] = None, reference_baseline: bool = False, **kw) -> SpikingModel:
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
        raise ValueError(f"{spec.arch}: expects a 1-D input shape (features,), got {tuple(input_shape)}")
    if spec.family == "conv":
        _check_image_shape(input_shape, spec.arch)
    factors = check_factors(factors)
    mode = normalize_feedback_mode(feedback_mode)
    if not spec.is_stllr and mode != "bp":
        raise ValueError(f"{spec.arch}: a BPTT model takes no DFA/sDFA learning signal (feedback mode {feedback_mode!r})")
    psi_name = resolve_activation(psi)
    if psi_name is not None:
        get_psi(psi_name)
    pooling = normalize_pooling(pooling)
    if reference_baseline and spec.is_stllr:
        reference_baseline = False  # only BPTT baselines differ; S-TLLR models are the reference's
    model = spec.builder(num_classes=num_classes, input_shape=input_shape, factors=factors, feedback_mode=mode,
                         psi=psi_name, pooling=pooling, reference_baseline=bool(reference_baseline), **kw)
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
            k = k[len("module."):]
        k = model.reference_key(k) if hasattr(model, "reference_key") else k
        if k in own and isinstance(value, torch.Tensor) and value.shape != own[k].shape \
                and value.numel() == own[k].numel():
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
        raise ValueError("checkpoint: none of its keys match the model "
                         f"{getattr(model, 'arch', type(model).__name__)} (wrong --arch?)")
    for k in matched:
        if isinstance(sd[k], torch.Tensor) and sd[k].shape != own[k].shape:
            raise ValueError(f"checkpoint: {k} has shape {tuple(sd[k].shape)}, the model expects {tuple(own[k].shape)}")
    result = model.load_state_dict(sd, strict=strict)
    return list(result.missing_keys), list(result.unexpected_keys)
