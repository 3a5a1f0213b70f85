"""What a pretraining run records, and how it is keyed and seeded.

Bookkeeping shared by :func:`~skdarts.zoo.pretrain` and
:func:`~skdarts.zoo.pretrain_mixture`: the provenance written into an entry
(per-source records, the search parameters as JSON, a summary of the
training history, how far the alphas moved from uniform), the fingerprint
that keys a resumable run's checkpoint, and the per-entry seeds.
"""

from __future__ import annotations

import copy
import hashlib
import json

import numpy as np
import torch
from sklearn.utils import check_random_state

__all__ = ["alpha_statistics"]


def _history_summary(history) -> list[dict]:
    keys = ("epoch", "train_loss", "train_acc", "valid_loss", "valid_acc", "dur")
    rows = []
    for row in history:
        rows.append(
            {
                k: (round(float(row[k]), 5) if k != "epoch" else int(row[k]))
                for k in keys
                if k in row
            }
        )
    return rows


def alpha_statistics(module) -> dict:
    """How far a supernet's architecture weights are from uniform.

    An architecture prior is only worth transferring when its alphas have
    moved: with DARTS' initialisation every edge's softmax starts at
    ``1 / n_ops``. For each ``alphas_*`` tensor of ``module`` (one row per
    edge), this reports the mean and minimum of the softmax entropy
    normalised by ``log(n_ops)`` (1.0 = uniform), the largest absolute
    deviation of a softmax weight from ``1 / n_ops``, and the largest
    softmax weight.

    Parameters
    ----------
    module : torch.nn.Module
        A supernet whose architecture parameters are named ``alphas_*``.

    Returns
    -------
    dict
        ``{name: {"normalised_entropy_mean", "normalised_entropy_min",
        "max_abs_deviation", "max_weight", "n_ops"}}``.

    Examples
    --------
    >>> from skdarts.supernet import Supernet
    >>> net = Supernet(in_channels=1, init_channels=2, n_cells=1, n_nodes=1)
    >>> stats = alpha_statistics(net)["alphas_normal"]
    >>> stats["normalised_entropy_mean"] > 0.999  # freshly initialised: uniform
    True
    """
    out = {}
    for name, param in module.named_parameters():
        if not name.startswith("alphas_") or param.ndim != 2:
            continue
        a = param.detach().double()
        n_ops = a.shape[-1]
        w = torch.softmax(a, dim=-1)
        entropy = -(w * w.clamp_min(1e-300).log()).sum(-1) / np.log(n_ops)
        out[name] = {
            "normalised_entropy_mean": round(float(entropy.mean()), 6),
            "normalised_entropy_min": round(float(entropy.min()), 6),
            "max_abs_deviation": round(float((w - 1.0 / n_ops).abs().max()), 6),
            "max_weight": round(float(w.max()), 6),
            "n_ops": int(n_ops),
        }
    return out


def _checkpoint_key(parts, params: dict, mixing: str, seed: int) -> str:
    """A fingerprint of everything that decides a pretraining run.

    A resumed run must be the same run: the key covers the search
    parameters, the seed, the mixing rule and the data itself (names,
    shapes and bytes), so a checkpoint left by another run is never
    continued by mistake.
    """
    h = hashlib.sha256()
    h.update(json.dumps(_json_params(params), sort_keys=True, default=str).encode())
    h.update(f"{mixing}|{seed}".encode())
    for name, images, y_enc, n_classes in parts:
        h.update(f"{name}|{images.shape}|{n_classes}".encode())
        h.update(np.ascontiguousarray(images).tobytes())
        h.update(np.ascontiguousarray(y_enc).tobytes())
    return h.hexdigest()[:16]


def _json_params(params: dict) -> dict:
    out = dict(params)
    rs = out["random_state"]
    if rs is not None and not isinstance(rs, (int, np.integer)):
        out["random_state"] = type(rs).__name__
    return out


def _source_info(name, images, raw_shape, classes, extra) -> dict:
    info = {
        "n_samples": len(images),
        "n_classes": len(classes),
        "classes": [str(c) for c in classes],
        "image_shape": [int(s) for s in raw_shape],
        "trained_shape": [int(s) for s in images.shape[1:]],
    }
    info.update(copy.deepcopy(dict((extra or {}).get(name, {}))))
    return info


def _seeds(random_state, n: int) -> list[int]:
    rng = check_random_state(random_state)
    return [int(s) for s in rng.randint(np.iinfo(np.int32).max, size=n)]
