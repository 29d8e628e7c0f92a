"""P-IDS / U-IDS benchmark: the metric's compute (torch SVM + scores) against scikit-learn.

    python -m benchmarks.metrics [--sizes 2000 10000] [--dim 2048] [--reps 3]

Features are synthetic, 2048-d like Inception pool3: a non-negative-ish mean, 256 principal
directions with decaying variance, isotropic noise. "Fakes" are their paired reals plus a small
common shift, a random deviation in the principal subspace and extra isotropic noise, tuned so that
both scores are realistic (P-IDS ~ 0.2, U-IDS ~ 0.33 at N = 10,000; the paper's CoModGAN numbers
are in that range). Timed: ``InceptionDiscriminativeScore.compute()`` on stored features (the SVM
fit and the scores; no feature extraction), and scikit-learn's ``LinearSVC(dual=False)`` fit plus
its decision function on the same features in the same run (one repetition: it is the slow one).
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np
import torch
from torch import Tensor, nn

from benchmarks.common import print_table, seconds
from i2i.metrics import InceptionDiscriminativeScore


def synthetic_features(
    n: int, dim: int = 2048, rank: int = 256, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """(real, fake) float32 features (n, dim); fake[i] is the "completion" of real[i]."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(rank, dim, generator=g) / math.sqrt(dim)
    scales = 12.0 / torch.arange(1, rank + 1)  # decaying principal components
    mean = torch.rand(dim, generator=g) * 0.6
    real = mean + (torch.randn(n, rank, generator=g) * scales) @ basis
    real += 0.2 * torch.randn(n, dim, generator=g)
    deviation = (torch.randn(n, rank, generator=g) * scales) @ basis
    fake = real + 0.5 * deviation + 0.004 * torch.randn(dim, generator=g)
    fake += 0.3 * torch.randn(n, dim, generator=g)
    return real, fake


def sklearn_scores(real: Tensor, fake: Tensor) -> dict[str, float]:
    from sklearn.svm import LinearSVC

    n = real.shape[0]
    x = torch.cat([real, fake]).double().numpy()
    y = np.r_[np.ones(n), np.zeros(n)]
    f = LinearSVC(dual=False).fit(x, y).decision_function(x)
    return {
        "p_ids": float(np.mean(f[n:] > f[:n])),
        "u_ids": float((np.sum(f[:n] <= 0) + np.sum(f[n:] > 0)) / (2 * n)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000], help="pairs N")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--reps", type=int, default=3, help="repetitions of ours (median)")
    parser.add_argument("--no-sklearn", action="store_true", help="time ours only")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    # N = 2000 < D: the metric rightly warns that such scores are biased; here only speed matters.
    warnings.filterwarnings("ignore", message="only .* pairs for")

    rows = []
    for n in args.sizes:
        real, fake = synthetic_features(n, args.dim)
        # The stored features go through the metric as 1 x 1 "images" that nn.Flatten maps back.
        metric = InceptionDiscriminativeScore(nn.Flatten(), compute_with_cache=False)
        metric.update(real.view(n, 1, 1, -1), fake.view(n, 1, 1, -1))
        ours = {k: float(v) for k, v in metric.compute().items()}
        t_ours = seconds(metric.compute, reps=args.reps, warmup=0)
        row = {
            "N pairs": n,
            "D": args.dim,
            "ours (s)": f"{t_ours:.2f}",
        }
        if args.no_sklearn:
            row |= {"P-IDS": f"{ours['p_ids']:.4f}", "U-IDS": f"{ours['u_ids']:.4f}"}
        else:
            start = time.perf_counter()
            ref = sklearn_scores(real, fake)
            t_ref = time.perf_counter() - start
            row |= {
                "sklearn (s)": f"{t_ref:.2f}",
                "speed-up": f"{t_ref / t_ours:.1f}x",
                "P-IDS ours / sklearn": f"{ours['p_ids']:.4f} / {ref['p_ids']:.4f}",
                "U-IDS ours / sklearn": f"{ours['u_ids']:.4f} / {ref['u_ids']:.4f}",
                "max |diff|": f"{max(abs(ours[k] - ref[k]) for k in ref):.4f}",
            }
        rows.append(row)
        print(row, flush=True)
    print_table(rows, "P-IDS / U-IDS compute: torch SVM vs scikit-learn LinearSVC(dual=False)")


if __name__ == "__main__":
    main()
