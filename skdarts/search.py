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
import json
import math
import os
import tempfile
import time
import warnings
from pathlib import Path

import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback, Checkpoint
from skorch.dataset import unpack_data
from skorch.exceptions import DeviceWarning
from skorch.history import History
from skorch.utils import TeeGenerator, to_device

from skdarts._step_graph import CaptureError, StepGraphs, allow_host_sync

__all__ = [
    "AcceleratedNeuralNetClassifier",
    "AcceleratedSearchNet",
    "FiniteGuard",
    "GenotypeRecorder",
    "NonFiniteError",
    "SearchCheckpoint",
    "SearchNet",
    "perturb_arch_weights",
]


def _project(weights: torch.Tensor) -> torch.Tensor:
    """Clip mixing weights to [0, 1] and renormalise each edge to sum 1.

    An edge whose weights all clip to 0 puts all its mass on its largest
    entry before clipping (as SmoothDARTS does).
    """
    argmax = weights.argmax(dim=-1, keepdim=True)
    clipped = weights.clamp(0.0, 1.0)
    total = clipped.sum(dim=-1, keepdim=True)
    fallback = torch.zeros_like(clipped).scatter_(-1, argmax, 1.0)
    clipped = torch.where(total > 0, clipped, fallback)
    return clipped / clipped.sum(dim=-1, keepdim=True)


def _accepts(factory, name: str) -> bool:
    try:
        return name in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


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


def perturb_arch_weights(weights, epsilon: float, generator=None):
    """SDARTS-RS: add uniform noise in [-epsilon, epsilon] and project back.

    Parameters
    ----------
    weights : sequence of torch.Tensor
        Softmaxed architecture weights (one tensor per cell type).
    epsilon : float
    generator : torch.Generator, optional
        Source of the noise, on any device (a CPU generator serves weights
        on a GPU).

    Returns
    -------
    tuple of torch.Tensor
        Detached perturbed weights, each row summing to 1.

    Examples
    --------
    >>> w = torch.full((3, 4), 0.25)
    >>> p, = perturb_arch_weights([w], 0.1)
    >>> bool(torch.allclose(p.sum(-1), torch.ones(3)))
    True
    """
    out = []
    for w in weights:
        # Drawn where the generator lives (a CPU generator cannot draw on a
        # GPU), then moved to the weights.
        where = generator.device if generator is not None else w.device
        noise = torch.empty(w.shape, device=where).uniform_(
            -epsilon, epsilon, generator=generator
        )
        out.append(_project(w.detach() + noise.to(w.device)))
    return tuple(out)


