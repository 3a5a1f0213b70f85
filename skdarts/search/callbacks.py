"""Callbacks every search uses: the genotype record and the guard against NaNs."""

from __future__ import annotations

import math

import torch
from skorch.callbacks import Callback

from .contracts import SearchableSupernet, unwrap_supernet

__all__ = ["FiniteGuard", "GenotypeRecorder", "NonFiniteError"]


class GenotypeRecorder(Callback):
    """Record the genotype and the alphas' softmax in the history every epoch."""

    def on_epoch_end(self, net, **kwargs):
        module = unwrap_supernet(net)
        net.history.record("genotype", module.genotype().to_dict())
        w_n, w_r = (w.detach().cpu().tolist() for w in module.arch_weights())
        net.history.record("arch_weights", {"normal": w_n, "reduce": w_r})


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
        # The final training's network has no alphas to check.
        module = unwrap_supernet(net)
        if isinstance(module, SearchableSupernet):
            params = module.arch_parameters()
            if params:
                total = float(sum(p.detach().sum() for p in params))
                if not math.isfinite(total):
                    self._fail(net, "The architecture weights (alphas)", total, batch)
