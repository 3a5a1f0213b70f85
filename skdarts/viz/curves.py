"""Learning curves of several strategies, and warm-start comparisons."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..evaluation import epochs_to_reach
from ._common import _axes_list, _pyplot

__all__ = ["epochs_to_reach", "plot_comparison", "plot_learning_curves"]


def _curve_arrays(value, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``(acc, seconds)``: acc (n_seeds, n_epochs); seconds alike, or None."""
    seconds = None
    if hasattr(value, "history_"):
        value = value.history_
    runs = value if isinstance(value, Sequence) and not isinstance(value, str) else []
    if hasattr(value, "accuracy") or (
        runs and all(hasattr(r, "accuracy") for r in runs)
    ):
        # learning-curve objects (skdarts.evaluation): one run, or one per seed;
        # seeds are cut to the shortest run so they can be averaged
        runs = [value] if hasattr(value, "accuracy") else list(runs)
        n = min(len(np.ravel(r.accuracy)) for r in runs)
        acc = np.array([np.ravel(r.accuracy)[:n] for r in runs], dtype=float)
        if all(getattr(r, "seconds", None) is not None for r in runs):
            seconds = np.array(
                [
                    np.ravel(r.seconds)[:n] + getattr(r, "overhead_seconds", 0.0)
                    for r in runs
                ],
                dtype=float,
            )
        return acc, seconds
    if isinstance(value, Mapping):
        acc = next(
            (value[k] for k in ("valid_acc", "accuracy", "acc", "score") if k in value),
            None,
        )
        seconds = next(
            (value[k] for k in ("seconds", "time", "wall_time") if k in value), None
        )
        if acc is None:
            raise ValueError(
                f"curve {name!r}: a dict curve needs 'valid_acc' (or 'accuracy'); "
                f"got keys {sorted(value)}."
            )
        value = acc
    elif (
        isinstance(value, Sequence)
        and value
        and all(isinstance(r, Mapping) for r in value)
    ):
        # an estimator's history_: the search epochs' validation accuracy
        rows = [r for r in value if r.get("valid_acc") is not None]
        if not rows:
            raise ValueError(f"curve {name!r}: the history holds no 'valid_acc'.")
        seconds = np.cumsum([r.get("dur", np.nan) for r in rows])
        value = [r["valid_acc"] for r in rows]
    try:
        acc = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"curve {name!r} must be a list of accuracies per epoch (or one list per "
            f"seed), a dict with 'valid_acc', or a history_; got {type(value)}."
        ) from exc
    acc = np.atleast_2d(acc)
    if acc.ndim != 2 or acc.shape[1] == 0:
        raise ValueError(
            f"curve {name!r} must hold accuracies per epoch; got shape {acc.shape}."
        )
    if seconds is not None:
        seconds = np.atleast_2d(np.asarray(seconds, dtype=float))
        if seconds.shape[-1] != acc.shape[-1]:
            seconds = None
    return acc, seconds


def _as_curves(curves) -> dict:
    for attr in ("curves_", "curves"):
        inner = getattr(curves, attr, None)
        if isinstance(inner, Mapping):
            return dict(inner)
    to_dict = getattr(curves, "to_dict", None)
    if callable(to_dict) and not isinstance(curves, Mapping):
        curves = to_dict()
    if not isinstance(curves, Mapping) or not curves:
        raise TypeError(
            "curves must be a non-empty dict {strategy: accuracies per epoch} (or "
            f"an evaluation result holding one); got {type(curves).__name__}."
        )
    return dict(curves)


