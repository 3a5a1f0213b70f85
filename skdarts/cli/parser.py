"""The argument parser of the ``skdarts`` command, and :func:`main`."""

from __future__ import annotations

import argparse
import sys

from ._common import EXIT_USAGE
from .demo import _demo
from .search import _search
from .zoo import _zoo_build, _zoo_list, _zoo_remove, _zoo_select, _zoo_show

__all__ = ["build_parser", "main"]


def _device_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        default="auto",
        help="torch device to train on: auto (CUDA when available), cpu, cuda, "
        "cuda:1, mps (default auto)",
    )


#: The names of ``skdarts.similarity.EMBEDDINGS`` (spelled out: building the
#: parser imports no torch; a test keeps the two equal).
EMBEDDING_NAMES = ("pixels", "supernet")


def _embedding_option(p: argparse.ArgumentParser, several: bool = False) -> None:
    if several:
        p.add_argument(
            "--embedding",
            nargs="+",
            choices=EMBEDDING_NAMES,
            default=None,
            help="embeddings of the stored dataset signatures (default: all: "
            f"{' '.join(EMBEDDING_NAMES)})",
        )
        return
    p.add_argument(
        "--embedding",
        choices=EMBEDDING_NAMES,
        default=None,
        help="feature map of the dataset signatures compared: pixels (fixed "
        "projection of raw pixels) or supernet (features of the shipped "
        "multi-dataset supernet); default: supernet where the zoo holds its "
        "signatures, else pixels",
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
        "digits, against a search from scratch with the same head probe and budget",
        description="Rank the default zoo's supernets by OT dataset distance to "
        "scikit-learn's digits (a target no entry was trained on), then run a "
        "search from scratch with the head probe (the fair baseline) and a search "
        "warm-started from the selected entry, with the same budget and seed, and "
        "print both held-out learning curves, the speedup and the accuracy "
        "differences. About 3 minutes on 2 idle cores.",
    )
    demo.add_argument("--epochs", type=int, default=8, help="search epochs (8)")
    demo.add_argument(
        "--final-epochs",
        type=int,
        default=0,
        help="derived-network epochs after each search (0: compare the searches)",
    )
    demo.add_argument("--n-train", type=int, default=600, help="training images (600)")
    demo.add_argument(
        "--n-test", type=int, default=500, help="held-out test images (500)"
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
    _embedding_option(search)
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
    _embedding_option(zb, several=True)
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
    _embedding_option(zsel)
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
