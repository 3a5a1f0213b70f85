"""SupernetZoo: storage, safety (no pickle, atomic, concurrent, damage), pretraining."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from skdarts import SupernetSearchClassifier
from skdarts.supernet import Supernet
from skdarts.zoo import (
    SEARCH_DEFAULTS,
    SourceMaskedCrossEntropy,
    SupernetZoo,
    ZooEntryError,
    ZooKeyError,
    _store,
    load_supernet,
    save_supernet,
)
from skdarts.zoo._pretrain import _mixing_loader

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(init_channels=2, n_cells=2, n_nodes=1)


@pytest.fixture(autouse=True)
def _one_thread():
    # OpenMP threads spin badly on an oversubscribed machine; one is faster.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    return Supernet(**(TINY | {"n_classes": 3} | kw))


def signatures(seed=0):
    rng = np.random.RandomState(seed)
    return {
        "src_a": (
            {"means": rng.randn(3, 4), "counts": np.arange(3, dtype=np.int64)},
            {"method": "test", "n": 3},
        )
    }


def run_py(code: str, cwd=ROOT, timeout=240) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


# -- round trip --------------------------------------------------------------


def test_round_trip_in_a_new_process(tmp_path):
    zoo = SupernetZoo(tmp_path / "zoo")
    nets = {"a": tiny(0), "b": tiny(1, in_channels=3)}
    zoo.add("a", nets["a"], metadata={"note": "first", "n": np.int64(3)})
    zoo.add("b", nets["b"], signatures=signatures())
    out = run_py(
        f"""
        import json
        from skdarts.zoo import SupernetZoo
        zoo = SupernetZoo({str(tmp_path / "zoo")!r})
        res = {{}}
        for name in zoo:
            e = zoo[name]
            sd = e.state_dict()
            res[name] = {{
                "config": e.config,
                "prov": e.provenance,
                "alphas": sd["alphas_normal"].tolist(),
                "stem": sd["stem.0.weight"].flatten().tolist(),
                "sig": {{k: [a["means"].tolist() if "means" in a else None, m]
                        for k, (a, m) in e.signature_arrays().items()}},
            }}
        print(json.dumps({{"names": list(zoo), "len": len(zoo),
                           "in": "a" in zoo, "res": res}}))
        """
    )
    got = json.loads(out)
    assert got["names"] == ["a", "b"] and got["len"] == 2 and got["in"]
    for name, net in nets.items():
        r = got["res"][name]
        assert r["config"] == net.config()
        np.testing.assert_array_equal(r["alphas"], net.alphas_normal.detach().numpy())
        np.testing.assert_array_equal(
            r["stem"], net.stem[0].weight.detach().numpy().ravel()
        )
    assert got["res"]["a"]["prov"] == {"note": "first", "n": 3}
    assert got["res"]["a"]["sig"] == {}
    means, meta = got["res"]["b"]["sig"]["src_a"]
    np.testing.assert_array_equal(means, signatures()["src_a"][0]["means"])
    assert meta == {"method": "test", "n": 3}


def test_entry_rebuilds_the_same_supernet(tmp_path):
    zoo = SupernetZoo(tmp_path)
    net = tiny(3).eval()
    entry = zoo.add("n", net)
    loaded = entry.load_supernet().eval()
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)
    assert entry.metadata["schema_version"] == _store.SCHEMA_VERSION
    assert set(entry.metadata["files"]) == {"weights.safetensors"}
    assert entry.metadata["in_channels"] == 1
    assert "created" in entry.metadata and "skdarts_version" in entry.metadata


def test_signatures_stored_exactly_and_set_later(tmp_path):
    zoo = SupernetZoo(tmp_path)
    zoo.add("x", tiny(), metadata={"keep": 1})
    assert zoo["x"].signature_arrays() == {}
    sig = signatures(5)
    entry = zoo.set_signatures("x", sig)
    arrays, meta = entry.signature_arrays()["src_a"]
    for k, v in sig["src_a"][0].items():
        assert arrays[k].dtype == v.dtype
        np.testing.assert_array_equal(arrays[k], v)
    assert meta == sig["src_a"][1]
    assert entry.provenance == {"keep": 1}  # the rewrite keeps the rest
    torch.testing.assert_close(
        entry.state_dict()["alphas_reduce"], tiny().alphas_reduce.detach()
    )


def test_no_entry_file_can_be_unpickled(tmp_path):
    zoo = SupernetZoo(tmp_path)
    entry = zoo.add("p", tiny(), signatures=signatures(), metadata={"a": [1, 2]})
    files = sorted(entry.path.iterdir())
    assert {f.name for f in files} == {
        "entry.json",
        "weights.safetensors",
        "signatures.safetensors",
    }
    for f in files:
        with open(f, "rb") as fh, pytest.raises(Exception):  # noqa: B017
            pickle.load(fh)
        raw = f.read_bytes()
        # Each file is positively something else: safetensors (8-byte header
        # length, then a JSON header) or JSON.
        if f.suffix == ".safetensors":
            n = int.from_bytes(raw[:8], "little")
            assert isinstance(json.loads(raw[8 : 8 + n]), dict)
        else:
            assert isinstance(json.loads(raw), dict)
        try:  # recent torch reads safetensors natively: then only tensors
            loaded = torch.load(f, weights_only=False)
        except Exception:
            continue
        assert f.suffix == ".safetensors"
        assert all(isinstance(v, (torch.Tensor)) for v in loaded.values())
    # Neither the save_supernet format.
    path = tmp_path / "single"
    save_supernet(path, tiny())
    for f in path.iterdir():
        with open(f, "rb") as fh, pytest.raises(Exception):  # noqa: B017
            pickle.load(fh)


def test_concurrent_adds_from_two_processes(tmp_path):
    root = tmp_path / "zoo"
    SupernetZoo(root)
    go = tmp_path / "go"
    code = f"""
        import sys, time, torch
        from pathlib import Path
        from skdarts.supernet import Supernet
        from skdarts.zoo import SupernetZoo
        tag = sys.argv[1]
        zoo = SupernetZoo({str(root)!r})
        nets = []
        for i in range(4):
            torch.manual_seed(100 * int(tag) + i)
            nets.append(Supernet(init_channels=2, n_cells=2, n_nodes=1))
        while not Path({str(go)!r}).exists():
            time.sleep(0.01)
        for i, net in enumerate(nets):
            zoo.add(f"w{{tag}}-{{i}}", net, metadata={{"writer": tag, "i": i}})
        print("done")
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), tag],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("1", "2")
    ]
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    zoo = SupernetZoo(root)
    expected = sorted(f"w{t}-{i}" for t in (1, 2) for i in range(4))
    assert list(zoo) == expected
    for name in expected:
        tag, i = name[1:].split("-")
        entry = zoo[name]
        torch.manual_seed(100 * int(tag) + int(i))
        ref = Supernet(init_channels=2, n_cells=2, n_nodes=1)
        torch.testing.assert_close(
            entry.state_dict()["alphas_normal"], ref.alphas_normal.detach()
        )
        assert entry.provenance == {"writer": tag, "i": int(i)}
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".")]
    assert leftovers == [".lock"]