class GenotypeRecorder(Callback):
    """Record the genotype and the alphas' softmax in the history every epoch."""

    def on_epoch_end(self, net, **kwargs):
        bare = getattr(net, "_bare_module", None)
        module = bare() if bare is not None else net.module_
        net.history.record("genotype", module.genotype().to_dict())
        w_n, w_r = (w.detach().cpu().tolist() for w in module.arch_weights())
        net.history.record("arch_weights", {"normal": w_n, "reduce": w_r})


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
        weights = list(self.module_.named_weight_parameters())
        pargs, pkwargs = self.get_params_for_optimizer("optimizer", weights)
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
        epoch = max(len(self.history) - 1, 0) - getattr(self, "_fit_start_epoch", 0)
        frac = min(max(epoch / max(self.max_epochs, 1), 0.0), 1.0)
        return self.epsilon_start + (self.epsilon - self.epsilon_start) * frac

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        super().on_train_begin(net, X=X, y=y, **kwargs)
        self._fit_start_epoch = len(self.history)
        self._graphs_off = None
        if getattr(self._bare_module(), "amp", None) == "fp16":
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
        epoch = len(self.history) - 1 - getattr(self, "_fit_start_epoch", 0)
        return epoch < self.arch_warmup_epochs

    # -- hooks for wrapped modules (see AcceleratedSearchNet) -----------------

    def _bare_module(self):
        """The supernet itself, even while ``module_`` is wrapped (e.g. by DDP)."""
        return self.module_

    def _backward(self, loss, arch: bool = False):
        """Backpropagate ``loss``; ``arch`` tells an alpha step from a weight step."""
        loss.backward()

    def _clip_grad_norm(self, parameters, max_norm: float):
        torch.nn.utils.clip_grad_norm_(parameters, max_norm)

    # -- the bilevel step ----------------------------------------------------

    def _alpha_step(self, Xa, ya):
        self.optimizer_arch_.zero_grad(set_to_none=True)
        # Alpha gradients need no weight gradients: freeze weights to skip them.
        module = self._bare_module()
        weights = module.weight_parameters()
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
        module = self._bare_module()
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
        alpha_loss = None if Xa is None else self._alpha_step(Xa, ya)
        arch_weights = self._smoothed_weights(Xi, yi)
        self.optimizer_.zero_grad(set_to_none=True)
        y_pred = self.module_(Xi, arch_weights=arch_weights)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        self._backward(loss)
        module = self._bare_module()
        self.notify(
            "on_grad_computed",
            named_parameters=TeeGenerator(module.named_weight_parameters()),
            batch=batch,
            training=True,
        )
        if self.grad_clip is not None:
            self._clip_grad_norm(module.weight_parameters(), self.grad_clip)
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
            for name, cb in getattr(self, "callbacks_", [])
            if type(cb).on_grad_computed is not Callback.on_grad_computed
        ]
        if hooked:
            return f"callback(s) {hooked} hook on_grad_computed, which a graph skips"
        if getattr(self._bare_module(), "checkpointing", False):
            return "activation checkpointing reads the RNG state on the host"
        return None

    def _graphs_for(self, tensors, kind: str = "train"):
        """The :class:`StepGraphs` of ``kind`` ("train", "valid"), or None."""
        if not self.cuda_graphs or getattr(self, "_graphs_off", None):
            return None
        reason = self._graphs_unsupported(tensors)
        if reason is not None:
            self._graphs_off = reason
            _warn_eager(reason)
            return None
        if getattr(self, "_graphs", None) is None:
            self._graphs = {}
        if kind not in self._graphs:
            fn = self._step if kind == "train" else self._valid_step
            self._graphs[kind] = StepGraphs(fn, emulate=self._emulate_graphs)
        return self._graphs[kind]

    def _graph_key(self, tensors, kind: str = "train") -> tuple:
        """Everything a captured step freezes besides tensor contents."""
        module = self._bare_module()
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
        for graphs in (getattr(self, "_graphs", None) or {}).values():
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


# -- fault tolerance ------------------------------------------------------------


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


class NonFiniteError(FloatingPointError):
    """A training loss or the architecture weights became NaN or infinite."""


def _current_lr(optimizer) -> float | None:
    if optimizer is None or not optimizer.param_groups:
        return None
    return float(optimizer.param_groups[0]["lr"])


