"""CUDA-graph capture of the search step, tested without a GPU.

The capture itself needs CUDA. What the CPU can check is everything around
it, through the emulation of :class:`skdarts.search.graphs.StepGraphs`: static
inputs copied before each replay, one graph per signature (shapes, learning
rates, smoothing radius...), warm-up, eviction, outputs that survive the
next replay, the eager fallbacks with their warnings, and the absence of host
synchronisations in the step (which would make a real capture fail).
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch
from _tiny import tiny
from sklearn.datasets import load_digits
from skorch.callbacks import Callback, GradientNormClipping
from skorch.dataset import Dataset
from skorch.helper import predefined_split

from skdarts import SupernetSearchClassifier
from skdarts.search import SearchNet
from skdarts.search.graphs import CaptureError, StepGraphs, allow_host_sync
from skdarts.supernet import Supernet

# -- StepGraphs on its own -----------------------------------------------------


def _linear_step():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        return {"loss": loss.detach(), "out": model.weight.detach() * 1}

    return model, step


def _batches(n, rows=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(rows, 3, generator=g), torch.randn(rows, 2, generator=g))
        for _ in range(n)
    ]


def test_replays_give_the_eager_results_on_fresh_inputs():
    eager_model, eager_step = _linear_step()
    model, step = _linear_step()
    graphs = StepGraphs(step, warmup=2, emulate=True)
    outs = []
    for i, (x, y) in enumerate(_batches(6)):
        ref = eager_step(x, y)
        out = graphs("k", [x, y])
        # Each replay must read this batch, not the one it was captured on.
        assert torch.equal(out["loss"], ref["loss"]), i
        outs.append(out)
    assert graphs.n_captures == 1
    # Warm-up: batches 1-2; the capture runs batch 3; batches 4-6 are replays.
    assert graphs.n_replays == 3
    assert torch.equal(model.weight, eager_model.weight)
    # Returned outputs are copies: later replays do not overwrite them.
    assert not torch.equal(outs[-2]["out"], outs[-1]["out"])


def test_one_graph_per_signature_and_least_recent_dropped():
    _, step = _linear_step()
    graphs = StepGraphs(step, warmup=1, max_graphs=2, emulate=True)
    for key, rows in [
        ("a", 4),
        ("a", 4),
        ("b", 3),
        ("b", 3),
        ("a", 4),
        ("c", 2),
        ("c", 2),
    ]:
        x, y = _batches(1, rows=rows)[0]
        graphs(key, [x, y])
    assert graphs.n_captures == 3
    assert list(graphs._graphs) == ["a", "c"]  # "b" was the least recently used
    graphs.clear()
    assert not graphs._graphs


def test_a_host_sync_fails_the_capture_not_the_warmup():
    model, _ = _linear_step()

    def step(x):
        loss = model(x).sum()
        return {"big": torch.tensor(float(loss.detach()) > 0)}  # a host sync

    graphs = StepGraphs(step, warmup=1, emulate=True)
    x = torch.randn(2, 3)
    graphs("k", [x])  # eager warm-up: allowed
    with pytest.raises(CaptureError, match="_local_scalar_dense"):
        graphs("k", [x])
    assert not graphs._graphs


def test_allow_host_sync_exempts_a_block():
    model, _ = _linear_step()

    def step(x):
        with allow_host_sync():
            value = float(model(x).sum().detach())
        return {"v": torch.tensor(value)}

    graphs = StepGraphs(step, warmup=0, emulate=True)
    graphs("k", [torch.randn(2, 3)])
    graphs("k", [torch.randn(2, 3)])
    assert graphs.n_captures == 1 and graphs.n_replays == 1


# -- SearchNet ----------------------------------------------------------------


class EmulatedNet(SearchNet):
    _emulate_graphs = True


class Counting(StepGraphs):
    instances: list = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        Counting.instances.append(self)


def _data(n=96, seed=0):
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(X))[:n]
    X = torch.as_tensor(X[idx].reshape(-1, 1, 8, 8) / 16.0, dtype=torch.float32)
    return X, torch.as_tensor(y[idx])


def _net(cls=SearchNet, **kwargs):
    X, y = _data()
    Xa, ya = _data(seed=1)
    params = dict(
        module=Supernet,
        module__search_space="s2",
        module__in_channels=1,
        module__init_channels=2,
        module__n_cells=2,
        module__n_nodes=2,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.SGD,
        optimizer__momentum=0.9,
        lr=0.05,
        max_epochs=3,
        batch_size=20,  # 96 = 4 full batches and one of 16
        train_split=predefined_split(Dataset(Xa, ya)),
        device="cpu",
        verbose=0,
        callbacks=[
            (
                "lr",
                __import__("skorch.callbacks", fromlist=["LRScheduler"]).LRScheduler(
                    policy=torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5
                ),
            )
        ],
    )
    params.update(kwargs)
    return cls(**params), X, y


@pytest.fixture
def counting(monkeypatch):
    Counting.instances = []
    monkeypatch.setattr("skdarts.search.net.StepGraphs", Counting)
    return Counting.instances


@pytest.mark.parametrize("smoothing", ["random", "adversarial", None])
def test_graphed_search_equals_the_eager_search(counting, smoothing):
    """Same seed, same steps: bit for bit the eager search's weights and history."""
    options = dict(smoothing=smoothing, pgd_steps=2, arch_warmup_epochs=1)
    torch.manual_seed(0)
    eager, X, y = _net(**options)
    eager.fit(X, y)
    torch.manual_seed(0)
    graphed, _, _ = _net(EmulatedNet, cuda_graphs=True, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no eager fallback
        graphed.fit(X, y)
    graphs, valid = counting  # the training step's, the validation step's
    # The learning rate halves every epoch and epoch 1 freezes the alphas:
    # each epoch has its own signature, captured after 3 warm-up steps
    # (the last, smaller batch never reaches its capture).
    assert graphs.n_captures == 3
    assert graphs.n_replays == 0  # the capture runs batch 4; batch 5 is smaller
    # Validation (5 batches per epoch) does not depend on the learning rate:
    # one graph, captured in epoch 1, replayed for the full batches after.
    assert (valid.n_captures, valid.n_replays) == (1, 8)
    for (name, a), b in zip(
        eager.module_.state_dict().items(), graphed.module_.state_dict().values()
    ):
        assert torch.equal(a, b), name
    for key in ("train_loss", "valid_loss", "arch_loss", "train_acc"):
        if key == "arch_loss":
            assert eager.history[1:, key] == graphed.history[1:, key]
        else:
            assert eager.history[:, key] == graphed.history[:, key], key
    # A fitted net holds no graph (device memory) and pickles.
    assert graphed._graphs is None
    assert pickle.loads(pickle.dumps(graphed)).cuda_graphs is True


def test_replays_happen_when_a_signature_repeats(counting):
    torch.manual_seed(0)
    X, y = _data(n=200)
    net, _, _ = _net(EmulatedNet, cuda_graphs=True, max_epochs=2, callbacks=[])
    # 10 batches of 20 per epoch; the architecture batches are 20, 20, 20, 20,
    # 16, 20, ...: 8 steps share a signature (warm-up 3, capture 1, replays
    # 4), 2 have a smaller architecture batch. The radius changes per epoch.
    net.fit(X, y)
    graphs, valid = counting
    assert graphs.n_captures == 2
    assert graphs.n_replays == 2 * 4
    assert (valid.n_captures, valid.n_replays) == (1, 4)
    eager, _, _ = _net(max_epochs=2, callbacks=[])
    torch.manual_seed(0)
    eager.fit(X, y)
    assert eager.history[:, "train_loss"] == net.history[:, "train_loss"]


def test_signature_changes_with_everything_a_graph_freezes():
    """On CUDA a replay reuses the captured values: each must be in the key."""
    net, X, y = _net(EmulatedNet, cuda_graphs=True)
    net.initialize()
    net.history.new_epoch()
    tensors = [X[:20], y[:20], X[:20], y[:20]]
    key = net._graph_key(tensors)
    assert net._graph_key([t.clone() for t in tensors]) == key  # data: not in it

    def changed(mutate, restore):
        mutate()
        try:
            return net._graph_key(tensors) != key
        finally:
            restore()

    groups = net.optimizer_.param_groups[0]
    arch = net.optimizer_arch_.param_groups[0]
    assert changed(lambda: groups.update(lr=0.01), lambda: groups.update(lr=0.05))
    assert changed(
        lambda: arch.update(betas=(0.9, 0.9)), lambda: arch.update(betas=(0.9, 0.999))
    )
    assert changed(lambda: net.set_params(grad_clip=1.0), lambda: None)
    assert changed(lambda: net.set_params(smoothing=None), lambda: None)
    net.set_params(smoothing="random", grad_clip=5.0)
    key = net._graph_key(tensors)
    assert net._graph_key([X[:16], y[:16], X[:20], y[:20]]) != key
    assert net._graph_key([X[:20], y[:20]]) != key  # alphas frozen
    net.history.new_epoch()  # the smoothing radius ramps per epoch
    assert net._graph_key(tensors) != key
    key = net._graph_key(tensors)
    # New tensors behind the same names: the graph's pointers would be stale.
    net.optimizer_.load_state_dict(net.optimizer_.state_dict())
    assert net._graph_key(tensors) != key
    key = net._graph_key(tensors)
    first = next(net.module_.parameters())
    first.data = first.data.clone()
    assert net._graph_key(tensors) != key
    key = net._graph_key(tensors)
    first.requires_grad_(False)
    assert net._graph_key(tensors) != key


def test_a_step_that_syncs_falls_back_to_eager_with_a_warning():
    class Syncing(EmulatedNet):
        def get_loss(self, y_pred, y_true, *args, **kwargs):
            loss = super().get_loss(y_pred, y_true, *args, **kwargs)
            if loss > 1e6:  # a data-dependent branch: a host sync
                raise AssertionError
            return loss

    torch.manual_seed(0)
    net, X, y = _net(Syncing, cuda_graphs=True, max_epochs=2, callbacks=[])
    with pytest.warns(
        RuntimeWarning, match="capturing the step failed.*(_local_scalar|is_nonzero)"
    ):
        net.fit(X, y)
    assert len(net.history) == 2
    assert np.isfinite(net.history[-1, "train_loss"])


@pytest.mark.parametrize(
    "case, match",
    [
        ("cpu", "need a CUDA device; got device='cpu'"),
        ("hook", r"\['clip'\] hook on_grad_computed"),
        ("checkpointing", "activation checkpointing"),
    ],
)
def test_uncapturable_setups_run_eagerly_and_say_why(case, match):
    options = dict(cuda_graphs=True, max_epochs=1)
    cls = EmulatedNet
    if case == "cpu":
        cls = SearchNet
    elif case == "hook":
        options["callbacks"] = [("clip", GradientNormClipping(1.0))]
    else:
        options["module__checkpointing"] = True
    net, X, y = _net(cls, **options)
    with pytest.warns(RuntimeWarning, match=match) as record:
        net.fit(X, y)
    # Said once per fit, not once per step.
    assert sum("cuda_graphs=True" in str(w.message) for w in record) == 1
    assert net._graphs is None


def test_a_callback_without_a_grad_hook_keeps_the_graphs(counting):
    class Noting(Callback):
        def on_batch_end(self, net, **kwargs):
            pass

    net, X, y = _net(
        EmulatedNet, cuda_graphs=True, max_epochs=1, callbacks=[("note", Noting())]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        net.fit(X, y)
    assert counting[0].n_captures == 1


def test_arch_optimizer_is_made_capturable_only_for_cuda_graphs():
    net, _, _ = _net(cuda_graphs=True)
    net.initialize()
    assert net.optimizer_arch_.defaults["capturable"] is False  # on the CPU
    net.device = "cuda"  # as on a GPU; the optimizer is only rebuilt
    net.initialize_optimizer()
    assert net.optimizer_arch_.defaults["capturable"] is True
    net.set_params(cuda_graphs=False)
    net.initialize_optimizer()
    assert net.optimizer_arch_.defaults["capturable"] is False
    # An arch optimizer without the option is left alone.
    net, _, _ = _net(
        cuda_graphs=True, optimizer_arch=torch.optim.SGD, optimizer_arch__momentum=0.0
    )
    net.initialize()
    net.device = "cuda"
    net.initialize_optimizer()
    assert "capturable" not in net.optimizer_arch_.defaults


def test_estimator_passes_cuda_graphs_and_keeps_its_checkpoint_key(tmp_path):
    X, y = load_digits(return_X_y=True)
    X, y = X[:80], y[:80]
    clf = SupernetSearchClassifier(**tiny(cuda_graphs=True))
    with pytest.warns(RuntimeWarning, match="need a CUDA device"):
        clf.fit(X, y)
    assert clf.net_.cuda_graphs is True
    # Graphs do not change the search: its checkpoint fingerprint ignores them.
    a = SupernetSearchClassifier(**tiny(cuda_graphs=True))
    b = SupernetSearchClassifier(**tiny())
    for est in (a, b):
        est.classes_ = np.unique(y)
    y_enc = np.searchsorted(np.unique(y), y)
    assert a._fingerprint(X, y_enc) == b._fingerprint(X, y_enc)
    with pytest.raises(ValueError, match="cuda_graphs"):
        SupernetSearchClassifier(cuda_graphs="yes").fit(X, y)


# -- on a real GPU (skipped without CUDA) ----------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
@pytest.mark.parametrize("amp", [None, "bf16"])
def test_real_capture_matches_the_eager_search(counting, amp):
    X, y = _data(n=200)
    nets = []
    for cls, options in [(SearchNet, {}), (SearchNet, {"cuda_graphs": True})]:
        torch.manual_seed(0)
        net, _, _ = _net(
            cls, device="cuda", max_epochs=2, callbacks=[], module__amp=amp, **options
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            net.fit(X, y)
        nets.append(net)
    eager, graphed = nets
    graphs, valid = counting
    assert graphs.n_captures == 2 and graphs.n_replays == 8
    assert valid.n_captures == 1 and valid.n_replays == 4
    assert graphed.optimizer_arch_.defaults["capturable"] is True
    # Same kernels in the same order; only cuDNN's choice of algorithms and
    # atomics in some backward kernels may round differently.
    tol = 5e-2 if amp else 1e-3
    for (name, a), b in zip(
        eager.module_.state_dict().items(), graphed.module_.state_dict().values()
    ):
        assert torch.allclose(a.float(), b.float(), atol=tol, rtol=tol), name
    for key in ("train_loss", "valid_loss"):
        np.testing.assert_allclose(
            eager.history[:, key], graphed.history[:, key], rtol=tol
        )


def test_fp16_supernet_is_refused_by_the_search():
    net, X, y = _net(module__amp="fp16", max_epochs=1)
    with pytest.raises(ValueError, match=r"amp='fp16'.*None or 'bf16'"):
        net.fit(X, y)
