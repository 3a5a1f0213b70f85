"""Resumable searches of the classifier: the search's key and its checkpoint."""

from __future__ import annotations

import hashlib
import json
import numbers
from pathlib import Path

import numpy as np

from ..search import completed_epochs, find_checkpoint

__all__ = ["ResumableSearch", "completed_epochs"]


class ResumableSearch:
    """Finds the checkpoint of a :class:`~skdarts.SupernetSearchClassifier` fit."""

    def _fingerprint(self, images: np.ndarray, y_enc: np.ndarray) -> str:
        """Key of a search: the data and every parameter that shapes its course."""
        ignored = {
            "verbose",
            "callbacks",
            "checkpoint_dir",
            "checkpoint_every",
            "device",
            "cuda_graphs",
            "final_epochs",
            "warm_start",
            "random_state",
            "accelerator",
        }
        params = {
            k: v for k, v in self.get_params(deep=False).items() if k not in ignored
        }
        rs = self.random_state
        params["random_state"] = int(rs) if isinstance(rs, numbers.Integral) else None
        h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
        if isinstance(images, np.ndarray):
            h.update(np.ascontiguousarray(images).tobytes())
        else:
            # A lazy dataset: its size and a fixed spread of its items.
            h.update(str(len(images)).encode())
            for i in np.unique(np.linspace(0, len(images) - 1, 64).astype(int)):
                h.update(np.ascontiguousarray(images[int(i)][0]).tobytes())
        h.update(np.ascontiguousarray(y_enc).tobytes())
        h.update(json.dumps([str(c) for c in self.classes_]).encode())
        return h.hexdigest()

    def _find_checkpoint(self, images, y_enc):
        """The checkpoint callback of this fit and the state to resume, if any."""
        if self.checkpoint_dir is None:
            return None, None
        key = self._fingerprint(images, y_enc)[:16]
        return find_checkpoint(
            Path(self.checkpoint_dir) / f"search-{key}",
            key,
            checkpoint_every=int(self.checkpoint_every),
        )
