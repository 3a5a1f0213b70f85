"""Optimal-transport distances between two datasets given their signatures."""

from __future__ import annotations

import numbers

import numpy as np
import ot

from .signature import (
    DatasetSignature,
    _as_signature,
    _check_compatible,
    _check_int,
    _seed,
    _subsample,
)

#: Methods accepted by :func:`dataset_distance`.
METHODS = ("otdd", "wasserstein", "sliced", "gaussian")


def bures_wasserstein_squared(
    m1: np.ndarray, C1: np.ndarray, m2: np.ndarray, C2: np.ndarray
) -> np.ndarray:
    """Squared Bures-Wasserstein distances between two batches of Gaussians.

    ``W_2^2(N(m, S), N(m', S')) = ||m - m'||^2 + tr S + tr S'
    - 2 tr (S^{1/2} S' S^{1/2})^{1/2}`` (Peyre & Cuturi 2019, Remark 2.31),
    the quantity of :func:`ot.gaussian.bures_wasserstein_distance` (squared),
    to which it is tested equal. POT computes every pair with a full
    eigendecomposition and an unoptimised three-operand ``einsum``; this uses
    that the eigenvalues of ``S^{1/2} S' S^{1/2}`` are those of ``L^T S' L``
    with ``S = L L^T`` (Cholesky), so one batched ``eigvalsh`` does all pairs
    (timings of both: the documentation's benchmarks page).

    Parameters
    ----------
    m1 : ndarray of shape (n1, d)
    C1 : ndarray of shape (n1, d, d), positive definite
    m2 : ndarray of shape (n2, d)
    C2 : ndarray of shape (n2, d, d), positive semi-definite

    Returns
    -------
    ndarray of shape (n1, n2)

    Examples
    --------
    >>> I = np.eye(2)[None]
    >>> bures_wasserstein_squared(np.zeros((1, 2)), I, np.ones((1, 2)), 4 * I)
    array([[4.]])
    """
    m1, C1, m2, C2 = (np.asarray(v, dtype=np.float64) for v in (m1, C1, m2, C2))
    L = np.linalg.cholesky(C1)
    # L^T C2 L for every pair, as a (n1, n2, d, d) stack.
    inner = np.matmul(np.swapaxes(L, -1, -2)[:, None], np.matmul(C2[None], L[:, None]))
    ev = np.linalg.eigvalsh(0.5 * (inner + np.swapaxes(inner, -1, -2)))
    cross = np.sqrt(np.clip(ev, 0.0, None)).sum(-1)
    tr1 = np.trace(C1, axis1=-2, axis2=-1)
    tr2 = np.trace(C2, axis1=-2, axis2=-1)
    means = ot.dist(m1, m2)
    return np.clip(means + tr1[:, None] + tr2[None] - 2.0 * cross, 0.0, None)


def class_costs(a: DatasetSignature, b: DatasetSignature) -> np.ndarray:
    """Squared Bures-Wasserstein distances between all class Gaussians.

    Returns
    -------
    ndarray of shape (a.n_classes, b.n_classes)
    """
    return bures_wasserstein_squared(
        a.class_means, a.class_covs, b.class_means, b.class_covs
    )


def _ot_value(M: np.ndarray, solver: str, reg: float) -> float:
    """Optimal cost between uniform weights for the cost matrix ``M``."""
    a = np.full(M.shape[0], 1.0 / M.shape[0])
    b = np.full(M.shape[1], 1.0 / M.shape[1])
    if solver == "exact":
        return float(ot.emd2(a, b, M, numItermax=1_000_000))
    return float(ot.sinkhorn2(a, b, M, reg))


def _otdd_cost(pa, la, pb, lb, W) -> np.ndarray:
    """OTDD ground cost ``||x - x'||^2 + W_2^2(N_y, N_y')`` (Alvarez-Melis 2020)."""
    M = ot.dist(pa, pb)
    if W is not None:
        M = M + W[np.ix_(la, lb)]
    return M


def _ot_distance(a, b, labels: bool, solver, reg, debias, max_points, seed):
    """(Debiased) OT between two signatures' points, label-aware when ``labels``."""
    pa, la = _subsample(a, max_points, seed)
    pb, lb = _subsample(b, max_points, seed)
    value = _ot_value(
        _otdd_cost(pa, la, pb, lb, class_costs(a, b) if labels else None), solver, reg
    )
    # Exact OT of a point cloud with itself is 0 (identity plan, zero diagonal):
    # only the entropic solver has a bias to remove (Feydy et al. 2019).
    if debias and solver == "sinkhorn":
        for p, lab, s in ((pa, la, a), (pb, lb, b)):
            W = class_costs(s, s) if labels else None
            value -= 0.5 * _ot_value(_otdd_cost(p, lab, p, lab, W), solver, reg)
    return float(np.sqrt(max(value, 0.0)))


