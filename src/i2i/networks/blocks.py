"""Building blocks shared by the classic image-to-image networks (pix2pix, CycleGAN, GLCIC):
normalisation by name and the N(0, 0.02) initialisation of DCGAN and pix2pix."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import nn

Norm = Literal["batch", "instance", "none"]


def norm_layer(norm: Norm, channels: int) -> nn.Module:
    """BatchNorm with affine parameters and running statistics; InstanceNorm without either
    (pix2pix's and CycleGAN's choices); or nothing."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'instance' or 'none', got {norm!r}")


def conv_bias(norm: Norm) -> bool:
    """A convolution followed by BatchNorm needs no bias (BatchNorm's shift replaces it); one
    followed by InstanceNorm without affine parameters keeps it, as the official code does."""
    return norm != "batch"


def init_normal_(module: nn.Module, std: float = 0.02) -> nn.Module:
    """Conv and linear weights ~ N(0, std), biases 0; BatchNorm scales ~ N(1, std), shifts 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
    return module


class Dropout(nn.Dropout):
    """Dropout that can stay on in eval mode: pix2pix's only source of noise, used at test time
    too (`at_inference=True`)."""

    def __init__(self, p: float = 0.5, at_inference: bool = False):
        super().__init__(p)
        self.at_inference = at_inference

    def forward(self, x):
        return F.dropout(x, self.p, training=self.training or self.at_inference)

    def extra_repr(self) -> str:
        return f"p={self.p}, at_inference={self.at_inference}"
