"""Factor choices of S-TLLR (notebook 07): which ``alpha_post``, ``lambda_pre`` and psi to use.

The rule's eligibility (paper Eq. 10-13, in the code's convention, see ``docs/rule.md``) is
``alpha_post * tr_out_{t-1} x_t + alpha_pre * psi_t tr_in_t`` with ``factors = [lambda_post,
lambda_pre, alpha_post, alpha_pre]``. The paper studies two of the four factors and psi:

- ``alpha_post`` in {-1, 0, +1}, the sign of the non-causal (post-before-pre) term: Table 2 with a
  BP learning signal, Fig. 4 with DFA, and Table 5 crossed with the secondary activation psi;
- ``lambda_pre``, the decay of the pre-synaptic trace: Fig. 5 (BP; lambda_post 0.2, alpha_post -1,
  alpha_pre 1).

This module holds what notebook 07 reuses: the method grids of those sweeps
(:func:`alpha_post_methods`, :func:`lambda_pre_methods`, :func:`sweep_settings`, on the one
small-task setting of :func:`stllr.studies.common.small_task_config`), the runner of its groups
(:func:`run_sweeps`, each group with its own epochs and trials), the paper's numbers for them
(:func:`paper_values`, :func:`paper_table`, :func:`psi_table`; the tables themselves are
:data:`stllr.studies.paper.PAPER_TABLE2` and ``PAPER_TABLE5``), paired statistics
(:func:`paired_differences`, :func:`paired_alpha_effects`) and the plots
(:func:`plot_factor_windows`, :func:`plot_alpha_post_boxes`, :func:`plot_lambda_pre_boxes`,
:func:`plot_alpha_post_effects`).

Example::

    from stllr.studies import factor_choices, sweeps
    s = factor_choices.sweep_settings()           # the small-task setting of the notebook
    sweep = factor_choices.run_sweeps(s, trials=5, psi_trials=3)
    print(sweeps.summary_table(factor_choices.subsweep(sweep, s.groups["bp"]),
                               paper=factor_choices.paper_values(s.groups["bp"])))"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from stllr._checks import check_positive_int
from stllr.analysis.metrics import mean_std
from stllr.plotting.style import PAPER_STYLE, _clean, plt
from stllr.studies.common import (
    DFA_RATE_PENALTY,
    Method,
    StudyConfig,
    format_table,
    paper_shd_config,
    small_task_config,
    small_task_method,
)
from stllr.studies.paper import FIG5_FACTORS, PAPER_TABLE2, PAPER_TABLE5, TABLE2_SHD_FACTORS

__all__ = [
    "ALPHA_POSTS",
    "LAMBDA_PRES",
    "BETA_LAMBDA_PRES",
    "FAST_LEAK",
    "SWEEP_EPOCHS",
    "PSIS",
    "ALPHA_COLORS",
    "PSI_EQUATION",
    "run_sweeps",
    "sweep_plan",
    "merge_sweeps",
    "paired_alpha_effects",
    "psi_table",
    "alpha_post_methods",
    "lambda_pre_methods",
    "sweep_settings",
    "methods_table",
    "paper_values",
    "paper_table",
    "membrane_decay",
    "membrane_leak",
    "alpha_post_effects",
    "subsweep",
    "sweep_alpha_values",
    "paired_differences",
    "plot_factor_windows",
    "plot_alpha_post_boxes",
    "plot_lambda_pre_boxes",
    "plot_alpha_post_effects",
]

#: The values of the paper's alpha_post ablation (Table 2, Table 5, Fig. 4).
ALPHA_POSTS = (-1.0, 0.0, 1.0)


#: lambda_pre values of the paper-style Fig. 5 sweep (0: no memory of past inputs; 1: a running sum).
LAMBDA_PRES = (0.0, 0.25, 0.5, 0.75, 1.0)


#: lambda_pre values of notebook 07's sweeps: points around both membrane decays it compares
#: (``beta = sigmoid(5) = 0.993`` of the default net, ``sigmoid(2) = 0.88`` of the fast one), so
#: that "best near beta" and "bigger is better" give different answers; 0 on the default net only.
BETA_LAMBDA_PRES = (0.5, 0.75, 0.88, 0.95, 1.0)


#: The hidden-layer leak of notebook 07's fast-membrane network (``beta = sigmoid(2) = 0.881``;
#: the default net has leak 5).
FAST_LEAK = 2.0


#: Epochs of notebook 07's lambda_pre and psi sweeps on the small task (the alpha_post and
#: learning-signal groups train the setting's 12): shorter, to fit the notebook's time budget.
SWEEP_EPOCHS = 4


#: The secondary activations of the paper's Table 5 (Eq. 25, 26, 27).
PSIS = ("rational", "triangle", "sigmoid")


#: One colour per alpha_post: -1 (anti-causal depression, STDP-like) red, 0 (causal only) violet, +1 (symmetric) teal.
ALPHA_COLORS = {-1.0: "#d62728", 0.0: "#7b6fb0", 1.0: "#17a589"}


#: Paper equation number of each psi name (Eq. 25-28).
PSI_EQUATION = {"rational": 25, "triangle": 26, "sigmoid": 27, "fast_sigmoid": 28}


# ----------------------------------------------------------------------------------- method grids
def _fmt(v: float) -> str:
    return "0" if float(v) == 0 else f"{float(v):+g}"


def alpha_post_methods(
    arch: str,
    feedback_mode: str = "bp",
    *,
    window: int,
    psi: Optional[str],
    lambda_post: float = TABLE2_SHD_FACTORS[0],
    lambda_pre: float = TABLE2_SHD_FACTORS[1],
    alpha_pre: float = TABLE2_SHD_FACTORS[2],
    alpha_posts: Sequence[float] = ALPHA_POSTS,
    options: Optional[Mapping[str, Any]] = None,
    tag: Optional[str] = None,
    name: Optional[str] = None,
) -> List[Method]:
    """One S-TLLR :class:`~stllr.studies.common.Method` per ``alpha_post`` (the paper's Table 2 / Fig. 4
    grid; by default the other factors of Table 2's SHD row, ``(0.5, 1, ., 1)``).

    Keys are ``f"{tag}_a{alpha_post:+g}"`` (``_a0`` for 0) (``tag`` defaults to ``feedback_mode``), labels
    ``f"{name}, alpha_post {alpha_post:+g}"`` (``name`` defaults to ``feedback_mode.upper()``).
    ``options`` go to :func:`stllr.models.build_model` (e.g.
    :data:`stllr.studies.common.DFA_RATE_PENALTY`).
    """
    tag = tag or feedback_mode.lower()
    name = name or feedback_mode.upper()
    return [
        Method(
            f"{tag}_a{_fmt(a)}",
            f"{name}, alpha_post {_fmt(a)}",
            arch,
            "stllr",
            (float(lambda_post), float(lambda_pre), float(a), float(alpha_pre)),
            int(window),
            psi,
            feedback_mode,
            dict(options or {}),
        )
        for a in alpha_posts
    ]


def lambda_pre_methods(
    arch: str,
    *,
    window: int,
    psi: Optional[str],
    lambda_pres: Sequence[float] = LAMBDA_PRES,
    lambda_post: float = FIG5_FACTORS["lambda_post"],
    alpha_post: float = FIG5_FACTORS["alpha_post"],
    alpha_pre: float = FIG5_FACTORS["alpha_pre"],
    feedback_mode: str = "bp",
    options: Optional[Mapping[str, Any]] = None,
) -> List[Method]:
    """One S-TLLR method per ``lambda_pre`` with the fixed factors of the paper's Fig. 5 (BP;
    lambda_post 0.2, alpha_post -1, alpha_pre 1). Keys ``f"lpre_{lambda_pre:g}"``."""
    return [
        Method(
            f"lpre_{lp:g}",
            f"BP, lambda_pre {lp:g}",
            arch,
            "stllr",
            (float(lambda_post), float(lp), float(alpha_post), float(alpha_pre)),
            int(window),
            psi,
            feedback_mode,
            dict(options or {}),
        )
        for lp in lambda_pres
    ]


def _kind_methods(
    config: StudyConfig,
    kind: str,
    tag: str,
    name: str,
    alpha_posts: Sequence[float] = ALPHA_POSTS,
    **changes,
) -> List[Method]:
    """One :func:`~stllr.studies.common.small_task_method` of ``kind`` per alpha_post (factors:
    ``config.factors`` with ``factors[2]`` set), keys ``f"{tag}_a{alpha_post}"``."""
    f = tuple(config.factors)
    return [
        small_task_method(
            config,
            kind,
            key=f"{tag}_a{_fmt(a)}",
            label=f"{name}, alpha_post {_fmt(a)}",
            factors=(f[0], f[1], float(a), f[3]),
            **changes,
        )
        for a in alpha_posts
    ]


def _lambda_pre_group(
    config: StudyConfig, lambda_pres: Sequence[float], tag: str, name: str, **changes
) -> List[Method]:
    """BP methods with Fig. 5's fixed factors, one per ``lambda_pre``, keys ``f"{tag}_{lp:g}"``."""
    f5 = FIG5_FACTORS
    return [
        small_task_method(
            config,
            "bp",
            key=f"{tag}_{lp:g}",
            label=f"{name}, lambda_pre {lp:g}",
            factors=(f5["lambda_post"], float(lp), f5["alpha_post"], f5["alpha_pre"]),
            **changes,
        )
        for lp in lambda_pres
    ]


