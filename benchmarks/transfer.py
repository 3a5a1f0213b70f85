"""Warm-started search against search from scratch, leave one dataset out.

Each of fashion_mnist, mnist_5k, ocr_letters (``../shared/data``) and
scikit-learn's digits is in turn the target; the zoo holds single-source
supernets pretrained on the *other* three, plus one multi-dataset supernet
pretrained on those three together. On every target the strategies of
:class:`skdarts.evaluation.WarmStartComparison` run with the same seeds and
budget; the table gives, per target, the speedup (epochs to reach scratch's
final held-out accuracy - the mean of its last two epochs -, scratch / warm;
0 when never reached) and the final accuracy difference (points), then the
median over targets. A second table compares against ``scratch_probe``
(scratch with the same head probe a warm start gets), which separates what
the transferred weights add from what the probe adds.

Data (stated so the numbers can be judged): every image is resized to 16x16
grey (bilinear, antialiased; digits are upsampled from 8x8, letters from
16x8) and scaled to [0, 1]. Sources use ``--n-source`` images each
(stratified subsample; fashion_mnist from its train split); targets use
``--n-target`` images (fashion_mnist from its test split), of which 20 % is
held out for the learning curves. A target is small on purpose: a few dozen
images per class, the regime of the paper's Meta-Album tasks, where a search
from scratch has the least to learn from.

The zoo is built into ``--cache`` (default: a folder under the system's
temporary directory, keyed by the settings) and reused by later runs with
the same settings; ``--rebuild`` forces pretraining again. Timings include
pretraining only when it ran.

Reference. Speedups and deltas are measured against ``scratch_probe`` by
default (``--reference``): scratch given the same head probe a warm start
gets, so they show what the transferred alphas and weights add. Next to the
epoch ratio, which cannot exceed the budget when the reference is still
improving, the tables give ``dauc``: the difference of the mean held-out
accuracy over all epochs (area under the learning curve / budget), in points.

Usage::

    python benchmarks/transfer.py            # leave-one-out, 3 seeds (hours on 2 cores)
    python benchmarks/transfer.py --quick    # <= 5 min smoke run (benchmarks/out/)
    python benchmarks/transfer.py --shipped  # the shipped zoo against digits

The last line reads ``median_speedup=<x> median_acc_delta=<points>
reference=<reference>`` for the strategy given by ``--report`` (the
multi-dataset supernet by default).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# One thread per process: runs are spread over processes (--jobs) instead;
# set before torch is imported here and inherited by the worker processes.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sklearn.datasets import load_digits  # noqa: E402

from skdarts import SupernetSearchClassifier  # noqa: E402
from skdarts._files import atomic_writer  # noqa: E402
from skdarts.evaluation import STRATEGIES, WarmStartComparison  # noqa: E402

DATASETS = ("digits", "fashion_mnist", "mnist_5k", "ocr_letters")
#: Warm-start settings of the searches: the body at the full learning rate
#: (warm_lr=None), the alphas free from the first epoch and the usual
#: smoothing ramp; the head is rebuilt by the linear probe (warm_head="probe").
WARM = {"warm_arch_warmup_epochs": 0, "warm_epsilon_start": 0.03}
#: Final accuracies are means over the last TAIL epochs: a held-out part of
#: ~100 images moves by 1 point per image, and one epoch's dip or peak should
#: not decide a speedup.
TAIL = 2
SIZE = 16

PRESETS = {
    "quick": dict(
        n_source=600,
        n_target=300,
        source_epochs=6,
        epochs=6,
        init_channels=4,
        n_cells=3,
        n_nodes=2,
        batch_size=32,
        source_arch_lr=3e-3,
        seeds=1,
        strategies=("scratch", "scratch_probe", "ot", "multi"),
    ),
    "default": dict(
        n_source=3000,
        n_target=500,
        source_epochs=12,
        source_arch_lr=3e-3,
        epochs=10,
        init_channels=8,
        n_cells=3,
        n_nodes=2,
        batch_size=32,
        seeds=3,
        strategies=STRATEGIES,
    ),
}
#: The shipped zoo (``SupernetZoo.default()``) on the one development target
#: none of its entries was trained on: scikit-learn's digits. The supernet
#: size is the zoo's (the estimator's defaults), images 16x16 as the zoo's.
SHIPPED = dict(
    n_target=500,
    epochs=10,
    init_channels=8,
    n_cells=5,
    n_nodes=4,
    batch_size=32,
    seeds=3,
    strategies=("scratch", "scratch_probe", "ot", "multi"),
)
#: The reference every speedup is measured against by default: scratch given
#: the same head probe (batch-norm re-estimation and a logistic-regression
#: head) that a warm start gets, so a speedup is what the transferred alphas
#: and weights add, not what the probe adds.
REFERENCE = "scratch_probe"


def resize(images: np.ndarray, size: int = SIZE) -> np.ndarray:
    """(n, h, w) images in [0, 1] -> (n, size, size) float32, bilinear."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    x = F.interpolate(
        x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return x[:, 0].clamp(0, 1).numpy()


