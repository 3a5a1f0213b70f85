"""Architecture weights (alphas): heatmaps and their evolution (plot_alphas)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..spaces import get_search_space, n_edges
from ._common import _CELLS, _op_colour, _pyplot

__all__ = ["plot_alphas"]


def _alpha_source(source):
    """``(snapshots, space name or None, n_nodes or None)``; one snapshot per epoch.

    A snapshot is ``{"normal": (n_edges, n_ops) array, "reduce": ...}``.
    """
    history = getattr(source, "history_", None)
    if history is not None:
        space = getattr(source, "search_space", None)
        return _snapshots(history), space, getattr(source, "n_nodes", None)
    if hasattr(source, "arch_weights") and callable(source.arch_weights):
        w_n, w_r = (w.detach().cpu().numpy() for w in source.arch_weights())
        return [{"normal": w_n, "reduce": w_r}], source.space.name, source.n_nodes
    if isinstance(source, Mapping) and set(_CELLS) <= set(source):
        return [{c: np.asarray(source[c], dtype=float) for c in _CELLS}], None, None
    if isinstance(source, Sequence) and not isinstance(source, str):
        snaps = _snapshots(source)
        space = None
        for row in source:
            if isinstance(row, Mapping) and isinstance(row.get("genotype"), Mapping):
                space = row["genotype"].get("search_space")
        return snaps, space, None
    raise TypeError(
        "plot_alphas needs a fitted SupernetSearchClassifier, its history_ (a list "
        "of dicts with 'arch_weights'), a Supernet or a dict "
        f"{{'normal': array, 'reduce': array}}; got {type(source).__name__}."
    )


def _snapshots(history) -> list[dict]:
    snaps = [
        {c: np.asarray(row["arch_weights"][c], dtype=float) for c in _CELLS}
        for row in history
        if isinstance(row, Mapping) and row.get("arch_weights") is not None
    ]
    if not snaps:
        raise ValueError(
            "the history holds no 'arch_weights' (recorded each search epoch by "
            "SupernetSearchClassifier); got a history of "
            f"{len(history)} rows without them."
        )
    return snaps


def _edge_op_names(space, n_edges_: int, cell: str):
    """Operation names per edge, or None when the space is unknown."""
    if space is None:
        return None
    nodes = 0
    while n_edges(nodes) < n_edges_:
        nodes += 1
    try:
        return get_search_space(space).edge_ops(cell, nodes)
    except ValueError:
        return None


def _edge_labels(n_nodes: int) -> list[str]:
    inputs = ["c_{k-2}", "c_{k-1}"]
    labels = []
    for j in range(n_nodes):
        for i in range(j + 2):
            src = inputs[i] if i < 2 else str(i - 2)
            labels.append(f"${src}$→{j}" if i < 2 else f"{src}→{j}")
    return labels


def plot_alphas(
    estimator_or_history,
    *,
    kind: str = "both",
    epoch: int = -1,
    search_space: str | None = None,
    cells: Sequence[str] = _CELLS,
):
    """Softmaxed architecture weights per edge, and their evolution over epochs.

    Parameters
    ----------
    estimator_or_history : fitted SupernetSearchClassifier, its ``history_``, \
