"""Tests for skdarts.evaluation: curve arithmetic, the callback, the comparison."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _tiny import tiny
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_validate
from skorch.history import History

from skdarts import SupernetSearchClassifier
from skdarts.evaluation import (
    STRATEGIES,
    ComparisonResult,
    HeldOutAccuracy,
    LearningCurve,
    WarmStartComparison,
    compare_curves,
    comparison_scoring,
    prepare_heldout,
)
from skdarts.probe import HeadProbe

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

# The shared tiny settings: two epochs make a curve; no final training.
TINY = tiny(
    max_epochs=2,
    final_epochs=0,
    search_space="darts",
    batch_size=64,
    without=("random_state",),
)


# -- curve arithmetic on hand-made curves -----------------------------------------


def test_speedup_from_hand_made_curves():
    scratch = LearningCurve([0.1, 0.3, 0.5, 0.6, 0.6, 0.7], np.arange(1, 7) * 2.0)
    warm = LearningCurve([0.5, 0.72, 0.75, 0.8, 0.8, 0.8], np.arange(1, 7) * 3.0)
    r = compare_curves(scratch, warm)
    assert r["target"] == pytest.approx(0.7)
    assert (r["scratch_epochs"], r["warm_epochs"]) == (6, 2)
    assert r["speedup_epochs"] == pytest.approx(3.0)
    # seconds: scratch 12 s to reach 0.7, warm 6 s -> 2x
    assert r["speedup_seconds"] == pytest.approx(2.0)
    assert r["acc_delta"] == pytest.approx(10.0)
    assert r["reached"] == 1.0


def test_summary_means_the_per_seed_speedups_of_hand_made_curves():
    sec = [1.0, 2.0, 3.0, 4.0]
    result = ComparisonResult(
        seeds=[0, 1],
        curves={
            # seed 0: scratch reaches its final 0.6 at epoch 4, ot at epoch 1;
            # seed 1: scratch reaches 0.4 at epoch 2, ot only at epoch 4.
            "scratch": [
                LearningCurve([0.1, 0.3, 0.5, 0.6], sec),
                LearningCurve([0.2, 0.4, 0.4, 0.4], sec),
            ],
            "ot": [
                LearningCurve([0.6, 0.6, 0.7, 0.7], sec),
                LearningCurve([0.1, 0.2, 0.3, 0.4], sec),
            ],
        },
        sources={"scratch": [None, None], "ot": ["a", "b"]},
        distances=[{}, {}],
    )
    rows = result.per_seed("ot")
    assert [r["speedup_epochs"] for r in rows] == [4.0, 0.5]
    assert [r["acc_delta"] for r in rows] == pytest.approx([10.0, 0.0])
    summary = result.summary("scratch")["ot"]
    assert summary["speedup_epochs"] == pytest.approx((2.25, 1.75))
    assert summary["acc_delta"] == pytest.approx((5.0, 5.0))
    assert summary["reached"] == pytest.approx((1.0, 0.0))


def test_scratch_time_is_when_it_first_reached_its_own_final():
    # Scratch plateaus at epoch 2: it is charged 2 epochs, not its budget of 5.
    scratch = LearningCurve([0.5, 0.8, 0.8, 0.79, 0.8], [1, 2, 3, 4, 5])
    warm = LearningCurve([0.8, 0.8, 0.8, 0.8, 0.8], [1, 2, 3, 4, 5])
    r = compare_curves(scratch, warm)
    assert r["scratch_epochs"] == 2 and r["warm_epochs"] == 1
    assert r["speedup_epochs"] == pytest.approx(2.0)
    assert r["acc_delta"] == pytest.approx(0.0)


def test_never_reached_counts_as_zero_speedup():
    scratch = LearningCurve([0.5, 0.9], [1, 2])
    warm = LearningCurve([0.85, 0.89], [1, 2])
    r = compare_curves(scratch, warm)
    assert r["reached"] == 0.0
    assert r["speedup_epochs"] == 0.0 and r["speedup_seconds"] == 0.0
    assert math.isinf(r["warm_epochs"])
    assert r["acc_delta"] == pytest.approx(-1.0)


def test_overhead_is_charged_to_seconds_not_epochs():
    scratch = LearningCurve([0.2, 0.4, 0.6, 0.8], [1, 2, 3, 4])
    warm = LearningCurve([0.8, 0.8, 0.8, 0.8], [1, 2, 3, 4], overhead_seconds=1.0)
    r = compare_curves(scratch, warm)
    assert r["speedup_epochs"] == pytest.approx(4.0)
    assert r["speedup_seconds"] == pytest.approx(2.0)


def test_tail_averages_the_last_epochs():
    scratch = LearningCurve([0.2, 0.6, 0.8], [1, 2, 3])
    warm = LearningCurve([0.7, 0.7, 0.7], [1, 2, 3])
    assert compare_curves(scratch, warm, tail=1)["reached"] == 0.0
    r = compare_curves(scratch, warm, tail=2)
    assert r["target"] == pytest.approx(0.7)
    assert r["scratch_epochs"] == 3 and r["warm_epochs"] == 1


@pytest.mark.parametrize(
    "acc, sec",
    [([], []), ([0.1, 0.2], [1.0]), ([0.1, 0.2], [2.0, 1.0]), ([0.5], [-1.0])],
)
def test_curve_rejects_bad_input(acc, sec):
    with pytest.raises(ValueError, match=r"accuracy|seconds"):
        LearningCurve(acc, sec)


def test_curve_from_history_needs_heldout_entries():
    with pytest.raises(ValueError, match="HeldOutAccuracy"):
        LearningCurve.from_history([{"dur": 1.0}])
    c = LearningCurve.from_history([{"heldout_acc": 0.5, "dur": 2.0}, {"dur": 1.0}])
    assert c.n_epochs == 1 and c.seconds[0] == 2.0


# -- held-out data and the callback -----------------------------------------------


def test_prepare_heldout_matches_the_estimator(digits):
    X, y = digits[0][:240].reshape(-1, 8, 8), digits[1][:240]
    clf = SupernetSearchClassifier(**TINY, random_state=0).fit(X[:150], y[:150])
    images, labels = prepare_heldout(X[:150], X[150:], y[:150], y[150:])
    np.testing.assert_allclose(images, clf._images(X[150:], reset=False)[0], atol=1e-6)
    np.testing.assert_array_equal(clf.classes_[labels], y[150:])


def test_prepare_heldout_rejects_unseen_labels(digits):
    X = digits[0][:240].reshape(-1, 8, 8)
    with pytest.raises(ValueError, match="y_heldout"):
        prepare_heldout(X[:10], X[10:20], np.zeros(10), np.arange(10))


def test_callback_records_the_accuracy_predict_gives(digits):
    X, y = digits[0][:240].reshape(-1, 8, 8), digits[1][:240]
    Xh, yh = prepare_heldout(X[:160], X[160:], y[:160], y[160:])
    clf = SupernetSearchClassifier(
        **TINY, random_state=0, callbacks=[("heldout", HeldOutAccuracy(Xh, yh))]
    ).fit(X[:160], y[:160])
    history = clf.net_.history
    assert len(history) == 2
    assert history[-1, "heldout_acc"] == pytest.approx(
        accuracy_score(y[160:], clf.predict(X[160:]))
    )
    seconds = [row["train_seconds"] for row in history]
    assert seconds[0] > 0 and seconds[1] > seconds[0]
    assert seconds[-1] == pytest.approx(sum(row["dur"] for row in history))


def test_callback_rejects_bad_heldout_data(digits):
    X, y = digits[0][:240].reshape(-1, 8, 8), digits[1][:240]
    clf = SupernetSearchClassifier(
        **TINY, callbacks=[("heldout", HeldOutAccuracy(np.zeros((3, 8, 8)), [0, 1]))]
    )
    with pytest.raises(ValueError, match="HeldOutAccuracy"):
        clf.fit(X[:50], y[:50])


# -- the comparison, with a small zoo of fitted estimators ------------------------


class DictZoo:
    """The read API of a zoo over fitted estimators (valid warm-start priors)."""

    def __init__(self, entries):
        self.entries = dict(entries)

    def __iter__(self):
        return iter(sorted(self.entries))

    def __len__(self):
        return len(self.entries)

    def __contains__(self, name):
        return name in self.entries

    def __getitem__(self, name):
        return self.entries[name]


class OrderSelector(BaseEstimator):
    """Ranks the zoo's entries by a fixed preference (a stand-in for OT)."""

    def __init__(self, zoo=None, order=(), random_state=None):
        self.zoo = zoo
        self.order = order
        self.random_state = random_state

    def fit(self, X, y=None):
        names = list(self.zoo)
        self.ranking_ = [n for n in self.order if n in names]
        self.distances_ = np.arange(len(self.ranking_), dtype=float)
        return self


