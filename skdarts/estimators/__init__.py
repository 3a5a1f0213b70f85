"""scikit-learn estimators: thin faces over the search, zoo and similarity parts."""

from ._classifier import SupernetSearchClassifier
from ._selector import OTSourceSelector
from ._small_data import SmallDataWarning

__all__ = ["OTSourceSelector", "SmallDataWarning", "SupernetSearchClassifier"]
