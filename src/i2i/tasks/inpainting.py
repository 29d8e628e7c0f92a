"""Large-hole inpainting: the problem's hooks, and the CoModGAN task over them.

The generator's condition is concat(m - 0.5, x * m) (CoModGAN's encoding; other systems build
their own), the discriminator sees concat(m - 0.5, image), and the output is the composite
G(.) * (1 - m) + x * m: known pixels are returned unchanged.
"""

from __future__ import annotations

import torch

from i2i.data import batch as B
from i2i.losses import masked_l1
from i2i.metrics.image import psnr
from i2i.tasks.comod import CoModGANTask


class Inpainting:
    """Problem mixin: masks follow the project convention, 1 = known, 0 = hole."""

    evaluation = "inpainting"

    def condition(self, batch: dict) -> torch.Tensor:
        mask = batch[B.MASK].to(batch[B.IMAGE].dtype)
        return torch.cat([mask - 0.5, batch[B.IMAGE] * mask], dim=1)

    def d_condition(self, batch: dict) -> torch.Tensor:
        return batch[B.MASK].to(batch[B.IMAGE].dtype) - 0.5

    def compose(self, raw: torch.Tensor, batch: dict) -> torch.Tensor:
        mask = batch[B.MASK].to(raw.dtype)
        return raw * (1 - mask) + batch[B.IMAGE].to(raw.dtype) * mask  # known pixels kept exactly

    def reconstruction_loss(self, fake: torch.Tensor, batch: dict) -> torch.Tensor:
        return masked_l1(fake, batch[B.IMAGE], batch[B.MASK], region="hole")

    def evaluation_metrics(self, fake: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        real, mask = batch[B.IMAGE].float(), batch[B.MASK].float()
        return {
            "l1_hole": masked_l1(fake, real, mask, region="hole").mean(),
            "psnr_hole": psnr(fake, real, 1 - mask).mean(),
        }

    def visual_panels(self, batch: dict, fake: torch.Tensor) -> list[torch.Tensor]:
        mask = batch[B.MASK].float()
        image = batch[B.IMAGE].float()
        # The masked input with the hole tinted, so the mask shows as an overlay.
        tint = torch.tensor([0.2, 0.6, 1.0], device=image.device).reshape(1, 3, 1, 1)
        masked = image * mask + tint * (1 - mask)
        return [masked, fake.float(), image]


class InpaintingTask(Inpainting, CoModGANTask):
    """CoModGAN inpainting, as the paper trains it on FFHQ and Places2."""
