"""Condition maps for the paired datasets: edge and condition images to tensors in the batch's
conventions, the ink check that catches an inverted polarity or a photo taken as the condition
(and its sibling for label-map conditions, which are flatter than photos), and Canny edges
computed from photos with their on-disk cache (see `i2i.data.paired` for the thresholds
and why the maps are computed before the crop).
"""

from __future__ import annotations

import hashlib
import logging
import math
import warnings
from pathlib import Path

import kornia
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from i2i.data import batch
from i2i.data.batch import EDGES_CHANNELS
from i2i.data.datasets import (
    check_choice,
    image_to_tensor,
)
from i2i.errors import DataError
from i2i.io import atomic_write

log = logging.getLogger(__name__)

EDGE_POLARITIES = ("black_on_white", "white_on_black")
# An edge map is sparse lines: pix2pix edges are 1-6 % ink, Canny at 0.1/0.2 about 5-10 %.
MAX_EDGE_INK = 0.5  # above: almost surely inverted polarity (or a photo as the condition)
WARN_EDGE_INK = 0.15  # above: dense for an edge map; the condition may be the photo half


def edges_to_tensor(img: Image.Image, polarity: str = "black_on_white") -> torch.Tensor:
    """An edge image (any mode) -> (1, H, W) float32 in [-1, 1], +1 on the lines.

    Args:
        img: the edge image, read as grey.
        polarity: "black_on_white" (pix2pix) or "white_on_black": how the lines are drawn.

    Raises:
        DataError: an unknown polarity.
    """
    check_choice("edge_polarity", polarity, EDGE_POLARITIES)
    grey = np.asarray(img.convert("L"), dtype=np.float32)
    # grey / 127.5 - 1 maps white to +1; black_on_white lines must become +1, hence the sign.
    sign = -1.0 if polarity == "black_on_white" else 1.0
    return torch.from_numpy(sign * (grey * (1.0 / 127.5) - 1.0))[None]


def condition_to_tensor(
    img: Image.Image, polarity: str = "black_on_white", channels: int = 1
) -> torch.Tensor:
    """The condition image -> "edges": (1, H, W) via `edges_to_tensor` (+1 on the lines),
    or with channels=3 the RGB image as it is, (3, H, W) in [-1, 1].

    Args:
        img: the condition image.
        polarity: the lines' drawing, for channels=1 (see `edges_to_tensor`).
        channels: 1 or 3.

    Raises:
        DataError: another channel count, or an unknown polarity.
    """
    if channels not in EDGES_CHANNELS:
        raise DataError(f"edges_channels must be one of {EDGES_CHANNELS}, got {channels!r}")
    if channels == 3:
        return image_to_tensor(img.convert("RGB"))
    return edges_to_tensor(img, polarity)


def edge_ink(edges: torch.Tensor, polarity: str = "white_on_black") -> float:
    """The share of 'ink' of an edge map in [-1, 1], unchanged by resizing: the mean of its
    lines mapped to [0, 1].

    Args:
        edges: (1, H, W) from the datasets, white on black (+1 = line); or (3, H, W), a
            condition as in its file.
        polarity: how a 3-channel condition is drawn ("black_on_white" inverts the mean).

    Returns:
        The share in [0, 1].
    """
    grey = edges.mean(0) if edges.shape[0] == 3 else edges
    ink = grey.add(1.0).mul(0.5).mean()
    if edges.shape[0] == 3 and polarity == "black_on_white":
        ink = 1.0 - ink
    return float(ink)


def check_edge_maps(dataset: Dataset, num: int = 8, hint: str = "") -> None:
    """Sanity-check the condition maps of the first `num` samples of `dataset`.

    Average ink > 50 % raises ValueError (inverted polarity, or a photo taken as the condition);
    > 15 % warns (dense for an edge map: check the direction).

    Args:
        dataset: a dataset whose samples have "edges" (and optionally an `edge_polarity`).
        num: how many samples to check.
        hint: added to the message (which dataset, which folder).

    Raises:
        DataError: (a ValueError) more than half of the maps is ink.
    """
    n = min(num, len(dataset))
    if n == 0:
        return
    drawn = getattr(dataset, "edge_polarity", "black_on_white")
    ink = float(np.mean([edge_ink(dataset[i][batch.EDGES], drawn) for i in range(n)]))
    where = f" ({hint})" if hint else ""
    if ink > MAX_EDGE_INK:
        raise DataError(
            f"The edge maps of the first {n} samples{where} are {ink:.0%} edge on average, but "
            "edge maps are sparse lines: the polarity is probably inverted. If your edges are "
            "white lines on black set edge_polarity='white_on_black' (black lines on white, as "
            "in pix2pix, is 'black_on_white'); also check direction (AtoB = left/A is the edges)."
        )
    if ink > WARN_EDGE_INK:
        msg = (
            f"The edge maps of the first {n} samples{where} are {ink:.0%} edge on average, dense "
            "for an edge map (pix2pix edges: 1-6 %): the condition may be the photo half. Check "
            "direction (AtoB = left/A is the edges, as in edges2shoes)."
        )
        warnings.warn(msg, stacklevel=2)
        log.warning(msg)


