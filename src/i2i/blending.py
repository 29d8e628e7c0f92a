"""Poisson blending of a completed hole (Perez et al. 2003, seamless cloning): GLCIC's optional
post-processing, which removes the colour seam at the border of the hole.

Inside the hole the result f solves the discrete Poisson equation with the generator's raw
output s as the guidance field and the input's known pixels t as the boundary:

    for every hole pixel p:  |N_p| f_p - sum_{q in N_p, q hole} f_q
                                   = sum_{q in N_p, q known} t_q + sum_{q in N_p} (s_p - s_q)

with N_p the 4-neighbours of p inside the image (so the image border is a Neumann boundary).
The guidance reads s on the ring of known pixels around the hole (the hole "slightly dilated"),
which is why it takes the raw output and not the composite: the composite's gradients across
the border are the seam itself. Known pixels are returned unchanged. One sparse symmetric
positive-definite system per image, solved once for the three channels (scipy).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch

__all__ = ["poisson_blend", "poisson_blend_image"]

_OFFSETS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def poisson_blend_image(source: np.ndarray, target: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """One image: `source` and `target` (C, H, W) float arrays, `hole` (H, W) bool (True =
    hole). Returns `target` with its hole replaced by the Poisson solution guided by `source`."""
    c, h, w = target.shape
    out = target.astype(np.float64, copy=True)
    if not hole.any():
        return out
    if hole.all():  # no boundary: the equation fixes f only up to a constant; keep the output
        return source.astype(np.float64, copy=True)
    index = -np.ones((h, w), dtype=np.int64)
    ys, xs = np.nonzero(hole)
    n = len(ys)
    index[ys, xs] = np.arange(n)
    src, tgt = source.astype(np.float64), target.astype(np.float64)
    diagonal = np.zeros(n)
    rhs = np.zeros((n, c))
    rows, cols = [], []
    for dy, dx in _OFFSETS:
        qy, qx = ys + dy, xs + dx
        inside = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
        p = np.nonzero(inside)[0]
        qy, qx = qy[inside], qx[inside]
        diagonal[p] += 1
        rhs[p] += (src[:, ys[p], xs[p]] - src[:, qy, qx]).T  # the guidance field
        q = index[qy, qx]
        unknown = q >= 0
        rows.append(p[unknown])
        cols.append(q[unknown])
        rhs[p[~unknown]] += tgt[:, qy[~unknown], qx[~unknown]].T  # the known boundary
    rows_, cols_ = np.concatenate(rows), np.concatenate(cols)
    matrix = scipy.sparse.csc_matrix(
        (
            np.concatenate([diagonal, -np.ones(len(rows_))]),
            (np.concatenate([np.arange(n), rows_]), np.concatenate([np.arange(n), cols_])),
        ),
        shape=(n, n),
    )
    solution = scipy.sparse.linalg.splu(matrix).solve(rhs)  # (n, C)
    out[:, ys, xs] = solution.T
    return out


@torch.no_grad()
def poisson_blend(source: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A batch: `source` the raw generator output and `target` the input image (N, C, H, W),
    `mask` (N, 1, H, W) with i2i's convention 1 = known, 0 = hole. Returns (N, C, H, W) in
    `source`'s dtype and device; known pixels are `target`'s exactly."""
    hole = mask[:, 0].detach().cpu().numpy() < 0.5
    src = source.detach().cpu().double().numpy()
    tgt = target.detach().cpu().double().numpy()
    out = np.stack([poisson_blend_image(s, t, m) for s, t, m in zip(src, tgt, hole, strict=True)])
    blended = torch.from_numpy(out).to(device=source.device, dtype=source.dtype)
    known = mask.to(source.dtype)
    # Known pixels from the input itself, so they stay exact whatever the dtype round trips.
    return blended * (1 - known) + target.to(source.dtype) * known
