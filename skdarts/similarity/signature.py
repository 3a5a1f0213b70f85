"""Dataset signatures: the embeddings and what a signature keeps.

The pixel embedding lives here, the learned one in
:mod:`skdarts.similarity.learned`; :data:`EMBEDDINGS` names both. See
:mod:`skdarts.similarity` for the embeddings and the signature's content.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils import check_random_state

from ..data import as_images, pixel_divisor, to_host
from .learned import SUPERNET_EMBEDDING, embed_images_supernet, grey_moments
from .learned import supernet_input as _supernet_input

#: The pixel feature map's constants; a signature records them and only
#: signatures with equal constants can be compared.
EMBEDDING: dict[str, Any] = {
    "name": "grey-resize-standardise-gaussian-projection",
    "size": 16,
    "n_components": 32,
    "seed": 0,
}

#: Every feature map by its public name, with its constants: ``"pixels"``
#: (:func:`embed_images`, fixed and data-free) and ``"supernet"``
#: (:func:`~skdarts.similarity.learned.embed_images_supernet`, the shipped
#: multi-dataset supernet's pooled features).
EMBEDDINGS: dict[str, dict[str, Any]] = {
    "pixels": EMBEDDING,
    "supernet": SUPERNET_EMBEDDING,
}

#: The embedding used where none is named (signatures, the zoo's pretraining,
#: :class:`~skdarts.OTSourceSelector`): the learned one, whose distances
#: predicted transfer better than the pixel one's on the measured transfer
#: matrix (``benchmarks/transfer_matrix.py``, 8 sources x 8 targets, 2 seeds:
#: Spearman's rho -0.30 vs -0.22 over all pairs, median per target -0.77 vs
#: -0.73; OT's pick within 1 point of the oracle's on 4/8 vs 2/8 targets).
DEFAULT_EMBEDDING = "supernet"

_FORMAT = "skdarts.dataset_signature"
_VERSION = 1
_RIDGE = 1e-4
_ARRAY_KEYS = (
    "points",
    "labels",
    "class_means",
    "class_covs",
    "class_counts",
    "mean",
    "cov",
)
# Derived arrays, stored for speed; a signature stored without them is still
# read (they are recomputed).
_OPTIONAL_KEYS = ("class_spectra",)


def _spectra(covs) -> np.ndarray:
    """Square roots of the eigenvalues of each covariance, decreasing, float32."""
    ev = np.linalg.eigvalsh(np.asarray(covs, dtype=np.float64))[..., ::-1]
    return np.ascontiguousarray(np.sqrt(np.clip(ev, 0.0, None)), dtype=np.float32)


def _projection(size: int, n_components: int, seed: int) -> np.ndarray:
    """The fixed ``(size**2, n_components)`` Gaussian projection, entries N(0, 1/d)."""
    rng = np.random.RandomState(seed)
    return rng.standard_normal((size * size, n_components)) / np.sqrt(n_components)


def embed_images(
    images: np.ndarray,
    *,
    size: int = EMBEDDING["size"],
    n_components: int = EMBEDDING["n_components"],
    seed: int = EMBEDDING["seed"],
) -> np.ndarray:
    """Embed images ``(n, c, h, w)`` with the fixed, dataset-independent map.

    Grey, resized to ``size x size``, standardised per image, divided by
    ``size`` (unit norm) and projected with a fixed Gaussian matrix: embedded
    points have squared norm close to 1 (Johnson-Lindenstrauss, see the module
    notes).

    Parameters
    ----------
    images : ndarray of shape (n, c, h, w)
        As returned by :func:`skdarts.data.as_images`.
    size, n_components, seed : int
        The feature map's constants (defaults: :data:`EMBEDDING`).

    Returns
    -------
    ndarray of float64, shape (n, n_components)

    Examples
    --------
    >>> rng = np.random.RandomState(0)
    >>> Z = embed_images(rng.rand(5, 1, 28, 28).astype(np.float32))
    >>> Z.shape
    (5, 32)
    >>> bool(np.allclose(embed_images(3 * rng.rand(2, 3, 8, 8)).shape, (2, 32)))
    True
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(
            f"images must have shape (n, c, h, w); got shape {images.shape}."
        )
    grey = torch.from_numpy(
        np.ascontiguousarray(images.mean(axis=1, keepdims=True), dtype=np.float32)
    )
    resized = F.interpolate(
        grey, size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )
    flat = resized.reshape(len(images), -1).numpy().astype(np.float64)
    flat -= flat.mean(axis=1, keepdims=True)
    std = flat.std(axis=1, keepdims=True)
    # A constant image carries no shape information: it maps to the origin.
    flat /= np.where(std > 1e-8, std, np.inf) * size
    return flat @ _projection(size, n_components, seed)


