"""Learning curves: recording them (a skorch callback) and their arithmetic.

See :mod:`skdarts.evaluation` for how curves are compared.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.preprocessing import LabelEncoder
from skorch.callbacks import Callback

from ..data import as_images, channel_stats, to_host
from ..search import unwrap_supernet

__all__ = [
    "TARGET_TOLERANCE",
    "HeldOutAccuracy",
    "LearningCurve",
    "compare_curves",
    "epochs_to_reach",
    "prepare_heldout",
]

#: How far below a target an accuracy may be and still count as reaching it.
#: Accuracies are fractions ``k / n`` and means of them, so a curve that
#: reaches the target exactly can compare below it by float rounding
#: (~1e-16); 1e-9 absorbs that and is far smaller than any real accuracy
#: step (``1 / n`` for fewer than 10^9 held-out images).
TARGET_TOLERANCE = 1e-9


def epochs_to_reach(acc: Sequence[float], target: float) -> int | float:
    """First epoch (1-based) at which ``acc`` reaches ``target``; inf if never.

    An accuracy within :data:`TARGET_TOLERANCE` below ``target`` counts as
    reaching it (float rounding of means of fractions). The one definition
    of "reaching a target" used by the comparisons, the plots and the
    command line.

    Parameters
    ----------
    acc : sequence of float
        Accuracy after each epoch.
    target : float

    Returns
    -------
    int, or ``math.inf`` when never reached

    Examples
    --------
    >>> epochs_to_reach([0.2, 0.5, 0.7], 0.5)
    2
    >>> epochs_to_reach([0.2, 0.5], 0.9)
    inf
    >>> epochs_to_reach([1 - 0.9], 0.1)  # 0.09999999999999998 reaches 0.1
    1
    """
    hits = np.flatnonzero(
        np.asarray(acc, dtype=np.float64) >= target - TARGET_TOLERANCE
    )
    return int(hits[0]) + 1 if hits.size else math.inf


def prepare_heldout(
    X_fit, X_heldout, y_fit, y_heldout, image_shape=None
) -> tuple[np.ndarray, np.ndarray]:
    """Held-out images and labels as the network will see them.

    :class:`~skdarts.SupernetSearchClassifier` standardises images with the
    per-channel statistics of the data it is fitted on and encodes labels in
    sorted order; this applies the same rule to a held-out part.

    Parameters
    ----------
    X_fit : array-like of images
        What the estimator will be fitted on.
    X_heldout : array-like of images
        The held-out part.
    y_fit, y_heldout : array-like of shape (n,)
        Their labels; every held-out label must occur in ``y_fit``.
    image_shape : tuple of int, optional
        The estimator's ``image_shape``: how to reshape flat rows
        ``(n, features)`` into images, ``(h, w)`` or ``(c, h, w)``.

    Returns
    -------
    images : ndarray of float32, shape (n_heldout, c, h, w)
    labels : ndarray of int64, shape (n_heldout,)

    Examples
    --------
    >>> rng = np.random.RandomState(0)
    >>> X, y = rng.rand(10, 4, 4), np.array([0, 1] * 5)
    >>> images, labels = prepare_heldout(X[:6], X[6:], y[:6] + 5, y[6:] + 5)
    >>> images.shape, labels.tolist()
    ((4, 1, 4, 4), [0, 1, 0, 1])
    """
    fit_images = as_images(X_fit, image_shape=image_shape)
    images = as_images(X_heldout, image_shape=image_shape, channels=fit_images.shape[1])
    mean, std = channel_stats(fit_images)
    images = (images - mean[None, :, None, None]) / std[None, :, None, None]
    encoder = LabelEncoder().fit(np.asarray(to_host(y_fit)))
    y_heldout = np.asarray(to_host(y_heldout))
    unseen = np.setdiff1d(y_heldout, encoder.classes_)
    if unseen.size:
        raise ValueError(
            f"y_heldout has labels {unseen.tolist()[:5]} that y_fit lacks; the "
            "held-out part must only hold classes the estimator is fitted on."
        )
    return images.astype(np.float32), encoder.transform(y_heldout).astype(np.int64)


class HeldOutAccuracy(Callback):
    """skorch callback: accuracy on held-out data after every epoch.

    Records ``heldout_acc`` (the module in evaluation mode, as ``predict``
    sees it) and ``train_seconds`` (cumulative epoch durations measured by
    skorch, which exclude this evaluation, plus a warm start's head probe,
    :class:`~skdarts.probe.HeadProbe`) in the net's history. Pass it to
    :class:`~skdarts.SupernetSearchClassifier` through ``callbacks=``.

    Parameters
    ----------
    X : ndarray of float32, shape (n, c, h, w)
        Held-out images as the network sees them (see :func:`prepare_heldout`).
    y : ndarray of int, shape (n,)
        Encoded labels (0 ... n_classes - 1).
    batch_size : int, default=512

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skdarts import SupernetSearchClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> Xh, yh = prepare_heldout(X[:150], X[150:200], y[:150], y[150:200])
    >>> clf = SupernetSearchClassifier(init_channels=2, n_cells=1, n_nodes=1,
    ...     max_epochs=2, final_epochs=0, verbose=0, random_state=0,
    ...     callbacks=[("heldout", HeldOutAccuracy(Xh, yh))]).fit(X[:150], y[:150])
    >>> [0 <= row["heldout_acc"] <= 1 for row in clf.net_.history]
    [True, True]
    """

    def __init__(self, X, y, batch_size: int = 512):
        self.X = X
        self.y = y
        self.batch_size = batch_size

    def initialize(self):
        X, y = np.asarray(self.X), np.asarray(self.y)
        if X.ndim != 4 or len(X) != len(y) or len(y) == 0:
            raise ValueError(
                "HeldOutAccuracy needs images of shape (n, c, h, w) and n labels "
                f"(n >= 1); got X of shape {X.shape} and y of shape {y.shape}."
            )
        self.train_seconds_ = 0.0
        return self

    def on_train_begin(self, net, **kwargs):
        self.train_seconds_ = 0.0

    def on_epoch_begin(self, net, **kwargs):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        dur = row.get("dur")
        if dur is None:
            dur = time.perf_counter() - self._t0
        # A warm start's head probe runs before the first epoch: its cost counts.
        self.train_seconds_ += float(dur) + float(row.get("probe_seconds", 0.0))
        module = unwrap_supernet(net)
        # Batches go where the module is: an accelerated net has device=None.
        param = next(module.parameters(), None)
        device = param.device if param is not None else net.device
        was_training = module.training
        module.eval()
        correct = 0
        X = np.asarray(self.X, dtype=np.float32)
        y = np.asarray(self.y)
        try:
            with torch.no_grad():
                for start in range(0, len(X), self.batch_size):
                    xb = torch.from_numpy(X[start : start + self.batch_size])
                    pred = module(xb.to(device)).argmax(1).cpu().numpy()
                    correct += int((pred == y[start : start + self.batch_size]).sum())
        finally:
            module.train(was_training)
        net.history.record("heldout_acc", correct / len(X))
        net.history.record("train_seconds", self.train_seconds_)


# -- curves and their arithmetic ----------------------------------------------------


@dataclass(frozen=True)
class LearningCurve:
    """Held-out accuracy after each epoch of one run, and its cost in seconds.

    Parameters
    ----------
    accuracy : array-like of shape (n_epochs,)
        Held-out accuracy (0-1) after epochs 1 ... n_epochs.
    seconds : array-like of shape (n_epochs,)
        Cumulative training seconds at the end of each epoch.
    overhead_seconds : float, default=0.0
        Seconds spent before training (e.g. ranking the zoo), added to every
        time this curve reports.
    source : str or None, default=None
        The zoo entry the run started from (None: from scratch).

    Examples
    --------
    >>> c = LearningCurve([0.5, 0.7, 0.8], [1.0, 2.0, 3.0], overhead_seconds=0.5)
    >>> c.final_accuracy(), c.time_to_reach(0.7)
    (0.8, (2, 2.5))
    >>> c.time_to_reach(0.9)
    (inf, inf)
    """

    accuracy: np.ndarray
    seconds: np.ndarray
    overhead_seconds: float = 0.0
    source: str | None = None
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        acc = np.asarray(self.accuracy, dtype=np.float64).ravel()
        sec = np.asarray(self.seconds, dtype=np.float64).ravel()
        if acc.size == 0 or acc.shape != sec.shape:
            raise ValueError(
                "accuracy and seconds must be non-empty and of the same length; got "
                f"{acc.size} accuracies and {sec.size} times."
            )
        if np.any(np.diff(sec) < 0) or np.any(sec < 0):
            raise ValueError(f"seconds must be cumulative (non-decreasing); got {sec}.")
        object.__setattr__(self, "accuracy", acc)
        object.__setattr__(self, "seconds", sec)

    @classmethod
    def from_history(
        cls, history, overhead_seconds: float = 0.0, source: str | None = None
    ) -> LearningCurve:
        """Build from a history with ``heldout_acc`` (and ``train_seconds``).

        ``history`` is a skorch history or a list of dicts (an estimator's
        ``history_``; rows without ``heldout_acc``, e.g. the final training
        phase, are skipped).
        """
        rows = [row for row in history if "heldout_acc" in row]
        if not rows:
            raise ValueError(
                "the history has no 'heldout_acc' entries: fit with a "
                "HeldOutAccuracy callback."
            )
        acc = [row["heldout_acc"] for row in rows]
        if all("train_seconds" in row for row in rows):
            sec = [row["train_seconds"] for row in rows]
        else:
            sec = np.cumsum([row.get("dur", 0.0) for row in rows])
        return cls(acc, sec, float(overhead_seconds), source)

    @property
    def n_epochs(self) -> int:
        """Number of epochs recorded."""
        return int(self.accuracy.size)

    def final_accuracy(self, tail: int = 1) -> float:
        """Mean accuracy of the last ``tail`` epochs."""
        return float(self.accuracy[-max(int(tail), 1) :].mean())

    def time_to_reach(self, target: float) -> tuple[float, float]:
        """``(epoch, seconds)`` at which the accuracy first reaches ``target``.

        Epochs count from 1 (as :func:`epochs_to_reach`, with its
        tolerance); seconds include ``overhead_seconds``. Returns
        ``(inf, inf)`` when the target is never reached.
        """
        epoch = epochs_to_reach(self.accuracy, target)
        if not math.isfinite(epoch):
            return math.inf, math.inf
        return epoch, float(self.seconds[epoch - 1] + self.overhead_seconds)


def compare_curves(
    scratch: LearningCurve, warm: LearningCurve, tail: int = 1
) -> dict[str, float]:
    """Speedup and accuracy difference of a warm-started run over scratch.

    Parameters
    ----------
    scratch : LearningCurve
        The reference run.
    warm : LearningCurve
        The warm-started run (same seed and budget).
    tail : int, default=1
        Final accuracies are means over the last ``tail`` epochs.

    Returns
    -------
    dict
        ``target`` (scratch's final accuracy), ``scratch_epochs``,
        ``scratch_seconds``, ``warm_epochs``, ``warm_seconds`` (``inf`` when
        never reached), ``reached`` (1.0 or 0.0), ``speedup_epochs``,
        ``speedup_seconds`` (0 when never reached), ``acc_delta`` (percentage
        points), ``final_acc`` (the warm run's, 0-1), ``auc_delta`` (the
        difference of the mean accuracies over the epochs both curves have,
        i.e. of the areas under the learning curves divided by the budget,
        in points: unlike the epoch ratio it does not saturate at the
        budget) and ``open_ended`` (1.0 when the reference reaches its own
        final accuracy only within its last ``tail`` epochs, i.e. was still
        improving: the epoch ratio is then bounded by the budget, and a
        longer budget could change it either way).

    Examples
    --------
    >>> scratch = LearningCurve([0.2, 0.4, 0.5, 0.6], [1, 2, 3, 4])
    >>> warm = LearningCurve([0.6, 0.65, 0.7, 0.7], [1, 2, 3, 4])
    >>> r = compare_curves(scratch, warm)
    >>> r["speedup_epochs"], r["speedup_seconds"], round(r["acc_delta"], 1)
    (4.0, 4.0, 10.0)
    >>> compare_curves(warm, scratch)["speedup_epochs"]  # never reached
    0.0
    >>> round(r["auc_delta"], 2), r["open_ended"]  # mean 66.25 vs 42.5 points
    (23.75, 1.0)
    """
    target = scratch.final_accuracy(tail)
    s_epochs, s_seconds = scratch.time_to_reach(target)
    w_epochs, w_seconds = warm.time_to_reach(target)
    reached = math.isfinite(w_epochs)
    n = min(scratch.n_epochs, warm.n_epochs)
    return {
        "target": target,
        "scratch_epochs": float(s_epochs),
        "scratch_seconds": float(s_seconds),
        "warm_epochs": float(w_epochs),
        "warm_seconds": float(w_seconds),
        "reached": float(reached),
        "speedup_epochs": float(s_epochs / w_epochs) if reached else 0.0,
        "speedup_seconds": (
            float(s_seconds / w_seconds) if reached and w_seconds > 0 else 0.0
        ),
        "acc_delta": 100.0 * (warm.final_accuracy(tail) - target),
        "final_acc": warm.final_accuracy(tail),
        "auc_delta": 100.0
        * float(warm.accuracy[:n].mean() - scratch.accuracy[:n].mean()),
        "open_ended": float(s_epochs > scratch.n_epochs - max(int(tail), 1)),
    }
