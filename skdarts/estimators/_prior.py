"""Resolving a warm-start prior into a supernet to start the search from.

Placeholder until the zoo issue: only supernets themselves are accepted.
"""

from __future__ import annotations

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
    raise TypeError(
        "warm_start must be True, False, 'auto' or a prior (a zoo entry, a saved "
        f"supernet path or a fitted SupernetSearchClassifier); got "
        f"{type(prior).__name__}."
    )
