"""``skdarts demo``: what a warm start buys on data no zoo entry has seen.

The target is scikit-learn's digits (8x8 handwritten digits; none of the
shipped entries was trained on them). The zoo's entries are ranked by OT
dataset distance, and two searches with the same budget, seed and data run
one after the other:

1. **search from scratch, with the head probe** - the fair baseline: a
   random supernet given the same batch-norm re-estimation and
   logistic-regression head a warm start gets (``scratch_probe`` in
   :mod:`skdarts.evaluation`), so the comparison measures what the
   transferred alphas and weights add, not what the probe adds;
2. **warm search from the selected entry**.

After every epoch each run's supernet is scored on a held-out test part
(never used for training, the architecture split or selection). The
summary prints both learning curves, the speedup (epochs the baseline needs
to reach its own final accuracy / epochs the warm search needs), the
difference of the mean accuracies over the budget (``auc_delta``, which
does not saturate at the budget) and of the final accuracies - whatever they
are.

Digits are upsampled to the image size the selected entry was trained at
(16x16 for the shipped zoo), for both runs alike.
"""

from __future__ import annotations

import time

from ._common import _device, _open_zoo


def _curve_text(curve) -> str:
    return " ".join(f"{100 * a:5.1f}" for a in curve.accuracy)


def _demo(args) -> int:
    from sklearn.base import clone
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from ..data import resize_images
    from ..estimators import OTSourceSelector, SupernetSearchClassifier
    from ..estimators._prior import recorded_input_size
    from ..evaluation import (
        HeldOutAccuracy,
        LearningCurve,
        compare_curves,
        prepare_heldout,
    )
    from ..search import HeadProbe

    t_start = time.perf_counter()
    device = _device(args)
    X, y = load_digits(return_X_y=True)
    X = X.reshape(-1, 8, 8) / 16.0
    n_train = 200 if args.quick else args.n_train
    n_test = 200 if args.quick else args.n_test
    Xtr, Xte, ytr, yte = train_test_split(
        X, y, train_size=n_train, test_size=n_test, stratify=y, random_state=0
    )
    epochs = min(args.epochs, 2) if args.quick else args.epochs
    final_epochs = 0 if args.quick else args.final_epochs

    zoo = _open_zoo(args.zoo)
    t0 = time.perf_counter()
    selector = OTSourceSelector(zoo, random_state=args.random_state).fit(Xtr, ytr)
    rank_s = time.perf_counter() - t0
    entry = selector.prior_
    size = recorded_input_size(entry) or (8, 8)
    Xtr, Xte = (resize_images(im[:, None], size)[:, 0] for im in (Xtr, Xte))
    print(
        f"skdarts demo: scikit-learn's digits, a target no zoo entry was trained "
        f"on ({len(Xtr)} training / {len(Xte)} held-out test images, 10 classes, "
        f"8x8 upsampled to {size[0]}x{size[1]}, the zoo's image size)"
    )
    print(
        f"OT dataset distance to the {len(zoo)} zoo entries ({rank_s:.1f} s), "
        "nearest first (a multi-dataset entry's distance is that of its "
        "nearest source):"
    )
    for name, dist in list(zip(selector.ranking_, selector.distances_))[:4]:
        print(f"  {name:<24} {dist:.4f}")
    print(f"selected: {entry.name}")

    heldout = prepare_heldout(Xtr, Xte, ytr, yte)
    base = SupernetSearchClassifier(
        max_epochs=epochs,
        final_epochs=final_epochs,
        random_state=args.random_state,
        verbose=args.verbose,
        device=device,
    )
    runs = {}
    plan = (
        ("scratch_probe", "search from scratch, with the head probe (baseline)"),
        ("warm", f"warm search from '{entry.name}'"),
    )
    for key, title in plan:
        callbacks = [("heldout", HeldOutAccuracy(*heldout))]
        if key == "scratch_probe":
            callbacks.insert(0, ("head_probe", HeadProbe()))
        clf = clone(base).set_params(
            warm_start=entry if key == "warm" else False, callbacks=callbacks
        )
        print(f"\n== {title}: {epochs} search epochs", flush=True)
        t0 = time.perf_counter()
        clf.fit(Xtr, ytr)
        seconds = time.perf_counter() - t0
        curve = LearningCurve.from_history(clf.net_.history)
        runs[key] = (clf, curve, seconds)
        print(
            f"   held-out accuracy per epoch (%): {_curve_text(curve)}; "
            f"{seconds:.0f} s",
            flush=True,
        )

    (base_clf, base_curve, base_s), (warm_clf, warm_curve, warm_s) = runs.values()
    r = compare_curves(base_curve, warm_curve)
    print("\n== summary (held-out test accuracy after each search epoch, %)")
    print(f"  {'epoch':<22} " + " ".join(f"{e:5d}" for e in range(1, epochs + 1)))
    print(f"  {'scratch + probe':<22} {_curve_text(base_curve)}")
    print(f"  {'warm from ' + entry.name:<22} {_curve_text(warm_curve)}")
    reached = (
        f"warm reaches it at epoch {r['warm_epochs']:.0f}"
        if r["reached"]
        else "warm never reaches it within the budget"
    )
    print(
        f"  baseline's final accuracy {100 * r['target']:.1f} % is first reached at "
        f"epoch {r['scratch_epochs']:.0f}; {reached}"
        + (
            " (the baseline was still improving: a longer budget could change "
            "the ratio)"
            if r["open_ended"]
            else ""
        )
    )
    if final_epochs:
        print(
            f"  after {final_epochs} final-training epochs of the derived network: "
            f"test accuracy scratch+probe {base_clf.score(Xte, yte):.3f}, "
            f"warm {warm_clf.score(Xte, yte):.3f}"
        )
    print(f"  genotype (normal cell): {list(warm_clf.genotype_.normal)}")
    print(
        f"speedup={r['speedup_epochs']:.2f} auc_delta={r['auc_delta']:+.1f} points "
        f"final_acc_delta={r['acc_delta']:+.1f} points reference=scratch_probe "
        f"source={entry.name} (fits {base_s:.0f} s and {warm_s:.0f} s; "
        f"total {time.perf_counter() - t_start:.0f} s)"
    )
    return 0
