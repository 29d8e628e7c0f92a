"""`i2i predict` writes files: the prediction writer.

    i2i predict --config CONFIG --ckpt_path CKPT         # PNGs in <default_root_dir>/predictions
    i2i predict ... --trainer.callbacks+=i2i.callbacks.PredictionWriter \\
        --trainer.callbacks.output_dir=DIR --trainer.callbacks.num_samples=3

The files are those of `i2i inpaint` / `i2i translate` (`i2i.inference.files`): one PNG per
input named after its file (path relative to the folder of the prediction set, without
extension; `{index:06d}` for data without files), `_k` per sample k when num_samples > 1, and
an optional `_panel.png`. Sample k is the task's `sample(batch, variant=k)` with its `eval_seed`,
the seeding the commands use with `--seed` (see `i2i.inference.run`): for inputs at the model's
resolution, a config-driven predict with eval_seed S and the command with --seed S and the
config's validation batch size as --batch-size write the same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from i2i.data import batch as B
from i2i.errors import RunError


def _dataset_files(dataset: Any) -> tuple[list[Path], Path] | None:
    """The files of a (wrapped) dataset and the folder they are named relative to."""
    for _ in range(4):  # FixedMaskDataset -> ImageFolderDataset, Subset -> ...
        files = getattr(dataset, "files", None)
        if files:
            paths = [Path(f) for f in files]
            return paths, Path(os.path.commonpath([p.parent for p in paths]))
        dataset = getattr(dataset, "dataset", None)
        if dataset is None:
            return None
    return None


class PredictionWriter(BasePredictionWriter):
    """Writes each prediction batch as PNG files (see the module doc)."""

    def __init__(
        self,
        output_dir: str | None = None,  # None: <trainer.default_root_dir>/predictions
        num_samples: int = 1,  # outputs per input (variants 0..num_samples-1 of `sample`)
        panel: bool = False,  # also write input | (mask overlay |) outputs side by side
        overwrite: bool = False,  # replace existing files instead of stopping
    ):
        super().__init__(write_interval="batch")
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        self.output_dir, self.num_samples = output_dir, num_samples
        self.panel, self.overwrite = panel, overwrite
        self._files: tuple[list[Path], Path] | None = None

    def folder(self, trainer: L.Trainer) -> Path:
        return Path(self.output_dir or Path(trainer.default_root_dir) / "predictions")

    def name(self, index: int) -> str:
        if self._files is None:
            return f"{index:06d}"
        files, root = self._files
        return files[index].relative_to(root).with_suffix("").as_posix()

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from i2i.inference.outputs import output_paths

        loaders = trainer.predict_dataloaders
        loader = loaders[0] if isinstance(loaders, list | tuple) else loaders
        dataset = getattr(loader, "dataset", None)
        self._files = _dataset_files(dataset)
        if self.overwrite or dataset is None or not hasattr(dataset, "__len__"):
            return
        out = self.folder(trainer)
        names = [self.name(i) for i in range(len(dataset))]
        planned = [p for n in names for p in output_paths(out, n, self.num_samples, self.panel)]
        existing = [p for p in planned if p.exists()]
        if existing:
            raise RunError(
                f"{existing[0]} already exists ({len(existing)} of the {len(planned)} "
                "predictions do): add --trainer.callbacks.overwrite=true (with the writer on the "
                "command line) or move them"
            )

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: dict,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        from i2i.images import to_uint8
        from i2i.inference.outputs import output_paths, save_png
        from i2i.inference.panels import panel_image

        fakes = [prediction[B.OUTPUT]]
        fakes += [pl_module.sample(batch, variant=k) for k in range(1, self.num_samples)]
        fakes = [f.clamp(-1, 1).cpu() for f in fakes]
        out = self.folder(trainer)
        for j, index in enumerate(batch[B.INDEX].tolist()):
            outputs = [to_uint8(f[j]) for f in fakes]
            if self.panel:
                outputs.append(panel_image(self._inputs(batch, j) + outputs))
            paths = output_paths(out, self.name(int(index)), self.num_samples, self.panel)
            for path, image in zip(paths, outputs, strict=True):
                save_png(path, image)

    @staticmethod
    def _inputs(batch: dict, j: int) -> list[np.ndarray]:
        from i2i.images import to_uint8
        from i2i.inference.panels import overlay

        if B.MASK in batch:
            image = to_uint8(batch[B.IMAGE][j])
            return [image, overlay(image, batch[B.MASK][j, 0].cpu().numpy() > 0.5)]
        if B.EDGES in batch:
            edges = batch[B.EDGES][j].float().cpu()
            return [to_uint8(edges.expand(3, -1, -1) if edges.shape[0] == 1 else edges)]
        if B.IMAGE in batch:
            return [to_uint8(batch[B.IMAGE][j])]
        return [to_uint8(torch.zeros(3, 8, 8))]
