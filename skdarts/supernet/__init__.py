"""The torch modules: the supernet with its alphas, the discrete derived network.

Knows the search spaces (layer below) and torch; nothing of scikit-learn or
skorch. Modules, in reading order:

- :mod:`~skdarts.supernet.ops`: the candidate operations of an edge.
- :mod:`~skdarts.supernet.body`: stem, stacked cells and reductions, shared
  by every network here.
- :mod:`~skdarts.supernet.reference`: the executable specification - each
  edge applies each operation and sums them weighted by the softmax of its
  alphas, exactly as DARTS writes it.
- :mod:`~skdarts.supernet.supernet`: :class:`Supernet`, the fast
  implementation of the reference (same state dict, same function), with its
  options (partial channels, checkpointing, autocast, compiled cells) and its
  discretisation into a genotype.
- :mod:`~skdarts.supernet.cell`, :mod:`~skdarts.supernet.plan`,
  :mod:`~skdarts.supernet.kernels`: how the fast cell batches the work of a
  reference cell.
- :mod:`~skdarts.supernet.derived`: :class:`DerivedNetwork`, the discrete
  network of a genotype.
"""

# Pickles written before this package existed name the classes they hold as
# ``skdarts.supernet.<name>`` (cells, their edges and operations, and the
# helper objects cells keep): they must keep resolving here.
from .body import Preprocess as _Preprocess  # noqa: F401
from .body import edge_offsets as _edge_offsets  # noqa: F401
from .body import reduction_layers
from .cell import SearchCell  # noqa: F401
from .derived import (
    DerivedCell,  # noqa: F401
    DerivedNetwork,
)
from .ops import (  # noqa: F401
    DilConv,
    FactorizedReduce,
    Noise,
    PoolBN,
    ReLUConvBN,
    SepConv,
    Zero,
    make_op,
)
from .plan import _CellLayout, _StatePlan  # noqa: F401
from .reference import (
    MixedEdge,  # noqa: F401
    ReferenceSupernet,
    reference_from_supernet,
)
from .supernet import Supernet

__all__ = [
    "DerivedNetwork",
    "ReferenceSupernet",
    "Supernet",
    "make_op",
    "reduction_layers",
    "reference_from_supernet",
]
