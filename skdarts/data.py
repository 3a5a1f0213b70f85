"""Turning user input into image tensors: shapes, scaling and validation.

Knows nothing of models. The estimators call :func:`as_images` on everything
they are given, so the rules below are the package's one input contract.

Layouts accepted for ``X``
--------------------------
* ``(n, h, w)``: grey images;
* ``(n, c, h, w)`` or ``(n, h, w, c)``: colour images; channels-last is
  recognised when the last axis has 1, 3 or 4 entries and the second does not;
* ``(n, features)``: flat rows, reshaped with ``image_shape`` (``(h, w)`` or
  ``(c, h, w)``); without it, square grey images when ``features`` is a perfect
  square, otherwise one row of ``features`` pixels (tabular data).

Scaling rule
------------
Integer pixels must lie in [0, 65535]: values up to 255 are read as 8-bit
(divided by 255), larger ones as 16-bit (divided by 65535). Floating-point
pixels are used as given and must be finite. After that every channel is
standardised with the mean and standard deviation seen at ``fit``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["as_images", "channel_stats", "infer_image_shape"]


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
    Xf = X.astype(np.float32, copy=False)
    if not np.isfinite(Xf).all():
        bad = "NaN" if np.isnan(Xf).any() else "inf"
        raise ValueError(
            f"X contains {bad} values (first at index "
            f"{tuple(int(i) for i in np.argwhere(~np.isfinite(Xf))[0])}); every pixel "
            "must be finite. Input contains NaN or infinity."
        )
    return Xf


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
    if hasattr(X, "detach") and hasattr(X, "cpu"):  # torch tensor
        X = X.detach().cpu().numpy()
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
