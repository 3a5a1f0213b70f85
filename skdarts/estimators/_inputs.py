"""What the classifier accepts as X and y, validated and standardised."""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
from sklearn.exceptions import DataConversionWarning
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data
from torch.utils.data import Dataset as TorchDataset

from .. import data as _data
from ..data import (
    DatasetImages,
    ImageFolderDataset,
    ResizedImages,
    StandardisedDataset,
    as_images,
    channel_stats,
    check_dataset,
    dataset_labels,
    dataset_stats,
    is_path_input,
    parse_image_size,
    pixel_divisor,
    read_image_files,
    resize_images,
    to_host,
)
from ._prior import recorded_input_size

__all__ = ["ImageInputs"]


def _naming_x(exc: Exception) -> Exception:
    """sklearn's validation error, its message prefixed with the argument's name."""
    message = str(exc)
    if message.startswith("X"):
        return exc
    try:
        return type(exc)(f"X: {message}")
    except Exception:  # an exception type with another signature: keep it
        return exc


class ImageInputs:
    """Input handling of :class:`~skdarts.SupernetSearchClassifier`.

    Sets, at ``fit``, the fitted attributes describing the images
    (``image_shape_``, ``image_size_``, ``color_``, ``pixel_mean_``,
    ``pixel_std_``, ``n_features_in_``, ``classes_``) and reads new inputs
    the same way at prediction.
    """

    def _file_reading(self) -> tuple[tuple[int, int], str]:
        """``(image_size, color)`` reading new files the way the fit saw its images."""
        if self.color_ is None:
            raise ValueError(
                "X: image files are read as grey (1 channel) or RGB (3 channels), but "
                f"this estimator was fitted on {self.image_shape_[0]}-channel images; "
                "pass arrays or a torch Dataset instead."
            )
        return self.image_size_, self.color_

    def _check_predict_shape(self, X) -> None:
        """Refuse arrays whose images differ from the fit's, naming the dimension.

        Before sklearn's own check, which would speak of "features" when an
        image's size or channel count is at fault.
        """
        shape = getattr(to_host(X), "shape", None)
        if shape is None or len(shape) not in (2, 3, 4) or not shape[0]:
            return
        c, h, w = self.image_shape_
        fitted = f"{c}-channel images of {h}x{w} pixels (c, h, w) = {(c, h, w)}"
        if len(shape) == 2:
            expected = getattr(self, "n_features_in_", c * h * w)
            if shape[1] != expected:
                raise ValueError(
                    f"X has {shape[1]} features, but {type(self).__name__} is "
                    f"expecting {expected} features as input: it was fitted on "
                    f"{fitted}; pass flat rows of {expected} values, or the images "
                    "themselves."
                )
            return
        if len(shape) == 3:
            layouts = {"(n, h, w)": (1, *shape[1:])}
        else:
            layouts = {
                "(n, c, h, w)": tuple(shape[1:]),
                "(n, h, w, c)": (shape[3], shape[1], shape[2]),
            }
        if (c, h, w) in layouts.values():
            return
        # Name what differs: the channel count, else the image size.
        for name, (c2, h2, w2) in layouts.items():
            if c2 == c:
                raise ValueError(
                    f"X: images of {h2}x{w2} pixels (read as {name}, shape "
                    f"{tuple(shape)}), but the estimator was fitted on {fitted}; "
                    f"resize them to {h}x{w}."
                )
        raise ValueError(
            f"X of shape {tuple(shape)} holds no {c}-channel {h}x{w} images: read as "
            + " or as ".join(
                f"{name}, it has {c2} channel(s) of {h2}x{w2}"
                for name, (c2, h2, w2) in layouts.items()
            )
            + f"; the estimator was fitted on {fitted}. Pass images with {c} "
            "channel(s), channels first or last."
        )

    def _network_input_size(self, handed_prior=None) -> tuple[int, int] | None:
        """The ``(h, w)`` the network will see, from ``image_size`` (or None)."""
        if not (isinstance(self.image_size, str) and self.image_size == "prior"):
            return parse_image_size(self.image_size, name="image_size")
        warm = self.warm_start
        if warm is True:  # continuing this estimator's own fit: its size
            return getattr(self, "input_size_", None)
        if isinstance(warm, str) and warm == "auto":
            warm = handed_prior
        return recorded_input_size(warm)

    def _resized(self, images, source):
        """``images`` (array) or ``source`` (lazy) resampled to ``input_size_``."""
        size = getattr(self, "input_size_", None)  # absent in older pickles
        if size is None:
            return images, source
        if images is not None:
            return resize_images(images, size), None
        return images, ResizedImages(source, size)

    def _images(self, X, reset: bool, y=None):
        """Validate X and return standardised images with any labels X carries.

        Arrays give an ``(n, c, h, w)`` float32 array (sklearn's validation:
        ``n_features_in_``, NaN, ...); image folders, lists of image files and
        torch Datasets give a :class:`~skdarts.data.StandardisedDataset`, read
        lazily (a folder that fits in memory is read at once). Returns
        ``(images, labels)``; labels come from a folder's sub-folders or a
        dataset (None for arrays and for prediction).
        """
        labels = source = images = None
        from_arrays = False
        if reset and y is not None and isinstance(X, (str, os.PathLike)):
            raise ValueError(
                "y must be None when X is a folder: the labels are the names of its "
                f"class sub-folders; got y of type {type(y).__name__}."
            )
        if reset and y is None and not is_path_input(X):
            if not isinstance(X, TorchDataset):
                raise ValueError(
                    "SupernetSearchClassifier requires y to be passed, but the target "
                    "y is None: the search is supervised and needs one label per "
                    "image (or pass an image folder or a torch Dataset of (image, "
                    "label) items as X)."
                )
        if is_path_input(X):
            if reset and isinstance(X, (str, os.PathLike)):
                files = ImageFolderDataset(
                    X, verbose=self.verbose, min_classes=2, _name="X"
                )
                labels = np.asarray(files.classes)[files.targets]
            elif reset:
                if y is None:
                    raise ValueError(
                        "y is None, but X is a list of image files; pass one label "
                        "per file (or a folder with one sub-folder per class)."
                    )
                files = read_image_files(X, verbose=self.verbose)
            else:
                size, color = self._file_reading()
                files = read_image_files(X, size, color, verbose=0)
            n_bytes = 4 * len(files) * math.prod(files.image_shape)
            if n_bytes <= _data.FOLDER_MEMORY_BUDGET:
                images = files.to_array(verbose=self.verbose if reset else 0)
            else:
                source = files
        elif isinstance(X, TorchDataset):
            check_dataset(X)
            if reset and y is None:
                labels = dataset_labels(X, verbose=self.verbose)
            source = DatasetImages(X, channels=None if reset else self.image_shape_[0])
            source.shape = source.image(0).shape
        else:
            if not reset:
                self._check_predict_shape(X)
            try:
                Xv = validate_data(
                    self,
                    to_host(X),
                    reset=reset,
                    allow_nd=True,
                    dtype=None,
                    ensure_min_samples=1,
                )
            except (TypeError, ValueError) as exc:
                raise _naming_x(exc) from exc
            from_arrays = True
            if reset:
                # Decided once: a batch's own maximum must not change its scale.
                self.input_scale_ = pixel_divisor(Xv)
            images = as_images(
                Xv,
                image_shape=self.image_shape,
                channels=None if reset else self.image_shape_[0],
                # Pickles from before input_scale_ keep their per-batch rule.
                scale=getattr(self, "input_scale_", None),
            )
        input_hw = tuple(images.shape[2:] if images is not None else source.shape[1:])
        images, source = self._resized(images, source)
        if reset:
            if not from_arrays:
                # n_features_in_ describes arrays (sklearn's X.shape[1]); a fit on
                # files or a dataset must not keep one from an earlier fit.
                for name in ("n_features_in_", "feature_names_in_", "input_scale_"):
                    self.__dict__.pop(name, None)
            shape = images.shape[1:] if images is not None else source.shape
            if self.input_size_ is not None:
                # The inputs' own size (before resampling): what predict-time
                # arrays and files are checked against and read at.
                shape = (shape[0], *input_hw)
            self.image_shape_ = tuple(int(s) for s in shape)
            self.image_size_ = self.image_shape_[1:]
            self.color_ = {1: "grey", 3: "rgb"}.get(self.image_shape_[0])
            self.pixel_mean_, self.pixel_std_ = (
                channel_stats(images)
                if images is not None
                else dataset_stats(source, verbose=self.verbose)
            )
        if images is not None:
            images = (images - self.pixel_mean_[None, :, None, None]) / self.pixel_std_[
                None, :, None, None
            ]
            return images, labels
        return StandardisedDataset(
            source, None, self.pixel_mean_, self.pixel_std_
        ), labels

    def _encoded_labels(self, y, labels, n_images: int) -> np.ndarray:
        """``y`` (or the labels X carried) checked and encoded; sets ``classes_``."""
        y_name = "y" if labels is None else "the labels of X"
        y = np.asarray(to_host(y) if labels is None else labels)
        if y.ndim == 2 and y.shape[1] == 1:
            warnings.warn(
                "A column-vector y was passed when a 1d array was expected; "
                "it is raveled.",
                DataConversionWarning,
                stacklevel=4,
            )
            y = y.ravel()
        if y.ndim != 1:
            raise ValueError(
                f"{y_name} must be 1-d (one label per image); got shape {y.shape}."
            )
        if len(y) != n_images:
            raise ValueError(
                f"X and y have inconsistent numbers of samples: X has {n_images}, "
                f"y has {len(y)}; pass one label per image."
            )
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(
                f"{y_name} has only one class ({self.classes_[0]!r}); a classifier "
                "needs at least 2 classes."
            )
        if n_images < 2:
            raise ValueError(
                "X: n_samples=1: the search needs at least 2 samples (one for the "
                "weights, one for the architecture)."
            )
        return encoder.transform(y).astype(np.int64)
