"""The ``skdarts`` command."""

from __future__ import annotations

import argparse
import sys
import time

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from .estimators import SupernetSearchClassifier

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    print(
        f"skdarts demo: architecture search on scikit-learn's digits "
        f"({len(Xtr)} train / {len(Xte)} test images, 8x8, 10 classes)"
    )
    t0 = time.perf_counter()
    clf = SupernetSearchClassifier(
        image_shape=(8, 8),
        max_epochs=args.epochs,
        final_epochs=args.final_epochs,
        random_state=args.random_state,
        verbose=args.verbose,
    ).fit(Xtr, ytr)
    seconds = time.perf_counter() - t0
    print(f"genotype (normal cell): {list(clf.genotype_.normal)}")
    print(f"genotype (reduction cell): {list(clf.genotype_.reduce)}")
    print(f"test_accuracy={clf.score(Xte, yte):.4f} fit_seconds={seconds:.1f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``skdarts`` command."""
    parser = argparse.ArgumentParser(
        prog="skdarts", description="Supernet transfer learning for scikit-learn."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="search an architecture on sklearn's digits")
    demo.add_argument("--epochs", type=int, default=10, help="search epochs")
    demo.add_argument("--final-epochs", type=int, default=10, help="final epochs")
    demo.add_argument("--random-state", type=int, default=0)
    demo.add_argument("--verbose", type=int, default=1)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``skdarts`` command with ``argv`` (default: ``sys.argv[1:]``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
