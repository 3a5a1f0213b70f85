"""
Quickstart: warm-start a search from the default zoo
====================================================

The main job of skdarts in a few lines: take the zoo of pretrained supernets
shipped with the package, pick the one whose source data is nearest to the
target by an optimal-transport dataset distance, and warm-start the
architecture search from it. A search from scratch with the same budget is
the reference; the speedup is how many times fewer epochs the warm start
needs to reach the accuracy scratch ends with.

The target is scikit-learn's handwritten digits (8x8 images); the zoo's
supernets were pretrained on other image datasets. A subset and a short
budget keep this example to about a minute on a CPU.
"""

# %%
# The target and the zoo
# ----------------------
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skdarts import OTSourceSelector, SupernetSearchClassifier, SupernetZoo
from skdarts.viz import epochs_to_reach, plot_distances, plot_learning_curves

X, y = load_digits(return_X_y=True)
X = X.reshape(-1, 8, 8)  # images, (n, height, width)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, train_size=600, test_size=300, stratify=y, random_state=0
)
zoo = SupernetZoo.default()
print(f"{len(zoo)} pretrained supernets: {list(zoo)}")

# %%
# Choose the source by optimal transport
# --------------------------------------
# The selector compares the target's dataset signature with the signatures
# stored in the zoo (no source data is needed) and ranks the entries.
selector = OTSourceSelector(zoo, random_state=0).fit(X_train, y_train)
for name, distance in zip(selector.ranking_, selector.distances_):
    print(f"{name:<20} {distance:.3f}")
plot_distances(selector)

# %%
# Search from scratch and warm-started, with the same budget
# ----------------------------------------------------------
budget = dict(max_epochs=6, final_epochs=0, verbose=0, random_state=0)
scratch = SupernetSearchClassifier(warm_start=False, **budget).fit(X_train, y_train)
warm = SupernetSearchClassifier(warm_start=selector.prior_, **budget)
warm.fit(X_train, y_train)


def search_accuracy(clf):
    """Validation accuracy after each search epoch."""
    return [row["valid_acc"] for row in clf.history_ if row["phase"] == "search"]


target = search_accuracy(scratch)[-1]
e_scratch = epochs_to_reach(search_accuracy(scratch), target)
e_warm = epochs_to_reach(search_accuracy(warm), target)
print(f"warm start from {selector.selected_[0]!r}")
print(
    f"test accuracy: scratch {scratch.score(X_test, y_test):.3f}, "
    f"warm {warm.score(X_test, y_test):.3f}"
)
if e_warm <= budget["max_epochs"]:
    print(
        f"epochs to reach scratch's final accuracy ({target:.3f}): scratch "
        f"{e_scratch}, warm {e_warm} -> speedup {e_scratch / e_warm:.1f}x"
    )
else:
    print(f"the warm start did not reach scratch's final accuracy ({target:.3f})")

# %%
# Learning curves
# ---------------
plot_learning_curves({"scratch": scratch, "warm (OT source)": warm})

# %%
# The same as a pipeline
# ----------------------
# In a pipeline the selector hands its choice to the classifier
# (``warm_start="auto"``, the default), so the pair clones, cross-validates
# and pickles as one estimator:
#
# .. code-block:: python
#
#    from sklearn.pipeline import make_pipeline
#    clf = make_pipeline(OTSourceSelector(zoo), SupernetSearchClassifier())
#    clf.fit(X_train, y_train).score(X_test, y_test)
