"""The parts of CoModGAN's generator (`i2i.networks.comod.CoModGenerator`): the resolution
ladder that gives each level its size and channel count (shared with the discriminator), the
mapping network from z to w, the encoder of the condition into skip features and the global
code, and the decoder that co-modulates its synthesis layers with both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from i2i.networks.layers import (
    EqualConv2d,
    EqualLinear,
    ModulatedConv2d,
    NoiseMode,
    normalize_2nd_moment,
)
from i2i.networks.ops import ModConvImpl, fir_filter, memory_format, to_fast_layout, upsample2d
from i2i.resolution import parse_resolution


class ResolutionLadder:
    """Shapes and channel widths of every level k (the shorter side is 2^k), shared by G and D.

    Args:
        img_resolution (int | tuple[int, int]): the image size: an int (square) or (H, W),
            powers of two with an aspect ratio up to 4:1 (see
            `i2i.resolution.parse_resolution`).
        channel_base: the width at level k is min(channel_base / 2^(k-1), channel_max).
        channel_max: the largest width of any level.
    """

    def __init__(self, img_resolution, channel_base: int, channel_max: int):
        self.height, self.width = parse_resolution(img_resolution, name="img_resolution")
        short = min(self.height, self.width)
        self.aspect = (self.height // short, self.width // short)  # the 4x4 bottleneck times this
        self.top = int(math.log2(short))  # level of the full resolution
        self.channel_base, self.channel_max = channel_base, channel_max

    def channels(self, level: int) -> int:
        """The channel width at a level.

        Args:
            level: k, where the shorter side of the feature map is 2^k (2 is the 4x4 bottleneck).

        Returns:
            min(channel_base / 2^(k-1), channel_max).
        """
        return min(self.channel_base // 2 ** (level - 1), self.channel_max)

    def size(self, level: int) -> tuple[int, int]:
        """The feature map's (H, W) at a level.

        Args:
            level: k, where the shorter side is 2^k.

        Returns:
            (2^k, 2^k) times the aspect ratio, for example (4, 8) at level 2 of a 256x512 ladder.
        """
        return (2**level * self.aspect[0], 2**level * self.aspect[1])

    @property
    def levels_down(self) -> range:
        """The encoder's and discriminator's block levels, from the top down to 8x8."""
        return range(self.top, 2, -1)


class MappingNetwork(nn.Module):
    """z -> pixel norm -> `num_layers` FC layers (lr multiplier 0.01) -> w.

    Args:
        z_dim: size of the latent z.
        w_dim: size of the intermediate latent w (and of every hidden layer).
        num_layers: number of fully connected layers, each with leaky ReLU.
        lr_multiplier: learning-rate multiplier of every layer.
    """

    def __init__(self, z_dim: int, w_dim: int, num_layers: int = 8, lr_multiplier: float = 0.01):
        super().__init__()
        dims = [z_dim] + [w_dim] * num_layers
        self.layers = nn.Sequential(
            *(
                EqualLinear(i, o, activation="lrelu", lr_multiplier=lr_multiplier)
                for i, o in zip(dims[:-1], dims[1:], strict=True)
            )
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Map latents to intermediate latents.

        Args:
            z: (N, z_dim), usually N(0, 1).

        Returns:
            w (N, w_dim).
        """
        return self.layers(normalize_2nd_moment(z))