# -- damage and errors ---------------------------------------------------------


@pytest.fixture
def two_entries(tmp_path):
    zoo = SupernetZoo(tmp_path)
    zoo.add("good", tiny(0))
    zoo.add("bad", tiny(1), signatures=signatures())
    return zoo


def _assert_isolated(zoo, match):
    with pytest.raises(ZooEntryError, match=match) as info:
        zoo["bad"]
    assert "'bad'" in str(info.value)
    assert list(zoo) == ["bad", "good"] and "bad" in zoo and len(zoo) == 2
    assert zoo["good"].load_supernet().n_cells == 2
    assert [e.name for e in zoo.entries(on_error="skip")] == ["good"]
    with pytest.warns(RuntimeWarning, match="bad"):
        assert [e.name for e in zoo.entries(on_error="warn")] == ["good"]


def test_corrupted_weights_are_reported_and_isolated(two_entries):
    path = two_entries.path / "bad" / "weights.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    _assert_isolated(two_entries, r"weights\.safetensors.*checksum|checksum")
    with pytest.raises(ZooEntryError, match=r"weights\.safetensors"):
        two_entries["bad"]


def test_missing_file_is_reported(two_entries):
    (two_entries.path / "bad" / "signatures.safetensors").unlink()
    _assert_isolated(two_entries, "signatures.safetensors.*missing")


