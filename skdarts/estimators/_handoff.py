"""Pipeline hand-off: data passed on by a selector together with a prior.

Placeholder until the selection issue: nothing is handed over yet.
"""

from __future__ import annotations


def split_handoff(X):
    """Return ``(X, prior)``: the plain data and the prior handed over, if any."""
    return X, None
