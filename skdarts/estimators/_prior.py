"""Resolving a warm-start prior into the supernet a search starts from.

A prior is a zoo entry, a saved supernet (a folder written by
:func:`skdarts.zoo.save_supernet`, or a zoo entry's folder), a
:class:`~skdarts.supernet.Supernet`, or a fitted
:class:`~skdarts.SupernetSearchClassifier`.

Transfer rule
-------------
* The search space and the size (``init_channels``, ``n_cells``,
  ``n_nodes``, ``stem_multiplier``) must match the target's; the image size
  may differ (the network is convolutional with global pooling).
* Alphas and every body weight (including batch-norm statistics) are copied;
  the head is the target's fresh one, sized for its classes.
* Stem, when the channel counts differ: each target input channel gets the
  prior's filter summed over the prior's input channels, divided by the
  target's channel count - grey to RGB replicates the filter divided by 3,
  RGB to grey sums it over the channels; an image whose channels all equal a
  grey image gives the same stem response as that grey image in the prior.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch

from ..supernet import Supernet
from ..zoo import ZooEntry, load_supernet

__all__ = [
    "SIZE_KEYS",
    "adapt_stem",
    "check_warm_start",
    "recorded_input_size",
    "resolve_prior",
    "transfer_weights",
]

#: Configuration keys a prior must share with the target.
SIZE_KEYS = ("search_space", "init_channels", "n_cells", "n_nodes", "stem_multiplier")
_STEM = "stem.0.weight"


def adapt_stem(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Stem convolution weight for ``in_channels`` input channels (module rule).

    Examples
    --------
    >>> w = torch.ones(4, 1, 3, 3)
    >>> adapt_stem(w, 3)[0, :, 0, 0].tolist()
    [0.3333333432674408, 0.3333333432674408, 0.3333333432674408]
    >>> adapt_stem(torch.ones(4, 3, 3, 3), 1)[0, 0, 0, 0].item()
    3.0
    """
    if weight.shape[1] == in_channels:
        return weight.clone()
    summed = weight.sum(dim=1, keepdim=True) / in_channels
    return summed.repeat(1, in_channels, 1, 1).contiguous()


def transfer_weights(prior: Supernet, fresh: Supernet) -> Supernet:
    """A copy of ``fresh`` holding ``prior``'s alphas and body weights.

    Parameters
    ----------
    prior : Supernet
        Where alphas and weights come from.
    fresh : Supernet
        The target's supernet (its channels, classes and fresh head).

    Returns
    -------
    Supernet
    """
    p_cfg, f_cfg = prior.config(), fresh.config()
    mismatched = [k for k in SIZE_KEYS if p_cfg.get(k) != f_cfg.get(k)]
    if mismatched:
        raise ValueError(
            f"the warm-start prior does not fit the target: {mismatched} differ. "
            f"Prior config: {p_cfg}; target config: {f_cfg}. Set the estimator's "
            f"{', '.join(k for k in mismatched if k != 'stem_multiplier')} to the "
            "prior's values, or use a prior built with the target's."
        )
    module = copy.deepcopy(fresh)
    own = module.state_dict()
    state = {}
    for name, tensor in prior.state_dict().items():
        if name.startswith("head."):
            continue  # the target's fresh head stays
        if name == _STEM:
            tensor = adapt_stem(tensor, f_cfg["in_channels"])
        if name not in own or own[name].shape != tensor.shape:
            raise ValueError(
                f"the warm-start prior's tensor {name!r} has shape "
                f"{tuple(tensor.shape)}, the target expects "
                f"{tuple(own[name].shape) if name in own else 'no such tensor'} "
                f"(prior config {p_cfg}, target config {f_cfg})."
            )
        state[name] = tensor.to(own[name].device, own[name].dtype)
    missing = [k for k in own if not k.startswith("head.") and k not in state]
    if missing:
        raise ValueError(
            f"the warm-start prior lacks {len(missing)} tensors of the target "
            f"(first {missing[0]!r}); prior config {p_cfg}, target config {f_cfg}."
        )
    module.load_state_dict(state, strict=False)
    return module


def _is_fitted_search_estimator(obj) -> bool:
    net = getattr(obj, "net_", None)
    return isinstance(getattr(net, "module_", None), Supernet)


_ACCEPTED = (
    "False, True, 'auto', a ZooEntry, a Supernet, a fitted "
    "SupernetSearchClassifier or the path of a saved supernet (a folder written "
    "by skdarts.zoo.save_supernet, or a zoo entry's folder)"
)


def check_warm_start(warm_start: Any) -> None:
    """Raise unless ``warm_start`` is one of the values the estimator accepts.

    Checked at the start of ``fit``, before any work, so that a typo in a path
    or a wrong object fails at once with an error naming what was given.

    Raises
    ------
    FileNotFoundError
        A string or path that is neither ``"auto"`` nor an existing file or
        folder.
    ValueError
        An estimator that is not fitted.
    TypeError
        Any other object.

    Examples
    --------
    >>> check_warm_start("auto")
    >>> check_warm_start("no/such/prior")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: warm_start='no/such/prior': no saved supernet there ...
    >>> check_warm_start(3)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: warm_start must be False, True, 'auto', ...; got int (3).
    """
    if isinstance(warm_start, (bool, ZooEntry, Supernet)):
        return
    if isinstance(warm_start, (str, os.PathLike)):
        if isinstance(warm_start, str) and warm_start == "auto":
            return
        if not Path(warm_start).exists():
            # FileNotFoundError, as loading the path would raise (and did
            # before this check existed).
            raise FileNotFoundError(
                f"warm_start={str(warm_start)!r}: no saved supernet there (no such "
                f"file or folder, and not 'auto'); accepted: {_ACCEPTED}."
            )
        return
    if _is_fitted_search_estimator(warm_start):
        return
    if hasattr(warm_start, "get_params") and hasattr(warm_start, "fit"):
        raise ValueError(
            f"warm_start got an unfitted {type(warm_start).__name__}; fit it first. "
            f"Accepted: {_ACCEPTED}."
        )
    raise TypeError(
        f"warm_start must be {_ACCEPTED}; got {type(warm_start).__name__} "
        f"({warm_start!r})."
    )


