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
"""

from ._pretrain import (
    SEARCH_DEFAULTS,
    SourceMaskedCrossEntropy,
    pretrain,
    pretrain_mixture,
)
from ._store import (
    SCHEMA_VERSION,
    SupernetZoo,
    ZooEntry,
    ZooEntryError,
    ZooKeyError,
    load_supernet,
    save_supernet,
)

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
