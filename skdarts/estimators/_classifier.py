"""SupernetSearchClassifier: DARTS search as a scikit-learn classifier."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import numbers
import os
import time
import warnings
from pathlib import Path
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
from skorch.callbacks import EarlyStopping, LRScheduler, PrintLog, ProgressBar
from skorch.dataset import Dataset
from skorch.helper import predefined_split
from torch.optim.lr_scheduler import CosineAnnealingLR
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import Subset

from .. import data as _data
from .._device import resolve_device, rng_devices
from ..data import (
    DatasetImages,
    ImageFolderDataset,
    StandardisedDataset,
    as_images,
    channel_stats,
    check_dataset,
    dataset_labels,
    dataset_stats,
    is_path_input,
    read_image_files,
    to_host,
)
from ..export import ExportedClassifier, export_network
from ..probe import HeadProbe
from ..search import (
    AcceleratedNeuralNetClassifier,
    AcceleratedSearchNet,
    FiniteGuard,
    GenotypeRecorder,
    SearchCheckpoint,
    SearchNet,
    portable_getstate,
)
from ..supernet import DerivedNetwork, Supernet
from ._handoff import split_handoff
from ._prior import resolve_prior

__all__ = ["SupernetSearchClassifier"]


def _shared_rng(rng: np.random.RandomState) -> np.random.RandomState:
    """Process 0's generator on every process (same split, same initialisation).

    With several Accelerate processes each runs ``fit``; with
    ``random_state=None`` they would otherwise split the data differently.
    """
    from accelerate.utils import broadcast_object_list

    (seed,) = broadcast_object_list([int(rng.randint(np.iinfo(np.int32).max))])
    return np.random.RandomState(seed)


class _FinalNet(NeuralNetClassifier):
    """The derived network's trainer; pickles so that it loads without CUDA."""

    def __getstate__(self):
        return portable_getstate(self, super().__getstate__)


def _completed_epochs(history) -> int:
    """Epochs that ran to their end (an interrupted one has no train_loss)."""
    return sum(1 for row in history if "train_loss" in row)


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


def _naming_x(exc: Exception) -> Exception:
    """sklearn's validation error, its message prefixed with the argument's name."""
    message = str(exc)
    if message.startswith("X"):
        return exc
    try:
        return type(exc)(f"X: {message}")
    except Exception:  # an exception type with another signature: keep it
        return exc


