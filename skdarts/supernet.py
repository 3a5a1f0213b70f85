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

import contextlib
import math
import numbers
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

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


def _check_options(partial_channels, checkpointing, amp, compile_cells):
    if (
        not isinstance(partial_channels, numbers.Integral)
        or isinstance(partial_channels, bool)
        or partial_channels < 1
    ):
        raise ValueError(
            "partial_channels must be an integer >= 1 (1 = all channels); got "
            f"{partial_channels!r}."
        )
    for name, value in (
        ("checkpointing", checkpointing),
        ("compile_cells", compile_cells),
    ):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False; got {value!r}.")
    if amp not in (None, "bf16", "fp16"):
        raise ValueError(f"amp must be None, 'bf16' or 'fp16'; got {amp!r}.")


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


# (kernel, dilation) of the depthwise convolutions of each convolution.
_CONV_OPS = {
    "sep_conv_3x3": (3, 1),
    "sep_conv_5x5": (5, 1),
    "dil_conv_3x3": (3, 2),
    "dil_conv_5x5": (5, 2),
}


# Elements of one product of fused kernels on the CPU (see kernel_chunks).
_CPU_PRODUCT = 2**18

# Smallest channels x kernel area, and smallest batch x output pixels, from
# which a convolution stage runs unfused on the CPU (see _unfused). Measured
# at 2 threads, forward and backward, four edges per stage: the fused dense
# convolution wins up to 16 channels (5x5 included), the two are level at 32
# channels 3x3, and unfused wins from 32 channels 5x5 (by about 1.5x, 64 x
# 16 x 16 outputs) and 64 channels 3x3 (by 1.3-2x, 64 x 8 x 8); but on small
# tensors (32 x 4 x 4 outputs: the "tiny" step's last cells) the extra
# operations cost more than the arithmetic saved.
_CPU_UNFUSED_FROM = 576
_CPU_UNFUSED_PIXELS = 2048

# Least ratio of the fused to the unfused arithmetic from which a stage runs
# unfused elsewhere than on the CPU (see _unfused).
_ARITHMETIC_RATIO = 6.0


def _unfused(c, k, device_type, pixels):
    """Whether a depthwise-pointwise stage of ``c`` channels, kernel ``k``,
    ``pixels`` outputs per channel (batch x height x width) runs as the two
    convolutions rather than one with their product as kernel.

    The fused convolution does ``c * k * k`` multiply-adds per output, the
    two ``k * k + c``. On the CPU the choice is the measured one (see
    ``_CPU_UNFUSED_FROM``): oneDNN's depthwise convolutions (and the copies
    around them) cost far more than their arithmetic, so fusing wins on the
    narrow stages. On GPUs nothing could be measured here, so the choice is
    by arithmetic: unfused when it saves at least 5/6 of the multiply-adds
    (5x5 from 8 channels, 3x3 from 32); below that, the unfused stage's
    extra two or three launches are likely to cost more than the arithmetic
    saved (a small step there costs what it launches).
    """
    if device_type == "cpu":
        return c * k * k >= _CPU_UNFUSED_FROM and pixels >= _CPU_UNFUSED_PIXELS
    return c * k * k >= _ARITHMETIC_RATIO * (k * k + c)


def _lerp_all(tensors, ends, weight):
    # Inductor (torch 2.11, CUDA) generated invalid Triton code for fused
    # foreach kernels inside a compiled cell: plain loops when compiling.
    if torch.compiler.is_compiling():
        for t, e in zip(tensors, ends):
            t.lerp_(e, weight)
    else:
        torch._foreach_lerp_(tensors, ends, weight)


def _add_all(tensors, value):
    if torch.compiler.is_compiling():
        for t in tensors:
            t.add_(value)
    else:
        torch._foreach_add_(tensors, value)


class _StatePlan:
    """What a cell computes on one of its states, edges batched by operation.

    ``edges`` are the (position, edge index, node) of the edges leaving the
    state; ``groups`` maps each operation name to its branches, the
    (position, edge index, operation index) triples that use it.

    A plan may cover the two cell inputs at once (``n_in`` = 2: both exist
    from the start and their edges go to the same nodes): the input is then
    both states concatenated, and every convolution is grouped by state.
    Branches are in state order, and ``by_state`` splits them per state.
    """

    def __init__(self, i, edges, edge_ops, stride, n_in=1):
        self.i = i
        self.last = i + n_in - 1  # the last state covered
        self.n_in = n_in
        self.stride = stride
        self.edges = edges
        self.groups = {}
        self.by_state = {}
        per_state = len(edges) // n_in
        for g in range(n_in):
            for p, e, _ in edges[g * per_state : (g + 1) * per_state]:
                for q, name in enumerate(edge_ops[e]):
                    self.groups.setdefault(name, []).append((p, e, q))
                    self.by_state.setdefault(name, [[] for _ in range(n_in)])
                    self.by_state[name][g].append((p, e, q))
        self.conv_types = [n for n in _CONV_OPS if n in self.groups]
        self.reduce_skip = stride == 2 and "skip_connect" in self.groups
        self.pools = [n for n in ("max_pool_3x3", "avg_pool_3x3") if n in self.groups]
        self.needs_relu = bool(self.conv_types) or self.reduce_skip

    def columns(self, training):
        """Branches of each column of the normalised outputs of the state.

        Columns are what :meth:`SearchCell._state` mixes with one matrix
        product: each convolution branch, each factorized reduction, and
        each pooling (in training its batch norms agree on all its edges:
        one column shared by all its branches; in evaluation one per branch).
        """
        out = [[b] for name in self.conv_types for b in self.groups[name]]
        if self.reduce_skip:
            out += [[b] for b in self.groups["skip_connect"]]
        for name in self.pools:
            if training:
                out += self.by_state[name]
            else:
                out += [[b] for b in self.groups[name]]
        return out

    @staticmethod
    def joinable(edge_ops, edges0, edges1):
        """Whether the plans of states 0 and 1 can run as one (same branches)."""
        return all(edge_ops[a[1]] == edge_ops[b[1]] for a, b in zip(edges0, edges1))

    def terms(self, training):
        """(key, branches) of what is mixed outside the matrix product."""
        out = []
        if "skip_connect" in self.groups and self.stride == 1:
            # The state itself, per state: (edges, states) weights.
            out.append(("skip", self.by_state["skip_connect"]))
        if "noise" in self.groups and training:
            out.append(("noise", self.groups["noise"]))
        return out


