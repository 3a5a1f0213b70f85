"""The ``skdarts`` command.

::

    skdarts demo                       # default zoo -> OT selection -> warm search
    skdarts search FOLDER              # fit on an image folder, save the model
    skdarts zoo list | show NAME | remove NAME | build SOURCE... | select DATA

Every command has ``--help``. Bad input ends the command with exit status 2
and one line on stderr (``skdarts: error: ...``), not a traceback; ``--debug``
shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["build_parser", "main"]

#: exit status of a command that failed on bad input (as argparse's own errors)
EXIT_USAGE = 2


class CommandError(ValueError):
    """A problem with what the user asked for, reported as one line."""


def _optional(module: str, feature: str):
    """Import ``skdarts.<module>``, or explain which part of skdarts is missing."""
    try:
        return importlib.import_module(f"skdarts.{module}")
    except ModuleNotFoundError as exc:
        if exc.name != f"skdarts.{module}":
            raise
        raise CommandError(
            f"{feature} needs skdarts.{module}, which this installation lacks; "
            "upgrade skdarts."
        ) from None


def _say(args, *parts) -> None:
    if getattr(args, "verbose", 1) > 0:
        print(*parts, flush=True)


# -- data -----------------------------------------------------------------------


def _load_data(spec: str, image_size=None) -> tuple[np.ndarray, np.ndarray, Any]:
    """``(X, y, image_shape)`` from a folder, a ``.npz`` file or ``sklearn:digits``.

    ``image_shape`` is what flat rows need (only sklearn's digits are flat).
    """
    if spec == "sklearn:digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        return X, y, (8, 8)
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(
            f"no data at {spec!r}: give an image folder (one sub-folder per class), "
            "a .npz file with arrays 'X' and 'y', or 'sklearn:digits'."
        )
    if path.is_file() and path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            missing = {"X", "y"} - set(archive.files)
            if missing:
                raise CommandError(
                    f"{spec!r} lacks the arrays {sorted(missing)}; a data archive "
                    f"needs 'X' (images) and 'y' (labels); it has {archive.files}."
                )
            return archive["X"], archive["y"], None
    if path.is_dir():
        data = _optional("data", "reading an image folder")
        loader = getattr(data, "load_image_folder", None)
        if loader is None:
            raise CommandError(
                "reading image folders needs skdarts.data.load_image_folder, which "
                "this installation lacks; upgrade skdarts."
            )
        kwargs = {} if image_size is None else {"image_size": image_size}
        X, y, class_names = loader(path, **kwargs)
        # labels as the class folders' names, so predictions read naturally
        return X, np.asarray(class_names)[y], None
    raise CommandError(
        f"{spec!r} is neither an image folder nor a .npz file; give an image folder "
        "(one sub-folder per class), a .npz with 'X' and 'y', or 'sklearn:digits'."
    )


def _source_spec(spec: str) -> tuple[str, str]:
    """``NAME=DATA`` or ``DATA`` (named after the folder or file) -> (name, data)."""
    if "=" in spec and not Path(spec).exists():
        name, data = spec.split("=", 1)
        if not name:
            raise CommandError(f"source {spec!r} has an empty name before '='.")
        return name, data
    if spec.startswith("sklearn:"):
        return spec.split(":", 1)[1], spec
    return Path(spec).stem or Path(spec).name, spec


def _image_size(value: str | None):
    from .data import parse_image_size

    try:
        return parse_image_size(value, name="--image-size")
    except (TypeError, ValueError) as exc:
        raise CommandError(str(exc)) from None


# -- zoo --------------------------------------------------------------------------


def _open_zoo(path: str | None, *, create: bool = False):
    if path is not None and not create and not Path(path).is_dir():
        raise FileNotFoundError(
            f"no zoo at {path!r}: give an existing zoo folder (build one with "
            "'skdarts zoo build --zoo PATH SOURCE...'), or omit --zoo for the "
            "default zoo."
        )
    zoo_mod = _optional("zoo", "the zoo")
    if path is None:
        return zoo_mod.SupernetZoo.default()
    return zoo_mod.SupernetZoo(path)


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


def _device(args) -> str:
    """``--device``, checked before any data is read or any work is done."""
    from ._device import resolve_device

    resolve_device(args.device, name="--device")
    return args.device


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
        signature_fn=similarity.signature_fn,
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
    sel = estimators.OTSourceSelector(
        zoo,
        n_sources=args.n_sources,
        method=args.method,
        image_shape=shape,
        random_state=args.random_state,
        verbose=args.verbose,
    ).fit(X, y)
    print(f"nearest zoo entries to {args.data} ({args.method}):")
    proxy = getattr(sel, "proxy_distances_", None)
    for i, (name, dist) in enumerate(zip(sel.ranking_, sel.distances_)):
        if i >= args.top:
            break
        exact = np.isfinite(dist)
        value = dist if exact else (proxy[i] if proxy is not None else float("nan"))
        note = "" if exact else "  (stage-1 bound)"
        print(f"  {i + 1:>3}. {name:<24} {value:.4f}{note}")
    print(f"selected={','.join(sel.selected_)}")
    return 0


# -- search -----------------------------------------------------------------------


def _atomic_dump(obj, path: Path, overwrite: bool) -> None:
    """joblib.dump to a temporary file next to ``path``, then rename it."""
    import joblib

    from ._files import atomic_writer

    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{os.fspath(path)!r} exists; pass --overwrite to replace it or choose "
            "another --output."
        )
    with atomic_writer(path) as f:
        joblib.dump(obj, f)


def _search(args) -> int:
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline

    from .estimators import SupernetSearchClassifier

    device = _device(args)
    output = Path(args.output or f"{Path(args.data).stem or 'model'}.joblib")
    if output.exists() and not args.overwrite:
        raise FileExistsError(
            f"{os.fspath(output)!r} exists; pass --overwrite to replace it or choose "
            "another --output."
        )
    X, y, shape = _load_data(args.data, image_size=_image_size(args.image_size))
    classes = np.unique(y)
    if len(classes) < 2:
        raise CommandError(
            f"{args.data!r} holds one class ({classes[0]!r}); a classifier needs at "
            "least 2."
        )
    if args.test_size > 0:
        Xtr, Xte, ytr, yte = train_test_split(
            X, y, test_size=args.test_size, stratify=y, random_state=args.random_state
        )
    else:
        Xtr, Xte, ytr, yte = X, None, y, None
    clf = SupernetSearchClassifier(
        image_shape=shape,
        max_epochs=args.epochs,
        final_epochs=args.final_epochs,
        warm_start=False if args.scratch else "auto",
        random_state=args.random_state,
        verbose=args.verbose,
        device=device,
    )
    model = clf
    if not args.scratch:
        estimators = _optional("estimators", "warm start from the zoo")
        selector = estimators.OTSourceSelector(
            _open_zoo(args.zoo), image_shape=shape, random_state=args.random_state
        )
        model = make_pipeline(selector, clf)
    _say(
        args,
        f"searching on {args.data}: {len(Xtr)} training images, {len(classes)} "
        f"classes" + (", from scratch" if args.scratch else ", warm-started"),
    )
    t0 = time.perf_counter()
    model.fit(Xtr, ytr)
    seconds = time.perf_counter() - t0
    fitted = model if args.scratch else model[-1]
    _atomic_dump(model, output, overwrite=args.overwrite)
    source = fitted.source_
    print(f"data: {args.data} ({len(X)} images, {len(classes)} classes)")
    print(f"image shape: {fitted.image_shape_}")
    print(f"started from: {_describe_source(source)}")
    print(f"normal cell: {list(fitted.genotype_.normal)}")
    print(f"reduction cell: {list(fitted.genotype_.reduce)}")
    if Xte is not None:
        print(f"holdout accuracy: {model.score(Xte, yte):.4f} ({len(Xte)} images)")
    print(f"fit seconds: {seconds:.1f}")
    print(f"saved: {output} (joblib.load it, then .predict)")
    return 0


def _describe_source(source) -> str:
    if not source:
        return "scratch"
    if isinstance(source, dict):
        name = source.get("name") or source.get("entry") or source.get("kind")
        return str(name) if name else json.dumps(source, default=str)
    return str(source)


# -- demo -------------------------------------------------------------------------


def _search_curve(clf) -> list[float]:
    return [
        float(r["valid_acc"])
        for r in clf.history_
        if r.get("phase") == "search" and r.get("valid_acc") is not None
    ]


def _demo(args) -> int:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from .estimators import SupernetSearchClassifier
    from .evaluation import epochs_to_reach

    device = _device(args)
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    if args.quick:  # a smoke test: a fraction of the data, a short budget
        Xtr, _, ytr, _ = train_test_split(
            Xtr, ytr, train_size=200, stratify=ytr, random_state=0
        )
        args.epochs, args.final_epochs = min(args.epochs, 2), 0
    print(
        "skdarts demo: architecture search on scikit-learn's digits "
        f"({len(Xtr)} train / {len(Xte)} test images, 8x8, 10 classes)"
    )
    params = dict(
        image_shape=(8, 8),
        max_epochs=args.epochs,
        final_epochs=args.final_epochs,
        random_state=args.random_state,
        verbose=args.verbose,
        device=device,
    )
    prior = None
    try:
        zoo = _open_zoo(args.zoo)
        estimators = _optional("estimators", "source selection")
        selector_cls = getattr(estimators, "OTSourceSelector", None)
        if selector_cls is None:
            raise CommandError("source selection needs OTSourceSelector")
    except (CommandError, FileNotFoundError) as exc:
        if args.zoo is not None:
            raise
        print(f"no warm start available ({exc}); searching from scratch only")
        zoo = None
    if zoo is not None:
        t0 = time.perf_counter()
        sel = selector_cls(zoo, random_state=args.random_state).fit(Xtr, ytr)
        print(
            f"OT selection over {len(zoo)} zoo entries ({time.perf_counter() - t0:.1f}"
            " s), nearest first:"
        )
        for name, dist in list(zip(sel.ranking_, sel.distances_))[:3]:
            print(f"  {name:<24} {dist:.4f}")
        prior = sel.prior_
        print(f"warm start from: {sel.selected_[0]}")

    runs = {}
    for label, warm in (("scratch", False), ("warm", prior)):
        if label == "warm" and prior is None:
            continue
        t0 = time.perf_counter()
        clf = SupernetSearchClassifier(warm_start=warm, **params).fit(Xtr, ytr)
        runs[label] = (clf, time.perf_counter() - t0)
        print(
            f"{label}: test_accuracy={clf.score(Xte, yte):.4f} "
            f"fit_seconds={runs[label][1]:.1f} "
            f"search_valid_acc=[{', '.join(f'{a:.3f}' for a in _search_curve(clf))}]"
        )
    best = runs.get("warm", runs["scratch"])[0]
    print(f"genotype (normal cell): {list(best.genotype_.normal)}")
    print(f"genotype (reduction cell): {list(best.genotype_.reduce)}")
    if "warm" in runs:
        scratch_curve = _search_curve(runs["scratch"][0])
        warm_curve = _search_curve(runs["warm"][0])
        target = scratch_curve[-1]
        e_scratch = epochs_to_reach(scratch_curve, target)
        e_warm = epochs_to_reach(warm_curve, target)
        speedup = e_scratch / e_warm
        acc_delta = runs["warm"][0].score(Xte, yte) - runs["scratch"][0].score(Xte, yte)
        print(
            f"speedup={speedup:.2f} (epochs to reach scratch's final search accuracy "
            f"{target:.3f}: scratch {e_scratch}, warm {e_warm}) "
            f"test_acc_delta={100 * acc_delta:+.1f} points"
        )
    return 0


# -- parser -----------------------------------------------------------------------


def _device_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        default="auto",
        help="torch device to train on: auto (CUDA when available), cpu, cuda, "
        "cuda:1, mps (default auto)",
    )


def _common(p: argparse.ArgumentParser, verbose: int = 1) -> None:
    p.add_argument("--random-state", type=int, default=0, help="seed (default 0)")
    p.add_argument(
        "--verbose", type=int, default=verbose, help=f"0 silent (default {verbose})"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``skdarts`` command."""
    parser = argparse.ArgumentParser(
        prog="skdarts",
        description="Supernet transfer learning for scikit-learn: DARTS search, a "
        "zoo of pretrained supernets, OT-based source selection.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks instead of one line"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="default zoo -> OT selection -> warm-started search on sklearn's "
        "digits, with the speedup over a scratch search of the same budget",
        description="Pick the default zoo's supernet nearest to sklearn's digits by "
        "OT dataset distance, warm-start a search from it, run a search from "
        "scratch with the same budget, and print both accuracies and the speedup.",
    )
    demo.add_argument("--epochs", type=int, default=10, help="search epochs (10)")
    demo.add_argument(
        "--final-epochs", type=int, default=10, help="derived-network epochs (10)"
    )
    demo.add_argument("--zoo", help="zoo folder (default: the shipped zoo)")
    demo.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 200 training images, at most 2 epochs, no final training",
    )
    _common(demo)
    _device_option(demo)
    demo.set_defaults(func=_demo)

    search = sub.add_parser(
        "search",
        help="search an architecture for an image folder and save the model",
        description="Fit a (zoo-warm-started) SupernetSearchClassifier on DATA, "
        "report holdout accuracy and the architecture, save the model with joblib.",
    )
    search.add_argument(
        "data",
        metavar="DATA",
        help="image folder (one sub-folder per class), .npz with X and y, or "
        "sklearn:digits",
    )
    search.add_argument("--output", "-o", help="model file (default DATA.joblib)")
    search.add_argument("--overwrite", action="store_true", help="replace --output")
    search.add_argument("--zoo", help="zoo folder (default: the shipped zoo)")
    search.add_argument(
        "--scratch", action="store_true", help="no warm start: search from scratch"
    )
    search.add_argument("--epochs", type=int, default=10, help="search epochs (10)")
    search.add_argument(
        "--final-epochs", type=int, default=10, help="derived-network epochs (10)"
    )
    search.add_argument("--image-size", help="resize folder images: N or HxW")
    search.add_argument(
        "--test-size",
        type=float,
        default=0.2,
        help="holdout fraction for the report (0.2; 0 uses all for training)",
    )
    _common(search)
    _device_option(search)
    search.set_defaults(func=_search)

    zoo = sub.add_parser("zoo", help="build, list, inspect and query a supernet zoo")
    zsub = zoo.add_subparsers(dest="zoo_command", required=True, metavar="ACTION")

    zl = zsub.add_parser("list", help="list a zoo's entries")
    zl.add_argument("--zoo", help="zoo folder (default: the shipped zoo)")
    zl.set_defaults(func=_zoo_list)

    zs = zsub.add_parser("show", help="an entry's configuration and provenance")
    zs.add_argument("name", metavar="NAME")
    zs.add_argument("--zoo", help="zoo folder (default: the shipped zoo)")
    zs.add_argument("--json", action="store_true", help="print the entry's JSON")
    zs.set_defaults(func=_zoo_show)

    zr = zsub.add_parser("remove", help="remove an entry from a zoo")
    zr.add_argument("name", metavar="NAME")
    zr.add_argument("--zoo", required=True, help="zoo folder")
    zr.set_defaults(func=_zoo_remove)

    zb = zsub.add_parser(
        "build",
        help="pretrain supernets on source datasets into a zoo",
        description="Pretrain one supernet per SOURCE (and optionally one on all of "
        "them together) and store each, with its dataset signature, in --zoo.",
    )
    zb.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="[NAME=]DATA: an image folder, a .npz with X and y, or sklearn:digits",
    )
    zb.add_argument("--zoo", required=True, help="zoo folder (created if absent)")
    zb.add_argument("--epochs", type=int, default=10, help="search epochs (10)")
    zb.add_argument(
        "--mixture", metavar="NAME", help="also pretrain one supernet on all sources"
    )
    zb.add_argument(
        "--mixture-only", action="store_true", help="only the --mixture entry"
    )
    zb.add_argument("--image-size", help="resize every source: N or HxW")
    zb.add_argument(
        "--max-samples", type=int, help="subsample each source to this many images"
    )
    zb.add_argument("--n-jobs", type=int, default=None, help="parallel sources")
    zb.add_argument("--overwrite", action="store_true", help="replace entries")
    _common(zb)
    _device_option(zb)
    zb.set_defaults(func=_zoo_build)

    zsel = zsub.add_parser(
        "select",
        help="rank a zoo's entries by dataset distance to DATA",
        description="Rank the zoo's entries by optimal-transport dataset distance "
        "between DATA and each entry's stored source signatures.",
    )
    zsel.add_argument(
        "data", metavar="DATA", help="image folder, .npz with X and y, sklearn:digits"
    )
    zsel.add_argument("--zoo", help="zoo folder (default: the shipped zoo)")
    zsel.add_argument(
        "--method",
        default="otdd",
        choices=["otdd", "wasserstein", "sliced", "gaussian"],
        help="distance (otdd)",
    )
    zsel.add_argument("--n-sources", type=int, default=1, help="entries selected (1)")
    zsel.add_argument("--top", type=int, default=10, help="entries printed (10)")
    zsel.add_argument("--image-size", help="resize folder images: N or HxW")
    _common(zsel, verbose=0)
    zsel.set_defaults(func=_zoo_select)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``skdarts`` command with ``argv`` (default: ``sys.argv[1:]``).

    Returns the exit status: 0 on success, 2 on bad input (reported as one
    line on stderr).

    Examples
    --------
    >>> main(["zoo", "remove", "x", "--zoo", "/nonexistent/zoo"])
    2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, KeyError, OSError) as exc:
        if args.debug:
            raise
        message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else exc
        print(f"skdarts: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        # files are written atomically, so an interrupted command leaves none
        # half-written; say so instead of printing a traceback
        print("skdarts: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