class FiniteGuard(Callback):
    """Stop training with :class:`NonFiniteError` at the first NaN/inf loss.

    Checked after every batch (the loss is already a Python float in skorch's
    history, so this costs one reduction of the alphas per batch): the
    training loss, the architecture loss and, for a supernet, the alphas. The
    error names the phase, the epoch and the batch, and the likely causes.

    Parameters
    ----------
    phase : str, default="search"
        Named in the error message.

    Examples
    --------
    >>> guard = FiniteGuard(phase="final training")
    >>> guard.phase
    'final training'
    """

    def __init__(self, phase: str = "search"):
        self.phase = phase

    def _fail(self, net, what: str, value: float, batch, training=True) -> None:
        epoch = len(net.history)
        key = "train_loss" if training else "valid_loss"
        batches = net.history[-1, "batches"] if len(net.history) else []
        n_batch = sum(1 for b in batches if key in b) or len(batches)
        kind = "training" if training else "validation"
        lrs = [
            f"weights lr={_current_lr(getattr(net, 'optimizer_', None)):.3g}"
            if getattr(net, "optimizer_", None) is not None
            else None,
            f"architecture lr={_current_lr(getattr(net, 'optimizer_arch_', None)):.3g}"
            if getattr(net, "optimizer_arch_", None) is not None
            else None,
        ]
        lrs = ", ".join(x for x in lrs if x)
        scale = ""
        X = batch[0] if isinstance(batch, (tuple, list)) and batch else None
        if isinstance(X, torch.Tensor) and X.numel():
            Xf = X.detach().float()
            scale = (
                f" This batch's inputs lie in [{Xf.min().item():.3g}, "
                f"{Xf.max().item():.3g}] (std {Xf.std().item():.3g})."
            )
        raise NonFiniteError(
            f"{what} became {value} during the {self.phase} at epoch {epoch}, "
            f"{kind} batch {n_batch}: training stopped instead of continuing on "
            f"garbage. Likely causes: a learning rate too high ({lrs}; lower lr / "
            "arch_lr), or badly scaled inputs (standardise pixels to about zero mean "
            f"and unit variance; extreme values overflow).{scale}"
        )

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        loss = kwargs.get("loss")
        if loss is not None:
            value = float(loss.detach()) if isinstance(loss, torch.Tensor) else loss
            if not math.isfinite(value):
                kind = "training" if training else "validation"
                self._fail(net, f"The {kind} loss", value, batch, training)
        if not training:
            return
        record = net.history[-1, "batches", -1] if len(net.history) else {}
        arch_loss = record.get("arch_loss") if isinstance(record, dict) else None
        if arch_loss is not None and not math.isfinite(arch_loss):
            self._fail(net, "The architecture loss", arch_loss, batch)
        bare = getattr(net, "_bare_module", None)  # DDP hides the supernet's API
        module = bare() if callable(bare) else getattr(net, "module_", None)
        alphas = getattr(module, "arch_parameters", None)
        if callable(alphas):
            params = alphas()
            if params:
                total = float(sum(p.detach().sum() for p in params))
                if not math.isfinite(total):
                    self._fail(net, "The architecture weights (alphas)", total, batch)


