"""What a warm start transfers, and that it pays on a small unseen task.

* In a pipeline, the search starts from the selected entry's alphas and body
  weights (checked at the first moment of training, before any step).
* Warm-started from the shipped zoo's ``mnist`` entry, a search on digits
  (a task in no entry) with the head probe beats a search from scratch given
  the same probe after one epoch, for each of three seeds.
"""

import numpy as np
import pytest
import torch
from _tiny import tiny
from sklearn.pipeline import make_pipeline
from skorch.callbacks import Callback

from skdarts import OTSourceSelector, Supernet, SupernetSearchClassifier
from skdarts.data import resize_images
from skdarts.evaluation import HeldOutAccuracy, prepare_heldout
from skdarts.search import HeadProbe
from skdarts.similarity import signature_fn
from skdarts.zoo import SupernetZoo

TINY = tiny(batch_size=32)
ARCH = {k: TINY[k] for k in ("init_channels", "n_cells", "n_nodes", "search_space")}


class StartingPoint(Callback):
    """Copies the module's parameters as training begins (before any step).

    The estimator works on copies of its callbacks, so the copies are kept in
    a class attribute rather than on the instance.
    """

    seen: list = []

    def on_train_begin(self, net, **kwargs):
        params = net.module_.named_parameters()
        self.seen.append({n: p.detach().clone() for n, p in params})


def test_pipeline_search_starts_from_the_selected_entrys_alphas_and_body(
    tmp_path, digits
):
    X, y = digits[0].reshape(-1, 8, 8)[:300], digits[1][:300]
    zoo = SupernetZoo(tmp_path / "zoo")
    priors = {}
    for i, (name, images) in enumerate(
        {
            "digits": X,
            "inverted": 16 - X,
            "noise": np.random.RandomState(0).rand(*X.shape),
        }.items()
    ):
        torch.manual_seed(i)
        net = Supernet(in_channels=1, n_classes=10, **ARCH)
        with torch.no_grad():  # alphas far from uniform, distinct per entry
            for p in net.arch_parameters():
                p.copy_(torch.randn_like(p) * (i + 1))
        zoo.add(name, net, signatures={name: signature_fn(images, y)})
        priors[name] = net
    StartingPoint.seen.clear()
    pipe = make_pipeline(
        OTSourceSelector(zoo, random_state=0),
        SupernetSearchClassifier(**TINY, callbacks=[("start", StartingPoint())]),
    ).fit(X[:200], y[:200])
    # The search's first fit; the final training of the derived net comes after.
    start = StartingPoint.seen[0]
    chosen = pipe[0].selected_[0]
    assert chosen == "digits"
    prior = dict(priors[chosen].named_parameters())
    compared = 0
    for name, value in start.items():
        if name.startswith("head."):
            continue  # rebuilt for the target's classes
        torch.testing.assert_close(value, prior[name].detach(), rtol=0, atol=0)
        compared += 1
    assert compared == len(prior) - 2  # every body tensor and every alpha
    assert any(n.startswith("alphas_") for n in start)
    # Not merely equal to any entry: the other entries' alphas differ.
    other = dict(priors["noise"].named_parameters())
    assert not torch.equal(start["alphas_reduce"], other["alphas_reduce"])


@pytest.fixture(scope="module")
def mnist_entry():
    entry = SupernetZoo.default()["mnist"]
    shape = entry.provenance["sources"]["mnist"]["trained_shape"]
    return entry, tuple(shape[1:])


def _upsample(images, size):
    return resize_images(images[:, None], size)[:, 0]


