"""Plots: cells of a genotype, alphas, learning curves and dataset distances.

matplotlib is an optional dependency (``pip install "skdarts[plot]"``); it is
imported when a plotting function is called, not when this module is.

Every function draws on new axes (through :mod:`matplotlib.pyplot`, so
notebooks and sphinx-gallery show the figure) or on the axes it is given, and
returns the :class:`matplotlib.figure.Figure`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .spaces import OPERATIONS, Genotype, get_search_space, n_edges

__all__ = [
    "plot_alphas",
    "plot_distances",
    "plot_genotype",
    "plot_learning_curves",
]

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


def _node_positions(n_nodes: int) -> dict[str, tuple[float, float]]:
    """Left to right on one line: the two cell inputs, the nodes, the output."""
    names = ["c_{k-2}", "c_{k-1}", *[str(j) for j in range(n_nodes)], "c_{k}"]
    return {name: (_STEP * i, 0.0) for i, name in enumerate(names)}


_STEP = 1.3  # distance between neighbouring nodes, in inches at the default size


def _arc_height(span: int) -> float:
    # Longer edges arc higher, so nested edges never share a label position.
    return 0.38 + 0.24 * (span - 1)


def _cell_extent(edges) -> tuple[float, float]:
    """Height of the highest arc above the line and depth of the output bus."""
    heights = [_arc_height(k // 2 + 2 - src) for k, (_, src) in enumerate(edges)]
    above = max(heights[0::2], default=0.0)
    return above, max(heights[1::2], default=0.0) + 0.3


def _draw_cell(ax, edges, concat, title: str) -> None:
    from matplotlib.patches import FancyArrowPatch

    n_nodes = len(edges) // 2
    pos = _node_positions(n_nodes)
    names = ["c_{k-2}", "c_{k-1}", *[str(j) for j in range(n_nodes)]]
    # An arc diagram: every node on one line, each edge an arc, a node's first
    # input above the line and its second below, the output edges flatter and
    # dashed below. A fixed layout needs no graph-layout engine.
    for k, (op, src) in enumerate(edges):
        (x0, _), (x1, _) = pos[names[src]], pos[str(k // 2)]
        side = 1.0 if k % 2 == 0 else -1.0
        height = side * _arc_height(round((x1 - x0) / _STEP))
        # matplotlib's arc3 is a quadratic Bezier with its control point at
        # rad * chord from the chord: the apex is at half that (equal aspect)
        rad = -2 * height / (x1 - x0)
        ax.add_patch(
            FancyArrowPatch(
                (x0, 0.0),
                (x1, 0.0),
                connectionstyle=f"arc3,rad={rad}",
                arrowstyle="-|>",
                mutation_scale=10,
                shrinkA=9,
                shrinkB=9,
                color=_op_colour(op),
                lw=1.5,
                gid="skdarts-edge",
            )
        )
        ax.text(
            (x0 + x1) / 2,
            height,
            op,
            fontsize=7,
            ha="center",
            va="center",
            color=_op_colour(op),
            bbox=dict(boxstyle="round,pad=0.12", fc="white", ec="none", alpha=0.9),
            gid=OP_LABEL_GID,
            zorder=4,
        )
    x_out = pos["c_{k}"][0]
    # the output's inputs join a bus below every other edge
    above, depth = _cell_extent(edges)
    for i in concat:
        if not 2 <= i < len(names):
            continue
        x0 = pos[names[i]][0]
        ax.add_patch(
            FancyArrowPatch(
                (x0, 0.0),
                (x_out, 0.0),
                connectionstyle=f"bar,fraction={depth / (x_out - x0)}",
                arrowstyle="-|>",
                mutation_scale=8,
                shrinkA=9,
                shrinkB=9,
                color="0.55",
                lw=0.9,
                linestyle="--",
                gid="skdarts-concat",
            )
        )
    for name, (x, y) in pos.items():
        is_io = name.startswith("c_")
        ax.text(
            x,
            y,
            f"${name}$" if is_io else name,
            ha="center",
            va="center",
            fontsize=9,
            zorder=5,
            gid="skdarts-node",
            bbox=dict(
                boxstyle="round,pad=0.35",
                fc="#dbe9f6" if is_io else "#fff3c4",
                ec="0.3",
            ),
        )
    ax.set_xlim(-0.6, _STEP * (n_nodes + 2) + 0.6)
    ax.set_ylim(-depth - 0.2, above + 0.3)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(title)


def plot_genotype(genotype, ax=None, *, cells: Sequence[str] = _CELLS):
    """Draw the cells of a genotype as graphs.

    Nodes: the cell's two inputs :math:`c_{k-2}`, :math:`c_{k-1}` (outputs of
    the two previous cells), the intermediate nodes ``0 .. n-1`` and the
    output :math:`c_k` (the concatenation of the nodes in ``*_concat``,
    dashed). Each chosen edge is an arrow labelled and coloured by its
    operation.

    Parameters
    ----------
    genotype : Genotype, dict, JSON str, fitted SupernetSearchClassifier or Supernet
    ax : matplotlib Axes or sequence of Axes, optional
        One axes per cell drawn; new ones when omitted.
    cells : sequence of {"normal", "reduce"}, default=("normal", "reduce")

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> g = Genotype(normal=[("sep_conv_3x3", 0), ("skip_connect", 1)],
    ...              normal_concat=[2], reduce=[("max_pool_3x3", 0),
    ...              ("max_pool_3x3", 1)], reduce_concat=[2])
    >>> fig = plot_genotype(g)
    >>> [t.get_text() for t in fig.axes[0].texts if t.get_gid() == OP_LABEL_GID]
    ['sep_conv_3x3', 'skip_connect']
    """
    g = _as_genotype(genotype)
    cells = [cells] if isinstance(cells, str) else list(cells)
    for c in cells:
        if c not in _CELLS:
            raise ValueError(
                f"cells must hold 'normal' and/or 'reduce'; got {c!r} in {cells!r}."
            )
    if not cells:
        raise ValueError("cells must name at least one cell type; got none.")
    width = _STEP * (g.n_nodes + 2) + 1.2
    height = max(sum(_cell_extent(g.edges(c))) for c in cells) + 1.2
    fig, axes = _axes_list(ax, len(cells), (width, height * len(cells)), rows=True)
    for a, cell in zip(axes, cells):
        concat = g.normal_concat if cell == "normal" else g.reduce_concat
        _draw_cell(a, g.edges(cell), concat, f"{cell} cell")
    return fig


# -- alphas ---------------------------------------------------------------------


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


def _curve_arrays(value, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``(acc, seconds)``: acc (n_seeds, n_epochs); seconds alike, or None."""
    seconds = None
    if hasattr(value, "history_"):
        value = value.history_
    runs = value if isinstance(value, Sequence) and not isinstance(value, str) else []
    if hasattr(value, "accuracy") or (
        runs and all(hasattr(r, "accuracy") for r in runs)
    ):
        # learning-curve objects (skdarts.evaluation): one run, or one per seed;
        # seeds are cut to the shortest run so they can be averaged
        runs = [value] if hasattr(value, "accuracy") else list(runs)
        n = min(len(np.ravel(r.accuracy)) for r in runs)
        acc = np.array([np.ravel(r.accuracy)[:n] for r in runs], dtype=float)
        if all(getattr(r, "seconds", None) is not None for r in runs):
            seconds = np.array(
                [
                    np.ravel(r.seconds)[:n] + getattr(r, "overhead_seconds", 0.0)
                    for r in runs
                ],
                dtype=float,
            )
        return acc, seconds
    if isinstance(value, Mapping):
        acc = next(
            (value[k] for k in ("valid_acc", "accuracy", "acc", "score") if k in value),
            None,
        )
        seconds = next(
            (value[k] for k in ("seconds", "time", "wall_time") if k in value), None
        )
        if acc is None:
            raise ValueError(
                f"curve {name!r}: a dict curve needs 'valid_acc' (or 'accuracy'); "
                f"got keys {sorted(value)}."
            )
        value = acc
    elif (
        isinstance(value, Sequence)
        and value
        and all(isinstance(r, Mapping) for r in value)
    ):
        # an estimator's history_: the search epochs' validation accuracy
        rows = [r for r in value if r.get("valid_acc") is not None]
        if not rows:
            raise ValueError(f"curve {name!r}: the history holds no 'valid_acc'.")
        seconds = np.cumsum([r.get("dur", np.nan) for r in rows])
        value = [r["valid_acc"] for r in rows]
    try:
        acc = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"curve {name!r} must be a list of accuracies per epoch (or one list per "
            f"seed), a dict with 'valid_acc', or a history_; got {type(value)}."
        ) from exc
    acc = np.atleast_2d(acc)
    if acc.ndim != 2 or acc.shape[1] == 0:
        raise ValueError(
            f"curve {name!r} must hold accuracies per epoch; got shape {acc.shape}."
        )
    if seconds is not None:
        seconds = np.atleast_2d(np.asarray(seconds, dtype=float))
        if seconds.shape[-1] != acc.shape[-1]:
            seconds = None
    return acc, seconds


