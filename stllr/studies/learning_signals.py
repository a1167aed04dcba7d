"""Learning signals side by side (notebook 06): how the BP, DFA and sDFA signals that reach a hidden
layer are formed, how well S-TLLR learns with each, and how the angle between the DFA signal and the
BP signal changes while a network trains with DFA (the "alignment" of feedback alignment).

The learning signal of a hidden layer at step t is what arrives at its output as ``delta_t = dL/ds_t``
(rule.md "Learning signal"; :mod:`stllr.signals`):

- BP: the true one-step gradient through the layers above at the same step (not through time); for the
  recurrent networks here the layer above is the leaky readout, so ``delta_t = e_t W_out``;
- DFA: ``delta_t = e_t F``, with ``e_t = dL/dlogits_t`` and F a fixed random matrix [C, N];
- sDFA: ``delta_t = sign(e_t) F / batch``;

each optionally plus the firing-rate penalty ``rate_reg * (s_t - rate_target) / batch``.

Shapes used below: W = number of steps with a learning signal (the window, ``window``), B = batch,
N = neurons of the hidden layer (its output flattened), C = classes.

Three groups:

- one batch: :func:`signals_for_batch` -> :class:`BatchSignals` (all three signals for the same batch,
  the same weights and the same output errors), :func:`stepwise_angles`,
  :func:`readout_angle`;
- training: :func:`signal_config` (the one small-task setting of
  :func:`stllr.studies.common.small_task_config`), :func:`signal_methods` (one
  :class:`~stllr.studies.common.Method` per learning signal of :data:`SIGNALS`, each with its
  learning rate of :data:`stllr.studies.common.SMALL_TASK_LR`), :func:`load_data`,
  :func:`train_batch_recording`, :func:`train_recording` (one run, per-epoch accuracy and the signal
  angles recorded during training), :func:`run_trials`, :func:`summarise_trials`, :func:`summary_table`;
- plots: :func:`plot_signals`, :func:`plot_accuracy`, :func:`plot_feedback_alignment`.

Everything is deterministic for a given seed and thread count; only ``RunResult.seconds`` is a
wall-clock measurement."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stllr.analysis.metrics import angle_degrees, cosine_similarity, mean_std
from stllr.plotting.style import _clean
from stllr.signals import LearningSignal, feedback_signal
from stllr.studies import common, sweeps
from stllr.studies.common import (
    SMALL_TASK_LR,
    DataSpec,
    Method,
    RunResult,
    StudyConfig,
    paper_shd_config,
    small_task_config,
)
from stllr.training.loop import stllr_window, time_major, train_batch

__all__ = [
    "SIGNALS",
    "SIGNAL_LR_KIND",
    "SIGNAL_COLORS",
    "signal_config",
    "signal_method",
    "signal_methods",
    "load_data",
    "signal_hook",
    "readout_weight",
    "feedback_from_readout",
    "stepwise_angles",
    "readout_angle",
    "BatchSignals",
    "signals_for_batch",
    "train_batch_recording",
    "train_recording",
    "run_trials",
    "summarise_trials",
    "summary_table",
    "plot_signals",
    "plot_accuracy",
    "plot_feedback_alignment",
]


# ======================================================================================
# Settings
# ======================================================================================
#: The learning signals of notebook 06, ``key: (label, feedback mode, build_model options)``, in
#: the notebook's order: BP, plain DFA (the reference's), plain DFA with the recurrent weights
#: W_rec (and their gain) kept at their initial values (``train_recurrent=False``), DFA with the
#: e-prop-style rate penalty (:data:`stllr.studies.common.DFA_RATE_PENALTY`, docs/experiments.md),
#: BP with the same penalty (the control: what the penalty does without DFA) and sign-DFA with it.
SIGNALS = {
    "bp": ("BP", "bp", {}),
    "dfa": ("DFA", "dfa", {}),
    "dfa_frozen": ("DFA, W_rec frozen", "dfa", {"train_recurrent": False}),
    "dfa_rate": ("DFA + rate penalty", "dfa", common.DFA_RATE_PENALTY),
    "bp_rate": ("BP + rate penalty", "bp", common.DFA_RATE_PENALTY),
    "sdfa_rate": ("sDFA + rate penalty", "sdfa", common.DFA_RATE_PENALTY),
}

#: The method kind of :data:`stllr.studies.common.SMALL_TASK_LR` whose learning rate each signal
#: of :data:`SIGNALS` trains with on the small task: the swept kinds their own; DFA with W_rec
#: frozen plain DFA's, sDFA + rate penalty DFA + rate penalty's (neither was swept).
SIGNAL_LR_KIND = {
    "bp": "bp",
    "dfa": "dfa",
    "dfa_frozen": "dfa",
    "dfa_rate": "dfa_rate",
    "bp_rate": "bp_rate",
    "sdfa_rate": "dfa_rate",
}

#: The plots' colour of each learning signal (by Method key; others: matplotlib's cycle).
SIGNAL_COLORS = {
    "bp": "#1f77b4",
    "dfa": "#ff7f0e",
    "dfa_frozen": "#8c564b",
    "dfa_rate": "#2ca02c",
    "bp_rate": "#17becf",
    "sdfa_rate": "#9467bd",
}


def _color(method: Method, index: int) -> str:
    return SIGNAL_COLORS.get(method.key, f"C{index}")


def signal_config(full: bool = False, epochs: Optional[int] = None, data_path=None) -> StudyConfig:
    """Settings of notebook 06, a :class:`~stllr.studies.common.StudyConfig`.

    ``full=False``: the one small-task setting of notebooks 00, 06, 07 and 08
    (:func:`stllr.studies.common.small_task_config`): :data:`~stllr.studies.common.SMALL_RANDMAN`
    with ``randman_rsnn_stllr`` (100 -> 128 recurrent -> 5), psi sigmoid, factors 0.5 1 1 1,
    learning signal on the last 20 of 30 steps, Adam, batch 32, ``epochs`` default 12, ``lr`` BP's
    rate (each method carries its own, :data:`SIGNAL_LR_KIND`), signal angles recorded at every
    batch. ``full=True``: the paper's SHD setting (:func:`stllr.studies.common.paper_shd_config`:
    ``stllr_shd_net``, real SHD from ``data_path``, T = 100, window 90, Adam lr 2e-4 for every
    method, batch 128, psi rational, 200 epochs), angles recorded every 20 batches.

    Parameters:
        full: the paper's SHD setting instead of the small task.
        epochs: training epochs (default: 12 small, 200 full).
        data_path: where the data are (full: the folder holding SHD; small: the procedural
            task's cache, default ``stllr.data``'s).

    ``methods``: :func:`signal_methods` of these settings (every signal of :data:`SIGNALS`);
    ``options``: ``record_every`` (batches between recorded batches) and ``model_options`` (more
    :func:`stllr.models.build_model` arguments of every method, default none). Raises
    ``ValueError`` when ``full`` and ``data_path`` is missing.
    """
    if full:
        config = paper_shd_config(
            data_path, epochs, twin=None, options={"record_every": 20, "model_options": {}}
        )
    else:
        config = small_task_config(
            data_path, epochs, twin=None, options={"record_every": 1, "model_options": {}}
        )
    config.methods = signal_methods(config)
    return config


def _lr_kind(key: str, feedback_mode: str, options: Mapping[str, Any]) -> str:
    """The :data:`stllr.studies.common.SMALL_TASK_LR` kind of a signal: :data:`SIGNAL_LR_KIND`
    for the keys of :data:`SIGNALS`, else by its signal (``bp`` for BP, ``dfa`` for DFA and sDFA),
    with ``_rate`` when it has a rate penalty."""
    if key in SIGNAL_LR_KIND:
        return SIGNAL_LR_KIND[key]
    kind = "bp" if feedback_mode == "bp" else "dfa"
    return kind + ("_rate" if options.get("rate_reg") else "")


def signal_method(
    config: StudyConfig,
    key: str,
    label: str,
    feedback_mode: str,
    *,
    lr: Optional[float] = None,
    **options,
) -> Method:
    """An S-TLLR :class:`~stllr.studies.common.Method` of ``config`` (its ``arch``, ``factors``,
    ``window``, ``psi`` and ``options["model_options"]``) whose hidden layer learns from the
    ``feedback_mode`` signal.

    Parameters:
        config: :func:`signal_config`'s settings.
        key, label: the method's key and its label in tables and plots.
        feedback_mode: ``'bp'``, ``'dfa'`` or ``'sdfa'``.
        lr: the method's own learning rate; None: on the small task the rate of
            :data:`stllr.studies.common.SMALL_TASK_LR` for its kind (:data:`SIGNAL_LR_KIND`;
            another key: ``bp`` / ``dfa`` by the signal, ``_rate`` with a rate penalty), with
            ``full`` none (the study's ``lr``).
        options: more :func:`stllr.models.build_model` arguments, e.g. ``rate_reg=1.0`` (the
            firing-rate penalty) or ``train_recurrent=False`` (W_rec kept at its initial value).

    Example:
        >>> m = signal_method(signal_config(), "mine", "sDFA, penalty 1", "sdfa", rate_reg=1.0)
        >>> m.feedback_mode, m.window, m.lr, m.options
        ('sdfa', 20, 0.01, {'rate_reg': 1.0})
    """
    options = {**config.options.get("model_options", {}), **options}
    if lr is None and not config.full:
        lr = SMALL_TASK_LR[_lr_kind(key, feedback_mode, options)]
    return Method(
        key,
        label,
        config.arch,
        "stllr",
        tuple(config.factors),
        config.window,
        config.psi,
        feedback_mode,
        options,
        lr=lr,
    )


def signal_methods(config: StudyConfig, keys: Optional[Sequence[str]] = None) -> List[Method]:
    """:func:`signal_method` of each of ``keys`` of :data:`SIGNALS` (default: all of them, in
    their order) for ``config``, each with its learning rate."""
    keys = list(SIGNALS) if keys is None else list(keys)
    unknown = [k for k in keys if k not in SIGNALS]
    if unknown:
        raise ValueError(f"keys: expected keys of SIGNALS {list(SIGNALS)}, got {unknown}")
    return [signal_method(config, k, SIGNALS[k][0], SIGNALS[k][1], **SIGNALS[k][2]) for k in keys]


def load_data(config: StudyConfig, seed: int = 0):
    """``(train_set, test_set, info)`` of :func:`stllr.studies.common.load_datasets` for ``config``
    (:meth:`stllr.studies.common.DataSpec.load` of ``config.data.with_seed(seed)``)."""
    return config.data.with_seed(seed).load()


# ======================================================================================
# Angles
# ======================================================================================
def signal_hook(model: nn.Module, index: int = -1) -> LearningSignal:
    """The model's ``index``-th :class:`~stllr.signals.LearningSignal` hook (default: the last, the one
    nearest the readout)."""
    hooks = [m for m in model.modules() if isinstance(m, LearningSignal)]
    if not hooks:
        raise ValueError(
            "model has no LearningSignal hook (a BPTT twin?): learning signals need an S-TLLR model"
        )
    return hooks[index]


def readout_weight(
    model: nn.Module, hook: Optional[LearningSignal] = None
) -> Optional[torch.Tensor]:
    """The readout weight ``W_out`` [C, N] that maps the hooked layer's output to the logits, or None when
    the model has none of that shape (e.g. a VGG with pooling between the last hook and the classifier)."""
    hook = hook or signal_hook(model)
    readout = getattr(model, "last_layer", None)
    w = getattr(readout, "weight", None)
    if w is None or tuple(w.shape) != (hook.num_classes, math.prod(hook.shape)):
        return None
    return w


def _rowwise_cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine of a[i] and b[i], each flattened, for every i: [W, ...] x [W, ...] -> [W] float64 (nan where a
    row is zero)."""
    a = a.detach().reshape(a.shape[0], -1).double()
    b = b.detach().reshape(b.shape[0], -1).double()
    norms = a.norm(dim=1) * b.norm(dim=1)
    cos = (a * b).sum(1) / norms
    return torch.where(norms > 0, cos, torch.full_like(cos, float("nan")))


