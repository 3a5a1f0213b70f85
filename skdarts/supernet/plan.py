"""Where the fast cell finds its work: per-state plans and the cell's layout.

A :class:`~skdarts.supernet.cell.SearchCell` computes the same function as a
reference cell (:mod:`skdarts.supernet.reference`), but batches the work of
all edges leaving a state. What it batches, in which order, and where each
result goes is worked out here once per cell, from its operations alone.
"""

from __future__ import annotations

import torch

from .ops import FactorizedReduce

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
