"""Export a derived network for use without skdarts's estimators.

Three formats, each written atomically (a temporary file or folder next to
the target, then a rename: an interrupted export never leaves a half-written
file) and never over an existing export unless ``overwrite=True``:

``"safetensors"``
    A folder with ``model.safetensors`` (the weights) and ``model.json``
    (genotype, network configuration, classes, pixel mean/std, image shape
    and the weights' SHA-256). :func:`load_exported` rebuilds an
    :class:`ExportedClassifier` from it without executing any stored code.
``"torchscript"``
    One file from :func:`torch.jit.trace` of the :class:`ExportedClassifier`
    in eval mode (standardisation included), loadable with
    :func:`torch.jit.load` alone; the JSON description rides along as the
    extra file ``skdarts.json``.
``"onnx"``
    One ``.onnx`` file (needs the ``onnx`` package; install the ``export``
    extra), input ``images``, output ``probabilities``, a dynamic batch axis,
    the JSON description in the model's metadata under ``skdarts``.

Every exported model takes float32 images ``(n, c, h, w)`` scaled as
:func:`skdarts.data.as_images` scales them (8-bit integer pixels divided by
255, 16-bit ones by 65535, floats as given) and returns class probabilities,
columns in the order of ``classes``.

This module belongs to the supernet layer: it imports only
:mod:`skdarts.spaces` and :mod:`skdarts.supernet`.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._files import (
    UnsafeFileError,
    fsync_file,
    publish,
    read_regular_file,
    sha256_bytes,
    sha256_file,
)
from ._limits import MAX_JSON_BYTES, check_config, check_state_shapes, loads_json
from .supernet import DerivedNetwork

__all__ = ["FORMATS", "ExportedClassifier", "export_network", "load_exported"]

FORMATS = ("safetensors", "torchscript", "onnx")
SCHEMA = "skdarts-export"
SCHEMA_VERSION = 1
_WEIGHTS = "model.safetensors"
_META = "model.json"


class ExportedClassifier(nn.Module):
    """A derived network with its input standardisation: images in, probabilities out.

    Parameters
    ----------
    network : DerivedNetwork
    pixel_mean, pixel_std : sequence of float
        Per-channel statistics subtracted and divided before the network.
    classes : sequence, optional
        Labels of the output columns.
    image_shape : sequence of int, optional
        ``(c, h, w)`` of the images seen in training (the estimator's
        ``image_shape_``): the shape inputs must have. The exported model
        neither reshapes flat rows nor resizes images.

    Attributes
    ----------
    metadata : dict
        The JSON description (set by :func:`load_exported`).

    Examples
    --------
    >>> from skdarts import Supernet
    >>> net = DerivedNetwork.from_supernet(
    ...     Supernet("s2", 1, 3, init_channels=2, n_cells=1, n_nodes=1))
    >>> model = ExportedClassifier(net, [0.5], [0.25], classes=["a", "b", "c"])
    >>> proba = model.eval()(torch.zeros(2, 1, 8, 8))
    >>> bool(torch.allclose(proba.sum(1), torch.ones(2)))
    True
    """

    def __init__(
        self,
        network: DerivedNetwork,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        classes: Sequence | None = None,
        image_shape: Sequence[int] | None = None,
    ):
        super().__init__()
        self.network = network
        mean = torch.as_tensor(np.asarray(pixel_mean, dtype=np.float32))
        std = torch.as_tensor(np.asarray(pixel_std, dtype=np.float32))
        if mean.ndim != 1 or mean.shape != std.shape:
            raise ValueError(
                "pixel_mean and pixel_std must be 1-d with one value per channel; "
                f"got shapes {tuple(mean.shape)} and {tuple(std.shape)}."
            )
        self.register_buffer("pixel_mean", mean.view(1, -1, 1, 1).clone())
        self.register_buffer("pixel_std", std.view(1, -1, 1, 1).clone())
        self.classes = list(classes) if classes is not None else None
        self.image_shape = tuple(image_shape) if image_shape is not None else None
        self.metadata: dict[str, Any] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities of images scaled as ``as_images`` scales them."""
        z = (x - self.pixel_mean) / self.pixel_std
        return torch.softmax(self.network(z), dim=1)


def _json_labels(classes) -> list:
    out = []
    for c in np.asarray(classes).tolist():
        if not isinstance(c, (str, int, float, bool)) and c is not None:
            c = str(c)
        out.append(c)
    return out