def sweep_settings(
    full: bool = False,
    data_path=None,
    device: str = "cpu",
    epochs: Optional[int] = None,
    sweep_epochs: Optional[int] = None,
) -> StudyConfig:
    """Everything notebook 07 trains, a :class:`~stllr.studies.common.StudyConfig`.

    ``full=False``: the one small-task setting (:func:`stllr.studies.common.small_task_config`:
    randman, 5 classes, T = 30, ``randman_rsnn_stllr`` with psi sigmoid, learning signal on the
    last 20 steps, Adam, batch 32, ``epochs`` default 12), each method with its learning rate of
    :data:`~stllr.studies.common.SMALL_TASK_LR` (:func:`~stllr.studies.common.small_task_method`:
    BP methods ``bp``, BP + the rate penalty ``bp_rate``, DFA + the penalty ``dfa_rate``, plain
    DFA ``dfa``). The lambda_pre and psi groups train ``sweep_epochs`` (default
    :data:`SWEEP_EPOCHS`) to fit the notebook's time budget.

    ``full=True``: the paper's SHD setting (Table 2's SHD row): ``stllr_shd_net`` on real SHD from
    ``data_path`` (T = 100), psi rational (Eq. 25), learning signal on the last 90 steps (T_l = 10),
    Adam lr 2e-4, batch 128, 200 epochs for every group (``sweep_epochs`` default ``epochs``);
    DFA as in the paper, without a rate penalty (no ``bp_rate`` and no ``dfa_plain`` group then).
    Raises ``ValueError`` / ``FileNotFoundError`` when ``data_path`` is missing, ``ValueError``
    for ``epochs`` or ``sweep_epochs`` below 1.

    ``groups`` (lists of Methods; ``methods``: all of them, in this order):

    - ``bp``, ``bp_rate``, ``dfa``: alpha_post in {-1, 0, +1} with Table 2's SHD factors
      ``(0.5, 1, ., 1)``: BP, BP + :data:`~stllr.studies.common.DFA_RATE_PENALTY` (the control
      of DFA + penalty), DFA + the penalty; ``dfa_plain``: DFA without it at alpha_post +1;
    - ``lambda_pre``: Fig. 5's factors (BP; lambda_post 0.2, alpha_post -1, alpha_pre 1) with
      ``lambda_pre`` in 0 and :data:`BETA_LAMBDA_PRES` on the default net (leak 5);
      ``lambda_pre_fast``: the same on the net with hidden leak :data:`FAST_LEAK` (build option
      ``leak``), ``lambda_pre`` in :data:`BETA_LAMBDA_PRES`;
    - ``psi``: Table 5's grid, psi in :data:`PSIS` x alpha_post, BP, Table 2's SHD factors.

    ``options``: ``dfa_options`` (the DFA + penalty build options), ``plain_dfa_alphas``,
    ``device``, ``sweep_epochs``, ``group_epochs`` (``{group: epochs}``), ``leaks``
    (``{group: hidden leak}`` of the two lambda_pre groups).
    """
    lambda_post, lambda_pre, alpha_pre = TABLE2_SHD_FACTORS
    factors = (lambda_post, lambda_pre, 1.0, alpha_pre)
    if full:
        if data_path and not Path(data_path).is_dir():
            raise FileNotFoundError(
                f"DATA_PATH {str(data_path)!r} is not a folder: download SHD there first "
                "(python data_scripts/download.py shd --data-path DIR)"
            )
        config = paper_shd_config(
            data_path,
            epochs,
            twin=None,
            psi="rational",
            factors=factors,
            options={"dfa_options": {}, "plain_dfa_alphas": ()},
        )
    else:
        config = small_task_config(
            data_path,
            epochs,
            twin=None,
            factors=factors,
            options={"dfa_options": dict(DFA_RATE_PENALTY), "plain_dfa_alphas": (1.0,)},
        )
    sweep_epochs = check_positive_int(
        (config.epochs if full else SWEEP_EPOCHS) if sweep_epochs is None else sweep_epochs,
        "sweep_epochs",
        allow_numpy=True,
    )
    options = config.options
    options["device"] = str(device)
    options["sweep_epochs"] = sweep_epochs
    leak = float(membrane_leak(config.arch))
    options["leaks"] = {"lambda_pre": leak, "lambda_pre_fast": FAST_LEAK}
    if full:
        groups = {
            "bp": _kind_methods(config, "bp", "bp", "BP"),
            "dfa": _kind_methods(config, "dfa", "dfa", "DFA"),
            "dfa_plain": [],
        }
    else:
        groups = {
            "bp": _kind_methods(config, "bp", "bp", "BP"),
            "bp_rate": _kind_methods(config, "bp_rate", "bp_rate", "BP + rate penalty"),
            "dfa": _kind_methods(config, "dfa_rate", "dfa", "DFA + rate penalty"),
            "dfa_plain": _kind_methods(
                config, "dfa", "dfa_plain", "DFA (no penalty)", options["plain_dfa_alphas"]
            ),
        }
    groups["lambda_pre"] = _lambda_pre_group(
        config, (0.0,) + BETA_LAMBDA_PRES, "lpre", f"BP, leak {leak:g}"
    )
    groups["lambda_pre_fast"] = _lambda_pre_group(
        config,
        BETA_LAMBDA_PRES,
        "lpre_fast",
        f"BP, leak {FAST_LEAK:g}",
        options={"leak": FAST_LEAK},
    )
    groups["psi"] = [
        m
        for psi in PSIS
        for m in _kind_methods(config, "bp", f"psi_{psi}", f"BP, psi {psi}", psi=psi)
    ]
    config.groups = groups
    options["group_epochs"] = {
        g: (sweep_epochs if g in ("lambda_pre", "lambda_pre_fast", "psi") else config.epochs)
        for g in groups
    }
    config.methods = [m for g in groups.values() for m in g]
    return config


