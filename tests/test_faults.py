"""Fault tolerance of the estimator: persistence, resume, interruption, NaN.

Everything runs for real: real pickles (one whose tensors claim to live on a
CUDA device), real checkpoint files, real exports re-loaded by their own
runtimes. Fits are tiny (one cell, one node, two channels, 8x8 digits).
"""

from __future__ import annotations

import pickle
import warnings

import joblib
import numpy as np
import pytest
import torch
from _tiny import tiny
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from skorch.callbacks import Callback

from skdarts import SupernetSearchClassifier
from skdarts.search import NonFiniteError, SearchCheckpoint

TINY = tiny(max_epochs=2)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Two cores shared by several workers: more threads only add contention.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(return_X_y=True)
    keep = y < 3
    return X[keep][:60].astype(np.float64), y[keep][:60]


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return SupernetSearchClassifier(**TINY).fit(X, y)


class InterruptAt(Callback):
    """Raise KeyboardInterrupt in epoch ``epoch`` (1-based) after ``batch`` batches."""

    def __init__(self, epoch=2, batch=1):
        self.epoch = epoch
        self.batch = batch

    def on_batch_end(self, net, training=None, **kwargs):
        if (
            training
            and len(net.history) == self.epoch
            and len(net.history[-1, "batches"]) == self.batch
        ):
            raise KeyboardInterrupt


# -- joblib / pickle ------------------------------------------------------------


def test_joblib_round_trip_identical(fitted, data, tmp_path):
    X, _ = data
    path = tmp_path / "clf.joblib"
    joblib.dump(fitted, path)
    loaded = joblib.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    assert loaded.genotype_ == fitted.genotype_
    # A pipeline too.
    pipe = make_pipeline(FunctionTransformer(), fitted)
    joblib.dump(pipe, tmp_path / "pipe.joblib")
    np.testing.assert_array_equal(
        joblib.load(tmp_path / "pipe.joblib").predict_proba(X), fitted.predict_proba(X)
    )


def _cuda_tagged_dumps(obj, path=None) -> bytes | None:
    """Pickle ``obj`` as if its tensors lived on ``cuda:0`` (the GPU-trained case).

    torch records each storage's device with ``location_tag``; tagging all of
    them "cuda:0" gives the bytes a CUDA machine would write.
    """
    import torch.serialization as ts

    original = ts.location_tag
    ts.location_tag = lambda storage: "cuda:0"
    try:
        return pickle.dumps(obj) if path is None else joblib.dump(obj, path)
    finally:
        ts.location_tag = original


def test_cuda_fixture_really_needs_cuda():
    # Plain unpickling of such bytes fails without CUDA: the fixture is real.
    payload = _cuda_tagged_dumps(torch.ones(3))
    with pytest.raises(RuntimeError, match="CUDA"):
        pickle.loads(payload)


def test_gpu_trained_loads_on_cpu(fitted, data, monkeypatch, tmp_path):
    X, _ = data
    expected = fitted.predict_proba(X)
    gpu = pickle.loads(pickle.dumps(fitted))
    gpu.device_ = "cuda"
    gpu.net_.device = "cuda"
    gpu.final_net_.device = "cuda"
    _cuda_tagged_dumps(gpu, tmp_path / "gpu.joblib")
    # Same as skorch's tests: this machine has no CUDA (also on a GPU runner).
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = joblib.load(tmp_path / "gpu.joblib")
    messages = " ".join(str(w.message) for w in caught)
    assert "device_='cpu'" in messages
    assert loaded.device_ == "cpu"
    for net in (loaded.net_, loaded.final_net_):
        assert torch.device(net.device).type == "cpu"
        assert net.module is net.module_  # one object, as before pickling
    assert next(loaded.final_net_.module_.parameters()).device.type == "cpu"
    np.testing.assert_allclose(loaded.predict_proba(X), expected, atol=1e-6)


# -- resume, interruption -------------------------------------------------------


def test_interrupted_search_resumes_to_same_result(data, tmp_path):
    X, y = data
    params = TINY | {"max_epochs": 3}
    reference = SupernetSearchClassifier(**params).fit(X, y)

    with pytest.warns(UserWarning, match="interrupted after 1 of 3"):
        broken = SupernetSearchClassifier(
            **params, checkpoint_dir=tmp_path, callbacks=[InterruptAt(2, 1)]
        ).fit(X, y)
    # Usable: genotype from where it stopped, supernet predictions, state flagged.
    assert broken.interrupted_ and broken.search_epochs_ == 1
    assert broken.final_net_ is None
    assert broken.predict(X[:5]).shape == (5,)
    assert set(broken.predict(X)) <= set(broken.classes_)
    pickle.loads(pickle.dumps(broken))
    state_file = broken.checkpoint_path_
    assert state_file.is_file() and state_file.parent.parent == tmp_path
    state = SearchCheckpoint.load_state(state_file)
    assert state["epochs_done"] == 1
    assert any(k.startswith("alphas_") for k in state["module"])
    assert state["optimizer"]["state"] and state["optimizer_arch"]["state"]
    assert state["lr_scheduler"]["last_epoch"] == 1
    assert not [p for p in state_file.parent.iterdir() if p.name.endswith(".tmp")]

    resumed = SupernetSearchClassifier(**params, checkpoint_dir=tmp_path).fit(X, y)
    assert resumed.resumed_from_ == 1 and resumed.search_epochs_ == 3
    assert not resumed.interrupted_
    assert resumed.genotype_ == reference.genotype_
    np.testing.assert_allclose(
        resumed.predict_proba(X), reference.predict_proba(X), atol=1e-6
    )
    for key in ("train_loss", "valid_loss", "arch_loss"):
        np.testing.assert_allclose(
            [r[key] for r in resumed.history_ if r["phase"] == "search"],
            [r[key] for r in reference.history_ if r["phase"] == "search"],
            rtol=1e-6,
        )


