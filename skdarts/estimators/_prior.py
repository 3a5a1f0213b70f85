"""Resolving a warm-start prior into a supernet to start the search from.

Placeholder until the zoo issue: supernets and fitted estimators only.
"""

from __future__ import annotations

import copy

from ..supernet import Supernet


def resolve_prior(prior, fresh: Supernet):
    """Return ``(module, source)`` for the search to start from ``prior``.

    Parameters
    ----------
    prior : object
        What the user passed as ``warm_start``.
    fresh : Supernet
        A newly built supernet with the target's configuration.
    """
    module = getattr(getattr(prior, "net_", None), "module_", None)
    if module is None and isinstance(prior, Supernet):
        module = prior
    if module is None:
        raise TypeError(
            "warm_start must be True, False, 'auto' or a prior (a zoo entry, a saved "
            f"supernet path or a fitted SupernetSearchClassifier); got "
            f"{type(prior).__name__}."
        )
    module = copy.deepcopy(module).cpu()
    module.reset_head(fresh.n_classes)
    return module, {"kind": type(prior).__name__}
