"""Two-process DDP run of InceptionDiscriminativeScore (gloo, CPU), run by test_ids.py
(`run_two_ranks`, forked from the test process) or as a script:

    python tests/metrics/ddp_ids.py OUT_DIR

Each rank updates the metric with its contiguous share of a fixed set of pairs (uneven shares, in
several batches), calls compute(), and writes OUT_DIR/rank<r>.json with the scores and the
features gathered across ranks. Also holds the tiny feature network and data the tests share.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    from i2i.metrics import InceptionDiscriminativeScore

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
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
    finally:
        dist.destroy_process_group()


def run_two_ranks(out_dir: str, start_method: str = "spawn") -> None:
    """Both ranks, as processes of `start_method`: "fork" from a process that has imported torch
    and i2i starts them without paying the imports again."""
    mp.start_processes(
        _worker, args=(2, _free_port(), out_dir), nprocs=2, join=True, start_method=start_method
    )


def main() -> None:
    run_two_ranks(sys.argv[1])


if __name__ == "__main__":
    main()
