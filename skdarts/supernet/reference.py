"""The straightforward DARTS supernet: the executable specification.

Each edge applies each operation and sums them weighted by the softmax of its
alphas, exactly as DARTS writes it (Liu et al., ICLR 2019, ``model_search.py``
of quark0/darts): every candidate operation of every edge is computed,
``none`` included; every convolution starts with its own ReLU; nothing is
fused or batched. Read this module to learn what a supernet computes.

The fast :class:`~skdarts.supernet.Supernet` is an implementation of it: its
cells (:class:`~skdarts.supernet.cell.SearchCell`) keep their parameters in
the very :class:`MixedEdge` modules defined here, so both networks have the
same state dict, and a test (``tests/test_supernet_equivalence.py``) keeps
their outputs, gradients and batch-norm statistics equal in float64 for every
search space. :func:`reference_from_supernet` builds the reference twin of a
supernet; the benchmark (``benchmarks/search_step.py``) measures the fast
supernet against it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..spaces import SearchSpace, get_search_space
from .body import Preprocess, build_body, run_body
from .ops import make_op

__all__ = ["MixedEdge", "ReferenceCell", "ReferenceSupernet", "reference_from_supernet"]


class MixedEdge(nn.Module):
    """All candidate operations of one edge, mixed by architecture weights.

    Parameters
    ----------
    op_names : sequence of str
        The edge's candidate operations.
    c : int
        Channels in and out.
    stride : {1, 2}

    Examples
    --------
    >>> edge = MixedEdge(["none", "skip_connect", "avg_pool_3x3"], 4, stride=1)
    >>> edge(torch.zeros(2, 4, 5, 5), torch.tensor([0.2, 0.5, 0.3])).shape
    torch.Size([2, 4, 5, 5])
    """

    def __init__(self, op_names, c, stride):
        super().__init__()
        self.op_names = tuple(op_names)
        self.ops = nn.ModuleList(make_op(n, c, stride, affine=False) for n in op_names)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``sum_k weights[k] * op_k(x)``, every operation computed."""
        return sum(w * op(x) for w, op in zip(weights, self.ops))


class ReferenceCell(Preprocess):
    """A supernet cell as DARTS writes it: node j sums its mixed input edges.

    Node ``j`` reads the two cell inputs and the nodes before it (``j + 2``
    edges, stride 2 on the inputs' edges of a reduction cell); the cell's
    output concatenates its nodes.
    """

    def __init__(self, edge_ops, n_nodes, c_pp, c_p, c, reduction, reduction_prev):
        super().__init__(c_pp, c_p, c, reduction_prev, affine=False)
        self.reduction = reduction
        self.n_nodes = n_nodes
        self.edges = nn.ModuleList()
        for j in range(n_nodes):
            for i in range(j + 2):
                stride = 2 if reduction and i < 2 else 1
                self.edges.append(MixedEdge(edge_ops[len(self.edges)], c, stride))

    def forward(
        self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        e = 0
        for _ in range(self.n_nodes):
            node = sum(
                self.edges[e + i](h, weights[e + i]) for i, h in enumerate(states)
            )
            e += len(states)
            states.append(node)
        return torch.cat(states[2:], dim=1)


class ReferenceSupernet(nn.Module):
    """The DARTS search network (``Network`` of ``model_search.py``).

    Same constructor arguments as :class:`~skdarts.supernet.Supernet`
    (without its options: no partial channels, no checkpointing), the same
    ``forward(x, arch_weights=None)`` and the same state dict.

    Examples
    --------
    >>> ref = ReferenceSupernet("s2", in_channels=1, n_classes=3,
    ...                         init_channels=4, n_cells=3, n_nodes=2)
    >>> ref(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 3])
    """

    def __init__(
        self,
        search_space: str | SearchSpace = "darts",
        in_channels: int = 1,
        n_classes: int = 10,
        init_channels: int = 16,
        n_cells: int = 8,
        n_nodes: int = 4,
        stem_multiplier: int = 3,
    ):
        super().__init__()
        self.space = get_search_space(search_space)
        self.n_nodes = n_nodes
        normal_ops = self.space.edge_ops("normal", n_nodes)
        reduce_ops = self.space.edge_ops("reduce", n_nodes)

        def make_cell(i, c_pp, c_p, c, reduction, reduction_prev):
            ops = reduce_ops if reduction else normal_ops
            cell = ReferenceCell(ops, n_nodes, c_pp, c_p, c, reduction, reduction_prev)
            return cell, n_nodes * c

        self.stem, self.cells, c_p = build_body(
            in_channels, init_channels, n_cells, stem_multiplier, make_cell
        )
        self.head = nn.Linear(c_p, n_classes)
        n_e = len(normal_ops)
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(n_e, self.space.n_ops))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(n_e, self.space.n_ops))

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture weights (alphas)."""
        return [self.alphas_normal, self.alphas_reduce]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Everything but the alphas."""
        return [p for n, p in self.named_parameters() if not n.startswith("alphas_")]

    def arch_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax of the alphas, per edge: the mixing weights of each cell type."""
        return (
            F.softmax(self.alphas_normal, dim=-1),
            F.softmax(self.alphas_reduce, dim=-1),
        )

    def forward(self, x: torch.Tensor, arch_weights=None) -> torch.Tensor:
        """Class logits; ``arch_weights`` replaces the alphas' softmax."""
        w_normal, w_reduce = (
            arch_weights if arch_weights is not None else self.arch_weights()
        )

        def run_cell(i, cell, s0, s1):
            return cell(s0, s1, w_reduce if cell.reduction else w_normal)

        return self.head(run_body(self.stem, self.cells, x, run_cell))


def reference_from_supernet(supernet: Any) -> ReferenceSupernet:
    """A reference network computing the same function as ``supernet``.

    Same configuration, device, dtype, weights, alphas, batch-norm statistics
    and training mode; the state dict is loaded strictly, so a tensor missing
    on either side raises.

    Parameters
    ----------
    supernet : Supernet
        Without partial channels (the reference has no PC-DARTS).

    Returns
    -------
    ReferenceSupernet

    Examples
    --------
    >>> from skdarts.supernet import Supernet
    >>> net = Supernet("s3", 1, 3, init_channels=4, n_cells=3, n_nodes=2).eval()
    >>> ref = reference_from_supernet(net)
    >>> x = torch.randn(2, 1, 8, 8)
    >>> bool(torch.allclose(net(x), ref(x), atol=1e-5))
    True
    """
    cfg = supernet.config()
    if cfg.get("partial_channels", 1) != 1:
        raise ValueError(
            "the reference supernet has no partial channels (PC-DARTS); got a "
            f"supernet with partial_channels={cfg['partial_channels']}."
        )
    ref = ReferenceSupernet(**cfg)
    first = next(supernet.parameters())
    ref = ref.to(device=first.device, dtype=first.dtype)
    ref.load_state_dict(supernet.state_dict(), strict=True)
    ref.train(supernet.training)
    return ref