def membrane_leak(arch: str, **build_kwargs) -> float:
    """The ``leak`` parameter of the first spiking layer of ``arch`` (built with
    :func:`stllr.models.build_model`; mean over neurons): ``beta = sigmoid(leak)``, see
    :func:`membrane_decay`."""
    return float(_first_spiking_leak(arch, **build_kwargs).double().mean())


def _first_spiking_leak(arch: str, **build_kwargs):
    import torch

    from stllr.models.registry import build_model

    model = build_model(arch, **build_kwargs)
    for mod in model.modules():
        leak = getattr(mod, "leak", None)
        if isinstance(leak, torch.Tensor) and hasattr(mod, "threshold"):
            return leak.detach()
    raise ValueError(f"{arch}: no spiking layer with a leak found")


def merge_sweeps(*parts):
    """One :class:`stllr.studies.sweeps.Sweep` holding the keys of ``parts`` in their order
    (raises ``ValueError`` on a key in two parts); ``settings['parts']`` lists each part's
    settings."""
    from stllr.studies.sweeps import Sweep

    out = Sweep(settings={"parts": [dict(p.settings) for p in parts]})
    for p in parts:
        twice = [k for k in p if k in out]
        if twice:
            raise ValueError(f"parts: keys {twice} appear in more than one sweep")
        for k, v in p.items():
            out[k] = v
            out.labels[k] = p.labels.get(k, k)
    return out


