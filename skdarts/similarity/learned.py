"""The learned embedding: pooled features of the shipped multi-dataset supernet.

:func:`embed_images_supernet` maps images to ``R^32`` through a fixed,
shipped network, the body (stem and cells, no head) of the zoo entry
``SupernetZoo.default()["multi"]``, a supernet trained on six grey tasks
(digits, clothing, letters and derived tasks) at 16 x 16. Where the pixel
embedding sees pixel statistics, this one sees what that supernet learned.
The map and its constants (:data:`SUPERNET_EMBEDDING`):

1. **Input, as the estimator feeds a warm-started search.** Pixels divided by
   the divisor the scaling rule decides once for the whole array
   (:func:`skdarts.data.pixel_divisor`, the estimator's ``input_scale_``:
   8-bit / 255, 16-bit / 65535, floats as given), channels averaged to grey,
   resized to the entry's recorded ``16 x 16`` (bilinear, antialiased:
   :func:`skdarts.data.resize_images`, the estimator's rule for a prior's
   recorded size), then standardised with the mean and standard deviation
   of the dataset's grey pixels, as :class:`~skdarts.SupernetSearchClassifier`
   standardises a target and as the supernet's pretraining standardised each
   source. The network thus sees a dataset exactly as a search warm-started
   from it would at its first step; the price is that an image's features
   depend on its dataset's two pixel moments (a whole dataset is embedded,
   never an image alone: :func:`~skdarts.similarity.compute_signature`
   computes them over all its images first).
2. **Features.** The body in evaluation mode under ``torch.no_grad()``
   (batch norms with their running statistics, every edge the
   softmax-weighted sum of its operations with the alphas as stored), then
   the global average pool of the last cell: 128 numbers per image.
3. **A fixed linear map to d = 32**: ``z = f R / s`` with ``R`` a Gaussian
   matrix ``(128, 32)``, entries ``N(0, 1/d)``, from
   ``numpy.random.RandomState(seed)`` (a stream frozen by NumPy's
   compatibility policy, NEP 19), and ``s`` = 8.61, the root-mean-square
   norm of the pooled features of the six tasks the supernet was trained on
   (1,000 images each), so that typical embedded points have norm about 1,
   as with the pixel embedding (the OT solvers' regularisation and the
   selector's defaults assume that scale).

Why a scaled random projection and not a per-feature standardisation or a
PCA: the features come out of batch norms without affine parameters, so
their channels already have comparable scales (standard deviations 0.3 to
1.3 on the training tasks) and the Euclidean geometry of the pooled
features is the one the network's linear head works in; a random
projection keeps all pairwise squared distances up to a factor
``1 +/- eps`` (Johnson-Lindenstrauss) without fitting anything to any
dataset, and a single scalar keeps it that way (a per-feature
standardisation or a PCA would reweight the features by statistics of
chosen data, and would have to be shipped). Centring is left out: every
distance used is invariant to a common shift. d stays 32 so that ranking a
zoo costs what it costs with the pixel embedding.

Identity. :data:`SUPERNET_EMBEDDING` records the sha256 of the weights file
it is defined by, and the network is refused when the shipped file has
another: a signature computed with another network never carries these
constants, so it is never compared with one that does. The weights are read
from the package's data folder by their digest, not through the zoo (which
sits above this layer); rebuilding the shipped ``multi`` entry therefore
means a new version of this embedding (update the digest and the version)
and recomputing its stored signatures
(``python scripts/build_default_zoo.py --signatures-only --embedding supernet``).

The network is loaded once per process (under a lock; concurrent threads
then share it: in evaluation mode a forward pass writes nothing but caches
of constant index tables, built whole before they are stored) and run in
batches, with whatever torch thread settings the caller has.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._files import read_regular_file, sha256_bytes
from ..data import resize_images

#: The learned feature map's constants; a signature records them, and only
#: signatures with equal constants can be compared.
SUPERNET_EMBEDDING: dict[str, Any] = {
    "name": "supernet-multi-body-pooled-projection",
    "version": 1,
    "network": "skdarts zoo_data/multi (SupernetZoo.default()['multi'])",
    "weights_sha256": (
        "735c60ca3bee47e0949773fcd4b1b5dda2625c70a22a65a42f6d2f6acdf174ce"
    ),
    "size": 16,
    "n_features": 128,
    "feature_scale": 8.61,
    "n_components": 32,
    "seed": 0,
}

#: The shipped network's configuration (its weights are pinned by digest).
_CONFIG = {
    "search_space": "darts",
    "in_channels": 1,
    "n_classes": 79,
    "init_channels": 8,
    "n_cells": 5,
    "n_nodes": 4,
    "stem_multiplier": 3,
}
_WEIGHTS = Path(__file__).resolve().parents[1] / "zoo_data" / "multi"
_WEIGHTS_FILE = "weights.safetensors"
_LOCK = threading.Lock()
_CACHE: dict[str, Any] = {}
#: Images per forward pass: about 130 MB of activations at most (measured;
#: 256 takes about 370 MB and is no faster on one CPU thread).
BATCH_SIZE = 64


def _network():
    """The shipped supernet, loaded once per process and verified by digest."""
    net = _CACHE.get("network")
    if net is not None:
        return net
    with _LOCK:
        if "network" in _CACHE:
            return _CACHE["network"]
        from safetensors.torch import load as load_tensors

        from ..supernet import Supernet

        try:
            data = read_regular_file(_WEIGHTS, _WEIGHTS_FILE)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"the 'supernet' embedding needs the shipped multi-dataset supernet "
                f"({_WEIGHTS / _WEIGHTS_FILE}), which is missing from this "
                "installation; reinstall skdarts or use embedding='pixels'."
            ) from None
        digest = sha256_bytes(data)
        if digest != SUPERNET_EMBEDDING["weights_sha256"]:
            raise ValueError(
                f"the shipped multi-dataset supernet ({_WEIGHTS / _WEIGHTS_FILE}) has "
                f"sha256 {digest}, but the 'supernet' embedding is defined by the "
                f"weights of sha256 {SUPERNET_EMBEDDING['weights_sha256']}. If the "
                "shipped zoo was rebuilt, give SUPERNET_EMBEDDING the new digest "
                "and a new version, and recompute the stored 'supernet' "
                "signatures (python scripts/build_default_zoo.py --signatures-only "
                "--embedding supernet)."
            )
        net = Supernet(**_CONFIG)
        net.load_state_dict(load_tensors(data), strict=True)
        net.eval().requires_grad_(False)
        rng = np.random.RandomState(SUPERNET_EMBEDDING["seed"])
        d = SUPERNET_EMBEDDING["n_components"]
        projection = rng.standard_normal((SUPERNET_EMBEDDING["n_features"], d))
        _CACHE["projection"] = projection / (
            np.sqrt(d) * SUPERNET_EMBEDDING["feature_scale"]
        )
        _CACHE["network"] = net
        return net


def supernet_input(images: np.ndarray) -> np.ndarray:
    """Grey ``(n, 1, 16, 16)`` float32 images: the network's input before
    standardisation (channel mean, antialiased bilinear resize).

    Examples
    --------
    >>> supernet_input(np.ones((2, 3, 28, 28))).shape
    (2, 1, 16, 16)
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(
            f"images must have shape (n, c, h, w); got shape {images.shape}."
        )
    grey = np.ascontiguousarray(images.mean(axis=1, keepdims=True), dtype=np.float32)
    size = SUPERNET_EMBEDDING["size"]
    return np.ascontiguousarray(resize_images(grey, (size, size)), dtype=np.float32)