def dataset_distance(
    a,
    b,
    method: str = "otdd",
    *,
    solver: str = "exact",
    reg: float = 0.1,
    debias: bool = True,
    max_points: int | None = None,
    n_projections: int = 200,
    random_state: int | np.random.RandomState | None = 0,
) -> float:
    """Distance between two datasets given only their signatures.

    Parameters
    ----------
    a, b : DatasetSignature or (arrays, meta)
    method : {"otdd", "wasserstein", "sliced", "gaussian"}, default="otdd"
        See the module notes.
    solver : {"exact", "sinkhorn"}, default="exact"
        Outer OT problem of "otdd" and "wasserstein": :func:`ot.emd2` or
        :func:`ot.sinkhorn2` with regularisation ``reg``.
    reg : float, default=0.1
        Entropic regularisation (Sinkhorn only), in units of the squared
        cost (embedded points have squared norm ~1).
    debias : bool, default=True
        Subtract half of each self-transport cost (Sinkhorn divergence);
        exact OT needs none (its self-cost is 0).
    max_points : int, optional
        Points per side used by "otdd", "wasserstein" and "sliced" (a fixed
        random subsample of the stored ones); all when None.
    n_projections : int, default=200
        Directions of "sliced".
    random_state : int, RandomState instance or None, default=0
        Seeds the subsamples and the sliced projections. An int gives the
        same result every call; a RandomState (or None, NumPy's global one)
        draws the seed from it.

    Returns
    -------
    float
        A distance in the embedding's units: the square root of the
        (debiased) optimal squared-cost transport, clipped at 0. Symmetric.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skdarts.similarity import compute_signature
    >>> X, y = load_digits(return_X_y=True)
    >>> a = compute_signature(X[::2], y[::2], max_points=300)
    >>> b = compute_signature(X[1::2], y[1::2], max_points=300)
    >>> c = compute_signature(X[1::2].max() - X[1::2], y[1::2], max_points=300)
    >>> round(dataset_distance(a, a), 6)
    0.0
    >>> bool(dataset_distance(a, b) < dataset_distance(a, c))
    True
    >>> bool(abs(dataset_distance(a, b) - dataset_distance(b, a)) < 1e-8)
    True
    """
    a = _as_signature(a, "a")
    b = _as_signature(b, "b")
    _check_compatible(a, b)
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}; got {method!r}.")
    if solver not in ("exact", "sinkhorn"):
        raise ValueError(f"solver must be 'exact' or 'sinkhorn'; got {solver!r}.")
    if not isinstance(reg, numbers.Real) or not reg > 0:
        raise ValueError(f"reg must be a float > 0; got {reg!r}.")
    if max_points is not None:
        max_points = _check_int(max_points, "max_points", 1)
    n_projections = _check_int(n_projections, "n_projections", 1)
    seed = _seed(random_state)
    if method == "gaussian":
        w2 = bures_wasserstein_squared(
            a.mean[None], a.cov[None], b.mean[None], b.cov[None]
        )
        return float(np.sqrt(w2[0, 0]))
    if method == "sliced":
        pa, _ = _subsample(a, max_points, seed)
        pb, _ = _subsample(b, max_points, seed)
        return float(
            ot.sliced_wasserstein_distance(
                pa, pb, n_projections=n_projections, seed=seed
            )
        )
    return _ot_distance(a, b, method == "otdd", solver, reg, debias, max_points, seed)


def gaussian_distances(
    target: DatasetSignature, means: np.ndarray, covs: np.ndarray
) -> np.ndarray:
    """Bures-Wasserstein distances from one dataset's Gaussian to many at once.

    Vectorised over the sources (one batched ``eigvalsh``, see
    :func:`bures_wasserstein_squared`); the cheap first stage of ranking a
    zoo. A lower bound of ``"wasserstein"`` (Gelbrich 1990) for the moments
    of the points compared.

    Parameters
    ----------
    target : DatasetSignature
    means : ndarray of shape (n_sources, d)
    covs : ndarray of shape (n_sources, d, d)

    Returns
    -------
    ndarray of shape (n_sources,)

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skdarts.similarity import compute_signature
    >>> X, y = load_digits(return_X_y=True)
    >>> s = compute_signature(X, y, max_points=50)
    >>> gaussian_distances(s, s.mean[None], s.cov[None]).round(6)
    array([0.])
    """
    means = np.asarray(means, dtype=np.float64)
    covs = np.asarray(covs, dtype=np.float64)
    if means.ndim != 2 or covs.shape != (*means.shape, means.shape[1]):
        raise ValueError(
            "means must have shape (n, d) and covs (n, d, d); got "
            f"{means.shape} and {covs.shape}."
        )
    return np.sqrt(
        bures_wasserstein_squared(target.mean[None], target.cov[None], means, covs)[0]
    )
