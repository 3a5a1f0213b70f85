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
import time
from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from joblib import Parallel, delayed
from sklearn.utils import check_random_state
from skorch.callbacks import LRScheduler
from skorch.dataset import Dataset
from skorch.helper import predefined_split
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR
from torch.utils.data import DataLoader, WeightedRandomSampler
from tqdm.auto import tqdm

from .._device import resolve_device, rng_devices
from ..data import as_images, channel_stats, to_host
from ..data import parse_image_size as _check_image_size
from ..search import SearchNet
from ..supernet import Supernet
from ._entry import ZooEntry, _check_name, _state_tensors

__all__ = ["SEARCH_DEFAULTS", "pretrain", "pretrain_mixture"]

#: Search parameters accepted by pretraining, with SupernetSearchClassifier's
#: defaults (a test keeps the two in step).
SEARCH_DEFAULTS = {
    "search_space": "darts",
    "init_channels": 8,
    "n_cells": 5,
    "n_nodes": 4,
    "max_epochs": 20,
    "batch_size": 64,
    "lr": 0.025,
    "lr_min": 0.001,
    "momentum": 0.9,
    "weight_decay": 3e-4,
    "arch_lr": 3e-4,
    "arch_weight_decay": 1e-3,
    "arch_split": 0.5,
    "smoothing": "random",
    "epsilon": 0.3,
    "grad_clip": 5.0,
    "image_shape": None,
    "device": "auto",
    "random_state": None,
}
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


def _split(y: np.ndarray, fraction: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (weight, architecture) split; each side keeps >= 1 sample."""
    arch = np.zeros(len(y), dtype=bool)
    for cls in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == cls))
        k = round(fraction * len(members))
        if len(members) >= 2:
            k = min(max(k, 1), len(members) - 1)
        arch[members[:k]] = True
    if arch.all():
        arch[rng.randint(len(y))] = False
    if not arch.any():
        arch[rng.randint(len(y))] = True
    return np.flatnonzero(~arch), np.flatnonzero(arch)


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


def _train(parts, params: dict, mixing: str, verbose: int, seed: int):
    """Search one supernet on ``parts`` = [(name, images, y_enc, n_classes)].

    Images are already in the common shape. Returns the trained supernet
    (on the CPU) and a JSON-ready dict of what happened.
    """
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
        w_idx, a_idx = _split(y_enc, params["arch_split"], rng)
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
        module = Supernet(
            search_space=params["search_space"],
            in_channels=parts[0][1].shape[1],
            n_classes=n_total,
            init_channels=params["init_channels"],
            n_cells=params["n_cells"],
            n_nodes=params["n_nodes"],
        )
        net = SearchNet(
            module=module,
            criterion=criterion,
            **crit_kwargs,
            optimizer=torch.optim.SGD,
            optimizer__lr=params["lr"],
            optimizer__momentum=params["momentum"],
            optimizer__weight_decay=params["weight_decay"],
            optimizer_arch__lr=params["arch_lr"],
            optimizer_arch__betas=(0.5, 0.999),
            optimizer_arch__weight_decay=params["arch_weight_decay"],
            smoothing=params["smoothing"],
            epsilon=params["epsilon"],
            grad_clip=params["grad_clip"],
            max_epochs=params["max_epochs"],
            batch_size=params["batch_size"],
            train_split=predefined_split(arch_ds),
            iterator_train=_mixing_loader,
            callbacks=[
                (
                    "lr_scheduler",
                    LRScheduler(
                        policy=CosineAnnealingLR,
                        T_max=params["max_epochs"],
                        eta_min=params["lr_min"],
                    ),
                )
            ],
            classes=np.arange(n_total),
            device=device,
            verbose=int(verbose),
        )
        net.fit(train_ds, None)
    seconds = time.perf_counter() - t0
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


def _pretrain_one(name, X, y, params, image_size, seed, signature_fn, verbose, extra):
    """One source, start to finish; runs in a joblib worker."""
    images, y_enc, classes = _prepare(name, X, y, params["image_shape"])
    raw_shape = images.shape[1:]
    if image_size is not None:
        images = _convert(images, images.shape[1], image_size)
    module, info = _train(
        [(name, images, y_enc, len(classes))], params, "proportional", verbose, seed
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
            name, X, y, params, size, seed, signature_fn, max(verbose - 1, 0), metadata
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
    module, info = _train(parts, params, mixing, verbose, seed)
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
