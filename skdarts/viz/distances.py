"""Distances between datasets as an annotated heatmap (:func:`plot_distances`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._common import _axes_list

__all__ = ["plot_distances"]


def plot_distances(
    names,
    distances=None,
    *,
    ax=None,
    highlight: Sequence[str] | None = None,
    annotate: bool = True,
    title: str | None = None,
):
    """Dataset distances: a ranking as bars, or a pairwise matrix as a heatmap.

    Parameters
    ----------
    names : sequence of str, or a fitted OTSourceSelector
        Dataset (or zoo entry) names. A fitted selector supplies its
        ``ranking_`` (kept in its order) and ``distances_`` (its stage-1
        lower bound where the exact distance was not computed, drawn
        hatched) and highlights ``selected_``.
    distances : array-like of shape (n,) or (n, n), optional
        Distance per name (bars, nearest first) or between every pair
        (heatmap). Not used with a selector.
    ax : matplotlib Axes, optional
    highlight : sequence of str, optional
        Names drawn in a stronger colour (bars).
    annotate : bool, default=True
        Write the values on the bars / cells.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_distances(["mnist", "letters"], [0.8, 0.2])
    >>> [t.get_text() for t in fig.axes[0].get_yticklabels()]
    ['letters', 'mnist']
    """
    exact = None
    ranked = False
    if hasattr(names, "ranking_") and hasattr(names, "distances_"):
        # keep the selector's order: its bounds are lower bounds, not distances
        ranked = True
        selector = names
        names = list(selector.ranking_)
        values = np.asarray(selector.distances_, dtype=float)
        exact = np.isfinite(values)
        proxy = getattr(selector, "proxy_distances_", None)
        if proxy is not None and not exact.all():
            values = np.where(exact, values, np.asarray(proxy, dtype=float))
        if highlight is None:
            highlight = list(getattr(selector, "selected_", names[:1]))
        title = title or f"dataset distance to the target ({selector.method})"
    else:
        if distances is None:
            raise TypeError(
                "plot_distances needs names and distances, or a fitted "
                "OTSourceSelector (with ranking_ and distances_) as first argument; "
                f"got {type(names).__name__} and no distances."
            )
        values = np.asarray(distances, dtype=float)
    names = [str(n) for n in names]
    if values.ndim == 2:
        if values.shape != (len(names), len(names)):
            raise ValueError(
                f"a distance matrix must be square with one row per name "
                f"({len(names)}); got shape {values.shape}."
            )
        return _distance_heatmap(names, values, ax, annotate, title)
    if values.ndim != 1 or len(values) != len(names):
        raise ValueError(
            f"distances must hold one value per name ({len(names)}) or a "
            f"{len(names)}x{len(names)} matrix; got shape {values.shape}."
        )
    if exact is None:
        exact = np.ones(len(values), dtype=bool)
    order = np.arange(len(values)) if ranked else np.argsort(values, kind="stable")
    fig, (ax,) = _axes_list(ax, 1, (6.0, 0.35 * len(names) + 1.5))
    strong = set(highlight or [])
    # nearest at the top
    ys = np.arange(len(order))[::-1]
    for y, i in zip(ys, order):
        ax.barh(
            y,
            values[i],
            color="C3" if names[i] in strong else "C0",
            hatch=None if exact[i] else "//",
            alpha=1.0 if exact[i] else 0.5,
        )
        if annotate and np.isfinite(values[i]):
            ax.text(values[i], y, f" {_short(values[i])}", va="center", fontsize=7)
    ax.set_yticks(ys, [names[i] for i in order])
    ax.set_xlabel(
        "distance" + ("" if exact.all() else " (hatched: stage-1 lower bound)")
    )
    ax.set_title(title or "dataset distance")
    ax.margins(x=0.15)
    return fig


def _short(value: float) -> str:
    """Two decimals for everyday distances (no 2e-08 for a zero), else 3 digits."""
    return f"{value:.2f}" if abs(value) < 100 else f"{value:.3g}"


def _distance_heatmap(names, matrix, ax, annotate, title):
    fig, (ax,) = _axes_list(ax, 1, (1.0 * len(names) + 2.5, 0.9 * len(names) + 1.5))
    image = ax.imshow(matrix, cmap="magma_r")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    if annotate:
        top = np.nanmax(matrix) if np.isfinite(matrix).any() else 1.0
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(
                    j,
                    i,
                    _short(matrix[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if matrix[i, j] > 0.6 * top else "black",
                )
    fig.colorbar(image, ax=ax, label="distance")
    ax.set_title(title or "pairwise dataset distance")
    return fig
