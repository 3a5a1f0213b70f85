"""Image folders, lazy datasets and the equality of every input kind."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch
from _tiny import tiny
from PIL import Image

import skdarts.data as data_mod
from skdarts import ImageFolderDataset, SupernetSearchClassifier, load_image_folder
from skdarts.data import (
    DatasetImages,
    StandardisedDataset,
    channel_stats,
    dataset_stats,
    read_image_files,
)
from skdarts.estimators import SmallDataWarning

TINY = tiny()


def _pattern(h, w, seed=0):
    return np.random.RandomState(seed).randint(0, 256, size=(h, w), dtype=np.uint8)


# --------------------------------------------------------------------------
# Formats and modes
# --------------------------------------------------------------------------


@pytest.fixture
def mixed_folder(tmp_path):
    """Two classes, one file per format and mode, plus files to be ignored."""
    root = tmp_path / "mixed"
    a, b = root / "a", root / "b"
    (a / "nested").mkdir(parents=True)
    b.mkdir()
    grey = _pattern(6, 6, 1)
    rgb = np.stack([_pattern(6, 6, s) for s in (2, 3, 4)], axis=-1)
    Image.fromarray(grey).save(a / "grey.png")
    Image.fromarray(rgb).save(a / "rgb.bmp")
    Image.fromarray(rgb).save(a / "nested" / "rgb.tiff")
    Image.fromarray(rgb).save(a / "rgb.webp", lossless=True)
    Image.fromarray(rgb).convert("P").save(b / "palette.gif")
    rgba = np.dstack([rgb, np.full((6, 6), 255, np.uint8)])
    rgba[:3, :, 3] = 0  # the top half transparent
    Image.fromarray(rgba).save(b / "rgba.png")
    Image.fromarray(rgb).save(b / "photo.jpg", quality=95)
    Image.fromarray(grey.astype(np.uint16) * 257).save(b / "deep.png")
    (root / "README.txt").write_text("not an image")
    (a / "labels.csv").write_text("x,y\n")
    (a / ".hidden.png").write_bytes(b"junk")
    Image.fromarray(grey).save(root / "stray.png")  # not in a class folder
    return root, grey, rgb


def test_formats_modes_and_ignored_files(mixed_folder):
    root, grey, rgb = mixed_folder
    X, y, names = load_image_folder(root, verbose=0)
    assert names.tolist() == ["a", "b"]
    assert y.tolist() == list("aaaabbbb")  # 8 images, junk ignored; y: names
    assert X.shape == (8, 3, 6, 6) and X.dtype == np.float32
    ds = ImageFolderDataset(root, verbose=0)
    files = [p.replace(str(root), "").replace("\\", "/") for p in ds.paths]
    assert files == [
        "/a/grey.png",
        "/a/nested/rgb.tiff",
        "/a/rgb.bmp",
        "/a/rgb.webp",
        "/b/deep.png",
        "/b/palette.gif",
        "/b/photo.jpg",
        "/b/rgba.png",
    ]
    expected_rgb = rgb.transpose(2, 0, 1) / 255.0
    # Grey images are repeated on the three channels.
    np.testing.assert_allclose(X[0], np.repeat(grey[None] / 255.0, 3, 0), atol=1e-6)
    for i in (1, 2, 3):  # tiff, bmp, lossless webp
        np.testing.assert_allclose(X[i], expected_rgb, atol=1e-6)
    np.testing.assert_allclose(X[4], np.repeat(grey[None] / 255.0, 3, 0), atol=1e-6)
    decoded = np.asarray(Image.open(root / "b" / "photo.jpg")).transpose(2, 0, 1)
    np.testing.assert_allclose(X[6], decoded / 255.0, atol=1e-6)  # jpeg is lossy
    # RGBA: transparent half composited on white, opaque half unchanged.
    np.testing.assert_allclose(X[7][:, :3], 1.0)
    np.testing.assert_allclose(X[7][:, 3:], expected_rgb[:, 3:], atol=1e-6)


def test_sixteen_bit_keeps_precision_and_grey_auto(tmp_path):
    deep = np.array([[0, 100], [40000, 65535]], dtype=np.uint16)
    for c in ("x", "y"):
        (tmp_path / c).mkdir()
        Image.fromarray(deep).save(tmp_path / c / "deep.png")
        Image.fromarray(_pattern(2, 2)).save(tmp_path / c / "grey.png")
    X, _, _ = load_image_folder(tmp_path, verbose=0)
    assert X.shape == (4, 1, 2, 2)  # every image grey -> one channel
    np.testing.assert_allclose(X[0, 0], deep / 65535.0, rtol=1e-6)
    assert 0 < X[0, 0, 0, 1] < 1 / 255  # finer than 8 bits


def test_palette_grey_counts_as_grey_and_color_options(tmp_path):
    grey = _pattern(4, 4)
    rgb = np.stack([_pattern(4, 4, s) for s in (5, 6, 7)], axis=-1)
    for c in ("p", "q"):
        (tmp_path / c).mkdir()
        Image.fromarray(grey).convert("P").save(tmp_path / c / "pal.png")
    X, _, _ = load_image_folder(tmp_path, verbose=0)
    assert X.shape[1] == 1
    np.testing.assert_allclose(X[0, 0], grey / 255.0, atol=1e-6)
    Image.fromarray(rgb).save(tmp_path / "q" / "rgb.png")
    assert load_image_folder(tmp_path, verbose=0)[0].shape[1] == 3
    Xg, _, _ = load_image_folder(tmp_path, color="grey", verbose=0)
    luma = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255
    np.testing.assert_allclose(Xg[-1, 0], luma, atol=1e-5)
    Xr, _, _ = load_image_folder(tmp_path, color="rgb", verbose=0)
    assert Xr.shape[1] == 3


def test_exif_orientation_is_applied(tmp_path):
    arr = np.arange(2 * 4, dtype=np.uint8).reshape(2, 4) * 30  # h=2, w=4
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        Image.fromarray(arr).save(tmp_path / c / "r.png", exif=exif)
    X, _, _ = load_image_folder(tmp_path, verbose=0)
    assert X.shape == (2, 1, 4, 2)
    np.testing.assert_allclose(X[0, 0], np.rot90(arr, k=-1) / 255.0, atol=1e-6)


def test_mixed_sizes_default_and_explicit(tmp_path):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(2):
            Image.fromarray(_pattern(8, 6, i)).save(tmp_path / c / f"{i}.png")
    Image.fromarray(_pattern(16, 12, 9)).save(tmp_path / "b" / "big.png")
    X, _, _ = load_image_folder(tmp_path, verbose=0)
    assert X.shape == (5, 1, 8, 6)  # the most common size
    np.testing.assert_allclose(X[0, 0], _pattern(8, 6, 0) / 255.0, atol=1e-6)
    big = X[-1, 0]  # downscaled by 2: close to 2x2 block means
    blocks = _pattern(16, 12, 9).reshape(8, 2, 6, 2).mean(axis=(1, 3)) / 255
    assert np.abs(big - blocks).mean() < 0.1
    X5, _, _ = load_image_folder(tmp_path, image_size=(5, 7), verbose=0)
    assert X5.shape == (5, 1, 5, 7)
    assert load_image_folder(tmp_path, image_size=4, verbose=0)[0].shape[2:] == (4, 4)


# --------------------------------------------------------------------------
# Unreadable files
# --------------------------------------------------------------------------


def _two_class_folder(root, n=3, size=6):
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(_pattern(size, size, i)).save(root / c / f"{i}.png")


def test_corrupt_and_truncated_files_raise_or_skip(tmp_path):
    _two_class_folder(tmp_path)
    (tmp_path / "a" / "corrupt.png").write_bytes(b"\x89PNG not really")
    good = (tmp_path / "b" / "0.png").read_bytes()
    (tmp_path / "b" / "truncated.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match=r"corrupt\.png"):
        load_image_folder(tmp_path, verbose=0)
    with pytest.warns(UserWarning, match="skipped 2") as record:
        X, y, _ = load_image_folder(tmp_path, on_error="skip", verbose=0)
    skip_warnings = [w for w in record if "skipped" in str(w.message)]
    assert len(skip_warnings) == 1
    message = str(skip_warnings[0].message)
    assert "corrupt.png" in message and "truncated.png" in message
    assert X.shape[0] == 6 and y.tolist() == list("aaabbb")
    # Lazily, a file damaged past its header fails when read, naming it.
    (tmp_path / "a" / "corrupt.png").unlink()
    (tmp_path / "b" / "truncated.png").unlink()
    noise = np.random.RandomState(0).randint(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "b" / "cut.jpg")
    jpeg = (tmp_path / "b" / "cut.jpg").read_bytes()
    (tmp_path / "b" / "cut.jpg").write_bytes(jpeg[: len(jpeg) * 3 // 4])
    ds = ImageFolderDataset(tmp_path, verbose=0)
    bad = ds.paths.index(str(tmp_path / "b" / "cut.jpg"))
    with pytest.raises(ValueError, match=r"cut\.jpg"):
        ds[bad]
    with pytest.raises(ValueError, match=r"cut\.jpg"):
        load_image_folder(tmp_path, verbose=0)


def test_progress_shows_while_indexing(tmp_path, capsys, monkeypatch):
    _two_class_folder(tmp_path)
    monkeypatch.setattr(data_mod.progress, "PROGRESS_DELAY", 0)
    ImageFolderDataset(tmp_path, verbose=1)
    assert "indexing images" in capsys.readouterr().err
    ImageFolderDataset(tmp_path, verbose=0)
    assert capsys.readouterr().err == ""


def test_verbose_zero_is_silent(tmp_path, capsys):
    _two_class_folder(tmp_path)
    load_image_folder(tmp_path, verbose=0)
    SupernetSearchClassifier(**TINY).fit(str(tmp_path))
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


# --------------------------------------------------------------------------
# Lazy datasets
# --------------------------------------------------------------------------


def test_lazy_dataset_matches_arrays_and_loader_workers(tmp_path):
    _two_class_folder(tmp_path, n=4)
    X, y, _ = load_image_folder(tmp_path, verbose=0)
    ds = ImageFolderDataset(tmp_path, verbose=0)
    assert len(ds) == 8 and np.asarray(ds.classes)[ds.targets].tolist() == y.tolist()
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2)
    got = torch.cat([xb for xb, _ in loader]).numpy()
    np.testing.assert_array_equal(got, X)


def test_dataset_stats_bounded_sample(monkeypatch):
    rng = np.random.RandomState(0)
    X = rng.rand(30, 2, 5, 5).astype(np.float32)
    source = DatasetImages(torch.utils.data.TensorDataset(torch.from_numpy(X)))
    full = dataset_stats(source)
    np.testing.assert_array_equal(full[0], channel_stats(X)[0])
    np.testing.assert_array_equal(full[1], channel_stats(X)[1])
    monkeypatch.setattr(data_mod.datasets, "STATS_SAMPLE", 5)
    calls = []
    original = source.image
    source.image = lambda i: calls.append(i) or original(i)
    mean, _ = dataset_stats(source)
    assert len(calls) == 5 and len(set(calls)) == 5
    np.testing.assert_allclose(mean, channel_stats(X[sorted(calls)])[0], rtol=1e-6)
    assert not np.allclose(mean, full[0], rtol=1e-6)
    calls.clear()
    assert np.array_equal(dataset_stats(source)[0], mean)  # same sample every time


def test_standardised_dataset_items():
    X = np.arange(2 * 1 * 2 * 2, dtype=np.float32).reshape(2, 1, 2, 2)
    source = DatasetImages(torch.utils.data.TensorDataset(torch.from_numpy(X)))
    ds = StandardisedDataset(source, np.array([3, 4]), np.array([1.0]), np.array([2.0]))
    x, label = ds[1]
    np.testing.assert_array_equal(x.numpy(), (X[1] - 1) / 2)
    assert label == 4


# --------------------------------------------------------------------------
# The same images give the same results, whatever the input kind
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X[:48] * 16).clip(0, 255).astype(np.uint8).reshape(-1, 8, 8)
    y = y[:48] % 3
    order = np.argsort(y, kind="stable")
    X, y = X[order], y[order]
    root = tmp_path_factory.mktemp("digits")
    paths = []
    for i, (img, label) in enumerate(zip(X, y)):
        (root / f"c{label}").mkdir(exist_ok=True)
        paths.append(root / f"c{label}" / f"{i:03d}.png")
        Image.fromarray(img).save(paths[-1])
    names = np.array([f"c{v}" for v in y])
    return root, X, y, names, paths


def test_arrays_folders_and_datasets_give_the_same_results(digits_folder, monkeypatch):
    root, X, y, names, paths = digits_folder
    reference = SupernetSearchClassifier(**TINY).fit(X, names)
    expected = reference.predict_proba(X)
    # A control: different images give different predictions, so equality
    # below is not an accident of a constant network.
    other = SupernetSearchClassifier(**TINY).fit(255 - X, names)
    assert not np.allclose(other.predict_proba(X), expected)

    fits = {
        "folder": SupernetSearchClassifier(**TINY).fit(str(root)),
        "ImageFolderDataset": SupernetSearchClassifier(**TINY).fit(
            ImageFolderDataset(root, verbose=0)
        ),
        "TensorDataset": SupernetSearchClassifier(**TINY).fit(
            torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
        ),
        "paths": SupernetSearchClassifier(**TINY).fit([str(p) for p in paths], names),
        "path tuple": SupernetSearchClassifier(**TINY).fit(tuple(paths), names),
        "float arrays": SupernetSearchClassifier(**TINY).fit(
            load_image_folder(root, verbose=0)[0], names
        ),
    }
    monkeypatch.setattr(data_mod, "FOLDER_MEMORY_BUDGET", 0)  # force lazy reading
    fits["lazy folder"] = SupernetSearchClassifier(**TINY).fit(root)
    for kind, clf in fits.items():
        # sklearn's n_features_in_ is X.shape[1]: predict in the fit's layout.
        Xp = load_image_folder(root, verbose=0)[0] if kind == "float arrays" else X
        np.testing.assert_array_equal(clf.predict_proba(Xp), expected, err_msg=kind)
        assert clf.genotype_ == reference.genotype_, kind
    assert fits["folder"].classes_.tolist() == ["c0", "c1", "c2"]
    assert fits["TensorDataset"].classes_.tolist() == [0, 1, 2]
    assert not hasattr(fits["folder"], "n_features_in_")
    # Predicting on files: a folder, a list of paths, one file.
    clf = fits["folder"]
    assert clf.image_size_ == (8, 8) and clf.color_ == "grey"
    np.testing.assert_array_equal(clf.predict_proba(root), expected)
    np.testing.assert_array_equal(clf.predict_proba(paths[::-1]), expected[::-1])
    np.testing.assert_array_equal(clf.predict_proba(paths[5]), expected[5:6])
    np.testing.assert_array_equal(
        clf.predict_proba(ImageFolderDataset(root, verbose=0)), expected
    )
    np.testing.assert_array_equal(reference.predict_proba(root), expected)
    assert (clf.predict(root) == reference.predict(X)).all()
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(root), expected)


def test_loader_workers_repeatable_across_input_kinds(digits_folder):
    """Workers prefetch, which reorders random draws: same results among themselves."""
    root, X, _, names, _ = digits_folder
    a = SupernetSearchClassifier(**TINY, num_workers=2).fit(X, names)
    b = SupernetSearchClassifier(**TINY, num_workers=2).fit(
        ImageFolderDataset(root, verbose=0)
    )
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(root))


class _Unpicklable(torch.utils.data.Dataset):
    def __init__(self, X, y):
        self.X, self.y = X, y
        self.transform = lambda x: x  # lambdas cannot be pickled

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return self.transform(torch.from_numpy(self.X[i])), int(self.y[i])


def test_fitted_estimator_keeps_no_training_data(digits_folder):
    _, X, y, _, _ = digits_folder
    ds = _Unpicklable(X, y)
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        pickle.dumps(ds)
    clf = SupernetSearchClassifier(**TINY).fit(ds)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))


def test_predict_files_are_read_like_the_fit(tmp_path):
    """Colour and size of new files follow the fit, not the files."""
    rng = np.random.RandomState(0)
    X = rng.randint(0, 256, size=(12, 6, 6, 3), dtype=np.uint8)
    y = np.arange(12) % 2
    clf = SupernetSearchClassifier(**TINY).fit(X, y)
    assert clf.color_ == "rgb" and clf.image_size_ == (6, 6)
    Image.fromarray(X[0]).resize((12, 12), Image.Resampling.NEAREST).save(
        tmp_path / "big.png"
    )
    Image.fromarray(X[1][..., 0]).save(tmp_path / "grey.png")
    Image.fromarray(X[2]).save(tmp_path / "same.png")
    files = read_image_files(tmp_path, clf.image_size_, clf.color_)
    assert files.image_shape == (3, 6, 6)
    proba = clf.predict_proba(tmp_path)  # big, grey, same
    assert proba.shape == (3, 2)
    np.testing.assert_allclose(proba[2], clf.predict_proba(X[2:3])[0], atol=1e-6)
    grey = np.repeat(X[1][..., :1], 3, axis=-1)
    np.testing.assert_allclose(proba[1], clf.predict_proba(grey[None])[0], atol=1e-6)
    np.testing.assert_allclose(proba[0], clf.predict_proba(X[:1])[0], atol=0.05)


def test_files_need_one_or_three_channels(tmp_path):
    X = np.random.RandomState(0).rand(8, 4, 6, 6).astype(np.float32)
    clf = SupernetSearchClassifier(**TINY).fit(X, np.arange(8) % 2)
    assert clf.color_ is None
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(tmp_path / "x.png")
    with pytest.raises(ValueError, match="4-channel"):
        clf.predict(tmp_path)
    rgb_files = ImageFolderDataset(_folder_rgb(tmp_path / "rgb"), verbose=0)
    with pytest.raises(ValueError, match=r"X\[0\] has 3 channel"):
        clf.predict(rgb_files)


def _folder_rgb(root):
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        Image.new("RGB", (6, 6), "red").save(root / c / "r.png")
    return root


def test_large_folder_warns_nothing_and_indexes_lazily(tmp_path, monkeypatch):
    """A folder over the memory budget is never decoded as a whole."""
    _two_class_folder(tmp_path, n=5)
    monkeypatch.setattr(data_mod, "FOLDER_MEMORY_BUDGET", 0)
    calls = []
    original = data_mod._ImageFiles.to_array
    monkeypatch.setattr(
        data_mod._ImageFiles,
        "to_array",
        lambda self, verbose=0: calls.append(1) or original(self, verbose),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", SmallDataWarning)  # 5 images a class
        clf = SupernetSearchClassifier(**TINY).fit(tmp_path)
    assert calls == []
    assert clf.predict(tmp_path).shape == (10,)
