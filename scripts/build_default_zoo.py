"""Build the zoo shipped with skdarts (``skdarts/zoo_data``, ``SupernetZoo.default()``).

Rerunnable by anyone with the development data in ``../shared/data`` (see its
README): Fashion-MNIST, the 5,000-image MNIST subset and the OCR letters.

Entries (all with SupernetSearchClassifier's default configuration: space
"darts", init_channels=8, n_cells=5, n_nodes=4):

* ``fashion_mnist``, ``mnist``, ``letters`` - one supernet per source;
* ``multi`` - one supernet trained on all three together (shared body, one
  head per source, balanced mixing; see ``skdarts.zoo``).

To keep the build short each source
is a stratified random subsample of ``--n-per-source`` (800) images (400 per
source inside ``multi``, ``--multi-n-per-source``), searched for ``--epochs``
(8); the 28x28 sources are resized to ``--size`` (12x12,
antialiased bilinear), the 16x8 letters are kept native for their own entry
and resized to 12x12 inside ``multi``.
Everything is recorded in each entry's provenance.

Cost: the shipped build took 836 s (fashion_mnist), 835 s (mnist), 534 s
(letters; two sources at a time, ``--n-jobs 2``) and 732 s (multi) of wall
time on 2 cores shared with other jobs (load average about 10, the build's
processes getting 10-25 % of a core each); an idle 2-core machine should
need a fraction of that (not measured). Dataset signatures are stored when
``skdarts.similarity.signature_fn`` exists.

Usage::

    python scripts/build_default_zoo.py            # writes skdarts/zoo_data
    python scripts/build_default_zoo.py --quick    # a 1-minute smoke build
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skdarts.zoo import SupernetZoo  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def stratified_subsample(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` indices with the classes in their original proportions."""
    rng = np.random.RandomState(seed)
    classes = np.unique(y)
    picked = []
    for c in classes:
        members = rng.permutation(np.flatnonzero(y == c))
        k = max(1, round(n * len(members) / len(y)))
        picked.extend(members[:k])
    return np.sort(rng.permutation(np.asarray(picked))[:n])


