"""Losses against their formulas."""

import math

import pytest
import torch

from i2i.losses import (
    PerceptualLoss,
    d_logistic_loss,
    g_nonsaturating_loss,
    masked_l1,
    r1_penalty,
)
from i2i.networks import CoModDiscriminator
from tests.conftest import TINY_D


def test_adversarial_losses_match_formulas():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    torch.testing.assert_close(g_nonsaturating_loss(fake), torch.log1p(torch.exp(-fake)))
    want = torch.log1p(torch.exp(fake)) + torch.log1p(torch.exp(-real))
    torch.testing.assert_close(d_logistic_loss(real, fake), want)
    assert g_nonsaturating_loss(torch.tensor([0.0])).item() == pytest.approx(math.log(2))


def test_r1_of_a_linear_critic_is_the_squared_weight_norm():
    a = torch.randn(3, 4, 4)

    def critic(x, cond):
        return (x * a).flatten(1).sum(1) + cond.flatten(1).sum(1)  # cond gets no penalty

    x = torch.randn(5, 3, 4, 4)
    penalty, logits = r1_penalty(critic, x, torch.randn(5, 1, 4, 4))
    torch.testing.assert_close(penalty, torch.full((5,), a.square().sum().item()))
    assert logits.shape == (5,)


def test_r1_is_fp32_under_autocast_and_differentiable():
    D = CoModDiscriminator(32, cond_channels=1, **TINY_D)
    x, cond = torch.randn(4, 3, 32, 32), torch.randn(4, 1, 32, 32)
    ref, _ = r1_penalty(D, x, cond)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        penalty, logits = r1_penalty(D, x.bfloat16(), cond.bfloat16())
    assert penalty.dtype == torch.float32 and logits.dtype == torch.float32
    torch.testing.assert_close(
        penalty, r1_penalty(D, x.bfloat16().float(), cond.bfloat16().float())[0]
    )
    assert penalty.shape == ref.shape == (4,)
    penalty.sum().backward()  # create_graph: R1 trains D's weights
    # The input gradient cannot depend on the final bias; every other weight is trained by R1.
    missing = [n for n, p in D.named_parameters() if p.grad is None]
    assert missing == ["out.bias"]


def test_masked_l1_averages_over_the_region():
    real = torch.zeros(2, 3, 4, 4)
    fake = torch.zeros(2, 3, 4, 4)
    mask = torch.ones(2, 1, 4, 4)
    mask[:, :, :2] = 0  # top half is the hole
    fake[:, :, :2] = 1.0  # wrong only in the hole
    fake[1, :, 2:] = 5.0  # sample 1 is also wrong in the known part
    torch.testing.assert_close(masked_l1(fake, real, mask), torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(
        masked_l1(fake, real, mask, region="known"), torch.tensor([0.0, 5.0])
    )
    torch.testing.assert_close(masked_l1(fake, real), torch.tensor([0.5, 3.0]))
    with pytest.raises(ValueError, match="region"):
        masked_l1(fake, real, mask, region="edges")


def test_perceptual_loss_zero_on_identical_and_missing_weights_named(tmp_path):
    loss = PerceptualLoss(weights=None)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert loss(x, x).abs().max().item() == 0.0
    y = x.clone().requires_grad_(True)
    value = loss(y, torch.rand(2, 3, 32, 32) * 2 - 1)
    assert (value > 0).all()
    value.sum().backward()
    assert y.grad is not None and not any(True for _ in loss.parameters())  # frozen, not saved
    missing = PerceptualLoss(weights=tmp_path / "vgg16-397923af.pth")  # builds without the file
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth"):
        missing(x, x)  # ... and names it at first use
    with pytest.raises(FileNotFoundError, match="i2i-weights"):
        missing.load_weights()


def test_perceptual_loss_loads_a_weights_file_and_weighs_layers(tmp_path):
    from torchvision.models import vgg16

    reference = vgg16(weights=None)
    # The loss reads the features.* entries only: the classifier's 120M weights (500 MB to
    # write and read) stay out of the test's file.
    state = {k: v for k, v in reference.state_dict().items() if k.startswith("features.")}
    torch.save(state, tmp_path / "vgg16-397923af.pth")
    loss = PerceptualLoss(
        weights=tmp_path / "vgg16-397923af.pth", layer_weights=(0, 0, 0, 1), distance="l2"
    )
    x, y = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    value = loss(x, y)
    features = reference.features[:23].eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
    with torch.no_grad():
        fa, fb = features(((x + 1) / 2 - mean) / std), features(((y + 1) / 2 - mean) / std)
    torch.testing.assert_close(value, (fa - fb).square().flatten(1).mean(1))
    # A file that is not VGG-16's is named, with what it lacks.
    del state["features.21.weight"]
    torch.save(state, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"other.pth is not a VGG-16 state dict.*features.21"):
        PerceptualLoss(weights=tmp_path / "other.pth").load_weights()


# ---- the GAN objectives ------------------------------------------------------------------------


def test_gan_objectives_match_their_formulas():
    from i2i.losses import gan_objective

    real, fake = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([0.5, -3.0, 1.5])
    sig = torch.sigmoid
    want = {
        "minimax": (-torch.log(sig(real)) - torch.log(1 - sig(fake)), torch.log(1 - sig(fake))),
        "nonsaturating": (
            -torch.log(sig(real)) - torch.log(1 - sig(fake)),
            -torch.log(sig(fake)),
        ),
        "lsgan": ((real - 1) ** 2 + fake**2, (fake - 1) ** 2),
        "hinge": (
            torch.clamp(1 - real, min=0) + torch.clamp(1 + fake, min=0),
            -fake,
        ),
        "wgan": (fake - real, -fake),
    }
    for name, (d_want, g_want) in want.items():
        d_loss, g_loss = gan_objective(name)
        torch.testing.assert_close(d_loss(real, fake), d_want, msg=name)
        torch.testing.assert_close(g_loss(fake), g_want, msg=name)
    with pytest.raises(ValueError, match="unknown GAN objective 'wgan-gp'.*lsgan"):
        gan_objective("wgan-gp")


def test_one_sided_label_smoothing():
    from i2i.losses import smoothed_d_logistic_loss

    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    for t in (0.75, 0.9):
        want = -(t * torch.log(torch.sigmoid(real)) + (1 - t) * torch.log(1 - torch.sigmoid(real)))
        want = want - torch.log(1 - torch.sigmoid(fake))
        torch.testing.assert_close(smoothed_d_logistic_loss(real, fake, t), want)
    torch.testing.assert_close(
        smoothed_d_logistic_loss(real, fake, 1.0), d_logistic_loss(real, fake)
    )


def test_gradient_penalty_of_a_linear_critic():
    from i2i.losses import gradient_penalty

    a = torch.randn(3, 4, 4)

    def critic(x):
        return (x * a).flatten(1).sum(1)

    gp = gradient_penalty(critic, torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4), weight=10.0)
    torch.testing.assert_close(gp, torch.full((5,), 10 * (a.norm().item() - 1) ** 2))


