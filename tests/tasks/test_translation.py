"""Edges -> photo and labels -> photo on the embedded shapes with tiny networks."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from i2i.data.synthetic import ShapesDataModule
from i2i.networks import CoModDiscriminator, CoModGenerator
from i2i.tasks import EdgesToPhotoTask, LabelsToPhotoTask
from tests.conftest import TINY_D, TINY_G


def tiny_task(kind: str, cond_channels: int, **kwargs):
    G = CoModGenerator(32, cond_channels=cond_channels, **TINY_G)
    D = CoModDiscriminator(32, cond_channels=cond_channels, **TINY_D)
    if kind == "edges":
        return EdgesToPhotoTask(G, D, r1_interval=2, **kwargs)
    return LabelsToPhotoTask(G, D, num_classes=6, r1_interval=2, **kwargs)


def shapes(condition: str) -> ShapesDataModule:
    return ShapesDataModule(
        condition,
        resolution=32,
        batch_size=2,
        val_batch_size=4,
        num_workers=0,
        length=16,
        val_length=8,
    )


def fast_dev_run(task, datamodule):
    """One iteration (fast_dev_run=2 caps optimizer steps: G + D) and one validation batch."""
    trainer = L.Trainer(
        fast_dev_run=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(task, datamodule)
    return trainer


@pytest.mark.parametrize("kind,channels", [("edges", 1), ("labels", 6)])
def test_fast_dev_run(kind, channels):
    task = tiny_task(kind, channels)
    dm = shapes(kind)
    trainer = fast_dev_run(task, dm)
    assert int(task.iteration) == 1  # fast_dev_run=2 caps optimizer steps: G + D = 1 iteration
    assert torch.isfinite(trainer.callback_metrics["train/loss_g"])
    batch = dm.sample_batch(2)
    cond = task.condition(batch)
    assert cond.shape == (2, channels, 32, 32)
    assert torch.equal(task.d_condition(batch), cond)  # D sees the same condition
    if kind == "labels":
        assert torch.equal(cond.sum(dim=1), torch.ones(2, 32, 32))  # one-hot
    panels = task.visual_panels(batch, task.sample(batch))
    assert len(panels) == 1 + 3 + 1  # condition | 3 samples | target
    assert all(p.shape == (2, 3, 32, 32) for p in panels)


def test_several_latents_give_different_outputs():
    task = tiny_task("edges", 1)
    fast_dev_run(task, shapes("edges"))
    batch = ShapesDataModule("edges", resolution=32, num_workers=0).sample_batch(4)
    a, b = task.sample(batch, variant=0), task.sample(batch, variant=1)
    assert (a - b).abs().mean() > 1e-3  # diversity
    assert torch.equal(a, task.sample(batch, variant=0))  # and each is reproducible


def test_no_compositing_in_translation():
    task = tiny_task("edges", 1)
    raw = torch.randn(2, 3, 32, 32)
    assert torch.equal(task.compose(raw, {}), raw)


def test_label_errors_name_the_fix():
    task = tiny_task("labels", 5)  # wrong: 6 classes need 6 channels
    with pytest.raises(ValueError, match="cond_channels: 6"):
        fast_dev_run(task, shapes("labels"))
    task = tiny_task("labels", 6)
    batch = ShapesDataModule("labels", resolution=32, num_workers=0).sample_batch(2)
    batch["label"][0, 0, 0] = 9
    with pytest.raises(ValueError, match="label value 9"):
        task.condition(batch)


def test_instance_edges_add_a_channel():
    G = CoModGenerator(32, cond_channels=7, **TINY_G)
    D = CoModDiscriminator(32, cond_channels=7, **TINY_D)
    task = LabelsToPhotoTask(G, D, num_classes=6, instance_edges=True)
    batch = ShapesDataModule("labels", resolution=32, num_workers=0).sample_batch(2)
    batch["instance_edges"] = torch.where(torch.rand(2, 1, 32, 32) > 0.9, 1.0, -1.0)
    cond = task.condition(batch)
    assert cond.shape == (2, 7, 32, 32)
    assert torch.equal(cond[:, 6:], (batch["instance_edges"] + 1) / 2)


def test_label_grid_logs_to_wandb_with_class_legend(tmp_path, monkeypatch):
    from lightning.pytorch.loggers import WandbLogger

    from i2i.callbacks import SampleGrid

    monkeypatch.setenv("WANDB_MODE", "offline")
    task = tiny_task("labels", 6)
    dm = ShapesDataModule(
        "labels", resolution=32, batch_size=2, num_workers=0, length=16, val_length=8
    )
    logger = WandbLogger(save_dir=str(tmp_path), project="i2i-test")
    logged = []
    monkeypatch.setattr(logger, "log_image", lambda **kw: logged.append(kw))
    grid = SampleGrid(every_n_iterations=1, num_samples=2)
    trainer = L.Trainer(
        max_steps=2,
        accelerator="cpu",
        logger=logger,
        callbacks=[grid],
        enable_progress_bar=False,
        enable_checkpointing=False,
        limit_val_batches=0,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(task, dm)
    overlays = [kw for kw in logged if kw["key"] == "samples/labels"]
    assert overlays, "no label overlay was logged"
    mask = overlays[-1]["masks"][0]["labels"]
    assert mask["class_labels"][1] == "circle"  # the legend comes from the datamodule
    assert mask["mask_data"].shape == (32, 32)
    assert list((tmp_path / "samples").glob("iter*.png"))


def test_edges2shoes_real_pairs_train(tmp_path):
    """The pix2pix datamodule on real edges2shoes pairs placed as data/edges2shoes/{train,val}."""
    from i2i.data.translation import Edges2ShoesDataModule
    from tests.conftest import shared_data

    pairs = sorted(shared_data("edges2shoes", "hzycool_val").glob("*.jpg"))
    root = tmp_path / "edges2shoes"
    for split, files in (("train", pairs[:-4]), ("val", pairs[-4:])):
        (root / split).mkdir(parents=True)
        for f in files:
            (root / split / f.name).symlink_to(f)
    dm = Edges2ShoesDataModule(
        root=str(root), download=False, resolution=32, batch_size=2, val_batch_size=2, num_workers=0
    )
    task = tiny_task("edges", 1)
    trainer = fast_dev_run(task, dm)
    batch = dm.sample_batch(2)
    assert batch["edges"].shape == (2, 1, 32, 32)
    assert (batch["edges"] > 0).float().mean() < 0.3  # sparse white lines: the edge half
    assert torch.isfinite(trainer.callback_metrics["train/loss_d"])


def test_cityscapes_real_pairs_train_rectangular(tmp_path):
    """Labels -> photo with instance edges on real Cityscapes pairs, 2:1 through the rectangular
    generator (32x64 here, 256x512 in the config)."""
    from i2i.data.label_datamodules import LabelFolderDataModule
    from tests.conftest import shared_data

    train = shared_data("cityscapes", "pix2pixHD_train")
    dm = LabelFolderDataModule(
        str(train / "img_1024x512"),
        str(train / "label_1024x512"),
        label_set="cityscapes",
        instance_dir=str(train / "inst_1024x512"),
        instance_edges=True,
        resolution=(32, 64),
        batch_size=2,
        val_batch_size=2,
        num_workers=0,
        val_fraction=0.25,
    )
    G = CoModGenerator((32, 64), cond_channels=dm.cond_channels, **TINY_G)
    D = CoModDiscriminator((32, 64), cond_channels=dm.cond_channels, **TINY_D)
    task = LabelsToPhotoTask(G, D, num_classes=dm.num_classes, instance_edges=True)
    fast_dev_run(task, dm)
    assert dm.cond_channels == 36
    assert task.class_labels[26] == "car"
    assert task.sample(dm.sample_batch(2)).shape == (2, 3, 32, 64)
