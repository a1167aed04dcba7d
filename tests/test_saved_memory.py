"""Memory the autograd graph holds: constant in T for S-TLLR, linear in T for BPTT.

Measured with ``torch.autograd.graph.saved_tensors_hooks``: every tensor autograd saves for
backward (``ctx.save_for_backward`` in the S-TLLR rule node and the BPTT ops alike) passes
through ``pack``.

How the LIVE saved bytes are tracked (see :class:`SavedBytes`):
- ``pack`` wraps the tensor in a small handle object and returns it; autograd keeps the handle
  (instead of the tensor) for as long as the graph node needs it. The handle is the only
  reference the graph holds, so the handle dies exactly when autograd frees that saved tensor
  (after ``backward()`` without ``retain_graph``, or when the graph is dropped).
- ``weakref.finalize`` on the handle releases its bytes at that moment.
- Bytes are counted per underlying storage (``untyped_storage().nbytes()``), deduplicated by
  the storage's ``data_ptr``, with a reference count: a storage saved by several nodes (the
  cached standardised weight, a view of an input, the same tensor saved twice) counts once,
  and leaves the live total when its last handle dies. Keys cannot alias two storages: a
  storage with a live handle is kept alive by that handle, so its address is not reused.
- ``peak`` is the maximum of the live total, updated at every pack.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F

from stllr import (
    LeakyIntegrator,
    LeakyReadout,
    LinearLIF,
    LinearSTLLR,
    RecurrentLIF,
    RecurrentSTLLR,
)

B, M, H, C = 128, 40, 32, 5


class _Handle:
    """Holds a DETACHED alias of the saved tensor (same storage). Holding the tensor itself would
    make a reference cycle node -> handle -> tensor -> grad_fn == node for the tensors an op saves
    of its own output (sigmoid, reciprocal, ...): such graphs would only be freed by Python's
    cycle collector and their bytes would look live for too long. Autograd re-attaches the
    grad_fn of saved outputs on unpack, so gradients are unchanged (checked below)."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor):
        self.tensor = tensor.detach()


class SavedBytes:
    def __init__(self):
        self.entries = {}  # storage data_ptr -> [refcount, nbytes]
        self.live = 0
        self.peak = 0
        self.packs = 0

    def _pack(self, t):
        self.packs += 1
        st = t.untyped_storage()
        key = (st.device.type, st.data_ptr())
        entry = self.entries.get(key)
        if entry is None:
            self.entries[key] = [1, st.nbytes()]
            self.live += st.nbytes()
            self.peak = max(self.peak, self.live)
        else:
            entry[0] += 1
        handle = _Handle(t)
        weakref.finalize(handle, self._release, key)
        return handle

    def _release(self, key):
        entry = self.entries[key]
        entry[0] -= 1
        if entry[0] == 0:
            self.live -= entry[1]
            del self.entries[key]

    @staticmethod
    def _unpack(handle):
        return handle.tensor

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)


def data(T, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = [(torch.rand(B, M, generator=g) < 0.3).float() * 1.5 for _ in range(T)]
    y = torch.randint(0, C, (B,), generator=g)
    return xs, y


def stllr_net():
    torch.manual_seed(0)
    return [
        LinearSTLLR(M, H),
        RecurrentSTLLR(H, H),
        LeakyReadout(H, C, factors=(0.0, 0.99, 0.0, 1.0)),
    ]


def bptt_net():
    torch.manual_seed(0)
    return [LinearLIF(M, H), RecurrentLIF(H, H), LeakyIntegrator(H, C)]


def forward(net, x):
    for layer in net:
        x = layer(x)
    return x


def stllr_peak(T, window):
    """The rule's training: steps before the window under no_grad, then CE + backward at each
    window step (gradients summed), predictions accumulated detached."""
    net = stllr_net()
    xs, y = data(T)
    tracker = SavedBytes()
    for layer in net:
        layer.reset_state()
    pred = torch.zeros(B, C)
    with tracker.hooks():
        for t, x in enumerate(xs):
            if t < T - window:
                before = tracker.packs
                with torch.no_grad():
                    out = forward(net, x)
                assert tracker.packs == before, "a no_grad step saved tensors"
            else:
                out = forward(net, x)
                assert tracker.live > 0
                F.cross_entropy(out, y).backward()
                assert tracker.live == 0, "saved tensors outlive the step's backward"
            pred += out.detach()
    assert net[0].weight.grad.abs().max() > 0
    return tracker.peak


def bptt_peak(T):
    net = bptt_net()
    xs, y = data(T)
    tracker = SavedBytes()
    for layer in net:
        layer.reset_state()
    with tracker.hooks():
        total = 0.0
        for x in xs:
            total = total + forward(net, x)
        F.cross_entropy(total, y).backward()
    assert net[0].weight.grad.abs().max() > 0
    for layer in net:
        layer.reset_state()
    del total  # nodes that backward did not need to run keep their saved tensors until here
    assert tracker.live == 0
    return tracker.peak


def test_tracker_counts_live_bytes():
    """The instrument itself: a saved tensor counts while its graph lives, once per storage."""
    tr = SavedBytes()
    w = torch.randn(100, requires_grad=True)
    with tr.hooks():
        y = (w * w).sum()  # saves w twice: one storage
        assert tr.live == 400 and tr.packs == 2
        z = torch.sin(torch.randn(50, requires_grad=True)).sum()
        assert tr.live == 600 and tr.peak == 600
        y.backward()
        assert tr.live == 200
        del z  # dropping a graph frees what it saved
        assert tr.live == 0 and tr.peak == 600
        # an op that saves its own output: freed after backward, gradient unchanged by the hooks
        a = torch.randn(30, requires_grad=True)
        torch.sigmoid(a).pow(2).sum().backward()
        assert tr.live == 0
    expected = 2 * torch.sigmoid(a) ** 2 * (1 - torch.sigmoid(a))
    torch.testing.assert_close(a.grad, expected.detach())


def test_stllr_saved_memory_constant_in_T():
    peaks = {T: stllr_peak(T, window=T) for T in (10, 20, 40)}
    assert peaks[10] > 0
    assert peaks[10] == peaks[20] == peaks[40], peaks
    # a learning window shorter than T: same per-step peak, the no_grad prefix saves nothing
    assert stllr_peak(40, window=5) == peaks[10]


def test_bptt_saved_memory_linear_in_T():
    Ts = (10, 20, 40)
    peaks = [bptt_peak(T) for T in Ts]
    # exact straight line: equal saved bytes per extra step
    slope = (peaks[1] - peaks[0]) / (Ts[1] - Ts[0])
    assert slope > 0
    assert peaks[2] - peaks[1] == slope * (Ts[2] - Ts[1]), peaks
    intercept = peaks[0] - slope * Ts[0]
    assert 0 <= intercept < 0.1 * peaks[0], (peaks, intercept)  # constant part: weights and W~ only
    assert 3.6 < peaks[2] / peaks[0] <= 4.0, peaks
    # and far above the S-TLLR peak at T = 40
    assert peaks[2] > 10 * stllr_peak(40, window=40)


def test_no_grad_steps_save_nothing():
    for net in (stllr_net(), bptt_net()):
        tr = SavedBytes()
        xs, _ = data(5)
        with tr.hooks(), torch.no_grad():
            for x in xs:
                forward(net, x)
        assert tr.packs == 0 and tr.peak == 0
        # the same steps with gradients enabled do save (the instrument sees them)
        for layer in net:
            layer.reset_state()
        with tr.hooks():
            forward(net, xs[0])
        assert tr.packs > 0
