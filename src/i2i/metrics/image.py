"""Per-sample image metrics in [-1, 1]: PSNR, optionally over a region (the hole), and LPIPS."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

LPIPS_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet, under LPIPS's linear heads


def psnr(
    fake: torch.Tensor, real: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of images in [-1, 1] (range 2), per sample.

    Args:
        fake: (N, C, H, W) in [-1, 1].
        real: (N, C, H, W) in [-1, 1].
        weight: broadcastable to the images, e.g. 1 in the hole and 0 elsewhere: the mean squared
            error is taken over the weighted pixels; None takes every pixel.

    Returns:
        (N,) PSNR in dB (the squared error is floored at 1e-10, so identical images give 106 dB).
    """
    err = (fake - real).square()
    if weight is None:
        mse = err.flatten(1).mean(1)
    else:
        w = weight.expand_as(err)
        mse = (err * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-10))


def build_lpips(instead: str = "set diversity: l1") -> nn.Module:
    """torchmetrics' LPIPS (AlexNet) per sample, offline.

    The AlexNet weights must be in the torch hub cache (`i2i-weights` puts them there).

    Args:
        instead: what the error message suggests doing without LPIPS.

    Returns:
        A frozen module in eval mode: (a, b), each (N, 3, H, W) in [-1, 1] -> (N,) distances
        (lower is closer).

    Raises:
        FileNotFoundError: the AlexNet weights are not in the cache.
    """
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    path = Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"LPIPS needs the AlexNet weights {path}. Run `i2i-weights` where there is network "
            f"(or download https://download.pytorch.org/models/{LPIPS_FILE} into {path.parent}), "
            f"or {instead}."
        )
    lpips = LearnedPerceptualImagePatchSimilarity(net_type="alex", reduction="mean")
    net = lpips.net

    class PerSample(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.net(a, b).flatten()

    return PerSample().eval().requires_grad_(False)
