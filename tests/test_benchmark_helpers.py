"""The benchmark scripts' own logic: derived targets and selection accounting."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "benchmarks"))

import _runs  # noqa: E402
import transfer  # noqa: E402
import transfer_matrix  # noqa: E402

needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"the shared data sets are absent (looked in {DATA})"
)


@needs_data
def test_derived_targets_are_the_stated_transforms_of_their_base():
    X, y = transfer.load("mnist_5k", "target", 120)
    Xr, yr = _runs.load_target("mnist_rot90", 120)
    np.testing.assert_array_equal(yr, y)
    np.testing.assert_allclose(Xr, np.rot90(X, 1, axes=(1, 2)))
    assert not np.allclose(Xr, X)

    X, y = transfer.load("fashion_mnist", "target", 120)
    Xi, yi = _runs.load_target("fashion_inverted", 120)
    np.testing.assert_array_equal(yi, y)
    np.testing.assert_allclose(Xi, 1.0 - X, atol=1e-6)

    Xl, yl = _runs.load_target("letters_a_to_m", 200)
    assert len(yl) == 200 and set(np.unique(yl)) == set(range(13))
    assert Xl.shape == (200, 16, 16)


def test_digits_blur_loses_detail_but_keeps_labels():
    X, y = transfer.load("digits", "target", 100)
    Xb, yb = _runs.load_target("digits_blur", 100)
    np.testing.assert_array_equal(yb, y)
    assert Xb.shape == X.shape and Xb.dtype == np.float32

    # A 4x4 bottleneck removes the high frequencies: neighbours differ less.
    def roughness(a):
        return np.abs(np.diff(a, axis=2)).mean()

    assert roughness(Xb) < 0.7 * roughness(X)


def test_base_dataset_and_what_each_entry_saw():
    assert _runs.base_dataset("mnist_rot90") == "mnist_5k"
    assert _runs.base_dataset("digits") == "digits"
    assert transfer_matrix._trained_on("multi_no_digits") == {
        "fashion_mnist",
        "mnist_5k",
        "ocr_letters",
    }
    assert transfer_matrix._trained_on("ocr_letters") == {"ocr_letters"}


def test_selection_accounting_regret_and_random_expectation():
    dist = {"a": 0.3, "b": 0.1, "c": 0.2, "self": 0.0}
    final = {"a": 91.0, "b": 85.0, "c": 90.5, "self": 99.0}
    r = transfer_matrix.selection_accounting(dist, final, ["a", "b", "c"])
    assert r["pick"] == "b" and r["oracle"] == "a"
    assert r["regret"] == pytest.approx(6.0)
    assert r["random_acc"] == pytest.approx((91.0 + 85.0 + 90.5) / 3)
    assert r["random_regret"] == pytest.approx(91.0 - r["random_acc"])
    assert not r["within_1pt"]
    r = transfer_matrix.selection_accounting(dist, final, ["a", "c"])
    assert r["pick"] == "c" and r["regret"] == pytest.approx(0.5)
    assert r["within_1pt"]
    # A tie goes to the entry with more sources, as in OTSourceSelector.
    tie = {"a": 0.1, "m": 0.1}
    acc = {"a": 80.0, "m": 85.0}
    r = transfer_matrix.selection_accounting(tie, acc, ["a", "m"], {"a": 1, "m": 3})
    assert r["pick"] == "m" and r["regret"] == 0.0
    assert transfer_matrix.selection_accounting(tie, acc, ["m", "a"])["pick"] == "a"
    with pytest.raises(ValueError, match="candidates"):
        transfer_matrix.selection_accounting(dist, final, [])


def test_search_step_interleaves_runs_and_reports_their_median(capsys):
    """``search_step.py`` alternates the sides, prints every run's speedup,
    and its last line's speedup is the median of those (1-channel input)."""
    import search_step

    search_step.main(
        "--config tiny --batch 2 --size 8 --channels 1 --threads 1 --steps 1 "
        "--warmup 1 --repeats 3 --no-rss".split()
    )
    out = capsys.readouterr().out.splitlines()
    assert "'channels': 1" in out[0]
    assert any(line.startswith("self-check") and line.endswith("ok") for line in out)
    runs = [line for line in out if line.startswith("run ")]
    assert [line.split()[1] for line in runs] == ["1/3", "2/3", "3/3"]
    ratios = sorted(float(line.split()[-1]) for line in runs)
    last = out[-1]
    assert last.startswith("speedup=") and "median of 3 interleaved runs" in last
    speedup = float(last.split()[0].split("=")[1])
    # Each run's ratio is printed rounded; the median is one of them.
    assert speedup == pytest.approx(ratios[1], abs=0.006)
    assert "memory_ratio=" in last


@pytest.mark.parametrize("per_edge", [False, True])
@pytest.mark.parametrize(("k", "dilation"), [(3, 1), (5, 2)])
def test_conv_forms_compute_the_same_stage(per_edge, k, dilation, monkeypatch):
    """Every form the convolution benchmark times, the channels-last one
    included, is the same stage (outputs and gradients, float64)."""
    import conv_forms

    assert "cl dw+gemm" in conv_forms.FORMS
    assert conv_forms.check(8, 4, k, dilation, per_edge) < 1e-10
    # A wrong form would show: the check compares against the first form.
    form = conv_forms.FORMS["cl dw+gemm"]
    monkeypatch.setitem(
        conv_forms.FORMS, "cl dw+gemm", lambda *args: 1.01 * form(*args)
    )
    assert conv_forms.check(8, 4, k, dilation, per_edge) > 1e-6
