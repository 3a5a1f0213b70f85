"""Plots: cells of a genotype, alphas, learning curves and dataset distances.

matplotlib is an optional dependency (``pip install "skdarts[plot]"``); it is
imported when a plotting function is called, not when this module is.

Every function draws on new axes (through :mod:`matplotlib.pyplot`, so
notebooks and sphinx-gallery show the figure) or on the axes it is given, and
returns the :class:`matplotlib.figure.Figure`.

Modules
-------
* :mod:`skdarts.viz.cells` - :func:`plot_genotype`;
* :mod:`skdarts.viz.alphas` - :func:`plot_alphas`;
* :mod:`skdarts.viz.curves` - :func:`plot_learning_curves`,
  :func:`plot_comparison` (and :func:`epochs_to_reach`, from
  :mod:`skdarts.evaluation`);
* :mod:`skdarts.viz.distances` - :func:`plot_distances`.

Layer: top (with ``cli``); reads results of every layer below.
"""

from ._common import OP_LABEL_GID
from .alphas import plot_alphas
from .cells import plot_genotype
from .curves import epochs_to_reach, plot_comparison, plot_learning_curves
from .distances import plot_distances

__all__ = [
    "OP_LABEL_GID",
    "epochs_to_reach",
    "plot_alphas",
    "plot_comparison",
    "plot_distances",
    "plot_genotype",
    "plot_learning_curves",
]
