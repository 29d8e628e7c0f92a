"""Per-sample image metrics in [-1, 1]: PSNR, optionally over a region (the hole)."""

from __future__ import annotations

import torch


def psnr(
    fake: torch.Tensor, real: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of images in [-1, 1] (range 2), per sample; with a
    `weight` (e.g. 1 in the hole) the mean squared error is taken over the weighted pixels."""
    err = (fake - real).square()
    if weight is None:
        mse = err.flatten(1).mean(1)
    else:
        w = weight.expand_as(err)
        mse = (err * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-10))
