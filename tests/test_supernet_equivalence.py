"""The fast supernet computes the same function as the straightforward DARTS one.

The baseline (:mod:`skdarts.supernet.reference`) is the executable
specification: every operation computed, ``none`` included, one ReLU per
convolution, nothing batched. Given the same weights (the same state dict),
outputs, gradients of weights and alphas, and the batch norms' running
statistics must agree, for every search space, in training and in evaluation
mode. Space S4's ``noise`` operation draws from
:func:`skdarts.supernet.ops.standard_noise`, replaced here by a seeded source
that gives every noise branch the same sample whatever the order of the
draws, so S4 in training is compared too.
"""

import copy
import pickle

import numpy as np
import pytest
import torch

from skdarts.supernet import DerivedNetwork, Supernet, ops
from skdarts.supernet.reference import reference_from_supernet

SPACES = ["darts", "s1", "s2", "s3", "s4"]
TINY = dict(in_channels=3, n_classes=5, init_channels=4, n_cells=3, n_nodes=4)


def _pair(space, dtype=torch.float64, seed=0, **options):
    torch.manual_seed(seed)
    net = Supernet(space, **TINY, **options).to(dtype)
    with torch.no_grad():  # alphas away from uniform, so mixing errors show
        for a in net.arch_parameters():
            a.normal_()
    ref = reference_from_supernet(net).to(dtype)
    return net, ref


def _grads(module):
    return [
        torch.zeros_like(p) if p.grad is None else p.grad.clone()
        for p in module.parameters()
    ]


def _step(module, x, y, arch_weights=None):
    module.zero_grad(set_to_none=True)
    out = module(x, arch_weights=arch_weights)
    torch.nn.functional.cross_entropy(out, y).backward()
    return out.detach(), _grads(module)


def seeded_noise(shape, like):
    """The same seeded sample for every noise branch (the fast cell draws all
    branches leaving a state at once, shape (n, branches, c, h, w); the
    reference one per edge, (n, c, h, w))."""
    n, c, h, w = shape[0], *shape[-3:]
    g = torch.Generator().manual_seed(1000 * c + 10 * h + w)
    sample = torch.randn(n, c, h, w, generator=g, dtype=like.dtype)
    if len(shape) == 5:
        sample = sample.unsqueeze(1).expand(shape)
    return sample.to(like.device)


def _assert_same_state(net, ref, atol):
    ours = net.state_dict()
    theirs = ref.state_dict()
    assert ours.keys() == theirs.keys()
    for k, v in ours.items():
        torch.testing.assert_close(v, theirs[k], atol=atol, rtol=0, msg=k)


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("training", [True, False])
def test_outputs_and_gradients_match_reference(space, training, monkeypatch):
    monkeypatch.setattr(ops, "standard_noise", seeded_noise)
    net, ref = _pair(space)
    net.train(training)
    ref.train(training)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (6,), generator=g)
    out, grads = _step(net, x, y)
    out_ref, grads_ref = _step(ref, x, y)
    torch.testing.assert_close(out, out_ref, atol=1e-10, rtol=1e-8)
    # Parameters are registered in the same order on both sides.
    names = [n for n, _ in net.named_parameters()]
    assert any(n.startswith("alphas_") for n in names)
    for name, a, b in zip(names, grads, grads_ref):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8, msg=name)
    assert grads[names.index("alphas_normal")].abs().sum() > 0
    _assert_same_state(net, ref, atol=1e-10)


@pytest.mark.parametrize("space", ["darts", "s1"])
def test_perturbed_arch_weights_and_float32(space):
    """The SmoothDARTS path (explicit mixing weights) in float32, two steps."""
    net, ref = _pair(space, dtype=torch.float32, seed=3)
    g = torch.Generator().manual_seed(2)
    for _ in range(2):
        x = torch.randn(8, 3, 8, 8, generator=g)
        y = torch.randint(0, 5, (8,), generator=g)
        w = tuple(
            torch.softmax(torch.randn(a.shape, generator=g), -1)
            for a in net.arch_parameters()
        )
        out, grads = _step(net, x, y, arch_weights=w)
        out_ref, grads_ref = _step(ref, x, y, arch_weights=w)
        torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=1e-4)
        for a, b in zip(grads, grads_ref):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    _assert_same_state(net, ref, atol=1e-5)


