"""Images and labels for a selector's signature, from inputs that are not arrays.

:class:`~skdarts.OTSourceSelector` must accept everything
:class:`~skdarts.SupernetSearchClassifier` accepts, because a pipeline hands
both the same ``X``. Arrays go through scikit-learn's validation; image
folders, lists of image files and torch Datasets are read here, the way the
classifier reads them, into one float32 array.
"""

from __future__ import annotations

import os

import numpy as np
from torch.utils.data import Dataset as TorchDataset

from ..data import (
    DatasetImages,
    ImageFolderDataset,
    check_dataset,
    dataset_labels,
    is_path_input,
    read_image_files,
)

__all__ = ["MAX_SIGNATURE_IMAGES", "is_file_or_dataset_input", "read_signature_images"]

#: Images decoded for the signature of a folder, file list or torch Dataset;
#: larger inputs are subsampled uniformly, so a huge folder is not decoded
#: just to rank the zoo (the signature keeps far fewer points anyway).
MAX_SIGNATURE_IMAGES = 5000


def is_file_or_dataset_input(X) -> bool:
    """Whether ``X`` is read here rather than validated as an array."""
    return is_path_input(X) or isinstance(X, TorchDataset)


def read_signature_images(X, y, rng: np.random.RandomState, verbose: int = 0):
    """``(images (n, c, h, w) float32, labels or None)`` of a non-array ``X``.

    Labels come from ``y`` when given, else from a folder's class sub-folders
    or a Dataset's labels.
    """
    if isinstance(X, (str, os.PathLike)) and os.path.isdir(X) and y is None:
        source = ImageFolderDataset(X, verbose=verbose, _name="X")
        labels = np.asarray(source.classes)[source.targets]
    elif is_path_input(X):
        if isinstance(X, (str, os.PathLike)) and os.path.isdir(X):
            raise ValueError(
                "y must be None when X is a folder: the labels are the names of its "
                f"class sub-folders; got y of type {type(y).__name__}."
            )
        source = read_image_files(X, verbose=verbose)
        labels = None
    else:
        check_dataset(X)
        source = X
        labels = dataset_labels(X, verbose=verbose) if y is None else None
    if y is not None:
        labels = np.asarray(y)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels.ravel()
        if labels.ndim != 1 or len(labels) != len(source):
            raise ValueError(
                f"y must be 1-d with one label per image ({len(source)}); got "
                f"shape {labels.shape}."
            )
    index = np.arange(len(source))
    if len(index) > MAX_SIGNATURE_IMAGES:
        index = np.sort(rng.choice(index, MAX_SIGNATURE_IMAGES, replace=False))
    images = DatasetImages(source)
    first = images.image(int(index[0]))
    images.shape = first.shape  # every item must match the first
    out = np.empty((len(index), *first.shape), dtype=np.float32)
    out[0] = first
    for k, i in enumerate(index[1:], start=1):
        out[k] = images.image(int(i))
    return out, (labels[index] if labels is not None else None)
