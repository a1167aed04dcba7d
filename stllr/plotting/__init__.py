"""Plotting helpers for the notebooks (matplotlib). Each function returns the figure it drew.

Modules: :mod:`~stllr.plotting.style` (colours, ``savefig``, ``interactive_figure``),
:mod:`~stllr.plotting.neuron` (psi, one neuron's traces, STDP windows),
:mod:`~stllr.plotting.training` (training runs), :mod:`~stllr.plotting.memory` (memory and MACs).
Importing this package imports matplotlib; ``import stllr`` does not.
"""

from stllr.plotting.memory import (
    BREAKDOWN_STYLE,
    plot_analytic_breakdown,
    plot_macs_vs_window,
    plot_memory_breakdown,
    plot_memory_vs_T,
    plot_table3,
    plot_time_per_step,
)
from stllr.plotting.neuron import (
    STDP_YLABEL,
    plot_neuron_record,
    plot_psi_at_spikes,
    plot_psi_functions,
    plot_stdp_window,
)
from stllr.plotting.style import PAPER_STYLE, interactive_figure, method_color, plt, savefig
from stllr.plotting.training import (
    plot_learning_curves,
    plot_sample_raster,
    plot_training_comparison,
    plot_trial_boxes,
)

__all__ = [
    "interactive_figure",
    "savefig",
    "PAPER_STYLE",
    "method_color",
    "plt",
    "plot_psi_functions",
    "plot_neuron_record",
    "plot_stdp_window",
    "plot_psi_at_spikes",
    "STDP_YLABEL",
    "plot_training_comparison",
    "plot_sample_raster",
    "plot_trial_boxes",
    "plot_learning_curves",
    "plot_memory_vs_T",
    "plot_macs_vs_window",
    "plot_table3",
    "plot_time_per_step",
    "plot_memory_breakdown",
    "plot_analytic_breakdown",
    "BREAKDOWN_STYLE",
]
