"""SSIM and edge F1 in the hole against naive numpy references on small images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from i2i.metrics.structure import (
    HoleEdgeF1,
    HoleSSIM,
    canny_edges,
    edge_f1_from_edges,
    edge_f1_in_region,
    ssim_in_region,
)


def naive_ssim_map(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """SSIM map (H, W) of (C, H, W) images in [-1, 1]: 11x11 Gaussian (sigma 1.5) window over
    the reflect-padded images, one pixel at a time, averaged over channels."""
    k, sigma = 11, 1.5
    d = np.arange(k) - (k - 1) / 2
    g = np.exp(-(d**2) / (2 * sigma**2))
    w = np.outer(g / g.sum(), g / g.sum())
    c1, c2 = (0.01 * 2) ** 2, (0.03 * 2) ** 2
    pad = k // 2
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
    yp = np.pad(y, ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
    _, h, wd = x.shape
    out = np.zeros((x.shape[0], h, wd))
    for c in range(x.shape[0]):
        for i in range(h):
            for j in range(wd):
                a, b = xp[c, i : i + k, j : j + k], yp[c, i : i + k, j : j + k]
                ma, mb = (w * a).sum(), (w * b).sum()
                va = max((w * a * a).sum() - ma**2, 0)
                vb = max((w * b * b).sum() - mb**2, 0)
                cov = (w * a * b).sum() - ma * mb
                out[c, i, j] = ((2 * ma * mb + c1) * (2 * cov + c2)) / (
                    (ma**2 + mb**2 + c1) * (va + vb + c2)
                )
    return out.mean(0)


def naive_edge_f1(fake: np.ndarray, real: np.ndarray, region: np.ndarray, t: int = 1) -> float:
    """F1 of boolean edge maps (H, W) inside `region`, a hit within t pixels (Chebyshev)."""
    h, w = fake.shape

    def near(edges: np.ndarray, i: int, j: int) -> bool:
        return bool(edges[max(i - t, 0) : i + t + 1, max(j - t, 0) : j + t + 1].any())

    pf = [(i, j) for i in range(h) for j in range(w) if fake[i, j] and region[i, j]]
    pr = [(i, j) for i in range(h) for j in range(w) if real[i, j] and region[i, j]]
    if not pf and not pr:
        return 1.0
    precision = sum(near(real, i, j) for i, j in pf) / max(len(pf), 1)
    recall = sum(near(fake, i, j) for i, j in pr) / max(len(pr), 1)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _images(n=2, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    real = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    fake = (real + 0.4 * torch.randn(n, 3, size, size, generator=g)).clamp(-1, 1)
    mask = torch.ones(n, 1, size, size)
    mask[:, :, 4:12, 3:10] = 0
    return fake, real, mask


def test_ssim_in_the_hole_is_the_naive_ssim_map_averaged_over_the_hole():
    fake, real, mask = _images()
    got = ssim_in_region(fake, real, 1 - mask)
    for i in range(2):
        ssim = naive_ssim_map(fake[i].double().numpy(), real[i].double().numpy())
        hole = mask[i, 0].numpy() < 0.5
        assert float(got[i]) == pytest.approx(ssim[hole].mean(), abs=1e-4)
    metric = HoleSSIM()
    metric.update(fake[:1], real[:1], mask[:1])
    metric.update(fake[1:], real[1:], mask[1:])
    assert float(metric.compute()) == pytest.approx(float(got.mean()), abs=1e-6)


def test_edge_f1_in_the_hole_matches_a_naive_count_with_one_pixel_tolerance():
    g = torch.Generator().manual_seed(1)
    fake = torch.rand(3, 1, 12, 12, generator=g) > 0.8
    real = torch.rand(3, 1, 12, 12, generator=g) > 0.8
    real[2] = False  # no real edge: precision 0 -> F1 0 (the fake invents edges)
    region = torch.zeros(3, 1, 12, 12)
    region[:, :, 2:9, 3:11] = 1
    got = edge_f1_from_edges(fake, real, region)
    for i in range(3):
        want = naive_edge_f1(fake[i, 0].numpy(), real[i, 0].numpy(), region[i, 0].numpy() > 0)
        assert float(got[i]) == pytest.approx(want, abs=1e-6), i
    assert float(got[2]) == 0.0
    # Neither has an edge in the region: nothing to continue, nothing invented.
    empty = torch.zeros(1, 1, 12, 12, dtype=torch.bool)
    assert float(edge_f1_from_edges(empty, empty, region[:1])) == 1.0


def test_edge_f1_rewards_a_continued_edge_and_punishes_a_blur():
    """A vertical colour edge crossing the hole: continued exactly -> 1; a blur of the hole (no
    edge) -> 0; the edge shifted by one pixel -> still 1 (the tolerance)."""
    real = -torch.ones(1, 3, 32, 32)
    real[..., 16:] = 1
    mask = torch.ones(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 0
    hole = 1 - mask
    assert float(edge_f1_in_region(real, real, hole)) == 1.0
    blur = real.clone()
    blur[..., 8:24, 8:24] = 0  # a flat fill: its only edges lie on the hole's border
    assert float(edge_f1_in_region(blur, real, hole)) < 0.5
    shifted = -torch.ones(1, 3, 32, 32)
    shifted[..., 17:] = 1
    assert float(edge_f1_in_region(shifted, real, hole)) > 0.9
    assert canny_edges(real)[0, 0, :, 15:17].any()  # Canny finds the edge where it is
    metric = HoleEdgeF1()
    metric.update(torch.cat([real, blur]), torch.cat([real, real]), torch.cat([mask, mask]))
    want = (1.0 + float(edge_f1_in_region(blur, real, hole))) / 2
    assert float(metric.compute()) == pytest.approx(want, abs=1e-6)
