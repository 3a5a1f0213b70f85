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
root = Path(tempfile.mkdtemp()) / "digits"
names = ["zero", "one", "two"]
for i in np.flatnonzero(y < 3)[:240]:
    folder = root / names[y[i]]
    folder.mkdir(parents=True, exist_ok=True)
    pixels = (X[i].reshape(8, 8) * 255 / 16).astype(np.uint8)
    Image.fromarray(pixels).resize((16, 16)).save(folder / f"{i}.png")
print(sorted(p.name for p in root.iterdir()), sum(1 for _ in root.rglob("*.png")))

# %%
# Read it into arrays
# -------------------
images, labels, class_names = load_image_folder(root, verbose=0)
print(images.shape, images.dtype, class_names)

# %%
# Fit on the folder, predict on files
# -----------------------------------
# A small supernet and a short search keep this quick.
clf = SupernetSearchClassifier(
    init_channels=4,
    n_cells=3,
    max_epochs=4,
    final_epochs=2,
    verbose=0,
    random_state=0,
)
clf.fit(str(root))
files = sorted(root.rglob("*.png"))[::40]
predicted = clf.predict([str(f) for f in files])
print(clf.classes_)

fig, axes = plt.subplots(1, len(files), figsize=(1.4 * len(files), 1.8))
for ax, f, label in zip(axes, files, predicted):
    ax.imshow(Image.open(f), cmap="gray")
    ax.set_title(f"{f.parent.name}\n-> {label}", fontsize=8)
    ax.set_axis_off()
