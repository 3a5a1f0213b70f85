"""
Multi-dataset pretraining
=========================

``zoo.pretrain_mixture`` trains **one** supernet on several sources at once:
the body and the architecture weights are shared, each source has its own
classifier head, and every batch mixes samples from all sources (each source
equally likely by default). The resulting supernet has seen more varied data
than any single-source one and is often the best prior on average.

Here: three sources derived from scikit-learn's digits, one mixture supernet
and one single-source supernet, and a target warm-started from each, against
a search from scratch.
"""

# %%
import tempfile

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skdarts import SupernetSearchClassifier, SupernetZoo
from skdarts.viz import plot_genotype, plot_learning_curves

X, y = load_digits(return_X_y=True)
X = X.reshape(-1, 8, 8)
Xs, ys = X[:900], y[:900]
sources = {
    "inverted": (16 - Xs[:300], ys[:300]),
    "flipped": (Xs[300:600, :, ::-1], ys[300:600]),
    "transposed": (Xs[600:900].transpose(0, 2, 1), ys[600:900]),
}
small = dict(init_channels=4, n_cells=3, verbose=0, random_state=0)

zoo = SupernetZoo(tempfile.mkdtemp())
zoo.pretrain_mixture(sources, name="multi", max_epochs=2, **small)
zoo.pretrain({"inverted": sources["inverted"]}, max_epochs=2, **small)
print(list(zoo), zoo["multi"].sources)

# %%
# The architecture the mixture supernet prefers
# ---------------------------------------------
plot_genotype(zoo["multi"].load_supernet())

# %%
# Warm-start a new target from each
# ---------------------------------
X_train, X_test, y_train, y_test = train_test_split(
    X[900:], y[900:], train_size=400, stratify=y[900:], random_state=0
)
runs = {}
for name, prior in (
    ("scratch", False),
    ("inverted", zoo["inverted"]),
    ("multi", zoo["multi"]),
):
    clf = SupernetSearchClassifier(
        warm_start=prior, max_epochs=5, final_epochs=0, **small
    ).fit(X_train, y_train)
    runs[name] = clf
    print(f"{name:<9} test accuracy {clf.score(X_test, y_test):.3f}")

plot_learning_curves(runs)
