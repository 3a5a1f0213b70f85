"""Build the zoo shipped with skdarts (``skdarts/zoo_data``, ``SupernetZoo.default()``).

One command builds everything - the supernets, their provenance and their
dataset signatures - and survives interruptions::

    python scripts/build_default_zoo.py 2>&1 | tee build/zoo.log

Run it again after a crash, a Ctrl-C or a closed session: finished entries
are kept in ``<out>.building/`` and each unfinished supernet continues from
its last epoch (``checkpoint_dir``, default ``build/zoo-checkpoints``). When
every entry is present the finished zoo replaces ``--out`` in one rename.
Two processes may share the work (``--only singles`` and ``--only multi``,
same ``--out``): the zoo is safe under concurrent writers, and the swap
happens in whichever finishes last.

Entries (all at SupernetSearchClassifier's default configuration: space
"darts", init_channels=8, n_cells=5, n_nodes=4; grey 16x16 inputs):

* ``fashion_mnist``, ``mnist``, ``letters`` - one supernet per source, each on
  ``--n-per-source`` images (stratified; Fashion-MNIST from its train split);
* ``multi`` - one supernet on a mixture of the three sources and three
  derived tasks (``--multi-n-per-task`` images each, balanced mixing, one head
  per task): ``mnist_rot90`` (digits rotated by 90 degrees), ``fashion_inverted``
  (Fashion-MNIST with inverted intensities) and ``letters_a_to_m`` (the letter
  classes a-m only). Colourised copies were left out: every development
  target is grey, and a colour stem would be adapted back to grey anyway.

Image size. Every image is resized to ``--size`` (16) with antialiased
bilinear interpolation. A search's cost grows with the number of pixels, and
on a 2-core CPU 16x16 is what lets the zoo see thousands of images per source
for many epochs; a warm-started search resizes its target to the prior's
recorded size by default (``SupernetSearchClassifier(image_size="prior")``),
so 28x28 or 32x32 targets meet the prior at the size it was trained at.

Signatures. Each entry stores, per source, a dataset signature of every
embedding of ``skdarts.similarity.EMBEDDINGS`` (``--embedding``, default
all: the fixed pixel projection and the shipped multi supernet's learned
features). ``--signatures-only`` adds or recomputes the signatures of
``--embedding`` in the finished zoo at ``--out`` without retraining or
rewriting any weights::

    python scripts/build_default_zoo.py --signatures-only --embedding supernet

It rebuilds each source's images from ``--data`` as the entry's provenance
records them (file, class subset, count, seed, resize), checks that they
are the images the entry's stored pixel signature was computed on (the
recomputed signature must equal it bit for bit), and stores the new
signatures beside the others (``SupernetZoo.set_signatures``; the weights
files are hard-linked, their sha256 unchanged, which it checks).

Budget. ``--epochs`` (15) with DARTS' weight optimiser (SGD, lr 0.025,
cosine) and the architecture optimiser's learning rate raised to
``--arch-lr`` (3e-3, DARTS uses 3e-4): DARTS' own search takes ~20,000
architecture steps, this build a few hundred to a thousand, and at 3e-4 the
alphas of the earlier zoo stayed within 0.0015 of uniform. Each entry
records in its provenance the alphas' distance from uniform
(``alpha_stats``), the per-epoch history and the accuracy on the held-out
architecture split; the build records its wall time and machine
(``build``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
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
SINGLES = ("fashion_mnist", "mnist", "letters")
DERIVED = ("mnist_rot90", "fashion_inverted", "letters_a_to_m")


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
    if tuple(X.shape[1:]) == tuple(size):
        return X
    out = []
    for start in range(0, len(X), 2048):
        t = torch.from_numpy(X[start : start + 2048].astype(np.float32))[:, None]
        r = F.interpolate(t, size=size, mode="bilinear", antialias=True)[:, 0]
        out.append(r.round().clamp(0, 255).numpy().astype(np.uint8))
    return np.concatenate(out)


def _raw(data: Path, name: str, n: int, seed: int):
    """(X uint8 native size, y, provenance) of ``n`` images of a source."""
    if name == "fashion_mnist":
        with np.load(data / "fashion_mnist.npz", allow_pickle=False) as z:
            train = np.flatnonzero(z["split"] == "train")
            idx = train[stratified_subsample(z["y"][train], n, seed)]
            X, y = z["X"][idx], z["y"][idx]
            info = {"file": "fashion_mnist.npz", "origin": str(z["source"])}
            info["license"] = str(z["license"])
            info["subset"] = f"stratified random {n} of split='train' (seed {seed})"
    elif name == "mnist":
        with np.load(data / "mnist_5k.npz", allow_pickle=False) as z:
            idx = stratified_subsample(z["y"], n, seed)
            X, y = z["X"][idx], z["y"][idx]
            info = {"file": "mnist_5k.npz", "origin": str(z["source"])}
            info["license"] = str(z["license"])
            info["subset"] = f"stratified random {n} of 5,000 (seed {seed})"
    elif name == "letters":
        with np.load(data / "ocr_letters.npz", allow_pickle=False) as z:
            X = z["X"]
            idx = stratified_subsample(z["y"], n, seed)
            X, y = X[idx], z["y"][idx]
            if X.max() <= 1:  # binary images stored as 0/1
                X = (X * 255).astype(np.uint8)
            info = {"file": "ocr_letters.npz", "origin": str(z["source"])}
            info["license"] = str(z["license"])
            info["subset"] = f"stratified random {n} of 52,152, all folds (seed {seed})"
    else:
        raise ValueError(f"unknown source {name!r}")
    return X, y, info


def derived_task(data: Path, name: str, n: int, seed: int):
    """(X, y, provenance) of one derived task (module docstring)."""
    if name == "mnist_rot90":
        X, y, info = _raw(data, "mnist", n, seed + 1)
        X = np.ascontiguousarray(np.rot90(X, k=1, axes=(1, 2)))
        info["derived"] = "mnist_5k digits rotated by 90 degrees counter-clockwise"
    elif name == "fashion_inverted":
        X, y, info = _raw(data, "fashion_mnist", n, seed + 1)
        X = 255 - X
        info["derived"] = "Fashion-MNIST with inverted intensities (255 - x)"
    elif name == "letters_a_to_m":
        with np.load(data / "ocr_letters.npz", allow_pickle=False) as z:
            keep = np.flatnonzero(z["y"] < 13)
            idx = keep[stratified_subsample(z["y"][keep], n, seed + 1)]
            X, y = z["X"][idx], z["y"][idx]
            if X.max() <= 1:
                X = (X * 255).astype(np.uint8)
            info = {"file": "ocr_letters.npz", "origin": str(z["source"])}
            info["license"] = str(z["license"])
            info["subset"] = f"stratified random {n} of classes a-m (seed {seed + 1})"
            info["derived"] = "class subset: the 13 letters a-m"
    else:
        raise ValueError(f"unknown derived task {name!r}")
    return X, y, info


def _sized(X, y, info, size: int):
    shape = X.shape[1:]
    info["transform"] = (
        f"{shape[0]}x{shape[1]} resized to {size}x{size} (antialiased bilinear)"
    )
    return resize_uint8(X, (size, size)), y, info


def load_sources(data: Path, n: int, seed: int, size: int):
    """{name: (X, y)} and {name: provenance} for the three development sets."""
    datasets, info = {}, {}
    for name in SINGLES:
        X, y, extra = _sized(*_raw(data, name, n, seed), size)
        datasets[name], info[name] = (X, y), extra
    return datasets, info


def load_mixture(data: Path, n: int, seed: int, size: int):
    """The ``multi`` entry's tasks: the sources plus the derived ones."""
    datasets, info = load_sources(data, n, seed, size)
    for name in DERIVED:
        X, y, extra = _sized(*derived_task(data, name, n, seed), size)
        datasets[name], info[name] = (X, y), extra
    return datasets, info


