"""SupernetSearchClassifier: DARTS search as a scikit-learn classifier."""

from __future__ import annotations

import copy
import numbers
import time
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from skorch import NeuralNetClassifier
from skorch.callbacks import LRScheduler, PrintLog, ProgressBar
from skorch.dataset import Dataset
from skorch.helper import predefined_split
from torch.optim.lr_scheduler import CosineAnnealingLR

from ..data import as_images, channel_stats
from ..search import (
    AcceleratedNeuralNetClassifier,
    AcceleratedSearchNet,
    GenotypeRecorder,
    SearchNet,
)
from ..supernet import DerivedNetwork, Supernet
from ._handoff import split_handoff
from ._prior import resolve_prior

__all__ = ["SupernetSearchClassifier"]


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _split_indices(y: np.ndarray, fraction: float, rng: np.random.RandomState):
    """Stratified split into (weight, architecture) halves; each keeps >= 1 sample."""
    n = len(y)
    arch_idx = []
    for cls in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == cls))
        k = round(fraction * len(members))
        if len(members) >= 2:
            k = min(max(k, 1), len(members) - 1)
        arch_idx.extend(members[:k])
    arch = np.zeros(n, dtype=bool)
    arch[np.asarray(arch_idx, dtype=int)] = True
    if arch.all():
        arch[rng.randint(n)] = False
    if not arch.any():
        arch[rng.randint(n)] = True
    return np.flatnonzero(~arch), np.flatnonzero(arch)