def _stratified(y: np.ndarray, n: int, rng: np.random.RandomState) -> np.ndarray:
    """About ``n`` indices, every class in proportion (at least 2 each)."""
    if n >= len(y):
        return rng.permutation(len(y))
    idx = []
    classes, counts = np.unique(y, return_counts=True)
    for cls, count in zip(classes, counts):
        k = max(2, round(n * count / len(y)))
        idx.extend(rng.choice(np.flatnonzero(y == cls), min(k, count), replace=False))
    return rng.permutation(np.asarray(idx))


def load(name: str, role: str, n: int, seed: int = 0):
    """(X, y) of a data set, as a source or a target (disjoint where possible)."""
    rng = np.random.RandomState(seed + (0 if role == "source" else 1))
    if name == "digits":
        X, y = load_digits(return_X_y=True)
        X = X.reshape(-1, 8, 8) / 16.0
    else:
        path = DATA / f"{name}.npz"
        if not path.is_file():
            raise SystemExit(
                f"{path} is missing: this benchmark needs ../shared/data (see its "
                "README)."
            )
        with np.load(path) as d:
            X, y = d["X"], d["y"]
            if "split" in d.files:
                keep = d["split"] == ("train" if role == "source" else "test")
                X, y = X[keep], y[keep]
        X = X / 255.0
    # Sources and targets come from one data set only in leave-one-out's
    # complement, never together; halves keep them disjoint anyway.
    order = np.random.RandomState(seed).permutation(len(y))
    half = order[: len(y) // 2] if role == "source" else order[len(y) // 2 :]
    pick = half[_stratified(y[half], n, rng)]
    return resize(X[pick]), y[pick].astype(np.int64)


def _settings_key(cfg: dict) -> str:
    keys = (
        "n_source",
        "source_epochs",
        "source_arch_lr",
        "init_channels",
        "n_cells",
        "n_nodes",
        "batch_size",
    )
    blob = json.dumps({k: cfg[k] for k in keys} | {"size": SIZE}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def default_cache(cfg: dict) -> Path:
    """The zoo cache of a preset: under the temporary folder, keyed by it."""
    return Path(tempfile.gettempdir()) / f"skdarts-transfer-{_settings_key(cfg)}"


def _search_params(cfg: dict) -> dict:
    return dict(
        init_channels=cfg["init_channels"],
        n_cells=cfg["n_cells"],
        n_nodes=cfg["n_nodes"],
        batch_size=cfg["batch_size"],
        device="cpu",
    )


def _pretrain_job(cache, name, sources, search, checkpoints):
    """One zoo entry: a single-source supernet, or a mixture of several."""
    from skdarts.similarity import signature_fn
    from skdarts.zoo import SupernetZoo

    torch.set_num_threads(1)
    zoo = SupernetZoo(cache)
    common = dict(
        verbose=0,
        signature_fn=signature_fn,
        overwrite=True,
        checkpoint_dir=checkpoints,
        **search,
    )
    if len(sources) == 1:
        zoo.pretrain({name: next(iter(sources.values()))}, **common)
    else:
        zoo.pretrain_mixture(sources, name=name, **common)
    return name


def _checkpoints(cache: Path) -> Path:
    return cache.with_name(cache.name + "-checkpoints")


def build_zoo(cfg: dict, cache: Path, rebuild: bool, jobs: int, verbose: int):
    """Single-source entries for every data set, one multi entry per target.

    Every entry is one job with its own fixed seed, saved every epoch under
    ``<cache>-checkpoints`` (beside the zoo: a folder inside it would be
    listed as a damaged entry): an interrupted build continues where it
    stopped when run again with the same settings; finished entries are kept.
    The mixtures (three times a single's data) are scheduled first so the
    two workers finish together.
    """
    from joblib import Parallel, delayed

    from skdarts.zoo import SupernetZoo

    zoo = SupernetZoo(cache)
    search = _search_params(cfg) | dict(
        max_epochs=cfg["source_epochs"],
        arch_lr=cfg["source_arch_lr"],
        random_state=0,
    )
    sources = {name: load(name, "source", cfg["n_source"]) for name in DATASETS}
    # One mixture per left-out target (its sources are the other three), each
    # as big as the three single sources together.
    wanted = [
        (f"multi_no_{t}", {n: xy for n, xy in sources.items() if n != t})
        for t in DATASETS
    ] + [(n, {n: xy}) for n, xy in sources.items()]
    todo = [(name, srcs) for name, srcs in wanted if rebuild or name not in zoo]
    t0 = time.perf_counter()
    if todo:
        if verbose:
            print(
                f"pretraining {len(todo)} entries ({', '.join(n for n, _ in todo)}) "
                f"on {jobs} worker(s); checkpoints in {_checkpoints(cache)}",
                flush=True,
            )
        done = Parallel(n_jobs=jobs, return_as="generator_unordered")(
            delayed(_pretrain_job)(cache, name, srcs, search, _checkpoints(cache))
            for name, srcs in todo
        )
        for name in done:
            if verbose:
                print(f"  {name} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    return SupernetZoo(cache), time.perf_counter() - t0


def _fmt(mean: float, std: float, digits: int = 1) -> str:
    return f"{mean:.{digits}f}±{std:.{digits}f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="<= 5 min settings")
    parser.add_argument(
        "--shipped",
        action="store_true",
        help="no leave-one-out pretraining: the shipped zoo against digits, the "
        "development target that none of its entries was trained on",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder of the figure (default: benchmarks/results for the default "
        "mode; benchmarks/out for --quick, so a smoke run never overwrites the "
        "committed figure)",
    )
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument(
        "--pretrain-only",
        action="store_true",
        help="build (or finish building) the leave-one-out zoo, then stop",
    )
    parser.add_argument("--jobs", type=int, default=2, help="parallel runs")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--targets", nargs="+", default=list(DATASETS))
    parser.add_argument(
        "--report",
        default="multi",
        choices=[s for s in STRATEGIES if s not in ("scratch", REFERENCE)],
    )
    parser.add_argument(
        "--reference",
        default=REFERENCE,
        choices=("scratch", "scratch_probe"),
        help="what speedups are measured against (default: scratch_probe)",
    )
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)
    cfg = dict(
        SHIPPED if args.shipped else PRESETS["quick" if args.quick else "default"]
    )
    if args.shipped:
        args.targets = [t for t in args.targets if t == "digits"] or ["digits"]
    if args.seeds is not None:
        cfg["seeds"] = args.seeds
    if args.epochs is not None:
        cfg["epochs"] = args.epochs
    strategies = list(cfg["strategies"])
    for needed in (args.report, args.reference):
        if needed not in strategies:
            strategies.append(needed)
    if args.out is None:
        args.out = ROOT / "benchmarks" / ("out" if args.quick else "results")
    unknown = sorted(set(args.targets) - set(DATASETS))
    if unknown:
        parser.error(f"unknown targets {unknown}; choose from {list(DATASETS)}")
    torch.set_num_threads(1)

    cache = args.cache
    if cache is None and not args.shipped:
        cache = default_cache(cfg)
    t_start = time.perf_counter()
    if args.shipped:
        from skdarts.zoo import SupernetZoo

        zoo, pretrain_s, cache = SupernetZoo.default(), 0.0, "the shipped zoo"
        cfg["n_source"] = "(as shipped)"
    else:
        zoo, pretrain_s = build_zoo(cfg, cache, args.rebuild, args.jobs, args.verbose)
        if args.pretrain_only:
            print(f"zoo at {cache}: {sorted(zoo)} ({pretrain_s:.0f} s)")
            return 0
    print(
        f"zoo at {cache}: {len(zoo)} entries ({pretrain_s:.0f} s pretraining); "
        f"images {SIZE}x{SIZE} grey, {cfg['n_source']} per source, "
        f"{cfg['n_target']} per target (20% held out), {cfg['epochs']} search "
        f"epochs, {cfg['seeds']} seed(s), supernet C={cfg['init_channels']} "
        f"cells={cfg['n_cells']} nodes={cfg['n_nodes']}",
        flush=True,
    )
    base = SupernetSearchClassifier(
        **_search_params(cfg),
        max_epochs=cfg["epochs"],
        final_epochs=0,
        verbose=0,
        **WARM,
    )
    results = {}
    for target in args.targets:
        X, y = load(target, "target", cfg["n_target"])
        if args.shipped:
            singles, multi = [n for n in zoo if n != "multi"], "multi"
        else:
            singles, multi = [n for n in DATASETS if n != target], f"multi_no_{target}"
        cmp = WarmStartComparison(
            base,
            zoo=zoo,
            strategies=strategies,
            multi_entry=multi,
            sources=singles,
            seeds=tuple(range(cfg["seeds"])),
            tail=TAIL,
            n_jobs=args.jobs,
        )
        t0 = time.perf_counter()
        res = cmp.fit(X, y).result_
        results[target] = res
        print(
            f"\n== target {target} ({len(y)} images, {time.perf_counter() - t0:.0f} s)"
        )
        print(res.table(), flush=True)

    # The summary tables: per target, speedup (epochs, mean over seeds) and
    # final accuracy delta (points) of each strategy against a reference.
    # Plain scratch first, for context; the reference's table is the headline.
    if args.reference != "scratch":
        _summary_table(results, strategies, "scratch")
    per_strategy = _summary_table(results, strategies, args.reference)
    ot_sources = {
        t: ",".join(sorted({n for n in r.sources.get("ot", []) if n}))
        for t, r in results.items()
    }
    if any(ot_sources.values()):
        print(
            "OT choice per target: "
            + "; ".join(f"{t}<-{s}" for t, s in ot_sources.items())
        )

    args.out.mkdir(parents=True, exist_ok=True)
    figure = args.out / (
        "transfer_curves_shipped.png" if args.shipped else "transfer_curves.png"
    )
    _plot(results, figure)
    print(f"figure: {figure}; total {time.perf_counter() - t_start:.0f} s")
    speedups, deltas = per_strategy[args.report][:2]
    print(
        f"median_speedup={np.median(speedups):.2f} "
        f"median_acc_delta={np.median(deltas):+.1f} reference={args.reference}"
    )
    return 0


def _summary_table(results: dict, strategies, reference: str) -> dict:
    warm = [s for s in STRATEGIES if s in strategies and s != reference]
    if reference == "scratch_probe":
        warm = [s for s in warm if s != "scratch"]
    print(
        "\n"
        + "=" * 16
        + f" against {reference} (speedup x, final acc delta pt, mean acc "
        "delta pt)"
    )
    print(
        f"{'target':<14} {'ref acc':>7} "
        + " ".join(f"{s[:10] + ' x':>12} {'dacc':>6} {'dauc':>6}" for s in warm)
    )
    per_strategy = {s: ([], [], []) for s in warm}
    for target, res in results.items():
        summary = res.summary(reference)
        ref = summary[reference]["final_acc"][0] * 100
        cells = []
        for s in warm:
            sp, da = summary[s]["speedup_epochs"][0], summary[s]["acc_delta"][0]
            du = summary[s]["auc_delta"][0]
            for k, v in enumerate((sp, da, du)):
                per_strategy[s][k].append(v)
            cells.append(f"{sp:>12.2f} {da:>+6.1f} {du:>+6.1f}")
        print(f"{target:<14} {ref:>7.1f} " + " ".join(cells))
    print(
        f"{'median':<14} {'':>7} "
        + " ".join(
            f"{np.median(per_strategy[s][0]):>12.2f} "
            f"{np.median(per_strategy[s][1]):>+6.1f} "
            f"{np.median(per_strategy[s][2]):>+6.1f}"
            for s in warm
        )
    )
    return per_strategy


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skdarts.viz import plot_comparison

    fig, axes = plt.subplots(
        1, len(results), figsize=(4 * len(results), 3.4), squeeze=False
    )
    for ax, (target, res) in zip(axes[0], results.items()):
        plot_comparison(res, ax=ax)
        ax.set_title(f"target: {target}")
    fig.tight_layout()
    with atomic_writer(path) as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