a Supernet or dict
        Where the weights come from: ``history_[i]["arch_weights"]`` per search
        epoch, a supernet's current ``arch_weights()``, or
        ``{"normal": (n_edges, n_ops), "reduce": (n_edges, n_ops)}``.
    kind : {"both", "heatmap", "evolution"}, default="both"
        Heatmaps of one epoch's weights (rows: edges, columns: operations),
        and/or lines over epochs (per edge, the weight of the operation that
        is strongest at the end, coloured by operation).
    epoch : int, default=-1
        The epoch the heatmaps show (an index into the recorded epochs).
    search_space : str, optional
        Names the operations when the source does not say (a plain dict).
    cells : sequence of {"normal", "reduce"}, default=("normal", "reduce")

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> w = np.full((5, 8), 1 / 8)
    >>> fig = plot_alphas({"normal": w, "reduce": w}, kind="heatmap",
    ...                   search_space="darts")
    >>> len(fig.axes)  # two heatmaps and their colour bar
    3
    """
    if kind not in ("both", "heatmap", "evolution"):
        raise ValueError(
            f"kind must be 'both', 'heatmap' or 'evolution'; got {kind!r}."
        )
    cells = [cells] if isinstance(cells, str) else list(cells)
    for c in cells:
        if c not in _CELLS:
            raise ValueError(
                f"cells must hold 'normal' and/or 'reduce'; got {c!r} in {cells!r}."
            )
    snaps, space, _ = _alpha_source(estimator_or_history)
    space = search_space or space
    if not -len(snaps) <= epoch < len(snaps):
        raise ValueError(
            f"epoch must index the {len(snaps)} recorded epochs "
            f"(-{len(snaps)} .. {len(snaps) - 1}); got {epoch}."
        )
    if kind == "evolution" and len(snaps) < 2:
        raise ValueError(
            "kind='evolution' needs weights from at least 2 epochs; got "
            f"{len(snaps)} (pass a fitted estimator or its history_)."
        )
    rows = []
    if kind in ("both", "heatmap"):
        rows.append("heatmap")
    if kind in ("both", "evolution") and len(snaps) >= 2:
        rows.append("evolution")
    plt = _pyplot()
    n_e = snaps[0]["normal"].shape[0]
    heights = {"heatmap": 0.3 * n_e + 1.6, "evolution": 3.2}
    fig, axes = plt.subplots(
        len(rows),
        len(cells),
        figsize=(5.0 * len(cells), sum(heights[r] for r in rows)),
        squeeze=False,
        layout="constrained",
        height_ratios=[heights[r] for r in rows],
    )
    # One colour scale for both heatmaps, fitted to the weights shown: early in
    # a search they all sit near uniform and a 0-1 scale would show nothing.
    shown = np.concatenate([snaps[epoch][c].ravel() for c in cells])
    scale = (float(shown.min()), float(shown.max()))
    image = None
    for r, row in enumerate(rows):
        for c, cell in enumerate(cells):
            ax = axes[r][c]
            ops = _edge_op_names(space, snaps[0][cell].shape[0], cell)
            if row == "heatmap":
                image = _alpha_heatmap(
                    ax, snaps[epoch][cell], ops, cell, epoch, snaps, scale
                )
            else:
                _alpha_evolution(ax, [s[cell] for s in snaps], ops, cell)
    if image is not None:
        fig.colorbar(
            image,
            ax=list(np.ravel(axes[0])),
            label="softmax(alpha)  (dot: strongest non-'none' op)",
        )
    return fig


def _alpha_heatmap(ax, weights, ops, cell, epoch, snaps, scale):
    n_e, n_ops = weights.shape
    lo, hi = scale
    image = ax.imshow(
        weights, aspect="auto", cmap="viridis", vmin=lo, vmax=max(hi, lo + 1e-9)
    )
    # the operation the discretisation would pick on each edge
    for e in range(n_e):
        candidates = [
            k for k in range(n_ops) if ops is None or ops[e][k] != "none"
        ] or list(range(n_ops))
        best = max(candidates, key=lambda k, e=e: weights[e, k])
        ax.plot(best, e, "o", ms=3, color="white", mec="black", mew=0.5)
    nodes = 0
    while n_edges(nodes) < n_e:
        nodes += 1
    labels = _edge_labels(nodes) if n_edges(nodes) == n_e else list(range(n_e))
    ax.set_yticks(range(n_e), labels, fontsize=7)
    same = ops is not None and all(tuple(e) == tuple(ops[0]) for e in ops)
    if same:
        ax.set_xticks(range(n_ops), ops[0], rotation=45, ha="right", fontsize=7)
    else:
        ax.set_xticks(range(n_ops), [f"op {k}" for k in range(n_ops)], fontsize=7)
        if ops is not None:  # per-edge spaces (S1): name each cell's operation
            for e in range(n_e):
                for k in range(n_ops):
                    ax.text(
                        k,
                        e,
                        ops[e][k],
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if weights[e, k] < (lo + hi) / 2 else "black",
                    )
    shown = epoch % len(snaps) + 1
    where = f", epoch {shown} of {len(snaps)}" if len(snaps) > 1 else ""
    ax.set_title(f"{cell} cell{where}")
    return image


def _alpha_evolution(ax, series, ops, cell):
    stack = np.stack(series)  # (epochs, edges, ops)
    epochs = np.arange(1, len(series) + 1)
    final = stack[-1]
    seen = set()
    for e in range(final.shape[0]):
        names = (
            ops[e] if ops is not None else [f"op {k}" for k in range(final.shape[1])]
        )
        order = np.argsort(final[e])[::-1]
        k = next((k for k in order if names[k] != "none"), order[0])
        label = names[k] if names[k] not in seen else None
        seen.add(names[k])
        ax.plot(epochs, stack[:, e, k], color=_op_colour(names[k]), lw=1, label=label)
    ax.axhline(1 / final.shape[1], color="0.5", lw=0.8, ls=":", label="uniform")
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("weight of the final choice")
    ax.set_title(f"{cell} cell: alphas over epochs")
    ax.legend(fontsize=6, ncol=2)


# -- learning curves --------------------------------------------------------------