def _training_fields(m: Method) -> tuple:
    """What decides how a method trains (everything but its key and label)."""
    return (
        m.arch,
        m.mode,
        tuple(float(f) for f in m.factors),
        m.window,
        m.psi,
        m.feedback_mode,
        tuple(sorted(m.options.items())),
        m.lr,
    )


def sweep_plan(
    settings: StudyConfig,
    trials: int = 5,
    psi_trials: Optional[int] = None,
    *,
    groups: Optional[Sequence[str]] = None,
    reuse: bool = True,
) -> Dict[str, Any]:
    """What :func:`run_sweeps` trains: ``{"groups": names, "epochs": {group: epochs}, "trials":
    {group: trials}, "reused": {key: (source key, epochs, trials)}, "blocks": {(epochs, trials):
    [Method]}, "runs": trained runs, "run_epochs": trained run-epochs}``. A method is reused
    (``reuse=True``) when a group with more epochs and at least as many trials holds a method
    that trains exactly as it does (same arch, factors, window, psi, signal, options and lr)."""
    trials = check_positive_int(trials, "trials", allow_numpy=True)
    psi_trials = trials if psi_trials is None else check_positive_int(psi_trials, "psi_trials")
    names = list(settings.groups) if groups is None else list(groups)
    unknown = [g for g in names if g not in settings.groups]
    if unknown:
        raise ValueError(
            f"groups: not in the settings: {unknown}; they hold {list(settings.groups)}"
        )
    epochs_of = {g: settings.options["group_epochs"][g] for g in names}
    n_of = {g: psi_trials if g == "psi" else trials for g in names}
    reused: Dict[str, Tuple[str, int, int]] = {}
    if reuse:
        # longest groups first, so that a source is always a method that is trained
        for g in sorted(names, key=lambda g: -epochs_of[g]):
            for m in settings.groups[g]:
                source = next(
                    (
                        r.key
                        for h in names
                        if epochs_of[h] > epochs_of[g] and n_of[h] >= n_of[g]
                        for r in settings.groups[h]
                        if r.key not in reused and _training_fields(r) == _training_fields(m)
                    ),
                    None,
                )
                if source is not None:
                    reused[m.key] = (source, epochs_of[g], n_of[g])
    blocks: Dict[Tuple[int, int], List[Method]] = {}
    for g in names:
        todo = [m for m in settings.groups[g] if m.key not in reused]
        if todo:
            blocks.setdefault((epochs_of[g], n_of[g]), []).extend(todo)
    return {
        "groups": names,
        "epochs": epochs_of,
        "trials": n_of,
        "reused": reused,
        "blocks": blocks,
        "runs": sum(n * len(ms) for (_, n), ms in blocks.items()),
        "run_epochs": sum(e * n * len(ms) for (e, n), ms in blocks.items()),
    }


def run_sweeps(
    settings: StudyConfig,
    trials: int = 5,
    psi_trials: Optional[int] = None,
    *,
    groups: Optional[Sequence[str]] = None,
    seed: int = 0,
    workers: Optional[int] = None,
    cache_dir=None,
    progress: bool = False,
    reuse: bool = True,
    cluster=None,
):
    """Train the ``groups`` (default all) of :func:`sweep_settings`' ``settings``, each for its
    ``settings.options['group_epochs']``, ``trials`` times (the ``psi`` group ``psi_trials``,
    default ``trials``), with :func:`stllr.studies.sweeps.run_trials` (one call per distinct
    ``(epochs, trials)``; trial k is seeded with ``seed + k`` in every group, so settings are
    paired by trial). Returns one :class:`~stllr.studies.sweeps.Sweep` (:func:`merge_sweeps`).
    ``workers``, ``cache_dir``, ``progress`` and ``cluster`` (a Dask scheduler address or
    ``distributed.Client``; None: ``STLLR_CLUSTER``, else this machine) go to every run_trials
    call.

    ``reuse=True``: a method that trains exactly as a method of a longer group (same arch,
    factors, window, psi, signal, options and lr; e.g. the psi grid's sigmoid row and the BP
    ``alpha_post`` group) is not trained again: its runs are the first epochs of the longer runs
    with the same seeds (Adam without a schedule: an E-epoch run is the start of a longer one, bit
    for bit), marked ``seconds = 0``. Methods without a learning rate of their own (FULL) take
    ``settings.lr``."""
    from stllr.studies.common import RunResult
    from stllr.studies.sweeps import run_trials

    plan = sweep_plan(settings, trials, psi_trials, groups=groups, reuse=reuse)
    names, borrowed, blocks = plan["groups"], plan["reused"], plan["blocks"]
    parts = [
        run_trials(
            methods,
            settings.data,
            trials=n,
            epochs=epochs,
            lr=settings.lr,
            optimizer=settings.optimizer,
            seed=seed,
            workers=workers,
            device=settings.options.get("device", "cpu"),
            cache_dir=cache_dir,
            progress=progress,
            cluster=cluster,
        )
        for (epochs, n), methods in blocks.items()
        if methods
    ]
    trained = merge_sweeps(*parts)
    out = type(trained)(settings=trained.settings)
    for g in names:
        for m in settings.groups[g]:
            if m.key in borrowed:
                source, epochs, n = borrowed[m.key]
                out[m.key] = [
                    RunResult(m, r.seed, r.trial, r.history[: epochs + 1], r.num_parameters)
                    for r in trained[source][:n]
                ]
            else:
                out[m.key] = trained[m.key]
            out.labels[m.key] = m.label
    return out