def _recorded_source(data: Path, name: str, info: dict, size: int):
    """(X, y) of source ``name`` rebuilt as its provenance ``info`` records it."""
    found = re.search(r"stratified random (\d+) of .*\(seed (\d+)\)", info["subset"])
    if found is None:
        raise ValueError(f"{name}: no count and seed in its subset {info['subset']!r}")
    n, seed = int(found.group(1)), int(found.group(2))
    if name in SINGLES:
        X, y, _ = _raw(data, name, n, seed)
    elif name in DERIVED:
        X, y, _ = derived_task(data, name, n, seed - 1)  # it adds 1 itself
    else:
        raise ValueError(f"unknown source {name!r} in the zoo's provenance")
    return resize_uint8(X, (size, size)), y


def add_signatures(zoo_path: Path, data: Path, embeddings) -> int:
    """``--signatures-only``: store ``embeddings``' signatures in every entry."""
    from skdarts._files import sha256_file
    from skdarts.similarity import signature_fn

    zoo = SupernetZoo(zoo_path)
    had_lock = (zoo_path / ".lock").exists()
    for name in zoo:
        entry = zoo[name]
        weights = entry.path / "weights.safetensors"
        sha = sha256_file(weights)
        stored = entry.signature_arrays(embedding="pixels")
        new = {}
        for source, info in entry.provenance["sources"].items():
            start = time.perf_counter()
            size = int(info["trained_shape"][-1])
            X, y = _recorded_source(data, source, info, size)
            arrays, meta = signature_fn(X, y)
            old_arrays, old_meta = stored[source]
            same = meta == old_meta and all(
                np.array_equal(arrays[k], old_arrays[k]) for k in old_arrays
            )
            if not same:
                print(
                    f"{name}/{source}: the rebuilt images are not those its stored "
                    "signature was computed on; nothing written",
                    file=sys.stderr,
                )
                return 1
            new[source] = [
                (arrays, meta) if e == "pixels" else signature_fn(X, y, embedding=e)
                for e in embeddings
            ]
            print(
                f"{name}/{source}: {len(X)} images, {', '.join(embeddings)} "
                f"({time.perf_counter() - start:.1f} s)",
                flush=True,
            )
        entry = zoo.set_signatures(name, new)
        if sha256_file(entry.path / "weights.safetensors") != sha:
            print(f"{name}: its weights changed", file=sys.stderr)
            return 1
        print(f"{name}: signatures {sorted(entry.signature_arrays())}", flush=True)
    if not had_lock:
        (zoo_path / ".lock").unlink(missing_ok=True)
    total = sum(p.stat().st_size for p in zoo_path.rglob("*") if p.is_file())
    print(f"total {total} bytes")
    return 0


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