def test_interrupted_final_training_keeps_what_it_has(data, monkeypatch):
    from skdarts.estimators import _training as _classifier

    X, y = data
    original = _classifier._FinalNet.train_step

    def train_step(net, batch, **kw):
        if len(net.history) == 2:
            raise KeyboardInterrupt
        return original(net, batch, **kw)

    monkeypatch.setattr(_classifier._FinalNet, "train_step", train_step)
    with pytest.warns(UserWarning, match="final training was interrupted after 1 of 2"):
        clf = SupernetSearchClassifier(**TINY | {"final_epochs": 2}).fit(X, y)
    assert clf.interrupted_ and clf.search_epochs_ == 2
    assert clf.final_net_ is not None
    assert clf.predict_proba(X).shape == (len(X), 3)


def test_checkpoint_every_and_other_data_do_not_mix(data, tmp_path):
    X, y = data
    params = TINY | {"max_epochs": 3, "final_epochs": 0}
    a = SupernetSearchClassifier(
        **params, checkpoint_dir=tmp_path, checkpoint_every=2
    ).fit(X, y)
    saved = [r.get("event_cp") for r in a.net_.history]
    assert saved == [False, True, True]  # every 2nd epoch and the last
    b = SupernetSearchClassifier(**params, checkpoint_dir=tmp_path).fit(X[:-3], y[:-3])
    assert b.resumed_from_ == 0
    assert a.checkpoint_path_ != b.checkpoint_path_
    # A completed search re-fits from its checkpoint without searching again.
    c = SupernetSearchClassifier(**params, checkpoint_dir=tmp_path).fit(X, y)
    assert c.resumed_from_ == 3
    np.testing.assert_allclose(c.predict_proba(X), a.predict_proba(X), atol=1e-6)


def test_checkpoint_write_is_atomic(fitted, tmp_path, monkeypatch):
    checkpoint = SearchCheckpoint(tmp_path, metadata={"k": 1}).initialize()
    checkpoint.save_model(fitted.net_)
    good = checkpoint.path_.read_bytes()

    def dying_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise KeyboardInterrupt  # e.g. Ctrl-C while writing

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_model(fitted.net_)
    monkeypatch.undo()
    assert checkpoint.path_.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == [checkpoint.path_.name]
    state = SearchCheckpoint.load_state(checkpoint.path_)
    assert state["metadata"] == {"k": 1} and state["epochs_done"] == 2


def test_damaged_checkpoint_gives_clear_error(data, tmp_path):
    X, y = data
    params = TINY | {"max_epochs": 1, "final_epochs": 0}
    clf = SupernetSearchClassifier(**params, checkpoint_dir=tmp_path).fit(X, y)
    clf.checkpoint_path_.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        SupernetSearchClassifier(**params, checkpoint_dir=tmp_path).fit(X, y)


# -- numerical faults -------------------------------------------------------------


def test_huge_learning_rate_stops_with_clear_error(data):
    X, y = data
    clf = SupernetSearchClassifier(**TINY | {"lr": 1e30, "grad_clip": None})
    with pytest.raises(NonFiniteError) as info:
        clf.fit(X, y)
    msg = str(info.value)
    assert "epoch" in msg and "batch" in msg and "learning rate" in msg
    assert "lr=1e+30" in msg
    with pytest.raises(NotFittedError):  # no garbage model left behind
        clf.predict(X)


class PoisonAlphas(Callback):
    def __init__(self, epoch=2, batch=2):
        self.epoch = epoch
        self.batch = batch

    def on_batch_begin(self, net, training=None, **kwargs):
        if training and len(net.history) == self.epoch:
            if len(net.history[-1, "batches"]) == self.batch:
                with torch.no_grad():
                    net.module_.alphas_normal[0, 0] = float("nan")


def test_nan_is_caught_at_its_epoch_and_batch(data):
    X, y = data
    clf = SupernetSearchClassifier(**TINY | {"callbacks": [PoisonAlphas(2, 2)]})
    with pytest.raises(NonFiniteError, match=r"search at epoch 2, training batch 2"):
        clf.fit(X, y)


def test_nan_in_final_training_is_caught(data, monkeypatch):
    from skdarts.estimators import _training as _classifier

    X, y = data
    original = _classifier._FinalNet.train_step

    def train_step(net, batch, **kw):
        step = original(net, batch, **kw)
        step["loss"] = step["loss"] * float("nan")
        return step

    monkeypatch.setattr(_classifier._FinalNet, "train_step", train_step)
    msg = "final training at epoch 1, training batch 1"
    with pytest.raises(NonFiniteError, match=msg):
        SupernetSearchClassifier(**TINY).fit(X, y)


def test_finite_guard_checks_alphas_after_the_step(data):
    from skdarts.search import FiniteGuard

    X, y = data
    clf = SupernetSearchClassifier(**TINY | {"max_epochs": 1, "final_epochs": 0})
    clf.fit(X, y)
    net = clf.net_
    with torch.no_grad():
        net.module_.alphas_reduce[0, 0] = float("inf")
    with pytest.raises(NonFiniteError, match="alphas"):
        FiniteGuard().on_batch_end(net, batch=None, training=True, loss=torch.ones(()))
