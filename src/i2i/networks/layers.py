"""The StyleGAN2 layers that the co-modulated generator and its discriminator are built from:
modules over the functional primitives of `i2i.networks.ops`.

- equalized learning rate: weights are stored N(0, 1) and scaled at run time by gain / sqrt(fan_in);
- the modulated conv layer (affine, modulated conv, FIR upsampling, noise, bias, activation);
- minibatch standard deviation, pixel norm, and leaky ReLU with gain sqrt(2).

Leaky ReLU is positively homogeneous (lrelu(g * y) = g * lrelu(y) for g > 0), so every layer folds
its activation gain into the (tiny) weight scale and bias instead of paying one more pass over the
activations. The result is identical; only the arithmetic order differs.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from i2i.networks.ops import (
    ModConvImpl,
    conv2d,
    fir_filter,
    memory_format,
    modulated_conv2d,
    product_in_layout,
    upfirdn2d,
)

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)

Activation = Literal["linear", "lrelu"]


def activation_gain(activation: Activation) -> float:
    """The gain that keeps an activation's output at unit variance: sqrt(2) for leaky ReLU, else 1.

    Args:
        activation: `"linear"` or `"lrelu"`.
    """
    return LRELU_GAIN if activation == "lrelu" else 1.0


def bias_act(x: torch.Tensor, bias: torch.Tensor | None, activation: Activation) -> torch.Tensor:
    """`x + bias`, then the activation. The gain must already be folded into `x` and `bias`.

    Args:
        x: input (N, C, ...).
        bias: (C,), or None for no bias.
        activation: `"linear"` (none) or `"lrelu"` (leaky ReLU, slope 0.2).

    Returns:
        A tensor shaped like `x`.
    """
    if bias is not None:
        x = x + bias.reshape(1, -1, *([1] * (x.ndim - 2))).to(x.dtype)
    if activation == "lrelu":
        return F.leaky_relu(x, LRELU_SLOPE, inplace=bias is not None)
    return x


# --------------------------------------------------------------------------------------------------
# Equalized learning rate layers


class EqualLinear(nn.Module):
    """Fully connected layer with equalized learning rate and an optional lr multiplier.

    Args:
        in_features: input width.
        out_features: output width.
        bias: whether the layer has a bias.
        activation: `"linear"` or `"lrelu"` (its gain is folded into the weight scale).
        lr_multiplier: learning-rate multiplier; the weight is stored divided by it (the mapping
            network uses 0.01).
        bias_init: initial value of every bias.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: Activation = "linear",
        lr_multiplier: float = 1.0,  # the mapping network uses 0.01
        bias_init: float = 0.0,
    ):
        super().__init__()
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        gain = activation_gain(activation)
        self.weight_scale = gain * lr_multiplier / math.sqrt(in_features)
        self.bias_scale = gain * lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer.

        Args:
            x: input (N, in_features).

        Returns:
            (N, out_features).
        """
        # alpha scales the product, so the (up to 8M-element) weight is never rescaled in memory.
        w = self.weight.to(x.dtype).t()
        if self.bias is None:
            return bias_act(torch.mm(x, w) * self.weight_scale, None, self.activation)
        b = (self.bias * self.bias_scale).to(x.dtype).unsqueeze(0)
        x = torch.addmm(b, x, w, alpha=self.weight_scale)
        return F.leaky_relu_(x, LRELU_SLOPE) if self.activation == "lrelu" else x

    def extra_repr(self) -> str:
        """The widths and activation, for `print(model)`."""
        return f"{self.in_features}, {self.out_features}, activation={self.activation}"


class EqualConv2d(nn.Module):
    """Convolution with equalized learning rate; `down=2` blurs with the FIR filter then strides.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd side k of the square kernel; with `down=1` the output keeps the size.
        bias: whether the layer has a bias.
        activation: `"linear"` or `"lrelu"` (its gain is folded into the weight scale).
        down: 1, or 2 to halve the resolution.

    Raises:
        ValueError: `down` is neither 1 nor 2.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: Activation = "linear",
        down: int = 1,  # 1 or 2
    ):
        super().__init__()
        if down not in (1, 2):
            raise ValueError(f"down must be 1 or 2, got {down}")
        self.in_channels, self.out_channels, self.kernel_size = (
            in_channels,
            out_channels,
            kernel_size,
        )
        self.activation, self.down = activation, down
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        gain = activation_gain(activation)
        self.weight_scale = gain / math.sqrt(in_channels * kernel_size**2)
        self.bias_scale = gain
        self.register_buffer("fir", fir_filter(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the convolution.

        Args:
            x: input (N, in_channels, H, W); H and W even when `down=2`.

        Returns:
            (N, out_channels, H, W), or (N, out_channels, H/2, W/2) when `down=2`.
        """
        # Scaled straight into the input's layout, which the conv would otherwise copy it to.
        w = product_in_layout(self.weight.to(x.dtype), self.weight_scale, memory_format(x))
        b = (self.bias * self.bias_scale).to(x.dtype) if self.bias is not None else None
        k = self.kernel_size
        if self.down == 2:
            # Blur, then a strided conv: pad so that (H + pads - taps + 1 - k) / 2 + 1 = H / 2.
            taps = self.fir.numel()
            p = (taps - 2 + k - 1) // 2
            x = upfirdn2d(x, self.fir, padding=(p, p, p, p))
            x = conv2d(x, w, b, stride=2)
        else:
            x = conv2d(x, w, b, padding=k // 2)
        if self.activation == "lrelu":
            x = F.leaky_relu(x, LRELU_SLOPE, inplace=True)
        return x

    def extra_repr(self) -> str:
        """The channels, kernel, activation, downsampling and bias, for `print(model)`."""
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"activation={self.activation}, down={self.down}, bias={self.bias is not None}"
        )


NoiseMode = Literal["random", "const", "none"]


class ModulatedConv2d(nn.Module):
    """A modulated conv layer of the synthesis network.

    affine -> modulated conv -> (FIR up) -> noise -> bias -> activation. With
    `demodulate=False, kernel_size=1, activation='linear', use_noise=False` it is the ToRGB
    layer.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        style_dim: inputs of the affine map A (w_dim + global_dim under co-modulation).
        resolution: output (H, W): the size of the constant noise.
        w_index: which broadcast w this layer reads; None when there is no w.
        kernel_size: side k of the square kernel.
        up: 1, or 2 to double the resolution.
        demodulate: normalise each output filter per sample (off for ToRGB).
        use_noise: add per-pixel noise scaled by a learned strength (which starts at 0).
        activation: `"linear"` or `"lrelu"`.
        impl: modulated conv path, see `i2i.networks.ops.modulated_conv2d`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        style_dim: int,  # inputs of the affine map A (w_dim + global_dim under co-modulation)
        resolution: tuple[int, int],  # output (H, W): the size of the constant noise
        w_index: int | None,  # which broadcast w this layer reads; None when there is no w
        kernel_size: int = 3,
        up: int = 1,  # 1 or 2
        demodulate: bool = True,
        use_noise: bool = True,
        activation: Activation = "lrelu",
        impl: ModConvImpl = "auto",
    ):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = (
            in_channels,
            out_channels,
            kernel_size,
        )
        self.resolution, self.w_index, self.up = tuple(resolution), w_index, up
        self.demodulate, self.use_noise, self.activation, self.impl = (
            demodulate,
            use_noise,
            activation,
            impl,
        )
        # style = A(input) + 1: the bias starts at 0 so every style starts at 1.
        self.affine = EqualLinear(style_dim, in_channels, bias=True)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        if use_noise:
            self.noise_strength = nn.Parameter(torch.zeros([]))
            self.register_buffer("noise_const", torch.randn(1, 1, *self.resolution))
        self.register_buffer("fir", fir_filter(), persistent=False)

    def styles(self, style_input: torch.Tensor) -> torch.Tensor:
        """The per-input-channel styles A(style_input) + 1.

        Args:
            style_input: (N, style_dim).

        Returns:
            (N, in_channels); they start near 1.
        """
        return self.affine(style_input) + 1.0

    def forward(self, x: torch.Tensor, style_input: torch.Tensor, noise_mode: NoiseMode = "random"):
        """Apply the layer.

        Args:
            x: input (N, in_channels, H, W).
            style_input: (N, style_dim): w, or w concatenated with the encoder's global code.
            noise_mode: `"random"` (fresh noise per call), `"const"` (the stored noise image, for
                repeatable output) or `"none"` (no noise).

        Returns:
            out (torch.Tensor): (N, out_channels, H, W), or (N, out_channels, 2H, 2W) when `up=2`.

        Raises:
            ValueError: `noise_mode` is none of the three names (with noise in use).
        """
        gain = activation_gain(self.activation)
        # Without upsampling the bias joins the convolution ((conv + b) + noise is the same sum);
        # after a transposed conv it must wait for the FIR filter, which would smear it at borders.
        fused_bias = self.bias * gain if self.up == 1 else None
        x = modulated_conv2d(
            x,
            self.weight,
            self.styles(style_input),
            demodulate=self.demodulate,
            up=self.up,
            gain=gain,
            impl=self.impl,
            bias=fused_bias,
        )
        if self.up == 2:
            # Transposed conv gave 2H + 1 pixels; the FIR filter with one pixel of padding gives 2H.
            x = upfirdn2d(x, self.fir, padding=(1, 1, 1, 1), gain=4.0)
        if self.use_noise and noise_mode != "none":
            if noise_mode == "const":
                noise = self.noise_const
            elif noise_mode == "random":
                noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
            else:
                raise ValueError(
                    f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}"
                )
            x = x.add_(noise.to(x.dtype) * (self.noise_strength * gain).to(x.dtype))
        if fused_bias is not None:
            return F.leaky_relu_(x, LRELU_SLOPE) if self.activation == "lrelu" else x
        return bias_act(x, self.bias * gain, self.activation)

    def extra_repr(self) -> str:
        """The channels, kernel, upsampling, demodulation, noise, w index and resolution."""
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"up={self.up}, "
            f"demodulate={self.demodulate}, noise={self.use_noise}, w_index={self.w_index}, "
            f"resolution={self.resolution}"
        )