def _atomic_torch_save(obj, path: Path) -> None:
    """Write ``obj`` to ``path`` through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class SearchCheckpoint(Checkpoint):
    """skorch ``Checkpoint`` that saves everything a search needs to resume.

    Every ``every`` epochs (and after the last planned one) it writes one file,
    ``<dirname>/<f_state>``, atomically (temporary file, then rename: a crash
    never leaves a half-written checkpoint). The file holds the module (alphas
    and weights), both optimizers (``optimizer_`` and ``optimizer_arch_``),
    the state of the ``lr_scheduler`` callback, the history, the random
    number generator states and ``metadata``; it contains only tensors and
    plain data, so :meth:`load_state` reads it with ``weights_only=True``.

    :meth:`restore` puts a saved state back into an initialised net; the
    next ``partial_fit`` continues exactly where the checkpoint was taken.

    Parameters
    ----------
    dirname : str or path-like
        Folder of the checkpoint (created when needed).
    every : int, default=1
        Save every ``every`` epochs.
    f_state : str, default="search_state.pt"
    metadata : dict, optional
        Extra data stored with the state (plain data and tensors).
    sink : callable, default=None
        Receives a message per checkpoint (e.g. ``print``).

    Examples
    --------
    >>> cp = SearchCheckpoint("ckpt", every=2)
    >>> cp.path_.name
    'search_state.pt'
    """

    def __init__(
        self,
        dirname="",
        every: int = 1,
        f_state: str = "search_state.pt",
        metadata: dict | None = None,
        sink=None,
    ):
        # skorch's own files are not written: one atomic file holds it all.
        super().__init__(
            monitor=None,
            f_params=None,
            f_optimizer=None,
            f_criterion=None,
            f_history=None,
            dirname=str(dirname),
            event_name="event_cp",
        )
        self.every = every
        self.f_state = f_state
        self.metadata = metadata
        self.sink = sink

    def get_params(self, deep=True):
        return {
            "dirname": self.dirname,
            "every": self.every,
            "f_state": self.f_state,
            "metadata": self.metadata,
            "sink": self.sink,
        }

    @property
    def path_(self) -> Path:
        return Path(self.dirname) / self.f_state

    def initialize(self):
        if not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"every must be an int >= 1; got {self.every!r}.")
        self._pending = None
        return self

    def on_epoch_end(self, net, **kwargs):
        done = len(net.history)
        do = done % self.every == 0 or done >= net.max_epochs
        net.history.record(self.event_name, bool(do))
        if do:
            self.save_model(net)
            if self.sink is not None:
                self.sink(f"Search checkpoint saved after epoch {done}: {self.path_}")

    def on_train_end(self, net, **kwargs):
        pass

    def state(self, net) -> dict:
        """Everything needed to continue ``net``'s training, as plain data."""
        scheduler = None
        for name, cb in net.callbacks_:
            if name == "lr_scheduler" and hasattr(cb, "lr_scheduler_"):
                scheduler = cb.lr_scheduler_.state_dict()
        arch_opt = getattr(net, "optimizer_arch_", None)
        cuda_rng = []
        # Not net.device: under Accelerate it is None while the search runs on
        # a GPU (whose generator draws the SmoothDARTS noise).
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            cuda_rng = torch.cuda.get_rng_state_all()
        return {
            "format": 1,
            "epochs_done": len(net.history),
            "module": net.module_.state_dict(),
            "optimizer": net.optimizer_.state_dict(),
            "optimizer_arch": arch_opt.state_dict() if arch_opt is not None else None,
            "lr_scheduler": scheduler,
            "history": json.dumps(net.history.to_list()),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": list(cuda_rng),
            "fit_start_epoch": int(getattr(net, "_fit_start_epoch", 0)),
            "metadata": self.metadata,
        }

    def save_model(self, net):
        _atomic_torch_save(self.state(net), self.path_)

    @staticmethod
    def load_state(path) -> dict:
        """Read a checkpoint file without executing code (``weights_only``)."""
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(
                f"The search checkpoint {str(path)!r} cannot be read ({exc}); delete "
                "it to start the search afresh."
            ) from exc

    def restore(self, net, state: dict) -> None:
        """Load ``state`` into the initialised ``net`` to continue from it.

        Module, optimizers and history are set now; the learning-rate
        scheduler, the optimizers' learning rates and the random number
        generators are set again when training begins, after the
        ``lr_scheduler`` callback has rebuilt its scheduler.
        """
        net.module_.load_state_dict(state["module"])
        net.optimizer_.load_state_dict(state["optimizer"])
        if state.get("optimizer_arch") is not None:
            net.optimizer_arch_.load_state_dict(state["optimizer_arch"])
        net.history = History(json.loads(state["history"]))
        self._pending = state

    def on_train_begin(self, net, **kwargs):
        state, self._pending = getattr(self, "_pending", None), None
        if state is None:
            return
        # The scheduler callback just stepped the fresh scheduler: undo it.
        net.optimizer_.load_state_dict(state["optimizer"])
        for name, cb in net.callbacks_:
            if name == "lr_scheduler" and state.get("lr_scheduler") is not None:
                cb.lr_scheduler_.load_state_dict(state["lr_scheduler"])
        net._fit_start_epoch = state["fit_start_epoch"]
        torch.set_rng_state(state["rng_cpu"])
        if state.get("rng_cuda") and torch.cuda.is_available():
            # A checkpoint from a machine with more GPUs resumes on this one.
            count = torch.cuda.device_count()
            for index, rng in enumerate(state["rng_cuda"][:count]):
                torch.cuda.set_rng_state(rng, index)


# ---------------------------------------------------------------------------
# Accelerate: one search over several GPUs, nodes or CPU processes
# ---------------------------------------------------------------------------

# Importing skorch.hf needs no Hugging Face package; only using it needs
# ``accelerate`` (the optional extra ``skdarts[accelerate]``).
from skorch.hf import AccelerateMixin  # noqa: E402

_UNSUPPORTED_DISTRIBUTED = ("DEEPSPEED", "FSDP", "MEGATRON_LM", "XLA", "TP")


def _alpha_names(module) -> list[str]:
    return [n for n, _ in module.named_parameters() if n.startswith("alphas_")]


def _broadcast_from_main(tensors) -> None:
    """Overwrite ``tensors`` in place with process 0's values."""
    from accelerate.utils import broadcast

    with torch.no_grad():
        for t in tensors:
            t.copy_(broadcast(t.detach().clone(), from_process=0))