def stepwise_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-step angle in degrees between ``a`` and ``b`` [W, B, ...]: each step's signals flattened over
    batch and neurons. Returns [W] (float64; nan where either step is zero)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return torch.rad2deg(torch.arccos(_rowwise_cosines(a, b).clamp(-1.0, 1.0)))


@torch.no_grad()
def feedback_from_readout(model: nn.Module, hook: Optional[LearningSignal] = None) -> nn.Module:
    """Set the DFA feedback matrix of ``hook`` (default: the last hook) to the readout weight,
    ``F := W_out`` [C, N]: then the DFA signal ``e_t F`` is the BP signal ``e_t W_out`` (the chain
    rule through the readout), and DFA trains exactly as BP. Returns ``model``.

    Parameters:
        model: an S-TLLR model whose readout maps the hooked layer's output to the logits.
        hook: the :class:`~stllr.signals.LearningSignal` to set (default :func:`signal_hook`).

    Example:
        >>> feedback_from_readout(model)  # doctest: +SKIP
    """
    hook = hook or signal_hook(model)
    w = readout_weight(model, hook)
    if w is None:
        raise ValueError(
            "model: expected a readout of shape [classes, hooked neurons] after the last hook, "
            "found none (e.g. pooling between the hook and the classifier)"
        )
    hook.feedback.copy_(w.reshape(hook.feedback.shape))
    return model


