"""The entry format: file names, schema version, validation, writing and verifying.

An entry is a folder ``<zoo>/<name>/`` holding

* ``weights.safetensors`` - the supernet's ``state_dict()`` (stem, cells,
  alphas and the head it was trained with);
* ``signatures.safetensors`` - optional: the arrays of each source's dataset
  signatures;
* ``entry.json`` - schema version, the supernet's ``config()``, provenance,
  the signatures' meta dicts and the sha256 of every other file.

Signatures. ``entry.json["signatures"]`` maps a key to ``{"arrays": {array
name: key in signatures.safetensors}, "meta": {...}}``; each signature's meta
records the feature map it was computed with (``meta["embedding"]``). A
source may have one signature per embedding (``skdarts.similarity.
EMBEDDINGS``). A signature of the pixel embedding (or one whose meta names
none) is keyed by its source's name, exactly as every entry written before
there were several embeddings; a signature of another embedding is keyed
``"<source>@<embedding>"`` (e.g. ``"mnist@supernet"``) and its part also
records ``"source"`` and ``"embedding"``. So entries written before keep
their meaning unchanged, and a reader that knows one embedding only sees the
others as extra sources of a feature map it does not use.

Every file is written through :mod:`skdarts._files` (fsynced); readers verify
every checksum before trusting an entry.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import safetensors.numpy

from .._files import (
    UnsafeFileError,
    atomic_write_bytes,
    fsync_dir,
    fsync_file,
    read_regular_file,
    sha256_bytes,
    sha256_file,
)
from .._limits import MAX_JSON_BYTES, check_config, loads_json
from .._version import __version__

if TYPE_CHECKING:  # torch and the supernet load only when weights are handled
    import torch

    from ..supernet import Supernet

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


#: The embedding of signatures stored under their source's own name (the
#: only ones before there were several embeddings); the others are stored as
#: ``"<source>@<embedding>"``.
_LEGACY_EMBEDDING = "pixels"


def _signature_pairs(source, value) -> list:
    """The ``(arrays, meta)`` pairs given for ``source``: one pair, or a list."""
    pairs = value if isinstance(value, list) and value else [value]
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise TypeError(
                f"signatures[{source!r}] must be a pair (arrays: dict[str, ndarray], "
                "meta: dict), or a non-empty list of such pairs (one per embedding); "
                f"got {type(pair).__name__}."
            )
        arrays, meta = pair
        if not isinstance(arrays, Mapping) or not isinstance(meta, Mapping):
            raise TypeError(
                f"signatures[{source!r}] must be (dict of arrays, dict); got "
                f"({type(arrays).__name__}, {type(meta).__name__})."
            )
    return pairs


def _embedding_tag(meta: Mapping) -> str:
    """The name under which a signature's embedding is stored (module notes).

    The public name of a known embedding (``skdarts.similarity.EMBEDDINGS``),
    else the name its meta records; a signature that records none counts as
    the legacy one's.
    """
    embedding = meta.get("embedding")
    name = embedding.get("name") if isinstance(embedding, Mapping) else None
    if not isinstance(name, str):
        return _LEGACY_EMBEDDING
    from ..similarity import EMBEDDINGS  # only where signatures are written

    for tag, constants in EMBEDDINGS.items():
        if constants["name"] == name:
            return tag
    return name


def _signature_items(signatures) -> list[tuple[str, Mapping, Mapping]]:
    """``[(source, arrays, meta), ...]`` of a ``{source: pair or [pairs]}`` map."""
    if signatures is None:
        return []
    if not isinstance(signatures, Mapping):
        raise TypeError(
            "signatures must be a mapping {source name: (arrays, meta)} (or "
            "{source name: [(arrays, meta), ...]}, one pair per embedding); got "
            f"{type(signatures).__name__}."
        )
    items = []
    for source, value in signatures.items():
        if not isinstance(source, str):
            raise TypeError(
                f"signatures: source names must be str; got {type(source).__name__} "
                f"{source!r}."
            )
        items.extend((source, a, m) for a, m in _signature_pairs(source, value))
    return items


def _flatten_signatures(signatures) -> tuple[dict[str, np.ndarray], dict]:
    """Arrays keyed ``"<i>/<array>"`` for safetensors, and the JSON part.

    ``signatures``: ``{source: (arrays, meta) or [(arrays, meta), ...]}``, or
    the list :func:`_signature_items` makes of one. A signature of the legacy
    embedding is stored under its source's name, exactly as before there were
    several; one of another embedding under ``"<source>@<embedding>"``, its
    part recording ``source`` and ``embedding``.
    """
    items = signatures if isinstance(signatures, list) else None
    if items is None:
        items = _signature_items(signatures)
    slots = {}
    for source, arrays, meta in items:
        tag = _embedding_tag(meta)
        key = source if tag == _LEGACY_EMBEDDING else f"{source}@{tag}"
        if key in slots:
            raise ValueError(
                f"signatures: two signatures would be stored as {key!r} (source "
                f"{source!r}, embedding {tag!r}); give one per source and embedding."
            )
        slots[key] = (source, tag, arrays, meta)
    flat, doc = {}, {}
    for i, key in enumerate(sorted(slots)):
        source, tag, arrays, meta = slots[key]
        keys = {}
        for aname, arr in arrays.items():
            fkey = f"{i}/{aname}"
            flat[fkey] = np.ascontiguousarray(np.asarray(arr))
            if flat[fkey].dtype == object:
                raise TypeError(
                    f"signatures[{source!r}][{aname!r}] must be a numeric array; got "
                    "dtype object."
                )
            keys[str(aname)] = fkey
        part = {"arrays": keys, "meta": dict(meta)}
        if key != source:
            part.update(source=source, embedding=tag)
        doc[key] = part
    return flat, doc


def _write_entry_folder(
    folder: Path,
    name: str,
    tensors: dict[str, torch.Tensor] | None,
    config: dict,
    provenance: dict | None,
    signatures,
    *,
    weights: tuple[Path, str] | None = None,
    created: str | None = None,
) -> None:
    """Write a complete entry into the (new, empty) ``folder``; fsync all.

    ``weights``: ``(path, sha256)`` of an existing weights file to use as it
    is, instead of serialising ``tensors``: hard-linked into ``folder`` (so
    its bytes are never rewritten), or copied byte for byte where the file
    system has no hard links; verified against ``sha256`` either way.
    ``created``: the entry's creation time to keep (default: now).
    """
    files = {}
    if weights is None:
        from safetensors.torch import save as save_tensors  # imports torch

        blob = save_tensors(tensors)
        atomic_write_bytes(folder / WEIGHTS_FILE, blob)
        files[WEIGHTS_FILE] = sha256_bytes(blob)
    else:
        source, digest = weights
        target = folder / WEIGHTS_FILE
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
            fsync_file(target)
        if sha256_file(target) != digest:
            raise ZooEntryError(
                f"zoo entry {name!r}: its weights file {os.fspath(source)!r} changed "
                "while the entry was being rewritten (its checksum no longer "
                "matches entry.json); nothing was written."
            )
        files[WEIGHTS_FILE] = digest
    flat, sig_doc = _flatten_signatures(signatures)
    if flat:
        blob = safetensors.numpy.save(flat)
        atomic_write_bytes(folder / SIGNATURES_FILE, blob)
        files[SIGNATURES_FILE] = sha256_bytes(blob)
    doc = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "config": dict(config),
        "in_channels": int(config["in_channels"]),
        "provenance": dict(provenance or {}),
        "signatures": sig_doc,
        "created": created
        or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "skdarts_version": __version__,
        "files": files,
    }
    text = json.dumps(doc, indent=1, sort_keys=True, default=_json_default)
    atomic_write_bytes(folder / ENTRY_JSON, text.encode("utf-8"))
    fsync_dir(folder)


class _Changed(ZooEntryError):
    """The entry's files and JSON disagree: damaged, or being replaced now."""


