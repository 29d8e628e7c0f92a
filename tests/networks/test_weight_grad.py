"""The convolution whose weight gradient runs on contiguous copies (AVX2 CPUs): the same values,
gradients and second-order gradients (R1) as the library's convolution, and taken only where the
rule says."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from i2i.networks import CoModDiscriminator, CoModGenerator, ops
from i2i.networks.ops import conv2d, weight_grad_wants_contiguous
from tests.conftest import TINY_D, TINY_G

TOL = dict(rtol=1e-10, atol=1e-10)
CL = torch.channels_last


@pytest.fixture
def avx2(monkeypatch):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")


def probe_grads(out: torch.Tensor, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    return list(torch.autograd.grad((out * probe).sum(), inputs))


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_equals_the_library_conv_in_values_and_gradients(
    transposed, stride, groups, bias, avx2, one_torch_thread
):
    g = torch.Generator().manual_seed(stride * 10 + groups)
    x = torch.randn(2, 4, 32, 33, generator=g, dtype=torch.float64).contiguous(memory_format=CL)
    shape = (4, 3, 3, 3) if transposed else (6, 4 // groups, 3, 3)
    w = torch.randn(shape, generator=g, dtype=torch.float64).contiguous(memory_format=CL)
    out_channels = 3 * groups if transposed else 6
    b = torch.randn(out_channels, generator=g, dtype=torch.float64) if bias else None
    inputs = [t.requires_grad_(True) for t in (x, w, b) if t is not None]
    padding = 0 if transposed else 1
    got = conv2d(x, w, b, stride=stride, padding=padding, groups=groups, transposed=transposed)
    assert type(got.grad_fn).__name__ == "_ConvWeightGradContiguousBackward"
    library = F.conv_transpose2d if transposed else F.conv2d
    want = library(x, w, b, stride=stride, padding=padding, groups=groups)
    torch.testing.assert_close(got, want, **TOL)
    assert got.is_contiguous(memory_format=CL)
    for a, b_ in zip(probe_grads(got, inputs), probe_grads(want, inputs), strict=True):
        torch.testing.assert_close(a, b_, **TOL)


@pytest.mark.parametrize("transposed", [False, True])
def test_second_order_gradients_for_r1(transposed, avx2, one_torch_thread):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 32, 32, generator=g, dtype=torch.float64).contiguous(memory_format=CL)
    w = torch.randn(2, 2, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(2, generator=g, dtype=torch.float64)
    inputs = tuple(t.requires_grad_(True) for t in (x, w, b))

    def conv(x, w, b):
        out = conv2d(x, w, b, stride=2, padding=0 if transposed else 1, transposed=transposed)
        assert type(out.grad_fn).__name__ == "_ConvWeightGradContiguousBackward"
        return out

    # fast_mode checks random projections of the Jacobians: the full ones cost thousands of
    # passes at the 32x32 that the path needs.
    assert torch.autograd.gradgradcheck(conv, inputs, fast_mode=True)


@pytest.mark.parametrize(
    "capability,fmt,kernel,size,grad,want",
    [
        ("AVX2", CL, 3, 32, True, True),
        ("AVX512", CL, 3, 32, True, False),  # not measured there: the library's path
        ("AVX2", torch.contiguous_format, 3, 32, True, False),  # already contiguous
        ("AVX2", CL, 1, 32, True, False),  # 1x1: the copies cost more than they save
        ("AVX2", CL, 3, 16, True, False),  # 16x16: equal, so no copies
        ("AVX2", CL, 3, 32, False, False),  # no weight gradient asked for
    ],
)
def test_taken_only_where_measured_faster(capability, fmt, kernel, size, grad, want, monkeypatch):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    x = torch.randn(1, 4, size, size).contiguous(memory_format=fmt)
    w = torch.randn(4, 4, kernel, kernel).requires_grad_(grad)
    assert weight_grad_wants_contiguous(x, w) is want
    with torch.no_grad():
        assert weight_grad_wants_contiguous(x, w) is False
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16-mixed keeps autocast's conv
        assert weight_grad_wants_contiguous(x, w) is False
        assert conv2d(x, w, padding=kernel // 2).dtype == torch.bfloat16
    out = conv2d(x, w, padding=kernel // 2)
    assert (type(out.grad_fn).__name__ == "_ConvWeightGradContiguousBackward") is want


@pytest.mark.parametrize("batch", [1, 2])  # the grouped and the shared modulated conv
def test_networks_and_r1_agree_with_the_library_path(batch, monkeypatch, one_torch_thread):
    """Every parameter's gradient of G, and D's R1 gradients, equal those of the library's path."""
    torch.manual_seed(0)
    G = CoModGenerator(64, cond_channels=4, **TINY_G).double()
    D = CoModDiscriminator(64, cond_channels=1, **TINY_D).double()
    cond = torch.randn(batch, 4, 64, 64, dtype=torch.float64).contiguous(memory_format=CL)
    real = torch.randn(batch, 3, 64, 64, dtype=torch.float64).contiguous(memory_format=CL)
    z = torch.randn(batch, 32, dtype=torch.float64)

    def gradients(capability: str) -> tuple[dict, dict, int]:
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        taken = 0
        rule = ops.weight_grad_wants_contiguous

        def counting(x, w):
            nonlocal taken
            taken += rule(x, w)
            return rule(x, w)

        monkeypatch.setattr(ops, "weight_grad_wants_contiguous", counting)
        G.zero_grad(set_to_none=True), D.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # the same dropout masks
        G(cond, z=z, noise_mode="const").square().mean().backward()
        # R1 as r1_penalty takes it, in float64 (r1_penalty itself runs in float32).
        image = real.detach().requires_grad_(True)
        logits = D(image, cond[:, :1])
        (grad,) = torch.autograd.grad(logits.sum(), image, create_graph=True)
        (grad.square().sum() + logits.mean()).backward()
        monkeypatch.setattr(ops, "weight_grad_wants_contiguous", rule)
        grads = lambda m: {n: p.grad.clone() for n, p in m.named_parameters()}  # noqa: E731
        return grads(G), grads(D), taken

    g_lib, d_lib, taken_lib = gradients("AVX512")
    g_i2i, d_i2i, taken_i2i = gradients("AVX2")
    assert taken_lib == 0 and taken_i2i >= 4  # the 64x64 and 32x32 layers of G, E and D
    for want, got in ((g_lib, g_i2i), (d_lib, d_i2i)):
        assert want.keys() == got.keys()
        assert all(w.abs().sum() > 0 for w in want.values())
        for name in want:
            torch.testing.assert_close(got[name], want[name], **TOL)
