"""Warm starts against scratch: the runner, :class:`WarmStartComparison`.

Its result, :class:`ComparisonResult`, and :data:`STRATEGIES` live in
:mod:`skdarts.evaluation.result` (re-exported here). See
:mod:`skdarts.evaluation` for the strategies and the rules.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import train_test_split
from sklearn.utils._param_validation import Interval

from ..data import to_host
from ..estimators import OTSourceSelector, SupernetSearchClassifier
from ..probe import HeadProbe
from .curves import HeldOutAccuracy, LearningCurve, prepare_heldout
from .result import STRATEGIES, ComparisonResult

__all__ = ["STRATEGIES", "ComparisonResult", "WarmStartComparison"]

_PROBE_KEY = "<scratch+probe>"
_NEEDS_SINGLES = {"ot", "random", "worst", "oracle"}


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
    strategies : sequence of str, default=("scratch", "scratch_probe", "ot", \
"multi")
        Any of ``STRATEGIES``; ``"scratch"`` always runs. Results compare
        against ``"scratch_probe"`` when it ran (the fair reference: scratch
        with the warm start's head probe), else against ``"scratch"``.
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
        strategies: Sequence[str] = ("scratch", "scratch_probe", "ot", "multi"),
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