def plot_learning_curves(
    curves,
    *,
    baseline: str | None = "scratch",
    x: str = "epoch",
    ax=None,
    title: str | None = None,
):
    """Validation accuracy per epoch (or second) of several strategies.

    Curves over several seeds are drawn as their mean with a ± one standard
    deviation band. When ``baseline`` names a curve, a dotted line marks its
    final accuracy and each other curve's legend says how many epochs it
    needed to reach it, and the speedup (baseline epochs ÷ its epochs).

    Parameters
    ----------
    curves : dict or evaluation result
        ``{strategy: curve}`` where a curve is a list of accuracies per epoch,
        a list of such lists (one per seed), a dict with ``"valid_acc"`` (and
        optionally ``"seconds"``), a fitted estimator / its ``history_``, or
        learning-curve objects (with ``accuracy`` and ``seconds``; one, or one
        per seed). An object with a ``curves`` or ``curves_`` dict (such as
        a comparison result of :mod:`skdarts.evaluation`) is accepted as well.
    baseline : str or None, default="scratch"
        The strategy others are compared with; ignored when absent.
    x : {"epoch", "seconds"}, default="epoch"
        Horizontal axis; "seconds" needs curves with times.
    ax : matplotlib Axes, optional
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_learning_curves({"scratch": [0.3, 0.5, 0.6],
    ...                             "warm": [[0.5, 0.62, 0.7], [0.55, 0.6, 0.7]]})
    >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()][1]
    'warm (reaches scratch in 2 epochs: 1.5x)'
    """
    if x not in ("epoch", "seconds"):
        raise ValueError(f"x must be 'epoch' or 'seconds'; got {x!r}.")
    data = {str(k): _curve_arrays(v, str(k)) for k, v in _as_curves(curves).items()}
    fig, (ax,) = _axes_list(ax, 1, (6.4, 4.2))
    target = None
    base_epochs = None
    if baseline is not None and baseline in data:
        base_mean = data[baseline][0].mean(axis=0)
        target = float(base_mean[-1])
        base_epochs = epochs_to_reach(base_mean, target)
    for i, (name, (acc, seconds)) in enumerate(data.items()):
        mean, std = acc.mean(axis=0), acc.std(axis=0)
        if x == "seconds":
            if seconds is None:
                raise ValueError(
                    f"x='seconds' needs times for every curve; {name!r} has none "
                    "(give a dict with 'valid_acc' and 'seconds', or a history_)."
                )
            xs = seconds.mean(axis=0)
        else:
            xs = np.arange(1, acc.shape[1] + 1)
        label = name
        if target is not None and name != baseline:
            reach = epochs_to_reach(mean, target)
            label += (
                f" (reaches {baseline} in {reach} epoch{'s' * (reach != 1)}: "
                f"{base_epochs / reach:.1f}x)"
                if math.isfinite(reach)
                else f" (does not reach {baseline})"
            )
        colour = "0.25" if name == baseline else f"C{i}"
        ax.plot(xs, mean, marker="o", ms=3, color=colour, label=label)
        if acc.shape[0] > 1:
            ax.fill_between(xs, mean - std, mean + std, color=colour, alpha=0.2)
    if target is not None:
        ax.axhline(target, color="0.4", ls=":", lw=1)
    ax.set_xlabel("epoch" if x == "epoch" else "seconds")
    if x == "epoch":
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("validation accuracy")
    ax.set_title(title or "warm-started vs from-scratch search")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


# -- distances -------------------------------------------------------------------


def plot_comparison(result, ax=None, x: str = "epoch"):
    """Mean held-out accuracy per epoch (or second) of each strategy of a comparison.

    Parameters
    ----------
    result : ComparisonResult
        ``WarmStartComparison(...).fit(X, y).result_``
        (see :class:`skdarts.evaluation.ComparisonResult`).
    ax : matplotlib Axes, optional
    x : {"epoch", "seconds"}, default="epoch"

    Returns
    -------
    matplotlib Axes

    Examples
    --------
    >>> from skdarts.evaluation import ComparisonResult, LearningCurve
    >>> result = ComparisonResult(
    ...     seeds=[0],
    ...     curves={"scratch": [LearningCurve([0.3, 0.5], [1, 2])],
    ...             "ot": [LearningCurve([0.5, 0.6], [1, 2])]},
    ...     sources={"scratch": [None], "ot": ["mnist"]},
    ...     distances=[{}],
    ... )
    >>> ax = plot_comparison(result)
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['scratch', 'ot']
    """
    if x not in ("epoch", "seconds"):
        raise ValueError(f"x must be 'epoch' or 'seconds'; got {x!r}.")
    plt = _pyplot()

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    for strategy in result.strategies:
        curves = result.curves[strategy]
        n = min(c.n_epochs for c in curves)
        acc = np.mean([c.accuracy[:n] for c in curves], axis=0)
        if x == "epoch":
            xs = np.arange(1, n + 1)
        else:
            xs = np.mean([c.seconds[:n] + c.overhead_seconds for c in curves], axis=0)
        ax.plot(xs, 100 * acc, marker=".", label=strategy)
    ax.set_xlabel("search epoch" if x == "epoch" else "training seconds")
    ax.set_ylabel("held-out accuracy (%)")
    ax.legend(fontsize="small")
    return ax
