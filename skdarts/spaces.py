"""Candidate operations, search spaces and the discrete architecture (`Genotype`).

This is the bottom layer: it knows the names of operations and which ones are
allowed on which edge of a cell, nothing about training or data.

References
----------
.. [1] H. Liu, K. Simonyan, Y. Yang. "DARTS: Differentiable Architecture
   Search". ICLR 2019. (the 8-operation space, ``"darts"``)
.. [2] A. Zela, T. Elsken, T. Saikia, Y. Marrakchi, T. Brox, F. Hutter.
   "Understanding and Robustifying Differentiable Architecture Search".
   ICLR 2020. (spaces S1-S4; automl/RobustDARTS, ``src/search/spaces.py``)
.. [3] X. Chen, C.-J. Hsieh. "Stabilizing Differentiable Architecture Search
   via Perturbation-based Regularization". ICML 2020. (the same S1-S4 lists,
   xiangning-chen/SmoothDARTS ``sota/cnn/spaces.py``)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DARTS_OPS",
    "OPERATIONS",
    "SEARCH_SPACES",
    "Genotype",
    "SearchSpace",
    "get_search_space",
]

#: The DARTS operation set, in the order of the original implementation [1]_.
DARTS_OPS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

#: Every operation name a search space may use. ``noise`` is RobustDARTS' S4
#: operation: Gaussian noise that ignores its input [2]_.
OPERATIONS: tuple[str, ...] = (*DARTS_OPS, "noise")

# RobustDARTS S1 [2]_: each of the 14 edges of a 4-node cell has its own pair
# of operations, different for normal and reduction cells. The lists below are
# the published ones (RobustDARTS `src/search/spaces.py`, `primitives_1`;
# identical in SmoothDARTS `sota/cnn/spaces.py`), edge by edge in DARTS edge
# order (node 0: inputs c_{k-2}, c_{k-1}; node 1: those and node 0; ...).
_S1_NORMAL = (
    ("skip_connect", "dil_conv_3x3"),
    ("skip_connect", "dil_conv_5x5"),
    ("skip_connect", "dil_conv_5x5"),
    ("skip_connect", "sep_conv_3x3"),
    ("skip_connect", "dil_conv_3x3"),
    ("max_pool_3x3", "skip_connect"),
    ("skip_connect", "sep_conv_3x3"),
    ("skip_connect", "sep_conv_3x3"),
    ("skip_connect", "dil_conv_3x3"),
    ("skip_connect", "sep_conv_3x3"),
    ("max_pool_3x3", "skip_connect"),
    ("skip_connect", "dil_conv_3x3"),
    ("dil_conv_3x3", "dil_conv_5x5"),
    ("dil_conv_3x3", "dil_conv_5x5"),
)
_S1_REDUCE = (
    ("max_pool_3x3", "avg_pool_3x3"),
    ("max_pool_3x3", "dil_conv_3x3"),
    ("max_pool_3x3", "avg_pool_3x3"),
    ("max_pool_3x3", "avg_pool_3x3"),
    ("skip_connect", "dil_conv_5x5"),
    ("max_pool_3x3", "avg_pool_3x3"),
    ("max_pool_3x3", "sep_conv_3x3"),
    ("skip_connect", "dil_conv_3x3"),
    ("skip_connect", "dil_conv_5x5"),
    ("max_pool_3x3", "avg_pool_3x3"),
    ("max_pool_3x3", "avg_pool_3x3"),
    ("skip_connect", "dil_conv_5x5"),
    ("skip_connect", "dil_conv_5x5"),
    ("skip_connect", "dil_conv_5x5"),
)


def n_edges(n_nodes: int) -> int:
    """Number of edges in a cell with ``n_nodes`` intermediate nodes.

    Node ``j`` has ``j + 2`` inputs: the two cell inputs and every earlier node.

    Examples
    --------
    >>> n_edges(4)
    14
    """
    return sum(2 + j for j in range(n_nodes))


@dataclass(frozen=True)
class SearchSpace:
    """Which operations each edge of a normal and a reduction cell may choose.

    Parameters
    ----------
    name : str
        Short name used to select the space (``"darts"``, ``"s1"`` ...).
    normal, reduce : tuple of tuple of str, or tuple of str
        Per-edge operation lists for normal and reduction cells. A flat tuple
        of names means the same list on every edge, for any number of nodes;
        a tuple of tuples fixes the number of edges (and so of nodes).

    Examples
    --------
    >>> space = get_search_space("s2")
    >>> space.edge_ops("normal", n_nodes=4)[0]
    ('skip_connect', 'sep_conv_3x3')
    """

    name: str
    normal: tuple
    reduce: tuple
    reference: str = ""

    @property
    def per_edge(self) -> bool:
        """True when edges have their own operation lists (fixed cell size)."""
        return bool(self.normal) and isinstance(self.normal[0], tuple)

    @property
    def n_ops(self) -> int:
        """Number of candidate operations on every edge."""
        first = self.normal[0] if self.per_edge else self.normal
        return len(first)

    def edge_ops(self, cell_type: str, n_nodes: int) -> tuple[tuple[str, ...], ...]:
        """Operation names for every edge of a ``cell_type`` cell.

        Parameters
        ----------
        cell_type : {"normal", "reduce"}
        n_nodes : int
            Intermediate nodes per cell.

        Returns
        -------
        tuple of tuple of str
            One tuple of operation names per edge, in DARTS edge order.
        """
        if cell_type not in ("normal", "reduce"):
            raise ValueError(
                f"cell_type must be 'normal' or 'reduce'; got {cell_type!r}."
            )
        ops = self.normal if cell_type == "normal" else self.reduce
        count = n_edges(n_nodes)
        if self.per_edge:
            if len(ops) != count:
                raise ValueError(
                    f"search space {self.name!r} is defined for cells of "
                    f"{_nodes_for_edges(len(ops))} nodes ({len(ops)} edges); got "
                    f"n_nodes={n_nodes}. Use n_nodes={_nodes_for_edges(len(ops))} "
                    "or a space with one operation list for all edges "
                    "('darts', 's2', 's3', 's4')."
                )
            return tuple(tuple(e) for e in ops)
        return tuple(tuple(ops) for _ in range(count))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (used to check that two supernets match)."""
        return {
            "name": self.name,
            "normal": [list(e) if isinstance(e, tuple) else e for e in self.normal],
            "reduce": [list(e) if isinstance(e, tuple) else e for e in self.reduce],
        }


