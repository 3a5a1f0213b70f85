"""The straightforward DARTS supernet: the baseline the fast one is measured against.

This is the original formulation (Liu et al., ICLR 2019, ``model_search.py``
and ``operations.py`` of quark0/darts), written anew for current torch: every
candidate operation of every edge is computed, ``none`` included; every
convolution starts with its own ReLU; pooling is followed by a batch norm
(``MixedOp``); nothing is fused or batched. Module names follow the original
(``_ops``, ``op``, ``classifier``), so :func:`load_supernet_state` maps the
names of a :class:`skdarts.supernet.Supernet` state dict onto it.

The benchmark (``benchmarks/search_step.py``) and the equivalence test
(``tests/test_supernet_equivalence.py``) import it. Reductions need even
heights and widths, as in the original ``FactorizedReduce``.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from skdarts.spaces import get_search_space
from skdarts.supernet import reduction_layers

__all__ = ["ReferenceSupernet", "load_supernet_state", "reference_from_supernet"]


class ReLUConvBN(nn.Module):
    def __init__(self, c_in, c_out, kernel, stride, padding, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )

    def forward(self, x):
        return self.op(x)


class DilConv(nn.Module):
    def __init__(self, c_in, c_out, kernel, stride, padding, dilation, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                c_in, c_in, kernel, stride, padding, dilation, groups=c_in, bias=False
            ),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )

    def forward(self, x):
        return self.op(x)


class SepConv(nn.Module):
    def __init__(self, c_in, c_out, kernel, stride, padding, affine=True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride, padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_in, 1, bias=False),
            nn.BatchNorm2d(c_in, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, 1, padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )

    def forward(self, x):
        return self.op(x)


class Identity(nn.Module):
    def forward(self, x):
        return x


class Zero(nn.Module):
    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class Noise(nn.Module):
    """RobustDARTS' noise; zeros in evaluation mode (as skdarts)."""

    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return torch.randn_like(x) if self.training else torch.zeros_like(x)


class FactorizedReduce(nn.Module):
    def __init__(self, c_in, c_out, affine=True):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x):
        x = self.relu(x)
        out = torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1)
        return self.bn(out)


def _op(name, c, stride):
    affine = False
    if name == "none":
        return Zero(stride)
    if name == "noise":
        return Noise(stride)
    if name == "avg_pool_3x3":
        pool = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
        return nn.Sequential(pool, nn.BatchNorm2d(c, affine=False))
    if name == "max_pool_3x3":
        pool = nn.MaxPool2d(3, stride=stride, padding=1)
        return nn.Sequential(pool, nn.BatchNorm2d(c, affine=False))
    if name == "skip_connect":
        return Identity() if stride == 1 else FactorizedReduce(c, c, affine)
    if name == "sep_conv_3x3":
        return SepConv(c, c, 3, stride, 1, affine)
    if name == "sep_conv_5x5":
        return SepConv(c, c, 5, stride, 2, affine)
    if name == "dil_conv_3x3":
        return DilConv(c, c, 3, stride, 2, 2, affine)
    if name == "dil_conv_5x5":
        return DilConv(c, c, 5, stride, 4, 2, affine)
    raise ValueError(f"unknown operation {name!r}")


class MixedOp(nn.Module):
    def __init__(self, names, c, stride):
        super().__init__()
        self.names = tuple(names)
        self._ops = nn.ModuleList(_op(n, c, stride) for n in names)

    def forward(self, x, weights):
        return sum(w * op(x) for w, op in zip(weights, self._ops))


class Cell(nn.Module):
    def __init__(self, edge_ops, steps, c_pp, c_p, c, reduction, reduction_prev):
        super().__init__()
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(c_pp, c, affine=False)
        else:
            self.preprocess0 = ReLUConvBN(c_pp, c, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0, affine=False)
        self._steps = steps
        self._ops = nn.ModuleList()
        for i in range(steps):
            for j in range(2 + i):
                stride = 2 if reduction and j < 2 else 1
                self._ops.append(MixedOp(edge_ops[len(self._ops)], c, stride))

    def forward(self, s0, s1, weights):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self._steps):
            s = sum(
                self._ops[offset + j](h, weights[offset + j])
                for j, h in enumerate(states)
            )
            offset += len(states)
            states.append(s)
        return torch.cat(states[-self._steps :], dim=1)


