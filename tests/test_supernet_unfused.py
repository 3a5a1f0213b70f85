"""Depthwise-pointwise stages run fused or unfused, with the same results.

Each convolution stage of a cell runs either as one dense convolution whose
kernel is the product of the depthwise and pointwise kernels, or as the two
convolutions batched over the edges (``skdarts.supernet.plan._unfused`` chooses).
Forcing each way on small modules, outputs, gradients and running statistics
must equal the straightforward DARTS supernet's in float64.
"""

import copy

import pytest
import torch

import skdarts.supernet.kernels as kernels_module
import skdarts.supernet.plan as plan_module
from skdarts.supernet import Supernet
from skdarts.supernet.reference import reference_from_supernet

TINY = dict(in_channels=3, n_classes=5, init_channels=4, n_cells=3, n_nodes=4)


def _force(monkeypatch, unfused):
    monkeypatch.setattr(plan_module, "_unfused", lambda c, k, device, pixels: unfused)


def _net(space, seed, **options):
    torch.manual_seed(seed)
    net = Supernet(space, **{**TINY, **options}).double()
    with torch.no_grad():  # alphas away from uniform, so mixing errors show
        for a in net.arch_parameters():
            a.normal_()
    return net


def _run(module, x, y, training):
    module.train(training)
    module.zero_grad(set_to_none=True)
    out = module(x)
    torch.nn.functional.cross_entropy(out, y).backward()
    grads = [
        torch.zeros_like(p) if p.grad is None else p.grad.clone()
        for p in module.parameters()
    ]
    return out.detach(), grads


def _check(net, ref, training, size=(8, 8)):
    g = torch.Generator().manual_seed(7)
    for _ in range(2):  # the second step sees updated running statistics
        x = torch.randn(4, 3, *size, generator=g, dtype=torch.float64)
        y = torch.randint(0, 5, (4,), generator=g)
        out, grads = _run(net, x, y, training)
        out_ref, grads_ref = _run(ref, x, y, training)
        torch.testing.assert_close(out, out_ref, atol=1e-10, rtol=1e-8)
        assert len(grads) == len(grads_ref)
        for a, b in zip(grads, grads_ref):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)
    ours = net.state_dict()
    theirs = ref.state_dict()
    assert ours.keys() == theirs.keys()
    for k, v in theirs.items():
        torch.testing.assert_close(ours[k], v, atol=1e-10, rtol=0, msg=k)


def _unfused_calls(net, device="cpu", pixels=0):
    return sum(
        len(cell._layout.kernel_split(g, device, pixels)[1][2])
        for cell in net.cells
        for g in range(len(cell._layout.kernels))
    )


@pytest.mark.parametrize("unfused", [False, True])
@pytest.mark.parametrize("space", ["darts", "s3"])
@pytest.mark.parametrize("training", [True, False])
def test_forced_path_matches_reference(space, training, unfused, monkeypatch):
    _force(monkeypatch, unfused)
    net = _net(space, seed=1)
    assert net.cells[0].plans[0].n_in == 2  # a joint plan of both inputs
    assert net.cells[1].plans[0].n_in == 1  # and one plan per input
    n_calls = sum(len(k[2]) for c in net.cells for k in c._layout.kernels)
    assert n_calls > 0
    assert _unfused_calls(net) == (n_calls if unfused else 0)
    _check(net, reference_from_supernet(net).double(), training)


@pytest.mark.parametrize("training", [True, False])
def test_unfused_gpu_way_matches_reference(training, monkeypatch):
    """Contiguous (not channels-last) tensors, states in one grouped conv."""
    _force(monkeypatch, True)
    monkeypatch.setattr(kernels_module, "_CHANNELS_LAST_ON_CPU", False)
    monkeypatch.setattr(kernels_module, "_SPLIT_STATES_ON_CPU", False)
    net = _net("darts", seed=2)
    _check(net, reference_from_supernet(net).double(), training)