@pytest.fixture(scope="module")
def zoo(digits):
    X, y = digits[0][:240].reshape(-1, 8, 8), digits[1][:240]
    fits = {}
    for name, seed in (("a", 1), ("b", 2), ("multi", 3)):
        fits[name] = SupernetSearchClassifier(**TINY, random_state=seed).fit(X, y)
    return DictZoo(fits)


def _comparison(default_zoo, **kw):
    base = SupernetSearchClassifier(**TINY)
    params = dict(
        zoo=kw.pop("zoo", default_zoo),
        strategies=list(STRATEGIES),
        selector=OrderSelector(order=("b", "a")),
        seeds=(0,),
    )
    return WarmStartComparison(base, **(params | kw))


def test_strategies_start_from_the_right_entries(zoo, digits):
    X, y = digits[0][:240].reshape(-1, 8, 8), digits[1][:240]
    cmp = _comparison(zoo, seeds=(0, 1)).fit(X, y)
    res = cmp.result_
    assert res.strategies == list(STRATEGIES)
    assert res.sources["scratch"] == [None, None]
    assert res.sources["scratch_probe"] == [None, None]
    assert "probe_acc" in cmp.estimators_["scratch_probe", 0].net_.history[0]
    assert "probe_acc" not in cmp.estimators_["scratch", 0].net_.history[0]
    assert res.sources["ot"] == ["b", "b"]
    assert res.sources["worst"] == ["a", "a"]
    assert res.sources["multi"] == ["multi", "multi"]
    assert set(res.sources["random"]) <= {"a", "b"}
    for i in range(2):
        finals = {
            n: res.curves[s][i].final_accuracy()
            for s, n in (("ot", "b"), ("worst", "a"))
        }
        assert res.sources["oracle"][i] == max(sorted(finals), key=finals.get)
    # A strategy that starts from the same entry shares the run.
    assert cmp.estimators_["ot", 0] is cmp.estimators_["oracle", 0] or (
        res.sources["oracle"][0] != "b"
    )
    assert cmp.estimators_["ot", 0].source_ is not None
    assert cmp.estimators_["scratch", 0].source_ is None
    assert res.curves["ot"][0].overhead_seconds > 0
    summary = res.summary()
    assert set(summary) == set(STRATEGIES)
    assert summary["oracle"]["regret"][0] == pytest.approx(0.0)
    assert summary["ot"]["regret"][0] >= 0.0
    table = res.table().splitlines()
    # scratch_probe ran, so it is the reference, and the table says so.
    assert res.default_reference == "scratch_probe"
    assert table[0].startswith("against scratch_probe")
    assert "speedup(ep)" in table[1] and "d auc (pt)" in table[1]
    assert res.table("scratch").startswith("against scratch ")
    # Against another reference, that reference's own speedup is 1.
    assert res.summary("scratch_probe")["scratch_probe"]["speedup_epochs"][0] == 1.0


