"""The candidate operations of a DARTS cell, and the stem-to-head layout they sit in.

Each operation is a plain :class:`torch.nn.Module` computing one candidate of
an edge (``make_op`` builds them by name). The supernets, the reference
supernet and the derived network all hold these modules, so their state dicts
name every operation the same way (as the original DARTS does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["make_op", "standard_noise"]


def standard_noise(shape, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise of ``shape`` on ``like``'s device and dtype.

    The one place both supernets draw the ``noise`` operation's samples from
    (the reference per edge, the fast cell per state), so that a test can
    replace it with a seeded, order-independent source and compare the two.
    """
    return torch.randn(shape, device=like.device, dtype=like.dtype)


class ReLUConvBN(nn.Sequential):
    """ReLU, convolution, batch norm: the DARTS pre-processing block."""

    def __init__(self, c_in, c_out, kernel, stride, padding, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU, dilated depthwise convolution, pointwise convolution, batch norm."""

    def __init__(self, c_in, c_out, kernel, stride, padding, dilation, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                c_in,
                c_in,
                kernel,
                stride,
                padding,
                dilation=dilation,
                groups=c_in,
                bias=False,
            ),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked dilation-1 :class:`DilConv` blocks, the first one strided."""

    def __init__(self, c_in, c_out, kernel, stride, padding, affine=True):
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, 1, affine),
            DilConv(c_in, c_out, kernel, 1, padding, 1, affine),
        )


class Zero(nn.Module):
    """The ``none`` operation: a zero tensor of the (strided) input's size."""

    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class Noise(nn.Module):
    """RobustDARTS' ``noise`` operation: standard normal noise, input ignored.

    In evaluation mode it returns the noise's mean (zeros) so that predictions
    are deterministic.
    """

    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.training:
            return standard_noise(x.shape, x)
        return torch.zeros_like(x)


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset 1x1 strided convolutions.

    Unlike the original, odd heights and widths (down to 1) are handled by
    padding the offset branch, so any image size can be reduced.
    """

    def __init__(self, c_in, c_out, affine=True):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even c_out; got {c_out}.")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x):
        x = self.relu(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        out = torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1)
        return self.bn(out)


class PoolBN(nn.Sequential):
    """3x3 max or average pooling followed by batch norm (as DARTS' MixedOp)."""

    def __init__(self, kind, c, stride, affine=True):
        pool = (
            nn.MaxPool2d(3, stride=stride, padding=1)
            if kind == "max"
            else nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
        )
        super().__init__(pool, nn.BatchNorm2d(c, affine=affine))


def make_op(name: str, c: int, stride: int, affine: bool = True) -> nn.Module:
    """Build operation ``name`` for ``c`` channels and the given stride.

    Parameters
    ----------
    name : str
        One of :data:`skdarts.spaces.OPERATIONS`.
    c : int
        Channels in and out.
    stride : {1, 2}
    affine : bool
        Whether batch norms learn a scale and shift (False while searching,
        as in DARTS).

    Returns
    -------
    torch.nn.Module

    Examples
    --------
    >>> op = make_op("sep_conv_3x3", 8, stride=2)
    >>> op(torch.zeros(2, 8, 6, 6)).shape
    torch.Size([2, 8, 3, 3])
    """
    if name == "none":
        return Zero(stride)
    if name == "noise":
        return Noise(stride)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine)
    if name in ("max_pool_3x3", "avg_pool_3x3"):
        return PoolBN(name[:3], c, stride, affine)
    if name.startswith("sep_conv_"):
        k = int(name[-1])
        return SepConv(c, c, k, stride, k // 2, affine)
    if name.startswith("dil_conv_"):
        k = int(name[-1])
        return DilConv(c, c, k, stride, k // 2 * 2, 2, affine)
    raise ValueError(f"unknown operation {name!r}.")
