"""What the search needs from a supernet, and how to reach it inside a net."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import torch
from skorch.hf import AccelerateMixin

__all__ = ["SearchableSupernet", "unwrap_supernet"]


@runtime_checkable
class SearchableSupernet(Protocol):
    """The part of :class:`~skdarts.supernet.Supernet` the search layer uses.

    A module searched by :class:`~skdarts.search.SearchNet` mixes candidate
    operations with architecture weights (``alphas_*`` parameters) that the
    search optimises apart from the other weights, and is discretised into a
    genotype. ``isinstance(module, SearchableSupernet)`` checks that the
    methods and attributes exist (not their signatures).

    Examples
    --------
    >>> from skdarts.supernet import Supernet
    >>> isinstance(Supernet(init_channels=2, n_cells=1, n_nodes=1),
    ...            SearchableSupernet)
    True
    >>> isinstance(torch.nn.Linear(2, 2), SearchableSupernet)
    False
    """

    #: Whether cells recompute their activations in the backward pass (a
    #: CUDA graph cannot capture that).
    checkpointing: bool
    #: Autocast precision of the body: None, "bf16" or "fp16".
    amp: str | None

    def __call__(self, x: torch.Tensor, arch_weights: Any = None) -> torch.Tensor: ...

    def arch_parameters(self) -> list[torch.nn.Parameter]: ...

    def named_weight_parameters(
        self,
    ) -> Iterator[tuple[str, torch.nn.Parameter]]: ...

    def weight_parameters(self) -> list[torch.nn.Parameter]: ...

    def arch_weights(self) -> tuple[torch.Tensor, ...]: ...

    def genotype(self) -> Any: ...


def unwrap_supernet(net: Any) -> torch.nn.Module:
    """The module a skorch net trains, even while an accelerator wraps it.

    During an accelerated fit ``net.module_`` is a wrapper (DDP) that hides
    the supernet's methods; this returns the supernet itself. For any other
    net it is ``net.module_``.

    Parameters
    ----------
    net : skorch.NeuralNet
        An initialised net (a :class:`~skdarts.search.SearchNet`, or the
        final training's net).

    Returns
    -------
    torch.nn.Module

    Examples
    --------
    >>> from skdarts.search import SearchNet
    >>> from skdarts.supernet import Supernet
    >>> net = SearchNet(Supernet(init_channels=2, n_cells=1, n_nodes=1),
    ...                 verbose=0).initialize()
    >>> unwrap_supernet(net) is net.module_
    True
    """
    if isinstance(net, AccelerateMixin) and net._wrapped_with_accelerator:
        return net.accelerator.unwrap_model(net.module_)
    return net.module_
