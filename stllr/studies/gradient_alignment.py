"""Gradient alignment: how close is the S-TLLR update to the exact BPTT gradient of the same loss?

The fair comparison (notebook 09). S-TLLR (``training_mode="stllr"``) gives a learning signal at
the last ``d`` steps of a sequence of ``T`` (the learning window, ``window``; ``--delay-ls`` of
``stllr train``; ``d`` as in notebooks 08 and 05, while ``W`` always names a weight matrix) and
calls ``CE(out_t, y).backward()`` at each of them; the rule's per-step gradients sum in ``.grad``.
So the loss S-TLLR descends is

    L_d = sum_{t = T-d}^{T-1} CE(out_t, y),

and its update is ``g_S = weight.grad`` after those ``d`` backward calls (before the optimizer
step). The reference is the exact gradient of the *same* ``L_d`` with respect to the *same*
weights on the *same* batch: ``g_BPTT = dL_d / dW``, computed by backpropagation through time on the
BPTT twin (same topology and dynamics, ``psi`` as surrogate derivative) into which the S-TLLR
model's weights were loaded. (The BPTT *training mode* uses ``CE(sum_t out_t, y)`` instead: a
different loss, so comparing against it would mix a change of loss into the rule's error.)

Both models compute the same forward pass (the factors only shape the traces, never the spikes),
so every difference between ``g_S`` and ``g_BPTT`` is the rule's approximation: no gradient through
time except what the traces carry, and a one-step learning signal.

Because the rule is linear in its two terms, ``g_S = alpha_post * N(lambda_post) + alpha_pre *
C(lambda_pre)`` (non-causal and causal parts, each depending on one decay only), and sums over
steps, the whole grid (alpha_post x lambda_pre x lambda_post x window) needs one run per
``lambda_pre`` and one per ``lambda_post`` value, not one per combination:
:class:`RuleComponents` holds those parts, :func:`alignment_sweep` combines them.

Metrics: :func:`~stllr.analysis.cosine_similarity` (direction) and
:func:`~stllr.analysis.relative_norm` ``|g_S| / |g_BPTT|`` (scale), per layer, averaged over batches.

psi (the secondary activation) plays two parts: in the rule it multiplies the learning signal and
feeds the post trace; in the BPTT twin it is the surrogate derivative ``ds_t/dv_t`` of every spike,
so it sets how much gradient BPTT sends back through time along paths that cross a spike (the
recurrent input ``s_{t-1} W~_rec^T`` and the soft reset ``u_t = m_t - theta s_t``), paths the rule
does not follow. :func:`with_psi` gives the same model with another psi (same weights, same forward
pass), :func:`without_recurrent_spike_path` cuts the recurrent path out of a twin's gradient, and
:func:`alignment_sweeps` compares the same S-TLLR runs with several twins at once (e.g. the full
one and a cut one), so the second reference costs one more BPTT pass per batch."""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stllr import functional as SF
from stllr.analysis.metrics import cosine_similarity, relative_norm
from stllr.layers import LeakyReadout, _STLLRBase
from stllr.training.loop import bptt_through_time, run_epoch, stllr_window, time_major

__all__ = [
    "RECURRENT_LAYERS",
    "fair_loss",
    "hidden_stllr_layers",
    "set_factors",
    "bptt_twin",
    "stllr_update",
    "bptt_gradients",
    "RuleComponents",
    "rule_components",
    "AlignmentSweep",
    "alignment_sweep",
    "alignment_sweeps",
    "hidden_layers",
    "lambda_pre_profile",
    "compare_sweeps_table",
    "with_psi",
    "without_recurrent_spike_path",
    "train_briefly",
    "test_accuracy",
    "plot_alignment_heatmaps",
    "plot_alignment_vs_window",
    "plot_alignment_bars",
    "plot_alignment_point",
    "plot_psi_comparison",
    "first_batches",
]

#: The layers compared for the recurrent networks (``randman_rsnn_*``, ``*_shd_net``): display name ->
#: parameter name (the same in the S-TLLR model and its BPTT twin).
RECURRENT_LAYERS: Dict[str, str] = {
    "input W_in": "linear1.weight",
    "recurrent W_rec": "linear1.weight_rec",
    "readout W_out": "last_layer.weight",
}


def fair_loss(outputs: Sequence[torch.Tensor], labels: torch.Tensor, window: int) -> torch.Tensor:
    """``L_d = sum over the last d = ``window`` steps of CE(out_t, y)``: the loss S-TLLR descends."""
    steps = len(outputs)
    window = _check_window(window, steps)
    return sum(F.cross_entropy(out, labels) for out in outputs[steps - window :])


def _check_window(window, steps: int) -> int:
    if (
        isinstance(window, bool)
        or not isinstance(window, (int, np.integer))
        or not 1 <= int(window) <= steps
    ):
        raise ValueError(
            f"window: expected an integer in [1, {steps}] (the number of steps), got {window!r}"
        )
    return int(window)


def hidden_stllr_layers(model: nn.Module) -> list:
    """The spiking S-TLLR layers of ``model`` (everything but the leaky readout), whose factors
    the alignment sweep varies. The readout keeps its own factors (SHD: [0, 0.99, 0, 1])."""
    return [
        m for m in model.modules() if isinstance(m, _STLLRBase) and not isinstance(m, LeakyReadout)
    ]


@contextlib.contextmanager
def set_factors(model: nn.Module, factors):
    """Within the block, every hidden S-TLLR layer of ``model`` uses ``factors`` =
    [lambda_post, lambda_pre, alpha_post, alpha_pre]; the previous factors come back afterwards."""
    values = SF.check_factors(factors)
    layers = hidden_stllr_layers(model)
    if not layers:
        raise ValueError("set_factors: the model has no hidden S-TLLR layer")
    saved = [layer.factors.clone() for layer in layers]
    try:
        with torch.no_grad():
            for layer in layers:
                layer.factors.copy_(torch.tensor(values, dtype=layer.factors.dtype))
        yield model
    finally:
        with torch.no_grad():
            for layer, old in zip(layers, saved):
                layer.factors.copy_(old)


