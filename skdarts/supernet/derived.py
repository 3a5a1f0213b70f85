"""The discrete network a genotype describes, and how it inherits weights."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..spaces import Genotype
from .body import Preprocess, build_body, edge_offsets, run_body
from .ops import make_op
from .supernet import Supernet

__all__ = ["DerivedCell", "DerivedNetwork"]


class DerivedCell(Preprocess):
    """A discrete cell: each node sums its two chosen operations."""

    def __init__(self, edges, concat, c_pp, c_p, c, reduction, reduction_prev):
        super().__init__(c_pp, c_p, c, reduction_prev, affine=True)
        self.reduction = reduction
        self.edges = tuple(edges)
        self.concat = tuple(concat)
        self.ops = nn.ModuleList(
            make_op(name, c, 2 if reduction and i < 2 else 1, affine=True)
            for name, i in self.edges
        )

    def forward(self, s0, s1):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for k in range(len(self.edges) // 2):
            (_, i1), (_, i2) = self.edges[2 * k], self.edges[2 * k + 1]
            states.append(self.ops[2 * k](states[i1]) + self.ops[2 * k + 1](states[i2]))
        return torch.cat([states[i] for i in self.concat], dim=1)


class DerivedNetwork(nn.Module):
    """The discrete network a :class:`Genotype` describes.

    Same stem, cell layout and head as the :class:`Supernet` it came from, so
    :meth:`from_supernet` can copy the weights of the chosen operations.

    Parameters
    ----------
    genotype : Genotype
    in_channels, n_classes, init_channels, n_cells, stem_multiplier : int
        As :class:`Supernet`.

    Examples
    --------
    >>> sn = Supernet("darts", 1, 3, init_channels=4, n_cells=3, n_nodes=2)
    >>> net = DerivedNetwork.from_supernet(sn)
    >>> net.eval()(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 3])
    """

    def __init__(
        self,
        genotype: Genotype,
        in_channels: int = 1,
        n_classes: int = 10,
        init_channels: int = 16,
        n_cells: int = 8,
        stem_multiplier: int = 3,
    ):
        super().__init__()
        if isinstance(genotype, dict):
            genotype = Genotype.from_dict(genotype)
        self.genotype = genotype
        self.in_channels = int(in_channels)
        self.n_classes = int(n_classes)
        self.init_channels = int(init_channels)
        self.n_cells = int(n_cells)
        self.stem_multiplier = int(stem_multiplier)

        def make_cell(i, c_pp, c_p, c, reduction, reduction_prev):
            if reduction:
                edges, concat = genotype.reduce, genotype.reduce_concat
            else:
                edges, concat = genotype.normal, genotype.normal_concat
            cell = DerivedCell(edges, concat, c_pp, c_p, c, reduction, reduction_prev)
            return cell, len(concat) * c

        self.stem, self.cells, c_p = build_body(
            in_channels, init_channels, n_cells, stem_multiplier, make_cell
        )
        self.n_features = c_p
        self.head = nn.Linear(c_p, n_classes)

    def config(self) -> dict[str, Any]:
        """Constructor arguments, JSON-ready."""
        return {
            "genotype": self.genotype.to_dict(),
            "in_channels": self.in_channels,
            "n_classes": self.n_classes,
            "init_channels": self.init_channels,
            "n_cells": self.n_cells,
            "stem_multiplier": self.stem_multiplier,
        }

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled body features, shape (n, ``n_features``)."""
        return run_body(self.stem, self.cells, x, lambda i, cell, s0, s1: cell(s0, s1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        return self.head(self.features(x))

    @classmethod
    def from_supernet(
        cls, supernet: Supernet, genotype: Genotype | None = None, inherit: bool = True
    ) -> DerivedNetwork:
        """Build the derived network of ``supernet`` (its current genotype by default).

        With ``inherit=True`` the stem, the pre-processing, the chosen
        operations and the head start from the supernet's weights (batch-norm
        scale and shift, absent while searching, start at identity).
        """
        genotype = genotype if genotype is not None else supernet.genotype()
        cfg = supernet.config()
        net = cls(
            genotype,
            in_channels=cfg["in_channels"],
            n_classes=cfg["n_classes"],
            init_channels=cfg["init_channels"],
            n_cells=cfg["n_cells"],
            stem_multiplier=cfg["stem_multiplier"],
        )
        if genotype.n_nodes != supernet.n_nodes:
            raise ValueError(
                f"genotype has {genotype.n_nodes} nodes per cell, the supernet "
                f"{supernet.n_nodes}."
            )
        net = net.to(next(supernet.parameters()).device)
        if inherit:
            net.inherit_from(supernet)
        return net

    def inherit_from(self, supernet: Supernet) -> None:
        """Copy the supernet's weights of the chosen operations into this network."""
        offsets = edge_offsets(supernet.n_nodes)
        source = {}
        for name, tensor in supernet.state_dict().items():
            if not name.startswith("alphas_"):
                source[name] = tensor
        mapped = {}
        for ci, cell in enumerate(self.cells):
            s_cell = supernet.cells[ci]
            edge_ops = s_cell.edges
            for k, (op_name, i) in enumerate(cell.edges):
                e = offsets[k // 2] + i
                op_index = edge_ops[e].op_names.index(op_name)
                prefix_src = f"cells.{ci}.edges.{e}.ops.{op_index}."
                prefix_dst = f"cells.{ci}.ops.{k}."
                for name, tensor in source.items():
                    if name.startswith(prefix_src):
                        mapped[prefix_dst + name[len(prefix_src) :]] = tensor
        for name, tensor in source.items():
            if ".edges." not in name:
                mapped[name] = tensor
        own = self.state_dict()
        usable = {
            k: v for k, v in mapped.items() if k in own and own[k].shape == v.shape
        }
        self.load_state_dict(usable, strict=False)
