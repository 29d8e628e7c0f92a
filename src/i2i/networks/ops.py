"""The functional primitives that the StyleGAN2 layers call: convolution, FIR filtering and
modulated convolution, each in the form that runs fastest where it runs.

Plain PyTorch (no custom CUDA), so they run on CPU and GPU alike. Most of what is not textbook
here works around the CPU's convolution library (oneDNN) and the channels_last layout: a weight
gradient computed on contiguous copies, padding left to the conv, products written straight into
the input's layout, and a choice between a grouped and a shared-weight modulated conv. Each
gives the same values as the plain form (tests/networks/ compare them).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

FIR_KERNEL = (1.0, 3.0, 3.0, 1.0)

ModConvImpl = Literal["auto", "grouped", "shared"]


def assert_shape(tensor: torch.Tensor, shape: list[int | None], name: str = "tensor") -> None:
    """Raise a readable error unless `tensor` has `shape`.

    Args:
        tensor: the tensor to check.
        shape: the expected size of each dimension; None matches any size. The number of
            dimensions must match too.
        name: what to call the tensor in the error message.

    Raises:
        ValueError: the number of dimensions or a given size differs.
    """
    if tensor.ndim != len(shape) or any(
        want is not None and have != want for have, want in zip(tensor.shape, shape, strict=True)
    ):
        raise ValueError(f"{name} has shape {list(tensor.shape)}, expected {shape} (None = any)")


def memory_format(x: torch.Tensor) -> torch.memory_format:
    """The memory layout of `x`.

    Args:
        x: a 4-D tensor (N, C, H, W).

    Returns:
        `torch.channels_last` if `x` is laid out that way (and not also plainly contiguous, as
        tensors with C = 1 or H = W = 1 are), else `torch.contiguous_format`.
    """
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


def to_fast_layout(x: torch.Tensor) -> torch.Tensor:
    """`x` in the memory layout that the networks built on these ops run fastest in.

    The ops follow their input's layout, so the network's first layer decides it for all the
    others. On CPU the fast layout is channels_last: the FIR filters run as one depthwise conv,
    much faster in it (docs/benchmarks.md). CoModGAN's networks call this on their 4-D
    inputs, so that a plain NCHW tensor (a user's script, `i2i export`) and a condition
    concatenated from a 1-channel mask (which `torch.cat` lays out NCHW) run at the same speed
    as a channels_last batch. On other devices the caller's layout is kept: no GPU measurement
    says which one is faster there, and `benchmarks.gpu` compares both through the tasks'
    `channels_last`.

    `Tensor.to`, not `Tensor.contiguous`: a 1-channel tensor (an edge map) counts as contiguous
    in both layouts, so `contiguous` returns it unchanged and the conv that reads it answers
    NCHW; `to` gives it channels_last strides, which the conv follows.

    Args:
        x: a 4-D tensor (N, C, H, W).

    Returns:
        On CPU `x` with channels_last strides (`x` itself, no copy, when it has them already),
        else `x`.
    """
    if x.device.type != "cpu":
        return x
    return x.to(memory_format=torch.channels_last)


# --------------------------------------------------------------------------------------------------
# Convolution with a faster weight gradient on AVX2 CPUs


def weight_grad_wants_contiguous(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether to compute this conv's weight gradient on plainly contiguous (NCHW) copies.

    On AVX2 CPUs oneDNN's weight gradient of a 3x3 conv on channels_last tensors runs at a
    fraction of the rate of the same conv's forward and input gradient; on NCHW copies it runs
    much faster, the copies paid for. oneDNN also computes the bias gradient in its
    weight-gradient pass, so `conv2d` sums it apart. The copies only pay off on large feature
    maps (hence the 32x32 bound) and never for 1x1 convs, where copying costs more than it
    saves. On the AVX-512 CPU measured the library's weight gradient was not slow, so the rule
    stays AVX2-only; GPUs and autocast keep the library's conv too. Measured with
    `python -m benchmarks.backbone --weight-grad-only`: docs/benchmarks.md, "Conv weight
    gradients on AVX2".

    Args:
        x: the conv's input (N, Cin, H, W).
        weight: the conv's weight (Cout, Cin, k, k).

    Returns:
        True only on an AVX2 CPU, with gradients enabled and no CPU autocast, for a weight that
        requires grad with k > 1, on a channels_last input of at least 32x32 pixels.
    """
    return (
        x.device.type == "cpu"
        and torch.backends.cpu.get_cpu_capability() == "AVX2"
        and torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")  # autocast casts F.conv2d, not aten's op
        and weight.requires_grad
        and weight.shape[-1] > 1
        and x.shape[-2] * x.shape[-1] >= 32 * 32
        and memory_format(x) == torch.channels_last
    )


class _ConvWeightGradContiguous(torch.autograd.Function):
    """aten's convolution, whose backward takes the input gradient in the tensors' own layout and
    the weight gradient on contiguous copies. The backward is made of differentiable ops, so a
    gradient penalty (R1) can differentiate through it again."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, groups, transposed):
        ctx.save_for_backward(x, weight)
        ctx.setup = (stride, padding, groups, transposed)
        return torch.ops.aten.convolution(
            x, weight, bias, stride, padding, [1, 1], transposed, [0, 0], groups
        )

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding, groups, transposed = ctx.setup
        setup = (stride, padding, [1, 1], transposed, [0, 0], groups)
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_b = None
        if need_x:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, *setup, [True, False, False]
            )[0]
        if need_b:  # oneDNN would run its weight-gradient pass for this sum
            grad_b = grad.sum(dim=(0, 2, 3))
        if need_w:
            grad_w = torch.ops.aten.convolution_backward(
                grad.contiguous(),
                x.contiguous(),
                weight.contiguous(),
                None,
                *setup,
                [False, True, False],
            )[1]
        return grad_x, grad_w, grad_b, None, None, None, None


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
    groups: int = 1,
    transposed: bool = False,  # F.conv_transpose2d; weight (Cin, Cout / groups, k, k)
) -> torch.Tensor:
    """`F.conv2d` (or `F.conv_transpose2d`), with the weight gradient on contiguous copies where
    `weight_grad_wants_contiguous` says that is faster. Same values either way.

    Args:
        x: input (N, Cin, H, W).
        weight: (Cout, Cin / groups, k, k), or (Cin, Cout / groups, k, k) when `transposed`.
        bias: (Cout,), or None for no bias.
        stride: the same stride along H and W.
        padding: the same zero padding along H and W.
        groups: number of groups of a grouped conv.
        transposed: run a transposed conv (`F.conv_transpose2d`) instead.

    Returns:
        The convolution's output (N, Cout, H', W').
    """
    if weight_grad_wants_contiguous(x, weight):
        return _ConvWeightGradContiguous.apply(
            x, weight, bias, [stride, stride], [padding, padding], groups, transposed
        )
    if transposed:
        return F.conv_transpose2d(x, weight, bias, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, weight, bias, stride=stride, padding=padding, groups=groups)


# --------------------------------------------------------------------------------------------------
# FIR filtering


def fir_filter(taps: tuple[float, ...] = FIR_KERNEL) -> torch.Tensor:
    """The normalised separable 1-D FIR filter.

    Args:
        taps: the unnormalised filter taps; the default is StyleGAN2's [1, 3, 3, 1].

    Returns:
        A float32 tensor (len(taps),) that sums to 1.
    """
    f = torch.tensor(taps, dtype=torch.float32)
    return f / f.sum()


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int = 1,
    down: int = 1,
    padding: tuple[int, int, int, int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample, in that order.

    Zero-insert upsample by `up`, pad, filter with the separable symmetric filter `f` (given
    1-D), then keep every `down`-th pixel.

    Args:
        x: input (N, C, H, W).
        f: the 1-D filter (taps,), for example from `fir_filter`; used as its outer product.
        up: upsampling factor (1 for none).
        down: downsampling factor (1 for none).
        padding: zero padding (left, right, top, bottom) after upsampling.
        gain: scale of the 2-D filter (4 after a 2x upsample keeps the mean).

    Returns:
        (N, C, (H * up + top + bottom - taps + 1) / down, likewise for W), rounded up.
    """
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    left, right, top, bottom = padding
    conv_padding = (0, 0)
    if left == right >= 0 and top == bottom >= 0:
        # The conv pads by itself: faster on CPU than a padded copy first, same values
        # (docs/benchmarks.md, FIR filters).
        conv_padding = (top, left)
    else:
        x = F.pad(x, list(padding))
    # One depthwise conv with the 2-D (outer product) kernel: more multiply-adds than the two
    # 1-D passes of a separable filter, but one pass over memory, and on CPU in channels_last
    # the fastest form (docs/benchmarks.md, FIR filters).
    f2d = (torch.outer(f, f) * gain).to(device=x.device, dtype=x.dtype)
    return F.conv2d(x, f2d.expand(c, 1, *f2d.shape), stride=down, padding=conv_padding, groups=c)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x FIR upsampling (N, C, H, W) -> (N, C, 2H, 2W), as in the skip RGB path.

    Args:
        x: input (N, C, H, W).
        f: the 1-D filter from `fir_filter`.

    Returns:
        (N, C, 2H, 2W), with the same mean as `x`.
    """
    taps = f.numel()
    p0, p1 = (taps + 1) // 2, (taps - 2) // 2
    return upfirdn2d(x, f, up=2, padding=(p0, p1, p0, p1), gain=4.0)


def downsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x FIR downsampling (N, C, H, W) -> (N, C, H/2, W/2).

    Args:
        x: input (N, C, H, W), H and W even.
        f: the 1-D filter from `fir_filter`.

    Returns:
        (N, C, H/2, W/2), with the same mean as `x`.
    """
    taps = f.numel()
    p0, p1 = (taps - 1) // 2, (taps - 2) // 2
    return upfirdn2d(x, f, down=2, padding=(p0, p1, p0, p1))


# --------------------------------------------------------------------------------------------------
# Modulated convolution


def _style_weight_scale(weight: torch.Tensor) -> float:
    _, in_channels, kh, kw = weight.shape
    return 1.0 / math.sqrt(in_channels * kh * kw)


def modulated_conv2d_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool = True,
    up: int = 1,
    eps: float = 1e-8,
) -> torch.Tensor:
    """The definition of the modulated convolution, one sample at a time.

    Scale the weight per input channel by the sample's style, optionally normalise each output
    filter, convolve. Slow; tests compare `modulated_conv2d` against it.

    Args:
        x: input (N, Cin, H, W).
        weight: (Cout, Cin, k, k), stored N(0, 1) (the equalized-lr scale is applied here).
        styles: per-sample input-channel scales (N, Cin).
        demodulate: normalise each output filter to unit norm.
        up: 1, or 2 for a stride-2 transposed conv.
        eps: added under the square root of the demodulation.

    Returns:
        (N, Cout, H, W), or (N, Cout, (H - 1) * 2 + k, ...) when `up=2`.
    """
    outputs = []
    for xi, si in zip(x, styles, strict=True):
        w = weight * _style_weight_scale(weight) * si.reshape(1, -1, 1, 1)
        if demodulate:
            w = w / torch.sqrt(w.square().sum(dim=(1, 2, 3), keepdim=True) + eps)
        if up == 2:
            outputs.append(F.conv_transpose2d(xi[None], w.transpose(0, 1), stride=2))
        else:
            outputs.append(F.conv2d(xi[None], w, padding=weight.shape[-1] // 2))
    return torch.cat(outputs)


def choose_modconv_impl(batch_size: int, device: torch.device) -> Literal["grouped", "shared"]:
    """The faster path of `modulated_conv2d` for this batch and device (measured by `make bench`).

    Batch 1: a grouped conv is one ordinary conv with the sample's own weight, and skips the two
    passes over the activations that the shared path needs. Larger batches: one shared-weight conv
    over the whole batch beats per-sample groups on CPU (oneDNN) and in GPU backward passes.

    Args:
        batch_size: the number of samples N.
        device: where the conv runs (the choice does not depend on it today).

    Returns:
        `"grouped"` for a batch of 1, `"shared"` otherwise.
    """
    return "grouped" if batch_size == 1 else "shared"


def product_in_layout(
    a: torch.Tensor, b: torch.Tensor | float, fmt: torch.memory_format
) -> torch.Tensor:
    """`a * b` laid out in `fmt`.

    Written there in one pass when no gradient is asked for (the broadcast product follows a's
    layout, so it would need a second pass to move; autograd takes no out=).

    Args:
        a: a tensor.
        b: a tensor that broadcasts against `a`, or a number.
        fmt: the memory format of the result.

    Returns:
        The product, with the broadcast shape of `a` and `b`, in layout `fmt`.
    """
    b_requires_grad = isinstance(b, torch.Tensor) and b.requires_grad
    if torch.is_grad_enabled() and (a.requires_grad or b_requires_grad):
        return (a * b).contiguous(memory_format=fmt)
    shape = torch.broadcast_shapes(a.shape, b.shape) if isinstance(b, torch.Tensor) else a.shape
    out = torch.empty(shape, dtype=a.dtype, device=a.device, memory_format=fmt)
    return torch.mul(a, b, out=out)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool = True,
    up: int = 1,
    gain: float = 1.0,
    impl: ModConvImpl = "auto",
    eps: float = 1e-8,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """StyleGAN2's modulated convolution, multiplied by `gain`, plus `bias` if given.

    The bias is fused into the convolution or the demodulation pass: one pass less over the
    output. Gives the values of `modulated_conv2d_reference` (times `gain`, plus `bias`).

    Args:
        x: input (N, Cin, H, W).
        weight: (Cout, Cin, k, k), stored N(0, 1) (the equalized-lr scale is applied here).
        styles: per-sample input-channel scales (N, Cin).
        demodulate: normalise each sample's output filters to unit norm.
        up: 1, or 2 for a stride-2 transposed conv ((H - 1) * 2 + k pixels; the caller
            FIR-filters it).
        gain: factor on the output (an activation's gain folded in).
        impl: `"grouped"` (one conv with per-sample weights), `"shared"` (one shared-weight
            conv, the styles applied to the activations) or `"auto"` (`choose_modconv_impl`).
        eps: added under the square root of the demodulation.
        bias: (Cout,), or None for no bias.

    Returns:
        (N, Cout, H, W), or (N, Cout, (H - 1) * 2 + k, (W - 1) * 2 + k) when `up=2`, in the
        memory layout of `x`.

    Raises:
        ValueError: `styles` is not (N, Cin), or `impl` is not one of the three names.
    """
    n, in_channels, h, w_ = x.shape
    out_channels, _, kh, kw = weight.shape
    assert_shape(styles, [n, in_channels], "styles")
    if impl == "auto":
        impl = choose_modconv_impl(n, x.device)
    # The weight's equalized-lr scale c is a scalar: conv(x, c W) = c conv(x, W), so it joins
    # the per-(sample, channel) coefficients below instead of costing a pass over the weight.
    c = _style_weight_scale(weight)
    out_gain = gain * c
    styles = styles.to(weight.dtype)
    dcoefs = None
    if demodulate:
        # sum over (Cin, k, k) of (c w s)^2 == c^2 (sum_k w^2) @ s^2: (N, Cout), no per-sample
        # weights.
        squares = styles.square() @ weight.square().sum(dim=(2, 3)).t()
        dcoefs = torch.rsqrt(squares * (c * c) + eps)

    # oneDNN and cuDNN pick the output layout from the weight too: keep the input's layout.
    fmt = memory_format(x)
    if impl == "shared":
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        if up == 2:
            w = weight.transpose(0, 1).to(x.dtype).contiguous(memory_format=fmt)
            x = conv2d(x, w, stride=2, transposed=True)
        else:
            x = conv2d(x, weight.to(x.dtype).contiguous(memory_format=fmt), padding=kh // 2)
        x = x.contiguous(memory_format=fmt)
        scale = dcoefs * out_gain if demodulate else torch.full_like(styles[:, :1], out_gain)
        scale = scale.to(x.dtype)
        if bias is None:
            return x * scale.reshape(n, -1, 1, 1)
        return torch.addcmul(bias.to(x.dtype).reshape(1, -1, 1, 1), x, scale.reshape(n, -1, 1, 1))

    if impl != "grouped":
        raise ValueError(f"impl must be 'auto', 'grouped' or 'shared', got {impl!r}")
    # One pass over the weight: (N, Cout, Cin) coefficients first, then a broadcast multiply.
    coefs = styles.reshape(n, 1, -1) * out_gain
    if demodulate:
        coefs = coefs * dcoefs.reshape(n, -1, 1)
    if n == 1:
        # One sample: an ordinary conv with its own weight. No reshapes, which would leave a
        # batch stride that makes later ops fall back to the slow NCHW layout.
        w, coef = weight.to(x.dtype), coefs[0].to(x.dtype).unsqueeze(-1).unsqueeze(-1)
        if up == 2:  # the transposed conv's weight is (Cin, Cout, k, k)
            w, coef = w.transpose(0, 1), coef.transpose(0, 1)
        w = product_in_layout(w, coef, fmt)
        b = bias.to(x.dtype) if bias is not None else None
        if up == 2:
            x = conv2d(x, w, b, stride=2, transposed=True)
        else:
            x = conv2d(x, w, b, padding=kh // 2)
        return x.contiguous(memory_format=fmt)
    w = weight.unsqueeze(0) * coefs.unsqueeze(-1).unsqueeze(-1)  # (N, Cout, Cin, k, k)
    w = w.to(x.dtype)
    x = x.reshape(1, n * in_channels, h, w_)
    b = bias.to(x.dtype).repeat(n) if bias is not None else None
    if up == 2:
        w = w.transpose(1, 2).reshape(n * in_channels, out_channels, kh, kw)
        x = conv2d(x, w.contiguous(memory_format=fmt), b, stride=2, groups=n, transposed=True)
    else:
        w = w.reshape(n * out_channels, in_channels, kh, kw).contiguous(memory_format=fmt)
        x = conv2d(x, w, b, padding=kh // 2, groups=n)
    # Small transposed convs take a native path that returns NCHW: restore the layout (no-op
    # when it is already right) so that the next layers stay fast.
    return x.reshape(n, out_channels, *x.shape[2:]).contiguous(memory_format=fmt)
