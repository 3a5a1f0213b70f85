"""Pipeline hand-off: data passed on by a selector together with a prior.

An :class:`~skdarts.OTSourceSelector` cannot reach into the next step of a
pipeline, so its ``transform`` returns the data as a :class:`HandoffArray`: a
NumPy array (the very values it was given, not a copy) that also carries the
selected prior in ``.prior``. ``SupernetSearchClassifier.fit`` calls
:func:`split_handoff` first and, with ``warm_start="auto"``, starts from that
prior. Everything else sees an ordinary array: ``np.asarray`` (and so every
scikit-learn validation) drops the subclass, prediction ignores the prior,
and the carrier pickles with its prior (joblib, cross-validation workers).
Inputs that are not arrays (a folder, a list of image files, a torch Dataset)
travel in a :class:`HandoffData` instead, which the classifier unwraps the
same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._signature_inputs import is_file_or_dataset_input

__all__ = ["HandoffArray", "HandoffData", "split_handoff", "with_prior"]


class HandoffArray(np.ndarray):
    """An ndarray carrying a warm-start prior to the next pipeline step.

    Views and slices keep the prior; ``np.asarray`` gives the plain array.

    Examples
    --------
    >>> X = with_prior(np.zeros((4, 2)), "entry")
    >>> X.prior, X[:2].prior, type(np.asarray(X)).__name__
    ('entry', 'entry', 'ndarray')
    >>> import pickle
    >>> pickle.loads(pickle.dumps(X)).prior
    'entry'
    """

    prior: Any

    def __new__(cls, data, prior: Any = None) -> HandoffArray:
        obj = np.asarray(data).view(cls)
        obj.prior = prior
        return obj

    def __array_finalize__(self, obj) -> None:
        self.prior = getattr(obj, "prior", None)

    def __reduce__(self):
        # ndarray's pickling knows nothing of attributes: add the prior.
        rebuild, args, state = super().__reduce__()
        return rebuild, args, (state, self.prior)

    def __setstate__(self, state) -> None:
        array_state, self.prior = state
        super().__setstate__(array_state)


class HandoffData:
    """Input that is not an array (path, list of paths, Dataset) with a prior.

    Examples
    --------
    >>> split_handoff(with_prior("images/", "entry"))
    ('images/', 'entry')
    """

    def __init__(self, data: Any, prior: Any = None):
        self.data = data
        self.prior = prior

    def __repr__(self) -> str:
        return f"HandoffData({self.data!r}, prior={self.prior!r})"


def with_prior(X, prior: Any) -> HandoffArray | HandoffData:
    """``X`` (unchanged values, no copy where possible) carrying ``prior``.

    A path, a list of paths or a torch Dataset is wrapped, unread, in a
    :class:`HandoffData`; anything else becomes a :class:`HandoffArray`.
    """
    if is_file_or_dataset_input(X):
        return HandoffData(X, prior)
    return HandoffArray(X, prior)


def split_handoff(X) -> tuple[Any, Any]:
    """Return ``(X, prior)``: the plain data and the prior handed over, if any.

    Examples
    --------
    >>> X, prior = split_handoff(with_prior(np.ones(3), "entry"))
    >>> type(X).__name__, prior
    ('ndarray', 'entry')
    >>> split_handoff([1, 2])
    ([1, 2], None)
    """
    if isinstance(X, HandoffArray):
        return X.view(np.ndarray), X.prior
    if isinstance(X, HandoffData):
        return X.data, X.prior
    return X, None
