"""LPIPS "perceptual distance" in the inpainting protocol (the variational inpainting paper's):
`i2i test` and validation against torchmetrics' LPIPS called directly, and the offline error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

from i2i.lightning_command import run_cli
from i2i.metrics.image import LPIPS_FILE
from tests.clirun import run_i2i

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VAE = "--model.init_args.vae.init_args."
TINY_VAE = [
    "--config",
    "configs/vae_demo.yaml",
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
    f"{VAE}img_resolution=32",
    f"{VAE}width=8",
    f"{VAE}z_dim=16",
    f"{VAE}max_width=16",
    "--data.init_args.resolution=32",
    "--data.init_args.num_workers=0",
    "--data.init_args.synthetic_length=16",
    "--data.init_args.max_val_images=8",
    "--data.init_args.val_batch_size=4",
    "--data.init_args.batch_size=4",
    "--metrics.feature=tests.helpers.TinyFeatures",
    "--metrics.feature.num_features=8",
    "--metrics.perceptual_distance=true",
]


@pytest.fixture(scope="module")
def random_alexnet_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random AlexNet under the name torchvision looks for, in a temporary torch hub cache
    (written once: the file is 240 MB, and the tests only read it)."""
    home = tmp_path_factory.mktemp("torch_home")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.manual_seed(3)
    torch.save(torchvision.models.alexnet().state_dict(), home / "hub" / "checkpoints" / LPIPS_FILE)
    return home


@pytest.fixture
def alexnet_home(random_alexnet_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(random_alexnet_home))
    return random_alexnet_home


def reference_lpips(task, datamodule, batches: int) -> float:
    """torchmetrics' LPIPS on the task's completions of the first validation batches."""
    metric = LearnedPerceptualImagePatchSimilarity(net_type="alex", reduction="mean")
    task.eval()
    for k, batch in enumerate(datamodule.val_dataloader()):
        if k == batches:
            break
        fake = task.sample(batch).float().clamp(-1, 1)
        metric.update(fake, batch["image"])
    return float(metric.compute())


def test_i2i_test_reports_lpips_as_torchmetrics_computes_it(tmp_path, alexnet_home):
    root = tmp_path / "run"
    cli = run_cli(
        [
            "test",
            *TINY_VAE,
            f"--trainer.default_root_dir={root}",
            "--trainer.limit_test_batches=2",
            "--metrics.buckets=binned",
        ]
    )
    report = json.loads((root / "test_results.json").read_text())
    assert report["results"]["n"] == 8
    value = report["results"]["lpips"]
    assert value == pytest.approx(reference_lpips(cli.model, cli.datamodule, 2), abs=1e-5)
    assert 0 < value < 2
    assert "LPIPS" in report["protocol"]["perceptual_distance"]
    # Each bucket's value is the mean over its pairs: the counts weigh them back to the total.
    buckets = [b for b in report["buckets"].values() if b["n"]]
    weighted = sum(b["lpips"] * b["n"] for b in buckets) / sum(b["n"] for b in buckets)
    assert weighted == pytest.approx(value, abs=1e-5)


def test_validation_logs_lpips_with_the_ids(tmp_path, alexnet_home):
    root = tmp_path / "run"
    cli = run_cli(
        [
            "fit",
            *TINY_VAE,
            f"--trainer.default_root_dir={root}",
            "--model.init_args.max_iterations=2",
            "--trainer.val_check_interval=2",
            "--trainer.limit_val_batches=2",
            "--metrics.every_n_validations=1",
            "--samples.every_n_iterations=0",
            "--checkpoint.monitor=null",
        ]
    )
    logged = cli.trainer.callback_metrics
    assert {"val/lpips", "val/p_ids", "val/fid"} <= set(logged)
    # Validation ran after the last step: the final weights made those completions.
    expected = reference_lpips(cli.model, cli.datamodule, 2)
    assert float(logged["val/lpips"]) == pytest.approx(expected, abs=1e-5)


def test_a_missing_alexnet_file_stops_i2i_test_naming_it(tmp_path):
    home = tmp_path / "empty_home"
    code, text = run_i2i(
        "in_process",
        "test",
        *TINY_VAE,
        f"--trainer.default_root_dir={tmp_path / 'run'}",
        "--trainer.limit_test_batches=1",
        TORCH_HOME=str(home),
    )
    assert code == 1, text[-3000:]
    assert str(home / "hub" / "checkpoints" / LPIPS_FILE) in text
    assert "i2i-weights" in text and "perceptual_distance: false" in text
    assert "Traceback" not in text
    assert not (tmp_path / "run" / "test_results.json").exists()