def test_bad_json_is_reported(two_entries):
    (two_entries.path / "bad" / "entry.json").write_text("{not json")
    _assert_isolated(two_entries, "entry.json.*not valid JSON")


def test_foreign_schema_version_asks_for_an_upgrade(two_entries):
    path = two_entries.path / "bad" / "entry.json"
    doc = json.loads(path.read_text())
    doc["schema_version"] = 99
    path.write_text(json.dumps(doc))
    _assert_isolated(two_entries, "schema version 99.*Upgrade skdarts")


def test_damaged_entry_can_be_removed_and_replaced(two_entries):
    (two_entries.path / "bad" / "entry.json").unlink()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        two_entries.add("bad", tiny())
    two_entries.add("bad", tiny(7), overwrite=True)
    assert two_entries["bad"].load_supernet().n_cells == 2
    two_entries.remove("bad")
    assert list(two_entries) == ["good"]


def test_clear_errors_for_bad_input(tmp_path):
    zoo = SupernetZoo(tmp_path)
    with pytest.raises(ZooKeyError, match=r"no entry 'nope'.*entries are \[\]"):
        zoo["nope"]
    with pytest.raises(ValueError, match=r"invalid zoo entry name '\.\./x'"):
        zoo.add("../x", tiny())
    with pytest.raises(TypeError, match="name must be a str; got int"):
        zoo.add(3, tiny())
    with pytest.raises(TypeError, match=r"must be a skdarts\.supernet\.Supernet; got"):
        zoo.add("a", torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match=r"JSON-serialisable.*object"):
        zoo.add("a", tiny(), metadata={"x": object()})
    assert "a" not in zoo  # nothing half-written
    with pytest.raises(TypeError, match=r"signatures\['s'\] must be a pair"):
        zoo.add("a", tiny(), signatures={"s": np.zeros(3)})
    assert list(tmp_path.iterdir()) == [tmp_path / ".lock"]
    with pytest.raises(NotADirectoryError):
        SupernetZoo(tmp_path / ".lock")
    with pytest.raises(FileNotFoundError, match="read-only"):
        SupernetZoo(tmp_path / "absent", read_only=True)
    with pytest.raises(ZooKeyError):
        zoo.remove("nope")


def test_read_only_zoo_reads_and_refuses_writes(tmp_path, monkeypatch):
    SupernetZoo(tmp_path).add("a", tiny())
    ro = SupernetZoo(tmp_path, read_only=True)
    assert ro["a"].load_supernet().n_cells == 2
    for write in (
        lambda z: z.add("b", tiny()),
        lambda z: z.remove("a"),
        lambda z: z.set_signatures("a", signatures()),
    ):
        with pytest.raises(PermissionError, match="read-only"):
            write(ro)
    # A folder the user may not write to: same behaviour.
    monkeypatch.setattr(_store.os, "access", lambda *a, **k: False)
    rw = SupernetZoo(tmp_path)
    assert list(rw) == ["a"] and rw["a"].config == tiny().config()
    with pytest.raises(PermissionError, match="not writable"):
        rw.add("b", tiny())
    assert list(rw) == ["a"]


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="file permissions do not bind the root user",
)
def test_read_only_folder(tmp_path):  # pragma: no cover - needs a non-root user
    SupernetZoo(tmp_path / "z").add("a", tiny())
    os.chmod(tmp_path / "z", 0o555)
    try:
        zoo = SupernetZoo(tmp_path / "z")
        assert zoo["a"].config == tiny().config()
        with pytest.raises(PermissionError):
            zoo.add("b", tiny())
    finally:
        os.chmod(tmp_path / "z", 0o755)


