"""The primitives against naive references."""

import math

import pytest
import torch
import torch.nn.functional as F

from i2i.networks.layers import EqualConv2d, EqualLinear, MinibatchStdLayer
from i2i.networks.ops import (
    fir_filter,
    modulated_conv2d,
    modulated_conv2d_reference,
    upfirdn2d,
    upsample2d,
)


@pytest.mark.parametrize("impl", ["grouped", "shared"])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("up,kernel", [(1, 3), (2, 3), (1, 1)])  # conv, up conv, ToRGB
def test_modulated_conv_paths_equal_naive_loop(impl, demodulate, up, kernel):
    x = torch.randn(3, 5, 6, 7, dtype=torch.float64)
    weight = torch.randn(4, 5, kernel, kernel, dtype=torch.float64)
    styles = torch.rand(3, 5, dtype=torch.float64) * 2 + 0.1
    want = modulated_conv2d_reference(x, weight, styles, demodulate=demodulate, up=up)
    got = modulated_conv2d(x, weight, styles, demodulate=demodulate, up=up, impl=impl, gain=1.0)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    # The gain is a plain multiplier on the output.
    got2 = modulated_conv2d(x, weight, styles, demodulate=demodulate, up=up, impl=impl, gain=2.5)
    torch.testing.assert_close(got2, 2.5 * want, rtol=1e-10, atol=1e-10)
    # A fused bias is a per-output-channel offset after the gain.
    bias = torch.randn(4, dtype=torch.float64)
    got3 = modulated_conv2d(
        x, weight, styles, demodulate=demodulate, up=up, impl=impl, gain=2.5, bias=bias
    )
    torch.testing.assert_close(got3, 2.5 * want + bias.reshape(1, -1, 1, 1), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("up,kernel", [(1, 3), (2, 3), (1, 1)])
def test_one_sample_path_matches_the_loop_in_values_gradients_and_layout(up, kernel, grad):
    """Batch 1 (an ordinary conv with the sample's weight, written in the input's layout in one
    pass when no gradient is asked for): the naive loop's output and gradients, channels_last
    kept."""
    x = torch.randn(1, 5, 6, 7, dtype=torch.float64).to(memory_format=torch.channels_last)
    weight = torch.randn(4, 5, kernel, kernel, dtype=torch.float64, requires_grad=grad)
    styles = (torch.rand(1, 5, dtype=torch.float64) * 2 + 0.1).requires_grad_(grad)
    got = modulated_conv2d(x, weight, styles, up=up, impl="grouped", gain=1.5)
    want = 1.5 * modulated_conv2d_reference(x, weight, styles, up=up)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert got.is_contiguous(memory_format=torch.channels_last)
    if grad:
        got_grads = torch.autograd.grad(got.square().sum(), (weight, styles))
        want_grads = torch.autograd.grad(want.square().sum(), (weight, styles))
        for g, w in zip(got_grads, want_grads, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-10)


def test_modulated_conv_reference_is_per_sample_conv():
    # The reference itself, for one sample, spelled out with explicit weights.
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    s = torch.tensor([[2.0, 0.5]], dtype=torch.float64)
    w = weight / math.sqrt(2 * 9) * s.reshape(1, 2, 1, 1)
    w = w / w.square().sum(dim=(1, 2, 3), keepdim=True).sqrt()
    torch.testing.assert_close(
        modulated_conv2d_reference(x, weight, s), F.conv2d(x, w, padding=1), rtol=1e-6, atol=1e-8
    )


def test_demodulation_keeps_unit_variance():
    torch.manual_seed(1)
    x = torch.randn(8, 256, 16, 16)
    weight = torch.randn(256, 256, 3, 3)
    styles = torch.rand(8, 256) * 4 + 0.25  # far from 1: without demodulation the scale drifts
    demod = modulated_conv2d(x, weight, styles, demodulate=True)
    plain = modulated_conv2d(x, weight, styles, demodulate=False)
    assert 0.9 < demod.std().item() < 1.1
    assert plain.std().item() > 1.5


def naive_upfirdn2d(x, f2d, up, down, pad):
    n, c, h, w = x.shape
    up_x = torch.zeros(n, c, h * up, w * up, dtype=x.dtype)
    up_x[:, :, ::up, ::up] = x
    padded = F.pad(up_x, list(pad))
    out = F.conv2d(padded, f2d.flip([0, 1]).expand(c, 1, *f2d.shape).to(x.dtype), groups=c)
    return out[:, :, ::down, ::down]


@pytest.mark.parametrize(
    "up,down,pad,gain",
    [
        (2, 1, (2, 1, 2, 1), 4.0),
        (1, 2, (1, 1, 1, 1), 1.0),
        (1, 1, (1, 2, 0, 3), 1.0),
        (2, 1, (1, 1, 1, 1), 4.0),  # after the transposed conv of an up-sampling layer
        (1, 1, (2, 2, 1, 1), 1.0),  # symmetric, unequal per axis: the conv pads (H, W)
    ],
)
def test_upfirdn2d_matches_2d_filter(up, down, pad, gain):
    x = torch.randn(2, 3, 8, 6, dtype=torch.float64)
    f = fir_filter().double()
    f2d = torch.outer(f, f) * gain
    torch.testing.assert_close(
        upfirdn2d(x, f, up=up, down=down, padding=pad, gain=gain),
        naive_upfirdn2d(x, f2d, up, down, pad),
    )


def test_fir_upsample_preserves_constant_and_doubles_size():
    x = torch.full((1, 2, 8, 8), 3.0)
    y = upsample2d(x, fir_filter())
    assert y.shape == (1, 2, 16, 16)
    torch.testing.assert_close(y[:, :, 2:-2, 2:-2], torch.full_like(y[:, :, 2:-2, 2:-2], 3.0))


@pytest.mark.parametrize("kernel", [1, 3])
def test_equal_conv_down_halves_size(kernel):
    conv = EqualConv2d(3, 5, kernel, down=2)
    assert conv(torch.randn(2, 3, 16, 8)).shape == (2, 5, 8, 4)


def test_equalized_lr_scales_at_runtime():
    torch.manual_seed(0)
    for lr_mul in (1.0, 0.01):
        fc = EqualLinear(512, 512, lr_multiplier=lr_mul)
        assert fc.weight.std().item() == pytest.approx(1 / lr_mul, rel=0.05)  # stored N(0, 1/lr^2)
        y = fc(torch.randn(256, 512))
        assert y.std().item() == pytest.approx(1.0, rel=0.1)  # effective weights N(0, 1/fan_in)
    act = EqualLinear(512, 512, activation="lrelu")
    x = torch.randn(64, 512)
    want = F.leaky_relu(x @ (act.weight / math.sqrt(512)).t(), 0.2) * math.sqrt(2)
    torch.testing.assert_close(act(x), want, rtol=1e-4, atol=1e-5)


def test_minibatch_std_against_naive():
    x = torch.randn(4, 6, 3, 3, dtype=torch.float64)
    y = MinibatchStdLayer(group_size=2, num_channels=1)(x.float()).double()
    assert y.shape == (4, 7, 3, 3)
    torch.testing.assert_close(y[:, :6], x, rtol=1e-6, atol=1e-6)
    # Groups are samples {0, 2} and {1, 3} (stride N / G).
    for members in ([0, 2], [1, 3]):
        std = (x[members].var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        for i in members:
            torch.testing.assert_close(
                y[i, 6], torch.full((3, 3), std.item(), dtype=torch.float64), rtol=1e-5, atol=1e-6
            )


def test_minibatch_std_odd_batch_uses_divisor():
    assert MinibatchStdLayer(4)(torch.randn(6, 4, 4, 4)).shape == (6, 5, 4, 4)