#: Times a read that met an entry mid-replacement starts again.
_READ_ATTEMPTS = 20


def _read_json(folder: Path, where: str) -> tuple[bytes, dict]:
    try:
        raw = read_regular_file(folder, ENTRY_JSON, MAX_JSON_BYTES)
    except FileNotFoundError:
        raise _Changed(
            f"{where} is damaged: its file {ENTRY_JSON!r} is missing."
        ) from None
    except UnsafeFileError as exc:
        raise ZooEntryError(f"{where} is damaged: {exc}") from None
    try:
        doc = loads_json(raw, f"its file {ENTRY_JSON!r}")
    except ValueError as exc:
        raise ZooEntryError(f"{where} is damaged: {exc}") from None
    return raw, doc


def _check_doc(doc, where: str) -> dict:
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
        or not all(isinstance(v, str) for v in files.values())
    ):
        raise ZooEntryError(
            f"{where} is damaged: {ENTRY_JSON!r} lacks its 'files' checksums or "
            "its 'config'."
        )
    for key in ("provenance", "signatures"):
        if not isinstance(doc.get(key, {}), dict):
            raise ZooEntryError(
                f"{where} is damaged: {key!r} in {ENTRY_JSON!r} is not an object."
            )
    try:
        check_config(doc["config"], f"{where}: {ENTRY_JSON!r}")
    except ValueError as exc:
        raise ZooEntryError(str(exc)) from None
    return doc


