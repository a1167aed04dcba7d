"""Every number the paper publishes that this project sets beside its own (Apolinario & Roy, TMLR
2025; arXiv 2306.15220v4), in one place, each constant naming its table or figure.

``docs/paper-results.md`` prints the same results as the paper does (with their pages and
sources); tests/test_factor_choices.py checks the constants here against that file."""

from __future__ import annotations

from typing import Any, Dict

__all__ = [
    "PAPER_SHD_BPTT_NOTE",
    "PAPER_TABLE2",
    "TABLE2_SHD_FACTORS",
    "PAPER_TABLE3",
    "PAPER_SHD_ACCURACY",
    "PAPER_SHD_ROWS",
    "PAPER_SHD_SIGNALS",
    "PAPER_TABLE5",
    "FIG5_FACTORS",
]

#: The paper's SHD BPTT baseline (70.57 %, Table 3) is the reference's ``bptt_shd_net``: its hidden
#: LIF leak is 15 where the S-TLLR net's is 5, so 70.57 vs 78.24 is not a comparison of matched
#: models. This package's BPTT twins are matched (leak 5) unless ``--reference-baseline``.
PAPER_SHD_BPTT_NOTE = (
    "* the paper's SHD BPTT baseline is the reference's bptt_shd_net, hidden leak 15 against the "
    "S-TLLR net's 5: not a matched model"
)

#: Paper Table 2 (BP learning signal): test accuracy %, mean and std over 5 trials, per alpha_post.
#: ``factors``: (lambda_post, lambda_pre, alpha_pre); ``T_l``: first step with a learning signal.
PAPER_TABLE2: Dict[str, Dict[str, Any]] = {
    "DVS Gesture": {
        "model": "VGG9",
        "T": 20,
        "T_l": 15,
        "factors": (0.2, 0.75, 1.0),
        "acc": {0.0: (94.61, 0.73), 1.0: (94.01, 1.10), -1.0: (95.07, 0.48)},
    },
    "DVS CIFAR10": {
        "model": "VGG9",
        "T": 10,
        "T_l": 5,
        "factors": (0.2, 0.5, 1.0),
        "acc": {0.0: (72.93, 0.94), 1.0: (73.42, 0.50), -1.0: (73.93, 0.62)},
    },
    "N-CALTECH101": {
        "model": "VGG9",
        "T": 10,
        "T_l": 5,
        "factors": (0.2, 0.5, 1.0),
        "acc": {0.0: (62.24, 1.22), 1.0: (53.42, 1.50), -1.0: (66.33, 0.86)},
    },
    "SHD": {
        "model": "RSNN",
        "T": 100,
        "T_l": 10,
        "factors": (0.5, 1.0, 1.0),
        "acc": {0.0: (77.09, 0.33), 1.0: (78.23, 1.84), -1.0: (74.69, 0.47)},
    },
}


#: Paper Table 5: test accuracy % (mean of 5 trials, no std published) per dataset, psi (equation
#: number: 25 rational, 26 triangle, 27 sigmoid) and alpha_post.
PAPER_TABLE5: Dict[str, Dict[int, Dict[float, float]]] = {
    "DVS Gesture": {
        25: {0.0: 73.61, 1.0: 81.89, -1.0: 65.45},
        26: {0.0: 94.61, 1.0: 94.01, -1.0: 95.07},
        27: {0.0: 94.46, 1.0: 94.46, -1.0: 95.85},
    },
    "N-CALTECH101": {
        25: {0.0: 35.11, 1.0: 37.19, -1.0: 28.53},
        26: {0.0: 63.34, 1.0: 54.07, -1.0: 66.05},
        27: {0.0: 62.24, 1.0: 53.42, -1.0: 66.33},
    },
    "SHD": {
        25: {0.0: 77.09, 1.0: 78.23, -1.0: 74.69},
        26: {0.0: 76.25, 1.0: 76.28, -1.0: 74.40},
        27: {0.0: 75.22, 1.0: 76.29, -1.0: 74.46},
    },
}


#: (lambda_post, lambda_pre, alpha_pre) of the paper's SHD row of Table 2 (alpha_post is swept).
TABLE2_SHD_FACTORS = PAPER_TABLE2["SHD"]["factors"]


#: The fixed factors of the paper's Fig. 5 (BP learning signal; lambda_pre is swept).
FIG5_FACTORS = {"lambda_post": 0.2, "alpha_post": -1.0, "alpha_pre": 1.0}


