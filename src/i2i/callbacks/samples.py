"""A grid of G_ema samples on a fixed validation batch: in the run folder as PNG, and in W&B."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only
from torchvision.utils import make_grid, save_image

from i2i.data import batch as B


class SampleGrid(Callback):
    """Every `every_n_iterations` (and at the end of training), one row per sample with the
    task's panels (inpainting: masked input with the hole tinted | completion | real)."""

    def __init__(
        self, every_n_iterations: int = 500, num_samples: int = 8, dirname: str = "samples"
    ):
        self.every_n_iterations, self.num_samples, self.dirname = (
            every_n_iterations,
            num_samples,
            dirname,
        )
        self._batch: dict | None = None
        self.last_path: Path | None = None

    def folder(self, trainer: L.Trainer) -> Path:
        return Path(trainer.default_root_dir) / self.dirname

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        iteration = int(pl_module.iteration)
        if self.every_n_iterations > 0 and iteration % self.every_n_iterations == 1:
            self.log_grid(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self.log_grid(trainer, pl_module)

    @rank_zero_only
    def log_grid(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._batch is None:
            datamodule = trainer.datamodule
            if datamodule is None or not hasattr(datamodule, "sample_batch"):
                return
            self._batch = datamodule.sample_batch(self.num_samples)
        batch = {k: v.to(pl_module.device) for k, v in self._batch.items()}
        # Sample as evaluation does (BatchNorm on its running statistics, which sampling must
        # not move), then give every module back its own mode: G_ema stays in eval mode.
        modes = [(module, module.training) for module in pl_module.modules()]
        pl_module.eval()
        try:
            fake = pl_module.sample(batch)
        finally:
            for module, training in modes:
                module.training = training
        panels = pl_module.visual_panels(batch, fake)
        rows = torch.stack(panels, dim=1).flatten(0, 1)  # sample-major: one row per sample
        grid = make_grid(
            rows.float().clamp(-1, 1),
            nrow=len(panels),
            normalize=True,
            value_range=(-1, 1),
            padding=2,
        )
        iteration = int(pl_module.iteration)
        folder = self.folder(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"iter{iteration:07d}.png"
        save_image(grid, path)
        save_image(grid, folder / "latest.png")
        self.last_path = path
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):  # WandbLogger
                logger.log_image(
                    key="samples",
                    images=[grid],
                    step=trainer.global_step,
                    caption=[f"iteration {iteration}"],
                )
                self._log_label_overlays(logger, batch, fake, pl_module, trainer.global_step)

    @staticmethod
    def _log_label_overlays(logger, batch: dict, fake: torch.Tensor, pl_module, step: int) -> None:
        """Labels -> photo: each output with its label map as a W&B mask, the class names as
        the legend, so a dashboard can toggle classes on and off."""
        class_labels = getattr(pl_module, "class_labels", None)
        if B.LABEL not in batch or not class_labels:
            return
        images = [((f.float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).cpu().numpy() for f in fake]
        masks = [
            {"labels": {"mask_data": label.cpu().numpy(), "class_labels": class_labels}}
            for label in batch[B.LABEL]
        ]
        logger.log_image(key="samples/labels", images=images, step=step, masks=masks)
