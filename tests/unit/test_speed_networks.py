"""The depthwise FIR filter as a pair of autograd functions: the same values and gradients of every
order as torch's grouped conv2d (which it replaces only because its double backward loops over groups)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gan_core.networks.layers import depthwise_fir, setup_filter


@pytest.mark.parametrize(("shape", "taps", "stride", "padding"), [
    ((2, 5, 13, 13), (4, 4), (1, 1), (2, 2)),  # D's pre-filter before a strided conv
    ((2, 5, 14, 14), (4, 4), (2, 2), (1, 1)),  # downsample2d, even size
    ((2, 5, 15, 15), (4, 4), (2, 2), (1, 1)),  # odd size: the adjoint needs output_padding
    ((2, 3, 9, 12), (1, 4), (1, 2), (0, 1)),  # separable passes
    ((2, 3, 11, 8), (4, 1), (2, 1), (1, 0)),
])
def test_depthwise_fir_matches_grouped_conv_to_second_order(shape, taps, stride, padding) -> None:
    g = torch.Generator().manual_seed(0)
    c = shape[1]
    w = torch.rand(c, 1, *taps, generator=g, dtype=torch.float64)
    x = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    y, ref = depthwise_fir(x, w, stride, padding), F.conv2d(x, w, stride=stride, padding=padding, groups=c)
    assert torch.equal(y, ref)
    v = torch.randn(y.shape, generator=g, dtype=torch.float64)
    (gx,) = torch.autograd.grad((y * v).sum(), x, create_graph=True)
    (gref,) = torch.autograd.grad((ref * v).sum(), x, create_graph=True)
    assert torch.allclose(gx, gref)
    # An R1-like penalty on the input gradient, differentiated again w.r.t. x.
    u = torch.randn(gx.shape, generator=g, dtype=torch.float64)
    (hx,) = torch.autograd.grad((gx * u).sum() ** 2 + y.square().sum(), x)
    (href,) = torch.autograd.grad((gref * u).sum() ** 2 + ref.square().sum(), x)
    assert torch.allclose(hx, href)
    assert torch.autograd.gradgradcheck(lambda t: depthwise_fir(t, w, stride, padding), (x,))


def test_depthwise_fir_without_grad_is_the_plain_conv() -> None:
    f = setup_filter([1, 3, 3, 1])[None, None].expand(4, 1, 4, 4)
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        assert torch.equal(depthwise_fir(x, f, (2, 2), (1, 1)), F.conv2d(x, f, stride=2, padding=1, groups=4))
