"""Integrity of the supernet zoo under attack and accident: real files, real processes.

Written against the zoo contract only (``SupernetZoo(path)``, ``zoo.add``,
``zoo[name]``, ``list(zoo)``, ``entry.metadata``,
``entry.signature_arrays()``). Which files make up an entry is found by
watching what ``add`` creates, not by assuming a layout.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

zoo_module = pytest.importorskip("skdarts.zoo", reason="skdarts.zoo not merged yet")
SupernetZoo = zoo_module.SupernetZoo

from skdarts import Supernet  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _supernet(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(init_channels=2, n_cells=1, n_nodes=1) | kw
    return Supernet("s2", 1, 3, **cfg)


def _signatures(seed=0):
    rng = np.random.default_rng(seed)
    return {"digits": ({"means": rng.normal(size=(3, 4))}, {"n": 30, "seed": seed})}


def _files(root: Path) -> dict[str, float]:
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for p in root.rglob("*")
        if p.is_file()
    }


def _add(zoo, root: Path, name: str, seed=0) -> list[Path]:
    """Add an entry; return the files it created (those naming it, if any do)."""
    before = _files(root)
    zoo.add(
        name, _supernet(seed), metadata={"seed": seed}, signatures=_signatures(seed)
    )
    new = [root / p for p in _files(root) if p not in before]
    named = [p for p in new if name in str(p.relative_to(root))]
    assert new, f"zoo.add({name!r}) created no file under {root}"
    return named or new


_ACCESSORS = (
    "load_supernet",
    "supernet",
    "load",
    "to_supernet",
    "get_supernet",
    "build_supernet",
    "module",
)


def _load_supernet(entry, fresh=None):
    """The entry's supernet through whichever accessor the zoo offers.

    Falls back to the estimators' prior resolution (the contract's way to use
    an entry), which needs a ``fresh`` supernet of the entry's configuration.
    """
    for attr in _ACCESSORS:
        value = getattr(entry, attr, None)
        if isinstance(value, torch.nn.Module):
            return value
        if callable(value):
            out = value()
            if isinstance(out, torch.nn.Module):
                return out
    if fresh is not None:
        from skdarts.estimators._prior import resolve_prior

        module, _ = resolve_prior(entry, fresh)
        return module
    return None


def _read_all(zoo, name, fresh=None):
    """Everything a user can read from an entry (raises if any part is bad)."""
    entry = zoo[name]
    meta = entry.metadata
    sigs = entry.signature_arrays()
    net = _load_supernet(entry, _supernet() if fresh is None else fresh)
    return meta, sigs, net


def _assert_intact(zoo, name, seed):
    meta, sigs, net = _read_all(zoo, name)
    assert json.dumps(meta, default=str).find(str(seed)) >= 0
    arrays, sig_meta = sigs["digits"]
    ref_arrays, ref_meta = _signatures(seed)["digits"]
    np.testing.assert_array_equal(arrays["means"], ref_arrays["means"])
    assert sig_meta == ref_meta
    if net is not None:
        ref = _supernet(seed).state_dict()
        for k, v in ref.items():
            torch.testing.assert_close(net.state_dict()[k].cpu(), v)


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


# -- loading never executes code --------------------------------------------------


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        # Unpickling this calls open(marker, "w"): it creates the marker file.
        return (open, (self.marker, "w"))


def test_planted_pickle_is_never_executed(tmp_path):
    root = tmp_path / "zoo"
    zoo = SupernetZoo(root)
    _add(zoo, root, "bystander", seed=1)
    victim_files = _add(zoo, root, "victim_entry", seed=2)
    marker = tmp_path / "PWNED"
    payload = pickle.dumps(_Payload(marker))
    # Sanity: the payload does run when unpickled.
    pickle.loads(payload)
    assert marker.exists()
    marker.unlink()
    planted = [p for p in victim_files if p.suffix not in (".json",)] or victim_files
    for p in planted:
        p.write_bytes(payload)
    fresh = SupernetZoo(root)
    with pytest.raises(Exception) as info:
        _read_all(fresh, "victim_entry")
    assert not marker.exists(), "loading a zoo entry executed pickled code"
    assert "victim_entry" in str(info.value)
    _assert_intact(fresh, "bystander", seed=1)


# -- damage ---------------------------------------------------------------------------


def test_flipped_byte_is_caught_and_named(tmp_path):
    root = tmp_path / "zoo"
    zoo = SupernetZoo(root)
    _add(zoo, root, "bystander", seed=1)
    files = _add(zoo, root, "victim_entry", seed=2)
    target = max(
        (p for p in files if p.suffix != ".json"), key=lambda p: p.stat().st_size
    )
    raw = bytearray(target.read_bytes())
    raw[len(raw) * 2 // 3] ^= 0x01
    target.write_bytes(bytes(raw))
    fresh = SupernetZoo(root)
    with pytest.raises(Exception) as info:
        _read_all(fresh, "victim_entry")
    msg = str(info.value)
    assert "victim_entry" in msg and target.name in msg, msg
    assert "checksum" in msg.lower() or "sha" in msg.lower(), msg
    _assert_intact(fresh, "bystander", seed=1)


def test_other_schema_version_asks_to_upgrade(tmp_path):
    root = tmp_path / "zoo"
    zoo = SupernetZoo(root)
    files = _add(zoo, root, "future_entry", seed=3)
    changed = False
    for p in (f for f in files if f.suffix == ".json"):
        data = json.loads(p.read_text())
        for key, value in list(data.items()):
            if "version" in key.lower() and isinstance(value, int):
                data[key] = value + 100
                changed = True
        p.write_text(json.dumps(data))
    if not changed:
        pytest.skip("no integer '*version*' field in the entry's JSON files")
    with pytest.raises(Exception) as info:
        _read_all(SupernetZoo(root), "future_entry")
    msg = str(info.value).lower()
    assert "version" in msg and "upgrade" in msg, msg


# -- processes ----------------------------------------------------------------------

_WRITER = """
import sys
from skdarts import Supernet
from skdarts.zoo import SupernetZoo

