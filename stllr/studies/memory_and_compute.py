"""Notebook 05 (memory and compute): the paper's Fig. 3 MLP, saved memory against T, MACs against
the learning window, Table 3 recomputed, and time per step."""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from stllr.measure import analytic, sequence
from stllr.models.registry import build_model, get_model_spec
from stllr.studies.common import num_threads
from stllr.studies.paper import PAPER_TABLE3

__all__ = [
    "FIG3_DIMS",
    "FIG3_TS",
    "Fig3MLP",
    "fig3_models",
    "memory_vs_T",
    "macs_vs_window",
    "paper_mac_points",
    "table3_recomputed",
    "time_per_step",
]

#: Registered S-TLLR model and the stated input shape of each Table 3 dataset (None: not registered).
TABLE3_MODELS = {
    "DVS CIFAR10": ("dvscifar10_vgg_stllr", (2, 48, 48)),
    "DVS Gesture": ("dvs_vgg_stllr", (2, 32, 32)),
    "N-CALTECH101": None,
    "SHD": ("stllr_shd_net", (700,)),
}


#: Paper Fig. 3: MLP 1000-1000-1000-1000-1 (input 1000, three spiking hidden layers, one output).
FIG3_DIMS = (1000, 1000, 1000, 1000, 1)


FIG3_TS = (10, 25, 50, 100, 200, 300)


# ======================================================================================
# Memory and compute (notebook 05)
# ======================================================================================
class Fig3MLP(nn.Module):
    """The paper's Fig. 3 network, one step per ``forward``: ``dims`` = (input, hidden..., output);
    S-TLLR: LinearSTLLR hidden layers (factors [0.2, 0.75, -1, 1], the reference CLI default) and a
    LeakyReadout; BPTT: the twins LinearLIF + LeakyIntegrator (same initial weights when built by
    :func:`fig3_models`)."""

    def __init__(
        self, stllr_rule: bool, dims: Sequence[int] = FIG3_DIMS, factors=(0.2, 0.75, -1.0, 1.0)
    ):
        super().__init__()
        from stllr.bptt import LeakyIntegrator, LinearLIF
        from stllr.layers import LeakyReadout, LinearSTLLR

        self.is_stllr = bool(stllr_rule)
        self.input_shape = (int(dims[0]),)
        layers = []
        for a, b in zip(dims[:-2], dims[1:-1]):
            layers.append(
                LinearSTLLR(a, b, factors=list(factors)) if stllr_rule else LinearLIF(a, b)
            )
        a, b = dims[-2], dims[-1]
        layers.append(
            LeakyReadout(a, b, factors=[0.0, 0.99, 0.0, 1.0])
            if stllr_rule
            else LeakyIntegrator(a, b)
        )
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)

    def reset_state(self):
        from stllr._base import reset_states

        reset_states(self)


def _mse_to_zero(out, target):
    return ((out - target) ** 2).mean()


def fig3_models(dims: Sequence[int] = FIG3_DIMS, device="cpu", seed: int = 0):
    """(S-TLLR MLP, BPTT MLP) of Fig. 3 with the same initial weights."""
    torch.manual_seed(seed)
    s = Fig3MLP(True, dims).to(device)
    b = Fig3MLP(False, dims).to(device)
    b.load_state_dict(s.state_dict(), strict=False)
    return s, b


