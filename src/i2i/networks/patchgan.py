"""The PatchGAN discriminator of pix2pix and CycleGAN (Isola et al. 2017; Zhu et al. 2017).

A stack of 4x4 convolutions whose every output logit sees a 70x70 patch of the input (with the
default three strided layers): C64 (no norm) - C128 - C256 (stride 2) - C512 (stride 1) - a
1-channel 4x4 convolution, LeakyReLU 0.2 between them. For pix2pix it reads concat(condition,
image), for CycleGAN the image alone.
"""

from __future__ import annotations

import torch
from torch import nn

from i2i.networks.blocks import Norm, conv_bias, init_normal_, norm_layer


class PatchDiscriminator(nn.Module):
    """`D(image, cond=None)` -> patch logits (N, 1, H', W').

    `PatchDiscriminator()` is pix2pix's 70x70 PatchGAN on 6 channels with BatchNorm: 2,768,705
    parameters; with `in_channels=3, norm="instance"` it is CycleGAN's (2,764,737).

    Args:
        in_channels: image + condition channels (pix2pix: 3 + 3; CycleGAN: 3).
        ndf: filters of the first layer, doubled per layer up to 8 x ndf.
        n_layers: strided layers after the first: 3 gives 70x70 receptive fields.
        norm: `"batch"`, `"instance"` or `"none"` (see `i2i.networks.blocks.norm_layer`).
        init_std: standard deviation of the N(0, std) initialisation.
    """

    def __init__(
        self,
        in_channels: int = 6,  # image + condition channels (pix2pix: 3 + 3)
        ndf: int = 64,  # filters of the first layer, doubled per layer up to 8 x ndf
        n_layers: int = 3,  # strided layers after the first: 3 gives 70x70 receptive fields
        norm: Norm = "batch",
        init_std: float = 0.02,
    ):
        super().__init__()
        self.in_channels = in_channels
        bias = conv_bias(norm)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        ]
        channels = ndf
        for n in range(1, n_layers + 1):
            out = ndf * min(2**n, 8)
            stride = 2 if n < n_layers else 1  # the last hidden layer keeps the resolution
            layers += [
                nn.Conv2d(channels, out, 4, stride=stride, padding=1, bias=bias),
                norm_layer(norm, out),
                nn.LeakyReLU(0.2),
            ]
            channels = out
        layers.append(nn.Conv2d(channels, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)
        init_normal_(self, init_std)

    def forward(self, image: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Score every patch of the images.

        Args:
            image: (N, C_img, H, W) in [-1, 1].
            cond: (N, C_cond, H, W), concatenated before `image`; None for an unconditional
                discriminator. C_cond + C_img must equal `in_channels`.

        Returns:
            Logits (N, 1, H', W'), one per patch; H' = H / 2^n_layers - 2 for H divisible by
            2^n_layers (30 for 256 with the defaults).

        Raises:
            ValueError: the input channels do not add up to `in_channels`.
        """
        x = image if cond is None else torch.cat([cond.to(image.dtype), image], dim=1)
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"PatchDiscriminator expects {self.in_channels} input channels (condition + "
                f"image), got {x.shape[1]}"
            )
        return self.net(x)
