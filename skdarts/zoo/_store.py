"""The zoo itself (:class:`~skdarts.zoo.SupernetZoo`): a folder of entries.

Writes go to a temporary folder inside the zoo (same file system), every
file and the folder are fsynced, then the folder is renamed into place, all
under an exclusive lock on ``<zoo>/.lock`` (:func:`skdarts._files.file_lock`):
a reader sees an entry whole or not at all, and concurrent writers
serialise. Reads take no lock and write nothing, so a read-only zoo (the
shipped one) never gets a lock file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._files import file_lock, fsync_dir, publish
from ._entry import ZooEntry, load_supernet, save_supernet
from ._format import (
    _NAME_RE,
    _OLD_PREFIX,
    _TMP_PREFIX,
    SCHEMA_VERSION,
    WEIGHTS_FILE,
    ZooEntryError,
    ZooKeyError,
    _check_name,
    _embedding_tag,
    _flatten_signatures,
    _json_default,
    _read_entry_doc,
    _signature_items,
    _state_tensors,
    _write_entry_folder,
)

# The supernet (torch) and ._pretrain / ._mixture (sklearn, skorch) are imported by the
# methods that store or train a network: listing a zoo reads JSON only.
if TYPE_CHECKING:
    from ..supernet import Supernet

__all__ = [
    "SCHEMA_VERSION",
    "SupernetZoo",
    "ZooEntry",
    "ZooEntryError",
    "ZooKeyError",
    "load_supernet",
    "save_supernet",
]


# --------------------------------------------------------------------------


class SupernetZoo:
    """A folder of pretrained supernets (entries), safe to share between processes.

    Parameters
    ----------
    path : str or os.PathLike
        The zoo's folder; created if absent (unless ``read_only``).
    read_only : bool, default=False
        Refuse every write. A zoo in a folder without write permission is
        read-only too.

    Notes
    -----
    Entries are folders of safetensors and JSON (see :mod:`skdarts.zoo`);
    nothing is ever pickled. ``list(zoo)`` / iteration give entry names
    (sorted), ``zoo[name]`` a verified :class:`ZooEntry`. A damaged entry
    raises :class:`ZooEntryError` when read and affects no other entry.

    Examples
    --------
    >>> import tempfile
    >>> from skdarts.supernet import Supernet
    >>> zoo = SupernetZoo(tempfile.mkdtemp())
    >>> _ = zoo.add("a", Supernet(init_channels=2, n_cells=1, n_nodes=1),
    ...             metadata={"note": "untrained"})
    >>> "a" in zoo, len(zoo), list(zoo)
    (True, 1, ['a'])
    >>> zoo["a"].provenance["note"]
    'untrained'
    >>> zoo.remove("a"); len(zoo)
    0
    """

    def __init__(self, path, *, read_only: bool = False):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(
                f"path must be a str or os.PathLike naming a folder; got "
                f"{type(path).__name__}."
            )
        self.path = Path(path)
        self.read_only = bool(read_only)
        if self.path.exists():
            if not self.path.is_dir():
                raise NotADirectoryError(
                    f"zoo path {os.fspath(self.path)!r} exists and is not a folder."
                )
        elif self.read_only:
            raise FileNotFoundError(
                f"no zoo at {os.fspath(self.path)!r} (opened read-only, so it is not "
                "created)."
            )
        else:
            try:
                self.path.mkdir(parents=True)
            except FileExistsError:
                pass
            except PermissionError as exc:
                raise PermissionError(
                    f"cannot create the zoo folder {os.fspath(self.path)!r}: {exc}"
                ) from None

    @classmethod
    def default(cls) -> SupernetZoo:
        """The zoo shipped with skdarts (read-only).

        Entries pretrained on Fashion-MNIST, MNIST and OCR letters (and
        tasks derived from them) plus ``"multi"``, one supernet trained on
        all of them; see each entry's ``provenance``. Its configuration is
        :class:`~skdarts.SupernetSearchClassifier`'s default.

        Examples
        --------
        >>> zoo = SupernetZoo.default()
        >>> "multi" in zoo
        True
        """
        path = Path(__file__).resolve().parents[1] / "zoo_data"
        if not path.is_dir():
            raise FileNotFoundError(
                f"the default zoo is missing from this installation ({path}); "
                "rebuild it with scripts/build_default_zoo.py."
            )
        return cls(path, read_only=True)

    # -- reading ---------------------------------------------------------------

    def _names(self) -> list[str]:
        try:
            children = list(os.scandir(self.path))
        except FileNotFoundError:
            return []
        return sorted(
            c.name
            for c in children
            if c.is_dir() and not c.name.startswith(".") and _NAME_RE.match(c.name)
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def keys(self) -> list[str]:
        """Entry names, sorted."""
        return self._names()

    def __len__(self) -> int:
        return len(self._names())

    def _present(self, name: str) -> bool:
        """Whether entry ``name`` exists, seeing through an overwrite.

        An overwrite moves the old folder aside (``.old-<name>-*``) and then
        renames the new one into place: between the two renames the entry is
        briefly absent. A reader that finds it absent while such a folder
        exists waits (up to 2 s) for the new one instead of reporting the
        entry missing.
        """
        folder = self.path / name
        if folder.is_dir():
            return True
        deadline = time.monotonic() + 2.0
        aside = f"{_OLD_PREFIX}{name}-*"
        while time.monotonic() < deadline and any(self.path.glob(aside)):
            time.sleep(0.002)
            if folder.is_dir():
                return True
        return folder.is_dir()

    def __contains__(self, name) -> bool:
        return (
            isinstance(name, str) and bool(_NAME_RE.match(name)) and self._present(name)
        )

    def __getitem__(self, name: str) -> ZooEntry:
        _check_name(name)
        folder = self.path / name
        if not self._present(name):
            raise ZooKeyError(
                f"no entry {name!r} in the zoo at {os.fspath(self.path)!r}; its "
                f"entries are {self._names()}."
            )
        return ZooEntry(folder, _read_entry_doc(folder, name), name=name)

    def get(self, name: str, default=None):
        """``zoo[name]``, or ``default`` when absent (damage still raises)."""
        return self[name] if name in self else default

    def entries(self, on_error: str = "raise") -> Iterator[ZooEntry]:
        """Iterate over the entries themselves.

        Parameters
        ----------
        on_error : {"raise", "warn", "skip"}, default="raise"
            What a damaged entry does: raise :class:`ZooEntryError`, or be
            skipped with a warning or silently.
        """
        if on_error not in ("raise", "warn", "skip"):
            raise ValueError(
                f"on_error must be 'raise', 'warn' or 'skip'; got {on_error!r}."
            )
        for name in self._names():
            try:
                yield self[name]
            except ZooEntryError as exc:
                if on_error == "raise":
                    raise
                if on_error == "warn":
                    import warnings

                    warnings.warn(f"skipped: {exc}", RuntimeWarning, stacklevel=2)

    def __repr__(self) -> str:
        ro = ", read_only=True" if self.read_only else ""
        return f"SupernetZoo('{self.path}'{ro})"

    # -- writing ---------------------------------------------------------------

    def _check_writable(self) -> None:
        if self.read_only:
            raise PermissionError(
                f"the zoo at {os.fspath(self.path)!r} is read-only (opened with "
                "read_only=True, as SupernetZoo.default() is); open a SupernetZoo on "
                "a folder of your own to add entries."
            )
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise PermissionError(
                f"the zoo folder {os.fspath(self.path)!r} is not writable by this "
                "user; it can be read but entries cannot be added, changed or removed."
            )

    @contextlib.contextmanager
    def _locked(self):
        self._check_writable()
        with file_lock(self.path / ".lock"):
            # Holding the lock, no other writer is mid-write: any temporary
            # folder left is from a crashed writer.
            for child in self.path.iterdir():
                if child.name.startswith(_TMP_PREFIX):
                    shutil.rmtree(child, ignore_errors=True)
            yield

    def _write(self, name, tensors, config, provenance, signatures, overwrite):
        with self._locked():
            self._write_locked(
                name, tensors, config, provenance, signatures, overwrite=overwrite
            )
        return self[name]

    def _write_locked(
        self, name, tensors, config, provenance, signatures, *, overwrite, **kwargs
    ) -> None:
        """Write entry ``name`` (the caller holds the zoo's lock)."""
        target = self.path / name
        if target.exists() and not overwrite:
            raise FileExistsError(
                f"the zoo at {os.fspath(self.path)!r} already has an entry "
                f"{name!r}; pass overwrite=True to replace it."
            )
        tmp = self.path / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            _write_entry_folder(
                tmp, name, tensors, config, provenance, signatures, **kwargs
            )
            publish(tmp, target, overwrite=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def add(
        self,
        name: str,
        supernet: Supernet,
        *,
        metadata: dict | None = None,
        signatures: Mapping[str, tuple[dict[str, np.ndarray], dict]] | None = None,
        overwrite: bool = False,
    ) -> ZooEntry:
        """Store ``supernet`` as entry ``name`` (atomically, under the zoo's lock).

        Parameters
        ----------
        name : str
            Letters, digits, ``_ . + -``; starts with a letter or digit.
        supernet : Supernet
        metadata : dict, optional
            JSON-serialisable provenance (``entry.provenance``).
        signatures : mapping, optional
            ``{source: (arrays, meta)}`` dataset signatures.
        overwrite : bool, default=False
            Replace an existing entry of that name.

        Returns
        -------
        ZooEntry
        """
        from ..supernet import Supernet

        _check_name(name)
        if not isinstance(supernet, Supernet):
            raise TypeError(
                "supernet must be a skdarts.supernet.Supernet; got "
                f"{type(supernet).__name__}."
            )
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(
                f"metadata must be a dict or None; got {type(metadata).__name__}."
            )
        # Fail on unserialisable metadata before touching the disk.
        json.dumps(dict(metadata or {}), default=_json_default)
        return self._write(
            name,
            _state_tensors(supernet),
            supernet.config(),
            dict(metadata or {}),
            signatures,
            overwrite,
        )

    def set_signatures(
        self,
        name: str,
        signatures: Mapping[str, tuple[dict[str, np.ndarray], dict] | list],
        *,
        keep_other_embeddings: bool = True,
    ) -> ZooEntry:
        """Atomically store these dataset signatures in entry ``name``.

        The entry is rewritten whole (a new folder renamed into place, under
        the zoo's lock), but its weights file is not: it is hard-linked into
        the new folder (copied byte for byte where the file system has no
        hard links), so its bytes and checksum stay exactly as they were.
        Provenance and creation time are kept.

        Parameters
        ----------
        name : str
        signatures : mapping
            ``{source: (arrays, meta)}``, or ``{source: [(arrays, meta),
            ...]}`` with one pair per embedding (as
            :func:`skdarts.similarity.signature_fn` returns them).
        keep_other_embeddings : bool, default=True
            Keep the stored signatures of every embedding ``signatures`` has
            none of: adding the ``"supernet"`` signatures of an entry keeps its
            ``"pixels"`` ones. The stored signatures of the embeddings given
            are replaced (all of them, whatever their sources). False: the
            entry keeps exactly ``signatures``.

        Returns
        -------
        ZooEntry

        Examples
        --------
        >>> import tempfile
        >>> from sklearn.datasets import load_digits
        >>> from skdarts.similarity import signature_fn
        >>> from skdarts.supernet import Supernet
        >>> X, y = load_digits(return_X_y=True)
        >>> zoo = SupernetZoo(tempfile.mkdtemp())
        >>> pixels = signature_fn(X[:100], y[:100], embedding="pixels")
        >>> entry = zoo.add("a", Supernet(init_channels=2, n_cells=1, n_nodes=1),
        ...                 signatures={"d": pixels})
        >>> sha = entry.metadata["files"]["weights.safetensors"]
        >>> learned = signature_fn(X[:100], y[:100], embedding="supernet")
        >>> entry = zoo.set_signatures("a", {"d": learned})
        >>> sorted(entry.signature_arrays())
        ['d', 'd@supernet']
        >>> list(entry.signature_arrays(embedding="supernet"))
        ['d']
        >>> entry.metadata["files"]["weights.safetensors"] == sha
        True
        """
        _check_name(name)
        if not isinstance(keep_other_embeddings, bool):
            raise TypeError(
                "keep_other_embeddings must be True or False; got "
                f"{keep_other_embeddings!r}."
            )
        items = _signature_items(signatures)
        _flatten_signatures(items)  # validate before touching the entry
        with self._locked():
            entry = self[name]  # read under the lock: no concurrent update is lost
            if keep_other_embeddings:
                given = {_embedding_tag(meta) for _, _, meta in items}
                doc = entry.metadata.get("signatures") or {}
                for key, (arrays, meta) in entry.signature_arrays().items():
                    if _embedding_tag(meta) not in given:
                        items.append((doc[key].get("source", key), arrays, meta))
            self._write_locked(
                name,
                None,
                entry.config,
                entry.metadata.get("provenance", {}),
                items,
                overwrite=True,
                weights=(
                    entry.path / WEIGHTS_FILE,
                    entry.metadata["files"][WEIGHTS_FILE],
                ),
                created=entry.metadata.get("created"),
            )
        return self[name]

    def remove(self, name: str) -> None:
        """Delete entry ``name`` (damaged or not)."""
        _check_name(name)
        with self._locked():
            folder = self.path / name
            if not folder.is_dir():
                raise ZooKeyError(
                    f"no entry {name!r} in the zoo at {os.fspath(self.path)!r}; its "
                    f"entries are {self._names()}."
                )
            trash = self.path / f"{_OLD_PREFIX}{name}-{uuid.uuid4().hex}"
            os.rename(folder, trash)
            fsync_dir(self.path)
            shutil.rmtree(trash, ignore_errors=True)

    # -- pretraining ---------------------------------------------

    def pretrain(self, datasets, **kwargs) -> list[ZooEntry]:
        """Pretrain one supernet per source dataset and add each as an entry.

        See :func:`skdarts.zoo.pretrain` for the parameters.
        """
        from ._pretrain import pretrain

        return pretrain(self, datasets, **kwargs)

    def pretrain_mixture(self, datasets, name: str = "multi", **kwargs) -> ZooEntry:
        """Pretrain one supernet on several sources together; add it as ``name``.

        See :func:`skdarts.zoo.pretrain_mixture` for the parameters.
        """
        from ._mixture import pretrain_mixture

        return pretrain_mixture(self, datasets, name=name, **kwargs)
