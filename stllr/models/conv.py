"""Convolutional networks: the paper's VGG-9 (DVS Gesture, CIFAR10-DVS, N-Caltech101) and a
small conv net for the procedural ``moving_shapes`` task, each with its BPTT twin."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from stllr.bptt import Conv2dLIF
from stllr.functional import CLI_DEFAULT_FACTORS
from stllr.layers import Conv2dSTLLR
from stllr.models.common import (
    SequenceDropout,
    SpikingModel,
    _kaiming_normal_conv,
    _kaiming_normal_linear,
    _pool,
    normalize_pooling,
)
from stllr.signals import OutputErrorTap

__all__ = ["VGG9", "BPTTVGG9", "SmallConvNet", "BPTTSmallConvNet"]

VGG_CHANNELS = (64, 128, 256, 256, 512, 512, 512, 512)


#: Index (0-based) of the VGG conv layers followed by a 2x2 pooling.
VGG_POOL_AFTER = (1, 3, 5)


#: Attribute names of the reference's VGG conv layers (kept so its checkpoints load).
VGG_NAMES = ("conv1", "conv2", "conv3", "conv4", "conv8", "conv9", "conv11", "conv12")


#: Reference BPTT VGG: the LIF module belonging to each conv layer.
VGG_LIF_NAMES = ("lif1", "lif2", "lif3", "lif4", "lif8", "lif9", "lif11", "lif12")


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
        raise ValueError(
            f"{arch}: expects an image input shape (channels, height, width), got {tuple(input_shape)}"
        )
    if min(input_shape[1:]) < min_hw:
        raise ValueError(
            f"{arch}: input height and width must be >= {min_hw}, got {tuple(input_shape)}"
        )


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

    def __init__(
        self,
        num_classes: int,
        input_shape,
        factors=CLI_DEFAULT_FACTORS,
        feedback_mode: str = "bp",
        psi: Optional[str] = None,
        pooling: str = "MAX",
        dropout: float = 0.0,
        dropout_rescale: bool = True,
        channels: Sequence[int] = VGG_CHANNELS,
        leak: float = 0.0,
    ):
        super().__init__(num_classes, input_shape, feedback_mode)
        channels = tuple(int(c) for c in channels)
        if len(channels) != 8:
            raise ValueError(
                f"channels: VGG-9 has 8 conv layers, got {len(channels)} channel counts"
            )
        self.pooling = normalize_pooling(pooling)
        shapes = _vgg_shapes(self.input_shape, channels)
        c_in = self.input_shape[0]
        for i, (name, c) in enumerate(zip(VGG_NAMES, channels)):
            setattr(
                self,
                name,
                Conv2dSTLLR(
                    c_in,
                    c,
                    3,
                    1,
                    1,
                    bias=True,
                    threshold=0.6,
                    leak=leak,
                    factors=factors,
                    reset="soft",
                    psi=psi or "triangle",
                    weight_standardization=True,
                ),
            )
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

    def __init__(
        self,
        num_classes: int,
        input_shape,
        psi: Optional[str] = None,
        pooling: str = "MAX",
        dropout: float = 0.0,
        dropout_rescale: bool = True,
        channels: Sequence[int] = VGG_CHANNELS,
        leak: float = 0.0,
        reference_baseline: bool = False,
    ):
        super().__init__(num_classes, input_shape, "bp")
        channels = tuple(int(c) for c in channels)
        if len(channels) != 8:
            raise ValueError(
                f"channels: VGG-9 has 8 conv layers, got {len(channels)} channel counts"
            )
        self.reference_baseline = bool(reference_baseline)
        self.pooling = "AVG" if reference_baseline else normalize_pooling(pooling)
        c_in = self.input_shape[0]
        for i, (name, c) in enumerate(zip(VGG_NAMES, channels)):
            setattr(
                self,
                name,
                Conv2dLIF(
                    c_in,
                    c,
                    3,
                    1,
                    1,
                    bias=True,
                    threshold=0.6,
                    leak=leak,
                    reset="soft",
                    psi=psi or "triangle",
                    weight_standardization=True,
                ),
            )
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
    ``train_conv=False`` keeps both conv layers at their initial weights (a control: only the
    readout learns, on random conv features). x_t [B, C, H, W] -> logits [B, classes].
    """

    is_stllr = True

    def __init__(
        self,
        num_classes: int,
        input_shape=(2, 32, 32),
        factors=CLI_DEFAULT_FACTORS,
        feedback_mode: str = "bp",
        psi: Optional[str] = None,
        pooling: str = "MAX",
        channels: Sequence[int] = (16, 32),
        leak: float = 2.0,
        dropout: float = 0.0,
        dropout_rescale: bool = True,
        train_conv: bool = True,
    ):
        super().__init__(num_classes, input_shape, feedback_mode)
        c1, c2 = (int(c) for c in channels)
        self.pooling = normalize_pooling(pooling)
        _, h, w = self.input_shape
        kw = dict(
            bias=True,
            threshold=0.6,
            leak=leak,
            factors=factors,
            reset="soft",
            psi=psi or "triangle",
            weight_standardization=True,
        )
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
        if not train_conv:
            for p in (*self.conv1.parameters(), *self.conv2.parameters()):
                p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1_hook(self.pool1(self.dropout1(self.conv1(x))))
        x = self.conv2_hook(self.pool2(self.dropout2(self.conv2(x))))
        return self.output_tap(self.linear(self.globalpool(x).flatten(1)))


class BPTTSmallConvNet(SpikingModel):
    """BPTT twin of :class:`SmallConvNet` (Conv2dLIF layers, same topology and init; the same
    ``train_conv=False`` control)."""

    is_stllr = False

    def __init__(
        self,
        num_classes: int,
        input_shape=(2, 32, 32),
        psi: Optional[str] = None,
        pooling: str = "MAX",
        channels: Sequence[int] = (16, 32),
        leak: float = 2.0,
        dropout: float = 0.0,
        dropout_rescale: bool = True,
        train_conv: bool = True,
    ):
        super().__init__(num_classes, input_shape, "bp")
        c1, c2 = (int(c) for c in channels)
        self.pooling = normalize_pooling(pooling)
        kw = dict(
            bias=True,
            threshold=0.6,
            leak=leak,
            reset="soft",
            psi=psi or "triangle",
            weight_standardization=True,
        )
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
        if not train_conv:
            for p in (*self.conv1.parameters(), *self.conv2.parameters()):
                p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.dropout1(self.conv1(x)))
        x = self.pool2(self.dropout2(self.conv2(x)))
        return self.linear(self.globalpool(x).flatten(1))
