"""Variational inpainting: the ELBO terms by hand, training, iterative sampling, exact resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from i2i.data.inpainting import InpaintingDataModule
from i2i.data.masks import RandomMaskGenerator
from i2i.lightning_command import run_cli
from i2i.losses import PerceptualLoss, kl_to_standard_normal
from i2i.networks.vae import ConvVAE
from i2i.tasks.vae import VAEInpaintingTask
from tests.clirun import MODES, run_i2i

# Tiny tensors: on a busy 2-core machine, more threads than free cores mostly wait.
pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[2]
VAE_DEMO = str(REPO / "configs" / "vae_demo.yaml")
TINY = {"img_resolution": 32, "in_channels": 3, "z_dim": 16, "width": 8, "max_width": 32}


def test_kl_of_known_gaussians():
    mu = torch.tensor([[0.0, 0.0], [1.0, -2.0]])
    logvar = torch.tensor([[0.0, 0.0], [math.log(4.0), 0.0]])
    # KL(N(mu, s^2) || N(0, 1)) = 0.5 (mu^2 + s^2 - 1 - log s^2), summed over dimensions
    want = torch.tensor([0.0, 0.5 * (1 + 4 - 1 - math.log(4.0)) + 0.5 * 4])
    torch.testing.assert_close(kl_to_standard_normal(mu, logvar), want)


def test_reparameterisation_gradient():
    mu = torch.tensor([[0.5, -1.0]], requires_grad=True)
    logvar = torch.tensor([[0.2, -0.4]], requires_grad=True)
    gen = torch.Generator().manual_seed(0)
    z = ConvVAE.reparameterize(mu, logvar, gen)
    eps = torch.randn(1, 2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(z, mu + (0.5 * logvar).exp() * eps)
    z.sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones(1, 2))  # dz/dmu = 1
    torch.testing.assert_close(logvar.grad, 0.5 * (0.5 * logvar).exp().detach() * eps)


def test_vae_shapes_variants_and_attributes():
    vae = ConvVAE(**TINY)
    x, mu, logvar = vae(torch.randn(2, 3, 32, 32))
    assert x.shape == (2, 3, 32, 32) and mu.shape == logvar.shape == (2, 16)
    one_shot = ConvVAE(**TINY, decoder_cond_channels=4)
    assert one_shot(torch.randn(2, 3, 32, 32), torch.randn(2, 4, 32, 32))[0].shape == x.shape
    with pytest.raises(ValueError, match="condition"):
        one_shot(torch.randn(2, 3, 32, 32))
    both = ConvVAE(**TINY, attr_dim=40, attributes_in="both")
    out = both(torch.randn(2, 3, 32, 32), attributes=torch.randint(0, 2, (2, 40)).float())[0]
    assert out.shape == x.shape
    out.square().mean().backward()
    assert all(p.grad is not None for p in both.parameters())
    with pytest.raises(ValueError, match="40 attributes"):
        both(torch.randn(2, 3, 32, 32))


def tiny_task(**kwargs) -> VAEInpaintingTask:
    return VAEInpaintingTask(ConvVAE(**TINY), sampling_steps=4, channels_last=False, **kwargs)


def tiny_data() -> InpaintingDataModule:
    dm = InpaintingDataModule(
        resolution=32,
        batch_size=8,
        val_batch_size=8,
        num_workers=0,
        synthetic_length=64,
        max_val_images=8,
        masks=RandomMaskGenerator(hole_range=(0.1, 0.5)),
    )
    dm.setup("fit")
    return dm


def test_elbo_terms_against_a_hand_computation():
    task = tiny_task(beta=0.5, pixel_weight=2.0).eval()  # eval: BatchNorm without batch noise
    batch = tiny_data().sample_batch(4)
    torch.manual_seed(1)
    terms = task.elbo_terms(batch)
    torch.manual_seed(1)
    observed = batch["image"] * batch["mask"]
    recon, mu, logvar = task.vae(observed)
    mse = (recon - batch["image"]).square().flatten(1).mean(1)
    kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1) / (3 * 32 * 32)
    torch.testing.assert_close(terms["mse"], mse)
    torch.testing.assert_close(terms["kl"], kl)
    torch.testing.assert_close(terms["loss"], 2.0 * mse + 0.5 * kl)
    perceptual = PerceptualLoss(weights=None, layer_weights=(1, 0, 0, 2), distance="l2")
    with_vgg = tiny_task(perceptual=perceptual).eval()
    with_vgg.vae.load_state_dict(task.vae.state_dict())
    torch.manual_seed(1)
    terms = with_vgg.elbo_terms(batch)
    assert terms["perceptual"].shape == (4,) and (terms["perceptual"] > 0).all()
    torch.testing.assert_close(terms["loss"], mse + terms["perceptual"] + kl)


def test_iterative_sampling_keeps_known_pixels_and_changes_only_the_hole():
    task = tiny_task()
    batch = tiny_data().sample_batch(4)
    steps = task.complete(batch)
    assert len(steps) == 4
    known = batch["mask"].expand_as(batch["image"]) > 0.5
    for step in steps:
        assert torch.equal(step[known], batch["image"][known])
        assert not torch.equal(step[~known], batch["image"][~known])
    assert not torch.equal(steps[0], steps[-1])  # every step samples anew
    one_shot = VAEInpaintingTask(ConvVAE(**TINY, decoder_cond_channels=4), one_shot=True)
    assert len(one_shot.complete(batch)) == 1
    torch.testing.assert_close(task.sample(batch), task.sample(batch))  # seeded
    assert len(task.visual_panels(batch, task.sample(batch))) == 5


def test_sampling_in_training_mode_uses_and_keeps_the_running_statistics():
    task = tiny_task()
    batch = tiny_data().sample_batch(4)
    before = {k: v.clone() for k, v in task.vae.state_dict().items()}
    task.train()
    fake, steps = task.sample(batch), task.sample_steps(batch)  # as a sample grid mid-training
    assert task.vae.training  # the mode is restored
    for key, value in task.vae.state_dict().items():
        assert torch.equal(value, before[key]), key  # running means / variances untouched
    task.eval()
    torch.testing.assert_close(fake, task.sample(batch), rtol=0, atol=0)
    torch.testing.assert_close(steps[-1], fake, rtol=0, atol=0)


def test_training_on_the_embedded_data_lowers_the_masked_error():
    dm = tiny_data()
    batch = dm.sample_batch(8)
    task = tiny_task()

    def hole_error() -> float:
        task.eval()
        with torch.no_grad():
            fake = task.sample(batch)
        hole = batch["mask"].expand_as(fake) < 0.5
        return float((fake - batch["image"])[hole].square().mean())

    before = hole_error()
    optimizer = task.configure_optimizers()
    stream = iter(dm.train_dataloader())
    task.train()
    for _ in range(100):
        loss = task.elbo_terms(next(stream))["loss"].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = hole_error()
    assert after < 0.7 * before, (before, after)


def _fit(tmp_path: Path, *args: str):
    root = tmp_path / "run"
    return run_cli(
        [
            "fit",
            "--config",
            VAE_DEMO,
            f"--trainer.default_root_dir={root}",
            "--trainer.logger=false",
            "--trainer.enable_progress_bar=false",
            "--model.init_args.vae.init_args.img_resolution=32",
            "--model.init_args.vae.init_args.width=8",
            "--model.init_args.vae.init_args.z_dim=16",
            "--data.init_args.resolution=32",
            "--data.init_args.batch_size=4",
            "--data.init_args.num_workers=0",
            "--data.init_args.synthetic_length=32",
            "--data.init_args.max_val_images=4",
            "--data.init_args.val_batch_size=4",
            "--trainer.val_check_interval=2",
            "--trainer.limit_val_batches=1",
            "--samples.every_n_iterations=2",
            "--samples.num_samples=2",
            *args,
        ]
    )


def test_fit_through_the_cli_and_exact_resume(tmp_path):
    straight = _fit(tmp_path / "a", "--model.init_args.max_iterations=6").model
    _fit(tmp_path / "b", "--model.init_args.max_iterations=3")
    resumed = _fit(tmp_path / "b", "--model.init_args.max_iterations=6", "--ckpt_path=last")
    resumed = resumed.model
    assert int(straight.iteration) == int(resumed.iteration) == 6
    a, b = straight.vae.state_dict(), resumed.vae.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    assert list((tmp_path / "a" / "run" / "samples").glob("iter*.png"))


@pytest.mark.parametrize("mode", MODES)
def test_a_missing_vgg_file_stops_before_training(tmp_path, mode):
    missing = tmp_path / "vgg16-397923af.pth"
    code, text = run_i2i(
        mode,
        "fit",
        "--config",
        str(VAE_DEMO),
        f"--trainer.default_root_dir={tmp_path / 'run'}",
        "--trainer.logger=false",
        "--data.init_args.num_workers=0",
        "--model.init_args.perceptual=i2i.losses.PerceptualLoss",
        f"--model.init_args.perceptual.weights={missing}",
    )
    assert code == 1, text[-2000:]
    assert str(missing) in text and "i2i-weights" in text
    assert not list((tmp_path / "run").glob("checkpoints/*.ckpt"))  # nothing trained