#: Paper Table 3, VGG-9 and LIF-RSNN rows: test accuracy % (``acc``, ``acc_std``: mean and std
#: over 5 trials), ``T``, ``T_l`` (first step with a learning signal; window = T - T_l),
#: ``alpha_post``, MACs x1e9 and memory MB for batch size 1 as printed.
PAPER_TABLE3 = [
    dict(
        dataset="DVS CIFAR10",
        method="BPTT",
        T=10,
        T_l=None,
        alpha_post=None,
        acc=75.44,
        acc_std=0.76,
        mac_e9=6.82,
        mem_mb=18.12,
    ),
    dict(
        dataset="DVS CIFAR10",
        method="S-TLLR",
        T=10,
        T_l=5,
        alpha_post=-1.0,
        acc=73.93,
        acc_std=0.62,
        mac_e9=5.12,
        mem_mb=3.62,
    ),
    dict(
        dataset="DVS CIFAR10",
        method="S-TLLR",
        T=10,
        T_l=0,
        alpha_post=-1.0,
        acc=75.6,
        acc_std=0.10,
        mac_e9=10.26,
        mem_mb=3.62,
    ),
    dict(
        dataset="DVS CIFAR10",
        method="S-TLLR",
        T=10,
        T_l=0,
        alpha_post=0.0,
        acc=74.8,
        acc_std=0.15,
        mac_e9=6.82,
        mem_mb=3.62,
    ),
    dict(
        dataset="DVS Gesture",
        method="BPTT",
        T=20,
        T_l=None,
        alpha_post=None,
        acc=95.58,
        acc_std=1.08,
        mac_e9=6.06,
        mem_mb=16.13,
    ),
    dict(
        dataset="DVS Gesture",
        method="S-TLLR",
        T=20,
        T_l=15,
        alpha_post=-1.0,
        acc=97.72,
        acc_std=0.38,
        mac_e9=2.27,
        mem_mb=1.61,
    ),
    dict(
        dataset="N-CALTECH101",
        method="BPTT",
        T=10,
        T_l=None,
        alpha_post=None,
        acc=65.92,
        acc_std=0.82,
        mac_e9=22.81,
        mem_mb=20.15,
    ),
    dict(
        dataset="N-CALTECH101",
        method="S-TLLR",
        T=10,
        T_l=5,
        alpha_post=-1.0,
        acc=66.058,
        acc_std=0.92,
        mac_e9=17.22,
        mem_mb=4.03,
    ),
    dict(
        dataset="SHD",
        method="BPTT",
        T=100,
        T_l=None,
        alpha_post=None,
        acc=70.57,
        acc_std=0.96,
        mac_e9=0.054,
        mem_mb=0.961,
    ),
    dict(
        dataset="SHD",
        method="S-TLLR (BP)",
        T=100,
        T_l=10,
        alpha_post=1.0,
        acc=78.24,
        acc_std=1.84,
        mac_e9=0.096,
        mem_mb=0.019,
    ),
    dict(
        dataset="SHD",
        method="S-TLLR (DFA)",
        T=100,
        T_l=10,
        alpha_post=1.0,
        acc=74.60,
        acc_std=0.52,
        mac_e9=0.096,
        mem_mb=0.019,
    ),
]


#: Our method keys of Table 3's three SHD rows (notebooks 00 and 08).
_SHD_METHODS = {"bptt": "BPTT", "stllr": "S-TLLR (BP)", "stllr_dfa": "S-TLLR (DFA)"}
_SHD = {
    key: next(r for r in PAPER_TABLE3 if r["dataset"] == "SHD" and r["method"] == method)
    for key, method in _SHD_METHODS.items()
}


#: Paper Table 3, SHD (LIF-RSNN, T = 100, 200 epochs): test accuracy %, (mean, std) over 5 trials.
PAPER_SHD_ACCURACY = {key: (r["acc"], r["acc_std"]) for key, r in _SHD.items()}


#: Paper Table 3, SHD rows (LIF-RSNN, T = 100, T_l = 10, 200 epochs, 5 trials) as notebook 08 sets
#: them beside its own: ``key``, ``method``, ``acc`` (mean, std), ``T``, ``T_l`` (None: BPTT).
PAPER_SHD_ROWS = [
    {
        "key": key,
        "method": _SHD[key]["method"],
        "acc": PAPER_SHD_ACCURACY[key],
        "T": _SHD[key]["T"],
        "T_l": _SHD[key]["T_l"],
    }
    for key in ("stllr", "stllr_dfa", "bptt")
]


#: Paper Table 3, SHD, S-TLLR with a BP and with a DFA learning signal (notebook 06): test
#: accuracy %, (mean, std) over 5 trials.
PAPER_SHD_SIGNALS = {"bp": PAPER_SHD_ACCURACY["stllr"], "dfa": PAPER_SHD_ACCURACY["stllr_dfa"]}
