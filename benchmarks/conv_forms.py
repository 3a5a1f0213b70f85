"""Time the forms of one separable-convolution stage of the CPU search step.

A convolution stage of the supernet is a depthwise k x k convolution followed
by a pointwise 1 x 1 one, for several edges at once: either on one shared
input (each edge's first stage reads the same state) or on one input per
edge (the second stage of a separable convolution). Three exact forms:

- ``fused``: one dense convolution whose kernel is the product of the
  pointwise and depthwise weights (what :class:`skdarts.supernet.SearchCell`
  runs on the narrow stages of the "tiny" configuration). Its arithmetic is
  ``c * k * k`` multiply-adds per output instead of ``k * k + c``.
- ``unfused``: the package's depthwise + pointwise path
  (:func:`skdarts.supernet.kernels._unfused_conv`: a grouped depthwise
  convolution channels-last, a reorder, a grouped 1 x 1 convolution; the
  depthwise output is recomputed in the backward pass).
- ``dw+gemm``: a channels-last depthwise convolution, then the pointwise
  convolutions of all edges as one matrix product with a block-diagonal
  weight (edges x more arithmetic on the small pointwise part, no reorder).
- ``cl dw+gemm``: the same, as a cell whose tensors were all channels-last
  would run it: its input is channels-last already and its output stays so
  (no layout conversion on either side; the cell does not run this way).

For each stage shape of the "tiny" search step (batch 32; 8 channels at
16 x 16, 16 at 8 x 8, 32 at 4 x 4) it checks the three forms equal in
float64, then prints the forward + backward time of each in float32 (median
of ``--repeats``, forms interleaved) and the fused form's rate in GFLOP/s
(its own arithmetic: forward, input and weight gradients). The last line
counts the shapes where each form is fastest.

Usage::

    python benchmarks/conv_forms.py                # 2 threads
    python benchmarks/conv_forms.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skdarts.supernet.kernels import _unfused_conv  # noqa: E402

#: (channels, size) of the "tiny" configuration's three stages.
STAGES = [(8, 16), (16, 8), (32, 4)]
#: (kernel, dilation) of sep_conv_3x3 / sep_conv_5x5 / dil_conv_3x3 / dil_conv_5x5.
KERNELS = [(3, 1), (5, 1), (3, 2), (5, 2)]
EDGES = 4
BATCH = 32


def fused(x, pw, dw, padding, dilation, per_edge):
    """Dense convolution with the product kernel (groups: one per edge)."""
    e, o, c = pw.shape[:3]
    k = dw.shape[-1]
    w = (pw.view(e, o, c, 1, 1) * dw.view(e, 1, c, k, k)).reshape(e * o, c, k, k)
    return F.conv2d(x, w, None, 1, padding, dilation, e if per_edge else 1)


def unfused(x, pw, dw, padding, dilation, per_edge):
    """The package's depthwise + pointwise path, output made contiguous."""
    y = _unfused_conv(x, pw, dw, 1, padding, dilation, 1, per_edge=per_edge)
    return y.contiguous()


def dw_gemm(x, pw, dw, padding, dilation, per_edge, keep_layout=False):
    """Channels-last depthwise convolution, then one block-diagonal product;
    ``keep_layout``: the output stays channels-last."""
    e, o, c = pw.shape[:3]
    k = dw.shape[-1]
    xc = x.contiguous(memory_format=torch.channels_last)
    eye = torch.eye(e, dtype=x.dtype)
    if per_edge:
        # Channels (edge, channel): one depthwise filter per channel.
        y = F.conv2d(xc, dw.reshape(e * c, 1, k, k), None, 1, padding, dilation, e * c)
        big = torch.einsum("eoc,ef->ecfo", pw.view(e, o, c), eye)
    else:
        # Shared input: channel c's group makes one output per edge (c, edge).
        wd = dw.transpose(0, 1).reshape(c * e, 1, k, k)
        y = F.conv2d(xc, wd, None, 1, padding, dilation, c)
        big = torch.einsum("eoc,ef->cfeo", pw.view(e, o, c), eye)
    n, _, h, w = y.shape
    out = y.permute(0, 2, 3, 1).reshape(-1, c * e) @ big.reshape(c * e, e * o)
    out = out.view(n, h, w, e * o).permute(0, 3, 1, 2)
    return out if keep_layout else out.contiguous()