def _nodes_for_edges(count: int) -> int:
    nodes = 0
    while n_edges(nodes) < count:
        nodes += 1
    return nodes


SEARCH_SPACES: dict[str, SearchSpace] = {
    "darts": SearchSpace("darts", DARTS_OPS, DARTS_OPS, "Liu et al., ICLR 2019"),
    "s1": SearchSpace("s1", _S1_NORMAL, _S1_REDUCE, "Zela et al., ICLR 2020, S1"),
    "s2": SearchSpace(
        "s2",
        ("skip_connect", "sep_conv_3x3"),
        ("skip_connect", "sep_conv_3x3"),
        "Zela et al., ICLR 2020, S2",
    ),
    "s3": SearchSpace(
        "s3",
        ("none", "skip_connect", "sep_conv_3x3"),
        ("none", "skip_connect", "sep_conv_3x3"),
        "Zela et al., ICLR 2020, S3",
    ),
    "s4": SearchSpace(
        "s4",
        ("noise", "sep_conv_3x3"),
        ("noise", "sep_conv_3x3"),
        "Zela et al., ICLR 2020, S4",
    ),
}


def get_search_space(space: str | SearchSpace) -> SearchSpace:
    """Return the search space called ``space`` (or ``space`` itself).

    Parameters
    ----------
    space : {"darts", "s1", "s2", "s3", "s4"} or SearchSpace

    Returns
    -------
    SearchSpace

    Examples
    --------
    >>> get_search_space("s1").n_ops
    2
    >>> get_search_space("darts").n_ops
    8
    """
    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, str) and space.lower() in SEARCH_SPACES:
        return SEARCH_SPACES[space.lower()]
    raise ValueError(
        f"search_space must be one of {sorted(SEARCH_SPACES)} or a SearchSpace; "
        f"got {space!r}."
    )