def methods_table(methods: Sequence[Method]) -> str:
    """A text table of the methods' rule settings (factors, signal, window, psi, model options,
    learning rate: ``-`` where the method has none of its own)."""
    rows = [
        {
            "key": m.key,
            "signal": m.feedback_mode.upper(),
            "factors": "[" + ", ".join(f"{f:g}" for f in m.factors) + "]",
            "window": m.window,
            "psi": m.psi or "default",
            "options": ", ".join(f"{k} {v:g}" for k, v in m.options.items()) or "-",
            "lr": None if m.lr is None else f"{m.lr:g}",
        }
        for m in methods
    ]
    return format_table(
        rows,
        [
            ("key", "key", ""),
            ("signal", "signal", ""),
            ("factors", "[l_post, l_pre, a_post, a_pre]", ""),
            ("window", "window", "d"),
            ("psi", "psi", ""),
            ("options", "build_model options", ""),
            ("lr", "lr", ""),
        ],
    )


# ----------------------------------------------------------------------------------- paper numbers
def paper_values(
    methods: Sequence[Method], dataset: str = "SHD", table: int = 2, psi: Optional[int] = None
) -> Dict[str, Any]:
    """The paper's number for each method, matched by its ``alpha_post`` (``factors[2]``), for
    ``summary_table(..., paper=...)``: Table 2 gives ``(mean, std)``, Table 5 (``psi``: equation
    number 25/26/27) a mean. Methods whose alpha_post the table lacks are left out."""
    if table == 2:
        acc = PAPER_TABLE2[dataset]["acc"]
    elif table == 5:
        if psi is None:
            raise ValueError("table 5: give psi, the equation number 25, 26 or 27")
        acc = PAPER_TABLE5[dataset][int(psi)]
    else:
        raise ValueError(f"table: expected 2 or 5, got {table!r}")
    return {m.key: acc[float(m.factors[2])] for m in methods if float(m.factors[2]) in acc}


def paper_table() -> str:
    """Tables 2 and 5 of the paper as one text table (rows: dataset and source; columns: alpha_post)."""
    rows = []
    for ds, r in PAPER_TABLE2.items():
        f = r["factors"]
        row = {
            "dataset": ds,
            "source": f"Table 2, BP, {r['model']} T={r['T']} T_l={r['T_l']}, "
            f"(l_post, l_pre, a_pre)=({f[0]:g}, {f[1]:g}, {f[2]:g})",
        }
        for a in ALPHA_POSTS:
            m, s = r["acc"][a]
            row[a] = f"{m:.2f} +- {s:.2f}"
        rows.append(row)
    for ds, by_psi in PAPER_TABLE5.items():
        for eq, acc in by_psi.items():
            row = {"dataset": ds, "source": f"Table 5, psi Eq. {eq}"}
            row.update({a: f"{acc[a]:.2f}" for a in ALPHA_POSTS})
            rows.append(row)
    return format_table(
        rows,
        [("dataset", "dataset", ""), ("source", "source", "")]
        + [(a, f"a_post={_fmt(a)}", "") for a in ALPHA_POSTS],
    )


def membrane_decay(arch: str, **build_kwargs) -> float:
    """The membrane decay ``beta = sigmoid(leak)`` of the first spiking layer of ``arch`` (built
    with :func:`stllr.models.build_model`): the ``lambda_pre`` that makes the pre trace the exact
    eligibility of the ``W -> membrane`` path."""
    import torch

    from stllr.models.registry import build_model

    model = build_model(arch, **build_kwargs)
    for mod in model.modules():
        leak = getattr(mod, "leak", None)
        if isinstance(leak, torch.Tensor) and hasattr(mod, "threshold"):
            return float(torch.sigmoid(leak.detach().double()).mean())
    raise ValueError(f"{arch}: no spiking layer with a leak found")