def dw_gemm_cl(x, pw, dw, padding, dilation, per_edge):
    """``dw_gemm`` on a channels-last input, its output left channels-last."""
    return dw_gemm(x, pw, dw, padding, dilation, per_edge, keep_layout=True)


FORMS = {
    "fused": fused,
    "unfused": unfused,
    "dw+gemm": dw_gemm,
    "cl dw+gemm": dw_gemm_cl,
}
#: Forms whose input is given channels-last (converted before timing).
CHANNELS_LAST_INPUT = {"cl dw+gemm"}


def _input(name, x):
    """``x`` as form ``name`` takes it (a leaf, so its gradient is returned)."""
    if name not in CHANNELS_LAST_INPUT:
        return x
    return x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()


def _tensors(c, size, k, per_edge, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    channels = EDGES * c if per_edge else c
    x = torch.randn(BATCH, channels, size, size, generator=g, dtype=dtype)
    pw = torch.randn(EDGES, c, c, 1, 1, generator=g, dtype=dtype)
    dw = torch.randn(EDGES, c, 1, k, k, generator=g, dtype=dtype)
    return [t.requires_grad_() for t in (x, pw, dw)]


def check(c, size, k, dilation, per_edge) -> float:
    """Largest difference between the forms' outputs and gradients (float64)."""
    x, pw, dw = _tensors(c, size, k, per_edge, torch.float64)
    padding = dilation * (k // 2)
    ref = None
    worst = 0.0
    for name, form in FORMS.items():
        xf = _input(name, x)
        out = form(xf, pw, dw, padding, dilation, per_edge)
        if ref is None:
            go = torch.randn_like(out)
        grads = torch.autograd.grad(out, (xf, pw, dw), go)
        got = [out.detach(), *grads]
        if ref is None:
            ref = got
        worst = max([worst] + [(a - b).abs().max().item() for a, b in zip(ref, got)])
    return worst


def time_forms(c, size, k, dilation, per_edge, repeats):
    """Median ms of forward + backward of each form, forms interleaved."""
    x, pw, dw = _tensors(c, size, k, per_edge, torch.float32)
    padding = dilation * (k // 2)
    go = torch.randn_like(fused(x, pw, dw, padding, dilation, per_edge))
    times = {name: [] for name in FORMS}

    inputs = {name: _input(name, x) for name in FORMS}

    def run(name):
        out = FORMS[name](inputs[name], pw, dw, padding, dilation, per_edge)
        torch.autograd.grad(out, (inputs[name], pw, dw), go)

    for name in FORMS:  # warm-up (oneDNN primitive creation)
        for _ in range(3):
            run(name)
    for _ in range(repeats):
        for name in FORMS:
            t0 = time.perf_counter()
            run(name)
            times[name].append(time.perf_counter() - t0)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"threads={torch.get_num_threads()} batch={BATCH} edges={EDGES} "
        f"repeats={args.repeats} (ms: forward + backward, median)"
    )
    names = list(FORMS)
    print(
        f"{'stage':30s}"
        + "".join(f"{n:>11s}" for n in names)
        + f"{'fused GFLOP/s':>15s}  best   max |diff| (float64)"
    )
    wins = dict.fromkeys(names, 0)
    for c, size in STAGES:
        for per_edge in (False, True):
            for k, dilation in KERNELS:
                if per_edge and dilation > 1:
                    continue  # only separable convolutions have a 2nd stage
                label = (
                    f"{c:2d}ch {size:2d}x{size:<2d} {k}x{k}"
                    + (f" dil{dilation}" if dilation > 1 else "     ")
                    + (" per-edge" if per_edge else " shared  ")
                )
                err = check(c, size, k, dilation, per_edge)
                ms = time_forms(c, size, k, dilation, per_edge, args.repeats)
                best = min(ms, key=ms.get)
                wins[best] += 1
                # Forward, input and weight gradients: 3 x 2 x MACs.
                flop = 6 * BATCH * size * size * EDGES * c * c * k * k
                rate = flop / (ms["fused"] / 1000) / 1e9
                print(
                    f"{label:30s}"
                    + "".join(f"{ms[n]:11.2f}" for n in names)
                    + f"{rate:15.1f}  {best:8s} {err:.1e}"
                )
    print("fastest: " + " ".join(f"{n}={v}" for n, v in wins.items()))


if __name__ == "__main__":
    main()