def _recurrent_options(model: nn.Module, psi: bool) -> Dict[str, Any]:
    """The build_model options a registry recurrent net was built with (hidden size, leaks and,
    with ``psi``, its psi's name); ``{}`` for other architectures."""
    from stllr.models.recurrent import RecurrentNet

    if not isinstance(model, RecurrentNet):
        return {}
    options = {
        "hidden": model.linear1.out_features,
        "leak": float(model.linear1.leak),
        "readout_leak": float(model.last_layer.leak),
    }
    if psi:
        options["psi"] = SF.psi_name(model.linear1.psi)
    return options


def bptt_twin(model: nn.Module, **kwargs) -> nn.Module:
    """The BPTT twin of a registry S-TLLR model with the model's weights loaded (same dtype and
    device). For the recurrent nets the hidden size, leaks and psi are read from ``model``;
    ``kwargs`` go to :func:`stllr.models.build_model` (needed for other architectures)."""
    from stllr.models.registry import build_model, get_model_spec

    spec = get_model_spec(getattr(model, "arch", ""))
    if not spec.is_stllr:
        raise ValueError(f"bptt_twin: {spec.arch} is already a BPTT model")
    kwargs = {**_recurrent_options(model, psi=True), **kwargs}
    twin = build_model(
        spec.twin, num_classes=model.num_classes, input_shape=model.input_shape, **kwargs
    )
    p = next(model.parameters())
    twin = twin.to(device=p.device, dtype=p.dtype)
    result = twin.load_state_dict(
        model.state_dict(), strict=False
    )  # strict=False: `factors` buffers, hooks
    if result.missing_keys:
        raise ValueError(
            f"bptt_twin: the twin has parameters the model lacks: {result.missing_keys}"
        )
    twin.train(model.training)
    return twin


def _params(model: nn.Module, names: Iterable[str]) -> Dict[str, nn.Parameter]:
    own = dict(model.named_parameters())
    missing = [n for n in names if n not in own]
    if missing:
        raise ValueError(f"parameters {missing} not in {type(model).__name__} (has {sorted(own)})")
    return {n: own[n] for n in names}


def _grads(params: Mapping[str, nn.Parameter]) -> Dict[str, torch.Tensor]:
    return {
        n: (torch.zeros_like(p) if p.grad is None else p.grad.detach().clone())
        for n, p in params.items()
    }


def stllr_update(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    window: int,
    factors=None,
    names: Optional[Iterable[str]] = None,
) -> Dict[str, torch.Tensor]:
    """The S-TLLR update of one batch, as ``train_batch(mode="stllr")`` computes it before its
    optimizer step: steps before the window under ``no_grad``, then ``CE(out_t, y).backward()``
    at each of the last ``window`` steps; returns ``{name: weight.grad}`` (summed over the window).

    x: time-major ``[T, B, ...]``; factors: the hidden layers' factors (None: as the model has them).
    """
    names = list(names or RECURRENT_LAYERS.values())
    params = _params(model, names)
    window = _check_window(window, x.shape[0])
    ctx = set_factors(model, factors) if factors is not None else contextlib.nullcontext()
    with ctx:
        model.zero_grad(set_to_none=True)
        stllr_window(model, x, labels, F.cross_entropy, window)
        grads = _grads(params)
        model.zero_grad(set_to_none=True)
        model.reset_state()
    return grads


def bptt_gradients(
    twin: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    windows: Sequence[int],
    names: Optional[Iterable[str]] = None,
) -> Dict[int, Dict[str, torch.Tensor]]:
    """Exact gradients ``dL_d/dW`` of :func:`fair_loss` for every window ``d`` in ``windows``:
    one forward pass through time with the graph kept, one backward per window.
    Returns ``{d: {name: gradient}}``."""
    names = list(names or RECURRENT_LAYERS.values())
    params = _params(twin, names)
    steps = x.shape[0]
    windows = sorted({_check_window(w, steps) for w in windows})
    twin.zero_grad(set_to_none=True)
    with torch.enable_grad():
        outputs = bptt_through_time(twin, x, loss=None, keep_outputs=True).outputs
        out = {}
        for i, w in enumerate(windows):
            twin.zero_grad(set_to_none=True)
            fair_loss(outputs, labels, w).backward(retain_graph=i < len(windows) - 1)
            out[w] = _grads(params)
    twin.zero_grad(set_to_none=True)
    twin.reset_state()
    return out


def _window_parts(model, x, labels, windows, factors, names) -> Dict[int, Dict[str, torch.Tensor]]:
    """One S-TLLR run over the largest window; ``.grad`` is read (and zeroed) at every window
    boundary, so the sum over the last d steps is the sum of the parts after ``T - d``."""
    params = _params(model, names)
    steps = x.shape[0]
    windows = sorted({_check_window(w, steps) for w in windows})
    boundaries = sorted({steps - w for w in windows})  # steps where a window starts
    parts: Dict[int, Dict[str, torch.Tensor]] = {}
    seg_start = boundaries[0]

    def new_segment(t: int) -> None:  # before step t's forward: store the segment that ends
        nonlocal seg_start
        if t in boundaries and t > seg_start:
            parts[seg_start] = _grads(params)
            model.zero_grad(set_to_none=True)
            seg_start = t

    with set_factors(model, factors):
        model.zero_grad(set_to_none=True)
        stllr_window(model, x, labels, F.cross_entropy, windows[-1], before_forward=new_segment)
        parts[seg_start] = _grads(params)
        model.zero_grad(set_to_none=True)
        model.reset_state()
    totals: Dict[int, Dict[str, torch.Tensor]] = {}
    running = None
    for b in sorted(parts, reverse=True):  # from the last segment backwards
        running = parts[b] if running is None else {n: running[n] + parts[b][n] for n in names}
        totals[steps - b] = running
    return totals


