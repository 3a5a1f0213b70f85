"""
Cross-validated comparison of warm-start strategies
===================================================

Does transfer help on *your* data? Compare, on the same cross-validation
folds and with the same budget:

* **scratch** - ``warm_start=False``;
* **OT source** - a pipeline whose :class:`~skdarts.OTSourceSelector` picks
  the zoo entry nearest to each training fold and hands it to the search;
* **multi** - the zoo's supernet pretrained on all its sources at once.

Each is an ordinary scikit-learn estimator, so
:func:`sklearn.model_selection.cross_validate` runs them unchanged. (For
learning curves, speedups and several seeds per fold, see
:mod:`skdarts.evaluation`.)
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline

from skdarts import OTSourceSelector, SupernetSearchClassifier, SupernetZoo

X, y = load_digits(return_X_y=True)
X, y = X[:300].reshape(-1, 8, 8), y[:300]
zoo = SupernetZoo.default()
# small batches: the few images of each fold still give enough steps
budget = dict(max_epochs=4, final_epochs=0, batch_size=16, verbose=0, random_state=0)

strategies = {
    "scratch": SupernetSearchClassifier(warm_start=False, **budget),
    "OT source": make_pipeline(
        OTSourceSelector(zoo, random_state=0), SupernetSearchClassifier(**budget)
    ),
    "multi": SupernetSearchClassifier(warm_start=zoo["multi"], **budget),
}
cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
results = {
    name: cross_validate(estimator, X, y, cv=cv, return_estimator=True)
    for name, estimator in strategies.items()
}
for name, r in results.items():
    print(
        f"{name:<10} accuracy {r['test_score'].mean():.3f} "
        f"+- {r['test_score'].std():.3f}  fit {r['fit_time'].mean():.1f} s"
    )

# %%
# Which source did the selector pick on each fold?
picked = [est[0].selected_[0] for est in results["OT source"]["estimator"]]
print("OT choices per fold:", picked)

# %%
fig, ax = plt.subplots(figsize=(5, 3))
names = list(results)
scores = [results[n]["test_score"] for n in names]
ax.bar(
    names,
    [s.mean() for s in scores],
    yerr=[s.std() for s in scores],
    color=["0.5", "C0", "C1"],
    capsize=4,
)
for i, s in enumerate(scores):
    ax.plot(np.full(len(s), i), s, "k.", ms=4)
ax.set_ylabel("3-fold accuracy")
ax.set_title(f"{budget['max_epochs']} search epochs, same folds")