def memory_vs_T(
    Ts: Iterable[int] = FIG3_TS,
    batch_size: int = 8,
    device="cpu",
    dims: Sequence[int] = FIG3_DIMS,
    window: int = 1,
    seed: int = 0,
    peak: Optional[bool] = None,
    threads: Optional[int] = 1,
) -> List[Dict[str, Any]]:
    """Paper Fig. 3: one training sequence per T of the S-TLLR MLP (learning signal on the last
    ``window`` steps, loss at the last step) and of its BPTT twin (graph through all T, loss on the
    last step's output, mean squared output as in ``benchmarks/bench_memory.py``).

    Rows: T, ``stllr_saved_bytes`` / ``bptt_saved_bytes`` (measured peak saved activations),
    ``*_saved_bytes_all`` (with weight-sized tensors), ``stllr_analytic`` / ``bptt_analytic``
    (Eq. 18-19 x batch x 4 B), ``memory_ratio`` (measured), ``memory_ratio_analytic`` (T/2), and with
    ``peak`` (default: on CUDA only) ``stllr_peak_bytes`` / ``bptt_peak_bytes`` =
    ``torch.cuda.max_memory_allocated`` increase during the sequence (exact on GPU; approximate RSS on CPU).
    """
    device = torch.device(device)
    if peak is None:
        peak = device.type == "cuda"
    rows = []
    with num_threads(threads):
        s_model, b_model = fig3_models(dims, device, seed)
        shapes = analytic.model_shapes(s_model)
        target = torch.zeros(batch_size, dims[-1], device=device)
        inputs = sequence._random_inputs((dims[0],), batch_size, seed, torch.float32, device)
        for T in Ts:
            ana = analytic.analytic_costs(shapes, int(T), min(window, int(T)), -1.0, batch_size, 4)
            row = {
                "T": int(T),
                "batch_size": batch_size,
                "stllr_analytic": ana["stllr_memory_bytes"],
                "bptt_analytic": ana["bptt_memory_bytes"],
                "memory_ratio_analytic": ana["memory_ratio"],
            }
            for name, model, mode in (("stllr", s_model, "stllr"), ("bptt", b_model, "bptt")):
                m = sequence.measure_sequence(
                    model,
                    inputs,
                    target,
                    steps=int(T),
                    mode=mode,
                    window=min(window, int(T)),
                    loss_fn=_mse_to_zero,
                    bptt_loss="last",
                    macs=False,
                    peak=peak,
                )
                model.reset_state()
                model.zero_grad(set_to_none=True)
                row[f"{name}_saved_bytes"] = m.saved.peak_activation_bytes
                row[f"{name}_saved_bytes_all"] = m.saved.peak_bytes
                if peak:
                    row[f"{name}_peak_bytes"] = m.peak.increase_bytes
                    row["peak_method"] = m.peak.method
            row["memory_ratio"] = row["bptt_saved_bytes"] / row["stllr_saved_bytes"]
            rows.append(row)
    return rows


def macs_vs_window(
    arch: str = "stllr_shd_net",
    T: int = 100,
    windows: Sequence[int] = (1, 5, 10, 25, 50, 75, 90, 100),
    batch_size: int = 4,
    factors=(0.5, 1.0, 1.0, 1.0),
    seed: int = 0,
    threads: Optional[int] = 1,
) -> Dict[str, Any]:
    """MACs of one training sequence against the learning window ``d = T - T_l`` (Eq. 20-23),
    counted by :class:`stllr.measure.MacCounter` on a registered S-TLLR model and its BPTT twin, beside
    the analytic counts. Also the same with ``alpha_post = 0`` (2 instead of 3 in Eq. 21).

    Returns ``{"shapes": ModelShapes, "bptt": {...}, "rows": [...]}``; each row (one window, per
    batch of ``batch_size``): ``stllr_macs`` (all executed), ``stllr_paper_terms`` (window forward +
    weight gradients: what Eq. 21 counts), ``stllr_pre_window`` (forward of the steps before the
    window), ``stllr_grad_input``, ``stllr_analytic``, the same ``*_a0`` for alpha_post = 0, and the
    ratios ``mac_ratio_analytic`` (2T/3d), ``mac_ratio_paper_terms`` and ``mac_ratio`` (all MACs).
    """
    spec = get_model_spec(arch)
    with num_threads(threads):
        torch.manual_seed(seed)
        s_model = build_model(arch, factors=list(factors))
        f0 = list(factors)
        f0[2] = 0.0
        s0_model = build_model(arch, factors=f0)
        b_model = build_model(spec.twin)
        shapes = analytic.model_shapes(s_model)
        inputs = sequence._random_inputs(
            shapes.input_shape, batch_size, seed, torch.float32, torch.device("cpu")
        )
        g = torch.Generator().manual_seed(seed)
        target = torch.randint(0, shapes.num_classes, (batch_size,), generator=g)
        mb = sequence.measure_sequence(b_model, inputs, target, steps=T, mode="bptt", saved=False)
        bk = mb.macs.by_kind()
        bptt = {
            "macs": mb.macs.total(),
            "paper_terms": bk["forward"] + bk["grad_weight"],
            "grad_input": bk["grad_input"],
            "analytic": analytic.paper_macs(shapes.weight_macs, T, "bptt") * batch_size,
        }
        rows = []
        for d in windows:
            d = int(d)
            row = {"T": T, "window": d, "T_l": T - d, "batch_size": batch_size}
            for suffix, model, a_post in (("", s_model, float(factors[2])), ("_a0", s0_model, 0.0)):
                ms = sequence.measure_sequence(
                    model, inputs, target, steps=T, mode="stllr", window=d, saved=False
                )
                c = ms.macs
                row[f"stllr_macs{suffix}"] = c.total()
                row[f"stllr_paper_terms{suffix}"] = c.total("window", "forward") + c.total(
                    "window", "grad_weight"
                )
                row[f"stllr_pre_window{suffix}"] = c.total("pre_window")
                row[f"stllr_grad_input{suffix}"] = c.total(kind="grad_input")
                row[f"stllr_analytic{suffix}"] = (
                    analytic.paper_macs(shapes.weight_macs, T, "stllr", d, a_post) * batch_size
                )
            row["mac_ratio_analytic"] = analytic.paper_mac_ratio(T, d, float(factors[2]))
            row["mac_ratio_analytic_a0"] = analytic.paper_mac_ratio(T, d, 0.0)
            row["mac_ratio_paper_terms"] = bptt["paper_terms"] / row["stllr_paper_terms"]
            row["mac_ratio"] = bptt["macs"] / row["stllr_macs"]
            rows.append(row)
    return {
        "arch": arch,
        "shapes": shapes,
        "T": T,
        "batch_size": batch_size,
        "bptt": bptt,
        "rows": rows,
    }