def test_same_seeds_give_the_same_curves(zoo, digits):
    X, y = digits[0][:240].reshape(-1, 8, 8), digits[1][:240]
    cmps = [
        _comparison(zoo, strategies=["scratch", "ot"], seeds=seeds).fit(X, y)
        for seeds in ((0,), (0,), (5,))
    ]
    first, again = cmps[0].result_, cmps[1].result_
    for s in ("scratch", "ot"):
        np.testing.assert_array_equal(
            first.curves[s][0].accuracy, again.curves[s][0].accuracy
        )
    # Another seed is another run (its weights differ; tiny curves may tie).
    a = cmps[0].estimators_["scratch", 0].net_.module_.stem[0].weight
    b = cmps[2].estimators_["scratch", 5].net_.module_.stem[0].weight
    assert not np.allclose(a.detach().numpy(), b.detach().numpy())


def test_cross_validate_compares_strategies_on_the_same_folds(zoo, digits):
    X, y = digits[0][:240].reshape(-1, 8, 8), digits[1][:240]
    cmp = _comparison(zoo, strategies=["scratch", "ot", "multi"])
    scoring = comparison_scoring(["ot", "multi"], ["speedup_epochs", "test_acc"])
    cv = StratifiedKFold(2, shuffle=True, random_state=0)
    out = cross_validate(cmp, X, y, cv=cv, scoring=scoring, return_estimator=True)
    assert len(out["test_ot_test_acc"]) == 2
    for key in scoring:
        assert np.all(np.isfinite(out[f"test_{key}"]))
    # The test-fold accuracy is the fitted strategy's own score on that fold.
    (_, test_idx) = next(cv.split(X, y))
    fitted = out["estimator"][0]
    assert out["test_multi_test_acc"][0] == pytest.approx(
        fitted.estimators_["multi", 0].score(X[test_idx], y[test_idx])
    )
    assert clone(cmp).get_params()["strategies"] == cmp.strategies


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(strategies=["scratch", "nope"]), "unknown"),
        (dict(zoo=None), "zoo"),
        (dict(strategies=["multi"], multi_entry="absent"), "absent"),
        (dict(sources=["zz"]), "zz"),
        (dict(seeds=()), "seeds"),
        (dict(seeds=(1, 1)), "distinct"),
    ],
)
def test_comparison_rejects_bad_parameters(zoo, digits, kw, match):
    X, y = digits[0][:240].reshape(-1, 8, 8), digits[1][:240]
    with pytest.raises(ValueError, match=match):
        _comparison(zoo, **kw).fit(X, y)


