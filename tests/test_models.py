"""The model registry: every arch builds with the reference topology, runs one step per forward,
trains one batch, resets, loads the reference's checkpoints; dropout and baseline options."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from stllr import (
    Conv2dLIF,
    Conv2dSTLLR,
    LeakyIntegrator,
    LeakyReadout,
    LearningSignal,
    OutputErrorTap,
    RecurrentLIF,
    RecurrentSTLLR,
)
from stllr.models.common import SequenceDropout
from stllr.models.registry import (
    MODELS,
    build_model,
    get_model_spec,
    list_models,
    load_reference_weights,
)
from stllr.training.config import make_optimizer
from stllr.training.loop import train_batch

pytestmark = pytest.mark.usefixtures("one_thread")


#: small inputs for the heavy VGGs (one batch must stay cheap on two CPU cores)
SMALL_SHAPE = {"dvs_vgg": (2, 16, 16), "dvscifar10_vgg": (2, 16, 16), "nmnist_vgg": (2, 17, 17)}
SMALL_VGG_CHANNELS = (8, 8, 16, 16, 16, 16, 16, 16)


def _small_kwargs(arch):
    for prefix, shape in SMALL_SHAPE.items():
        if arch.startswith(prefix):
            return {"input_shape": shape}
    return {}


REFERENCE_ARCHS = [
    "stllr_shd_net",
    "bptt_shd_net",
    "dvs_vgg_stllr",
    "dvs_vgg_bptt",
    "dvscifar10_vgg_stllr",
    "dvscifar10_vgg_bptt",
    "nmnist_vgg_stllr",
    "nmnist_vgg_bptt",
    "randman_rsnn_stllr",
    "randman_rsnn_bptt",
    "shapes_cnn_stllr",
    "shapes_cnn_bptt",
]


def test_registry_has_the_reference_names():
    assert set(REFERENCE_ARCHS) <= set(MODELS)
    assert list_models() == sorted(MODELS)
    for arch in REFERENCE_ARCHS:
        spec = get_model_spec(arch)
        assert spec.is_stllr == arch.endswith("stllr") or "stllr_" in arch
        assert get_model_spec(spec.twin).twin == arch
    # the README's misspelt arch is accepted as an alias
    assert get_model_spec("dvscifar10_vgg11_stllr").arch == "dvscifar10_vgg_stllr"
    with pytest.raises(ValueError, match="unknown arch"):
        build_model("resnet9000")


@pytest.mark.parametrize("arch", REFERENCE_ARCHS)
def test_every_model_builds_and_trains_one_batch(arch):
    torch.manual_seed(0)
    spec = get_model_spec(arch)
    model = build_model(arch, **_small_kwargs(arch))
    assert (
        model.arch == arch
        and model.is_stllr == spec.is_stllr
        and model.num_classes == spec.num_classes
    )
    assert (model.feedback_context is not None) == spec.is_stllr
    B, T = 2, 4
    x = (torch.rand((B, T) + model.input_shape) < 0.3).float()
    y = torch.arange(B) % model.num_classes
    model.reset_state()
    out = model(x[:, 0])
    assert out.shape == (B, model.num_classes)
    opt = make_optimizer("Adam", model.parameters(), 1e-3)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    pred = train_batch(
        model, x, y, opt, F.cross_entropy, "stllr" if spec.is_stllr else "bptt", window=2
    )
    assert pred.shape == (B, model.num_classes) and torch.isfinite(pred).all()
    changed = [
        n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])
    ]
    assert changed, "no parameter moved"
    # the classifier always learns
    last = "linear16" if "vgg" in arch else ("linear" if "cnn" in arch else "last_layer")
    assert any(n.startswith(last) for n in changed)


def test_parameter_counts_match_the_reference():
    assert (
        abs(sum(p.numel() for p in build_model("stllr_shd_net").parameters()) / 1e6 - 0.53) < 0.005
    )
    vgg = build_model("dvs_vgg_stllr")
    assert abs(sum(p.numel() for p in vgg.parameters() if p.requires_grad) / 1e6 - 9.2) < 0.05


def test_shd_net_topology_and_init():
    torch.manual_seed(0)
    m = build_model("stllr_shd_net", factors=[0.5, 1, 1, 1])
    assert isinstance(m.linear1, RecurrentSTLLR) and isinstance(m.last_layer, LeakyReadout)
    assert isinstance(m.linear1_hook, LearningSignal) and m.linear1_hook.shape == (450,)
    assert isinstance(m.output_tap, OutputErrorTap)
    assert m.linear1.factors_tuple == (0.5, 1.0, 1.0, 1.0)
    assert m.last_layer.factors_tuple == pytest.approx((0.0, 0.99, 0.0, 1.0))
    assert math.isclose(float(m.linear1.leak), 5.0) and math.isclose(float(m.last_layer.leak), 5.0)
    assert math.isclose(float(m.linear1.threshold), 0.6, rel_tol=1e-6)
    assert m.linear1.psi.__name__ == "rational" and m.linear1.reset == "soft"
    assert m.linear1.weight_standardization
    assert torch.count_nonzero(m.linear1.bias) == 0 and torch.count_nonzero(m.last_layer.bias) == 0
    # kaiming normal (fan_in 700): std sqrt(2/700); weight_rec kaiming-uniform(a=sqrt 5): |w| <= 1/sqrt(450)
    assert abs(m.linear1.weight.std().item() - math.sqrt(2 / 700)) < 0.003
    assert m.linear1.weight_rec.abs().max().item() <= 1 / math.sqrt(450) + 1e-6
    b = build_model("bptt_shd_net")
    assert isinstance(b.linear1, RecurrentLIF) and isinstance(b.last_layer, LeakyIntegrator)
    assert math.isclose(float(b.linear1.leak), 5.0)  # matched twin
    ref = build_model("bptt_shd_net", reference_baseline=True)
    assert math.isclose(float(ref.linear1.leak), 15.0)  # the reference's baseline
    assert ref.linear1.weight_rec.abs().max().item() > 1 / math.sqrt(450)  # kaiming normal


def test_vgg_topology_hooks_pooling_dropout():
    m = build_model("dvscifar10_vgg_stllr", pooling="AVG", feedback_mode="dfa")
    convs = [m.conv1, m.conv2, m.conv3, m.conv4, m.conv8, m.conv9, m.conv11, m.conv12]
    assert [c.out_channels for c in convs] == [64, 128, 256, 256, 512, 512, 512, 512]
    assert all(
        isinstance(c, Conv2dSTLLR) and float(c.leak) == 0.0 and c.psi.__name__ == "triangle"
        for c in convs
    )
    hooks = [
        m.conv1_hook,
        m.conv2_hook,
        m.conv3_hook,
        m.conv4_hook,
        m.conv8_hook,
        m.conv9_hook,
        m.conv11_hook,
        m.conv12_hook,
    ]
    # the reference's DFA_size for CIFAR10-DVS (48x48)
    assert [h.shape for h in hooks] == [
        (64, 48, 48),
        (128, 24, 24),
        (256, 24, 24),
        (256, 12, 12),
        (512, 12, 12),
        (512, 6, 6),
        (512, 6, 6),
        (512, 6, 6),
    ]
    assert all(h.mode == "dfa" for h in hooks)
    assert isinstance(m.pool2, torch.nn.AvgPool2d) and m.dropout1.p == 0.1
    g = build_model("dvs_vgg_stllr")
    assert isinstance(g.pool2, torch.nn.MaxPool2d) and g.dropout1.p == 0.0
    assert [h.shape for h in (g.conv1_hook, g.conv2_hook, g.conv12_hook)] == [
        (64, 32, 32),
        (128, 16, 16),
        (512, 4, 4),
    ]
    n = build_model("nmnist_vgg_stllr")
    assert [h.shape[1] for h in (n.conv1_hook, n.conv2_hook, n.conv4_hook, n.conv9_hook)] == [
        34,
        17,
        8,
        4,
    ]
    # BPTT twin: matched pooling by default, the reference always averages
    assert isinstance(build_model("dvs_vgg_bptt", pooling="MAX").pool2, torch.nn.MaxPool2d)
    assert isinstance(
        build_model("dvs_vgg_bptt", pooling="MAX", reference_baseline=True).pool2,
        torch.nn.AvgPool2d,
    )
    assert isinstance(build_model("dvs_vgg_bptt").conv1, Conv2dLIF)
    # psi from the reference's --activation names
    assert (
        build_model("dvscifar10_vgg_stllr", psi="STLLRConv2dSigmoid").conv1.psi.__name__
        == "sigmoid"
    )
    assert build_model("dvscifar10_vgg_bptt", psi="GradSigmoid").conv1.psi.__name__ == "sigmoid"


def test_sequence_dropout_one_mask_per_sequence_and_rescaled():
    torch.manual_seed(0)
    d = SequenceDropout(0.25)
    d.train()
    x = torch.ones(64, 32)
    a, b = d(x), d(x)
    assert torch.equal(a, b)  # same mask at every step of the sequence
    assert torch.all((a == 0) | torch.isclose(a, torch.tensor(1 / 0.75)))
    assert abs(a.mean().item() - 1.0) < 0.05  # inverted dropout keeps the expectation
    d.reset_state()
    assert not torch.equal(d(x), a)  # new sequence, new mask
    d.eval()
    assert torch.equal(d(x), x)
    ref = SequenceDropout(0.25, rescale=False)
    ref.train()
    assert set(ref(x).unique().tolist()) <= {0.0, 1.0}
    # models: reset_state() draws new masks
    m = build_model("dvscifar10_vgg_stllr", input_shape=(2, 16, 16))
    m.train()
    m.reset_state()
    with torch.no_grad():
        m(torch.rand(2, 2, 16, 16))
    assert m.dropout1.mask is not None
    m.reset_state()
    assert m.dropout1.mask is None


def test_reset_state_forgets_everything():
    torch.manual_seed(0)
    m = build_model("randman_rsnn_stllr")
    x = (torch.rand(3, 100) < 0.5).float()
    m.reset_state()
    first = m(x).detach()
    m(x)
    m.reset_state()
    assert torch.equal(m(x).detach(), first)


def test_bad_arguments():
    with pytest.raises(ValueError, match="DFA/sDFA"):
        build_model("bptt_shd_net", feedback_mode="dfa")
    with pytest.raises(ValueError, match="feedback mode"):
        build_model("stllr_shd_net", feedback_mode="LocalLoss")
    with pytest.raises(ValueError, match="factors"):
        build_model("stllr_shd_net", factors=[0.2, 0.75, -1])
    with pytest.raises(ValueError, match="1-D input"):
        build_model("stllr_shd_net", input_shape=(2, 32, 32))
    with pytest.raises(ValueError, match="image input"):
        build_model("dvs_vgg_stllr", input_shape=(700,))
    with pytest.raises(ValueError, match="pooling"):
        build_model("dvs_vgg_stllr", pooling="MIN")
    with pytest.raises(ValueError, match="not supported"):
        build_model("dvs_vgg_stllr", psi="STLLRConv2dGradNormOut")


def _reference_state_dict(model, bptt_renames=None):
    """A state_dict as the reference would save it from a DataParallel model."""
    sd = {}
    for k, v in model.state_dict().items():
        if k.endswith(".feedback"):
            k = k[: -len("feedback")] + "fixed_fb_weights"
        if k.endswith(".gain") or k.endswith(".gain_rec"):
            v = v.reshape(v.shape[0], 1, 1, 1)  # the reference's ScaledWS gain shape
        if k.endswith(".leak") or k.endswith(".threshold"):
            v = v.reshape(1)
        for ours, theirs in (bptt_renames or {}).items():
            if k.startswith(ours):
                k = theirs + k[len(ours) :]
        sd["module." + k] = v.clone()
    return sd


def test_loads_reference_stllr_checkpoint_dict():
    torch.manual_seed(1)
    src = build_model("stllr_shd_net", feedback_mode="dfa")
    sd = _reference_state_dict(src)
    assert "module.linear1_hook.fixed_fb_weights" in sd
    torch.manual_seed(2)
    dst = build_model("stllr_shd_net", feedback_mode="dfa")
    missing, unexpected = load_reference_weights(dst, sd)
    assert not unexpected and not missing
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_loads_reference_bptt_checkpoint_names():
    torch.manual_seed(1)
    src = build_model("bptt_shd_net")
    renames = {
        "linear1.weight_rec": "linear1_rec.weight",
        "linear1.gain_rec": "linear1_rec.gain",
        "linear1.leak": "lif1.leak",
        "linear1.threshold": "lif1.threshold",
        "last_layer.leak": "lif2.leak",
    }
    sd = _reference_state_dict(src, renames)
    assert "module.lif1.leak" in sd and "module.linear1_rec.weight" in sd
    torch.manual_seed(2)
    dst = build_model("bptt_shd_net")
    missing, unexpected = load_reference_weights(dst, sd)
    assert not missing and not unexpected
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    vgg = build_model("dvs_vgg_bptt", input_shape=(2, 16, 16))
    vsd = _reference_state_dict(
        vgg, {"conv1.leak": "lif1.leak", "conv12.threshold": "lif12.threshold"}
    )
    missing, unexpected = load_reference_weights(
        build_model("dvs_vgg_bptt", input_shape=(2, 16, 16)), vsd
    )
    assert not missing and not unexpected
    with pytest.raises(ValueError, match="none of its keys"):
        load_reference_weights(build_model("randman_rsnn_stllr"), {"foo.weight": torch.zeros(3)})
    with pytest.raises(ValueError, match="shape"):
        load_reference_weights(
            build_model("randman_rsnn_stllr"), {"linear1.weight": torch.zeros(3, 3)}
        )


def test_bptt_twin_equals_stllr_forward():
    """Same weights, same inputs: the S-TLLR model and its BPTT twin compute the same logits."""
    torch.manual_seed(0)
    s = build_model("randman_rsnn_stllr")
    b = build_model("randman_rsnn_bptt")
    own = b.state_dict()
    missing, _ = b.load_state_dict(
        {k: v for k, v in s.state_dict().items() if k in own}, strict=False
    )
    assert not missing
    x = (torch.rand(4, 10, 100) < 0.2).float()
    s.reset_state()
    b.reset_state()
    with torch.no_grad():
        for t in range(10):
            torch.testing.assert_close(s(x[:, t]), b(x[:, t]), rtol=1e-5, atol=1e-6)
