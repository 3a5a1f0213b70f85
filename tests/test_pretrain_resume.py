"""Zoo pretraining resumes through ``checkpoint_dir`` and records alpha statistics."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from skdarts.search import SearchCheckpoint
from skdarts.zoo import SupernetZoo
from skdarts.zoo._pretrain import alpha_statistics

SMALL = dict(
    max_epochs=3,
    init_channels=2,
    n_cells=1,
    n_nodes=1,
    batch_size=32,
    verbose=0,
    random_state=0,
    device="cpu",
)


class Crash(RuntimeError):
    pass


def _data():
    X, y = load_digits(return_X_y=True)
    return X[:120], y[:120]


def _state(entry):
    return {k: v.clone() for k, v in entry.load_supernet().state_dict().items()}


@pytest.mark.parametrize("mixture", [False, True])
def test_interrupted_pretraining_resumes_to_the_same_entry(
    tmp_path, monkeypatch, mixture
):
    X, y = _data()
    datasets = {"a": (X[:80], y[:80]), "b": (X[40:], y[40:] % 3)}

    def build(zoo, **kw):
        if mixture:
            return zoo.pretrain_mixture(datasets, name="m", **SMALL, **kw)
        return zoo.pretrain({"a": datasets["a"]}, **SMALL, **kw)[0]

    reference = build(SupernetZoo(tmp_path / "ref"))

    original = SearchCheckpoint.on_epoch_end
    calls = {"n": 0}

    def crash_after_second_epoch(self, net, **kwargs):
        original(self, net, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            raise Crash("simulated power cut")

    monkeypatch.setattr(SearchCheckpoint, "on_epoch_end", crash_after_second_epoch)
    zoo = SupernetZoo(tmp_path / "zoo")
    ckpt = tmp_path / "ckpt"
    with pytest.raises(Crash):
        build(zoo, checkpoint_dir=ckpt)
    assert len(zoo) == 0  # nothing half-trained was written
    monkeypatch.setattr(SearchCheckpoint, "on_epoch_end", original)
    resumed = build(zoo, checkpoint_dir=ckpt)
    assert resumed.provenance["resumed_from_epoch"] == 2
    assert [r["epoch"] for r in resumed.provenance["history"]] == [1, 2, 3]
    want, got = _state(reference), _state(resumed)
    assert want.keys() == got.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0, msg=k)


def test_checkpoint_of_another_run_is_not_continued(tmp_path):
    X, y = _data()
    zoo = SupernetZoo(tmp_path / "zoo")
    ckpt = tmp_path / "ckpt"
    zoo.pretrain({"a": (X, y)}, checkpoint_dir=ckpt, **SMALL)
    # Other data, same name: a fresh run (its own key), not a resume.
    entry = zoo.pretrain(
        {"a": (X[::-1], y[::-1])}, checkpoint_dir=ckpt, overwrite=True, **SMALL
    )[0]
    assert entry.provenance["resumed_from_epoch"] == 0
    assert len(list(ckpt.iterdir())) == 2


def test_alpha_statistics_in_provenance(tmp_path):
    X, y = _data()
    # Three cells: one normal cell and two reductions, so both alphas are used.
    params = SMALL | {"n_cells": 3, "arch_lr": 0.05}
    entry = SupernetZoo(tmp_path).pretrain({"a": (X, y)}, **params)[0]
    stats = entry.provenance["alpha_stats"]
    assert set(stats) == {"alphas_normal", "alphas_reduce"}
    for s in stats.values():
        assert 0 < s["normalised_entropy_mean"] < 0.9999
        assert s["max_abs_deviation"] > 0.005  # moved away from uniform


def test_alpha_statistics_values():
    net = torch.nn.Module()
    net.alphas_x = torch.nn.Parameter(torch.tensor([[0.0, 0.0], [np.log(3.0), 0.0]]))
    s = alpha_statistics(net)["alphas_x"]
    assert s["max_weight"] == pytest.approx(0.75)
    assert s["max_abs_deviation"] == pytest.approx(0.25)
    h = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25)) / np.log(2)
    assert s["normalised_entropy_min"] == pytest.approx(h, abs=1e-6)
    assert s["normalised_entropy_mean"] == pytest.approx((1 + h) / 2, abs=1e-6)
