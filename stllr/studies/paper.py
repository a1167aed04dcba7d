"""Every number the paper publishes that a notebook sets beside its own (Apolinario & Roy, TMLR
2025), in one place; ``docs/paper-results.md`` lists their sources."""

from __future__ import annotations

__all__ = ["PAPER_SHD_ACCURACY", "PAPER_TABLE3"]

#: Paper Table 3, SHD (LIF-RSNN, T = 100, 200 epochs): test accuracy %, mean and std over 5 trials.
PAPER_SHD_ACCURACY = {"bptt": (70.57, 0.96), "stllr": (78.24, 1.84), "stllr_dfa": (74.60, 0.52)}


#: Paper Table 3 (arXiv 2306.15220v4), VGG-9 and LIF-RSNN rows. ``T_l``: first step with a learning
#: signal (window = T - T_l); MACs x1e9 and memory MB for batch size 1 as printed.
PAPER_TABLE3 = [
    dict(
        dataset="DVS CIFAR10",
        method="BPTT",
        T=10,
        T_l=None,
        alpha_post=None,
        acc=75.44,
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
        mac_e9=0.096,
        mem_mb=0.019,
    ),
]
