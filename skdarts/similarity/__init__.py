"""Dataset signatures and optimal-transport distances between datasets.

A :class:`DatasetSignature` summarises a labelled image dataset in a few
hundred kilobytes, whatever its size, so that datasets can be compared (and a
zoo of pretrained supernets ranked) without the data being present.

Embeddings
----------
Two feature maps are available (:data:`EMBEDDINGS`), chosen by name wherever
signatures are computed or compared (``embedding=`` of
:func:`compute_signature`, :func:`signature_fn`, :func:`make_signature_fn`
and :class:`~skdarts.OTSourceSelector`; :data:`DEFAULT_EMBEDDING` where none
is named). Both give ``d = 32``. A signature records its map's constants
(``signature.embedding``), and signatures of different maps, or of different
versions of one, are never compared: the distances refuse them, and the
selector uses only the zoo's signatures of its own embedding.

``"pixels"`` (:func:`embed_images`, :data:`EMBEDDING`)
    Raw pixels, by a map that depends on nothing but fixed constants:

    1. channels averaged to grey, resized to ``16 x 16`` (bilinear,
       antialiased);
    2. per-image standardisation (zero mean, unit variance over its pixels),
       which removes brightness, contrast and the pixel scale (8-bit, 16-bit,
       floats);
    3. a fixed Gaussian random projection ``R`` of shape ``(256, d)``, entries
       ``N(0, 1/d)``, drawn from ``numpy.random.RandomState(0)``, whose stream
       is frozen by NumPy's compatibility policy (NEP 19), so that signatures
       stored in a zoo stay comparable across versions.

    Why this map: the OTDD paper computes its distance on raw pixels for the
    *NIST family of datasets (Alvarez-Melis & Fusi, 2020, Sec. 6), and a
    random Gaussian projection preserves all pairwise squared Euclidean
    distances up to a factor ``1 +/- eps`` with high probability (Johnson &
    Lindenstrauss, 1984; Dasgupta & Gupta, 2003), so the ground cost
    ``||x - x'||^2`` is kept while the dimension, and with it the covariances
    and the cost of every distance, stays small.

``"supernet"`` (:func:`embed_images_supernet`, :data:`SUPERNET_EMBEDDING`)
    Learned features: the pooled output of the last cell of the shipped
    multi-dataset supernet's body (``SupernetZoo.default()["multi"]``, frozen,
    in evaluation mode), fed the images as a search warm-started from it
    would be (grey, ``16 x 16``, standardised with the dataset's pixel mean
    and standard deviation), then a fixed scaled Gaussian projection from 128
    to 32 dimensions. It records the sha256 of the weights it uses. Pretrained
    ImageNet features (the ResNet-18 of the supernet paper) cannot be
    downloaded here; this network ships with skdarts. The map, and why it is
    built so: :mod:`skdarts.similarity.learned`.

What a signature keeps
----------------------
Per class: the count, the mean, the **full** ``d x d`` covariance (plus a
ridge of ``1e-4 * I`` so Bures square roots are well defined) and, cached for
ranking, the square roots of its eigenvalues; for the whole
dataset: mean and full covariance; and a uniform random subsample of at most
``max_points`` embedded points with their class indices. Stored as float32
(int64 labels and counts), at ``d = 32`` this is about
``4 K (d^2 + 2 d) + m (4 d + 8) + 4 (d^2 + d)`` bytes: 184 KB for 10 classes
and 1,000 points, 4.5 MB for 1,000 classes, whatever the number of images.

Distances (all with POT)
------------------------
``"otdd"``
    The optimal-transport dataset distance (Alvarez-Melis & Fusi, 2020): the
    ground cost between labelled points is
    ``||x - x'||^2 + W_2^2(N_y, N_y')``, with the class-conditional
    distributions approximated by Gaussians and ``W_2`` their Bures-Wasserstein
    distance (the closed form of :func:`ot.gaussian.bures_wasserstein_distance`,
    batched: :func:`bures_wasserstein_squared`); the outer
    problem is solved exactly (:func:`ot.emd2`, the default) or with Sinkhorn
    (:func:`ot.sinkhorn2`). Only the Sinkhorn value is debiased (a Sinkhorn
    divergence, Feydy et al., 2019: half of each side's self-transport cost
    is subtracted): exact OT of a dataset with itself is already 0, so the
    default exact distance has no bias to remove and none is subtracted.
``"wasserstein"``
    Same without labels: ``W_2`` between the embedded point clouds.
``"sliced"``
    Sliced Wasserstein (:func:`ot.sliced_wasserstein_distance`).
``"gaussian"``
    Bures-Wasserstein distance between dataset-level Gaussians; by Gelbrich's
    bound (Gelbrich, 1990) it is a lower bound of ``"wasserstein"``, itself a
    lower bound of ``"otdd"`` (for the moments of the points compared), and it
    is cheap enough to compare one dataset to thousands at once
    (:func:`gaussian_distances`).

Ranking a zoo (:func:`rank_sources`) is two-stage: for "otdd", stage 1 is a
class-level Gaussian surrogate of it (:func:`gaussian_otdd_distances`: exact
OT between the class weights, ground cost the expected squared distance of
independent draws plus a spectral bound of the Bures term, from class
spectra cached in the signature); the exact distance then runs on a short
list. How often the short list holds the exact argmin, and how long ranking
takes, is measured by ``benchmarks/selection.py`` (figures in the
documentation's benchmarks page, where they are kept current).

References
----------
.. [1] D. Alvarez-Melis and N. Fusi, "Geometric Dataset Distances via Optimal
   Transport", NeurIPS 2020.
.. [2] W. B. Johnson and J. Lindenstrauss, "Extensions of Lipschitz mappings
   into a Hilbert space", Contemporary Mathematics 26, 1984; S. Dasgupta and
   A. Gupta, "An elementary proof of a theorem of Johnson and Lindenstrauss",
   Random Structures & Algorithms 22(1), 2003.
.. [3] J. Feydy et al., "Interpolating between Optimal Transport and MMD using
   Sinkhorn Divergences", AISTATS 2019.
.. [4] M. Gelbrich, "On a formula for the L2 Wasserstein metric between
   measures on Euclidean and Hilbert spaces", Math. Nachr. 147, 1990.
.. [5] G. Peyre and M. Cuturi, "Computational Optimal Transport", Foundations
   and Trends in Machine Learning 11(5-6), 2019.

Modules
-------
* :mod:`skdarts.similarity.signature` - the pixel embedding, the registry of
  embeddings and :class:`DatasetSignature`;
* :mod:`skdarts.similarity.learned` - the learned (``"supernet"``) embedding;
* :mod:`skdarts.similarity.distances` - :func:`dataset_distance` and its
  building blocks;
* :mod:`skdarts.similarity.ranking` - :func:`rank_sources` and its stage-1
  surrogate.

Layer: above ``search``, below ``zoo``; knows nothing of models' training.
"""

from .distances import (
    METHODS,
    bures_wasserstein_squared,
    class_costs,
    dataset_distance,
    gaussian_distances,
)
from .learned import SUPERNET_EMBEDDING, embed_images_supernet
from .ranking import Ranking, gaussian_otdd_distances, rank_sources
from .signature import (
    DEFAULT_EMBEDDING,
    EMBEDDING,
    EMBEDDINGS,
    DatasetSignature,
    _subsample,  # noqa: F401  (benchmarks/selection.py uses it)
    check_embedding,
    compute_signature,
    embed_images,
    make_signature_fn,
    signature_fn,
)

__all__ = [
    "DEFAULT_EMBEDDING",
    "EMBEDDING",
    "EMBEDDINGS",
    "METHODS",
    "SUPERNET_EMBEDDING",
    "DatasetSignature",
    "Ranking",
    "bures_wasserstein_squared",
    "check_embedding",
    "class_costs",
    "compute_signature",
    "dataset_distance",
    "embed_images",
    "embed_images_supernet",
    "gaussian_distances",
    "gaussian_otdd_distances",
    "make_signature_fn",
    "rank_sources",
    "signature_fn",
]
