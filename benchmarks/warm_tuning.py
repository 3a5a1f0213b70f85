"""Tune the warm start on the development data: which settings transfer best.

Runs the leave-one-out benchmark's setting (``benchmarks/transfer.py``: its
zoo cache, its targets, its supernet and budget) for the ``multi`` strategy
(each target warm-started from the mixture pretrained without it) under a
grid of warm-start settings, next to the reference ``scratch_probe`` (scratch
given the same head probe). Every run is cached in ``<cache>-runs`` by
its settings (``benchmarks/_runs.py``), so an interrupted grid continues and
a grid extended later reruns nothing.

Per setting it prints, over targets and seeds: the mean held-out accuracy
after the first epoch, the final accuracy (mean of the last two epochs), the
mean accuracy over the budget (area under the curve / budget) and the median
speedup and accuracy delta against ``scratch_probe``.

Usage::

    python benchmarks/warm_tuning.py --cache <the transfer.py zoo cache>
    python benchmarks/warm_tuning.py --cache ... --targets digits --seeds 1

The zoo must hold ``multi_no_<target>`` for each target (build it with
``python benchmarks/transfer.py --pretrain-only``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import _runs  # noqa: E402
import transfer  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402

from skdarts import SupernetSearchClassifier  # noqa: E402
from skdarts.evaluation import LearningCurve, compare_curves  # noqa: E402

LR = SupernetSearchClassifier().lr
#: name -> warm-start settings of SupernetSearchClassifier. "lr" is what the
#: tuning chose (the estimator's defaults now).
GRID = {
    # The estimator's warm-start defaults before this tuning.
    "old-defaults": dict(
        warm_lr=None, warm_arch_warmup_epochs=1, warm_epsilon_start=None
    ),
    "lr": dict(warm_lr=None, warm_arch_warmup_epochs=0, warm_epsilon_start=0.03),
    "lr/4": dict(warm_lr=LR / 4, warm_arch_warmup_epochs=0, warm_epsilon_start=0.03),
    "lr/10": dict(warm_lr=LR / 10, warm_arch_warmup_epochs=0, warm_epsilon_start=0.03),
    "lr/4+warmup1": dict(
        warm_lr=LR / 4, warm_arch_warmup_epochs=1, warm_epsilon_start=0.03
    ),
    "lr+warmup1": dict(
        warm_lr=None, warm_arch_warmup_epochs=1, warm_epsilon_start=0.03
    ),
    "lr+fresh": dict(
        warm_lr=None,
        warm_arch_warmup_epochs=0,
        warm_epsilon_start=0.03,
        warm_head="fresh",
    ),
}


def _run(cache, cfg, target, seed, setting, params):
    source = "scratch_probe" if setting == "scratch_probe" else f"multi_no_{target}"
    return _runs.run(cache, cfg, target, seed, source, params, label=setting)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="the leave-one-out zoo (default: transfer.py's for its default preset)",
    )
    parser.add_argument("--targets", nargs="+", default=list(transfer.DATASETS))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--settings", nargs="+", default=list(GRID))
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    cfg = dict(transfer.PRESETS["default"])
    args.cache = args.cache or transfer.default_cache(cfg)
    unknown = sorted(set(args.settings) - set(GRID))
    if unknown:
        parser.error(f"unknown settings {unknown}; choose from {list(GRID)}")
    runs = [
        (t, s, name, GRID.get(name, {}))
        for t in args.targets
        for s in range(args.seeds)
        for name in ["scratch_probe", *args.settings]
    ]
    out = Parallel(n_jobs=args.jobs)(
        delayed(_run)(args.cache, cfg, t, s, name, p) for t, s, name, p in runs
    )
    curves = {
        (t, s, name): LearningCurve(o["accuracy"], o["seconds"])
        for (t, s, name, _), o in zip(runs, out)
    }
    tail = transfer.TAIL
    print(
        f"{len(args.targets)} target(s) x {args.seeds} seed(s), "
        f"{cfg['epochs']} epochs; warm = multi_no_<target>; lr={LR}"
    )
    print(
        f"{'setting':<16} {'acc@1':>6} {'final':>6} {'mean':>6} "
        f"{'speedup':>8} {'dacc':>6} {'dauc':>6}"
    )
    for name in ["scratch_probe", *args.settings]:
        keys = [(t, s, name) for t in args.targets for s in range(args.seeds)]
        acc1 = np.mean([curves[k].accuracy[0] for k in keys]) * 100
        final = np.mean([curves[k].final_accuracy(tail) for k in keys]) * 100
        mean = np.mean([np.mean(curves[k].accuracy) for k in keys]) * 100
        cmp = [
            compare_curves(curves[(t, s, "scratch_probe")], curves[(t, s, name)], tail)
            for t, s, _ in keys
        ]
        print(
            f"{name:<16} {acc1:>6.1f} {final:>6.1f} {mean:>6.1f} "
            f"{np.median([c['speedup_epochs'] for c in cmp]):>8.2f} "
            f"{np.median([c['acc_delta'] for c in cmp]):>+6.1f} "
            f"{np.median([c['auc_delta'] for c in cmp]):>+6.1f}"
        )
    for t in args.targets:
        finals = {
            name: np.mean(
                [curves[(t, s, name)].final_accuracy(tail) for s in range(args.seeds)]
            )
            for name in ["scratch_probe", *args.settings]
        }
        row = " ".join(f"{name}={acc * 100:.1f}" for name, acc in finals.items())
        print(f"  {t}: {row}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
