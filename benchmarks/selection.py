"""How fast OTSourceSelector's ranking is, and how often its two stages agree
with exact OTDD over every entry.

Zoos are synthetic signatures of realistic size (the default feature map's
d = 32, 5-30 classes with full covariances, 1,000 stored points), drawn from
25 "domains" whose statistics match real embedded datasets (MNIST,
Fashion-MNIST, OCR letters, digits: dataset mean norm 0.3-0.7, class means
0.4-0.55 from it, class covariance trace 0.2-0.8, a decaying spectrum).
Entries of a domain share class prototypes with jitter, so a target usually
has several near-tied candidates: the hard case for the short list.

Timing is the ranking itself (``skdarts.similarity.rank_sources``, the
selector's core) with signatures already read; reading them from a zoo on
disk is the zoo's cost. The 10,000-entry zoo reuses the arrays of 1,000
distinct signatures (each entry gets its own dataset-level moments, which is
all stage 1 reads) so the benchmark fits in memory.

Agreement is measured for two kinds of target: a fresh sample of one entry's
distribution (the selection-sanity case) and a random new dataset from the
generator (the hard case: many entries of its domain are near-ties, within
the sampling noise of OTDD on 200 points a side). The exact top-1 over all
entries comes from a branch and bound that provably equals brute force
(``exact_top1``).

Run: ``PYTHONPATH=$PWD python benchmarks/selection.py [--targets 16]``.
The last line reads ``rank_1000_s=<seconds> top1_agreement=<fraction>``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ot
from joblib import Parallel, delayed

from skdarts.similarity import (
    EMBEDDING,
    DatasetSignature,
    _subsample,
    dataset_distance,
    rank_sources,
)

D = EMBEDDING["n_components"]


def make_domains(rng, n_domains=25, n_prototypes=40):
    domains = []
    for _ in range(n_domains):
        direction = rng.standard_normal(D)
        centre = direction / np.linalg.norm(direction) * rng.uniform(0.3, 0.7)
        protos = centre + rng.standard_normal((n_prototypes, D)) * 0.45 / np.sqrt(D)
        basis, _ = np.linalg.qr(rng.standard_normal((D, D)))
        spectrum = np.exp(-np.arange(D) / rng.uniform(2.0, 6.0))
        domains.append((protos, basis, spectrum / spectrum.sum()))
    return domains


def make_signature(rng, domains, n_points=1000) -> DatasetSignature:
    """A synthetic signature: class Gaussians of one domain, sampled points."""
    protos, basis, spectrum = domains[rng.randint(len(domains))]
    k = rng.randint(5, 31)
    chosen = rng.choice(len(protos), k, replace=False)
    shift = rng.standard_normal(D) * 0.01
    means = protos[chosen] + shift + rng.standard_normal((k, D)) * 0.015
    roots = []
    for _ in range(k):
        rot, _ = np.linalg.qr(np.eye(D) + 0.3 * rng.standard_normal((D, D)))
        scale = rng.uniform(0.2, 0.8) * spectrum
        roots.append(basis @ rot * np.sqrt(scale))
    roots = np.array(roots)
    covs = roots @ np.swapaxes(roots, 1, 2) + 1e-4 * np.eye(D)
    counts = rng.randint(50, 1000, size=k)
    w = counts / counts.sum()
    mean = w @ means
    centred = means - mean
    cov = np.einsum("k,kij->ij", w, covs) + (w[:, None] * centred).T @ centred
    labels = np.sort(rng.choice(k, n_points, p=w))
    points = means[labels] + np.einsum(
        "nij,nj->ni", roots[labels], rng.standard_normal((n_points, D))
    )
    return DatasetSignature(
        points=points.astype(np.float32),
        labels=labels.astype(np.int64),
        class_means=means.astype(np.float32),
        class_covs=covs.astype(np.float32),
        class_counts=counts.astype(np.int64),
        mean=mean.astype(np.float32),
        cov=cov.astype(np.float32),
        n_samples=int(counts.sum()),
    )


def resample(sig: DatasetSignature, rng, n_points=1000) -> DatasetSignature:
    """A fresh dataset from ``sig``'s class Gaussians: a target drawn from that
    source's distribution (the selection-sanity case)."""
    covs = sig.class_covs.astype(float)
    roots = np.linalg.cholesky(covs)
    w = sig.class_counts / sig.class_counts.sum()
    labels = np.sort(rng.choice(len(w), n_points, p=w))
    means = sig.class_means.astype(float)
    points = means[labels] + np.einsum(
        "nij,nj->ni", roots[labels], rng.standard_normal((n_points, D))
    )
    return DatasetSignature(
        **{
            **sig.__dict__,
            "points": points.astype(np.float32),
            "labels": labels.astype(np.int64),
        }
    )


def reuse(sig: DatasetSignature, rng) -> DatasetSignature:
    """Same arrays, own dataset-level moments (for the 10,000-entry zoo)."""
    out = DatasetSignature(**{**sig.__dict__})
    out.mean = (sig.mean + rng.standard_normal(D) * 0.02).astype(np.float32)
    out.cov = (sig.cov * rng.uniform(0.9, 1.1)).astype(np.float32)
    return out


