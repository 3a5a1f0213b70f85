"""Issue 16: what a new user meets in the first hour, one test per rough edge."""

from __future__ import annotations

import re
import warnings

import joblib
import numpy as np
import pytest
import torch
from _tiny import tiny
from PIL import Image
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

import skdarts.search.callbacks as callbacks_mod
from skdarts import (
    OTSourceSelector,
    Supernet,
    SupernetSearchClassifier,
    SupernetZoo,
    load_image_folder,
)
from skdarts.cli import main
from skdarts.estimators import SmallDataWarning
from skdarts.similarity import compute_signature, rank_sources, signature_fn

TINY = tiny()


def _folder(root, n=8, size=8, classes=("circle", "cross", "square")):
    """Grey class folders whose classes differ in brightness (Pillow, png)."""
    rng = np.random.RandomState(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(n):
            pixels = rng.randint(0, 60, (size, size)) + 90 * k
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def _zoo(path, X, y):
    """A one-entry zoo whose supernet fits ``TINY``'s configuration."""
    arch = {k: TINY[k] for k in ("init_channels", "n_cells", "n_nodes", "search_space")}
    zoo = SupernetZoo(path)
    zoo.add(
        "near",
        Supernet(in_channels=1, n_classes=3, **arch),
        signatures={"near": signature_fn(X, y)},
    )
    return zoo


# -- 1. a pipeline accepts every input form the classifier accepts --------------


def test_cli_saved_model_predicts_on_paths_and_a_folder(tmp_path, capsys):
    data = _folder(tmp_path / "imgs")
    out = tmp_path / "model.joblib"
    args = ["search", str(data), "--epochs", "1", "--final-epochs", "0"]
    assert main([*args, "--output", str(out), "--verbose", "0"]) == 0
    model = joblib.load(out)
    assert type(model).__name__ == "Pipeline"  # selector + classifier
    paths = sorted(str(p) for p in data.rglob("*.png"))
    assert model.predict(paths).shape == (24,)
    predicted = model.predict(str(data))  # a folder: its files, sorted
    assert predicted.shape == (24,)
    assert set(predicted) <= {"circle", "cross", "square"}
    assert model.predict_proba(paths[:2]).shape == (2, 3)
    assert 0 <= model.score(str(data)) <= 1  # labels from the sub-folders


def test_pipeline_fits_and_scores_every_input_form(tmp_path):
    root = _folder(tmp_path / "imgs")
    X, y, names = load_image_folder(root, verbose=0)
    zoo = _zoo(tmp_path / "zoo", X, y)

    def pipe():
        return make_pipeline(
            OTSourceSelector(zoo, random_state=0), SupernetSearchClassifier(**TINY)
        )

    folder = pipe().fit(str(root))
    assert folder[-1].source_["name"] == "near"  # warm-started from the selection
    assert folder.predict(str(root)).shape == (24,)
    paths = [str(p) for p in sorted(root.rglob("*.png"))]
    labels = np.array([p.split("/")[-2] for p in paths])
    listed = pipe().fit(paths, labels)
    assert listed.score(paths, labels) == folder.score(str(root))
    channels_last = X.transpose(0, 2, 3, 1)
    assert pipe().fit(channels_last, y).predict(channels_last).shape == (24,)
    dataset = torch.utils.data.TensorDataset(
        torch.from_numpy(X), torch.from_numpy(np.searchsorted(names, y))
    )
    assert pipe().fit(dataset).predict(dataset).shape == (24,)
    scores = cross_val_score(pipe(), paths, labels, cv=2)
    assert scores.shape == (2,)


# -- 2. the epoch table keeps its columns in a warm search ------------------------


def _columns(header: str):
    """``(name, start, end)`` of each right-aligned column of the header."""
    spans, start = [], 0
    for m in re.finditer(r"\S+", header):
        spans.append((m.group(), start, m.end()))
        start = m.end()
    return spans


def test_warm_search_table_is_aligned(capsys):
    X, y = _digits()
    prior = SupernetSearchClassifier(**TINY).fit(X, y)
    clf = SupernetSearchClassifier(
        **tiny(
            max_epochs=3,
            final_epochs=0,
            verbose=1,
            warm_start=prior,
            warm_arch_warmup_epochs=1,  # an epoch without alpha steps: blank cells
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallDataWarning)
        clf.fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    top = next(i for i, line in enumerate(lines) if line.split()[:1] == ["epoch"])
    header, rows = lines[top], lines[top + 2 : top + 5]
    rows = [re.sub(r"\x1b\[[0-9;]*m", "", row) for row in rows]  # colours
    columns = _columns(header)
    names = [c[0] for c in columns]
    assert {"arch_loss", "epsilon", "probe_acc", "valid_acc"} <= set(names)
    table = [{name: row[s:e].strip() for name, s, e in columns} for row in rows]
    history = clf.history_
    for row, record in zip(table, history):
        assert row["epoch"] == str(record["epoch"])
        assert float(row["epsilon"]) == pytest.approx(record["epsilon"], abs=1e-4)
        assert float(row["valid_acc"]) == pytest.approx(record["valid_acc"], abs=1e-4)
        if "arch_loss" in record:
            assert float(row["arch_loss"]) == pytest.approx(
                record["arch_loss"], abs=1e-4
            )
        else:
            assert row["arch_loss"] == ""
    # The warm-up epoch holds the alphas still (no arch_loss); later ones don't.
    assert table[0]["arch_loss"] == "" and table[1]["arch_loss"] != ""
    assert table[0]["probe_acc"] != "" and table[1]["probe_acc"] == ""


# -- 3. phases and progress --------------------------------------------------------


def test_phases_are_labelled_and_long_epochs_show_progress(capsys, monkeypatch):
    X, y = _digits()
    monkeypatch.setattr(
        callbacks_mod.BatchProgress.__init__, "__defaults__", (0.0, 2, None)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallDataWarning)
        clf = SupernetSearchClassifier(**tiny(verbose=1, batch_size=8)).fit(X, y)
        captured = capsys.readouterr()
        assert "search from scratch" in captured.out
        assert "final training of the derived network" in captured.out
        assert "epoch 1" in captured.err  # the per-batch bar, on stderr
        warm = SupernetSearchClassifier(**tiny(verbose=1, warm_start=clf))
        warm.fit(X, y)
        assert "warm search from a fitted SupernetSearchClassifier" in (
            capsys.readouterr().out
        )
        SupernetSearchClassifier(**tiny(verbose=0, batch_size=8)).fit(X, y)
    silent = capsys.readouterr()
    assert silent.out == "" and silent.err == ""


def test_short_epochs_show_no_progress_bar():
    bar = callbacks_mod.BatchProgress()
    assert bar.delay > 0 and bar.min_batches > 1
    clf = SupernetSearchClassifier(**tiny(verbose=1))
    assert [name for name, _ in clf._progress_callbacks()] == ["progress_bar"]
    assert SupernetSearchClassifier(**TINY)._progress_callbacks() == []


# -- 4. labels of a folder ------------------------------------------------------------


def test_folder_labels_agree_with_the_model(tmp_path):
    root = _folder(tmp_path / "imgs")
    X, y, names = load_image_folder(root, verbose=0)
    assert y.tolist()[:2] == ["circle", "circle"] and names.tolist()[0] == "circle"
    clf = SupernetSearchClassifier(**TINY).fit(str(root))
    assert clf.score(X, y) == clf.score(str(root))
    with pytest.raises(ValueError, match="y is None"):
        clf.score(X)


# -- 5. small data warns ---------------------------------------------------------------


def test_small_classes_warn_with_advice(tmp_path, capsys):
    X, y = _digits()
    with pytest.warns(SmallDataWarning, match="warm_start from the zoo"):
        SupernetSearchClassifier(**TINY).fit(X[:60], y[:60] % 3)
    big = np.repeat(X[:1], 60, axis=0) + np.random.RandomState(0).rand(60, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallDataWarning)
        SupernetSearchClassifier(**TINY).fit(big, np.arange(60) % 2)
    data = _folder(tmp_path / "imgs")
    main(
        [
            "search",
            str(data),
            "--scratch",
            "--epochs",
            "1",
            "--final-epochs",
            "0",
            "--output",
            str(tmp_path / "m.joblib"),
            "--verbose",
            "0",
        ]
    )
    assert "the holdout has only" in capsys.readouterr().err


# -- 6. one history per phase ---------------------------------------------------


def test_history_per_phase():
    X, y = _digits()
    clf = SupernetSearchClassifier(**tiny(max_epochs=2, final_epochs=3)).fit(X, y)
    assert len(clf.history_) == 5
    assert [r["phase"] for r in clf.search_history_] == ["search"] * 2
    assert [r["phase"] for r in clf.final_history_] == ["final"] * 3
    assert clf.search_history_ + clf.final_history_ == clf.history_


# -- 7. ties in selection -------------------------------------------------------


@pytest.mark.parametrize("order", [("mnist", "multi"), ("multi", "mnist")])
def test_ties_go_to_the_multi_source_entry(order):
    X, y = _digits(n=400)
    target = compute_signature(X[:200], y[:200], max_points=100)
    near = compute_signature(X[200:], y[200:], max_points=100)
    far = compute_signature(16 - X[200:], y[200:], max_points=100)
    rows = {
        "mnist": [("mnist", "m", near)],
        "multi": [("multi", "m", near), ("multi", "f", far)],
    }
    sources = [row for name in order for row in rows[name]]
    ranking = rank_sources(target, sources, shortlist=None)
    assert ranking.names == ["multi", "mnist"]
    assert ranking.distances[0] == ranking.distances[1]


def _digits(n=200):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X[:n], y[:n]
