"""Callbacks every search uses: the genotype record, the guard against NaNs,
and the console output (a stable epoch table, per-batch progress)."""

from __future__ import annotations

import math
import re
import sys
from itertools import cycle

import torch
from skorch.callbacks import Callback, PrintLog, ProgressBar
from skorch.utils import Ansi

from .contracts import SearchableSupernet, unwrap_supernet

__all__ = [
    "BatchProgress",
    "FiniteGuard",
    "GenotypeRecorder",
    "NonFiniteError",
    "StablePrintLog",
]

#: Seconds an epoch runs before :class:`BatchProgress` shows its bar.
BATCH_PROGRESS_DELAY = 2.0
#: Batches an epoch needs (training + validation) for :class:`BatchProgress`.
BATCH_PROGRESS_MIN_BATCHES = 5

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


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


class StablePrintLog(PrintLog):
    """skorch's epoch table, with its columns fixed at the first row.

    skorch's ``PrintLog`` lays out every row from that row's own keys under
    the header of the first, so a key missing from the first row (the
    architecture loss while a warm search holds the alphas still) or present
    only there (the head probe's figures) puts later values under the wrong
    headers. Here the columns are the first row's keys plus ``columns``, with
    fixed widths; a later row leaves a missing value blank and leaves out
    keys that are not columns (they stay in the history).

    Parameters
    ----------
    keys_ignored : str or list of str, optional
        As skorch's ``PrintLog``.
    sink : callable, default=print
    floatfmt : str, default=".4f"
    columns : sequence of str, default=()
        Keys shown even when the first row lacks them.

    Examples
    --------
    >>> lines = []
    >>> log = StablePrintLog(sink=lines.append, columns=["arch_loss"]).initialize()
    >>> class Net:
    ...     verbose = 1
    ...     history = [{"epoch": 1, "epsilon": 0.3, "dur": 1.5}]
    >>> log.on_epoch_end(Net)
    >>> Net.history.append({"epoch": 2, "arch_loss": 2.25, "epsilon": 0.3, "dur": 1.5})
    >>> log.on_epoch_end(Net)
    >>> print("\\n".join(lines))
       epoch    arch_loss    epsilon       dur
    --------  -----------  ---------  --------
           1                  0.3000    1.5000
           2       2.2500     0.3000    1.5000
    """

    def __init__(
        self,
        keys_ignored=None,
        sink=print,
        tablefmt="simple",
        floatfmt=".4f",
        stralign="right",
        columns=(),
    ):
        super().__init__(
            keys_ignored=keys_ignored,
            sink=sink,
            tablefmt=tablefmt,
            floatfmt=floatfmt,
            stralign=stralign,
        )
        self.columns = columns

    def initialize(self):
        super().initialize()
        self.columns_ = None
        self.widths_ = None
        return self

    def _cell(self, row, key, color) -> str:
        if key not in row:
            return ""
        return str(self.format_row(row, key, color))

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        palette = [c.value for c in Ansi if c != Ansi.ENDC]
        if self.columns_ is None:
            self.columns_ = self._sorted_keys(set(row) | set(self.columns))
            heads = [k[6:] if k.startswith("event_") else k for k in self.columns_]
            first = [
                _ANSI.sub("", self._cell(row, k, c))
                for k, c in zip(self.columns_, cycle(palette))
            ]
            # Room for wider values later (losses above 10, long durations).
            self.widths_ = [max(len(h), len(v), 6) + 2 for h, v in zip(heads, first)]
            self._sink(
                "  ".join(h.rjust(w) for h, w in zip(heads, self.widths_)),
                net.verbose,
            )
            self._sink("  ".join("-" * w for w in self.widths_), net.verbose)
        cells = []
        for key, width, color in zip(self.columns_, self.widths_, cycle(palette)):
            text = self._cell(row, key, color)
            pad = max(width - len(_ANSI.sub("", text)), 0)
            cells.append(" " * pad + text)
        self._sink("  ".join(cells), net.verbose)
        if self.sink is print:
            sys.stdout.flush()


class BatchProgress(ProgressBar):
    """A per-batch progress bar for epochs that last, silent for short ones.

    skorch's ``ProgressBar`` draws a bar from the first batch of every
    epoch; this one skips epochs of fewer than ``min_batches`` batches
    (training and validation together) and shows its bar (on stderr) only
    after the epoch has run ``delay`` seconds, so quick fits print nothing
    more than their epoch table.

    Parameters
    ----------
    delay : float, default=BATCH_PROGRESS_DELAY
        Seconds before the bar appears.
    min_batches : int, default=BATCH_PROGRESS_MIN_BATCHES
    postfix_keys : list of str, optional
        Batch keys shown beside the bar (skorch's default: the train and
        validation losses).

    Examples
    --------
    >>> BatchProgress(delay=0.0, min_batches=1).min_batches
    1
    """

    def __init__(
        self,
        delay: float = BATCH_PROGRESS_DELAY,
        min_batches: int = BATCH_PROGRESS_MIN_BATCHES,
        postfix_keys=None,
    ):
        super().__init__(postfix_keys=postfix_keys)
        self.delay = delay
        self.min_batches = min_batches

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        from tqdm.auto import tqdm

        n = self._get_batches_per_epoch(net, dataset_train, dataset_valid)
        self.pbar_ = None
        if n >= self.min_batches:
            self.pbar_ = tqdm(
                total=n,
                leave=False,
                delay=self.delay,
                desc=f"epoch {len(net.history)}",
            )

    def on_batch_end(self, net, **kwargs):
        if getattr(self, "pbar_", None) is not None:
            super().on_batch_end(net, **kwargs)

    def on_epoch_end(self, net, **kwargs):
        if getattr(self, "pbar_", None) is not None:
            self.pbar_.close()
            self.pbar_ = None
