"""What the commands share: errors, messages, reading DATA, devices, saving."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import numpy as np

EXIT_USAGE = 2


class CommandError(ValueError):
    """A problem with what the user asked for, reported as one line."""


def _optional(module: str, feature: str):
    """Import ``skdarts.<module>``, or explain which part of skdarts is missing."""
    try:
        return importlib.import_module(f"skdarts.{module}")
    except ModuleNotFoundError as exc:
        if exc.name != f"skdarts.{module}":
            raise
        raise CommandError(
            f"{feature} needs skdarts.{module}, which this installation lacks; "
            "upgrade skdarts."
        ) from None


def _say(args, *parts) -> None:
    if getattr(args, "verbose", 1) > 0:
        print(*parts, flush=True)


# -- data -----------------------------------------------------------------------


def _load_data(spec: str, image_size=None) -> tuple[np.ndarray, np.ndarray, Any]:
    """``(X, y, image_shape)`` from a folder, a ``.npz`` file or ``sklearn:digits``.

    ``image_shape`` is what flat rows need (only sklearn's digits are flat).
    """
    if spec == "sklearn:digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        return X, y, (8, 8)
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(
            f"no data at {spec!r}: give an image folder (one sub-folder per class), "
            "a .npz file with arrays 'X' and 'y', or 'sklearn:digits'."
        )
    if path.is_file() and path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            missing = {"X", "y"} - set(archive.files)
            if missing:
                raise CommandError(
                    f"{spec!r} lacks the arrays {sorted(missing)}; a data archive "
                    f"needs 'X' (images) and 'y' (labels); it has {archive.files}."
                )
            return archive["X"], archive["y"], None
    if path.is_dir():
        data = _optional("data", "reading an image folder")
        loader = getattr(data, "load_image_folder", None)
        if loader is None:
            raise CommandError(
                "reading image folders needs skdarts.data.load_image_folder, which "
                "this installation lacks; upgrade skdarts."
            )
        kwargs = {} if image_size is None else {"image_size": image_size}
        X, y, _ = loader(path, **kwargs)  # y: the class folders' names
        return X, y, None
    raise CommandError(
        f"{spec!r} is neither an image folder nor a .npz file; give an image folder "
        "(one sub-folder per class), a .npz with 'X' and 'y', or 'sklearn:digits'."
    )


def _source_spec(spec: str) -> tuple[str, str]:
    """``NAME=DATA`` or ``DATA`` (named after the folder or file) -> (name, data)."""
    if "=" in spec and not Path(spec).exists():
        name, data = spec.split("=", 1)
        if not name:
            raise CommandError(f"source {spec!r} has an empty name before '='.")
        return name, data
    if spec.startswith("sklearn:"):
        return spec.split(":", 1)[1], spec
    return Path(spec).stem or Path(spec).name, spec


def _image_size(value: str | None):
    from ..data import parse_image_size

    try:
        return parse_image_size(value, name="--image-size")
    except (TypeError, ValueError) as exc:
        raise CommandError(str(exc)) from None


def _device(args) -> str:
    """``--device``, checked before any data is read or any work is done."""
    from .._device import resolve_device

    resolve_device(args.device, name="--device")
    return args.device


def _atomic_dump(obj, path: Path, overwrite: bool) -> None:
    """joblib.dump to a temporary file next to ``path``, then rename it."""
    import joblib

    from .._files import atomic_writer

    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{os.fspath(path)!r} exists; pass --overwrite to replace it or choose "
            "another --output."
        )
    with atomic_writer(path) as f:
        joblib.dump(obj, f)


def _open_zoo(path: str | None, *, create: bool = False):
    if path is not None and not create and not Path(path).is_dir():
        raise FileNotFoundError(
            f"no zoo at {path!r}: give an existing zoo folder (build one with "
            "'skdarts zoo build --zoo PATH SOURCE...'), or omit --zoo for the "
            "default zoo."
        )
    zoo_mod = _optional("zoo", "the zoo")
    if path is None:
        return zoo_mod.SupernetZoo.default()
    return zoo_mod.SupernetZoo(path)