MODES = torch.tensor([[2.0, 2.0], [-2.0, -2.0], [2.0, -2.0], [-2.0, 2.0]])


def _train_gmm(objective: str, flip_g: bool, steps: int = 300) -> tuple[float, float]:
    """A tiny GAN on a mixture of four 2-D Gaussians: mean distance of its samples to the
    nearest mode, before and after training."""
    from torch import nn

    from i2i.losses import gan_objective, gradient_penalty

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)

    def mlp(out):
        return nn.Sequential(
            nn.Linear(2, 64),
            nn.LeakyReLU(0.2),
            nn.Linear(64, 64),
            nn.LeakyReLU(0.2),
            nn.Linear(64, out),
        )

    G, D = mlp(2), mlp(1)
    opt_g = torch.optim.Adam(G.parameters(), 1e-3, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(D.parameters(), 1e-3, betas=(0.5, 0.9))
    d_loss, g_loss = gan_objective(objective)
    z_eval = torch.randn(512, 2, generator=gen)

    def distance() -> float:
        with torch.no_grad():
            return torch.cdist(G(z_eval), MODES).min(1).values.mean().item()

    before = distance()
    critic_steps = 5 if objective == "wgan" else 1  # WGAN-GP's usual n_critic
    for _ in range(steps):
        for _ in range(critic_steps):
            real = MODES[torch.randint(4, (128,), generator=gen)] + 0.1 * torch.randn(128, 2)
            fake = G(torch.randn(128, 2, generator=gen))
            loss = d_loss(D(real).squeeze(1), D(fake.detach()).squeeze(1)).mean()
            if objective == "wgan":
                loss = loss + gradient_penalty(lambda x: D(x).squeeze(1), real, fake).mean()
            opt_d.zero_grad()
            loss.backward()
            opt_d.step()
        loss_g = g_loss(D(G(torch.randn(128, 2, generator=gen))).squeeze(1)).mean()
        opt_g.zero_grad()
        (-loss_g if flip_g else loss_g).backward()
        opt_g.step()
    return before, distance()


@pytest.mark.parametrize("objective", ["minimax", "nonsaturating", "lsgan", "hinge", "wgan"])
def test_each_objective_moves_samples_towards_the_data(objective):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: threads only add overhead
    try:
        # WGAN-GP takes 5 critic steps per iteration: 150 iterations are 750 steps of D.
        steps = 150 if objective == "wgan" else 300
        before, after = _train_gmm(objective, flip_g=False, steps=steps)
        _, flipped = _train_gmm(objective, flip_g=True, steps=steps)  # the wrong sign: not there
    finally:
        torch.set_num_threads(threads)
    assert after < 0.75 * before, (before, after)
    assert flipped > after + 0.5, (after, flipped)
