"""Arrays to images: layouts, the scaling rule, the size rule, image sizes.

The rules are stated once, in :mod:`skdarts.data`. Two names that are easy to
confuse:

* ``image_shape`` - how to **reshape flat rows** ``(n, features)`` into
  images: ``(h, w)`` or ``(c, h, w)``; it never resamples anything;
* ``image_size`` - a **resize target** ``(height, width)`` (or one int for a
  square) that images are resampled to (see :func:`parse_image_size`).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch


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


def pixel_divisor(X) -> float:
    """The divisor the scaling rule gives the pixels of ``X`` (1.0: as given).

    Decided once, on the data given to ``fit``, and stored by the estimator
    (``input_scale_``) so that every later batch is scaled the same way.

    Examples
    --------
    >>> pixel_divisor(np.array([[0, 200]])), pixel_divisor(np.array([[0, 300]]))
    (255.0, 65535.0)
    >>> pixel_divisor(np.array([[0.5]]))
    1.0
    """
    X = np.asarray(X)
    if not np.issubdtype(X.dtype, np.integer) or X.dtype == np.bool_ or not X.size:
        return 1.0
    return 255.0 if int(X.max()) <= 255 else 65535.0


def _check_scale(X: np.ndarray, divisor: float) -> None:
    """Warn when ``X`` does not look like the pixels the divisor was fitted on."""
    integer = np.issubdtype(X.dtype, np.integer) and X.dtype != np.bool_
    if divisor > 1.0 and not integer:
        warnings.warn(
            f"X holds {X.dtype} pixels, but the estimator was fitted on integer "
            f"pixels (divided by {divisor:g}); these are divided by {divisor:g} too. "
            "Pass the same kind of pixels as at fit (integers, or floats on the "
            "fit's scale).",
            UserWarning,
            stacklevel=5,
        )
    elif divisor == 1.0 and integer:
        warnings.warn(
            f"X holds {X.dtype} pixels, but the estimator was fitted on "
            "floating-point pixels (used as given); these integers are used as "
            "given too. Pass floats on the fit's scale.",
            UserWarning,
            stacklevel=5,
        )
    elif integer and X.size and int(X.max()) > divisor:
        warnings.warn(
            f"X holds integer pixels up to {int(X.max())}, above the {divisor:g} of "
            f"the images the estimator was fitted on (8-bit: 255, 16-bit: 65535); "
            "they are scaled as at fit.",
            UserWarning,
            stacklevel=5,
        )


def _scale(X: np.ndarray, divisor: float | None = None) -> np.ndarray:
    if divisor is not None:
        _check_scale(X, divisor)
    if X.dtype == np.bool_:
        return X.astype(np.float32)
    if np.issubdtype(X.dtype, np.integer):
        lo, hi = (int(X.min()), int(X.max())) if X.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise ValueError(
                f"X: integer pixels must lie in [0, 65535] (8- or 16-bit images); got "
                f"values in [{lo}, {hi}]. Pass floats to use values as given."
            )
        if divisor is None:
            divisor = 255.0 if hi <= 255 else 65535.0
        return X.astype(np.float32) / np.float32(divisor)
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
    X = X.astype(np.float32, copy=False)
    if divisor is not None and divisor != 1.0:
        X = X / np.float32(divisor)
    return X


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
    X,
    image_shape: Sequence[int] | None = None,
    channels: int | None = None,
    scale: float | None = None,
) -> np.ndarray:
    """Validate ``X`` and return float32 images of shape ``(n, c, h, w)``.

    Parameters
    ----------
    X : array-like
        See the module's layouts.
    image_shape : tuple of int, optional
        How to reshape flat rows ``(n, features)`` into images: ``(h, w)`` or
        ``(c, h, w)``; checked against 3-D/4-D input. It never resamples (a
        resize target is ``image_size``, for image files).
    channels : int, optional
        The channel count expected (the one seen at ``fit``).
    scale : float, optional
        The divisor decided at ``fit`` (:func:`pixel_divisor`); None applies
        the scaling rule to this array alone. Input unlike the fit's
        (integers for floats, floats for integers, integers above it) warns.

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
    X = _scale(X, scale)

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


def parse_image_size(image_size, name: str = "image_size") -> tuple[int, int] | None:
    """Check a resize target and return it as ``(height, width)``.

    ``image_size`` is a **resize target**: images are resampled to it. It is
    not ``image_shape``, which only says how flat rows are reshaped. The
    one rule used by image folders, zoo pretraining and the command line.

    Parameters
    ----------
    image_size : None, int, (int, int) or str
        ``None`` (no target), one int ``n`` for ``n x n``, a pair
        ``(height, width)``, or a string ``"n"``, ``"HxW"`` or ``"H,W"``
        (as typed on the command line).
    name : str, default="image_size"
        The argument named in errors.

    Returns
    -------
    tuple of (int, int), or None

    Raises
    ------
    TypeError
        For anything but the forms above.
    ValueError
        For sizes below 1, or images of fewer than 2 pixels (the size rule).

    Examples
    --------
    >>> parse_image_size(28), parse_image_size((32, 16)), parse_image_size("20x24")
    ((28, 28), (32, 16), (20, 24))
    >>> parse_image_size(None) is None
    True
    >>> parse_image_size(1)
    Traceback (most recent call last):
    ...
    ValueError: image_size: images of 1x1 pixel...
    """
    if image_size is None:
        return None
    given = image_size
    if isinstance(image_size, str):
        try:
            parts = [int(v) for v in image_size.lower().replace("x", ",").split(",")]
        except ValueError:
            raise TypeError(
                f"{name} must be N or HxW (e.g. 28 or 32x32); got {given!r}."
            ) from None
        image_size = parts[0] if len(parts) == 1 else tuple(parts)
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


def resize_images(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resample ``(n, c, h, w)`` images to ``size`` = (height, width).

    Antialiased bilinear interpolation (``torch.nn.functional.interpolate``),
    in chunks so a large array is not doubled in memory at once; images
    already of that size come back unchanged.

    Parameters
    ----------
    images : ndarray of shape (n, c, h, w)
    size : (int, int)

    Returns
    -------
    ndarray of float32, shape (n, c, height, width)

    Examples
    --------
    >>> resize_images(np.ones((2, 1, 8, 8), dtype=np.float32), (16, 16)).shape
    (2, 1, 16, 16)
    """
    import torch
    import torch.nn.functional as F

    size = (int(size[0]), int(size[1]))
    if tuple(images.shape[2:]) == size:
        return images
    out = np.empty((len(images), images.shape[1], *size), dtype=np.float32)
    for start in range(0, len(images), 1024):
        chunk = torch.from_numpy(
            np.ascontiguousarray(images[start : start + 1024], dtype=np.float32)
        )
        out[start : start + len(chunk)] = F.interpolate(
            chunk, size=size, mode="bilinear", antialias=True, align_corners=False
        ).numpy()
    return out