def canny_edges(
    photo: torch.Tensor, low_threshold: float = 0.1, high_threshold: float = 0.2, sigma: float = 1.0
) -> torch.Tensor:
    """(3, H, W) photo in [-1, 1] -> (1, H, W) edges in {-1, +1} via kornia's Canny.

    Args:
        photo: (3, H, W) in [-1, 1].
        low_threshold: the hysteresis' low threshold, on kornia's magnitude of [0, 1]
            grayscale (see the module docstring).
        high_threshold: its high threshold, >= low_threshold.
        sigma: the Gaussian blur's sigma; <= 0 skips the blur.

    Returns:
        (1, H, W) in {-1, +1}, +1 on the edges.

    Raises:
        DataError: thresholds outside 0 < low <= high.
    """
    if not 0 < low_threshold <= high_threshold:
        raise DataError(
            f"Canny thresholds need 0 < low <= high, got low={low_threshold}, high={high_threshold}"
        )
    kernel = 2 * math.ceil(2 * sigma) + 1 if sigma > 0 else 1
    s = sigma if sigma > 0 else 1.0  # ignored by kornia when the kernel is 1
    x = photo.add(1.0).mul_(0.5).clamp_(0.0, 1.0)[None]
    _, edges = kornia.filters.canny(x, low_threshold, high_threshold, kernel, (s, s))
    return edges[0].mul_(2.0).sub_(1.0)


class EdgeCache:
    """Computed edge maps on disk, one PNG (0 / 255) per (file, settings) key.

    Args:
        cache_dir: the cache's folder (created when the first map is saved).
    """

    def __init__(self, cache_dir: str | Path) -> None:
        self.dir = Path(cache_dir)

    @staticmethod
    def key(path: Path, settings: str) -> str:
        """The cache key of a file's edges: a hash of its path, modification time, size, the
        settings and kornia's version, so a changed file or setting misses the cache.

        Args:
            path: the photo.
            settings: the edges' settings in words (thresholds, size).
        """
        st = path.stat()
        raw = (
            f"{path.resolve()}|{st.st_mtime_ns}|{st.st_size}|{settings}|kornia {kornia.__version__}"
        )
        return hashlib.sha256(raw.encode()).hexdigest()[:40]

    def path(self, key: str) -> Path:
        """The PNG of a key, in a sub-folder named by its first two characters.

        Args:
            key: from `key`.
        """
        return self.dir / key[:2] / f"{key}.png"  # sub-folders: no folder of 100k files

    def load(self, key: str) -> torch.Tensor | None:
        """The cached edges (1, H, W) in {-1, +1}, or None when missing or unreadable.

        Args:
            key: from `key`.
        """
        file = self.path(key)
        if not file.exists():
            return None
        try:
            with Image.open(file) as img:
                arr = np.asarray(img.convert("L"))
        except OSError:
            return None  # unreadable (e.g. disk trouble): recompute and rewrite
        return torch.from_numpy(np.where(arr > 127, 1.0, -1.0).astype(np.float32))[None]

    def save(self, key: str, edges: torch.Tensor) -> None:
        """Write edges atomically (loader workers may write the same key at once).

        Args:
            key: from `key`.
            edges: (1, H, W); values > 0 are stored as edge.
        """
        file = self.path(key)
        file.parent.mkdir(parents=True, exist_ok=True)
        arr = np.where(edges[0].numpy() > 0, 255, 0).astype(np.uint8)
        # Loader workers may compute the same file concurrently: a reader must never see a
        # half-written PNG.
        atomic_write(file, lambda tmp: Image.fromarray(arr).save(tmp, format="PNG"))


def _flat_share(x: torch.Tensor, tol: float = 0.1) -> float:
    """The share of pixels of a (C, H, W) image in [-1, 1] whose summed absolute difference to
    the right and lower neighbours is below `tol`: near 1 for flat label maps, lower for photos."""
    dx = (x[:, :-1, 1:] - x[:, :-1, :-1]).abs().sum(0)
    dy = (x[:, 1:, :-1] - x[:, :-1, :-1]).abs().sum(0)
    return float(((dx + dy) < tol).float().mean())


def check_label_images(dataset: Dataset, num: int = 8, hint: str = "") -> None:
    """Stop when the condition ("edges") of the first `num` samples is on average less flat than
    the photo: label maps are flat regions, so the halves are probably swapped (`direction`).
    On pix2pix facades the label half is ~60 % flat and the photo ~30 %.

    Args:
        dataset: a dataset of {"image", "edges"} samples, the label map as "edges".
        num: how many samples to check.
        hint: added to the message (which folder, which direction).

    Raises:
        DataError: the condition is less flat than the photo.
    """
    n = min(num, len(dataset))
    if n == 0:
        return
    samples = [dataset[i] for i in range(n)]
    cond = float(np.mean([_flat_share(s[batch.EDGES]) for s in samples]))
    photo = float(np.mean([_flat_share(s[batch.IMAGE]) for s in samples]))
    if cond < photo:
        where = f" ({hint})" if hint else ""
        raise DataError(
            f"The condition of the first {n} samples{where} is flat in {cond:.0%} of its pixels "
            f"and the photo in {photo:.0%}: label maps are flat regions, so the condition is "
            "probably the photo half. pix2pix's facades and cityscapes archives are BtoA (photo "
            "left, label map right); set direction, or check_labels: false for unusual data."
        )
