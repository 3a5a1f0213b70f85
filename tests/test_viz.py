"""Plots render to PNG and draw what they are given."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="plots need the 'plot' extra (matplotlib)")

from sklearn.datasets import load_digits

from skdarts import Genotype, Supernet, SupernetSearchClassifier
from skdarts.viz import (
    OP_LABEL_GID,
    epochs_to_reach,
    plot_alphas,
    plot_distances,
    plot_genotype,
    plot_learning_curves,
)

GENOTYPE = Genotype(
    normal=[
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("skip_connect", 0),
        ("dil_conv_3x3", 2),
        ("max_pool_3x3", 1),
        ("sep_conv_5x5", 3),
        ("avg_pool_3x3", 0),
        ("skip_connect", 4),
    ],
    normal_concat=[2, 3, 4, 5],
    reduce=[
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
        ("dil_conv_5x5", 2),
        ("avg_pool_3x3", 3),
        ("skip_connect", 2),
        ("max_pool_3x3", 4),
    ],
    reduce_concat=[2, 3, 4, 5],
)


def _save(fig, path):
    fig.savefig(path, dpi=60)
    assert path.exists()
    # a blank 60-dpi canvas compresses to well under this
    assert path.stat().st_size > 4000
    return path


@pytest.fixture(scope="module")
def fitted():
    X, y = load_digits(return_X_y=True)
    return SupernetSearchClassifier(
        init_channels=4,
        n_cells=3,
        n_nodes=2,
        max_epochs=3,
        final_epochs=0,
        verbose=0,
        device="cpu",
        random_state=0,
    ).fit(X[:200], y[:200])


def _op_labels(ax):
    return [t.get_text() for t in ax.texts if t.get_gid() == OP_LABEL_GID]


def _patches(ax, gid):
    return [p for p in ax.patches if p.get_gid() == gid]


def test_genotype_draws_one_labelled_edge_per_choice(tmp_path):
    fig = plot_genotype(GENOTYPE)
    _save(fig, tmp_path / "genotype.png")
    normal_ax, reduce_ax = fig.axes
    assert _op_labels(normal_ax) == [op for op, _ in GENOTYPE.normal]
    assert _op_labels(reduce_ax) == [op for op, _ in GENOTYPE.reduce]
    assert len(_patches(normal_ax, "skdarts-edge")) == len(GENOTYPE.normal)
    assert len(_patches(normal_ax, "skdarts-concat")) == len(GENOTYPE.normal_concat)
    nodes = [t.get_text() for t in normal_ax.texts if t.get_gid() == "skdarts-node"]
    assert nodes == ["$c_{k-2}$", "$c_{k-1}$", "0", "1", "2", "3", "$c_{k}$"]


def test_genotype_accepts_estimator_supernet_dict_json_and_given_axes(fitted):
    import matplotlib.pyplot as plt

    for source in (fitted, fitted.genotype_.to_dict(), fitted.genotype_.to_json()):
        fig = plot_genotype(source)
        assert _op_labels(fig.axes[0]) == [op for op, _ in fitted.genotype_.normal]
    net = Supernet("s2", init_channels=2, n_cells=3, n_nodes=3)
    _, ax = plt.subplots()
    fig = plot_genotype(net, ax=ax, cells="reduce")
    assert fig is ax.figure
    assert len(_op_labels(ax)) == 6
    assert set(_op_labels(ax)) <= {"skip_connect", "sep_conv_3x3"}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(genotype=3), "genotype must be"),
        (dict(genotype=GENOTYPE, cells=("normal", "other")), "cells must"),
        (dict(genotype=GENOTYPE, ax=[None, None, None]), "ax must hold 2"),
    ],
)
def test_genotype_bad_input(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        plot_genotype(**kwargs)


def test_alphas_heatmap_and_evolution_from_a_fit(fitted, tmp_path):
    fig = plot_alphas(fitted)
    _save(fig, tmp_path / "alphas.png")
    heat_normal = fig.axes[0]
    weights = np.asarray(fitted.history_[-1]["arch_weights"]["normal"])
    image = heat_normal.get_images()[0]
    np.testing.assert_allclose(image.get_array(), weights)
    assert [t.get_text() for t in heat_normal.get_xticklabels()][:2] == [
        "none",
        "max_pool_3x3",
    ]
    evolution = fig.axes[2]
    lines = [ln for ln in evolution.get_lines() if ln.get_label() != "uniform"]
    assert len(lines) == weights.shape[0]  # one line per edge
    assert all(len(ln.get_xdata()) == 3 for ln in lines)  # one point per epoch


def test_alphas_from_history_supernet_and_dict():
    net = Supernet("s1", init_channels=2, n_cells=3, n_nodes=4)
    fig = plot_alphas(net, kind="heatmap")
    # S1 has per-edge operation pairs: each heatmap cell names its operation
    names = {t.get_text() for t in fig.axes[0].texts}
    assert {"skip_connect", "dil_conv_3x3"} <= names
    history = [{"arch_weights": {"normal": w, "reduce": w}} for w in np.eye(3)[None]]
    assert plot_alphas(history, kind="heatmap", cells="normal").axes
    with pytest.raises(ValueError, match="at least 2 epochs"):
        plot_alphas(history, kind="evolution")
    with pytest.raises(ValueError, match="epoch must index"):
        plot_alphas(history, epoch=5)
    with pytest.raises(ValueError, match="no 'arch_weights'"):
        plot_alphas([{"train_loss": 1.0}])
    with pytest.raises(TypeError, match="plot_alphas needs"):
        plot_alphas(42)


def test_learning_curves_band_baseline_and_speedup(tmp_path, fitted):
    curves = {
        "scratch": [[0.2, 0.4, 0.5, 0.6], [0.3, 0.4, 0.55, 0.6]],
        "warm": [0.5, 0.6, 0.7, 0.72],
        "never": [0.1, 0.2, 0.3, 0.35],
    }
    fig = plot_learning_curves(curves)
    _save(fig, tmp_path / "curves.png")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [
        "scratch",
        "warm (reaches scratch in 2 epochs: 2.0x)",
        "never (does not reach scratch)",
    ]
    assert len(ax.collections) == 1  # the only multi-seed curve gets a band
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [0.25, 0.4, 0.525, 0.6])
    # histories and seconds on the x axis
    fig = plot_learning_curves({"fit": fitted}, x="seconds", baseline=None)
    xs = fig.axes[0].get_lines()[0].get_xdata()
    assert len(xs) == 3 and np.all(np.diff(xs) > 0)
    with pytest.raises(ValueError, match="needs times"):
        plot_learning_curves({"a": [0.1, 0.2]}, x="seconds")
    with pytest.raises(TypeError, match="non-empty dict"):
        plot_learning_curves({})


def test_learning_curves_accept_an_object_with_curves():
    class Result:
        curves_ = {
            "scratch": {"valid_acc": [0.1, 0.5]},
            "ot": {"valid_acc": [0.5, 0.6]},
        }

    fig = plot_learning_curves(Result())
    assert len(fig.axes[0].get_lines()) == 3  # two curves + the target line


def test_epochs_to_reach():
    assert epochs_to_reach([0.1, 0.3, 0.3], 0.3) == 2
    assert epochs_to_reach([0.1], 0.3) == float("inf")


def test_distance_bars_nearest_first_and_heatmap(tmp_path):
    fig = plot_distances(["a", "b", "c"], [0.5, 0.1, 0.9], highlight=["b"])
    _save(fig, tmp_path / "bars.png")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "a", "c"]
    widths = sorted(p.get_width() for p in ax.patches)
    assert widths == [0.1, 0.5, 0.9]
    m = np.array([[0, 1, 2], [1, 0, 3], [2, 3, 0]], dtype=float)
    fig = plot_distances(["a", "b", "c"], m)
    _save(fig, tmp_path / "heat.png")
    np.testing.assert_allclose(fig.axes[0].get_images()[0].get_array(), m)
    assert len(fig.axes[0].texts) == 9
    with pytest.raises(ValueError, match="square"):
        plot_distances(["a", "b"], m)
    with pytest.raises(TypeError, match="OTSourceSelector"):
        plot_distances(["a"])


def test_distances_from_a_fitted_selector_like_object():
    class Selector:
        method = "otdd"
        ranking_ = ["x", "y", "z"]
        distances_ = np.array([0.2, 0.9, np.nan])
        proxy_distances_ = np.array([0.1, 0.3, 0.8])
        selected_ = ["x"]

    fig = plot_distances(Selector())
    ax = fig.axes[0]
    bars = {t.get_text(): None for t in ax.get_yticklabels()}
    assert list(bars) == ["x", "y", "z"]  # the selector's order, not by value
    assert [p.get_width() for p in ax.patches] == [0.2, 0.9, 0.8]
    hatched = [p.get_hatch() for p in ax.patches]
    assert hatched.count("//") == 1  # z: stage-1 bound only
    assert "stage-1" in ax.get_xlabel()


def test_learning_curves_accept_curve_objects_per_seed():
    class Curve:
        def __init__(self, acc, overhead=0.0):
            self.accuracy = np.asarray(acc)
            self.seconds = np.arange(1.0, len(acc) + 1)
            self.overhead_seconds = overhead

    class Comparison:
        curves = {
            "scratch": [Curve([0.2, 0.4, 0.6]), Curve([0.2, 0.4, 0.6, 0.7])],
            "ot": [Curve([0.6, 0.7, 0.8], 0.5), Curve([0.6, 0.7, 0.8], 0.5)],
        }

    fig = plot_learning_curves(Comparison(), x="seconds")
    scratch, ot = fig.axes[0].get_lines()[:2]
    np.testing.assert_allclose(scratch.get_ydata(), [0.2, 0.4, 0.6])
    np.testing.assert_allclose(ot.get_xdata(), [1.5, 2.5, 3.5])
    assert "reaches scratch in 1 epoch: 3.0x" in ot.get_label()


def test_comparison_result_plot_is_a_deprecated_plot_comparison():
    from skdarts.evaluation import ComparisonResult, LearningCurve
    from skdarts.viz import plot_comparison

    result = ComparisonResult(
        seeds=[0],
        curves={"scratch": [LearningCurve([0.3, 0.5], [1.0, 2.0], 0.5)]},
        sources={"scratch": [None]},
        distances=[{}],
    )
    ax = plot_comparison(result, x="seconds")
    assert list(ax.lines[0].get_xdata()) == [1.5, 2.5]  # overhead charged
    with pytest.warns(FutureWarning, match="plot_comparison"):
        old = result.plot()
    assert list(old.lines[0].get_ydata()) == [30.0, 50.0]
