"""The evaluation protocol: `i2i test` writes the JSON, validation logs P-IDS / U-IDS / FID."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from i2i.data import batch as B
from i2i.data.masks import RandomMaskGenerator, mask_hole_ratio
from i2i.lightning_command import run_cli
from i2i.metrics import InceptionDiscriminativeScore, frechet_distance
from i2i.metrics.protocols.inpainting import BUCKETS, bucket_index, bucket_name
from i2i.metrics.structure import ssim_in_region
from tests import clirun
from tests.helpers import TinyFeatures
from tests.tasks.test_training import REPO, TINY

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


def _scores(model, batches, features) -> dict[str, float]:
    """A naive reference: G_ema on each batch, then the metric on the pairs."""
    metric = InceptionDiscriminativeScore(features, compute_fid=True)
    for batch in batches:
        metric.update(batch[B.IMAGE], model.sample(batch).float().clamp(-1, 1))
    return {k: float(v) for k, v in metric.compute().items()}


def test_i2i_test_scores_each_bucket_as_a_separate_run(tmp_path):
    root = tmp_path / "run"
    common = [
        f"--trainer.default_root_dir={root}",
        f"--trainer.logger.init_args.save_dir={root}",
        "--data.init_args.max_val_images=24",
        "--data.init_args.val_batch_size=8",
        "--data.init_args.masks.init_args.hole_range=[0.0, 1.0]",
        *FEATURES,
    ]
    # An untrained G_ema (no checkpoint): the protocol, not the model, is under test here.
    test = ["test", "--config", TINY, "--trainer.limit_test_batches=3"]
    with pytest.warns(UserWarning, match="scored 24 pairs, fewer than the official .* 10000"):
        cli = run_cli([*test, *common, "--metrics.official_num_pairs=10000"])
    report = json.loads((root / "test_results.json").read_text())
    assert report["results"]["n"] == 24
    for key in ("p_ids", "u_ids", "fid", "l1_hole", "psnr_hole", "ssim_hole"):
        assert isinstance(report["results"][key], float), key
    assert 0 <= report["results"]["p_ids"] <= 1 and 0 <= report["results"]["u_ids"] <= 1
    names = [bucket_name(*b) for b in BUCKETS]
    assert list(report["buckets"]) == names
    protocol = report["protocol"]
    assert protocol["num_pairs"] == 24 and protocol["generator"] == "G_ema"
    assert protocol["official_num_pairs"] == 10000 and protocol["below_official_num_pairs"]
    assert protocol["truncation_psi"] == 1.0 and "seeded" in protocol["masks"]
    assert protocol["buckets"]["mode"] == "separate" and protocol["buckets"]["names"] == names

    # Each bucket: all 24 images again, masks of that bucket's hole_range, fixed per image and
    # bucket; its scores equal a naive run of G_ema over those pairs.
    model, dm = cli.model, cli.datamodule
    images = dm.val_dataset.dataset
    for k, (low, high) in enumerate(BUCKETS):
        entry = report["buckets"][bucket_name(low, high)]
        assert entry["n"] == 24 and entry["hole_range"] == [low, high]
        assert low < entry["hole_ratio"] < high
        if k not in (0, 4):  # a naive rerun of the first and last buckets is enough
            continue
        generator = RandomMaskGenerator((low, high), dm.mask_generator.variant).at(32)
        batches = []
        for start in range(0, 24, 8):
            items = [dict(images[i]) for i in range(start, start + 8)]
            for item in items:
                rng = np.random.default_rng([dm.seed, 2, k, int(item[B.INDEX])])
                item[B.MASK] = generator(rng)
                assert low < mask_hole_ratio(item[B.MASK]) < high
            batches.append(default_collate(items))
        expected = _scores(model, batches, TinyFeatures(num_features=8))
        for key in ("p_ids", "u_ids"):
            assert entry[key] == pytest.approx(expected[key], abs=1e-6), (k, key)
        assert entry["fid"] == pytest.approx(expected["fid"], rel=1e-4), k

    # The cheap option bins the one [0, 1] run: the buckets share its 24 pairs.
    run_cli([*test, *common, "--metrics.buckets=binned"])
    report = json.loads((root / "test_results.json").read_text())
    assert sum(b["n"] for b in report["buckets"].values()) == 24
    assert report["protocol"]["buckets"]["mode"] == "binned"
    assert report["protocol"]["official_num_pairs"] is None
    assert report["protocol"]["below_official_num_pairs"] is None


def test_mask_files_allow_only_binned_buckets(tmp_path):
    from PIL import Image

    masks = tmp_path / "masks"
    masks.mkdir()
    for i in range(4):  # white = hole, hole ratios 1/8 .. 4/8
        img = Image.new("L", (32, 32), 0)
        img.paste(255, (0, 0, 4 * (i + 1), 32))
        img.save(masks / f"m{i}.png")
    root = tmp_path / "run"
    run_cli(
        [
            "test",
            "--config",
            TINY,
            f"--trainer.default_root_dir={root}",
            "--trainer.logger=false",
            "--data.init_args.max_val_images=8",
            "--data.init_args.val_masks=MaskFiles",
            f"--data.init_args.val_masks.folder={masks}",
            "--data.init_args.val_masks.polarity=white_is_hole",
            *FEATURES,
        ]
    )
    report = json.loads((root / "test_results.json").read_text())
    buckets = report["protocol"]["buckets"]
    assert buckets["mode"] == "binned" and buckets["requested"] == "separate"
    assert "only binning" in buckets["note"] and "mask files" in report["protocol"]["masks"]
    assert sum(b["n"] for b in report["buckets"].values()) == 8
    # Image i gets file i mod 4, hole 1/8, 2/8, 3/8, 4/8: buckets of 2, 4 and 2 pairs.
    counts = [report["buckets"][bucket_name(*b)]["n"] for b in BUCKETS]
    assert counts == [2, 4, 2, 0, 0]


def test_validation_logs_ids_and_fid(tmp_path):
    root = tmp_path / "run"
    cli = run_cli(
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


def _edges_args(root: Path, length: int, val_length: int) -> list[str]:
    """The demo edges config at 32 px with narrow networks and a small training set."""
    return [
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
        f"--data.init_args.length={length}",
        f"--data.init_args.val_length={val_length}",
        "--data.init_args.num_workers=0",
        "--metrics.diversity=l1",
        "--metrics.fid_reference=train",
        *FEATURES,
    ]


def test_translation_fid_against_all_training_targets_is_cached(tmp_path, monkeypatch):
    from i2i.data.synthetic import ShapesDataset

    reads: Counter = Counter()  # reads per dataset length: training set 48, validation set 16
    original = ShapesDataset.__getitem__

    def counting(self, i):
        reads[self.length] += 1
        return original(self, i)

    monkeypatch.setattr(ShapesDataset, "__getitem__", counting)
    root = tmp_path / "run"
    args = [
        "test",
        *_edges_args(root, length=48, val_length=16),
        "--trainer.limit_test_batches=1",
        "--metrics.diversity_pairs=3",
        f"--metrics.fid_stats_dir={tmp_path / 'stats'}",
    ]
    cli = run_cli(args)
    report = json.loads((root / "test_results.json").read_text())
    assert reads[48] == 48  # every training target once: no cap by default
    results, protocol = report["results"], report["protocol"]
    reference = protocol["fid_reference_data"]
    assert reference["num_reference"] == 48 and reference["requested"] == "all"
    assert reference["cache_hit"] is False and Path(reference["cache"]).is_file()
    assert reference["num_fakes"] == 16

    # Naive references: the outputs of latent variants 0..5 for the 16 inputs.
    model, dm = cli.model, cli.datamodule
    batch = default_collate([dm.val_dataset[i] for i in range(16)])
    outs = [model.sample(batch, variant=v).float().clamp(-1, 1) for v in range(6)]
    pairs = [(outs[2 * p] - outs[2 * p + 1]).abs().flatten(1).mean(1) for p in range(3)]
    assert results["diversity_pairs"] == 48 == protocol["diversity"]["num_pairs"]
    assert protocol["diversity"]["pairs_per_input"] == 3
    assert results["diversity_l1"] == pytest.approx(float(torch.cat(pairs).mean()), rel=1e-5)
    net = TinyFeatures(num_features=8)
    train = torch.stack([dm.train_dataset[i][B.IMAGE] for i in range(48)])
    # The outputs as saved, clamped to the image range, as the protocol scores them.
    expected = frechet_distance(net(train), net(model.sample(batch).float().clamp(-1, 1)))
    assert results["fid_train_reference"] == pytest.approx(float(expected), rel=1e-4)

    # Second run: the statistics come from the cache; the training set is never read.
    reads.clear()
    run_cli(args)
    again = json.loads((root / "test_results.json").read_text())
    assert reads[48] == 0 and reads[16] > 0
    assert again["protocol"]["fid_reference_data"]["cache_hit"] is True
    assert again["results"]["fid_train_reference"] == pytest.approx(
        results["fid_train_reference"], rel=1e-9
    )


def test_ddp_test_gathers_every_rank(tmp_path):
    """`i2i test` on 2 gloo CPU ranks scores what 1 process does: every rank's fakes in the
    train-reference FID, training statistics split across ranks, no repeated padding samples.
    The ranks are forked by Lightning from the test process (ddp_fork: no imports to pay); the
    gathering is the same under `ddp`, whose launched processes the fit tests run."""
    common = [
        "--data.init_args.val_batch_size=1",  # each output depends on its own index only
        "--metrics.diversity_pairs=2",
    ]
    one = tmp_path / "one"
    run_cli(
        [
            "test",
            *_edges_args(one, length=20, val_length=15),
            *common,
            f"--metrics.fid_stats_dir={one / 'stats'}",
        ]
    )
    two = tmp_path / "two"
    code, text = clirun.run_i2i(
        "in_process",
        "test",
        *_edges_args(two, length=20, val_length=15),
        *common,
        f"--metrics.fid_stats_dir={two / 'stats'}",
        "--trainer.devices=2",
        "--trainer.accelerator=cpu",
        "--trainer.strategy=ddp_fork",
    )
    assert code == 0, text[-3000:]
    single = json.loads((one / "test_results.json").read_text())
    double = json.loads((two / "test_results.json").read_text())
    assert double["protocol"]["world_size"] == 2
    # 15 inputs: the sampler pads rank 1 with a repeat of input 0, which is not scored.
    assert single["results"]["n"] == double["results"]["n"] == 15
    assert double["results"]["diversity_pairs"] == 30
    for key in ("fid", "fid_train_reference", "diversity_l1", "p_ids", "u_ids"):
        assert double["results"][key] == pytest.approx(single["results"][key], rel=1e-5), key
    for run in (single, double):
        reference = run["protocol"]["fid_reference_data"]
        assert reference["num_reference"] == 20 and reference["num_fakes"] == 15
        stats = torch.load(reference["cache"], weights_only=True)
        assert stats["count"] == 20
    one_stats = torch.load(single["protocol"]["fid_reference_data"]["cache"], weights_only=True)
    two_stats = torch.load(double["protocol"]["fid_reference_data"]["cache"], weights_only=True)
    torch.testing.assert_close(two_stats["mean"], one_stats["mean"])
    torch.testing.assert_close(two_stats["cov"], one_stats["cov"])


def test_missing_lpips_weights_are_named(tmp_path, monkeypatch):
    from i2i.metrics.image import build_lpips

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="alexnet-owt-7be5be79.pth"):
        build_lpips()


def test_i2i_test_on_the_demo_config(tmp_path):
    """The shipped demo config itself (untrained: no checkpoint), with a tiny feature network."""
    root = tmp_path / "demo"
    run_cli(
        [
            "test",
            "--config",
            "configs/demo.yaml",
            f"--trainer.default_root_dir={root}",
            "--trainer.logger=false",
            "--trainer.limit_test_batches=3",
            "--data.init_args.num_workers=0",
            "--data.init_args.masks.init_args.hole_range=[0.0, 1.0]",
            *FEATURES,
        ]
    )
    report = json.loads((root / "test_results.json").read_text())
    assert report["results"]["n"] == 3 * 16  # limit_test_batches x val_batch_size
    assert list(report["buckets"]) == [bucket_name(*b) for b in BUCKETS]
    assert sum(b["n"] for b in report["buckets"].values()) == 3 * 16
    assert report["protocol"]["buckets"]["mode"] == "binned"  # the demo's cheap choice
    assert report["protocol"]["task"] == "InpaintingTask"


def test_paper_configs_score_the_whole_evaluation_set():
    from i2i.config_files import load_config

    def load(name: str) -> dict:
        return load_config(REPO / "configs" / f"{name}.yaml")

    for name, pairs in (("ffhq512", 10_000), ("places512", 36_500)):
        config = load(name)
        assert config["data"]["init_args"]["max_val_images"] is None, name
        assert config["metrics"]["official_num_pairs"] == pairs, name
        assert config["metrics"]["buckets"] == "separate", name
        assert 0 < config["trainer"]["limit_val_batches"] < 1, name  # fit's validation: capped
    assert load("celebahq256")["data"]["init_args"]["max_val_images"] is None
    for name in ("edges2shoes", "edges2handbags"):
        metrics = load(name)["metrics"]
        assert metrics["fid_reference"] == "train" and metrics["fid_train_samples"] is None
        assert metrics["diversity"] == "lpips" and metrics["diversity_pairs"] == 10
        assert metrics["official_num_pairs"] == 200
