"""The torch modules: the supernet with its alphas, the discrete derived network.

Knows the search spaces (layer below) and torch; nothing of scikit-learn or
skorch. The classifier head is a separate module (``head``) from the body
(``stem`` and ``cells``), so a supernet trained on one task can be given a
head for another class count without touching what it learned.

References
----------
.. [1] H. Liu, K. Simonyan, Y. Yang. "DARTS: Differentiable Architecture
   Search". ICLR 2019. (cells, operations, discretisation)
.. [2] A. Zela et al. "Understanding and Robustifying Differentiable
   Architecture Search". ICLR 2020. (the ``noise`` operation of space S4)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .spaces import Genotype, SearchSpace, get_search_space

__all__ = ["DerivedNetwork", "Supernet", "make_op", "reduction_layers"]


# --------------------------------------------------------------------------
# Operations
# --------------------------------------------------------------------------


class ReLUConvBN(nn.Sequential):
    """ReLU, convolution, batch norm: the DARTS pre-processing block."""

    def __init__(self, c_in, c_out, kernel, stride, padding, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU, dilated depthwise convolution, pointwise convolution, batch norm."""

    def __init__(self, c_in, c_out, kernel, stride, padding, dilation, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                c_in,
                c_in,
                kernel,
                stride,
                padding,
                dilation=dilation,
                groups=c_in,
                bias=False,
            ),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked dilation-1 :class:`DilConv` blocks, the first one strided."""

    def __init__(self, c_in, c_out, kernel, stride, padding, affine=True):
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, 1, affine),
            DilConv(c_in, c_out, kernel, 1, padding, 1, affine),
        )


class Zero(nn.Module):
    """The ``none`` operation: a zero tensor of the (strided) input's size."""

    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class Noise(nn.Module):
    """RobustDARTS' ``noise`` operation: standard normal noise, input ignored.

    In evaluation mode it returns the noise's mean (zeros) so that predictions
    are deterministic.
    """

    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.training:
            return torch.randn_like(x)
        return torch.zeros_like(x)


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset 1x1 strided convolutions.

    Unlike the original, odd heights and widths (down to 1) are handled by
    padding the offset branch, so any image size can be reduced.
    """

    def __init__(self, c_in, c_out, affine=True):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even c_out; got {c_out}.")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x):
        x = self.relu(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        out = torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1)
        return self.bn(out)


class PoolBN(nn.Sequential):
    """3x3 max or average pooling followed by batch norm (as DARTS' MixedOp)."""

    def __init__(self, kind, c, stride, affine=True):
        pool = (
            nn.MaxPool2d(3, stride=stride, padding=1)
            if kind == "max"
            else nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
        )
        super().__init__(pool, nn.BatchNorm2d(c, affine=affine))


def make_op(name: str, c: int, stride: int, affine: bool = True) -> nn.Module:
    """Build operation ``name`` for ``c`` channels and the given stride.

    Parameters
    ----------
    name : str
        One of :data:`skdarts.spaces.OPERATIONS`.
    c : int
        Channels in and out.
    stride : {1, 2}
    affine : bool
        Whether batch norms learn a scale and shift (False while searching,
        as in DARTS).

    Returns
    -------
    torch.nn.Module

    Examples
    --------
    >>> op = make_op("sep_conv_3x3", 8, stride=2)
    >>> op(torch.zeros(2, 8, 6, 6)).shape
    torch.Size([2, 8, 3, 3])
    """
    if name == "none":
        return Zero(stride)
    if name == "noise":
        return Noise(stride)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine)
    if name in ("max_pool_3x3", "avg_pool_3x3"):
        return PoolBN(name[:3], c, stride, affine)
    if name.startswith("sep_conv_"):
        k = int(name[-1])
        return SepConv(c, c, k, stride, k // 2, affine)
    if name.startswith("dil_conv_"):
        k = int(name[-1])
        return DilConv(c, c, k, stride, k // 2 * 2, 2, affine)
    raise ValueError(f"unknown operation {name!r}.")


def reduction_layers(n_cells: int) -> tuple[int, ...]:
    """Indices of the reduction cells: at 1/3 and 2/3 of the depth (DARTS).

    Examples
    --------
    >>> reduction_layers(8)
    (2, 5)
    """
    return tuple(sorted({n_cells // 3, 2 * n_cells // 3}))


def _edge_offsets(n_nodes: int) -> list[int]:
    offsets, start = [], 0
    for j in range(n_nodes):
        offsets.append(start)
        start += j + 2
    return offsets


# --------------------------------------------------------------------------
# Supernet
# --------------------------------------------------------------------------


class MixedEdge(nn.Module):
    """All candidate operations of one edge, mixed by architecture weights."""

    def __init__(self, op_names, c, stride):
        super().__init__()
        self.op_names = tuple(op_names)
        self.ops = nn.ModuleList(make_op(n, c, stride, affine=False) for n in op_names)
        # "none" contributes exactly zero whatever its weight: skip computing it.
        self._active = [i for i, n in enumerate(op_names) if n != "none"]

    def forward(self, x, weights):
        out = None
        for i in self._active:
            y = weights[i] * self.ops[i](x)
            out = y if out is None else out + y
        return out


class _Preprocess(nn.Module):
    def __init__(self, c_pp, c_p, c, reduction_prev, affine):
        super().__init__()
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(c_pp, c, affine)
        else:
            self.preprocess0 = ReLUConvBN(c_pp, c, 1, 1, 0, affine)
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0, affine)


class SearchCell(_Preprocess):
    """A supernet cell: every edge mixes all its candidate operations."""

    def __init__(self, edge_ops, n_nodes, c_pp, c_p, c, reduction, reduction_prev):
        super().__init__(c_pp, c_p, c, reduction_prev, affine=False)
        self.reduction = reduction
        self.n_nodes = n_nodes
        self.edges = nn.ModuleList()
        for j in range(n_nodes):
            for i in range(j + 2):
                stride = 2 if reduction and i < 2 else 1
                self.edges.append(MixedEdge(edge_ops[len(self.edges)], c, stride))

    def forward(self, s0, s1, weights):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        e = 0
        for j in range(self.n_nodes):
            node = None
            for i, h in enumerate(states):
                out = self.edges[e + i](h, weights[e + i])
                node = out if node is None else node + out
            e += j + 2
            states.append(node)
        return torch.cat(states[2:], dim=1)


class Supernet(nn.Module):
    """A DARTS supernet: cells of mixed operations weighted by alphas.

    Parameters
    ----------
    search_space : str or SearchSpace, default="darts"
    in_channels : int, default=1
        Image channels; the stem accepts any count.
    n_classes : int, default=10
    init_channels : int, default=16
        Channels of the first cell (``C`` in DARTS).
    n_cells : int, default=8
        Cells; reductions at 1/3 and 2/3 of the depth.
    n_nodes : int, default=4
        Intermediate nodes per cell.
    stem_multiplier : int, default=3

    Attributes
    ----------
    alphas_normal, alphas_reduce : torch.nn.Parameter of shape (n_edges, n_ops)
        Architecture weights; registered parameters, so they are part of
        ``state_dict()`` and move with ``.to(device)``.
    head : torch.nn.Linear
        The classifier, separate from the body so :meth:`reset_head` can
        rebuild it for another task.

    Examples
    --------
    >>> net = Supernet("s2", in_channels=1, n_classes=3, init_channels=4,
    ...                n_cells=3, n_nodes=2)
    >>> net(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 3])
    >>> "alphas_normal" in net.state_dict()
    True
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
        self.in_channels = int(in_channels)
        self.n_classes = int(n_classes)
        self.init_channels = int(init_channels)
        self.n_cells = int(n_cells)
        self.n_nodes = int(n_nodes)
        self.stem_multiplier = int(stem_multiplier)
        normal_ops = self.space.edge_ops("normal", n_nodes)
        reduce_ops = self.space.edge_ops("reduce", n_nodes)

        c_curr = stem_multiplier * init_channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_curr),
        )
        c_pp, c_p, c_curr = c_curr, c_curr, init_channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        reductions = reduction_layers(n_cells)
        for i in range(n_cells):
            reduction = i in reductions
            if reduction:
                c_curr *= 2
            ops = reduce_ops if reduction else normal_ops
            cell = SearchCell(
                ops, n_nodes, c_pp, c_p, c_curr, reduction, reduction_prev
            )
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, n_nodes * c_curr
        self.n_features = c_p
        self.head = nn.Linear(c_p, n_classes)

        n_e = len(normal_ops)
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(n_e, self.space.n_ops))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(n_e, self.space.n_ops))

    # -- configuration ------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """Constructor arguments, JSON-ready (``Supernet(**config())`` rebuilds it)."""
        return {
            "search_space": self.space.name,
            "in_channels": self.in_channels,
            "n_classes": self.n_classes,
            "init_channels": self.init_channels,
            "n_cells": self.n_cells,
            "n_nodes": self.n_nodes,
            "stem_multiplier": self.stem_multiplier,
        }

    # -- parameters ---------------------------------------------------------

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture weights (alphas)."""
        return [self.alphas_normal, self.alphas_reduce]

    def named_weight_parameters(self):
        """(name, parameter) pairs of everything but the alphas."""
        for name, p in self.named_parameters():
            if not name.startswith("alphas_"):
                yield name, p

    def weight_parameters(self) -> list[nn.Parameter]:
        """The operations', stem's and head's parameters (not the alphas)."""
        return [p for _, p in self.named_weight_parameters()]

    def arch_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax of the alphas, per edge: the mixing weights of each cell type."""
        return (
            F.softmax(self.alphas_normal, dim=-1),
            F.softmax(self.alphas_reduce, dim=-1),
        )

    def reset_head(self, n_classes: int) -> None:
        """Replace the classifier with a fresh one for ``n_classes`` classes."""
        device = self.head.weight.device
        self.head = nn.Linear(self.n_features, int(n_classes)).to(device)
        self.n_classes = int(n_classes)

    # -- forward ------------------------------------------------------------

    def features(self, x: torch.Tensor, arch_weights=None) -> torch.Tensor:
        """Pooled body features, shape (n, ``n_features``).

        Parameters
        ----------
        x : torch.Tensor of shape (n, in_channels, h, w)
        arch_weights : pair of tensors, optional
            Mixing weights (normal, reduce) to use instead of the alphas'
            softmax; the search uses this to perturb them (SmoothDARTS).
        """
        w_normal, w_reduce = (
            arch_weights if arch_weights is not None else self.arch_weights()
        )
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, w_reduce if cell.reduction else w_normal)
        return F.adaptive_avg_pool2d(s1, 1).flatten(1)

    def forward(self, x: torch.Tensor, arch_weights=None) -> torch.Tensor:
        """Class logits, shape (n, ``n_classes``)."""
        return self.head(self.features(x, arch_weights))

    # -- discretisation -----------------------------------------------------

    def genotype(self) -> Genotype:
        """The discrete architecture the alphas currently favour.

        As DARTS: per node, the two incoming edges whose strongest operation
        other than ``none`` is strongest, each with that operation.
        """
        w_normal, w_reduce = (w.detach().cpu() for w in self.arch_weights())
        return Genotype(
            normal=self._parse(w_normal, "normal"),
            normal_concat=tuple(range(2, 2 + self.n_nodes)),
            reduce=self._parse(w_reduce, "reduce"),
            reduce_concat=tuple(range(2, 2 + self.n_nodes)),
            search_space=self.space.name,
        )

    def _parse(self, weights: torch.Tensor, cell_type: str):
        edge_ops = self.space.edge_ops(cell_type, self.n_nodes)
        chosen = []
        for j, start in enumerate(_edge_offsets(self.n_nodes)):
            candidates = []
            for i in range(j + 2):
                names = edge_ops[start + i]
                best = max(
                    (k for k, n in enumerate(names) if n != "none"),
                    key=lambda k, e=start + i: float(weights[e, k]),
                    default=None,
                )
                if best is not None:
                    candidates.append(
                        (float(weights[start + i, best]), -i, names[best], i)
                    )
            candidates.sort(reverse=True)
            chosen.extend((name, i) for _, _, name, i in candidates[:2])
            if len(candidates) < 2:  # only possible with an all-"none" space
                raise ValueError(f"node {j} has fewer than two non-'none' edges.")
        return tuple(chosen)


# --------------------------------------------------------------------------
# Derived (discrete) network
# --------------------------------------------------------------------------


class DerivedCell(_Preprocess):
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
        c_curr = stem_multiplier * init_channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_curr),
        )
        c_pp, c_p, c_curr = c_curr, c_curr, init_channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        reductions = reduction_layers(n_cells)
        for i in range(n_cells):
            reduction = i in reductions
            if reduction:
                c_curr *= 2
                edges, concat = genotype.reduce, genotype.reduce_concat
            else:
                edges, concat = genotype.normal, genotype.normal_concat
            self.cells.append(
                DerivedCell(edges, concat, c_pp, c_p, c_curr, reduction, reduction_prev)
            )
            reduction_prev = reduction
            c_pp, c_p = c_p, len(concat) * c_curr
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
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return F.adaptive_avg_pool2d(s1, 1).flatten(1)

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
        offsets = _edge_offsets(supernet.n_nodes)
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