def _description(model: ExportedClassifier, fmt: str) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "format": fmt,
        "network": model.network.config(),
        "classes": model.classes,
        "pixel_mean": model.pixel_mean.flatten().tolist(),
        "pixel_std": model.pixel_std.flatten().tolist(),
        "image_shape": list(model.image_shape) if model.image_shape else None,
        "input": (
            "float32 images (n, c, h, w) scaled as skdarts.data.as_images scales "
            "them: 8-bit integer pixels / 255, 16-bit ones / 65535, floats as given"
        ),
        "output": "class probabilities (n, n_classes), columns in 'classes' order",
    }


def _check_target(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{str(path)!r} already exists; pass overwrite=True to replace it (the "
            "old export is replaced atomically) or choose another path."
        )
    path.parent.mkdir(parents=True, exist_ok=True)


def export_network(
    network: DerivedNetwork | ExportedClassifier,
    path,
    format: str = "safetensors",
    *,
    pixel_mean: Sequence[float] | None = None,
    pixel_std: Sequence[float] | None = None,
    classes: Sequence | None = None,
    image_shape: Sequence[int] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``network`` (with its standardisation) in ``format`` to ``path``.

    Parameters
    ----------
    network : DerivedNetwork or ExportedClassifier
    path : str or path-like
        A folder for ``"safetensors"``, a file for the other formats.
    format : {"safetensors", "torchscript", "onnx"}, default="safetensors"
    pixel_mean, pixel_std : sequence of float, optional
        Per-channel standardisation (default: none, 0 and 1).
    classes : sequence, optional
        Output labels (stored as JSON; other objects as their ``str``).
    image_shape : sequence of int, optional
        ``(c, h, w)`` of the images seen in training: the shape inputs must
        have, and the example input's shape for tracing. Nothing is reshaped
        or resized by the export.
    overwrite : bool, default=False
        Replace an existing export (atomically).

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import tempfile, os
    >>> from skdarts import Supernet
    >>> net = DerivedNetwork.from_supernet(
    ...     Supernet("s2", 1, 2, init_channels=2, n_cells=1, n_nodes=1))
    >>> folder = os.path.join(tempfile.mkdtemp(), "model")
    >>> _ = export_network(net, folder, classes=[0, 1], image_shape=(1, 8, 8))
    >>> sorted(os.listdir(folder))
    ['model.json', 'model.safetensors']
    >>> load_exported(folder).classes
    [0, 1]
    """
    if format not in FORMATS:
        raise ValueError(
            f"format must be one of {', '.join(map(repr, FORMATS))}; got {format!r}."
        )
    if isinstance(network, ExportedClassifier):
        model = network
    elif isinstance(network, DerivedNetwork):
        c = network.in_channels
        model = ExportedClassifier(
            network,
            pixel_mean if pixel_mean is not None else [0.0] * c,
            pixel_std if pixel_std is not None else [1.0] * c,
            classes=_json_labels(classes) if classes is not None else None,
            image_shape=image_shape,
        )
    else:
        raise TypeError(
            "network must be a DerivedNetwork or an ExportedClassifier; got "
            f"{type(network).__name__}."
        )
    if model.classes is not None and len(model.classes) != model.network.n_classes:
        raise ValueError(
            f"classes has {len(model.classes)} labels but the network has "
            f"{model.network.n_classes} outputs."
        )
    path = Path(path)
    _check_target(path, overwrite)
    # A CPU copy: moving the caller's model (e.g. off its GPU) or switching
    # its mode would change it under the caller's feet.
    model = copy.deepcopy(model).cpu().eval()
    if format == "safetensors":
        _write_safetensors(model, path, overwrite)
    else:
        _write_single(model, path, format, overwrite)
    return path


def _write_safetensors(model: ExportedClassifier, path: Path, overwrite: bool):
    from safetensors.torch import save_file

    tmp = Path(
        tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    )
    try:
        tensors = {
            k: v.detach().cpu().contiguous().clone()
            for k, v in model.state_dict().items()
        }
        save_file(tensors, str(tmp / _WEIGHTS))
        fsync_file(tmp / _WEIGHTS)
        meta = _description(model, "safetensors")
        meta["sha256"] = {_WEIGHTS: sha256_file(tmp / _WEIGHTS)}
        with open(tmp / _META, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path, overwrite)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _example_input(model: ExportedClassifier) -> torch.Tensor:
    c = model.network.in_channels
    shape = tuple(model.image_shape) if model.image_shape else (c, 32, 32)
    return torch.zeros((2, *shape), dtype=torch.float32)


def _write_single(model: ExportedClassifier, path: Path, fmt: str, overwrite: bool):
    meta = json.dumps(_description(model, fmt))
    example = _example_input(model)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        if fmt == "torchscript":
            # TorchScript is deprecated in favour of torch.export, but it is
            # still the format that loads with torch alone (C++ included).
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore", DeprecationWarning)
                traced = torch.jit.trace(model, example, check_trace=False)
                torch.jit.save(traced, str(tmp), _extra_files={"skdarts.json": meta})
        else:
            try:
                import onnx
            except ImportError as exc:
                raise ImportError(
                    "format='onnx' needs the 'onnx' package: pip install "
                    "'skdarts[export]' (or pip install onnx)."
                ) from exc
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    model,
                    (example,),
                    str(tmp),
                    input_names=["images"],
                    output_names=["probabilities"],
                    dynamic_axes={
                        "images": {0: "batch"},
                        "probabilities": {0: "batch"},
                    },
                    dynamo=False,
                )
            proto = onnx.load(str(tmp))
            entry = proto.metadata_props.add()
            entry.key, entry.value = "skdarts", meta
            onnx.save(proto, str(tmp))
        fsync_file(tmp)
        publish(tmp, path, overwrite)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_exported(path) -> nn.Module:
    """Load an export written by :func:`export_network`.

    A ``"safetensors"`` folder gives an :class:`ExportedClassifier` (its
    ``network`` is a plain :class:`DerivedNetwork`; ``classes``,
    ``image_shape`` and ``metadata`` describe the input and output), built
    from JSON and safetensors only: nothing stored is executed. The weights'
    checksum is verified. A TorchScript file gives the ``torch.jit`` module
    (with ``classes`` and ``metadata`` attached). ONNX files are for ONNX
    runtimes (``onnxruntime.InferenceSession(path)``).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    torch.nn.Module
        In eval mode.
    """
    path = Path(path)
    if path.is_dir():
        return _load_safetensors(path)
    if not path.exists():
        raise FileNotFoundError(f"No export at {str(path)!r}.")
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        extra = {"skdarts.json": ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        meta = json.loads(extra["skdarts.json"] or "{}")
        module.metadata = meta
        module.classes = meta.get("classes")
        return module.eval()
    raise ValueError(
        f"{str(path)!r} is neither a safetensors export folder nor a TorchScript "
        "file; ONNX exports load with onnxruntime.InferenceSession(path)."
    )


def _load_safetensors(path: Path) -> ExportedClassifier:
    from safetensors.torch import load as load_bytes

    from .spaces import Genotype

    meta_path = path / _META
    for name in (_META, _WEIGHTS):
        if not (path / name).is_file():
            raise FileNotFoundError(
                f"{str(path)!r} is not a complete safetensors export: {name} is "
                "missing."
            )
    try:
        meta = loads_json(
            read_regular_file(path, _META, MAX_JSON_BYTES), f"{str(meta_path)!r}"
        )
        blob = read_regular_file(path, _WEIGHTS)
    except UnsafeFileError as exc:
        raise ValueError(f"export {str(path)!r} is refused: {exc}") from None
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        raise ValueError(f"{str(path)!r} is not an skdarts export (no schema tag).")
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{str(path)!r} has export schema version {meta.get('schema_version')}; "
            f"this skdarts reads version {SCHEMA_VERSION}: upgrade skdarts or "
            "re-export the model."
        )
    expected = (meta.get("sha256") or {}).get(_WEIGHTS)
    if expected != sha256_bytes(blob):
        raise ValueError(
            f"Checksum mismatch in export {str(path)!r}, file {_WEIGHTS}: the file "
            "is damaged or was modified; re-export or re-download it."
        )
    where = f"export {str(path)!r}"
    try:
        cfg = dict(meta["network"])
        check_config(cfg, f"{where}: {_META}")
        state = load_bytes(blob)
        # Sizes checked against the stored tensors before anything is built.
        check_state_shapes(
            cfg,
            {
                k.removeprefix("network."): tuple(v.shape)
                for k, v in state.items()
                if k.startswith("network.")
            },
            f"{where}: its weights",
        )
        cfg["genotype"] = Genotype.from_dict(cfg["genotype"])
        network = DerivedNetwork(**cfg)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(
            f"{where} is damaged or foreign: its metadata or weights cannot build "
            f"the network ({type(exc).__name__}: {exc})."
        ) from None
    model = ExportedClassifier(
        network,
        meta["pixel_mean"],
        meta["pixel_std"],
        classes=meta.get("classes"),
        image_shape=meta.get("image_shape"),
    )
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(
            f"{where}: the stored weights do not fit its metadata "
            f"({str(exc).splitlines()[0]})."
        ) from None
    model.metadata = meta
    return model.eval()
