"""The hourglass network of deep image prior (Ulyanov et al., CVPR 2018), from the paper's
description of its inpainting architecture.

An encoder-decoder with skip connections over `levels` levels: each encoder level a stride-2 3x3
convolution and a 3x3 convolution (`channels` each), each skip a 1x1 convolution to
`skip_channels`; each decoder level the skip concatenated with the bilinearly upsampled deeper
features, a 3x3 and a 1x1 convolution. BatchNorm and LeakyReLU 0.2 after every convolution,
reflection padding, and a 1x1 convolution to the image with a sigmoid (mapped to [-1, 1]). The
input is a fixed random code; the network's structure is the prior. Sides must be divisible by
2^levels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv(c_in: int, c_out: int, k: int, stride: int = 1) -> list[nn.Module]:
    pad = (k - 1) // 2
    layers: list[nn.Module] = [nn.ReflectionPad2d(pad)] if pad else []
    layers += [nn.Conv2d(c_in, c_out, k, stride=stride), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
    return layers


class HourglassNetwork(nn.Module):
    """`net(code)` -> image (N, out_channels, H, W) in [-1, 1], for a code (N, C, H, W).

    Args:
        in_channels: channels of the random input code.
        out_channels: channels of the output image.
        channels: per level, encoder and decoder (the paper's inpainting setting: 128).
        skip_channels: per skip connection.
        levels: encoder (and decoder) levels; sides must be divisible by 2^levels.
    """

    def __init__(
        self,
        in_channels: int = 32,  # channels of the random input code
        out_channels: int = 3,
        channels: int = 128,  # per level, encoder and decoder (the paper's inpainting setting)
        skip_channels: int = 4,  # per skip connection
        levels: int = 5,
    ):
        super().__init__()
        self.in_channels, self.levels = in_channels, levels
        self.down = nn.ModuleList()
        self.skip = nn.ModuleList()
        self.up = nn.ModuleList()
        c_prev = in_channels
        for _ in range(levels):
            self.skip.append(nn.Sequential(*_conv(c_prev, skip_channels, 1)))
            self.down.append(
                nn.Sequential(*_conv(c_prev, channels, 3, 2), *_conv(channels, channels, 3))
            )
            c_prev = channels
        for _ in range(levels):
            deeper = channels  # every level of the decoder outputs `channels`
            self.up.append(
                nn.Sequential(
                    nn.BatchNorm2d(skip_channels + deeper),
                    *_conv(skip_channels + deeper, channels, 3),
                    *_conv(channels, channels, 1),
                )
            )
        self.to_image = nn.Conv2d(channels, out_channels, 1)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        """Decode an image from the fixed code.

        Args:
            code: (N, in_channels, H, W), H and W divisible by 2^levels.

        Returns:
            (N, out_channels, H, W) in [-1, 1].

        Raises:
            ValueError: a side is not divisible by 2^levels.
        """
        size = 2**self.levels
        if code.shape[-2] % size or code.shape[-1] % size:
            raise ValueError(
                f"the hourglass needs sides divisible by {size} ({self.levels} levels), got "
                f"{tuple(code.shape[-2:])}: pad the input (deep_image_prior does it for you)"
            )
        skips, x = [], code
        for skip, down in zip(self.skip, self.down, strict=True):
            skips.append(skip(x))
            x = down(x)
        for level in reversed(range(self.levels)):
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = self.up[level](torch.cat([skips[level], x], dim=1))
        return torch.sigmoid(self.to_image(x)) * 2 - 1