def alpha_post_effects(values: Mapping[float, Any]) -> Dict[float, Tuple[float, float]]:
    """Change of accuracy against alpha_post = 0 for alpha_post = -1 and +1: ``{a: (delta, err)}``
    with ``delta = mean(a) - mean(0)`` and ``err = sqrt(std(a)^2 + std(0)^2)`` (the spread of a
    difference between two runs; 0 when no std is given). ``values``: ``{a: (mean, std)}`` or
    ``{a: mean}``."""

    def ms(v):
        return (float(v[0]), float(v[1])) if isinstance(v, (tuple, list)) else (float(v), 0.0)

    m0, s0 = ms(values[0.0])
    return {
        a: (ms(values[a])[0] - m0, math.hypot(ms(values[a])[1], s0))
        for a in (-1.0, 1.0)
        if a in values
    }


def subsweep(sweep, methods: Sequence[Method]):
    """The part of a :class:`stllr.studies.sweeps.Sweep` that holds ``methods`` (in their order), e.g. for
    ``summary_table`` of one group."""
    return sweep.subset([m.key for m in methods])


def sweep_alpha_values(
    sweep, methods: Sequence[Method], metric: str = "final"
) -> Dict[float, Tuple[float, float]]:
    """``{alpha_post: (mean, std)}`` of the test accuracy (%) over the trials of each method (sample
    std, ddof 1), the form :func:`plot_alpha_post_effects` takes."""
    out = {}
    for m in methods:
        out[float(m.factors[2])] = mean_std(sweep.accuracies(m.key, metric), exact=False)
    return out


def paired_differences(sweep, key: str, ref: str, metric: str = "final") -> Dict[str, Any]:
    """Per-trial accuracy difference ``key - ref`` (percentage points). Trial k of every method starts
    from seed ``seed + k`` (same initial weights and batch order when the architecture matches), so
    the difference is paired: ``{"mean", "std" (ddof 1), "values", "wins" (trials where key > ref),
    "n"}``."""
    a, b = sweep.accuracies(key, metric), sweep.accuracies(ref, metric)
    if len(a) != len(b):
        raise ValueError(f"{key} has {len(a)} trials, {ref} has {len(b)}: cannot pair them")
    d = a - b
    mean, std = mean_std(d, exact=False)
    return {
        "mean": mean,
        "std": std,
        "values": d,
        "wins": int((d > 0).sum()),
        "n": len(d),
    }


def paired_alpha_effects(
    sweep, methods: Sequence[Method], metric: str = "final"
) -> Dict[float, Tuple[float, float]]:
    """Paired effect of alpha_post -1 and +1 against alpha_post 0 within ``methods`` (one method
    per alpha_post, ``factors[2]``): ``{a: (mean, std)}`` of the per-trial differences
    (:func:`paired_differences`; std ddof 1), the form :func:`plot_alpha_post_effects` takes as
    ``effects``. Raises ``ValueError`` when ``methods`` has no alpha_post 0."""
    by_alpha = {float(m.factors[2]): m.key for m in methods}
    if 0.0 not in by_alpha:
        raise ValueError("methods: expected one method with alpha_post 0 (the reference)")
    out = {}
    for a in (-1.0, 1.0):
        if a in by_alpha:
            d = paired_differences(sweep, by_alpha[a], by_alpha[0.0], metric)
            out[a] = (d["mean"], d["std"])
    return out


def psi_table(sweep, methods: Sequence[Method], dataset: str = "SHD", metric: str = "final") -> str:
    """Table 5 beside ours: one row per psi of ``methods`` (the ``psi`` group of
    :func:`sweep_settings`), columns alpha_post -1, 0, +1: our mean +- std over the trials and the
    paper's Table 5 number for ``dataset`` (its psi by :data:`PSI_EQUATION`)."""
    rows: Dict[str, Dict[str, Any]] = {}
    for m in methods:
        psi = m.psi or "rational"
        row = rows.setdefault(
            psi,
            {"psi": f"{psi} (Eq. {PSI_EQUATION[psi]})", "n": len(sweep.accuracies(m.key, metric))},
        )
        mean, std = mean_std(sweep.accuracies(m.key, metric), exact=False)
        a = float(m.factors[2])
        row[f"ours{a:+g}"] = f"{mean:.1f} +- {std:.1f}"
        paper = PAPER_TABLE5.get(dataset, {}).get(PSI_EQUATION[psi], {})
        row[f"paper{a:+g}"] = None if a not in paper else f"{paper[a]:.2f}"
    cols = [("psi", "psi", ""), ("n", "trials", "d")]
    cols += [(f"ours{a:+g}", f"ours a_post={_fmt(a)}", "") for a in ALPHA_POSTS]
    cols += [(f"paper{a:+g}", f"paper {dataset} a_post={_fmt(a)}", "") for a in ALPHA_POSTS]
    return format_table(list(rows.values()), cols)