def readout_angle(model: nn.Module, hook: Optional[LearningSignal] = None) -> float:
    """Angle (degrees) between the readout weight ``W_out`` [C, N] and the feedback matrix ``F`` [C, N]
    of the hook. With ``W_out = c F`` (c > 0) the BP signal ``e_t W_out`` and the DFA signal ``e_t F``
    point the same way for every error ``e_t``. nan when the readout does not map the hook's output."""
    hook = hook or signal_hook(model)
    w = readout_weight(model, hook)
    if w is None:
        return float("nan")
    return angle_degrees(w, hook.feedback.reshape(hook.num_classes, -1))


def _feedback(error: torch.Tensor, hook: LearningSignal, sign: bool = False) -> torch.Tensor:
    """The hook's DFA signal ``e B`` (``sign``: sDFA, ``sign(e) B / batch``) for the output error
    ``error`` [B, C] (:func:`stllr.signals.feedback_signal`), as the layer output [B, *shape]."""
    return feedback_signal(error, hook.feedback, sign).reshape((error.shape[0],) + hook.shape)


# ======================================================================================
# One batch
# ======================================================================================
@dataclass
class BatchSignals:
    """The learning signals of one batch at the hooked layer, for every window step.

    ``steps``: the window steps t (0-based, ``t >= T - window``); ``labels`` [B];
    ``error`` [W, B, C] = ``e_t = dL/dlogits_t``; ``bp`` [W, B, N] = ``dL/ds_t`` through the layers above
    at the same step; ``dfa`` [W, B, N] = ``e_t F``; ``sdfa`` [W, B, N] = ``sign(e_t) F / batch``;
    ``spikes`` [W, B, N], the layer's output; ``feedback`` [C, N], B. (N: the layer output flattened.)
    """

    steps: List[int]
    labels: torch.Tensor
    error: torch.Tensor
    bp: torch.Tensor
    dfa: torch.Tensor
    sdfa: torch.Tensor
    spikes: torch.Tensor
    feedback: torch.Tensor

    def cosines(self, kind: str = "dfa") -> torch.Tensor:
        """Per-step cosine [W] between the ``kind`` signal ('dfa' or 'sdfa') and the BP signal."""
        return _rowwise_cosines(getattr(self, kind), self.bp)

    def angles(self, kind: str = "dfa") -> torch.Tensor:
        """Per-step angle [W] in degrees between the ``kind`` signal and the BP signal."""
        return stepwise_angles(getattr(self, kind), self.bp)


