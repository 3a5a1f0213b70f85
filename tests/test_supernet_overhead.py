"""The supernet dispatches few operations, and every way of running it is exact.

On small tensors and on GPUs a search step costs what it dispatches, so the
cell gathers everything that does not depend on a state once per forward
(kernels, mixing weights, running statistics) and runs the two cell inputs'
edges as one plan. These tests pin the operation count against the
straightforward DARTS supernet, check the paths the CPU does not take by
default (grouped convolutions and single kernel products, as on GPUs)
against it, and check that the per-cell layout follows copies of the model.
"""

import copy
import pickle

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import skdarts.supernet.kernels as kernels_module
import skdarts.supernet.plan as plan_module
from skdarts.supernet import Supernet
from skdarts.supernet.reference import reference_from_supernet

TINY = dict(in_channels=3, n_classes=5, init_channels=4, n_cells=3, n_nodes=4)


class _CountOps(TorchDispatchMode):
    """Counts the aten operations dispatched (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def _dispatched(module, x):
    module(x).sum().backward()  # first call: caches and lazy state
    with _CountOps() as counter:
        module(x).sum().backward()
    return counter.count


def _pair(space, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    net = Supernet(space, **TINY).to(dtype)
    with torch.no_grad():  # alphas away from uniform, so mixing errors show
        for a in net.arch_parameters():
            a.normal_()
    return net, reference_from_supernet(net).to(dtype)


def _check_same(net, ref, training, x, y):
    net.train(training)
    ref.train(training)
    results = []
    for module in (net, ref):
        module.zero_grad(set_to_none=True)
        out = module(x)
        torch.nn.functional.cross_entropy(out, y).backward()
        grads = [
            torch.zeros_like(p) if p.grad is None else p.grad
            for p in module.parameters()
        ]
        results.append((out.detach(), grads))
    (out, grads), (out_ref, grads_ref) = results
    torch.testing.assert_close(out, out_ref, atol=1e-10, rtol=1e-8)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)
    ours = net.state_dict()
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(ours[k], v, atol=1e-10, rtol=0, msg=k)


@pytest.mark.parametrize(
    "space, budget", [("darts", 0.5), ("s1", 1.0), ("s2", 1.0), ("s4", 1.0)]
)
def test_dispatches_fewer_operations_than_the_straightforward_supernet(space, budget):
    torch.manual_seed(0)
    net = Supernet(space, **TINY)
    x = torch.randn(2, 3, 8, 8)
    ours = _dispatched(net, x)
    theirs = _dispatched(reference_from_supernet(net), x)
    assert ours < budget * theirs, (ours, theirs)


@pytest.mark.parametrize("space", ["darts", "s3"])
@pytest.mark.parametrize("training", [True, False])
def test_gpu_paths_match_reference_on_the_cpu(space, training, monkeypatch):
    """Grouped convolutions per joint plan and one kernel product per group."""
    monkeypatch.setattr(kernels_module, "_SPLIT_STATES_ON_CPU", False)
    monkeypatch.setattr(plan_module, "_CPU_PRODUCT", float("inf"))
    net, ref = _pair(space, seed=1)
    assert net.cells[0].plans[0].n_in == 2
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (4,), generator=g)
    _check_same(net, ref, training, x, y)


def test_one_kernel_product_per_call_matches_reference(monkeypatch):
    monkeypatch.setattr(plan_module, "_CPU_PRODUCT", 1)
    net, ref = _pair("darts", seed=3)
    chunks = net.cells[0]._layout.kernel_chunks(0, "cpu")
    assert all(len(keys) == 1 for _, keys, _ in chunks)
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    _check_same(net, ref, True, x, torch.tensor([0, 1, 2, 3]))


def test_kernel_products_are_one_per_group_off_the_cpu():
    net = Supernet("darts", **TINY)
    layout = net.cells[0]._layout
    for g in range(len(layout.kernels)):
        assert len(layout.kernel_chunks(g, "cuda")) == 1


def test_later_forward_does_not_break_an_earlier_backward():
    """Running statistics are written after the forward; nothing saved is."""
    torch.manual_seed(4)
    net = Supernet("darts", **TINY)
    x = torch.randn(4, 3, 8, 8)
    first = net(x)
    before = net.cells[1].preprocess1[2].num_batches_tracked.item()
    net(x)
    first.sum().backward()
    assert net.cells[1].preprocess1[2].num_batches_tracked.item() == before + 1
    assert net.alphas_normal.grad.abs().sum() > 0


def test_copies_use_their_own_modules():
    torch.manual_seed(5)
    net = Supernet("darts", **TINY).eval()
    x = torch.randn(2, 3, 8, 8)
    expected = net(x).detach()
    for clone in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        torch.testing.assert_close(clone(x), expected)
        layout = clone.cells[0]._layout
        own = {id(m) for m in clone.modules()}
        assert all(id(b) in own for b in layout.bns)
        with torch.no_grad():
            for p in clone.cells[0].parameters():
                p.mul_(2.0)
        assert not torch.allclose(clone(x), expected)
        torch.testing.assert_close(net(x), expected)