@dataclass
class RuleComponents:
    """The S-TLLR update of one batch split into its linear parts, for every window.

    ``causal[lambda_pre][d][name]``: the update with factors ``[., lambda_pre, 0, 1]`` (the
    ``alpha_pre`` term alone, per unit alpha_pre); ``noncausal[lambda_post][d][name]``: with
    ``[lambda_post, ., 1, 0]`` (the ``alpha_post`` term alone). Parameters the hidden factors do not
    touch (the readout) get the same value in both; ``fixed`` lists them.
    """

    names: list
    windows: list
    causal: Dict[float, Dict[int, Dict[str, torch.Tensor]]] = field(default_factory=dict)
    noncausal: Dict[float, Dict[int, Dict[str, torch.Tensor]]] = field(default_factory=dict)
    fixed: list = field(default_factory=list)

    def update(
        self,
        alpha_post: float,
        lambda_pre: float,
        lambda_post: float,
        window: int,
        alpha_pre: float = 1.0,
    ) -> Dict[str, torch.Tensor]:
        """``alpha_post * N(lambda_post) + alpha_pre * C(lambda_pre)`` summed over the last
        ``window`` steps: equal (to rounding) to :func:`stllr_update` with factors
        ``[lambda_post, lambda_pre, alpha_post, alpha_pre]``."""
        c = self.causal[float(lambda_pre)][int(window)]
        n = self.noncausal[float(lambda_post)][int(window)] if alpha_post != 0.0 else None
        out = {}
        for name in self.names:
            if name in self.fixed:
                out[name] = c[name]
            elif n is None:
                out[name] = alpha_pre * c[name]
            else:
                out[name] = alpha_pre * c[name] + alpha_post * n[name]
        return out


def rule_components(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    windows: Sequence[int],
    lambda_pres: Sequence[float],
    lambda_posts: Sequence[float],
    names: Optional[Iterable[str]] = None,
) -> RuleComponents:
    """Runs the S-TLLR model once per ``lambda_pre`` (causal term only) and once per
    ``lambda_post`` (non-causal term only) on one batch (x time-major ``[T, B, ...]``)."""
    names = list(names or RECURRENT_LAYERS.values())
    steps = x.shape[0]
    windows = sorted({_check_window(w, steps) for w in windows})
    comp = RuleComponents(names, windows)
    for lp in sorted({float(v) for v in lambda_pres}):
        comp.causal[lp] = _window_parts(model, x, labels, windows, [0.0, lp, 0.0, 1.0], names)
    for lq in sorted({float(v) for v in lambda_posts}):
        comp.noncausal[lq] = _window_parts(model, x, labels, windows, [lq, 0.0, 1.0, 0.0], names)
    hidden = {id(p) for layer in hidden_stllr_layers(model) for p in layer.parameters()}
    own = dict(model.named_parameters())
    comp.fixed = [n for n in names if id(own[n]) not in hidden]
    return comp


@dataclass
class AlignmentSweep:
    """Alignment of S-TLLR with BPTT over a grid of factors and windows.

    ``cos`` and ``rel`` are arrays ``[layer, alpha_post, lambda_pre, lambda_post, window, batch]``
    of :func:`cosine_similarity` and :func:`relative_norm` ``|g_S| / |g_BPTT|``. ``alpha_pre`` is fixed.
    """

    layers: list  # display names
    names: list  # parameter names, same order
    alpha_posts: list
    lambda_pres: list
    lambda_posts: list
    windows: list
    alpha_pre: float
    cos: np.ndarray
    rel: np.ndarray

    def _index(self, alpha_post, lambda_pre, lambda_post, window):
        def find(values, v, what):
            for i, u in enumerate(values):
                if abs(u - float(v)) < 1e-9:
                    return i
            raise KeyError(f"{what}={v} is not in the sweep's grid {values}")

        return (
            find(self.alpha_posts, alpha_post, "alpha_post"),
            find(self.lambda_pres, lambda_pre, "lambda_pre"),
            find(self.lambda_posts, lambda_post, "lambda_post"),
            find(self.windows, window, "window"),
        )

    def at(self, alpha_post, lambda_pre, lambda_post, window) -> Dict[str, Dict[str, float]]:
        """``{layer: {"cos", "cos_std", "rel"}}`` (means and std over batches) at one grid point."""
        a, p, q, w = self._index(alpha_post, lambda_pre, lambda_post, window)
        return {
            layer: {
                "cos": float(self.cos[i, a, p, q, w].mean()),
                "cos_std": float(self.cos[i, a, p, q, w].std()),
                "rel": float(self.rel[i, a, p, q, w].mean()),
            }
            for i, layer in enumerate(self.layers)
        }

    def mean(self, metric: str = "cos") -> np.ndarray:
        """``metric`` ("cos" or "rel") averaged over batches:
        ``[layer, alpha_post, lambda_pre, lambda_post, window]``."""
        return getattr(self, metric).mean(-1)

    def best(
        self,
        layers: Optional[Sequence[str]] = None,
        window: Optional[int] = None,
        alpha_post: Optional[float] = None,
    ) -> dict:
        """The grid point with the highest mean cosine, averaged over ``layers`` (default: the
        layers whose alignment depends on the hidden factors), optionally at a fixed window and/or
        alpha_post. Returns ``{"alpha_post", "lambda_pre", "lambda_post", "window", "cos"}``."""
        layers = list(
            layers or [l for l in self.layers if not l.startswith("readout")] or self.layers
        )
        idx = [self.layers.index(l) for l in layers]
        score = self.mean("cos")[idx].mean(0)  # [alpha_post, lambda_pre, lambda_post, window]
        mask = np.ones_like(score, dtype=bool)
        if window is not None:
            mask[..., [i for i, w in enumerate(self.windows) if w != window]] = False
        if alpha_post is not None:
            mask[[i for i, a in enumerate(self.alpha_posts) if abs(a - alpha_post) > 1e-9]] = False
        masked = np.where(mask & np.isfinite(score), score, -np.inf)
        a, p, q, w = np.unravel_index(np.argmax(masked), score.shape)
        return {
            "alpha_post": self.alpha_posts[a],
            "lambda_pre": self.lambda_pres[p],
            "lambda_post": self.lambda_posts[q],
            "window": self.windows[w],
            "cos": float(score[a, p, q, w]) if np.isfinite(masked[a, p, q, w]) else float("nan"),
        }

    def table(self, points: Sequence[tuple], digits: int = 3) -> str:
        """A text table: one row per ``(alpha_post, lambda_pre, lambda_post, window)`` point,
        cosine and norm ratio ``|g_S| / |g_BPTT|`` per layer."""
        head = f"{'alpha_post':>10} {'l_pre':>6} {'l_post':>6} {'d':>4} | " + " | ".join(
            f"{l:^18}" for l in self.layers
        )
        sub = " " * 31 + "| " + " | ".join(f"{'cos':>7} {'norm ratio':>10}" for _ in self.layers)
        rows = [head, sub]
        for pt in points:
            r = self.at(*pt)
            rows.append(
                f"{pt[0]:>+10g} {pt[1]:>6g} {pt[2]:>6g} {pt[3]:>4d} | "
                + " | ".join(
                    f"{r[l]['cos']:>7.{digits}f} {r[l]['rel']:>10.{digits}f}" for l in self.layers
                )
            )
        return "\n".join(rows)


def alignment_sweep(
    model: nn.Module,
    batches: Iterable,
    *,
    alpha_posts: Sequence[float] = (-1.0, 0.0, 1.0),
    lambda_pres: Sequence[float] = (0.0, 0.5, 0.8, 0.95, 1.0),
    lambda_posts: Sequence[float] = (0.0, 0.5, 0.8),
    windows: Sequence[int] = (1, 5, 25),
    alpha_pre: float = 1.0,
    layers: Optional[Mapping[str, str]] = None,
    twin: Optional[nn.Module] = None,
    progress: Optional[Callable[[str], None]] = None,
) -> AlignmentSweep:
    """Cosine similarity and relative norm between the S-TLLR update and the exact BPTT gradient
    of the same loss (:func:`fair_loss`), per layer, over the grid
    ``alpha_posts x lambda_pres x lambda_posts x windows`` (alpha_pre fixed), on each batch of
    ``batches`` (``(frames [B, T, ...], labels)`` as the loaders give them).

    ``twin``: the BPTT twin (default: :func:`bptt_twin` of ``model``, weights loaded now).
    Costs per batch one BPTT forward (+ one backward per window) and
    ``len(lambda_pres) + len(lambda_posts)`` S-TLLR runs.
    """
    twin = bptt_twin(model) if twin is None else twin
    return alignment_sweeps(
        model,
        batches,
        {"": twin},
        alpha_posts=alpha_posts,
        lambda_pres=lambda_pres,
        lambda_posts=lambda_posts,
        windows=windows,
        alpha_pre=alpha_pre,
        layers=layers,
        progress=progress,
    )[""]


def alignment_sweeps(
    model: nn.Module,
    batches: Iterable,
    twins: Mapping[str, nn.Module],
    *,
    alpha_posts: Sequence[float] = (-1.0, 0.0, 1.0),
    lambda_pres: Sequence[float] = (0.0, 0.5, 0.8, 0.95, 1.0),
    lambda_posts: Sequence[float] = (0.0, 0.5, 0.8),
    windows: Sequence[int] = (1, 5, 25),
    alpha_pre: float = 1.0,
    layers: Optional[Mapping[str, str]] = None,
    progress: Optional[Callable[[str], None]] = None,
) -> Dict[str, AlignmentSweep]:
    """:func:`alignment_sweep` against several BPTT references at once: the S-TLLR runs of each
    batch are made once and compared with the gradient of every twin of ``twins`` (e.g. the full
    twin and one inside :func:`without_recurrent_spike_path`). Each entry equals
    :func:`alignment_sweep` with that twin.

    Parameters:
        model: the S-TLLR model; batches: ``(frames [B, T, ...], labels [B])`` pairs.
        twins: ``{label: BPTT twin}`` holding ``model``'s weights (:func:`bptt_twin`).
        alpha_posts, lambda_pres, lambda_posts, windows, alpha_pre, layers, progress: as in
            :func:`alignment_sweep`.

    Returns: ``{label: AlignmentSweep}``, arrays ``[layer, alpha_post, lambda_pre, lambda_post,
    window, batch]``.
    """
    if not twins:
        raise ValueError("twins: expected at least one BPTT twin, got none")
    layers = dict(layers or RECURRENT_LAYERS)
    names = list(layers.values())
    p = next(model.parameters())
    A, P, Q = (
        [float(a) for a in alpha_posts],
        sorted(float(v) for v in lambda_pres),
        sorted(float(v) for v in lambda_posts),
    )
    rows = {label: ([], []) for label in twins}
    Wl = None
    for b, (frames, labels) in enumerate(batches):
        x = time_major(frames).to(device=p.device, dtype=p.dtype)
        labels = labels.to(p.device)
        Wl = sorted({_check_window(w, x.shape[0]) for w in windows})
        if progress:
            progress(f"batch {b}: BPTT" + (f" ({len(twins)} twins)" if len(twins) > 1 else ""))
        exact = {label: bptt_gradients(tw, x, labels, Wl, names) for label, tw in twins.items()}
        if progress:
            progress(f"batch {b}: S-TLLR ({len(P) + len(Q)} runs)")
        comp = rule_components(model, x, labels, Wl, P, Q, names)
        out = {
            label: (
                np.empty((len(names), len(A), len(P), len(Q), len(Wl))),
                np.empty((len(names), len(A), len(P), len(Q), len(Wl))),
            )
            for label in twins
        }
        for (ai, a), (pi, lp), (qi, lq), (wi, w) in itertools.product(
            enumerate(A), enumerate(P), enumerate(Q), enumerate(Wl)
        ):
            g = comp.update(a, lp, lq, w, alpha_pre)
            for label, (cos, rel) in out.items():
                for li, n in enumerate(names):
                    cos[li, ai, pi, qi, wi] = cosine_similarity(g[n], exact[label][w][n])
                    rel[li, ai, pi, qi, wi] = relative_norm(g[n], exact[label][w][n])
        for label, (cos, rel) in out.items():
            rows[label][0].append(cos)
            rows[label][1].append(rel)
    if Wl is None:
        raise ValueError("batches: no batches to measure the alignment on")
    return {
        label: AlignmentSweep(
            list(layers),
            names,
            A,
            P,
            Q,
            Wl,
            float(alpha_pre),
            np.stack(cos_rows, -1),
            np.stack(rel_rows, -1),
        )
        for label, (cos_rows, rel_rows) in rows.items()
    }


