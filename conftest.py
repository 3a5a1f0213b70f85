"""Shared pytest setup.

Plots render off-screen and are closed after each test. Under pytest-xdist each
worker gets an equal share of the cores for torch's intra-op threads: n workers
each running torch's default (all cores) oversubscribe the machine, and OpenMP
threads spinning against each other made the suite several times slower.
"""

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    _threads = str(max(1, (os.cpu_count() or 1) // _workers))
    os.environ.setdefault("OMP_NUM_THREADS", _threads)
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's digits, as ``load_digits`` gives them: X (1797, 64), y.

    The one copy every test module shares; modules slice or reshape it (to
    ``(n, 8, 8)`` images) where they use it, and never modify it in place.
    """
    from sklearn.datasets import load_digits

    return load_digits(return_X_y=True)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