@dataclass
class DatasetSignature:
    """Compact summary of a labelled dataset in a fixed feature space.

    Build one with :func:`compute_signature`; store it with :meth:`to_arrays`
    and :meth:`to_meta`, read it back with :meth:`from_arrays`.

    Attributes
    ----------
    points : ndarray of shape (m, d)
        Uniform random subsample of the embedded images.
    labels : ndarray of int64, shape (m,)
        Class index (row of ``class_means``) of each point.
    class_means : ndarray of shape (k, d)
    class_covs : ndarray of shape (k, d, d)
        Full covariances (with a small ridge).
    class_counts : ndarray of int64, shape (k,)
        Images per class in the whole dataset.
    mean : ndarray of shape (d,)
    cov : ndarray of shape (d, d)
        Moments of the whole embedded dataset.
    n_samples : int
    labelled : bool
        False when computed without ``y`` (one class).
    embedding : dict
        The feature map's constants (a value of :data:`EMBEDDINGS`; by
        default the pixel map's, :data:`EMBEDDING`).
    class_spectra : ndarray of shape (k, d)
        Square roots of each class covariance's eigenvalues, in decreasing
        order: cached (and stored) so that ranking a zoo needs no
        eigendecomposition of its matrices (:func:`gaussian_otdd_distances`);
        computed from ``class_covs`` when not given.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> sig = compute_signature(X, y, max_points=200)
    >>> sig.points.shape, sig.class_covs.shape
    ((200, 32), (10, 32, 32))
    >>> again = DatasetSignature.from_arrays(sig.to_arrays(), sig.to_meta())
    >>> bool(np.array_equal(again.points, sig.points))
    True
    """

    points: np.ndarray
    labels: np.ndarray
    class_means: np.ndarray
    class_covs: np.ndarray
    class_counts: np.ndarray
    mean: np.ndarray
    cov: np.ndarray
    n_samples: int
    labelled: bool = True
    embedding: dict = field(default_factory=lambda: dict(EMBEDDING))
    class_spectra: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.class_spectra is None:
            self.class_spectra = _spectra(self.class_covs)

    @property
    def n_classes(self) -> int:
        """Number of classes (1 when unlabelled)."""
        return len(self.class_counts)

    @property
    def nbytes(self) -> int:
        """Bytes taken by the stored arrays."""
        return sum(a.nbytes for a in self.to_arrays().values())

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays to store (float32 / int64, contiguous; safetensors-ready)."""
        out = {}
        for key in _ARRAY_KEYS + _OPTIONAL_KEYS:
            value = getattr(self, key)
            dtype = np.int64 if key in ("labels", "class_counts") else np.float32
            out[key] = np.ascontiguousarray(value, dtype=dtype)
        return out

    def to_meta(self) -> dict:
        """JSON-ready metadata (format, version, feature map, sizes)."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "embedding": dict(self.embedding),
            "n_samples": int(self.n_samples),
            "n_classes": int(self.n_classes),
            "labelled": bool(self.labelled),
        }

    @classmethod
    def from_arrays(cls, arrays: dict, meta: dict) -> DatasetSignature:
        """Rebuild a signature from :meth:`to_arrays` / :meth:`to_meta` output.

        Raises ValueError naming what is missing or inconsistent.
        """
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise ValueError(
                f"meta is not a dataset signature's metadata (expected format "
                f"{_FORMAT!r}); got {meta!r:.200}."
            )
        if meta.get("version") != _VERSION:
            raise ValueError(
                f"dataset signature version {meta.get('version')!r} is not supported "
                f"(this skdarts reads version {_VERSION}); recompute the signature."
            )
        missing = [k for k in _ARRAY_KEYS if k not in arrays]
        if missing:
            raise ValueError(
                f"arrays lack {missing} for a dataset signature; expected the keys "
                f"{list(_ARRAY_KEYS)}."
            )
        a = {k: np.asarray(arrays[k]) for k in _ARRAY_KEYS}
        d = a["mean"].shape[0] if a["mean"].ndim == 1 else -1
        k = len(a["class_counts"])
        expected = {
            "points": (len(a["points"]), d),
            "labels": (len(a["points"]),),
            "class_means": (k, d),
            "class_covs": (k, d, d),
            "class_counts": (k,),
            "mean": (d,),
            "cov": (d, d),
        }
        if "class_spectra" in arrays:
            a["class_spectra"] = np.asarray(arrays["class_spectra"])
            expected["class_spectra"] = (k, d)
        for key, shape in expected.items():
            if a[key].shape != shape:
                raise ValueError(
                    f"dataset signature array {key!r} has shape {a[key].shape}; "
                    f"expected {shape}."
                )
        for key in expected:
            if not np.issubdtype(a[key].dtype, np.number):
                raise ValueError(
                    f"dataset signature array {key!r} must be numeric; got dtype "
                    f"{a[key].dtype}."
                )
            if not np.isfinite(a[key]).all():
                # NaN would surface deep in the distances as a LinAlgError.
                raise ValueError(
                    f"dataset signature array {key!r} holds NaN or infinite values."
                )
        labels = a["labels"].astype(np.int64)
        if len(labels) and (labels.min() < 0 or labels.max() >= k):
            raise ValueError(
                f"dataset signature labels must lie in [0, {k - 1}]; got values in "
                f"[{labels.min()}, {labels.max()}]."
            )
        # Kept as stored (float32, possibly memory-mapped): distances cast what
        # they use, so ranking a large zoo reads little more than the moments.
        return cls(
            points=a["points"],
            labels=labels,
            class_means=a["class_means"],
            class_covs=a["class_covs"],
            class_counts=a["class_counts"].astype(np.int64),
            mean=a["mean"],
            cov=a["cov"],
            n_samples=int(meta.get("n_samples", int(a["class_counts"].sum()))),
            labelled=bool(meta.get("labelled", True)),
            embedding=dict(meta.get("embedding", {})),
            class_spectra=a.get("class_spectra"),
        )