class _SpikeCapture:
    """Forward hook on a LearningSignal: keeps the layer output (its input) of every step."""

    def __init__(self, hook: LearningSignal):
        self.values: List[torch.Tensor] = []
        self.handle = hook.register_forward_hook(self)

    def __call__(self, module, inputs, output):
        self.values.append(inputs[0].detach())

    def remove(self):
        self.handle.remove()


def signals_for_batch(
    model: nn.Module,
    frames: torch.Tensor,
    labels: torch.Tensor,
    window: int,
    loss_fn=F.cross_entropy,
    hook_index: int = -1,
) -> BatchSignals:
    """Run one batch as S-TLLR training does (steps before the window without a graph; at each window
    step ``loss_fn(out_t, y).backward()``) WITHOUT an optimizer step, and return the BP, DFA and sDFA
    learning signals of the hooked layer (:class:`BatchSignals`), whatever the model's own feedback mode.

    The BP signal is what arrives at the hook from above (``LearningSignal.last_bp_grad``); ``e_t`` is the
    output error recorded by the model's output tap; DFA and sDFA are formed here from ``e_t`` and the
    hook's B. frames [B, T, ...] (batch-major, as the loaders give them), labels [B]. The model's state is
    reset and its parameters' ``.grad`` cleared afterwards.
    """
    hook = signal_hook(model, hook_index)
    context = getattr(model, "feedback_context", None)
    if context is None:
        raise ValueError(
            "model has no feedback_context: learning signals need an S-TLLR model of stllr.models"
        )
    was_recording = hook.record
    hook.record = True
    capture = _SpikeCapture(hook)
    out_steps, errors, bps, spikes = [], [], [], []
    n_before = 0

    def before_forward(_t):
        nonlocal n_before
        n_before = len(capture.values)

    def after_backward(t):
        out_steps.append(t)
        errors.append(context.error.detach().clone())
        bps.append(hook.last_bp_grad.clone())
        spikes.append(capture.values[n_before])  # this step's layer output

    try:
        model.zero_grad(set_to_none=True)
        stllr_window(
            model,
            time_major(frames),
            labels,
            loss_fn,
            window,
            before_forward=before_forward,
            after_backward=after_backward,
        )
    finally:
        capture.remove()
        hook.record = was_recording
        model.zero_grad(set_to_none=True)
        model.reset_state()
    error = torch.stack(errors)
    dfa = torch.stack([_feedback(e, hook) for e in errors])
    sdfa = torch.stack([_feedback(e, hook, sign=True) for e in errors])
    flat = lambda v: v.reshape(v.shape[0], v.shape[1], -1)  # noqa: E731
    return BatchSignals(
        out_steps,
        labels.detach().clone(),
        error,
        flat(torch.stack(bps)),
        flat(dfa),
        flat(sdfa),
        flat(torch.stack(spikes)),
        hook.feedback.detach().reshape(hook.num_classes, -1).clone(),
    )


