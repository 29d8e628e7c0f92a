"""Globally and locally consistent image completion (Iizuka et al., SIGGRAPH 2017), as the
design document (`shared/seeds/002`) describes it.

- Completion network: RGB + a mask channel (the hole pre-filled with the dataset's mean colour by
  the task) -> an encoder down to 1/4 resolution, four dilated 3x3 convolutions (rates 2, 4, 8,
  16) that widen the receptive field, and two 4x4 transposed convolutions back; BatchNorm and ReLU
  after every layer but the last, whose Tanh gives an image in [-1, 1].
- Context discriminator: a global branch on the whole image and a local branch on a patch centred
  on the hole, each strided 5x5 convolutions (BatchNorm, ReLU) and a fully connected layer to
  1024 features; the two vectors are concatenated into one fully connected layer, one logit per
  sample (the sigmoid lives in the loss).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from i2i.networks.blocks import init_normal_
from i2i.resolution import as_hw


def _conv(c_in: int, c_out: int, k: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
    padding = dilation * (k - 1) // 2
    return [
        nn.Conv2d(c_in, c_out, k, stride, padding, dilation=dilation),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    ]


def _deconv(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU()]


class CompletionNetwork(nn.Module):
    """`C(cond)` -> image (N, 3, H, W) in [-1, 1].

    cond = concat(image with the hole filled, hole mask) where the mask channel is 1 in the HOLE
    (the paper's convention; the task builds it from i2i's 1 = known masks). Sides must be
    divisible by 4.

    Args:
        in_channels: RGB + the hole mask.
        out_channels: channels of the output image.
        width: channels of the first layer (the paper: 64; 4 x width in the middle).
        dilations: dilation rates of the middle 3x3 convolutions.
        init_std: standard deviation of the N(0, std) initialisation.
    """

    def __init__(
        self,
        in_channels: int = 4,  # RGB + the hole mask
        out_channels: int = 3,
        width: int = 64,  # channels of the first layer (the paper: 64; 256 in the middle)
        dilations: tuple[int, ...] = (2, 4, 8, 16),
        init_std: float = 0.02,
    ):
        super().__init__()
        self.in_channels = in_channels
        c1, c2, c4 = width, 2 * width, 4 * width
        layers = [
            *_conv(in_channels, c1, 5),
            *_conv(c1, c2, 3, stride=2),
            *_conv(c2, c2, 3),
            *_conv(c2, c4, 3, stride=2),
            *_conv(c4, c4, 3),
            *_conv(c4, c4, 3),
        ]
        for d in dilations:
            layers += _conv(c4, c4, 3, dilation=d)
        layers += [
            *_conv(c4, c4, 3),
            *_conv(c4, c4, 3),
            *_deconv(c4, c2),
            *_conv(c2, c2, 3),
            *_deconv(c2, c1),
            *_conv(c1, c1 // 2, 3),
            nn.Conv2d(c1 // 2, out_channels, 3, padding=1),
            nn.Tanh(),
        ]
        self.net = nn.Sequential(*layers)
        init_normal_(self, init_std)

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        """Complete the images.

        Args:
            cond: (N, in_channels, H, W), H and W divisible by 4: the pre-filled image in [-1, 1]
                and the hole mask (1 = hole).

        Returns:
            (N, out_channels, H, W) in [-1, 1] (Tanh), not composited with the known pixels.
        """
        return self.net(cond)


class _ContextBranch(nn.Module):
    """Strided 5x5 convolutions (64, 128, 256, 512, 512, ...) and a dense layer to `features`."""

    def __init__(self, in_channels: int, size: tuple[int, int], num_convs: int, features: int):
        super().__init__()
        layers: list[nn.Module] = []
        channels, (h, w) = in_channels, size
        for i in range(num_convs):
            out = min(64 * 2**i, 512)
            layers += _conv(channels, out, 5, stride=2)
            channels, h, w = out, math.ceil(h / 2), math.ceil(w / 2)
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(channels * h * w, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(self.convs(x).flatten(1)))


class ContextDiscriminator(nn.Module):
    """`D(image, patch)` -> one logit per sample (N,).

    The global branch reads the whole image, the local branch a `local_size` patch centred on the
    hole (cut out by the task with `hole_centred_boxes` and `crop_boxes`).

    Args:
        img_resolution: the whole image's size, int or (H, W) (the report: 160).
        local_size: the patch around the hole, int or (h, w) (the report: 80).
        in_channels: channels of the image and the patch.
        global_convs: strided convolutions of the global branch (the paper: 6).
        local_convs: strided convolutions of the local branch (the paper: 5).
        features: width of each branch's output vector.
        init_std: standard deviation of the N(0, std) initialisation.
    """

    def __init__(
        self,
        img_resolution: int | tuple[int, int] = 160,  # the whole image (the report: 160)
        local_size: int | tuple[int, int] = 80,  # the patch around the hole (the report: 80)
        in_channels: int = 3,
        global_convs: int = 6,  # the paper: 6 for the global branch, 5 for the local one
        local_convs: int = 5,
        features: int = 1024,
        init_std: float = 0.02,
    ):
        super().__init__()
        self.img_resolution, self.local_size = as_hw(img_resolution), as_hw(local_size)
        self.global_branch = _ContextBranch(
            in_channels, self.img_resolution, global_convs, features
        )
        self.local_branch = _ContextBranch(in_channels, self.local_size, local_convs, features)
        self.out = nn.Linear(2 * features, 1)
        init_normal_(self, init_std)

    def forward(self, image: torch.Tensor, patch: torch.Tensor) -> torch.Tensor:
        """Score images with their hole patches.

        Args:
            image: (N, in_channels, H, W) at `img_resolution`, in [-1, 1].
            patch: (N, in_channels, h, w) at `local_size`, in [-1, 1].

        Returns:
            One logit per sample (N,); the sigmoid lives in the loss.

        Raises:
            ValueError: `image` or `patch` has the wrong size.
        """
        if tuple(image.shape[-2:]) != self.img_resolution:
            raise ValueError(f"the global branch takes {self.img_resolution}, got {image.shape}")
        if tuple(patch.shape[-2:]) != self.local_size:
            raise ValueError(f"the local branch takes {self.local_size} patches, got {patch.shape}")
        both = torch.cat([self.global_branch(image), self.local_branch(patch)], dim=1)
        return self.out(both).squeeze(1)


def hole_centred_boxes(
    mask: torch.Tensor, size: tuple[int, int]
) -> list[tuple[int, int, int, int]]:
    """Per sample, the box of `size` centred on the hole's bounding box.

    The box is shifted to stay inside the image; a mask without a hole gives the centre of the
    image.

    Args:
        mask: (N, 1, H, W), 1 = known, 0 = hole (a pixel below 0.5 counts as hole).
        size: the box's (height, width).

    Returns:
        One (top, left, height, width) per sample.

    Raises:
        ValueError: `size` is larger than the image.
    """
    n, _, height, width = mask.shape
    ph, pw = size
    if ph > height or pw > width:
        raise ValueError(f"local patch {size} larger than the image {(height, width)}")
    boxes = []
    for i in range(n):
        hole = (mask[i, 0] < 0.5).nonzero()
        if len(hole):
            cy = (int(hole[:, 0].min()) + int(hole[:, 0].max()) + 1) // 2
            cx = (int(hole[:, 1].min()) + int(hole[:, 1].max()) + 1) // 2
        else:
            cy, cx = height // 2, width // 2
        top = min(max(cy - ph // 2, 0), height - ph)
        left = min(max(cx - pw // 2, 0), width - pw)
        boxes.append((top, left, ph, pw))
    return boxes


def crop_boxes(images: torch.Tensor, boxes: list[tuple[int, int, int, int]]) -> torch.Tensor:
    """Stack the crops of each sample's box.

    Args:
        images: (N, C, H, W).
        boxes: one (top, left, h, w) per sample, all of the same h and w.

    Returns:
        (N, C, h, w).
    """
    return torch.stack(
        [img[:, t : t + h, l : l + w] for img, (t, l, h, w) in zip(images, boxes, strict=True)]
    )
