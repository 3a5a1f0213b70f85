"""Dataset signatures, OT dataset distances and OTSourceSelector (with a fake zoo)."""

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import ot
import pytest
from _fakezoo import FakeZoo
from _tiny import tiny
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

from skdarts import OTSourceSelector, SupernetSearchClassifier
from skdarts.estimators import _training
from skdarts.estimators._handoff import HandoffArray, split_handoff, with_prior
from skdarts.similarity import (
    METHODS,
    DatasetSignature,
    bures_wasserstein_squared,
    compute_signature,
    dataset_distance,
    embed_images,
    gaussian_otdd_distances,
    signature_fn,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def halves(digits):
    X, y = digits[0].reshape(-1, 8, 8), digits[1]
    a = compute_signature(X[::2], y[::2], max_points=400, random_state=0)
    b = compute_signature(X[1::2], y[1::2], max_points=400, random_state=1)
    return a, b


# -- embedding and signatures ---------------------------------------------------


def test_embedding_is_per_image_and_scale_free(digits):
    X = digits[0].reshape(-1, 8, 8)
    images = X[:20, None].astype(np.float32)
    alone = embed_images(images[:5])
    assert np.allclose(embed_images(images)[:5], alone)  # no dataset statistics
    assert np.allclose(embed_images(3 * images[:5] + 7), alone, atol=1e-5)
    norms = np.linalg.norm(embed_images(images), axis=1)
    assert 0.5 < norms.mean() < 1.5  # Johnson-Lindenstrauss: unit norm kept
    assert not np.allclose(embed_images(images[:, :, ::-1]), embed_images(images))


def test_signature_size_is_bounded(digits):
    X, y = digits[0].reshape(-1, 8, 8), digits[1]
    rng = np.random.RandomState(0)
    big = np.concatenate([X] * 6) + rng.rand(6 * len(X), 8, 8)
    small_sig = compute_signature(X[:300], y[:300])
    big_sig = compute_signature(big, np.concatenate([y] * 6), chunk_size=1000)
    assert big_sig.n_samples == 6 * len(X)
    assert len(big_sig.points) == 1000
    assert big_sig.nbytes < 250_000
    assert compute_signature(big[:5000], None).nbytes < 200_000
    assert small_sig.nbytes <= big_sig.nbytes


def test_signature_moments_match_embedding(digits):
    X, y = digits[0].reshape(-1, 8, 8), digits[1]
    sig = compute_signature(X[:500], y[:500], chunk_size=64, embedding="pixels")
    Z = embed_images(X[:500, None])
    cls = np.flatnonzero(np.unique(y[:500]) == 3)[0]
    assert np.allclose(sig.class_means[cls], Z[y[:500] == 3].mean(0), atol=1e-5)
    assert np.allclose(sig.mean, Z.mean(0), atol=1e-5)
    assert sig.class_counts.sum() == 500


def test_round_trip_and_json_meta(halves):
    a, b = halves
    arrays, meta = a.to_arrays(), a.to_meta()
    json.dumps(meta)
    again = DatasetSignature.from_arrays(arrays, json.loads(json.dumps(meta)))
    for key in arrays:
        assert np.array_equal(again.to_arrays()[key], arrays[key])
    assert dataset_distance(again, b) == dataset_distance(a, b)
    assert dataset_distance((arrays, meta), b) == dataset_distance(a, b)
    arrays_fn, meta_fn = signature_fn(np.zeros((3, 4, 4)) + np.eye(4), [0, 1, 1])
    assert meta_fn["n_classes"] == 2 and arrays_fn["points"].dtype == np.float32


def test_class_spectra_cached_and_optional(halves):
    a, b = halves
    arrays, meta = a.to_arrays(), a.to_meta()
    ev = np.linalg.eigvalsh(np.float64(a.class_covs))[:, ::-1]
    assert np.allclose(arrays["class_spectra"] ** 2, ev, rtol=1e-4, atol=1e-7)
    # Signatures stored before the cache existed are still read.
    old = {k: v for k, v in arrays.items() if k != "class_spectra"}
    again = DatasetSignature.from_arrays(old, meta)
    assert np.allclose(again.class_spectra, a.class_spectra, atol=1e-6)
    assert gaussian_otdd_distances(again, [b]) == pytest.approx(
        gaussian_otdd_distances(a, [b]), rel=1e-5
    )
    with pytest.raises(ValueError, match="'class_spectra' has shape"):
        DatasetSignature.from_arrays(old | {"class_spectra": ev[:, :3]}, meta)


def test_from_arrays_errors(halves):
    a, _ = halves
    arrays, meta = a.to_arrays(), a.to_meta()
    with pytest.raises(ValueError, match="format"):
        DatasetSignature.from_arrays(arrays, {"format": "other"})
    with pytest.raises(ValueError, match="version"):
        DatasetSignature.from_arrays(arrays, meta | {"version": 99})
    with pytest.raises(ValueError, match=r"lack.*class_covs"):
        DatasetSignature.from_arrays(
            {k: v for k, v in arrays.items() if k != "class_covs"}, meta
        )
    with pytest.raises(ValueError, match="'points' has shape"):
        DatasetSignature.from_arrays(arrays | {"points": arrays["points"][:, :3]}, meta)
    with pytest.raises(ValueError, match="labels must lie"):
        DatasetSignature.from_arrays(arrays | {"labels": arrays["labels"] + 50}, meta)


def test_compute_signature_errors():
    with pytest.raises(ValueError, match="one label per image"):
        compute_signature(np.zeros((4, 8, 8)), [0, 1])
    with pytest.raises(TypeError, match="max_points"):
        compute_signature(np.zeros((4, 8, 8)), max_points=2.5)
    with pytest.raises(ValueError, match="NaN"):
        compute_signature(np.full((4, 8, 8), np.nan))
    with pytest.raises(ValueError, match="at least 1 image"):
        compute_signature(np.zeros((0, 8, 8)))


# -- distances ------------------------------------------------------------------


def test_bures_matches_pot(halves):
    a, b = halves
    ours = bures_wasserstein_squared(
        a.class_means, a.class_covs, b.class_means, b.class_covs
    )
    for i, j in [(0, 0), (2, 7), (9, 4)]:
        ref = ot.gaussian.bures_wasserstein_distance(
            *(np.float64(v) for v in (a.class_means[i], b.class_means[j])),
            *(np.float64(v) for v in (a.class_covs[i], b.class_covs[j])),
        )
        assert ours[i, j] == pytest.approx(float(ref) ** 2, rel=1e-6, abs=1e-10)


def test_gaussian_otdd_surrogate(halves, digits):
    a, b = halves
    X, y = digits[0].reshape(-1, 8, 8), digits[1]
    flipped = compute_signature(16 - X[1::2], y[1::2], max_points=400)
    d = gaussian_otdd_distances(a, [b, flipped, a], max_points=200)
    assert d[0] < d[1] and d[2] < d[0] + 1e-12
    # The formula, class pair by class pair, against a direct computation.
    idx = np.sort(np.random.RandomState(0).choice(400, 200, replace=False))
    wa = np.bincount(a.labels[idx], minlength=10) / 200.0
    wb = np.bincount(b.labels[idx], minlength=10) / 200.0
    C = np.empty((10, 10))
    for i in range(10):
        for j in range(10):
            la = np.linalg.eigvalsh(np.float64(a.class_covs[i]))
            lb = np.linalg.eigvalsh(np.float64(b.class_covs[j]))
            dm = np.sum((np.float64(a.class_means[i]) - b.class_means[j]) ** 2)
            # von Neumann: the Bures term is at least the spectra's distance.
            spectral = dm + np.sum((np.sqrt(la) - np.sqrt(lb)) ** 2)
            bures = bures_wasserstein_squared(
                a.class_means[i : i + 1],
                a.class_covs[i : i + 1],
                b.class_means[j : j + 1],
                b.class_covs[j : j + 1],
            )[0, 0]
            assert spectral <= bures + 1e-6
            C[i, j] = dm + la.sum() + lb.sum() + spectral
    assert d[0] == pytest.approx(np.sqrt(ot.emd2(wa, wb, C)), rel=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_identity_and_symmetry(halves, method):
    a, b = halves
    assert dataset_distance(a, a, method) < 1e-3
    ab = dataset_distance(a, b, method, max_points=300)
    assert ab == pytest.approx(dataset_distance(b, a, method, max_points=300), rel=1e-6)
    assert ab > 0


@pytest.fixture(scope="module")
def small_pair(digits):
    """Two small, different signatures whose points are all used (60 each)."""
    X, y = digits[0].reshape(-1, 8, 8), digits[1]
    keep = y < 3
    # The solvers' numerics are what these tests check: the fast pixel map.
    a = compute_signature(
        X[keep][::2], y[keep][::2], max_points=60, random_state=0, embedding="pixels"
    )
    b = compute_signature(
        16 - X[keep][1::2],
        y[keep][1::2],
        max_points=60,
        random_state=1,
        embedding="pixels",
    )
    assert len(a.points) == len(b.points) == 60
    return a, b


def _uniform(n):
    return np.full(n, 1.0 / n)


@pytest.mark.parametrize("method", ["wasserstein", "otdd"])
def test_sinkhorn_debiasing_moves_towards_exact_ot(small_pair, method):
    a, b = small_pair
    exact = dataset_distance(a, b, method)
    raw = dataset_distance(a, b, method, solver="sinkhorn", reg=0.1, debias=False)
    debiased = dataset_distance(a, b, method, solver="sinkhorn", reg=0.1)
    # The entropic bias is several times the debiased error at this reg.
    assert abs(debiased - exact) < abs(raw - exact) / 3
    assert debiased == pytest.approx(exact, rel=0.005)


def test_debiased_sinkhorn_is_the_sinkhorn_divergence(small_pair):
    # Feydy et al. 2019, computed here from POT directly on the stored points.
    a, b = small_pair
    reg, n = 0.1, len(a.points)

    def s(p, q):
        return ot.sinkhorn2(_uniform(n), _uniform(n), ot.dist(p, q), reg)

    value = s(a.points, b.points) - (s(a.points, a.points) + s(b.points, b.points)) / 2
    got = dataset_distance(a, b, "wasserstein", solver="sinkhorn", reg=reg)
    assert got == pytest.approx(np.sqrt(value), rel=1e-6)


def test_otdd_equals_a_hand_built_computation(small_pair):
    # OTDD (Alvarez-Melis & Fusi 2020) with Gaussian class distributions:
    # ground cost ||x - x'||^2 + W2^2(N_y, N_y'), W2 from POT's closed form,
    # outer problem exact OT between uniform weights.
    a, b = small_pair
    W = np.empty((a.n_classes, b.n_classes))
    for i in range(a.n_classes):
        for j in range(b.n_classes):
            W[i, j] = (
                ot.gaussian.bures_wasserstein_distance(
                    a.class_means[i].astype(np.float64),
                    b.class_means[j].astype(np.float64),
                    a.class_covs[i].astype(np.float64),
                    b.class_covs[j].astype(np.float64),
                )
                ** 2
            )
    pa, pb = a.points.astype(np.float64), b.points.astype(np.float64)
    M = ((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1) + W[np.ix_(a.labels, b.labels)]
    expected = np.sqrt(ot.emd2(_uniform(len(pa)), _uniform(len(pb)), M))
    assert dataset_distance(a, b, "otdd") == pytest.approx(expected, rel=1e-5)
    # And the labels matter: without them the value is the feature-only OT.
    assert dataset_distance(a, b, "wasserstein") < expected


@pytest.mark.parametrize("method", ["otdd", "wasserstein", "sliced", "gaussian"])
def test_shifted_copies_are_farther(digits, halves, method):
    X, y = digits[0].reshape(-1, 8, 8), digits[1]
    a, b = halves
    near = dataset_distance(a, b, method)
    rotated = compute_signature(np.rot90(X[1::2], axes=(1, 2)), y[1::2])
    inverted = compute_signature(16 - X[1::2], y[1::2])
    assert dataset_distance(a, rotated, method) > near
    assert dataset_distance(a, inverted, method) > near


def test_otdd_sees_labels(digits):
    X, y = digits[0].reshape(-1, 8, 8), digits[1]
    low, high = y < 5, y >= 5
    a_low = compute_signature(X[::2][low[::2]], y[::2][low[::2]])
    b_low = compute_signature(X[1::2][low[1::2]], y[1::2][low[1::2]])
    b_high = compute_signature(X[1::2][high[1::2]], y[1::2][high[1::2]])
    assert dataset_distance(a_low, b_low) < dataset_distance(a_low, b_high)
    # Same images with labels shuffled: features identical, OTDD must grow.
    rng = np.random.RandomState(0)
    shuffled = compute_signature(X[1::2], rng.permutation(y[1::2]))
    plain = compute_signature(X[1::2], y[1::2])
    full = compute_signature(X[::2], y[::2])
    assert dataset_distance(full, shuffled) > dataset_distance(full, plain)
    assert dataset_distance(full, shuffled, "wasserstein") == pytest.approx(
        dataset_distance(full, plain, "wasserstein"), rel=1e-6
    )


def test_triangle_inequality(digits, halves):
    X, y = digits[0].reshape(-1, 8, 8), digits[1]
    a, b = halves
    c = compute_signature(np.rot90(X[1::2], axes=(1, 2)), y[1::2], max_points=400)
    for method in ("otdd", "wasserstein", "gaussian"):
        pairs = [(a, b), (b, c), (a, c)]
        ab, bc, ac = (dataset_distance(p, q, method) for p, q in pairs)
        assert ac <= ab + bc + 1e-9
        assert ab <= ac + bc + 1e-9


def test_distance_errors(halves):
    a, b = halves
    with pytest.raises(ValueError, match="method must be one of"):
        dataset_distance(a, b, "kl")
    with pytest.raises(ValueError, match="solver"):
        dataset_distance(a, b, solver="lp")
    with pytest.raises(TypeError, match="DatasetSignature"):
        dataset_distance(a, np.zeros(3))
    other = DatasetSignature.from_arrays(
        b.to_arrays(), b.to_meta() | {"embedding": {"name": "other"}}
    )
    with pytest.raises(ValueError, match="different feature maps"):
        dataset_distance(a, other)


# -- selection --------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_zoo(digits):
    X, y = digits[0].reshape(-1, 8, 8), digits[1]
    src, tgt = slice(0, 1200), slice(1200, None)
    zoo = FakeZoo(
        {
            "digits": {"digits": signature_fn(X[src], y[src])},
            "inverted": {"inverted": signature_fn(16 - X[src], y[src])},
            "rotated": {"rotated": signature_fn(np.rot90(X[src], axes=(1, 2)), y[src])},
            "transposed+noise": {
                "noise": signature_fn(np.random.RandomState(0).rand(300, 8, 8)),
                "transposed": signature_fn(X[src].transpose(0, 2, 1), y[src]),
            },
            "empty": {},
        }
    )
    return zoo, X[tgt], y[tgt]


def test_selector_picks_the_source_of_the_target(digits_zoo):
    zoo, X, y = digits_zoo
    with pytest.warns(UserWarning, match="empty"):
        sel = OTSourceSelector(zoo, n_sources=2, random_state=0).fit(X, y)
    assert sel.selected_[0] == "digits"
    assert len(sel.selected_) == 2
    assert sorted(sel.ranking_) == ["digits", "inverted", "rotated", "transposed+noise"]
    assert np.all(np.diff(sel.distances_) >= 0)
    assert sel.prior_ is zoo["digits"] or sel.prior_ == zoo["digits"]
    assert set(sel.source_distances_["transposed+noise"]) == {"noise", "transposed"}
    multi = sel.source_distances_["transposed+noise"]
    pos = sel.ranking_.index("transposed+noise")
    assert sel.distances_[pos] == min(multi.values())
    assert sel.target_signature_.n_samples == len(X)


def test_two_stage_short_list(digits_zoo):
    zoo, X, y = digits_zoo
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        full = OTSourceSelector(zoo, shortlist=None, random_state=0).fit(X, y)
        short = OTSourceSelector(zoo, shortlist=1, random_state=0).fit(X, y)
        gauss = OTSourceSelector(zoo, method="gaussian").fit(X, y)
    assert short.selected_ == full.selected_ == gauss.selected_ == ["digits"]
    assert np.isnan(short.distances_[1:]).all() and not np.isnan(full.distances_).any()
    assert np.all(np.diff(short.proxy_distances_[1:]) >= 0)
    assert np.array_equal(gauss.distances_, gauss.proxy_distances_)
    # Stage 1 of "otdd" (class-level Gaussian surrogate) orders these sources as
    # the exact distance does, at a similar scale (the learned embedding's
    # classes are less Gaussian than the pixel map's: 0.77 vs 0.54 for the
    # nearest source, where pixels gave within 35 %).
    assert np.all(np.diff(full.proxy_distances_) > 0)
    assert np.allclose(full.proxy_distances_, full.distances_, rtol=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        wass = OTSourceSelector(zoo, method="wasserstein", shortlist=None).fit(X, y)
    # Stage 1 of the others is Gelbrich's lower bound of the (feature-only)
    # Wasserstein distance (for the moments of all images, hence the slack).
    assert np.all(wass.proxy_distances_ <= wass.distances_ + 0.05)


def test_selector_errors(digits_zoo):
    zoo, X, y = digits_zoo
    with pytest.raises(ValueError, match="requires y"):
        OTSourceSelector(zoo).fit(X)
    with pytest.raises(TypeError, match="zoo must be a SupernetZoo"):
        OTSourceSelector(object()).fit(X, y)
    with (
        pytest.raises(ValueError, match="no usable dataset signature"),
        pytest.warns(UserWarning, match="no signatures stored"),
    ):
        OTSourceSelector(FakeZoo({"a": {}})).fit(X, y)
    with pytest.raises(ValueError, match="n_sources=9"), pytest.warns(UserWarning):
        OTSourceSelector(zoo, n_sources=9).fit(X, y)
    with pytest.raises(ValueError, match="method"):
        OTSourceSelector(zoo, method="kl").fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sel = OTSourceSelector(zoo, method="sliced").fit(X, None)
    assert sel.selected_ == ["digits"]


def test_real_data_selection():
    if not (DATA / "mnist_5k.npz").exists():
        pytest.skip(f"shared data folder absent ({DATA}): real-data selection skipped")
    rng = np.random.RandomState(0)
    sources, targets = {}, {}
    for name in ("mnist_5k", "fashion_mnist", "ocr_letters"):
        with np.load(DATA / f"{name}.npz") as f:
            idx = rng.permutation(min(len(f["y"]), 8000))
            X, y = f["X"][idx], f["y"][idx]
        sources[name] = {name: signature_fn(X[:4000], y[:4000])}
        targets[name] = (X[4000:4400], y[4000:4400])
    zoo = FakeZoo(sources)
    for name, (X, y) in targets.items():
        sel = OTSourceSelector(zoo, random_state=0).fit(X, y)
        assert sel.selected_ == [name], (name, sel.ranking_, sel.distances_)


# -- hand-off ---------------------------------------------------------------------


def test_transform_hands_data_and_prior(digits_zoo):
    zoo, X, y = digits_zoo
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sel = OTSourceSelector(zoo, random_state=0).fit(X, y)
    Xt = sel.transform(X)
    assert isinstance(Xt, HandoffArray) and Xt.prior.name == "digits"
    assert np.array_equal(np.asarray(Xt), X) and Xt.dtype == X.dtype
    assert type(np.asarray(Xt)) is np.ndarray
    plain, prior = split_handoff(Xt)
    assert type(plain) is np.ndarray and prior.name == "digits"
    back = pickle.loads(pickle.dumps(Xt))
    assert back.prior.name == "digits" and np.array_equal(back, X)
    assert split_handoff(X) == (X, None)
    with pytest.raises(ValueError, match="features"):
        sel.transform(X.reshape(len(X), -1)[:, :10])
    assert with_prior([1, 2], "p")[1:].prior == "p"


TINY = tiny(batch_size=64)


def test_pipeline_hands_prior_to_classifier(digits_zoo, monkeypatch):
    zoo, X, y = digits_zoo
    seen = []

    def fake_resolve(prior, fresh):
        seen.append(prior)
        return fresh, {"kind": "fake", "name": prior.name}

    monkeypatch.setattr(_training, "resolve_prior", fake_resolve)
    pipe = make_pipeline(
        OTSourceSelector(zoo, random_state=0), SupernetSearchClassifier(**TINY)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        pipe.fit(X[:120], y[:120])
        assert pipe.predict(X[:5]).shape == (5,)
    assert [p.name for p in seen] == ["digits"]  # fit only, never predict
    assert pipe[-1].source_ == {"kind": "fake", "name": "digits"}
    # warm_start=False ignores what is handed over.
    cold = clone(pipe).set_params(supernetsearchclassifier__warm_start=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cold.fit(X[:120], y[:120])
    assert cold[-1].source_ is None and len(seen) == 1


def test_random_state_takes_int_randomstate_or_none(small_pair):
    a, b = small_pair
    kw = dict(method="sliced", n_projections=20)
    assert dataset_distance(a, b, random_state=3, **kw) == dataset_distance(
        a, b, random_state=3, **kw
    )
    d1 = dataset_distance(a, b, random_state=np.random.RandomState(0), **kw)
    d2 = dataset_distance(a, b, random_state=np.random.RandomState(0), **kw)
    assert d1 == d2
    assert np.isfinite(dataset_distance(a, b, random_state=None, **kw))
    with pytest.raises(TypeError, match="random_state"):
        dataset_distance(a, b, random_state="seed", **kw)


def test_rank_sources_progress_is_a_deprecated_verbose(small_pair):
    from skdarts.similarity import rank_sources

    a, b = small_pair
    sources = [("a", "a", a), ("b", "b", b)]
    with pytest.warns(FutureWarning, match="verbose"):
        old = rank_sources(a, sources, progress=False)
    assert old.names == rank_sources(a, sources, verbose=0).names == ["a", "b"]


def test_small_emd2_equals_pots_emd2():
    # The ranking's direct call of POT's network simplex gives emd2's value,
    # including emd2's rescaling of b to a's mass and zero-weight classes.
    from skdarts.similarity.ranking import _small_emd2

    rng = np.random.RandomState(0)
    for k, kk in [(1, 1), (3, 7), (10, 12), (26, 10)]:
        a = rng.rand(k)
        a /= a.sum()
        b = rng.rand(kk) * 1.3  # another total mass
        M = rng.rand(k, kk) ** 2
        expected = ot.emd2(a, b, M, check_marginals=False, center_dual=False)
        assert _small_emd2(a, b, M) == pytest.approx(expected, rel=1e-12, abs=1e-15)
        # Non-contiguous slices, as the ranking passes them.
        wide = rng.rand(k, 2 * kk)
        assert _small_emd2(a, b, wide[:, ::2]) == pytest.approx(
            ot.emd2(a, b, wide[:, ::2], check_marginals=False), rel=1e-12
        )