def _summary(zoo: SupernetZoo) -> dict:
    rows = {}
    for name in zoo:
        entry = zoo[name]
        prov = entry.provenance
        stats = prov.get("alpha_stats", {})
        rows[name] = {
            "bytes": sum(p.stat().st_size for p in entry.path.iterdir()),
            "train_seconds": prov["train_seconds"],
            "final_accuracy": prov["final_accuracy"],
            "alpha_entropy": {
                k: v["normalised_entropy_mean"] for k, v in stats.items()
            },
            "alpha_max_dev": {k: v["max_abs_deviation"] for k, v in stats.items()},
        }
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "skdarts" / "zoo_data")
    parser.add_argument(
        "--checkpoint-dir", type=Path, default=ROOT / "build" / "zoo-checkpoints"
    )
    parser.add_argument("--n-per-source", type=int, default=4000)
    parser.add_argument(
        "--multi-n-per-task",
        type=int,
        default=1500,
        help="images per task inside 'multi' (it sees six tasks at once)",
    )
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--arch-lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=("all", "singles", "multi", *SINGLES),
        default=["all"],
        help="build part of the zoo (another process may build the rest, with "
        "its own budget: each entry records its own in its provenance)",
    )
    parser.add_argument("--size", type=int, default=16, help="side of resized images")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1 is fastest on a busy machine: OpenMP threads "
        "spin when cores are oversubscribed)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick", action="store_true", help="tiny smoke build (200 images, 1 epoch)"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="discard a previous unfinished build"
    )
    parser.add_argument("--verbose", type=int, default=2)
    parser.add_argument(
        "--embedding",
        nargs="+",
        default=None,
        help="embeddings whose signatures are stored (default: all of "
        "skdarts.similarity.EMBEDDINGS)",
    )
    parser.add_argument(
        "--signatures-only",
        action="store_true",
        help="add the --embedding signatures to the finished zoo at --out "
        "(no training; weights untouched)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n_per_source, args.multi_n_per_task, args.epochs = 200, 100, 1
    if not args.data.is_dir():
        print(f"no data folder at {args.data}; pass --data", file=sys.stderr)
        return 2

    from skdarts.similarity import EMBEDDINGS, make_signature_fn

    embeddings = args.embedding or sorted(EMBEDDINGS)
    unknown = sorted(set(embeddings) - set(EMBEDDINGS))
    if unknown:
        parser.error(
            f"--embedding: unknown {unknown}; choose among {sorted(EMBEDDINGS)}"
        )
    torch.set_num_threads(args.threads)
    if args.signatures_only:
        return add_signatures(args.out, args.data, embeddings)
    signature_fn = make_signature_fn(embeddings)
    build = args.out.parent / (args.out.name + ".building")
    if args.fresh:
        shutil.rmtree(build, ignore_errors=True)
        shutil.rmtree(args.checkpoint_dir, ignore_errors=True)
    zoo = SupernetZoo(build)
    search = dict(
        max_epochs=args.epochs,
        random_state=args.seed,
        search_space="darts",
        init_channels=8,
        n_cells=5,
        n_nodes=4,
        arch_lr=args.arch_lr,
        batch_size=args.batch_size,
        device="cpu",
    )
    build_info = {"machine": machine(), "command": " ".join(sys.argv)}
    t0 = time.perf_counter()
    only = set(args.only)
    if "all" in only:
        only |= {"singles", "multi"}
    if "singles" in only:
        only |= set(SINGLES)
    singles = [n for n in SINGLES if n in only]
    if singles:
        datasets, info = load_sources(
            args.data, args.n_per_source, args.seed, args.size
        )
        for name in singles:
            if name in zoo:
                print(f"{name}: already built, kept", flush=True)
                continue
            start = time.perf_counter()
            zoo.pretrain(
                {name: datasets[name]},
                signature_fn=signature_fn,
                metadata={name: info[name] | {"build": build_info}},
                checkpoint_dir=args.checkpoint_dir,
                verbose=args.verbose,
                **search,
            )
            print(f"{name}: {time.perf_counter() - start:.0f} s wall", flush=True)
    if "multi" in only:
        if "multi" in zoo:
            print("multi: already built, kept", flush=True)
        else:
            start = time.perf_counter()
            mixed, mixed_info = load_mixture(
                args.data, args.multi_n_per_task, args.seed, args.size
            )
            zoo.pretrain_mixture(
                mixed,
                name="multi",
                mixing="balanced",
                image_size=(args.size, args.size),
                signature_fn=signature_fn,
                metadata={"sources": mixed_info, "build": build_info},
                checkpoint_dir=args.checkpoint_dir,
                verbose=args.verbose,
                **search,
            )
            print(f"multi: {time.perf_counter() - start:.0f} s wall", flush=True)
    print(f"this run: {time.perf_counter() - t0:.0f} s wall", flush=True)

    missing = [n for n in (*SINGLES, "multi") if n not in zoo]
    if missing:
        print(f"not yet built: {missing}; the zoo at {args.out} is unchanged")
        return 0
    # Swap the finished build in; nothing else is left behind.
    (build / ".lock").unlink(missing_ok=True)
    old = args.out.parent / (args.out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if args.out.exists():
        args.out.rename(old)
    build.rename(args.out)
    shutil.rmtree(old, ignore_errors=True)
    rows = _summary(SupernetZoo(args.out, read_only=True))
    print(json.dumps(rows, indent=1))
    print(f"total {sum(r['bytes'] for r in rows.values())} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
