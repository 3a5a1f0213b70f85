"""Device paths that only a GPU would exercise, checked on the CPU.

No GPU is needed: where the code only passes a device along, a mocked
``torch.cuda`` says what it would do; where data must follow a module, the
module lives on torch's ``meta`` device (a second device every CPU build
has) and asserts that its inputs arrive there.
"""

from __future__ import annotations

import numpy as np
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


def test_fit_on_an_unknown_device_names_the_device_parameter():
    X, y = _digits()
    with pytest.raises(ValueError, match=r"device must be 'auto' or a torch device"):
        SupernetSearchClassifier(**tiny(device="gpu")).fit(X, y)


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


# -- callbacks that run the module themselves ----------------------------------


class _Elsewhere(torch.nn.Module):
    """A module on another device than the data (the meta device here).

    Like a convolution on a GPU fed a CPU tensor, it refuses inputs that are
    not on its device; its outputs are CPU tensors so that the callback can
    go on.
    """

    def __init__(self, n_features=4, n_classes=3):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1, device="meta"))
        self.head = torch.nn.Linear(n_features, n_classes)
        self.seen = []

    def _take(self, x):
        self.seen.append(x.device)
        if x.device != self.anchor.device:
            raise RuntimeError(
                f"Input type ({x.device}) and weight type ({self.anchor.device}) "
                "should be the same"
            )
        gen = torch.Generator().manual_seed(len(self.seen))
        return gen, len(x)

    def features(self, x):
        gen, n = self._take(x)
        return torch.randn(n, self.head.in_features, generator=gen)

    def forward(self, x):
        gen, n = self._take(x)
        return torch.randn(n, self.head.out_features, generator=gen)


def _accelerated_like_net():
    """A skorch net with device=None (as under Accelerate), module elsewhere."""
    from skorch import NeuralNetClassifier

    net = NeuralNetClassifier(
        _Elsewhere, device=None, batch_size=16, classes=np.arange(3), verbose=0
    )
    return net.initialize()


def _images(n=40):
    X, y = _digits(n)
    return (X.reshape(-1, 1, 8, 8) / 16).astype(np.float32), (y % 3).astype(np.int64)


def test_head_probe_feeds_the_module_on_its_device():
    from skdarts.probe import HeadProbe

    net = _accelerated_like_net()
    X, y = _images()
    head_before = net.module_.head.weight.detach().clone()
    probe = HeadProbe()
    probe.on_train_begin(net, X=X, y=y)
    assert set(net.module_.seen) == {torch.device("meta")}
    assert not torch.equal(net.module_.head.weight, head_before)
    assert 0 <= probe._pending["probe_acc"] <= 1


def test_heldout_accuracy_feeds_the_module_on_its_device():
    from skdarts.evaluation import HeldOutAccuracy

    net = _accelerated_like_net()
    X, y = _images()
    cb = HeldOutAccuracy(X, y, batch_size=16).initialize()
    net.history.new_epoch()
    net.history.record("dur", 0.5)
    cb.on_epoch_begin(net)
    cb.on_epoch_end(net)
    assert set(net.module_.seen) == {torch.device("meta")}
    assert 0 <= net.history[-1, "heldout_acc"] <= 1


def _warm_probe_worker(out_dir: str) -> None:
    """One of 2 processes: a warm-started, head-probed search on Accelerate."""
    torch.set_num_threads(1)
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    acc = Accelerator(cpu=True)
    X, y = _digits(160)
    params = tiny(final_epochs=0, batch_size=32)
    source = SupernetSearchClassifier(**params).fit(X[:80], y[:80])
    clf = SupernetSearchClassifier(**params, warm_start=source, accelerator=acc)
    clf.fit(X[80:], y[80:] % 3)
    torch.save(
        {
            "probe_acc": clf.net_.history[0, "probe_acc"],
            "proba": clf.predict_proba(X[80:]),
        },
        f"{out_dir}/rank{acc.process_index}.pt",
    )


