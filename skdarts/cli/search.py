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
        embedding = {"embedding": args.embedding} if args.embedding else {}
        selector = estimators.OTSourceSelector(
            _open_zoo(args.zoo),
            image_shape=shape,
            random_state=args.random_state,
            **embedding,
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
