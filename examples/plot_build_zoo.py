"""
Building a zoo
==============

A zoo is a folder of pretrained supernets, each stored with the *dataset
signatures* of its sources, so a new dataset can be matched to them later
without their data. Here we build a small one from tasks derived from
scikit-learn's digits (a realistic zoo holds supernets pretrained on varied
real datasets; see ``scripts/build_default_zoo.py`` for the shipped one),
look at what it stores, and rank its entries for a new target.

The same from a shell::

    skdarts zoo build lower=lower.npz upper=upper.npz --zoo my_zoo
    skdarts zoo list --zoo my_zoo
    skdarts zoo select target.npz --zoo my_zoo
"""

# %%
# Source tasks
# ------------
import tempfile

import numpy as np
from sklearn.datasets import load_digits

from skdarts import OTSourceSelector, SupernetZoo
from skdarts.similarity import DatasetSignature, dataset_distance, signature_fn
from skdarts.viz import plot_distances

X, y = load_digits(return_X_y=True)
X = X.reshape(-1, 8, 8)
source, target = slice(0, 600), slice(600, None)
Xs, ys = X[source], y[source]
# entry names: letters, digits, '_', '.', '+', '-'
tasks = {
    "lower": (Xs[ys < 5], ys[ys < 5]),  # digits 0-4
    "upper": (Xs[ys >= 5], ys[ys >= 5] - 5),  # digits 5-9, labelled 0-4
    "inverted": (16 - Xs, ys),
    "flipped": (Xs[:, :, ::-1], ys),
}
for name, (a, b) in tasks.items():
    print(f"{name:<12} {len(a)} images, {len(np.unique(b))} classes")

# %%
# Pretrain one supernet per task
# ------------------------------
# ``pretrain`` runs the sources through joblib (``n_jobs``, or any joblib
# backend such as Dask), and stores each supernet with its source's signature.
# A small supernet and two epochs keep this quick.
zoo = SupernetZoo(tempfile.mkdtemp())
zoo.pretrain(
    tasks,
    signature_fn=signature_fn,
    max_epochs=2,
    init_channels=4,
    n_cells=3,
    verbose=0,
    random_state=0,
)
print(list(zoo))
entry = zoo["inverted"]
print(entry.metadata["config"])
provenance = entry.provenance
print({k: provenance.get(k) for k in ("kind", "epochs", "train_seconds")})
print(provenance["sources"])

# %%
# How far apart are the sources?
# -------------------------------
# The stored signatures alone give the optimal-transport dataset distance
# between every pair of sources.
sigs = {}
for name in zoo:
    ((arrays, meta),) = zoo[name].signature_arrays().values()  # one source each
    sigs[name] = DatasetSignature.from_arrays(arrays, meta)
names = list(sigs)
D = np.array([[dataset_distance(sigs[a], sigs[b]) for b in names] for a in names])
plot_distances(names, D)

# %%
# Rank the zoo for a new target
# -----------------------------
# The target: digits none of the sources saw, classes 0-4 only - closest to
# "lower".
Xt, yt = X[target], y[target]
selector = OTSourceSelector(zoo, random_state=0).fit(Xt[yt < 5], yt[yt < 5])
print(selector.ranking_, selector.selected_)
plot_distances(selector)