def hidden_layers(sweep: AlignmentSweep) -> list:
    """The display names of the layers whose update the hidden factors change (all but the
    readout), in the sweep's order."""
    return [l for l in sweep.layers if not l.startswith("readout")] or list(sweep.layers)


def lambda_pre_profile(
    sweep: AlignmentSweep,
    window: int,
    alpha_post: float,
    layers: Optional[Sequence[str]] = None,
) -> np.ndarray:
    """The cosine with BPTT against lambda_pre: for each ``sweep.lambda_pres`` value, the batch-mean
    cosine averaged over ``layers`` (default :func:`hidden_layers`) at ``window`` and
    ``alpha_post``, taking the best lambda_post (with ``alpha_post = 0`` lambda_post is unused).

    Parameters:
        sweep: an :class:`AlignmentSweep`.
        window: a window of the sweep; alpha_post: one of its alpha_posts.
        layers: display names (default: the hidden layers).

    Returns: array ``[len(sweep.lambda_pres)]``.
    """
    layers = list(layers or hidden_layers(sweep))
    a, _, _, w = sweep._index(alpha_post, sweep.lambda_pres[0], sweep.lambda_posts[0], window)
    idx = [sweep.layers.index(l) for l in layers]
    score = sweep.mean("cos")[idx][:, a, :, :, w].mean(0)  # [lambda_pre, lambda_post]
    return np.nanmax(score, axis=1)


def compare_sweeps_table(
    sweeps: Mapping[str, AlignmentSweep],
    points: Sequence[tuple],
    layers: Optional[Sequence[str]] = None,
    digits: int = 3,
) -> str:
    """A text table comparing sweeps (e.g. one per psi) point by point: one row per
    ``(alpha_post, lambda_pre, lambda_post, window)``, for each sweep the batch-mean cosine of
    each of ``layers`` (default: the first sweep's hidden layers) and their mean.

    Parameters:
        sweeps: ``{label: AlignmentSweep}``, all holding every point of ``points``.
        points: ``(alpha_post, lambda_pre, lambda_post, window)`` tuples.
        layers: display names; digits: decimals printed.
    """
    if not sweeps:
        raise ValueError("sweeps: expected at least one sweep, got none")
    first = next(iter(sweeps.values()))
    layers = list(layers or hidden_layers(first))
    short = [l.split()[-1] for l in layers] + ["mean"]
    width = max(len(f"{-1.0:.{digits}f}"), *(len(c) for c in short))
    block = len(short) * (width + 1) - 1
    head = f"{'alpha_post':>10} {'l_pre':>6} {'l_post':>6} {'d':>4} | " + " | ".join(
        f"{label:^{block}}" for label in sweeps
    )
    sub = " " * 31 + "| " + " | ".join(" ".join(f"{c:>{width}}" for c in short) for _ in sweeps)
    rows = [head, sub]
    for pt in points:
        cells = []
        for sw in sweeps.values():
            r = sw.at(*pt)
            vals = [r[l]["cos"] for l in layers]
            vals.append(float(np.mean(vals)))
            cells.append(" ".join(f"{v:>{width}.{digits}f}" for v in vals))
        rows.append(f"{pt[0]:>+10g} {pt[1]:>6g} {pt[2]:>6g} {pt[3]:>4d} | " + " | ".join(cells))
    return "\n".join(rows)


def with_psi(model: nn.Module, psi, **kwargs) -> nn.Module:
    """The registry S-TLLR ``model`` rebuilt with another secondary activation ``psi`` in its
    layers and its state (weights, gains, factors) loaded: the same forward pass (psi never
    changes the spikes), another rule and another BPTT surrogate (:func:`bptt_twin` reads psi from
    the model). The global random state is left as it was.

    Parameters:
        model: a registry S-TLLR model (e.g. ``randman_rsnn_stllr``); it is not changed.
        psi: a name of :data:`stllr.functional.PSI_FUNCTIONS` (``"rational"``, ``"sigmoid"``, ...).
        kwargs: more :func:`stllr.models.build_model` options (needed for other architectures;
            for the recurrent nets hidden size and leaks are read from ``model``).
    """
    from stllr.models.registry import build_model, get_model_spec

    SF.get_psi(psi)  # a clear ValueError naming psi for an unknown name
    spec = get_model_spec(getattr(model, "arch", ""))
    if not spec.is_stllr:
        raise ValueError(f"with_psi: model: expected an S-TLLR model, got {spec.arch}")
    kwargs = {**_recurrent_options(model, psi=False), **kwargs}
    with torch.random.fork_rng(devices=[]):
        new = build_model(
            spec.arch,
            num_classes=model.num_classes,
            input_shape=model.input_shape,
            psi=psi,
            **kwargs,
        )
    dtype, device = _model_dtype_device(model)
    new = new.to(device=device, dtype=dtype)
    new.load_state_dict(model.state_dict())
    new.train(model.training)
    return new


@contextlib.contextmanager
def without_recurrent_spike_path(twin: nn.Module):
    """Within the block, the recurrent input ``s_{t-1} W~_rec^T`` of every recurrent layer of the
    BPTT ``twin`` (:class:`stllr.bptt.RecurrentLIF`) uses the previous spikes detached: the forward
    pass is unchanged, ``W_rec`` still gets its gradient ``sum_t (dL/dm_t)^T s_{t-1}``, but no
    gradient flows back through ``s_{t-1}`` into earlier steps (as in the rule, whose recurrent
    input gets no gradient). Every other path through time (membrane, reset, readout) stays.

    Parameters:
        twin: a BPTT model with at least one ``RecurrentLIF`` layer.
    """
    from stllr.bptt import RecurrentLIF

    layers = [m for m in twin.modules() if isinstance(m, RecurrentLIF)]
    if not layers:
        raise ValueError(
            "without_recurrent_spike_path: twin has no recurrent BPTT layer (stllr.bptt.RecurrentLIF)"
        )

    def detach_previous_spikes(module, args):
        state = module.state
        if state is not None and state.spikes is not None:
            module.state = state._replace(spikes=state.spikes.detach())

    handles = [layer.register_forward_pre_hook(detach_previous_spikes) for layer in layers]
    try:
        yield twin
    finally:
        for h in handles:
            h.remove()