def grey_moments(grey: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the pixels of ``grey`` (the estimator's
    :func:`skdarts.data.channel_stats` rule: a constant input gets 1).

    Examples
    --------
    >>> grey_moments(np.array([0.0, 1.0])), grey_moments(np.zeros(3))
    ((0.5, 0.5), (0.0, 1.0))
    """
    mean = float(grey.mean(dtype=np.float64))
    std = float(grey.std(dtype=np.float64))
    return mean, (std if std > 1e-8 else 1.0)


def embed_images_supernet(
    images: np.ndarray,
    *,
    stats: tuple[float, float] | None = None,
    batch_size: int = BATCH_SIZE,
) -> np.ndarray:
    """Embed images ``(n, c, h, w)`` with the shipped supernet's body.

    See the module notes for the map. ``images`` are scaled pixels (as
    returned by :func:`skdarts.data.as_images`, with the divisor decided for
    their whole dataset).

    Parameters
    ----------
    images : ndarray of shape (n, c, h, w)
    stats : (float, float), optional
        Mean and standard deviation of the dataset's grey 16 x 16 pixels
        (:func:`grey_moments` of :func:`supernet_input`); by default those
        of ``images`` themselves. Pass the whole dataset's when embedding it
        in chunks.
    batch_size : int, default=64
        Images per forward pass.

    Returns
    -------
    ndarray of float64, shape (n, 32)

    Examples
    --------
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(6, 1, 28, 28).astype(np.float32)
    >>> Z = embed_images_supernet(X)
    >>> Z.shape
    (6, 32)
    >>> bool(np.array_equal(Z, embed_images_supernet(X)))
    True
    """
    grey = supernet_input(images)
    mean, std = grey_moments(grey) if stats is None else stats
    net = _network()
    batch_size = max(1, int(batch_size))
    x = (grey - np.float32(mean)) / np.float32(std)
    out = np.empty((len(x), SUPERNET_EMBEDDING["n_features"]), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch = torch.from_numpy(x[start : start + batch_size])
            out[start : start + len(batch)] = net.features(batch).numpy()
    return out.astype(np.float64) @ _CACHE["projection"]