class _CellLayout:
    """Where a cell's forward finds its kernels, statistics and mixing weights.

    Worked out once, so that a forward gathers each kind of thing of the whole
    cell with a few operations instead of a few per state:

    - ``bns``: every batch norm of the cell, in the order of the evaluation
      normalisation calls (``eval_calls`` maps a call to its index,
      ``eval_sizes`` gives its channels). In evaluation a forward
      concatenates all running statistics and normalises with views of them.
      In training each state normalises everything it mixes in one call (of
      ``train_calls``), without running statistics; at the end one update
      from all batch statistics (``chan_map``: where each running statistic
      finds its batch statistic) covers the whole cell.
    - ``kernels``: per depthwise kernel size, the (pointwise, depthwise)
      modules of every convolution stage of the cell in call order, the
      calls, and their edge counts. :meth:`kernel_split` parts them into
      fused and unfused stages; a forward stacks each kind of module of each
      part once and multiplies the fused ones in as few products as
      :meth:`kernel_chunks` says.
    - ``mixing``: per mode (training or not), the flat indices into the
      (zero-padded) mixing weights of every mixing matrix or vector of every
      state, gathered at once; ``entries`` maps (state, key) to its slice and
      matrix shape (None for a per-edge vector).
    """

    def __init__(self, cell):
        self.bns, self.eval_calls, self.eval_sizes = [], {}, []
        self.train_calls, self.train_sizes, chan_map = {}, [], []
        kernels = {3: ([], [], [], []), 5: ([], [], [], [])}
        pre = [
            m.bn if isinstance(m, FactorizedReduce) else m[2]
            for m in (cell.preprocess0, cell.preprocess1)
        ]
        # Both pre-processing batch norms as one call when the inputs are one plan.
        pre_keys = ["pre"] if cell.plans[0].n_in == 2 else [("pre", 0), ("pre", 1)]
        groups = [pre] if len(pre_keys) == 1 else [pre[:1], pre[1:]]
        for key, bns in zip(pre_keys, groups):
            self._eval_call(key, bns)
            size = sum(b.num_features for b in bns)
            start = self._train_call(key, size)
            chan_map.extend(range(start, start + size))
        for plan in cell.plans:
            final = []  # batch norms of the state's joint normalisation
            for name in plan.conv_types:
                branches = plan.groups[name]
                pws, dws, keys, counts = kernels[_CONV_OPS[name][0]]
                for stage in (0, 1) if name.startswith("sep") else (0,):
                    stages = [cell._conv_stage(e, q, stage) for _, e, q in branches]
                    dws.extend(s[0] for s in stages)
                    pws.extend(s[1] for s in stages)
                    keys.append((plan.i, name, stage))
                    counts.append(len(stages))
                bns = [s[2] for s in stages]
                if name.startswith("sep"):
                    first = [cell._conv_stage(e, q, 0)[2] for _, e, q in branches]
                    self._eval_call((plan.i, name), first)
                    size = sum(b.num_features for b in first)
                    start = self._train_call((plan.i, name), size)
                    chan_map.extend(range(start, start + size))
                final.extend(bns)
            if plan.reduce_skip:
                mods = [cell.edges[e].ops[q] for _, e, q in plan.groups["skip_connect"]]
                final.extend(m.bn for m in mods)
            if not final and not plan.pools:
                continue
            size = sum(b.num_features for b in final)
            c_pool = cell.c_op * plan.n_in  # a pooling's channels, all states
            start = self._train_call((plan.i, "final"), size + c_pool * len(plan.pools))
            if final:
                self._eval_call((plan.i, "final"), final)
                chan_map.extend(range(start, start + size))
            for slot, name in enumerate(plan.pools):
                mods = [cell.edges[e].ops[q][1] for _, e, q in plan.groups[name]]
                self._eval_call((plan.i, name), mods)
                for g, branches in enumerate(plan.by_state[name]):
                    offset = start + size + slot * c_pool + g * cell.c_op
                    for _ in branches:
                        chan_map.extend(range(offset, offset + cell.c_op))
        self.chan_map = chan_map
        self.kernels = [v for v in kernels.values() if v[0]]
        self._chunks = {}
        self.bn_sizes = [b.num_features for b in self.bns]
        self.split_sizes = self.eval_sizes * 2
        self.n_eval_calls = len(self.eval_sizes)
        self.mixing, self.entries = {}, {}
        pad = len(cell.edges) * cell.n_ops
        for training in (True, False):
            flat, entries = [], {}
            for plan in cell.plans:
                n_e = len(plan.edges) // plan.n_in  # rows: the nodes fed
                columns = plan.columns(training)
                if columns:
                    # Entry (edge position, column) of the mixing matrix: the
                    # weight of the column's branch on that edge, else zero.
                    t = len(columns)
                    index = [pad] * (n_e * t)
                    for col, branches in enumerate(columns):
                        for p, e, q in branches:
                            index[p * t + col] = e * cell.n_ops + q
                    entries[plan.i, "columns"] = (len(flat), (n_e, t))
                    flat.append(index)
                for key, branches in plan.terms(training):
                    if key == "skip":
                        # (edges, states): state g's own branch on each edge.
                        index, shape = [pad] * (n_e * plan.n_in), (n_e, -1)
                        for g, of_state in enumerate(branches):
                            for p, e, q in of_state:
                                index[p * plan.n_in + g] = e * cell.n_ops + q
                        if plan.n_in == 1:
                            shape = None  # a per-edge weight
                    elif [b[0] for b in branches] == list(range(n_e)):
                        # At most one branch per edge: a per-edge weight.
                        index, shape = [pad] * n_e, None
                        for p, e, q in branches:
                            index[p] = e * cell.n_ops + q
                    else:
                        index, shape = [pad] * (n_e * len(branches)), (n_e, -1)
                        for b, (p, e, q) in enumerate(branches):
                            index[p * len(branches) + b] = e * cell.n_ops + q
                    entries[plan.i, key] = (len(flat), shape)
                    flat.append(index)
            self.mixing[training] = flat
            self.entries[training] = entries

    def kernel_split(self, g, device_type, pixels=0):
        """Group ``g``'s calls split by :func:`_unfused`: (fused, unfused).

        Each part is (pointwise modules, depthwise modules, keys, edge counts)
        in call order. ``pixels``: batch x height x width of the outputs.
        """
        ck = ("split", g, device_type, pixels)
        if ck not in self._chunks:
            pws, dws, keys, counts = self.kernels[g]
            c, k = pws[0].weight.shape[1], dws[0].weight.shape[-1]
            parts = ([], [], [], []), ([], [], [], [])
            start = 0
            for key, count in zip(keys, counts):
                part = parts[_unfused(c, k, device_type, pixels)]
                part[0].extend(pws[start : start + count])
                part[1].extend(dws[start : start + count])
                part[2].append(key)
                part[3].append(count)
                start += count
            self._chunks[ck] = parts
        return self._chunks[ck]

    def kernel_chunks(self, g, device_type, pixels=0):
        """How to multiply the fused kernels of group ``g``:
        [(edges, keys, channels)] (``pixels``: see :meth:`kernel_split`).

        On GPUs one product per group (a step there costs what it launches).
        On the CPU, products of at most ``_CPU_PRODUCT`` elements, so that
        the product and its backward stay in cache (measured: one product of
        a whole cell is up to 2x slower than per call with 64 channels, and
        up to 2x faster with 8 to 16).
        """
        ck = (g, device_type, pixels)
        if ck not in self._chunks:
            pws, dws, keys, counts = self.kernel_split(g, device_type, pixels)[0]
            if not pws:
                self._chunks[ck] = []
                return []
            size = pws[0].weight[0].numel() * dws[0].weight.numel()
            limit = _CPU_PRODUCT if device_type == "cpu" else float("inf")
            chunks = []
            for key, count in zip(keys, counts):
                if not chunks or (chunks[-1][0] + count) * size > limit:
                    chunks.append([0, [], []])
                chunks[-1][0] += count
                chunks[-1][1].append(key)
                chunks[-1][2].append(count * pws[0].weight.shape[0])
            self._chunks[ck] = chunks
        return self._chunks[ck]

    def factor(self, counts, dtype):
        """Per batch statistic, n / (n - 1) for the ``counts`` of each call."""
        return torch.cat(
            [
                torch.full((size,), count / max(count - 1, 1), dtype=dtype)
                for size, count in zip(self.train_sizes, counts)
            ]
        )

    def _eval_call(self, key, modules):
        self.eval_calls[key] = len(self.eval_sizes)
        self.eval_sizes.append(sum(m.num_features for m in modules))
        self.bns.extend(modules)

    def _train_call(self, key, size):
        self.train_calls[key] = len(self.train_sizes)
        start = sum(self.train_sizes)
        self.train_sizes.append(size)
        return start


