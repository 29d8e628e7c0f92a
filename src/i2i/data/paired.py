"""Paired edges -> photo datasets: {"image", "edges", "index"} with ONE geometry for both.

Three sources:

- `SideBySideDataset`: pix2pix files, A|B side by side (width = 2 x height).
  ``direction="AtoB"`` (default) takes the LEFT half (A) as the condition (edges) and the right
  half (B) as the photo; ``"BtoA"`` swaps them. edges2shoes / edges2handbags are AtoB.
- `TwoFolderDataset`: a condition folder and a photo folder, files matched by name.
- `CannyEdgesDataset`: any photo folder; edges computed with ``kornia.filters.canny``.

Conventions (the batch contract): with ``edges_channels=1`` (the default) "edges" is
(1, H, W) float32 in [-1, 1] with +1 on the edge lines (white on black). pix2pix edge images are
black lines on white paper, so they are INVERTED (``edge_polarity="black_on_white"``, the
default); maps that already are white lines on black use ``edge_polarity="white_on_black"``.
Colour edge files are converted to grey first. With ``edges_channels=3`` "edges" is the
condition image as it is in the file, RGB (3, H, W) in [-1, 1], NOT inverted: the official
CoModGAN condition (for pix2pix files: black lines, -1, on white paper, +1); edge_polarity then
only tells the sanity check which way the file is drawn.

Geometry: the crop is planned once on the photo (`plan_crop`) and applied to both halves
with one flip draw (`apply_crop`), so condition and target stay pixel-aligned. Randomness
comes from the global torch RNG, which the training stream seeds per sample. Edge maps are
resized with BILINEAR + antialias and kept as float: a downscaled 1-px line becomes a fainter
but unbroken stroke, whereas NEAREST would drop or break it (aliasing); the generator takes a
float condition, so grey values are fine. At 256 the pix2pix halves are not resized at all.

Canny edges are computed on the photo after its cover-resize and BEFORE the crop (so they do not
depend on the random crop and can be cached), on [0, 1] grayscale with kornia's defaults
low_threshold=0.1, high_threshold=0.2 and a Gaussian blur of sigma=1 (kernel 2*ceil(2*sigma)+1;
sigma=0 disables it). kornia's thresholds apply to the unnormalised Sobel magnitude (a unit step
is about 2.6 after the blur), so 0.1 / 0.2 keep fairly faint edges too (~5-10 % of the pixels of
a typical photo). Canny is slow on CPU (up to seconds per 256 px image for its hysteresis), so
``cache_dir`` stores each computed map as a PNG keyed by the file's path, mtime and size, the
resize and the Canny settings (and kornia's version): changing any of them recomputes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torchvision import tv_tensors

from i2i.data import batch
from i2i.data.batch import EDGES_CHANNELS
from i2i.data.crop import CropPlan, apply_crop, check_resolution, plan_crop
from i2i.data.datasets import (
    FileDataset,
    check_choice,
    load_image,
    load_skipping_corrupt,
    note_small,
    scan_headers,
)
from i2i.data.edge_maps import (
    EDGE_POLARITIES,
    EdgeCache,
    canny_edges,
    condition_to_tensor,
)
from i2i.data.folders import list_images
from i2i.data.image_options import RESAMPLES, SMALL_IMAGES, ImageOptions, check_option
from i2i.data.pairing import (
    DIRECTIONS,
    match_pairs,
    split_side_by_side,
    transform_pair,
)
from i2i.data.scan import Findings
from i2i.errors import DataError

# Two files of a pair may differ in size (e.g. edges stored at half size) but not in shape.
_ASPECT_TOLERANCE = 0.02


# --------------------------------------------------------------------------------------------
# Datasets


class _PairedDataset(FileDataset):
    RESAMPLES = RESAMPLES  # the photo's resize filters this dataset implements

    """Shared resolution, flip and corrupt-file handling; subclasses implement `load`.
    `images`: hflip, on_corrupt, small_images ("error" | "upscale") and the photo's resample
    filter are read; pairs are always cover-resized and crop at random in training."""

    def __init__(
        self,
        resolution: int | Sequence[int],
        train: bool,
        images: ImageOptions,
        edge_polarity: str = "black_on_white",
        edges_channels: int = 1,
    ) -> None:
        check_option("small_images", images.small_images, SMALL_IMAGES)
        check_option("resample", images.resample, self.RESAMPLES)
        check_choice("edge_polarity", edge_polarity, EDGE_POLARITIES)
        if edges_channels not in EDGES_CHANNELS:
            raise DataError(
                f"edges_channels must be one of {EDGES_CHANNELS}, got {edges_channels!r}"
            )
        self.resolution = check_resolution(resolution)
        # Plain attributes: a shard folder's datasets.json stores them, and reads them back.
        self.train, self.hflip = train, images.hflip
        self.on_corrupt, self.small_images = images.on_corrupt, images.small_images
        self.edge_polarity, self.edges_channels = edge_polarity, edges_channels
        self.resample = images.resample
        self._draft = self.resample == "bicubic_antialias"  # reduced JPEG decode: our filter only
        self._bad: set[int] = set()  # per worker process

    def __len__(self) -> int:
        raise NotImplementedError

    def read(self, i: int) -> tuple[Image.Image, Image.Image, Path]:
        """(condition, photo, the photo's file) of sample i, decoded but not yet transformed."""
        raise NotImplementedError

    def load(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(image (3, H, W), edges (1, H, W)) of sample i; CorruptImageError on a bad file."""
        condition, photo, path = self.read(i)
        edges = condition_to_tensor(condition, self.edge_polarity, self.edges_channels)
        return transform_pair(
            photo,
            edges,
            self.resolution,
            self.train,
            self.hflip,
            self.small_images,
            path,
            self.resample,
        )

    def describe(self, i: int) -> str:
        raise NotImplementedError

    def __getitem__(self, i: int) -> dict[str, Any]:
        j, (image, edges) = load_skipping_corrupt(
            i,
            len(self),
            self.load,
            self._bad,
            self.on_corrupt,
            self.describe,
            item="pair",
            where=type(self).__name__,
        )
        return {batch.IMAGE: image, batch.EDGES: edges, batch.INDEX: j}


class SideBySideDataset(_PairedDataset):
    """pix2pix A|B files (W = 2H); `direction` says which half is the condition. Samples are
    {"image": (3, H, W) in [-1, 1], "edges": (C, H, W) in [-1, 1], "index": int}.

    Args:
        root: the folder of A|B images; listed recursively unless `files` is given.
        resolution: the output size: an int (square) or (H, W), powers of two.
        files: an explicit file list (e.g. one part of a split); None lists `root`.
        direction: "AtoB": left (A) = edges, right (B) = photo; "BtoA": swapped.
        train: random crop and optional flip; False: centre crop, deterministic.
        images: resize, crop, filter, flips (in training only) and what small or unreadable
            files do (`ImageOptions`; a dataset refuses an option it cannot honour).
        edge_polarity: "black_on_white" (pix2pix edges) or "white_on_black".
        edges_channels: 1: a grey edge map, +1 on the lines; 3: the RGB half as it is.

    Raises:
        DataError: an unknown choice, or an empty file list.
    """

    def __init__(
        self,
        root: str | Path,  # folder of A|B images; listed recursively unless `files` is given
        resolution: int | Sequence[int],  # output size: int or (H, W), powers of two
        files: list[Path] | None = None,  # explicit file list (e.g. one part of a split)
        direction: str = "AtoB",  # AtoB: left (A) = edges, right (B) = photo; BtoA: swapped
        train: bool = True,  # random crop + optional flip; False: centre crop, deterministic
        edge_polarity: str = "black_on_white",  # pix2pix edges: black lines on white
        edges_channels: int = 1,  # 1: grey edge map, +1 on lines; 3: the RGB half as it is
        images: ImageOptions = ImageOptions(),  # flips, bad files, small images, photo filter
    ) -> None:
        super().__init__(resolution, train, images, edge_polarity, edges_channels)
        check_choice("direction", direction, DIRECTIONS)
        self.root, self.direction = Path(root), direction
        self.files = [Path(f) for f in files] if files is not None else list_images(self.root)
        if not self.files:
            raise DataError(f"SideBySideDataset over {self.root}: the file list is empty")

    def __len__(self) -> int:
        return len(self.files)

    def describe(self, i: int) -> str:
        """Sample i's file, for warnings.

        Args:
            i: the sample's index.
        """
        return str(self.files[i])

    def read(self, i: int) -> tuple[Image.Image, Image.Image, Path]:
        """(condition, photo, the file) of sample i, decoded but not yet transformed.

        Args:
            i: the sample's index.

        Raises:
            CorruptImageError: the file cannot be decoded.
            DataError: a file that is not twice as wide as high.
        """
        path = self.files[i]
        h, w = self.resolution
        # Each half must still cover (h, w); no reduced JPEG decode where the official filter
        # (PIL bilinear on the full decode) is asked for.
        img = load_image(path, (h, 2 * w) if self._draft else None, self.open_file)
        return (*split_side_by_side(img, self.direction, path), path)

    def scan(self, findings: Findings, indices: Sequence[int] | None = None) -> None:
        """Every file's header at setup: A|B shape (width = 2 x height) and half size.

        Args:
            findings: where problems are collected, to be raised together.
            indices: unused: every file is checked.
        """
        sizes = scan_headers(self.files, self.on_corrupt, findings, str(self.root), item="pair")
        self.files = [f for f in self.files if f in sizes]
        for path, (h, w) in sizes.items():
            if w != 2 * h:
                findings.add(
                    "not_pair",
                    "file(s) that are not side-by-side pairs (width = 2 x height)",
                    "Fix: use layout='two_folders' for separate condition and photo files, or "
                    "remove these files.",
                    path,
                    f"{w}x{h} WxH",
                )
            else:
                note_small(findings, path, (h, h), self.resolution, self.small_images, "pair")


class TwoFolderDataset(_PairedDataset):
    """Condition (edge) images and photos in two folders, paired by `match_pairs`.
    Samples are {"image": (3, H, W) in [-1, 1], "edges": (C, H, W) in [-1, 1], "index": int}.

    Args:
        condition_dir: the edge maps.
        image_dir: the photos (targets).
        resolution: as for `SideBySideDataset`.
        pairs: explicit (condition, photo) pairs; None: `match_pairs` of the two folders.
        train: as for `SideBySideDataset`.
        images: resize, crop, filter, flips (in training only) and what small or unreadable
            files do (`ImageOptions`; a dataset refuses an option it cannot honour).
        edge_polarity: how the edge maps are drawn; "white_on_black" for white lines.
        edges_channels: 1 reads the edge file as grey (+1 on the lines); 3 keeps its RGB.

    Raises:
        DataError: an unknown choice, or an empty pair list.
    """

    def __init__(
        self,
        condition_dir: str | Path,  # the edge maps
        image_dir: str | Path,  # the photos (targets)
        resolution: int | Sequence[int],  # output size: int or (H, W), powers of two
        pairs: list[tuple[Path, Path]] | None = None,  # explicit (condition, photo) pairs
        train: bool = True,  # random crop + optional flip; False: centre crop, deterministic
        edge_polarity: str = "black_on_white",  # "white_on_black" for maps with white lines
        edges_channels: int = 1,  # 1: grey edge map, +1 on lines; 3: the RGB file as it is
        images: ImageOptions = ImageOptions(),  # flips, bad pairs, small images, photo filter
    ) -> None:
        super().__init__(resolution, train, images, edge_polarity, edges_channels)
        self.condition_dir, self.image_dir = Path(condition_dir), Path(image_dir)
        self.pairs = pairs if pairs is not None else match_pairs(condition_dir, image_dir)
        if not self.pairs:
            raise DataError(f"TwoFolderDataset over {self.image_dir}: the pair list is empty")

    def __len__(self) -> int:
        return len(self.pairs)

    def describe(self, i: int) -> str:
        """Sample i's two files, for warnings.

        Args:
            i: the sample's index.
        """
        return f"{self.pairs[i][0]} + {self.pairs[i][1]}"

    def read(self, i: int) -> tuple[Image.Image, Image.Image, Path]:
        """(condition, photo, the photo's file) of sample i, decoded but not yet transformed.

        Args:
            i: the sample's index.

        Raises:
            CorruptImageError: a file cannot be decoded.
            DataError: the two files differ in aspect ratio.
        """
        cpath, ipath = self.pairs[i]
        draft = self.resolution if self._draft else None
        photo = load_image(ipath, draft, self.open_file)
        condition = load_image(cpath, draft, self.open_file)
        a, b = photo.width / photo.height, condition.width / condition.height
        if abs(a / b - 1.0) > _ASPECT_TOLERANCE:
            raise DataError(
                f"{cpath} ({condition.width}x{condition.height}) and {ipath} "
                f"({photo.width}x{photo.height}) have different aspect ratios, so they cannot be "
                "aligned; fix or remove this pair."
            )
        return condition, photo, ipath

    def scan(self, findings: Findings, indices: Sequence[int] | None = None) -> None:
        """Every pair's headers at setup: photo size and matching aspect ratios.

        Args:
            findings: where problems are collected, to be raised together.
            indices: unused: every pair is checked.
        """
        where = str(self.image_dir)
        photos = scan_headers([p for _, p in self.pairs], self.on_corrupt, findings, where)
        conds = scan_headers([c for c, _ in self.pairs], self.on_corrupt, findings, where)
        self.pairs = [(c, p) for c, p in self.pairs if c in conds and p in photos]
        for cpath, ipath in self.pairs:
            (ph, pw), (ch, cw) = photos[ipath], conds[cpath]
            if abs((pw / ph) / (cw / ch) - 1.0) > _ASPECT_TOLERANCE:
                findings.add(
                    "aspect",
                    "pair(s) whose condition and photo differ in aspect ratio",
                    "Fix: the two files of a pair must show the same area; fix or remove them.",
                    f"{cpath} + {ipath}",
                    f"{cw}x{ch} vs {pw}x{ph} WxH",
                )
            note_small(findings, ipath, (ph, pw), self.resolution, self.small_images, "photo")


# --------------------------------------------------------------------------------------------
# Canny edges from photos


class CannyEdgesDataset(_PairedDataset):
    """Photos from a folder with Canny edge maps computed from them (optionally cached).
    Samples are {"image": (3, H, W) in [-1, 1], "edges": (1, H, W) in {-1, +1}, "index": int}.

    Args:
        root: the folder of photos; listed recursively unless `files` is given.
        resolution: the output size: an int (square) or (H, W), powers of two.
        files: an explicit file list (e.g. one part of a split); None lists `root`.
        train: random crop and optional flip; False: centre crop, deterministic.
        images: resize, crop, filter, flips (in training only) and what small or unreadable
            files do (`ImageOptions`; a dataset refuses an option it cannot honour).
        low_threshold: Canny's low hysteresis threshold (see `canny_edges`).
        high_threshold: its high threshold.
        sigma: the Gaussian blur before Canny; 0: none.
        cache_dir: where to keep computed edge maps; None: no cache.

    Raises:
        DataError: an unknown choice, bad thresholds, or an empty file list.
    """

    RESAMPLES = ("bicubic_antialias",)  # the edges are computed on the bicubic resize

    def __init__(
        self,
        root: str | Path,  # folder of photos; listed recursively unless `files` is given
        resolution: int | Sequence[int],  # output size: int or (H, W), powers of two
        files: list[Path] | None = None,  # explicit file list (e.g. one part of a split)
        train: bool = True,  # random crop + optional flip; False: centre crop, deterministic
        low_threshold: float = 0.1,  # Canny hysteresis thresholds (see the module docstring)
        high_threshold: float = 0.2,
        sigma: float = 1.0,  # Gaussian blur before Canny; 0 = none
        cache_dir: str | Path | None = None,  # where to keep computed edge maps; None = no cache
        images: ImageOptions = ImageOptions(),  # flips, bad files, small images (bicubic only)
    ) -> None:
        super().__init__(resolution, train, images)
        if not 0 < low_threshold <= high_threshold:
            raise DataError(
                f"Canny thresholds need 0 < low_threshold <= high_threshold, got "
                f"{low_threshold} and {high_threshold}"
            )
        self.root = Path(root)
        self.files = [Path(f) for f in files] if files is not None else list_images(self.root)
        if not self.files:
            raise DataError(f"CannyEdgesDataset over {self.root}: the file list is empty")
        self.low, self.high, self.sigma = float(low_threshold), float(high_threshold), float(sigma)
        self.cache = EdgeCache(cache_dir) if cache_dir is not None else None
        self.computed = 0  # Canny runs in this process (tests use it to see cache hits)

    def scan(self, findings: Findings, indices: Sequence[int] | None = None) -> None:
        """Every photo's header at setup: unreadable ones and photos under the resolution.

        Args:
            findings: where problems are collected, to be raised together.
            indices: unused: every photo is checked.
        """
        sizes = scan_headers(self.files, self.on_corrupt, findings, str(self.root), item="photo")
        self.files = [f for f in self.files if f in sizes]
        for path, size in sizes.items():
            note_small(findings, path, size, self.resolution, self.small_images, "photo")

    def __len__(self) -> int:
        return len(self.files)

    def describe(self, i: int) -> str:
        """Sample i's file, for warnings.

        Args:
            i: the sample's index.
        """
        return str(self.files[i])

    def edges_for(self, path: Path, photo: torch.Tensor) -> torch.Tensor:
        """Canny edges of a resized photo, from the cache if there.

        Args:
            path: the photo's file (the cache key).
            photo: (3, H, W) in [-1, 1], resized but not yet cropped.

        Returns:
            (1, H, W) in {-1, +1}.
        """
        h, w = photo.shape[-2:]
        settings = f"canny low={self.low} high={self.high} sigma={self.sigma} size={h}x{w}"
        key = self.cache.key(path, settings) if self.cache is not None else ""
        if self.cache is not None and (hit := self.cache.load(key)) is not None:
            if hit.shape[-2:] == (h, w):
                return hit
        edges = canny_edges(photo, self.low, self.high, self.sigma)
        self.computed += 1
        if self.cache is not None:
            self.cache.save(key, edges)
        return edges

    def load(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(image (3, H, W), edges (1, H, W)) of sample i: the edges are computed on the resized
        photo before the crop, then cropped and flipped with it.

        Args:
            i: the sample's index.

        Raises:
            CorruptImageError: the file cannot be decoded.
        """
        path = self.files[i]
        img = load_image(path, self.resolution, self.open_file)
        plan = plan_crop(
            (img.height, img.width), self.resolution, self.train, self.small_images, path
        )
        full = apply_crop(CropPlan(plan.resized, 0, 0, *plan.resized), False, img)[0]
        edges = self.edges_for(path, full)
        flip = self.train and self.hflip and torch.rand(()).item() < 0.5  # one draw for both
        image, edges = apply_crop(plan, flip, tv_tensors.Image(full), tv_tensors.Image(edges))
        return image, edges
