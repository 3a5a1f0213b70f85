"""
Plotting a search
=================

:mod:`skdarts.viz` draws what a search produced: the cells of the genotype
found, the architecture weights (alphas) per edge and over the epochs, and
learning curves of several runs. (Dataset distances are drawn in
:ref:`sphx_glr_auto_examples_plot_build_zoo.py`.) matplotlib is an optional
dependency: ``pip install "skdarts[plot]"``.
"""

# %%
# A short search on scikit-learn's digits
# ---------------------------------------
# A small supernet (4 channels, 3 cells) and a few epochs keep this quick.
from sklearn.datasets import load_digits

from skdarts import SupernetSearchClassifier
from skdarts.viz import plot_alphas, plot_genotype, plot_learning_curves

X, y = load_digits(return_X_y=True)
small = dict(
    image_shape=(8, 8),
    init_channels=4,
    n_cells=3,
    final_epochs=0,
    verbose=0,
    random_state=0,
)
clf = SupernetSearchClassifier(max_epochs=6, **small).fit(X[:600], y[:600])
print(clf.genotype_)

# %%
# The cells found
# ---------------
# Each arrow is an edge the discretisation kept (two per node), labelled with
# its operation; the dashed lines feed the cell's output.
plot_genotype(clf)

# %%
# The alphas
# ----------
# Heatmaps of the softmaxed alphas after the last epoch (one row per edge,
# one column per operation), then, per edge, the weight of the operation that
# ends up strongest over the epochs.
plot_alphas(clf)

# %%
# Learning curves
# ---------------
# ``plot_learning_curves`` takes ``{name: curve}``; a curve can be a fitted
# estimator (its search-epoch validation accuracy), a list of accuracies, or
# one list per seed (drawn as mean +- std). Here: the search above against
# the same search continued for six more epochs (``warm_start=True`` continues
# an estimator's previous fit).
more = SupernetSearchClassifier(max_epochs=6, **small).set_params(warm_start=True)
more.fit(X[:600], y[:600])  # first fit: from scratch
more.fit(X[:600], y[:600])  # second fit: continues the first
plot_learning_curves({"scratch": clf, "continued": more})