class SearchCell(_Preprocess):
    """A supernet cell: every edge mixes all its candidate operations.

    The parameters live in one :class:`MixedEdge` per edge (so the state dict
    names every operation as the original DARTS does), but the forward pass
    batches the work per input state: the ReLU every convolution starts with
    is computed once per state; each depthwise-pointwise pair runs either as
    one dense convolution with their product as kernel (narrow stages, where
    it is faster) or as the two convolutions (wide ones, where the product
    multiplies the arithmetic; :func:`_unfused` chooses per device), and
    those of all edges leaving a state run batched per kind of operation;
    pooling is
    computed once per state; ``none`` is not computed. In training, all
    outputs of a state that end in a batch norm are normalised in one call
    (pooling once: all edges' batch norms of it agree), and mixed into the
    edges by one matrix product.

    On small tensors (and on GPUs) a step costs what it dispatches, not what
    it computes, so what does not depend on a state is done once per cell
    forward (see :class:`_CellLayout`): all fused kernels in a few products,
    all mixing weights in one gather, all running statistics in one update.
    """

    def __init__(
        self,
        edge_ops,
        n_nodes,
        c_pp,
        c_p,
        c,
        reduction,
        reduction_prev,
        partial_channels=1,
        join_inputs=True,
    ):
        super().__init__(c_pp, c_p, c, reduction_prev, affine=False)
        self.reduction = reduction
        self.n_nodes = n_nodes
        self.c = c
        self.k = int(partial_channels)
        self.c_op = c // self.k
        self.edges = nn.ModuleList()
        for j in range(n_nodes):
            for i in range(j + 2):
                stride = 2 if reduction and i < 2 else 1
                self.edges.append(
                    MixedEdge(edge_ops[len(self.edges)], self.c_op, stride)
                )
        self.n_ops = len(edge_ops[0])
        offsets = _edge_offsets(n_nodes)
        self.plans = []
        edges = []
        for i in range(n_nodes + 1):
            first = max(i - 1, 0)
            edges.append(
                [(p, offsets[j] + i, j) for p, j in enumerate(range(first, n_nodes))]
            )
        stride = 2 if reduction else 1
        joinable = _StatePlan.joinable(edge_ops, edges[0], edges[1])
        if join_inputs and self.k == 1 and joinable:
            # The two inputs' edges as one plan (PC-DARTS slices each input).
            self.plans.append(_StatePlan(0, edges[0] + edges[1], edge_ops, stride, 2))
        else:
            self.plans += [_StatePlan(i, edges[i], edge_ops, stride) for i in (0, 1)]
        self.plans += [
            _StatePlan(i, edges[i], edge_ops, 1) for i in range(2, n_nodes + 1)
        ]
        self._layout = _CellLayout(self)
        self._index_cache = {}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_index_cache"] = {}  # device tensors, rebuilt on demand
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "_layout" not in state:  # pickled before the layout existed
            self._layout = _CellLayout(self)
        self._index_cache = {}

    def _cached(self, key, device, make):
        """A constant tensor on ``device``, built once by ``make()`` on the CPU."""
        ck = (key, str(device))
        if ck not in self._index_cache:
            self._index_cache[ck] = make().to(device)
        return self._index_cache[ck]

    def forward(self, s0, s1, weights, edge_scale=None, update=True):
        lay = self._layout
        training = self.training
        ctx = _Forward(lay, training)
        if not training:
            # All running statistics in one tensor, normalising with views.
            stats = [b.running_mean for b in lay.bns] + [b.running_var for b in lay.bns]
            ctx.views = torch.cat(stats).split(lay.split_sizes)
        ctx.kernels = {}
        device_type = s1.device.type
        stride = 2 if self.reduction else 1
        # Outputs per channel of every convolution (shapes only: static).
        pixels = s1.shape[0] * -(-s1.shape[2] // stride) * -(-s1.shape[3] // stride)
        for g in range(len(lay.kernels)):
            split = lay.kernel_split(g, device_type, pixels)
            (pws, dws, _, _), unfused = split
            if unfused[0]:
                # Per call: (pointwise (edges, out, in, 1, 1), depthwise
                # (edges, in, 1, k, k)), the unfused stage's weights.
                pw = torch.stack([m.weight for m in unfused[0]]).split(unfused[3])
                dw = torch.stack([m.weight for m in unfused[1]]).split(unfused[3])
                ctx.kernels.update(zip(unfused[2], zip(pw, dw)))
            if not pws:
                continue
            pw = torch.stack([m.weight for m in pws])  # (b, out, in, 1, 1)
            dw = torch.stack([m.weight for m in dws]).transpose(1, 2)  # (b,1,in,k,k)
            chunks = lay.kernel_chunks(g, device_type, pixels)
            if len(chunks) > 1:
                pairs = zip(
                    pw.split([c[0] for c in chunks]), dw.split([c[0] for c in chunks])
                )
            else:
                pairs = [(pw, dw)]
            for (a, b), (_, keys, sizes) in zip(pairs, chunks):
                # pointwise (out, in) times depthwise (in, k, k): fused kernels.
                fused = (a * b).flatten(0, 1)
                if len(keys) == 1:
                    ctx.kernels[keys[0]] = fused
                else:
                    ctx.kernels.update(zip(keys, fused.split(sizes)))
        if edge_scale is not None:
            weights = weights * edge_scale[:, None]
        # The mixing weights of every state, zero where a branch is absent.
        index = self._cached(
            ("mixing", training),
            weights.device,
            lambda: torch.tensor([i for ix in lay.mixing[training] for i in ix]),
        )
        padded = F.pad(weights.reshape(-1, 1), (0, 0, 0, 1))
        ctx.mixing = padded.index_select(0, index).split(
            [len(ix) for ix in lay.mixing[training]]
        )

        if self.plans[0].n_in == 2:
            # Both inputs in one tensor: the first plan's input.
            x = torch.cat(
                [self._preprocess(m, s) for m, s in zip(self._pre(), (s0, s1))], 1
            )
            states = [ctx.norm("pre", x), None]
            del x  # kept by the batch norm's backward only (memory)
        else:
            states = [
                ctx.norm(("pre", p), self._preprocess(m, s))
                for p, (m, s) in enumerate(zip(self._pre(), (s0, s1)))
            ]
        bypass = [None] * self.n_nodes
        pending = None  # mixed sums of the nodes not complete yet
        for plan in self.plans:
            h = states[plan.i]
            pending, passed = self._state(plan, h, ctx, pending)
            if passed is not None:
                for _, e, j in plan.edges:
                    t = passed * edge_scale[e]
                    bypass[j] = t if bypass[j] is None else bypass[j] + t
            if plan.last >= 1:
                # Node j's last input is state j + 1: it is complete now.
                j = plan.last - 1
                node, pending = pending.split([1, pending.shape[1] - 1], 1)
                # A copy: a view would keep all rows of the sums alive for as
                # long as the node is (the backward pass keeps states).
                node = node.contiguous().view(ctx.node_shape)
                if bypass[j] is not None:
                    node = _channel_shuffle(torch.cat([node, bypass[j]], 1), self.k)
                states.append(node)
        if training and update:
            # Only now, and only when ``update`` is true (a cell recomputed by
            # checkpointing must not count a batch twice, and must run the
            # very same operations as the first time).
            with torch.no_grad():
                self._update_statistics(ctx)
        return torch.cat(states[2:], dim=1)

    def _update_statistics(self, ctx):
        """Running statistics of all batch norms of the cell, from the batch's.

        Each normalisation in training kept its batch mean and inverse
        standard deviation; one update, as :class:`torch.nn.BatchNorm2d`
        does it (unbiased variance, ``momentum``), covers them all.
        """
        lay = self._layout
        bn = lay.bns[0]
        dtype = bn.running_mean.dtype
        mean = torch.cat([b[0] for b in ctx.batch])
        invstd = torch.cat([b[1] for b in ctx.batch])
        if mean.dtype != dtype:
            mean, invstd = mean.to(dtype), invstd.to(dtype)
        counts = tuple(b[2] for b in ctx.batch)
        factor = self._cached(
            ("factor", counts, dtype), mean.device, lambda: lay.factor(counts, dtype)
        )
        var = (invstd.pow(-2) - bn.eps) * factor
        chan_map = self._cached(
            "chan_map", mean.device, lambda: torch.tensor(lay.chan_map)
        )
        # Row 0: every running mean's batch mean, row 1: variances.
        new = torch.stack([mean, var]).index_select(1, chan_map)
        buffers = [b.running_mean for b in lay.bns] + [b.running_var for b in lay.bns]
        _lerp_all(buffers, new.view(-1).split(lay.bn_sizes * 2), bn.momentum)
        _add_all([b.num_batches_tracked for b in lay.bns], 1)

    def _pre(self):
        return self.preprocess0, self.preprocess1

    def _preprocess(self, module, x):
        """A pre-processing block, before its batch norm."""
        if isinstance(module, FactorizedReduce):
            return self._factorized_reduce([module], F.relu(x))
        conv = module[1]
        return F.conv2d(F.relu(x), conv.weight, None, conv.stride, conv.padding)

    def _factorized_reduce(self, modules, r, groups=1):
        """FactorizedReduce of several edges on one ReLU'd input, batched.

        Returns shape ``(n, len(modules) * c, h', w')``, edge by edge, before
        the batch norm. With ``groups`` > 1, ``r`` holds that many states and
        the modules are theirs, in state order.
        """
        n = r.shape[0]
        w1 = torch.cat([m.conv_1.weight for m in modules])
        w2 = torch.cat([m.conv_2.weight for m in modules])
        a = _conv_by_state(r, w1, 2, 0, 1, groups)
        b = _conv_by_state(F.pad(r, (0, 1, 0, 1))[:, :, 1:, 1:], w2, 2, 0, 1, groups)
        half = modules[0].conv_1.out_channels
        shape = (n, len(modules), 1, half, a.shape[2], a.shape[3])
        return torch.cat([a.view(shape), b.view(shape)], dim=2).flatten(1, 3)

    def _state(self, plan, h, ctx, pending):
        """Add the mixed outputs of the edges leaving ``h`` to ``pending``.

        Returns the sums, shape (n, edges, c * h' * w'), of the nodes these
        edges go to (``pending``, those of the nodes not complete yet, first
        in every sum), and with PC-DARTS the channels bypassing the edges.
        """
        s = plan.stride
        passed = None
        if self.k > 1:
            # PC-DARTS: only the first c/k channels go through the operations.
            passed = h[:, self.c_op :]
            if s == 2:
                passed = F.max_pool2d(passed, 2, 2, ceil_mode=True)
            h = h[:, : self.c_op]
        n = h.shape[0]
        training = ctx.training
        c = h.shape[1] // plan.n_in
        # -(-a // s): the ceiling of a / s, the output size of every operation.
        ctx.node_shape = (n, c, -(-h.shape[2] // s), -(-h.shape[3] // s))
        size = math.prod(ctx.node_shape[1:])
        raw = []  # outputs that end in a batch norm, in column order
        r = F.relu(h) if plan.needs_relu else None
        ctx.r_cl = None  # r channels-last, made once for all unfused stages
        for name in plan.conv_types:
            raw.append(self._conv(plan, name, r, ctx))
        if plan.reduce_skip:
            mods = [self.edges[e].ops[q] for _, e, q in plan.groups["skip_connect"]]
            raw.append(self._factorized_reduce(mods, r, plan.n_in))
        pools = [(name, _pool(h, name[:3], s)) for name in plan.pools]
        columns = []
        if training:
            raw += [x for _, x in pools]
            pools = []
        if raw:
            x = raw[0] if len(raw) == 1 else torch.cat(raw, 1)
            # Only the concatenation lives on (in the batch norm's backward):
            # drop the parts now, before the mixing allocates (peak memory).
            raw.clear()
            columns.append(ctx.norm((plan.i, "final"), x).view(n, -1, size))
            del x
        if not training:
            columns += [
                ctx.pool_eval(plan.i, name, x, plan.n_in).reshape(n, -1, size)
                for name, x in pools
            ]
        out = pending
        entries = ctx.layout.entries[training]
        if columns:
            y = columns[0] if len(columns) == 1 else torch.cat(columns, 1)
            columns.clear()
            slot, shape = entries[plan.i, "columns"]
            m = ctx.mixing[slot].view(shape)
            t = _mix(m if m.dtype == y.dtype else m.to(y.dtype), y)
            out = t if out is None else out + t
        for key, branches in plan.terms(training):
            if key == "skip":
                y = h.reshape(n, plan.n_in, size)
            else:
                shape = (n, len(branches), *ctx.node_shape[1:])
                y = torch.randn(shape, device=h.device, dtype=h.dtype).view(n, -1, size)
            slot, shape = entries[plan.i, key]
            m = ctx.mixing[slot]
            if m.dtype != y.dtype:
                m = m.to(y.dtype)
            if shape is None:
                # One branch per edge (or one shared by all edges): a
                # broadcast multiply-add.
                out = y * m if out is None else torch.addcmul(out, y, m)
            else:
                t = _mix(m.view(shape), y)
                out = t if out is None else out + t
        if out is None:
            out = h.new_zeros(n, len(plan.edges) // plan.n_in, size)
        return out, passed

    def _conv(self, plan, name, r, ctx):
        """One kind of convolution on all edges leaving a state, before its last
        batch norm: (n, edges * c, h', w').

        A depthwise convolution followed by a pointwise one is one dense
        convolution whose kernel is their product. On narrow stages the dense
        convolution is 2-3x faster than the depthwise one (measured on the
        CPU with 8 channels, forward and backward), and the intermediate
        tensor is never stored. So each kind of convolution on a state is one
        dense convolution over all its edges, plus, for separable ones, one
        grouped convolution for all their second halves. On wide stages (see
        :func:`_unfused`), where the product costs ``c`` times the depthwise
        arithmetic, each stage is instead one grouped depthwise and one
        grouped pointwise convolution over all edges (:func:`_unfused_conv`).
        """
        k, dilation = _CONV_OPS[name]
        w = ctx.kernels[plan.i, name, 0]
        padding = dilation * (k // 2)
        if isinstance(w, tuple):
            if ctx.r_cl is None:
                ctx.r_cl = _channels_last(r)
            y = _unfused_conv(ctx.r_cl, *w, plan.stride, padding, dilation, plan.n_in)
        else:
            y = _conv_by_state(r, w, plan.stride, padding, dilation, plan.n_in)
        if name.startswith("sep"):
            y = F.relu(ctx.norm((plan.i, name), y))
            w = ctx.kernels[plan.i, name, 1]
            edges = len(plan.groups[name])
            if isinstance(w, tuple):
                # The input is edge by edge already: one group per edge.
                y = _unfused_conv(y, *w, 1, k // 2, 1, edges, per_edge=True)
            else:
                y = F.conv2d(y, w, None, 1, k // 2, 1, edges)
        # Channels-last outputs of the unfused path back to the layout the
        # batch norms' and mixing's views need (a no-op otherwise).
        return y.contiguous()

    def _name(self, e, q):
        return self.edges[e].op_names[q]

    def _conv_stage(self, e, q, stage):
        """(depthwise, pointwise, batch norm) modules of one convolution stage."""
        op = self.edges[e].ops[q]
        block = op[stage] if self._name(e, q).startswith("sep") else op
        return block[1], block[2], block[3]


class _Forward:
    """What one cell forward shares between its states."""

    def __init__(self, layout, training):
        self.layout = layout
        self.training = training
        bn = layout.bns[0]
        self.momentum, self.eps = bn.momentum, bn.eps
        # Training: the (mean, invstd, count) of each normalisation call, for
        # :meth:`SearchCell._update_statistics`. Evaluation: ``views`` of the
        # running statistics, per call.
        self.batch = [None] * len(layout.train_sizes)
        self.views = self.kernels = self.mixing = self.node_shape = None
        self.r_cl = None

    def norm(self, key, x):
        """Batch norm ``key`` of the layout (see :class:`_CellLayout`) of ``x``."""
        lay = self.layout
        if self.training:
            # Without running statistics: nothing the backward pass keeps
            # is written to afterwards.
            y, mean, invstd = torch.native_batch_norm(
                x, None, None, None, None, True, self.momentum, self.eps
            )
            self.batch[lay.train_calls[key]] = (mean, invstd, x.numel() // x.shape[1])
            return y
        ci = lay.eval_calls[key]
        rm, rv = self.views[ci], self.views[lay.n_eval_calls + ci]
        return F.batch_norm(x, rm, rv, None, None, False, self.momentum, self.eps)

    def pool_eval(self, i, name, x, n_in):
        """Evaluation batch norms of the edges after one pooling.

        ``x`` holds ``n_in`` states; returns (n, n_in, b, c, h, w), b edges
        per state.
        """
        lay = self.layout
        ci = lay.eval_calls[i, name]
        x = x.unflatten(1, (n_in, 1, -1))  # (n, states, 1, c, h, w)
        shape = (1, n_in, -1, x.shape[3], 1, 1)
        rm = self.views[ci].view(shape)
        rv = self.views[lay.n_eval_calls + ci].view(shape)
        return (x - rm) * torch.rsqrt(rv + self.eps)


# Whether a convolution over several states runs as one per state on the
# CPU (see _conv_by_state); the tests switch it off to check the other way.
_SPLIT_STATES_ON_CPU = True


def _conv_by_state(x, w, stride, padding, dilation, n_in):
    """The convolution of each of the ``n_in`` states in ``x`` with its kernels.

    One grouped convolution, except on the CPU, where oneDNN's grouped
    convolutions with few channels per group were up to 2x slower than one
    convolution per state (measured forward and backward with 8 channels,
    dilated or 5x5) and the launches they save cost little.
    """
    if n_in == 1 or not (_SPLIT_STATES_ON_CPU and x.device.type == "cpu"):
        return F.conv2d(x, w, None, stride, padding, dilation, n_in)
    xs = x.chunk(n_in, 1)
    ws = w.chunk(n_in, 0)
    return torch.cat(
        [F.conv2d(a, b, None, stride, padding, dilation) for a, b in zip(xs, ws)], 1
    )


# Whether unfused stages run channels-last on the CPU (see _unfused_conv);
# the tests switch it off to check the other (GPU) way.
_CHANNELS_LAST_ON_CPU = True

# Whether unfused stages recompute their depthwise outputs in the backward
# pass rather than keep them (see _DepthwisePointwise).
_RECOMPUTE_DEPTHWISE = True


def _unfused_conv(x, pw, dw, stride, padding, dilation, n_in, per_edge=False):
    """Depthwise then pointwise convolutions of several edges, batched.

    ``pw`` (edges, out, in, 1, 1) and ``dw`` (edges, in, 1, k, k) are the
    edges' weights, in state order. ``x`` holds ``n_in`` states (each edge
    reads its state's channels) or, with ``per_edge``, one input per edge,
    edge by edge. Returns (n, edges * out, h', w'), edge by edge.

    The depthwise convolution of every edge is one grouped convolution: with
    an input per edge, one group per channel; on shared states, each input
    channel's group has an output per edge of its state, so its outputs come
    channel by channel and are reordered edge by edge for the pointwise
    convolution, one grouped 1x1 convolution of all edges.
    """
    e, c_in, k = dw.shape[0], dw.shape[1], dw.shape[-1]
    if per_edge:
        wd, groups, swap = dw.reshape(e * c_in, 1, k, k), e * c_in, None
    else:
        # (state, edge, channel) to (state, channel, edge).
        wd = dw.unflatten(0, (n_in, -1)).transpose(1, 2).reshape(-1, 1, k, k)
        groups, swap = n_in * c_in, (n_in, c_in, e // n_in)
    cl = _CHANNELS_LAST_ON_CPU and x.device.type == "cpu"
    conv = (stride, padding, dilation, groups, e, swap, cl)
    if _RECOMPUTE_DEPTHWISE:
        return _DepthwisePointwise.apply(x, wd, pw.flatten(0, 1), conv)
    _, y = _DepthwisePointwise._depthwise(x, wd, conv)
    return F.conv2d(y, pw.flatten(0, 1), None, 1, 0, 1, e)


def _channels_last(x):
    """``x`` channels-last where unfused stages run so (see _unfused_conv)."""
    if _CHANNELS_LAST_ON_CPU and x.device.type == "cpu":
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _swap(y, n_in, a, b, cl):
    """Channels in (state, a, b) order to (state, b, a), memory format kept."""
    if not cl:
        return y.unflatten(1, (n_in, a, b)).transpose(2, 3).flatten(1, 3)
    n, _, h, w = y.shape
    y = y.permute(0, 2, 3, 1).unflatten(3, (n_in, a, b)).transpose(4, 5)
    return y.reshape(n, h, w, -1).permute(0, 3, 1, 2)


class _DepthwisePointwise(torch.autograd.Function):
    """Grouped depthwise convolution, reorder, grouped pointwise convolution.

    The depthwise output is recomputed in the backward pass instead of kept:
    the fused convolution keeps only its input, and so, with this, does the
    unfused one (the depthwise convolution is a small part of the cost;
    keeping its outputs raised the peak memory of a "cifar" step by 17%).
    """

    @staticmethod
    def _depthwise(x, wd, conv):
        stride, padding, dilation, groups, _, swap, cl = conv
        if cl:
            # oneDNN's depthwise convolutions are 3-10x faster on channels-
            # last tensors (measured forward and backward, conversions
            # included), and so is the reorder.
            x = x.contiguous(memory_format=torch.channels_last)
        y = F.conv2d(x, wd, None, stride, padding, dilation, groups)
        return x, (y if swap is None else _swap(y, *swap, cl))

    @staticmethod
    def forward(ctx, x, wd, wp, conv):
        _, y = _DepthwisePointwise._depthwise(x, wd, conv)
        out = F.conv2d(y, wp, None, 1, 0, 1, conv[4])
        ctx.save_for_backward(x, wd, wp)
        ctx.conv = conv
        ctx.dtype = out.dtype  # the compute dtype (bf16 under autocast)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, wd, wp = ctx.saved_tensors
        stride, padding, dilation, groups, e, swap, cl = conv = ctx.conv
        dt = ctx.dtype
        xc, y = _DepthwisePointwise._depthwise(x.to(dt), wd.to(dt), conv)
        one, zero = [1, 1], [0, 0]
        gy, gwp, _ = torch.ops.aten.convolution_backward(
            grad.to(dt), y, wp.to(dt), None, one, zero, one, False, zero, e,
            [True, True, False],
        )  # fmt: skip
        del y
        if swap is not None:
            n_in, c_in, per_state = swap
            gy = _swap(gy, n_in, per_state, c_in, cl)
        gx, gwd, _ = torch.ops.aten.convolution_backward(
            gy, xc, wd.to(dt), None, [stride] * 2, [padding] * 2, [dilation] * 2,
            False, zero, groups, [ctx.needs_input_grad[0], True, False],
        )  # fmt: skip
        if gx is not None:
            gx = gx.to(x.dtype)
        return gx, gwd.to(wd.dtype), gwp.to(wp.dtype), None


def _mix(m, y):
    """``m @ y[i]`` for every sample ``i``: (edges, t) @ (n, t, l) -> (n, edges, l).

    A batched product: ``torch.matmul`` folds this case into one product
    of the transposed ``y``, which costs a copy of ``y`` and returns a
    transposed (non-contiguous) result.
    """
    return torch.bmm(m.expand(y.shape[0], -1, -1), y)


def _pool(x, kind, stride):
    if kind == "avg":
        return F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)
    if x.device.type == "cpu" and x.dim() == 4:
        # The CPU max pool is about 3x faster on channels-last tensors, the
        # conversions included (measured forward and backward).
        y = F.max_pool2d(x.contiguous(memory_format=torch.channels_last), 3, stride, 1)
        return y.contiguous()
    return F.max_pool2d(x, 3, stride, 1)


def _channel_shuffle(x, groups):
    """PC-DARTS' channel shuffle: interleave ``groups`` channel groups."""
    return x.unflatten(1, (groups, -1)).transpose(1, 2).flatten(1, 2)


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
    partial_channels : int, default=1
        PC-DARTS (Xu et al., ICLR 2020): each edge runs its operations on the
        first ``1/K`` of its input's channels, the rest bypass the edge
        (max-pooled on strided edges), and a channel shuffle mixes them.
        With K > 1 the operations have ``C/K`` channels and two more
        architecture parameters, ``alphas_edge_normal`` and
        ``alphas_edge_reduce`` (edge normalisation: per node, a softmax over
        its inputs), join the state dict; :meth:`genotype` ranks edges by
        operation weight times edge weight. 1 (off) keeps the state dict as
        it is.
    checkpointing : bool, default=False
        Recompute each cell's activations during the backward pass
        (``torch.utils.checkpoint``) instead of storing them. Results and
        batch-norm statistics are the same as without.
    amp : {None, "bf16", "fp16"}, default=None
        Autocast the body to this precision (meant for GPUs; it works on the
        CPU but is slower there).
    compile_cells : bool, default=False
        ``torch.compile`` each cell on non-CPU devices (after one eager call;
        falls back to eager execution where compiling fails). Ignored on the
        CPU.

    The options change how the supernet runs, not what it computes (except
    ``partial_channels``, which is part of :meth:`config`). Measured with
    ``benchmarks/search_step.py`` (config "tiny", one search step, 1 CPU
    thread on a shared, loaded machine; ours against the original DARTS
    formulation in the same run): default 2.6-3.4x the images/s at 0.47x the
    peak memory; ``partial_channels=4`` 4.2x at 0.18x; ``checkpointing=True``
    2.7x at 0.15x (about one more cell forward per backward).

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
        *,
        partial_channels: int = 1,
        checkpointing: bool = False,
        amp: str | None = None,
        compile_cells: bool = False,
    ):
        super().__init__()
        self.space = get_search_space(search_space)
        _check_options(partial_channels, checkpointing, amp, compile_cells)
        k = int(partial_channels)
        if k > 1 and (init_channels % k or (init_channels // k) % 2):
            raise ValueError(
                f"partial_channels={k} needs init_channels to be an even multiple "
                f"of it (each edge computes init_channels / {k} channels, and a "
                f"reduction halves them); got init_channels={init_channels}."
            )
        self.partial_channels = k
        self.checkpointing = bool(checkpointing)
        self.amp = amp
        self.compile_cells = bool(compile_cells)
        self._compiled = {}
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
                ops,
                n_nodes,
                c_pp,
                c_p,
                c_curr,
                reduction,
                reduction_prev,
                k,
                # Cell 1's inputs are the stem's output, which does not depend
                # on the alphas, and cell 0's, which does: joined, autograd
                # would keep the stem side's activations in the alpha step
                # (+5% peak memory of a step, measured on "tiny").
                join_inputs=i != 1,
            )
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, n_nodes * c_curr
        self.n_features = c_p
        self.head = nn.Linear(c_p, n_classes)

        n_e = len(normal_ops)
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(n_e, self.space.n_ops))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(n_e, self.space.n_ops))
        if k > 1:
            # PC-DARTS edge normalisation: one weight per edge, softmaxed over
            # each node's inputs. Named ``alphas_*`` so that everything that
            # tells architecture from weights by name treats them as such.
            self.alphas_edge_normal = nn.Parameter(1e-3 * torch.randn(n_e))
            self.alphas_edge_reduce = nn.Parameter(1e-3 * torch.randn(n_e))

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_compiled"] = {}  # compiled cells are per process
        return state

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
        } | {
            name: value
            for name, value, default in (
                # Only options that change the network's structure (and state
                # dict); how it is run (checkpointing, amp, compiling) is not
                # part of what a saved supernet is.
                ("partial_channels", self.partial_channels, 1),
            )
            if value != default
        }

    # -- parameters ---------------------------------------------------------

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture weights (alphas, and the edge weights with PC-DARTS)."""
        return [p for n, p in self.named_parameters() if n.startswith("alphas_")]

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

    def edge_weights(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """PC-DARTS edge normalisation: per-edge weights, softmaxed per node.

        None unless ``partial_channels > 1``.
        """
        if self.partial_channels == 1:
            return None
        offsets = _edge_offsets(self.n_nodes)
        return tuple(
            torch.cat(
                [F.softmax(b[o : o + j + 2], dim=0) for j, o in enumerate(offsets)]
            )
            for b in (self.alphas_edge_normal, self.alphas_edge_reduce)
        )

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
        scales = self.edge_weights() or (None, None)
        autocast = contextlib.nullcontext()
        if self.amp is not None:
            dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
            # PyTorch requires autocast's cast-weight cache off while a CUDA
            # graph is captured (see make_graphed_callables).
            capturing = x.is_cuda and torch.cuda.is_current_stream_capturing()
            autocast = torch.autocast(
                x.device.type, dtype=dtype, cache_enabled=not capturing
            )
        with autocast:
            s0 = s1 = self.stem(x)
            for i, cell in enumerate(self.cells):
                red = cell.reduction
                args = (w_reduce if red else w_normal, scales[1 if red else 0])
                s0, s1 = s1, self._run_cell(i, cell, s0, s1, *args)
            out = F.adaptive_avg_pool2d(s1, 1).flatten(1)
        return out if self.amp is None else out.float()

    def _run_cell(self, i, cell, s0, s1, weights, scale):
        fn = cell
        if self.compile_cells and s0.device.type != "cpu":
            fn = self._compiled_cell(i, cell)
        if not (self.checkpointing and self.training and torch.is_grad_enabled()):
            if fn is cell:
                return fn(s0, s1, weights, scale)
            try:
                return fn(s0, s1, weights, scale)
            except Exception as exc:  # compilation happens at the first call
                warnings.warn(
                    f"torch.compile of cell {i} failed ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0][:200]}); running it eagerly.",
                    stacklevel=2,
                )
                self._compiled[i] = cell
                return cell(s0, s1, weights, scale)
        first = [True]

        def run(s0, s1, weights, scale):
            # The recomputation in the backward pass must not update the
            # batch norms' running statistics a second time.
            update, first[0] = first[0], False
            return fn(s0, s1, weights, scale, update=update)

        return checkpoint(run, s0, s1, weights, scale, use_reentrant=False)

    def _compiled_cell(self, i, cell):
        """``torch.compile`` of a cell, or the cell itself where that fails.

        The first call runs eagerly, so that the cell's index tables exist
        before tracing (the compiled graph then only reads them).
        """
        if i not in self._compiled:
            self._compiled[i] = None
            return cell
        if self._compiled[i] is None:
            # Every cell is its own graph (and frozen weights in the alpha
            # step another): allow that many before dynamo gives up.
            config = torch._dynamo.config
            for name in ("recompile_limit", "cache_size_limit"):
                if hasattr(config, name):
                    setattr(config, name, max(getattr(config, name), 4 * self.n_cells))
            try:
                self._compiled[i] = torch.compile(cell, dynamic=False)
            except Exception as exc:  # pragma: no cover - depends on the platform
                warnings.warn(
                    f"torch.compile failed ({exc}); running eagerly.", stacklevel=2
                )
                self._compiled[i] = cell
        return self._compiled[i]

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
        scales = self.edge_weights()
        if scales is not None:
            # PC-DARTS ranks edges by operation weight times edge weight.
            w_normal = w_normal * scales[0].detach().cpu()[:, None]
            w_reduce = w_reduce * scales[1].detach().cpu()[:, None]
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
