"""What every network of the package shares: stem, stacked cells, reductions.

A DARTS network is a stem convolution, a stack of cells (each reads the two
previous cells' outputs; reduction cells at 1/3 and 2/3 of the depth halve
the resolution and double the channels), global pooling and a linear head.
The supernets and the derived network differ only in their cells, so the
stacking is written once here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .ops import FactorizedReduce, ReLUConvBN

__all__ = ["Preprocess", "build_body", "edge_offsets", "reduction_layers", "run_body"]


def reduction_layers(n_cells: int) -> tuple[int, ...]:
    """Indices of the reduction cells: at 1/3 and 2/3 of the depth (DARTS).

    Examples
    --------
    >>> reduction_layers(8)
    (2, 5)
    """
    return tuple(sorted({n_cells // 3, 2 * n_cells // 3}))


def edge_offsets(n_nodes: int) -> list[int]:
    """Index of the first incoming edge of each node (node j has j + 2 inputs).

    Examples
    --------
    >>> edge_offsets(3)
    [0, 2, 5]
    """
    offsets, start = [], 0
    for j in range(n_nodes):
        offsets.append(start)
        start += j + 2
    return offsets


class Preprocess(nn.Module):
    """The two input adapters of a cell: previous outputs to ``c`` channels.

    The output of the cell before last is reduced when the last cell was a
    reduction, so both inputs have the same resolution.
    """

    def __init__(self, c_pp, c_p, c, reduction_prev, affine):
        super().__init__()
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(c_pp, c, affine)
        else:
            self.preprocess0 = ReLUConvBN(c_pp, c, 1, 1, 0, affine)
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0, affine)


#: ``make_cell(index, c_pp, c_p, c, reduction, reduction_prev)`` returns a
#: cell and its output channels.
MakeCell = Callable[[int, int, int, int, bool, bool], tuple[nn.Module, int]]


def build_body(
    in_channels: int,
    init_channels: int,
    n_cells: int,
    stem_multiplier: int,
    make_cell: MakeCell,
) -> tuple[nn.Sequential, nn.ModuleList, int]:
    """Stem and cells of a DARTS network; returns ``(stem, cells, n_features)``.

    ``make_cell`` builds each cell from its input channels (``c_pp``: the
    cell before last, ``c_p``: the last), its own channels ``c`` and whether
    it and the cell before it reduce; it returns the cell and its output
    channels. Modules are created in network order (the stem first), so the
    random initialisation depends on the seed only.
    """
    c_curr = stem_multiplier * init_channels
    stem = nn.Sequential(
        nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_curr),
    )
    c_pp, c_p, c_curr = c_curr, c_curr, init_channels
    cells = nn.ModuleList()
    reduction_prev = False
    reductions = reduction_layers(n_cells)
    for i in range(n_cells):
        reduction = i in reductions
        if reduction:
            c_curr *= 2
        cell, c_out = make_cell(i, c_pp, c_p, c_curr, reduction, reduction_prev)
        cells.append(cell)
        reduction_prev = reduction
        c_pp, c_p = c_p, c_out
    return stem, cells, c_p


def run_body(
    stem: nn.Module,
    cells: nn.ModuleList,
    x: torch.Tensor,
    run_cell: Callable[[int, nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Pooled features of ``x``: stem, every cell on its two inputs, pooling.

    ``run_cell(index, cell, s0, s1)`` computes one cell's output.
    """
    s0 = s1 = stem(x)
    for i, cell in enumerate(cells):
        s0, s1 = s1, run_cell(i, cell, s0, s1)
    return F.adaptive_avg_pool2d(s1, 1).flatten(1)
