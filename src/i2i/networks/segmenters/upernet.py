"""UperNet (Xiao et al., "Unified Perceptual Parsing", ECCV 2018) on ResNet-101, the ADE20K
segmenter of SPADE's evaluation: CSAILVision/semantic-segmentation-pytorch's
`ade20k-resnet101-upernet` model, two files (`encoder_epoch_50.pth`, `decoder_epoch_50.pth`),
150 classes (the SceneParsing annotation values 1..150 minus one).

Module names follow the published files: `encoder` is the CSAIL ResNet-101 (a deep stem of three
3x3 convolutions `conv1`..`conv3` with `bn1`..`bn3`, then `layer1`..`layer4` of torchvision-style
bottlenecks `conv1`..`conv3`/`bn1`..`bn3`/`downsample`, the stride on the 3x3), `decoder` the
UperNet head: pyramid pooling on the last stage (`ppm_conv`, `ppm_last_conv`), a feature pyramid
(`fpn_in`, `fpn_out`) and the fused classifier (`conv_last`), at 1/4 of the input size.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from i2i.networks.segmenters.base import Bottleneck, Segmenter, bn, conv, load_exact, to_unit

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ResNetEncoder(nn.Module):
    """CSAIL's ResNet-101 (deep stem, 3 / 4 / 23 / 3 blocks).

    Returns the four stages' outputs at 1/4, 1/8, 1/16 and 1/32 with 256, 512, 1024 and 2048
    channels.

    Args:
        blocks (tuple[int, ...]): bottlenecks per stage.
    """

    def __init__(self, blocks=(3, 4, 23, 3)):
        super().__init__()
        self.conv1, self.bn1 = conv(3, 64, 3, 2), bn(64)
        self.conv2, self.bn2 = conv(64, 64, 3), bn(64)
        self.conv3, self.bn3 = conv(64, 128, 3), bn(128)
        cin = 128
        for i, (n, width) in enumerate(zip(blocks, (64, 128, 256, 512), strict=True)):
            stride = 1 if i == 0 else 2
            layers = [Bottleneck(cin, width, stride)] + [
                Bottleneck(4 * width, width) for _ in range(n - 1)
            ]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))
            cin = 4 * width

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four stages' features.

        Args:
            x: normalised images (N, 3, H, W).

        Returns:
            [(N, 256, H/4, W/4), (N, 512, H/8, W/8), (N, 1024, H/16, W/16), (N, 2048, H/32, W/32)]
            (sizes rounded up).
        """
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        x = F.max_pool2d(x, 3, 2, 1)
        features = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            features.append(x)
        return features


def conv_bn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    """A bias-free k x k convolution ('same' padding), BatchNorm and ReLU.

    Args:
        cin: input channels.
        cout: output channels.
        k: odd kernel side.
    """
    return nn.Sequential(conv(cin, cout, k), bn(cout), nn.ReLU())


