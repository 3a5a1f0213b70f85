"""
Fit on a folder of images
=========================

Images often live as files, one sub-folder per class::

    photos/
        cat/  001.jpg  002.png ...
        dog/  001.jpg ...

:class:`~skdarts.SupernetSearchClassifier` fits on such a folder directly
(``fit("photos/")``, no ``y``), and predicts on a folder or a list of files.
:func:`~skdarts.load_image_folder` reads one into arrays for users who want
them. Here we write scikit-learn's digits to PNG files first, to have a
folder to read.
"""

# %%
# Write a folder of PNG files
# ---------------------------
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from skdarts import SupernetSearchClassifier, load_image_folder

X, y = load_digits(return_X_y=True)
tmp = Path(tempfile.mkdtemp())
root, new = tmp / "digits", tmp / "new"
names = ["zero", "one", "two"]
new.mkdir()
new_files, new_labels = [], []
for n, i in enumerate(np.flatnonzero(y < 3)[:280]):
    pixels = (X[i].reshape(8, 8) * 255 / 16).astype(np.uint8)
    image = Image.fromarray(pixels).resize((16, 16))
    if n < 240:  # the training folder, one sub-folder per class
        (root / names[y[i]]).mkdir(parents=True, exist_ok=True)
        image.save(root / names[y[i]] / f"{i}.png")
    else:  # new, unlabelled images to predict
        new_files.append(new / f"{i}.png")
        new_labels.append(names[y[i]])
        image.save(new_files[-1])
print(sorted(p.name for p in root.iterdir()), sum(1 for _ in root.rglob("*.png")))

# %%
# Read it into arrays
# -------------------
images, labels, class_names = load_image_folder(root, verbose=0)
print(images.shape, images.dtype, class_names)

# %%
# Fit on the folder, predict on files
# -----------------------------------
# A small supernet and a short search keep this quick; small batches give
# the few images enough optimisation steps.
clf = SupernetSearchClassifier(
    init_channels=4,
    n_cells=3,
    max_epochs=5,
    final_epochs=5,
    batch_size=16,
    verbose=0,
    random_state=0,
)
clf.fit(str(root))
print(clf.classes_)  # the sub-folders' names
predicted = clf.predict([str(f) for f in new_files])
print(
    f"accuracy on {len(new_files)} new files: "
    f"{np.mean(predicted == np.array(new_labels)):.3f}"
)

fig, axes = plt.subplots(1, 8, figsize=(11, 1.8))
for ax, f, label, truth in zip(axes, new_files, predicted, new_labels):
    ax.imshow(Image.open(f), cmap="gray")
    ax.set_title(f"{truth} -> {label}", fontsize=8)
    ax.set_axis_off()
