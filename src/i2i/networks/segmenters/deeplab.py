"""DeepLab-v2 (Chen et al., TPAMI 2017): a dilated ResNet-101 with atrous spatial pyramid pooling,
as the COCO-Stuff segmenter of SPADE's evaluation (kazuto1011/deeplab-pytorch's cocostuff164k
model, `deeplabv2_resnet101_msc-cocostuff164k-100000.pth`, 182 classes: the COCO-Stuff label
PNG values 0..181).

Module names follow the published file: the network sits in `base` (the multi-scale wrapper's
attribute), with `layer1` the stem (`conv1` = conv + bn, `pool`), `layer2`..`layer5` residual
layers of `block1`.. (`reduce`, `conv3x3`, `increase`, `shortcut`, each a `conv` + `bn`) and
`aspp.c0`..`c3`. It is the Caffe ResNet: the stride sits on the 1x1 `reduce` convolution, the
stem's max pool rounds up, and inputs are BGR in 0..255 minus the mean colour, without scaling.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from i2i.networks.segmenters.base import Segmenter, to_unit

# The mean colour (B, G, R) in 0..255 of deeplab-pytorch's COCO-Stuff config (the Caffe models').
MEAN_BGR = (104.008, 116.669, 122.675)


class ConvBN(nn.Sequential):
    """conv (no bias) + bn, optionally followed by ReLU (a parameterless child: names unchanged).

    Args:
        cin: input channels.
        cout: output channels.
        k: odd kernel side ('same' padding at stride 1).
        stride: stride along H and W.
        dilation: dilation along H and W.
        relu: append a ReLU.
    """

    def __init__(
        self, cin: int, cout: int, k: int, stride: int = 1, dilation: int = 1, relu: bool = True
    ):
        layers = OrderedDict(
            conv=nn.Conv2d(cin, cout, k, stride, dilation * (k // 2), dilation, bias=False),
            bn=nn.BatchNorm2d(cout),
        )
        if relu:
            layers["relu"] = nn.ReLU()
        super().__init__(layers)


class Bottleneck(nn.Module):
    """The Caffe ResNet bottleneck: the stride sits on the 1x1 `reduce` convolution.

    Args:
        cin: input channels.
        cout: output channels (the inner width is cout / 4).
        stride: stride of `reduce` and of the shortcut.
        dilation: dilation of the 3x3 convolution.
        project: a 1x1 projection shortcut (the first block of a layer) instead of the identity.
    """

    def __init__(self, cin: int, cout: int, stride: int, dilation: int, project: bool):
        super().__init__()
        mid = cout // 4
        self.reduce = ConvBN(cin, mid, 1, stride)
        self.conv3x3 = ConvBN(mid, mid, 3, 1, dilation)
        self.increase = ConvBN(mid, cout, 1, relu=False)
        self.shortcut = ConvBN(cin, cout, 1, stride, relu=False) if project else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: (N, cin, H, W).

        Returns:
            (N, cout, H / stride, W / stride) (rounded up).
        """
        return F.relu(self.increase(self.conv3x3(self.reduce(x))) + self.shortcut(x))


def res_layer(n: int, cin: int, cout: int, stride: int, dilation: int) -> nn.Sequential:
    """A residual layer of `n` bottlenecks named `block1`.. as in the published file.

    Args:
        n: number of blocks.
        cin: input channels of the first block.
        cout: output channels of every block.
        stride: stride of the first block.
        dilation: dilation of every block's 3x3 convolution.
    """
    return nn.Sequential(
        OrderedDict(
            (
                f"block{i + 1}",
                Bottleneck(
                    cin if i == 0 else cout, cout, stride if i == 0 else 1, dilation, i == 0
                ),
            )
            for i in range(n)
        )
    )


