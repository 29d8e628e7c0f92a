"""Large-hole inpainting: the problem's hooks, and the CoModGAN task over them.

The generator's condition is concat(m - 0.5, x * m) (CoModGAN's encoding; other systems build
their own), the discriminator sees concat(m - 0.5, image), and the output is the composite
G(.) * (1 - m) + x * m: known pixels are returned unchanged.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from i2i.classical import fill_batch, fill_function
from i2i.data import batch as B
from i2i.losses import masked_l1
from i2i.metrics.image import psnr
from i2i.metrics.protocols import InpaintingProtocol
from i2i.metrics.structure import edge_f1_in_region, ssim_in_region
from i2i.tasks.comod import CoModGANTask


class Inpainting:
    """Problem mixin: masks follow the project convention, 1 = known, 0 = hole.

    Args:
        *args (Any): the system's arguments.
        classical_reference: the classical fill (`i2i.classical.FILLS`) whose l1_hole and
            edge_f1_hole validation logs beside the model's (`val/l1_hole_harmonic`), so every
            run shows where it stands; each validation image is filled once per run (cached).
            None: not computed.
        **kwargs (Any): the system's arguments.

    Raises:
        ValueError: an unknown fill name.
    """

    evaluation_protocol = InpaintingProtocol

    def __init__(self, *args, classical_reference: str | None = "harmonic", **kwargs):
        # classical_reference: the classical fill (`i2i.classical.FILLS`) whose l1_hole and
        # edge_f1_hole validation logs beside the model's (`val/l1_hole_harmonic`), so every run
        # shows where it stands. Each validation image is filled once per run (cached), since a
        # harmonic fill of a large image costs up to seconds of CPU (telea is several times
        # cheaper: docs/benchmarks.md, Classical fills); None: not computed.
        super().__init__(*args, **kwargs)
        if classical_reference is not None:
            fill_function(classical_reference)  # an unknown name stops here, with the choices
        self.classical_reference = classical_reference
        self._classical_cache: dict[tuple[int, str], dict[str, float]] = {}

    def condition(self, batch: dict) -> torch.Tensor:
        """CoModGAN's condition: concat(mask - 0.5, image * mask).

        Args:
            batch: a batch dict with "image" (N, 3, H, W) in [-1, 1] and "mask" (N, 1, H, W),
                1 = known.

        Returns:
            (N, 4, H, W): the mask channel in {-0.5, 0.5}, the image zeroed in the hole.
        """
        mask = batch[B.MASK].to(batch[B.IMAGE].dtype)
        return torch.cat([mask - 0.5, batch[B.IMAGE] * mask], dim=1)

    def d_condition(self, batch: dict) -> torch.Tensor:
        """The discriminator's condition: mask - 0.5.

        Args:
            batch: a batch dict with "mask" (N, 1, H, W), 1 = known.

        Returns:
            (N, 1, H, W) in {-0.5, 0.5}.
        """
        return batch[B.MASK].to(batch[B.IMAGE].dtype) - 0.5

    def compose(self, raw: torch.Tensor, batch: dict) -> torch.Tensor:
        """The composite raw * (1 - mask) + image * mask: known pixels are returned unchanged.

        Args:
            raw: the generator's output (N, 3, H, W).
            batch: a batch dict with "image" and "mask" (1 = known).

        Returns:
            (N, 3, H, W).
        """
        mask = batch[B.MASK].to(raw.dtype)
        return raw * (1 - mask) + batch[B.IMAGE].to(raw.dtype) * mask  # known pixels kept exactly

    def reconstruction_loss(self, fake: torch.Tensor, batch: dict) -> torch.Tensor:
        """Per-sample L1 in the hole.

        Args:
            fake: the output (N, 3, H, W).
            batch: a batch dict with "image" and "mask" (1 = known).

        Returns:
            (N,) mean absolute error over the hole pixels.
        """
        return masked_l1(fake, batch[B.IMAGE], batch[B.MASK], region="hole")

    def evaluation_metrics(self, fake: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        """Batch means of `hole_scores`: l1_hole, psnr_hole, ssim_hole, edge_f1_hole.

        Args:
            fake: the output clamped to [-1, 1] (N, 3, H, W).
            batch: a batch dict with "image" and "mask" (1 = known).
        """
        real, mask = batch[B.IMAGE].float(), batch[B.MASK].float()
        return {k: v.mean() for k, v in hole_scores(fake, real, mask).items()}

    def validation_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        """The base step, plus the classical reference's l1_hole and edge_f1_hole."""
        out = super().validation_step(batch, batch_idx)
        if self.classical_reference is not None:  # validation only: `test` scores the model
            name = self.classical_reference
            scores = self.classical_scores(batch)
            self.log_dict(
                {f"val/{k}_{name}": scores[k].mean() for k in ("l1_hole", "edge_f1_hole")},
                batch_size=batch[B.IMAGE].shape[0],
                sync_dist=True,
            )
        return out

    def classical_scores(self, batch: dict) -> dict[str, torch.Tensor]:
        """The reference fill's per-sample scores on this batch, each image filled once per run.

        Validation images and masks are fixed, so the scores are cached by (index, mask).

        Args:
            batch: a batch dict with "image", "mask" (1 = known) and "index".

        Returns:
            (N,) tensors by score name (see `hole_scores`).
        """
        cache = self._classical_cache
        real, mask = batch[B.IMAGE].float(), batch[B.MASK].float()
        keys = [
            (int(i), hashlib.blake2b(np.packbits(m.cpu().numpy() > 0.5).tobytes()).hexdigest())
            for i, m in zip(batch[B.INDEX], mask, strict=True)
        ]
        todo = [j for j, key in enumerate(keys) if key not in cache]
        if todo:
            filled = fill_batch(self.classical_reference, real[todo], mask[todo])
            scores = hole_scores(filled, real[todo], mask[todo])
            for n, j in enumerate(todo):
                cache[keys[j]] = {k: v[n].item() for k, v in scores.items()}
        return {
            k: torch.tensor([cache[key][k] for key in keys], device=real.device)
            for k in cache[keys[0]]
        }

    def visual_panels(self, batch: dict, fake: torch.Tensor) -> list[torch.Tensor]:
        """The masked input (hole tinted blue), the output and the real image.

        Args:
            batch: a batch dict with "image" and "mask" (1 = known).
            fake: the output (N, 3, H, W).
        """
        mask = batch[B.MASK].float()
        image = batch[B.IMAGE].float()
        # The masked input with the hole tinted, so the mask shows as an overlay.
        tint = torch.tensor([0.2, 0.6, 1.0], device=image.device).reshape(1, 3, 1, 1)
        masked = image * mask + tint * (1 - mask)
        return [masked, fake.float(), image]


def hole_scores(
    fake: torch.Tensor, real: torch.Tensor, mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-sample scores of completions in the hole.

    L1, PSNR, and the structure measures that punish blur (SSIM, edge F1; see
    `i2i.metrics.structure`).

    Args:
        fake: completions (N, 3, H, W) in [-1, 1].
        real: real images (N, 3, H, W) in [-1, 1].
        mask: (N, 1, H, W), 1 = known, 0 = hole.

    Returns:
        {"l1_hole", "psnr_hole", "ssim_hole", "edge_f1_hole"}, each (N,).
    """
    hole = 1 - mask
    return {
        "l1_hole": masked_l1(fake, real, mask, region="hole"),
        "psnr_hole": psnr(fake, real, hole),
        "ssim_hole": ssim_in_region(fake, real, hole),
        "edge_f1_hole": edge_f1_in_region(fake, real, hole),
    }


class InpaintingTask(Inpainting, CoModGANTask):
    """CoModGAN inpainting, as the paper trains it on FFHQ and Places2."""
