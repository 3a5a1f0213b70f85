"""Ranking many sources by their distance to a target, in two stages."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import ot

from .distances import METHODS, dataset_distance, gaussian_distances
from .signature import DatasetSignature, _check_int, _seed, _spectra


def _subsample_index(n: int, max_points: int | None, seed: int) -> np.ndarray | None:
    """Rows :func:`_subsample` keeps of ``n`` points (None: all)."""
    if max_points is None or n <= max_points:
        return None
    return np.sort(np.random.RandomState(seed).choice(n, max_points, replace=False))


def _class_weights(sig: DatasetSignature, index: np.ndarray | None) -> np.ndarray:
    """Class frequencies among the points the exact distance uses."""
    labels = sig.labels if index is None else sig.labels[index]
    if not len(labels):
        return sig.class_counts / sig.class_counts.sum()
    return np.bincount(labels, minlength=sig.n_classes) / len(labels)


try:  # POT's network simplex itself; see _small_emd2
    from ot.lp.emd_wrap import emd_c as _emd_c
except ImportError:  # pragma: no cover - another POT layout
    _emd_c = None

_OPTIMAL = 1  # the network simplex's result code for an optimal solution


def _small_emd2(a: np.ndarray, b: np.ndarray, M: np.ndarray) -> float:
    """``ot.emd2(a, b, M)`` for one small dense problem, without its wrapper.

    Ranking a zoo solves one ``k x k'`` class problem per entry; POT's
    ``emd2`` spends about 100 us per call on backend dispatch and checks
    around a 20 us solve, which made ranking 10,000 entries take over a
    second. Same solver, same rescaling of ``b`` to ``a``'s mass as
    ``emd2``; anything but an optimal solve (or another POT whose solver
    cannot be called so) goes through ``ot.emd2`` itself, with its warnings.
    """
    if _emd_c is not None:
        a = np.ascontiguousarray(a, dtype=np.float64)
        b = np.ascontiguousarray(b, dtype=np.float64)
        b = b * (a.sum() / b.sum())
        try:
            _, cost, _, _, code = _emd_c(
                a, b, np.ascontiguousarray(M, dtype=np.float64), 100000, 1
            )
        except (TypeError, ValueError):  # pragma: no cover - another signature
            code = None
        if code == _OPTIMAL:
            return float(cost)
    return float(ot.emd2(a, b, M, check_marginals=False, center_dual=False))


def gaussian_otdd_distances(
    target: DatasetSignature,
    signatures: Sequence[DatasetSignature],
    *,
    max_points: int | None = None,
    random_state: int | np.random.RandomState | None = 0,
) -> np.ndarray:
    """Class-level Gaussian surrogate of "otdd" from one dataset to many.

    The first stage of ranking a zoo for ``method="otdd"``. Each dataset is
    reduced to its classes, class ``i`` to ``N(m_i, S_i)`` with the weight of
    its label among the points the exact distance uses (the same
    ``max_points`` subsample), and the two class distributions are matched by
    exact OT (:func:`ot.emd2`, a ``k x k'`` problem) with the cost

    ``C_ij = (||m_i - m_j||^2 + tr S_i + tr S_j) + W_2^2(N_i, N_j)``.

    The first term is the expected squared distance between independent
    draws of the two classes: exact OT between a few hundred points in
    ``d = 32`` dimensions moves each point about as far as to a random
    partner of the matched class (the curse of dimensionality of empirical
    OT), so this term tracks the point part of the OTDD ground cost far
    better than the Gaussians' ``W_2`` would. The second is the OTDD's label
    cost with the Bures fidelity replaced by its von Neumann bound
    ``tr (S^1/2 S' S^1/2)^1/2 <= sum_k sqrt(lambda_k mu_k)`` (eigenvalues in
    decreasing order), i.e. ``||m_i - m_j||^2 + ||sqrt(lambda) - sqrt(mu)||^2``:
    a squared Euclidean distance between cached vectors, so all class pairs
    of all sources come from one matrix product, with no eigendecomposition
    at ranking time. It is a ranking surrogate, not a bound.

    Parameters
    ----------
    target : DatasetSignature
    signatures : sequence of DatasetSignature
    max_points : int, optional
        The exact distance's ``max_points`` (it fixes the class weights).
    random_state : int, RandomState instance or None, default=0
        The exact distance's ``random_state`` (same reason); see
        :func:`dataset_distance`.

    Returns
    -------
    ndarray of shape (len(signatures),)
        Square roots of the surrogate costs.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skdarts.similarity import compute_signature
    >>> X, y = load_digits(return_X_y=True)
    >>> a = compute_signature(X[:900], y[:900], max_points=100)
    >>> b = compute_signature(X[900:], y[900:], max_points=100)
    >>> c = compute_signature(16 - X[900:], y[900:], max_points=100)
    >>> d = gaussian_otdd_distances(a, [b, c])
    >>> bool(d[0] < d[1])
    True
    """
    if not len(signatures):
        return np.zeros(0)
    seed = _seed(random_state)
    cache: dict[int, np.ndarray | None] = {}

    def weights(sig):
        n = len(sig.points)
        if n not in cache:
            cache[n] = _subsample_index(n, max_points, seed)
        return _class_weights(sig, cache[n])

    def features(sig):
        if getattr(sig, "class_spectra", None) is None:  # e.g. unpickled
            sig.class_spectra = _spectra(sig.class_covs)
        # sqrt(2) m: the mean enters both terms of the cost.
        return np.hstack(
            [np.sqrt(2.0) * np.asarray(sig.class_means, np.float64), sig.class_spectra]
        )

    ft, wt = features(target), weights(target)
    tr_t = wt @ np.square(ft[:, target.class_means.shape[1] :]).sum(1)
    # Classes absent from the subsample change nothing but cost POT a dual fix-up.
    ft, wt = ft[wt > 0], wt[wt > 0]
    sizes = [s.n_classes for s in signatures]
    bank = np.concatenate([features(s) for s in signatures])
    cost = ot.dist(ft, bank)
    tr_bank = np.square(bank[:, target.class_means.shape[1] :]).sum(1)
    out = np.empty(len(signatures))
    start = 0
    for i, (sig, k) in enumerate(zip(signatures, sizes)):
        ws = weights(sig)
        block = slice(start, start + k)
        start += k
        tr_s = ws @ tr_bank[block]
        present = ws > 0
        value = _small_emd2(wt, ws[present], cost[:, block][:, present])
        out[i] = value + tr_t + tr_s
    return np.sqrt(np.clip(out, 0.0, None))


@dataclass
class Ranking:
    """Result of :func:`rank_sources` (entries nearest first).

    Attributes
    ----------
    names : list of str
        Entry names: the short list by exact distance, then the others by
        the stage-1 distance.
    distances : ndarray
        Exact distance of each entry (NaN where only stage 1 ran).
    proxy_distances : ndarray
        Stage-1 distance of each entry (see :func:`rank_sources`).
    source_distances : dict
        ``{entry: {source: exact distance}}`` for the short list.
    """

    names: list
    distances: np.ndarray
    proxy_distances: np.ndarray
    source_distances: dict


def rank_sources(
    target: DatasetSignature,
    sources: Sequence[tuple[str, str, DatasetSignature]],
    method: str = "otdd",
    *,
    shortlist: int | None = 10,
    max_points: int | None = 200,
    random_state: int | np.random.RandomState | None = 0,
    verbose: int = 0,
    progress: bool | None = None,
) -> Ranking:
    """Rank entries holding one or more source signatures by distance to ``target``.

    Two stages: a cheap distance to every source at once, then ``method``
    exactly on the ``shortlist`` entries nearest by it. Stage 1 of "otdd" is
    its class-level Gaussian surrogate (:func:`gaussian_otdd_distances`,
    with the class weights of the very subsample stage 2 uses); that of
    "wasserstein" and "sliced" is the dataset-level Gaussian distance
    (:func:`gaussian_distances`, a lower bound of the feature-only
    Wasserstein distance). An entry's distance is the minimum over its
    sources: a supernet pretrained on several datasets has seen the nearest
    one's data, and that is what transfers. So such an entry ties with the
    entry of its nearest source alone; ties (in distance, then in stage-1
    distance) go to the entry with more sources, then to the first name in
    sorted order, whatever order ``sources`` lists them in.

    Parameters
    ----------
    target : DatasetSignature
    sources : sequence of (entry name, source name, DatasetSignature)
    method : {"otdd", "wasserstein", "sliced", "gaussian"}, default="otdd"
        Stage-2 distance; "gaussian" is stage 1 alone.
    shortlist : int or None, default=10
        Entries given stage 2 (all when None).
    max_points : int or None, default=200
        Points per dataset in stage 2.
    random_state : int, RandomState instance or None, default=0
        Seeds the subsamples of both stages (see :func:`dataset_distance`);
        a RandomState is drawn from once, so both stages use the same
        subsample.
    verbose : int, default=0
        > 0 shows a progress bar over stage 2.
    progress : bool, optional
        Deprecated alias of ``verbose``; gives a FutureWarning.

    Returns
    -------
    Ranking

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skdarts.similarity import compute_signature
    >>> X, y = load_digits(return_X_y=True)
    >>> t = compute_signature(X[:900], y[:900], max_points=100)
    >>> same = compute_signature(X[900:], y[900:], max_points=100)
    >>> flip = compute_signature(16 - X[900:], y[900:], max_points=100)
    >>> rank_sources(t, [("flip", "f", flip), ("same", "s", same)]).names
    ['same', 'flip']
    """
    from tqdm.auto import tqdm

    if progress is not None:
        warnings.warn(
            "rank_sources(progress=...) is deprecated; use verbose=1 (or 0) "
            "instead, as elsewhere in skdarts.",
            FutureWarning,
            stacklevel=2,
        )
        verbose = int(bool(progress))
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}; got {method!r}.")
    if not len(sources):
        raise ValueError("sources is empty: there is nothing to rank.")
    if shortlist is not None:
        shortlist = _check_int(shortlist, "shortlist", 1)
    # One seed for both stages: stage 1 weighs classes by stage 2's subsample.
    random_state = _seed(random_state)
    entry_names = list(dict.fromkeys(name for name, _, _ in sources))
    index = {name: i for i, name in enumerate(entry_names)}
    owner = np.array([index[name] for name, _, _ in sources])
    if method == "otdd":
        per_source = gaussian_otdd_distances(
            target,
            [sig for _, _, sig in sources],
            max_points=max_points,
            random_state=random_state,
        )
    else:
        per_source = gaussian_distances(
            target,
            np.stack([sig.mean for _, _, sig in sources]),
            np.stack([sig.cov for _, _, sig in sources]),
        )
    proxy = np.full(len(entry_names), np.inf)
    np.minimum.at(proxy, owner, per_source)
    # Ties (a multi-source entry is exactly as near as its nearest source's
    # own entry): more sources first, then by name, so the order never
    # depends on the zoo's listing order.
    n_sources = np.bincount(owner, minlength=len(entry_names))
    names_rank = np.argsort(np.argsort(np.array(entry_names, dtype=object)))
    order = np.lexsort((names_rank, -n_sources, proxy))
    if method == "gaussian":
        return Ranking([entry_names[i] for i in order], proxy[order], proxy[order], {})
    n_exact = len(order) if shortlist is None else min(shortlist, len(order))
    keep = set(order[:n_exact].tolist())
    exact = np.full(len(entry_names), np.inf)
    source_distances: dict = {}
    todo = [row for row in sources if index[row[0]] in keep]
    for name, src, sig in tqdm(
        todo, desc="exact distances", disable=not verbose, leave=False
    ):
        d = dataset_distance(
            target, sig, method, max_points=max_points, random_state=random_state
        )
        source_distances.setdefault(name, {})[src] = d
        exact[index[name]] = min(exact[index[name]], d)
    head = sorted(
        order[:n_exact].tolist(),
        key=lambda i: (exact[i], proxy[i], -n_sources[i], entry_names[i]),
    )
    ranked = np.array(head + order[n_exact:].tolist(), dtype=int)
    distances = exact[ranked]
    distances[n_exact:] = np.nan
    return Ranking(
        [entry_names[i] for i in ranked], distances, proxy[ranked], source_distances
    )