# ----------------------------------------------------------------------------------- plots
def plot_factor_windows(
    dts: Sequence[int],
    alpha_factors: Sequence[float] = TABLE2_SHD_FACTORS,
    lambda_pres: Sequence[float] = LAMBDA_PRES,
    beta=None,
):
    """Two small STDP-like windows (:func:`stllr.analysis.stdp_window_analytic`): (a) the three
    alpha_post with ``(lambda_post, lambda_pre, alpha_pre) = alpha_factors``; (b) the causal half for
    each ``lambda_pre`` with Fig. 5's factors, and ``beta ** dt`` (the membrane's memory) dashed
    (``beta``: a membrane decay or a sequence of them, one dashed curve each).

    The y axis is the rule's gradient ``dL/dW`` for one pre spike and one post event (psi = 1)
    with a learning signal ``delta = +1``: gradient descent moves the weight by ``-lr`` times it
    (the opposite way when delta > 0)."""
    from stllr.analysis.stdp import stdp_window_analytic

    dts = np.asarray(dts)
    lpost, lpre, apre = alpha_factors
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.1))
    ax = axes[0]
    for a in ALPHA_POSTS:
        ax.plot(
            dts,
            stdp_window_analytic(dts, [lpost, lpre, a, apre]),
            "o-",
            ms=3.5,
            lw=1.8,
            color=ALPHA_COLORS[a],
            label=f"alpha_post {_fmt(a)}",
        )
    ax.set_title(
        f"(a) alpha_post sets the non-causal half\n(l_post, l_pre, a_pre) = "
        f"({lpost:g}, {lpre:g}, {apre:g})",
        fontsize=9.5,
    )
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    ax = axes[1]
    cmap = plt.get_cmap("Blues")
    causal = dts[dts >= 0]
    f5 = FIG5_FACTORS
    for i, lp in enumerate(lambda_pres):
        w = stdp_window_analytic(causal, [f5["lambda_post"], lp, f5["alpha_post"], f5["alpha_pre"]])
        ax.plot(
            causal,
            w,
            "o-",
            ms=3,
            lw=1.5,
            color=cmap(0.35 + 0.65 * i / max(len(lambda_pres) - 1, 1)),
            label=f"lambda_pre {lp:g}",
        )
    betas = [] if beta is None else list(np.atleast_1d(np.asarray(beta, dtype=float)))
    for b, dash in zip(betas, ("--", "-.", ":", (0, (5, 1)))):
        ax.plot(
            causal,
            b ** causal.astype(float),
            linestyle=dash,
            color="k",
            lw=1.2,
            label=f"membrane beta^dt (beta = {b:.3f})",
        )
    ax.set_title(
        "(b) lambda_pre sets how long the causal half remembers\n(causal half, dt >= 0)",
        fontsize=9.5,
    )
    ax.legend(frameon=False, fontsize=7.5, loc="center left", bbox_to_anchor=(1.0, 0.5))
    for ax in axes:
        ax.axhline(0, color="k", lw=0.6)
        ax.axvline(0, color="k", lw=0.6, ls=":")
        ax.set_xlabel("dt = t_post - t_pre (steps)")
        _clean(ax)
    axes[0].set_ylabel("rule's dL/dW for delta = +1\n(a weight moves by -lr x this)")
    axes[1].set_ylabel("dL/dW for delta = +1")
    fig.tight_layout()
    return fig


def _chance(ax, chance: Optional[float]):
    if chance is not None:
        ax.axhline(chance, color="k", lw=0.8, ls=":")
        ax.text(ax.get_xlim()[1], chance, " chance", va="center", ha="left", fontsize=7.5)


def _trial_lines(ax, sweep, keys: Sequence[str], metric: str = "final", **style):
    """One thin line per trial through its dots in the boxes of ``keys`` (at positions 0, 1, ...;
    the dots' jitter of :func:`stllr.plotting.training.plot_trial_boxes`): a paired-slope plot,
    trial k of every key starts from the same seed. Returns the lines."""
    data = np.array([sweep.accuracies(k, metric) for k in keys])  # [keys, trials]
    n = data.shape[1]
    jitter = np.linspace(-0.12, 0.12, n) if n > 1 else np.zeros(1)
    kw = dict(color="k", lw=0.7, alpha=0.35, zorder=2)
    kw.update(style)
    return [ax.plot(np.arange(len(keys)) + jitter[t], data[:, t], "-", **kw)[0] for t in range(n)]


def plot_alpha_post_boxes(
    sweep,
    panels: Sequence[Tuple[str, Sequence[Method]]],
    extra: Sequence[Method] = (),
    chance: Optional[float] = None,
    metric: str = "final",
    title: Optional[str] = None,
    paired: bool = False,
):
    """The paper's Fig. 4 style: one panel per ``(title, methods)`` with a box per alpha_post (every
    trial a dot, coloured by alpha_post). ``extra``: methods drawn grey and hatched at the end of the
    last panel (e.g. DFA without the rate penalty). y axes shared; ``chance`` dotted.
    ``paired=True``: a thin line joins each trial's dots across the alpha_post of a panel (the
    trials share their seeds, so the lines show the paired differences)."""
    from stllr.plotting.training import plot_trial_boxes

    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(3.2 * len(panels) + 0.9 * len(extra) + 0.6, 3.9),
        sharey=True,
        squeeze=False,
    )
    axes = axes[0]
    for i, (ax, (ptitle, methods)) in enumerate(zip(axes, panels)):
        methods = list(methods) + (list(extra) if i == len(panels) - 1 else [])
        keys = [m.key for m in methods]
        labels = [_fmt(m.factors[2]) for m in methods]
        colors = [ALPHA_COLORS.get(float(m.factors[2]), "#555555") for m in methods]
        n_main = len(methods) - (len(extra) if i == len(panels) - 1 else 0)
        for j in range(n_main, len(methods)):
            colors[j] = PAPER_STYLE["paper"]
            labels[j] = f"{labels[j]}\n{methods[j].label.split(',')[0]}"
        plot_trial_boxes(ax, sweep, keys=keys, labels=labels, metric=metric, colors=colors)
        if paired:
            _trial_lines(ax, sweep, keys[:n_main], metric)
        if n_main < len(methods):
            ax.axvline(n_main - 0.5, color="k", lw=0.6, ls="--")
        ax.set_title(ptitle, fontsize=10)
        ax.set_xlabel("alpha_post")
        if i:
            ax.set_ylabel("")
        _chance(ax, chance)
    if title:
        fig.suptitle(title, fontsize=10.5)
    fig.tight_layout()
    return fig