class Encoder(nn.Module):
    """The conditional branch of the generator.

    From-RGB 1x1, then per level a 3x3 conv (its output is the skip feature E[res]) and a
    blurred stride-2 3x3 conv; at 4x4 a 3x3 conv (E[4]), flatten, dense to the global code g,
    dropout.

    Args:
        ladder: the levels' sizes and widths.
        cond_channels: channels of the condition.
        global_dim: size of the global code g.
        dropout: dropout probability on g, in [0, 1].
        dropout_at_inference: keep the dropout on g in eval mode (the official behaviour).
    """

    def __init__(
        self,
        ladder: ResolutionLadder,
        cond_channels: int,
        global_dim: int,
        dropout: float,
        dropout_at_inference: bool,
    ):
        super().__init__()
        self.ladder, self.dropout, self.dropout_at_inference = ladder, dropout, dropout_at_inference
        self.from_rgb = EqualConv2d(
            cond_channels, ladder.channels(ladder.top), 1, activation="lrelu"
        )
        self.blocks = nn.ModuleDict()
        for level in ladder.levels_down:
            c, c_next = ladder.channels(level), ladder.channels(level - 1)
            self.blocks[str(level)] = nn.ModuleDict(
                {
                    "conv": EqualConv2d(c, c, 3, activation="lrelu"),
                    "down": EqualConv2d(c, c_next, 3, activation="lrelu", down=2),
                }
            )
        c4 = ladder.channels(2)
        self.conv4 = EqualConv2d(c4, c4, 3, activation="lrelu")
        h4, w4 = ladder.size(2)
        self.fc = EqualLinear(c4 * h4 * w4, global_dim, activation="lrelu")

    def forward(self, cond: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Encode a condition.

        Args:
            cond: (N, cond_channels, H, W) at the ladder's full resolution, in any memory
                layout (converted by `i2i.networks.ops.to_fast_layout`).

        Returns:
            The global code g (N, global_dim) and the skip features {level: (N, channels(level),
            *size(level))} for every level from the top down to 2 (4x4).
        """
        # Every later layer, the decoder's too, follows the layout of this first one's input.
        x = self.from_rgb(to_fast_layout(cond))
        skips: dict[int, torch.Tensor] = {}
        for level in self.ladder.levels_down:
            block = self.blocks[str(level)]
            x = block["conv"](x)
            skips[level] = x
            x = block["down"](x)
        x = self.conv4(x)
        skips[2] = x
        g = self.fc(x.flatten(1))
        # The official code keeps this dropout on at inference (its guard is commented out), so the
        # global code is stochastic at test time too; `dropout_at_inference=False` turns that off.
        g = F.dropout(g, self.dropout, training=self.training or self.dropout_at_inference)
        return g, skips


class Decoder(nn.Module):
    """The synthesis branch of the generator.

    dense(g) -> 4x4 plus E[4], then per level an up-sampling modulated conv, + E[res], a
    modulated conv and a ToRGB, with the skip RGB architecture.

    Args:
        ladder: the levels' sizes and widths.
        img_channels: channels of the output image.
        global_dim: size of the global code g.
        style_dim: inputs of each layer's affine map (w_dim, global_dim, or their sum).
        has_w: whether the layers read a w (False under `modulation='cond'`).
        g_in_styles: whether the affine maps read g (co-modulation and 'cond').
        modconv_impl: modulated conv path, see `i2i.networks.ops.modulated_conv2d`.
    """

    def __init__(
        self,
        ladder: ResolutionLadder,
        img_channels: int,
        global_dim: int,
        style_dim: int,
        has_w: bool,
        g_in_styles: bool,  # co-modulation and 'cond': the affine maps read g
        modconv_impl: ModConvImpl,
    ):
        super().__init__()
        self.ladder, self.g_in_styles = ladder, g_in_styles
        c4 = ladder.channels(2)
        h4, w4 = ladder.size(2)
        self.fc = EqualLinear(global_dim, c4 * h4 * w4, activation="lrelu")

        def index(i: int) -> int | None:
            return i if has_w else None

        def conv(c_in, c_out, level, w_index, up=1):
            return ModulatedConv2d(
                c_in, c_out, style_dim, ladder.size(level), index(w_index), up=up, impl=modconv_impl
            )

        def to_rgb(c_in, level, w_index):
            return ModulatedConv2d(
                c_in,
                img_channels,
                style_dim,
                ladder.size(level),
                index(w_index),
                kernel_size=1,
                demodulate=False,
                use_noise=False,
                activation="linear",
                impl=modconv_impl,
            )

        # Layer indices of the spec: 4x4 conv 0 and ToRGB 1; at res 2^k: up conv 2k-5, conv 2k-4,
        # ToRGB 2k-3. Each layer stores its own index at construction, so no loop variable is
        # captured late (the bug of a known port that made every up conv read the last w).
        self.conv4 = conv(c4, c4, 2, 0)
        self.to_rgb4 = to_rgb(c4, 2, 1)
        self.blocks = nn.ModuleDict()
        for level in range(3, ladder.top + 1):
            c_in, c = ladder.channels(level - 1), ladder.channels(level)
            self.blocks[str(level)] = nn.ModuleDict(
                {
                    "conv_up": conv(c_in, c, level, 2 * level - 5, up=2),
                    "conv": conv(c, c, level, 2 * level - 4),
                    "to_rgb": to_rgb(c, level, 2 * level - 3),
                }
            )
        self.num_ws = 2 * ladder.top - 2
        self.register_buffer("fir", fir_filter(), persistent=False)

    def forward(
        self,
        ws: torch.Tensor | None,  # (N, num_ws, w_dim), or None when modulation is 'cond'
        g: torch.Tensor,  # (N, global_dim): the decoder's input, and a style input unless 'style'
        skips: dict[int, torch.Tensor],
        noise_mode: NoiseMode,
    ) -> torch.Tensor:
        """Synthesise the raw image.

        Args:
            ws: (N, num_ws, w_dim), or None when modulation is 'cond'.
            g: (N, global_dim): the decoder's input, and a style input unless modulation is 'style'.
            skips: the encoder's skip features by level (see `Encoder.forward`).
            noise_mode: `"random"`, `"const"` or `"none"` (see `ModulatedConv2d.forward`).

        Returns:
            The raw image (N, img_channels, H, W), not clamped.
        """

        def style_input(layer: ModulatedConv2d) -> torch.Tensor:
            parts = []
            if layer.w_index is not None:
                parts.append(ws[:, layer.w_index])
            if self.g_in_styles:
                parts.append(g)
            return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

        e4 = skips[2]
        # Follow the encoder's memory format: the FIR filters' depthwise convs are much faster
        # in channels_last on CPU (docs/benchmarks.md, FIR filters).
        x = e4 + self.fc(g).reshape(e4.shape).contiguous(memory_format=memory_format(e4))
        x = self.conv4(x, style_input(self.conv4), noise_mode)
        img = self.to_rgb4(x, style_input(self.to_rgb4), noise_mode)
        for level in range(3, self.ladder.top + 1):
            block = self.blocks[str(level)]
            x = block["conv_up"](x, style_input(block["conv_up"]), noise_mode)
            x = x + skips[level]
            x = block["conv"](x, style_input(block["conv"]), noise_mode)
            img = upsample2d(img, self.fir) + block["to_rgb"](x, style_input(block["to_rgb"]))
        return img
