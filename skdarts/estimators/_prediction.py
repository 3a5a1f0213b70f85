"""Prediction of the classifier: ``predict_proba``, ``predict`` and ``score``."""

from __future__ import annotations

import os

import numpy as np
import torch
from sklearn.metrics import accuracy_score
from sklearn.utils.validation import check_is_fitted

from ..data import ImageFolderDataset
from ._handoff import split_handoff

__all__ = ["Prediction"]


class Prediction:
    """Predicting with a fitted :class:`~skdarts.SupernetSearchClassifier`.

    Uses the final network when one was trained, else the searched supernet.
    """

    def _predicting_net(self):
        return self.final_net_ if self.final_net_ is not None else self.net_

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``.

        Parameters
        ----------
        X : array-like of images, path, list of paths or torch Dataset
            As in ``fit``; a path may also be a folder of images (read
            recursively, in sorted order) or one image file. Files are read
            with ``image_size_`` and ``color_``.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        X, _ = split_handoff(X)  # in a pipeline, after an OTSourceSelector
        images, _ = self._images(X, reset=False)
        net = self._predicting_net()
        net.module_.eval()
        try:
            with torch.no_grad():
                proba = net.predict_proba(images)
        except (MemoryError, RuntimeError) as exc:
            text = str(exc).lower()
            if not isinstance(exc, MemoryError) and "alloc" not in text:
                raise
            c, h, w = self.image_shape_
            raise MemoryError(
                f"out of memory predicting {len(images)} images of {h}x{w} pixels "
                f"({c} channel(s)) in batches of batch_size={self.batch_size}: pass "
                "fewer images at a time, lower batch_size, or fit on smaller images "
                f"(resize them). ({str(exc).splitlines()[0]})"
            ) from exc
        return np.asarray(proba, dtype=np.float64)

    def predict(self, X) -> np.ndarray:
        """Predicted labels (of the same type as ``y`` in ``fit``).

        Parameters
        ----------
        X : array-like of images, path, list of paths or torch Dataset
            As in ``fit``; a path may also be a folder of images (read
            recursively, in sorted order) or one image file. Files are read
            with ``image_size_`` and ``color_``.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def score(self, X, y=None, sample_weight=None) -> float:
        """Mean accuracy on ``(X, y)``, or on a labelled image folder.

        Parameters
        ----------
        X : array-like of images, path, list of paths or torch Dataset
            As in :meth:`predict`. A folder with one sub-folder per class may
            be given without ``y``: the sub-folder names are the true labels
            (as in ``fit(folder)``; files directly in the folder are ignored).
        y : array-like of shape (n,), optional
            True labels; required unless ``X`` is such a folder.
        sample_weight : array-like of shape (n,), optional

        Returns
        -------
        float
        """
        X, _ = split_handoff(X)
        if y is None:
            if not (isinstance(X, (str, os.PathLike)) and os.path.isdir(X)):
                raise ValueError(
                    "y is None, but X is not a folder with one sub-folder per class "
                    f"(got X of type {type(X).__name__}); pass the true labels as y."
                )
            check_is_fitted(self)
            size, color = self._file_reading()
            folder = ImageFolderDataset(
                X, image_size=size, color=color, verbose=0, _name="X"
            )
            X, y = folder.paths, np.asarray(folder.classes)[folder.targets]
        return accuracy_score(y, self.predict(X), sample_weight=sample_weight)
