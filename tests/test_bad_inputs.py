"""Every bad input gets a clear error and leaves nothing changed behind.

Each row of ``CASES`` builds its input in a temporary folder and names the
call, the exception expected and the argument its message must name. For
every row the test also checks that the estimator's ``__dict__`` (unfitted,
and for ``fit`` also an already fitted one) and its network's weights are
unchanged, and that no file was written or touched.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _tiny import tiny
from PIL import Image
from sklearn.exceptions import NotFittedError

from skdarts import ImageFolderDataset, SupernetSearchClassifier, load_image_folder

TINY = tiny()
RNG = np.random.RandomState(0)
X8 = RNG.randint(0, 256, size=(12, 8, 8), dtype=np.uint8)
Y = np.arange(12) % 2


def _floats(value, index=(3, 2, 1)):
    X = X8.astype(np.float64) / 255
    X[index] = value
    return X


def _folder(root: Path, classes=("a", "b"), n=2, size=6) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for c in classes:
        (root / c).mkdir()
        for i in range(n):
            Image.fromarray(X8[i, :size, :size]).save(root / c / f"{i}.png")
    return root


def _with_corrupt(root: Path) -> Path:
    _folder(root)
    (root / "b" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return root


def _with_truncated_jpeg(root: Path) -> Path:
    _folder(root)
    noise = RNG.randint(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "a" / "cut.jpg")
    jpeg = (root / "a" / "cut.jpg").read_bytes()
    (root / "a" / "cut.jpg").write_bytes(jpeg[: len(jpeg) * 3 // 4])
    return root


def _only_text(root: Path) -> Path:
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        (root / c / "notes.txt").write_text("no images here")
    return root


class _Stream(torch.utils.data.IterableDataset):
    def __iter__(self):
        yield torch.zeros(8, 8), 0


class _Mixed(torch.utils.data.Dataset):
    """Items of two different sizes."""

    def __len__(self):
        return 6

    def __getitem__(self, i):
        return torch.zeros(8, 8 if i < 3 else 9), i % 2


def _tensors(X, y=Y):
    return torch.utils.data.TensorDataset(torch.as_tensor(X), torch.as_tensor(y))


@dataclass
class Case:
    id: str
    call: str  # "fit", "predict", "predict_proba", "load", "dataset"
    make: Callable[[Path], tuple[tuple, dict]]
    exc: Any
    names: str  # regex the message must contain (the argument's name)
    params: dict | None = None


CASES = [
    # -- arrays -----------------------------------------------------------------
    Case("nan", "fit", lambda t: ((_floats(np.nan), Y), {}), ValueError, "X"),
    Case("inf", "fit", lambda t: ((_floats(np.inf), Y), {}), ValueError, "X"),
    Case("1-d X", "fit", lambda t: ((X8[0, 0], Y[:8]), {}), ValueError, "X"),
    Case("5-d X", "fit", lambda t: ((X8[:, None, None], Y), {}), ValueError, "X"),
    Case("no samples", "fit", lambda t: ((X8[:0], Y[:0]), {}), ValueError, "X"),
    Case("one class", "fit", lambda t: ((X8, np.zeros(12)), {}), ValueError, "y"),
    Case("y too short", "fit", lambda t: ((X8, Y[:-1]), {}), ValueError, "y"),
    Case("2-d y", "fit", lambda t: ((X8, np.ones((12, 2))), {}), ValueError, "y"),
    Case("y is None", "fit", lambda t: ((X8, None), {}), ValueError, "y"),
    Case(
        "image_shape misfit",
        "fit",
        lambda t: ((X8.reshape(12, 64), Y), {}),
        ValueError,
        "image_shape",
        params={"image_shape": (3, 3)},
    ),
    Case(
        "strings",
        "fit",
        lambda t: ((np.full((12, 4, 4), "px"), Y), {}),
        TypeError,
        "X",
    ),
    Case(
        "complex",
        "fit",
        lambda t: ((X8.astype(complex), Y), {}),
        ValueError,
        "X",
    ),
    Case(
        "negative ints",
        "fit",
        lambda t: ((X8.astype(np.int64) - 5, Y), {}),
        ValueError,
        "X",
    ),
    Case(
        "ints above 16-bit",
        "fit",
        lambda t: ((X8.astype(np.int64) * 1000, Y), {}),
        ValueError,
        "X",
    ),
    Case("beyond float32", "fit", lambda t: ((_floats(1e300), Y), {}), ValueError, "X"),
    Case("1x1 images", "fit", lambda t: ((X8[:, :1, :1], Y), {}), ValueError, "X"),
    Case("0-wide images", "fit", lambda t: ((X8[:, :, :0], Y), {}), ValueError, "X"),
    Case(
        "negative num_workers",
        "fit",
        lambda t: ((X8, Y), {}),
        ValueError,
        "num_workers",
        params={"num_workers": -1},
    ),
    # -- folders and files ------------------------------------------------------
    Case("missing folder", "fit", lambda t: ((t / "nope",), {}), ValueError, "X"),
    Case(
        "empty folder", "fit", lambda t: ((_folder(t / "e", ()),), {}), ValueError, "X"
    ),
    Case(
        "one class folder",
        "fit",
        lambda t: ((_folder(t / "o", "a"),), {}),
        ValueError,
        "X",
    ),
    Case("no images", "fit", lambda t: ((_only_text(t / "txt"),), {}), ValueError, "X"),
    Case(
        "corrupt file",
        "fit",
        lambda t: ((_with_corrupt(t / "c"),), {}),
        ValueError,
        r"X.*bad\.png",
    ),
    Case(
        "truncated file",
        "fit",
        lambda t: ((_with_truncated_jpeg(t / "j"),), {}),
        ValueError,
        r"X.*cut\.jpg",
    ),
    Case(
        "y with a folder",
        "fit",
        lambda t: ((_folder(t / "f"), Y[:4]), {}),
        ValueError,
        "y",
    ),
    Case(
        "paths without y",
        "fit",
        lambda t: (([str(p) for p in sorted(_folder(t / "p").rglob("*.png"))],), {}),
        ValueError,
        "y",
    ),
    # -- torch Datasets ---------------------------------------------------------
    Case("iterable dataset", "fit", lambda t: ((_Stream(),), {}), TypeError, "X"),
    Case(
        "empty dataset",
        "fit",
        lambda t: ((_tensors(X8[:0], Y[:0]),), {}),
        ValueError,
        "X",
    ),
    Case(
        "int64 dataset",
        "fit",
        lambda t: ((_tensors(X8.astype(np.int64)),), {}),
        TypeError,
        "X",
    ),
    Case("mixed sizes dataset", "fit", lambda t: ((_Mixed(),), {}), ValueError, "X"),
    Case(
        "nan dataset",
        "fit",
        lambda t: ((_tensors(_floats(np.nan)),), {}),
        ValueError,
        "X",
    ),
    # -- prediction -------------------------------------------------------------
    Case(
        "channels unlike fit",
        "predict",
        lambda t: ((np.repeat(X8[..., None], 3, axis=-1),), {}),
        ValueError,
        "X",
    ),
    Case(
        "dataset channels unlike fit",
        "predict_proba",
        lambda t: ((_tensors(np.repeat(X8[:, None], 3, axis=1)),), {}),
        ValueError,
        "X",
    ),
    Case("predict nan", "predict", lambda t: ((_floats(np.nan),), {}), ValueError, "X"),
    Case(
        "predict larger images",
        "predict",
        lambda t: ((np.zeros((4, 16, 16), np.uint8),), {}),
        ValueError,
        r"X: images of 16x16 pixels.*fitted on 1-channel images of 8x8.*resize",
    ),
    Case(
        "predict channels first unlike fit",
        "predict",
        lambda t: ((np.zeros((4, 3, 8, 8), np.uint8),), {}),
        ValueError,
        r"X of shape \(4, 3, 8, 8\).*3 channel\(s\) of 8x8.*1-channel",
    ),
    Case(
        "predict ambiguous 4-d",
        "predict_proba",
        lambda t: ((np.zeros((4, 8, 8, 5), np.uint8),), {}),
        ValueError,
        r"X of shape \(4, 8, 8, 5\).*8 channel\(s\) of 8x5.*5 channel",
    ),
    Case(
        "predict flat rows unlike fit",
        "predict",
        lambda t: ((np.zeros((4, 63), np.uint8),), {}),
        ValueError,
        r"X has 63 features.*8x8 pixels",
    ),
    Case(
        "missing file",
        "predict",
        lambda t: (([str(t / "gone.png")],), {}),
        ValueError,
        r"X.*gone\.png",
    ),
    Case(
        "predict folder without images",
        "predict",
        lambda t: ((_only_text(t / "pt"),), {}),
        ValueError,
        "X",
    ),
    Case(
        "predict corrupt file",
        "predict_proba",
        lambda t: ((_with_corrupt(t / "pc") / "b" / "bad.png",), {}),
        ValueError,
        r"X.*bad\.png",
    ),
    # -- load_image_folder / ImageFolderDataset ---------------------------------
    Case("path not a path", "load", lambda t: ((123,), {}), TypeError, "path"),
    Case(
        "path is a file",
        "load",
        lambda t: ((_folder(t / "pf") / "a" / "0.png",), {}),
        ValueError,
        "path",
    ),
    Case(
        "image_size zero",
        "load",
        lambda t: ((_folder(t / "z"),), {"image_size": 0}),
        ValueError,
        "image_size",
    ),
    Case(
        "image_size string",
        "dataset",
        lambda t: ((_folder(t / "s"),), {"image_size": "big"}),
        TypeError,
        "image_size",
    ),
    Case(
        "image_size 1x1",
        "load",
        lambda t: ((_folder(t / "u"),), {"image_size": (1, 1)}),
        ValueError,
        "image_size",
    ),
    Case(
        "unknown color",
        "load",
        lambda t: ((_folder(t / "k"),), {"color": "purple"}),
        ValueError,
        "color",
    ),
    Case(
        "unknown on_error",
        "dataset",
        lambda t: ((_folder(t / "q"),), {"on_error": "ignore"}),
        ValueError,
        "on_error",
    ),
    Case(
        "load corrupt file",
        "load",
        lambda t: ((_with_corrupt(t / "lc"),), {}),
        ValueError,
        r"path.*bad\.png",
    ),
]


@pytest.fixture(scope="module")
def fitted():
    return SupernetSearchClassifier(**TINY).fit(X8, Y)


def _files(*roots: Path) -> dict:
    out = {}
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for name in names:
                p = os.path.join(dirpath, name)
                st = os.stat(p)
                out[p] = (st.st_size, st.st_mtime_ns)
    return out


def _snapshot(est):
    state = dict(est.__dict__)
    weights = {}
    for attr in ("net_", "final_net_"):
        net = state.get(attr)
        if net is not None:
            for k, v in net.module_.state_dict().items():
                weights[f"{attr}.{k}"] = v.detach().clone()
    return state, weights


def _assert_unchanged(est, before):
    state, weights = before
    now, now_weights = _snapshot(est)
    assert now.keys() == state.keys()
    for k, v in state.items():
        assert now[k] is v, f"attribute {k} was replaced"
    assert now_weights.keys() == weights.keys()
    for k, v in weights.items():
        assert torch.equal(now_weights[k], v), f"weights {k} changed"


def _runs():
    for case in CASES:
        states = ["unfitted", "fitted"] if case.call == "fit" else ["fitted"]
        if case.call in ("load", "dataset"):
            states = ["none"]
        for state in states:
            yield pytest.param(case, state, id=f"{case.id}-{state}")


@pytest.mark.parametrize(("case", "state"), list(_runs()))
def test_bad_input(case, state, fitted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args, kwargs = case.make(tmp_path)
    if state == "fitted":
        est = fitted
        saved = {k: getattr(est, k) for k in (case.params or {})}
        est.set_params(**(case.params or {}))
    else:
        est = SupernetSearchClassifier(**TINY, **(case.params or {}))
        saved = {}
    before = _snapshot(est)
    files = _files(tmp_path)
    try:
        if case.call == "load":
            call = load_image_folder
            kwargs = {"verbose": 0, **kwargs}
        elif case.call == "dataset":
            call = ImageFolderDataset
            kwargs = {"verbose": 0, **kwargs}
        else:
            call = getattr(est, case.call)
        with pytest.raises(case.exc) as info:
            call(*args, **kwargs)
        message = str(info.value)
        assert re.search(rf"(?s)\b{case.names}\b", message), message
        _assert_unchanged(est, before)
        assert _files(tmp_path) == files
    finally:
        if saved:
            est.set_params(**saved)


def test_there_are_at_least_20_cases():
    assert len(CASES) >= 20


def test_predict_before_fit_is_not_fitted(tmp_path):
    est = SupernetSearchClassifier(**TINY)
    before = _snapshot(est)
    for method in ("predict", "predict_proba"):
        for X in (X8, str(_folder(tmp_path / method))):
            with pytest.raises(NotFittedError, match="fit"):
                getattr(est, method)(X)
    _assert_unchanged(est, before)


def test_skip_gives_one_warning_listing_every_file(tmp_path):
    root = _with_corrupt(tmp_path / "w")
    (root / "a" / "bad2.jpg").write_bytes(b"\xff\xd8 nope")
    (root / "a" / "notes.md").write_text("ignored, not listed")
    with pytest.warns(UserWarning) as record:
        ds = ImageFolderDataset(root, on_error="skip", verbose=0)
    assert len(record) == 1
    message = str(record[0].message)
    assert "bad.png" in message and "bad2.jpg" in message
    assert "notes.md" not in message
    assert len(ds) == 4 and len(ds.skipped) == 2
    est = SupernetSearchClassifier(**TINY).fit(ds)
    assert est.classes_.tolist() == ["a", "b"]
