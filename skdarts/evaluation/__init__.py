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

Modules
-------
* :mod:`skdarts.evaluation.curves` - :class:`HeldOutAccuracy`,
  :class:`LearningCurve`, :func:`epochs_to_reach`, :func:`compare_curves`;
* :mod:`skdarts.evaluation.comparison` - :class:`WarmStartComparison`;
* :mod:`skdarts.evaluation.result` - :class:`ComparisonResult` and
  ``STRATEGIES``;
* :mod:`skdarts.evaluation.scoring` - :func:`comparison_scoring`.

Plots of curves and comparisons are in :mod:`skdarts.viz`
(:func:`~skdarts.viz.plot_learning_curves`,
:func:`~skdarts.viz.plot_comparison`).

Layer: above the estimators, below ``viz`` and ``cli``.
"""

from .comparison import (
    STRATEGIES,
    ComparisonResult,
    WarmStartComparison,
    _ZooView,  # noqa: F401  (pickles written before name it here)
)
from .curves import (
    TARGET_TOLERANCE,
    HeldOutAccuracy,
    LearningCurve,
    compare_curves,
    epochs_to_reach,
    prepare_heldout,
)
from .scoring import (
    _ComparisonScorer,  # noqa: F401  (pickled scorers name it here)
    comparison_scoring,
)

__all__ = [
    "STRATEGIES",
    "TARGET_TOLERANCE",
    "ComparisonResult",
    "HeldOutAccuracy",
    "LearningCurve",
    "WarmStartComparison",
    "compare_curves",
    "comparison_scoring",
    "epochs_to_reach",
    "prepare_heldout",
]