def _check_int(value, name: str, low: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int >= {low}; got {value!r}.")
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}; got {value}.")
    return int(value)


def _seed(random_state) -> int:
    """An int seed from ``random_state`` (int, RandomState or None).

    An int is used as given, so results for a given int do not change; a
    RandomState (or None: NumPy's global one) draws the seed.
    """
    if isinstance(random_state, numbers.Integral) and not isinstance(
        random_state, bool
    ):
        return _check_int(random_state, "random_state", 0)
    if random_state is not None and not isinstance(random_state, np.random.RandomState):
        raise TypeError(
            "random_state must be an int >= 0, a numpy RandomState or None; got "
            f"{random_state!r}."
        )
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def check_embedding(embedding) -> str:
    """Return ``embedding`` if it names a feature map of :data:`EMBEDDINGS`.

    Raises ValueError naming the value given and the names accepted.

    Examples
    --------
    >>> check_embedding("supernet")
    'supernet'
    >>> check_embedding("resnet")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: embedding must be one of ['pixels', 'supernet']; got 'resnet'.
    """
    if not isinstance(embedding, str) or embedding not in EMBEDDINGS:
        raise ValueError(
            f"embedding must be one of {sorted(EMBEDDINGS)}; got {embedding!r}."
        )
    return embedding