# --------------------------------------------------------------------------------------------------
# Discriminator helpers


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Pixel norm: scale each vector to unit mean square.

    Args:
        x: input tensor.
        dim: the dimension along which the mean square is taken.
        eps: added to the mean square before the inverse square root.

    Returns:
        A tensor shaped like `x`.
    """
    return x * torch.rsqrt(x.square().mean(dim=dim, keepdim=True) + eps)


def mbstd_group_size(batch_size: int, max_group_size: int) -> int:
    """Largest group size <= max_group_size that divides the batch (official: min(4, N)).

    Args:
        batch_size: the number of samples N.
        max_group_size: the upper bound (the layer's `group_size`).

    Returns:
        The group size, at least 1.
    """
    return max(g for g in range(1, min(max_group_size, batch_size) + 1) if batch_size % g == 0)


class MinibatchStdLayer(nn.Module):
    """Appends the across-group standard deviation of the features as extra channels.

    This lets the discriminator see a lack of variety in a batch of fakes.

    Args:
        group_size: largest number of samples per group; the group size used is the largest
            divisor of the batch not above it.
        num_channels: number of appended channels F (the features are split into F groups);
            must divide the input's channels.
    """

    def __init__(self, group_size: int = 4, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Append the minibatch standard deviation.

        Args:
            x: features (N, C, H, W).

        Returns:
            (N, C + num_channels, H, W).
        """
        n, c, h, w = x.shape
        g = mbstd_group_size(n, self.group_size)
        f = self.num_channels
        y = x.float().reshape(g, -1, f, c // f, h, w)  # [G, n/G, F, c/F, H, W]
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()  # [n/G, F, c/F, H, W]
        y = y.mean(dim=(2, 3, 4))  # [n/G, F]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w).to(x.dtype)  # [N, F, H, W]
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        """The group size and number of appended channels."""
        return f"group_size={self.group_size}, num_channels={self.num_channels}"
