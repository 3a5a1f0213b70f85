"""scikit-learn scorers of a fitted :class:`~skdarts.evaluation.WarmStartComparison`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .comparison import STRATEGIES

__all__ = ["comparison_scoring"]

_METRICS = (
    "speedup_epochs",
    "speedup_seconds",
    "acc_delta",
    "auc_delta",
    "final_acc",
    "reached",
    "regret",
    "test_acc",
    "test_acc_delta",
)


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
