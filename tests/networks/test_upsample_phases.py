"""The up-sampling conv as four phase convolutions: equal to the transposed conv to float64
rounding, forward and gradients, on every path that uses it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from i2i.networks.layers import (
    ModulatedConv2d,
    choose_upconv_impl,
    conv_transpose2d_phases,
    modulated_conv2d,
)

TOL = dict(rtol=1e-12, atol=1e-12)


def grads(out: torch.Tensor, inputs: list[torch.Tensor], seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    probe = torch.randn(out.shape, generator=g, dtype=out.dtype)
    return list(torch.autograd.grad((out * probe).sum(), inputs))


@pytest.mark.parametrize("kernel", [1, 2, 3, 4])
@pytest.mark.parametrize("size", [(5, 5), (4, 7)])  # odd, even, non-square
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True])
def test_phases_equal_transposed_conv(kernel, size, groups, channels_last, one_torch_thread):
    g = torch.Generator().manual_seed(kernel * 10 + groups)
    x = torch.randn(2, 4, *size, generator=g, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(4, 3, kernel, kernel, generator=g, dtype=torch.float64)  # (Cin, Cout/g, k, k)
    b = torch.randn(3 * groups, generator=g, dtype=torch.float64)
    inputs = [t.requires_grad_(True) for t in (x, w, b)]
    want = F.conv_transpose2d(x, w, b, stride=2, groups=groups)
    got = conv_transpose2d_phases(x, w, b, groups=groups)
    assert (
        got.shape
        == want.shape
        == (2, 3 * groups, 2 * (size[0] - 1) + kernel, 2 * (size[1] - 1) + kernel)
    )
    torch.testing.assert_close(got, want, **TOL)
    for a, b_ in zip(grads(got, inputs), grads(want, inputs), strict=True):
        torch.testing.assert_close(a, b_, **TOL)
    # Without bias, and the layout of the input is kept (the next layers stay on the fast path).
    torch.testing.assert_close(
        conv_transpose2d_phases(x, w, groups=groups),
        F.conv_transpose2d(x, w, stride=2, groups=groups),
        **TOL,
    )
    assert got.is_contiguous(memory_format=torch.channels_last) == channels_last


@pytest.mark.parametrize("impl", ["grouped", "shared"])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("batch", [1, 3])
def test_modulated_up_conv_phases_equal_transposed(impl, demodulate, batch, one_torch_thread):
    g = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, 5, 5, 6, generator=g, dtype=torch.float64).requires_grad_(True)
    weight = torch.randn(4, 5, 3, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    styles = (torch.rand(batch, 5, generator=g, dtype=torch.float64) * 2 - 0.5).requires_grad_(True)
    bias = torch.randn(4, generator=g, dtype=torch.float64).requires_grad_(True)
    inputs = [x, weight, styles, bias]
    outs = {
        up_impl: modulated_conv2d(
            x,
            weight,
            styles,
            demodulate=demodulate,
            up=2,
            gain=1.7,
            impl=impl,
            bias=bias,
            up_impl=up_impl,
        )
        for up_impl in ("transposed", "phases")
    }
    torch.testing.assert_close(outs["phases"], outs["transposed"], **TOL)
    for a, b in zip(grads(outs["phases"], inputs), grads(outs["transposed"], inputs), strict=True):
        torch.testing.assert_close(a, b, **TOL)


def test_layer_with_phases_matches_and_keeps_its_state_dict():
    torch.manual_seed(0)
    layer = ModulatedConv2d(6, 4, style_dim=8, resolution=(8, 8), w_index=0, up=2).double()
    keys = {k: v.shape for k, v in layer.state_dict().items()}
    x = torch.randn(2, 6, 4, 4, dtype=torch.float64)
    s = torch.randn(2, 8, dtype=torch.float64)
    want = layer(x, s, noise_mode="const")
    layer.up_impl = "phases"
    torch.testing.assert_close(layer(x, s, noise_mode="const"), want, **TOL)
    assert {k: v.shape for k, v in layer.state_dict().items()} == keys  # no new parameters
    layer.up_impl = "bogus"
    with pytest.raises(ValueError, match="up_impl must be"):
        layer(x, s)


def test_automatic_choice_is_a_real_path():
    assert choose_upconv_impl(torch.device("cpu")) in ("transposed", "phases")
