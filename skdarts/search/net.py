"""The bilevel search step on skorch: weights on one split, alphas on the other.

:class:`SearchNet` is a skorch ``NeuralNetClassifier`` whose ``train_step``
makes one first-order DARTS step per batch:

1. **alpha step** - a batch from the *architecture split* (skorch's validation
   dataset), loss backpropagated into the alphas only, ``optimizer_arch_``
   (Adam) steps;
2. **weight step** - the training batch, forward with the architecture weights
   optionally perturbed (SmoothDARTS), gradients clipped, ``optimizer_`` (SGD)
   steps.

The second optimizer is registered the skorch way (an ``optimizer_arch``
parameter, routed with the ``optimizer_arch__`` prefix), so ``set_params``,
callbacks and checkpoints know it.

References
----------
.. [1] H. Liu, K. Simonyan, Y. Yang. "DARTS: Differentiable Architecture
   Search". ICLR 2019.
.. [2] X. Chen, C.-J. Hsieh. "Stabilizing Differentiable Architecture Search
   via Perturbation-based Regularization". ICML 2020. (SDARTS-RS, SDARTS-ADV;
   epsilon ramped linearly from 0.03 to 0.3, PGD with 7 steps)
"""

from __future__ import annotations

import inspect
import time
import warnings

import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback
from skorch.dataset import unpack_data
from skorch.utils import TeeGenerator, to_device

from .callbacks import FiniteGuard
from .contracts import SearchableSupernet, unwrap_supernet
from .graphs import CaptureError, StepGraphs, allow_host_sync
from .smoothing import _project, perturb_arch_weights

__all__ = ["SearchNet", "portable_getstate"]


def _accepts(factory, name: str) -> bool:
    try:
        return name in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def _fuse_on_cpu(factory, kwargs: dict, named_params) -> bool:
    """Whether the weight optimizer gets ``fused=True``: on the CPU, when it
    takes the argument and the user chose neither ``fused`` nor ``foreach``.

    PyTorch's optimizers default to a Python loop over the parameters on the
    CPU; a supernet has hundreds (891 in a five-cell DARTS one), and the
    fused kernel does the same update in one call (SGD with momentum: 1.4 ms
    a step instead of 8.8).
    """
    return (
        bool(named_params)
        and not {"fused", "foreach"} & kwargs.keys()
        # Refused by the fused kernels, at the first step, not when built.
        and not kwargs.get("differentiable", False)
        and all(p.device.type == "cpu" for _, p in named_params)
        and _accepts(factory, "fused")
    )


def _frozen_value(value):
    """A hashable stand-in for an optimizer setting a graph freezes."""
    if isinstance(value, torch.Tensor):
        return float(value) if value.numel() == 1 else ("tensor", id(value))
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def _warn_eager(reason: str) -> None:
    warnings.warn(
        f"cuda_graphs=True, but the search step runs eagerly: {reason}.",
        RuntimeWarning,
        stacklevel=3,
    )


