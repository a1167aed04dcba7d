"""Random-manifold spike-timing task ("randman", after Zenke & Vogels 2021).

Each class ``c`` owns ``n_spikes`` random smooth maps ``f_c: [0, 1]^manifold_dim -> R^n_units``.
A sample draws a point ``theta`` uniformly and every input unit ``u`` fires exactly once per map,
at time ``F_cu(f_c(theta)[u]) * n_steps`` (plus optional Gaussian jitter), where ``F_cu`` is the
empirical CDF of unit ``u`` over the class manifold (1000 reference points). So every unit fires
the same number of spikes in every sample, and each unit's firing time is (nearly) uniform over
``[0, n_steps)`` in *every* class: neither spike counts nor any single unit's timing tell the
class; only the joint timing pattern (which point of which manifold) does.

A map coordinate is a product over manifold dimensions of random 1-D Fourier series
``g(x) = sum_k a_k (k + 1)^-alpha sin(2 pi (k x + phi_k))``, ``a_k, phi_k ~ U(0, 1)``, with
``k < ceil(1e-3 ** (-1 / alpha))`` terms.

Difficulty knobs:
    * ``manifold_dim``: intrinsic dimension of each class manifold (higher = harder),
    * ``alpha``: spectral decay (higher = smoother maps; lower = rougher),
    * ``jitter``: std of Gaussian spike-time noise in time steps (higher = harder),
    * ``n_classes``, ``n_units``, ``n_steps``, and the number of training samples.

Calibration (indicative): a 100 -> 128 recurrent LIF -> 10 leaky-readout network trained
with BPTT (Adam 2e-3, 40 epochs, batch 64) reached ~98 % train / ~82 % test accuracy at the
defaults (``manifold_dim=2``), ~99.6 % test with ``manifold_dim=1`` and ~61 % with
``manifold_dim=3`` (chance: 10 %).

Events: tonic audio-like structured arrays ``(t, x, p)`` with ``t`` in microseconds
(``step * dt_us``), ``x`` the unit, ``p = 0``; sensor size ``(n_units, 1, 1)``. Frames:
``tonic.transforms.ToFrame(time_window=dt_us)`` counts -> float32 ``[n_steps, n_units]``.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from .procedural import EventFramesDataset, load_or_generate

__all__ = ["RANDMAN_DEFAULTS", "EVENT_DTYPE", "generate_randman", "randman", "randman_events"]

EVENT_DTYPE = np.dtype([("t", np.int64), ("x", np.int64), ("p", np.int64)])

RANDMAN_DEFAULTS: dict[str, Any] = dict(
    n_units=100,
    n_classes=10,
    n_train_per_class=100,
    n_test_per_class=25,
    n_steps=50,
    manifold_dim=2,
    alpha=2.0,
    n_spikes=1,
    jitter=0.0,
    dt_us=1000,
    seed=0,
)

_N_REFERENCE = 1000
_PRECISION = 1e-3
_MAX_FREQS = 1000


def _validate(p: dict[str, Any]) -> None:
    for key in ("n_units", "n_classes", "n_steps", "manifold_dim", "n_spikes", "dt_us"):
        if not isinstance(p[key], (int, np.integer)) or isinstance(p[key], bool) or p[key] < 1:
            raise ValueError(f"{key} must be a positive integer, got {p[key]!r}")
    if p["n_classes"] < 2:
        raise ValueError(f"n_classes must be >= 2, got {p['n_classes']!r}")
    for key in ("n_train_per_class", "n_test_per_class"):
        if not isinstance(p[key], (int, np.integer)) or isinstance(p[key], bool) or p[key] < 0:
            raise ValueError(f"{key} must be a non-negative integer, got {p[key]!r}")
    if not (isinstance(p["alpha"], (int, float)) and p["alpha"] > 0):
        raise ValueError(f"alpha must be > 0, got {p['alpha']!r}")
    if not (isinstance(p["jitter"], (int, float)) and p["jitter"] >= 0):
        raise ValueError(f"jitter must be >= 0, got {p['jitter']!r}")
    if not isinstance(p["seed"], (int, np.integer)) or isinstance(p["seed"], bool) or p["seed"] < 0:
        raise ValueError(f"seed must be a non-negative integer, got {p['seed']!r}")


def _n_freqs(alpha: float) -> int:
    return int(min(math.ceil(_PRECISION ** (-1.0 / alpha)), _MAX_FREQS))


def _eval_map(
    theta: np.ndarray, amp: np.ndarray, phase: np.ndarray, spect: np.ndarray
) -> np.ndarray:
    """theta [N, D]; amp, phase [U, D, K]; spect [K] -> values [N, U].

    Uses sin(2 pi (k x + phi)) = sin(2 pi k x) cos(2 pi phi) + cos(2 pi k x) sin(2 pi phi), so the
    trigonometric work is [N, K] per dimension and the unit dimension is a matrix product.
    """
    k = np.arange(spect.shape[0])
    out = np.ones((theta.shape[0], amp.shape[0]))
    for d in range(theta.shape[1]):
        arg = 2 * np.pi * theta[:, d, None] * k  # [N, K]
        weight = amp[:, d, :] * spect  # [U, K]
        a = weight * np.cos(2 * np.pi * phase[:, d, :])
        b = weight * np.sin(2 * np.pi * phase[:, d, :])
        out *= np.sin(arg) @ a.T + np.cos(arg) @ b.T
    return out


def _equalize(values: np.ndarray, ref_sorted: np.ndarray) -> np.ndarray:
    """Per unit, maps values [N, U] through the empirical CDF of the reference values [R, U]
    (histogram equalisation): each unit's firing time becomes uniform over the manifold."""
    r = ref_sorted.shape[0]
    levels = (np.arange(r) + 0.5) / r
    out = np.empty_like(values)
    for u in range(values.shape[1]):
        out[:, u] = np.interp(values[:, u], ref_sorted[:, u], levels)
    return out