def _module_device(net):
    param = next(iter(net.module_.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


class _AcceleratedNetMixin:
    """What skdarts' accelerated skorch nets add to skorch's ``AccelerateMixin``.

    - Prediction is local: once trained, every process holds the whole model,
      so ``predict`` runs on the full input (not sharded, nothing gathered);
      any process, e.g. only the main one, can predict, score or save, and a
      pickled net loads and predicts without Accelerate's process group.
    - After training, what the fit registered with the accelerator is
      released, and the net pickles.
    - ``verbose=0`` is silent (skorch prints through the accelerator whatever
      the verbosity).
    """

    _local_inference = False

    def _initialize_callbacks(self):
        if not self.verbose and self.callbacks__print_log__sink == "auto":
            # PrintLog prints through any sink but ``print`` even when silent.
            self.callbacks__print_log__sink = print
        return super()._initialize_callbacks()

    def forward_iter(self, X, training=False, device="cpu"):
        self._local_inference = True
        try:
            yield from super().forward_iter(X, training=training, device=device)
        finally:
            self._local_inference = False

    def get_iterator(self, dataset, training=False):
        if self._local_inference or getattr(self, "_plain_loader", False):
            return super(AccelerateMixin, self).get_iterator(dataset, training=training)
        return super().get_iterator(dataset, training=training)

    def evaluation_step(self, batch, training=False):
        if not self._local_inference:
            return super().evaluation_step(batch, training=training)
        from accelerate.utils import send_to_device

        batch = send_to_device(batch, _module_device(self))
        return super(AccelerateMixin, self).evaluation_step(batch, training=training)

    _ACCELERATOR_LISTS = ("_models", "_optimizers", "_schedulers", "_dataloaders")

    def _initialize_accelerator(self):
        if self._wrapped_with_accelerator:
            return self
        self._accelerator_known = {
            name: {id(o) for o in getattr(self.accelerator, name, [])}
            for name in self._ACCELERATOR_LISTS
        }
        # A criterion without trainable parameters needs no DDP wrapper (on
        # several CPU processes Accelerate would wrap it and DDP would refuse
        # it); it only follows the device, as Accelerate does on GPUs.
        plain = {}
        for name in self._criteria:
            crit = self.__dict__.get(name + "_")
            if isinstance(crit, torch.nn.Module) and not any(
                p.requires_grad for p in crit.parameters()
            ):
                plain[name + "_"] = crit
                self.__dict__[name + "_"] = None
        try:
            super()._initialize_accelerator()
        finally:
            for key, crit in plain.items():
                if self.accelerator.device_placement:
                    crit = crit.to(self.accelerator.device)
                self.__dict__[key] = crit
        return self

    def on_train_end(self, net, X=None, y=None, **kwargs):
        if self._multi_process():
            # DDP aligns buffers (BatchNorm statistics) at the start of each
            # forward; the last training batches left each process its own.
            _broadcast_from_main(
                b
                for name in self._modules
                if isinstance(getattr(self, name + "_"), torch.nn.Module)
                for b in self.accelerator.unwrap_model(
                    getattr(self, name + "_")
                ).buffers()
            )
        super().on_train_end(net, X=X, y=y, **kwargs)
        if self.unwrap_after_train:
            self._release_accelerator()

    def _release_accelerator(self):
        """Drop what this fit registered with the accelerator.

        The accelerator keeps every prepared model, optimizer and loader; left
        there they would keep this net's tensors alive after the fit and make
        the accelerator (an estimator parameter) impossible to pickle.
        """
        known = getattr(self, "_accelerator_known", None)
        if known is None:
            return
        for name in self._ACCELERATOR_LISTS:
            items = getattr(self.accelerator, name, None)
            if isinstance(items, list):
                ours = [o for o in items if id(o) not in known[name]]
                items[:] = [o for o in items if id(o) in known[name]]
                for loader in ours if name == "_dataloaders" else ():
                    # A loader left mid-way (an interrupted fit) stays
                    # registered in the accelerator's gradient state.
                    if hasattr(loader, "end"):
                        loader.end()
        self._accelerator_known = None
        # The finished LR schedulers point at Accelerate's optimizer wrapper,
        # which their step counter patched (unpicklable): point them at the
        # optimizer it wraps (a new fit makes new schedulers).
        for _, cb in getattr(self, "callbacks_", []):
            scheduler = getattr(cb, "lr_scheduler_", None)
            inner = getattr(getattr(scheduler, "optimizer", None), "optimizer", None)
            if isinstance(inner, torch.optim.Optimizer):
                scheduler.optimizer = inner

    # -- the same history on every process -----------------------------------

    #: Per-batch history entries (besides the loss) averaged over processes.
    _averaged_batch_keys: tuple[str, ...] = ()

    def _multi_process(self) -> bool:
        return self.accelerator.num_processes > 1

    def _mean_over_processes(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self.accelerator.device)
        return self.accelerator.reduce(t, reduction="mean").tolist()

    def train_step(self, batch, **fit_params):
        step = super().train_step(batch, **fit_params)
        if not self._multi_process():
            return step
        row = self.history[-1]["batches"][-1]
        keys = [k for k in self._averaged_batch_keys if k in row]
        means = self._mean_over_processes(
            [step["loss"].item()] + [float(row[k]) for k in keys]
        )
        for k, v in zip(keys, means[1:]):
            row[k] = v
        step["loss"] = torch.as_tensor(means[0])
        return step

    def validation_step(self, batch, **fit_params):
        step = super().validation_step(batch, **fit_params)
        if not self._multi_process():
            return step
        (loss,) = self._mean_over_processes([step["loss"].item()])
        step["loss"] = torch.as_tensor(loss)
        # Scores computed from cached predictions (valid_acc) see the whole
        # split: predictions and the batch are gathered (see notify).
        step["y_pred"] = self.accelerator.gather_for_metrics(step["y_pred"])
        self._gathered_batch = self.accelerator.gather_for_metrics(batch)
        return step

    def notify(self, method_name, **cb_kwargs):
        gathered = getattr(self, "_gathered_batch", None)
        if (
            method_name == "on_batch_end"
            and gathered is not None
            and not cb_kwargs.get("training", True)
        ):
            cb_kwargs["batch"] = gathered
            self._gathered_batch = None
        super().notify(method_name, **cb_kwargs)

    def __getstate__(self):
        # Accelerate's optimizer wrappers (patched by torch's LR schedulers)
        # do not pickle; the optimizers they wrap carry the whole state.
        # (skorch serialises the optimizers inside ``__getstate__``.)
        swapped = {}
        for name in self._optimizers:
            key = name + "_"
            opt = self.__dict__.get(key)
            inner = getattr(opt, "optimizer", None)
            if isinstance(inner, torch.optim.Optimizer):
                swapped[key] = opt
                self.__dict__[key] = inner
        try:
            return super().__getstate__()
        finally:
            self.__dict__.update(swapped)

    def __setstate__(self, state):
        # skorch maps device=None to the CPU with a warning; the accelerator
        # places things (device stays None) and prediction follows the module.
        device = state.get("device")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeviceWarning)
            super().__setstate__(state)
        self.device = device


class AcceleratedSearchNet(_AcceleratedNetMixin, AccelerateMixin, SearchNet):
    """:class:`SearchNet` on Hugging Face Accelerate (data-parallel search).

    Every process runs the same script on the same data; the loaders (the
    weight split, the architecture split and the evaluation data) are sharded
    across processes, the weights are synchronised by DDP and the alphas by
    an explicit all-reduce, so one search spreads over several GPUs, nodes or
    CPU processes (``accelerate launch``). With a single process it trains
    exactly like :class:`SearchNet`.

    Why the alphas are kept out of DDP: a weight step does not use them (it
    mixes with detached, perturbed weights) and an alpha step freezes the
    weights, so DDP would see unused parameters every step and fail, or
    silently skip them with ``find_unused_parameters`` (the failure users
    report when they spread DARTS over GPUs). Here DDP ignores the alphas;
    they are broadcast from process 0 when the net is prepared, and their
    gradients are averaged over processes before every alpha step, so they
    stay identical everywhere.

    Per-batch losses and accuracies are averaged over processes and the
    validation predictions gathered, so the history (and every callback that
    reads it, e.g. early stopping) is the same on every process.

    Parameters
    ----------
    accelerator : accelerate.Accelerator
        Its device placement, mixed precision and process group are used.
        DDP, multi-CPU and single-device setups are supported; DeepSpeed,
        FSDP, XLA and gradient accumulation are not (a ``ValueError`` says so).
    *args, **kwargs
        As :class:`SearchNet`; leave ``device=None`` (the accelerator places
        the data and the module).

    Notes
    -----
    Prediction is local: after training every process holds the whole
    model, and ``predict`` runs on the full input on the process that calls
    it (so e.g. only the main process may predict or save).
    """

    def _check_accelerator(self):
        acc = self.accelerator
        kind = getattr(acc.distributed_type, "name", str(acc.distributed_type))
        if kind in _UNSUPPORTED_DISTRIBUTED:
            raise ValueError(
                f"AcceleratedSearchNet supports data-parallel (DDP) and single-"
                f"device accelerators; got distributed_type={kind!r}. Use a "
                "multi-GPU/multi-CPU/single-device Accelerator."
            )
        steps = getattr(acc, "gradient_accumulation_steps", 1)
        if steps != 1:
            raise ValueError(
                "AcceleratedSearchNet does not support gradient accumulation (the "
                "alpha and weight steps alternate every batch); got "
                f"gradient_accumulation_steps={steps}, accepted: 1. Use a larger "
                "batch_size or more processes instead."
            )

    def _initialize_accelerator(self):
        if self._wrapped_with_accelerator:
            return self
        self._check_accelerator()
        module = self.module_
        if isinstance(module, torch.nn.Module):
            names = _alpha_names(module)
            # DDP spells the root module's parameters both "name" and ".name".
            names += ["." + n for n in names if "." not in n]
            ddp = torch.nn.parallel.DistributedDataParallel
            ddp._set_params_and_buffers_to_ignore_for_model(module, names)
        super()._initialize_accelerator()
        self._broadcast_alphas()
        return self

    def _alphas(self) -> list[torch.nn.Parameter]:
        module = self._bare_module()
        names = set(_alpha_names(module))
        return [p for n, p in module.named_parameters() if n in names]

    def _broadcast_alphas(self):
        """Start every process from process 0's alphas (DDP ignores them)."""
        if self._multi_process():
            _broadcast_from_main(self._alphas())

    # -- the hooks SearchNet's bilevel step calls --------------------------

    def _bare_module(self):
        if not self._wrapped_with_accelerator:
            return self.module_
        return self.accelerator.unwrap_model(self.module_)

    def _backward(self, loss, arch: bool = False):
        self.accelerator.backward(loss)
        if arch and self._multi_process():
            alphas = [p for p in self._alphas() if p.grad is not None]
            if alphas:
                flat = torch.cat([p.grad.reshape(-1) for p in alphas])
                flat = self.accelerator.reduce(flat, reduction="mean")
                offset = 0
                for p in alphas:
                    n = p.grad.numel()
                    p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
                    offset += n

    def _clip_grad_norm(self, parameters, max_norm: float):
        # Unscales mixed-precision gradients before measuring them.
        self.accelerator.clip_grad_norm_(parameters, max_norm)

    _averaged_batch_keys = ("train_acc_batch", "arch_loss")

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        # One process: the architecture loader stays a plain DataLoader so
        # that the random draws (and so the search) are exactly SearchNet's;
        # Accelerate's loader starts its iterator lazily, which reorders them.
        self._plain_loader = not self._multi_process()
        try:
            super().on_epoch_begin(net, dataset_train, dataset_valid, **kwargs)
        finally:
            self._plain_loader = False

    def _next_arch_batch(self):
        batch = super()._next_arch_batch()
        if self._multi_process():
            return batch  # a prepared loader already placed it
        from accelerate.utils import send_to_device

        return send_to_device(batch, self.accelerator.device)

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        # An architecture loader left mid-way would stay registered as the
        # accelerator's active loader; retire it.
        loader = getattr(self, "_arch_loader", None)
        if hasattr(loader, "end"):
            loader.end()
        super().on_epoch_end(net, dataset_train, dataset_valid, **kwargs)


class AcceleratedNeuralNetClassifier(
    _AcceleratedNetMixin, AccelerateMixin, NeuralNetClassifier
):
    """skorch's ``NeuralNetClassifier`` on Accelerate.

    Trains the derived network after an accelerated search, on the same
    processes (see :class:`AcceleratedSearchNet`).
    """

    def __getstate__(self):
        return portable_getstate(self, super().__getstate__)
