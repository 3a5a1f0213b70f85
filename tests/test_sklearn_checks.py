"""scikit-learn's estimator checks on every public estimator, with tiny settings.

Expected failures live in ``EXPECTED_FAILURES`` below, each with its reason;
the aim is to keep it empty.
"""

import numpy as np
from _fakezoo import FakeZoo
from _tiny import tiny
from sklearn.utils.estimator_checks import parametrize_with_checks

from skdarts import OTSourceSelector, SupernetSearchClassifier
from skdarts.similarity import signature_fn

# The shared tiny settings, with enough final training (and a learning rate)
# for the checks that require a classifier to fit its training data.
TINY = tiny(
    max_epochs=2, final_epochs=4, batch_size=64, lr=0.05, without=("random_state",)
)


def _tiny_zoo() -> FakeZoo:
    """Two entries with signatures of small random image sets."""
    rng = np.random.RandomState(0)
    images = rng.rand(60, 6, 6)
    labels = np.arange(60) % 3
    return FakeZoo(
        {
            "smooth": {"smooth": signature_fn(images.cumsum(axis=1), labels)},
            "noise": {"noise": signature_fn(images, labels)},
        }
    )


#: check name -> reason. One place for every expected failure.
EXPECTED_FAILURES: dict[str, str] = {}


def _expected_failures(estimator):
    return EXPECTED_FAILURES


@parametrize_with_checks(
    [SupernetSearchClassifier(**TINY), OTSourceSelector(_tiny_zoo(), max_points=50)],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