def test_head_probe_under_ddp_fits_one_head_for_all_processes(tmp_path):
    # DDP hides the supernet's features() and an accelerated loader shards
    # the data: the probe must use the bare supernet and the whole split.
    pytest.importorskip("accelerate")
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this build")
    from test_distributed import _launch_cpu_processes

    _launch_cpu_processes(_warm_probe_worker, (str(tmp_path),))
    r0, r1 = (torch.load(tmp_path / f"rank{i}.pt", weights_only=False) for i in (0, 1))
    assert r0["probe_acc"] == r1["probe_acc"]
    np.testing.assert_array_equal(r0["proba"], r1["proba"])


# -- search checkpoints ----------------------------------------------------------


def _search_net(device):
    from skdarts.search import SearchNet
    from skdarts.supernet import Supernet

    module = Supernet("s2", 1, 3, init_channels=2, n_cells=1, n_nodes=1)
    return SearchNet(module=module, device=device, verbose=0).initialize()


def test_checkpoint_keeps_the_gpu_generators_under_accelerate(monkeypatch, tmp_path):
    # Accelerate leaves device=None while the search runs on the GPU, whose
    # generator draws the SmoothDARTS noise: resuming must restore it.
    from skdarts.search import SearchCheckpoint

    net = _search_net(device=None)
    states = [torch.arange(4, dtype=torch.uint8), torch.arange(4, 8, dtype=torch.uint8)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: list(states))
    saved = SearchCheckpoint(tmp_path).initialize().state(net)["rng_cuda"]
    assert [s.tolist() for s in saved] == [s.tolist() for s in states]


def test_checkpoint_from_a_machine_with_more_gpus_resumes(monkeypatch, tmp_path):
    from skdarts.search import SearchCheckpoint

    net = _search_net(device="cpu")
    checkpoint = SearchCheckpoint(tmp_path).initialize()
    state = checkpoint.state(net)
    state["rng_cuda"] = [torch.full((4,), i, dtype=torch.uint8) for i in range(2)]
    restored = []

    def set_rng_state(new_state, device="cuda"):
        index = torch.device(device).index if not isinstance(device, int) else device
        if index is not None and index >= 1:  # this machine has one GPU
            raise RuntimeError("CUDA error: invalid device ordinal")
        restored.append((index, new_state[0].item()))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_rng_state)
    monkeypatch.setattr(torch.cuda.random, "set_rng_state", set_rng_state)
    checkpoint.restore(net, state)
    checkpoint.on_train_begin(net)
    assert restored == [(0, 0)]


# -- GPU tensors as input ------------------------------------------------------------


class _GpuTensor(torch.Tensor):
    """A tensor that, like one on a GPU, refuses NumPy until copied to the host."""

    _MESSAGE = (
        "can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to "
        "copy the tensor to host memory first."
    )

    def __array__(self, *args, **kwargs):
        raise TypeError(self._MESSAGE)

    def numpy(self, *args, **kwargs):
        raise TypeError(self._MESSAGE)

    def tolist(self):
        raise TypeError(self._MESSAGE)

    def cpu(self, *args, **kwargs):
        return torch.Tensor.cpu(self).as_subclass(torch.Tensor)


def _on_gpu(a):
    return torch.as_tensor(np.asarray(a)).as_subclass(_GpuTensor)


def test_gpu_like_tensor_refuses_numpy():
    with pytest.raises(TypeError, match="host memory"):
        np.asarray(_on_gpu([1, 2]))


def test_estimator_takes_gpu_tensors():
    X, y = _digits()
    clf = SupernetSearchClassifier(**tiny()).fit(_on_gpu(X), _on_gpu(y))
    reference = SupernetSearchClassifier(**tiny()).fit(X, y)
    np.testing.assert_array_equal(
        clf.predict_proba(_on_gpu(X)), reference.predict_proba(X)
    )
    assert clf.score(_on_gpu(X), y) == reference.score(X, y)


