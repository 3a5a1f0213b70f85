"""End to end: OTSourceSelector -> SupernetSearchClassifier on a real zoo.

Needs ``skdarts.zoo`` (the zoo issue); skipped until it is merged. The zoo is
built in ``tmp_path`` through the contract's API
(``zoo.add(name, supernet, signatures={source: signature_fn(X, y)})``).
"""

import joblib
import numpy as np
import pytest
import torch
from _tiny import tiny
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline

from skdarts import OTSourceSelector, Supernet, SupernetSearchClassifier
from skdarts.similarity import signature_fn

zoo_module = pytest.importorskip(
    "skdarts.zoo", reason="skdarts.zoo (issue 3, SupernetZoo) is not merged yet"
)

TINY = tiny(batch_size=32)
ARCH = {k: TINY[k] for k in ("init_channels", "n_cells", "n_nodes", "search_space")}


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(return_X_y=True)
    X = X.reshape(-1, 8, 8)
    keep = y < 4
    return X[keep], y[keep]


@pytest.fixture(scope="module")
def zoo(data, tmp_path_factory):
    X, y = data
    src_X, src_y = X[200:], y[200:]
    zoo = zoo_module.SupernetZoo(tmp_path_factory.mktemp("zoo") / "zoo")
    sources = {
        "digits": src_X,
        "inverted": 16 - src_X,
        "rotated": np.rot90(src_X, axes=(1, 2)).copy(),
    }
    for i, (name, images) in enumerate(sources.items()):
        torch.manual_seed(i)
        zoo.add(
            name,
            Supernet(in_channels=1, n_classes=4, **ARCH),
            metadata={"note": "test entry"},
            signatures={name: signature_fn(images, src_y)},
        )
    return zoo


def _pipe(zoo, **selector):
    return make_pipeline(
        OTSourceSelector(zoo, random_state=0, **selector),
        SupernetSearchClassifier(**TINY),
    )


def test_fit_predict_warm_starts_from_the_selected_entry(zoo, data):
    X, y = data
    pipe = _pipe(zoo).fit(X[:120], y[:120])
    assert pipe[0].selected_ == ["digits"]
    assert pipe[0].ranking_[0] == "digits"
    assert pipe[-1].source_ is not None  # warm-started, not from scratch
    assert "digits" in repr(pipe[-1].source_)
    pred = pipe.predict(X[120:150])
    assert pred.shape == (30,) and set(pred) <= set(y)
    cold = clone(pipe).set_params(supernetsearchclassifier__warm_start=False)
    assert cold.fit(X[:120], y[:120])[-1].source_ is None


def test_cross_val_score(zoo, data):
    X, y = data
    scores = cross_val_score(_pipe(zoo), X[:120], y[:120], cv=2)
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))


def test_grid_search_over_both_steps(zoo, data):
    X, y = data
    grid = GridSearchCV(
        _pipe(zoo),
        {
            "otsourceselector__method": ["otdd", "gaussian"],
            "supernetsearchclassifier__lr": [0.05],
        },
        cv=2,
    ).fit(X[:120], y[:120])
    assert set(grid.best_params_) == {
        "otsourceselector__method",
        "supernetsearchclassifier__lr",
    }
    assert grid.best_estimator_[0].selected_ == ["digits"]
    assert grid.predict(X[:5]).shape == (5,)


def test_clone_and_joblib_round_trip(zoo, data, tmp_path):
    X, y = data
    pipe = _pipe(zoo, n_sources=2)
    twin = clone(pipe)
    assert twin.get_params()["otsourceselector__n_sources"] == 2
    assert not hasattr(twin[0], "ranking_")
    pipe.fit(X[:120], y[:120])
    path = tmp_path / "pipe.joblib"
    joblib.dump(pipe, path)
    back = joblib.load(path)
    assert back[0].ranking_ == pipe[0].ranking_
    assert np.array_equal(back.predict(X[120:]), pipe.predict(X[120:]))
    assert np.allclose(back.predict_proba(X[120:]), pipe.predict_proba(X[120:]))
    # The refitted clone repeats the same search (random_state fixed).
    again = clone(pipe).fit(X[:120], y[:120])
    assert np.array_equal(again.predict(X[120:]), pipe.predict(X[120:]))
