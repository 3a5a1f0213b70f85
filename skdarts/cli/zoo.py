"""``skdarts zoo list | show | remove | build | select``."""

from __future__ import annotations

import json
import time

import numpy as np

from ._common import (
    CommandError,
    _device,
    _image_size,
    _load_data,
    _open_zoo,
    _optional,
    _say,
    _source_spec,
)

# -- zoo --------------------------------------------------------------------------


def _entry_summary(entry) -> dict:
    meta = entry.metadata
    prov = meta.get("provenance", {}) or {}
    sources = prov.get("sources", {})
    return {
        "name": entry.name,
        "sources": list(sources) if isinstance(sources, dict) else sources,
        "config": meta.get("config", {}),
        "signatures": sorted((meta.get("signatures") or {}).keys()),
    }


def _zoo_list(args) -> int:
    zoo = _open_zoo(args.zoo)
    names = list(zoo)
    print(f"{len(names)} entries in {getattr(zoo, 'path', args.zoo)}")
    for name in names:
        s = _entry_summary(zoo[name])
        cfg = s["config"]
        size = (
            f"{cfg.get('search_space', '?')} C={cfg.get('init_channels', '?')} "
            f"cells={cfg.get('n_cells', '?')} nodes={cfg.get('n_nodes', '?')}"
        )
        print(
            f"  {name:<24} sources={','.join(map(str, s['sources'])) or '-'}  {size}"
            f"  signatures={len(s['signatures'])}"
        )
    return 0


def _zoo_show(args) -> int:
    zoo = _open_zoo(args.zoo)
    entry = zoo[args.name]
    if args.json:
        print(json.dumps(entry.metadata, indent=2, sort_keys=True, default=str))
        return 0
    s = _entry_summary(entry)
    print(f"entry: {s['name']}")
    print(f"path: {getattr(entry, 'path', '?')}")
    print(f"config: {json.dumps(s['config'], sort_keys=True)}")
    prov = entry.metadata.get("provenance", {}) or {}
    sources = prov.get("sources", {})
    if isinstance(sources, dict):
        for src, info in sources.items():
            print(f"source {src}: {json.dumps(info, sort_keys=True, default=str)}")
    for key in sorted(prov):
        if key not in ("sources", "history"):
            print(f"{key}: {json.dumps(prov[key], sort_keys=True, default=str)}")
    print(f"signatures: {', '.join(s['signatures']) or 'none'}")
    return 0


def _zoo_remove(args) -> int:
    zoo = _open_zoo(args.zoo)
    if args.name not in zoo:
        raise KeyError(
            f"no entry {args.name!r} in the zoo at {args.zoo}; it has {list(zoo)}."
        )
    zoo.remove(args.name)
    print(f"removed {args.name!r} from {args.zoo}")
    return 0


def _zoo_build(args) -> int:
    device = _device(args)
    zoo = _open_zoo(args.zoo, create=True)
    similarity = _optional("similarity", "dataset signatures")
    size = _image_size(args.image_size)
    specs = [_source_spec(spec) for spec in args.sources]
    names = [name for name, _ in specs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise CommandError(f"two sources are named {duplicated}; use NAME=DATA.")
    planned = ([] if args.mixture_only else names) + [args.mixture] * bool(args.mixture)
    taken = [n for n in planned if n in zoo]
    if taken and not args.overwrite:  # before any training, not after it
        raise CommandError(
            f"the zoo at {args.zoo!r} already has entries {taken}; pass --overwrite "
            "to replace them or choose other names (NAME=DATA, --mixture NAME)."
        )
    datasets = {}
    for name, data in specs:
        X, y, shape = _load_data(data, image_size=size)
        if shape is not None:  # flat rows (sklearn's digits): make them images
            X = X.reshape(len(X), *shape)
        if args.max_samples and len(X) > args.max_samples:
            rng = np.random.RandomState(args.random_state)
            keep = np.sort(rng.choice(len(X), args.max_samples, replace=False))
            X, y = X[keep], y[keep]
        datasets[name] = (X, y)
        _say(args, f"source {name}: {len(X)} images, {len(np.unique(y))} classes")
    params = dict(
        max_epochs=args.epochs,
        random_state=args.random_state,
        signature_fn=similarity.make_signature_fn(
            args.embedding or sorted(similarity.EMBEDDINGS)
        ),
        overwrite=args.overwrite,
        verbose=args.verbose,
        device=device,
    )
    if size is not None:
        params["image_size"] = size
    t0 = time.perf_counter()
    if not args.mixture_only:
        zoo.pretrain(datasets, n_jobs=args.n_jobs, **params)
    if args.mixture:
        if len(datasets) < 2:
            raise CommandError(
                f"--mixture trains one supernet on several sources; got "
                f"{len(datasets)} source."
            )
        zoo.pretrain_mixture(datasets, name=args.mixture, **params)
    print(
        f"zoo {args.zoo}: {len(zoo)} entries ({time.perf_counter() - t0:.1f} s); "
        f"entries: {', '.join(zoo)}"
    )
    return 0


def _zoo_select(args) -> int:
    X, y, shape = _load_data(args.data, image_size=_image_size(args.image_size))
    zoo = _open_zoo(args.zoo)
    estimators = _optional("estimators", "source selection")
    embedding = {"embedding": args.embedding} if args.embedding else {}
    sel = estimators.OTSourceSelector(
        zoo,
        n_sources=args.n_sources,
        method=args.method,
        image_shape=shape,
        random_state=args.random_state,
        verbose=args.verbose,
        **embedding,
    ).fit(X, y)
    print(
        f"nearest zoo entries to {args.data} ({args.method}, embedding "
        f"{sel.embedding_}):"
    )
    proxy = getattr(sel, "proxy_distances_", None)
    for i, (name, dist) in enumerate(zip(sel.ranking_, sel.distances_)):
        if i >= args.top:
            break
        exact = np.isfinite(dist)
        value = dist if exact else (proxy[i] if proxy is not None else float("nan"))
        note = "" if exact else "  (stage-1 bound)"
        if exact and hasattr(sel, "distance_note") and sel.distance_note(name):
            note = f"  ({sel.distance_note(name)})"
        print(f"  {i + 1:>3}. {name:<24} {value:.4f}{note}")
    print(f"selected={','.join(sel.selected_)}")
    return 0
