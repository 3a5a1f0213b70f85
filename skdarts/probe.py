"""Moved to :mod:`skdarts.search.probe`; kept so that imports and pickles work."""

from .search.probe import HeadProbe

__all__ = ["HeadProbe"]