class ASPP(nn.Module):
    """Parallel 3x3 convolutions at several dilations straight to class scores, summed.

    Args:
        cin: input channels.
        num_classes: output channels, one per class.
        rates: the dilation (and padding) of each branch.
    """

    def __init__(self, cin: int, num_classes: int, rates: tuple[int, ...]):
        super().__init__()
        for i, rate in enumerate(rates):
            self.add_module(f"c{i}", nn.Conv2d(cin, num_classes, 3, 1, rate, rate, bias=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Sum the branches' class scores.

        Args:
            x: (N, cin, H, W).

        Returns:
            (N, num_classes, H, W).
        """
        return sum(branch(x) for branch in self.children())


class DeepLabV2(nn.Sequential):
    """ResNet-101 (3, 4, 23, 3 blocks) at output stride 8 (layers 4, 5 dilated 2, 4) + ASPP.

    Args:
        num_classes: classes of the ASPP's output.
        blocks (tuple[int, ...]): bottlenecks of layers 2 to 5.
        rates (tuple[int, ...]): the ASPP's dilation rates.
    """

    def __init__(self, num_classes: int, blocks=(3, 4, 23, 3), rates=(6, 12, 18, 24)):
        stem = nn.Sequential(
            OrderedDict(conv1=ConvBN(3, 64, 7, 2), pool=nn.MaxPool2d(3, 2, 1, ceil_mode=True))
        )
        super().__init__(
            OrderedDict(
                layer1=stem,  # /4
                layer2=res_layer(blocks[0], 64, 256, 1, 1),
                layer3=res_layer(blocks[1], 256, 512, 2, 1),  # /8
                layer4=res_layer(blocks[2], 512, 1024, 1, 2),
                layer5=res_layer(blocks[3], 1024, 2048, 1, 4),
                aspp=ASPP(2048, num_classes, rates),
            )
        )


class DeepLabV2Segmenter(Segmenter):
    """DeepLab-v2 ResNet-101 for COCO-Stuff's 182 classes, evaluated as published.

    The image is warped to 513x513, and multi-scale takes the pixel-wise max of the logits at
    scales 1, 0.5, 0.75.

    Args:
        num_classes: COCO-Stuff 164k: label PNG values 0..181.
        weights: `"published"`, a .pth path, or None (random init).
        input_size: (H, W) the image is warped to (the cocostuff164k model's test size); None
            leaves it as given.
        multi_scale: also run at `scales` and take the pixel-wise max (the released model's MSC).
        scales: the extra scales when `multi_scale`.
    """

    published = ("deeplabv2_resnet101_msc-cocostuff164k-100000.pth",)

    def __init__(
        self,
        num_classes: int = 182,  # COCO-Stuff 164k: label PNG values 0..181
        weights: str | None = "published",  # "published", a .pth path, or None (random init)
        input_size: tuple[int, int] | None = (513, 513),  # (H, W) the image is warped to (the
        # cocostuff164k model's test size); None: as given
        multi_scale: bool = True,  # also 0.5x and 0.75x, pixel-wise max (the released model's MSC)
        scales: tuple[float, ...] = (0.5, 0.75),  # the extra scales when multi_scale
    ):
        super().__init__(num_classes, weights)
        self.input_size = tuple(input_size) if input_size else None
        self.multi_scale, self.scales = bool(multi_scale), tuple(scales)
        self.base = DeepLabV2(num_classes)
        self.register_buffer("mean_bgr", torch.tensor(MEAN_BGR).view(1, 3, 1, 1), persistent=False)

    def segment(self, images: torch.Tensor) -> torch.Tensor:
        """Logits at output stride 8 of the (warped) input.

        Args:
            images: (N, 3, H, W) RGB in [-1, 1].

        Returns:
            Logits (N, num_classes, H' / 8, W' / 8) (rounded up), where (H', W') is `input_size`
            or the input's size.
        """
        x = to_unit(images)
        if self.input_size and tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        x = x.flip(1) * 255 - self.mean_bgr  # RGB [0, 1] -> Caffe's BGR 0..255 minus the mean
        logits = self.base(x)
        if not self.multi_scale:
            return logits
        out = [logits]
        for scale in self.scales:
            small = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
            y = self.base(small)
            out.append(
                F.interpolate(y, size=logits.shape[-2:], mode="bilinear", align_corners=False)
            )
        return torch.stack(out).amax(0)

    def protocol(self) -> dict[str, Any]:
        """The base record plus the architecture, input normalisation, size and scales."""
        return {
            **super().protocol(),
            "architecture": "DeepLab-v2 ResNet-101 + ASPP (rates 6, 12, 18, 24), output stride 8",
            "input": "BGR 0..255 minus the mean (104.008, 116.669, 122.675), no std",
            "input_size": list(self.input_size) if self.input_size else "as generated",
            "multi_scale": self.multi_scale,
            "scales": [1.0, *self.scales] if self.multi_scale else [1.0],
        }
