"""Warm-starting SupernetSearchClassifier from a prior (zoo entry, path, estimator)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits

from skdarts import SupernetSearchClassifier
from skdarts.estimators._prior import adapt_stem, resolve_prior
from skdarts.supernet import Supernet
from skdarts.zoo import SupernetZoo, save_supernet

TINY = dict(init_channels=2, n_cells=3, n_nodes=1)  # cell 0 normal, 1-2 reduce
FAST = dict(TINY, max_epochs=1, final_epochs=0, batch_size=32, verbose=0)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def prior_net(in_channels=1, n_classes=5, seed=0, **kw):
    torch.manual_seed(seed)
    net = Supernet(**(TINY | {"in_channels": in_channels, "n_classes": n_classes} | kw))
    with torch.no_grad():  # distinctive alphas, far from a fresh init
        net.alphas_normal.copy_(torch.randn_like(net.alphas_normal))
        net.alphas_reduce.copy_(torch.randn_like(net.alphas_reduce))
    return net


@pytest.fixture
def entry(tmp_path):
    return SupernetZoo(tmp_path / "zoo").add(
        "src", prior_net(), metadata={"sources": {"toy": {"n_classes": 5}}}
    )


def _body(state):
    return {k: v for k, v in state.items() if not k.startswith("head.")}


def test_resolved_module_is_the_prior_with_a_new_head(entry):
    fresh = Supernet(**(TINY | {"n_classes": 7}))
    module, source = resolve_prior(entry, fresh)
    prior = entry.load_supernet().state_dict()
    got = module.state_dict()
    for name, tensor in _body(prior).items():
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=0, msg=name)
    assert module.head.out_features == 7 and module.n_classes == 7
    torch.testing.assert_close(module.head.weight, fresh.head.weight)
    assert source["kind"] == "zoo_entry" and source["name"] == "src"
    assert source["sources"] == ["toy"] and source["stem_adapted"] is None


def test_fit_starts_from_the_prior(entry, digits):
    X, y = digits[0][:120].reshape(-1, 8, 8), digits[1][:120]
    prior = entry.load_supernet()
    # Alphas frozen for the whole (1-epoch) search: they must stay the prior's.
    clf = SupernetSearchClassifier(
        warm_start=entry, warm_arch_warmup_epochs=1, random_state=0, **FAST
    ).fit(X, y)
    module = clf.net_.module_.cpu()
    torch.testing.assert_close(module.alphas_normal, prior.alphas_normal)
    torch.testing.assert_close(module.alphas_reduce, prior.alphas_reduce)
    assert module.head.out_features == 10
    assert clf.source_["kind"] == "zoo_entry" and clf.source_["name"] == "src"
    assert clf.genotype_ == prior.genotype()
    # ... and they do move once allowed to (so the check above can fail).
    moved = SupernetSearchClassifier(
        warm_start=entry, warm_arch_warmup_epochs=0, random_state=0, **FAST
    ).fit(X, y)
    assert not torch.equal(moved.net_.module_.cpu().alphas_normal, prior.alphas_normal)
    # A cold search starts elsewhere.
    cold = SupernetSearchClassifier(warm_start=False, random_state=0, **FAST).fit(X, y)
    assert cold.source_ is None
    assert not torch.allclose(
        cold.net_.module_.cpu().alphas_normal, prior.alphas_normal
    )


def test_warm_search_settings(entry, digits):
    X, y = digits[0][:120].reshape(-1, 8, 8), digits[1][:120]
    clf = SupernetSearchClassifier(
        warm_start=entry, lr=0.04, epsilon=0.2, random_state=0, **FAST
    ).fit(X, y)
    groups = clf.net_.optimizer_.param_groups
    assert [g["initial_lr"] for g in groups] == pytest.approx([0.04, 0.04])
    assert sorted(len(g["params"]) for g in groups)[0] == 2  # the head's group
    # The tuned warm-start defaults: no alpha warm-up, the cold ramp's start.
    assert clf.net_.arch_warmup_epochs == 0 and clf.net_.epsilon_start == 0.03
    assert clf.history_[0]["epsilon"] == pytest.approx(0.03)
    cold = SupernetSearchClassifier(warm_start=False, lr=0.04, random_state=0, **FAST)
    cold.fit(X, y)
    assert [g["initial_lr"] for g in cold.net_.optimizer_.param_groups] == [0.04]
    assert cold.net_.arch_warmup_epochs == 0
    custom = SupernetSearchClassifier(
        warm_start=entry,
        warm_lr=0.003,
        warm_epsilon_start=None,
        warm_arch_warmup_epochs=1,
        random_state=0,
        **FAST,
    ).fit(X, y)
    lrs = sorted(g["initial_lr"] for g in custom.net_.optimizer_.param_groups)
    assert lrs == pytest.approx([0.003, 0.025])
    assert custom.history_[0]["epsilon"] == pytest.approx(
        custom.epsilon
    )  # None: epsilon at once
    assert custom.net_.arch_warmup_epochs == 1


@pytest.mark.parametrize(("prior_c", "target_c"), [(1, 3), (3, 1)])
def test_grey_rgb_transfer(tmp_path, digits, prior_c, target_c):
    X, y = digits[0][:120].reshape(-1, 8, 8), digits[1][:120]
    prior = prior_net(in_channels=prior_c)
    path = tmp_path / "saved"
    save_supernet(path, prior)
    fresh = Supernet(**(TINY | {"in_channels": target_c, "n_classes": 10}))
    module, source = resolve_prior(str(path), fresh)
    assert source["kind"] == "path" and source["stem_adapted"] == [prior_c, target_c]
    w_p, w_t = prior.stem[0].weight.detach(), module.stem[0].weight.detach()
    assert w_t.shape[1] == target_c
    torch.testing.assert_close(w_t, adapt_stem(w_p, target_c))
    # The stem responds to grey content as the prior did.
    grey = torch.randn(2, 1, 8, 8)
    conv = torch.nn.functional.conv2d
    out_p = conv(grey.expand(-1, prior_c, -1, -1), w_p, padding=1)
    out_t = conv(grey.expand(-1, target_c, -1, -1), w_t, padding=1)
    torch.testing.assert_close(out_t, out_p)
    # And the estimator fits on images of that channel count (and another size).
    Xc = np.repeat(X[:, None], target_c, axis=1)[:, :, 1:7, 1:7]
    clf = SupernetSearchClassifier(warm_start=path, random_state=0, **FAST)
    clf.fit(Xc, y)
    assert clf.source_["stem_adapted"] == [prior_c, target_c]
    assert clf.net_.module_.stem[0].weight.shape[1] == target_c
    assert clf.predict(Xc[:3]).shape == (3,)


def test_rgb_to_grey_sums_channels():
    w = torch.arange(2 * 3 * 1 * 1, dtype=torch.float32).reshape(2, 3, 1, 1)
    assert adapt_stem(w, 1).flatten().tolist() == [3.0, 12.0]
    assert adapt_stem(w[:, :1], 3)[1].flatten().tolist() == [1.0, 1.0, 1.0]


def test_incompatible_prior_names_both_configs(entry, digits):
    X, y = digits[0][:120].reshape(-1, 8, 8), digits[1][:120]
    clf = SupernetSearchClassifier(warm_start=entry, **(FAST | {"init_channels": 4}))
    with pytest.raises(ValueError, match=r"\['init_channels'\] differ") as info:
        clf.fit(X, y)
    msg = str(info.value)
    assert "'init_channels': 2" in msg and "'init_channels': 4" in msg
    with pytest.raises(ValueError, match=r"\['search_space', 'n_nodes'\]"):
        SupernetSearchClassifier(
            warm_start=entry, search_space="s2", **(FAST | {"n_nodes": 2})
        ).fit(X, y)


def test_fitted_estimator_and_supernet_priors(digits):
    X, y = digits[0][:120].reshape(-1, 8, 8), digits[1][:120]
    first = SupernetSearchClassifier(warm_start=False, random_state=0, **FAST)
    first.fit(X, y % 3)
    second = SupernetSearchClassifier(
        warm_start=first, warm_arch_warmup_epochs=1, random_state=1, **FAST
    )
    second.fit(X, y)
    assert second.source_["kind"] == "estimator"
    assert second.source_["n_classes"] == 3
    torch.testing.assert_close(
        second.net_.module_.alphas_normal, first.net_.module_.alphas_normal
    )
    assert second.net_.module_.head.out_features == 10
    assert first.net_.module_.head.out_features == 3  # the prior is untouched
    _, source = resolve_prior(prior_net(), Supernet(**TINY))
    assert source["kind"] == "supernet"
    with pytest.raises(ValueError, match="unfitted SupernetSearchClassifier"):
        SupernetSearchClassifier(warm_start=SupernetSearchClassifier(), **FAST).fit(
            X, y
        )
    with pytest.raises(TypeError, match="got int"):
        SupernetSearchClassifier(warm_start=3, **FAST).fit(X, y)
    with pytest.raises(FileNotFoundError, match="no saved supernet"):
        SupernetSearchClassifier(warm_start="/nonexistent/prior", **FAST).fit(X, y)


def test_estimator_holding_an_entry_clones_and_pickles(entry, digits):
    X, y = digits[0][:120].reshape(-1, 8, 8), digits[1][:120]
    clf = SupernetSearchClassifier(warm_start=entry, random_state=0, **FAST)
    copy = clone(clf)
    assert copy.warm_start.name == "src"
    clf.fit(X, y)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict(X[:5]), clf.predict(X[:5]))


def test_default_zoo_warm_start_works_out_of_the_box(digits):
    X, y = digits[0][:120].reshape(-1, 8, 8), digits[1][:120]
    clf = SupernetSearchClassifier(
        warm_start=SupernetZoo.default()["multi"],
        max_epochs=1,
        final_epochs=0,
        verbose=0,
        random_state=0,
    )
    clf.fit(X[:64], y[:64])
    assert clf.source_["name"] == "multi"
    assert {"fashion_mnist", "mnist", "letters"} <= set(clf.source_["sources"])
    # Digits (8x8) are resampled to the size the entry was trained at.
    assert clf.input_size_ == tuple(
        SupernetZoo.default()["multi"].provenance["common_input"]["image_size"]
    )
    assert clf.predict(X[:4]).shape == (4,)


DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _epochs_to(history, threshold):
    accs = [row["valid_acc"] for row in history if row["phase"] == "search"]
    for i, acc in enumerate(accs, start=1):
        if acc >= threshold:
            return i, accs
    return None, accs


@pytest.mark.slow
def test_warm_start_reaches_the_accuracy_in_fewer_epochs():
    """Digits (8x8, 1,000 images) warm from the shipped zoo's MNIST entry vs cold.

    Accuracy is the supernet's on the architecture split, every epoch. Measured
    once on a busy 2-core machine (random_state=0): warm 0.562, 0.726, 0.878,
    0.886, ... vs cold 0.104, 0.338, 0.792, 0.858, ...: 0.7 is reached at epoch
    2 warm, 3 cold (0.85: 3 vs 4); cold ends a little higher with this small
    prior (0.932 vs 0.944 at epoch 8).
    """
    X, y = load_digits(return_X_y=True)
    rng = np.random.RandomState(0)
    idx = rng.permutation(len(y))[:1000]
    X, y = X[idx], y[idx]
    params = dict(max_epochs=8, final_epochs=0, verbose=0, random_state=0)
    warm = SupernetSearchClassifier(
        warm_start=SupernetZoo.default()["mnist"], **params
    ).fit(X, y)
    cold = SupernetSearchClassifier(warm_start=False, **params).fit(X, y)
    threshold = 0.7
    e_warm, acc_warm = _epochs_to(warm.history_, threshold)
    e_cold, acc_cold = _epochs_to(cold.history_, threshold)
    print(f"warm accuracies {np.round(acc_warm, 3).tolist()} -> epoch {e_warm}")
    print(f"cold accuracies {np.round(acc_cold, 3).tolist()} -> epoch {e_cold}")
    assert e_warm is not None
    assert e_cold is None or e_warm < e_cold


@pytest.mark.parametrize(
    "warm_start, error, match",
    [
        ("no/such/prior", FileNotFoundError, r"warm_start='no/such/prior': no saved"),
        (3, TypeError, r"warm_start must be .*ZooEntry.*; got int \(3\)"),
        ({"path": "x"}, TypeError, r"got dict"),
        (SupernetSearchClassifier(), ValueError, r"unfitted SupernetSearchClassifier"),
    ],
    ids=["missing-path", "int", "dict", "unfitted-estimator"],
)
def test_warm_start_is_validated_before_any_work(warm_start, error, match, tmp_path):
    X = np.zeros((4, 8, 8), dtype=np.float32)
    clf = SupernetSearchClassifier(warm_start=warm_start, checkpoint_dir=tmp_path)
    with pytest.raises(error, match=match):
        clf.fit(X, [0, 1, 0, 1])
    assert list(tmp_path.iterdir()) == []  # nothing was started