def test_scoring_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown"):
        comparison_scoring(["ot"], ["speed"])


# -- the benchmark, end to end ------------------------------------------------------


@pytest.mark.slow
def test_transfer_benchmark_quick(tmp_path):
    if not DATA.is_dir():
        pytest.skip(f"the shared data sets are absent (looked in {DATA})")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "transfer.py"),
            "--quick",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=True,
    )
    lines = out.stdout.strip().splitlines()
    last = lines[-1]
    assert last.startswith("median_speedup=") and " median_acc_delta=" in last
    speedup = float(last.split()[0].split("=")[1])
    # The reported median is the median of the per-target speedups that the
    # table against scratch printed for the reported strategy ("multi").
    start = next(i for i, line in enumerate(lines) if "against scratch" in line)
    header = lines[start + 1].split()
    column = 2 + 2 * [h for h in header if h not in ("x", "dacc")][3:].index("multi")
    rows = []
    for line in lines[start + 2 :]:
        if line.startswith("median"):
            break
        rows.append(float(line.split()[column]))
    assert rows and speedup == pytest.approx(np.median(rows), abs=0.006)
    assert (tmp_path / "transfer_curves.png").stat().st_size > 0


# -- the head probe of a warm start -------------------------------------------------


def test_warm_start_probes_the_head_unless_fresh_is_asked(zoo, digits):
    X, y = digits[0][:240].reshape(-1, 8, 8), digits[1][:240]
    prior = zoo["a"]
    params = dict(TINY, max_epochs=1, random_state=0)
    probed = SupernetSearchClassifier(**params, warm_start=prior).fit(X, y)
    row = probed.net_.history[0]
    assert 0.0 <= row["probe_acc"] <= 1.0 and row["probe_seconds"] > 0
    fresh = SupernetSearchClassifier(**params, warm_start=prior, warm_head="fresh")
    assert "probe_acc" not in fresh.fit(X, y).net_.history[0]
    scratch = SupernetSearchClassifier(**params, warm_start=False).fit(X, y)
    assert "probe_acc" not in scratch.net_.history[0]
    with pytest.raises(ValueError, match="warm_head"):
        SupernetSearchClassifier(**params, warm_head="linear").fit(X, y)


def test_probe_fits_a_head_on_the_prior_features(digits):
    X, y = digits[0][:240].reshape(-1, 8, 8), digits[1][:240]
    base = dict(init_channels=4, n_cells=1, n_nodes=1, final_epochs=0, verbose=0)
    prior = SupernetSearchClassifier(**base, max_epochs=3, random_state=0).fit(X, y)
    warm = SupernetSearchClassifier(
        **base, max_epochs=1, random_state=1, warm_start=prior
    ).fit(X, y)
    # Logistic regression on the prior's features fits the training digits
    # well above chance (10 %) before any search step...
    assert warm.net_.history[0, "probe_acc"] > 0.3
    # ... and the head it leaves predicts what the logistic regression does.
    net = warm.net_
    net.history = History()
    images = warm._images(X, reset=False)[0]
    y_enc = np.searchsorted(warm.classes_, y)
    probe = HeadProbe()
    probe.on_train_begin(net, X=images, y=y_enc)
    net.module_.eval()
    with torch.no_grad():
        pred = net.module_(torch.from_numpy(images)).argmax(1).numpy()
    assert np.mean(pred == y_enc) == pytest.approx(
        probe._pending["probe_acc"], abs=0.02
    )


def test_auc_delta_and_open_ended_reference():
    from skdarts.evaluation import LearningCurve, compare_curves

    still_rising = LearningCurve([0.2, 0.4, 0.6, 0.8], [1, 2, 3, 4])
    plateaued = LearningCurve([0.5, 0.8, 0.8, 0.8], [1, 2, 3, 4])
    warm = LearningCurve([0.7, 0.8, 0.9, 0.9], [1, 2, 3, 4])
    r = compare_curves(still_rising, warm)
    # Mean accuracy 82.5 vs 50 points; the reference reached its final value
    # only in its last epoch, so the epoch ratio (4 / 2) is budget-bound.
    assert r["auc_delta"] == pytest.approx(32.5)
    assert r["open_ended"] == 1.0
    assert r["speedup_epochs"] == pytest.approx(2.0)
    r = compare_curves(plateaued, warm)
    assert r["auc_delta"] == pytest.approx(10.0)  # 82.5 vs 72.5
    assert r["open_ended"] == 0.0
    # Curves of different lengths compare over the epochs both have.
    short = LearningCurve([0.7, 0.8], [1, 2])
    assert compare_curves(plateaued, short)["auc_delta"] == pytest.approx(10.0)
