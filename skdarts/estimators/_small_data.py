"""A warning when the data is too small for the search to learn from."""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["MIN_IMAGES_PER_SPLIT", "SmallDataWarning", "warn_small_classes"]

#: Images of each class that each part of the search's split (weights,
#: architecture) should get; below it a search at default settings tends to
#: stay near chance accuracy (60 images in 3 classes scored 1/3 in testing).
MIN_IMAGES_PER_SPLIT = 10


class SmallDataWarning(UserWarning):
    """Too few images per class for the search's weight/architecture split."""


def warn_small_classes(
    y_enc: np.ndarray, classes, arch_split: float, stacklevel: int = 2
) -> bool:
    """Warn (:class:`SmallDataWarning`) when a class is too small to split.

    The search gives each class's images to two parts, ``1 - arch_split``
    of them to the weights and ``arch_split`` to the architecture; a part
    with fewer than :data:`MIN_IMAGES_PER_SPLIT` images of a class learns
    little. Returns whether it warned.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_small_classes(np.repeat([0, 1, 2], 16), ["a", "b", "c"], 0.5)
    True
    >>> "16 images of class 'a'" in str(caught[0].message)
    True
    """
    counts = np.bincount(y_enc, minlength=len(classes))
    smallest = int(np.argmin(counts))
    n = int(counts[smallest])
    n_a = int(n * arch_split)
    n_w = n - n_a
    if min(n_w, n_a) >= MIN_IMAGES_PER_SPLIT:
        return False
    need = int(np.ceil(MIN_IMAGES_PER_SPLIT / min(arch_split, 1 - arch_split)))
    name = classes[smallest]
    name = name.item() if isinstance(name, np.generic) else name  # plain repr
    warnings.warn(
        f"only {n} images of class {name!r} (the smallest of "
        f"{len(classes)} classes): the search splits them into about {n_w} for the "
        f"weights and {n_a} for the architecture, too few to learn from, so "
        f"accuracy may stay near chance (1/{len(classes)}). Try: more images (at "
        f"least {need} per class), warm_start from the zoo (a pipeline with "
        "OTSourceSelector, or warm_start=SupernetZoo.default()['multi']; "
        "skdarts search warm-starts unless --scratch), or a smaller network "
        "(n_cells=2 or 3, init_channels=4).",
        SmallDataWarning,
        stacklevel=stacklevel + 1,
    )
    return True
