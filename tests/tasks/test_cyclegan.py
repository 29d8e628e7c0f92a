"""CycleGAN: the image pool, the losses, training, exact resume, the lr decay, the configs and the
unpaired evaluation (FID in each direction)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from i2i.cli import I2ICLI
from i2i.data import batch as B
from i2i.data.unpaired import UnpairedDataModule
from i2i.lightning_command import run_cli
from i2i.metrics import frechet_distance
from i2i.metrics.protocols import UnpairedProtocol
from i2i.networks import PatchDiscriminator, ResnetGenerator
from i2i.tasks import CycleGANTask, ImagePool, ImageTask
from tests.helpers import TinyFeatures

# Tiny tensors: on a busy 2-core machine, more threads than free cores mostly wait.
pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[2]
DEMO = str(REPO / "configs" / "cyclegan_demo.yaml")
CONFIGS = sorted((REPO / "configs").glob("cyclegan_*.yaml"))


def tiny_task(**kwargs) -> CycleGANTask:
    def G():
        return ResnetGenerator(ngf=4, n_blocks=1)

    def D():
        return PatchDiscriminator(in_channels=3, ndf=8, n_layers=1, norm="instance")

    return CycleGANTask(G(), G(), D(), D(), **kwargs)


def tiny_data(**kwargs) -> UnpairedDataModule:
    defaults = dict(
        resolution=32,
        load_size=36,
        batch_size=2,
        val_batch_size=4,
        num_workers=0,
        synthetic_length=16,
        max_val_images=4,
    )
    return UnpairedDataModule(**{**defaults, **kwargs})


def tiny_cli_args(root: Path, *extra: str) -> list[str]:
    nets = []
    for g in ("generator_ab", "generator_ba"):
        nets += [
            f"--model.init_args.{g}.init_args.ngf=4",
            f"--model.init_args.{g}.init_args.n_blocks=1",
        ]
    for d in ("discriminator_a", "discriminator_b"):
        nets += [
            f"--model.init_args.{d}.init_args.ndf=8",
            f"--model.init_args.{d}.init_args.n_layers=1",
        ]
    return [
        "--config",
        DEMO,
        f"--trainer.default_root_dir={root}",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        f"--trainer.logger.save_dir={root}",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.val_check_interval=2",
        "--trainer.limit_val_batches=1",
        *nets,
        "--data.init_args.batch_size=2",
        "--data.init_args.val_batch_size=4",
        "--data.init_args.num_workers=0",
        "--data.init_args.synthetic_length=16",
        "--data.init_args.max_val_images=4",
        "--samples.every_n_iterations=0",
        "--samples.num_samples=2",
        *extra,
    ]


# ---- the image pool ---------------------------------------------------------------------


def test_pool_returns_its_input_until_full_and_keeps_50():
    pool = ImagePool(50)
    for k in range(10):
        images = torch.randn(5, 3, 4, 4)
        assert torch.equal(pool.query(images), images)  # not full yet: the input comes back
        assert len(pool) == 5 * (k + 1)
    for _ in range(20):
        pool.query(torch.randn(3, 3, 4, 4))
        assert len(pool) == 50
    assert torch.equal(ImagePool(0).query(images), images)  # no history


def test_full_pool_returns_the_current_image_half_the_time():
    torch.manual_seed(1234)
    pool = ImagePool(50)
    pool.query(-torch.arange(50.0).reshape(50, 1, 1, 1))  # stored images are <= 0
    seen = {-float(i) for i in range(50)}
    current, n = 0, 4000
    for i in range(1, n + 1):
        out = pool.query(torch.full((1, 1, 1, 1), float(i)))
        value = float(out)
        if value == i:
            current += 1
        else:  # a stored image: one put in earlier, now replaced by the input
            assert value in seen
            seen.discard(value)
            seen.add(float(i))
        assert len(pool) == 50 and {float(x) for x in pool.images} == seen
    assert abs(current / n - 0.5) < 0.03  # 0.5 +- ~4 standard deviations


def test_pool_draws_follow_the_seed_and_its_state_round_trips():
    def run(pool):
        torch.manual_seed(7)
        return torch.cat([pool.query(torch.randn(2, 1, 2, 2)) for _ in range(40)])

    a, b = ImagePool(5), ImagePool(5)
    assert torch.equal(run(a), run(b))
    c = ImagePool(5)
    c.load_state_dict(a.state_dict())
    assert torch.equal(run(a), run(c))  # same content + same draws = same outputs


# ---- losses and training --------------------------------------------------------------


def test_losses_follow_the_paper():
    torch.manual_seed(0)
    task = tiny_task()
    batch = {
        B.IMAGE_A: torch.rand(2, 3, 32, 32) * 2 - 1,
        B.IMAGE_B: torch.rand(2, 3, 32, 32) * 2 - 1,
    }
    loss, logs = task.generator_loss(batch)
    a, b = batch[B.IMAGE_A], batch[B.IMAGE_B]
    G, F = task.generator_ab, task.generator_ba
    D_A, D_B = task.discriminator_a, task.discriminator_b
    with torch.no_grad():
        expected = (
            (D_B(G(a)) - 1).square().mean()
            + (D_A(F(b)) - 1).square().mean()
            + 10 * ((F(G(a)) - a).abs().mean() + (G(F(b)) - b).abs().mean())
            + 5 * ((G(b) - b).abs().mean() + (F(a) - a).abs().mean())
        )
    torch.testing.assert_close(loss.detach(), expected)
    fake_a, fake_b = task._fakes
    d_loss, d_logs = task.discriminator_loss(batch)  # the pool is not full: the fakes themselves
    with torch.no_grad():
        expected_d = 0.5 * ((D_A(a) - 1).square().mean() + D_A(fake_a).square().mean()) + 0.5 * (
            (D_B(b) - 1).square().mean() + D_B(fake_b).square().mean()
        )
    torch.testing.assert_close(d_loss.detach(), expected_d)
    assert len(task.pools["a"]) == len(task.pools["b"]) == 2


def test_default_optimizers_and_the_linear_decay_by_iteration():
    task = tiny_task(lr_constant_iterations=2, lr_decay_iterations=4)
    (opt_g, opt_d), schedulers = task.configure_optimizers()
    for opt in (opt_g, opt_d):
        assert opt.param_groups[0]["lr"] == pytest.approx(2e-4)
        assert opt.param_groups[0]["betas"] == (0.5, 0.999)
    # One optimizer over both generators, one over both discriminators.
    assert len(opt_g.param_groups[0]["params"]) == len(list(task.generators.parameters()))
    assert len(opt_d.param_groups[0]["params"]) == len(list(task.discriminators.parameters()))
    lrs = []
    for _ in range(8):
        lrs.append(opt_g.param_groups[0]["lr"])
        for s in schedulers:
            s.step()
    # The lr of iteration i is 2e-4 x lr_factor(i): 1 up to iteration 2, then 1 - (i - 2) / 4.
    expected = [2e-4, 2e-4, 2e-4, 1.5e-4, 1e-4, 0.5e-4, 0.0, 0.0]
    assert lrs == pytest.approx(expected)


def test_a_few_steps_change_the_weights_and_lower_the_cycle_loss():
    torch.manual_seed(0)

    def adam(params):
        return torch.optim.Adam(params, lr=5e-3, betas=(0.5, 0.999))

    task = tiny_task(optimizer_g=adam, optimizer_d=adam, max_iterations=12)
    dm = tiny_data(batch_size=2)
    batch = dm.sample_batch(4)

    def cycle(task):
        with torch.no_grad():
            a, b = batch[B.IMAGE_A], batch[B.IMAGE_B]
            G, F = task.generator_ab, task.generator_ba
            return float((F(G(a)) - a).abs().mean() + (G(F(b)) - b).abs().mean())

    before_loss = cycle(task)
    before = {k: v.clone() for k, v in task.state_dict().items()}
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=-1,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(task, dm)
    assert int(task.iteration) == 12
    for name in ("generators.ab", "generators.ba", "discriminators.a", "discriminators.b"):
        changed = [k for k, v in task.state_dict().items() if k.startswith(name)]
        assert any(not torch.equal(before[k], task.state_dict()[k]) for k in changed), name
    assert cycle(task) < 0.7 * before_loss
    assert len(task.pools["a"]) == len(task.pools["b"]) == 24  # 12 x 2 fakes, not full yet


# ---- the CLI: exact resume, the sample grid, the configs ------------------------------------


def _fit(root: Path, *extra: str):
    return run_cli(["fit", *tiny_cli_args(root, *extra)])


def test_resume_continues_exactly_with_the_pools(tmp_path):
    # 2N = N + resume + N with N = 2. pool_size 2 is full after the first iteration (batch 2),
    # so the draws after the cut return stored images: a pool that were not restored would give
    # D other fakes. The lr decays across the cut.
    common = (
        "--model.init_args.pool_size=2",
        "--model.init_args.lr_constant_iterations=1",
        "--model.init_args.lr_decay_iterations=6",
    )
    straight = _fit(tmp_path / "a", *common, "--model.init_args.max_iterations=4").model
    _fit(tmp_path / "b", *common, "--model.init_args.max_iterations=2")
    ckpt = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["state_dict"]["iteration"].item() == 2
    assert ckpt[CycleGANTask.POOLS_KEY]["a"]["images"].shape == (2, 3, 32, 32)
    resumed = run_cli(
        [
            "fit",
            *tiny_cli_args(tmp_path / "b", *common, "--model.init_args.max_iterations=4"),
            "--ckpt_path=last",
        ]
    ).model
    assert int(resumed.iteration) == int(straight.iteration) == 4
    sa, sb = straight.state_dict(), resumed.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=1e-6, msg=f"{k} differs")
    for name in ("a", "b"):
        pa, pb = straight.pools[name].images, resumed.pools[name].images
        torch.testing.assert_close(torch.stack(pa).cpu(), torch.stack(pb).cpu(), rtol=0, atol=1e-6)
    lr = straight.trainer.optimizers[0].param_groups[0]["lr"]
    assert lr == pytest.approx(2e-4 * (1 - 3 / 6))
    assert resumed.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(lr)


def test_fit_logs_the_cycle_loss_and_draws_six_panels(tmp_path):
    cli = _fit(
        tmp_path / "run",
        "--model.init_args.max_iterations=2",
        "--metrics.every_n_validations=1",
        "--metrics.feature=tests.helpers.TinyFeatures",
        "--metrics.feature.num_features=4",
    )
    logged = cli.trainer.callback_metrics
    keys = ("train/loss_g", "train/loss_d", "train/cycle_a", "train/identity_b", "val/cycle")
    for key in (*keys, "val/fid_ab", "val/fid_ba"):
        assert key in logged and torch.isfinite(logged[key]), key
    task = cli.model
    batch = cli.datamodule.sample_batch(2)
    panels = task.visual_panels(batch, task.sample(batch))
    assert len(panels) == 6 and all(p.shape == (2, 3, 32, 32) for p in panels)
    assert list((tmp_path / "run" / "samples").glob("iter*.png"))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_cyclegan_configs_instantiate(config):
    cli = I2ICLI(
        ImageTask,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        run=False,
        args=[
            "--config",
            str(config),
            "--trainer.logger=false",
            "--trainer.accelerator=cpu",
            "--trainer.devices=1",
            "--trainer.strategy=auto",
        ],
    )
    task = cli.model
    assert isinstance(task, CycleGANTask) and task.evaluation_protocol is UnpairedProtocol
    assert cli.datamodule.batches_per_step == 1
    if config.stem == "cyclegan_horse2zebra":

        def count(m):
            return sum(p.numel() for p in m.parameters())

        assert count(task.generator_ab) == count(task.generator_ba) == 11_378_179
        assert count(task.discriminator_a) == count(task.discriminator_b) == 2_764_737
        hp = task.hparams
        assert (hp.lambda_cycle, hp.lambda_identity, hp.pool_size) == (10.0, 0.5, 50)
        assert hp.lr_constant_iterations == hp.lr_decay_iterations == 100 * 1334
        assert cli.datamodule.hparams.load_size == 286 and cli.datamodule.resolution == (256, 256)
        assert cli.datamodule.batch_size == 1


# ---- i2i test: FID in each direction ------------------------------------------------------


def _write_domain(folder: Path, n: int, seed: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")


def test_i2i_test_scores_fid_in_each_direction(tmp_path):
    data = tmp_path / "data"
    for split, n, seed in (("trainA", 4, 0), ("trainB", 4, 1), ("testA", 3, 2), ("testB", 5, 3)):
        _write_domain(data / split, n, seed)
    root = tmp_path / "run"
    args = tiny_cli_args(
        root,
        f"--data.init_args.root={data}",
        "--data.init_args.max_val_images=null",
        "--data.init_args.val_batch_size=2",
    )
    args += ["--metrics.feature=tests.helpers.TinyFeatures", "--metrics.feature.num_features=4"]
    cli = run_cli(["test", *args])  # an untrained model: the protocol is under test
    report = json.loads((root / "test_results.json").read_text())
    results = report["results"]
    assert report["protocol"]["evaluation"] == "unpaired"
    # 5 samples (max(3, 5)): the 2 repeats of testA are left out of A's sets.
    assert (results["n_real_a"], results["n_fake_b"], results["n_real_b"], results["n_fake_a"]) == (
        3,
        3,
        5,
        5,
    )
    task, dm = cli.model, cli.datamodule
    val = dm.val_dataset.dataset
    a = torch.stack([val.domain_a[i] for i in range(3)])
    b = torch.stack([val.domain_b[i] for i in range(5)])
    features = TinyFeatures(num_features=4)
    with torch.no_grad():
        fake_b, fake_a = task.generator_ab(a), task.generator_ba(b)
    fid_ab = frechet_distance(features(b), features(fake_b))
    fid_ba = frechet_distance(features(a), features(fake_a))
    assert results["fid_ab"] == pytest.approx(float(fid_ab), rel=1e-5)
    assert results["fid_ba"] == pytest.approx(float(fid_ba), rel=1e-5)
    assert results["fid_ab"] != pytest.approx(results["fid_ba"])
