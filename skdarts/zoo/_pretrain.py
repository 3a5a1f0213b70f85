"""Pretraining supernets for the zoo: one per source, or one on a mixture.

Both drive the search layer (:class:`~skdarts.search.SearchNet`) directly,
with the same search parameters and defaults as
:class:`~skdarts.SupernetSearchClassifier`.

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

import copy
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from joblib import Parallel, delayed
from sklearn.utils import check_random_state
from skorch.dataset import Dataset
from skorch.helper import predefined_split
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler
from tqdm.auto import tqdm

from .._device import resolve_device, rng_devices
from ..data import as_images, channel_stats, to_host
from ..data import parse_image_size as _check_image_size
from ..search import (
    SearchCheckpoint,
    SearchConfig,
    build_search_net,
    stratified_split,
)
from ._entry import ZooEntry, _check_name, _state_tensors

__all__ = ["SEARCH_DEFAULTS", "alpha_statistics", "pretrain", "pretrain_mixture"]

#: Search parameters accepted by pretraining, with their defaults: those of
#: SearchConfig (the estimator's too) but how a supernet runs (PC-DARTS,
#: checkpointing, CUDA graphs), plus how inputs are read and where and how
#: repeatably the search runs.
SEARCH_DEFAULTS = {
    k: v
    for k, v in SearchConfig.defaults().items()
    if k not in ("partial_channels", "checkpointing", "cuda_graphs")
} | {"image_shape": None, "device": "auto", "random_state": None}
_MIXING = ("balanced", "proportional")


def _search_params(search_params: dict) -> dict:
    unknown = sorted(set(search_params) - set(SEARCH_DEFAULTS))
    if unknown:
        raise TypeError(
            f"unknown search parameter(s) {unknown}; pretraining accepts "
            f"{sorted(SEARCH_DEFAULTS)} (SupernetSearchClassifier's search parameters)."
        )
    params = SEARCH_DEFAULTS | dict(search_params)
    for key in ("init_channels", "n_cells", "n_nodes", "max_epochs", "batch_size"):
        value = params[key]
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TypeError(f"{key} must be a positive int; got {value!r}.")
        if value < 1:
            raise ValueError(f"{key} must be a positive int; got {value!r}.")
    if not 0 < params["arch_split"] < 1:
        raise ValueError(
            "arch_split must lie strictly between 0 and 1; got "
            f"{params['arch_split']!r}."
        )
    return params


def _check_datasets(datasets) -> dict:
    if not isinstance(datasets, Mapping) or not datasets:
        raise TypeError(
            "datasets must be a non-empty dict {name: (X, y)}; got "
            f"{type(datasets).__name__}"
            + (" (empty)" if isinstance(datasets, Mapping) else "")
            + "."
        )
    out = {}
    for name, value in datasets.items():
        _check_name(name)
        if not (isinstance(value, (tuple, list)) and len(value) == 2):
            raise TypeError(
                f"datasets[{name!r}] must be a pair (X, y); got {type(value).__name__}."
            )
        out[name] = tuple(value)
    return out


def _prepare(name: str, X, y, image_shape):
    """Images ``(n, c, h, w)`` float32, encoded labels and the classes."""
    images = as_images(X, image_shape=image_shape)
    y = np.asarray(to_host(y))
    if y.ndim != 1 or len(y) != len(images):
        raise ValueError(
            f"datasets[{name!r}]: y must be 1-d with one label per image; got shape "
            f"{y.shape} for {len(images)} images."
        )
    classes, y_enc = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(
            f"datasets[{name!r}] has a single class ({classes[0]!r}); a source needs "
            "at least 2."
        )
    return images, y_enc.astype(np.int64), classes


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


def _train(
    parts,
    params: dict,
    mixing: str,
    verbose: int,
    seed: int,
    checkpoint_dir=None,
    label: str = "entry",
):
    """Search one supernet on ``parts`` = [(name, images, y_enc, n_classes)].

    Images are already in the common shape. Returns the trained supernet
    (on the CPU) and a JSON-ready dict of what happened. With
    ``checkpoint_dir``, the search state is saved after every epoch under
    ``checkpoint_dir/<label>-<key>/`` and a later call with the same
    arguments continues from it (the result equals an uninterrupted run).
    """
    checkpoint = state = None
    if checkpoint_dir is not None:
        key = _checkpoint_key(parts, params, mixing, seed)
        checkpoint = SearchCheckpoint(
            Path(checkpoint_dir) / f"{label}-{key}", metadata={"fingerprint": key}
        )
        if checkpoint.path_.exists():
            state = SearchCheckpoint.load_state(checkpoint.path_)
            if (state.get("metadata") or {}).get("fingerprint") != key:
                raise ValueError(
                    f"The checkpoint {str(checkpoint.path_)!r} belongs to another "
                    "pretraining run (fingerprint mismatch); delete it or choose "
                    "another checkpoint_dir."
                )
    rng = np.random.RandomState(seed)
    # Resolved here, in the worker: a cluster's workers may have GPUs that the
    # process calling pretrain lacks.
    device = resolve_device(params["device"])
    offsets, class_source = [], []
    xs_w, ys_w, ws_w, xs_a, ys_a, ws_a, arch_parts, stats = ([] for _ in range(8))
    for s, (_, images, y_enc, n_classes) in enumerate(parts):
        offset = len(class_source)
        offsets.append(offset)
        class_source.extend([s] * n_classes)
        mean, std = channel_stats(images)
        images = (images - mean[None, :, None, None]) / std[None, :, None, None]
        stats.append((mean, std))
        w_idx, a_idx = stratified_split(y_enc, params["arch_split"], rng)
        xs_w.append(images[w_idx])
        ys_w.append(y_enc[w_idx] + offset)
        ws_w.append(np.full(len(w_idx), 1.0 / len(w_idx)))
        xs_a.append(images[a_idx])
        ys_a.append(y_enc[a_idx] + offset)
        ws_a.append(np.full(len(a_idx), 1.0 / len(a_idx)))
        arch_parts.append((images[a_idx], y_enc[a_idx] + offset))
    n_total = len(class_source)
    train_ds = Dataset(np.concatenate(xs_w), np.concatenate(ys_w))
    arch_ds = Dataset(np.concatenate(xs_a), np.concatenate(ys_a))
    if mixing == "balanced" and len(parts) > 1:
        train_ds.mix_weights = torch.as_tensor(np.concatenate(ws_w))
        arch_ds.mix_weights = torch.as_tensor(np.concatenate(ws_a))
    criterion = (
        SourceMaskedCrossEntropy if len(parts) > 1 else torch.nn.CrossEntropyLoss
    )
    crit_kwargs = {"criterion__class_source": class_source} if len(parts) > 1 else {}

    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=rng_devices(device)):
        torch.manual_seed(seed)
        config = SearchConfig.from_params(params)
        module = config.make_supernet(parts[0][1].shape[1], n_total)
        net = build_search_net(
            config,
            module,
            criterion=criterion,
            **crit_kwargs,
            train_split=predefined_split(arch_ds),
            iterator_train=_mixing_loader,
            callbacks=(
                [("search_checkpoint", checkpoint)] if checkpoint is not None else []
            ),
            classes=np.arange(n_total),
            device=device,
            verbose=int(verbose),
        )
        resumed_from = 0
        if state is None:
            net.fit(train_ds, None)
        else:
            net.initialize()
            checkpoint.restore(net, state)
            resumed_from = int(state["epochs_done"])
            net.partial_fit(
                train_ds, None, epochs=max(params["max_epochs"] - resumed_from, 0)
            )
    seconds = time.perf_counter() - t0
    done = sum(1 for row in net.history if "train_loss" in row)
    if done < params["max_epochs"]:
        # skorch ends fit quietly on Ctrl-C; a half-trained supernet must not
        # become a zoo entry that looks finished.
        resume = (
            " Call again with the same checkpoint_dir to continue from the last "
            "saved epoch."
            if checkpoint_dir is not None
            else " Pass checkpoint_dir to make pretraining resumable."
        )
        raise KeyboardInterrupt(
            f"pretraining of {label!r} stopped after {done} of "
            f"{params['max_epochs']} epochs; no entry was written.{resume}"
        )
    # Time spent before an interruption is part of what the entry cost.
    previous = [float(r.get("dur", 0.0)) for r in net.history[:resumed_from]]
    seconds += sum(previous)
    module = net.module_.cpu().eval()

    # Accuracy on each source's architecture split, within its own head.
    accs = {}
    with torch.no_grad():
        for (name, _, _, n_classes), offset, (xa, ya) in zip(
            parts, offsets, arch_parts
        ):
            correct = 0
            for start in range(0, len(xa), 256):
                logits = module(torch.from_numpy(xa[start : start + 256]))
                pred = logits[:, offset : offset + n_classes].argmax(1) + offset
                correct += int((pred.numpy() == ya[start : start + 256]).sum())
            accs[name] = correct / len(xa)
    sizes = [len(p[1]) for p in arch_parts]
    info = {
        "epochs": int(params["max_epochs"]),
        "train_seconds": round(seconds, 2),
        "final_accuracy": round(
            float(np.average(list(accs.values()), weights=sizes)), 5
        ),
        "final_accuracy_per_source": {k: round(v, 5) for k, v in accs.items()},
        "accuracy_note": (
            "accuracy on the architecture split (held out from the weight updates)"
        ),
        "history": _history_summary(net.history),
        "resumed_from_epoch": resumed_from,
        "alpha_stats": alpha_statistics(module),
        "genotype": module.genotype().to_dict(),
        "heads": [
            {"source": p[0], "offset": o, "n_classes": int(p[3])}
            for p, o in zip(parts, offsets)
        ],
        "pixel_stats": {
            p[0]: {"mean": m.tolist(), "std": s.tolist()}
            for p, (m, s) in zip(parts, stats)
        },
        "device": device,
    }
    return module, info


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


def _pretrain_one(
    name,
    X,
    y,
    params,
    image_size,
    seed,
    signature_fn,
    verbose,
    extra,
    checkpoint_dir=None,
):
    """One source, start to finish; runs in a joblib worker."""
    images, y_enc, classes = _prepare(name, X, y, params["image_shape"])
    raw_shape = images.shape[1:]
    if image_size is not None:
        images = _convert(images, images.shape[1], image_size)
    module, info = _train(
        [(name, images, y_enc, len(classes))],
        params,
        "proportional",
        verbose,
        seed,
        checkpoint_dir=checkpoint_dir,
        label=name,
    )
    provenance = {
        "kind": "single",
        "sources": {name: _source_info(name, images, raw_shape, classes, extra)},
        "search_params": _json_params(params),
        "seed": int(seed),
        **info,
    }
    signatures = None
    if signature_fn is not None:
        signatures = {name: signature_fn(X, y)}
    return name, _state_tensors(module), module.config(), provenance, signatures


def _seeds(random_state, n: int) -> list[int]:
    rng = check_random_state(random_state)
    return [int(s) for s in rng.randint(np.iinfo(np.int32).max, size=n)]


def pretrain(
    zoo,
    datasets: Mapping[str, tuple],
    *,
    n_jobs: int | None = None,
    verbose: int = 1,
    signature_fn: Callable | None = None,
    image_size=None,
    metadata: Mapping[str, dict] | None = None,
    overwrite: bool = False,
    checkpoint_dir: str | os.PathLike | None = None,
    **search_params,
) -> list[ZooEntry]:
    """Pretrain one supernet per source dataset; each becomes a zoo entry.

    Sources run as :class:`joblib.Parallel` jobs, so a joblib backend (e.g.
    ``joblib.parallel_config(backend="dask")`` or ``"ray"``) spreads them
    over a cluster. Each job returns weights and metadata; this process
    writes the entries (atomically, under the zoo's lock) as jobs complete.

    Parameters
    ----------
    zoo : SupernetZoo
    datasets : dict of {name: (X, y)}
        ``X`` as :class:`~skdarts.SupernetSearchClassifier` accepts it; the
        name becomes the entry's.
    n_jobs : int, optional
        joblib's ``n_jobs`` (``None``: 1 unless a ``parallel_config`` says
        otherwise).
    verbose : int, default=1
        0 silent; 1 a progress bar over completed sources; 2 adds the
        search's per-epoch log.
    signature_fn : callable, optional
        ``(X, y) -> (arrays, meta)``; each source's signature is stored with
        its entry.
    image_size : int or (int, int), optional
        Resize every source to this size first (bilinear); default native.
    metadata : dict of {name: dict}, optional
        Extra provenance per source (e.g. how a derived task was made).
    overwrite : bool, default=False
        Replace entries of the same names.
    checkpoint_dir : str or path-like, optional
        Save each source's search state after every epoch under this folder;
        calling again with the same arguments after an interruption
        continues each unfinished source from its last epoch (the entry
        equals an uninterrupted run's). A checkpoint is keyed by the data,
        the search parameters and the seed, so another run never picks it
        up. Checkpoints stay on disk; delete the folder when done.
    **search_params
        :class:`~skdarts.SupernetSearchClassifier`'s search parameters
        (``max_epochs``, ``init_channels``, ``lr``, ``random_state`` ...),
        with its defaults.

    Returns
    -------
    list of ZooEntry
        In the order of ``datasets``.

    Examples
    --------
    >>> import tempfile
    >>> from sklearn.datasets import load_digits
    >>> from skdarts.zoo import SupernetZoo
    >>> X, y = load_digits(return_X_y=True)
    >>> zoo = SupernetZoo(tempfile.mkdtemp())
    >>> entries = zoo.pretrain({"digits": (X[:60], y[:60])}, max_epochs=1,
    ...     init_channels=2, n_cells=1, n_nodes=1, verbose=0, random_state=0)
    >>> entries[0].provenance["sources"]["digits"]["n_classes"]
    10
    """
    datasets = _check_datasets(datasets)
    params = _search_params(search_params)
    size = _check_image_size(image_size)
    if not overwrite:
        taken = [n for n in datasets if n in zoo]
        if taken:
            raise FileExistsError(
                f"the zoo at {str(zoo.path)!r} already has entries {taken}; pass "
                "overwrite=True to replace them."
            )
    zoo._check_writable()
    seeds = _seeds(params["random_state"], len(datasets))
    jobs = (
        delayed(_pretrain_one)(
            name,
            X,
            y,
            params,
            size,
            seed,
            signature_fn,
            max(verbose - 1, 0),
            metadata,
            checkpoint_dir,
        )
        for (name, (X, y)), seed in zip(datasets.items(), seeds)
    )
    entries = {}
    with tqdm(
        total=len(datasets), desc="pretraining", unit="source", disable=verbose < 1
    ) as bar:
        for name, tensors, config, provenance, sigs in Parallel(
            n_jobs=n_jobs, return_as="generator_unordered"
        )(jobs):
            entries[name] = zoo._write(
                name, tensors, config, provenance, sigs, overwrite
            )
            bar.set_postfix_str(
                f"{name}: acc {provenance['final_accuracy']:.3f}, "
                f"{provenance['train_seconds']:.0f} s"
            )
            bar.update()
    return [entries[n] for n in datasets]


def pretrain_mixture(
    zoo,
    datasets: Mapping[str, tuple],
    *,
    name: str = "multi",
    mixing: str = "balanced",
    image_size=None,
    verbose: int = 1,
    signature_fn: Callable | None = None,
    metadata: dict | None = None,
    overwrite: bool = False,
    checkpoint_dir: str | os.PathLike | None = None,
    **search_params,
) -> ZooEntry:
    """Pretrain ONE supernet on several sources together; store it as ``name``.

    Shared body, one head per source, batches mixed across sources; see
    :mod:`skdarts.zoo` (``_pretrain``) for the head, mixing and common-input
    rules.

    Parameters
    ----------
    zoo : SupernetZoo
    datasets : dict of {source name: (X, y)}
    name : str, default="multi"
    mixing : {"balanced", "proportional"}, default="balanced"
        ``"balanced"``: each source equally likely per sample;
        ``"proportional"``: in proportion to the sources' sizes.
    image_size : int or (int, int), optional
        Common size; default the largest height and width among sources.
    verbose : int, default=1
        0 silent; 1 the search's per-epoch log.
    signature_fn : callable, optional
        ``(X, y) -> (arrays, meta)``, stored per source.
    metadata : dict, optional
        Extra provenance; a ``"sources"`` key maps source names to dicts
        merged into each source's record.
    overwrite : bool, default=False
    checkpoint_dir : str or path-like, optional
        As :func:`pretrain`: resume an interrupted pretraining.
    **search_params
        As :func:`pretrain`.

    Returns
    -------
    ZooEntry

    Examples
    --------
    >>> import tempfile
    >>> from sklearn.datasets import load_digits
    >>> from skdarts.zoo import SupernetZoo
    >>> X, y = load_digits(return_X_y=True)
    >>> zoo = SupernetZoo(tempfile.mkdtemp())
    >>> rgb = np.repeat(X[:40].reshape(-1, 8, 8, 1), 3, axis=3)[:, 1:7, 1:7]
    >>> entry = zoo.pretrain_mixture({"a": (X[:60], y[:60]), "b": (rgb, y[:40] % 2)},
    ...     max_epochs=1, init_channels=2, n_cells=1, n_nodes=1, verbose=0,
    ...     random_state=0)
    >>> entry.config["in_channels"], entry.config["n_classes"]
    (3, 12)
    """
    _check_name(name)
    datasets = _check_datasets(datasets)
    if mixing not in _MIXING:
        raise ValueError(f"mixing must be one of {list(_MIXING)}; got {mixing!r}.")
    params = _search_params(search_params)
    size = _check_image_size(image_size)
    if name in zoo and not overwrite:
        raise FileExistsError(
            f"the zoo at {str(zoo.path)!r} already has an entry {name!r}; pass "
            "overwrite=True to replace it."
        )
    zoo._check_writable()
    metadata = dict(metadata or {})
    extra = metadata.pop("sources", {})
    prepared = {
        n: _prepare(n, X, y, params["image_shape"]) for n, (X, y) in datasets.items()
    }
    if size is None:
        size = (
            max(im.shape[2] for im, _, _ in prepared.values()),
            max(im.shape[3] for im, _, _ in prepared.values()),
        )
    channels = 3 if any(im.shape[1] >= 3 for im, _, _ in prepared.values()) else 1
    parts, sources = [], {}
    for n, (images, y_enc, classes) in prepared.items():
        raw_shape = images.shape[1:]
        images = _convert(images, channels, size)
        parts.append((n, images, y_enc, len(classes)))
        sources[n] = _source_info(n, images, raw_shape, classes, extra)
    seed = _seeds(params["random_state"], 1)[0]
    module, info = _train(
        parts,
        params,
        mixing,
        verbose,
        seed,
        checkpoint_dir=checkpoint_dir,
        label=name,
    )
    provenance = {
        "kind": "mixture",
        "mixing": mixing,
        "common_input": {
            "image_size": list(size),
            "channels": channels,
            "rule": "bilinear resize (antialiased) to image_size; grey replicated "
            "to RGB when any source is colour, alpha dropped; per-source "
            "standardisation",
        },
        "sources": sources,
        "search_params": _json_params(params),
        "seed": seed,
        **info,
        **metadata,
    }
    signatures = None
    if signature_fn is not None:
        signatures = {n: signature_fn(X, y) for n, (X, y) in datasets.items()}
    return zoo._write(
        name, _state_tensors(module), module.config(), provenance, signatures, overwrite
    )