Edge = tuple[str, int]


@dataclass(frozen=True)
class Genotype:
    """A discrete cell architecture: for each node, its chosen (operation, input).

    Inputs are numbered as in DARTS: 0 and 1 are the cell's two inputs (the
    outputs of the previous two cells), ``k + 2`` is intermediate node ``k``.

    Parameters
    ----------
    normal, reduce : sequence of (str, int)
        Two entries per node, node by node.
    normal_concat, reduce_concat : sequence of int
        The nodes whose outputs are concatenated into the cell output.

    Examples
    --------
    >>> g = Genotype(normal=[("sep_conv_3x3", 0), ("skip_connect", 1)],
    ...              normal_concat=[2], reduce=[("max_pool_3x3", 0),
    ...              ("max_pool_3x3", 1)], reduce_concat=[2])
    >>> Genotype.from_json(g.to_json()) == g
    True
    >>> g.n_nodes
    1
    """

    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...]
    reduce_concat: tuple[int, ...]
    search_space: str = field(default="darts", compare=True)

    def __post_init__(self):
        for name in ("normal", "reduce"):
            edges = tuple((str(op), int(i)) for op, i in getattr(self, name))
            if len(edges) % 2:
                raise ValueError(
                    f"Genotype.{name} needs two (operation, input) pairs per node; "
                    f"got {len(edges)} pairs."
                )
            for op, _ in edges:
                if op not in OPERATIONS:
                    raise ValueError(
                        f"Genotype.{name} has unknown operation {op!r}; accepted: "
                        f"{list(OPERATIONS)}."
                    )
            for k in range(len(edges) // 2):
                for _, i in edges[2 * k : 2 * k + 2]:
                    if not 0 <= i < k + 2:
                        raise ValueError(
                            f"Genotype.{name}: node {k} cannot take input {i}; "
                            f"accepted inputs are 0..{k + 1}."
                        )
            object.__setattr__(self, name, edges)
        for name in ("normal_concat", "reduce_concat"):
            object.__setattr__(self, name, tuple(int(i) for i in getattr(self, name)))
        if len(self.normal) != len(self.reduce):
            raise ValueError(
                "Genotype.normal and Genotype.reduce must have the same number of "
                f"nodes; got {len(self.normal) // 2} and {len(self.reduce) // 2}."
            )

    @property
    def n_nodes(self) -> int:
        """Number of intermediate nodes per cell."""
        return len(self.normal) // 2

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "normal": [list(e) for e in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [list(e) for e in self.reduce],
            "reduce_concat": list(self.reduce_concat),
            "search_space": self.search_space,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Genotype:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, dict):
            raise TypeError(f"Genotype.from_dict needs a dict; got {type(data)}.")
        missing = {"normal", "normal_concat", "reduce", "reduce_concat"} - set(data)
        if missing:
            raise ValueError(f"Genotype data lacks the keys {sorted(missing)}.")
        return cls(
            normal=tuple(tuple(e) for e in data["normal"]),
            normal_concat=tuple(data["normal_concat"]),
            reduce=tuple(tuple(e) for e in data["reduce"]),
            reduce_concat=tuple(data["reduce_concat"]),
            search_space=data.get("search_space", "darts"),
        )

    def to_json(self) -> str:
        """Serialise to a JSON string."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    def edges(self, cell_type: str) -> Sequence[Edge]:
        """The (operation, input) pairs of a ``"normal"`` or ``"reduce"`` cell."""
        return self.normal if cell_type == "normal" else self.reduce
