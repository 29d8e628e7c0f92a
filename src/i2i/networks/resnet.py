"""CycleGAN's ResNet generator (Zhu et al., ICCV 2017, after Johnson et al. 2016).

c7s1-64, d128, d256, R256 x n_blocks, u128, u64, c7s1-3: a 7x7 convolution, two stride-2 3x3
convolutions, residual blocks of two 3x3 convolutions, two 3x3 transposed convolutions and a 7x7
convolution to RGB with Tanh; InstanceNorm and ReLU, reflection padding. 9 blocks at 256 px, 6 at
128 px.
"""

from __future__ import annotations

import torch
from torch import nn

from i2i.networks.blocks import Dropout, Norm, conv_bias, init_normal_, norm_layer


class ResnetBlock(nn.Module):
    """x + conv-norm-ReLU-conv-norm(x), reflection-padded.

    Args:
        channels: input and output channels.
        norm: `"batch"`, `"instance"` or `"none"`.
        dropout: dropout probability after the first ReLU; 0 for none.
        bias: whether the convolutions have a bias (see `i2i.networks.blocks.conv_bias`).
    """

    def __init__(self, channels: int, norm: Norm, dropout: float, bias: bool):
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            norm_layer(norm, channels),
            nn.ReLU(),
        ]
        if dropout > 0:
            layers.append(Dropout(dropout))
        layers += [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            norm_layer(norm, channels),
        ]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the residual block.

        Args:
            x: (N, channels, H, W).

        Returns:
            (N, channels, H, W).
        """
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's ResNet generator.

    `ResnetGenerator()` is CycleGAN's resnet_9blocks at 256 px with ngf 64: 11,378,179
    parameters. Inputs need sides divisible by 4.

    Args:
        in_channels: channels of the input image.
        out_channels: channels of the output image.
        ngf: filters of the first layer (4 x ngf in the residual blocks).
        n_blocks: residual blocks: 9 at 256 px, 6 at 128 px.
        norm: `"batch"`, `"instance"` or `"none"`.
        dropout: inside the residual blocks; CycleGAN uses none.
        init_std: standard deviation of the N(0, std) initialisation.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,  # 9 at 256 px, 6 at 128 px
        norm: Norm = "instance",
        dropout: float = 0.0,  # inside the residual blocks; CycleGAN uses none
        init_std: float = 0.02,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        bias = conv_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, 7, bias=bias),
            norm_layer(norm, ngf),
            nn.ReLU(),
        ]
        channels = ngf
        for _ in range(2):  # downsampling
            layers += [
                nn.Conv2d(channels, channels * 2, 3, stride=2, padding=1, bias=bias),
                norm_layer(norm, channels * 2),
                nn.ReLU(),
            ]
            channels *= 2
        layers += [ResnetBlock(channels, norm, dropout, bias) for _ in range(n_blocks)]
        for _ in range(2):  # upsampling
            layers += [
                nn.ConvTranspose2d(
                    channels, channels // 2, 3, stride=2, padding=1, output_padding=1, bias=bias
                ),
                norm_layer(norm, channels // 2),
                nn.ReLU(),
            ]
            channels //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(channels, out_channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_normal_(self, init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate images.

        Args:
            x: (N, in_channels, H, W) in [-1, 1], H and W divisible by 4.

        Returns:
            (N, out_channels, H, W) in [-1, 1] (Tanh).
        """
        return self.net(x)
