"""Pretraining supernets for the zoo: one per source, or one on a mixture.

Both drive the search layer (:class:`~skdarts.search.SearchNet`) directly,
with the same search parameters and defaults as
:class:`~skdarts.SupernetSearchClassifier`.

The mixture (:func:`pretrain_mixture`) lives in :mod:`._mixture`, its
building blocks (common input, one head per source, mixed batches) in
:mod:`._multisource`, and what a run records in :mod:`._provenance`.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from joblib import Parallel, delayed
from skorch.dataset import Dataset
from skorch.helper import predefined_split
from tqdm.auto import tqdm

from .._device import resolve_device, rng_devices
from ..data import as_images, channel_stats, to_host
from ..data import parse_image_size as _check_image_size
from ..search import (
    SearchConfig,
    build_search_net,
    completed_epochs,
    find_checkpoint,
    fit_or_resume,
    stratified_split,
)
from ._entry import ZooEntry, _check_name, _state_tensors
from ._multisource import SourceMaskedCrossEntropy, _convert, _mixing_loader
from ._provenance import (
    _checkpoint_key,
    _history_summary,
    _json_params,
    _seeds,
    _source_info,
    alpha_statistics,
)

__all__ = [
    "SEARCH_DEFAULTS",
    "SourceMaskedCrossEntropy",
    "alpha_statistics",
    "pretrain",
]

#: Search parameters accepted by pretraining, with their defaults: those of
#: SearchConfig (the estimator's too) but how a supernet runs (PC-DARTS,
#: checkpointing, CUDA graphs), plus how inputs are read and where and how
#: repeatably the search runs.
SEARCH_DEFAULTS = {
    k: v
    for k, v in SearchConfig.defaults().items()
    if k not in ("partial_channels", "checkpointing", "cuda_graphs")
} | {"image_shape": None, "device": "auto", "random_state": None}


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
        checkpoint, state = find_checkpoint(
            Path(checkpoint_dir) / f"{label}-{key}", key, what="pretraining run"
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
        resumed_from = fit_or_resume(net, train_ds, None, state, params["max_epochs"])
    seconds = time.perf_counter() - t0
    done = completed_epochs(net.history)
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
        ``(X, y) -> (arrays, meta)``, or a list of such pairs (one per
        embedding); each source's signatures are stored with its entry. E.g.
        :func:`skdarts.similarity.signature_fn` (the default embedding) or
        ``make_signature_fn(["pixels", "supernet"])`` (both).
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


def __getattr__(name: str) -> Any:
    # pretrain_mixture moved to ._mixture, which imports this module: resolved
    # on first use (PEP 562) so that old imports from here keep working.
    if name == "pretrain_mixture":
        return importlib.import_module("._mixture", __package__).pretrain_mixture
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