zoo = SupernetZoo(sys.argv[1])
net = Supernet("darts", 3, 10, init_channels=16, n_cells=8, n_nodes=4)
i = 0
while True:
    zoo.add(f"big_{i}", net, metadata={"i": i})
    print(i, flush=True)
    i += 1
"""


def test_sigkill_mid_write_leaves_zoo_readable(tmp_path):
    root = tmp_path / "zoo"
    zoo = SupernetZoo(root)
    _add(zoo, root, "keep", seed=5)
    script = _script(tmp_path, "zoo_child_writer.py", _WRITER)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        first = proc.stdout.readline()
        assert first.strip() == "0", proc.stderr.read()
        t0 = time.perf_counter()
        proc.stdout.readline()
        per_add = time.perf_counter() - t0
        # Kill in the middle of the next add.
        time.sleep(per_add / 2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    fresh = SupernetZoo(root)
    names = list(fresh)
    assert "keep" in names and "big_0" in names and "big_1" in names
    _assert_intact(fresh, "keep", seed=5)
    big = Supernet("darts", 3, 10, init_channels=16, n_cells=8, n_nodes=4)
    for name in names:  # no half entry is listed: each one reads whole
        _read_all(fresh, name, big if name.startswith("big_") else None)
    # The zoo takes new entries after the crash (no stale lock).
    adder = _script(
        tmp_path,
        "zoo_child_adder.py",
        """
        import sys
        from skdarts import Supernet
        from skdarts.zoo import SupernetZoo
        SupernetZoo(sys.argv[1]).add("after_crash", Supernet("s2", 1, 3,
            init_channels=2, n_cells=1, n_nodes=1))
        """,
    )
    done = subprocess.run(
        [sys.executable, str(adder), str(root)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "after_crash" in list(SupernetZoo(root))


_CONCURRENT = """
import os, sys, time
import torch
from skdarts import Supernet
from skdarts.zoo import SupernetZoo

root, tag, go = sys.argv[1], sys.argv[2], sys.argv[3]
zoo = SupernetZoo(root)
nets = [Supernet("s2", 1, 3, init_channels=4, n_cells=2, n_nodes=2) for _ in range(3)]
while not os.path.exists(go):
    time.sleep(0.01)
for i, net in enumerate(nets):
    zoo.add(f"{tag}_{i}", net, metadata={"writer": tag})
"""


def test_two_processes_add_at_once(tmp_path):
    root = tmp_path / "zoo"
    SupernetZoo(root)
    script = _script(tmp_path, "zoo_child_concurrent.py", _CONCURRENT)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(root), tag, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for tag in ("left", "right")
    ]
    time.sleep(0.5)
    go.touch()
    errors = []
    for p in procs:
        _, err = p.communicate(timeout=240)
        if p.returncode != 0:
            errors.append(err)
    assert not errors, errors
    names = list(SupernetZoo(root))
    expected = {f"{t}_{i}" for t in ("left", "right") for i in range(3)}
    assert expected <= set(names), names
    fresh = SupernetZoo(root)
    mid = Supernet("s2", 1, 3, init_channels=4, n_cells=2, n_nodes=2)
    for name in expected:
        meta, _, _ = _read_all(fresh, name, mid)
        assert name.split("_")[0] in json.dumps(meta)


_READ_ONLY = """
import json, sys
from skdarts import Supernet
from skdarts.zoo import SupernetZoo

zoo = SupernetZoo(sys.argv[1])
out = {"names": list(zoo)}
entry = zoo["keep"]
out["metadata"] = entry.metadata
out["signature_keys"] = sorted(entry.signature_arrays())
try:
    zoo.add("new", Supernet("s2", 1, 3, init_channels=2, n_cells=1, n_nodes=1))
    out["error"] = None
except Exception as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out, default=str))
"""


def _set_writable(root: Path, writable: bool):
    for p in [root, *root.rglob("*")]:
        mode = p.stat().st_mode
        bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
        p.chmod(mode | stat.S_IWUSR if writable else mode & ~bits)


def test_read_only_zoo_reads_and_refuses_writes(tmp_path):
    prefix = []
    if os.geteuid() == 0:
        # root ignores permission bits: drop the capabilities that bypass them.
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a zoo read-only")
        prefix = [
            setpriv,
            "--bounding-set",
            "-dac_override,-dac_read_search,-fowner",
            "--inh-caps",
            "-all",
            "--",
        ]
    base = Path(tempfile.mkdtemp(dir=tmp_path))
    root = base / "zoo"
    zoo = SupernetZoo(root)
    _add(zoo, root, "keep", seed=5)
    before = _files(root)
    script = _script(tmp_path, "zoo_child_read_only.py", _READ_ONLY)
    _set_writable(root, False)
    try:
        done = subprocess.run(
            [*prefix, sys.executable, str(script), str(root)],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=120,
        )
    finally:
        _set_writable(root, True)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["names"] == ["keep"]
    assert out["signature_keys"] == ["digits"]
    assert out["error"] is not None, "a read-only zoo accepted a write"
    msg = out["error"].lower()
    assert "read-only" in msg or "read only" in msg or "permission" in msg, msg
    assert str(root) in out["error"] or "zoo" in msg, msg
    assert _files(root) == before
