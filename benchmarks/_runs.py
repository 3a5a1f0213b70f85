"""Cached single search runs on development targets, shared by the benchmarks.

One run = one :class:`~skdarts.SupernetSearchClassifier` fit on a target's
training part (80 %, stratified per seed, as in
:class:`~skdarts.evaluation.WarmStartComparison`) with its held-out accuracy
after every epoch, either from scratch with the head probe
(``source="scratch_probe"``) or warm-started from a zoo entry. A finished run
is a small JSON file under ``<zoo cache>-runs/`` keyed by everything that
decides it (the zoo's settings, budget, target, seed, source and estimator
settings), so an interrupted benchmark continues and a later one with the
same settings reuses it.

Targets are the development data sets of ``benchmarks/transfer.py`` (their
target halves) and tasks derived from them, each 16x16 grey in [0, 1]:

* ``mnist_rot90`` - mnist_5k rotated by 90 degrees;
* ``fashion_inverted`` - fashion_mnist with inverted intensities (1 - x);
* ``letters_a_to_m`` - ocr_letters, classes a-m only;
* ``digits_blur`` - digits at 8x8 blurred further: downsampled to 4x4 and
  back (a resolution change).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
import transfer

#: derived target -> (base data set, what is done to it)
DERIVED = {
    "mnist_rot90": ("mnist_5k", "rotated by 90 degrees"),
    "fashion_inverted": ("fashion_mnist", "intensities inverted (1 - x)"),
    "letters_a_to_m": ("ocr_letters", "classes a-m only"),
    "digits_blur": ("digits", "downsampled to 4x4 and back to 16x16"),
}


def base_dataset(target: str) -> str:
    """The development data set a target comes from."""
    return DERIVED[target][0] if target in DERIVED else target


def load_target(name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` of a target (16x16 grey in [0, 1]), derived or not."""
    if name not in DERIVED:
        return transfer.load(name, "target", n)
    base = DERIVED[name][0]
    if name == "letters_a_to_m":
        X, y = transfer.load(base, "target", 2 * n)
        keep = y < 13
        X, y = X[keep][:n], y[keep][:n]
        return X, y
    X, y = transfer.load(base, "target", n)
    if name == "mnist_rot90":
        X = np.ascontiguousarray(np.rot90(X, k=1, axes=(1, 2)))
    elif name == "fashion_inverted":
        X = 1.0 - X
    elif name == "digits_blur":
        X = transfer.resize(transfer.resize(X, 4), transfer.SIZE)
    return X.astype(np.float32), y


def runs_folder(cache) -> Path:
    """Where runs are cached: beside the zoo (a folder in it reads as an entry)."""
    cache = Path(cache)
    return cache.with_name(cache.name + "-runs")


def split(target: str, cfg: dict, seed: int):
    """``X_fit, X_val, y_fit, y_val`` of a target for one seed.

    The held-out split of :class:`~skdarts.evaluation.WarmStartComparison`
    (20 %, stratified, seeded), so cached runs and the selector's distances
    see the same training part.
    """
    from sklearn.model_selection import train_test_split

    X, y = load_target(target, cfg["n_target"])
    return train_test_split(X, y, test_size=0.2, stratify=y, random_state=seed)


def run(
    cache: Path,
    cfg: dict,
    target: str,
    seed: int,
    source: str,
    params: dict,
    label: str = "",
) -> dict:
    """One cached run: ``{"accuracy": [...], "seconds": [...], "wall": s}``.

    ``source`` is ``"scratch_probe"`` or the name of an entry of the zoo at
    ``cache``; ``params`` are SupernetSearchClassifier settings on top of the
    benchmark's (``transfer._search_params(cfg)``, ``max_epochs``). The cache
    key holds every setting of the estimator as resolved, defaults included,
    so a change of a default is a new run.
    """
    from skdarts import SupernetSearchClassifier
    from skdarts._files import atomic_write_text
    from skdarts.evaluation.comparison import _PROBE_KEY, _fit_one
    from skdarts.evaluation.curves import prepare_heldout
    from skdarts.zoo import SupernetZoo

    base = SupernetSearchClassifier(
        **transfer._search_params(cfg),
        max_epochs=cfg["epochs"],
        final_epochs=0,
        verbose=0,
        **params,
    )
    settings = base.get_params(deep=False)
    if source == "scratch_probe":
        # Warm-start settings do not touch a search from scratch: runs that
        # differ only in them are one run.
        settings = {k: v for k, v in settings.items() if not k.startswith("warm_")}
    blob = json.dumps(
        [transfer._settings_key(cfg), cfg["n_target"], target, seed, source, settings],
        sort_keys=True,
        default=str,
    )
    key = hashlib.sha256(blob.encode()).hexdigest()[:16]
    path = runs_folder(cache) / f"{target}-{source}-{seed}-{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    torch.set_num_threads(1)
    X_fit, X_val, y_fit, y_val = split(target, cfg, seed)
    heldout = prepare_heldout(X_fit, X_val, y_fit, y_val, None)
    if source == "scratch_probe":
        prior, name = False, _PROBE_KEY
    else:
        prior, name = SupernetZoo(cache)[source], source
    t0 = time.perf_counter()
    _, curve = _fit_one(base, prior, X_fit, y_fit, heldout, seed, 0.0, name)
    out = {
        "accuracy": [float(a) for a in curve.accuracy],
        "seconds": [float(s) for s in curve.seconds],
        "wall": time.perf_counter() - t0,
        "label": label,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(out))
    return out