def resize_uint8(X: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased bilinear resize of uint8 (n, h, w) images, back to uint8."""
    t = torch.from_numpy(X.astype(np.float32))[:, None]
    out = F.interpolate(t, size=size, mode="bilinear", antialias=True)[:, 0]
    return out.round().clamp(0, 255).numpy().astype(np.uint8)


def load_sources(data: Path, n: int, seed: int, size: int):
    """{name: (X, y)} and {name: provenance} for the three development sets."""
    datasets, info = {}, {}

    with np.load(data / "fashion_mnist.npz", allow_pickle=False) as z:
        train = np.flatnonzero(z["split"] == "train")
        idx = train[stratified_subsample(z["y"][train], n, seed)]
        datasets["fashion_mnist"] = (
            resize_uint8(z["X"][idx], (size, size)),
            z["y"][idx],
        )
        info["fashion_mnist"] = {
            "file": "fashion_mnist.npz",
            "origin": str(z["source"]),
            "license": str(z["license"]),
            "subset": f"stratified random {n} of split='train' (seed {seed})",
            "transform": f"28x28 resized to {size}x{size} (antialiased bilinear)",
        }

    with np.load(data / "mnist_5k.npz", allow_pickle=False) as z:
        idx = stratified_subsample(z["y"], n, seed)
        datasets["mnist"] = (resize_uint8(z["X"][idx], (size, size)), z["y"][idx])
        info["mnist"] = {
            "file": "mnist_5k.npz",
            "origin": str(z["source"]),
            "license": str(z["license"]),
            "subset": f"stratified random {n} of 5,000 (seed {seed})",
            "transform": f"28x28 resized to {size}x{size} (antialiased bilinear)",
        }

    with np.load(data / "ocr_letters.npz", allow_pickle=False) as z:
        X = z["X"]
        if X.max() <= 1:  # binary images stored as 0/1
            X = (X * 255).astype(np.uint8)
        idx = stratified_subsample(z["y"], n, seed)
        datasets["letters"] = (X[idx], z["y"][idx])
        info["letters"] = {
            "file": "ocr_letters.npz",
            "origin": str(z["source"]),
            "license": str(z["license"]),
            "subset": f"stratified random {n} of 52,152, all folds (seed {seed})",
            "transform": "none (native 16x8)",
        }
    return datasets, info


def add_signatures(args) -> int:
    """Store each entry's source signatures in an existing zoo at ``args.out``.

    Signatures summarise the sources' distributions (bounded size whatever
    the number of images), so they are computed from a larger stratified
    draw (``--signature-n``) than pretraining used, at the native size.
    """
    from skdarts.similarity import signature_fn

    datasets, _ = load_sources(args.data, args.signature_n, args.seed, 28)
    zoo = SupernetZoo(args.out)
    for name in zoo:
        entry = zoo[name]
        sources = [s for s in entry.sources if s in datasets] or (
            [name] if name in datasets else []
        )
        if not sources:
            print(f"{name}: no known source dataset; skipped")
            continue
        sigs = {src: signature_fn(*datasets[src]) for src in sources}
        zoo.set_signatures(name, sigs)
        print(f"{name}: signatures of {sources}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "skdarts" / "zoo_data")
    parser.add_argument("--n-per-source", type=int, default=800)
    parser.add_argument(
        "--multi-n-per-source",
        type=int,
        default=400,
        help="images per source inside 'multi' (it sees all sources at once)",
    )
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument(
        "--only",
        choices=("all", "singles", "multi"),
        default="all",
        help="build part of the zoo (into --out; merge the folders afterwards)",
    )
    parser.add_argument("--size", type=int, default=12, help="side of resized images")
    parser.add_argument("--n-jobs", type=int, default=2, help="sources in parallel")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1 is fastest on a "
        "busy machine: OpenMP threads spin when cores are oversubscribed)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick", action="store_true", help="tiny smoke build (200 images, 1 epoch)"
    )
    parser.add_argument(
        "--signatures-only",
        action="store_true",
        help="only (re)compute the dataset signatures of the zoo at --out",
    )
    parser.add_argument(
        "--signature-n",
        type=int,
        default=3000,
        help="images per source for its signature (same stratified draw, larger)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n_per_source, args.multi_n_per_source, args.epochs = 200, 100, 1
    if not args.data.is_dir():
        print(f"no data folder at {args.data}; pass --data", file=sys.stderr)
        return 2

    try:
        from skdarts.similarity import signature_fn
    except ImportError:
        signature_fn = None
        print(
            "note: skdarts.similarity.signature_fn is not available; building "
            "without dataset signatures (add them later with zoo.set_signatures)."
        )

    torch.set_num_threads(args.threads)
    if args.signatures_only:
        return add_signatures(args)
    datasets, info = load_sources(args.data, args.n_per_source, args.seed, args.size)
    build = args.out.parent / (args.out.name + ".building")
    shutil.rmtree(build, ignore_errors=True)
    zoo = SupernetZoo(build)
    search = dict(
        max_epochs=args.epochs,
        random_state=args.seed,
        search_space="darts",
        init_channels=8,
        n_cells=5,
        n_nodes=4,
        device="cpu",
    )
    t0 = time.perf_counter()
    if args.only in ("all", "singles"):
        zoo.pretrain(
            datasets,
            n_jobs=args.n_jobs,
            signature_fn=signature_fn,
            metadata=info,
            verbose=1,
            **search,
        )
    t1 = time.perf_counter()
    if args.only in ("all", "multi"):
        mixed, mixed_info = load_sources(
            args.data, args.multi_n_per_source, args.seed, args.size
        )
        for name, extra in mixed_info.items():
            if name == "letters":
                extra["transform"] = (
                    f"16x8 resized to {args.size}x{args.size} (antialiased bilinear)"
                )
        zoo.pretrain_mixture(
            mixed,
            name="multi",
            mixing="balanced",
            image_size=(args.size, args.size),
            signature_fn=signature_fn,
            metadata={"sources": mixed_info},
            verbose=1,
            **search,
        )
    t2 = time.perf_counter()

    # Swap the finished build in; nothing but the lock file is left behind.
    (build / ".lock").unlink(missing_ok=True)
    shutil.rmtree(args.out, ignore_errors=True)
    build.rename(args.out)

    out = SupernetZoo(args.out, read_only=True)
    rows = {}
    for name in out:
        entry = out[name]
        size = sum(p.stat().st_size for p in entry.path.iterdir())
        rows[name] = {
            "bytes": size,
            "train_seconds": entry.provenance["train_seconds"],
            "final_accuracy": entry.provenance["final_accuracy"],
        }
    total = sum(r["bytes"] for r in rows.values())
    print(json.dumps(rows, indent=1))
    print(
        f"total {total} bytes; single sources {t1 - t0:.0f} s, "
        f"multi {t2 - t1:.0f} s, all {t2 - t0:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