def test_warm_probe_beats_scratch_probe_at_epoch_one(digits, mnist_entry):
    entry, size = mnist_entry
    X = _upsample(digits[0].reshape(-1, 8, 8) / 16.0, size)
    y = digits[1]
    rng = np.random.RandomState(0)
    order = rng.permutation(len(y))
    fit, held = order[:300], order[300:700]
    heldout = prepare_heldout(X[fit], X[held], y[fit], y[held])
    cfg = entry.config
    wins = []
    for seed in range(3):
        accs = {}
        for kind in ("scratch_probe", "warm"):
            callbacks = [("heldout", HeldOutAccuracy(*heldout))]
            if kind == "scratch_probe":
                callbacks.insert(0, ("head_probe", HeadProbe()))
            clf = SupernetSearchClassifier(
                init_channels=cfg["init_channels"],
                n_cells=cfg["n_cells"],
                n_nodes=cfg["n_nodes"],
                search_space=cfg["search_space"],
                warm_start=entry if kind == "warm" else False,
                max_epochs=1,
                final_epochs=0,
                verbose=0,
                device="cpu",
                random_state=seed,
                callbacks=callbacks,
            ).fit(X[fit], y[fit])
            accs[kind] = clf.net_.history[0, "heldout_acc"]
        wins.append(accs["warm"] - accs["scratch_probe"])
    # Every seed: the transferred body is worth more than a probe on random
    # features, by a margin well above one held-out image (0.25 points).
    assert min(wins) > 0.02, wins


@pytest.fixture(scope="module")
def entry_12(tmp_path_factory, digits):
    """A zoo entry pretrained on 12x12 images (recorded in its provenance)."""
    X = _upsample(digits[0].reshape(-1, 8, 8)[:120] / 16.0, (12, 12))
    zoo = SupernetZoo(tmp_path_factory.mktemp("zoo12") / "zoo")
    return zoo.pretrain(
        {"d12": (X, digits[1][:120])},
        max_epochs=1,
        init_channels=2,
        n_cells=1,
        n_nodes=1,
        search_space="s2",
        verbose=0,
        random_state=0,
    )[0]


class InputShape(Callback):
    seen: list = []

    def on_batch_begin(self, net, batch=None, **kwargs):
        self.seen.append(tuple(batch[0].shape[1:]))


def test_image_size_prior_resamples_to_the_entrys_size(entry_12, digits):
    X = _upsample(digits[0].reshape(-1, 8, 8)[:160] / 16.0, (28, 28))
    y = digits[1][:160]
    InputShape.seen.clear()
    clf = SupernetSearchClassifier(
        **TINY, warm_start=entry_12, callbacks=[("shape", InputShape())]
    ).fit(X, y)
    assert clf.input_size_ == (12, 12)
    assert clf.image_shape_ == (1, 28, 28)  # what predict-time inputs must be
    assert set(InputShape.seen) == {(1, 12, 12)}
    # Predictions resample the same way: equal to predicting pre-resized data
    # through an estimator that sees 12x12 natively.
    proba = clf.predict_proba(X[:20])
    module = clf._predicting_net().module_.eval()
    small = _upsample(X[:20], (12, 12))
    small = (small[:, None] - clf.pixel_mean_[None, :, None, None]) / (
        clf.pixel_std_[None, :, None, None]
    )
    with torch.no_grad():
        direct = torch.softmax(module(torch.from_numpy(small.astype(np.float32))), 1)
    np.testing.assert_allclose(proba, direct.numpy(), rtol=1e-4, atol=1e-5)


def test_image_size_none_and_explicit(entry_12, digits):
    X = digits[0].reshape(-1, 8, 8)[:160] / 16.0
    y = digits[1][:160]
    native = SupernetSearchClassifier(**TINY, warm_start=entry_12, image_size=None)
    assert native.fit(X, y).input_size_ is None
    InputShape.seen.clear()
    explicit = SupernetSearchClassifier(
        **TINY, image_size=10, callbacks=[("shape", InputShape())]
    ).fit(X, y)
    assert explicit.input_size_ == (10, 10)
    assert set(InputShape.seen) == {(1, 10, 10)}
    assert explicit.predict(X[:5]).shape == (5,)
    # Without a prior, "prior" keeps the inputs' own size.
    assert SupernetSearchClassifier(**TINY).fit(X, y).input_size_ is None


@pytest.mark.parametrize("bad", ["big", 0, (3,), 2.5])
def test_image_size_errors_name_the_parameter(bad, digits):
    X, y = digits[0][:60], digits[1][:60]
    clf = SupernetSearchClassifier(**TINY, image_shape=(8, 8), image_size=bad)
    with pytest.raises((TypeError, ValueError), match="image_size"):
        clf.fit(X, y)