def test_mixed_paths_match_reference(monkeypatch):
    """Some stages fused, others not, in the same cell (3x3 vs 5x5)."""
    monkeypatch.setattr(plan_module, "_unfused", lambda c, k, device, pixels: k == 5)
    net = _net("darts", seed=3)
    layout = net.cells[0]._layout
    split = [layout.kernel_split(g, "cpu") for g in range(len(layout.kernels))]
    assert [bool(fused[2]) for fused, _ in split] == [True, False]
    assert [bool(unfused[2]) for _, unfused in split] == [False, True]
    _check(net, reference_from_supernet(net).double(), True)


@pytest.mark.parametrize("options", [{"partial_channels": 2}, {"checkpointing": True}])
def test_unfused_matches_fused_with_memory_savers(options, monkeypatch):
    _force(monkeypatch, False)
    fused = _net("darts", seed=4, init_channels=8, **options)
    assert _unfused_calls(fused) == 0  # the layout keeps its split
    _force(monkeypatch, True)
    unfused = Supernet(**fused.config()).double()
    unfused.load_state_dict(fused.state_dict())
    unfused.checkpointing = fused.checkpointing
    assert _unfused_calls(unfused) > 0 and _unfused_calls(fused) == 0
    _check(unfused, fused, True)
    _check(unfused, fused, False)


def test_bf16_autocast_unfused_stays_close(monkeypatch):
    _force(monkeypatch, True)
    net = _net("darts", seed=5).float()
    fast = copy.deepcopy(net)
    fast.amp = "bf16"
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    out, _ = _run(net, x, y, True)
    out_bf, grads = _run(fast, x, y, True)
    assert out_bf.dtype == torch.float32
    assert all(torch.isfinite(g).all() for g in grads)
    torch.testing.assert_close(out_bf, out, atol=0.15, rtol=0.1)


def test_rule_by_device():
    rule = plan_module._unfused
    # CPU: as measured, fused on narrow stages, unfused on wide ones.
    big, small = 64 * 8 * 8, 32 * 4 * 4  # batch x height x width
    assert not rule(16, 5, "cpu", big) and not rule(32, 3, "cpu", big)
    assert rule(32, 5, "cpu", big) and rule(64, 3, "cpu", big)
    assert not rule(64, 5, "cpu", small)
    # Elsewhere: by arithmetic (fused c*k*k against k*k + c multiply-adds).
    assert not rule(8, 3, "cuda", big) and not rule(16, 3, "cuda", small)
    assert rule(8, 5, "cuda", small) and rule(32, 3, "cuda", big)
    net = Supernet("darts", **{**TINY, "init_channels": 16})
    widths = [cell.c_op for cell in net.cells]
    assert widths == [16, 32, 64]
    assert _unfused_calls(net, "cpu", 4096) > 0  # from 32 channels 5x5
    assert _unfused_calls(net, "cpu", 512) == 0
    assert _unfused_calls(net, "cuda", 512) > _unfused_calls(net, "cpu", 4096)


def test_state_dict_unchanged():
    a = Supernet("darts", **{**TINY, "init_channels": 32})
    assert _unfused_calls(a, "cpu", 4096) > 0
    b = Supernet("darts", **TINY)
    assert [k for k in a.state_dict()] == [k for k in b.state_dict()]


