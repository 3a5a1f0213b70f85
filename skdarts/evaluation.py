"""Measuring warm starts against search from scratch.

The claim under test (arXiv 2407.20279): a search warm-started from a
pretrained supernet reaches the accuracy of a search from scratch several
times sooner, and ends at least as well. This module runs that comparison on
a user's own data, with the same seeds and budget for every strategy:

``"scratch"``
    ``warm_start=False``: the reference.
``"scratch_probe"``
    From scratch too, but with the head probe a warm start uses
    (:class:`~skdarts.probe.HeadProbe`: batch-norm recalibration and a
    logistic-regression head before the search). A second reference: a warm
    start's gain over it is what the transferred weights add beyond the
    probe.
``"ot"``
    The single-source zoo entry nearest to the target by the optimal-transport
    dataset distance (:class:`~skdarts.OTSourceSelector`); the ranking's time
    is charged to the strategy.
``"multi"``
    The multi-dataset entry (``zoo.pretrain_mixture(..., name="multi")``).
``"random"``
    A single-source entry drawn at random (per seed).
``"worst"``
    The single-source entry farthest by the OT distance.
``"oracle"``
    Every single-source entry tried, the best final held-out accuracy kept
    (a reference for the OT choice's regret, not a practical strategy: its
    cost is every run together).

Each run records a **learning curve**: the supernet's accuracy on a held-out
part of the target (neither the weight nor the architecture split) after each
search epoch, with the cumulative training seconds
(:class:`HeldOutAccuracy`, a skorch callback passed through ``callbacks=``).

How the curves are compared (:func:`compare_curves`)
----------------------------------------------------
* **Target accuracy**: scratch's final accuracy (the mean of its last
  ``tail`` epochs; the last epoch when ``tail=1``).
* **Time to target**: the first epoch (and the training seconds up to its end,
  plus the strategy's overhead, e.g. ranking the zoo) at which a curve reaches
  the target. Scratch's own time is measured the same way, so a scratch run
  that plateaued early is not charged its whole budget.
* **Speedup** = scratch's time / the warm start's time, in epochs and in
  seconds. A warm start that **never reaches** the target within the budget
  gets a speedup of **0** (and ``reached=False``): counted as a failure, never
  as a bound that could flatter it.
* **Accuracy delta** = warm final - scratch final, in percentage points.
* **Regret** of the OT choice = the oracle's final accuracy - the OT choice's,
  in points (0 when OT picked the oracle's source).

Seeds pair the runs: seed ``s`` of every strategy uses the same held-out
split, architecture split and batch order; statistics are means and standard
deviations over seeds of the per-seed comparisons.

scikit-learn composition: :class:`WarmStartComparison` is a meta-estimator
whose ``fit`` runs every strategy on the data it is given, so
``cross_validate(WarmStartComparison(...), X, y, cv=cv,
scoring=comparison_scoring([...]))`` compares the strategies on the same
folds, scoring each fitted strategy on the test fold too.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import Callback

from .data import as_images, channel_stats, to_host
from .estimators import SupernetSearchClassifier
from .probe import HeadProbe

__all__ = [
    "STRATEGIES",
    "ComparisonResult",
    "HeldOutAccuracy",
    "LearningCurve",
    "WarmStartComparison",
    "compare_curves",
    "comparison_scoring",
    "prepare_heldout",
]

#: Strategies :class:`WarmStartComparison` knows, in reporting order.
STRATEGIES = ("scratch", "scratch_probe", "ot", "multi", "random", "worst", "oracle")
_PROBE_KEY = "<scratch+probe>"
_NEEDS_SINGLES = {"ot", "random", "worst", "oracle"}
_METRICS = (
    "speedup_epochs",
    "speedup_seconds",
    "acc_delta",
    "final_acc",
    "reached",
    "regret",
    "test_acc",
    "test_acc_delta",
)


# -- the callback ---------------------------------------------------------------


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
        The estimator's ``image_shape`` (for flat rows).

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
        bare = getattr(net, "_bare_module", None)
        module = bare() if callable(bare) else net.module_
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

        Epochs count from 1; seconds include ``overhead_seconds``. Returns
        ``(inf, inf)`` when the target is never reached.
        """
        # A tolerance for float noise in means of accuracies (k / n values).
        hits = np.flatnonzero(self.accuracy >= target - 1e-9)
        if hits.size == 0:
            return math.inf, math.inf
        k = int(hits[0])
        return k + 1, float(self.seconds[k] + self.overhead_seconds)


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
        points) and ``final_acc`` (the warm run's, 0-1).

    Examples
    --------
    >>> scratch = LearningCurve([0.2, 0.4, 0.5, 0.6], [1, 2, 3, 4])
    >>> warm = LearningCurve([0.6, 0.65, 0.7, 0.7], [1, 2, 3, 4])
    >>> r = compare_curves(scratch, warm)
    >>> r["speedup_epochs"], r["speedup_seconds"], round(r["acc_delta"], 1)
    (4.0, 4.0, 10.0)
    >>> compare_curves(warm, scratch)["speedup_epochs"]  # never reached
    0.0
    """
    target = scratch.final_accuracy(tail)
    s_epochs, s_seconds = scratch.time_to_reach(target)
    w_epochs, w_seconds = warm.time_to_reach(target)
    reached = math.isfinite(w_epochs)
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
    }


def _mean_std(values) -> tuple[float, float]:
    values = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if values.size == 0:
        return math.nan, math.nan
    return float(values.mean()), float(values.std())


# -- the result ---------------------------------------------------------------------


@dataclass
class ComparisonResult:
    """Learning curves of every strategy and seed, and their comparison.

    Attributes
    ----------
    seeds : list of int
    curves : dict of {strategy: list of LearningCurve}
        One curve per seed, in the order of ``seeds``.
    sources : dict of {strategy: list of str or None}
        The zoo entry each strategy started from, per seed.
    distances : list of dict
        Per seed, the OT distance of every single-source entry (when ranked).
    tail : int
        Final accuracies are means over the last ``tail`` epochs.
    """

    seeds: list
    curves: dict
    sources: dict
    distances: list
    tail: int = 1

    @property
    def strategies(self) -> list[str]:
        """The strategies run, scratch first."""
        return [s for s in STRATEGIES if s in self.curves]

    def per_seed(
        self, strategy: str, reference: str = "scratch"
    ) -> list[dict[str, float]]:
        """:func:`compare_curves` of ``strategy`` against ``reference``, per seed.

        Each dict also has ``regret`` (oracle final - this final, points;
        NaN without an oracle) and ``seed``.
        """
        for name in (strategy, reference):
            if name not in self.curves:
                raise ValueError(
                    f"strategy {name!r} was not run; the result has {self.strategies}."
                )
        rows = []
        for i, seed in enumerate(self.seeds):
            row = compare_curves(
                self.curves[reference][i], self.curves[strategy][i], self.tail
            )
            row["regret"] = math.nan
            if "oracle" in self.curves:
                best = self.curves["oracle"][i].final_accuracy(self.tail)
                row["regret"] = 100.0 * (best - row["final_acc"])
            row["seed"] = seed
            rows.append(row)
        return rows

    def summary(
        self, reference: str = "scratch"
    ) -> dict[str, dict[str, tuple[float, float]]]:
        """Mean and standard deviation over seeds, per strategy and metric.

        Metrics (against ``reference``): ``speedup_epochs``,
        ``speedup_seconds``, ``acc_delta``, ``final_acc``, ``reached``
        (fraction of seeds) and ``regret``.
        """
        out = {}
        for strategy in self.strategies:
            rows = self.per_seed(strategy, reference)
            out[strategy] = {
                m: _mean_std([r[m] for r in rows])
                for m in (
                    "speedup_epochs",
                    "speedup_seconds",
                    "acc_delta",
                    "final_acc",
                    "reached",
                    "regret",
                )
            }
        return out

    def table(self, reference: str = "scratch") -> str:
        """The summary as an aligned text table (mean ± std over seeds)."""
        summary = self.summary(reference)
        head = (
            f"{'strategy':<13} {'source':<24} {'speedup(ep)':>13} "
            f"{'speedup(s)':>13} {'final acc':>13} {'d acc (pt)':>13} "
            f"{'regret(pt)':>11} {'reached':>8}"
        )
        lines = [head]
        for strategy, m in summary.items():
            names = sorted({s for s in self.sources[strategy] if s})
            src = ",".join(names) if names else "-"
            src = src if len(src) <= 24 else src[:21] + "..."

            def fmt(key, scale=1.0, width=13, digits=2, m=m):
                mean, std = m[key]
                if math.isnan(mean):
                    return f"{'-':>{width}}"
                text = f"{scale * mean:.{digits}f}±{scale * std:.{digits}f}"
                return f"{text:>{width}}"

            lines.append(
                f"{strategy:<13} {src:<24} {fmt('speedup_epochs')} "
                f"{fmt('speedup_seconds')} {fmt('final_acc', 100, digits=1)} "
                f"{fmt('acc_delta', digits=1)} {fmt('regret', width=11, digits=1)} "
                f"{round(m['reached'][0] * len(self.seeds)):>6}/{len(self.seeds)}"
            )
        return "\n".join(lines)

    def plot(self, ax=None, x: str = "epoch"):
        """Mean held-out accuracy per epoch (or second) of each strategy.

        Parameters
        ----------
        ax : matplotlib Axes, optional
        x : {"epoch", "seconds"}, default="epoch"

        Returns
        -------
        matplotlib Axes
        """
        if x not in ("epoch", "seconds"):
            raise ValueError(f"x must be 'epoch' or 'seconds'; got {x!r}.")
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        for strategy in self.strategies:
            curves = self.curves[strategy]
            n = min(c.n_epochs for c in curves)
            acc = np.mean([c.accuracy[:n] for c in curves], axis=0)
            if x == "epoch":
                xs = np.arange(1, n + 1)
            else:
                xs = np.mean(
                    [c.seconds[:n] + c.overhead_seconds for c in curves], axis=0
                )
            ax.plot(xs, 100 * acc, marker=".", label=strategy)
        ax.set_xlabel("search epoch" if x == "epoch" else "training seconds")
        ax.set_ylabel("held-out accuracy (%)")
        ax.legend(fontsize="small")
        return ax


# -- running the strategies ---------------------------------------------------------


class _ZooView:
    """A zoo restricted to some entry names (the selector ranks only those)."""

    def __init__(self, zoo, names):
        self._zoo, self._names = zoo, sorted(names)

    def __iter__(self):
        return iter(self._names)

    def __len__(self):
        return len(self._names)

    def __contains__(self, name):
        return name in self._names

    def __getitem__(self, name):
        if name not in self._names:
            raise KeyError(name)
        return self._zoo[name]


def _fit_one(estimator, prior, X_fit, y_fit, heldout, seed, overhead, source):
    callbacks = list(estimator.get_params()["callbacks"] or [])
    if source == _PROBE_KEY:
        prior, source = False, None
        callbacks.append(("head_probe", HeadProbe()))
    callbacks.append(("heldout", HeldOutAccuracy(*heldout)))
    est = clone(estimator).set_params(
        warm_start=prior, random_state=seed, callbacks=callbacks
    )
    est.fit(X_fit, y_fit)
    curve = LearningCurve.from_history(
        est.net_.history, overhead_seconds=overhead, source=source
    )
    return est, curve


def _default_selector(view, seed):
    from .estimators import OTSourceSelector

    return OTSourceSelector(view, shortlist=None, random_state=seed)


class WarmStartComparison(BaseEstimator):
    """Run warm-start strategies against search from scratch on (X, y).

    ``fit`` holds out ``validation_size`` of the data (stratified, per seed),
    then, for every seed, fits a clone of ``estimator`` once per strategy
    (sharing runs between strategies that start from the same entry) with a
    :class:`HeldOutAccuracy` callback, and compares the learning curves
    (see :mod:`skdarts.evaluation` for the rules). In
    :func:`~sklearn.model_selection.cross_validate` every strategy runs on
    the same folds; score with :func:`comparison_scoring`.

    Parameters
    ----------
    estimator : SupernetSearchClassifier, optional
        The search to run (its ``warm_start``, ``random_state`` and
        ``callbacks`` are set per run); default ``SupernetSearchClassifier()``.
    zoo : SupernetZoo, optional
        The sources; needed by every strategy but ``"scratch"``.
    strategies : sequence of str, default=("scratch", "ot", "multi")
        Any of ``STRATEGIES``; ``"scratch"`` always runs (the reference).
    multi_entry : str, default="multi"
        The zoo's multi-dataset entry (used by ``"multi"``, excluded from the
        single sources).
    sources : sequence of str, optional
        The single-source entries; default every entry but ``multi_entry``.
    selector : estimator, optional
        Ranks the single sources: ``fit(X, y)`` sets ``ranking_`` (nearest
        first) and ``distances_``; it gets a view of the zoo as its ``zoo``
        parameter and each seed as ``random_state``. Default
        ``OTSourceSelector(shortlist=None)``.
    seeds : sequence of int, default=(0,)
        One paired run of every strategy per seed.
    validation_size : float, default=0.2
        Held-out fraction for the learning curves.
    tail : int, default=1
        Final accuracies are means over the last ``tail`` epochs.
    n_jobs : int, optional
        Runs in parallel through joblib.
    verbose : int, default=0
        > 0 prints one line per finished run.

    Attributes
    ----------
    result_ : ComparisonResult
    estimators_ : dict of {(strategy, seed): fitted estimator}
    classes_ : ndarray

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skdarts import SupernetSearchClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> base = SupernetSearchClassifier(init_channels=2, n_cells=1, n_nodes=1,
    ...     max_epochs=2, final_epochs=0, verbose=0)
    >>> cmp = WarmStartComparison(base, strategies=["scratch"]).fit(X[:200], y[:200])
    >>> cmp.result_.curves["scratch"][0].n_epochs
    2
    """

    _parameter_constraints: dict = {
        "estimator": [SupernetSearchClassifier, None],
        "zoo": "no_validation",
        "strategies": [list, tuple],
        "multi_entry": [str],
        "sources": [list, tuple, None],
        "selector": "no_validation",
        "seeds": [list, tuple],
        "validation_size": [Interval(numbers.Real, 0, 1, closed="neither")],
        "tail": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_jobs": [numbers.Integral, None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        estimator: SupernetSearchClassifier | None = None,
        zoo: Any = None,
        strategies: Sequence[str] = ("scratch", "ot", "multi"),
        multi_entry: str = "multi",
        sources: Sequence[str] | None = None,
        selector: Any = None,
        seeds: Sequence[int] = (0,),
        validation_size: float = 0.2,
        tail: int = 1,
        n_jobs: int | None = None,
        verbose: int = 0,
    ):
        self.estimator = estimator
        self.zoo = zoo
        self.strategies = strategies
        self.multi_entry = multi_entry
        self.sources = sources
        self.selector = selector
        self.seeds = seeds
        self.validation_size = validation_size
        self.tail = tail
        self.n_jobs = n_jobs
        self.verbose = verbose

    def _check(self) -> tuple[list[str], list[str], list[int]]:
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown:
            raise ValueError(
                f"strategies has unknown names {unknown}; accepted: {list(STRATEGIES)}."
            )
        strategies = [s for s in STRATEGIES if s in set(self.strategies) | {"scratch"}]
        seeds = list(self.seeds)
        if not seeds or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in seeds
        ):
            raise ValueError(
                f"seeds must be a non-empty sequence of ints; got {self.seeds!r}."
            )
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct; got {seeds}.")
        singles: list[str] = []
        if set(strategies) - {"scratch", "scratch_probe"}:
            if self.zoo is None:
                raise ValueError(
                    f"strategies {strategies} start from zoo entries: pass zoo= "
                    "(a SupernetZoo)."
                )
            names = list(self.zoo)
            if "multi" in strategies and self.multi_entry not in names:
                raise ValueError(
                    f"strategy 'multi' needs the entry multi_entry="
                    f"{self.multi_entry!r}, which the zoo lacks; it has {names}."
                )
            if self.sources is None:
                singles = [n for n in names if n != self.multi_entry]
            else:
                singles = list(self.sources)
                missing = [n for n in singles if n not in names]
                if missing:
                    raise ValueError(
                        f"sources {missing} are not in the zoo; it has {names}."
                    )
            if _NEEDS_SINGLES & set(strategies) and not singles:
                raise ValueError(
                    f"strategies {sorted(_NEEDS_SINGLES & set(strategies))} choose "
                    "among single-source entries, but the zoo has none besides "
                    f"{self.multi_entry!r}."
                )
        return strategies, sorted(singles), seeds

    def _plan(self, strategies, singles, X_fit, y_fit, seed):
        """Which entry each strategy starts from for one seed, and overheads."""
        plan: dict[str, tuple[Any, float]] = {"scratch": (None, 0.0)}
        if "scratch_probe" in strategies:
            plan["scratch_probe"] = (_PROBE_KEY, 0.0)
        distances: dict[str, float] = {}
        if {"ot", "worst"} & set(strategies):
            view = _ZooView(self.zoo, singles)
            if self.selector is None:
                selector = _default_selector(view, seed)
            else:
                selector = clone(self.selector).set_params(zoo=view, random_state=seed)
            t0 = time.perf_counter()
            selector.fit(X_fit, y_fit)
            rank_seconds = time.perf_counter() - t0
            ranking = list(selector.ranking_)
            distances = {
                str(n): float(d)
                for n, d in zip(ranking, np.asarray(selector.distances_))
            }
            if "ot" in strategies:
                plan["ot"] = (ranking[0], rank_seconds)
            if "worst" in strategies:
                plan["worst"] = (ranking[-1], rank_seconds)
        if "random" in strategies:
            rng = np.random.RandomState(seed)
            plan["random"] = (singles[rng.randint(len(singles))], 0.0)
        if "multi" in strategies:
            plan["multi"] = (self.multi_entry, 0.0)
        return plan, distances

    def fit(self, X, y):
        """Run every strategy for every seed on (X, y).

        Parameters
        ----------
        X : array-like of images
            As :class:`~skdarts.SupernetSearchClassifier` accepts them.
        y : array-like of shape (n,)

        Returns
        -------
        self
        """
        self._validate_params()
        strategies, singles, seeds = self._check()
        estimator = (
            SupernetSearchClassifier() if self.estimator is None else self.estimator
        )
        X, y = to_host(X), np.asarray(to_host(y))
        self.classes_ = np.unique(y)
        image_shape = estimator.get_params()["image_shape"]
        jobs, plans, all_distances = [], [], []
        for seed in seeds:
            X_fit, X_val, y_fit, y_val = train_test_split(
                X, y, test_size=self.validation_size, stratify=y, random_state=seed
            )
            heldout = prepare_heldout(X_fit, X_val, y_fit, y_val, image_shape)
            plan, distances = self._plan(strategies, singles, X_fit, y_fit, seed)
            plans.append(plan)
            all_distances.append(distances)
            # Runs are keyed by the entry they start from, so that strategies
            # that agree (e.g. ot and oracle's pick) share one run.
            starts = {name for name, _ in plan.values()}
            if "oracle" in strategies:
                starts |= set(singles)
            for name in sorted(starts, key=lambda n: (n is not None, n or "")):
                prior = False if name in (None, _PROBE_KEY) else self.zoo[name]
                jobs.append(
                    (
                        seed,
                        name,
                        delayed(_fit_one)(
                            estimator, prior, X_fit, y_fit, heldout, seed, 0.0, name
                        ),
                    )
                )
        outputs = Parallel(n_jobs=self.n_jobs)(job for _, _, job in jobs)
        runs = {}
        for (seed, name, _), (est, curve) in zip(jobs, outputs):
            runs[seed, name] = (est, curve)
            if self.verbose > 0:
                print(
                    f"seed {seed} {name or 'scratch'}: final held-out accuracy "
                    f"{curve.final_accuracy(self.tail):.3f} after {curve.n_epochs} "
                    f"epochs, {curve.seconds[-1]:.1f} s",
                    flush=True,
                )
        curves = {s: [] for s in strategies}
        sources = {s: [] for s in strategies}
        self.estimators_ = {}
        for seed, plan in zip(seeds, plans):
            if "oracle" in strategies:
                best = max(
                    singles,
                    key=lambda n: runs[seed, n][1].final_accuracy(self.tail),
                )
                plan["oracle"] = (best, 0.0)
            for strategy in strategies:
                name, overhead = plan[strategy]
                est, curve = runs[seed, name]
                name = None if name == _PROBE_KEY else name
                curves[strategy].append(
                    LearningCurve(
                        curve.accuracy, curve.seconds, overhead, name, curve.meta
                    )
                )
                sources[strategy].append(name)
                self.estimators_[strategy, seed] = est
        self.result_ = ComparisonResult(
            seeds=seeds,
            curves=curves,
            sources=sources,
            distances=all_distances,
            tail=self.tail,
        )
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "result_")


# -- scikit-learn scoring -----------------------------------------------------------


def _score_metric(comparison, X, y, strategy, metric):
    check_is_fitted(comparison)
    result = comparison.result_
    if strategy not in result.curves:
        raise ValueError(
            f"the comparison did not run strategy {strategy!r}; it ran "
            f"{result.strategies}."
        )
    if metric in ("test_acc", "test_acc_delta"):
        accs = []
        for seed in result.seeds:
            acc = comparison.estimators_[strategy, seed].score(X, y)
            if metric == "test_acc_delta":
                acc = 100.0 * (
                    acc - comparison.estimators_["scratch", seed].score(X, y)
                )
            accs.append(acc)
        return float(np.mean(accs))
    return float(np.nanmean([row[metric] for row in result.per_seed(strategy)]))


class _ComparisonScorer:
    """A scorer ``(comparison, X, y) -> float`` for one strategy and metric."""

    def __init__(self, strategy: str, metric: str):
        self.strategy, self.metric = strategy, metric

    def __call__(self, estimator, X, y):
        return _score_metric(estimator, X, y, self.strategy, self.metric)

    def __repr__(self) -> str:
        return f"comparison_scorer({self.strategy!r}, {self.metric!r})"


def comparison_scoring(
    strategies: Sequence[str] = ("ot", "multi"),
    metrics: Sequence[str] = ("speedup_epochs", "acc_delta", "test_acc_delta"),
) -> dict[str, _ComparisonScorer]:
    """Scorers for ``cross_validate(WarmStartComparison(...), scoring=...)``.

    Parameters
    ----------
    strategies : sequence of str, default=("ot", "multi")
    metrics : sequence of str, default=("speedup_epochs", "acc_delta", \
"test_acc_delta")
        From the learning curves (means over seeds): ``speedup_epochs``,
        ``speedup_seconds``, ``acc_delta`` (points), ``final_acc``,
        ``reached``, ``regret``; on the test fold: ``test_acc`` (the
        strategy's fitted estimator) and ``test_acc_delta`` (minus scratch's,
        points).

    Returns
    -------
    dict of {"<strategy>_<metric>": scorer}

    Examples
    --------
    >>> sorted(comparison_scoring(["ot"], ["speedup_epochs", "test_acc"]))
    ['ot_speedup_epochs', 'ot_test_acc']
    """
    bad_s = [s for s in strategies if s not in STRATEGIES]
    bad_m = [m for m in metrics if m not in _METRICS]
    if bad_s or bad_m:
        raise ValueError(
            f"unknown strategies {bad_s} / metrics {bad_m}; accepted strategies: "
            f"{list(STRATEGIES)}, metrics: {list(_METRICS)}."
        )
    return {f"{s}_{m}": _ComparisonScorer(s, m) for s in strategies for m in metrics}