# ======================================================================================
# Training while recording the angles
# ======================================================================================
def train_batch_recording(
    model: nn.Module,
    frames: torch.Tensor,
    labels: torch.Tensor,
    optimizer,
    loss_fn,
    window: int,
    hook_index: int = -1,
) -> Tuple[torch.Tensor, Dict[str, float]]:
    """:func:`stllr.training.loop.train_batch` in ``stllr`` mode (the same updates, bit for bit) that also measures
    the learning signal of the hooked layer at every window step, before the optimizer step.

    Returns ``(pred [B, C], record)``; ``record`` holds means over the window steps of
    ``angle_feedback`` (the feedback part of the model's signal, ``e_t F`` for BP and DFA models and
    ``sign(e_t) F / batch`` for sDFA, against the BP signal ``dL/ds_t``; for a BP model a control: the DFA
    signal it would get), ``angle_signal`` (the signal actually delivered, rate penalty included, against
    the BP signal), ``cos_feedback``, ``signal_norm_ratio`` (``|delivered| / |BP|``), the
    hidden firing rate ``rate`` over all T steps (fraction of neurons spiking per step) and
    ``angle_readout`` (:func:`readout_angle`, the weights of this batch).
    """
    hook = signal_hook(model, hook_index)
    context = model.feedback_context
    was_recording = hook.record
    hook.record = True
    capture = _SpikeCapture(hook)
    bps, fbs, sigs = [], [], []
    record: Dict[str, float] = {}

    def after_backward(_t):
        bps.append(hook.last_bp_grad)
        fbs.append(_feedback(context.error.detach(), hook, sign=hook.mode == "sdfa"))
        sigs.append(hook.last_signal)

    def before_step():  # the record describes this batch's weights, before the optimizer step
        bp, fb, sg = torch.stack(bps), torch.stack(fbs), torch.stack(sigs)  # [W, B, *shape]
        fb_cos = _rowwise_cosines(fb, bp)
        flat = lambda v: v.reshape(v.shape[0], -1).double()  # noqa: E731
        record.update(
            {
                "angle_feedback": float(
                    torch.rad2deg(torch.arccos(fb_cos.clamp(-1.0, 1.0))).mean()
                ),
                "angle_signal": float(stepwise_angles(sg, bp).mean()),
                "cos_feedback": float(fb_cos.mean()),
                "signal_norm_ratio": float((flat(sg).norm(dim=1) / flat(bp).norm(dim=1)).mean()),
                "rate": float(torch.stack(capture.values).float().mean()),
                "angle_readout": readout_angle(model, hook),
            }
        )

    try:
        pred = train_batch(
            model,
            frames,
            labels,
            optimizer,
            loss_fn,
            mode="stllr",
            window=window,
            grad_sync=before_step,
            after_backward=after_backward,
        )
    finally:
        capture.remove()
        hook.record = was_recording
    return pred, record


def train_recording(
    method: Method,
    train_set,
    test_set,
    info: Dict[str, Any],
    *,
    epochs: int,
    lr: float,
    optimizer: str = "Adam",
    seed: int = 0,
    device="cpu",
    threads: Optional[int] = 1,
    record_every: int = 1,
) -> RunResult:
    """Train ``method`` (an S-TLLR Method, :func:`signal_method`) for ``epochs``, recording the
    signal angles at every ``record_every``-th batch (the first batch is always recorded, before
    any update); the ``train`` of :func:`run_trials`.

    The same training as :func:`stllr.studies.common.train_method` (same arguments; seed, model,
    optimizer, batches and order; :func:`stllr.training.loop.train_batch` on the other batches), so
    with the same settings the accuracies are identical. Returns a
    :class:`~stllr.studies.common.RunResult` whose ``records`` hold one dict per recorded batch:
    ``batch`` (optimizer steps before it), ``epoch`` (``batch / batches_per_epoch``) and the fields
    of :func:`train_batch_recording`.
    """
    every = max(1, int(record_every))
    window = int(method.window)
    records: List[Dict[str, float]] = []

    def make_train_step(model, opt, per_epoch):
        step = 0

        def train_step(frames, labels):  # every ``every``-th batch recorded, counted over epochs
            nonlocal step
            if step % every == 0:
                pred, rec = train_batch_recording(
                    model, frames, labels, opt, F.cross_entropy, window
                )
                records.append({"batch": step, "epoch": step / per_epoch, **rec})
            else:
                pred = train_batch(model, frames, labels, opt, F.cross_entropy, "stllr", window)
            step += 1
            return pred

        return train_step

    result = common.train_method(
        method,
        train_set,
        test_set,
        info,
        epochs=int(epochs),
        lr=lr,
        optimizer=optimizer,
        seed=seed,
        device=device,
        threads=threads,
        make_train_step=make_train_step,
    )
    return dataclasses.replace(result, records=records)


def run_trials(
    methods: Sequence[Method],
    data: DataSpec,
    config: StudyConfig,
    *,
    trials: int = 3,
    seed: int = 0,
    device="cpu",
    threads: Optional[int] = 1,
    epochs: Optional[int] = None,
    record_every: Optional[int] = None,
) -> sweeps.Sweep:
    """:func:`train_recording` for every method and trial, in this process
    (:func:`stllr.studies.sweeps.run_trials` with ``workers=0``: the trained models kept); trial k
    (0-based) uses seed ``seed + k`` and every trial the batch order of ``data.data_seed`` (so every
    method starts trial k from the same initial weights and sees the same batches). ``config``:
    :func:`signal_config` (``optimizer``; ``lr`` for the methods without a rate of their own,
    ``epochs`` and ``options["record_every"]`` unless given). Returns
    ``{method.key: [RunResult per trial]}``."""
    every = config.options["record_every"] if record_every is None else record_every
    return sweeps.run_trials(
        methods,
        data,
        trials=trials,
        epochs=int(config.epochs if epochs is None else epochs),
        lr=config.lr,
        optimizer=config.optimizer,
        seed=seed,
        workers=0,
        device=str(device),
        threads=threads,
        batch_seed=data.data_seed,
        train=train_recording,
        train_options={"record_every": int(every)},
        progress=False,
    )


