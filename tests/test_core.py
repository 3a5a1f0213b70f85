"""Core: supernet, the bilevel search and the classifier on arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _tiny import tiny
from sklearn.model_selection import train_test_split
from skorch.callbacks import Callback, EarlyStopping, ProgressBar

from skdarts import DerivedNetwork, Supernet, SupernetSearchClassifier
from skdarts.spaces import DARTS_OPS, get_search_space

# The shared tiny settings, with this module's larger supernet (3 cells, so
# both cell types) and the estimator's own space, batch size and seeding.
TINY = tiny(
    init_channels=4,
    n_cells=3,
    n_nodes=2,
    max_epochs=2,
    search_space="darts",
    batch_size=64,
    without=("random_state",),
)


# -- supernet ------------------------------------------------------------------


def test_alphas_are_registered_parameters_in_state_dict():
    sn = Supernet("s1", 1, 5, init_channels=4, n_cells=3, n_nodes=4)
    sd = sn.state_dict()
    assert sd["alphas_normal"].shape == (14, 2)
    assert sd["alphas_reduce"].shape == (14, 2)
    names = {n for n, _ in sn.named_parameters()}
    assert {"alphas_normal", "alphas_reduce"} <= names
    weight_ids = {id(p) for p in sn.weight_parameters()}
    assert not weight_ids & {id(p) for p in sn.arch_parameters()}
    # a state_dict round trip restores the alphas
    other = Supernet("s1", 1, 5, init_channels=4, n_cells=3, n_nodes=4)
    other.load_state_dict(sd)
    assert torch.equal(other.alphas_normal, sn.alphas_normal)


def test_weight_parameters_and_train_agree_with_torch():
    """The supernet's own walks give what ``named_parameters`` and
    ``Module.train`` give, shared modules and modules with their own
    ``train`` included."""

    class Frozen(torch.nn.BatchNorm2d):
        def train(self, mode=True):  # a module with its own rule
            return super().train(False)

    sn = Supernet("darts", 1, 5, init_channels=4, n_cells=3, n_nodes=2)
    sn.extra = torch.nn.Sequential(sn.stem, Frozen(4))  # shared + own rule
    expected = [p for n, p in sn.named_parameters() if not n.startswith("alphas_")]
    assert [id(p) for p in sn.weight_parameters()] == [id(p) for p in expected]
    assert [n for n, _ in sn.named_weight_parameters()] == [
        n for n, _ in sn.named_parameters() if not n.startswith("alphas_")
    ]
    for mode in (False, True):
        assert sn.train(mode) is sn
        flags = {m: m.training for m in sn.modules()}
        assert flags.pop(sn.extra[1]) is False
        assert set(flags.values()) == {mode}
    assert sn.eval().training is False
    with pytest.raises(ValueError, match="boolean"):
        sn.train("yes")


def test_genotype_prefers_strongest_non_none_operations():
    sn = Supernet("darts", 1, 2, init_channels=4, n_cells=3, n_nodes=2)
    with torch.no_grad():
        sn.alphas_normal.zero_()
        sn.alphas_normal[:, 0] = 10.0  # "none" dominates everywhere: must be ignored
        sn.alphas_normal[3, DARTS_OPS.index("sep_conv_5x5")] = 5.0  # node 1, input 1
        sn.alphas_normal[4, DARTS_OPS.index("dil_conv_3x3")] = 4.0  # node 1, input 2
    g = sn.genotype()
    assert all(op != "none" for op, _ in g.normal)
    assert set(g.normal[2:4]) == {("sep_conv_5x5", 1), ("dil_conv_3x3", 2)}


def test_head_is_separate_and_can_be_rebuilt():
    sn = Supernet("darts", 3, 4, init_channels=4, n_cells=3, n_nodes=2)
    stem = sn.stem[0].weight.clone()
    sn.reset_head(7)
    assert sn.head.out_features == 7
    assert sn(torch.zeros(2, 3, 9, 9)).shape == (2, 7)
    assert torch.equal(sn.stem[0].weight, stem)


@pytest.mark.parametrize("space", ["darts", "s1", "s2", "s3", "s4"])
def test_each_space_builds_trains_one_step_and_discretises(space):
    X = np.random.RandomState(0).rand(24, 1, 8, 8).astype(np.float32)
    y = np.arange(24) % 3
    clf = SupernetSearchClassifier(
        search_space=space,
        init_channels=4,
        n_cells=3,
        n_nodes=4 if space == "s1" else 2,
        max_epochs=1,
        final_epochs=1,
        batch_size=12,
        verbose=0,
        random_state=0,
    )
    before = clf.get_params()
    clf.fit(X, y)
    assert clf.get_params() == before
    assert clf.genotype_.search_space == space
    assert clf.history_[0]["phase"] == "search"
    allowed = {
        op for edge in get_search_space(space).edge_ops("normal", 4) for op in edge
    }
    assert {op for op, _ in clf.genotype_.normal} <= allowed - {"none"}
    assert clf.predict(X).shape == (24,)


def test_derived_network_inherits_the_chosen_operations_weights():
    sn = Supernet("darts", 1, 3, init_channels=4, n_cells=3, n_nodes=2)
    g = sn.genotype()
    net = DerivedNetwork.from_supernet(sn, g)
    op_name, i = g.normal[0]  # node 0: edges 0 (input 0) and 1 (input 1)
    src = sn.cells[0].edges[i].ops[DARTS_OPS.index(op_name)]
    dst = net.cells[0].ops[0]
    dst_state = dst.state_dict()
    for name, tensor in src.state_dict().items():
        assert torch.equal(dst_state[name], tensor), name
    # batch-norm scale/shift, absent while searching, start at identity
    bn_weights = [
        v for k, v in dst_state.items() if k.endswith(".weight") and v.ndim == 1
    ]
    assert all(torch.equal(w, torch.ones_like(w)) for w in bn_weights)
    assert torch.equal(net.head.weight, sn.head.weight)
    assert torch.equal(net.stem[0].weight, sn.stem[0].weight)


# -- classifier ----------------------------------------------------------------


def test_fit_on_digits_clearly_beats_chance(digits):
    X, y = digits
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0)
    clf = SupernetSearchClassifier(
        image_shape=(8, 8),
        init_channels=4,
        n_cells=2,
        n_nodes=2,
        max_epochs=2,
        final_epochs=2,
        verbose=0,
        random_state=0,
    ).fit(Xtr[:600], ytr[:600])
    assert clf.score(Xte, yte) > 0.5  # chance is 0.1
    proba = clf.predict_proba(Xte[:5])
    assert proba.shape == (5, 10)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert [h["phase"] for h in clf.history_] == ["search"] * 2 + ["final"] * 2
    assert {"train_loss", "valid_acc", "dur", "genotype", "epsilon"} <= set(
        clf.history_[0]
    )
    # SmoothDARTS: the radius ramps from 0.03 towards 0.3
    assert clf.history_[0]["epsilon"] == pytest.approx(0.03)
    assert clf.history_[1]["epsilon"] > clf.history_[0]["epsilon"]


@pytest.mark.slow
def test_digits_held_out_accuracy_at_least_090(digits):
    X, y = digits
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0)
    clf = SupernetSearchClassifier(
        image_shape=(8, 8), max_epochs=10, final_epochs=10, verbose=0, random_state=0
    ).fit(Xtr, ytr)
    assert clf.score(Xte, yte) >= 0.90


def test_random_state_makes_cpu_runs_repeatable(digits):
    X, y = digits
    a = SupernetSearchClassifier(**TINY, random_state=3).fit(X[:200], y[:200])
    b = SupernetSearchClassifier(**TINY, random_state=3).fit(X[:200], y[:200])
    assert a.genotype_ == b.genotype_
    np.testing.assert_array_equal(
        a.predict_proba(X[200:260]), b.predict_proba(X[200:260])
    )
    c = SupernetSearchClassifier(**TINY, random_state=4).fit(X[:200], y[:200])
    assert not np.array_equal(a.predict_proba(X[200:260]), c.predict_proba(X[200:260]))


def test_labels_of_any_type_round_trip(digits):
    X, y = digits
    names = np.array(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    )
    clf = SupernetSearchClassifier(**TINY, random_state=0).fit(X[:200], names[y[:200]])
    assert set(clf.classes_) == set(names)
    assert set(clf.predict(X[:20])) <= set(names)


@pytest.mark.parametrize(
    "layout",
    ["flat", "nhw", "nchw", "nhwc"],
)
def test_image_layouts_give_the_same_model(digits, layout):
    X, y = digits
    X, y = X[:120], y[:120]
    images = X.reshape(-1, 8, 8)
    data = {
        "flat": X,
        "nhw": images,
        "nchw": images[:, None],
        "nhwc": images[..., None],
    }[layout]
    ref = SupernetSearchClassifier(**TINY, random_state=0).fit(X, y)
    clf = SupernetSearchClassifier(**TINY, random_state=0).fit(data, y)
    assert clf.image_shape_ == (1, 8, 8)
    np.testing.assert_allclose(clf.predict_proba(data), ref.predict_proba(X), atol=1e-6)


def test_verbose_zero_is_silent_and_verbose_prints(digits, capsys):
    X, y = digits
    SupernetSearchClassifier(**TINY, random_state=0).fit(X[:100], y[:100])
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    SupernetSearchClassifier(**(TINY | {"verbose": 1}), random_state=0).fit(
        X[:100], y[:100]
    )
    assert "valid_acc" in capsys.readouterr().out


def test_user_callbacks_are_used(digits):
    X, y = digits

    class Count(Callback):
        def initialize(self):
            self.epochs = 0
            return self

        def on_epoch_end(self, net, **kwargs):
            self.epochs += 1

    counter = Count()
    clf = SupernetSearchClassifier(
        **(TINY | {"max_epochs": 6}),
        callbacks=[
            ("count", counter),
            EarlyStopping(patience=1, threshold=10.0),
            ProgressBar(),
        ],
        random_state=0,
    ).fit(X[:150], y[:150])
    n_search = sum(h["phase"] == "search" for h in clf.history_)
    assert n_search < 6  # early stopping cut the search short
    assert dict(clf.net_.callbacks_)["count"].epochs == n_search
    assert not hasattr(counter, "epochs")  # the parameter itself is never mutated


def test_adversarial_smoothing_runs(digits):
    X, y = digits
    clf = SupernetSearchClassifier(
        **(TINY | {"max_epochs": 1}), smoothing="adversarial", random_state=0
    ).fit(X[:80], y[:80])
    assert np.isfinite(clf.net_.module_.alphas_normal.detach().numpy()).all()


def test_warm_start_true_continues_from_the_last_fit(digits):
    X, y = digits
    clf = SupernetSearchClassifier(**TINY, random_state=0).fit(X[:150], y[:150])
    alphas = clf.net_.module_.alphas_normal.detach().clone()
    seen = {}

    class Spy(Callback):
        def on_train_begin(self, net, **kwargs):
            seen.setdefault("alphas", net.module_.alphas_normal.detach().clone())

    clf.set_params(warm_start=True, callbacks=[Spy()], max_epochs=1)
    clf.fit(X[:150], y[:150])
    assert clf.source_ == {"kind": "previous_fit"}
    assert torch.equal(seen["alphas"], alphas)
    # and a cold fit does not start there
    seen.clear()
    clf.set_params(warm_start=False).fit(X[:150], y[:150])
    assert not torch.equal(seen["alphas"], alphas)
    assert clf.source_ is None


def test_final_epochs_zero_predicts_with_the_supernet(digits):
    X, y = digits
    clf = SupernetSearchClassifier(**(TINY | {"final_epochs": 0}), random_state=0)
    clf.fit(X[:100], y[:100])
    assert clf.final_net_ is None
    assert clf.predict(X[:10]).shape == (10,)
