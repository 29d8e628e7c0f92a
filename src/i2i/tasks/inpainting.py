"""Large-hole inpainting (CoModGAN): condition = concat(m - 0.5, x * m), the discriminator sees
concat(m - 0.5, image), and the output is the composite G(.) * (1 - m) + x * m."""

from __future__ import annotations

import torch

from i2i.data import batch as B
from i2i.losses import masked_l1
from i2i.tasks.base import GANTask, psnr


class InpaintingTask(GANTask):
    """Masks follow the project convention: 1 = known, 0 = hole."""

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