# ======================================================================================
# Summaries
# ======================================================================================
def _window_mean(run: RunResult, key: str, first: bool) -> float:
    """``key`` at the first recorded batch, or averaged over the recorded batches of the last epoch."""
    if first:
        return run.records[0][key]
    last = max(r["epoch"] for r in run.records)
    start = math.floor(last)
    return float(np.mean([r[key] for r in run.records if r["epoch"] >= start]))


def summarise_trials(runs: Mapping[str, Sequence[RunResult]]) -> List[Dict[str, Any]]:
    """One row per method: ``key``, ``label``, ``lr`` (the method's own learning rate, None
    without one), ``trials``, ``test`` / ``test_std`` (final test accuracy,
    mean and sample std over trials), ``best`` / ``best_std`` (best epoch), ``train`` (final train
    accuracy, mean), ``angle_start`` / ``angle_end`` (feedback-vs-BP angle at the first batch / over the
    last epoch, mean over trials, degrees), ``angle_end_std``, ``signal_start`` / ``signal_end`` (the
    delivered signal, rate penalty included, vs BP), ``readout_start`` / ``readout_end``
    (W_out vs F), ``rate_start`` / ``rate_end`` (hidden firing, % of neurons per step)."""
    rows = []
    for key, rs in runs.items():
        m = rs[0].method
        test = mean_std([r.final["test_acc"] for r in rs])
        best = mean_std([max(h["test_acc"] for h in r.history[1:]) for r in rs])
        end = mean_std([_window_mean(r, "angle_feedback", False) for r in rs])
        rows.append(
            {
                "key": key,
                "label": m.label,
                "lr": m.lr,
                "trials": len(rs),
                "test": test[0],
                "test_std": test[1],
                "best": best[0],
                "best_std": best[1],
                "train": mean_std([r.final["train_acc"] for r in rs])[0],
                "angle_start": mean_std([_window_mean(r, "angle_feedback", True) for r in rs])[0],
                "angle_end": end[0],
                "angle_end_std": end[1],
                "signal_start": mean_std([_window_mean(r, "angle_signal", True) for r in rs])[0],
                "signal_end": mean_std([_window_mean(r, "angle_signal", False) for r in rs])[0],
                "readout_start": mean_std([_window_mean(r, "angle_readout", True) for r in rs])[0],
                "readout_end": mean_std([_window_mean(r, "angle_readout", False) for r in rs])[0],
                "rate_start": 100 * mean_std([_window_mean(r, "rate", True) for r in rs])[0],
                "rate_end": 100 * mean_std([_window_mean(r, "rate", False) for r in rs])[0],
            }
        )
    return rows


def summary_table(
    rows: Sequence[Dict[str, Any]],
    paper: Optional[Mapping[str, Tuple[float, float]]] = None,
    kind: str = "all",
    paper_header: str = "paper SHD test % (other task)",
) -> str:
    """Plain-text table of :func:`summarise_trials` rows. ``kind``: ``'accuracy'`` (each method's
    learning rate where one has its own, accuracies, and the ``paper``'s published
    ``{key: (mean, std)}`` in a column headed ``paper_header``), ``'alignment'`` (angles and firing
    rate, first batch -> last epoch) or ``'all'``."""
    if kind not in ("accuracy", "alignment", "all"):
        raise ValueError(f"kind: expected 'accuracy', 'alignment' or 'all', got {kind!r}")
    out = []
    for r in rows:
        o = dict(r)
        o["test_pm"] = f"{r['test']:.2f} +- {r['test_std']:.2f}"
        o["best_pm"] = f"{r['best']:.2f} +- {r['best_std']:.2f}"
        o["angle"] = f"{r['angle_start']:.1f} -> {r['angle_end']:.1f} +- {r['angle_end_std']:.1f}"
        o["signal"] = f"{r['signal_start']:.1f} -> {r['signal_end']:.1f}"
        o["readout"] = f"{r['readout_start']:.1f} -> {r['readout_end']:.1f}"
        o["rate"] = f"{r['rate_start']:.1f} -> {r['rate_end']:.1f}"
        if paper is not None:
            o["paper"] = (
                f"{paper[r['key']][0]:.2f} +- {paper[r['key']][1]:.2f}"
                if r["key"] in paper
                else None
            )
        out.append(o)
    cols = [("label", "learning signal", ""), ("trials", "trials", "d")]
    if kind in ("accuracy", "all"):
        if any(r.get("lr") is not None for r in rows):
            cols += [("lr", "lr", "g")]
        cols += [
            ("test_pm", "final test %", ""),
            ("best_pm", "best test %", ""),
            ("train", "final train %", ".2f"),
        ]
    if kind in ("alignment", "all"):
        cols += [
            ("angle", "angle(e_t F, BP) deg", ""),
            ("signal", "angle(delivered, BP) deg", ""),
            ("readout", "angle(W_out, F) deg", ""),
            ("rate", "firing %", ""),
        ]
    if paper is not None and kind in ("accuracy", "all"):
        cols += [("paper", paper_header, "")]
    return common.format_table(out, cols)