def compute_signature(
    X,
    y=None,
    *,
    max_points: int = 1000,
    image_shape: Sequence[int] | None = None,
    random_state: int | np.random.RandomState | None = 0,
    chunk_size: int = 4096,
    embedding: str = DEFAULT_EMBEDDING,
) -> DatasetSignature:
    """Signature of the dataset ``(X, y)``: embedded class moments and points.

    The moments use every image (streamed in chunks of ``chunk_size`` so memory
    stays bounded); the stored points are a uniform random subsample.

    Parameters
    ----------
    X : array-like of images
        Any layout :func:`skdarts.data.as_images` accepts.
    y : array-like of shape (n,), optional
        Class labels of any type; without them the dataset is one class.
    max_points : int, default=1000
        Points kept (at most).
    image_shape : tuple of int, optional
        How to reshape flat rows ``(n, features)`` into images: ``(h, w)`` or
        ``(c, h, w)`` (as in :func:`skdarts.data.as_images`). It never
        resamples; the embedding resizes every image to its own fixed size.
    random_state : int, RandomState or None, default=0
        Seeds the subsample (the feature map itself is fixed).
    chunk_size : int, default=4096
    embedding : {"pixels", "supernet"}, default="supernet"
        The feature map (:data:`EMBEDDINGS`): ``"pixels"``, the fixed
        projection of raw pixels (:func:`embed_images`), or ``"supernet"``,
        the pooled features of the shipped multi-dataset supernet
        (:func:`~skdarts.similarity.embed_images_supernet`; its pixel divisor
        and pixel moments are those of the whole of ``X``, computed in a
        first pass). Signatures of different embeddings cannot be compared.

    Returns
    -------
    DatasetSignature

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> sig = compute_signature(X, y, max_points=100)
    >>> sig.n_classes, sig.n_samples, sig.nbytes < 100_000
    (10, 1797, True)
    >>> learned = compute_signature(X[:200], y[:200], embedding="supernet")
    >>> learned.embedding["name"], learned.points.shape
    ('supernet-multi-body-pooled-projection', (200, 32))
    """

    max_points = _check_int(max_points, "max_points", 1)
    chunk_size = _check_int(chunk_size, "chunk_size", 1)
    constants = EMBEDDINGS[check_embedding(embedding)]
    X = to_host(X)
    if isinstance(X, (str, bytes)):
        raise TypeError(f"X must be an array of images; got the string {X!r}.")
    X = np.asarray(X)
    if X.ndim == 0 or len(X) == 0:
        raise ValueError(f"X must hold at least 1 image; got shape {X.shape}.")
    n = len(X)
    labelled = y is not None
    if labelled:
        y = np.asarray(to_host(y))
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        if y.ndim != 1 or len(y) != n:
            raise ValueError(
                f"y must be 1-d with one label per image ({n}); got shape {y.shape}."
            )
        _, codes = np.unique(y, return_inverse=True)
        codes = codes.ravel().astype(np.int64)
    else:
        codes = np.zeros(n, dtype=np.int64)
    k = int(codes.max()) + 1
    rng = check_random_state(random_state)
    keep = np.sort(rng.choice(n, size=min(n, max_points), replace=False))
    embed = _chunk_embedder(X, embedding, image_shape, chunk_size)

    d = constants["n_components"]
    sums = np.zeros((k, d))
    outer = np.zeros((k, d, d))
    counts = np.bincount(codes, minlength=k).astype(np.int64)
    points = np.empty((len(keep), d))
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        Z = embed(start, stop)
        c = codes[start:stop]
        np.add.at(sums, c, Z)
        for cls in np.unique(c):
            Zc = Z[c == cls]
            outer[cls] += Zc.T @ Zc
        sel = keep[(keep >= start) & (keep < stop)]
        points[np.searchsorted(keep, sel)] = Z[sel - start]
    means = sums / counts[:, None]
    covs = outer / counts[:, None, None] - means[:, :, None] * means[:, None, :]
    total = counts.sum()
    mean = (counts[:, None] * means).sum(0) / total
    cov = outer.sum(0) / total - np.outer(mean, mean)
    ridge = _RIDGE * np.eye(d)
    sig = DatasetSignature(
        points=points,
        labels=codes[keep],
        class_means=means,
        class_covs=_symmetrise(covs) + ridge,
        class_counts=counts,
        mean=mean,
        cov=_symmetrise(cov) + ridge,
        n_samples=n,
        labelled=labelled,
        embedding=dict(constants),
    )
    # Round to the stored precision so that a signature measures the same
    # before and after a trip through the zoo.
    return DatasetSignature.from_arrays(sig.to_arrays(), sig.to_meta())


def _chunk_embedder(X: np.ndarray, embedding: str, image_shape, chunk_size: int):
    """``embed(start, stop)``: the embedded images ``X[start:stop]``.

    The pixel map embeds each image alone. The supernet map scales the whole
    of ``X`` by one divisor (as the estimator's ``input_scale_``) and
    standardises it with the moments of all its grey pixels, gathered here in
    a first pass over the chunks (memory stays bounded).
    """
    if embedding == "pixels":
        return lambda start, stop: embed_images(
            as_images(X[start:stop], image_shape=image_shape)
        )
    divisor = pixel_divisor(X)

    def grey(start, stop):
        images = as_images(X[start:stop], image_shape=image_shape, scale=divisor)
        return _supernet_input(images)

    total = total_sq = 0.0
    count = 0
    for start in range(0, len(X), chunk_size):
        g = grey(start, min(start + chunk_size, len(X)))
        total += float(g.sum(dtype=np.float64))
        total_sq += float(np.square(g, dtype=np.float64).sum())
        count += g.size
    if len(X) <= chunk_size:
        # One chunk: the estimator's own numbers, and no second resize.
        stats = grey_moments(g)
        return lambda start, stop: embed_images_supernet(g[start:stop], stats=stats)
    mean = total / count
    std = float(np.sqrt(max(total_sq / count - mean * mean, 0.0)))
    stats = (mean, std if std > 1e-8 else 1.0)
    return lambda start, stop: embed_images_supernet(grey(start, stop), stats=stats)


