"""The batched tensor kernels the fast cell is made of.

Each function does, for all edges leaving a state at once, what the
reference cell does edge by edge: convolutions grouped by state, fused or
unfused depthwise-pointwise stages, pooling, the mixing product, and the
running-statistics update helpers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _lerp_all(tensors, ends, weight):
    # Inductor (torch 2.11, CUDA) generated invalid Triton code for fused
    # foreach kernels inside a compiled cell: plain loops when compiling.
    if torch.compiler.is_compiling():
        for t, e in zip(tensors, ends):
            t.lerp_(e, weight)
    else:
        torch._foreach_lerp_(tensors, ends, weight)


def _add_all(tensors, value):
    if torch.compiler.is_compiling():
        for t in tensors:
            t.add_(value)
    else:
        torch._foreach_add_(tensors, value)


# Whether a convolution over several states runs as one per state on the
# CPU (see _conv_by_state); the tests switch it off to check the other way.
_SPLIT_STATES_ON_CPU = True


def _conv_by_state(x, w, stride, padding, dilation, n_in):
    """The convolution of each of the ``n_in`` states in ``x`` with its kernels.

    One grouped convolution, except on the CPU, where oneDNN's grouped
    convolutions with few channels per group were up to 2x slower than one
    convolution per state (measured forward and backward with 8 channels,
    dilated or 5x5) and the launches they save cost little.
    """
    if n_in == 1 or not (_SPLIT_STATES_ON_CPU and x.device.type == "cpu"):
        return F.conv2d(x, w, None, stride, padding, dilation, n_in)
    xs = x.chunk(n_in, 1)
    ws = w.chunk(n_in, 0)
    return torch.cat(
        [F.conv2d(a, b, None, stride, padding, dilation) for a, b in zip(xs, ws)], 1
    )


def _crop_taps(w, size, padding, dilation):
    """Kernel ``w`` (..., k, k) without the taps that only ever meet padding.

    In a stride-1 convolution of an input of ``size`` (h, w), a tap at
    offset ``d`` from the centre reads a real pixel for some output only if
    ``|d| < h`` (``w``); the others multiply zeros. On the small images of
    the last cells (a dilated 5 x 5 kernel on 4 x 4 inputs reads padding
    with 16 of its 25 taps) dropping them cuts the arithmetic and not the
    result: their gradients are zero either way. Returns the kernel and the
    (row, column) padding that keeps the output size.
    """
    k = w.shape[-1]
    cuts = [
        min((padding - s) // dilation + 1, k // 2) if padding >= s else 0 for s in size
    ]
    if not any(cuts):
        return w, padding
    ch, cw = cuts
    w = w[..., ch : k - ch, cw : k - cw]
    return w, (padding - ch * dilation, padding - cw * dilation)


def _subsample(x, step):
    """Every ``step``-th row and column of ``x`` (n, c, h, w): a view.

    A convolution with stride ``s`` and dilation ``s`` (and the padding that
    keeps a centred kernel, ``s * (k // 2)``) reads ``x[s*i + s*t - s*p]``
    for output ``i`` and tap ``t`` (``p = k // 2``): only multiples of
    ``s``. It is therefore the undilated stride-1 convolution of this
    subsample, padded by ``p``: the same products, and the same reads fall
    outside (zeros), for any ``h`` and ``w``.
    """
    return x[:, :, ::step, ::step]


# Whether unfused stages run channels-last on the CPU (see _unfused_conv);
# the tests switch it off to check the other (GPU) way.
_CHANNELS_LAST_ON_CPU = True

# Whether unfused stages recompute their depthwise outputs in the backward
# pass rather than keep them (see _DepthwisePointwise).
_RECOMPUTE_DEPTHWISE = True


def _unfused_conv(x, pw, dw, stride, padding, dilation, n_in, per_edge=False):
    """Depthwise then pointwise convolutions of several edges, batched.

    ``pw`` (edges, out, in, 1, 1) and ``dw`` (edges, in, 1, k, k) are the
    edges' weights, in state order. ``x`` holds ``n_in`` states (each edge
    reads its state's channels) or, with ``per_edge``, one input per edge,
    edge by edge. Returns (n, edges * out, h', w'), edge by edge.

    The depthwise convolution of every edge is one grouped convolution: with
    an input per edge, one group per channel; on shared states, each input
    channel's group has an output per edge of its state, so its outputs come
    channel by channel and are reordered edge by edge for the pointwise
    convolution, one grouped 1x1 convolution of all edges.
    """
    e, c_in, k = dw.shape[0], dw.shape[1], dw.shape[-1]
    if per_edge:
        wd, groups, swap = dw.reshape(e * c_in, 1, k, k), e * c_in, None
    else:
        # (state, edge, channel) to (state, channel, edge).
        wd = dw.unflatten(0, (n_in, -1)).transpose(1, 2).reshape(-1, 1, k, k)
        groups, swap = n_in * c_in, (n_in, c_in, e // n_in)
    cl = _CHANNELS_LAST_ON_CPU and x.device.type == "cpu"
    conv = (stride, padding, dilation, groups, e, swap, cl)
    if _RECOMPUTE_DEPTHWISE:
        return _DepthwisePointwise.apply(x, wd, pw.flatten(0, 1), conv)
    _, y = _DepthwisePointwise._depthwise(x, wd, conv)
    return F.conv2d(y, pw.flatten(0, 1), None, 1, 0, 1, e)


def _channels_last(x):
    """``x`` channels-last where unfused stages run so (see _unfused_conv)."""
    if _CHANNELS_LAST_ON_CPU and x.device.type == "cpu":
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _swap(y, n_in, a, b, cl):
    """Channels in (state, a, b) order to (state, b, a), memory format kept."""
    if not cl:
        return y.unflatten(1, (n_in, a, b)).transpose(2, 3).flatten(1, 3)
    n, _, h, w = y.shape
    y = y.permute(0, 2, 3, 1).unflatten(3, (n_in, a, b)).transpose(4, 5)
    return y.reshape(n, h, w, -1).permute(0, 3, 1, 2)


class _DepthwisePointwise(torch.autograd.Function):
    """Grouped depthwise convolution, reorder, grouped pointwise convolution.

    The depthwise output is recomputed in the backward pass instead of kept:
    the fused convolution keeps only its input, and so, with this, does the
    unfused one (the depthwise convolution is a small part of the cost;
    keeping its outputs raised the peak memory of a "cifar" step by 17%).
    """

    @staticmethod
    def _depthwise(x, wd, conv):
        stride, padding, dilation, groups, _, swap, cl = conv
        if cl:
            # oneDNN's depthwise convolutions are 3-10x faster on channels-
            # last tensors (measured forward and backward, conversions
            # included), and so is the reorder.
            x = x.contiguous(memory_format=torch.channels_last)
        y = F.conv2d(x, wd, None, stride, padding, dilation, groups)
        return x, (y if swap is None else _swap(y, *swap, cl))

    @staticmethod
    def forward(ctx, x, wd, wp, conv):
        _, y = _DepthwisePointwise._depthwise(x, wd, conv)
        out = F.conv2d(y, wp, None, 1, 0, 1, conv[4])
        ctx.save_for_backward(x, wd, wp)
        ctx.conv = conv
        ctx.dtype = out.dtype  # the compute dtype (bf16 under autocast)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, wd, wp = ctx.saved_tensors
        stride, padding, dilation, groups, e, swap, cl = conv = ctx.conv
        dt = ctx.dtype
        xc, y = _DepthwisePointwise._depthwise(x.to(dt), wd.to(dt), conv)
        one, zero = [1, 1], [0, 0]
        gy, gwp, _ = torch.ops.aten.convolution_backward(
            grad.to(dt), y, wp.to(dt), None, one, zero, one, False, zero, e,
            [True, True, False],
        )  # fmt: skip
        del y
        if swap is not None:
            n_in, c_in, per_state = swap
            gy = _swap(gy, n_in, per_state, c_in, cl)
        gx, gwd, _ = torch.ops.aten.convolution_backward(
            gy, xc, wd.to(dt), None, [stride] * 2, [padding] * 2, [dilation] * 2,
            False, zero, groups, [ctx.needs_input_grad[0], True, False],
        )  # fmt: skip
        if gx is not None:
            gx = gx.to(x.dtype)
        return gx, gwd.to(wd.dtype), gwp.to(wp.dtype), None


def _mix(m, y):
    """``m @ y[i]`` for every sample ``i``: (edges, t) @ (n, t, l) -> (n, edges, l).

    A batched product: ``torch.matmul`` folds this case into one product
    of the transposed ``y``, which costs a copy of ``y`` and returns a
    transposed (non-contiguous) result.
    """
    return torch.bmm(m.expand(y.shape[0], -1, -1), y)


def _pool(x, kind, stride):
    if kind == "avg":
        return F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)
    if x.device.type == "cpu" and x.dim() == 4:
        # The CPU max pool is about 3x faster on channels-last tensors, the
        # conversions included (measured forward and backward).
        y = F.max_pool2d(x.contiguous(memory_format=torch.channels_last), 3, stride, 1)
        return y.contiguous()
    return F.max_pool2d(x, 3, stride, 1)


def _channel_shuffle(x, groups):
    """PC-DARTS' channel shuffle: interleave ``groups`` channel groups."""
    return x.unflatten(1, (groups, -1)).transpose(1, 2).flatten(1, 2)