def _model_dtype_device(model):
    p = next(model.parameters())
    return p.dtype, p.device


def train_briefly(
    model: nn.Module, loader, epochs: int, lr: float, window: int, factors=None
) -> list:
    """Train ``model`` with S-TLLR (``train_batch(mode="stllr")``, Adam, cross-entropy) for
    ``epochs`` passes over ``loader``, in the model's dtype and on its device; the hidden factors
    are ``factors`` during training (None: the model's). Returns the mean training loss per epoch
    (:func:`stllr.training.loop.run_epoch`)."""
    dtype, device = _model_dtype_device(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    ctx = set_factors(model, factors) if factors is not None else contextlib.nullcontext()
    with ctx:
        for _ in range(int(epochs)):
            epoch = run_epoch(
                model,
                loader,
                optimizer=opt,
                loss_fn=F.cross_entropy,
                mode="stllr",
                window=window,
                device=device,
                dtype=dtype,
            )
            losses.append(epoch["loss"])
    model.zero_grad(set_to_none=True)
    return losses


def test_accuracy(model: nn.Module, loader) -> float:
    """Accuracy (%) of the logits summed over all steps (``stllr.training.loop.evaluate``), in the
    model's dtype."""
    dtype, device = _model_dtype_device(model)
    return run_epoch(
        model, loader, optimizer=None, loss_fn=F.cross_entropy, device=device, dtype=dtype
    )["acc"]


def _argmax_finite(values: np.ndarray) -> int:
    """Flat index of the largest finite value (0 when none is finite, e.g. no gradient at all)."""
    return int(np.argmax(np.where(np.isfinite(values), values, -np.inf)))


def _plt():
    from stllr.plotting.style import plt  # the plot module picks a headless backend when needed

    return plt


def plot_alignment_heatmaps(
    sweep: AlignmentSweep,
    window: int,
    layers: Sequence[str] = ("input W_in", "recurrent W_rec"),
    metric: str = "cos",
    title: str = "",
):
    """One heatmap per (layer, alpha_post): ``metric`` (batch mean) over lambda_pre (x) and
    lambda_post (y) at one window. The best cell of each panel is outlined."""
    plt = _plt()
    data = sweep.mean(metric)
    wi = sweep.windows.index(window)
    fig, axes = plt.subplots(
        len(layers),
        len(sweep.alpha_posts),
        figsize=(3.3 * len(sweep.alpha_posts), 2.9 * len(layers)),
        squeeze=False,
        sharex=True,
        sharey=True,
    )
    vmin, vmax = (-1.0, 1.0) if metric == "cos" else (0.0, float(np.nanmax(data)))
    for r, layer in enumerate(layers):
        li = sweep.layers.index(layer)
        for c, a in enumerate(sweep.alpha_posts):
            ax = axes[r, c]
            m = data[li, c, :, :, wi].T  # [lambda_post, lambda_pre]
            im = ax.imshow(
                m,
                origin="lower",
                cmap="RdBu_r" if metric == "cos" else "viridis",
                vmin=vmin,
                vmax=vmax,
                aspect="auto",
            )
            for (qi, pi), v in np.ndenumerate(m):
                ax.text(
                    pi,
                    qi,
                    f"{v:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="k" if abs(v) < 0.6 or metric != "cos" else "w",
                )
            qi, pi = np.unravel_index(_argmax_finite(m), m.shape)
            ax.add_patch(
                plt.Rectangle((pi - 0.45, qi - 0.45), 0.9, 0.9, fill=False, ec="gold", lw=2.5)
            )
            ax.set_xticks(
                range(len(sweep.lambda_pres)), [f"{v:g}" for v in sweep.lambda_pres], fontsize=7
            )
            ax.set_yticks(
                range(len(sweep.lambda_posts)), [f"{v:g}" for v in sweep.lambda_posts], fontsize=7
            )
            if r == 0:
                ax.set_title(
                    f"alpha_post = {a:+g}" + (" (lambda_post unused)" if a == 0 else ""), fontsize=9
                )
            if r == len(layers) - 1:
                ax.set_xlabel("lambda_pre")
            if c == 0:
                ax.set_ylabel(f"{layer}\nlambda_post")
    fig.colorbar(
        im,
        ax=axes,
        shrink=0.8,
        label="cosine(S-TLLR, BPTT)" if metric == "cos" else "|S-TLLR| / |BPTT|",
    )
    fig.suptitle(
        title
        or f"alignment with BPTT, learning window d = {window} (mean of {sweep.cos.shape[-1]} batches)",
        fontsize=10,
    )
    return fig


def plot_alignment_vs_window(
    sweep: AlignmentSweep,
    layers: Sequence[str] = None,
    colors: Optional[Mapping[float, str]] = None,
    reference: Optional[tuple] = None,
):
    """Cosine (top) and relative norm (bottom) against the learning window, per layer: for each
    alpha_post, the best cosine over the two decays at every window (solid; the decays may change
    from window to window), and optionally one fixed ``reference = (alpha_post, lambda_pre,
    lambda_post, label)`` setting (dashed). Error bars: std over batches."""
    plt = _plt()
    layers = list(layers or sweep.layers)
    colors = colors or {}
    cos, rel, cos_sd = sweep.mean("cos"), sweep.mean("rel"), sweep.cos.std(-1)
    fig, axes = plt.subplots(
        2, len(layers), figsize=(3.4 * len(layers), 5.4), sharex=True, squeeze=False
    )
    for c, layer in enumerate(layers):
        li = sweep.layers.index(layer)
        for ai, a in enumerate(sweep.alpha_posts):
            idx = [
                np.unravel_index(_argmax_finite(cos[li, ai, :, :, wi]), cos.shape[2:4])
                for wi in range(len(sweep.windows))
            ]
            ys = [cos[li, ai, p, q, wi] for wi, (p, q) in enumerate(idx)]
            sd = [cos_sd[li, ai, p, q, wi] for wi, (p, q) in enumerate(idx)]
            rs = [rel[li, ai, p, q, wi] for wi, (p, q) in enumerate(idx)]
            kw = {"color": colors.get(a)} if colors.get(a) else {}
            axes[0, c].errorbar(
                sweep.windows,
                ys,
                yerr=sd,
                marker="o",
                ms=4,
                capsize=2,
                label=f"alpha_post {a:+g}, best decays",
                **kw,
            )
            axes[1, c].plot(sweep.windows, rs, marker="o", ms=4, **kw)
        if reference is not None:
            a, p, q, label = reference
            ai, pi, qi, _ = sweep._index(a, p, q, sweep.windows[0])
            axes[0, c].errorbar(
                sweep.windows,
                cos[li, ai, pi, qi],
                yerr=cos_sd[li, ai, pi, qi],
                color="k",
                ls="--",
                marker="s",
                ms=3,
                capsize=2,
                lw=1,
                label=label,
            )
            axes[1, c].plot(
                sweep.windows, rel[li, ai, pi, qi], color="k", ls="--", marker="s", ms=3, lw=1
            )
        axes[0, c].set_title(layer)
        axes[0, c].set_ylim(min(0.0, float(np.nanmin(cos[li]))) - 0.05, 1.05)
        axes[0, c].axhline(1.0, color="k", lw=0.5, ls=":")
        axes[0, c].axhline(0.0, color="k", lw=0.5)
        axes[1, c].set_ylim(0, None)
        axes[1, c].set_xlabel("learning window d (steps)")
        axes[1, c].set_xticks(sweep.windows, [str(w) for w in sweep.windows])
    axes[0, 0].set_ylabel("cosine(S-TLLR, BPTT)")
    axes[1, 0].set_ylabel("|S-TLLR| / |BPTT|")
    axes[0, 0].legend(frameon=False, fontsize=7, loc="lower right")
    fig.suptitle(
        f"alignment with BPTT against the learning window (mean of {sweep.cos.shape[-1]} batches)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def plot_alignment_bars(
    results: Mapping[str, Mapping[str, Mapping[str, float]]],
    metric: str = "cos",
    layers: Optional[Sequence[str]] = None,
    colors: Optional[Sequence[str]] = None,
    ax=None,
    title: str = "",
    legend: Optional[str] = "outside",
):
    """Grouped bars: ``results[group][layer][metric]`` (e.g. group = factor setting or checkpoint,
    values from :meth:`AlignmentSweep.at`), one bar per group within each layer. ``legend``:
    "outside" (right of the axes), "inside" or None."""
    plt = _plt()
    groups = list(results)
    layers = list(layers or next(iter(results.values())))
    fig, ax = (
        (ax.figure, ax) if ax is not None else plt.subplots(figsize=(1.9 + 1.6 * len(layers), 3.2))
    )
    width = 0.8 / len(groups)
    for gi, g in enumerate(groups):
        vals = [results[g][l][metric] for l in layers]
        x = np.arange(len(layers)) + (gi - (len(groups) - 1) / 2) * width
        kw = {"color": colors[gi]} if colors else {}
        ax.bar(x, vals, width * 0.95, label=g, **kw)
    ax.set_xticks(range(len(layers)), layers)
    ax.set_ylabel("cosine(S-TLLR, BPTT)" if metric == "cos" else "|S-TLLR| / |BPTT|")
    if metric == "cos":
        ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.05)
        ax.axhline(1.0, color="k", lw=0.5, ls=":")
    else:
        ax.set_yscale("log")
    ax.axhline(0.0, color="k", lw=0.6)
    if legend == "outside":
        ax.legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    elif legend:
        ax.legend(frameon=False, fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_alignment_point(
    sweeps: Mapping[str, AlignmentSweep],
    alpha_post: float,
    lambda_pre: float,
    lambda_post: float,
    window: int,
    colors: Optional[Sequence[str]] = None,
):
    """Cosine and relative norm per layer at one grid point, for each sweep of ``sweeps`` (e.g.
    ``{"init": ..., "trained": ...}``); dashed outlines: the best cosine of that sweep at this
    window and alpha_post. Returns ``(figure, text)`` for :func:`stllr.plotting.style.interactive_figure`."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.2))
    results = {
        name: sw.at(alpha_post, lambda_pre, lambda_post, window) for name, sw in sweeps.items()
    }
    plot_alignment_bars(results, "cos", colors=colors, ax=axes[0], legend=None)
    plot_alignment_bars(results, "rel", colors=colors, ax=axes[1], legend="outside")
    lines = []
    for gi, (name, sw) in enumerate(sweeps.items()):
        best = sw.best(window=window, alpha_post=alpha_post)
        at_best = sw.at(alpha_post, best["lambda_pre"], best["lambda_post"], window)
        width = 0.8 / len(sweeps)
        for li, layer in enumerate(sw.layers):
            x = li + (gi - (len(sweeps) - 1) / 2) * width
            axes[0].plot(
                [x - width / 2, x + width / 2],
                [at_best[layer]["cos"]] * 2,
                color="k",
                ls="--",
                lw=1,
            )
        lines.append(
            f"{name}: "
            + ", ".join(
                f"{l} cos {results[name][l]['cos']:+.3f} (norm ratio {results[name][l]['rel']:.3f})"
                for l in sw.layers
            )
            + f"  | best at this d and alpha_post: lambda_pre {best['lambda_pre']:g}, "
            f"lambda_post {best['lambda_post']:g}"
        )
    fig.suptitle(
        f"factors [lambda_post, lambda_pre, alpha_post, alpha_pre] = [{lambda_post:g}, {lambda_pre:g}, "
        f"{alpha_post:+g}, {next(iter(sweeps.values())).alpha_pre:g}], window d = {window}  "
        "(dashes: best lambdas)",
        fontsize=9,
    )
    fig.tight_layout()
    return fig, "\n".join(lines)


def plot_psi_comparison(
    sweeps: Mapping[str, AlignmentSweep],
    window: int,
    colors: Optional[Mapping[float, str]] = None,
    styles: Sequence[str] = ("-", "--", ":", "-."),
    cut: Optional[Mapping[str, AlignmentSweep]] = None,
    cut_color: str = "#e6550d",
    cut_alpha_posts: Sequence[float] = (0.0,),
):
    """Panels comparing sweeps (e.g. one per psi) on the hidden layers: (left) the mean cosine with
    BPTT against lambda_pre at ``window`` (:func:`lambda_pre_profile`, best lambda_post), per
    alpha_post; (middle) the best cosine over the two decays against the window, per alpha_post.
    Colours: alpha_post; line styles: the sweeps, in order. With ``cut``, a third panel: for each
    of ``cut_alpha_posts``, the profile against lambda_pre against the full gradient (black) and
    against the one without the recurrent spike path (``cut_color``; ``cut``'s sweeps were made
    against it, :func:`without_recurrent_spike_path`).

    Parameters:
        sweeps: ``{label: AlignmentSweep}`` over the same grid.
        window: the window of the profiles; colors: ``{alpha_post: colour}``.
        styles: one matplotlib line style per sweep.
        cut: ``{label: AlignmentSweep}`` against the cut gradient, labels among ``sweeps``'s, each
            with ``window``, the same lambda_pres and ``cut_alpha_posts``; or None.
        cut_alpha_posts: the alpha_posts of the third panel.
    """
    plt = _plt()
    from matplotlib.lines import Line2D

    if not sweeps:
        raise ValueError("sweeps: expected at least one sweep, got none")
    unknown = [label for label in (cut or {}) if label not in sweeps]
    if unknown:
        raise ValueError(f"cut: labels {unknown} are not among the sweeps' {list(sweeps)}")
    first = next(iter(sweeps.values()))
    colors = {a: (colors or {}).get(a) or f"C{i}" for i, a in enumerate(first.alpha_posts)}
    style = {label: styles[k % len(styles)] for k, label in enumerate(sweeps)}
    ncols = 3 if cut else 2
    fig, axes = plt.subplots(1, ncols, figsize=(4.1 * ncols + 2.4, 3.6), squeeze=False)
    left, mid = axes[0, 0], axes[0, 1]
    for label, sw in sweeps.items():
        idx = [sw.layers.index(l) for l in hidden_layers(sw)]
        score = sw.mean("cos")[idx].mean(0)  # [alpha_post, lambda_pre, lambda_post, window]
        for ai, a in enumerate(sw.alpha_posts):
            kw = dict(ls=style[label], marker="o", ms=3, color=colors.get(a, f"C{ai}"))
            left.plot(range(len(sw.lambda_pres)), lambda_pre_profile(sw, window, a), **kw)
            best = [float(np.nanmax(score[ai, :, :, wi])) for wi in range(len(sw.windows))]
            mid.plot(sw.windows, best, **kw)
    handles = [Line2D([], [], color=colors[a], label=f"alpha_post {a:+g}") for a in colors]
    handles += [Line2D([], [], color="k", ls=style[l], label=f"psi {l}") for l in sweeps]
    panels = [left]
    if cut:
        ax = axes[0, 2]
        panels.append(ax)
        for label, sw in cut.items():
            for a in cut_alpha_posts:
                kw = dict(ls=style[label], marker="o", ms=3)
                cut_profile = lambda_pre_profile(sw, window, a)
                ax.plot(range(len(cut_profile)), cut_profile, color=cut_color, lw=2.5, **kw)
                full = lambda_pre_profile(sweeps[label], window, a)
                ax.plot(range(len(full)), full, color="k", lw=1, **kw)
        ax.set_title(
            "alpha_post " + ", ".join(f"{a:+g}" for a in cut_alpha_posts) + f", d = {window}",
            fontsize=9,
        )
        handles += [
            Line2D([], [], color="k", lw=1, label="against full BPTT"),
            Line2D([], [], color=cut_color, label="against BPTT without\nthe recurrent spike path"),
        ]
    for ax in panels:
        ax.set_xticks(range(len(first.lambda_pres)), [f"{v:g}" for v in first.lambda_pres])
        ax.set_xlabel("lambda_pre (grid points, not to scale)")
    left.set_ylabel("cosine(S-TLLR, BPTT), hidden layers")
    left.set_title(f"against lambda_pre, d = {window} (best lambda_post)", fontsize=9)
    mid.set_xlabel("learning window d (steps)")
    mid.set_xticks(first.windows, [str(w) for w in first.windows])
    mid.set_title("best over the decays, against d", fontsize=9)
    for ax in axes[0]:
        ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.05)
        ax.axhline(1.0, color="k", lw=0.5, ls=":")
        ax.axhline(0.0, color="k", lw=0.5)
    fig.legend(handles=handles, frameon=False, fontsize=7, loc="center right")
    fig.suptitle(
        f"alignment with BPTT per psi: mean of the hidden layers over {first.cos.shape[-1]} batches",
        fontsize=10,
    )
    fig.tight_layout(rect=(0.0, 0.0, 1.0 - 2.4 / (4.1 * ncols + 2.4), 1.0))
    return fig


def first_batches(loader, n: int, steps: Optional[int] = None) -> list:
    """The first ``n`` batches ``(frames [B, T, ...], labels)`` of ``loader`` as a list (fixed,
    so every sweep sees the same data); with ``steps``, frames are zero-padded (or cut) to
    ``steps`` time steps, so windows up to ``steps`` exist in every batch (SHD pads to the batch's
    longest sample)."""
    out = []
    for frames, labels in loader:
        if steps is not None and frames.shape[1] != steps:
            if frames.shape[1] > steps:
                frames = frames[:, :steps]
            else:
                pad = frames.new_zeros(
                    (frames.shape[0], steps - frames.shape[1]) + tuple(frames.shape[2:])
                )
                frames = torch.cat((frames, pad), dim=1)
        out.append((frames, labels))
        if len(out) >= n:
            break
    return out
