"""Turning user input into image tensors: shapes, scaling and validation.

Knows nothing of models. The estimators hand everything they are given to this
module, so the rules below are the package's one input contract.

Kinds of input
--------------
* **arrays** (NumPy, torch tensors, nested lists), laid out as below;
* **image folders**: a path with one sub-folder per class (:func:`load_image_folder`,
  :class:`ImageFolderDataset`); for prediction also a folder of images or a list
  of image files;
* **torch Datasets** of ``(image, label)`` items (any map-style dataset with
  ``__len__``), read item by item so that data larger than memory trains.

An estimator given a folder reads it into memory when its decoded pixels fit in
:data:`FOLDER_MEMORY_BUDGET` bytes, else lazily through an
:class:`ImageFolderDataset`; both give the same results.

Layouts accepted for arrays (and for each dataset item, without the ``n``)
-------------------------------------------------------------------------
* ``(n, h, w)``: grey images;
* ``(n, c, h, w)`` or ``(n, h, w, c)``: colour images; channels-last is
  recognised when the last axis has 1, 3 or 4 entries and the second does not;
* ``(n, features)``: flat rows, reshaped with ``image_shape`` (``(h, w)`` or
  ``(c, h, w)``); without it, square grey images when ``features`` is a perfect
  square, otherwise one row of ``features`` pixels (tabular data).

Scaling rule
------------
Integer arrays must lie in [0, 65535]: when their largest value is at most 255
the whole array is read as 8-bit (divided by 255), otherwise as 16-bit (divided
by 65535). Booleans are 0 and 1. Floating-point pixels are used as given and
must be finite and within float32's range (``|x| < 3.4e38``). The items of a
torch Dataset are scaled one by one, so their divisor comes from the dtype, not
the values: ``uint8`` / 255, ``uint16`` / 65535, floats and booleans as above;
other integer dtypes are refused there. Image files are decoded to floats in
[0, 1] (8-bit formats / 255, 16- and 32-bit integer ones / 65535, clipped;
32-bit float images as given). After that every channel is
standardised with the mean and standard deviation seen at ``fit`` (estimated
from at most :data:`STATS_SAMPLE` images of a torch Dataset, all of them when
there are no more).

Size rule
---------
An image needs at least one row and one column and at least 2 pixels. The
network's reductions halve the resolution rounding up (odd sides are padded),
so any such image keeps at least one pixel through every reduction and no
larger minimum is imposed; a single pixel has no spatial extent for the
convolutions and reductions to act on (a one-feature problem) and is refused.

Image files
-----------
Pillow reads png, jpg/jpeg, bmp, gif (first frame), tif/tiff and webp files, in
grey, RGB, RGBA, palette and 16-bit modes; other files (by extension) and
hidden files and folders are ignored. The EXIF orientation is applied. Alpha is
dropped after compositing the image on a **white** background. With
``color="auto"`` the images are read as grey (1 channel) when every image is
grey (grey modes, or palettes whose entries are all grey), else as RGB (3
channels; grey images are repeated on the three channels). ``color="grey"``
converts colour images with the ITU-R 601 luma weights (as Pillow's ``"L"``).
Images whose size differs from ``image_size`` are resized (bilinear, with
antialiasing when shrinking); ``image_size=None`` takes the most common size
among the images (the first in file order on ties), so a folder of equally
sized images is never resampled.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

__all__ = [
    "IMAGE_EXTENSIONS",
    "STATS_SAMPLE",
    "DatasetImages",
    "ImageFolderDataset",
    "StandardisedDataset",
    "as_images",
    "channel_stats",
    "check_dataset",
    "check_image_size",
    "dataset_labels",
    "dataset_stats",
    "image_from_item",
    "infer_image_shape",
    "is_path_input",
    "load_image_folder",
    "read_image_files",
]

#: File extensions read as images (case-insensitive).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

#: Images of a torch Dataset read to estimate the channel statistics.
STATS_SAMPLE = 2048

#: Seconds of work before a progress bar shows (when ``verbose`` allows one).
PROGRESS_DELAY = 0.5

#: Decoded size (bytes of float32 pixels) up to which ``fit(path)`` loads a
#: folder into memory; larger folders are read lazily, batch by batch.
FOLDER_MEMORY_BUDGET = 1 << 30

_GREY_MODES = {"1", "L", "LA", "La", "I", "F"}
_COLORS = ("auto", "grey", "rgb")
_ON_ERROR = ("raise", "skip")


def check_image_size(shape: Sequence[int], name: str = "X") -> None:
    """Refuse images too small for the network (see the module's size rule).

    Parameters
    ----------
    shape : tuple of int
        ``(c, h, w)`` of one image.
    name : str, default="X"
        The argument named in the error.

    Examples
    --------
    >>> check_image_size((3, 1, 2))
    >>> check_image_size((1, 1, 1))
    Traceback (most recent call last):
    ...
    ValueError: X: images of 1x1 pixel (n_features=1 per channel) are too small...
    """
    _, h, w = (int(s) for s in shape)
    if h < 1 or w < 1:
        raise ValueError(
            f"{name}: images of {h}x{w} pixels are empty; every image needs at least "
            "one row and one column (and 2 pixels in all)."
        )
    if h * w < 2:
        raise ValueError(
            f"{name}: images of 1x1 pixel (n_features=1 per channel) are too small "
            "for a convolutional network; images need at least 2 pixels (any size "
            "of 2 pixels or more works: the reductions round up)."
        )


def infer_image_shape(n_features: int) -> tuple[int, int, int]:
    """Image shape ``(c, h, w)`` assumed for flat rows of ``n_features``.

    Examples
    --------
    >>> infer_image_shape(64)
    (1, 8, 8)
    >>> infer_image_shape(10)
    (1, 1, 10)
    """
    side = math.isqrt(n_features)
    if side * side == n_features:
        return (1, side, side)
    return (1, 1, n_features)


def _normalise_image_shape(image_shape) -> tuple[int, ...]:
    if isinstance(image_shape, (int, np.integer)) or not isinstance(
        image_shape, Sequence
    ):
        raise TypeError(
            "image_shape must be a tuple (h, w) or (c, h, w) of positive ints or None; "
            f"got {image_shape!r}."
        )
    shape = tuple(image_shape)
    if len(shape) not in (2, 3) or not all(
        isinstance(s, (int, np.integer)) and s > 0 for s in shape
    ):
        raise ValueError(
            "image_shape must be a tuple (h, w) or (c, h, w) of positive ints; "
            f"got {image_shape!r}."
        )
    return tuple(int(s) for s in shape) if len(shape) == 3 else (1, *map(int, shape))


def _scale(X: np.ndarray) -> np.ndarray:
    if X.dtype == np.bool_:
        return X.astype(np.float32)
    if np.issubdtype(X.dtype, np.integer):
        lo, hi = (int(X.min()), int(X.max())) if X.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise ValueError(
                f"X: integer pixels must lie in [0, 65535] (8- or 16-bit images); got "
                f"values in [{lo}, {hi}]. Pass floats to use values as given."
            )
        return X.astype(np.float32) / (255.0 if hi <= 255 else 65535.0)
    if not np.issubdtype(X.dtype, np.floating):
        raise TypeError(
            f"X must hold numbers (integers, floats or booleans); got dtype {X.dtype}."
        )
    if not np.isfinite(X).all():
        bad = "NaN" if np.isnan(X).any() else "inf"
        raise ValueError(
            f"X contains {bad} values (first at index "
            f"{tuple(int(i) for i in np.argwhere(~np.isfinite(X))[0])}); every pixel "
            "must be finite. Input contains NaN or infinity."
        )
    limit = float(np.finfo(np.float32).max)
    if X.dtype.itemsize > 4 and X.size and float(np.abs(X).max()) > limit:
        raise ValueError(
            f"X: floating-point pixels must lie within float32's range (|x| <= "
            f"{limit:.4g}); got a largest magnitude of {float(np.abs(X).max()):.4g}. "
            "Rescale the images."
        )
    return X.astype(np.float32, copy=False)


def to_host(a):
    """``a``, a torch tensor copied to host memory as a NumPy array.

    ``np.asarray`` refuses GPU tensors ("can't convert cuda:0 device type
    tensor to numpy"); every array input goes through this first. Anything
    else is returned as it is.

    Examples
    --------
    >>> to_host(torch.ones(2)).tolist(), to_host([1, 2])
    ([1.0, 1.0], [1, 2])
    """
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return a


def as_images(
    X, image_shape: Sequence[int] | None = None, channels: int | None = None
) -> np.ndarray:
    """Validate ``X`` and return float32 images of shape ``(n, c, h, w)``.

    Parameters
    ----------
    X : array-like
        See the module's layouts.
    image_shape : tuple of int, optional
        ``(h, w)`` or ``(c, h, w)`` for flat rows; checked against 3-D/4-D input.
    channels : int, optional
        The channel count expected (the one seen at ``fit``).

    Returns
    -------
    numpy.ndarray of float32, shape (n, c, h, w)

    Examples
    --------
    >>> as_images(np.zeros((5, 16), dtype=np.uint8)).shape
    (5, 1, 4, 4)
    >>> as_images(np.zeros((2, 8, 8, 3))).shape
    (2, 3, 8, 8)
    """
    X = to_host(X)
    if isinstance(X, (str, bytes)):
        raise TypeError(f"X must be an array of images; got the string {X!r}.")
    try:
        X = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"X could not be read as an array: {exc}") from exc
    if X.dtype == object:
        try:
            X = X.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                "X must hold numbers; got an object array that could not be "
                f"converted to float ({exc})."
            ) from exc
    if X.ndim not in (2, 3, 4):
        raise ValueError(
            "X must have 2 (n, features), 3 (n, h, w) or 4 (n, c, h, w) / "
            f"(n, h, w, c) dimensions; got {X.ndim} with shape {X.shape}."
        )
    if X.shape[0] == 0:
        raise ValueError(f"X has 0 samples (shape {X.shape}); at least 1 is required.")
    X = _scale(X)

    if X.ndim == 2:
        n, f = X.shape
        shape = (
            _normalise_image_shape(image_shape)
            if image_shape is not None
            else infer_image_shape(f)
        )
        if math.prod(shape) != f:
            raise ValueError(
                f"image_shape={tuple(image_shape)} needs {math.prod(shape)} "
                f"features per row; X has {f}."
            )
        X = X.reshape(n, *shape)
    elif X.ndim == 3:
        X = X[:, None, :, :]
    else:
        last, second = X.shape[3], X.shape[1]
        if last in (1, 3, 4) and second not in (1, 3, 4):
            X = np.transpose(X, (0, 3, 1, 2))
    if X.ndim != 4 or X.shape[0] == 0:
        raise ValueError(f"X has an unusable shape {X.shape}.")
    check_image_size(X.shape[1:])
    if image_shape is not None and X.ndim == 4:
        expected = _normalise_image_shape(image_shape)
        if tuple(X.shape[1:]) != expected and not (
            len(tuple(image_shape)) == 2 and tuple(X.shape[2:]) == expected[1:]
        ):
            raise ValueError(
                f"image_shape={tuple(image_shape)} does not match the images in X, of "
                f"shape (c, h, w)={tuple(X.shape[1:])}."
            )
    if channels is not None and X.shape[1] != channels:
        raise ValueError(
            f"X has {X.shape[1]} channel(s) but the estimator was fitted on "
            f"{channels}; pass images with {channels} channel(s)."
        )
    return np.ascontiguousarray(X, dtype=np.float32)


def channel_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of images ``(n, c, h, w)``.

    A constant channel gets a standard deviation of 1 so that standardising
    never divides by zero.
    """
    mean = X.mean(axis=(0, 2, 3), dtype=np.float64)
    std = X.std(axis=(0, 2, 3), dtype=np.float64)
    std = np.where(std > 1e-8, std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


# --------------------------------------------------------------------------
# Image files
# --------------------------------------------------------------------------


def is_path_input(X) -> bool:
    """Whether ``X`` names files: a path, or a non-empty list of paths.

    Examples
    --------
    >>> is_path_input("images/"), is_path_input(["a.png", "b.png"])
    (True, True)
    >>> is_path_input([[0, 1], [1, 0]])
    False
    """
    if isinstance(X, (str, os.PathLike)):
        return True
    return (
        isinstance(X, (list, tuple))
        and len(X) > 0
        and all(isinstance(p, (str, os.PathLike)) for p in X)
    )


def _parse_image_size(image_size, name: str = "image_size") -> tuple[int, int] | None:
    if image_size is None:
        return None
    given = image_size
    if isinstance(image_size, (bool, np.bool_)):
        raise TypeError(
            f"{name} must be None, an int or a pair (height, width) of ints; got "
            f"{image_size!r}."
        )
    if isinstance(image_size, (int, np.integer)):
        image_size = (image_size, image_size)
    if not isinstance(image_size, Sequence) or isinstance(image_size, str):
        raise TypeError(
            f"{name} must be None, an int or a pair (height, width) of ints; got "
            f"{image_size!r}."
        )
    size = tuple(image_size)
    if len(size) != 2 or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size
    ):
        raise TypeError(
            f"{name} must be None, an int or a pair (height, width) of ints; got "
            f"{image_size!r}."
        )
    if min(size) < 1:
        raise ValueError(
            f"{name} must be positive (height, width >= 1); got {given!r}."
        )
    check_image_size((1, *size), name=name)
    return (int(size[0]), int(size[1]))


def _check_choice(value, name: str, options: Sequence[str]) -> str:
    if value == "gray" and "grey" in options:
        value = "grey"
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {list(options)}; got {value!r}.")
    return value


def _check_path(path, name: str = "path") -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"{name} must be a path (str or os.PathLike) to a folder; got "
            f"{type(path).__name__}."
        )
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{name}: the folder {str(p)!r} does not exist.")
    return p


def _is_image_file(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _walk_images(folder: Path) -> list[Path]:
    """Image files under ``folder``, recursively and sorted; hidden ones skipped."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(Path(root) / f for f in files if _is_image_file(Path(f)))
    return sorted(out)  # by path components, so nested folders interleave in order


class _BadImage(Exception):
    pass


def _header(path) -> tuple[tuple[int, int], bool]:
    """``((h, w) after EXIF rotation, is_grey)`` of an image file, without decoding."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            mode = im.mode
            grey = mode in _GREY_MODES or mode.startswith("I;16")
            if mode in ("P", "PA"):
                palette = np.asarray(im.getpalette() or [0, 0, 0]).reshape(-1, 3)
                grey = bool((palette == palette[:, :1]).all())
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                h, w = w, h
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise _BadImage(f"{path}: {exc}") from exc
    return (h, w), grey


def _pil_to_float(im) -> np.ndarray:
    """Pixels ``(c, h, w)`` float32 in [0, 1], c = 1 or 3, alpha composited on white."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im, dtype=np.float32) / 65535.0
        return np.clip(arr, 0.0, 1.0)[None]
    if mode == "F":
        return np.asarray(im, dtype=np.float32)[None].copy()
    if mode == "1":
        im = im.convert("L")
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
    elif mode == "La":
        im = im.convert("LA")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("RGB")
    arr = np.asarray(im, dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if im.mode in ("LA", "RGBA"):
        alpha = arr[:, :, -1:]
        arr = arr[:, :, :-1] * alpha + (1.0 - alpha)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def _resize(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if tuple(arr.shape[1:]) == size:
        return arr
    h, w = size
    return np.stack(
        [
            np.asarray(
                Image.fromarray(np.ascontiguousarray(ch, dtype=np.float32)).resize(
                    (w, h), Image.Resampling.BILINEAR
                )
            )
            for ch in arr
        ]
    ).astype(np.float32)


def _read_image(path, size: tuple[int, int], grey: bool) -> np.ndarray:
    """Decode one file to float32 ``(c, h, w)`` in the given size and colour."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            arr = _pil_to_float(im)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise _BadImage(f"{path}: {exc}") from exc
    if grey and arr.shape[0] == 3:
        if (arr[0] == arr[1]).all() and (arr[0] == arr[2]).all():
            arr = arr[:1]
        else:
            arr = (0.299 * arr[0] + 0.587 * arr[1] + 0.114 * arr[2])[None]
    elif not grey and arr.shape[0] == 1:
        arr = np.repeat(arr, 3, axis=0)
    return _resize(np.ascontiguousarray(arr, dtype=np.float32), size)


def _warn_skipped(skipped: list[str], name: str) -> None:
    if skipped:
        listing = "\n  ".join(skipped)
        warnings.warn(
            f"{name}: skipped {len(skipped)} unreadable image file(s) "
            f"(on_error='skip'):\n  {listing}",
            UserWarning,
            stacklevel=3,
        )


def _progress(iterable, verbose, desc: str, total: int | None = None):
    if not verbose:
        return iterable
    from tqdm.auto import tqdm

    # Shown only when the work lasts: small folders stay quiet.
    return tqdm(iterable, desc=desc, total=total, delay=PROGRESS_DELAY, leave=False)


class _ImageFiles(TorchDataset):
    """Image files decoded on access: items ``(float32 tensor (c, h, w), label)``."""

    def __init__(self, paths, targets, image_size, color):
        self.paths = [str(p) for p in paths]
        self.targets = np.asarray(targets, dtype=np.int64)
        self.image_size = image_size
        self.color = color

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1 if self.color == "grey" else 3, *self.image_size)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(c, h, w)`` of every image (as ``DatasetImages.shape``)."""
        return self.image_shape

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, index: int) -> np.ndarray:
        """Pixels of image ``index`` as float32 ``(c, h, w)`` in [0, 1]."""
        try:
            return _read_image(self.paths[index], self.image_size, self.color == "grey")
        except _BadImage as exc:
            raise ValueError(
                f"X: could not read the image file {exc}. Remove or repair the "
                "file, or skip unreadable files with load_image_folder(path, "
                "on_error='skip'), which decodes every file up front."
            ) from None

    def __getitem__(self, index):
        return torch.from_numpy(self.image(index)), int(self.targets[index])

    def to_array(self, verbose=0) -> np.ndarray:
        """Decode every image into one float32 array ``(n, c, h, w)``."""
        out = np.empty((len(self), *self.image_shape), dtype=np.float32)
        for i in _progress(range(len(self)), verbose, "reading images"):
            out[i] = self.image(i)
        return out


def _index_files(paths, image_size, color, on_error, verbose, name):
    """Headers of ``paths``: returns (kept indices, size, color, skipped files)."""
    keep, sizes, greys, skipped = [], [], [], []
    for i, p in enumerate(_progress(paths, verbose, "indexing images")):
        try:
            size, grey = _header(p)
        except _BadImage as exc:
            if on_error == "raise":
                raise ValueError(
                    f"{name}: could not read the image file {exc}. Remove or repair "
                    "the file, or skip unreadable files with on_error='skip' "
                    "(load_image_folder, ImageFolderDataset)."
                ) from None
            skipped.append(str(exc))
            continue
        keep.append(i)
        sizes.append(size)
        greys.append(grey)
    if image_size is None and sizes:
        image_size = Counter(sizes).most_common(1)[0][0]
        check_image_size((1, *image_size), name=name)
    if color == "auto":
        color = "grey" if all(greys) else "rgb"
    return keep, image_size, color, skipped


class ImageFolderDataset(_ImageFiles):
    """A folder of images, one sub-folder per class, read lazily.

    Indexing reads the file names and headers only (with a progress bar when
    it lasts); each item is decoded when it is accessed, so a folder larger
    than memory can be trained on (with loader workers decoding in parallel).
    Items are ``(image, label)``: a float32 tensor ``(c, h, w)`` in [0, 1]
    (see the module's rules for files) and the class index.

    Parameters
    ----------
    path : str or os.PathLike
        A folder with one sub-folder per class; the images of a class may sit
        in nested folders. Other files (by extension), hidden files and files
        directly in ``path`` are ignored.
    image_size : int or (int, int), optional
        ``(height, width)`` every image is resized to; by default the most
        common size among the images.
    color : {"auto", "grey", "rgb"}, default="auto"
        ``"auto"``: grey when every image is grey, else RGB.
    on_error : {"raise", "skip"}, default="raise"
        A file whose header cannot be read raises an error naming it, or is
        skipped (one warning lists every file skipped). Files that are damaged
        further in fail when they are decoded, naming the file.
    verbose : int, default=1
        0 is silent.
    min_classes : int, default=1
        Fewer class sub-folders than this is an error (the estimators ask
        for 2).

    Attributes
    ----------
    paths : list of str
    targets : ndarray of int64
        The class index of each image.
    classes : list of str
        The class (sub-folder) names, sorted; ``targets`` index into it.
    image_size : tuple of int
    color : {"grey", "rgb"}
    skipped : list of str
        Files skipped, each with the reason.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for c in ("cat", "dog"):
    ...     (root / c).mkdir()
    ...     Image.new("L", (8, 6), 200).save(root / c / "a.png")
    >>> ds = ImageFolderDataset(root, verbose=0)
    >>> len(ds), ds.classes, ds.image_size, ds.color
    (2, ['cat', 'dog'], (6, 8), 'grey')
    >>> image, label = ds[1]
    >>> tuple(image.shape), label
    ((1, 6, 8), 1)
    """

    def __init__(
        self,
        path,
        image_size: int | Sequence[int] | None = None,
        color: str = "auto",
        on_error: str = "raise",
        verbose: int = 1,
        *,
        min_classes: int = 1,
        _name: str = "path",
    ):
        size = _parse_image_size(image_size)
        color = _check_choice(color, "color", _COLORS)
        on_error = _check_choice(on_error, "on_error", _ON_ERROR)
        root = _check_path(path, _name)
        if not root.is_dir():
            raise ValueError(
                f"{_name}: {str(root)!r} is not a folder; pass a folder with one "
                "sub-folder of images per class."
            )
        classes = sorted(
            d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
        )
        if not classes:
            raise ValueError(
                f"{_name}: the folder {str(root)!r} has no class sub-folders; "
                "expected one sub-folder of images per class (e.g. cats/, dogs/)."
            )
        if len(classes) < min_classes:
            raise ValueError(
                f"{_name}: the folder {str(root)!r} has only {len(classes)} class "
                f"sub-folder ({classes[0]!r}); a classifier needs at least "
                f"{min_classes} classes (one sub-folder each)."
            )
        paths, targets = [], []
        for k, c in enumerate(_progress(classes, verbose, "listing classes")):
            found = _walk_images(root / c)
            paths.extend(found)
            targets.extend([k] * len(found))
        if not paths:
            raise ValueError(
                f"{_name}: no image files ({', '.join(IMAGE_EXTENSIONS)}) under the "
                f"class sub-folders of {str(root)!r}."
            )
        keep, size, color, skipped = _index_files(
            paths, size, color, on_error, verbose, _name
        )
        paths = [paths[i] for i in keep]
        targets = [targets[i] for i in keep]
        present = set(targets)
        empty = [c for k, c in enumerate(classes) if k not in present]
        if empty:
            raise ValueError(
                f"{_name}: the class sub-folder(s) {empty} of {str(root)!r} hold no "
                "readable image; every class needs at least one image."
            )
        super().__init__(paths, targets, size, color)
        self.root = str(root)
        self.classes = classes
        self.skipped = skipped
        _warn_skipped(skipped, _name)


def read_image_files(
    X, image_size=None, color: str = "auto", on_error: str = "raise", verbose=0
) -> _ImageFiles:
    """Image files to predict on: a folder (all images under it), a file or a list.

    Returns a lazy dataset of ``(image, 0)`` items in the order of its
    ``paths`` (a folder's files sorted by their path).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> Image.new("RGB", (5, 4), "red").save(root / "a.png")
    >>> ds = read_image_files(root / "a.png", image_size=(2, 2))
    >>> tuple(ds[0][0].shape), ds.color
    ((3, 2, 2), 'rgb')
    """
    size = _parse_image_size(image_size)
    color = _check_choice(color, "color", _COLORS)
    on_error = _check_choice(on_error, "on_error", _ON_ERROR)
    if isinstance(X, (str, os.PathLike)):
        p = _check_path(X, "X")
        if p.is_dir():
            paths = _walk_images(p)
            if not paths:
                raise ValueError(
                    f"X: no image files ({', '.join(IMAGE_EXTENSIONS)}) under the "
                    f"folder {str(p)!r}."
                )
        else:
            paths = [p]
    else:
        paths = [Path(p) for p in X]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ValueError(
                f"X: {len(missing)} of the {len(paths)} files given do not exist "
                f"(e.g. {missing[0]!r}); pass paths to image files."
            )
    keep, size, color, skipped = _index_files(
        paths, size, color, on_error, verbose, "X"
    )
    if not keep:
        raise ValueError(f"X: none of the {len(paths)} file(s) could be read.")
    _warn_skipped(skipped, "X")
    return _ImageFiles([paths[i] for i in keep], np.zeros(len(keep)), size, color)


def load_image_folder(
    path,
    image_size: int | Sequence[int] | None = None,
    color: str = "auto",
    on_error: str = "raise",
    verbose: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a folder of images, one sub-folder per class, into arrays.

    Parameters
    ----------
    path : str or os.PathLike
        A folder with one sub-folder per class (see :class:`ImageFolderDataset`).
    image_size : int or (int, int), optional
        ``(height, width)`` every image is resized to; by default the most
        common size among the images (so equally sized images are never
        resampled).
    color : {"auto", "grey", "rgb"}, default="auto"
        ``"auto"``: grey (1 channel) when every image is grey, else RGB (3
        channels). Alpha is composited on white and dropped.
    on_error : {"raise", "skip"}, default="raise"
        An unreadable (corrupt, truncated) file raises an error naming it, or
        is skipped, with one warning listing every file skipped.
    verbose : int, default=1
        0 is silent; otherwise a progress bar shows while a large folder is
        indexed and read.

    Returns
    -------
    X : ndarray of float32, shape (n, c, h, w)
        Pixels in [0, 1] (16-bit images keep their precision).
    y : ndarray of int64, shape (n,)
        Class index of each image, into ``class_names``.
    class_names : ndarray of str
        The sub-folder names, sorted.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for c, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
    ...     (root / c).mkdir()
    ...     for i in range(2):
    ...         Image.new("RGB", (4, 4), colour).save(root / c / f"{i}.png")
    >>> X, y, names = load_image_folder(root, verbose=0)
    >>> X.shape, y.tolist(), names.tolist()
    ((4, 3, 4, 4), [0, 0, 1, 1], ['blue', 'red'])
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = ImageFolderDataset(
            path, image_size=image_size, color=color, on_error=on_error, verbose=verbose
        )
    for w in caught:
        if not (issubclass(w.category, UserWarning) and "skipped" in str(w.message)):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    skipped = list(ds.skipped)
    images, keep = [], []
    for i in _progress(range(len(ds)), verbose, "reading images"):
        try:
            images.append(ds.image(i))
            keep.append(i)
        except ValueError:
            if on_error == "raise":
                raise
            skipped.append(ds.paths[i])
    _warn_skipped(skipped, "path")
    if not images:
        raise ValueError(f"path: none of the image files under {path!r} is readable.")
    X = np.stack(images).astype(np.float32, copy=False)
    return X, ds.targets[keep], np.asarray(ds.classes)


# --------------------------------------------------------------------------
# torch Datasets
# --------------------------------------------------------------------------


def image_from_item(image, where: str = "X") -> np.ndarray:
    """One dataset item's image as float32 ``(c, h, w)`` (the module's rules).

    Examples
    --------
    >>> image_from_item(torch.full((4, 4), 255, dtype=torch.uint8)).max()
    np.float32(1.0)
    """
    if hasattr(image, "detach") and hasattr(image, "cpu"):
        image = image.detach().cpu().numpy()
    arr = np.asarray(image)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.float32)
    elif arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        arr = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.integer):
        raise TypeError(
            f"{where}: integer images in a torch Dataset must be uint8 or uint16 "
            f"(scaled by their dtype); got {arr.dtype}. Convert them, or yield floats."
        )
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError(
                f"{where} contains NaN or inf values; every pixel must be finite."
            )
        arr = arr.astype(np.float32)
    else:
        raise TypeError(
            f"{where}: images must hold numbers (floats, uint8, uint16 or booleans); "
            f"got dtype {arr.dtype}."
        )
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3:
        if arr.shape[2] in (1, 3, 4) and arr.shape[0] not in (1, 3, 4):
            arr = arr.transpose(2, 0, 1)
    else:
        raise ValueError(
            f"{where}: each image must have 2 (h, w) or 3 (c, h, w) / (h, w, c) "
            f"dimensions; got shape {arr.shape}."
        )
    check_image_size(arr.shape, name=where)
    return np.ascontiguousarray(arr, dtype=np.float32)


def _item_image(item):
    return item[0] if isinstance(item, (tuple, list)) else item


def dataset_labels(dataset, verbose=0) -> np.ndarray:
    """Labels of a torch Dataset of ``(image, label)`` items.

    Uses the ``targets`` attribute when there is one (mapped through
    ``classes`` when it holds names, as torchvision's ``ImageFolder`` does);
    otherwise reads every item once.

    Examples
    --------
    >>> ds = torch.utils.data.TensorDataset(
    ...     torch.zeros(3, 2, 2), torch.tensor([1, 0, 1]))
    >>> dataset_labels(ds).tolist()
    [1, 0, 1]
    """
    targets = getattr(dataset, "targets", None)
    if targets is not None and len(targets) == len(dataset):
        targets = np.asarray(
            targets.cpu().numpy() if hasattr(targets, "cpu") else targets
        )
        classes = getattr(dataset, "classes", None)
        if classes is not None and np.issubdtype(targets.dtype, np.integer):
            return np.asarray(classes)[targets]
        return targets
    labels = []
    for i in _progress(range(len(dataset)), verbose, "reading labels"):
        item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise ValueError(
                "X: a torch Dataset given without y must yield (image, label) "
                f"items; item {i} is a {type(item).__name__}."
            )
        label = item[1]
        labels.append(label.item() if hasattr(label, "item") else label)
    return np.asarray(labels)


def check_dataset(X) -> None:
    """Refuse torch Datasets that cannot be indexed or have no items."""
    if isinstance(X, torch.utils.data.IterableDataset) or not hasattr(X, "__len__"):
        raise TypeError(
            "X: iterable-style torch Datasets are not supported; pass a map-style "
            "Dataset (with __len__ and __getitem__)."
        )
    if len(X) == 0:
        raise ValueError("X: the torch Dataset has 0 items; at least 1 is required.")


class DatasetImages:
    """Images of a torch Dataset, converted and checked one by one."""

    def __init__(self, dataset, shape=None, channels=None):
        self.dataset = dataset
        self.shape = shape
        self.channels = channels

    def __len__(self):
        return len(self.dataset)

    def image(self, index: int) -> np.ndarray:
        where = f"X[{index}]"
        if isinstance(self.dataset, _ImageFiles):
            arr = self.dataset.image(index)
        else:
            arr = image_from_item(_item_image(self.dataset[index]), where)
        if self.channels is not None and arr.shape[0] != self.channels:
            raise ValueError(
                f"{where} has {arr.shape[0]} channel(s) but the estimator was fitted "
                f"on {self.channels}; pass images with {self.channels} channel(s)."
            )
        if self.shape is not None and tuple(arr.shape) != tuple(self.shape):
            raise ValueError(
                f"{where} has shape (c, h, w)={tuple(arr.shape)}, unlike the first "
                f"item's {tuple(self.shape)}; every image of a dataset must have the "
                "same shape."
            )
        return arr


def dataset_stats(images, verbose=0):
    """Channel mean and std from at most :data:`STATS_SAMPLE` images.

    ``images`` has ``__len__`` and ``image(i)``. A fixed sample (the same for
    every fit) keeps the estimator's random state untouched; with no more
    images than the sample, all are used and the result equals
    :func:`channel_stats` on the stacked array.
    """
    n = len(images)
    idx = np.arange(n)
    if n > STATS_SAMPLE:
        idx = np.sort(np.random.RandomState(0).choice(n, STATS_SAMPLE, replace=False))
    first = images.image(int(idx[0]))
    sample = np.empty((len(idx), *first.shape), dtype=np.float32)
    sample[0] = first
    for j in _progress(range(1, len(idx)), verbose, "channel statistics"):
        sample[j] = images.image(int(idx[j]))
    return channel_stats(sample)


class StandardisedDataset(TorchDataset):
    """Standardised images with their (encoded) labels, read one by one.

    Parameters
    ----------
    images : object with ``__len__`` and ``image(i)``
        Returns float32 ``(c, h, w)`` pixels.
    labels : ndarray of int64 or None
        None gives label 0 (prediction).
    mean, std : ndarray of float32, shape (c,)
    """

    def __init__(self, images, labels, mean, std):
        self.images = images
        self.labels = (
            np.zeros(len(images), dtype=np.int64) if labels is None else labels
        )
        self.mean = np.asarray(mean, dtype=np.float32)[:, None, None]
        self.std = np.asarray(std, dtype=np.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):
        x = (self.images.image(index) - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(x)), self.labels[index]
