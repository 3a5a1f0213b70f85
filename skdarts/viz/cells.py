"""Cells of a genotype drawn as graphs (:func:`plot_genotype`)."""

from __future__ import annotations

from collections.abc import Sequence

from ._common import _CELLS, OP_LABEL_GID, _as_genotype, _axes_list, _op_colour

__all__ = ["plot_genotype"]


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
    >>> from skdarts import Genotype
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
