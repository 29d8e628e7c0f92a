"""`i2i compare` as the user runs it: a subprocess, a table, the raw numbers, exit status 0."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from i2i.compare import run_dip
from i2i.data.masks import RandomMaskGenerator
from tests.clirun import MODES, run_i2i

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("mode", MODES)
def test_compare_trains_each_system_and_prints_one_table(tmp_path, mode):
    out = tmp_path / "cmp"
    cmd = [
        "compare",
        "--configs",
        "demo",
        "demo_labels",
        "dip",
        "classical:biharmonic",
        "classical:telea",
        "nearest_edges",
        "--kimg",
        "0.032",
        "--val-batches",
        "1",
        "--out",
        str(out),
        "--dip-images",
        "2",
        "--dip-iterations",
        "3",
        "--dip-channels",
        "8",
    ]
    # TORCH_HOME without weights, as on these offline machines.
    code, text = run_i2i(mode, *cmd, TORCH_HOME=str(tmp_path / "no_weights"))
    assert code == 0, text[-3000:]
    rows = json.loads((out / "compare.json").read_text())
    assert [r["config"] for r in rows] == [
        "demo",
        "demo_labels",
        "dip",
        "classical:biharmonic",
        "classical:telea",
        "nearest_edges",
    ]
    rows, dip, classical, nearest = rows[:2], rows[2], rows[3:5], rows[5]
    for row in rows:
        assert row["images"] >= 32 and row["iterations"] >= 1
        assert row["images_per_second"] > 0
        assert 0 < row["parameters_sampling"] < row["parameters_trained"]
        assert row["ended_by"] == "kimg" and row["lpips"] is None and row["fid"] is None
    hole = {"val/l1_hole", "val/psnr_hole", "val/ssim_hole", "val/edge_f1_hole"}
    reference = {"val/l1_hole_biharmonic", "val/edge_f1_hole_biharmonic"}  # demo.yaml's
    assert set(rows[0]["metrics"]) == hole | reference
    assert set(rows[1]["metrics"]) == {"val/l1", "val/psnr"}
    # Classical rows: no training, the demo row's validation images and masks, its metrics.
    for row in classical:
        assert row["system"] == "ClassicalInpaintingTask" and row["data"] == "demo"
        assert row["images"] == 0 and row["parameters_trained"] == 0 and row["ended_by"] is None
        assert set(row["metrics"]) == hole and row["val_images"] == 16
    biharmonic = classical[0]["metrics"]
    assert biharmonic["val/l1_hole"] == pytest.approx(rows[0]["metrics"]["val/l1_hole_biharmonic"])
    assert nearest["system"] == "NearestNeighbourEdgesTask" and nearest["problem"] == "translation"
    assert set(nearest["metrics"]) == {"val/l1", "val/psnr"}
    assert rows[0]["val_images"] == 16 and rows[1]["val_images"] == 16  # one batch each
    # Deep image prior: no training, the demo row's first images and masks, the same metrics.
    assert dip["system"] == "DeepImagePriorTask" and dip["data"] == "demo"
    assert dip["images"] == 0 and dip["iterations"] == 3 and dip["val_images"] == 2
    # The demo's hole metrics, and the reference fill of its own task (the default, harmonic).
    assert set(dip["metrics"]) == hole | {"val/l1_hole_harmonic", "val/edge_f1_hole_harmonic"}
    assert all(math.isfinite(v) for v in dip["metrics"].values())
    assert dip["seconds_per_image"] > 0 and dip["parameters_sampling"] > 0
    table = (out / "compare.md").read_text()
    assert table in text and "| demo | InpaintingTask | inpainting |" in table
    assert "| dip | DeepImagePriorTask | inpainting |" in table and "0 (3 it/image)" in table
    assert "| classical:telea | ClassicalInpaintingTask | inpainting |" in table
    # LPIPS and FID: columns that say their weights are absent, and which files to place.
    assert "| LPIPS | FID |" in table and "weights absent" in table
    assert "alexnet-owt-7be5be79.pth" in table and "weights-inception-2015-12-05" in table
    assert "| budget ended by |" in table and "| kimg |" in table


def test_dip_row_completes_the_validation_images_as_deep_image_prior_does(one_torch_thread):
    """The row's numbers against a naive loop over the same images and masks: each image inpainted
    by `deep_image_prior` with its index's seed, known pixels unchanged."""
    from i2i.data.inpainting import InpaintingDataModule
    from i2i.dip import deep_image_prior
    from i2i.losses import masked_l1
    from i2i.metrics.image import psnr
    from i2i.seeding import derive_seed
    from i2i.tasks.dip import DeepImagePriorTask

    row = run_dip(REPO / "configs" / "demo.yaml", images=3, iterations=4, channels=8)
    assert row["val_images"] == 3
    data = InpaintingDataModule(
        resolution=64, masks=RandomMaskGenerator(hole_range=(0.1, 0.5)), num_workers=0
    )
    data.setup("validate")  # demo.yaml's data: the same seeds, images and masks
    task = DeepImagePriorTask(iterations=4, network={"channels": 8})
    l1, db = [], []
    for i in range(3):
        item = data.val_dataset[i]
        image, mask = item["image"], item["mask"]
        seed = derive_seed(0, item["index"])
        want = deep_image_prior(image, mask, iterations=4, network={"channels": 8}, seed=seed)
        batch = {k: torch.as_tensor(v)[None] for k, v in item.items()}
        got = task.sample(batch)[0]
        torch.testing.assert_close(got, want.image)
        got = got.clamp(-1, 1)  # scored as saved: in the image range
        known = mask.expand_as(image) > 0.5
        assert torch.equal(got[known], image[known])  # known pixels unchanged
        assert not torch.equal(got[~known], image[~known])
        l1.append(masked_l1(got[None], image[None], mask[None], region="hole"))
        db.append(psnr(got[None], image[None], 1 - mask[None]))
    assert row["metrics"]["val/l1_hole"] == pytest.approx(float(torch.cat(l1).mean()), rel=1e-5)
    assert row["metrics"]["val/psnr_hole"] == pytest.approx(float(torch.cat(db).mean()), rel=1e-5)