def test_signatures_and_selector_take_gpu_tensors():
    from _fakezoo import FakeZoo

    from skdarts import OTSourceSelector
    from skdarts.similarity import compute_signature, signature_fn

    X, y = _digits(200)
    a = compute_signature(_on_gpu(X), _on_gpu(y), random_state=0)
    b = compute_signature(X, y, random_state=0)
    np.testing.assert_array_equal(a.class_means, b.class_means)
    np.testing.assert_array_equal(a.labels, b.labels)
    zoo = FakeZoo({"d": {"d": signature_fn(X[:100], y[:100])}})
    selector = OTSourceSelector(zoo, random_state=0).fit(
        _on_gpu(X[100:]), _on_gpu(y[100:])
    )
    assert selector.selected_ == ["d"]
    np.testing.assert_array_equal(selector.transform(_on_gpu(X[100:])), X[100:])


def test_prepare_heldout_and_pretrain_take_gpu_tensors(tmp_path):
    from skdarts.evaluation import prepare_heldout

    X, y = _digits(80)
    images, labels = prepare_heldout(
        _on_gpu(X[:60]), _on_gpu(X[60:]), _on_gpu(y[:60]), _on_gpu(y[60:])
    )
    expected = prepare_heldout(X[:60], X[60:], y[:60], y[60:])
    np.testing.assert_array_equal(images, expected[0])
    np.testing.assert_array_equal(labels, expected[1])
    zoo = SupernetZoo(tmp_path)
    zoo.pretrain(
        {"d": (_on_gpu(X), _on_gpu(y % 3))}, verbose=0, random_state=0, **_zoo_tiny()
    )
    assert zoo["d"].config["n_classes"] == 3


# -- SmoothDARTS noise -------------------------------------------------------------


def test_perturbation_draws_from_a_cpu_generator_for_weights_elsewhere():
    # On a GPU, uniform_(generator=<CPU generator>) raises; the noise must
    # still come from the caller's generator and join the weights' device.
    from skdarts.search import perturb_arch_weights

    w = torch.full((3, 4), 0.25, device="meta")
    gen = torch.Generator().manual_seed(0)
    start = gen.get_state()
    (p,) = perturb_arch_weights([w], 0.1, generator=gen)
    assert p.device == w.device and p.shape == w.shape
    assert not torch.equal(gen.get_state(), start)  # the noise came from it


# -- the command line -------------------------------------------------------------


@pytest.fixture
def digits_npz(tmp_path):
    X, y = _digits(90)
    path = tmp_path / "digits.npz"
    np.savez(path, X=X.reshape(-1, 8, 8), y=y)
    return path


@NO_CUDA
@pytest.mark.parametrize(
    "command",
    [
        ["search", "{data}", "--scratch"],
        ["zoo", "build", "--zoo", "{zoo}", "{data}"],
        ["demo", "--quick"],
    ],
)
def test_cli_refuses_an_absent_gpu_before_any_work(command, digits_npz, capsys):
    from skdarts.cli import main

    zoo = digits_npz.parent / "zoo"
    argv = [a.format(data=digits_npz, zoo=zoo) for a in command]
    assert main([*argv, "--device", "cuda", "--verbose", "0"]) == 2
    captured = capsys.readouterr()
    assert "--device='cuda'" in captured.err and "\n" not in captured.err.strip()
    assert captured.out == "" and not zoo.exists()


def test_cli_search_trains_on_the_device_asked_for(digits_npz, fake_cuda, monkeypatch):
    from skdarts.cli import main

    asked = []

    def fit(self, X, y=None):
        asked.append(self.device)
        raise _Stop

    monkeypatch.setattr(SupernetSearchClassifier, "fit", fit)
    with pytest.raises(_Stop):
        main(["search", str(digits_npz), "--scratch", "--device", "cuda:1"])
    assert asked == ["cuda:1"]