def _read_snapshot(
    folder: Path, name: str, wanted=None
) -> tuple[dict, dict[str, bytes]]:
    """The entry's JSON and the files ``wanted`` (all: None), from one version.

    A writer replacing the entry renames its folder aside and the new one
    in: a read can meet the old JSON and the new files, or no folder at all.
    Both look like damage, so the read starts again while ``entry.json``
    keeps changing under it; damage that stays is reported.
    """
    where = f"zoo entry {name!r} ({folder})"
    missing = 0
    for attempt in range(_READ_ATTEMPTS):
        raw = None
        try:
            raw, doc = _read_json(folder, where)
            doc = _check_doc(doc, where)
            names = doc["files"] if wanted is None else wanted
            data = {
                fname: _read_verified(folder, fname, doc["files"].get(fname), where)
                for fname in names
            }
            return doc, data
        except _Changed as exc:
            try:
                now = read_regular_file(folder, ENTRY_JSON, MAX_JSON_BYTES)
            except (OSError, ValueError):
                now = None
            # The same JSON as the one read: the files are damaged, not being
            # replaced. No JSON: between a writer's two renames (brief).
            missing = missing + 1 if now is None else 0
            if (
                attempt == _READ_ATTEMPTS - 1
                or (now is not None and now == raw)
                or missing >= 3
            ):
                raise ZooEntryError(str(exc)) from None
            time.sleep(0.002 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def _read_entry_doc(folder: Path, name: str) -> dict:
    """Parse and verify an entry folder's JSON and checksums."""
    return _read_snapshot(folder, name)[0]


def _read_verified(folder: Path, fname: str, digest, where: str) -> bytes:
    if not isinstance(digest, str):
        raise ZooEntryError(
            f"{where} is damaged: entry.json records no checksum of {fname!r}."
        )
    try:
        data = read_regular_file(folder, fname)
    except FileNotFoundError:
        raise _Changed(f"{where} is damaged: its file {fname!r} is missing.") from None
    except UnsafeFileError as exc:
        raise ZooEntryError(f"{where} is damaged: {exc}") from None
    if sha256_bytes(data) != digest:
        raise _Changed(
            f"{where} is damaged: the checksum of its file {fname!r} does not match "
            "the one recorded in entry.json (the file was changed or truncated)."
        )
    return data


# --------------------------------------------------------------------------
# Entry
# --------------------------------------------------------------------------