class ReferenceSupernet(nn.Module):
    """The original DARTS search network (``Network`` of ``model_search.py``).

    Same constructor arguments as :class:`skdarts.supernet.Supernet`, and the
    same ``forward(x, arch_weights=None)``.
    """

    def __init__(
        self,
        search_space="darts",
        in_channels=1,
        n_classes=10,
        init_channels=16,
        n_cells=8,
        n_nodes=4,
        stem_multiplier=3,
    ):
        super().__init__()
        self.space = get_search_space(search_space)
        self.n_nodes = n_nodes
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
            self.cells.append(
                Cell(ops, n_nodes, c_pp, c_p, c_curr, reduction, reduction_prev)
            )
            reduction_prev = reduction
            c_pp, c_p = c_p, n_nodes * c_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, n_classes)
        n_e = len(normal_ops)
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(n_e, self.space.n_ops))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(n_e, self.space.n_ops))

    def arch_weights(self):
        return (
            F.softmax(self.alphas_normal, dim=-1),
            F.softmax(self.alphas_reduce, dim=-1),
        )

    def weight_parameters(self):
        return [p for n, p in self.named_parameters() if not n.startswith("alphas_")]

    def arch_parameters(self):
        return [self.alphas_normal, self.alphas_reduce]

    def forward(self, x, arch_weights=None):
        w_normal, w_reduce = (
            arch_weights if arch_weights is not None else self.arch_weights()
        )
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, w_reduce if cell.reduction else w_normal)
        out = self.global_pooling(s1)
        return self.classifier(out.view(out.size(0), -1))


# Our names -> the original's. Sequential indices inside the operations shift
# because the original wraps them in ``op`` and SepConv is one flat Sequential.
_SEP = {"0.1": "op.1", "0.2": "op.2", "0.3": "op.3"}
_SEP |= {"1.1": "op.5", "1.2": "op.6", "1.3": "op.7"}
_DIL = {"1": "op.1", "2": "op.2", "3": "op.3"}


def _map_key(key: str, edge_names) -> str:
    if key.startswith("head."):
        return "classifier." + key[len("head.") :]
    m = re.match(r"cells\.(\d+)\.preprocess(\d)\.([012])\.(.*)$", key)
    if m:
        c, p, idx, rest = m.groups()
        return f"cells.{c}.preprocess{p}.op.{idx}.{rest}"
    m = re.match(r"cells\.(\d+)\.edges\.(\d+)\.ops\.(\d+)\.(.*)$", key)
    if m:
        c, e, k, rest = m.groups()
        name = edge_names[int(c)][int(e)][int(k)]
        if name.startswith("sep_conv"):
            pos, _, last = rest.partition(".")
            sub, _, last = last.partition(".")
            rest = f"{_SEP[pos + '.' + sub]}.{last}"
        elif name.startswith("dil_conv"):
            pos, _, last = rest.partition(".")
            rest = f"{_DIL[pos]}.{last}"
        return f"cells.{c}._ops.{e}._ops.{k}.{rest}"
    return key


def load_supernet_state(reference: ReferenceSupernet, supernet) -> None:
    """Copy a :class:`skdarts.supernet.Supernet`'s state into ``reference``.

    Every tensor is mapped by name and loaded strictly, so a missing or
    surplus entry on either side raises.
    """
    edge_names = [[edge.op_names for edge in cell.edges] for cell in supernet.cells]
    mapped = {_map_key(k, edge_names): v for k, v in supernet.state_dict().items()}
    reference.load_state_dict(mapped, strict=True)


def reference_from_supernet(supernet) -> ReferenceSupernet:
    """A reference network computing the same function as ``supernet``."""
    cfg = supernet.config()
    keep = (
        "search_space",
        "in_channels",
        "n_classes",
        "init_channels",
        "n_cells",
        "n_nodes",
        "stem_multiplier",
    )
    ref = ReferenceSupernet(**{k: cfg[k] for k in keep})
    first = next(supernet.parameters())
    ref = ref.to(device=first.device, dtype=first.dtype)
    load_supernet_state(ref, supernet)
    ref.train(supernet.training)
    return ref