def resolve_prior(prior, fresh: Supernet) -> tuple[Supernet, dict]:
    """Return ``(module, source)`` for the search to start from ``prior``.

    Parameters
    ----------
    prior : ZooEntry, str, os.PathLike, Supernet or fitted SupernetSearchClassifier
        What the user passed as ``warm_start`` (or a pipeline handed over).
    fresh : Supernet
        A newly built supernet with the target's configuration.

    Returns
    -------
    module : Supernet
        ``fresh``'s configuration, the prior's alphas and body weights, a
        fresh head for the target's classes.
    source : dict
        What was used: ``kind``, and ``name``, ``sources``, ``path``,
        ``config`` and ``stem_adapted`` where they apply.

    Examples
    --------
    >>> prior = Supernet(in_channels=1, init_channels=2, n_cells=1, n_nodes=1)
    >>> fresh = Supernet(in_channels=3, n_classes=4, init_channels=2, n_cells=1,
    ...                  n_nodes=1)
    >>> module, source = resolve_prior(prior, fresh)
    >>> bool(torch.equal(module.alphas_normal, prior.alphas_normal))
    True
    >>> module.head.out_features, source["stem_adapted"]
    (4, [1, 3])
    """
    if isinstance(prior, ZooEntry):
        module = prior.load_supernet()
        source = {
            "kind": "zoo_entry",
            "name": prior.name,
            "sources": prior.sources,
            "path": str(prior.path),
        }
    elif isinstance(prior, (str, os.PathLike)):
        path = Path(prior)
        module = load_supernet(path)
        entry = ZooEntry.from_path(path)
        source = {
            "kind": "path",
            "name": entry.name,
            "sources": entry.sources,
            "path": str(path),
        }
    elif isinstance(prior, Supernet):
        module = prior
        source = {"kind": "supernet"}
    elif _is_fitted_search_estimator(prior):
        module = prior.net_.module_
        previous = getattr(prior, "source_", None)
        source = {
            "kind": "estimator",
            "estimator": type(prior).__name__,
            "n_classes": len(getattr(prior, "classes_", [])),
            "warm_started_from": copy.deepcopy(previous),
        }
    elif hasattr(prior, "get_params") and hasattr(prior, "fit"):
        raise ValueError(
            f"warm_start got an unfitted {type(prior).__name__}; fit it first, or "
            "pass a zoo entry or a saved supernet path."
        )
    else:
        raise TypeError(
            "warm_start must be True, False, 'auto' or a prior (a ZooEntry, a path "
            "to a saved supernet, a Supernet or a fitted SupernetSearchClassifier); "
            f"got {type(prior).__name__}."
        )
    if source["kind"] in ("supernet", "estimator"):
        module = copy.deepcopy(module)  # the user's object stays where it is
    module = module.cpu()
    result = transfer_weights(module, fresh)
    p_in, t_in = module.in_channels, fresh.in_channels
    source["config"] = module.config()
    source["stem_adapted"] = [p_in, t_in] if p_in != t_in else None
    return result, source


def _entry_size(provenance: dict) -> tuple[int, int] | None:
    common = (provenance.get("common_input") or {}).get("image_size")
    if common and len(common) == 2:
        return int(common[0]), int(common[1])
    for info in (provenance.get("sources") or {}).values():
        shape = info.get("trained_shape") if isinstance(info, dict) else None
        if shape and len(shape) == 3:
            return int(shape[1]), int(shape[2])
    return None


def recorded_input_size(prior) -> tuple[int, int] | None:
    """The ``(height, width)`` a warm-start prior was trained at, if recorded.

    A zoo entry (or its folder) records it in its provenance (a mixture's
    ``common_input``, else a source's ``trained_shape``); a fitted estimator
    in ``input_size_`` (else the size of the images it was fitted on). A bare
    :class:`~skdarts.supernet.Supernet`, ``False``/``True`` and anything
    unrecorded give None: the target keeps its own size.

    Examples
    --------
    >>> recorded_input_size(None) is None, recorded_input_size(False) is None
    (True, True)
    """
    if prior is None or isinstance(prior, bool):
        return None
    if isinstance(prior, ZooEntry):
        return _entry_size(prior.provenance)
    if isinstance(prior, (str, os.PathLike)):
        try:
            return _entry_size(ZooEntry.from_path(Path(prior)).provenance)
        except Exception:
            # An unreadable path fails later, in resolve_prior, with its own
            # clear error; here it only means "no recorded size".
            return None
    if _is_fitted_search_estimator(prior):
        size = getattr(prior, "input_size_", None) or getattr(
            prior, "image_size_", None
        )
        return tuple(int(v) for v in size) if size else None
    return None