def _paper_pairs():
    """(S-TLLR row, its dataset's BPTT row) of Table 3."""
    bptt = {r["dataset"]: r for r in PAPER_TABLE3 if r["method"] == "BPTT"}
    return [(r, bptt[r["dataset"]]) for r in PAPER_TABLE3 if r["method"] != "BPTT"]


def paper_mac_points() -> List[Dict[str, Any]]:
    """Table 3's published MAC ratios (BPTT / S-TLLR) with their T, window and alpha_post."""
    out = []
    for s, b in _paper_pairs():
        d = s["T"] - s["T_l"]
        out.append(
            {
                "dataset": s["dataset"],
                "method": s["method"],
                "T": s["T"],
                "window": d,
                "alpha_post": s["alpha_post"],
                "ratio": b["mac_e9"] / s["mac_e9"],
                "formula": analytic.paper_mac_ratio(s["T"], d, s["alpha_post"]),
            }
        )
    return out


def table3_recomputed(half_resolution: bool = True) -> List[Dict[str, Any]]:
    """Table 3 recomputed from the registered models' layer shapes (:func:`stllr.measure.model_shapes`
    + :func:`stllr.measure.analytic_costs`, batch 1) beside the published numbers.

    One row per Table 3 row: ``mem_ratio`` / ``mac_ratio`` (ours, Eq. 22-23 on the model) and
    ``paper_mem_ratio`` / ``paper_mac_ratio`` (BPTT row / this row, from the printed MB and MACs);
    ``macs_e9`` (ours at the stated input resolution), ``macs_e9_half`` (VGG at half the stated
    height and width, see docs/measurement.md), ``paper_mac_e9``; ``values_e6`` (Eq. 18-19 stored
    values, ours at the stated resolution) and ``paper_mem_mb``. N-CALTECH101 has no registered
    model: its ratios come from the formulas alone (they do not depend on the model).
    """
    shapes_cache: Dict[Tuple[str, tuple], Any] = {}

    def shapes_of(arch, shape):
        key = (arch, shape)
        if key not in shapes_cache:
            torch.manual_seed(0)
            shapes_cache[key] = analytic.model_shapes(build_model(arch, input_shape=shape))
        return shapes_cache[key]

    bptt_rows = {r["dataset"]: r for r in PAPER_TABLE3 if r["method"] == "BPTT"}
    rows = []
    for r in PAPER_TABLE3:
        T = r["T"]
        is_bptt = r["method"] == "BPTT"
        d = T if is_bptt else T - r["T_l"]
        a_post = -1.0 if r["alpha_post"] is None else r["alpha_post"]
        b = bptt_rows[r["dataset"]]
        row = {
            "dataset": r["dataset"],
            "method": r["method"],
            "T": T,
            "window": None if is_bptt else d,
            "alpha_post": r["alpha_post"],
            "paper_acc": r["acc"],
            "paper_mac_e9": r["mac_e9"],
            "paper_mem_mb": r["mem_mb"],
            "paper_mem_ratio": None if is_bptt else b["mem_mb"] / r["mem_mb"],
            "paper_mac_ratio": None if is_bptt else b["mac_e9"] / r["mac_e9"],
            "mem_ratio": None if is_bptt else analytic.paper_memory_ratio(T),
            "mac_ratio": None if is_bptt else analytic.paper_mac_ratio(T, d, a_post),
            "model": None,
            "input_shape": None,
        }
        entry = TABLE3_MODELS.get(r["dataset"])
        if entry is not None:
            arch, shape = entry
            sh = shapes_of(arch, shape)
            ana = analytic.analytic_costs(sh, T, d, a_post, 1, 4)
            key = "bptt" if is_bptt else "stllr"
            row.update(
                model=arch,
                input_shape=shape,
                macs_e9=ana[f"{key}_macs"] / 1e9,
                values_e6=ana[f"{key}_memory_values"] / 1e6,
                sum_neurons=sh.sum_neurons,
            )
            if not is_bptt:
                row["mem_ratio"], row["mac_ratio"] = ana["memory_ratio"], ana["mac_ratio"]
            if half_resolution and len(shape) == 3:
                half = (shape[0], shape[1] // 2, shape[2] // 2)
                sh2 = shapes_of(arch, half)
                ana2 = analytic.analytic_costs(sh2, T, d, a_post, 1, 4)
                row["macs_e9_half"] = ana2[f"{key}_macs"] / 1e9
                row["values_e6_half"] = ana2[f"{key}_memory_values"] / 1e6
                row["half_shape"] = half
        rows.append(row)
    return rows


def time_per_step(
    cases: Sequence[Tuple[str, nn.Module, str, int, int, int]],
    repeats: int = 3,
    threads: Optional[int] = 1,
    seed: int = 0,
) -> List[Dict[str, Any]]:
    """Wall-clock training time per time step (best of ``repeats`` sequences, no measuring hooks).

    ``cases``: (label, model, mode, T, window, batch_size). Rows: label, mode, T, window, batch,
    ``seconds`` (one sequence), ``ms_per_step``.
    """
    rows = []
    with num_threads(threads):
        for label, model, mode, T, d, bs in cases:
            shapes = analytic.model_shapes(model)
            p = next(model.parameters())
            inputs = sequence._random_inputs(shapes.input_shape, bs, seed, p.dtype, p.device)
            g = torch.Generator().manual_seed(seed)
            target = torch.randint(0, max(shapes.num_classes, 2), (bs,), generator=g).to(p.device)
            loss = None
            if shapes.num_classes == 1:
                target = torch.zeros(bs, 1, device=p.device)
                loss = _mse_to_zero
            best = math.inf
            for _ in range(repeats):
                m = sequence.measure_sequence(
                    model,
                    inputs,
                    target,
                    steps=T,
                    mode=mode,
                    window=d if mode == "stllr" else None,
                    loss_fn=loss,
                    bptt_loss="last" if loss is not None else "sum",
                    saved=False,
                    macs=False,
                )
                best = min(best, m.seconds)
            model.zero_grad(set_to_none=True)
            model.reset_state()
            rows.append(
                {
                    "label": label,
                    "mode": mode,
                    "T": T,
                    "window": d if mode == "stllr" else T,
                    "batch": bs,
                    "seconds": best,
                    "ms_per_step": 1e3 * best / T,
                }
            )
    return rows
