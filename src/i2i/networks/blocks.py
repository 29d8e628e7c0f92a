"""Building blocks shared by the classic image-to-image networks (pix2pix, CycleGAN, GLCIC):
normalisation by name and the N(0, 0.02) initialisation of DCGAN and pix2pix."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import nn

Norm = Literal["batch", "instance", "none"]


def norm_layer(norm: Norm, channels: int) -> nn.Module:
    """A normalisation layer by name.

    BatchNorm with affine parameters and running statistics; InstanceNorm without either
    (pix2pix's and CycleGAN's choices); or nothing.

    Args:
        norm: `"batch"`, `"instance"` or `"none"` (an `nn.Identity`).
        channels: number of feature channels the layer normalises.

    Returns:
        The normalisation module.

    Raises:
        ValueError: `norm` is none of the three names.
    """
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'instance' or 'none', got {norm!r}")


def conv_bias(norm: Norm) -> bool:
    """Whether a convolution before this normalisation keeps its bias.

    A convolution followed by BatchNorm needs no bias (BatchNorm's shift replaces it); one
    followed by InstanceNorm without affine parameters keeps it, as the official code does.

    Args:
        norm: the normalisation that follows the convolution (see `norm_layer`).

    Returns:
        False for `"batch"`, True otherwise.
    """
    return norm != "batch"


def init_normal_(module: nn.Module, std: float = 0.02) -> nn.Module:
    """Initialise a module in place the DCGAN / pix2pix way.

    Conv and linear weights ~ N(0, std), biases 0; BatchNorm scales ~ N(1, std), shifts 0.

    Args:
        module: the network; every submodule of it is visited.
        std: standard deviation of the normal initialisation.

    Returns:
        `module` itself, initialised.
    """
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
    """Dropout that can stay on in eval mode.

    pix2pix's only source of noise, used at test time too (`at_inference=True`).

    Args:
        p: probability of zeroing an element, in [0, 1].
        at_inference: keep dropping in eval mode as well as in training.
    """

    def __init__(self, p: float = 0.5, at_inference: bool = False):
        super().__init__(p)
        self.at_inference = at_inference

    def forward(self, x):
        """Apply dropout to `x` (any shape) in training, or always when `at_inference` is set.

        Args:
            x (torch.Tensor): input tensor of any shape.

        Returns:
            out (torch.Tensor): a tensor of the same shape; kept elements are scaled by 1 / (1 - p).
        """
        return F.dropout(x, self.p, training=self.training or self.at_inference)

    def extra_repr(self) -> str:
        """The probability and the eval-mode switch, for `print(model)`."""
        return f"p={self.p}, at_inference={self.at_inference}"
