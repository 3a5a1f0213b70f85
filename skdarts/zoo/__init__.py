"""The zoo: an on-disk store of pretrained supernets, and their pretraining.

* :class:`SupernetZoo` - a folder of entries (safetensors + JSON, never
  pickle; atomic writes under a lock; checksums and a schema version);
  :meth:`SupernetZoo.default` opens the zoo shipped with skdarts.
* :class:`ZooEntry` - one stored supernet with its provenance and dataset
  signatures.
* :func:`pretrain` / :func:`pretrain_mixture` (also methods of the zoo) -
  one supernet per source, or one on several sources with a head each.
* :func:`save_supernet` / :func:`load_supernet` - a single supernet in the
  entry format, outside any zoo.

Layer: below the estimators; drives :mod:`skdarts.search` directly.

Opening and listing a zoo reads JSON only: torch loads when weights are read
or written, and the pretraining names (sklearn, skorch, the search layer)
are imported on first use (PEP 562), so ``skdarts zoo list`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._store import (
    SCHEMA_VERSION,
    SupernetZoo,
    ZooEntry,
    ZooEntryError,
    ZooKeyError,
    load_supernet,
    save_supernet,
)

#: Pretraining names and their modules, imported on first use.
_LAZY = {
    "SEARCH_DEFAULTS": "._pretrain",
    "SourceMaskedCrossEntropy": "._multisource",
    "pretrain": "._pretrain",
    "pretrain_mixture": "._mixture",
}

if TYPE_CHECKING:  # for type checkers and IDEs; never run
    from ._mixture import pretrain_mixture
    from ._multisource import SourceMaskedCrossEntropy
    from ._pretrain import SEARCH_DEFAULTS, pretrain

__all__ = [
    "SCHEMA_VERSION",
    "SEARCH_DEFAULTS",
    "SourceMaskedCrossEntropy",
    "SupernetZoo",
    "ZooEntry",
    "ZooEntryError",
    "ZooKeyError",
    "load_supernet",
    "pretrain",
    "pretrain_mixture",
    "save_supernet",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
