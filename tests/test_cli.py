"""The ``skdarts`` command: help everywhere, one-line errors, search and zoo runs."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_digits

from skdarts.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _has(module: str) -> bool:
    """True when ``module`` exists in *this* checkout's package.

    (An editable install of another checkout can otherwise supply it.)
    """
    import skdarts

    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return False
    return (
        Path(spec.origin)
        .resolve()
        .is_relative_to(Path(skdarts.__file__).resolve().parent)
    )


needs_zoo = pytest.mark.skipif(
    not (_has("skdarts.zoo") and _has("skdarts.similarity")),
    reason="skdarts.zoo / skdarts.similarity not merged yet (issues 3 and 4)",
)


@pytest.fixture(scope="module")
def npz_sources(tmp_path_factory):
    """Two small labelled image sets as .npz files (digits, and digits inverted)."""
    folder = tmp_path_factory.mktemp("data")
    X, y = load_digits(return_X_y=True)
    X = X.reshape(-1, 8, 8)[:120]
    y = y[:120]
    np.savez(folder / "digits.npz", X=X, y=y)
    np.savez(folder / "inverted.npz", X=16 - X, y=y)
    np.savez(folder / "nolabels.npz", X=X)
    return folder


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["demo"],
        ["search"],
        ["zoo"],
        ["zoo", "list"],
        ["zoo", "show"],
        ["zoo", "remove"],
        ["zoo", "build"],
        ["zoo", "select"],
    ],
)
def test_help_everywhere(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: skdarts")
    assert "--help" in out


def test_python_dash_m_help_in_a_subprocess():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "skdarts", "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for command in ("demo", "search", "zoo"):
        assert command in proc.stdout


def _one_line_error(capsys, argv, match):
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("skdarts: error: "), err
    assert "\n" not in err and "Traceback" not in err
    assert match in err, err
    return err


@pytest.mark.parametrize(
    "argv, match",
    [
        (["search", "/nonexistent/folder"], "no data at '/nonexistent/folder'"),
        (["search", "{data}/nolabels.npz", "--scratch"], "lacks the arrays ['y']"),
        (["search", "{data}/digits.npz", "--image-size", "abc"], "--image-size"),
        (["search", "{data}/digits.npz", "--image-size", "0x4"], "positive"),
        (["zoo", "remove", "x", "--zoo", "/nonexistent/zoo"], "no zoo at"),
        (["zoo", "list", "--zoo", "/nonexistent/zoo"], "/nonexistent/zoo"),
        (["zoo", "select", "/nonexistent/data"], "/nonexistent/data"),
    ],
)
def test_bad_input_is_one_line_on_stderr(argv, match, capsys, npz_sources):
    argv = [a.format(data=npz_sources) for a in argv]
    _one_line_error(capsys, argv, match)


def test_argument_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["frobnicate"])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        main(["search", "x", "--epochs", "many"])
    assert exit_.value.code == 2


def test_debug_shows_the_exception():
    with pytest.raises(FileNotFoundError, match="no data at"):
        main(["--debug", "search", "/nonexistent/folder"])


def test_search_from_scratch_saves_a_working_model(tmp_path, npz_sources, capsys):
    out = tmp_path / "model.joblib"
    argv = [
        "search",
        str(npz_sources / "digits.npz"),
        "--scratch",
        "--epochs",
        "1",
        "--final-epochs",
        "0",
        "--verbose",
        "0",
        "-o",
        str(out),
    ]
    assert main(argv) == 0
    report = capsys.readouterr().out
    assert "started from: scratch" in report
    assert "holdout accuracy: " in report
    assert f"saved: {out}" in report
    model = joblib.load(out)
    X = np.load(npz_sources / "digits.npz")["X"]
    assert model.predict(X[:5]).shape == (5,)
    # an existing model is never replaced silently, nor damaged
    before = out.read_bytes()
    _one_line_error(capsys, argv, "exists; pass --overwrite")
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.joblib"]


def test_search_on_an_image_folder(tmp_path, capsys):
    pytest.importorskip("PIL")
    from skdarts import data

    if not hasattr(data, "load_image_folder"):
        pytest.skip("image folders not merged yet (issue 6)")
    from PIL import Image

    X, y = load_digits(return_X_y=True)
    for i in range(60):
        d = tmp_path / "imgs" / f"class_{y[i] % 2}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray((X[i].reshape(8, 8) * 15).astype(np.uint8)).save(d / f"{i}.png")
    out = tmp_path / "m.joblib"
    argv = ["search", str(tmp_path / "imgs"), "--scratch", "--epochs", "1"]
    argv += ["--final-epochs", "0", "--verbose", "0", "-o", str(out)]
    assert main(argv) == 0
    assert "60 images, 2 classes" in capsys.readouterr().out
    assert out.exists()


@needs_zoo
def test_zoo_build_list_show_select_remove(tmp_path, npz_sources, capsys):
    zoo = str(tmp_path / "zoo")
    build = ["zoo", "build", "--zoo", zoo, "--epochs", "1", "--verbose", "0"]
    build += [str(npz_sources / "digits.npz"), f"inv={npz_sources}/inverted.npz"]
    assert main([*build, "--mixture", "both"]) == 0
    assert "3 entries" in capsys.readouterr().out

    assert main(["zoo", "list", "--zoo", zoo]) == 0
    out = capsys.readouterr().out
    assert "3 entries" in out and "digits" in out and "inv" in out
    assert "sources=digits,inv" in out  # the mixture entry

    # a source of one name is never pretrained twice into one zoo
    _one_line_error(capsys, build, "already has entries ['digits', 'inv']")

    assert main(["zoo", "show", "digits", "--zoo", zoo]) == 0
    out = capsys.readouterr().out
    assert "entry: digits" in out and "signatures: digits" in out

    target = npz_sources / "inverted.npz"
    assert main(["zoo", "select", str(target), "--zoo", zoo]) == 0
    out = capsys.readouterr().out
    # "both" holds inv's signature too, so it is as near as inv itself
    lines = out.strip().splitlines()
    assert lines[-1] in ("selected=inv", "selected=both")
    assert "digits" in lines[-2]  # the farthest

    _one_line_error(capsys, ["zoo", "show", "nope", "--zoo", zoo], "nope")
    assert main(["zoo", "remove", "inv", "--zoo", zoo]) == 0
    capsys.readouterr()
    assert main(["zoo", "list", "--zoo", zoo]) == 0
    assert "2 entries" in capsys.readouterr().out
    _one_line_error(capsys, ["zoo", "remove", "inv", "--zoo", zoo], "no entry 'inv'")


@needs_zoo
def test_default_zoo_lists(capsys):
    assert main(["zoo", "list"]) == 0
    assert "multi" in capsys.readouterr().out


def test_demo_quick_runs(capsys):
    assert main(["demo", "--quick", "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    # Both phases are labelled, in order, and the summary compares against the
    # fair baseline.
    scratch = out.index("== search from scratch, with the head probe")
    warm = out.index("== warm search from")
    assert scratch < warm < out.index("== summary")
    last = out.strip().splitlines()[-1]
    assert last.startswith("speedup=") and "reference=scratch_probe" in last
    curves = [ln for ln in out.splitlines() if "held-out accuracy per epoch" in ln]
    assert len(curves) == 2 and all(ln.count(".") >= 2 for ln in curves)


def test_interrupt_is_one_line(monkeypatch, capsys):
    import skdarts.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.parser, "_zoo_list", interrupted)
    assert main(["zoo", "list"]) == 130
    assert capsys.readouterr().err == "skdarts: interrupted\n"
