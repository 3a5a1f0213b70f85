"""A duck-typed, in-memory stand-in for ``SupernetZoo``'s read API.

Implements exactly what the zoo contract promises the selector: iteration over
sorted entry names, ``zoo[name]``, ``len``, ``in``, and entries with ``.name``,
``.metadata`` and ``.signature_arrays()``.
"""

from __future__ import annotations

import copy


class FakeEntry:
    def __init__(self, name, signatures, metadata=None):
        self.name = name
        self.metadata = dict(metadata or {})
        self._signatures = dict(signatures)

    def signature_arrays(self):
        return copy.deepcopy(self._signatures)

    def __repr__(self):
        return f"FakeEntry({self.name!r})"

    def __eq__(self, other):
        return isinstance(other, FakeEntry) and other.name == self.name

    def __hash__(self):
        return hash(self.name)


class FakeZoo:
    """``FakeZoo({name: {source: (arrays, meta)}})``."""

    def __init__(self, entries):
        self._entries = {
            name: FakeEntry(name, sigs) for name, sigs in dict(entries).items()
        }

    def __repr__(self):
        # Stable across processes: pytest-xdist compares test ids built from it.
        return f"FakeZoo({sorted(self._entries)})"

    def __iter__(self):
        return iter(sorted(self._entries))

    def __len__(self):
        return len(self._entries)

    def __contains__(self, name):
        return name in self._entries

    def __getitem__(self, name):
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"no entry {name!r} in the zoo") from None
