"""OTSourceSelector: rank a zoo's supernets by dataset distance to the target."""

from __future__ import annotations

import inspect
import numbers
import os
import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from torch.utils.data import Dataset as TorchDataset
from tqdm.auto import tqdm

from ..data import to_host
from ..similarity import (
    DEFAULT_EMBEDDING,
    EMBEDDINGS,
    METHODS,
    DatasetSignature,
    compute_signature,
    rank_sources,
)
from ._handoff import split_handoff, with_prior
from ._signature_inputs import is_file_or_dataset_input, read_signature_images

__all__ = ["OTSourceSelector"]


def _stored_signatures(entry, embedding: str) -> dict:
    """``{source: (arrays, meta)}`` an entry holds for ``embedding``.

    A :class:`~skdarts.zoo.ZooEntry` selects them itself; an entry of a
    duck-typed zoo whose ``signature_arrays()`` takes no ``embedding`` gives
    all of its signatures, filtered by their recorded feature map afterwards.
    """
    method = entry.signature_arrays
    try:
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):  # a builtin or C callable: no keywords known
        params = {}
    if "embedding" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    ):
        return method(embedding=embedding)
    return method()


def _holds_signatures(entry, stored: dict) -> bool:
    """Whether ``entry`` stores any signature at all (of any embedding)."""
    doc = getattr(entry, "metadata", None)
    if isinstance(doc, dict) and "signatures" in doc:
        return bool(doc["signatures"])
    return bool(stored)  # a duck-typed entry gave all it has


def _check_zoo(zoo) -> None:
    needed = ("__iter__", "__getitem__", "__len__", "__contains__")
    missing = [m for m in needed if not hasattr(zoo, m)]
    if missing:
        raise TypeError(
            "zoo must be a SupernetZoo (or an object with its read API: iteration "
            "over entry names, zoo[name] -> entry with .signature_arrays()); got "
            f"{type(zoo).__name__}, which lacks {missing}."
        )