class SearchNet(NeuralNetClassifier):
    """skorch net running first-order (Smooth)DARTS on a supernet.

    Parameters
    ----------
    module : type or torch.nn.Module
        A :class:`~skdarts.supernet.Supernet` (class plus ``module__`` args, or
        an instance).
    optimizer_arch : type, default=torch.optim.Adam
        Optimizer of the alphas; its arguments go with ``optimizer_arch__``.
    smoothing : {"random", "adversarial", None}, default="random"
        SDARTS-RS, SDARTS-ADV or plain DARTS.
    epsilon : float, default=0.3
        Final smoothing radius.
    epsilon_start : float, default=0.03
        Radius at the first epoch; ramped linearly to ``epsilon`` over
        ``max_epochs``.
    pgd_steps : int, default=7
        Attack steps of SDARTS-ADV.
    grad_clip : float, default=5.0
        Gradient norm bound of the weight step (None to disable).
    arch_warmup_epochs : int, default=0
        Epochs at the start of a fit during which the alphas stay fixed
        (useful after a warm start, while the new head settles).
    cuda_graphs : bool, default=False
        On a CUDA device, capture the whole step (alpha step, smoothing,
        weight step, clipping, both optimizers) as a CUDA graph and replay
        it: one launch instead of tens of thousands, the remedy for a step
        bound by kernel launches. A graph is captured per *signature* (batch
        shapes, learning rates, smoothing radius, ...) after 3 eager steps
        with it, so a learning rate that changes every epoch costs 3 eager
        steps and a capture per epoch; the 2 latest graphs are kept until the
        fit ends. The validation pass over the architecture split is graphed
        the same way (its graph survives learning-rate changes). Adam-like
        arch optimizers get ``capturable=True``. Where a step cannot be
        captured (a callback hooking ``on_grad_computed``,
        activation checkpointing, an accelerator, no CUDA device) a warning
        says why and the search runs eagerly, with the same results.
    **kwargs
        Everything :class:`skorch.NeuralNetClassifier` takes. Pass the
        architecture split as validation data (``train_split``).

    Notes
    -----
    On the CPU the weight optimizer is built with ``fused=True`` where it
    takes that argument (SGD, Adam, AdamW, ...), unless ``optimizer__fused``
    or ``optimizer__foreach`` is given: the same update as PyTorch's default
    loop over the parameters (up to rounding), in one call.
    """

    def __init__(
        self,
        *args,
        optimizer_arch=torch.optim.Adam,
        smoothing: str | None = "random",
        epsilon: float = 0.3,
        epsilon_start: float = 0.03,
        pgd_steps: int = 7,
        grad_clip: float | None = 5.0,
        arch_warmup_epochs: int = 0,
        cuda_graphs: bool = False,
        **kwargs,
    ):
        self.optimizer_arch = optimizer_arch
        self.smoothing = smoothing
        self.epsilon = epsilon
        self.epsilon_start = epsilon_start
        self.pgd_steps = pgd_steps
        self.grad_clip = grad_clip
        self.arch_warmup_epochs = arch_warmup_epochs
        self.cuda_graphs = cuda_graphs
        super().__init__(*args, **kwargs)

    #: Emulate CUDA graphs on any device (tests: the protocol without a GPU).
    _emulate_graphs = False
    # Per-fit state, reset by on_train_begin / initialize_optimizer: the epoch
    # this fit started at, the captured step graphs and why they are off.
    _fit_start_epoch = 0
    _graphs = None
    _graphs_off = None

    def __getstate__(self):
        state = portable_getstate(self, super().__getstate__)
        # Captured graphs hold device memory and streams: per-fit state.
        state.pop("_graphs", None)
        state.pop("_graphs_off", None)
        return state

    @property
    def _default_callbacks(self):
        # Every search is guarded: a diverged step must stop it, not go on silently.
        return [*super()._default_callbacks, ("finite_guard", FiniteGuard())]

    # -- initialisation -------------------------------------------------------

    def initialize_optimizer(self, *args, **kwargs):
        """Build ``optimizer_`` on the weights and ``optimizer_arch_`` on the alphas."""
        module = unwrap_supernet(self)
        if not isinstance(module, SearchableSupernet):
            raise TypeError(
                "SearchNet searches a supernet (see skdarts.search.SearchableSupernet: "
                "arch_parameters, weight_parameters, arch_weights, genotype, ...); "
                f"got a module of type {type(module).__name__}."
            )
        weights = list(self.module_.named_weight_parameters())
        pargs, pkwargs = self.get_params_for_optimizer("optimizer", weights)
        self.optimizer_ = None
        if _fuse_on_cpu(self.optimizer, pkwargs, weights):
            try:
                self.optimizer_ = self.optimizer(*pargs, **pkwargs, fused=True)
            except (RuntimeError, ValueError, TypeError):
                pass  # a setting the fused kernel lacks: the default one
        if self.optimizer_ is None:
            self.optimizer_ = self.optimizer(*pargs, **pkwargs)
        alphas = [
            (n, p)
            for n, p in self.module_.named_parameters()
            if n.startswith("alphas_")
        ]
        pargs, pkwargs = self.get_params_for_optimizer("optimizer_arch", alphas)
        if (
            self.cuda_graphs
            and str(self.device).startswith("cuda")
            and _accepts(self.optimizer_arch, "capturable")
        ):
            # Without it Adam reads its step count on the host every step.
            pkwargs.setdefault("capturable", True)
        self.optimizer_arch_ = self.optimizer_arch(*pargs, **pkwargs)
        self._drop_graphs()
        return self

    # -- per-epoch state -----------------------------------------------------

    def current_epsilon(self) -> float:
        """Smoothing radius for the running epoch (SmoothDARTS' linear ramp)."""
        epoch = max(len(self.history) - 1, 0) - self._fit_start_epoch
        frac = min(max(epoch / max(self.max_epochs, 1), 0.0), 1.0)
        return self.epsilon_start + (self.epsilon - self.epsilon_start) * frac

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        super().on_train_begin(net, X=X, y=y, **kwargs)
        self._fit_start_epoch = len(self.history)
        self._graphs_off = None
        if unwrap_supernet(self).amp == "fp16":
            raise ValueError(
                "A supernet with amp='fp16' cannot be searched: float16 gradients "
                "underflow without loss scaling, which the search step does not "
                "do. Got amp='fp16'; accepted for a search: None or 'bf16'."
            )

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        super().on_epoch_begin(net, dataset_train, dataset_valid, **kwargs)
        if dataset_valid is None:
            raise ValueError(
                "SearchNet needs an architecture split: pass it as validation data "
                "(train_split=skorch.helper.predefined_split(dataset))."
            )
        self._arch_loader = self.get_iterator(dataset_valid, training=True)
        self._arch_batches = iter(self._arch_loader)
        self.history.record(
            "epsilon", self.current_epsilon() if self.smoothing else 0.0
        )
        self._epoch_t0 = time.perf_counter()

    def on_train_end(self, net, X=None, y=None, **kwargs):
        super().on_train_end(net, X=X, y=y, **kwargs)
        # Live loader iterators cannot be pickled; they are per-fit state.
        self._arch_loader = self._arch_batches = None
        # A fitted net must not keep a step's worth of device memory.
        self._drop_graphs()

    def _next_arch_batch(self):
        try:
            return next(self._arch_batches)
        except StopIteration:
            self._arch_batches = iter(self._arch_loader)
            return next(self._arch_batches)

    def _arch_frozen(self) -> bool:
        epoch = len(self.history) - 1 - self._fit_start_epoch
        return epoch < self.arch_warmup_epochs

    # -- hooks for wrapped modules (see AcceleratedSearchNet) -----------------

    def _bare_module(self):
        """Kept for callers written before :func:`unwrap_supernet` existed."""
        return unwrap_supernet(self)

    def _backward(self, loss, arch: bool = False):
        """Backpropagate ``loss``; ``arch`` tells an alpha step from a weight step."""
        loss.backward()

    def _clip_grad_norm(self, parameters, max_norm: float):
        torch.nn.utils.clip_grad_norm_(parameters, max_norm)

    # -- the bilevel step ----------------------------------------------------

    def _alpha_step(self, Xa, ya, weights):
        """The alphas' step; ``weights``: the supernet's weight parameters."""
        self.optimizer_arch_.zero_grad(set_to_none=True)
        # Alpha gradients need no weight gradients: freeze weights to skip them.
        module = unwrap_supernet(self)
        flags = [p.requires_grad for p in weights]
        for p in weights:
            p.requires_grad_(False)
        try:
            loss = self.criterion_(module(Xa), ya)
            self._backward(loss, arch=True)
        finally:
            for p, f in zip(weights, flags):
                p.requires_grad_(f)
        with allow_host_sync():  # capturable on CUDA (initialize_optimizer)
            self.optimizer_arch_.step()
        return loss.detach()

    def _smoothed_weights(self, Xi, yi):
        module = unwrap_supernet(self)
        base = module.arch_weights()
        if not self.smoothing:
            return tuple(w.detach() for w in base)
        eps = self.current_epsilon()
        perturbed = perturb_arch_weights(base, eps)
        if self.smoothing == "random":
            return perturbed
        # SDARTS-ADV: projected gradient ascent on the mixing weights.
        step = 2.5 * eps / max(self.pgd_steps, 1)
        base = tuple(w.detach() for w in base)
        current = perturbed
        for _ in range(self.pgd_steps):
            current = tuple(w.clone().requires_grad_(True) for w in current)
            loss = self.criterion_(module(Xi, arch_weights=current), yi)
            # A cell type may be absent (e.g. no normal cell): its grad is None.
            grads = torch.autograd.grad(loss, current, allow_unused=True)
            current = tuple(
                c.detach()
                if g is None
                else _project(b + (c.detach() + step * g.sign() - b).clamp(-eps, eps))
                for b, c, g in zip(base, current, grads)
            )
        return current

    def train_step(self, batch, **fit_params):
        """First-order bilevel step: alphas on an arch batch, then weights."""
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        tensors = [to_device(Xi, self.device), to_device(yi, self.device)]
        arch = not self._arch_frozen()
        if arch:
            Xa, ya = unpack_data(self._next_arch_batch())
            tensors += [to_device(Xa, self.device), to_device(ya, self.device)]
        out = self._run_graphed("train", tensors)
        if out is None:
            out = self._step(*tensors, batch=batch)
        if arch:
            self.history.record_batch("arch_loss", out["arch_loss"].item())
        self.history.record_batch("train_acc_batch", out["acc"].item())
        return {"loss": out["loss"], "y_pred": out["y_pred"]}

    def _step(self, Xi, yi, Xa=None, ya=None, batch=None):
        """The step's arithmetic: tensors in, tensors out, no host sync.

        This is what a CUDA graph captures (``batch`` is None then: the
        ``on_grad_computed`` hooks get the batch only in eager steps).
        """
        module = unwrap_supernet(self)
        weights = module.weight_parameters()  # one list for the whole step
        alpha_loss = None if Xa is None else self._alpha_step(Xa, ya, weights)
        arch_weights = self._smoothed_weights(Xi, yi)
        self.optimizer_.zero_grad(set_to_none=True)
        y_pred = self.module_(Xi, arch_weights=arch_weights)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        self._backward(loss)
        self.notify(
            "on_grad_computed",
            named_parameters=TeeGenerator(module.named_weight_parameters()),
            batch=batch,
            training=True,
        )
        if self.grad_clip is not None:
            self._clip_grad_norm(weights, self.grad_clip)
        with allow_host_sync():  # e.g. a user's optimizer; checked on CUDA
            self.optimizer_.step()
        with torch.no_grad():
            acc = (y_pred.argmax(1) == yi).float().mean()
        return {"loss": loss, "y_pred": y_pred, "arch_loss": alpha_loss, "acc": acc}

    # -- CUDA graphs ----------------------------------------------------------

    def _graphs_unsupported(self, tensors) -> str | None:
        """Why this step cannot be captured, or None."""
        if not (self._emulate_graphs or str(self.device).startswith("cuda")):
            return f"CUDA graphs need a CUDA device; got device={self.device!r}"
        if not (self._emulate_graphs or torch.cuda.is_available()):
            return "CUDA is not available"
        if getattr(self, "accelerator", None) is not None:
            return "an accelerator runs the step (graphs are not supported there)"
        if not all(isinstance(t, torch.Tensor) for t in tensors):
            return "the batches are not plain tensors"
        hooked = [
            name
            for name, cb in self.callbacks_
            if type(cb).on_grad_computed is not Callback.on_grad_computed
        ]
        if hooked:
            return f"callback(s) {hooked} hook on_grad_computed, which a graph skips"
        if unwrap_supernet(self).checkpointing:
            return "activation checkpointing reads the RNG state on the host"
        return None

    def _graphs_for(self, tensors, kind: str = "train"):
        """The :class:`StepGraphs` of ``kind`` ("train", "valid"), or None."""
        if not self.cuda_graphs or self._graphs_off:
            return None
        reason = self._graphs_unsupported(tensors)
        if reason is not None:
            self._graphs_off = reason
            _warn_eager(reason)
            return None
        if self._graphs is None:
            self._graphs = {}
        if kind not in self._graphs:
            fn = self._step if kind == "train" else self._valid_step
            self._graphs[kind] = StepGraphs(fn, emulate=self._emulate_graphs)
        return self._graphs[kind]

    def _graph_key(self, tensors, kind: str = "train") -> tuple:
        """Everything a captured step freezes besides tensor contents."""
        module = unwrap_supernet(self)
        params = list(module.parameters())
        key = (
            tuple((tuple(t.shape), t.dtype, str(t.device)) for t in tensors),
            id(module),
            id(self.criterion_),
            tuple(p.data_ptr() for p in params),
            tuple(b.data_ptr() for b in module.buffers()),
        )
        if kind != "train":
            return key
        groups = tuple(
            tuple(sorted((k, _frozen_value(v)) for k, v in g.items() if k != "params"))
            for opt in (self.optimizer_, self.optimizer_arch_)
            for g in opt.param_groups
        )
        return (
            *key,
            self.smoothing,
            self.current_epsilon() if self.smoothing else None,
            self.pgd_steps,
            self.grad_clip,
            id(self.optimizer_),
            id(self.optimizer_arch_),
            id(self.optimizer_.state),
            id(self.optimizer_arch_.state),
            tuple(p.requires_grad for p in params),
            groups,
        )

    def _drop_graphs(self):
        for graphs in (self._graphs or {}).values():
            graphs.clear()
        self._graphs = None

    def _run_graphed(self, kind, tensors):
        """Outputs of the ``kind`` step through its graphs, or None (eager)."""
        graphs = self._graphs_for(tensors, kind)
        if graphs is None:
            return None
        try:
            return graphs(self._graph_key(tensors, kind), tensors)
        except CaptureError as exc:
            self._graphs_off = f"capturing the step failed ({exc})"
            self._drop_graphs()
            _warn_eager(self._graphs_off)
            return None

    def validation_step(self, batch, **fit_params):
        """skorch's validation step; through a CUDA graph with ``cuda_graphs``.

        After a graphed training step, an eager validation pass over the
        architecture split would cost as much again: it is graphed too.
        """
        if not self.cuda_graphs or fit_params:
            return super().validation_step(batch, **fit_params)
        self._set_training(False)
        Xi, yi = unpack_data(batch)
        tensors = [to_device(Xi, self.device), to_device(yi, self.device)]
        out = self._run_graphed("valid", tensors)
        if out is None:
            out = self._valid_step(*tensors)
        return {"loss": out["loss"], "y_pred": out["y_pred"]}

    def _valid_step(self, Xi, yi):
        with torch.no_grad():
            y_pred = self.infer(Xi)
            loss = self.get_loss(y_pred, yi, X=Xi, training=False)
        return {"loss": loss, "y_pred": y_pred}

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        super().on_epoch_end(net, dataset_train, dataset_valid, **kwargs)
        batches = self.history[-1, "batches"]
        accs = [b["train_acc_batch"] for b in batches if "train_acc_batch" in b]
        sizes = [b["train_batch_size"] for b in batches if "train_acc_batch" in b]
        if accs:
            total = sum(sizes)
            self.history.record(
                "train_acc", sum(a * s for a, s in zip(accs, sizes)) / total
            )
        arch = [b["arch_loss"] for b in batches if "arch_loss" in b]
        if arch:
            self.history.record("arch_loss", sum(arch) / len(arch))


def portable_getstate(net, parent_getstate) -> dict:
    """skorch's ``__getstate__``, with the module and callbacks device-mapped too.

    skorch pickles its ``module_``, ``optimizer_`` and ``criterion_`` so that
    unpickling maps them to an available device. A module passed as an
    instance (``module=...``) and the callbacks (an LR scheduler holds the
    optimizer) would otherwise be pickled plainly, and a net trained on a GPU
    would not load on a CPU-only machine. Pickling them in the same mapped
    block also keeps ``module is module_`` after loading.
    """
    saved = list(net.cuda_dependent_attributes_)
    extra = [a for a in ("module", "callbacks") if a not in saved]
    net.cuda_dependent_attributes_ = saved + extra
    try:
        return parent_getstate()
    finally:
        net.cuda_dependent_attributes_ = saved
