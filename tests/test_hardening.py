"""Hostile and careless inputs (issue 17): crafted zoo entries, exports and
checkpoints fail with clear errors, fast, without exhausting memory."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from skdarts import Supernet
from skdarts.zoo import SupernetZoo, ZooEntryError


def _supernet(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(init_channels=2, n_cells=1, n_nodes=1) | kw
    return Supernet("s2", 1, 3, **cfg)


def _signatures(seed=0):
    rng = np.random.default_rng(seed)
    return {"d": ({"means": rng.normal(size=(3, 4))}, {"n": 30})}


def _zoo(tmp_path, names=("a",)):
    zoo = SupernetZoo(tmp_path / "zoo")
    for i, name in enumerate(names):
        zoo.add(name, _supernet(i), signatures=_signatures(i))
    return zoo


def _rehash(folder: Path, edit) -> None:
    """Edit entry.json with ``edit(doc)`` and make its checksums match again."""
    jpath = folder / "entry.json"
    doc = json.loads(jpath.read_text())
    edit(doc)
    for fname in list(doc["files"]):
        path = folder / fname
        if path.is_file() and not path.is_symlink():
            doc["files"][fname] = hashlib.sha256(path.read_bytes()).hexdigest()
    jpath.write_text(json.dumps(doc))


# -- 1. crafted entries -------------------------------------------------------


@pytest.mark.parametrize(
    "fname", ["/dev/zero", "../b/weights.safetensors", "/etc/passwd", ".."]
)
def test_entry_file_names_are_confined_to_the_entry(tmp_path, fname):
    zoo = _zoo(tmp_path, ("a", "b"))

    def edit(doc):
        doc["files"][fname] = "0" * 64

    _rehash(zoo.path / "a", edit)
    t0 = time.monotonic()
    with pytest.raises(ZooEntryError, match="not a plain name"):
        zoo["a"]
    assert time.monotonic() - t0 < 5
    assert [e.name for e in zoo.entries(on_error="skip")] == ["b"]


def test_entry_symlink_and_fifo_are_refused_without_hanging(tmp_path):
    zoo = _zoo(tmp_path)
    folder = zoo.path / "a"
    os.replace(folder / "weights.safetensors", tmp_path / "w")
    os.symlink(tmp_path / "w", folder / "weights.safetensors")
    with pytest.raises(ZooEntryError, match="not a regular file"):
        zoo["a"]
    os.unlink(folder / "weights.safetensors")
    os.mkfifo(folder / "weights.safetensors")
    t0 = time.monotonic()
    with pytest.raises(ZooEntryError, match="not a regular file"):
        zoo["a"]
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize(
    "key, value",
    [
        ("n_cells", 10**7),
        ("init_channels", 1200),
        ("n_classes", -3),
        ("init_channels", -1),
        ("n_nodes", 17),
        ("n_cells", "8"),
    ],
)
def test_entry_config_is_bounded_before_building(tmp_path, key, value):
    zoo = _zoo(tmp_path)

    def edit(doc):
        doc["config"][key] = value

    _rehash(zoo.path / "a", edit)
    t0 = time.monotonic()
    with pytest.raises(ZooEntryError, match=f"{key}=.*out of range"):
        zoo["a"].load_supernet()
    assert time.monotonic() - t0 < 5


def test_entry_config_within_bounds_must_fit_the_weights(tmp_path):
    zoo = _zoo(tmp_path)

    def edit(doc):
        doc["config"]["init_channels"] = 500
        doc["config"]["n_cells"] = 60

    _rehash(zoo.path / "a", edit)
    t0 = time.monotonic()
    with pytest.raises(ZooEntryError, match="do not fit the configuration"):
        zoo["a"].load_supernet()
    assert time.monotonic() - t0 < 5


def test_deeply_nested_json_gives_zoo_entry_error(tmp_path):
    zoo = _zoo(tmp_path, ("a", "b"))
    (zoo.path / "a" / "entry.json").write_bytes(b"[" * 200_000 + b"]" * 200_000)
    with pytest.raises(ZooEntryError, match="nested deeper"):
        zoo["a"]
    assert [e.name for e in zoo.entries(on_error="skip")] == ["b"]
    deep = b'{"format": "skdarts.zoo.entry", "x": ' + b"[" * 500 + b"]" * 500 + b"}"
    (zoo.path / "a" / "entry.json").write_bytes(deep)
    with pytest.raises(ZooEntryError, match="nested deeper"):
        zoo["a"]


def test_oversized_json_is_refused(tmp_path, monkeypatch):
    from skdarts.zoo import _format

    zoo = _zoo(tmp_path)
    monkeypatch.setattr(_format, "MAX_JSON_BYTES", 100)
    with pytest.raises(ZooEntryError, match="more than the 100"):
        zoo["a"]


def test_malformed_signature_part_gives_zoo_entry_error(tmp_path):
    zoo = _zoo(tmp_path)

    def edit(doc):
        doc["signatures"]["d"] = {"arrays": {"means": "no/such"}, "meta": {}}

    _rehash(zoo.path / "a", edit)
    with pytest.raises(ZooEntryError, match="signatures cannot be read"):
        zoo["a"].signature_arrays()


def _export(tmp_path):
    from skdarts.export import export_network
    from skdarts.spaces import Genotype
    from skdarts.supernet import DerivedNetwork

    torch.manual_seed(0)
    geno = Genotype.from_dict(
        {
            "normal": [["skip_connect", 0], ["skip_connect", 1]],
            "normal_concat": [2],
            "reduce": [["skip_connect", 0], ["skip_connect", 1]],
            "reduce_concat": [2],
        }
    )
    net = DerivedNetwork(geno, 1, 3, init_channels=2, n_cells=1)
    path = tmp_path / "exp"
    export_network(net, path, format="safetensors")
    return path


@pytest.mark.parametrize("key, value", [("n_cells", 10**6), ("init_channels", 400)])
def test_export_config_is_bounded_and_checked_before_building(tmp_path, key, value):
    from skdarts.export import load_exported

    path = _export(tmp_path)
    meta = json.loads((path / "model.json").read_text())
    meta["network"][key] = value
    (path / "model.json").write_text(json.dumps(meta))
    t0 = time.monotonic()
    with pytest.raises(ValueError, match=key if value > 512 else "do not fit"):
        load_exported(path)
    assert time.monotonic() - t0 < 5


def test_export_deep_json_and_fifo(tmp_path):
    from skdarts.export import load_exported

    path = _export(tmp_path)
    (path / "model.json").write_bytes(b"[" * 200_000 + b"]" * 200_000)
    with pytest.raises(ValueError, match="nested deeper"):
        load_exported(path)


# -- 5. reads under concurrent overwrite ----------------------------------------


def _writer(path, seed, stop_at):
    zoo = SupernetZoo(path)
    i = 0
    while time.monotonic() < stop_at:
        # Different sizes: old JSON + new files can never pass by chance.
        net = _supernet(seed * 1000 + i, init_channels=2 + 2 * (i % 2))
        zoo.add("a", net, signatures=_signatures(i), overwrite=True)
        i += 1


def _reader(path, stop_at, queue):
    zoo = SupernetZoo(path)
    reads, damaged = 0, []
    while time.monotonic() < stop_at:
        try:
            entry = zoo["a"]
            module = entry.load_supernet()
            assert module.init_channels == entry.config["init_channels"]
            entry.signature_arrays()
            reads += 1
        except ZooEntryError as exc:
            damaged.append(str(exc))
    queue.put((reads, damaged))


def test_reads_under_concurrent_overwrite_see_a_whole_entry(tmp_path):
    zoo = _zoo(tmp_path)
    ctx = mp.get_context("fork" if sys.platform == "linux" else "spawn")
    stop_at = time.monotonic() + 8
    queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(zoo.path, s, stop_at)) for s in (1, 2)]
    procs += [
        ctx.Process(target=_reader, args=(zoo.path, stop_at, queue)) for _ in (1, 2)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in range(2)]
    for p in procs:
        p.join(timeout=60)
    reads = sum(r for r, _ in results)
    damaged = [d for _, ds in results for d in ds]
    assert reads > 20
    assert damaged == [], damaged[:3]
    assert zoo["a"].load_supernet() is not None


# -- 2. one damaged entry does not break the selector -----------------------------


def _sig_zoo(tmp_path, names):
    from sklearn.datasets import load_digits

    from skdarts.similarity import signature_fn

    X, y = load_digits(return_X_y=True)
    zoo = SupernetZoo(tmp_path / "zoo")
    for i, name in enumerate(names):
        zoo.add(name, _supernet(i), signatures={"d": signature_fn(X[:300], y[:300])})
    return zoo, X[300:500], y[300:500]


def test_selector_skips_entry_with_nan_signatures(tmp_path):
    import safetensors.numpy

    from skdarts import OTSourceSelector

    zoo, X, y = _sig_zoo(tmp_path, ["a", "b"])
    path = zoo.path / "a" / "signatures.safetensors"
    arrays = safetensors.numpy.load(path.read_bytes())
    key = next(k for k in arrays if k.endswith("/cov"))
    arrays[key] = np.full_like(arrays[key], np.nan)
    path.write_bytes(safetensors.numpy.save(arrays))
    _rehash(zoo.path / "a", lambda doc: None)
    with pytest.warns(UserWarning, match=r"1 zoo entry left out.*a \(.*NaN"):
        sel = OTSourceSelector(zoo, random_state=0).fit(X, y)
    assert sel.ranking_ == ["b"]


def test_selector_skips_entry_with_pickled_signatures(tmp_path):
    import pickle

    from skdarts import OTSourceSelector

    zoo, X, y = _sig_zoo(tmp_path, ["a", "b"])
    (zoo.path / "a" / "signatures.safetensors").write_bytes(pickle.dumps({"x": 1}))
    _rehash(zoo.path / "a", lambda doc: None)
    with pytest.warns(UserWarning, match=r"a \(.*signatures cannot be read"):
        sel = OTSourceSelector(zoo, random_state=0).fit(X, y)
    assert sel.ranking_ == ["b"]


def test_selector_falls_back_when_the_nearest_weights_do_not_load(tmp_path):
    from skdarts import OTSourceSelector

    zoo, X, y = _sig_zoo(tmp_path, ["a", "b"])
    sel = OTSourceSelector(zoo, random_state=0).fit(X, y)
    first, second = sel.ranking_
    (zoo.path / first / "weights.safetensors").write_bytes(b"garbage")
    _rehash(zoo.path / first, lambda doc: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sel = OTSourceSelector(zoo, random_state=0).fit(X, y)
    msgs = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(msgs) == 1 and f"{first} (its weights cannot be loaded" in msgs[0]
    assert sel.ranking_ == [second]
    assert sel.prior_.name == second
    assert sel.transform(X).prior.name == second


# -- 4. checkpoints are verified --------------------------------------------------


def _checkpointed(tmp_path):
    from sklearn.datasets import load_digits

    from skdarts import SupernetSearchClassifier
    from tests._tiny import tiny

    X, y = load_digits(return_X_y=True)
    X, y = X[:60], y[:60]
    params = tiny(max_epochs=2, final_epochs=0, checkpoint_dir=tmp_path)
    SupernetSearchClassifier(**params).fit(X, y)
    (path,) = tmp_path.glob("search-*/search_state.pt")
    return SupernetSearchClassifier(**params), X, y, path


def test_checkpoint_bit_flip_is_detected(tmp_path):
    from skdarts.search import SearchCheckpoint

    clf, X, y, path = _checkpointed(tmp_path)
    state = SearchCheckpoint.load_state(path)
    alphas = state["module"]["alphas_normal"]
    data = bytearray(path.read_bytes())
    # Flip one bit of the stored alphas (found by their bytes in the payload).
    raw = alphas.numpy().tobytes()
    at = bytes(data).find(raw)
    assert at > 0
    data[at + 3] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"search_state\.pt.*checksum.*delete it"):
        clf.fit(X, y)


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s.__setitem__("history", "{not json"),
        lambda s: s.pop("module"),
        lambda s: s["module"].pop("alphas_normal"),
        lambda s: s.__setitem__("rng_cpu", 3),
    ],
)
def test_malformed_checkpoint_names_the_file(tmp_path, damage):
    from skdarts.search import checkpoint as cp

    clf, X, y, path = _checkpointed(tmp_path)
    state = cp.SearchCheckpoint.load_state(path)
    damage(state)
    cp._atomic_torch_save(state, path)
    with pytest.raises(ValueError, match=r"search_state\.pt.*delete it"):
        clf.fit(X, y)


def test_old_checkpoint_without_checksum_loads_with_a_warning(tmp_path):
    from skdarts.search import SearchCheckpoint

    clf, X, y, path = _checkpointed(tmp_path)
    torch.save(SearchCheckpoint.load_state(path), path)  # the format before
    with pytest.warns(UserWarning, match="without a checksum"):
        clf.fit(X, y)
    assert clf.resumed_from_ == 2


# -- 3. predictions do not depend on the batch ------------------------------------


@pytest.fixture(scope="module")
def digits_fit():
    from sklearn.datasets import load_digits

    from skdarts import SupernetSearchClassifier
    from tests._tiny import tiny

    X, y = load_digits(return_X_y=True)
    clf = SupernetSearchClassifier(**tiny()).fit(X[:120].astype(np.int64), y[:120])
    return clf, X


def test_scale_is_decided_at_fit_not_per_batch():
    from sklearn.datasets import load_digits

    from skdarts import SupernetSearchClassifier
    from tests._tiny import tiny

    X, y = load_digits(return_X_y=True)
    X16 = (X[:120] * 4000).astype(np.uint16)
    clf = SupernetSearchClassifier(**tiny()).fit(X16, y[:120])
    assert clf.input_scale_ == 65535.0
    B = X16[:20].copy()
    B[0] = np.minimum(B[0], 255)  # a first image whose pixels all fit 8 bits
    p_batch = clf.predict_proba(B)[0]
    p_alone = clf.predict_proba(B[:1])[0]
    np.testing.assert_allclose(p_batch, p_alone, atol=1e-5)


def test_float_input_after_integer_fit_warns_and_agrees(digits_fit):
    clf, X = digits_fit
    assert clf.input_scale_ == 255.0
    ints = clf.predict(X[200:260].astype(np.int64))
    with pytest.warns(UserWarning, match="fitted on integer pixels"):
        floats = clf.predict(X[200:260].astype(np.float64))
    np.testing.assert_array_equal(ints, floats)


def test_pickle_without_input_scale_predicts_as_before(digits_fit):
    import copy

    clf, X = digits_fit
    old = copy.deepcopy(clf)
    del old.input_scale_
    np.testing.assert_allclose(
        old.predict_proba(X[:5].astype(np.int64)),
        clf.predict_proba(X[:5].astype(np.int64)),
        atol=1e-6,
    )


def test_out_of_memory_at_predict_names_image_size_and_batch_size(
    digits_fit, monkeypatch
):
    clf, X = digits_fit
    net = clf._predicting_net()

    def boom(*a, **k):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough "
            "memory: you tried to allocate 4000000000 bytes."
        )

    monkeypatch.setattr(net, "predict_proba", boom)
    with pytest.raises(MemoryError, match=r"8x8 pixels.*batch_size=16.*resize"):
        clf.predict(X[:4].astype(np.int64))
