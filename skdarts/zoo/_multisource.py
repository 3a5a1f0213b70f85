"""Several sources in one supernet: common input, a head each, mixed batches.

The building blocks of :func:`~skdarts.zoo.pretrain_mixture` (its rules are
below), used by the search loop of :mod:`._pretrain`; a leaf module (torch
only), so that neither pretraining module imports the other to get them.

Mixture training (``pretrain_mixture``)
---------------------------------------
* **Shared body, one head per source.** The supernet gets one linear head
  over the union of all sources' classes (source ``s`` owns the slice
  ``offset_s : offset_s + n_classes_s``); the loss of a sample only sees the
  logits of its own source's slice (the others are masked to ``-inf``).
  That is exactly one separate linear head per source on shared features,
  and it keeps ``SearchNet`` and ``Supernet`` unchanged. The slices are
  recorded in the entry (``provenance["heads"]``).
* **Mixing rule.** ``"balanced"`` (default): every sample of a batch is
  drawn from each source with equal probability ``1 / n_sources`` (a
  ``WeightedRandomSampler`` with weight ``1 / n_s`` per sample of source
  ``s``, with replacement, ``sum(n_s)`` draws per epoch), for both the
  weight and the architecture batches. ``"proportional"``: plain shuffling of
  the pooled data, so a source appears in proportion to its size.
* **Common input.** Every source's images are resized (bilinear, with
  antialiasing) to ``image_size``, by default the largest height and the
  largest width among the sources. Channels: 3 when any source has 3 or
  more (grey sources are replicated, an alpha channel is dropped), else 1.
  Each source is then standardised with its own per-channel mean and
  standard deviation (as the estimator standardises a target).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler

__all__ = ["SourceMaskedCrossEntropy"]

#: The mixing rules ``pretrain_mixture`` accepts.
_MIXING = ("balanced", "proportional")


def _convert(images: np.ndarray, channels: int, size) -> np.ndarray:
    """The mixture's common-input rule (module docstring)."""
    c = images.shape[1]
    if c == 4 and channels == 3:
        images, c = images[:, :3], 3
    if c != channels:
        if c == 1:
            images = np.repeat(images, channels, axis=1)
        elif channels == 1:
            images = images.mean(axis=1, keepdims=True)
        else:
            raise ValueError(f"cannot convert {c}-channel images to {channels}.")
    if size is not None and tuple(images.shape[2:]) != tuple(size):
        out = []
        for start in range(0, len(images), 1024):
            chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + 1024]))
            out.append(
                F.interpolate(
                    chunk, size=tuple(size), mode="bilinear", antialias=True
                ).numpy()
            )
        images = np.concatenate(out)
    return np.ascontiguousarray(images, dtype=np.float32)


class SourceMaskedCrossEntropy(nn.Module):
    """Cross-entropy over the logits of each sample's own source only.

    With one head over the union of the sources' classes, masking the other
    sources' logits makes it one softmax head per source.

    Parameters
    ----------
    class_source : sequence of int
        The source index of each (global) class.

    Examples
    --------
    >>> loss = SourceMaskedCrossEntropy([0, 0, 1, 1, 1])
    >>> logits = torch.tensor([[0.0, 0.0, 9.0, 9.0, 9.0]])
    >>> round(float(loss(logits, torch.tensor([0]))), 4)  # source 0: 2 classes
    0.6931
    """

    def __init__(self, class_source):
        super().__init__()
        self.register_buffer(
            "class_source", torch.as_tensor(list(class_source), dtype=torch.long)
        )

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        cs = self.class_source.to(logits.device)
        y = y.to(logits.device)
        other = cs[None, :] != cs[y][:, None]
        return F.cross_entropy(logits.masked_fill(other, float("-inf")), y)


def _mixing_loader(dataset, batch_size=64, shuffle=True, **kwargs):
    """DataLoader that draws by ``dataset.mix_weights`` when it has them."""
    weights = getattr(dataset, "mix_weights", None)
    if weights is None:
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, **kwargs)
    sampler = WeightedRandomSampler(weights, num_samples=len(dataset), replacement=True)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, **kwargs)
