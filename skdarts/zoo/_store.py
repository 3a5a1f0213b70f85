"""The on-disk store: entries of safetensors weights and JSON, never pickle.

An entry is a folder ``<zoo>/<name>/`` holding

* ``weights.safetensors`` - the supernet's ``state_dict()`` (stem, cells,
  alphas and the head it was trained with);
* ``signatures.safetensors`` - optional: the arrays of each source's dataset
  signature;
* ``entry.json`` - schema version, the supernet's ``config()``, provenance,
  the signatures' meta dicts and the sha256 of every other file.

Writes go to a temporary folder inside the zoo (same file system), every
file and the folder are fsynced, then the folder is renamed into place, all
under an exclusive ``fcntl.flock`` on ``<zoo>/.lock``: a reader sees an entry
whole or not at all, and concurrent writers serialise. Reads take no lock.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import safetensors.numpy
import safetensors.torch
import torch

from ..supernet import Supernet

try:  # POSIX; elsewhere writers are not guarded against each other.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = [
    "SCHEMA_VERSION",
    "SupernetZoo",
    "ZooEntry",
    "ZooEntryError",
    "ZooKeyError",
    "load_supernet",
    "save_supernet",
]

SCHEMA_VERSION = 1
FORMAT = "skdarts.zoo.entry"
ENTRY_JSON = "entry.json"
WEIGHTS_FILE = "weights.safetensors"
SIGNATURES_FILE = "signatures.safetensors"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")
_TMP_PREFIX = ".tmp-"
_OLD_PREFIX = ".old-"


class ZooEntryError(ValueError):
    """A zoo entry that cannot be read: damaged, incomplete or foreign."""


class ZooKeyError(KeyError):
    """No entry of that name in the zoo."""

    def __str__(self) -> str:  # KeyError would print the message's repr
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------
# Low-level helpers
# --------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system allows it
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path, os.PathLike)):
        return os.fspath(obj)
    if isinstance(obj, (tuple, set, frozenset)):
        return list(obj)
    raise TypeError(
        f"zoo metadata must be JSON-serialisable (dicts, lists, strings, numbers, "
        f"numpy scalars/arrays); got an object of type {type(obj).__name__}: "
        f"{obj!r:.80}."
    )


def _check_name(name) -> str:
    if not isinstance(name, str):
        raise TypeError(
            f"a zoo entry name must be a str; got {type(name).__name__} {name!r}."
        )
    if not _NAME_RE.match(name):
        raise ValueError(
            f"invalid zoo entry name {name!r}: use 1-128 characters among letters, "
            "digits and '_', '.', '+', '-', starting with a letter or a digit."
        )
    return name


def _state_tensors(module: Supernet) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or non-contiguous storage: own copies.
    return {
        k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()
    }


def _flatten_signatures(signatures) -> tuple[dict[str, np.ndarray], dict]:
    """Arrays keyed ``"<i>/<array>"`` for safetensors, and the JSON part."""
    if signatures is None:
        return {}, {}
    if not isinstance(signatures, Mapping):
        raise TypeError(
            "signatures must be a mapping {source name: (arrays, meta)}; got "
            f"{type(signatures).__name__}."
        )
    flat, doc = {}, {}
    for i, (source, value) in enumerate(sorted(signatures.items())):
        if not isinstance(source, str):
            raise TypeError(
                f"signatures: source names must be str; got {type(source).__name__} "
                f"{source!r}."
            )
        if not (isinstance(value, tuple) and len(value) == 2):
            raise TypeError(
                f"signatures[{source!r}] must be a pair (arrays: dict[str, ndarray], "
                f"meta: dict); got {type(value).__name__}."
            )
        arrays, meta = value
        if not isinstance(arrays, Mapping) or not isinstance(meta, Mapping):
            raise TypeError(
                f"signatures[{source!r}] must be (dict of arrays, dict); got "
                f"({type(arrays).__name__}, {type(meta).__name__})."
            )
        keys = {}
        for aname, arr in arrays.items():
            key = f"{i}/{aname}"
            flat[key] = np.ascontiguousarray(np.asarray(arr))
            if flat[key].dtype == object:
                raise TypeError(
                    f"signatures[{source!r}][{aname!r}] must be a numeric array; got "
                    "dtype object."
                )
            keys[str(aname)] = key
        doc[source] = {"arrays": keys, "meta": dict(meta)}
    return flat, doc


def _write_entry_folder(
    folder: Path,
    name: str,
    tensors: dict[str, torch.Tensor],
    config: dict,
    provenance: dict | None,
    signatures,
) -> None:
    """Write a complete entry into the (new, empty) ``folder``; fsync all."""
    from .. import __version__

    files = {}
    blob = safetensors.torch.save(tensors)
    _write_file(folder / WEIGHTS_FILE, blob)
    files[WEIGHTS_FILE] = _sha256(blob)
    flat, sig_doc = _flatten_signatures(signatures)
    if flat:
        blob = safetensors.numpy.save(flat)
        _write_file(folder / SIGNATURES_FILE, blob)
        files[SIGNATURES_FILE] = _sha256(blob)
    doc = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "config": dict(config),
        "in_channels": int(config["in_channels"]),
        "provenance": dict(provenance or {}),
        "signatures": sig_doc,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "skdarts_version": __version__,
        "files": files,
    }
    text = json.dumps(doc, indent=1, sort_keys=True, default=_json_default)
    _write_file(folder / ENTRY_JSON, text.encode("utf-8"))
    _fsync_dir(folder)


def _read_entry_doc(folder: Path, name: str) -> dict:
    """Parse and verify an entry folder's JSON and checksums."""
    jpath = folder / ENTRY_JSON
    where = f"zoo entry {name!r} ({folder})"
    try:
        raw = jpath.read_bytes()
    except FileNotFoundError:
        raise ZooEntryError(
            f"{where} is damaged: its file {ENTRY_JSON!r} is missing."
        ) from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ZooEntryError(
            f"{where} is damaged: its file {ENTRY_JSON!r} is not valid JSON ({exc})."
        ) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ZooEntryError(
            f"{where}: {ENTRY_JSON!r} is not a skdarts zoo entry (expected "
            f"format {FORMAT!r})."
        )
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise ZooEntryError(
                f"{where} was written with zoo schema version {version}; this "
                f"skdarts reads version {SCHEMA_VERSION}. Upgrade skdarts "
                "(pip install -U skdarts) to read it."
            )
        raise ZooEntryError(
            f"{where} has an unknown zoo schema version {version!r} in "
            f"{ENTRY_JSON!r}; this skdarts reads version {SCHEMA_VERSION}."
        )
    files = doc.get("files")
    if (
        not isinstance(files, dict)
        or WEIGHTS_FILE not in files
        or not isinstance(doc.get("config"), dict)
    ):
        raise ZooEntryError(
            f"{where} is damaged: {ENTRY_JSON!r} lacks its 'files' checksums or "
            "its 'config'."
        )
    for fname, digest in files.items():
        _read_verified(folder, fname, digest, where)
    return doc


