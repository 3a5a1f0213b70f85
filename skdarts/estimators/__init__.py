"""scikit-learn estimators: thin faces over the search, zoo and similarity parts."""

from ._classifier import SupernetSearchClassifier
from ._selector import OTSourceSelector

__all__ = ["OTSourceSelector", "SupernetSearchClassifier"]