def _unchanged_on_error(method):
    """A call that raises leaves the estimator's attributes as they were."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        state = dict(self.__dict__)
        try:
            return method(self, *args, **kwargs)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(state)
            raise

    return wrapper


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
    partial_channels : int, default=1
        PC-DARTS memory saver: each edge runs its operations on 1/K of the
        channels (the rest bypass it) and a learnt per-edge weight normalises
        each node's inputs; 1 is off, PC-DARTS uses 4. ``init_channels``
        must be an even multiple of K. The operations' weights then have
        C/K channels, so the derived network inherits only the stem, the
        pre-processing and the head. Measured by
        ``benchmarks/search_step.py`` (config "tiny", 1 CPU thread), K=4
        against K=1: peak memory of a search step 0.39x, time per step about
        0.35-0.6x.
    checkpointing : bool, default=False
        Recompute each cell's activations in the backward pass instead of
        storing them (``torch.utils.checkpoint``): the same results (and
        batch-norm statistics) with less memory and more time. Measured as
        above: peak memory of a search step 0.33x; the time per step grows by
        about one more forward pass of the cells (within the timing noise of
        that shared machine).
    cuda_graphs : bool, default=False
        On a CUDA device, capture each search step as a CUDA graph and
        replay it (see :class:`~skdarts.search.SearchNet`): the same steps
        without the cost of launching their many small kernels one by one.
        Where a step cannot be captured, a warning says why and the search
        runs eagerly. Unmeasured on a GPU so far (see ``benchmarks/``).
    image_shape : tuple of int, optional
        ``(h, w)`` or ``(c, h, w)`` of flat input rows.
    num_workers : int, default=0
        DataLoader worker processes reading the batches (0: in the main
        process); useful when images are decoded from files lazily. Workers
        prefetch, which reorders random draws: results are repeatable for a
        given ``num_workers > 0`` but differ from those with 0.
    warm_start : bool, "auto" or a prior, default="auto"
        ``False`` searches from scratch; ``True`` continues from this
        estimator's last fit (its supernet's alphas and weights; the head is
        rebuilt when the classes change); ``"auto"`` warm-starts from the
        prior an ``OTSourceSelector`` hands over in a pipeline, else from
        scratch; a prior (zoo entry, saved supernet, fitted estimator)
        warm-starts from it (see :func:`skdarts.estimators._prior.resolve_prior`
        for the transfer rule: alphas and body weights copied, a fresh head,
        the stem adapted between grey and RGB).
    warm_lr : float, optional
        Starting learning rate of the inherited weights (stem and cells) in a
        warm-started search; the new head starts at ``lr``. Both are
        cosine-annealed to ``lr_min``. None: ``lr`` (on digits warm from the
        shipped MNIST entry, ``lr / 4`` learned more slowly).
    warm_arch_warmup_epochs : int, default=1
        Epochs of a warm-started search during which the alphas stay as the
        prior left them while the new head settles (a random head would
        otherwise push them around).
    warm_epsilon_start : float, optional
        Smoothing radius at the first epoch of a warm-started search. None:
        ``epsilon`` from the start (the prior is past the early phase the
        ramp protects).
    warm_head : {"probe", "fresh"}, default="probe"
        How a warm-started search rebuilds its head. ``"probe"``: batch-norm
        statistics recomputed on the target, then the head fitted by logistic
        regression on the prior's features before the search
        (:class:`~skdarts.probe.HeadProbe`; about one forward pass over the
        data); ``"fresh"``: a random head, trained from the first epoch.
    callbacks : list of skorch callbacks or (name, callback) pairs, optional
        Added to the search net (e.g. ``EarlyStopping``, ``Checkpoint``).
    checkpoint_dir : str or path-like, optional
        Makes the search resumable. Every ``checkpoint_every`` epochs (and
        after the last) the whole search state (supernet alphas and weights,
        both optimizers, the learning-rate schedule, the history, the random
        generators, the data split) is written atomically to
        ``checkpoint_dir/search-<key>/search_state.pt``, where ``<key>``
        fingerprints the data and the parameters that shape the search. A
        later ``fit`` with the same data and parameters finds it and continues
        to ``max_epochs``: with a fixed ``random_state`` on the CPU the result
        equals an uninterrupted run. Other data or parameters use another
        key, so checkpoints never mix. Checkpoints are kept after the fit (a
        re-fit of a finished search skips straight to the final training).
        The state of user ``callbacks`` (e.g. ``EarlyStopping`` counters) is
        not saved.
    checkpoint_every : int, default=1
        Epochs between checkpoints.
    device : str, default="auto"
        ``"auto"`` takes CUDA when available, else the CPU; any torch
        device string (``"cuda:1"``). ``fit`` refuses a device this machine
        lacks with a ``ValueError``.
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
        ``fit`` on the same data; afterwards each holds the whole model and
        predicts on its own. See :class:`~skdarts.search.AcceleratedSearchNet`
        and the "From a laptop to a cluster" page.

    Notes
    -----
    **Interruption.** A ``KeyboardInterrupt`` (Ctrl-C) during the search stops
    it but leaves a usable estimator: the genotype is derived from the alphas
    as they stood, the final training is skipped (predictions come from the
    supernet), ``interrupted_`` is True and a warning says so; the last
    checkpoint stays on disk and ``fit`` with the same ``checkpoint_dir``
    resumes. Interrupting the final training keeps the derived network as
    trained so far (also ``interrupted_``). A stop by ``EarlyStopping`` is not
    an interruption.

    **Numerical faults.** A NaN or infinite loss, or non-finite alphas, stop
    the fit with :class:`~skdarts.search.NonFiniteError` naming the phase,
    epoch and batch and the likely causes (learning rate too high, badly
    scaled inputs).

    **Persistence.** Fitted estimators pickle (``joblib.dump``); one fitted on
    a GPU loads on a machine without CUDA: ``device_`` falls back to
    ``"cpu"`` with a warning, and predictions work. :meth:`export` writes the
    derived network for use without the estimator.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The original labels.
    n_features_in_ : int
        ``X.shape[1]`` of array input (absent after a fit on files or a
        torch Dataset).
    image_shape_ : tuple of int
        ``(c, h, w)`` of the images the network sees.
    image_size_ : tuple of int
        ``(h, w)`` image files are resized to at prediction.
    color_ : {"grey", "rgb"} or None
        How image files are read at prediction (from the channel count seen
        at ``fit``; None when it is neither 1 nor 3).
    pixel_mean_, pixel_std_ : ndarray of float32, shape (c,)
        Channel statistics standardising every input (from at most
        :data:`skdarts.data.STATS_SAMPLE` images of a torch Dataset).
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
    search_epochs_ : int
        Search epochs completed (including those resumed from a checkpoint).
    resumed_from_ : int
        Epochs loaded from a checkpoint (0: a fresh search).
    interrupted_ : bool
        Whether a ``KeyboardInterrupt`` cut the search or final training short.
    checkpoint_path_ : pathlib.Path or None
        The search checkpoint file (with ``checkpoint_dir``).

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
        "partial_channels": [Interval(numbers.Integral, 1, None, closed="left")],
        "checkpointing": ["boolean"],
        "cuda_graphs": ["boolean"],
        "image_shape": [tuple, list, None],
        "num_workers": [Interval(numbers.Integral, 0, None, closed="left")],
        "warm_start": ["boolean", StrOptions({"auto"}), object],
        "warm_lr": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "warm_arch_warmup_epochs": [Interval(numbers.Integral, 0, None, closed="left")],
        "warm_epsilon_start": [Interval(numbers.Real, 0, None, closed="left"), None],
        "warm_head": [StrOptions({"probe", "fresh"})],
        "callbacks": [list, None],
        "checkpoint_dir": [str, os.PathLike, None],
        "checkpoint_every": [Interval(numbers.Integral, 1, None, closed="left")],
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
        partial_channels: int = 1,
        checkpointing: bool = False,
        cuda_graphs: bool = False,
        image_shape: tuple | None = None,
        num_workers: int = 0,
        warm_start: Any = "auto",
        warm_lr: float | None = None,
        warm_arch_warmup_epochs: int = 1,
        warm_epsilon_start: float | None = None,
        warm_head: str = "probe",
        callbacks: list | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int = 1,
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
        self.partial_channels = partial_channels
        self.checkpointing = checkpointing
        self.cuda_graphs = cuda_graphs
        self.image_shape = image_shape
        self.num_workers = num_workers
        self.warm_start = warm_start
        self.warm_lr = warm_lr
        self.warm_arch_warmup_epochs = warm_arch_warmup_epochs
        self.warm_epsilon_start = warm_epsilon_start
        self.warm_head = warm_head
        self.callbacks = callbacks
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.accelerator = accelerator

    # -- input handling ---------------------------------------------------------

    def _loader_params(self) -> dict:
        """DataLoader settings of every skorch net (training, arch split, predict)."""
        return {
            "iterator_train__num_workers": self.num_workers,
            "iterator_valid__num_workers": self.num_workers,
        }

    def _file_reading(self) -> tuple[tuple[int, int], str]:
        """``(image_size, color)`` reading new files the way the fit saw its images."""
        if self.color_ is None:
            raise ValueError(
                "X: image files are read as grey (1 channel) or RGB (3 channels), but "
                f"this estimator was fitted on {self.image_shape_[0]}-channel images; "
                "pass arrays or a torch Dataset instead."
            )
        return self.image_size_, self.color_

    def _images(self, X, reset: bool, y=None):
        """Validate X and return standardised images with any labels X carries.

        Arrays give an ``(n, c, h, w)`` float32 array (sklearn's validation:
        ``n_features_in_``, NaN, ...); image folders, lists of image files and
        torch Datasets give a :class:`~skdarts.data.StandardisedDataset`, read
        lazily (a folder that fits in memory is read at once). Returns
        ``(images, labels)``; labels come from a folder's sub-folders or a
        dataset (None for arrays and for prediction).
        """
        labels = source = images = None
        from_arrays = False
        if reset and y is not None and isinstance(X, (str, os.PathLike)):
            raise ValueError(
                "y must be None when X is a folder: the labels are the names of its "
                f"class sub-folders; got y of type {type(y).__name__}."
            )
        if reset and y is None and not is_path_input(X):
            if not isinstance(X, TorchDataset):
                raise ValueError(
                    "SupernetSearchClassifier requires y to be passed, but the target "
                    "y is None: the search is supervised and needs one label per "
                    "image (or pass an image folder or a torch Dataset of (image, "
                    "label) items as X)."
                )
        if is_path_input(X):
            if reset and isinstance(X, (str, os.PathLike)):
                files = ImageFolderDataset(
                    X, verbose=self.verbose, min_classes=2, _name="X"
                )
                labels = np.asarray(files.classes)[files.targets]
            elif reset:
                if y is None:
                    raise ValueError(
                        "y is None, but X is a list of image files; pass one label "
                        "per file (or a folder with one sub-folder per class)."
                    )
                files = read_image_files(X, verbose=self.verbose)
            else:
                size, color = self._file_reading()
                files = read_image_files(X, size, color, verbose=0)
            n_bytes = 4 * len(files) * math.prod(files.image_shape)
            if n_bytes <= _data.FOLDER_MEMORY_BUDGET:
                images = files.to_array(verbose=self.verbose if reset else 0)
            else:
                source = files
        elif isinstance(X, TorchDataset):
            check_dataset(X)
            if reset and y is None:
                labels = dataset_labels(X, verbose=self.verbose)
            source = DatasetImages(X, channels=None if reset else self.image_shape_[0])
            source.shape = source.image(0).shape
        else:
            try:
                Xv = validate_data(
                    self,
                    to_host(X),
                    reset=reset,
                    allow_nd=True,
                    dtype=None,
                    ensure_min_samples=1,
                )
            except (TypeError, ValueError) as exc:
                raise _naming_x(exc) from exc
            from_arrays = True
            images = as_images(
                Xv,
                image_shape=self.image_shape,
                channels=None if reset else self.image_shape_[0],
            )
        if reset:
            if not from_arrays:
                # n_features_in_ describes arrays (sklearn's X.shape[1]); a fit on
                # files or a dataset must not keep one from an earlier fit.
                for name in ("n_features_in_", "feature_names_in_"):
                    self.__dict__.pop(name, None)
            shape = images.shape[1:] if images is not None else source.shape
            self.image_shape_ = tuple(int(s) for s in shape)
            self.image_size_ = self.image_shape_[1:]
            self.color_ = {1: "grey", 3: "rgb"}.get(self.image_shape_[0])
            self.pixel_mean_, self.pixel_std_ = (
                channel_stats(images)
                if images is not None
                else dataset_stats(source, verbose=self.verbose)
            )
        if images is not None:
            images = (images - self.pixel_mean_[None, :, None, None]) / self.pixel_std_[
                None, :, None, None
            ]
            return images, labels
        return StandardisedDataset(
            source, None, self.pixel_mean_, self.pixel_std_
        ), labels

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
            partial_channels=self.partial_channels,
            checkpointing=self.checkpointing,
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
            module.checkpointing = bool(self.checkpointing)
            if module.n_classes != n_classes:
                module.reset_head(n_classes)
            self.source_ = {"kind": "previous_fit"}
            return module
        auto = isinstance(self.warm_start, str) and self.warm_start == "auto"
        prior = handed_prior if auto else self.warm_start  # other str: a path
        module, self.source_ = resolve_prior(prior, fresh)
        return module

    # -- fitting --------------------------------------------------------------

    def _callbacks(self, checkpoint=None):
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
        if getattr(self, "source_", None) is not None and self.warm_head == "probe":
            cbs.append(("head_probe", HeadProbe()))
        if checkpoint is not None:
            # After the scheduler: the saved state includes this epoch's step.
            cbs.append(("search_checkpoint", checkpoint))
        if self.verbose >= 2:
            cbs.append(("progress_bar", ProgressBar()))
        for i, cb in enumerate(copy.deepcopy(self.callbacks) or []):
            cbs.append(cb if isinstance(cb, tuple) else (f"user_{i}", cb))
        return cbs

    @_fit_context(prefer_skip_nested_validation=True)
    @_unchanged_on_error
    def fit(self, X, y=None):
        """Search an architecture for (X, y), then train it.

        Parameters
        ----------
        X : array-like of images, path, list of paths or torch Dataset
            Arrays ``(n, h, w)``, ``(n, c, h, w)``, ``(n, h, w, c)`` or flat
            ``(n, features)`` (see ``image_shape``); a folder with one
            sub-folder per class (read as :class:`~skdarts.ImageFolderDataset`
            does; in memory when its decoded pixels fit in
            ``skdarts.data.FOLDER_MEMORY_BUDGET`` bytes, else lazily); a list
            of image files; or a torch Dataset of ``(image, label)`` items,
            read lazily. Scaling and layout rules: :mod:`skdarts.data`.
        y : array-like of shape (n,), optional
            Class labels of any type. None for a folder (its sub-folder names
            are the labels) and for a torch Dataset (its ``targets``, else
            each item's label).

        Returns
        -------
        self
        """
        X, handed_prior = split_handoff(X)
        warm_module = getattr(self, "net_", None)
        warm_module = warm_module.module_ if warm_module is not None else None
        images, labels = self._images(X, reset=True, y=y)
        y_name = "y" if labels is None else "the labels of X"
        y = np.asarray(to_host(y) if labels is None else labels)
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
                f"{y_name} must be 1-d (one label per image); got shape {y.shape}."
            )
        if len(y) != len(images):
            raise ValueError(
                f"X and y have inconsistent numbers of samples: X has {len(images)}, "
                f"y has {len(y)}; pass one label per image."
            )
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(
                f"{y_name} has only one class ({self.classes_[0]!r}); a classifier "
                "needs at least 2 classes."
            )
        if len(images) < 2:
            raise ValueError(
                "X: n_samples=1: the search needs at least 2 samples (one for the "
                "weights, one for the architecture)."
            )
        y_enc = encoder.transform(y).astype(np.int64)
        if self.accelerator is None:
            self.device_ = resolve_device(self.device)
        else:
            self.device_ = str(self.accelerator.device)
            if self.checkpoint_dir is not None and self.accelerator.num_processes > 1:
                raise ValueError(
                    "checkpoint_dir is not supported with an accelerator running "
                    f"{self.accelerator.num_processes} processes; accepted: "
                    "checkpoint_dir=None, or a single-process accelerator."
                )
        rng = check_random_state(self.random_state)
        if self.accelerator is not None and self.accelerator.num_processes > 1:
            rng = _shared_rng(rng)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        checkpoint, state = self._find_checkpoint(images, y_enc)
        if state is not None:
            # Resume with the seed and split of the interrupted run (they may
            # differ from ours when random_state is None).
            meta = state["metadata"]
            seed = int(meta["seed"])
            w_idx, a_idx = meta["w_idx"].numpy(), meta["a_idx"].numpy()
        else:
            w_idx, a_idx = _split_indices(y_enc, self.arch_split, rng)
        if checkpoint is not None:
            checkpoint.metadata.update(
                seed=seed, w_idx=torch.from_numpy(w_idx), a_idx=torch.from_numpy(a_idx)
            )
        self.checkpoint_path_ = checkpoint.path_ if checkpoint is not None else None
        self._warm_module = warm_module

        try:
            with torch.random.fork_rng(devices=rng_devices(self.device_)):
                torch.manual_seed(seed)
                self._search(
                    images, y_enc, w_idx, a_idx, handed_prior, checkpoint, state
                )
        except BaseException:
            # A failed fit (e.g. a diverged search) must not leave a model that
            # predicts garbage: the estimator becomes unfitted.
            for attr in ("net_", "final_net_", "genotype_", "history_"):
                self.__dict__.pop(attr, None)
            raise
        finally:
            self._warm_module = None
        self.history_ = self._collect_history()
        return self

    # -- search, resume, interruption ------------------------------------------

    def _fingerprint(self, images: np.ndarray, y_enc: np.ndarray) -> str:
        """Key of a search: the data and every parameter that shapes its course."""
        ignored = {
            "verbose",
            "callbacks",
            "checkpoint_dir",
            "checkpoint_every",
            "device",
            "cuda_graphs",
            "final_epochs",
            "warm_start",
            "random_state",
            "accelerator",
        }
        params = {
            k: v for k, v in self.get_params(deep=False).items() if k not in ignored
        }
        rs = self.random_state
        params["random_state"] = int(rs) if isinstance(rs, numbers.Integral) else None
        h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
        if isinstance(images, np.ndarray):
            h.update(np.ascontiguousarray(images).tobytes())
        else:
            # A lazy dataset: its size and a fixed spread of its items.
            h.update(str(len(images)).encode())
            for i in np.unique(np.linspace(0, len(images) - 1, 64).astype(int)):
                h.update(np.ascontiguousarray(images[int(i)][0]).tobytes())
        h.update(np.ascontiguousarray(y_enc).tobytes())
        h.update(json.dumps([str(c) for c in self.classes_]).encode())
        return h.hexdigest()

    def _find_checkpoint(self, images, y_enc):
        """The checkpoint callback of this fit and the state to resume, if any."""
        if self.checkpoint_dir is None:
            return None, None
        key = self._fingerprint(images, y_enc)[:16]
        folder = Path(self.checkpoint_dir) / f"search-{key}"
        checkpoint = SearchCheckpoint(
            folder, every=int(self.checkpoint_every), metadata={"fingerprint": key}
        )
        if not checkpoint.path_.exists():
            return checkpoint, None
        state = SearchCheckpoint.load_state(checkpoint.path_)
        if (state.get("metadata") or {}).get("fingerprint") != key:
            raise ValueError(
                f"The checkpoint {str(checkpoint.path_)!r} belongs to another search "
                "(fingerprint mismatch); delete it or choose another checkpoint_dir."
            )
        return checkpoint, state

    def _search(self, images, y_enc, w_idx, a_idx, handed_prior, checkpoint, state):
        module = self._initial_module(len(self.classes_), handed_prior)
        if isinstance(images, StandardisedDataset):
            images.labels = y_enc
            dataset = images
        else:
            dataset = Dataset(images, y_enc)
        arch_ds = Subset(dataset, a_idx)
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
            cuda_graphs=self.cuda_graphs,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            train_split=predefined_split(arch_ds),
            iterator_train__shuffle=True,
            callbacks=self._callbacks(checkpoint),
            classes=np.arange(len(self.classes_)),
            verbose=int(self.verbose >= 1),
            callbacks__print_log__keys_ignored=["genotype", "arch_weights"],
            **self._net_device_kwargs(),
            **self._loader_params(),
        )
        if self.source_ is not None:
            self.net_.set_params(**self._warm_search_params())
        Xw, yw = Subset(dataset, w_idx), None
        self.resumed_from_ = 0
        if state is None:
            self.net_.fit(Xw, yw)
        else:
            self.net_.initialize()
            dict(self.net_.callbacks_)["search_checkpoint"].restore(self.net_, state)
            self.resumed_from_ = int(state["epochs_done"])
            remaining = max(self.max_epochs - self.resumed_from_, 0)
            self.net_.partial_fit(Xw, yw, epochs=remaining)
        # The arch split is data, not model state: keep it out of pickles.
        self.net_.train_split = None
        self.search_epochs_ = _completed_epochs(self.net_.history)
        self.interrupted_ = self.search_epochs_ < self.max_epochs and not any(
            isinstance(cb, EarlyStopping) and cb.misses_ >= cb.patience
            for _, cb in self.net_.callbacks_
        )
        self.genotype_ = self.net_.module_.genotype()
        self.final_net_ = None
        if self.interrupted_:
            resume = (
                " fit again with the same checkpoint_dir to resume from the last "
                "checkpoint."
                if self.checkpoint_dir is not None
                else " set checkpoint_dir to make searches resumable."
            )
            warnings.warn(
                f"The search was interrupted after {self.search_epochs_} of "
                f"{self.max_epochs} epochs: the genotype is derived from the alphas "
                "as they stood, the final training is skipped and predictions come "
                f"from the supernet (interrupted_=True);{resume}",
                UserWarning,
                stacklevel=4,
            )
        elif self.final_epochs > 0:
            self.final_net_ = self._fit_final(dataset, None)
            done = _completed_epochs(self.final_net_.history)
            if done < self.final_epochs:
                self.interrupted_ = True
                warnings.warn(
                    f"The final training was interrupted after {done} of "
                    f"{self.final_epochs} epochs; predictions use the derived "
                    "network as trained so far (interrupted_=True).",
                    UserWarning,
                    stacklevel=4,
                )

    def _net_class(self, plain, accelerated):
        return plain if self.accelerator is None else accelerated

    def _net_device_kwargs(self) -> dict:
        if self.accelerator is None:
            return {"device": self.device_}
        # The accelerator places data and modules itself (skorch: device=None).
        return {"device": None, "accelerator": self.accelerator}

    def _warm_search_params(self) -> dict:
        """SearchNet settings of a warm-started search (see the warm_* params)."""
        lr = self.warm_lr if self.warm_lr is not None else self.lr
        return {
            "optimizer__lr": lr,
            "optimizer__param_groups": [("head.*", {"lr": self.lr})],
            "arch_warmup_epochs": self.warm_arch_warmup_epochs,
            "epsilon_start": (
                self.epsilon
                if self.warm_epsilon_start is None
                else self.warm_epsilon_start
            ),
        }

    def _fit_final(self, images, y_enc):
        derived = DerivedNetwork.from_supernet(self.net_.module_, self.genotype_)
        net = self._net_class(_FinalNet, AcceleratedNeuralNetClassifier)(
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
                ("finite_guard", FiniteGuard(phase="final training")),
                *([("progress_bar", ProgressBar())] if self.verbose >= 2 else []),
            ],
            classes=np.arange(len(self.classes_)),
            verbose=int(self.verbose >= 1),
            **self._loader_params(),
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
        X : array-like of images, path, list of paths or torch Dataset
            As in ``fit``; a path may also be a folder of images (read
            recursively, in sorted order) or one image file. Files are read
            with ``image_size_`` and ``color_``.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        images, _ = self._images(X, reset=False)
        net = self._predicting_net()
        net.module_.eval()
        with torch.no_grad():
            proba = net.predict_proba(images)
        return np.asarray(proba, dtype=np.float64)

    def predict(self, X) -> np.ndarray:
        """Predicted labels (of the same type as ``y`` in ``fit``).

        Parameters
        ----------
        X : array-like of images, path, list of paths or torch Dataset
            As in ``fit``; a path may also be a folder of images (read
            recursively, in sorted order) or one image file. Files are read
            with ``image_size_`` and ``color_``.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "net_") and hasattr(self, "classes_")

    # -- persistence -------------------------------------------------------------

    def __setstate__(self, state):
        super().__setstate__(state)
        device = getattr(self, "device_", None)
        if (
            isinstance(device, str)
            and device.startswith("cuda")
            and not torch.cuda.is_available()
        ):
            # The skorch nets inside have already mapped their tensors to the CPU.
            warnings.warn(
                f"This SupernetSearchClassifier was fitted on {device!r}, which is "
                "not available here: it was loaded on the CPU (device_='cpu').",
                UserWarning,
                stacklevel=2,
            )
            self.device_ = "cpu"

    def export(
        self, path, format: str = "safetensors", *, overwrite: bool = False
    ) -> Path:
        """Write the trained derived network for use without this estimator.

        The exported model includes the input standardisation and returns
        class probabilities equal to :meth:`predict_proba`'s, for images
        scaled as :func:`skdarts.data.as_images` scales them (8-bit integer
        pixels divided by 255). See :mod:`skdarts.export` for the formats;
        :func:`skdarts.load_exported` reads them back. The write is atomic.

        Parameters
        ----------
        path : str or path-like
            A folder for ``"safetensors"``, a file otherwise.
        format : {"safetensors", "torchscript", "onnx"}, default="safetensors"
        overwrite : bool, default=False
            Replace an existing export.

        Returns
        -------
        pathlib.Path

        Examples
        --------
        >>> import os, tempfile
        >>> from sklearn.datasets import load_digits
        >>> from skdarts import load_exported
        >>> X, y = load_digits(return_X_y=True)
        >>> clf = SupernetSearchClassifier(search_space="s2", init_channels=2,
        ...     n_cells=1, n_nodes=1, max_epochs=1, final_epochs=1, verbose=0,
        ...     device="cpu", random_state=0).fit(X[:60], y[:60])
        >>> folder = clf.export(os.path.join(tempfile.mkdtemp(), "digits"))
        >>> model = load_exported(folder)
        >>> images = torch.tensor(X[:2].reshape(-1, 1, 8, 8), dtype=torch.float32)
        >>> bool(torch.allclose(model(images).double(),
        ...     torch.from_numpy(clf.predict_proba(X[:2])), atol=1e-6))
        True
        """
        check_is_fitted(self)
        if self.final_net_ is None:
            raise ValueError(
                "export writes the trained derived network, but this estimator has "
                "none (final_epochs=0 or an interrupted search): fit with "
                "final_epochs >= 1 (or resume the search) first."
            )
        model = ExportedClassifier(
            copy.deepcopy(self.final_net_.module_).cpu(),
            self.pixel_mean_,
            self.pixel_std_,
            classes=self.classes_.tolist(),
            image_shape=self.image_shape_,
        )
        return export_network(model, path, format=format, overwrite=overwrite)