# ======================================================================================
# Plots
# ======================================================================================
def _plt():
    import matplotlib.pyplot as plt

    from stllr import plotting as plot  # noqa: F401  (sets a headless backend when needed)

    return plt


def plot_signals(
    sig: BatchSignals,
    sample: int = 0,
    title: str = "",
    sdfa: bool = True,
    neurons: Optional[int] = None,
):
    """Heatmaps (hidden neuron x window step) of the BP, DFA (and sDFA) signals of one sample, each divided by
    its own largest ``|value|`` (printed in the panel title: the three differ in scale), and a last panel with
    the per-step cosine of DFA / sDFA against BP over the whole batch (solid) and for this sample (dotted)."""
    plt = _plt()
    kinds = ["bp", "dfa"] + (["sdfa"] if sdfa else [])
    names = {
        "bp": "BP: dL/ds_t (one step, from above)",
        "dfa": "DFA: e_t F",
        "sdfa": "sDFA: sign(e_t) F / batch",
    }
    fig, axes = plt.subplots(
        1,
        len(kinds) + 1,
        figsize=(3.3 * len(kinds) + 4.6, 3.9),
        gridspec_kw={"width_ratios": [1] * len(kinds) + [1.25]},
        layout="constrained",
    )
    steps = np.array(sig.steps)
    n = sig.bp.shape[-1] if neurons is None else min(int(neurons), sig.bp.shape[-1])
    extent = (steps[0] - 0.5, steps[-1] + 0.5, n - 0.5, -0.5)
    im = None
    for ax, k in zip(axes, kinds):
        v = getattr(sig, k)[:, sample, :n].double().numpy().T  # [N, W]
        vmax = float(np.abs(v).max()) or 1.0
        im = ax.imshow(
            v / vmax,
            aspect="auto",
            cmap="RdBu_r",
            vmin=-1,
            vmax=1,
            extent=extent,
            interpolation="nearest",
        )
        ax.set_title(f"{names[k]}\nmax |value| {vmax:.2g}", fontsize=9)
        ax.set_xlabel("time step t")
    axes[0].set_ylabel(f"hidden neuron (sample {sample})")
    for a in axes[1 : len(kinds)]:
        a.set_yticklabels([])
    cb = fig.colorbar(im, ax=list(axes[: len(kinds)]), fraction=0.03, pad=0.02)
    cb.set_label("signal / max |signal|", fontsize=8)
    cb.ax.tick_params(labelsize=7)
    ax = axes[-1]
    colors = {"dfa": "#ff7f0e", "sdfa": "#9467bd"}
    for k in kinds[1:]:
        name = "DFA" if k == "dfa" else "sDFA"
        ax.plot(
            steps,
            sig.cosines(k).numpy(),
            "-o",
            ms=3,
            color=colors[k],
            label=f"{name} vs BP, whole batch",
        )
        one = [
            cosine_similarity(getattr(sig, k)[i, sample], sig.bp[i, sample])
            for i in range(len(steps))
        ]
        ax.plot(steps, one, ":", color=colors[k], lw=1.5, label=f"{name} vs BP, sample {sample}")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("time step t")
    ax.set_ylabel("cosine similarity with BP")
    ax.set_title("per-step cosine (0 = orthogonal)", fontsize=9)
    ax.legend(frameon=False, fontsize=7, loc="lower left")
    _clean(ax)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _band(ax, x, ys, color, label, ls="-"):
    ys = np.asarray(ys, dtype=float)
    mean = ys.mean(0)
    std = ys.std(0, ddof=1) if ys.shape[0] > 1 else np.zeros_like(mean)
    ax.plot(x, mean, ls, color=color, lw=1.8, label=label)
    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.18, lw=0)


