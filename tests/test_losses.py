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
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth"):
        PerceptualLoss(weights=tmp_path / "vgg16-397923af.pth")