def test_save_and_load_supernet(tmp_path):
    net = tiny(4, in_channels=3)
    save_supernet(tmp_path / "s", net, metadata={"why": "test"})
    loaded = load_supernet(tmp_path / "s")
    torch.testing.assert_close(loaded.state_dict(), net.state_dict())
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_supernet(tmp_path / "s", net)
    with pytest.raises(FileNotFoundError, match="no saved supernet"):
        load_supernet(tmp_path / "nothing")


# -- pretraining ---------------------------------------------------------------


def test_search_defaults_match_the_estimator():
    params = SupernetSearchClassifier().get_params()
    for key, value in SEARCH_DEFAULTS.items():
        assert params[key] == value, key


def test_pretrain_writes_one_entry_per_source(tmp_path):
    X, y = load_digits(return_X_y=True)
    calls = []

    def sig_fn(X, y):
        calls.append(len(y))
        return {"mean": np.asarray(X, dtype=np.float64).mean(0)}, {"n": len(y)}

    zoo = SupernetZoo(tmp_path)
    entries = zoo.pretrain(
        {"d": (X[:80], y[:80]), "odd": (X[:60].reshape(-1, 8, 8), y[:60] % 3)},
        max_epochs=2,
        verbose=0,
        signature_fn=sig_fn,
        metadata={"odd": {"derived": "labels mod 3"}},
        random_state=0,
        **TINY,
    )
    assert [e.name for e in entries] == ["d", "odd"] and list(zoo) == ["d", "odd"]
    assert sorted(calls) == [60, 80]
    prov = zoo["odd"].provenance
    assert prov["sources"]["odd"]["n_classes"] == 3
    assert prov["sources"]["odd"]["derived"] == "labels mod 3"
    assert prov["epochs"] == 2 and len(prov["history"]) == 2
    assert 0 <= prov["final_accuracy"] <= 1
    assert zoo["odd"].config["n_classes"] == 3
    assert zoo["d"].signature_arrays()["d"][1] == {"n": 80}
    with pytest.raises(FileExistsError, match=r"already has entries \['d'\]"):
        zoo.pretrain({"d": (X[:80], y[:80])}, max_epochs=1, verbose=0, **TINY)
    with pytest.raises(TypeError, match=r"unknown search parameter.*'epochs'"):
        zoo.pretrain({"e": (X, y)}, epochs=3)
    with pytest.raises(TypeError, match="datasets must be a non-empty dict"):
        zoo.pretrain([(X, y)])


def test_pretrain_mixture_has_one_head_per_source(tmp_path):
    X, y = load_digits(return_X_y=True)
    grey = X[:80].reshape(-1, 8, 8)
    rgb = np.repeat(grey[:60, 1:7, 1:7, None], 3, axis=3)  # 6x6 colour
    zoo = SupernetZoo(tmp_path)
    entry = zoo.pretrain_mixture(
        {"grey": (grey, y[:80]), "rgb": (rgb, y[:60] % 2)},
        max_epochs=1,
        verbose=0,
        random_state=0,
        **TINY,
    )
    assert entry.name == "multi" and entry.config["in_channels"] == 3
    assert entry.config["n_classes"] == 12
    prov = entry.provenance
    assert prov["heads"] == [
        {"source": "grey", "offset": 0, "n_classes": 10},
        {"source": "rgb", "offset": 10, "n_classes": 2},
    ]
    assert prov["mixing"] == "balanced"
    assert prov["common_input"]["image_size"] == [8, 8]
    assert prov["sources"]["rgb"]["image_shape"] == [3, 6, 6]
    assert set(prov["final_accuracy_per_source"]) == {"grey", "rgb"}
    with pytest.raises(ValueError, match="mixing must be one of"):
        zoo.pretrain_mixture({"a": (grey, y[:80])}, name="m2", mixing="equal")


