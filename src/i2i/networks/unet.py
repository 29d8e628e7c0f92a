"""pix2pix's U-Net generator (Isola et al., CVPR 2017), from the paper's description.

Encoder C64-C128-C256-C512-C512-C512-C512-C512 (4x4 convolutions with stride 2, LeakyReLU 0.2,
BatchNorm except on the first and the innermost layer), a mirrored decoder of 4x4 transposed
convolutions (ReLU, BatchNorm, Tanh at the output), and skip connections that concatenate each
encoder feature to the decoder feature of the same size. Dropout 0.5 in the decoder blocks right
after the innermost one (the `num_downs - 5` blocks of 8 x ngf channels) is the only noise: the
official code keeps it on at test time, and so does this network unless told otherwise.
"""

from __future__ import annotations

import torch
from torch import nn

from i2i.networks.blocks import Dropout, Norm, conv_bias, init_normal_, norm_layer


class UNetGenerator(nn.Module):
    """pix2pix's U-Net generator.

    `UNetGenerator()` is pix2pix's unet_256: 8 downsamplings, ngf 64, RGB in and out,
    54,413,955 parameters. Inputs need sides divisible by 2^num_downs.

    Args:
        in_channels: channels of the condition.
        out_channels: channels of the output image.
        ngf: filters of the outermost layer; doubled per level up to 8 x ngf.
        num_downs: downsamplings: 8 for 256 px (unet_256), 7 for 128 px; at least 5.
        norm: `"batch"`, `"instance"` or `"none"`.
        dropout: in the 8 x ngf decoder blocks after the innermost one; 0 for none.
        dropout_at_inference: keep that dropout in eval mode (pix2pix applies it at test time).
        init_std: standard deviation of the N(0, std) initialisation.

    Raises:
        ValueError: `num_downs` is below 5.
    """

    def __init__(
        self,
        in_channels: int = 3,  # channels of the condition
        out_channels: int = 3,  # channels of the output image
        ngf: int = 64,  # filters of the outermost layer; doubled per level up to 8 x ngf
        num_downs: int = 8,  # downsamplings: 8 for 256 px (unet_256), 7 for 128 px
        norm: Norm = "batch",
        dropout: float = 0.5,  # in the 8 x ngf decoder blocks after the innermost one
        dropout_at_inference: bool = True,  # pix2pix applies dropout at test time too
        init_std: float = 0.02,
    ):
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs must be >= 5 (unet_256 has 8), got {num_downs}")
        self.in_channels, self.out_channels, self.num_downs = in_channels, out_channels, num_downs
        # outer[k], inner[k]: the channels around level k (1 = outermost ... num_downs = innermost)
        inner = [min(ngf * 2**k, ngf * 8) for k in range(num_downs)]
        outer = [in_channels, *inner[:-1]]
        bias = conv_bias(norm)
        self.down = nn.ModuleList()
        self.up = nn.ModuleList()
        for k in range(num_downs):
            innermost, outermost = k == num_downs - 1, k == 0
            layers: list[nn.Module] = [] if outermost else [nn.LeakyReLU(0.2, inplace=False)]
            layers.append(nn.Conv2d(outer[k], inner[k], 4, stride=2, padding=1, bias=bias))
            if not (outermost or innermost):
                layers.append(norm_layer(norm, inner[k]))
            self.down.append(nn.Sequential(*layers))

            up_in = inner[k] if innermost else 2 * inner[k]  # skip concatenation below
            up_out = out_channels if outermost else outer[k]
            layers = [nn.ReLU()]
            if outermost:
                layers += [nn.ConvTranspose2d(up_in, up_out, 4, 2, 1), nn.Tanh()]
            else:
                layers += [
                    nn.ConvTranspose2d(up_in, up_out, 4, 2, 1, bias=bias),
                    norm_layer(norm, up_out),
                ]
                if dropout > 0 and 4 <= k < num_downs - 1:  # outer = inner = 8 x ngf
                    layers.append(Dropout(dropout, at_inference=dropout_at_inference))
            self.up.append(nn.Sequential(*layers))
        init_normal_(self, init_std)

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        """Translate conditions to images.

        Args:
            cond: (N, in_channels, H, W), H and W divisible by 2^num_downs.

        Returns:
            (N, out_channels, H, W) in [-1, 1] (Tanh).
        """
        skips = []
        x = cond
        for block in self.down:
            x = block(x)
            skips.append(x)
        y = self.up[-1](skips[-1])
        for k in range(self.num_downs - 2, -1, -1):
            y = self.up[k](torch.cat([skips[k], y], dim=1))
        return y
