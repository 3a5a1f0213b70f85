"""The bilevel search step on skorch: weights on one split, alphas on the other.

Modules, in reading order:

- :mod:`~skdarts.search.config`: :class:`SearchConfig` (the search's
  parameters and their defaults), :func:`build_search_net` and
  :func:`stratified_split`, used by the estimator and the zoo alike.
- :mod:`~skdarts.search.net`: :class:`SearchNet`, the first-order
  (Smooth)DARTS step.
- :mod:`~skdarts.search.contracts`: what the search needs from a supernet
  (:class:`SearchableSupernet`) and :func:`unwrap_supernet`.
- :mod:`~skdarts.search.smoothing`: SmoothDARTS' perturbation.
- :mod:`~skdarts.search.callbacks`, :mod:`~skdarts.search.probe`,
  :mod:`~skdarts.search.checkpoint`: the genotype record, the guard against
  NaNs, the head probe of a warm start, resumable checkpoints.
- :mod:`~skdarts.search.graphs`: CUDA-graph capture of whole steps.
- :mod:`~skdarts.search.accelerate`: one search over several processes.
"""

from .accelerate import AcceleratedNeuralNetClassifier, AcceleratedSearchNet
from .callbacks import (
    BatchProgress,
    FiniteGuard,
    GenotypeRecorder,
    NonFiniteError,
    StablePrintLog,
)
from .checkpoint import (
    SearchCheckpoint,
    completed_epochs,
    find_checkpoint,
    fit_or_resume,
)
from .config import SearchConfig, build_search_net, stratified_split
from .contracts import SearchableSupernet, unwrap_supernet
from .net import SearchNet, portable_getstate
from .probe import HeadProbe
from .smoothing import perturb_arch_weights

__all__ = [
    "AcceleratedNeuralNetClassifier",
    "AcceleratedSearchNet",
    "BatchProgress",
    "FiniteGuard",
    "GenotypeRecorder",
    "HeadProbe",
    "NonFiniteError",
    "SearchCheckpoint",
    "SearchConfig",
    "SearchNet",
    "SearchableSupernet",
    "StablePrintLog",
    "build_search_net",
    "completed_epochs",
    "find_checkpoint",
    "fit_or_resume",
    "perturb_arch_weights",
    "portable_getstate",
    "stratified_split",
    "unwrap_supernet",
]
