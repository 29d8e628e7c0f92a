"""One rank of a two-process DDP run of InceptionDiscriminativeScore (gloo, CPU), forked by
test_ids.py (`tests.helpers.fork_gloo_ranks`).

Each rank updates the metric with its contiguous share of a fixed set of pairs (uneven shares, in
several batches), calls compute(), and writes OUT_DIR/rank<r>.json with the scores and the
features gathered across ranks. Also holds the tiny feature network and data the tests share.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

N_PAIRS = 64
SPLIT = 28  # rank 0 gets pairs [0, 28), rank 1 [28, 64): uneven, to exercise padded gathers


class PooledProjection(nn.Module):
    """A fixed random linear map of 4x4-pooled pixels: (N, 3, H, W) -> (N, num_features)."""

    def __init__(self, num_features: int = 8, seed: int = 0) -> None:
        super().__init__()
        self.num_features = num_features
        self.proj = nn.Linear(3 * 4 * 4, num_features)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(num_features, 48, generator=g) / 48**0.5)
            self.proj.bias.zero_()

    def forward(self, images: Tensor) -> Tensor:
        return self.proj(F.adaptive_avg_pool2d(images, 4).flatten(1))


def make_pairs(
    n: int = N_PAIRS, shift: float = 0.1, noise: float = 0.3, seed: int = 0, size: int = 8
) -> tuple[Tensor, Tensor]:
    """Real images and "completions": the reals shifted by ``shift`` plus noise, in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    real = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    fake = real + shift + noise * torch.randn(n, 3, size, size, generator=g)
    return real, fake.clamp(-1, 1)


def score_share(rank: int, out_dir: str) -> None:
    """Rank `rank`'s share of the pairs, scored; OUT_DIR/rank<r>.json written."""
    from i2i.metrics import InceptionDiscriminativeScore

    real, fake = make_pairs()
    lo, hi = (0, SPLIT) if rank == 0 else (SPLIT, N_PAIRS)
    metric = InceptionDiscriminativeScore(PooledProjection(), compute_fid=True)
    for start in range(lo, hi, 10):  # several batches, the last one short
        stop = min(start + 10, hi)
        metric.update(real[start:stop], fake[start:stop])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = metric.compute()
        with_warnings = [str(w.message) for w in caught]
    metric.sync()  # the gathered states, as compute() saw them
    gathered_real = metric.real_features
    gathered_fake = metric.fake_features
    metric.unsync()
    result = {
        "rank": rank,
        "scores": {k: float(v) for k, v in scores.items()},
        "real": gathered_real.tolist(),
        "fake": gathered_fake.tolist(),
        "local_pairs": len(torch.cat(metric.real_features)),
        "warnings": with_warnings,
    }
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
