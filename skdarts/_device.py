"""Resolving and checking the ``device`` parameters (no skdarts imports)."""

from __future__ import annotations

import torch

__all__ = ["resolve_device", "rng_devices"]


def _available(kind: str) -> bool:
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        return bool(mps is not None and mps.is_available())
    return True


def resolve_device(device: str, name: str = "device") -> str:
    """The torch device ``device`` stands for, checked to exist on this machine.

    ``"auto"`` is CUDA when available, else the CPU. A GPU that is absent
    (no CUDA build, no visible GPU, an index past the last GPU) raises a
    ``ValueError`` naming the argument here, before any work, instead of
    torch's error from deep inside the training.

    Examples
    --------
    >>> resolve_device("cpu")
    'cpu'
    >>> resolve_device("auto") in ("cpu", "cuda")
    True
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"{name} must be 'auto' or a torch device string such as 'cpu', 'cuda', "
            f"'cuda:1' or 'mps'; got {device!r}."
        ) from exc
    if not _available(dev.type):
        raise ValueError(
            f"{name}={device!r}, but this machine has no usable {dev.type.upper()} "
            f"device (torch {torch.__version__}); use {name}='auto' or 'cpu'."
        )
    if dev.type == "cuda" and dev.index is not None:
        count = torch.cuda.device_count()
        if dev.index >= count:
            raise ValueError(
                f"{name}={device!r}, but this machine has {count} CUDA device(s) "
                f"(indices 0 to {count - 1}); use {name}='cuda' or an index below "
                f"{count}."
            )
    return device


def rng_devices(device) -> list[int]:
    """The CUDA devices whose random state a fit on ``device`` draws from.

    For :func:`torch.random.fork_rng`: the device's index (the current one
    for plain ``"cuda"``); empty for any other device.

    Examples
    --------
    >>> rng_devices("cpu")
    []
    """
    if device is None:
        return []
    dev = torch.device(device)
    if dev.type != "cuda" or not torch.cuda.is_available():
        return []
    return [dev.index if dev.index is not None else torch.cuda.current_device()]
