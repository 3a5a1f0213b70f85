"""Image folders and image files: discovery, decoding, colour and resizing.

See :mod:`skdarts.data` (section "Image files") for the rules.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from .arrays import check_image_size, parse_image_size
from .progress import _progress

#: File extensions read as images (case-insensitive).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


#: Decoded size (bytes of float32 pixels) up to which ``fit(path)`` loads a
#: folder into memory; larger folders are read lazily, batch by batch.
FOLDER_MEMORY_BUDGET = 1 << 30

_GREY_MODES = {"1", "L", "LA", "La", "I", "F"}
_COLORS = ("auto", "grey", "rgb")
_ON_ERROR = ("raise", "skip")


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
        A resize target: ``(height, width)`` (an int for a square) every image
        is resampled to; by default the most common size among the images.
        Not ``image_shape``, which only says how flat array rows are
        reshaped.
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
        The resize target ``(height, width)`` every image is read at.
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
        size = parse_image_size(image_size)
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
    size = parse_image_size(image_size)
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
        A resize target: ``(height, width)`` (an int for a square) every image
        is resampled to; by default the most common size among the images (so
        equally sized images are never resampled). Not ``image_shape``, which
        only says how flat array rows are reshaped.
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
    y : ndarray of str, shape (n,)
        The class of each image: its sub-folder's name, the labels
        ``SupernetSearchClassifier.fit(path)`` learns as ``classes_``, so
        ``clf.score(X, y)`` works on a folder-fitted model (as does
        ``clf.score(path)``). ``np.searchsorted(class_names, y)`` gives class
        indices.
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
    ((4, 3, 4, 4), ['blue', 'blue', 'red', 'red'], ['blue', 'red'])
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
    class_names = np.asarray(ds.classes)
    return X, class_names[ds.targets[keep]], class_names