def exact_top1(target, rows, max_points, seed=0):
    """The entry nearest by exact OTDD over *all* rows, found by branch and bound.

    Every entry gets a valid lower bound of its exact OTDD: the same outer EMD
    with each class-pair Bures term replaced by its lower bound
    ``||m - m'||^2 + (sqrt(tr S) - sqrt(tr S'))^2`` (fidelity <= the product
    of the traces' roots, Cauchy-Schwarz). Entries are then given the exact
    OTDD (the very ``dataset_distance`` the selector uses) in increasing bound
    order until the next bound exceeds the best exact distance: the result
    is the brute-force argmin, at a third of its cost.
    """
    pt, lt = _subsample(target, max_points, seed)
    tr_t = np.sqrt(np.trace(target.class_covs.astype(float), axis1=1, axis2=2))
    bounds = []
    for _, _, sig in rows:
        ps, ls = _subsample(sig, max_points, seed)
        tr_s = np.sqrt(np.trace(sig.class_covs.astype(float), axis1=1, axis2=2))
        W = ot.dist(target.class_means.astype(float), sig.class_means.astype(float))
        W += (tr_t[:, None] - tr_s[None]) ** 2
        M = ot.dist(pt, ps) + W[np.ix_(lt, ls)]
        a, b = np.full(len(pt), 1 / len(pt)), np.full(len(ps), 1 / len(ps))
        bounds.append(np.sqrt(max(ot.emd2(a, b, M, numItermax=1_000_000), 0.0)))
    best, best_name = np.inf, None
    for i in np.argsort(bounds):
        if bounds[i] >= best:
            break
        d = dataset_distance(target, rows[i][2], max_points=max_points)
        if d < best:
            best, best_name = d, rows[i][0]
    return best_name, best


def time_ranking(target, rows, repeats=3, **kw) -> float:
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        rank_sources(target, rows, **kw)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=16)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument(
        "--noise-floor",
        type=int,
        default=0,
        help="also measure, over this many random targets, how often exact OTDD "
        "agrees with itself on another random subsample (40 nearest by stage 1)",
    )
    parser.add_argument("--agreement-zoo", type=int, default=1000)
    parser.add_argument("--shortlist", type=int, default=10)
    parser.add_argument("--max-points", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.RandomState(0)
    domains = make_domains(rng)
    t0 = time.perf_counter()
    base = [make_signature(rng, domains) for _ in range(1000)]
    zoo = [(f"e{i}", "src", s) for i, s in enumerate(base)]
    zoo += [(f"e{i}", "src", reuse(base[i % 1000], rng)) for i in range(1000, 10000)]
    size_kb = np.mean([s.nbytes for s in base[:100]]) / 1024
    print(
        f"built 1,000 distinct synthetic signatures in {time.perf_counter() - t0:.1f} s"
        f" (mean {size_kb:.0f} KB each)"
    )
    kw = dict(shortlist=args.shortlist, max_points=args.max_points)
    target = make_signature(rng, domains)
    dataset_distance(target, base[0], max_points=args.max_points)  # warm-up
    print(
        f"{'entries':>8} {'rank_s':>8}   (method=otdd, shortlist={args.shortlist}, "
        f"max_points={args.max_points})"
    )
    times = {}
    for n in (10, 100, 1000, 10000):
        times[n] = time_ranking(target, zoo[:n], **kw)
        print(f"{n:>8} {times[n]:>8.3f}")

    n = args.agreement_zoo
    rows = zoo[:n]

    def compare(tgt):
        two = rank_sources(tgt, rows, **kw)
        best_name, best = exact_top1(tgt, rows, args.max_points)
        return two.names[0] == best_name, two.distances[0] / best - 1.0

    def agreement(targets, label):
        t1 = time.perf_counter()
        # Targets spread over threads (LAPACK and POT's EMD release the GIL).
        res = Parallel(n_jobs=args.n_jobs, prefer="threads")(
            delayed(compare)(tgt) for tgt in targets
        )
        frac = np.mean([ok for ok, _ in res])
        excess = 100 * np.array([r for _, r in res])
        print(
            f"{label}: top-1 agreement with exact OTDD over all {n} entries "
            f"(branch and bound = brute force) {frac:.3f} over {len(targets)} "
            f"targets; two-stage pick's excess distance mean {excess.mean():.2f}%, "
            f"max {excess.max():.2f}%, within 1% of the best: "
            f"{np.mean(excess <= 1.0):.3f} ({time.perf_counter() - t1:.0f} s)"
        )
        return frac

    drawn = [resample(base[i], rng) for i in rng.choice(n, args.targets)]
    agreement(drawn, "targets drawn from one entry's distribution")
    fresh = [make_signature(rng, domains) for _ in range(args.targets)]
    frac = agreement(fresh, "random new targets")
    if args.noise_floor:
        same = 0
        for _ in range(args.noise_floor):
            tgt = make_signature(rng, domains)
            near = rank_sources(tgt, rows, "gaussian").names[:40]
            by = {r[0]: r[2] for r in rows}
            d0, d1 = (
                [
                    dataset_distance(
                        tgt, by[e], max_points=args.max_points, random_state=seed
                    )
                    for e in near
                ]
                for seed in (0, 1)
            )
            same += int(np.argmin(d0) == np.argmin(d1))
        print(
            f"noise floor: exact OTDD's top-1 under two subsample seeds agrees for "
            f"{same / args.noise_floor:.3f} of {args.noise_floor} random targets"
        )
    print(f"rank_1000_s={times[1000]:.3f} top1_agreement={frac:.3f}")


if __name__ == "__main__":
    main()
