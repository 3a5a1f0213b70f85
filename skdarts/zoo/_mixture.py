"""Pretraining ONE supernet on a mixture of sources (:func:`pretrain_mixture`).

The search itself is :mod:`._pretrain`'s (``_train``); the mixture's head,
mixing and common-input rules are in :mod:`._multisource`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import numpy as np  # noqa: F401  (the doctest uses it)

from ..data import parse_image_size as _check_image_size
from ._entry import ZooEntry, _check_name, _state_tensors
from ._multisource import _MIXING, _convert
from ._pretrain import _check_datasets, _prepare, _search_params, _train
from ._provenance import _json_params, _seeds, _source_info

__all__ = ["pretrain_mixture"]


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
    :mod:`skdarts.zoo` (``_multisource``) for the head, mixing and
    common-input rules.

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
        ``(X, y) -> (arrays, meta)`` or a list of such pairs (one per
        embedding, e.g. ``skdarts.similarity.make_signature_fn(["pixels",
        "supernet"])``), stored per source.
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
