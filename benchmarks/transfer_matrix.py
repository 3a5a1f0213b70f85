"""Does a small OT dataset distance mean a source that transfers well?

For every (source, target) pair - the leave-one-out zoo of
``benchmarks/transfer.py`` (single-source supernets of digits,
fashion_mnist, mnist_5k and ocr_letters, and the four mixtures
``multi_no_<x>`` of three of them) against the development targets and
tasks derived from them (``benchmarks/_runs.py``: rotated, inverted, class
subset, lower resolution) - a warm-started search runs next to
``scratch_probe`` (scratch given the same head probe) with the same seeds
and budget. The gain of a pair is the warm run's final held-out accuracy
minus the reference's (points, mean over seeds); the speedup (epochs to
reach the reference's final accuracy) and the area-under-curve difference
are printed next to it.

Next to each gain stands the OT dataset distance the selector computes
between the target's training part and the entry's stored signatures
(``OTSourceSelector``, exact OTDD over every entry, mean over seeds), once
per embedding: ``pixels`` (fixed random projection of the pixels) and
``supernet`` (pooled features of the frozen body of the shipped
multi-dataset supernet). Printed per embedding: Spearman's rho between
distance and gain over all pairs and per target (negative: a larger
distance, a smaller gain), and selection accounting per target among the
single-source entries that were not trained on the target's own data set
(three per target; as in ``transfer.py``, where the mixture is a strategy of
its own): OT's pick, the oracle's (best final accuracy), random's
expectation, top-1 regret (oracle - pick, points) and whether OT's pick is
within 1 point of the oracle's. A line below gives the same with the
eligible mixture among the candidates.

Every run is cached in ``<cache>-runs`` (resumable; a rerun with the same
settings reruns nothing). The figure (gain matrix and distance-gain
scatter per embedding) goes to ``--out``.

Usage::

    python benchmarks/transfer.py --pretrain-only    # the zoo, once
    python benchmarks/transfer_matrix.py             # 2 seeds, 8 x 8

The last line reads ``spearman_rho=<r> ot_within_1pt=<k>/<n>
embedding=<name>`` for the selector's default embedding; the line before it
gives the same for the other one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import _runs  # noqa: E402
import transfer  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from skdarts import OTSourceSelector  # noqa: E402
from skdarts._files import atomic_writer  # noqa: E402
from skdarts.evaluation import LearningCurve, compare_curves  # noqa: E402

TARGETS = (*transfer.DATASETS, *_runs.DERIVED)


def _entries(zoo) -> list[str]:
    singles = [n for n in transfer.DATASETS if n in zoo]
    multis = [f"multi_no_{n}" for n in transfer.DATASETS if f"multi_no_{n}" in zoo]
    return singles + multis


def _trained_on(entry: str) -> set[str]:
    """The development data sets an entry of the leave-one-out zoo saw."""
    if entry.startswith("multi_no_"):
        return set(transfer.DATASETS) - {entry[len("multi_no_") :]}
    return {entry}


def selection_accounting(
    distance: dict, final: dict, candidates, n_sources: dict | None = None
) -> dict:
    """OT's pick against the oracle's among ``candidates`` for one target.

    ``distance`` and ``final`` map entry names to the OT distance and to the
    warm run's final accuracy (points). Returns the pick (smallest distance;
    ties, as in ``OTSourceSelector``, to the entry with more sources in
    ``n_sources``, then by name; a mixture is as near as its nearest source),
    the oracle (best accuracy; ties to the first candidate), their
    accuracies, random's expected accuracy (the candidates' mean), the top-1
    regret (oracle - pick, points), random's expected regret and whether the
    pick is within 1 point of the oracle.

    >>> r = selection_accounting({"a": 0.2, "b": 0.1}, {"a": 90.0, "b": 88.5},
    ...                          ["a", "b"])
    >>> r["pick"], r["oracle"], r["regret"], r["within_1pt"]
    ('b', 'a', 1.5, False)
    """
    candidates = list(candidates)
    if not candidates:
        raise ValueError("candidates is empty: no entry to select from.")
    n_sources = n_sources or {}
    pick = min(candidates, key=lambda s: (distance[s], -n_sources.get(s, 1), s))
    oracle = max(candidates, key=lambda s: final[s])
    random_acc = float(np.mean([final[s] for s in candidates]))
    regret = final[oracle] - final[pick]
    return {
        "pick": pick,
        "oracle": oracle,
        "pick_acc": final[pick],
        "oracle_acc": final[oracle],
        "random_acc": random_acc,
        "regret": regret,
        "random_regret": final[oracle] - random_acc,
        "within_1pt": regret <= 1.0,
    }


def ensure_signatures(zoo, cfg: dict, embedding: str) -> None:
    """Store ``embedding``'s signatures in every entry that lacks them.

    From the entry's own source images (``transfer.load``, as pretraining
    used them); the entry's weights and other signatures are kept.
    """
    from skdarts.similarity import signature_fn

    sources = None
    for name in _entries(zoo):
        if zoo[name].signature_arrays(embedding=embedding):
            continue
        if sources is None:
            sources = {
                n: transfer.load(n, "source", cfg["n_source"])
                for n in transfer.DATASETS
            }
        new = {
            src: signature_fn(*sources[src], embedding=embedding)
            for src in sorted(_trained_on(name))
        }
        zoo.set_signatures(name, new)


def distances(zoo, cfg, target: str, seeds, embedding: str) -> dict[str, float]:
    """Mean over seeds of the selector's distance from target to each entry."""
    total: dict[str, list[float]] = {}
    for seed in seeds:
        X_fit, _, y_fit, _ = _runs.split(target, cfg, seed)
        sel = OTSourceSelector(
            zoo, shortlist=None, embedding=embedding, random_state=seed, verbose=0
        ).fit(X_fit, y_fit)
        for name, d in zip(sel.ranking_, np.asarray(sel.distances_)):
            total.setdefault(str(name), []).append(float(d))
    return {n: float(np.mean(v)) for n, v in total.items()}


