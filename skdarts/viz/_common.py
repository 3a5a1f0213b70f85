"""What the plots share: pyplot on demand, axes, operation colours, genotypes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..spaces import OPERATIONS, Genotype

_CELLS = ("normal", "reduce")
#: ``gid`` of the text artists naming an edge's operation (lets tests and
#: users find them: ``[t for t in ax.texts if t.get_gid() == OP_LABEL_GID]``).
OP_LABEL_GID = "skdarts-op"


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "skdarts.viz needs matplotlib, an optional dependency; install it with "
            "pip install 'skdarts[plot]' (or pip install matplotlib)."
        ) from exc
    return plt


def _op_colour(op: str):
    import matplotlib as mpl

    cmap = mpl.colormaps["tab10"]
    return cmap(OPERATIONS.index(op) % 10) if op in OPERATIONS else "0.3"


def _axes_list(ax, count: int, figsize, rows: bool = False) -> tuple[Any, list]:
    """``count`` axes: new ones (a row, or a column with ``rows``) or those given."""
    plt = _pyplot()
    if ax is None:
        shape = (count, 1) if rows else (1, count)
        fig, axes = plt.subplots(
            *shape, figsize=figsize, squeeze=False, layout="constrained"
        )
        return fig, list(np.ravel(axes))
    axes = list(np.ravel(ax)) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
    if len(axes) != count:
        raise ValueError(
            f"ax must hold {count} axes for this plot (one per panel); got {len(axes)}."
        )
    return axes[0].figure, axes


# -- genotype -------------------------------------------------------------------


def _as_genotype(genotype) -> Genotype:
    if isinstance(genotype, Genotype):
        return genotype
    if isinstance(genotype, str):
        return Genotype.from_json(genotype)
    if isinstance(genotype, Mapping):
        return Genotype.from_dict(dict(genotype))
    fitted = getattr(genotype, "genotype_", None)
    if isinstance(fitted, Genotype):
        return fitted
    method = getattr(genotype, "genotype", None)
    if callable(method):
        return method()
    raise TypeError(
        "genotype must be a Genotype, its dict or JSON, a fitted "
        "SupernetSearchClassifier or a Supernet; got "
        f"{type(genotype).__name__}."
    )