def plot_lambda_pre_boxes(
    sweep,
    methods: Sequence[Method],
    beta: Optional[float] = None,
    chance: Optional[float] = None,
    metric: str = "final",
    title: Optional[str] = None,
    ax=None,
    paired: bool = False,
):
    """The paper's Fig. 5 style: a box per lambda_pre (in the order given, one box per step of
    the x axis: evenly spaced values keep it linear), the membrane decay ``beta`` as a dashed line
    at its place on that axis (interpolated between the neighbouring boxes). ``ax``: draw there
    (default: a new figure); ``paired=True``: a thin line per trial across the boxes (trials
    share their seeds). Returns the figure."""
    from stllr.plotting.training import plot_trial_boxes

    lps = np.array([float(m.factors[1]) for m in methods])
    own = ax is None
    fig, ax = plt.subplots(figsize=(6.2, 3.9)) if own else (ax.figure, ax)
    blues = plt.get_cmap("Blues")
    colors = [blues(0.35 + 0.65 * i / max(len(methods) - 1, 1)) for i in range(len(methods))]
    plot_trial_boxes(
        ax,
        sweep,
        keys=[m.key for m in methods],
        labels=[f"{lp:g}" for lp in lps],
        metric=metric,
        colors=colors,
    )
    if paired:
        _trial_lines(ax, sweep, [m.key for m in methods], metric, lw=0.6, alpha=0.3)
    means = [float(np.mean(sweep.accuracies(m.key, metric))) for m in methods]
    ax.plot(np.arange(len(methods)), means, "-", color="k", lw=0.8, alpha=0.6, zorder=2)
    if beta is not None and np.all(np.diff(lps) > 0):
        x = float(np.interp(beta, lps, np.arange(len(lps))))
        ax.axvline(x, color="k", ls="--", lw=1.1)
        ax.text(
            x - 0.06,
            0.3,
            f"membrane decay\nbeta = {beta:.4f}",
            ha="right",
            va="center",
            fontsize=7.5,
            transform=ax.get_xaxis_transform(),
        )
    f = methods[0].factors
    ax.set_xlabel(f"lambda_pre (lambda_post {f[0]:g}, alpha_post {_fmt(f[2])}, alpha_pre {f[3]:g})")
    _chance(ax, chance)
    ax.set_title(title or "test accuracy vs lambda_pre (BP)", fontsize=10)
    if own:
        fig.tight_layout()
    return fig


def plot_alpha_post_effects(
    groups: Sequence[Dict[str, Any]], ax=None, title: str = "", ylabel: Optional[str] = None
):
    """Grouped bars: accuracy change (percentage points) of alpha_post -1 and +1 against alpha_post
    0, per group, with :func:`alpha_post_effects` error bars. ``groups``: dicts with ``label``,
    ``values`` (``{alpha: (mean, std)}`` or ``{alpha: mean}``) and ``source`` (``"paper"`` or
    ``"ours"``), optionally ``effects`` (``{alpha: (change, error)}``, e.g. the paired
    :func:`paired_alpha_effects`, drawn instead of the unpaired :func:`alpha_post_effects` of
    ``values``); paper bars are hatched, ours solid; each tick names the group and its
    alpha_post = 0 accuracy. Returns the figure."""
    fig, ax = (
        (ax.figure, ax) if ax is not None else plt.subplots(figsize=(1.3 * len(groups) + 1.5, 3.8))
    )
    x = np.arange(len(groups), dtype=float)
    width = 0.36
    shown = set()
    for i, g in enumerate(groups):
        eff = g["effects"] if g.get("effects") is not None else alpha_post_effects(g["values"])
        paper = g.get("source", "paper") == "paper"
        for k, a in enumerate((-1.0, 1.0)):
            if a not in eff:
                continue
            d, e = eff[a]
            lab = f"alpha_post {_fmt(a)} ({'paper' if paper else 'ours'})"
            ax.bar(
                x[i] + (k - 0.5) * width,
                d,
                width=width * 0.95,
                color=ALPHA_COLORS[a],
                alpha=0.55 if paper else 0.95,
                hatch="//" if paper else None,
                edgecolor="k" if paper else "white",
                linewidth=0.4,
                yerr=e if e > 0 else None,
                capsize=2.5,
                error_kw={"lw": 0.9},
                label=None if lab in shown else lab,
            )
            shown.add(lab)
    ticks = []
    for g in groups:
        v0 = g["values"][0.0]
        m0 = v0[0] if isinstance(v0, (tuple, list)) else v0
        ticks.append(f"{g['label']}\n(a_post 0: {m0:.1f}%)")
    ax.set_xticks(x, ticks, fontsize=7.5)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel(ylabel or "accuracy change vs alpha_post 0\n(percentage points)")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(frameon=False, fontsize=7.5, ncol=2)
    _clean(ax)
    return fig