def main(argv=None) -> int:
    from skdarts.zoo import SupernetZoo

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--targets", nargs="+", default=list(TARGETS))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument(
        "--runs-only",
        action="store_true",
        help="run (or finish) the searches and stop before the distances",
    )
    args = parser.parse_args(argv)
    cfg = dict(transfer.PRESETS["default"])
    unknown = sorted(set(args.targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets {unknown}; choose from {list(TARGETS)}")
    cache = args.cache or transfer.default_cache(cfg)
    zoo = SupernetZoo(cache)
    entries = _entries(zoo)
    if len(entries) < 8:
        raise SystemExit(
            f"the zoo at {cache} holds {entries}; build it first with "
            "`python benchmarks/transfer.py --pretrain-only`."
        )
    torch.set_num_threads(1)
    seeds = list(range(args.seeds))
    t0 = time.perf_counter()

    runs = [
        (t, s, src)
        for t in args.targets
        for s in seeds
        for src in ["scratch_probe", *entries]
    ]
    print(
        f"zoo at {cache}: {len(entries)} entries; {len(args.targets)} targets x "
        f"{len(seeds)} seeds, {cfg['epochs']} epochs, {cfg['n_target']} images "
        f"per target (20% held out); {len(runs)} runs (cached ones are reused)",
        flush=True,
    )
    out = Parallel(n_jobs=args.jobs, verbose=0)(
        delayed(_runs.run)(cache, cfg, t, s, src, transfer.WARM) for t, s, src in runs
    )
    if args.runs_only:
        print(f"{len(runs)} runs done ({time.perf_counter() - t0:.0f} s)")
        return 0
    from skdarts.similarity import DEFAULT_EMBEDDING, EMBEDDINGS

    embeddings = [e for e in EMBEDDINGS if e != DEFAULT_EMBEDDING]
    embeddings.append(DEFAULT_EMBEDDING)
    for e in embeddings:
        ensure_signatures(zoo, cfg, e)
    zoo = SupernetZoo(cache)
    curve = {k: LearningCurve(o["accuracy"], o["seconds"]) for k, o in zip(runs, out)}
    gain, speedup, dauc, final = {}, {}, {}, {}
    for t in args.targets:
        for src in entries:
            cmp = [
                compare_curves(
                    curve[(t, s, "scratch_probe")], curve[(t, s, src)], transfer.TAIL
                )
                for s in seeds
            ]
            gain[t, src] = float(np.mean([c["acc_delta"] for c in cmp]))
            speedup[t, src] = float(np.mean([c["speedup_epochs"] for c in cmp]))
            dauc[t, src] = float(np.mean([c["auc_delta"] for c in cmp]))
            final[t, src] = float(np.mean([c["final_acc"] for c in cmp])) * 100
    ref = {
        t: np.mean(
            [
                curve[(t, s, "scratch_probe")].final_accuracy(transfer.TAIL)
                for s in seeds
            ]
        )
        * 100
        for t in args.targets
    }
    dist = {
        e: {t: distances(zoo, cfg, t, seeds, e) for t in args.targets}
        for e in embeddings
    }
    print(f"runs and distances: {time.perf_counter() - t0:.0f} s")

    short = {
        src: src.replace("multi_no_", "m-").replace("fashion_mnist", "fashion")
        for src in entries
    }
    print(
        "\ngain = final held-out accuracy - scratch_probe's (points, mean over "
        "seeds); [speedup x]"
    )
    print(f"{'target':<17} {'ref':>5} " + " ".join(f"{short[s]:>13}" for s in entries))
    for t in args.targets:
        cells = " ".join(
            f"{gain[t, s]:>+6.1f} [{speedup[t, s]:>4.1f}]" for s in entries
        )
        print(f"{t:<17} {ref[t]:>5.1f} {cells}")

    summary = {}
    for e in embeddings:
        print(f"\n== embedding {e} ({EMBEDDINGS[e]['name']})")
        print(f"{'target':<17} " + " ".join(f"{short[s]:>13}" for s in entries))
        for t in args.targets:
            print(f"{t:<17} " + " ".join(f"{dist[e][t][s]:>13.4f}" for s in entries))
        xs = [dist[e][t][s] for t in args.targets for s in entries]
        ys = [gain[t, s] for t in args.targets for s in entries]
        rho_all = float(spearmanr(xs, ys).statistic)
        rho_auc = float(
            spearmanr(xs, [dauc[t, s] for t in args.targets for s in entries]).statistic
        )
        per_target = {
            t: float(
                spearmanr(
                    [dist[e][t][s] for s in entries], [gain[t, s] for s in entries]
                ).statistic
            )
            for t in args.targets
        }
        print(
            f"spearman rho(distance, gain): all {len(xs)} pairs {rho_all:+.2f} "
            f"(with the auc gain {rho_auc:+.2f}); per target "
            + ", ".join(f"{t} {r:+.2f}" for t, r in per_target.items())
            + f"; median {np.nanmedian(list(per_target.values())):+.2f}"
        )
        print(
            f"{'target':<17} {'OT pick':>14} {'oracle':>14} {'OT acc':>7} "
            f"{'oracle':>7} {'random':>7} {'regret':>7} {'<=1pt':>6}"
        )
        n_src = {s: len(_trained_on(s)) for s in entries}

        def eligible(t, singles_only, n_src=n_src):
            base = _runs.base_dataset(t)
            return [
                s
                for s in entries
                if base not in _trained_on(s) and not (singles_only and n_src[s] > 1)
            ]

        rows = {
            t: selection_accounting(
                dist[e][t], {s: final[t, s] for s in entries}, eligible(t, True)
            )
            for t in args.targets
        }
        for t, r in rows.items():
            print(
                f"{t:<17} {short[r['pick']]:>14} {short[r['oracle']]:>14} "
                f"{r['pick_acc']:>7.1f} {r['oracle_acc']:>7.1f} "
                f"{r['random_acc']:>7.1f} {r['regret']:>7.1f} "
                f"{'yes' if r['within_1pt'] else 'no':>6}"
            )
        within = sum(r["within_1pt"] for r in rows.values())
        regret = np.mean([r["regret"] for r in rows.values()])
        random_regret = np.mean([r["random_regret"] for r in rows.values()])
        print(
            f"among the single sources: mean top-1 regret OT {regret:.1f} points, "
            f"random {random_regret:.1f}; OT within 1 point of the oracle on "
            f"{within}/{len(rows)} targets"
        )
        with_multi = [
            selection_accounting(
                dist[e][t],
                {s: final[t, s] for s in entries},
                eligible(t, False),
                n_src,
            )
            for t in args.targets
        ]
        print(
            "with the mixture among the candidates: OT picks it on "
            f"{sum(n_src[r['pick']] > 1 for r in with_multi)}/{len(with_multi)} "
            "targets (it is as near as its nearest source and wins the tie); "
            f"mean top-1 regret {np.mean([r['regret'] for r in with_multi]):.1f}, "
            f"within 1 point on {sum(r['within_1pt'] for r in with_multi)}/"
            f"{len(with_multi)}"
        )
        summary[e] = (rho_all, within, len(args.targets))

    args.out.mkdir(parents=True, exist_ok=True)
    figure = args.out / "transfer_matrix.png"
    _plot(args.targets, entries, short, gain, dist, embeddings, summary, figure)
    print(f"figure: {figure}; total {time.perf_counter() - t0:.0f} s")
    for e in embeddings:
        rho, k, n = summary[e]
        print(f"spearman_rho={rho:+.2f} ot_within_1pt={k}/{n} embedding={e}")
    return 0


def _plot(targets, entries, short, gain, dist, embeddings, summary, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, 1 + len(embeddings), figsize=(5.5 + 4 * len(embeddings), 4.6)
    )
    m = np.array([[gain[t, s] for s in entries] for t in targets])
    lim = max(1.0, float(np.abs(m).max()))
    ax = axes[0]
    im = ax.imshow(m, cmap="RdBu", vmin=-lim, vmax=lim)
    ax.set_xticks(range(len(entries)), [short[s] for s in entries], rotation=60)
    ax.set_yticks(range(len(targets)), targets)
    for i in range(len(targets)):
        for j in range(len(entries)):
            ax.text(j, i, f"{m[i, j]:+.0f}", ha="center", va="center", fontsize=7)
    ax.set_title("gain vs scratch_probe (points)")
    fig.colorbar(im, ax=ax, shrink=0.8)
    for ax, e in zip(axes[1:], embeddings):
        for t in targets:
            ax.scatter(
                [dist[e][t][s] for s in entries],
                [gain[t, s] for s in entries],
                label=t,
                s=14,
            )
        rho, k, n = summary[e]
        ax.set_title(f"{e}: rho={rho:+.2f}, OT within 1 pt {k}/{n}")
        ax.set_xlabel("OT dataset distance")
        ax.set_ylabel("gain (points)")
        ax.axhline(0, color="grey", lw=0.5)
    axes[-1].legend(fontsize=6, loc="best")
    fig.tight_layout()
    with atomic_writer(path) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
