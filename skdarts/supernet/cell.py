"""The fast supernet cell: the reference cell's function, computed in batches."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import ops
from .body import Preprocess, edge_offsets
from .kernels import (
    _add_all,
    _channel_shuffle,
    _channels_last,
    _conv_by_state,
    _crop_taps,
    _lerp_all,
    _mix,
    _pool,
    _subsample,
    _unfused_conv,
)
from .ops import FactorizedReduce
from .plan import _CONV_OPS, _CellLayout, _StatePlan
from .reference import MixedEdge

__all__ = ["SearchCell"]


class SearchCell(Preprocess):
    """A supernet cell: every edge mixes all its candidate operations.

    It computes what :class:`~skdarts.supernet.reference.ReferenceCell`
    computes, and keeps its parameters in the same modules, one
    :class:`~skdarts.supernet.reference.MixedEdge` per edge (so the state dict
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
        offsets = edge_offsets(n_nodes)
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
        ctx.inputs = {}  # r as convolutions read it, made once per state
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
                y = ops.standard_noise(shape, h).view(n, -1, size)
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
        stride, padding = plan.stride, dilation * (k // 2)
        step = 1
        if stride == dilation > 1:
            # Dilated as much as strided: only the pixels at multiples of the
            # stride are read (see _subsample), so the convolution runs
            # undilated at stride 1 on those (1.1-1.8x faster on the CPU,
            # forward and backward: oneDNN's strided dilated kernels are slow).
            step, stride, dilation, padding = stride, 1, 1, k // 2
        unfused = isinstance(w, tuple)
        x = ctx.input(r, step, unfused)
        if unfused:
            y = _unfused_conv(x, *w, stride, padding, dilation, plan.n_in)
        else:
            if stride == 1:
                w, padding = _crop_taps(w, x.shape[2:], padding, dilation)
            y = _conv_by_state(x, w, stride, padding, dilation, plan.n_in)
        if name.startswith("sep"):
            y = F.relu(ctx.norm((plan.i, name), y))
            w = ctx.kernels[plan.i, name, 1]
            edges = len(plan.groups[name])
            if isinstance(w, tuple):
                # The input is edge by edge already: one group per edge.
                y = _unfused_conv(y, *w, 1, k // 2, 1, edges, per_edge=True)
            else:
                w, padding = _crop_taps(w, y.shape[2:], k // 2, 1)
                y = F.conv2d(y, w, None, 1, padding, 1, edges)
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
        self.inputs = {}

    def input(self, r, step, unfused):
        """The ReLU'd state ``r`` as a convolution reads it, made once per state.

        ``step`` > 1: every ``step``-th pixel (:func:`_subsample`); unfused
        stages read it channels-last where they run so (:func:`_channels_last`).
        """
        key = (step, unfused)
        if key not in self.inputs:
            x = r if step == 1 else _subsample(r, step)
            x = _channels_last(x) if unfused else x
            if not (
                x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
            ):
                x = x.contiguous()  # once, not in every convolution reading it
            self.inputs[key] = x
        return self.inputs[key]

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
