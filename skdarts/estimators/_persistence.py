"""Persistence of the classifier: loading on another machine, exporting."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from sklearn.utils.validation import check_is_fitted

from ..export import ExportedClassifier, export_network

__all__ = ["Persistence"]


class Persistence:
    """Loading pickles, and :meth:`export`, of a ``SupernetSearchClassifier``."""

    def __setstate__(self, state):
        super().__setstate__(state)
        device = getattr(self, "device_", None)
        if (
            isinstance(device, str)
            and device.startswith("cuda")
            and not torch.cuda.is_available()
        ):
            # The skorch nets inside have already mapped their tensors to the CPU.
            warnings.warn(
                f"This SupernetSearchClassifier was fitted on {device!r}, which is "
                "not available here: it was loaded on the CPU (device_='cpu').",
                UserWarning,
                stacklevel=2,
            )
            self.device_ = "cpu"

    def export(
        self, path, format: str = "safetensors", *, overwrite: bool = False
    ) -> Path:
        """Write the trained derived network for use without this estimator.

        The exported model includes the input standardisation and returns
        class probabilities equal to :meth:`predict_proba`'s, for images
        scaled as :func:`skdarts.data.as_images` scales them (8-bit integer
        pixels divided by 255). See :mod:`skdarts.export` for the formats;
        :func:`skdarts.load_exported` reads them back. The write is atomic.

        Parameters
        ----------
        path : str or path-like
            A folder for ``"safetensors"``, a file otherwise.
        format : {"safetensors", "torchscript", "onnx"}, default="safetensors"
        overwrite : bool, default=False
            Replace an existing export.

        Returns
        -------
        pathlib.Path

        Examples
        --------
        >>> import os, tempfile
        >>> from sklearn.datasets import load_digits
        >>> from skdarts import SupernetSearchClassifier, load_exported
        >>> X, y = load_digits(return_X_y=True)
        >>> clf = SupernetSearchClassifier(search_space="s2", init_channels=2,
        ...     n_cells=1, n_nodes=1, max_epochs=1, final_epochs=1, verbose=0,
        ...     device="cpu", random_state=0).fit(X[:60], y[:60])
        >>> folder = clf.export(os.path.join(tempfile.mkdtemp(), "digits"))
        >>> model = load_exported(folder)
        >>> images = torch.tensor(X[:2].reshape(-1, 1, 8, 8), dtype=torch.float32)
        >>> bool(torch.allclose(model(images).double(),
        ...     torch.from_numpy(clf.predict_proba(X[:2])), atol=1e-6))
        True
        """
        check_is_fitted(self)
        if self.final_net_ is None:
            raise ValueError(
                "export writes the trained derived network, but this estimator has "
                "none (final_epochs=0 or an interrupted search): fit with "
                "final_epochs >= 1 (or resume the search) first."
            )
        model = ExportedClassifier(
            copy.deepcopy(self.final_net_.module_).cpu(),
            self.pixel_mean_,
            self.pixel_std_,
            classes=self.classes_.tolist(),
            image_shape=self.image_shape_,
        )
        return export_network(model, path, format=format, overwrite=overwrite)
