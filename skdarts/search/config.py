"""One search configuration: its parameters, its defaults and the net it builds.

The estimator (:class:`~skdarts.SupernetSearchClassifier`) and the zoo's
pretraining (:func:`skdarts.zoo.pretrain`) run the same search; they build it
from a :class:`SearchConfig` with :func:`build_search_net`, and split their
data with :func:`stratified_split`. The defaults written here are the only
ones: the estimator's parameter defaults and the parameters pretraining
accepts come from them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from skorch.callbacks import LRScheduler
from torch.optim.lr_scheduler import CosineAnnealingLR

from ..supernet import Supernet
from .net import SearchNet

__all__ = ["SearchConfig", "build_search_net", "stratified_split"]


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """The parameters of a search, with their defaults.

    Parameters
    ----------
    search_space : {"darts", "s1", "s2", "s3", "s4"}, default="darts"
        Candidate operations (see :mod:`skdarts.spaces`).
    init_channels : int, default=8
        Channels of the first cell (DARTS uses 16 on CIFAR-10).
    n_cells : int, default=5
        Cells, with reductions at 1/3 and 2/3 of the depth (DARTS: 8).
    n_nodes : int, default=4
        Intermediate nodes per cell.
    partial_channels : int, default=1
        PC-DARTS: each edge computes on 1/K of the channels (1 is off).
    checkpointing : bool, default=False
        Recompute each cell's activations in the backward pass.
    max_epochs : int, default=20
        Search epochs (DARTS: 50).
    batch_size : int, default=64
    lr, lr_min : float, default=0.025, 0.001
        Weight learning rate (SGD), cosine-annealed from ``lr`` to ``lr_min``.
    momentum, weight_decay : float, default=0.9, 3e-4
        SGD settings of the weights.
    arch_lr, arch_weight_decay : float, default=3e-4, 1e-3
        Adam settings of the alphas (betas 0.5, 0.999).
    arch_split : float, default=0.5
        Fraction of the training data used for the alphas (stratified).
    smoothing : {"random", "adversarial"} or None, default="random"
        SmoothDARTS' perturbation of the architecture weights.
    epsilon : float, default=0.3
        Final smoothing radius, ramped linearly from 0.03.
    grad_clip : float or None, default=5.0
        Gradient norm bound of the weight step.
    cuda_graphs : bool, default=False
        Capture each step as a CUDA graph (see :class:`SearchNet`).

    Examples
    --------
    >>> config = SearchConfig(max_epochs=3)
    >>> config.max_epochs, config.lr
    (3, 0.025)
    >>> sorted(SearchConfig.defaults())[:3]
    ['arch_lr', 'arch_split', 'arch_weight_decay']
    """

    search_space: str = "darts"
    init_channels: int = 8
    n_cells: int = 5
    n_nodes: int = 4
    partial_channels: int = 1
    checkpointing: bool = False
    max_epochs: int = 20
    batch_size: int = 64
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    arch_lr: float = 3e-4
    arch_weight_decay: float = 1e-3
    arch_split: float = 0.5
    smoothing: str | None = "random"
    epsilon: float = 0.3
    grad_clip: float | None = 5.0
    cuda_graphs: bool = False

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """``{name: default}`` of every parameter."""
        return {f.name: f.default for f in dataclasses.fields(cls)}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> SearchConfig:
        """The configuration of the search parameters in ``params`` (others ignored)."""
        return cls(**{k: params[k] for k in cls.defaults() if k in params})

    def make_supernet(self, in_channels: int, n_classes: int) -> Supernet:
        """A fresh supernet of this configuration (draws from torch's generator)."""
        return Supernet(
            search_space=self.search_space,
            in_channels=in_channels,
            n_classes=n_classes,
            init_channels=self.init_channels,
            n_cells=self.n_cells,
            n_nodes=self.n_nodes,
            partial_channels=self.partial_channels,
            checkpointing=self.checkpointing,
        )


def build_search_net(
    config: SearchConfig,
    module: torch.nn.Module,
    *,
    criterion: Any = torch.nn.CrossEntropyLoss,
    train_split: Any,
    callbacks: Sequence[tuple[str, Any]] = (),
    classes: Any = None,
    net_class: type[SearchNet] = SearchNet,
    **net_params: Any,
) -> SearchNet:
    """The :class:`SearchNet` running ``config``'s search on ``module``.

    Weights: SGD (``lr``, ``momentum``, ``weight_decay``), cosine-annealed to
    ``lr_min`` over ``max_epochs`` by an ``lr_scheduler`` callback that comes
    before ``callbacks``. Alphas: Adam (``arch_lr``, betas 0.5 and 0.999,
    ``arch_weight_decay``).

    Parameters
    ----------
    config : SearchConfig
    module : Supernet
        The supernet to search (built by :meth:`SearchConfig.make_supernet`
        or warm-started from a prior).
    criterion : type, default=torch.nn.CrossEntropyLoss
    train_split : callable
        skorch's split; the architecture split is its validation data
        (``skorch.helper.predefined_split(arch_dataset)``).
    callbacks : sequence of (name, callback), optional
        After the learning-rate scheduler, in this order.
    classes : array-like, optional
        The encoded classes (skorch's ``classes``).
    net_class : type, default=SearchNet
        E.g. :class:`~skdarts.search.AcceleratedSearchNet`.
    **net_params
        Any other argument of ``net_class`` (``device``, ``verbose``,
        ``iterator_train``, ``criterion__*`` ...).

    Returns
    -------
    SearchNet
        Not initialised.

    Examples
    --------
    >>> from skorch.helper import predefined_split
    >>> from skorch.dataset import Dataset
    >>> config = SearchConfig(init_channels=2, n_cells=1, n_nodes=1, max_epochs=1)
    >>> X = np.zeros((4, 1, 6, 6), dtype=np.float32)
    >>> net = build_search_net(config, config.make_supernet(1, 2),
    ...     train_split=predefined_split(Dataset(X, np.array([0, 1, 0, 1]))),
    ...     verbose=0)
    >>> net.optimizer_arch__betas, net.max_epochs
    ((0.5, 0.999), 1)
    """
    scheduler = LRScheduler(
        policy=CosineAnnealingLR, T_max=config.max_epochs, eta_min=config.lr_min
    )
    return net_class(
        module=module,
        criterion=criterion,
        optimizer=torch.optim.SGD,
        optimizer__lr=config.lr,
        optimizer__momentum=config.momentum,
        optimizer__weight_decay=config.weight_decay,
        optimizer_arch__lr=config.arch_lr,
        optimizer_arch__betas=(0.5, 0.999),
        optimizer_arch__weight_decay=config.arch_weight_decay,
        smoothing=config.smoothing,
        epsilon=config.epsilon,
        grad_clip=config.grad_clip,
        cuda_graphs=config.cuda_graphs,
        max_epochs=config.max_epochs,
        batch_size=config.batch_size,
        train_split=train_split,
        callbacks=[("lr_scheduler", scheduler), *callbacks],
        classes=classes,
        **net_params,
    )


def stratified_split(
    y: np.ndarray, fraction: float, rng: np.random.RandomState
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split into (weight, architecture) indices; each side keeps >= 1.

    Each class gives ``round(fraction * n_class)`` of its samples, at least 1
    and at most all but 1 when it has 2 or more, to the architecture side.

    Parameters
    ----------
    y : ndarray of shape (n,)
        Labels.
    fraction : float
        Share of each class for the architecture split, in (0, 1).
    rng : numpy.random.RandomState
        Drawn from: one permutation per class (in sorted class order), then
        at most one integer.

    Returns
    -------
    weight_idx, arch_idx : ndarray of int
        Sorted indices.

    Examples
    --------
    >>> w, a = stratified_split(np.array([0, 0, 1, 1, 1, 1]), 0.5,
    ...                         np.random.RandomState(0))
    >>> len(w), len(a), sorted(set(range(6)) - set(w)) == sorted(a)
    (3, 3, True)
    """
    arch = np.zeros(len(y), dtype=bool)
    for cls in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == cls))
        k = round(fraction * len(members))
        if len(members) >= 2:
            k = min(max(k, 1), len(members) - 1)
        arch[members[:k]] = True
    if arch.all():
        arch[rng.randint(len(y))] = False
    if not arch.any():
        arch[rng.randint(len(y))] = True
    return np.flatnonzero(~arch), np.flatnonzero(arch)