class UperNetDecoder(nn.Module):
    """The UperNet head.

    Pyramid pooling (bins 1, 2, 3, 6) on the last stage, top-down feature pyramid, all levels
    upsampled to 1/4 and fused into class scores.

    Args:
        num_classes: output channels, one per class.
        in_channels: channels of the encoder's stages, finest first.
        width: fpn_dim of the "upernet" decoder (256 is "upernet_lite").
        bins: the pyramid pooling's output sizes.
    """

    def __init__(
        self,
        num_classes: int = 150,
        in_channels: tuple[int, ...] = (256, 512, 1024, 2048),
        width: int = 512,  # fpn_dim of the "upernet" decoder (256 is "upernet_lite")
        bins: tuple[int, ...] = (1, 2, 3, 6),
    ):
        super().__init__()
        top = in_channels[-1]
        self.bins = tuple(bins)
        self.ppm_conv = nn.ModuleList(conv_bn_relu(top, 512, 1) for _ in bins)
        self.ppm_last_conv = conv_bn_relu(top + len(bins) * 512, width)
        self.fpn_in = nn.ModuleList(conv_bn_relu(c, width, 1) for c in in_channels[:-1])
        self.fpn_out = nn.ModuleList(
            nn.Sequential(conv_bn_relu(width, width)) for _ in in_channels[:-1]
        )
        self.conv_last = nn.Sequential(
            conv_bn_relu(len(in_channels) * width, width), nn.Conv2d(width, num_classes, 1)
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Fuse the encoder's features into class scores.

        Args:
            features: the encoder's stages, finest first (see `ResNetEncoder.forward`).

        Returns:
            Logits (N, num_classes, h, w) at the finest feature's size (1/4 of the input).
        """

        def resize(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)

        top = features[-1]
        pooled = [top] + [
            branch(resize(F.adaptive_avg_pool2d(top, b), top))
            for b, branch in zip(self.bins, self.ppm_conv, strict=True)
        ]
        f = self.ppm_last_conv(torch.cat(pooled, 1))
        levels = [f]
        for i in reversed(range(len(features) - 1)):
            f = self.fpn_in[i](features[i]) + resize(f, features[i])
            levels.append(self.fpn_out[i](f))
        levels.reverse()  # finest first
        fused = torch.cat([levels[0]] + [resize(x, levels[0]) for x in levels[1:]], 1)
        return self.conv_last(fused)


class UperNetSegmenter(Segmenter):
    """UperNet ResNet-101 for ADE20K's 150 classes, evaluated as the release's eval.py.

    The shorter side is resized to each of `sizes` (the longer one capped at `max_size`), both
    sides rounded up to a multiple of `multiple`, the class probabilities averaged over the
    sizes.

    Args:
        num_classes: ADE20K SceneParsing classes 1..150 as 0..149.
        weights: `"published"`, `"encoder.pth,decoder.pth"`, or None (random init).
        sizes: shorter sides to evaluate at; one size means single-scale.
        max_size: cap on the longer side.
        multiple: sides rounded up to a multiple of it (eval.py's padding_constant).

    Raises:
        ValueError: `sizes` is empty.
    """

    published = (
        "ade20k-resnet101-upernet-encoder_epoch_50.pth",
        "ade20k-resnet101-upernet-decoder_epoch_50.pth",
    )

    def __init__(
        self,
        num_classes: int = 150,  # ADE20K SceneParsing classes 1..150 as 0..149
        weights: str | None = "published",  # "published", "encoder.pth,decoder.pth", or None
        sizes: tuple[int, ...] = (300, 375, 450, 525, 600),  # shorter sides; one = single-scale
        max_size: int = 1000,  # cap on the longer side
        multiple: int = 32,  # sides rounded up to a multiple of it (padding_constant)
    ):
        super().__init__(num_classes, weights)
        if not sizes:
            raise ValueError("UperNetSegmenter needs at least one size")
        self.sizes, self.max_size, self.multiple = tuple(sizes), int(max_size), int(multiple)
        self.encoder = ResNetEncoder()
        self.decoder = UperNetDecoder(num_classes)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _load_files(self, states: list[tuple[dict[str, torch.Tensor], str]]) -> None:
        (encoder, encoder_source), (decoder, decoder_source) = states
        load_exact(self.encoder, encoder, encoder_source)
        load_exact(self.decoder, decoder, decoder_source)

    def scaled_size(self, height: int, width: int, short: int) -> tuple[int, int]:
        """The (H, W) the encoder reads for one evaluated size.

        Args:
            height: the input's height.
            width: the input's width.
            short: the target of the shorter side.

        Returns:
            Both sides scaled by min(short / shorter side, max_size / longer side), each rounded up
            to a multiple of `multiple`.
        """
        scale = min(short / min(height, width), self.max_size / max(height, width))
        m = self.multiple
        return tuple(-(-int(side * scale) // m) * m for side in (height, width))  # type: ignore[return-value]

    def segment(self, images: torch.Tensor) -> torch.Tensor:
        """Class scores averaged over the evaluated sizes.

        Args:
            images: (N, 3, H, W) RGB in [-1, 1].

        Returns:
            With one size: logits (N, num_classes, h, w) at 1/4 of the scaled size. With several:
            the log of the mean class probabilities (N, num_classes, H, W) at the input's size.
        """
        x = (to_unit(images) - self.mean) / self.std
        height, width = x.shape[-2:]
        probs = None
        for short in self.sizes:
            size = self.scaled_size(height, width, short)
            scaled = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            logits = self.decoder(self.encoder(scaled))
            if len(self.sizes) == 1:
                return logits
            # eval.py averages the probabilities at the evaluated size: here the input's
            p = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
            probs = p.softmax(1) if probs is None else probs + p.softmax(1)
        return (probs / len(self.sizes)).clamp_min(1e-12).log()  # log of the mean: argmax kept

    def protocol(self) -> dict[str, Any]:
        """The base record plus the architecture, input normalisation, sizes and multi-scale."""
        return {
            **super().protocol(),
            "architecture": "UperNet (PPM bins 1, 2, 3, 6 + FPN, width 512) on CSAIL ResNet-101",
            "input": "RGB in [0, 1], normalised with the ImageNet mean/std",
            "input_size": f"shorter side {list(self.sizes)}, longer side <= {self.max_size}, "
            f"sides rounded up to a multiple of {self.multiple}",
            "multi_scale": len(self.sizes) > 1,
        }