def test_masked_loss_equals_separate_heads():
    logits = torch.randn(6, 5)
    y = torch.tensor([0, 1, 2, 3, 4, 2])
    loss = SourceMaskedCrossEntropy([0, 0, 1, 1, 1])(logits, y)
    first = torch.nn.functional.cross_entropy(logits[:2, :2], y[:2], reduction="sum")
    second = torch.nn.functional.cross_entropy(
        logits[2:, 2:], y[2:] - 2, reduction="sum"
    )
    torch.testing.assert_close(loss, (first + second) / 6)


def test_balanced_mixing_draws_sources_equally():
    from skorch.dataset import Dataset

    y = np.r_[np.zeros(180, dtype=np.int64), np.ones(20, dtype=np.int64)]
    ds = Dataset(np.zeros((200, 1), dtype=np.float32), y)
    ds.mix_weights = torch.as_tensor(np.r_[np.full(180, 1 / 180), np.full(20, 1 / 20)])
    torch.manual_seed(0)
    drawn = torch.cat([b[1] for _ in range(10) for b in _mixing_loader(ds, 50)])
    assert 0.42 < drawn.float().mean().item() < 0.58
    plain = _mixing_loader(Dataset(np.zeros((200, 1), dtype=np.float32), y), 50)
    assert torch.cat([b[1] for b in plain]).float().mean().item() == pytest.approx(0.1)


# -- the shipped zoo -------------------------------------------------------------


def test_default_zoo_ships_ready_entries():
    zoo = SupernetZoo.default()
    assert zoo.read_only and "multi" in zoo
    assert {"fashion_mnist", "mnist", "letters"} <= set(zoo)
    defaults = SupernetSearchClassifier().get_params()
    total = 0
    for entry in zoo.entries():
        for key in ("search_space", "init_channels", "n_cells", "n_nodes"):
            assert entry.config[key] == defaults[key]
        assert entry.provenance["sources"] and entry.provenance["epochs"] >= 1
        total += sum(p.stat().st_size for p in entry.path.iterdir())
    assert total <= 20 * 2**20
    # The multi-dataset entry: the three sources and three derived tasks.
    assert set(zoo["multi"].sources) == {
        "fashion_mnist",
        "mnist",
        "letters",
        "mnist_rot90",
        "fashion_inverted",
        "letters_a_to_m",
    }
    with pytest.raises(PermissionError, match="read-only"):
        zoo.add("x", Supernet())


def test_default_zoo_architecture_priors_are_not_uniform():
    """Every shipped entry's alphas have moved, and the provenance says so.

    DARTS initialises alphas within ~1e-3 of zero, so an untrained prior's
    softmax stays within ~0.0015 of 1/8; the recorded statistics must be
    those of the stored weights.
    """
    from skdarts.zoo._pretrain import alpha_statistics

    for entry in SupernetZoo.default().entries():
        recorded = entry.provenance["alpha_stats"]
        measured = alpha_statistics(entry.load_supernet())
        assert recorded == measured, entry.name
        for name, stats in measured.items():
            assert stats["max_abs_deviation"] >= 0.02, (entry.name, name)
            assert stats["normalised_entropy_mean"] < 0.999, (entry.name, name)
        assert 0.5 < entry.provenance["final_accuracy"] <= 1.0


def test_version_file_agrees_with_pyproject():
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    import skdarts
    from skdarts._version import __version__

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    with open(pyproject, "rb") as f:
        assert tomllib.load(f)["project"]["version"] == __version__
    assert skdarts.__version__ == __version__


def test_reading_the_default_zoo_writes_nothing():
    zoo = SupernetZoo.default()
    before = sorted(p.name for p in zoo.path.iterdir())
    for entry in zoo.entries():
        entry.signature_arrays()
    assert ".lock" not in before
    assert sorted(p.name for p in zoo.path.iterdir()) == before
