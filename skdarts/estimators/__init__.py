"""scikit-learn estimators: thin faces over the search, zoo and similarity parts."""

from ._classifier import SupernetSearchClassifier

__all__ = ["SupernetSearchClassifier"]
