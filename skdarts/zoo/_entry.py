"""One stored supernet (:class:`~skdarts.zoo.ZooEntry`); a supernet saved alone."""

from __future__ import annotations

import copy
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import safetensors.numpy

from .._files import publish
from .._limits import check_state_shapes
from ._format import (
    ENTRY_JSON,
    SIGNATURES_FILE,
    WEIGHTS_FILE,
    ZooEntryError,
    _Changed,
    _check_name,  # noqa: F401  (re-exported for the pretraining module)
    _read_entry_doc,
    _read_snapshot,
    _read_verified,
    _state_tensors,
    _write_entry_folder,
)

if TYPE_CHECKING:  # torch and the supernet load only when weights are read
    import torch

    from ..supernet import Supernet

__all__ = ["ZooEntry", "load_supernet", "save_supernet"]


class ZooEntry:
    """One stored supernet: its metadata now, its weights on demand.

    Obtained from ``zoo[name]`` or :meth:`from_path`. Light (a path and a
    dict), so estimators can hold it as a parameter, clone and pickle it;
    the files are read (and their checksums verified) when weights or
    signatures are asked for.

    Attributes
    ----------
    name : str
    path : pathlib.Path
        The entry's folder.
    metadata : dict
        The entry's JSON: ``config``, ``in_channels``, ``provenance``,
        ``signatures`` (meta part), ``created``, ``skdarts_version``, ``files``.

    Examples
    --------
    >>> import tempfile
    >>> from skdarts.supernet import Supernet
    >>> from skdarts.zoo import SupernetZoo
    >>> zoo = SupernetZoo(tempfile.mkdtemp())
    >>> entry = zoo.add("tiny", Supernet(init_channels=2, n_cells=1, n_nodes=1))
    >>> entry.config["init_channels"], entry.load_supernet().n_cells
    (2, 1)
    """

    def __init__(self, path, metadata: dict, name: str | None = None):
        self.path = Path(path)
        self.metadata = metadata
        self.name = name if name is not None else metadata.get("name", self.path.name)

    @classmethod
    def from_path(cls, path) -> ZooEntry:
        """Open an entry folder (or one written by :func:`save_supernet`)."""
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(
                f"no saved supernet at {os.fspath(path)!r}: expected a folder holding "
                f"{ENTRY_JSON!r} and {WEIGHTS_FILE!r} (a zoo entry or a folder written "
                "by skdarts.zoo.save_supernet)."
            )
        doc = _read_entry_doc(path, path.name)
        return cls(path, doc, name=doc.get("name", path.name))

    # -- metadata ------------------------------------------------------------

    @property
    def config(self) -> dict:
        """The supernet's ``config()``."""
        return dict(self.metadata["config"])

    @property
    def provenance(self) -> dict:
        """Where the entry came from: sources, epochs, accuracy, history."""
        return copy.deepcopy(self.metadata.get("provenance", {}))

    @property
    def sources(self) -> list[str]:
        """Names of the source datasets the supernet was trained on."""
        return list(self.metadata.get("provenance", {}).get("sources", {}))

    def _where(self) -> str:
        return f"zoo entry {self.name!r} ({self.path})"

    # -- payload -------------------------------------------------------------

    def _payload(self, fname: str) -> bytes:
        """The bytes of ``fname``, verified against the JSON they belong with."""
        digest = self.metadata["files"].get(fname)
        try:
            return _read_verified(self.path, fname, digest, self._where())
        except _Changed:
            pass
        # Replaced since this entry's JSON was read: take the new version
        # whole (JSON and file together), never the old JSON with new files.
        doc, data = _read_snapshot(self.path, self.name, wanted=[fname])
        self.metadata = doc
        return data[fname]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The stored ``state_dict`` (checksum verified on this read)."""
        from safetensors.torch import load as load_tensors  # imports torch

        data = self._payload(WEIGHTS_FILE)
        try:
            return load_tensors(data)
        except Exception as exc:
            raise ZooEntryError(
                f"{self._where()} is damaged: {WEIGHTS_FILE!r} cannot be read ({exc})."
            ) from None

    def load_supernet(self) -> Supernet:
        """Rebuild the stored :class:`~skdarts.supernet.Supernet` (its own head).

        The stored tensors' shapes are checked against the configuration
        before the network is built, so a crafted configuration cannot make
        it allocate more than the file holds.
        """
        from ..supernet import Supernet

        state = self.state_dict()  # first: it may move to a newer version
        config = self.config
        try:
            check_state_shapes(
                config, {k: tuple(v.shape) for k, v in state.items()}, "its weights"
            )
        except ValueError as exc:
            raise ZooEntryError(f"{self._where()} is damaged: {exc}") from None
        try:
            module = Supernet(**config)
        except (TypeError, ValueError) as exc:
            raise ZooEntryError(
                f"{self._where()}: its config {config} does not build a "
                f"Supernet in this skdarts ({exc})."
            ) from None
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ZooEntryError(
                f"{self._where()}: the stored weights do not fit its config "
                f"{config} ({str(exc).splitlines()[0]})."
            ) from None
        return module

    def signature_arrays(
        self, embedding: str | None = None
    ) -> dict[str, tuple[dict[str, np.ndarray], dict]]:
        """Stored dataset signatures as ``(arrays, meta)`` pairs; ``{}`` when none.

        Parameters
        ----------
        embedding : str, optional
            A name of :data:`skdarts.similarity.EMBEDDINGS` (``"pixels"``,
            ``"supernet"``): that embedding's signatures only, keyed by
            source (a signature belongs to the embedding its meta names,
            whatever its version). None: every stored signature, keyed as
            stored (the source's name, or ``"<source>@<embedding>"`` for
            embeddings other than the pixel one; see :mod:`skdarts.zoo`).

        Returns
        -------
        dict
            ``{key: (arrays, meta)}``, exactly as stored.

        Examples
        --------
        >>> from skdarts.zoo import SupernetZoo
        >>> entry = SupernetZoo.default()["mnist"]
        >>> sorted(entry.signature_arrays())
        ['mnist', 'mnist@supernet']
        >>> arrays, meta = entry.signature_arrays(embedding="supernet")["mnist"]
        >>> meta["embedding"]["name"], arrays["points"].shape
        ('supernet-multi-body-pooled-projection', (1000, 32))
        """
        wanted = None
        if embedding is not None:
            from ..similarity import EMBEDDINGS, check_embedding

            wanted = EMBEDDINGS[check_embedding(embedding)]["name"]
        sig_doc = self.metadata.get("signatures") or {}
        if not sig_doc:
            return {}
        if self.metadata["files"].get(SIGNATURES_FILE) is None:
            raise ZooEntryError(
                f"{self._where()} is damaged: entry.json lists signatures but no "
                f"{SIGNATURES_FILE!r}."
            )
        data = self._payload(SIGNATURES_FILE)
        sig_doc = self.metadata.get("signatures") or {}
        try:
            flat = safetensors.numpy.load(data)
            out = {}
            for key, part in sig_doc.items():
                meta = dict(part["meta"])
                if wanted is not None:
                    recorded = meta.get("embedding")
                    if not isinstance(recorded, dict) or recorded.get("name") != wanted:
                        continue
                    key = part.get("source", key)
                arrays = {aname: flat[fkey] for aname, fkey in part["arrays"].items()}
                out[key] = (arrays, copy.deepcopy(meta))
        except Exception as exc:
            raise ZooEntryError(
                f"{self._where()} is damaged: its signatures cannot be read "
                f"({type(exc).__name__}: {exc})."
            ) from None
        return out

    def __repr__(self) -> str:
        return (
            f"ZooEntry(name={self.name!r}, sources={self.sources}, path='{self.path}')"
        )


# --------------------------------------------------------------------------
# Saving a supernet outside a zoo
# --------------------------------------------------------------------------


def save_supernet(
    path, module: Supernet, *, metadata: dict | None = None, overwrite: bool = False
) -> ZooEntry:
    """Save ``module`` to the folder ``path`` in the zoo's entry format.

    Written atomically (a temporary sibling folder renamed into place). The
    result is accepted by :func:`load_supernet` and as a ``warm_start`` prior.

    Parameters
    ----------
    path : str or os.PathLike
        The folder to create.
    module : Supernet
    metadata : dict, optional
        JSON-serialisable provenance stored with it.
    overwrite : bool, default=False

    Returns
    -------
    ZooEntry

    Examples
    --------
    >>> import tempfile, os
    >>> from skdarts.supernet import Supernet
    >>> path = os.path.join(tempfile.mkdtemp(), "mine")
    >>> _ = save_supernet(path, Supernet(init_channels=2, n_cells=1, n_nodes=1))
    >>> load_supernet(path).init_channels
    2
    """
    from ..supernet import Supernet

    if not isinstance(module, Supernet):
        raise TypeError(
            f"module must be a skdarts.supernet.Supernet; got {type(module).__name__}."
        )
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{os.fspath(path)!r} already exists; pass overwrite=True to replace it."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not _TMP_PREFIX: a zoo writer may sweep those from the same folder.
    tmp = path.parent / f".save-{path.name}-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        _write_entry_folder(
            tmp, path.name, _state_tensors(module), module.config(), metadata, None
        )
        publish(tmp, path, overwrite=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ZooEntry.from_path(path)


def load_supernet(path) -> Supernet:
    """Load a supernet saved by :func:`save_supernet` (or a zoo entry folder).

    Examples
    --------
    See :func:`save_supernet`.
    """
    return ZooEntry.from_path(path).load_supernet()
