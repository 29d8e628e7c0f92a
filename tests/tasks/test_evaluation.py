"""The evaluation protocol: `i2i test` writes the JSON, validation logs P-IDS / U-IDS / FID."""

from __future__ import annotations

import json

import pytest
import torch

from i2i.callbacks.evaluation import BUCKETS, bucket_index, bucket_name, ssim_in_region
from i2i.cli import main
from tests.tasks.test_training import TINY

FEATURES = ["--metrics.feature=tests.helpers.TinyFeatures", "--metrics.feature.num_features=8"]


def test_bucket_index_edges():
    hole = torch.tensor([0.0, 0.19, 0.2, 0.59, 0.6, 0.99, 1.0])
    assert bucket_index(hole).tolist() == [0, 0, 1, 2, 3, 4, 4]
    assert [bucket_name(*b) for b in BUCKETS][-1] == "[0.8,1.0]"


def test_ssim_in_region_is_one_on_identical_and_ignores_known_pixels():
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    region = torch.zeros(2, 1, 32, 32)
    region[:, :, :, :16] = 1
    fake = real.clone()
    assert torch.allclose(ssim_in_region(fake, real, region), torch.ones(2), atol=1e-4)
    fake[:, :, :, 24:] = -real[:, :, :, 24:]  # damage far outside the region
    assert torch.allclose(ssim_in_region(fake, real, region), torch.ones(2), atol=1e-4)
    fake[:, :, :, :16] = torch.rand(2, 3, 32, 16) * 2 - 1
    assert (ssim_in_region(fake, real, region) < 0.5).all()


def test_i2i_test_writes_every_bucket(tmp_path):
    root = tmp_path / "run"
    common = [
        f"--trainer.default_root_dir={root}",
        f"--trainer.logger.init_args.save_dir={root}",
        "--data.init_args.max_val_images=40",
        "--data.init_args.val_batch_size=8",
        "--data.init_args.hole_range=[0.0, 1.0]",
        *FEATURES,
    ]
    main(["fit", "--config", TINY, "--model.init_args.max_iterations=1", *common])
    ckpt = root / "checkpoints" / "last.ckpt"
    main(
        ["test", "--config", TINY, f"--ckpt_path={ckpt}", "--trainer.limit_test_batches=5", *common]
    )
    report = json.loads((root / "test_results.json").read_text())
    assert report["results"]["n"] == 40
    for key in ("p_ids", "u_ids", "fid", "l1_hole", "psnr_hole", "ssim_hole"):
        assert isinstance(report["results"][key], float), key
    assert 0 <= report["results"]["p_ids"] <= 1 and 0 <= report["results"]["u_ids"] <= 1
    assert list(report["buckets"]) == [bucket_name(*b) for b in BUCKETS]
    assert sum(b["n"] for b in report["buckets"].values()) == 40
    protocol = report["protocol"]
    assert protocol["num_pairs"] == 40 and protocol["generator"] == "G_ema"
    assert protocol["truncation_psi"] == 1.0 and "seeded" in protocol["masks"]
    assert protocol["checkpoint"].endswith("last.ckpt")


def test_validation_logs_ids_and_fid(tmp_path):
    root = tmp_path / "run"
    cli = main(
        [
            "fit",
            "--config",
            TINY,
            "--model.init_args.max_iterations=2",
            f"--trainer.default_root_dir={root}",
            f"--trainer.logger.init_args.save_dir={root}",
            "--metrics.every_n_validations=1",
            "--trainer.limit_val_batches=4",
            *FEATURES,
        ]
    )
    metrics = cli.trainer.callback_metrics
    for key in ("val/p_ids", "val/u_ids", "val/fid"):
        assert key in metrics and torch.isfinite(metrics[key]), key


def test_translation_test_reports_fid_and_diversity(tmp_path):
    root = tmp_path / "run"
    args = [
        "--config",
        "configs/demo_edges.yaml",
        f"--trainer.default_root_dir={root}",
        "--trainer.logger=false",
        "--model.init_args.generator.init_args.img_resolution=32",
        "--model.init_args.discriminator.init_args.img_resolution=32",
        "--model.init_args.generator.init_args.channel_base=256",
        "--model.init_args.generator.init_args.channel_max=32",
        "--model.init_args.discriminator.init_args.channel_base=256",
        "--model.init_args.discriminator.init_args.channel_max=32",
        "--data.init_args.resolution=32",
        "--data.init_args.val_length=16",
        "--data.init_args.num_workers=0",
        "--metrics.diversity=l1",
        "--metrics.fid_reference=train",
        "--metrics.fid_train_samples=32",
        *FEATURES,
    ]
    main(["test", *args, "--trainer.limit_test_batches=1"])
    report = json.loads((root / "test_results.json").read_text())
    assert report["results"]["diversity_l1"] > 0  # two latents, two different outputs
    assert isinstance(report["results"]["fid_train_reference"], float)
    assert report["protocol"]["fid_reference"] == "train"


def test_missing_lpips_weights_are_named(tmp_path, monkeypatch):
    from i2i.callbacks.evaluation import build_lpips

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="alexnet-owt-7be5be79.pth"):
        build_lpips()


def test_i2i_test_on_the_demo_config(tmp_path):
    """The shipped demo config itself (untrained: no checkpoint), with a tiny feature network."""
    root = tmp_path / "demo"
    main(
        [
            "test",
            "--config",
            "configs/demo.yaml",
            f"--trainer.default_root_dir={root}",
            "--trainer.logger=false",
            "--trainer.limit_test_batches=3",
            "--data.init_args.num_workers=0",
            "--data.init_args.hole_range=[0.0, 1.0]",
            *FEATURES,
        ]
    )
    report = json.loads((root / "test_results.json").read_text())
    assert report["results"]["n"] == 3 * 16  # limit_test_batches x val_batch_size
    assert list(report["buckets"]) == [bucket_name(*b) for b in BUCKETS]
    assert report["protocol"]["task"] == "InpaintingTask"
