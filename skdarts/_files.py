"""Files written whole or not at all, their checksums, and a lock between writers.

The one place where skdarts writes files that others read: the zoo, exports,
checkpoints and the command line's models all go through it.

* :func:`atomic_writer` / :func:`atomic_write_bytes` / :func:`atomic_write_text`
  - write a temporary file in the target's folder (same file system), flush
  and fsync it, then :func:`os.replace` it onto the target: a reader sees the
  old file or the new one, never a part. The temporary file is removed when
  the write fails.
* :func:`publish` - move a finished temporary file *or folder* into place,
  refusing to clobber unless asked (folders cannot be renamed over non-empty
  folders, so the old one is first renamed aside).
* :func:`sha256_bytes` / :func:`sha256_file` - hex digests.
* :func:`read_regular_file` - read a file named inside a folder, refusing
  names that leave it and anything but a regular file (links, devices,
  FIFOs), so that a crafted name can neither escape nor hang the reader.
* :func:`file_lock` - an exclusive lock between processes on a lock file
  (the :mod:`filelock` package: ``fcntl.flock`` on POSIX, ``msvcrt`` on
  Windows). Only writers take it; reading never creates a lock file.

Layer: bottom (services); imports nothing from skdarts.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import filelock

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_writer",
    "file_lock",
    "fsync_dir",
    "fsync_file",
    "publish",
    "read_regular_file",
    "sha256_bytes",
    "sha256_file",
]

_OLD_PREFIX = ".old-"


class UnsafeFileError(ValueError):
    """A file name that leaves its folder, or a file that is not a regular file."""


def _check_plain_name(name, folder) -> str:
    if not isinstance(name, str):
        raise UnsafeFileError(
            f"a file name in {os.fspath(folder)!r} must be a str; got "
            f"{type(name).__name__} {name!r:.80}."
        )
    seps = {"/", "\\", os.sep, os.altsep or "/"}
    if (
        not name
        or name in (".", "..")
        or "\x00" in name
        or any(sep in name for sep in seps)
        or os.path.isabs(name)
    ):
        raise UnsafeFileError(
            f"the file name {name!r:.80} is not a plain name inside "
            f"{os.fspath(folder)!r}: names with path separators, '..', or absolute "
            "paths are refused."
        )
    return name


def read_regular_file(
    folder: str | os.PathLike, name: str, max_bytes: int | None = None
) -> bytes:
    """Read the regular file ``name`` directly inside ``folder``.

    ``name`` must be a plain file name (no separator, not ``..``, not
    absolute); the file must be a regular file (checked with ``os.lstat``
    before opening and ``os.fstat`` after, so a symbolic link, device or FIFO
    is refused, never read or waited on), of at most ``max_bytes`` bytes.

    Parameters
    ----------
    folder : str or os.PathLike
    name : str
    max_bytes : int, optional
        Largest size accepted.

    Returns
    -------
    bytes

    Raises
    ------
    UnsafeFileError
        (a ``ValueError``) for a name or a file refused as above.
    FileNotFoundError
        When there is no such file.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> atomic_write_bytes(os.path.join(d, "a.bin"), b"abc")
    >>> read_regular_file(d, "a.bin")
    b'abc'
    >>> read_regular_file(d, "../a.bin")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    skdarts._files.UnsafeFileError: the file name '../a.bin' is not a plain name...
    """
    _check_plain_name(name, folder)
    path = os.path.join(os.fspath(folder), name)
    what = f"{path!r}"

    def check(st) -> None:
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFileError(
                f"{what} is not a regular file (a link, folder, device or FIFO); "
                "only regular files are read."
            )
        if max_bytes is not None and st.st_size > max_bytes:
            raise UnsafeFileError(
                f"{what} holds {st.st_size} bytes, more than the {max_bytes} "
                "accepted for it."
            )

    check(os.lstat(path))
    # O_NOFOLLOW/O_NONBLOCK: a file swapped for a link or FIFO after the lstat
    # is refused by the fstat below instead of being followed or hanging open.
    flags = os.O_RDONLY
    for flag in ("O_NOFOLLOW", "O_NONBLOCK", "O_BINARY"):
        flags |= getattr(os, flag, 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise UnsafeFileError(f"{what} cannot be opened as a file ({exc}).") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        check(st)
        return f.read(st.st_size)


def fsync_file(path: str | os.PathLike) -> None:
    """Flush ``path``'s content to disk (``os.fsync``)."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (new names, renames) to disk where allowed."""
    with contextlib.suppress(OSError):  # not every file system allows it
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open ``path`` for writing in binary, replacing it only once complete.

    Yields a file object on a temporary file next to ``path``; on a clean
    exit the file is flushed, fsynced and renamed onto ``path``
    (:func:`os.replace`), on an exception it is deleted and ``path`` is left
    as it was. The parent folder is created if needed.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.

    Yields
    ------
    file object
        Opened ``"wb"``.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "out.bin")
    >>> with atomic_writer(path) as f:
    ...     _ = f.write(b"abc")
    >>> open(path, "rb").read()
    b'abc'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`).

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.bin")
    >>> atomic_write_bytes(path, b"\\x00\\x01")
    >>> os.path.getsize(path)
    2
    """
    with atomic_writer(path) as f:
        f.write(data)


def atomic_write_text(
    path: str | os.PathLike, text: str, encoding: str = "utf-8"
) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_writer`).

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.json")
    >>> atomic_write_text(path, '{"a": 1}')
    >>> open(path).read()
    '{"a": 1}'
    """
    atomic_write_bytes(path, text.encode(encoding))


def publish(tmp: str | os.PathLike, target: str | os.PathLike, overwrite: bool) -> None:
    """Move the finished ``tmp`` (a file or a folder) to ``target`` by renames.

    At every moment ``target`` is either absent, the old content or the new
    one, whole. Without ``overwrite`` a ``target`` that exists (even one that
    appeared since the caller checked) raises :class:`FileExistsError` and
    is left untouched.

    Parameters
    ----------
    tmp : str or os.PathLike
        A file or folder on the same file system as ``target``.
    target : str or os.PathLike
    overwrite : bool
        Replace an existing ``target``.

    Examples
    --------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> tmp = os.path.join(d, ".new")
    >>> os.mkdir(tmp)
    >>> publish(tmp, os.path.join(d, "entry"), overwrite=False)
    >>> sorted(os.listdir(d))
    ['entry']
    """
    tmp, target = Path(tmp), Path(target)
    if not os.path.lexists(target):
        if tmp.is_dir():
            os.rename(tmp, target)
        else:
            # link() fails if a concurrent writer created ``target`` meanwhile.
            os.link(tmp, target)
            os.unlink(tmp)
    elif not overwrite:
        raise FileExistsError(
            f"{os.fspath(target)!r} already exists (it may have appeared while "
            "writing); not replaced."
        )
    elif tmp.is_dir() or target.is_dir():
        # A folder cannot be renamed over a non-empty one: the old one goes
        # aside first, so either the old or the new content is complete.
        old = target.parent / f"{_OLD_PREFIX}{target.name}-{uuid.uuid4().hex}"
        os.rename(target, old)
        os.rename(tmp, target)
        fsync_dir(target.parent)
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
        return
    else:
        os.replace(tmp, target)
    fsync_dir(target.parent)


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``.

    Examples
    --------
    >>> sha256_bytes(b"")[:16]
    'e3b0c44298fc1c14'
    """
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of the file at ``path``, read in blocks of 1 MiB.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "empty")
    >>> atomic_write_bytes(path, b"")
    >>> sha256_file(path) == sha256_bytes(b"")
    True
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if absent).

    Serialises writers across processes (and across threads holding
    different lock objects). Readers are meant not to take it.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), ".lock")
    >>> with file_lock(path):
    ...     os.path.exists(path)
    True
    """
    with filelock.FileLock(os.fspath(path)):
        yield