def _read_verified(folder: Path, fname: str, digest: str, where: str) -> bytes:
    path = folder / fname
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ZooEntryError(
            f"{where} is damaged: its file {fname!r} is missing."
        ) from None
    if _sha256(data) != digest:
        raise ZooEntryError(
            f"{where} is damaged: the checksum of its file {fname!r} does not match "
            "the one recorded in entry.json (the file was changed or truncated)."
        )
    return data


# --------------------------------------------------------------------------
# Entry
# --------------------------------------------------------------------------


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

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The stored ``state_dict`` (checksum verified on this read)."""
        digest = self.metadata["files"][WEIGHTS_FILE]
        data = _read_verified(self.path, WEIGHTS_FILE, digest, self._where())
        try:
            return safetensors.torch.load(data)
        except Exception as exc:
            raise ZooEntryError(
                f"{self._where()} is damaged: {WEIGHTS_FILE!r} cannot be read ({exc})."
            ) from None

    def load_supernet(self) -> Supernet:
        """Rebuild the stored :class:`~skdarts.supernet.Supernet` (its own head)."""
        try:
            module = Supernet(**self.config)
        except (TypeError, ValueError) as exc:
            raise ZooEntryError(
                f"{self._where()}: its config {self.config} does not build a "
                f"Supernet in this skdarts ({exc})."
            ) from None
        try:
            module.load_state_dict(self.state_dict(), strict=True)
        except RuntimeError as exc:
            raise ZooEntryError(
                f"{self._where()}: the stored weights do not fit its config "
                f"{self.config} ({str(exc).splitlines()[0]})."
            ) from None
        return module

    def signature_arrays(self) -> dict[str, tuple[dict[str, np.ndarray], dict]]:
        """Per source: ``(arrays, meta)`` exactly as stored; ``{}`` when none."""
        sig_doc = self.metadata.get("signatures") or {}
        if not sig_doc:
            return {}
        digest = self.metadata["files"].get(SIGNATURES_FILE)
        if digest is None:
            raise ZooEntryError(
                f"{self._where()} is damaged: entry.json lists signatures but no "
                f"{SIGNATURES_FILE!r}."
            )
        data = _read_verified(self.path, SIGNATURES_FILE, digest, self._where())
        flat = safetensors.numpy.load(data)
        out = {}
        for source, part in sig_doc.items():
            arrays = {aname: flat[key] for aname, key in part["arrays"].items()}
            out[source] = (arrays, copy.deepcopy(part["meta"]))
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
        _swap_into_place(tmp, path)
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


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Rename the finished ``tmp`` folder to ``target``, replacing it if present.

    A folder cannot be renamed over a non-empty one: the old entry is first
    renamed aside (``.old-*``, removed afterwards), so at every moment either
    the old or the new entry is complete on disk.
    """
    old = None
    if target.exists():
        old = target.parent / f"{_OLD_PREFIX}{target.name}-{uuid.uuid4().hex}"
        os.rename(target, old)
    os.rename(tmp, target)
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------
# Zoo
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

    def __contains__(self, name) -> bool:
        return (
            isinstance(name, str)
            and bool(_NAME_RE.match(name))
            and (self.path / name).is_dir()
        )

    def __getitem__(self, name: str) -> ZooEntry:
        _check_name(name)
        folder = self.path / name
        if not folder.is_dir():
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
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            # Holding the lock, no other writer is mid-write: any temporary
            # folder left is from a crashed writer.
            for child in self.path.iterdir():
                if child.name.startswith(_TMP_PREFIX):
                    shutil.rmtree(child, ignore_errors=True)
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _write(self, name, tensors, config, provenance, signatures, overwrite):
        with self._locked():
            target = self.path / name
            if target.exists() and not overwrite:
                raise FileExistsError(
                    f"the zoo at {os.fspath(self.path)!r} already has an entry "
                    f"{name!r}; pass overwrite=True to replace it."
                )
            tmp = self.path / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
            tmp.mkdir()
            try:
                _write_entry_folder(tmp, name, tensors, config, provenance, signatures)
                _swap_into_place(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return self[name]

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
        self, name: str, signatures: Mapping[str, tuple[dict[str, np.ndarray], dict]]
    ) -> ZooEntry:
        """Atomically rewrite entry ``name`` with these dataset signatures."""
        entry = self[name]
        flat, _ = _flatten_signatures(signatures)  # validate before the rewrite
        del flat
        return self._write(
            name,
            entry.state_dict(),
            entry.config,
            entry.metadata.get("provenance", {}),
            signatures,
            overwrite=True,
        )

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
            _fsync_dir(self.path)
            shutil.rmtree(trash, ignore_errors=True)

    # -- pretraining (see _pretrain) ---------------------------------------------

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
        from ._pretrain import pretrain_mixture

        return pretrain_mixture(self, datasets, name=name, **kwargs)