def _as_curves(curves) -> dict:
    for attr in ("curves_", "curves"):
        inner = getattr(curves, attr, None)
        if isinstance(inner, Mapping):
            return dict(inner)
    to_dict = getattr(curves, "to_dict", None)
    if callable(to_dict) and not isinstance(curves, Mapping):
        curves = to_dict()
    if not isinstance(curves, Mapping) or not curves:
        raise TypeError(
            "curves must be a non-empty dict {strategy: accuracies per epoch} (or "
            f"an evaluation result holding one); got {type(curves).__name__}."
        )
    return dict(curves)


def epochs_to_reach(acc: Sequence[float], target: float) -> int | float:
    """First epoch (1-based) at which ``acc`` reaches ``target``; inf if never.

    Examples
    --------
    >>> epochs_to_reach([0.2, 0.5, 0.7], 0.5)
    2
    >>> epochs_to_reach([0.2, 0.5], 0.9)
    inf
    """
    hits = np.flatnonzero(np.asarray(acc, dtype=float) >= target)
    return int(hits[0]) + 1 if len(hits) else math.inf


def plot_learning_curves(
    curves,
    *,
    baseline: str | None = "scratch",
    x: str = "epoch",
    ax=None,
    title: str | None = None,
):
    """Validation accuracy per epoch (or second) of several strategies.

    Curves over several seeds are drawn as their mean with a ± one standard
    deviation band. When ``baseline`` names a curve, a dotted line marks its
    final accuracy and each other curve's legend says how many epochs it
    needed to reach it, and the speedup (baseline epochs ÷ its epochs).

    Parameters
    ----------
    curves : dict or evaluation result
        ``{strategy: curve}`` where a curve is a list of accuracies per epoch,
        a list of such lists (one per seed), a dict with ``"valid_acc"`` (and
        optionally ``"seconds"``), a fitted estimator / its ``history_``, or
        learning-curve objects (with ``accuracy`` and ``seconds``; one, or one
        per seed). An object with a ``curves`` or ``curves_`` dict (such as
        a comparison result of :mod:`skdarts.evaluation`) is accepted as well.
    baseline : str or None, default="scratch"
        The strategy others are compared with; ignored when absent.
    x : {"epoch", "seconds"}, default="epoch"
        Horizontal axis; "seconds" needs curves with times.
    ax : matplotlib Axes, optional
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_learning_curves({"scratch": [0.3, 0.5, 0.6],
    ...                             "warm": [[0.5, 0.62, 0.7], [0.55, 0.6, 0.7]]})
    >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()][1]
    'warm (reaches scratch in 2 epochs: 1.5x)'
    """
    if x not in ("epoch", "seconds"):
        raise ValueError(f"x must be 'epoch' or 'seconds'; got {x!r}.")
    data = {str(k): _curve_arrays(v, str(k)) for k, v in _as_curves(curves).items()}
    fig, (ax,) = _axes_list(ax, 1, (6.4, 4.2))
    target = None
    base_epochs = None
    if baseline is not None and baseline in data:
        base_mean = data[baseline][0].mean(axis=0)
        target = float(base_mean[-1])
        base_epochs = epochs_to_reach(base_mean, target)
    for i, (name, (acc, seconds)) in enumerate(data.items()):
        mean, std = acc.mean(axis=0), acc.std(axis=0)
        if x == "seconds":
            if seconds is None:
                raise ValueError(
                    f"x='seconds' needs times for every curve; {name!r} has none "
                    "(give a dict with 'valid_acc' and 'seconds', or a history_)."
                )
            xs = seconds.mean(axis=0)
        else:
            xs = np.arange(1, acc.shape[1] + 1)
        label = name
        if target is not None and name != baseline:
            reach = epochs_to_reach(mean, target)
            label += (
                f" (reaches {baseline} in {reach} epoch{'s' * (reach != 1)}: "
                f"{base_epochs / reach:.1f}x)"
                if math.isfinite(reach)
                else f" (does not reach {baseline})"
            )
        colour = "0.25" if name == baseline else f"C{i}"
        ax.plot(xs, mean, marker="o", ms=3, color=colour, label=label)
        if acc.shape[0] > 1:
            ax.fill_between(xs, mean - std, mean + std, color=colour, alpha=0.2)
    if target is not None:
        ax.axhline(target, color="0.4", ls=":", lw=1)
    ax.set_xlabel("epoch" if x == "epoch" else "seconds")
    if x == "epoch":
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("validation accuracy")
    ax.set_title(title or "warm-started vs from-scratch search")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


# -- distances -------------------------------------------------------------------


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