class OTSourceSelector(TransformerMixin, BaseEstimator):
    """Choose the zoo supernet whose source data is nearest to the target.

    ``fit(X, y)`` computes the target's dataset signature
    (:func:`skdarts.similarity.compute_signature`) and ranks the zoo's entries
    by a dataset distance computed from the signatures stored in the zoo: no
    source data is needed. ``transform(X)`` returns ``X`` unchanged, carrying
    the nearest entry as a prior (:class:`~skdarts.estimators._handoff.
    HandoffArray`), so that a following :class:`SupernetSearchClassifier`
    with ``warm_start="auto"`` warm-starts from it.

    Ranking is two-stage. Stage 1 compares the target with every source at
    once: for "otdd", a class-level Gaussian surrogate of it (exact OT
    between class weights, from class spectra cached in the signatures; see
    :func:`skdarts.similarity.gaussian_otdd_distances`), otherwise the
    Bures-Wasserstein distance between dataset-level Gaussians. Stage 2
    computes ``method`` exactly for the ``shortlist`` entries nearest by
    stage 1 (``benchmarks/selection.py`` measures how often this finds the
    exact top-1 over all entries). An entry pretrained on several sources is as
    near as its nearest source (the minimum over its sources): it has seen
    that source's data, which is what transfers. Such an entry therefore ties
    with that source's own entry; ties are broken deterministically in favour
    of the entry with more sources (the multi-dataset supernet, the
    recommended prior), then by name. ``source_distances_`` shows which
    source gave each entry its distance.

    Parameters
    ----------
    zoo : SupernetZoo
        The zoo to choose from (anything with its read API).
    n_sources : int, default=1
        How many entries ``selected_`` lists; the first is handed on.
    method : {"otdd", "wasserstein", "sliced", "gaussian"}, default="otdd"
        Distance of stage 2 (see :func:`skdarts.similarity.dataset_distance`);
        "gaussian" is stage 1 alone.
    shortlist : int or None, default=10
        Entries given the exact distance; None: all of them (one stage).
    max_points : int or None, default=200
        Points per dataset in the exact distance (fewer is faster, noisier);
        None uses all stored points.
    image_shape : tuple of int, optional
        How to reshape flat input rows ``(n, features)`` into images:
        ``(h, w)`` or ``(c, h, w)``. It never resamples.
    embedding : {"auto", "pixels", "supernet"}, default="auto"
        The feature map of the signatures compared
        (:data:`skdarts.similarity.EMBEDDINGS`): ``"pixels"``, a fixed
        projection of raw pixels, or ``"supernet"``, pooled features of the
        shipped multi-dataset supernet. The target's signature is computed
        with it, and only the zoo's signatures of that embedding (and of the
        same version of it) are used; the shipped zoo holds both. ``"auto"``:
        :data:`skdarts.similarity.DEFAULT_EMBEDDING` (``"supernet"``, chosen
        because its distances predicted transfer better on the measured
        transfer matrix, ``benchmarks/transfer_matrix.py``) where the zoo
        holds its signatures, else ``"pixels"`` with a warning.
    random_state : int, RandomState instance or None, default=None
        Seeds the target's subsample and the distances' subsamples.
    verbose : int, default=0
        > 0 shows progress bars.

    Attributes
    ----------
    embedding_ : str
        The embedding the ranking used (``embedding`` resolved).
    ranking_ : list of str
        Entry names, nearest first: the shortlist by exact distance, then the
        rest by the stage-1 bound. Entries without usable signatures are left
        out (with a warning).
    distances_ : ndarray of shape (n_ranked,)
        Distance of each entry of ``ranking_`` (NaN where only stage 1 ran).
    proxy_distances_ : ndarray of shape (n_ranked,)
        Stage-1 distance of each entry of ``ranking_``.
    source_distances_ : dict
        ``{entry: {source: distance}}`` for the entries given stage 2.
    selected_ : list of str
        The ``n_sources`` nearest entries.
    prior_ : ZooEntry
        The nearest entry, handed on by ``transform``.
    target_signature_ : DatasetSignature
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skdarts.similarity import signature_fn
    >>> X, y = load_digits(return_X_y=True)
    >>> class Entry:
    ...     def __init__(self, name, sigs): self.name, self.sigs = name, sigs
    ...     def signature_arrays(self): return self.sigs
    >>> def sigs(source, X, y):  # one signature per embedding
    ...     pixels, learned = signature_fn(X, y, embedding=["pixels", "supernet"])
    ...     return {source: pixels, source + "@supernet": learned}
    >>> zoo = {"digits": Entry("digits", sigs("d", X[:500], y[:500])),
    ...        "inverted": Entry("inverted", sigs("i", 16 - X[:500], y[:500]))}
    >>> sel = OTSourceSelector(zoo, random_state=0).fit(X[900:1200], y[900:1200])
    >>> sel.ranking_
    ['digits', 'inverted']
    >>> sel.transform(X[:2]).prior.name
    'digits'
    >>> sel = OTSourceSelector(zoo, embedding="supernet", random_state=0)
    >>> sel.fit(X[900:1200], y[900:1200]).ranking_
    ['digits', 'inverted']
    """

    _parameter_constraints: dict = {
        "zoo": "no_validation",
        "n_sources": [Interval(numbers.Integral, 1, None, closed="left")],
        "method": [StrOptions(set(METHODS))],
        "shortlist": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "max_points": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "image_shape": [tuple, list, None],
        "embedding": [StrOptions({"auto", *EMBEDDINGS})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        zoo,
        n_sources: int = 1,
        method: str = "otdd",
        shortlist: int | None = 10,
        max_points: int | None = 200,
        image_shape: tuple | None = None,
        embedding: str = "auto",
        random_state: Any = None,
        verbose: int = 0,
    ):
        self.zoo = zoo
        self.n_sources = n_sources
        self.method = method
        self.shortlist = shortlist
        self.max_points = max_points
        self.image_shape = image_shape
        self.embedding = embedding
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = self.method == "otdd"
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # -- reading the zoo ----------------------------------------------------

    def _resolve_signatures(self):
        """The embedding to compare with and the zoo's usable signatures of it.

        ``embedding="auto"``: :data:`~skdarts.similarity.DEFAULT_EMBEDDING`
        (the learned one) where the zoo holds signatures of it, else the
        first other embedding it holds, with a warning (a zoo built before
        the learned embedding holds pixel signatures only).
        """
        if self.embedding != "auto":
            return self.embedding, self._load_signatures(self.embedding)
        order = [DEFAULT_EMBEDDING] + [e for e in EMBEDDINGS if e != DEFAULT_EMBEDDING]
        for embedding in order:
            rows = self._load_signatures(embedding, required=False)
            if rows:
                if embedding != DEFAULT_EMBEDDING:
                    warnings.warn(
                        f"the zoo holds no signatures of the default embedding "
                        f"{DEFAULT_EMBEDDING!r}, which predicts transfer better; "
                        f"ranking with {embedding!r} signatures instead. Store "
                        f"{DEFAULT_EMBEDDING!r} signatures with zoo.set_signatures("
                        "name, {source: skdarts.similarity.signature_fn(X, y, "
                        f"embedding={DEFAULT_EMBEDDING!r})}}), or pass "
                        f"embedding={embedding!r} to silence this.",
                        UserWarning,
                        stacklevel=3,
                    )
                return embedding, rows
        return DEFAULT_EMBEDDING, self._load_signatures(DEFAULT_EMBEDDING)

    def _load_signatures(self, embedding: str, required: bool = True):
        """``[(entry name, source name, DatasetSignature), ...]`` of usable ones.

        Usable: computed with ``embedding``, same version (its constants equal
        :data:`~skdarts.similarity.EMBEDDINGS`'s). With ``required``, no usable
        signature at all raises ``ValueError`` (else ``[]`` is returned).
        """
        _check_zoo(self.zoo)
        constants = EMBEDDINGS[embedding]
        rows, unusable = [], []
        names = list(self.zoo)
        n_other = 0  # entries holding signatures of other embeddings only
        for name in tqdm(
            names, desc="reading signatures", disable=self.verbose <= 0, leave=False
        ):
            try:
                entry = self.zoo[name]
                stored = _stored_signatures(entry, embedding)
                sigs = [
                    (src, DatasetSignature.from_arrays(arrays, meta))
                    for src, (arrays, meta) in stored.items()
                ]
            except Exception as exc:  # one bad entry harms no other
                unusable.append(f"{name} ({type(exc).__name__}: {exc})")
                continue
            same_map = [
                (s, sig)
                for s, sig in sigs
                if sig.embedding.get("name") == constants["name"]
            ]
            usable = [(s, sig) for s, sig in same_map if sig.embedding == constants]
            if same_map and not usable:
                unusable.append(
                    f"{name} (its embedding={embedding!r} signatures were "
                    "computed with another version of that feature map; recompute "
                    "them)"
                )
            elif not usable and not _holds_signatures(entry, stored):
                unusable.append(f"{name} (no signatures stored)")
            elif not usable:
                n_other += 1
                unusable.append(
                    f"{name} (no signatures of embedding={embedding!r}, only of "
                    "other embeddings)"
                )
            rows.extend((name, src, sig) for src, sig in usable)
        self._unusable = unusable
        if not rows and not required:
            self._unusable = []
            return rows
        if not rows:
            self._warn_unusable()
            raise ValueError(
                f"the zoo ({len(names)} entries) holds no usable dataset signature "
                f"of embedding={embedding!r} (accepted embeddings: "
                f"{sorted(EMBEDDINGS)}). Compute them: for the shipped zoo "
                "`python scripts/build_default_zoo.py --signatures-only "
                f"--embedding {embedding}`; for a zoo of your own, "
                "zoo.set_signatures(name, {source: skdarts.similarity."
                f"signature_fn(X, y, embedding={embedding!r})}}) for each "
                "entry and source (other embeddings' signatures are kept)"
                + (
                    f"; or pass another embedding ({n_other} entries hold "
                    "signatures of other embeddings only)."
                    if n_other
                    else "."
                )
            )
        return rows

    # -- fitting --------------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Rank the zoo's entries by distance to the dataset ``(X, y)``.

        Parameters
        ----------
        X : array-like of images, path, list of paths or torch Dataset
            Everything :class:`~skdarts.SupernetSearchClassifier` accepts:
            arrays in any layout :func:`skdarts.data.as_images` accepts, a
            folder with one sub-folder per class, a list of image files, or a
            torch Dataset of ``(image, label)`` items. Files and Datasets are
            decoded for the signature (at most
            :data:`~skdarts.estimators._signature_inputs.MAX_SIGNATURE_IMAGES`
            of them, drawn uniformly).
        y : array-like of shape (n,)
            Class labels; required by ``method="otdd"``, except for a folder
            (its sub-folder names) or a torch Dataset (its labels).

        Returns
        -------
        self
        """
        X, _ = split_handoff(X)
        labelled = isinstance(X, TorchDataset) or (
            isinstance(X, (str, os.PathLike)) and os.path.isdir(X)
        )
        if y is None and self.method == "otdd" and not labelled:
            raise ValueError(
                "OTSourceSelector requires y to be passed, but the target y is None: "
                "method='otdd' compares labelled datasets (use method='wasserstein', "
                "'sliced' or 'gaussian' for unlabelled data; or pass a folder with "
                "one sub-folder per class, or a torch Dataset of (image, label))."
            )
        rng = check_random_state(self.random_state)
        if is_file_or_dataset_input(X):
            # What the classifier accepts must pass through a pipeline's selector.
            Xv, y = read_signature_images(X, y, rng, verbose=self.verbose)
            for name in ("n_features_in_", "feature_names_in_"):
                self.__dict__.pop(name, None)
        else:
            Xv = validate_data(self, to_host(X), reset=True, allow_nd=True, dtype=None)
        if y is not None:
            y = np.asarray(to_host(y))
            if y.ndim == 2 and y.shape[1] == 1:
                y = y.ravel()
            if y.ndim != 1 or len(y) != len(Xv):
                raise ValueError(
                    f"y must be 1-d with one label per sample ({len(Xv)}); got "
                    f"shape {y.shape}."
                )
        seed = int(rng.randint(np.iinfo(np.int32).max))
        self.embedding_, rows = self._resolve_signatures()
        self.target_signature_ = compute_signature(
            Xv,
            y,
            image_shape=self.image_shape,
            random_state=seed,
            embedding=self.embedding_,
        )
        n_entries = len({name for name, _, _ in rows})
        if self.n_sources > n_entries:
            self._warn_unusable()
            raise ValueError(
                f"n_sources={self.n_sources} but only {n_entries} zoo entries have "
                "usable signatures."
            )
        ranking = rank_sources(
            self.target_signature_,
            rows,
            self.method,
            shortlist=None
            if self.shortlist is None
            else max(self.shortlist, self.n_sources),
            max_points=self.max_points,
            random_state=seed % 1_000_000,
            verbose=int(self.verbose > 0),
        )
        self.ranking_ = ranking.names
        self.distances_ = ranking.distances
        self.proxy_distances_ = ranking.proxy_distances
        self.source_distances_ = ranking.source_distances
        self._drop_unloadable(ranking)
        self._warn_unusable()
        self.selected_ = self.ranking_[: self.n_sources]
        self.prior_ = self.zoo[self.selected_[0]]
        return self

    def _warn_unusable(self) -> None:
        unusable, self._unusable = getattr(self, "_unusable", []), []
        if unusable:
            warnings.warn(
                f"{len(unusable)} zoo entr{'y' if len(unusable) == 1 else 'ies'} "
                "left out of the ranking: " + "; ".join(unusable[:10]),
                UserWarning,
                stacklevel=4,
            )

    def _drop_unloadable(self, ranking) -> None:
        """Load the nearest entries' weights; leave out those that fail.

        Committing to an entry whose weights cannot be loaded would make the
        next pipeline step fail; the next entry in the ranking is used instead.
        """
        keep, n_ok = [], 0
        for i, name in enumerate(self.ranking_):
            if n_ok >= self.n_sources:
                keep.extend(range(i, len(self.ranking_)))
                break
            try:
                load = getattr(self.zoo[name], "load_supernet", None)
                if load is not None:
                    load()
            except Exception as exc:  # fall back to the next entry
                self._unusable.append(
                    f"{name} (its weights cannot be loaded: {type(exc).__name__}: "
                    f"{exc})"
                )
                continue
            keep.append(i)
            n_ok += 1
        if n_ok < self.n_sources:
            self._warn_unusable()
            raise ValueError(
                f"n_sources={self.n_sources} but only {n_ok} zoo entries have "
                "usable signatures and loadable weights."
            )
        if len(keep) < len(self.ranking_):
            idx = np.asarray(keep, dtype=int)
            self.ranking_ = [self.ranking_[i] for i in keep]
            self.distances_ = np.asarray(self.distances_)[idx]
            self.proxy_distances_ = np.asarray(self.proxy_distances_)[idx]
            dropped = set(ranking.names) - set(self.ranking_)
            self.source_distances_ = {
                k: v for k, v in self.source_distances_.items() if k not in dropped
            }

    def transform(self, X):
        """Return ``X`` unchanged, carrying the selected prior.

        Parameters
        ----------
        X : array-like of images, path, list of paths or torch Dataset

        Returns
        -------
        HandoffArray or HandoffData
            For arrays, the validated ``X`` (same values, same dtype) with
            ``.prior`` set to ``prior_``: an ordinary ndarray to every other
            consumer. Paths and Datasets come back unread in a
            :class:`~skdarts.estimators._handoff.HandoffData` (``.data``,
            ``.prior``), which the classifier unwraps.
        """
        check_is_fitted(self)
        X, _ = split_handoff(X)
        if is_file_or_dataset_input(X):
            return with_prior(X, self.prior_)  # read by the next step, not here
        Xv = validate_data(self, to_host(X), reset=False, allow_nd=True, dtype=None)
        return with_prior(Xv, self.prior_)

    def distance_note(self, name: str) -> str:
        """Where entry ``name``'s distance comes from, for printing beside it.

        An entry of several sources is as near as its nearest source: the
        note names that source (and says when another entry ties with it);
        a single-source entry gets an empty note.

        Parameters
        ----------
        name : str
            An entry of ``ranking_``.

        Returns
        -------
        str

        Examples
        --------
        >>> sel = OTSourceSelector(zoo=None)
        >>> sel.ranking_, sel.distances_ = ["multi", "a"], np.array([1.0, 1.0])
        >>> sel.source_distances_ = {"multi": {"a": 1.0, "b": 2.0}, "a": {"a": 1.0}}
        >>> sel.distance_note("multi")
        'multi-source: its nearest source a; ties go to the entry with more sources'
        >>> sel.distance_note("a")
        ''
        """
        check_is_fitted(self, "ranking_")
        if name not in self.ranking_:
            raise ValueError(
                f"name must be an entry of ranking_ ({self.ranking_}); got {name!r}."
            )
        per_source = self.source_distances_.get(name, {})
        if len(per_source) < 2:
            return ""
        nearest = min(per_source, key=per_source.get)
        note = f"multi-source: its nearest source {nearest}"
        mine = self.distances_[self.ranking_.index(name)]
        if any(
            other != name and d == mine
            for other, d in zip(self.ranking_, self.distances_)
        ):
            note += "; ties go to the entry with more sources"
        return note

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "prior_")
