"""Bounds on what skdarts reads from files it did not write itself.

The one place where the limits are stated. Zoo entries, exports and search
checkpoints are data from elsewhere; a crafted or damaged one must fail with
a clear error before any memory is allocated for it, never exhaust memory,
hang or recurse without end.

* Network configurations (``config`` of a stored supernet or derived network,
  also the estimator's parameters): every size below is an int in
  ``[1, bound]``:

  ============== ========
  key            bound
  ============== ========
  n_cells        64
  init_channels  512
  n_nodes        16
  n_classes      100,000
  in_channels    64
  stem_multiplier 16
  ============== ========

  These are far above any network skdarts searches (its defaults: 8 cells,
  16 channels, 4 nodes); the stored weights must moreover have the shapes
  the configuration implies (:func:`check_state_shapes`), so the network
  built is no larger than the file that was read.
* JSON documents (``entry.json``, an export's metadata): at most
  :data:`MAX_JSON_BYTES` bytes and :data:`MAX_JSON_DEPTH` levels of nesting.

Layer: bottom (services); imports nothing from skdarts.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping
from typing import Any

__all__ = [
    "CONFIG_BOUNDS",
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "check_config",
    "check_state_shapes",
    "loads_json",
]

#: Largest accepted value of each size in a network configuration.
CONFIG_BOUNDS: dict[str, int] = {
    "n_cells": 64,
    "init_channels": 512,
    "n_nodes": 16,
    "n_classes": 100_000,
    "in_channels": 64,
    "stem_multiplier": 16,
}
#: Largest JSON document read (bytes).
MAX_JSON_BYTES = 16 * 1024 * 1024
#: Deepest nesting of lists and objects accepted in a JSON document.
MAX_JSON_DEPTH = 64


def check_config(config: Mapping, where: str = "config") -> None:
    """Raise ``ValueError`` unless every bounded size in ``config`` is in range.

    Keys absent from ``config`` are not checked (each network has its own).

    Parameters
    ----------
    config : mapping
    where : str
        What the configuration belongs to, named in the error.

    Examples
    --------
    >>> check_config({"n_cells": 8, "init_channels": 16})
    >>> check_config({"n_cells": 10**7}, "entry 'a'")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: entry 'a': n_cells=10000000 is out of range; accepted: an int...
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"{where}: the configuration must be a JSON object.")
    for key, bound in CONFIG_BOUNDS.items():
        if key not in config:
            continue
        value = config[key]
        if (
            not isinstance(value, numbers.Integral)
            or isinstance(value, bool)
            or not 1 <= value <= bound
        ):
            raise ValueError(
                f"{where}: {key}={value!r:.40} is out of range; accepted: an int "
                f"from 1 to {bound} (the bounds are listed in skdarts._limits)."
            )


def check_state_shapes(
    config: Mapping, shapes: Mapping[str, tuple], where: str = "weights"
) -> None:
    """Raise ``ValueError`` unless stored tensor shapes fit ``config``.

    Checks the stem, the head, the number of cells and (for a supernet) the
    alphas, which together pin every size the configuration gives: the
    network then built from ``config`` is no larger than what was stored.

    Parameters
    ----------
    config : mapping
        ``in_channels``, ``n_classes``, ``init_channels``, ``n_cells``,
        ``stem_multiplier`` and, for a supernet, ``n_nodes``.
    shapes : mapping
        Tensor name to shape, as stored.
    where : str

    Examples
    --------
    >>> cfg = {"in_channels": 1, "n_classes": 2, "init_channels": 4,
    ...        "n_cells": 1, "stem_multiplier": 3}
    >>> check_state_shapes(cfg, {"stem.0.weight": (12, 1, 3, 3),
    ...     "head.weight": (2, 16), "cells.0.x": (1,)})
    """
    problems = []
    stem = shapes.get("stem.0.weight")
    want = (
        config.get("stem_multiplier", 3) * config.get("init_channels", 0),
        config.get("in_channels"),
    )
    if stem is None or tuple(stem[:2]) != want:
        problems.append(f"stem.0.weight has shape {stem}, the config implies {want}+")
    head = shapes.get("head.weight")
    if head is None or not head or head[0] != config.get("n_classes"):
        problems.append(
            f"head.weight has shape {head}, the config implies "
            f"{config.get('n_classes')} classes"
        )
    cells = {
        name.split(".")[1]
        for name in shapes
        if name.startswith("cells.") and name.count(".") >= 2
    }
    if len(cells) != config.get("n_cells"):
        problems.append(
            f"{len(cells)} cells are stored, the config says {config.get('n_cells')}"
        )
    if "n_nodes" in config:
        n = config["n_nodes"]
        edges = n * (n + 3) // 2
        alphas = shapes.get("alphas_normal")
        if alphas is None or not alphas or alphas[0] != edges:
            problems.append(
                f"alphas_normal has shape {alphas}, n_nodes={n} implies {edges} edges"
            )
    if problems:
        raise ValueError(
            f"{where} do not fit the configuration: " + "; ".join(problems) + "."
        )


def _depth_ok(doc: Any, limit: int) -> bool:
    # Iterative: a recursive walk would itself overflow on what it checks.
    stack = [(doc, 1)]
    while stack:
        obj, depth = stack.pop()
        if isinstance(obj, dict):
            children = obj.values()
        elif isinstance(obj, list):
            children = obj
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


def loads_json(data: bytes, what: str = "the JSON document") -> Any:
    """Parse ``data`` as UTF-8 JSON within the size and depth bounds.

    Raises ``ValueError`` (never ``RecursionError``) for a document that is
    not valid JSON, larger than :data:`MAX_JSON_BYTES` or nested deeper than
    :data:`MAX_JSON_DEPTH`.

    Examples
    --------
    >>> loads_json(b'{"a": [1, 2]}')
    {'a': [1, 2]}
    >>> loads_json(b"[" * 100 + b"]" * 100)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: the JSON document is nested deeper than 64 levels...
    """
    if len(data) > MAX_JSON_BYTES:
        raise ValueError(
            f"{what} holds {len(data)} bytes, more than the {MAX_JSON_BYTES} accepted."
        )
    try:
        doc = json.loads(data.decode("utf-8"))
    except RecursionError:
        doc = None
        deep = True
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{what} is not valid JSON ({exc}).") from None
    else:
        deep = not _depth_ok(doc, MAX_JSON_DEPTH)
    if deep:
        raise ValueError(
            f"{what} is nested deeper than {MAX_JSON_DEPTH} levels; not read."
        )
    return doc
