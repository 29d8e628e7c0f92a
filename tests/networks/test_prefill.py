"""The harmonically prefilled CoModGAN: its fill approximates the exact harmonic solve, the
untrained generator returns that fill, and training reaches every parameter."""

from __future__ import annotations

import pytest
import torch

from i2i.classical import harmonic_fill
from i2i.data.masks import RandomMaskGenerator
from i2i.data.synthetic import ShapesDataset
from i2i.networks.prefill import PrefilledCoModGenerator, harmonic_prefill
from i2i.seeding import numpy_rng

TINY = dict(
    img_resolution=32,
    z_dim=16,
    w_dim=16,
    mapping_layers=2,
    channel_base=64,
    channel_max=16,
    global_dim=32,
)


def scenes(n: int = 6, size: int | tuple[int, int] = 32) -> tuple[torch.Tensor, torch.Tensor]:
    data = ShapesDataset(size, length=n, seed=3)
    masks = RandomMaskGenerator(hole_range=(0.2, 0.5)).at(size)
    images = torch.stack([data[i]["image"] for i in range(n)])
    known = torch.stack([masks(numpy_rng(5, i)) for i in range(n)]).float()
    return images, known


@pytest.mark.parametrize("size", [32, (24, 40)])
def test_the_prefill_is_close_to_the_exact_harmonic_solve_and_keeps_known_pixels(size):
    images, known = scenes(size=size)  # (24, 40): sides that are not powers of two
    exact = torch.stack([harmonic_fill(x, m) for x, m in zip(images, known, strict=True)])
    fill = harmonic_prefill(images, known)
    hole = known < 0.5
    assert torch.equal(fill[hole.expand_as(fill) == 0], images[hole.expand_as(fill) == 0])
    gap = (fill - exact).abs()[hole.expand_as(fill)].mean()
    mean_fill_gap = (images.mean((2, 3), keepdim=True) - exact).abs()[hole.expand_as(fill)].mean()
    assert gap < 0.03 < mean_fill_gap  # near the solve, far from a flat colour
    # More smoothing steps only bring it closer.
    closer = (harmonic_prefill(images, known, 64) - exact).abs()[hole.expand_as(fill)].mean()
    assert closer < gap


def test_edge_cases_of_the_prefill():
    image = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(harmonic_prefill(image, torch.ones(2, 1, 16, 16)), image)
    assert torch.equal(harmonic_prefill(image, torch.zeros(2, 1, 16, 16)), torch.zeros_like(image))
    # One known pixel: the whole hole takes its colour.
    known = torch.zeros(2, 1, 16, 16)
    known[:, :, 3, 5] = 1
    out = harmonic_prefill(image, known, 64)
    assert torch.allclose(out, image[:, :, 3:4, 5:6].expand_as(out), atol=1e-3)


def test_the_untrained_generator_returns_the_fill_and_learning_reaches_every_parameter():
    torch.manual_seed(0)
    images, known = scenes(4)
    G = PrefilledCoModGenerator(**TINY)
    cond = torch.cat([known - 0.5, images * known], 1)
    assert torch.equal(G(cond), harmonic_prefill(images, known))  # gain 0: exactly the fill
    with torch.no_grad():
        G.residual_gain.fill_(0.5)  # as after some training: the residual counts
    out = G(cond)
    assert not torch.allclose(out, harmonic_prefill(images, known))
    out.square().mean().backward()
    missing = [n for n, p in G.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert missing == []


def test_the_gain_learns_from_zero():
    G = PrefilledCoModGenerator(**TINY)
    images, known = scenes(4)
    cond = torch.cat([known - 0.5, images * known], 1)
    (G(cond) - images).abs().mean().backward()
    assert G.residual_gain.grad.abs() > 0  # the residual is reached through the gain at 0


def test_a_condition_other_than_inpainting_is_refused():
    with pytest.raises(ValueError, match="cond_channels must be 4"):
        PrefilledCoModGenerator(**{**TINY, "cond_channels": 1})
