"""The file services: atomic writes, publishing, checksums, the writers' lock."""

import hashlib
import threading
import time

import pytest

from skdarts._files import (
    atomic_write_bytes,
    atomic_write_text,
    atomic_writer,
    file_lock,
    publish,
    sha256_bytes,
    sha256_file,
)


def test_atomic_writer_replaces_only_when_complete(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")
    with pytest.raises(RuntimeError), atomic_writer(path) as f:
        f.write(b"half of the new")
        raise RuntimeError("crash mid-write")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]  # no temp left
    atomic_write_text(path, "néw")
    assert path.read_text(encoding="utf-8") == "néw"


def test_publish_refuses_to_clobber_and_swaps_folders(tmp_path):
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "a").write_text("2")
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "a").write_text("1")
    with pytest.raises(FileExistsError):
        publish(tmp_path / "new", tmp_path / "target", overwrite=False)
    assert (tmp_path / "target" / "a").read_text() == "1"
    publish(tmp_path / "new", tmp_path / "target", overwrite=True)
    assert (tmp_path / "target" / "a").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]


def test_checksums_agree_with_hashlib(tmp_path):
    data = bytes(range(256)) * 5000  # more than one read block
    path = tmp_path / "d"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_bytes(data) == expected
    assert sha256_file(path) == expected


def test_file_lock_serialises_writers(tmp_path):
    lock, inside, overlaps = tmp_path / ".lock", [], []

    def writer():
        with file_lock(lock):
            inside.append(1)
            if len(inside) > 1:
                overlaps.append(1)
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlaps
