"""Measure what S-TLLR saves: memory kept for the backward pass, peak memory and MACs, measured
from what the layers actually execute and, beside it, the paper's analytic count (Apolinario &
Roy, TMLR 2025, Section 4.3, Eq. 18-23). See ``docs/measurement.md``.

Modules: :mod:`~stllr.measure.saved` (bytes saved for backward), :mod:`~stllr.measure.peak`
(peak memory), :mod:`~stllr.measure.macs` (MACs executed), :mod:`~stllr.measure.analytic`
(the paper's counts), :mod:`~stllr.measure.sequence` (one training sequence measured, and
:func:`compare` over T), :mod:`~stllr.measure.machine` (GEMM throughput, machine description).
Every public name is importable from ``stllr.measure``.

Example:
    >>> from stllr import measure
    >>> measure.paper_memory_ratio(100)  # BPTT / S-TLLR saved memory for T = 100 (Eq. 18-19)
    100.0
"""

from stllr.measure.analytic import (
    LayerShape,
    ModelShapes,
    analytic_costs,
    model_alpha_post,
    model_shapes,
    paper_mac_ratio,
    paper_macs,
    paper_memory,
    paper_memory_ratio,
)
from stllr.measure.machine import gemm_throughput, load_average, machine_description
from stllr.measure.macs import MacCounter, MacCounts
from stllr.measure.peak import PeakMemory, PeakMemoryMeter
from stllr.measure.saved import (
    SavedTensorStats,
    SavedTensorTracker,
    state_bytes,
    track_saved_tensors,
)
from stllr.measure.sequence import SequenceMeasurement, compare, measure_sequence, run_sequence

__all__ = [
    "load_average",
    "machine_description",
    "gemm_throughput",
    "SavedTensorStats",
    "SavedTensorTracker",
    "track_saved_tensors",
    "state_bytes",
    "PeakMemory",
    "PeakMemoryMeter",
    "MacCounts",
    "MacCounter",
    "LayerShape",
    "ModelShapes",
    "model_shapes",
    "paper_memory",
    "paper_macs",
    "paper_memory_ratio",
    "paper_mac_ratio",
    "analytic_costs",
    "model_alpha_post",
    "SequenceMeasurement",
    "run_sequence",
    "measure_sequence",
    "compare",
]
