"""``skdarts search`` and ``skdarts demo``."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ._common import (
    CommandError,
    _atomic_dump,
    _device,
    _image_size,
    _load_data,
    _open_zoo,
    _optional,
    _say,
)

# -- search -----------------------------------------------------------------------


def _search(args) -> int:
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline

    from ..estimators import SupernetSearchClassifier

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
    _warn_small_holdout(yte)
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


#: Holdout images of a class below which its accuracy is called rough.
MIN_HOLDOUT_PER_CLASS = 5


def _warn_small_holdout(yte) -> None:
    """Say on stderr when the holdout is too small to trust its accuracy."""
    import sys

    if yte is None:
        return
    names, counts = np.unique(yte, return_counts=True)
    if counts.min() >= MIN_HOLDOUT_PER_CLASS:
        return
    print(
        f"warning: the holdout has only {counts.min()} image(s) of class "
        f"{names[counts.argmin()]!r} ({len(yte)} in all): its accuracy is a rough "
        "estimate. With more images per class the estimate (and the search) "
        "improves; --test-size sets the holdout's share.",
        file=sys.stderr,
        flush=True,
    )


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

    from ..estimators import SupernetSearchClassifier
    from ..evaluation import epochs_to_reach

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
