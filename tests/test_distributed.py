"""Distributed runs: joblib on Dask and Ray, one search on Accelerate.

Every cluster here is tiny (2 workers of 1 thread, or 2 CPU processes) and
started and stopped inside its test; each test is bounded in time.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from _tiny import tiny
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import cross_val_score
from skorch.callbacks import Callback
from skorch.dataset import Dataset
from skorch.helper import predefined_split

from skdarts import SupernetSearchClassifier
from skdarts.search import AcceleratedSearchNet
from skdarts.supernet import Supernet

TINY = tiny(batch_size=64)


def _digits(n=120):
    X, y = load_digits(return_X_y=True)
    return X[:n], y[:n]


# ---------------------------------------------------------------------------
# Dask
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_client():
    """A real LocalCluster: 2 worker processes, 1 thread each.

    Processes, not threads: torch's random generator is global to a process,
    so concurrent searches in threads would not repeat the sequential run.
    Workers are forked (not spawned) to start in well under a second.
    """
    dask = pytest.importorskip("dask")
    distributed = pytest.importorskip("dask.distributed")
    with dask.config.set({"distributed.worker.multiprocessing-method": "fork"}):
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            memory_limit="2GiB",
        )
        client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close(timeout=30)


def _task_workers(stream) -> list[str]:
    return [t["worker"] for t in stream.data]


def test_cross_val_score_on_dask_equals_sequential(dask_client):
    from dask.distributed import get_task_stream

    X, y = _digits()
    clf = SupernetSearchClassifier(**TINY)
    sequential = cross_val_score(clf, X, y, cv=2)
    t0 = time.perf_counter()
    with get_task_stream(dask_client) as stream:
        with joblib.parallel_config(backend="dask"):
            on_dask = cross_val_score(clf, X, y, cv=2, n_jobs=2)
    assert time.perf_counter() - t0 < 120
    np.testing.assert_array_equal(on_dask, sequential)
    # The folds really ran as tasks on the cluster's workers.
    assert len(_task_workers(stream)) >= 2


def test_zoo_pretraining_on_dask_equals_sequential(dask_client, tmp_path):
    zoo_module = pytest.importorskip("skdarts.zoo")
    X, y = _digits(160)
    sources = {"low": (X[y < 5], y[y < 5]), "high": (X[y >= 5], y[y >= 5])}
    params = dict(
        init_channels=2, n_cells=1, n_nodes=1, max_epochs=1, verbose=0, random_state=0
    )
    seq_zoo = zoo_module.SupernetZoo(tmp_path / "sequential")
    seq_zoo.pretrain(sources, **params)
    from dask.distributed import get_task_stream

    dask_zoo = zoo_module.SupernetZoo(tmp_path / "dask")
    with get_task_stream(dask_client) as stream:
        with joblib.parallel_config(backend="dask"):
            dask_zoo.pretrain(sources, n_jobs=2, **params)
    assert len(_task_workers(stream)) >= 2
    assert sorted(dask_zoo) == sorted(seq_zoo) == ["high", "low"]
    for name in sources:
        a, b = seq_zoo[name].state_dict(), dask_zoo[name].state_dict()
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


# ---------------------------------------------------------------------------
# Ray
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_cross_val_score_on_ray_equals_sequential():
    """Ray's joblib backend on a local 2-CPU Ray (~30 s: Ray's start-up)."""
    ray = pytest.importorskip(
        "ray", reason="Ray is not installed (pip install 'skdarts[ray]')"
    )
    from ray.util.joblib import register_ray

    X, y = _digits()
    clf = SupernetSearchClassifier(**TINY)
    sequential = cross_val_score(clf, X, y, cv=2)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        register_ray()
        with joblib.parallel_config(backend="ray"):
            on_ray = cross_val_score(clf, X, y, cv=2, n_jobs=2)
    finally:
        ray.shutdown()
    np.testing.assert_array_equal(on_ray, sequential)


# ---------------------------------------------------------------------------
# Accelerate
# ---------------------------------------------------------------------------


@pytest.fixture
def cpu_accelerator():
    accelerate = pytest.importorskip("accelerate")
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    try:
        yield accelerate.Accelerator(cpu=True)
    finally:
        AcceleratorState._reset_state(True)


def _search_params():
    return dict(TINY, n_cells=2, max_epochs=2, batch_size=32)


def test_accelerated_search_equals_plain_search(cpu_accelerator):
    X, y = _digits()
    plain = SupernetSearchClassifier(**_search_params()).fit(X, y)
    accelerated = SupernetSearchClassifier(
        **_search_params(), accelerator=cpu_accelerator
    ).fit(X, y)
    assert isinstance(accelerated.net_, AcceleratedSearchNet)
    assert accelerated.get_params()["accelerator"] is cpu_accelerator
    a, b = plain.net_.module_.state_dict(), accelerated.net_.module_.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    np.testing.assert_array_equal(accelerated.predict_proba(X), plain.predict_proba(X))
    assert accelerated.genotype_ == plain.genotype_
    losses = [[r.get("train_loss") for r in m.history_] for m in (plain, accelerated)]
    assert losses[0] == losses[1]


def test_warm_started_accelerated_search_equals_plain(cpu_accelerator):
    X, y = _digits(200)
    source = SupernetSearchClassifier(**TINY).fit(X[:100], y[:100])
    Xt, yt = X[100:], y[100:] % 3
    plain = SupernetSearchClassifier(**TINY, warm_start=source).fit(Xt, yt)
    accelerated = SupernetSearchClassifier(
        **TINY, warm_start=source, accelerator=cpu_accelerator
    ).fit(Xt, yt)
    assert accelerated.source_ is not None
    np.testing.assert_array_equal(
        accelerated.predict_proba(Xt), plain.predict_proba(Xt)
    )


def test_accelerated_estimator_clones_and_pickles(cpu_accelerator):
    X, y = _digits()
    clf = SupernetSearchClassifier(**TINY, accelerator=cpu_accelerator).fit(X, y)
    # Nothing of the fit stays registered with the user's accelerator.
    assert not cpu_accelerator._models and not cpu_accelerator._optimizers
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict(X), clf.predict(X))
    copy = clone(clf)
    assert copy.accelerator is not None and not hasattr(copy, "net_")
    # The clone's (deep-copied) accelerator trains it the same way.
    np.testing.assert_array_equal(copy.fit(X, y).predict_proba(X), clf.predict_proba(X))


class _InterruptInEpoch2(Callback):
    def on_batch_end(self, net, training=None, **kwargs):
        if training and len(net.history) == 2:
            raise KeyboardInterrupt


def test_accelerated_search_interrupts_and_resumes(cpu_accelerator, tmp_path):
    X, y = _digits(90)
    params = dict(TINY, max_epochs=3, batch_size=16)
    reference = SupernetSearchClassifier(**params).fit(X, y)
    with pytest.warns(UserWarning, match="interrupted after 1 of 3"):
        broken = SupernetSearchClassifier(
            **params,
            checkpoint_dir=tmp_path,
            callbacks=[_InterruptInEpoch2()],
            accelerator=cpu_accelerator,
        ).fit(X, y)
    # A fit stopped mid-epoch leaves nothing registered that would not pickle.
    pickle.loads(pickle.dumps(broken))
    resumed = SupernetSearchClassifier(
        **params, checkpoint_dir=tmp_path, accelerator=cpu_accelerator
    ).fit(X, y)
    assert resumed.resumed_from_ == 1
    np.testing.assert_allclose(
        resumed.predict_proba(X), reference.predict_proba(X), atol=1e-6
    )


def test_accelerated_search_is_silent_with_verbose_0(cpu_accelerator, capsys):
    X, y = _digits(60)
    SupernetSearchClassifier(**TINY, accelerator=cpu_accelerator).fit(X, y)
    assert capsys.readouterr().out == ""


def test_accelerated_search_in_bf16_mixed_precision():
    accelerate = pytest.importorskip("accelerate")
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    try:
        acc = accelerate.Accelerator(cpu=True, mixed_precision="bf16")
        X, y = _digits()
        clf = SupernetSearchClassifier(**TINY, accelerator=acc).fit(X, y)
    finally:
        AcceleratorState._reset_state(True)
    losses = [row["train_loss"] for row in clf.history_]
    assert len(losses) == 2 and np.all(np.isfinite(losses))
    proba = clf.predict_proba(X)
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


def test_accelerator_param_is_validated():
    X, y = _digits(60)
    with pytest.raises((TypeError, ValueError), match="accelerator"):
        SupernetSearchClassifier(**TINY, accelerator="cuda").fit(X, y)


def test_gradient_accumulation_is_rejected():
    accelerate = pytest.importorskip("accelerate")
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    try:
        acc = accelerate.Accelerator(cpu=True, gradient_accumulation_steps=2)
        X, y = _digits(60)
        with pytest.raises(ValueError, match="gradient_accumulation_steps=2"):
            SupernetSearchClassifier(**TINY, accelerator=acc).fit(X, y)
    finally:
        AcceleratorState._reset_state(True)


# -- two CPU processes (gloo), as `accelerate launch --cpu --num_processes 2` --


def _two_process_worker(out_dir: str) -> None:
    """One process of a 2-process search; saves what it ended with."""
    torch.set_num_threads(1)
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    # A forked process would inherit the parent's (single-process) state.
    AcceleratorState._reset_state(True)
    acc = Accelerator(cpu=True)
    rank = acc.process_index
    X, y = _digits(160)
    images = (X.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)
    # A different initialisation on each process: the net must align them.
    torch.manual_seed(100 + rank)
    module = Supernet(
        search_space="s2",
        in_channels=1,
        n_classes=10,
        init_channels=2,
        n_cells=3,
        n_nodes=1,
    )
    start = [a.detach().clone() for a in module.arch_parameters()]
    net = AcceleratedSearchNet(
        module=module,
        accelerator=acc,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.SGD,
        optimizer__lr=0.05,
        optimizer_arch__lr=0.05,
        max_epochs=2,
        batch_size=16,
        train_split=predefined_split(Dataset(images[1::2], y[1::2])),
        iterator_train__shuffle=True,
        classes=np.arange(10),
        verbose=0,
    )
    net.fit(images[::2], y[::2])
    row = net.history[-1]
    # random_state=None, and (unlike forked twins) processes with their own
    # global random state: process 0's draw must be shared (same split).
    np.random.seed(rank)  # noqa: NPY002 (random_state=None reads this one)
    params = dict(_search_params(), random_state=None)
    clf = SupernetSearchClassifier(**params, accelerator=acc).fit(X, y)
    # PC-DARTS (edge weights are alphas too) with activation checkpointing.
    pc = dict(_search_params(), init_channels=4, partial_channels=2)
    pc_clf = SupernetSearchClassifier(**pc, checkpointing=True, accelerator=acc)
    pc_clf.fit(X, y)
    from skdarts.estimators._training import _shared_rng

    shared_draw = _shared_rng(np.random.RandomState(rank)).randint(10**6)
    torch.save(
        {
            "world": acc.num_processes,
            "shared_draw": shared_draw,
            "start": start,
            "alphas": [a.detach().clone() for a in net.module_.arch_parameters()],
            "weights": {k: v.clone() for k, v in net.module_.state_dict().items()},
            "metrics": {k: row[k] for k in ("train_loss", "valid_loss", "valid_acc")},
            "clf_alphas": [
                a.detach().clone() for a in clf.net_.module_.arch_parameters()
            ],
            "clf_proba": clf.predict_proba(X),
            "clf_loss": [r.get("train_loss") for r in clf.history_],
            "pc_alphas": [a.detach() for a in pc_clf.net_.module_.arch_parameters()],
            "pc_proba": pc_clf.predict_proba(X),
        },
        Path(out_dir) / f"rank{rank}.pt",
    )


def _launch_cpu_processes(fn, args, nprocs=2, timeout=240):
    """Run ``fn(*args)`` in ``nprocs`` spawned CPU processes (gloo), bounded.

    Spawned, not forked: a child forked after this process ran OpenMP
    threads (any earlier torch test, unless OMP_NUM_THREADS=1) hangs in
    libgomp. ``fn`` must be a module-level function of a test module.
    """
    from accelerate.utils import PrepareForLaunch, patch_environment
    from torch.multiprocessing import start_processes

    with (
        # The rendezvous file store deletes its file when the group ends.
        tempfile.TemporaryDirectory() as rdv,
        patch_environment(
            world_size=nprocs,
            master_addr="127.0.0.1",
            accelerate_mixed_precision="no",
            accelerate_debug_rdv_file=os.path.join(rdv, "rdv"),
            accelerate_use_cpu="yes",
            gloo_socket_ifname="lo",
        ),
    ):
        ctx = start_processes(
            PrepareForLaunch(fn, debug=True),
            args=args,
            nprocs=nprocs,
            start_method="spawn",
            join=False,
        )
        deadline = time.monotonic() + timeout
        while not ctx.join(timeout=1):
            if time.monotonic() > deadline:
                for p in ctx.processes:
                    p.kill()
                pytest.fail(f"the {nprocs}-process search did not end in {timeout} s")


def test_two_process_search_keeps_alphas_identical(tmp_path):
    pytest.importorskip("accelerate")
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this build")
    _launch_cpu_processes(_two_process_worker, (str(tmp_path),))
    r0, r1 = (torch.load(tmp_path / f"rank{i}.pt", weights_only=False) for i in (0, 1))
    assert r0["world"] == r1["world"] == 2
    # Each process's own random_state=None draw gives way to process 0's.
    assert r0["shared_draw"] == r1["shared_draw"]
    # Different starts, identical ends: the alphas were aligned and kept so.
    assert not torch.equal(r0["start"][0], r1["start"][0])
    for a0, a1, s0 in zip(r0["alphas"], r1["alphas"], r0["start"]):
        assert torch.equal(a0, a1)
        assert not torch.equal(a0, s0)  # they were trained
    for key in r0["weights"]:
        torch.testing.assert_close(
            r0["weights"][key], r1["weights"][key], rtol=0, atol=0, msg=key
        )
    # The history is the same on every process (metrics averaged/gathered).
    assert r0["metrics"] == r1["metrics"]
    # The estimator end to end: same model and predictions everywhere.
    for a0, a1 in zip(r0["clf_alphas"], r1["clf_alphas"]):
        assert torch.equal(a0, a1)
    np.testing.assert_array_equal(r0["clf_proba"], r1["clf_proba"])
    assert r0["clf_loss"] == r1["clf_loss"]
    assert len(r0["pc_alphas"]) == 4  # operation and edge weights, both cell types
    for a0, a1 in zip(r0["pc_alphas"], r1["pc_alphas"]):
        assert torch.equal(a0, a1)
    np.testing.assert_array_equal(r0["pc_proba"], r1["pc_proba"])