def test_compare_names_an_unknown_config():
    code, text = run_i2i("in_process", "compare", "--configs", "no_such_demo")
    assert code == 2
    assert "no_such_demo" in text and "demo" in text


@pytest.fixture
def paper_weights(tmp_path, monkeypatch):
    """Random AlexNet and Inception under the names LPIPS and FID look for, in a temporary torch
    hub cache (stand-ins: the numbers are not the published networks')."""
    import torchvision

    from i2i.metrics import features
    from i2i.metrics.image import LPIPS_FILE

    folder = tmp_path / "torch_home" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), folder / LPIPS_FILE)
    torch.save(features.build_inception().state_dict(), folder / features.INCEPTION_FILENAME)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr("i2i.compare.CHECK_WEIGHTS_HASH", False)  # the stand-in's hash
    monkeypatch.setenv("WANDB_MODE", "disabled")


def test_compare_minutes_budget_and_lpips_fid_where_weights_are_present(tmp_path, paper_weights):
    """`--minutes`: each trained system stops after that much wall time in training batches (the
    row says the minutes ended it); LPIPS and FID are computed when their files are present (a
    row without training scores through the same `_validate`: one row is enough here)."""
    from i2i.compare import main

    out = tmp_path / "cmp"
    args = [
        "--configs",
        "demo_labels",
        "--minutes",
        "0.001",
        "--val-batches",
        "1",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    (trained,) = json.loads((out / "compare.json").read_text())
    assert trained["ended_by"] == "minutes"
    assert trained["budget"] == {"kimg": None, "minutes": 0.001}
    assert 1 <= trained["iterations"] <= 2 and trained["train_seconds"] >= 0.06
    assert trained["lpips"] > 0 and math.isfinite(trained["fid"])
    table = (out / "compare.md").read_text()
    assert "weights absent" not in table and "| minutes |" in table
