"""The result of a :class:`~skdarts.evaluation.WarmStartComparison`.

:class:`ComparisonResult` holds the learning curves of every strategy and
seed, and compares them (per seed, summarised over seeds, as a table or a
plot); :data:`STRATEGIES` lists the strategies in reporting order.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from .curves import compare_curves

__all__ = ["STRATEGIES", "ComparisonResult"]

#: Strategies :class:`~skdarts.evaluation.WarmStartComparison` knows, in
#: reporting order.
STRATEGIES = ("scratch", "scratch_probe", "ot", "multi", "random", "worst", "oracle")


def _mean_std(values) -> tuple[float, float]:
    values = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if values.size == 0:
        return math.nan, math.nan
    return float(values.mean()), float(values.std())


@dataclass
class ComparisonResult:
    """Learning curves of every strategy and seed, and their comparison.

    Attributes
    ----------
    seeds : list of int
    curves : dict of {strategy: list of LearningCurve}
        One curve per seed, in the order of ``seeds``.
    sources : dict of {strategy: list of str or None}
        The zoo entry each strategy started from, per seed.
    distances : list of dict
        Per seed, the OT distance of every single-source entry (when ranked).
    tail : int
        Final accuracies are means over the last ``tail`` epochs.
    """

    seeds: list
    curves: dict
    sources: dict
    distances: list
    tail: int = 1

    @property
    def strategies(self) -> list[str]:
        """The strategies run, scratch first."""
        return [s for s in STRATEGIES if s in self.curves]

    @property
    def default_reference(self) -> str:
        """``"scratch_probe"`` when it ran, else ``"scratch"``.

        Scratch given the same head probe as a warm start is the fairer
        reference: a speedup against it is what the transferred alphas and
        weights add, not what the probe adds.
        """
        return "scratch_probe" if "scratch_probe" in self.curves else "scratch"

    def per_seed(
        self, strategy: str, reference: str | None = None
    ) -> list[dict[str, float]]:
        """:func:`compare_curves` of ``strategy`` against ``reference``, per seed.

        ``reference`` defaults to :attr:`default_reference`. Each dict also
        has ``regret`` (oracle final - this final, points; NaN without an
        oracle) and ``seed``.
        """
        if reference is None:
            reference = self.default_reference
        for name in (strategy, reference):
            if name not in self.curves:
                raise ValueError(
                    f"strategy {name!r} was not run; the result has {self.strategies}."
                )
        rows = []
        for i, seed in enumerate(self.seeds):
            row = compare_curves(
                self.curves[reference][i], self.curves[strategy][i], self.tail
            )
            row["regret"] = math.nan
            if "oracle" in self.curves:
                best = self.curves["oracle"][i].final_accuracy(self.tail)
                row["regret"] = 100.0 * (best - row["final_acc"])
            row["seed"] = seed
            rows.append(row)
        return rows

    def summary(
        self, reference: str | None = None
    ) -> dict[str, dict[str, tuple[float, float]]]:
        """Mean and standard deviation over seeds, per strategy and metric.

        Metrics (against ``reference``, by default
        :attr:`default_reference`): ``speedup_epochs``,
        ``speedup_seconds``, ``acc_delta``, ``auc_delta``, ``final_acc``,
        ``reached`` (fraction of seeds), ``open_ended`` (fraction of seeds
        whose reference was still improving at the end of the budget, see
        :func:`compare_curves`) and ``regret``.
        """
        out = {}
        for strategy in self.strategies:
            rows = self.per_seed(strategy, reference)
            out[strategy] = {
                m: _mean_std([r[m] for r in rows])
                for m in (
                    "speedup_epochs",
                    "speedup_seconds",
                    "acc_delta",
                    "auc_delta",
                    "final_acc",
                    "reached",
                    "open_ended",
                    "regret",
                )
            }
        return out

    def table(self, reference: str | None = None) -> str:
        """The summary as an aligned text table (mean ± std over seeds).

        Against ``reference`` (default :attr:`default_reference`), which is
        named in the table's first line.
        """
        if reference is None:
            reference = self.default_reference
        summary = self.summary(reference)
        head = (
            f"{'strategy':<13} {'source':<24} {'speedup(ep)':>13} "
            f"{'speedup(s)':>13} {'final acc':>13} {'d acc (pt)':>13} "
            f"{'d auc (pt)':>13} {'regret(pt)':>11} {'reached':>8}"
        )
        lines = [
            f"against {reference} (mean ± std over {len(self.seeds)} seed(s))",
            head,
        ]
        for strategy, m in summary.items():
            names = sorted({s for s in self.sources[strategy] if s})
            src = ",".join(names) if names else "-"
            src = src if len(src) <= 24 else src[:21] + "..."

            def fmt(key, scale=1.0, width=13, digits=2, m=m):
                mean, std = m[key]
                if math.isnan(mean):
                    return f"{'-':>{width}}"
                text = f"{scale * mean:.{digits}f}±{scale * std:.{digits}f}"
                return f"{text:>{width}}"

            lines.append(
                f"{strategy:<13} {src:<24} {fmt('speedup_epochs')} "
                f"{fmt('speedup_seconds')} {fmt('final_acc', 100, digits=1)} "
                f"{fmt('acc_delta', digits=1)} {fmt('auc_delta', digits=1)} "
                f"{fmt('regret', width=11, digits=1)} "
                f"{round(m['reached'][0] * len(self.seeds)):>6}/{len(self.seeds)}"
            )
        return "\n".join(lines)

    def plot(self, ax=None, x: str = "epoch"):
        """Deprecated: use :func:`skdarts.viz.plot_comparison`.

        Kept so that code written before keeps running; gives a
        FutureWarning.
        """
        warnings.warn(
            "ComparisonResult.plot is deprecated; use "
            "skdarts.viz.plot_comparison(result, ax=ax, x=x).",
            FutureWarning,
            stacklevel=2,
        )
        # The old body, kept as it was: calling skdarts.viz from here would
        # make this layer import the one above it.
        if x not in ("epoch", "seconds"):
            raise ValueError(f"x must be 'epoch' or 'seconds'; got {x!r}.")
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        for strategy in self.strategies:
            curves = self.curves[strategy]
            n = min(c.n_epochs for c in curves)
            acc = np.mean([c.accuracy[:n] for c in curves], axis=0)
            if x == "epoch":
                xs = np.arange(1, n + 1)
            else:
                xs = np.mean(
                    [c.seconds[:n] + c.overhead_seconds for c in curves], axis=0
                )
            ax.plot(xs, 100 * acc, marker=".", label=strategy)
        ax.set_xlabel("search epoch" if x == "epoch" else "training seconds")
        ax.set_ylabel("held-out accuracy (%)")
        ax.legend(fontsize="small")
        return ax
