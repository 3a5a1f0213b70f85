"""The supernet the search trains: the fast implementation of the reference.

:class:`Supernet` computes what
:class:`~skdarts.supernet.reference.ReferenceSupernet` computes (same state
dict, same outputs and gradients), with cells that batch their work
(:mod:`skdarts.supernet.cell`) and options that change how it runs, not
what. It also turns its alphas into a genotype.
The classifier head is a separate module (``head``) from the body
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
import numbers
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..spaces import Genotype, SearchSpace, get_search_space
from .body import build_body, edge_offsets, run_body
from .cell import SearchCell

__all__ = ["Supernet"]


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


def _modules_in_order(root: nn.Module):
    """``root.modules()``: each module once, parents before children, in
    registration order, without the dotted names ``named_modules`` builds
    for each of a supernet's thousands of modules."""
    seen, stack = set(), [root]
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        yield m
        stack.extend(reversed([c for c in m._modules.values() if c is not None]))


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

        def make_cell(i, c_pp, c_p, c, reduction, reduction_prev):
            cell = SearchCell(
                reduce_ops if reduction else normal_ops,
                n_nodes,
                c_pp,
                c_p,
                c,
                reduction,
                reduction_prev,
                k,
                # Cell 1's inputs are the stem's output, which does not depend
                # on the alphas, and cell 0's, which does: joined, autograd
                # would keep the stem side's activations in the alpha step
                # (+5% peak memory of a step, measured on "tiny").
                join_inputs=i != 1,
            )
            return cell, n_nodes * c

        self.stem, self.cells, c_p = build_body(
            in_channels, init_channels, n_cells, stem_multiplier, make_cell
        )
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
        # The supernet's own parameters: no submodule's name starts so.
        return [
            p
            for n, p in self._parameters.items()
            if p is not None and n.startswith("alphas_")
        ]

    def named_weight_parameters(self):
        """(name, parameter) pairs of everything but the alphas."""
        for name, p in self.named_parameters():
            if not name.startswith("alphas_"):
                yield name, p

    def weight_parameters(self) -> list[nn.Parameter]:
        """The operations', stem's and head's parameters (not the alphas).

        In the order of :meth:`named_weight_parameters`, built without the
        names: a search step asks for them every step (2 ms so, 3 ms by name
        on a five-cell supernet).
        """
        seen = {id(p) for p in self.arch_parameters()}
        out = []
        for m in _modules_in_order(self):
            for p in m._parameters.values():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
        return out

    def train(self, mode: bool = True) -> Supernet:
        """Set training mode, as :meth:`torch.nn.Module.train` does.

        The same flags are set, but in one loop rather than a recursive call
        per module (the search step sets its mode every step; by recursion
        that costs 7 ms on a five-cell supernet of 3,000 modules). A module
        with its own ``train`` is handed the mode to apply its rule.
        """
        if not isinstance(mode, bool):
            raise ValueError(f"mode must be a boolean (True or False); got {mode!r}.")
        stack = [self]
        while stack:
            m = stack.pop()
            if m is not self and type(m).train is not nn.Module.train:
                m.train(mode)
                continue
            # Module.__setattr__ would store a bool the same way, slower.
            object.__setattr__(m, "training", mode)
            stack.extend(c for c in m._modules.values() if c is not None)
        return self

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
        offsets = edge_offsets(self.n_nodes)
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

        def run_cell(i, cell, s0, s1):
            red = cell.reduction
            args = (w_reduce if red else w_normal, scales[1 if red else 0])
            return self._run_cell(i, cell, s0, s1, *args)

        with autocast:
            out = run_body(self.stem, self.cells, x, run_cell)
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
        for j, start in enumerate(edge_offsets(self.n_nodes)):
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