def test_unfused_cell_traces_for_torch_compile(monkeypatch):
    """GPUs choose unfused stages, and there cells may be compiled."""
    from test_supernet_equivalence import assert_first_cell_traces

    _force(monkeypatch, True)
    assert_first_cell_traces(_net("darts", seed=6).float())


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize(("k", "dilation"), [(3, 1), (5, 1), (3, 2), (5, 2)])
def test_cropped_kernel_computes_the_same_convolution(k, dilation, size):
    g = torch.Generator().manual_seed(size * 10 + k + dilation)
    x = torch.randn(2, 3, size, size + 1, generator=g, dtype=torch.float64)
    w = torch.randn(4, 3, k, k, generator=g, dtype=torch.float64)
    padding = dilation * (k // 2)
    small, pad = kernels_module._crop_taps(w, x.shape[2:], padding, dilation)
    full = torch.nn.functional.conv2d(x, w, None, 1, padding, dilation)
    cropped = torch.nn.functional.conv2d(x, small, None, 1, pad, dilation)
    torch.testing.assert_close(cropped, full, atol=1e-12, rtol=0)
    # Only taps that meet no pixel go: the kept outer ones reach the image.
    for side, n in zip(range(2), x.shape[2:]):
        kept = small.shape[2 + side]
        reach = dilation * (kept // 2)
        assert reach < n or kept == 1
        if kept < k:
            assert reach + dilation >= n


def test_crop_cases():
    w = torch.zeros(8, 8, 5, 5)
    # A dilated 5x5 kernel on 4x4 inputs: 3x3 of its taps meet pixels.
    small, pad = kernels_module._crop_taps(w, (4, 4), 4, 2)
    assert small.shape[-2:] == (3, 3) and pad == (2, 2)
    # On 8x8 every tap does; on 2x2 a 5x5 kernel keeps its 3x3 centre.
    assert kernels_module._crop_taps(w, (8, 8), 4, 2) == (w, 4)
    small, pad = kernels_module._crop_taps(w, (2, 2), 2, 1)
    assert small.shape[-2:] == (3, 3) and pad == (1, 1)
    # A single pixel: the centre tap alone.
    small, pad = kernels_module._crop_taps(w, (1, 1), 4, 2)
    assert small.shape[-2:] == (1, 1) and pad == (0, 0)


@pytest.mark.parametrize("training", [True, False])
def test_cells_on_small_images_crop_and_match_reference(training, monkeypatch):
    """The last cells of an 8x8 input see 4x4 and 2x2: their fused kernels
    lose the taps that meet only padding, and the network is unchanged."""
    import skdarts.supernet.cell as cell_module

    crops = []

    def counting(w, size, padding, dilation):
        out = kernels_module._crop_taps(w, size, padding, dilation)
        crops.append(out[0].shape[-1] < w.shape[-1])
        return out

    monkeypatch.setattr(cell_module, "_crop_taps", counting)
    _force(monkeypatch, False)
    net = _net("darts", seed=8)
    _check(net, reference_from_supernet(net).double(), training)
    assert any(crops) and not all(crops)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9])
@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("step", [2, 3])
def test_subsample_computes_the_strided_dilated_convolution(step, k, size):
    g = torch.Generator().manual_seed(size * 10 + k + step)
    x = torch.randn(2, 3, size, size + 1, generator=g, dtype=torch.float64)
    w = torch.randn(4, 3, k, k, generator=g, dtype=torch.float64)
    conv = torch.nn.functional.conv2d
    full = conv(x, w, None, step, step * (k // 2), step)
    sub = conv(kernels_module._subsample(x, step), w, None, 1, k // 2)
    assert sub.shape == full.shape
    torch.testing.assert_close(sub, full, atol=1e-12, rtol=0)


@pytest.mark.parametrize("unfused", [False, True])
@pytest.mark.parametrize("size", [(8, 8), (7, 9)])
def test_reduction_cells_subsample_dilated_inputs_and_match_reference(
    size, unfused, monkeypatch
):
    """Reduction cells run their stride-2 dilated convolutions undilated on
    every other pixel, odd sizes included, and the network is unchanged."""
    import skdarts.supernet.cell as cell_module

    steps = []

    def counting(x, step):
        steps.append(step)
        return kernels_module._subsample(x, step)

    monkeypatch.setattr(cell_module, "_subsample", counting)
    _force(monkeypatch, unfused)
    net = _net("darts", seed=9)
    _check(net, reference_from_supernet(net).double(), True, size=size)
    # Two steps, and per step one subsample per reduction-cell input plan.
    plans = sum(
        len([p for p in c.plans if p.stride == 2]) for c in net.cells if c.reduction
    )
    assert plans > 0 and steps == [2] * (2 * plans)