def plot_accuracy(
    runs: Mapping[str, Sequence[RunResult]],
    paper: Optional[Mapping[str, Tuple[float, float]]] = None,
    chance: Optional[float] = None,
    task: str = "",
    paper_task: str = "SHD, paper Table 3",
    same_task: bool = False,
):
    """(a) test accuracy per epoch, mean +- std over trials (train accuracy dashed); (b) final test accuracy
    per learning signal, ours (mean +- std) beside the paper's published numbers (grey; ``same_task``:
    whether ours ran on the paper's task, which changes only the panel's title)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 3.9), gridspec_kw={"width_ratios": [1.5, 1]})
    ax = axes[0]
    for i, rs in enumerate(runs.values()):
        m, color = rs[0].method, _color(rs[0].method, i)
        ep = np.array([h["epoch"] for h in rs[0].history])
        _band(ax, ep, [[h["test_acc"] for h in r.history] for r in rs], color, f"{m.label} (test)")
        ax.plot(
            ep[1:],
            np.mean([[h["train_acc"] for h in r.history[1:]] for r in rs], 0),
            "--",
            color=color,
            lw=1,
            alpha=0.8,
        )
    if chance is not None:
        ax.axhline(chance, color="k", lw=0.8, ls=":", label=f"chance ({chance:g} %)")
    ax.plot([], [], "k--", lw=1, label="train (mean)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy %")
    n = len(next(iter(runs.values())))
    ax.set_title(
        f"(a) S-TLLR with each learning signal{': ' + task if task else ''}\nmean \u00b1 std over {n} trials",
        fontsize=9,
    )
    ax.legend(frameon=False, fontsize=8)
    _clean(ax)
    ax = axes[1]
    keys = list(runs)
    xs = np.arange(len(keys))
    w = 0.38
    for i, key in enumerate(keys):
        rs = runs[key]
        mean, std = mean_std([r.final["test_acc"] for r in rs])
        ax.bar(i - w / 2, mean, w, yerr=std, color=_color(rs[0].method, i), capsize=3)
        ax.text(i - w / 2, mean + std + 1, f"{mean:.1f}", ha="center", fontsize=8)
        if paper and key in paper:
            pm, ps = paper[key]
            ax.bar(
                i + w / 2,
                pm,
                w,
                yerr=ps,
                color="#c7c7c7",
                hatch="//",
                edgecolor="#7f7f7f",
                capsize=3,
            )
            ax.text(i + w / 2, pm + ps + 1, f"{pm:.1f}", ha="center", fontsize=8, color="#555555")
    if chance is not None:
        ax.axhline(chance, color="k", lw=0.8, ls=":")
    ticks = [runs[k][0].method.label for k in keys]
    if len(keys) > 3:  # long labels side by side would overlap
        ax.set_xticks(xs, ticks, fontsize=8, rotation=25, ha="right")
    else:
        ax.set_xticks(xs, ticks, fontsize=8)
    ax.set_ylim(0, 132)  # room above the bars for the legend
    ax.set_yticks([0, 20, 40, 60, 80, 100])
    ax.set_ylabel("final test accuracy %")
    ax.set_title(
        "(b) final test accuracy; grey: the paper's published numbers"
        if same_task
        else "(b) final test accuracy; grey: the paper's SHD numbers\n(a different, paper-scale task: scale only)",
        fontsize=9,
    )
    from matplotlib.patches import Patch

    handles = [
        Patch(
            facecolor="none",
            edgecolor="k",
            label=f"coloured: ours{' (' + task + ')' if task else ''}",
        )
    ]
    if paper and any(k in paper for k in keys):
        handles.append(
            Patch(
                facecolor="#c7c7c7", hatch="//", edgecolor="#7f7f7f", label=f"paper ({paper_task})"
            )
        )
    ax.legend(handles=handles, frameon=False, fontsize=8, loc="upper left")
    _clean(ax)
    fig.tight_layout()
    return fig


def plot_feedback_alignment(runs: Mapping[str, Sequence[RunResult]], title: str = ""):
    """Three panels against training epoch (mean +- std over trials, one point per recorded batch):
    (a) angle between the feedback signal and the BP signal (90 degrees = orthogonal, dashed); (b) angle
    between the readout W_out and B; (c) hidden firing rate (% of neurons per step)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.9))
    for i, rs in enumerate(runs.values()):
        m, color = rs[0].method, _color(rs[0].method, i)
        x = rs[0].series("epoch")
        label = (
            m.label if m.feedback_mode != "bp" else f"{m.label} (control: the e_t F it would get)"
        )
        _band(axes[0], x, [r.series("angle_feedback") for r in rs], color, label)
        _band(axes[1], x, [r.series("angle_readout") for r in rs], color, m.label)
        _band(axes[2], x, [100 * r.series("rate") for r in rs], color, m.label)
    for ax in axes[:2]:
        ax.axhline(90, color="k", ls="--", lw=1)
        ax.text(
            0.99,
            92,
            "90\u00b0 = orthogonal",
            transform=ax.get_yaxis_transform(),
            ha="right",
            va="bottom",
            fontsize=8,
        )
        ax.set_ylim(0, 120)
        ax.set_yticks([0, 30, 60, 90, 120])
        ax.set_ylabel("angle (degrees)")
    axes[0].set_title(
        "(a) DFA feedback e_t F vs the BP signal dL/ds_t\n(per batch, averaged over window steps)",
        fontsize=9,
    )
    axes[1].set_title("(b) readout weight W_out vs feedback matrix F", fontsize=9)
    axes[2].set_title("(c) hidden firing rate", fontsize=9)
    axes[2].set_ylabel("% of neurons spiking per step")
    axes[0].legend(frameon=False, fontsize=8, loc="lower left")
    for ax in axes:
        ax.set_xlabel("epoch")
        _clean(ax)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
