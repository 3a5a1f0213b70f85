"""The search layer: its configuration, the net it builds, its contracts.

The bilevel step itself is exercised through the estimator (test_core,
test_faults, test_step_graphs); here are the parts of ``skdarts.search`` that
stand on their own.
"""

from __future__ import annotations

import dataclasses
import pickle
import warnings

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback, LRScheduler
from skorch.dataset import Dataset
from skorch.helper import predefined_split

import skdarts
from skdarts import SupernetSearchClassifier
from skdarts.search import (
    NonFiniteError,
    SearchableSupernet,
    SearchCheckpoint,
    SearchConfig,
    SearchNet,
    build_search_net,
    perturb_arch_weights,
    stratified_split,
    unwrap_supernet,
)
from skdarts.supernet import Supernet
from skdarts.zoo import SEARCH_DEFAULTS

SMALL = dict(init_channels=2, n_cells=1, n_nodes=1, max_epochs=1, batch_size=8)


def _arch_split(n=8):
    X = np.random.RandomState(0).rand(n, 1, 6, 6).astype(np.float32)
    return predefined_split(Dataset(X, np.arange(n) % 2))


# -- smoothing ------------------------------------------------------------------


def test_perturbation_stays_on_the_simplex_within_epsilon():
    w = torch.softmax(torch.randn(14, 8), dim=-1)
    (p,) = perturb_arch_weights([w], 0.05, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(p.sum(-1), torch.ones(14))
    assert (p >= 0).all()
    assert not p.requires_grad


# -- one configuration ------------------------------------------------------------


def test_estimator_defaults_come_from_the_search_config():
    params = SupernetSearchClassifier().get_params()
    defaults = SearchConfig.defaults()
    assert set(defaults) <= set(params)
    for key, value in defaults.items():
        assert params[key] == value, key


def test_pretraining_accepts_the_config_with_its_defaults():
    defaults = SearchConfig.defaults()
    shared = {k: v for k, v in SEARCH_DEFAULTS.items() if k in defaults}
    assert shared == {k: defaults[k] for k in shared}
    # PC-DARTS, checkpointing and CUDA graphs are not offered (the stored
    # provenance lists the parameters); how the data is read and where the
    # search runs are not search parameters.
    assert not {"partial_channels", "checkpointing", "cuda_graphs"} & set(
        SEARCH_DEFAULTS
    )
    assert set(SEARCH_DEFAULTS) - set(defaults) == {
        "image_shape",
        "device",
        "random_state",
    }


def test_config_is_frozen_and_picks_its_parameters():
    config = SearchConfig.from_params({"lr": 0.1, "verbose": 3, "n_cells": 2})
    assert config.lr == 0.1 and config.n_cells == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 1.0  # type: ignore[misc]
    net = config.make_supernet(in_channels=3, n_classes=4)
    assert net.config()["n_cells"] == 2 and net.config()["in_channels"] == 3


def test_build_search_net_sets_both_optimizers_and_the_schedule():
    config = SearchConfig(**SMALL, lr=0.05, lr_min=0.002, arch_lr=0.01)
    marker = Callback()
    net = build_search_net(
        config,
        config.make_supernet(1, 2),
        train_split=_arch_split(),
        callbacks=[("marker", marker)],
        verbose=0,
    ).initialize()
    names = [name for name, _ in net.callbacks_]
    # The scheduler first: a checkpoint after it saves the epoch's step.
    assert names.index("lr_scheduler") < names.index("marker")
    scheduler = dict(net.callbacks_)["lr_scheduler"]
    assert isinstance(scheduler, LRScheduler)
    assert scheduler.kwargs == {"T_max": 1, "eta_min": 0.002}
    assert isinstance(net.optimizer_, torch.optim.SGD)
    assert net.optimizer_.param_groups[0]["lr"] == 0.05
    arch = net.optimizer_arch_.param_groups[0]
    assert arch["lr"] == 0.01 and arch["betas"] == (0.5, 0.999)
    alphas = {id(p) for p in net.module_.arch_parameters()}
    assert {id(p) for p in arch["params"]} == alphas
    assert not alphas & {id(p) for p in net.optimizer_.param_groups[0]["params"]}


@pytest.mark.parametrize(
    ("options", "fused"),
    [
        ({}, True),
        ({"optimizer__foreach": False}, None),
        ({"optimizer__fused": False}, False),
        ({"optimizer": torch.optim.RMSprop}, None),  # takes no ``fused``
        # A setting the fused kernels refuse (at the first step): the loop.
        ({"optimizer__differentiable": True}, None),
    ],
)
def test_weight_optimizer_is_fused_on_the_cpu_unless_the_user_chose(options, fused):
    config = SearchConfig(**SMALL)
    net = build_search_net(
        config, config.make_supernet(1, 2), train_split=_arch_split(), verbose=0
    )
    net.set_params(**options).initialize()
    assert net.optimizer_.param_groups[0].get("fused") == fused


def test_fused_weight_step_matches_the_default_one():
    """The fused SGD update is PyTorch's loop's, up to rounding."""
    config = SearchConfig(**SMALL)
    trained = []
    for options in ({}, {"optimizer__fused": False}):
        torch.manual_seed(0)
        net = build_search_net(
            config, config.make_supernet(1, 2), train_split=_arch_split(), verbose=0
        )
        net.set_params(**options).initialize()
        start = [p.detach().clone() for p in net.module_.parameters()]
        net.history.new_epoch()
        net._arch_batches = iter(
            [(torch.ones(4, 1, 8, 8), torch.tensor([0, 1, 0, 1]))] * 3
        )
        batch = (
            torch.linspace(-1, 1, 4 * 64).view(4, 1, 8, 8),
            torch.tensor([1, 0, 1, 0]),
        )
        for _ in range(3):
            net.history.new_batch()
            net.train_step(batch)
        params = [p.detach().clone() for p in net.module_.parameters()]
        # The steps did update the weights (else equal would mean nothing).
        assert any(not torch.equal(a, b) for a, b in zip(start, params))
        trained.append(params)
    for a, b in zip(*trained):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_stratified_split_keeps_every_class_on_both_sides():
    y = np.array([0] * 5 + [1] * 2 + [2] * 9)
    w, a = stratified_split(y, 0.5, np.random.RandomState(0))
    assert sorted(np.concatenate([w, a]).tolist()) == list(range(len(y)))
    for cls, n in ((0, 5), (1, 2), (2, 9)):
        n_arch = int((y[a] == cls).sum())
        assert 1 <= n_arch <= n - 1
        assert n_arch == min(max(round(0.5 * n), 1), n - 1)
    again = stratified_split(y, 0.5, np.random.RandomState(0))
    assert all(np.array_equal(p, q) for p, q in zip((w, a), again))


def test_stratified_split_leaves_each_side_a_sample():
    y = np.array([0, 1, 2])  # singletons: all on one side by rounding
    for fraction in (0.9, 0.1):
        w, a = stratified_split(y, fraction, np.random.RandomState(0))
        assert len(w) >= 1 and len(a) >= 1


# -- contracts ----------------------------------------------------------------


def test_supernet_satisfies_the_contract_and_unwraps_to_itself():
    module = Supernet(init_channels=2, n_cells=1, n_nodes=1)
    assert isinstance(module, SearchableSupernet)
    assert not isinstance(torch.nn.Linear(2, 2), SearchableSupernet)
    net = SearchNet(module, verbose=0).initialize()
    assert unwrap_supernet(net) is net.module_


def test_search_net_refuses_a_module_that_is_no_supernet():
    X = np.zeros((8, 4), dtype=np.float32)
    net = SearchNet(
        torch.nn.Linear(4, 2),
        train_split=predefined_split(Dataset(X, np.arange(8) % 2)),
        max_epochs=1,
        verbose=0,
    )
    with pytest.raises(TypeError, match=r"SearchableSupernet.*Linear"):
        net.fit(X, np.arange(8) % 2)


def test_non_finite_error_is_importable_from_the_top_level():
    assert skdarts.NonFiniteError is NonFiniteError
    assert "NonFiniteError" in skdarts.__all__


# -- checkpoints ------------------------------------------------------------------


def test_checkpoint_every_has_the_estimators_name(tmp_path):
    cp = SearchCheckpoint(tmp_path, checkpoint_every=3)
    assert cp.get_params()["checkpoint_every"] == 3
    with pytest.warns(FutureWarning, match="checkpoint_every"):
        old = SearchCheckpoint(tmp_path, every=2)
    assert old.checkpoint_every == 2
    with pytest.raises(ValueError, match="checkpoint_every"):
        SearchCheckpoint(tmp_path, checkpoint_every=0).initialize()


def test_checkpoint_pickled_before_the_rename_loads(tmp_path):
    cp = SearchCheckpoint(tmp_path, checkpoint_every=4)
    state = cp.__dict__.copy()
    state["every"] = state.pop("checkpoint_every")  # as written by 0.1.0.dev0
    old = SearchCheckpoint.__new__(SearchCheckpoint)
    old.__setstate__(state)
    clone = pickle.loads(pickle.dumps(old))
    assert clone.checkpoint_every == 4 and "every" not in clone.__dict__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert clone.get_params()["checkpoint_every"] == 4