def test_state_dict_keys_unchanged_by_default_options():
    a = Supernet("darts", **TINY)
    b = Supernet("darts", **TINY, checkpointing=True, amp="bf16", compile_cells=True)
    assert {k: v.shape for k, v in a.state_dict().items()} == {
        k: v.shape for k, v in b.state_dict().items()
    }
    assert a.config() == {
        "search_space": "darts",
        **{k: TINY[k] for k in TINY},
        "stem_multiplier": 3,
    }
    assert b.config() == a.config()
    c = Supernet("darts", **{**TINY, "init_channels": 8}, partial_channels=2)
    assert c.config()["partial_channels"] == 2
    assert Supernet(**c.config()).config() == c.config()


def test_checkpointing_is_exact_and_updates_statistics_once():
    net, _ = _pair("darts", seed=4)
    ckpt = copy.deepcopy(net)
    ckpt.checkpointing = True
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    out, grads = _step(net, x, y)
    out_c, grads_c = _step(ckpt, x, y)
    torch.testing.assert_close(out, out_c)
    for a, b in zip(grads, grads_c):
        torch.testing.assert_close(a, b)
    for (k, v), (_, w) in zip(net.state_dict().items(), ckpt.state_dict().items()):
        torch.testing.assert_close(v, w, msg=k)


def test_partial_channels_trains_and_discretises():
    torch.manual_seed(0)
    net = Supernet(
        "darts", 3, 5, init_channels=8, n_cells=3, n_nodes=4, partial_channels=4
    )
    names = [n for n, _ in net.named_parameters()]
    assert "alphas_edge_normal" in names and "alphas_edge_reduce" in names
    assert "alphas_edge_normal" not in dict(net.named_weight_parameters())
    assert len(net.arch_parameters()) == 4
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    before = net.alphas_edge_normal.detach().clone()
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    assert not torch.equal(before, net.alphas_edge_normal)
    edge = net.edge_weights()[0]
    torch.testing.assert_close(edge[:2].sum(), torch.tensor(1.0))
    genotype = net.genotype()
    derived = DerivedNetwork.from_supernet(net, genotype)
    assert derived.eval()(x).shape == (4, 5)
    rebuilt = Supernet(**net.config())
    rebuilt.load_state_dict(net.state_dict())


def test_partial_channels_needs_divisible_channels():
    with pytest.raises(ValueError, match="partial_channels"):
        Supernet("darts", **{**TINY, "init_channels": 6}, partial_channels=4)
    with pytest.raises(ValueError, match="partial_channels"):
        Supernet("darts", **TINY, partial_channels=0)
    with pytest.raises(ValueError, match="amp"):
        Supernet("darts", **TINY, amp="int8")
    with pytest.raises(TypeError, match="checkpointing"):
        Supernet("darts", **TINY, checkpointing="yes")


def test_bf16_autocast_path_runs_and_stays_close():
    """The GPU's bf16 autocast path, exercised on the CPU."""
    net, _ = _pair("darts", dtype=torch.float32, seed=5)
    fast = copy.deepcopy(net)
    fast.amp = "bf16"
    x = torch.randn(4, 3, 8, 8)
    y = torch.tensor([0, 1, 2, 3])
    out, _ = _step(net, x, y)
    out_bf, grads_bf = _step(fast, x, y)
    assert out_bf.dtype == torch.float32
    assert all(torch.isfinite(g).all() for g in grads_bf)
    np.testing.assert_allclose(out_bf.numpy(), out.numpy(), atol=0.15, rtol=0.1)


def test_pickle_and_deepcopy_drop_compiled_cells():
    net = Supernet("s2", **TINY, compile_cells=True)
    net._compiled[0] = object()
    clone = pickle.loads(pickle.dumps(net))
    assert clone._compiled == {} and copy.deepcopy(net)._compiled == {}
    assert clone.compile_cells


def test_cell_traces_for_torch_compile():
    """The cell forward and backward capture as one graph (the GPU option).

    ``aot_eager`` traces like inductor without generating code, so this runs
    on any CPU; ``compile_cells`` itself only compiles on GPUs.
    """
    net, _ = _pair("darts", dtype=torch.float32, seed=6)
    assert_first_cell_traces(net)


def assert_first_cell_traces(net):
    """The first cell, compiled in one graph, gives the eager outputs and grads."""
    torch._dynamo.reset()
    s = net.stem(torch.randn(4, 3, 8, 8)).detach()
    w = net.arch_weights()[0].detach().requires_grad_(True)
    cell = net.cells[0]
    eager = cell(s, s, w)
    (g_eager,) = torch.autograd.grad(eager.square().sum(), w)
    compiled = torch.compile(cell, backend="aot_eager", dynamic=False, fullgraph=True)
    out = compiled(s, s, w)
    (g,) = torch.autograd.grad(out.square().sum(), w)
    torch.testing.assert_close(out, eager)
    torch.testing.assert_close(g, g_eager)
    torch._dynamo.reset()
