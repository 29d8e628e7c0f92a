"""Classical baselines with no training: inpainting by diffusion from the hole's border, and
nearest-neighbour retrieval for paired translation.

Inpainting fills take an image (3, H, W) in [-1, 1] and its mask (1, H, W) or (H, W), 1 = known,
at any size, and return the image with the hole filled and every known pixel exactly unchanged:
- `mean_fill`: the mean known colour (the weakest sensible fill: a yardstick);
- `harmonic_fill`: Laplace's equation in the hole with the known border as boundary condition
  (one sparse solve over the hole pixels, all channels at once);
- `biharmonic_fill`: scikit-image's `inpaint_biharmonic` (smooth to second order);
- `telea_fill`, `navier_stokes_fill`: OpenCV's `inpaint` (fast marching, Telea 2004; fluid
  dynamics, Bertalmio et al. 2001), which work on 8-bit images.
`FILLS` names them for configs and the command line (`i2i inpaint classical:harmonic`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

#: OpenCV's radius (pixels) of the neighbourhood each hole pixel is filled from: its example's.
CV_RADIUS = 3


def _known(known: torch.Tensor | np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    k = known.detach().cpu().numpy() if isinstance(known, torch.Tensor) else np.asarray(known)
    k = k.reshape(k.shape[-2:]) if k.ndim == 3 else k
    if k.shape != shape:
        raise ValueError(f"the mask is {k.shape} (H, W), the image {shape}: give one per image")
    return k > 0.5


def _result(image: torch.Tensor, known: np.ndarray, filled: np.ndarray) -> torch.Tensor:
    """`filled` (3, H, W) in the hole, the input's own values (bit for bit) where known."""
    out = torch.from_numpy(np.ascontiguousarray(filled)).to(image.device, image.dtype)
    keep = torch.from_numpy(known).to(image.device)
    return torch.where(keep, image, out.clamp(-1, 1))


def _check(image: torch.Tensor) -> None:
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an image (3, H, W), got {tuple(image.shape)}")


def _fill(image: torch.Tensor, known, solve) -> torch.Tensor:
    """Check the inputs and answer a mask without a hole or without a known pixel; otherwise
    `solve(image, k)` gives the (3, H, W) values that `_result` puts in the hole."""
    _check(image)
    k = _known(known, tuple(image.shape[-2:]))
    if k.all():
        return image.clone()
    if not k.any():  # no boundary condition: nothing to diffuse from
        return mean_fill(image, k)
    return _result(image, k, solve(image, k))


def mean_fill(image: torch.Tensor, known) -> torch.Tensor:
    """The hole filled with the mean known colour (grey where nothing is known)."""
    _check(image)
    k = _known(known, tuple(image.shape[-2:]))
    x = image.detach().cpu().double().numpy()
    mean = x[:, k].mean(1) if k.any() else np.zeros(3)
    return _result(image, k, np.broadcast_to(mean[:, None, None], x.shape))


def harmonic_fill(image: torch.Tensor, known) -> torch.Tensor:
    """Each hole pixel the mean of its 4 neighbours, known ones fixed: the discrete Laplace
    equation over the hole pixels (image edges: only the neighbours inside), one sparse LU
    factorisation solved for the 3 channels together."""
    return _fill(image, known, _harmonic_solution)


def _harmonic_solution(image: torch.Tensor, k: np.ndarray) -> np.ndarray:
    from scipy import sparse
    from scipy.sparse.linalg import splu

    h, w = image.shape[-2:]
    hole = ~k
    n = int(hole.sum())
    x = image.detach().cpu().double().numpy()
    index = np.full((h, w), -1, dtype=np.int64)
    index[hole] = np.arange(n)
    ys, xs = np.nonzero(hole)
    degree = np.zeros(n)
    rhs = np.zeros((n, x.shape[0]))
    rows, cols = [], []
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        ny, nx = ys + dy, xs + dx
        p = np.nonzero((ny >= 0) & (ny < h) & (nx >= 0) & (nx < w))[0]
        degree[p] += 1
        qy, qx = ny[p], nx[p]
        unknown = hole[qy, qx]
        rows.append(p[unknown])
        cols.append(index[qy[unknown], qx[unknown]])
        rhs[p[~unknown]] += x[:, qy[~unknown], qx[~unknown]].T  # each p once per direction
    rows_all = np.concatenate([np.arange(n), *rows])
    cols_all = np.concatenate([np.arange(n), *cols])
    values = np.concatenate([degree, -np.ones(len(rows_all) - n)])
    A = sparse.csc_matrix((values, (rows_all, cols_all)), shape=(n, n))
    # A is symmetric: an ordering of A + A^T keeps the LU of a large hole sparse.
    solution = splu(A, permc_spec="MMD_AT_PLUS_A").solve(rhs)
    filled = x.copy()
    filled[:, ys, xs] = solution.T
    return filled


def biharmonic_fill(image: torch.Tensor, known) -> torch.Tensor:
    """scikit-image's biharmonic inpainting, per channel."""
    from skimage.restoration import inpaint_biharmonic

    def solve(image: torch.Tensor, k: np.ndarray) -> np.ndarray:
        x = image.detach().cpu().double().numpy().transpose(1, 2, 0)
        return inpaint_biharmonic(x, ~k, channel_axis=-1).transpose(2, 0, 1)

    return _fill(image, known, solve)


def _opencv_fill(image: torch.Tensor, known, flag_name: str) -> torch.Tensor:
    import cv2

    def solve(image: torch.Tensor, k: np.ndarray) -> np.ndarray:
        x = image.detach().cpu().float().clamp(-1, 1).add(1).mul(127.5).round().byte()
        src = np.ascontiguousarray(x.permute(1, 2, 0).numpy())
        out = cv2.inpaint(src, (~k).astype(np.uint8) * 255, CV_RADIUS, getattr(cv2, flag_name))
        return out.transpose(2, 0, 1).astype(np.float64) / 127.5 - 1

    return _fill(image, known, solve)


def telea_fill(image: torch.Tensor, known) -> torch.Tensor:
    """OpenCV's fast-marching inpainting (Telea 2004), on the 8-bit image."""
    return _opencv_fill(image, known, "INPAINT_TELEA")


def navier_stokes_fill(image: torch.Tensor, known) -> torch.Tensor:
    """OpenCV's Navier-Stokes inpainting (Bertalmio et al. 2001), on the 8-bit image."""
    return _opencv_fill(image, known, "INPAINT_NS")


FILLS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mean": mean_fill,
    "harmonic": harmonic_fill,
    "biharmonic": biharmonic_fill,
    "telea": telea_fill,
    "navier_stokes": navier_stokes_fill,
}


def fill_function(method: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if method not in FILLS:
        raise ValueError(f"unknown classical fill {method!r}; choose one of {sorted(FILLS)}")
    return FILLS[method]


def fill_batch(method: str, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """`method` on every image (N, 3, H, W) of a batch with its mask (N, 1, H, W), 1 = known."""
    fill = fill_function(method)
    return torch.stack([fill(x, m) for x, m in zip(images, masks, strict=True)])


def nearest_neighbour(
    queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query (N, ...), the value (M, ...) of the key (M, ...) closest to it in L2:
    (values (N, ...), their indices (N,)). Retrieval as a translation baseline: the training
    target whose condition is closest to the input."""
    if keys.shape[0] == 0:
        raise ValueError("nearest_neighbour needs at least one key (no training pairs)")
    q = queries.flatten(1).float()
    d = torch.cdist(q, keys.flatten(1).float().to(q.device))
    nearest = d.argmin(1)
    return values[nearest.to(values.device)], nearest
