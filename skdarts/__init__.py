"""skdarts: supernet transfer learning for scikit-learn.

Differentiable architecture search (DARTS / SmoothDARTS) as scikit-learn
estimators, with supernets that can be pretrained, stored in a zoo, chosen by
an optimal-transport dataset distance and used to warm-start a new search.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__

# The public names are imported on first use (PEP 562): ``import skdarts``
# and the ``skdarts`` command stay fast, and the heavy libraries (torch,
# POT, ...) load only when a name that needs them is touched.
_LAZY = {
    "ImageFolderDataset": ".data",
    "load_image_folder": ".data",
    "OTSourceSelector": ".estimators",
    "SupernetSearchClassifier": ".estimators",
    "ComparisonResult": ".evaluation",
    "HeldOutAccuracy": ".evaluation",
    "LearningCurve": ".evaluation",
    "WarmStartComparison": ".evaluation",
    "compare_curves": ".evaluation",
    "comparison_scoring": ".evaluation",
    "load_exported": ".export",
    "NonFiniteError": ".search",
    "Genotype": ".spaces",
    "SearchSpace": ".spaces",
    "get_search_space": ".spaces",
    "DerivedNetwork": ".supernet",
    "Supernet": ".supernet",
    "SupernetZoo": ".zoo",
    "ZooEntry": ".zoo",
    "ZooEntryError": ".zoo",
    "ZooKeyError": ".zoo",
    "load_supernet": ".zoo",
    "save_supernet": ".zoo",
}

if TYPE_CHECKING:  # for type checkers and IDEs; never run
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


#: Subpackages reachable as attributes (``skdarts.data``), imported on use.
_SUBMODULES = (
    "cli",
    "data",
    "estimators",
    "evaluation",
    "export",
    "probe",
    "search",
    "similarity",
    "spaces",
    "supernet",
    "viz",
    "zoo",
)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'skdarts' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


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
