"""SupernetSearchClassifier: DARTS search as a scikit-learn classifier.

The class is assembled from small parts, one module each: input handling
(:mod:`._inputs`), the search and final training (:mod:`._training`),
resumable searches (:mod:`._resume`), persistence (:mod:`._persistence`),
prediction (:mod:`._prediction`), warm-start priors (:mod:`._prior`) and the
parameters' constraints (:mod:`._constraints`). This module holds the
parameters and ``fit``.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils import check_random_state

from .._device import resolve_device, rng_devices
from ..search import SearchConfig, stratified_split
from ._constraints import PARAMETER_CONSTRAINTS
from ._handoff import split_handoff
from ._inputs import ImageInputs
from ._persistence import Persistence
from ._prediction import Prediction
from ._prior import check_warm_start
from ._resume import ResumableSearch
from ._small_data import warn_small_classes
from ._training import SearchTraining, _FinalNet, _shared_rng  # noqa: F401

__all__ = ["SupernetSearchClassifier"]

#: The search parameters' defaults (the estimator's come from here).
_DEFAULTS = SearchConfig()


def _unchanged_on_error(method):
    """A call that raises leaves the estimator's attributes as they were.

    The one rollback of a failed ``fit`` (bad input, a diverged search, an
    error in a callback): a first fit that fails leaves the estimator
    unfitted, a refit that fails keeps the previous model; never a model that
    predicts garbage.
    """

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


class SupernetSearchClassifier(
    ImageInputs,
    SearchTraining,
    ResumableSearch,
    Persistence,
    Prediction,
    ClassifierMixin,
    BaseEstimator,
):
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
        ``(h, w)`` or ``(c, h, w)`` of flat input rows (how flat rows are
        reshaped into images; nothing is resampled).
    image_size : "prior", None, int or (int, int), default="prior"
        A **resize target**: the size (height, width) the network sees.
        Inputs are resampled to it (antialiased bilinear) at ``fit`` and at
        prediction alike. ``"prior"``: when the search is warm-started from
        a zoo entry (or a saved supernet, or a fitted estimator) that records
        the size it was trained at, that size (the shipped zoo: 16x16), so a
        28x28 or 32x32 target meets the prior's features at the scale they
        were learnt; otherwise the inputs' own size. ``None``: always the
        inputs' own size. An int ``n`` means ``(n, n)``.
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
        cosine-annealed to ``lr_min``. None: ``lr``. The warm-start defaults
        were chosen by measurement on the development data
        (``benchmarks/warm_tuning.py``, output in
        ``benchmarks/results/warm_tuning.txt``): ``lr / 4`` and ``lr / 10``
        start higher but end lower, since the prior's body then adapts less
        to the target.
    warm_arch_warmup_epochs : int, default=0
        Epochs of a warm-started search during which the alphas stay as the
        prior left them while the new head settles. With the head fitted by
        the probe (``warm_head="probe"``) there is nothing to wait for: a
        warm-up of 1 epoch ended lower in the tuning runs.
    warm_epsilon_start : float or None, default=0.03
        Smoothing radius at the first epoch of a warm-started search, ramped
        to ``epsilon`` as in a cold search (whose ramp starts at 0.03 too).
        None: ``epsilon`` from the first epoch, which ended lower in the
        tuning runs.
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
        0 is silent; 1 prints a line naming each phase ("search from
        scratch", "warm search from <entry>", "final training of the derived
        network") above its table of one line per epoch, and a per-batch
        progress bar (on stderr) in epochs of at least 5 batches once they
        have run 2 seconds; 2 shows the progress bar in every epoch.
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
    **Small data.** A class with too few images for the weight/architecture
    split (fewer than 20 at ``arch_split=0.5``) raises a
    :class:`~skdarts.estimators.SmallDataWarning` saying what to try: a search
    that small tends to stay near chance accuracy.

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
        ``(c, h, w)`` of the input images as given at ``fit`` (before any
        ``image_size`` resampling); predict-time arrays must match it.
    image_size_ : tuple of int
        ``(h, w)`` image files are read at at prediction (the fit's).
    input_size_ : tuple of int or None
        ``(h, w)`` every input is resampled to before the network (from
        ``image_size``); None when the network sees the inputs' own size.
    color_ : {"grey", "rgb"} or None
        How image files are read at prediction (from the channel count seen
        at ``fit``; None when it is neither 1 nor 3).
    input_scale_ : float
        What array pixels are divided by (255 or 65535 for integer
        pixels, 1 for floats), decided at ``fit`` from its data and applied
        to every later array, so a prediction does not depend on the batch
        (absent after a fit on files or a torch Dataset).
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
        One entry per epoch of **both** phases, in order: the ``max_epochs``
        search epochs (``"phase": "search"``: losses, accuracies, duration,
        learning rate, smoothing radius, genotype), then the
        ``final_epochs`` of the derived network's training (``"phase":
        "final"``: training loss, duration; ``epoch`` continues the count).
        ``search_history_`` and ``final_history_`` hold each phase alone.
    search_history_ : list of dict
        The search's rows of ``history_``.
    final_history_ : list of dict
        The final training's rows of ``history_`` (empty when
        ``final_epochs=0`` or the search was interrupted).
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

    _parameter_constraints: dict = PARAMETER_CONSTRAINTS

    def __init__(
        self,
        search_space: str = _DEFAULTS.search_space,
        init_channels: int = _DEFAULTS.init_channels,
        n_cells: int = _DEFAULTS.n_cells,
        n_nodes: int = _DEFAULTS.n_nodes,
        max_epochs: int = _DEFAULTS.max_epochs,
        final_epochs: int = 10,
        batch_size: int = _DEFAULTS.batch_size,
        lr: float = _DEFAULTS.lr,
        lr_min: float = _DEFAULTS.lr_min,
        momentum: float = _DEFAULTS.momentum,
        weight_decay: float = _DEFAULTS.weight_decay,
        arch_lr: float = _DEFAULTS.arch_lr,
        arch_weight_decay: float = _DEFAULTS.arch_weight_decay,
        arch_split: float = _DEFAULTS.arch_split,
        smoothing: str | None = _DEFAULTS.smoothing,
        epsilon: float = _DEFAULTS.epsilon,
        grad_clip: float | None = _DEFAULTS.grad_clip,
        partial_channels: int = _DEFAULTS.partial_channels,
        checkpointing: bool = _DEFAULTS.checkpointing,
        cuda_graphs: bool = _DEFAULTS.cuda_graphs,
        image_shape: tuple | None = None,
        image_size: Any = "prior",
        num_workers: int = 0,
        warm_start: Any = "auto",
        warm_lr: float | None = None,
        warm_arch_warmup_epochs: int = 0,
        warm_epsilon_start: float | None = 0.03,
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
        self.image_size = image_size
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
        check_warm_start(self.warm_start)
        warm_module = getattr(self, "net_", None)  # unfitted: none
        warm_module = warm_module.module_ if warm_module is not None else None
        self.input_size_ = self._network_input_size(handed_prior)
        images, labels = self._images(X, reset=True, y=y)
        y_enc = self._encoded_labels(y, labels, len(images))
        warn_small_classes(y_enc, self.classes_, self.arch_split, stacklevel=4)
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
            w_idx, a_idx = stratified_split(y_enc, self.arch_split, rng)
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
        finally:
            self._warm_module = None
        self.history_ = self._collect_history()
        self.search_history_ = [r for r in self.history_ if r["phase"] == "search"]
        self.final_history_ = [r for r in self.history_ if r["phase"] == "final"]
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "net_") and hasattr(self, "classes_")
