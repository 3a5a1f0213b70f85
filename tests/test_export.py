"""Export of the derived network (skdarts.export): round trips, atomicity, damage.

Real exports re-loaded by their own runtimes (torch, TorchScript, onnxruntime).
"""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from _tiny import tiny
from sklearn.datasets import load_digits

from skdarts import SupernetSearchClassifier, load_exported

TINY = tiny(max_epochs=2)


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(return_X_y=True)
    keep = y < 3
    return X[keep][:60].astype(np.float64), y[keep][:60]


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return SupernetSearchClassifier(**TINY).fit(X, y)


def _images(X):
    return torch.tensor(X.reshape(-1, 1, 8, 8), dtype=torch.float32)


def test_export_safetensors_round_trip(fitted, data, tmp_path):
    X, _ = data
    path = fitted.export(tmp_path / "model")
    assert sorted(p.name for p in path.iterdir()) == ["model.json", "model.safetensors"]
    model = load_exported(path)
    assert isinstance(model, torch.nn.Module) and not model.training
    assert model.classes == fitted.classes_.tolist()
    assert tuple(model.image_shape) == fitted.image_shape_
    assert model.metadata["network"]["genotype"] == fitted.genotype_.to_dict()
    with torch.no_grad():
        out = model(_images(X)).numpy()
    np.testing.assert_allclose(out, fitted.predict_proba(X), atol=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_export_torchscript_round_trip(fitted, data, tmp_path):
    X, _ = data
    path = fitted.export(tmp_path / "model.pt", format="torchscript")
    plain = torch.jit.load(str(path))  # no skdarts involved
    with torch.no_grad():
        out = plain(_images(X)).numpy()
    np.testing.assert_allclose(out, fitted.predict_proba(X), atol=1e-6)
    assert load_exported(path).classes == fitted.classes_.tolist()


def test_export_onnx_round_trip(fitted, data, tmp_path):
    pytest.importorskip("onnx", reason="onnx not installed (extra 'export')")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    X, _ = data
    path = fitted.export(tmp_path / "model.onnx", format="onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"images": _images(X).numpy()})
    np.testing.assert_allclose(out, fitted.predict_proba(X), atol=1e-6)


def test_export_refuses_overwrite_and_is_atomic(fitted, tmp_path, monkeypatch):
    import safetensors.torch

    path = fitted.export(tmp_path / "model")
    before = (path / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        fitted.export(path)
    single = fitted.export(tmp_path / "m.pt", format="torchscript")
    with pytest.raises(FileExistsError):
        fitted.export(single, format="torchscript")

    def broken_save(tensors, filename, *args, **kwargs):
        with open(filename, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        fitted.export(path, overwrite=True)
    with pytest.raises(OSError, match="disk full"):
        fitted.export(tmp_path / "new")
    monkeypatch.undo()
    # The old export is untouched, the new one absent, no temporary left over.
    assert (path / "model.safetensors").read_bytes() == before
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "model"]
    fitted.export(path, overwrite=True)
    load_exported(path)


def test_export_damage_and_bad_arguments(fitted, tmp_path):
    path = fitted.export(tmp_path / "model")
    weights = path / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"Checksum mismatch.*model\.safetensors"):
        load_exported(path)
    with pytest.raises(ValueError, match="format must be one of"):
        fitted.export(tmp_path / "x", format="pickle")
    no_final = SupernetSearchClassifier(**TINY | {"final_epochs": 0})
    no_final.__dict__.update(fitted.__dict__)
    no_final.final_net_ = None
    with pytest.raises(ValueError, match="final_epochs >= 1"):
        no_final.export(tmp_path / "y")
    buf = io.BytesIO(b"garbage")
    (tmp_path / "garbage.bin").write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="neither"):
        load_exported(tmp_path / "garbage.bin")
    assert not os.path.exists(tmp_path / "x")
