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

import time

import torch
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback
from skorch.dataset import unpack_data
from skorch.utils import TeeGenerator, to_device

__all__ = ["GenotypeRecorder", "SearchNet", "perturb_arch_weights"]


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


def perturb_arch_weights(weights, epsilon: float, generator=None):
    """SDARTS-RS: add uniform noise in [-epsilon, epsilon] and project back.

    Parameters
    ----------
    weights : sequence of torch.Tensor
        Softmaxed architecture weights (one tensor per cell type).
    epsilon : float
    generator : torch.Generator, optional

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
        noise = torch.empty(w.shape, device=w.device).uniform_(
            -epsilon, epsilon, generator=generator
        )
        out.append(_project(w.detach() + noise))
    return tuple(out)


class GenotypeRecorder(Callback):
    """Record the genotype and the alphas' softmax in the history every epoch."""

    def on_epoch_end(self, net, **kwargs):
        module = net.module_
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
        **kwargs,
    ):
        self.optimizer_arch = optimizer_arch
        self.smoothing = smoothing
        self.epsilon = epsilon
        self.epsilon_start = epsilon_start
        self.pgd_steps = pgd_steps
        self.grad_clip = grad_clip
        self.arch_warmup_epochs = arch_warmup_epochs
        super().__init__(*args, **kwargs)

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
        self.optimizer_arch_ = self.optimizer_arch(*pargs, **pkwargs)
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

    def _next_arch_batch(self):
        try:
            return next(self._arch_batches)
        except StopIteration:
            self._arch_batches = iter(self._arch_loader)
            return next(self._arch_batches)

    def _arch_frozen(self) -> bool:
        epoch = len(self.history) - 1 - getattr(self, "_fit_start_epoch", 0)
        return epoch < self.arch_warmup_epochs

    # -- the bilevel step ----------------------------------------------------

    def _alpha_step(self):
        Xa, ya = unpack_data(self._next_arch_batch())
        Xa, ya = to_device(Xa, self.device), to_device(ya, self.device)
        self.optimizer_arch_.zero_grad(set_to_none=True)
        # Alpha gradients need no weight gradients: freeze weights to skip them.
        weights = self.module_.weight_parameters()
        flags = [p.requires_grad for p in weights]
        for p in weights:
            p.requires_grad_(False)
        try:
            loss = self.criterion_(self.module_(Xa), ya)
            loss.backward()
        finally:
            for p, f in zip(weights, flags):
                p.requires_grad_(f)
        self.optimizer_arch_.step()
        return loss.detach()

    def _smoothed_weights(self, Xi, yi):
        base = self.module_.arch_weights()
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
            loss = self.criterion_(self.module_(Xi, arch_weights=current), yi)
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
        if not self._arch_frozen():
            alpha_loss = self._alpha_step()
            self.history.record_batch("arch_loss", alpha_loss.item())
        arch_weights = self._smoothed_weights(Xi, yi)
        self.optimizer_.zero_grad(set_to_none=True)
        y_pred = self.module_(Xi, arch_weights=arch_weights)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        loss.backward()
        self.notify(
            "on_grad_computed",
            named_parameters=TeeGenerator(self.module_.named_weight_parameters()),
            batch=batch,
            training=True,
        )
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(
                self.module_.weight_parameters(), self.grad_clip
            )
        self.optimizer_.step()
        with torch.no_grad():
            acc = (y_pred.argmax(1) == yi.to(y_pred.device)).float().mean().item()
        self.history.record_batch("train_acc_batch", acc)
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
