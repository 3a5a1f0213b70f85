"""The two embeddings of dataset signatures ("pixels", "supernet"): the learned
feature map, the registry, storing both in a zoo entry, and the selector's
``embedding`` parameter."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from _fakezoo import FakeZoo
from joblib import Parallel, delayed

from skdarts import OTSourceSelector
from skdarts._files import sha256_file
from skdarts.similarity import (
    DEFAULT_EMBEDDING,
    EMBEDDING,
    EMBEDDINGS,
    SUPERNET_EMBEDDING,
    compute_signature,
    dataset_distance,
    embed_images_supernet,
    learned,
    make_signature_fn,
    rank_sources,
    signature_fn,
)
from skdarts.supernet import Supernet
from skdarts.zoo import SupernetZoo

OLD_ZOO = Path(__file__).parent / "data" / "zoo_v1"


@pytest.fixture(scope="module")
def images(digits):
    """Digits as uint8 8 x 8 images (0-255) and their labels."""
    X, y = digits
    return np.round(X.reshape(-1, 8, 8) * (255 / 16)).astype(np.uint8), y


def _equal_signatures(a, b) -> bool:
    return all(
        np.array_equal(a.to_arrays()[k], b.to_arrays()[k]) for k in a.to_arrays()
    )


# -- the feature map ----------------------------------------------------------------


def test_registry_and_default():
    assert EMBEDDINGS == {"pixels": EMBEDDING, "supernet": SUPERNET_EMBEDDING}
    assert DEFAULT_EMBEDDING in EMBEDDINGS
    assert SUPERNET_EMBEDDING["n_components"] == EMBEDDING["n_components"] == 32
    # The learned map is pinned to the weights it uses: the shipped entry's.
    multi = SupernetZoo.default()["multi"]
    digest = multi.metadata["files"]["weights.safetensors"]
    assert SUPERNET_EMBEDDING["weights_sha256"] == digest
    assert sha256_file(multi.path / "weights.safetensors") == digest


def test_supernet_embedding_shapes_and_determinism(images):
    X, y = images
    Z = embed_images_supernet(X[:40, None].astype(np.float32) / 255)
    assert Z.shape == (40, 32) and Z.dtype == np.float64
    again = embed_images_supernet(X[:40, None].astype(np.float32) / 255)
    assert np.array_equal(Z, again)  # bit for bit
    # Typical embedded points have norm about 1, as with the pixel map.
    assert 0.5 < np.linalg.norm(Z, axis=1).mean() < 2.0
    a = compute_signature(X[:300], y[:300], embedding="supernet")
    b = compute_signature(X[:300], y[:300], embedding="supernet")
    assert _equal_signatures(a, b)
    assert a.embedding == SUPERNET_EMBEDDING and a.class_covs.shape == (10, 32, 32)
    # Streamed in chunks (two passes: pixel moments, then features) it is the
    # same up to float32 rounding of the moments.
    chunked = compute_signature(X[:300], y[:300], embedding="supernet", chunk_size=64)
    assert np.allclose(chunked.points, a.points, atol=1e-5)
    assert np.allclose(chunked.class_covs, a.class_covs, atol=1e-5)


def test_uint8_and_unit_float_inputs_give_equal_features(images):
    X, y = images
    as_uint8 = compute_signature(X[:200], y[:200], embedding="supernet")
    # The estimator's scaling of 8-bit pixels, done by hand: bit for bit equal.
    unit = X[:200].astype(np.float32) / np.float32(255)
    assert _equal_signatures(
        as_uint8, compute_signature(unit, y[:200], embedding="supernet")
    )
    # In float64, and as flat rows: equal up to rounding.
    flat = (X[:200] / 255.0).reshape(200, -1)
    other = compute_signature(flat, y[:200], embedding="supernet")
    assert np.allclose(other.points, as_uint8.points, atol=1e-5)
    # Grey replicated on three channels (channels last) is the grey image.
    rgb = np.repeat(X[:200, :, :, None], 3, axis=3)
    colour = compute_signature(rgb, y[:200], embedding="supernet")
    assert np.allclose(colour.points, as_uint8.points, atol=1e-5)


def test_network_loads_once_and_threads_agree(images, monkeypatch):
    X, _ = images
    batch = X[:64, None].astype(np.float32) / 255
    serial = embed_images_supernet(batch)
    monkeypatch.setattr(learned, "_CACHE", {})  # a fresh process, as it were
    out = Parallel(n_jobs=4, prefer="threads")(
        delayed(embed_images_supernet)(batch, batch_size=16) for _ in range(4)
    )
    nets = {id(learned._CACHE["network"])}
    assert len(nets) == 1
    for Z in out:
        assert np.allclose(Z, serial, atol=1e-6)


def test_other_weights_are_refused(monkeypatch):
    monkeypatch.setattr(learned, "_CACHE", {})
    monkeypatch.setitem(SUPERNET_EMBEDDING, "weights_sha256", "0" * 64)
    with pytest.raises(ValueError, match=r"sha256 .* defined by the weights"):
        embed_images_supernet(np.zeros((2, 1, 8, 8), dtype=np.float32))


# -- comparing signatures -------------------------------------------------------------


def test_signatures_of_two_embeddings_refuse_comparison(images):
    X, y = images
    pixels = compute_signature(X[:150], y[:150], max_points=50, embedding="pixels")
    supernet = compute_signature(X[:150], y[:150], max_points=50, embedding="supernet")
    assert pixels.embedding == EMBEDDING
    with pytest.raises(ValueError, match="different feature maps"):
        dataset_distance(pixels, supernet)
    # Another version of the learned map (another network) is refused too.
    meta = supernet.to_meta()
    meta["embedding"] = meta["embedding"] | {"weights_sha256": "f" * 64}
    other = type(supernet).from_arrays(supernet.to_arrays(), meta)
    with pytest.raises(ValueError, match="different feature maps"):
        dataset_distance(supernet, other)
    assert dataset_distance(supernet, supernet) == pytest.approx(0.0, abs=1e-6)
    ranking = rank_sources(supernet, [("a", "a", supernet)], shortlist=1)
    assert ranking.names == ["a"]


def test_bad_embedding_values_raise_value_error(images, tmp_path):
    X, y = images
    for call in (
        lambda: compute_signature(X[:20], y[:20], embedding="resnet"),
        lambda: compute_signature(X[:20], y[:20], embedding=None),
        lambda: signature_fn(X[:20], y[:20], embedding=3),
        lambda: signature_fn(X[:20], y[:20], embedding=["pixels", "x"]),
        lambda: make_signature_fn("Pixels"),
        lambda: make_signature_fn([]),
    ):
        with pytest.raises(
            ValueError, match=r"embedding must .*'pixels', 'supernet'|at least one"
        ):
            call()
    zoo = SupernetZoo(tmp_path)
    entry = zoo.add("a", Supernet(init_channels=2, n_cells=1, n_nodes=1))
    with pytest.raises(ValueError, match="embedding must be one of"):
        entry.signature_arrays(embedding="resnet")
    sel = OTSourceSelector(FakeZoo({}), embedding="resnet")
    with pytest.raises(ValueError, match=r"'embedding' parameter.*'pixels'.*'resnet'"):
        sel.fit(X[:20], y[:20])


# -- the selector ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_embedding_zoo(images):
    """Digits and inverted digits, each with both embeddings' signatures (keyed
    as a zoo entry stores them), and held-out digits as the target."""
    X, y = images
    src, tgt = slice(0, 400), slice(1000, 1300)
    entries = {}
    for name, images_ in (("digits", X[src]), ("inverted", 255 - X[src])):
        pixels, learned_ = signature_fn(
            images_, y[src], embedding=["pixels", "supernet"]
        )
        entries[name] = {name: pixels, f"{name}@supernet": learned_}
    return FakeZoo(entries), X[tgt], y[tgt]


@pytest.mark.parametrize("embedding", ["pixels", "supernet"])
def test_selector_ranks_the_near_source_first(two_embedding_zoo, embedding):
    zoo, X, y = two_embedding_zoo
    sel = OTSourceSelector(zoo, embedding=embedding, random_state=0).fit(X, y)
    assert sel.ranking_ == ["digits", "inverted"]
    assert sel.target_signature_.embedding == EMBEDDINGS[embedding]
    assert sel.distances_[0] < sel.distances_[1]
    # Only that embedding's signatures were compared.
    assert len(sel.source_distances_["digits"]) == 1
    inverted = OTSourceSelector(zoo, embedding=embedding, random_state=0)
    assert inverted.fit(255 - X, y).selected_ == ["inverted"]


def test_selector_without_signatures_of_its_embedding(images):
    X, y = images
    zoo = FakeZoo({"d": {"d": signature_fn(X[:100], y[:100], embedding="pixels")}})
    with (
        pytest.raises(
            ValueError,
            match=r"no usable dataset signature of "
            r"embedding='supernet'.*--signatures-only --embedding supernet",
        ),
        pytest.warns(UserWarning, match="only of other embeddings"),
    ):
        OTSourceSelector(zoo, embedding="supernet").fit(X[200:300], y[200:300])
    # Another version of the map: left out, with a warning saying so.
    arrays, meta = signature_fn(X[:100], y[:100], embedding="supernet")
    meta["embedding"] = meta["embedding"] | {"version": 0}
    stale = FakeZoo(
        {
            "d": {"d": signature_fn(X[:100], y[:100], embedding="pixels")},
            "s": {"s@supernet": (arrays, meta)},
        }
    )
    with (
        pytest.raises(ValueError, match="no usable dataset signature"),
        pytest.warns(UserWarning, match="another version of that feature map"),
    ):
        OTSourceSelector(stale, embedding="supernet").fit(X[200:300], y[200:300])


# -- storage ---------------------------------------------------------------------------


def test_an_entry_stores_and_reads_both_embeddings(images, tmp_path):
    X, y = images
    zoo = SupernetZoo(tmp_path)
    both = signature_fn(X[:100], y[:100], embedding=["pixels", "supernet"])
    entry = zoo.add(
        "a",
        Supernet(init_channels=2, n_cells=1, n_nodes=1),
        signatures={"d": both, "e": both[0]},
    )
    assert sorted(entry.signature_arrays()) == ["d", "d@supernet", "e"]
    pixels = entry.signature_arrays(embedding="pixels")
    learned_ = entry.signature_arrays(embedding="supernet")
    assert sorted(pixels) == ["d", "e"] and list(learned_) == ["d"]
    assert learned_["d"][1] == both[1][1]
    assert np.array_equal(learned_["d"][0]["points"], both[1][0]["points"])
    doc = entry.metadata["signatures"]
    assert doc["d@supernet"]["source"] == "d"
    assert doc["d@supernet"]["embedding"] == "supernet"
    assert "source" not in doc["d"]  # pixel signatures: the format of before
    with pytest.raises(ValueError, match="two signatures would be stored as 'd'"):
        zoo.add(
            "b",
            Supernet(init_channels=2, n_cells=1, n_nodes=1),
            signatures={"d": [both[0], both[0]]},
        )


def test_entry_written_before_several_embeddings_still_works(images, tmp_path):
    X, y = images
    shutil.copytree(OLD_ZOO, tmp_path / "zoo", ignore=shutil.ignore_patterns("*.md"))
    zoo = SupernetZoo(tmp_path / "zoo")
    entry = zoo["old"]
    stored = entry.signature_arrays()
    assert list(stored) == ["digits"] and stored["digits"][1]["embedding"] == EMBEDDING
    assert list(entry.signature_arrays(embedding="pixels")) == ["digits"]
    assert entry.signature_arrays(embedding="supernet") == {}
    assert entry.load_supernet().init_channels == 2
    # The default ("auto") falls back to the pixel signatures it holds, and
    # says how to store the learned ones; naming "pixels" is silent.
    with pytest.warns(UserWarning, match="no signatures of the default embedding"):
        auto = OTSourceSelector(zoo, random_state=0).fit(X[500:600], y[500:600])
    assert auto.embedding_ == "pixels"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sel = OTSourceSelector(zoo, embedding="pixels", random_state=0)
        sel.fit(X[500:600], y[500:600])
    assert sel.embedding_ == "pixels" and auto.ranking_ == sel.ranking_
    np.testing.assert_array_equal(auto.distances_, sel.distances_)
    assert sel.selected_ == ["old"] and sel.source_distances_ == {
        "old": {"digits": sel.distances_[0]}
    }
    with (
        pytest.raises(ValueError, match="--signatures-only"),
        pytest.warns(UserWarning),
    ):
        OTSourceSelector(zoo, embedding="supernet").fit(X[500:600], y[500:600])


def test_set_signatures_adds_an_embedding_and_keeps_the_weights(images, tmp_path):
    X, y = images
    shutil.copytree(OLD_ZOO, tmp_path / "zoo", ignore=shutil.ignore_patterns("*.md"))
    zoo = SupernetZoo(tmp_path / "zoo")
    before = zoo["old"]
    weights = before.path / "weights.safetensors"
    sha, inode = sha256_file(weights), weights.stat().st_ino
    old_pixels = before.signature_arrays()["digits"]
    learned_ = signature_fn(X[:120], y[:120], embedding="supernet")
    after = zoo.set_signatures("old", {"digits": learned_})
    # Same weights file (hard-linked, never rewritten), same digest and metadata.
    assert (after.path / "weights.safetensors").stat().st_ino == inode
    assert sha256_file(after.path / "weights.safetensors") == sha
    assert after.metadata["files"]["weights.safetensors"] == sha
    for key in ("created", "provenance", "config"):
        assert after.metadata[key] == before.metadata[key]
    # The pixel signature is kept exactly, under its old key.
    assert sorted(after.signature_arrays()) == ["digits", "digits@supernet"]
    pixels = after.signature_arrays(embedding="pixels")["digits"]
    assert pixels[1] == old_pixels[1]
    assert all(np.array_equal(pixels[0][k], old_pixels[0][k]) for k in old_pixels[0])
    assert (
        after.metadata["signatures"]["digits"]
        == before.metadata["signatures"]["digits"]
    )
    # Setting one embedding again replaces it (not a second copy); both selectors work.
    again = zoo.set_signatures(
        "old", {"d2": signature_fn(X[:60], y[:60], embedding="supernet")}
    )
    assert sorted(again.signature_arrays()) == ["d2@supernet", "digits"]
    for embedding in ("pixels", "supernet"):
        sel = OTSourceSelector(zoo, embedding=embedding).fit(X[500:600], y[500:600])
        assert sel.selected_ == ["old"]
    only = zoo.set_signatures("old", {"digits": learned_}, keep_other_embeddings=False)
    assert list(only.signature_arrays()) == ["digits@supernet"]
    assert sha256_file(only.path / "weights.safetensors") == sha


def test_shipped_zoo_holds_both_embeddings(images):
    X, y = images
    zoo = SupernetZoo.default()
    for name in zoo:
        entry = zoo[name]
        for embedding, constants in EMBEDDINGS.items():
            stored = entry.signature_arrays(embedding=embedding)
            assert sorted(stored) == sorted(entry.sources), (name, embedding)
            assert all(m["embedding"] == constants for _, m in stored.values())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sel = OTSourceSelector(zoo, embedding="supernet", random_state=0)
        sel.fit(X[:300], y[:300])
    assert sorted(sel.ranking_) == sorted(zoo)
    assert sel.selected_[0] in ("mnist", "multi")  # digits: nearest to MNIST


def test_command_line_names_the_embeddings(images, tmp_path, capsys):
    from skdarts.cli import main
    from skdarts.cli.parser import EMBEDDING_NAMES

    assert EMBEDDING_NAMES == tuple(sorted(EMBEDDINGS))
    X, y = images
    data = tmp_path / "digits.npz"
    np.savez(data, X=X[:200], y=y[:200])
    assert main(["zoo", "select", str(data), "--embedding", "supernet"]) == 0
    out = capsys.readouterr().out
    assert "embedding supernet" in out and "selected=" in out
    with pytest.raises(SystemExit):
        main(["zoo", "select", str(data), "--embedding", "resnet"])
    assert "invalid choice: 'resnet'" in capsys.readouterr().err
