"""Inpainting on the real sample photos of ../shared/data (skipped when absent)."""

from __future__ import annotations

import pytest
import torch

from i2i.data.inpainting import InpaintingDataModule

# in-process: returns the CLI object, errors raise
from i2i.lightning_command import run_cli as main
from tests.conftest import shared_data
from tests.tasks.test_training import TINY


@pytest.mark.parametrize("category", ["faces", "places"])
def test_inpainting_trains_on_real_photos(category, tmp_path):
    folder = shared_data(category)
    root = tmp_path / "run"
    cli = main(
        [
            "fit",
            "--config",
            TINY,
            f"--data.init_args.data_dir={folder}",
            "--data.init_args.val_fraction=0.1",
            "--data.init_args.images.small_images=upscale",
            "--model.init_args.max_iterations=2",
            f"--trainer.default_root_dir={root}",
            f"--trainer.logger.init_args.save_dir={root}",
        ]
    )
    assert int(cli.model.iteration) == 2
    assert torch.isfinite(cli.trainer.callback_metrics["val/l1_hole"])
    assert list((root / "samples").glob("*.png"))


def test_real_photos_give_fixed_validation_masks():
    dm = InpaintingDataModule(
        str(shared_data("faces")),
        resolution=64,
        images={"small_images": "upscale"},
        num_workers=0,
        val_fraction=0.2,
    )
    dm.setup("fit")
    first, again = dm.val_dataset[0], dm.val_dataset[0]
    assert first["image"].shape == (3, 64, 64) and first["image"].abs().max() <= 1
    assert torch.equal(first["mask"], again["mask"])  # fixed per validation image
    assert not torch.equal(dm.val_dataset[1]["mask"], first["mask"])
