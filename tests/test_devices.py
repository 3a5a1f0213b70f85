"""Device paths that only a GPU would exercise, checked on the CPU.

No GPU is needed: where the code only passes a device along, a mocked
``torch.cuda`` says what it would do; where data must follow a module, the
module lives on torch's ``meta`` device (a second device every CPU build
has) and asserts that its inputs arrive there.
"""

from __future__ import annotations

import pytest
import torch
from _tiny import tiny
from sklearn.datasets import load_digits

from skdarts import SupernetSearchClassifier
from skdarts.zoo import SupernetZoo

NO_CUDA = pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks a machine without CUDA"
)


def _digits(n=60):
    X, y = load_digits(return_X_y=True)
    return X[:n], y[:n]


class _Stop(Exception):
    """Raised by a spy to end a fit once it has seen what it checks."""


@pytest.fixture
def fake_cuda(monkeypatch):
    """``torch.cuda`` as on a machine with 2 GPUs, current device 0."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


@pytest.fixture
def forked(monkeypatch):
    """Record the ``devices`` each ``fork_rng`` gets, then stop the fit."""
    seen = []

    def spy(devices=None, *args, **kwargs):
        seen.append(list(devices) if devices is not None else None)
        raise _Stop

    monkeypatch.setattr(torch.random, "fork_rng", spy)
    return seen


# -- device parameters --------------------------------------------------------


@NO_CUDA
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_fit_on_an_absent_gpu_names_the_device_parameter(device):
    X, y = _digits()
    with pytest.raises(ValueError, match=rf"device='{device}'.*'auto' or 'cpu'"):
        SupernetSearchClassifier(**tiny(device=device)).fit(X, y)


def test_fit_on_a_gpu_index_past_the_last_gpu_is_refused(fake_cuda):
    X, y = _digits()
    with pytest.raises(ValueError, match=r"device='cuda:2'.*2 CUDA device"):
        SupernetSearchClassifier(**tiny(device="cuda:2")).fit(X, y)


@NO_CUDA
def test_pretrain_on_an_absent_gpu_names_the_device_parameter(tmp_path):
    X, y = _digits()
    zoo = SupernetZoo(tmp_path)
    with pytest.raises(ValueError, match=r"device='cuda'"):
        zoo.pretrain({"d": (X, y)}, verbose=0, device="cuda", **_zoo_tiny())
    assert list(zoo) == []


def _zoo_tiny():
    return dict(init_channels=2, n_cells=1, n_nodes=1, max_epochs=1)


# -- the random state a fit keeps to itself ------------------------------------


@pytest.mark.parametrize(("device", "expected"), [("cuda", [0]), ("cuda:1", [1])])
def test_fit_forks_the_random_state_of_the_gpu_it_runs_on(
    fake_cuda, forked, device, expected
):
    # torch.manual_seed inside the fit reseeds the GPU's generator too: the
    # fork must cover the GPU the fit uses, or the caller's state is lost.
    X, y = _digits()
    with pytest.raises(_Stop):
        SupernetSearchClassifier(**tiny(device=device)).fit(X, y)
    assert forked == [expected]


@pytest.mark.parametrize(("device", "expected"), [("cuda", [0]), ("cuda:1", [1])])
def test_pretrain_forks_the_random_state_of_the_gpu_it_runs_on(
    fake_cuda, forked, tmp_path, device, expected
):
    X, y = _digits()
    with pytest.raises(_Stop):
        SupernetZoo(tmp_path).pretrain(
            {"d": (X, y)}, verbose=0, device=device, **_zoo_tiny()
        )
    assert forked == [expected]


def test_a_cpu_fit_forks_no_gpu_state(fake_cuda, forked):
    X, y = _digits()
    with pytest.raises(_Stop):
        SupernetSearchClassifier(**tiny(device="cpu")).fit(X, y)
    assert forked == [[]]


# -- export --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["safetensors", "torchscript"])
def test_export_leaves_the_callers_model_where_it_is(monkeypatch, tmp_path, fmt):
    from skdarts import DerivedNetwork, Supernet, load_exported
    from skdarts.export import export_network

    torch.manual_seed(0)
    network = DerivedNetwork.from_supernet(
        Supernet("s2", 1, 3, init_channels=2, n_cells=1, n_nodes=1)
    ).train()
    before = {k: (v.data_ptr(), v.clone()) for k, v in network.state_dict().items()}
    # On a GPU, .cpu() gives new storage; on the CPU it is a no-op that would
    # hide a move of the caller's model. Make it behave as on a GPU.
    monkeypatch.setattr(torch.Tensor, "cpu", lambda self, *a, **k: self.clone())
    out = export_network(network, tmp_path / "m", format=fmt)
    monkeypatch.undo()
    after = network.state_dict()
    for key, (ptr, value) in before.items():
        assert after[key].data_ptr() == ptr, f"{key} was moved"
        assert torch.equal(after[key], value)
    assert network.training
    x = torch.rand(2, 1, 8, 8)
    expected = torch.softmax(network.eval()(x), dim=1)
    torch.testing.assert_close(load_exported(out)(x), expected)