def _symmetrise(c: np.ndarray) -> np.ndarray:
    return 0.5 * (c + np.swapaxes(c, -1, -2))


def signature_fn(
    X, y=None, *, embedding: str | Sequence[str] = DEFAULT_EMBEDDING
) -> tuple[dict[str, np.ndarray], dict] | list[tuple[dict[str, np.ndarray], dict]]:
    """``(arrays, meta)`` of :func:`compute_signature` with its defaults.

    The callable the zoo's pretraining takes (``signature_fn=``) to store each
    source's signature; :func:`make_signature_fn` gives one for another
    embedding.

    Parameters
    ----------
    X, y
        As in :func:`compute_signature`.
    embedding : str or sequence of str, default="supernet"
        A name of :data:`EMBEDDINGS`; a sequence of names gives a list of
        pairs, one per embedding (the zoo stores them all).

    Returns
    -------
    (arrays, meta) or list of (arrays, meta)

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> arrays, meta = signature_fn(X[:100], y[:100])
    >>> sorted(arrays)[:3], meta["n_samples"]
    (['class_counts', 'class_covs', 'class_means'], 100)
    >>> both = signature_fn(X[:100], y[:100], embedding=["pixels", "supernet"])
    >>> [meta["embedding"]["name"] for _, meta in both]
    ['grey-resize-standardise-gaussian-projection', \
'supernet-multi-body-pooled-projection']
    """
    if not isinstance(embedding, str) and isinstance(embedding, Sequence):
        names = [check_embedding(e) for e in embedding]
        if not names:
            raise ValueError("embedding must name at least one embedding; got [].")
        return [signature_fn(X, y, embedding=e) for e in names]
    sig = compute_signature(X, y, embedding=check_embedding(embedding))
    return sig.to_arrays(), sig.to_meta()


def make_signature_fn(embedding: str | Sequence[str] = DEFAULT_EMBEDDING):
    """:func:`signature_fn` for ``embedding``, as the zoo's ``signature_fn=``.

    A :func:`functools.partial` (picklable, so pretraining in worker
    processes can use it).

    Parameters
    ----------
    embedding : str or sequence of str, default="supernet"
        Names of :data:`EMBEDDINGS`; several store one signature per
        embedding for each source.

    Returns
    -------
    callable ``(X, y) -> (arrays, meta)`` (a list of them for several)

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> fn = make_signature_fn("supernet")
    >>> arrays, meta = fn(X[:50], y[:50])
    >>> meta["embedding"]["name"]
    'supernet-multi-body-pooled-projection'
    >>> make_signature_fn("resnet")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: embedding must be one of ['pixels', 'supernet']; got 'resnet'.
    """
    if isinstance(embedding, str) or not isinstance(embedding, Sequence):
        check_embedding(embedding)
    else:
        embedding = [check_embedding(e) for e in embedding]
        if not embedding:
            raise ValueError("embedding must name at least one embedding; got [].")
    return functools.partial(signature_fn, embedding=embedding)


# -- distances ---------------------------------------------------------------


def _as_signature(sig, name: str) -> DatasetSignature:
    if isinstance(sig, DatasetSignature):
        return sig
    if isinstance(sig, tuple) and len(sig) == 2:
        return DatasetSignature.from_arrays(*sig)
    raise TypeError(
        f"{name} must be a DatasetSignature or an (arrays, meta) pair; got "
        f"{type(sig).__name__}."
    )


def _check_compatible(a: DatasetSignature, b: DatasetSignature) -> None:
    if a.embedding != b.embedding:
        raise ValueError(
            "the two signatures were computed with different feature maps "
            f"({a.embedding} vs {b.embedding}); recompute one of them."
        )


def _subsample(sig: DatasetSignature, max_points: int | None, seed: int):
    """Points and labels, at most ``max_points`` of them (fixed by ``seed``)."""
    if max_points is None or len(sig.points) <= max_points:
        return np.asarray(sig.points, dtype=np.float64), sig.labels
    idx = np.sort(
        np.random.RandomState(seed).choice(len(sig.points), max_points, replace=False)
    )
    return np.asarray(sig.points[idx], dtype=np.float64), sig.labels[idx]
