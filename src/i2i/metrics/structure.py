"""Structure in the hole: measures that reward continuing what the hole cut and punish blur, which
L1 and PSNR reward (a blur is the L1-optimal guess).

- `ssim_in_region`: SSIM per sample averaged over a region (the hole), from torchmetrics' SSIM
  map (11 px Gaussian window, sigma 1.5, images in [-1, 1]).
- `edge_f1_in_region`: the F1 of the edges kornia's Canny finds in the output against those it
  finds in the real image, inside the region, with a tolerance of `tolerance` pixels (a
  predicted edge pixel counts as right when a real one is within a (2t+1)^2 square, and the
  other way round for recall). A region with no edge in either image scores 1: nothing to
  continue, nothing invented.
- `HoleSSIM`, `HoleEdgeF1`: the same as torchmetrics `Metric`s (mean over samples, DDP-aware),
  updated with (fake, real, mask), mask 1 = known.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.functional.image import structural_similarity_index_measure


def ssim_in_region(fake: torch.Tensor, real: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """SSIM per sample averaged over a region (the hole): the SSIM map, then a masked mean.

    Args:
        fake: (N, C, H, W) in [-1, 1] (clamped).
        real: (N, C, H, W) in [-1, 1] (clamped).
        region: (N, 1, H, W) weights, e.g. 1 in the hole.

    Returns:
        (N,) SSIM in [-1, 1] (1 = identical); 0 for an empty region.
    """
    _, ssim_map = structural_similarity_index_measure(
        fake.float().clamp(-1, 1),
        real.float().clamp(-1, 1),
        data_range=2.0,
        return_full_image=True,
        reduction="none",
    )
    ssim_map = ssim_map.mean(dim=1, keepdim=True)
    weight = region.float().expand_as(ssim_map)
    return (ssim_map * weight).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp_min(1)


def canny_edges(images: torch.Tensor) -> torch.Tensor:
    """kornia's Canny edges of images in [-1, 1], on their grey level in [0, 1].

    kornia's default thresholds 0.1 / 0.2, 5x5 Gaussian, sigma 1.

    Args:
        images: (N, 3, H, W) in [-1, 1] (clamped).

    Returns:
        bool (N, 1, H, W).
    """
    from kornia.filters import canny

    _, edges = canny(images.float().clamp(-1, 1).add(1).div(2))
    return edges > 0.5


def _dilate(x: torch.Tensor, tolerance: int) -> torch.Tensor:
    if tolerance <= 0:
        return x
    return F.max_pool2d(x.float(), 2 * tolerance + 1, stride=1, padding=tolerance) > 0.5


def edge_f1_from_edges(
    fake_edges: torch.Tensor, real_edges: torch.Tensor, region: torch.Tensor, tolerance: int = 1
) -> torch.Tensor:
    """F1 per sample of boolean edge maps inside a region.

    A predicted edge pixel counts as right when a real one is within `tolerance` pixels, and the
    other way round for recall.

    Args:
        fake_edges: bool (N, 1, H, W).
        real_edges: bool (N, 1, H, W).
        region: (N, 1, H, W), 1 = counted (above 0.5).
        tolerance: the distance t in pixels: a (2t+1)^2 square; 0 asks for the same pixel.

    Returns:
        (N,) F1 in [0, 1]; 1 where neither map has an edge in the region.
    """
    inside = region > 0.5
    fake, real = fake_edges & inside, real_edges & inside
    n_fake, n_real = fake.flatten(1).sum(1).float(), real.flatten(1).sum(1).float()
    hit_fake = (fake & _dilate(real_edges, tolerance)).flatten(1).sum(1).float()
    hit_real = (real & _dilate(fake_edges, tolerance)).flatten(1).sum(1).float()
    precision = hit_fake / n_fake.clamp_min(1)
    recall = hit_real / n_real.clamp_min(1)
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
    both_empty = (n_fake == 0) & (n_real == 0)
    return torch.where(both_empty, torch.ones_like(f1), f1)


def edge_f1_in_region(
    fake: torch.Tensor, real: torch.Tensor, region: torch.Tensor, tolerance: int = 1
) -> torch.Tensor:
    """Edge F1 per sample of `fake` against `real` inside `region` (see `edge_f1_from_edges`).

    Args:
        fake: (N, 3, H, W) in [-1, 1].
        real: (N, 3, H, W) in [-1, 1].
        region: (N, 1, H, W), 1 = counted.
        tolerance: the distance in pixels within which an edge counts as found.

    Returns:
        (N,) F1 in [0, 1].
    """
    return edge_f1_from_edges(canny_edges(fake), canny_edges(real), region, tolerance)


class _HoleMean(Metric):
    """The mean over samples of a per-sample score in the hole."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def score(self, fake, real, hole) -> torch.Tensor:
        raise NotImplementedError

    def update(self, fake: torch.Tensor, real: torch.Tensor, mask: torch.Tensor) -> None:
        values = self.score(fake, real, 1 - mask.float())
        self.total += values.double().sum()
        self.count += values.numel()

    def compute(self) -> torch.Tensor:
        return (self.total / self.count.clamp_min(1)).float()


class HoleSSIM(_HoleMean):
    """Mean SSIM over the hole pixels (see `ssim_in_region`); update(fake, real, mask).

    Args:
        **kwargs (Any): torchmetrics' `Metric` options (e.g. `sync_on_compute`).
    """

    def score(self, fake, real, hole) -> torch.Tensor:
        """`ssim_in_region` of the pair over the hole.

        Args:
            fake (torch.Tensor): (N, 3, H, W) in [-1, 1].
            real (torch.Tensor): (N, 3, H, W) in [-1, 1].
            hole (torch.Tensor): (N, 1, H, W), 1 in the hole.
        """
        return ssim_in_region(fake, real, hole)


class HoleEdgeF1(_HoleMean):
    """Mean edge F1 in the hole (see `edge_f1_in_region`); update(fake, real, mask).

    Args:
        tolerance: the distance in pixels within which an edge counts as found.
        **kwargs (Any): torchmetrics `Metric` options.
    """

    def __init__(self, tolerance: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.tolerance = tolerance

    def score(self, fake, real, hole) -> torch.Tensor:
        """`edge_f1_in_region` of the pair over the hole.

        Args:
            fake (torch.Tensor): (N, 3, H, W) in [-1, 1].
            real (torch.Tensor): (N, 3, H, W) in [-1, 1].
            hole (torch.Tensor): (N, 1, H, W), 1 in the hole.
        """
        return edge_f1_in_region(fake, real, hole, self.tolerance)