class SupernetSearchClassifier(ClassifierMixin, BaseEstimator):
    """Differentiable architecture search (DARTS / SmoothDARTS) as a classifier.

    ``fit`` trains a cell-based supernet with first-order bilevel optimisation
    (weights on one part of the training data, architecture weights on the
    other), discretises it to a :class:`~skdarts.Genotype`, then trains the
    derived network for ``final_epochs`` starting from the supernet's weights.
    Predictions come from the derived network (from the supernet when
    ``final_epochs=0``).

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
    max_epochs : int, default=20
        Search epochs (DARTS: 50).
    final_epochs : int, default=10
        Epochs training the derived network on all the data after the search.
    batch_size : int, default=64
    lr, lr_min : float, default=0.025, 0.001
        Weight learning rate, cosine-annealed from ``lr`` to ``lr_min``.
    momentum, weight_decay : float, default=0.9, 3e-4
        SGD settings of the weights.
    arch_lr, arch_weight_decay : float, default=3e-4, 1e-3
        Adam settings of the alphas (betas 0.5, 0.999).
    arch_split : float, default=0.5
        Fraction of the training data used for the alphas (stratified).
    smoothing : {"random", "adversarial"} or None, default="random"
        SmoothDARTS: SDARTS-RS (uniform noise on the architecture weights
        during the weight step), SDARTS-ADV (a 7-step PGD attack), or none.
    epsilon : float, default=0.3
        Final smoothing radius, ramped linearly from 0.03.
    grad_clip : float, default=5.0
    image_shape : tuple of int, optional
        ``(h, w)`` or ``(c, h, w)`` of flat input rows.
    warm_start : bool, "auto" or a prior, default="auto"
        ``False`` searches from scratch; ``True`` continues from this
        estimator's last fit (its supernet's alphas and weights; the head is
        rebuilt when the classes change); ``"auto"`` warm-starts from the
        prior an ``OTSourceSelector`` hands over in a pipeline, else from
        scratch; a prior (zoo entry, saved supernet, fitted estimator)
        warm-starts from it.
    callbacks : list of skorch callbacks or (name, callback) pairs, optional
        Added to the search net (e.g. ``EarlyStopping``, ``Checkpoint``).
    device : str, default="auto"
        ``"auto"`` takes CUDA when available, else the CPU.
    random_state : int, RandomState instance or None, default=None
        Seeds the split, initialisation and batches: a CPU run is repeatable.
    verbose : int, default=1
        0 is silent; 1 prints one line per epoch; 2 adds per-batch progress bars.
    accelerator : accelerate.Accelerator, optional
        Run the search (and the final training) through Hugging Face
        Accelerate: one search data-parallel over several GPUs, nodes or CPU
        processes (start the script with ``accelerate launch``), or mixed
        precision on one device. It places the data and the module, so
        ``device`` is ignored. With several processes every process calls
        ``fit`` and ``predict`` on the same data. See
        :class:`~skdarts.search.AcceleratedSearchNet`.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The original labels.
    n_features_in_ : int
    image_shape_ : tuple of int
        ``(c, h, w)`` of the images the network sees.
    net_ : SearchNet
        The fitted skorch search net; ``net_.module_`` is the supernet.
    final_net_ : skorch.NeuralNetClassifier or None
        The trained derived network (None when ``final_epochs=0``).
    genotype_ : Genotype
        The architecture found.
    history_ : list of dict
        One entry per epoch: phase, losses, accuracies, duration, learning
        rate, smoothing radius and the genotype.
    device_ : str
    source_ : dict or None
        What the search started from (None: from scratch).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = SupernetSearchClassifier(init_channels=4, n_cells=2, n_nodes=2,
    ...     max_epochs=1, final_epochs=1, verbose=0, random_state=0)
    >>> clf.fit(X[:200], y[:200]).predict(X[:3]).shape
    (3,)
    >>> clf.genotype_.n_nodes
    2
    """

    _parameter_constraints: dict = {
        "search_space": [StrOptions({"darts", "s1", "s2", "s3", "s4"})],
        "init_channels": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_cells": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_nodes": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "final_epochs": [Interval(numbers.Integral, 0, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "lr_min": [Interval(numbers.Real, 0, None, closed="left")],
        "momentum": [Interval(numbers.Real, 0, 1, closed="left")],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "arch_lr": [Interval(numbers.Real, 0, None, closed="left")],
        "arch_weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "arch_split": [Interval(numbers.Real, 0, 1, closed="neither")],
        "smoothing": [StrOptions({"random", "adversarial"}), None],
        "epsilon": [Interval(numbers.Real, 0, None, closed="left")],
        "grad_clip": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "image_shape": [tuple, list, None],
        "warm_start": ["boolean", StrOptions({"auto"}), object],
        "callbacks": [list, None],
        "device": [StrOptions({"auto", "cpu", "cuda", "mps"}), str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "accelerator": [None, HasMethods(["prepare", "backward", "unwrap_model"])],
    }

    def __init__(
        self,
        search_space: str = "darts",
        init_channels: int = 8,
        n_cells: int = 5,
        n_nodes: int = 4,
        max_epochs: int = 20,
        final_epochs: int = 10,
        batch_size: int = 64,
        lr: float = 0.025,
        lr_min: float = 0.001,
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        arch_lr: float = 3e-4,
        arch_weight_decay: float = 1e-3,
        arch_split: float = 0.5,
        smoothing: str | None = "random",
        epsilon: float = 0.3,
        grad_clip: float | None = 5.0,
        image_shape: tuple | None = None,
        warm_start: Any = "auto",
        callbacks: list | None = None,
        device: str = "auto",
        random_state: Any = None,
        verbose: int = 1,
        accelerator: Any = None,
    ):
        self.search_space = search_space
        self.init_channels = init_channels
        self.n_cells = n_cells
        self.n_nodes = n_nodes
        self.max_epochs = max_epochs
        self.final_epochs = final_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.lr_min = lr_min
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.arch_lr = arch_lr
        self.arch_weight_decay = arch_weight_decay
        self.arch_split = arch_split
        self.smoothing = smoothing
        self.epsilon = epsilon
        self.grad_clip = grad_clip
        self.image_shape = image_shape
        self.warm_start = warm_start
        self.callbacks = callbacks
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.accelerator = accelerator

    # -- input handling ---------------------------------------------------------

    def _images(self, X, reset: bool) -> np.ndarray:
        """Validate X (sklearn's rules: n_features_in_, NaN, ...) and standardise."""
        if reset:
            Xv = validate_data(
                self, X, reset=True, allow_nd=True, dtype=None, ensure_min_samples=1
            )
        else:
            Xv = validate_data(self, X, reset=False, allow_nd=True, dtype=None)
        images = as_images(
            Xv,
            image_shape=self.image_shape,
            channels=None if reset else self.image_shape_[0],
        )
        if not reset and tuple(images.shape[1:]) != tuple(self.image_shape_):
            # Convolutions accept any size; a different size is allowed but the
            # channel count is not (checked above).
            pass
        if reset:
            self.image_shape_ = tuple(int(s) for s in images.shape[1:])
            self.pixel_mean_, self.pixel_std_ = channel_stats(images)
        return (images - self.pixel_mean_[None, :, None, None]) / self.pixel_std_[
            None, :, None, None
        ]

    # -- the supernet to start from ---------------------------------------------

    def _initial_module(self, n_classes: int, handed_prior=None) -> Supernet:
        """The supernet the search starts from.

        ``warm_start=False``: fresh. ``True``: this estimator's last supernet.
        ``"auto"``: the prior handed over by a pipeline step (an
        ``OTSourceSelector``) when there is one, else fresh. Anything else is
        a prior resolved by :func:`._prior.resolve_prior`.
        """
        fresh = Supernet(
            search_space=self.search_space,
            in_channels=self.image_shape_[0],
            n_classes=n_classes,
            init_channels=self.init_channels,
            n_cells=self.n_cells,
            n_nodes=self.n_nodes,
        )
        self.source_ = None
        if self.warm_start is False or (
            isinstance(self.warm_start, str)
            and self.warm_start == "auto"
            and handed_prior is None
        ):
            return fresh
        if self.warm_start is True:
            previous = self._warm_module
            if previous is None:
                return fresh
            if previous.config() | {"n_classes": n_classes} != fresh.config():
                raise ValueError(
                    "warm_start=True continues the previous fit, but the supernet "
                    f"configuration changed from {previous.config()} to "
                    f"{fresh.config()}; set warm_start=False to search from scratch."
                )
            module = copy.deepcopy(previous).cpu()
            if module.n_classes != n_classes:
                module.reset_head(n_classes)
            self.source_ = {"kind": "previous_fit"}
            return module
        prior = handed_prior if isinstance(self.warm_start, str) else self.warm_start
        module, self.source_ = resolve_prior(prior, fresh)
        return module

    # -- fitting --------------------------------------------------------------

    def _callbacks(self):
        cbs = [
            (
                "lr_scheduler",
                LRScheduler(
                    policy=CosineAnnealingLR,
                    T_max=self.max_epochs,
                    eta_min=self.lr_min,
                ),
            ),
            ("genotype_recorder", GenotypeRecorder()),
        ]
        if self.verbose >= 2:
            cbs.append(("progress_bar", ProgressBar()))
        for i, cb in enumerate(copy.deepcopy(self.callbacks) or []):
            cbs.append(cb if isinstance(cb, tuple) else (f"user_{i}", cb))
        return cbs

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Search an architecture for (X, y), then train it.

        Parameters
        ----------
        X : array-like of images
            ``(n, h, w)``, ``(n, c, h, w)``, ``(n, h, w, c)`` or flat
            ``(n, features)`` (see ``image_shape``).
        y : array-like of shape (n,)
            Class labels of any type.

        Returns
        -------
        self
        """
        if y is None:
            raise ValueError(
                "SupernetSearchClassifier requires y to be passed, but the target y "
                "is None: the search is supervised and needs one label per image."
            )
        X, handed_prior = split_handoff(X)
        warm_module = getattr(self, "net_", None)
        warm_module = warm_module.module_ if warm_module is not None else None
        images = self._images(X, reset=True)
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            from sklearn.exceptions import DataConversionWarning

            warnings.warn(
                "A column-vector y was passed when a 1d array was expected; "
                "it is raveled.",
                DataConversionWarning,
                stacklevel=2,
            )
            y = y.ravel()
        if y.ndim != 1:
            raise ValueError(
                f"y must be 1-d (one label per image); got shape {y.shape}."
            )
        if len(y) != len(images):
            raise ValueError(
                f"X and y have inconsistent numbers of samples: X has {len(images)}, "
                f"y has {len(y)}."
            )
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(
                f"y has only one class ({self.classes_[0]!r}); a classifier needs "
                "at least 2 classes."
            )
        if len(images) < 2:
            raise ValueError(
                "n_samples=1: the search needs at least 2 samples (one for the "
                "weights, one for the architecture)."
            )
        y_enc = encoder.transform(y).astype(np.int64)
        self.device_ = _resolve_device(self.device)
        if self.accelerator is not None:
            self.device_ = str(self.accelerator.device)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        self._warm_module = warm_module

        devices = [torch.cuda.current_device()] if self.device_ == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            w_idx, a_idx = _split_indices(y_enc, self.arch_split, rng)
            module = self._initial_module(len(self.classes_), handed_prior)
            arch_ds = Dataset(images[a_idx], y_enc[a_idx])
            self.net_ = self._net_class(SearchNet, AcceleratedSearchNet)(
                module=module,
                criterion=torch.nn.CrossEntropyLoss,
                optimizer=torch.optim.SGD,
                optimizer__lr=self.lr,
                optimizer__momentum=self.momentum,
                optimizer__weight_decay=self.weight_decay,
                optimizer_arch__lr=self.arch_lr,
                optimizer_arch__betas=(0.5, 0.999),
                optimizer_arch__weight_decay=self.arch_weight_decay,
                smoothing=self.smoothing,
                epsilon=self.epsilon,
                grad_clip=self.grad_clip,
                max_epochs=self.max_epochs,
                batch_size=self.batch_size,
                train_split=predefined_split(arch_ds),
                iterator_train__shuffle=True,
                callbacks=self._callbacks(),
                classes=np.arange(len(self.classes_)),
                verbose=int(self.verbose >= 1),
                callbacks__print_log__keys_ignored=["genotype", "arch_weights"],
                **self._net_device_kwargs(),
            )
            self.net_.fit(images[w_idx], y_enc[w_idx])
            self.genotype_ = self.net_.module_.genotype()
            self.final_net_ = None
            if self.final_epochs > 0:
                self.final_net_ = self._fit_final(images, y_enc)
        self._warm_module = None
        self.history_ = self._collect_history()
        return self

    def _net_class(self, plain, accelerated):
        return plain if self.accelerator is None else accelerated

    def _net_device_kwargs(self) -> dict:
        if self.accelerator is None:
            return {"device": self.device_}
        # The accelerator places data and modules itself (skorch: device=None).
        return {"device": None, "accelerator": self.accelerator}

    def _fit_final(self, images, y_enc):
        derived = DerivedNetwork.from_supernet(self.net_.module_, self.genotype_)
        net_class = self._net_class(NeuralNetClassifier, AcceleratedNeuralNetClassifier)
        net = net_class(
            module=derived,
            criterion=torch.nn.CrossEntropyLoss,
            optimizer=torch.optim.SGD,
            optimizer__lr=self.lr,
            optimizer__momentum=self.momentum,
            optimizer__weight_decay=self.weight_decay,
            max_epochs=self.final_epochs,
            batch_size=self.batch_size,
            train_split=None,
            iterator_train__shuffle=True,
            callbacks=[
                (
                    "lr_scheduler",
                    LRScheduler(
                        policy=CosineAnnealingLR,
                        T_max=self.final_epochs,
                        eta_min=self.lr_min,
                    ),
                ),
                *([("progress_bar", ProgressBar())] if self.verbose >= 2 else []),
            ],
            classes=np.arange(len(self.classes_)),
            verbose=int(self.verbose >= 1),
            **self._net_device_kwargs(),
        )
        if self.verbose >= 1:
            net.set_params(callbacks__print_log=PrintLog())
        t0 = time.perf_counter()
        net.fit(images, y_enc)
        net._skdarts_fit_seconds = time.perf_counter() - t0
        return net

    def _collect_history(self) -> list[dict]:
        rows = []
        keep = (
            "epoch",
            "train_loss",
            "train_acc",
            "valid_loss",
            "valid_acc",
            "arch_loss",
            "dur",
            "lr",
            "epsilon",
            "genotype",
            "arch_weights",
        )
        for row in self.net_.history:
            rows.append({"phase": "search"} | {k: row[k] for k in keep if k in row})
        if self.final_net_ is not None:
            n = len(rows)
            for row in self.final_net_.history:
                entry = {k: row[k] for k in ("train_loss", "dur") if k in row}
                entry["epoch"] = n + row["epoch"]
                rows.append({"phase": "final"} | entry)
        return rows

    # -- prediction -------------------------------------------------------------

    def _predicting_net(self):
        return self.final_net_ if self.final_net_ is not None else self.net_

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``.

        Parameters
        ----------
        X : array-like of images (as in ``fit``)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        images = self._images(X, reset=False)
        net = self._predicting_net()
        net.module_.eval()
        with torch.no_grad():
            proba = net.predict_proba(images)
        return np.asarray(proba, dtype=np.float64)

    def predict(self, X) -> np.ndarray:
        """Predicted labels (of the same type as ``y`` in ``fit``).

        Parameters
        ----------
        X : array-like of images (as in ``fit``)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "net_") and hasattr(self, "classes_")
