"""The S-TLLR layers against an independent, step-by-step reference of docs/rule.md.

Everything the layers compute is recomputed here from the equations only: the LIF step with
its traces, psi, the weight standardisation (forward written out, backward by autograd of
the test's own standardisation), and the rule's per-step gradients as per-sample outer
products (einsum 'bn,bm->nm'), conv ones via an explicit unfold / fold. Nothing from stllr
is imported except the layer classes under test.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stllr import Conv2dSTLLR, LeakyReadout, LinearSTLLR, RecurrentSTLLR

DT = torch.float64
RTOL, ATOL = 1e-5, 1e-10
PSIS = ("rational", "triangle", "sigmoid", "fast_sigmoid")


# ======================================================================================
# Reference (from rule.md only)
# ======================================================================================
def ref_psi(name, v):
    if name == "rational":
        return 1.0 / (100.0 * torch.abs(v) + 1.0) ** 2
    if name == "triangle":
        return 0.3 * torch.clamp(1.0 - torch.abs(v), min=0.0)
    if name == "sigmoid":
        s = 1.0 / (1.0 + torch.exp(-4.0 * v))
        return 4.0 * s * (1.0 - s)
    if name == "fast_sigmoid":
        return 1.0 / (1.0 + (10.0 * v) ** 2)
    raise AssertionError(name)


def ref_standardize(W, gain):
    """W~ = gain (W - mean) / sqrt(var_unbiased * fan_in + 1e-4), per output row, written out."""
    rows = W.shape[0]
    Wf = W.reshape(rows, -1)
    K = Wf.shape[1]
    mean = Wf.sum(dim=1, keepdim=True) / K
    c = Wf - mean
    var = (c * c).sum(dim=1, keepdim=True) / (K - 1)
    return (gain.reshape(rows, 1) * c / torch.sqrt(var * K + 1e-4)).reshape(W.shape)


def ref_outer(G, X):
    """sum_b G[b]^T X[b]: per-sample outer products."""
    return torch.einsum("bn,bm->nm", G, X)


class ConvOps:
    """conv2d as explicit unfold + matrix products (groups=1)."""

    def __init__(self, kernel, stride, padding, dilation):
        self.k, self.s, self.p, self.d = kernel, stride, padding, dilation

    def cols(self, x):
        return F.unfold(
            x, self.k, dilation=self.d, padding=self.p, stride=self.s
        )  # [B, C*kh*kw, L]

    def out_hw(self, hw):
        return tuple((n + 2 * self.p - self.d * (self.k - 1) - 1) // self.s + 1 for n in hw)

    def forward(self, x, Wt, b):
        B = x.shape[0]
        O = Wt.shape[0]
        out = torch.einsum("ok,bkl->bol", Wt.reshape(O, -1), self.cols(x))
        out = out.reshape((B, O) + self.out_hw(x.shape[2:]))
        return out + b.reshape(1, O, 1, 1) if b is not None else out

    def wgrad(self, G, inp, wshape):
        B, O = G.shape[:2]
        return torch.einsum("bol,bkl->ok", G.reshape(B, O, -1), self.cols(inp)).reshape(wshape)

    def xgrad(self, G, Wt, xshape):
        B, O = G.shape[:2]
        gcols = torch.einsum("ok,bol->bkl", Wt.reshape(O, -1), G.reshape(B, O, -1))
        return F.fold(gcols, xshape[2:], self.k, dilation=self.d, padding=self.p, stride=self.s)


class RefSpiking:
    """Reference spiking layer: kind 'linear' | 'recurrent' | 'conv'."""

    def __init__(self, kind, p, leak, threshold, factors, reset, psi, ws, conv=None):
        self.kind, self.reset, self.psi, self.ws, self.conv = kind, reset, psi, ws, conv
        self.lpost, self.lpre, self.apost, self.apre = factors
        self.beta = 1.0 / (1.0 + torch.exp(-torch.tensor(leak, dtype=DT)))
        self.theta = max(threshold, 0.5)
        self.W = p["weight"].clone().requires_grad_(True)
        self.gain = p["gain"].clone().requires_grad_(True) if ws else None
        self.b = p["bias"].clone() if p.get("bias") is not None else None
        self.Wr = p["weight_rec"].clone().requires_grad_(True) if kind == "recurrent" else None
        self.gain_r = (
            p["gain_rec"].clone().requires_grad_(True) if (kind == "recurrent" and ws) else None
        )
        with torch.no_grad():
            self.Wt = ref_standardize(self.W, self.gain) if ws else self.W.detach().clone()
            if self.Wr is not None:
                self.Wrt = ref_standardize(self.Wr, self.gain_r) if ws else self.Wr.detach().clone()
        self.gWt = torch.zeros_like(self.Wt)
        self.gWrt = torch.zeros_like(self.Wrt) if self.Wr is not None else None
        self.gb = torch.zeros_like(self.b) if self.b is not None else None
        self.tr_in = self.tr_out = self.u = None
        self.s_prev = self.tr_rec = None

    def affine(self, x, Wt):
        if self.kind == "conv":
            return self.conv.forward(x, Wt, None)
        return x @ Wt.t()

    def step(self, x):
        if self.tr_in is None:
            self.tr_in = torch.zeros_like(x)
        self.tr_in = self.lpre * self.tr_in + x  # 1
        m_in = self.affine(x, self.Wt)
        if self.kind == "recurrent":
            if self.s_prev is None:
                self.s_prev = torch.zeros_like(m_in)
                self.tr_rec = torch.zeros_like(m_in)
            m_in = m_in + self.s_prev @ self.Wrt.t()
        if self.b is not None:
            m_in = m_in + (self.b.reshape(1, -1, 1, 1) if self.kind == "conv" else self.b)
        if self.u is None:
            self.u = torch.zeros_like(m_in)
            self.tr_out = torch.zeros_like(m_in)
        m = self.beta * self.u + m_in  # 2
        v = m - self.theta  # 3
        s = (v > 0).to(DT)
        psi = ref_psi(self.psi, v)  # 4
        tr_out_prev = self.tr_out
        self.tr_out = self.lpost * self.tr_out + psi  # 5
        self.u = m - self.theta * s if self.reset == "soft" else m * (1.0 - s)  # 6
        self.cache = (x, psi, tr_out_prev, self.tr_in, self.s_prev, self.tr_rec)
        if self.kind == "recurrent":  # tr_rec = lambda_pre tr_rec + s_t, kept after the step
            self.tr_rec = self.lpre * self.tr_rec + s
            self.s_prev = s
        return s

    def backward(self, delta):
        x, psi, tr_out_prev, tr_in, s_prev, tr_rec = self.cache
        g = delta * psi
        if self.kind == "conv":
            self.gWt += self.apost * self.conv.wgrad(
                delta * tr_out_prev, x, self.Wt.shape
            ) + self.apre * self.conv.wgrad(g, tr_in, self.Wt.shape)
            if self.gb is not None:
                self.gb += g.sum((0, 2, 3))
            return self.conv.xgrad(g, self.Wt, x.shape)
        self.gWt += self.apost * ref_outer(delta * tr_out_prev, x) + self.apre * ref_outer(g, tr_in)
        if self.kind == "recurrent":
            self.gWrt += self.apost * ref_outer(
                delta * tr_out_prev, s_prev
            ) + self.apre * ref_outer(g, tr_rec)
        if self.gb is not None:
            self.gb += g.sum(0)
        return g @ self.Wt

    def grads(self):
        """dL/dW~ carried to W and gain by autograd of ref_standardize."""
        out = {"bias": self.gb}
        pairs = [("weight", "gain", self.W, self.gain, self.gWt)]
        if self.kind == "recurrent":
            pairs.append(("weight_rec", "gain_rec", self.Wr, self.gain_r, self.gWrt))
        for wn, gn, W, gain, gWt in pairs:
            if self.ws:
                gw, gg = torch.autograd.grad(ref_standardize(W, gain), (W, gain), grad_outputs=gWt)
                out[wn], out[gn] = gw, gg
            else:
                out[wn] = gWt.clone()
        return out


class RefReadout:
    def __init__(self, p, leak, lambda_pre):
        self.W, self.b = (
            p["weight"].clone(),
            (p["bias"].clone() if p.get("bias") is not None else None),
        )
        self.beta = 1.0 / (1.0 + torch.exp(-torch.tensor(leak, dtype=DT)))
        self.lpre = lambda_pre
        self.tr_in = self.u = None
        self.gW = torch.zeros_like(self.W)
        self.gb = torch.zeros_like(self.b) if self.b is not None else None

    def step(self, x):
        self.tr_in = x.clone() if self.tr_in is None else self.lpre * self.tr_in + x
        cur = x @ self.W.t() + (self.b if self.b is not None else 0.0)
        self.u = cur if self.u is None else self.beta * self.u + cur
        return self.u

    def backward(self, delta):
        self.gW += ref_outer(delta, self.tr_in)
        if self.gb is not None:
            self.gb += delta.sum(0)
        return delta @ self.W

    def grads(self):
        return {"weight": self.gW, "bias": self.gb}


# ======================================================================================
# Helpers
# ======================================================================================
B, M, N = 4, 10, 8
CIN, COUT, HW = 2, 3, 6
T, K = 6, 3


def make_layer(
    kind,
    psi="rational",
    ap=-1.0,
    reset="soft",
    ws=True,
    threshold=0.6,
    leak=1.0,
    factors=None,
    bias=True,
    conv_cfg=(3, 1, 1, 1),
    seed=0,
):
    torch.manual_seed(seed)
    factors = factors if factors is not None else (0.6, 0.8, ap, 0.9)
    common = dict(
        threshold=threshold,
        leak=leak,
        factors=factors,
        reset=reset,
        psi=psi,
        weight_standardization=ws,
        bias=bias,
        dtype=DT,
    )
    if kind == "linear":
        layer = LinearSTLLR(M, N, **common)
    elif kind == "recurrent":
        layer = RecurrentSTLLR(M, N, **common)
    elif kind == "conv":
        k, s, p, d = conv_cfg
        layer = Conv2dSTLLR(CIN, COUT, k, stride=s, padding=p, dilation=d, **common)
    else:
        raise AssertionError(kind)
    with torch.no_grad():  # make every parameter matter: non-unit gains, larger recurrent weight
        if ws:
            layer.gain.uniform_(0.7, 1.6)
            if kind == "recurrent":
                layer.gain_rec.uniform_(0.7, 1.6)
        if kind == "recurrent":
            layer.weight_rec.mul_(2.0)
    return layer, factors


def params_of(layer):
    return {
        n: p.detach().clone() for n, p in layer.named_parameters() if n not in ("leak", "threshold")
    }


def make_inputs(kind, seed=1, scale=None, batch=B):
    g = torch.Generator().manual_seed(seed)
    if kind == "conv":
        shape = (batch, CIN, HW, HW)
    else:
        shape = (batch, M)
    # binary-ish spikes with amplitude + a little analogue noise
    xs = [
        (
            (torch.rand(shape, generator=g) < 0.5).to(DT) * (scale or 1.5)
            + 0.3 * torch.randn(shape, generator=g, dtype=DT)
        )
        for _ in range(T)
    ]
    return xs


def run_stllr(layer, xs, Rs, k=K, leaf_x=True):
    """Steps before the window under no_grad; loss sum(out * R_t) + backward at each window step."""
    layer.reset_state()
    layer.zero_grad(set_to_none=True)
    outs, xgrads = [], []
    for t, x in enumerate(xs):
        if t < len(xs) - k:
            with torch.no_grad():
                out = layer(x)
            assert out.grad_fn is None
        else:
            xx = x.clone().requires_grad_(leaf_x)
            out = layer(xx)
            (out * Rs[t]).sum().backward()
            xgrads.append(xx.grad)
        outs.append(out.detach())
    return outs, xgrads


def run_ref(ref, xs, Rs, k=K):
    outs, xgrads = [], []
    for t, x in enumerate(xs):
        out = ref.step(x)
        if t >= len(xs) - k:
            xgrads.append(ref.backward(Rs[t]))
        outs.append(out)
    return outs, xgrads


def check_healthy(spikes):
    rate = torch.stack(spikes).mean().item()
    assert 0.05 < rate < 0.95, f"spike rate {rate} is not healthy"


def assert_grads(layer, ref_grads, names):
    for name in names:
        p = getattr(layer, name)
        expected = ref_grads[name]
        assert p.grad is not None, name
        assert expected.abs().max() > 1e-8, f"reference gradient of {name} is zero: vacuous test"
        torch.testing.assert_close(
            p.grad, expected, rtol=RTOL, atol=ATOL, msg=lambda m: f"{name}: {m}"
        )


def grad_names(kind, ws, bias=True):
    names = ["weight"] + (["bias"] if bias else []) + (["gain"] if ws else [])
    if kind == "recurrent":
        names += ["weight_rec"] + (["gain_rec"] if ws else [])
    return names


# ======================================================================================
# Tests
# ======================================================================================
@pytest.mark.parametrize("ws", [True, False], ids=["ws", "raw"])
@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("ap", [-1.0, 0.0, 1.0], ids=["ap-1", "ap0", "ap+1"])
@pytest.mark.parametrize("psi", PSIS)
@pytest.mark.parametrize("kind", ["linear", "recurrent", "conv"])
def test_spiking_layer_matches_reference(kind, psi, ap, reset, ws):
    layer, factors = make_layer(kind, psi, ap, reset, ws)
    ref = RefSpiking(
        kind,
        params_of(layer),
        1.0,
        0.6,
        factors,
        reset,
        psi,
        ws,
        conv=ConvOps(3, 1, 1, 1) if kind == "conv" else None,
    )
    xs = make_inputs(kind)
    out_shape = ref.affine(xs[0], ref.Wt).shape
    g = torch.Generator().manual_seed(7)
    Rs = [torch.randn(out_shape, generator=g, dtype=DT) for _ in range(T)]

    outs, xgrads = run_stllr(layer, xs, Rs)
    ref_outs, ref_xgrads = run_ref(ref, xs, Rs)

    check_healthy(ref_outs)
    for t in range(T):
        assert torch.equal(outs[t], ref_outs[t]), f"spikes differ at step {t}"
    assert_grads(layer, ref.grads(), grad_names(kind, ws))
    for t, (a, e) in enumerate(zip(xgrads, ref_xgrads)):
        assert e.abs().max() > 0
        torch.testing.assert_close(
            a, e, rtol=RTOL, atol=ATOL, msg=lambda m: f"grad_x step {t}: {m}"
        )
    assert layer.leak.grad is None and layer.threshold.grad is None


@pytest.mark.parametrize("kind", ["linear", "recurrent", "conv"])
@pytest.mark.parametrize("threshold", [0.3, 0.75])
def test_threshold_clamp_no_bias_and_other_factors(kind, threshold):
    """theta^ = max(threshold, 0.5); no bias; a different factor set; full-length window."""
    factors = (0.3, 0.5, -0.4, 1.3)
    layer, _ = make_layer(
        kind, "sigmoid", factors=factors, threshold=threshold, leak=2.5, bias=False
    )
    ref = RefSpiking(
        kind,
        params_of(layer),
        2.5,
        threshold,
        factors,
        "soft",
        "sigmoid",
        True,
        conv=ConvOps(3, 1, 1, 1) if kind == "conv" else None,
    )
    xs = make_inputs(kind, seed=3)
    g = torch.Generator().manual_seed(8)
    Rs = [torch.randn(ref.affine(xs[0], ref.Wt).shape, generator=g, dtype=DT) for _ in range(T)]
    outs, _ = run_stllr(layer, xs, Rs, k=T)
    ref_outs, _ = run_ref(ref, xs, Rs, k=T)
    check_healthy(ref_outs)
    for t in range(T):
        assert torch.equal(outs[t], ref_outs[t]), f"spikes differ at step {t}"
    assert_grads(layer, ref.grads(), grad_names(kind, True, bias=False))


@pytest.mark.parametrize(
    "cfg", [(3, 2, 1, 1), (3, 1, 2, 2), (2, 2, 0, 1)], ids=["stride2", "dilation2", "k2s2p0"]
)
def test_conv_geometry_matches_reference(cfg):
    layer, factors = make_layer("conv", "triangle", -1.0, conv_cfg=cfg)
    ref = RefSpiking(
        "conv", params_of(layer), 1.0, 0.6, factors, "soft", "triangle", True, conv=ConvOps(*cfg)
    )
    xs = make_inputs("conv", seed=5)
    g = torch.Generator().manual_seed(9)
    Rs = [torch.randn(ref.affine(xs[0], ref.Wt).shape, generator=g, dtype=DT) for _ in range(T)]
    outs, xgrads = run_stllr(layer, xs, Rs)
    ref_outs, ref_xgrads = run_ref(ref, xs, Rs)
    check_healthy(ref_outs)
    for t in range(T):
        assert torch.equal(outs[t], ref_outs[t])
    assert_grads(layer, ref.grads(), grad_names("conv", True))
    for a, e in zip(xgrads, ref_xgrads):
        torch.testing.assert_close(a, e, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "lambda_pre,leak,bias", [(0.8, 2.0, True), (0.99, 5.0, True), (0.0, 0.5, False)]
)
def test_readout_matches_reference(lambda_pre, leak, bias):
    torch.manual_seed(0)
    layer = LeakyReadout(M, N, bias=bias, leak=leak, factors=(0.0, lambda_pre, 0.0, 1.0), dtype=DT)
    ref = RefReadout(params_of(layer), leak, lambda_pre)
    xs = make_inputs("linear", seed=11)
    g = torch.Generator().manual_seed(12)
    Rs = [torch.randn(B, N, generator=g, dtype=DT) for _ in range(T)]
    outs, xgrads = run_stllr(layer, xs, Rs)
    ref_outs, ref_xgrads = run_ref(ref, xs, Rs)
    for t in range(T):
        torch.testing.assert_close(outs[t], ref_outs[t], rtol=1e-12, atol=1e-12)
    assert_grads(layer, ref.grads(), ["weight"] + (["bias"] if bias else []))
    for a, e in zip(xgrads, ref_xgrads):
        torch.testing.assert_close(a, e, rtol=RTOL, atol=ATOL)
    assert layer.gain is None


@pytest.mark.parametrize("psi,ap", [("rational", -1.0), ("triangle", 1.0), ("fast_sigmoid", 0.0)])
@pytest.mark.parametrize("kind", ["linear", "recurrent", "conv"])
def test_stack_hidden_into_readout(kind, psi, ap):
    """hidden -> LeakyReadout: the hidden layer's delta is the readout's grad_x = delta_ro W_ro,
    and its own grad_x is (psi delta) W~ (checked on the input)."""
    hidden, factors = make_layer(kind, psi, ap)
    ref_h = RefSpiking(
        kind,
        params_of(hidden),
        1.0,
        0.6,
        factors,
        "soft",
        psi,
        True,
        conv=ConvOps(3, 1, 1, 1) if kind == "conv" else None,
    )
    xs = make_inputs(kind, seed=21)
    n_hidden = ref_h.affine(xs[0], ref_h.Wt)[0].numel()
    classes = 5
    torch.manual_seed(3)
    readout = LeakyReadout(n_hidden, classes, leak=2.0, factors=(0.0, 0.9, 0.0, 1.0), dtype=DT)
    with torch.no_grad():
        readout.weight.mul_(3.0)
    ref_r = RefReadout(params_of(readout), 2.0, 0.9)
    g = torch.Generator().manual_seed(4)
    Rs = [torch.randn(B, classes, generator=g, dtype=DT) for _ in range(T)]

    hidden.reset_state()
    readout.reset_state()
    spikes, xgrads = [], []
    for t, x in enumerate(xs):
        if t < T - K:
            with torch.no_grad():
                s = hidden(x)
                readout(s.reshape(B, -1))
        else:
            xx = x.clone().requires_grad_(True)
            s = hidden(xx)
            u = readout(s.reshape(B, -1))
            (u * Rs[t]).sum().backward()
            xgrads.append(xx.grad)
        spikes.append(s.detach())

    ref_spikes, ref_xgrads = [], []
    for t, x in enumerate(xs):
        s = ref_h.step(x)
        ref_r.step(s.reshape(B, -1))
        if t >= T - K:
            delta_h = ref_r.backward(Rs[t]).reshape(s.shape)
            ref_xgrads.append(ref_h.backward(delta_h))
        ref_spikes.append(s)
    check_healthy(ref_spikes)
    for t in range(T):
        assert torch.equal(spikes[t], ref_spikes[t])
    assert_grads(hidden, ref_h.grads(), grad_names(kind, True))
    assert_grads(readout, ref_r.grads(), ["weight", "bias"])
    for a, e in zip(xgrads, ref_xgrads):
        assert e.abs().max() > 0
        torch.testing.assert_close(a, e, rtol=RTOL, atol=ATOL)


# --------------------------------------------------------------------------------------
# alpha_post = 0, lambda_pre = 0: exactly the one-step autograd gradient
# --------------------------------------------------------------------------------------
class SurrogateHeaviside(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, name):
        ctx.save_for_backward(v)
        ctx.name = name
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad):
        (v,) = ctx.saved_tensors
        return grad * ref_psi(ctx.name, v), None


@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("psi", PSIS)
@pytest.mark.parametrize("kind", ["linear", "recurrent", "conv", "readout"])
def test_ottt_limit_equals_one_step_autograd(kind, psi, reset):
    """factors [lambda_post, 0, 0, 1]: the rule is the gradient of the one-step surrogate network
    (plain torch ops, autograd, state detached between steps), whatever lambda_post is."""
    factors = (0.7, 0.0, 0.0, 1.0)
    if kind == "readout":
        torch.manual_seed(0)
        layer = LeakyReadout(M, N, leak=1.0, factors=factors, dtype=DT)
    else:
        layer, _ = make_layer(kind, psi, reset=reset, factors=factors)
    P = {n: p.detach().clone().requires_grad_(True) for n, p in params_of(layer).items()}
    xs = make_inputs("conv" if kind == "conv" else "linear", seed=31)
    beta = torch.sigmoid(torch.tensor(1.0, dtype=DT))
    theta = 0.6

    def current(x, s_prev):
        if kind == "readout":
            return F.linear(x, P["weight"], P["bias"])
        Wt = ref_standardize(P["weight"], P["gain"])
        if kind == "conv":
            return F.conv2d(x, Wt, P["bias"], padding=1)
        c = F.linear(x, Wt, P["bias"])
        if kind == "recurrent":
            c = c + F.linear(s_prev, ref_standardize(P["weight_rec"], P["gain_rec"]))
        return c

    layer.reset_state()
    u = s_prev = None
    g = torch.Generator().manual_seed(5)
    n_spk, n_tot = 0, 0
    for t, x in enumerate(xs):
        grad_on = t >= T - K
        xa = x.clone().requires_grad_(True)
        xb = x.clone().requires_grad_(True)
        with torch.set_grad_enabled(grad_on):
            out = layer(xa)
            cur = current(xb, s_prev if s_prev is not None else torch.zeros(B, N, dtype=DT))
            m = cur if u is None else beta * u + cur
            if kind == "readout":
                ref_out, u = m, m.detach()
            else:
                v = m - theta
                ref_out = SurrogateHeaviside.apply(v, psi)
                s = ref_out.detach()
                u = (m - theta * s if reset == "soft" else m * (1 - s)).detach()
                s_prev = s
                n_spk += s.sum().item()
                n_tot += s.numel()
            assert torch.equal(out.detach(), ref_out.detach())
            if grad_on:
                R = torch.randn(out.shape, generator=g, dtype=DT)
                (out * R).sum().backward()
                (ref_out * R).sum().backward()
                torch.testing.assert_close(xa.grad, xb.grad, rtol=RTOL, atol=ATOL)
    if kind != "readout":
        assert 0.05 < n_spk / n_tot < 0.95
    for n, p in P.items():
        assert p.grad.abs().max() > 1e-8, n
        torch.testing.assert_close(
            getattr(layer, n).grad, p.grad, rtol=RTOL, atol=ATOL, msg=lambda m: f"{n}: {m}"
        )


# --------------------------------------------------------------------------------------
# Factor convention, by hand
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha_pre,expected_w", [(0.0, 0.072), (1.0, 0.225)])
def test_alpha_post_multiplies_previous_post_trace_by_hand(alpha_pre, expected_w):
    """One neuron, W = 1, b = 0, no standardisation, leak 0 (beta = 0.5), threshold 0.6, soft reset,
    psi = triangle 0.3 max(0, 1 - |v|), factors [lambda_post .5, lambda_pre .5, alpha_post 1, alpha_pre],
    x = 1.0, 0.3, 0.2, loss = s_3 (delta_3 = 1).
      t=1: m = 1.0,            v = 0.4,  s = 1, psi = 0.18,  tr_out = 0.18,               u = 0.4, tr_in = 1.0
      t=2: m = .5*.4+.3 = .5,  v = -0.1, s = 0, psi = 0.27,  tr_out = .5*.18+.27 = 0.36,  u = 0.5, tr_in = 0.8
      t=3: m = .5*.5+.2 = .45, v = -.15, s = 0, psi = 0.255, tr_out = 0.435,                       tr_in = 0.6
    grad_W = alpha_post * tr_out_2 * x_3 + alpha_pre * psi_3 * tr_in_3 = 0.36*0.2 + alpha_pre*0.255*0.6
    (0.072 alone; using tr_out_3 would give 0.087, the paper's lambda_post*tr_out_2 0.036); grad_b = 0.255."""
    layer = LinearSTLLR(
        1,
        1,
        threshold=0.6,
        leak=0.0,
        factors=[0.5, 0.5, 1.0, alpha_pre],
        reset="soft",
        psi="triangle",
        weight_standardization=False,
        dtype=DT,
    )
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.bias.fill_(0.0)
    spikes = []
    for t, x in enumerate([1.0, 0.3, 0.2]):
        xt = torch.tensor([[x]], dtype=DT)
        if t < 2:
            with torch.no_grad():
                spikes.append(layer(xt).item())
        else:
            s = layer(xt)
            spikes.append(s.item())
            s.sum().backward()
    assert spikes == [1.0, 0.0, 0.0]
    torch.testing.assert_close(layer.post_trace, torch.tensor([[0.435]], dtype=DT))
    torch.testing.assert_close(
        layer.weight.grad, torch.tensor([[expected_w]], dtype=DT), rtol=1e-12, atol=1e-12
    )
    torch.testing.assert_close(
        layer.bias.grad, torch.tensor([0.255], dtype=DT), rtol=1e-12, atol=1e-12
    )


# --------------------------------------------------------------------------------------
# Reference state_dict keys
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["linear", "recurrent", "conv", "readout"])
def test_reference_state_dict_loads(kind):
    """A state_dict with the reference's keys (leak/threshold as [1] tensors) gives the same outputs
    and gradients as a layer constructed with those values."""
    leak, threshold, factors = 1.3, 0.7, (0.4, 0.7, -0.5, 1.0)
    torch.manual_seed(123)
    if kind == "conv":
        shapes = {"weight": (COUT, CIN, 3, 3), "gain": (COUT, 1, 1, 1), "bias": (COUT,)}
    else:
        shapes = {"weight": (N, M), "bias": (N,)}
        if kind != "readout":
            shapes["gain"] = (N, 1)
        if kind == "recurrent":
            shapes.update(weight_rec=(N, N), gain_rec=(N, 1))
    sd = {
        k: (
            torch.rand(s, dtype=DT) + 0.5
            if k.startswith("gain")
            else torch.randn(s, dtype=DT) * 0.4
        )
        for k, s in shapes.items()
    }
    sd["leak"] = torch.tensor([leak], dtype=DT)
    sd["factors"] = torch.tensor(factors, dtype=DT)
    if kind != "readout":
        sd["threshold"] = torch.tensor([threshold], dtype=DT)
    else:
        sd["threshold"] = torch.tensor([0.6], dtype=DT)

    def build(**kw):
        if kind == "linear":
            return LinearSTLLR(M, N, dtype=DT, **kw)
        if kind == "recurrent":
            return RecurrentSTLLR(M, N, dtype=DT, **kw)
        if kind == "conv":
            return Conv2dSTLLR(CIN, COUT, 3, padding=1, dtype=DT, **kw)
        kw.pop("threshold")
        return LeakyReadout(M, N, dtype=DT, **kw)

    loaded = build(threshold=0.6, leak=2.0, factors=None)
    result = loaded.load_state_dict(sd)
    assert not result.missing_keys and not result.unexpected_keys
    assert loaded.leak.shape == () and float(loaded.leak) == leak
    direct = build(threshold=threshold, leak=leak, factors=factors)
    with torch.no_grad():
        for k, s in shapes.items():
            getattr(direct, k).copy_(sd[k])
    default = build(threshold=0.6, leak=2.0, factors=None)
    default.load_state_dict({k: sd[k] for k in shapes}, strict=False)

    xs = make_inputs("conv" if kind == "conv" else "linear", seed=41)
    out_shape = loaded(xs[0]).shape
    g = torch.Generator().manual_seed(6)
    Rs = [torch.randn(out_shape, generator=g, dtype=DT) for _ in range(T)]
    o1, x1 = run_stllr(loaded, xs, Rs)
    o2, x2 = run_stllr(direct, xs, Rs)
    o3, _ = run_stllr(default, xs, Rs)
    for a, b in zip(o1, o2):
        assert torch.equal(a, b)
    for a, b in zip(x1, x2):
        assert torch.equal(a, b)
    for k in shapes:
        assert torch.equal(getattr(loaded, k).grad, getattr(direct, k).grad), k
    # the loaded leak / threshold / factors matter: the default-valued layer behaves differently
    differs = any(not torch.equal(a, b) for a, b in zip(o1, o3)) or not torch.equal(
        loaded.weight.grad, default.weight.grad
    )
    assert differs
