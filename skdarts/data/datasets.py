"""torch Datasets of ``(image, label)`` items: checking, labels, statistics."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from .arrays import channel_stats, check_image_size
from .folders import _ImageFiles
from .progress import _progress

#: Images of a torch Dataset read to estimate the channel statistics.
STATS_SAMPLE = 2048


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


class ResizedImages:
    """A lazy image source (``__len__`` and ``image(i)``) resampled on read.

    Wraps the sources :class:`StandardisedDataset` reads from (image folders
    read lazily, torch Datasets), so resizing costs no memory up front.

    Parameters
    ----------
    images : object with ``__len__``, ``image(i)`` and ``shape`` (c, h, w)
    size : (int, int)
        The (height, width) every image is resampled to (antialiased
        bilinear, as :func:`skdarts.data.resize_images`).

    Examples
    --------
    >>> class Ones:
    ...     shape = (1, 4, 4)
    ...     def __len__(self):
    ...         return 3
    ...     def image(self, i):
    ...         return np.ones(self.shape, dtype=np.float32)
    >>> r = ResizedImages(Ones(), (8, 6))
    >>> len(r), r.shape, r.image(0).shape
    (3, (1, 8, 6), (1, 8, 6))
    """

    def __init__(self, images, size):
        self.images = images
        self.size = (int(size[0]), int(size[1]))
        self.shape = (int(images.shape[0]), *self.size)

    def __len__(self) -> int:
        return len(self.images)

    def image(self, index: int) -> np.ndarray:
        from .arrays import resize_images

        return resize_images(self.images.image(index)[None], self.size)[0]
