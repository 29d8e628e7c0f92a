"""DRN-D-105 (Yu, Koltun and Funkhouser, "Dilated Residual Networks", CVPR 2017) as a Cityscapes
segmenter: the network pix2pixHD, SPADE and their successors score Cityscapes outputs with
(`drn-d-105_ms_cityscapes.pth`, 19 classes: the train ids).

Module names follow the published file so that it loads as it is: `base` holds the DRN's nine
stages as `base.0` .. `base.8` (D variant: conv stages at the start and end instead of residual
ones, so no gridding), `seg` the 1x1 classifier, `up` the fixed bilinear x8 transposed
convolution (one 16x16 kernel per class). Output stride 8, upsampled back to the input size
(a multiple of 8; other sizes come back rounded, and the metric resizes the logits).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from i2i.networks.segmenters.base import Bottleneck, Segmenter, bn, conv, to_unit

# Mean and std (RGB, in [0, 1]) of the Cityscapes training photos, from the DRN release's
# datasets/cityscapes/info.json: the normalisation the published model was trained with.
CITYSCAPES_MEAN = (0.29010095242892997, 0.32808144844279574, 0.28696394422942517)
CITYSCAPES_STD = (0.1829540508368939, 0.18656561047509476, 0.18447508988480435)

# (residual blocks or convs, width) per stage of DRN-D-105; stages 3-6 are bottleneck stages
# (width x 4 channels out), the others plain 3x3 conv + BN + ReLU stages.
STAGES = ((1, 16), (1, 32), (3, 64), (4, 128), (23, 256), (3, 512), (1, 512), (1, 512))


def _conv_stage(cin: int, cout: int, n: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        k_stride = stride if i == 0 else 1
        layers += [conv(cin if i == 0 else cout, cout, 3, k_stride, dilation), bn(cout), nn.ReLU()]
    return nn.Sequential(*layers)


def _res_stage(cin: int, width: int, n: int, stride: int, dilation: int) -> nn.Sequential:
    # Every block of a dilated stage (5, 6) uses the stage's dilation, its first one included.
    blocks = [Bottleneck(cin, width, stride, dilation)]
    blocks += [Bottleneck(4 * width, width, 1, dilation) for _ in range(n - 1)]
    return nn.Sequential(*blocks)


def bilinear_kernel(channels: int, size: int = 16) -> torch.Tensor:
    """The fixed (channels, 1, size, size) kernel of a bilinear x(size/2) transposed conv.

    Args:
        channels: one kernel per channel (a depthwise transposed conv).
        size: kernel side; 16 upsamples by 8.

    Returns:
        float32 (channels, 1, size, size).
    """
    f = (size + 1) // 2
    centre = (2 * f - 1 - f % 2) / (2 * f)
    ramp = 1 - (torch.arange(size, dtype=torch.float64) / f - centre).abs()
    return (ramp[:, None] * ramp[None, :]).float().expand(channels, 1, size, size).clone()


class DRNSegmenter(Segmenter):
    """DRN-D-105 for Cityscapes' 19 train ids (published: drn-d-105_ms_cityscapes.pth).

    Args:
        num_classes: Cityscapes train ids.
        weights: `"published"`, a .pth path, or None (random init).
        input_size: (H, W) to resize to first; None leaves it as given (pix2pixHD scores
            1024x2048 outputs at their size).
    """

    published = ("drn-d-105_ms_cityscapes.pth",)

    def __init__(
        self,
        num_classes: int = 19,  # Cityscapes train ids
        weights: str | None = "published",  # "published", a .pth path, or None (random init)
        input_size: tuple[int, int] | None = None,  # (H, W) to resize to first; None: as given
        # (pix2pixHD scores 1024x2048 outputs at their size)
    ):
        super().__init__(num_classes, weights)
        self.input_size = tuple(input_size) if input_size else None
        (n0, c0), (n1, c1), (n2, w2), (n3, w3), (n4, w4), (n5, w5), (n6, c6), (n7, c7) = STAGES
        self.base = nn.Sequential(
            nn.Sequential(conv(3, c0, 7), bn(c0), nn.ReLU()),  # layer0: 7x7 stem, stride 1
            _conv_stage(c0, c0, n0),  # layer1
            _conv_stage(c0, c1, n1, stride=2),  # layer2: /2
            _res_stage(c1, w2, n2, stride=2, dilation=1),  # layer3: /4
            _res_stage(4 * w2, w3, n3, stride=2, dilation=1),  # layer4: /8
            _res_stage(4 * w3, w4, n4, stride=1, dilation=2),  # layer5: dilated instead of /16
            _res_stage(4 * w4, w5, n5, stride=1, dilation=4),  # layer6: dilated instead of /32
            _conv_stage(4 * w5, c6, n6, dilation=2),  # layer7: degridding
            _conv_stage(c6, c7, n7, dilation=1),  # layer8: degridding
        )
        self.seg = nn.Conv2d(c7, num_classes, 1)
        self.up = nn.ConvTranspose2d(
            num_classes, num_classes, 16, stride=8, padding=4, groups=num_classes, bias=False
        )
        with torch.no_grad():
            self.up.weight.copy_(bilinear_kernel(num_classes))
        self.up.requires_grad_(False)
        self.register_buffer(
            "mean", torch.tensor(CITYSCAPES_MEAN).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("std", torch.tensor(CITYSCAPES_STD).view(1, 3, 1, 1), persistent=False)

    def segment(self, images: torch.Tensor) -> torch.Tensor:
        """Logits at the input's size (output stride 8, upsampled by 8).

        Args:
            images: (N, 3, H, W) RGB in [-1, 1].

        Returns:
            Logits (N, num_classes, H', W'): the size of the (resized) input when it is a multiple
            of 8, else rounded.
        """
        x = to_unit(images)
        if self.input_size and tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        return self.up(self.seg(self.base(x)))

    def protocol(self) -> dict[str, Any]:
        """The base record plus the architecture, input normalisation and size."""
        return {
            **super().protocol(),
            "architecture": "DRN-D-105 (fyu/drn drn_d_105 + DRNSeg head), output stride 8, "
            "bilinear x8 transposed conv",
            "input": "RGB in [0, 1], normalised with the Cityscapes mean/std of the DRN release",
            "input_size": list(self.input_size) if self.input_size else "as generated",
            "multi_scale": False,
        }
