"""skdarts: supernet transfer learning for scikit-learn.

Differentiable architecture search (DARTS / SmoothDARTS) as scikit-learn
estimators, with supernets that can be pretrained, stored in a zoo, chosen by
an optimal-transport dataset distance and used to warm-start a new search.
"""

from ._version import __version__ as __version__
from .data import ImageFolderDataset, load_image_folder
from .estimators import OTSourceSelector, SupernetSearchClassifier
from .evaluation import (
    ComparisonResult,
    HeldOutAccuracy,
    LearningCurve,
    WarmStartComparison,
    compare_curves,
    comparison_scoring,
)
from .export import load_exported
from .search import NonFiniteError
from .spaces import Genotype, SearchSpace, get_search_space
from .supernet import DerivedNetwork, Supernet
from .zoo import (
    SupernetZoo,
    ZooEntry,
    ZooEntryError,
    ZooKeyError,
    load_supernet,
    save_supernet,
)

__all__ = [
    "ComparisonResult",
    "DerivedNetwork",
    "Genotype",
    "HeldOutAccuracy",
    "ImageFolderDataset",
    "LearningCurve",
    "NonFiniteError",
    "OTSourceSelector",
    "SearchSpace",
    "Supernet",
    "SupernetSearchClassifier",
    "SupernetZoo",
    "WarmStartComparison",
    "ZooEntry",
    "ZooEntryError",
    "ZooKeyError",
    "compare_curves",
    "comparison_scoring",
    "get_search_space",
    "load_exported",
    "load_image_folder",
    "load_supernet",
    "save_supernet",
]