def generate_randman(
    n_units: int,
    n_classes: int,
    n_train_per_class: int,
    n_test_per_class: int,
    n_steps: int,
    manifold_dim: int,
    alpha: float,
    n_spikes: int,
    jitter: float,
    dt_us: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """Spike times of the randman task (deterministic in all arguments).

    Returns arrays ``train_t``/``test_t`` int64 ``[N, n_spikes, n_units]`` (microseconds, in
    ``[0, n_steps * dt_us)``) and ``train_y``/``test_y`` int64 ``[N]`` (class-sorted).
    The class maps do not depend on the sample counts; train and test points come from
    independent streams, so changing ``n_test_per_class`` leaves the training set unchanged.
    """
    params = dict(locals())
    _validate(params)
    n_freqs = _n_freqs(alpha)
    spect = 1.0 / (np.arange(n_freqs) + 1.0) ** alpha
    t_max = n_steps * dt_us - 1
    out: dict[str, list[np.ndarray]] = {"train_t": [], "test_t": [], "train_y": [], "test_y": []}
    for c in range(n_classes):
        class_ss = np.random.SeedSequence([int(seed), 0x52414E44, c])  # 0x52414E44 = "RAND"
        map_rng, ref_rng, train_rng, test_rng, jit_rng = (
            np.random.default_rng(s) for s in class_ss.spawn(5)
        )
        amp = map_rng.random((n_spikes, n_units, manifold_dim, n_freqs))
        phase = map_rng.random((n_spikes, n_units, manifold_dim, n_freqs))
        ref = ref_rng.random((_N_REFERENCE, manifold_dim))
        points = {
            "train": train_rng.random((n_train_per_class, manifold_dim)),
            "test": test_rng.random((n_test_per_class, manifold_dim)),
        }
        noise = {
            split: jit_rng.standard_normal((len(x), n_spikes, n_units))
            for split, x in points.items()
        }
        # Sorted reference values: the per-unit CDF of each map over the manifold.
        ref_sorted = [
            np.sort(_eval_map(ref, amp[s], phase[s], spect), axis=0) for s in range(n_spikes)
        ]
        for split, theta in points.items():
            times = np.empty((len(theta), n_spikes, n_units), dtype=np.int64)
            for s in range(n_spikes):
                y = _equalize(_eval_map(theta, amp[s], phase[s], spect), ref_sorted[s])
                steps = y * n_steps + jitter * noise[split][:, s, :]
                times[:, s, :] = np.clip(np.floor(steps * dt_us), 0, t_max).astype(np.int64)
            out[f"{split}_t"].append(times)
            out[f"{split}_y"].append(np.full(len(theta), c, dtype=np.int64))
    return {k: np.concatenate(v) for k, v in out.items()}


def randman_events(times: np.ndarray) -> np.ndarray:
    """One sample's spike times ``[n_spikes, n_units]`` (us) -> tonic events sorted by time."""
    n_spikes, n_units = times.shape
    ev = np.empty(n_spikes * n_units, dtype=EVENT_DTYPE)
    ev["t"] = times.ravel()
    ev["x"] = np.tile(np.arange(n_units), n_spikes)
    ev["p"] = 0
    return ev[np.argsort(ev["t"], kind="stable")]


def randman(
    data_path: str | os.PathLike | None = None,
    train: bool = True,
    *,
    cache: bool = True,
    precompute: bool | None = None,
    **params: Any,
) -> EventFramesDataset:
    """The randman task as a dataset of ``(float32 [n_steps, n_units], label)``.

    Parameters are those of :data:`RANDMAN_DEFAULTS` (``n_units=100, n_classes=10,
    n_train_per_class=100, n_test_per_class=25, n_steps=50, manifold_dim=2, alpha=2.0,
    n_spikes=1, jitter=0.0, dt_us=1000, seed=0``). The generated spike times are cached in
    ``<data_path>/procedural`` (``cache=False``: generate in memory only).
    """
    unknown = sorted(set(params) - set(RANDMAN_DEFAULTS))
    if unknown:
        raise TypeError(
            f"unknown randman option(s) {unknown}; valid: {sorted([*RANDMAN_DEFAULTS, 'cache', 'precompute'])}"
        )
    p = {**RANDMAN_DEFAULTS, **params}
    p["alpha"] = (
        float(p["alpha"])
        if isinstance(p["alpha"], (int, float)) and not isinstance(p["alpha"], bool)
        else p["alpha"]
    )
    p["jitter"] = (
        float(p["jitter"])
        if isinstance(p["jitter"], (int, float)) and not isinstance(p["jitter"], bool)
        else p["jitter"]
    )
    _validate(p)
    arrays, path = load_or_generate(
        "randman", p, lambda: generate_randman(**p), data_path, cache=cache
    )
    split = "train" if train else "test"
    times, labels = arrays[f"{split}_t"], arrays[f"{split}_y"]
    n_units = p["n_units"]
    ds = EventFramesDataset(
        [randman_events(t) for t in times],
        labels,
        sensor_size=(n_units, 1, 1),
        n_steps=p["n_steps"],
        dt_us=p["dt_us"],
        frame_shape=(n_units,),
        num_classes=p["n_classes"],
        name="randman",
        params=p,
        precompute=precompute,
    )
    ds.cache_file = path
    return ds
