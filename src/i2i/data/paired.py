"""Paired edges -> photo datasets: {"image", "edges", "index"} with ONE geometry for both.

Three sources:

- :class:`SideBySideDataset`: pix2pix files, A|B side by side (width = 2 x height).
  ``direction="AtoB"`` (default) takes the LEFT half (A) as the condition (edges) and the right
  half (B) as the photo; ``"BtoA"`` swaps them. edges2shoes / edges2handbags are AtoB.
- :class:`TwoFolderDataset`: a condition folder and a photo folder, files matched by name.
- :class:`CannyEdgesDataset`: any photo folder; edges computed with ``kornia.filters.canny``.

Conventions (the batch contract): with ``edges_channels=1`` (the default) "edges" is
(1, H, W) float32 in [-1, 1] with +1 on the edge lines (white on black). pix2pix edge images are
black lines on white paper, so they are INVERTED (``edge_polarity="black_on_white"``, the
default); maps that already are white lines on black use ``edge_polarity="white_on_black"``.
Colour edge files are converted to grey first. With ``edges_channels=3`` "edges" is the
condition image as it is in the file, RGB (3, H, W) in [-1, 1], NOT inverted: the official
CoModGAN condition (for pix2pix files: black lines, -1, on white paper, +1); edge_polarity then
only tells the sanity check which way the file is drawn.

Geometry: the crop is planned once on the photo (:func:`plan_crop`) and applied to both halves,
and one flip draw is applied to both, so condition and target stay pixel-aligned. Randomness
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

import hashlib
import logging
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import kornia
import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode

from i2i.data import batch
from i2i.data.batch import EDGES_CHANNELS
from i2i.data.datasets import (
    CropPlan,
    FileDataset,
    apply_crop,
    check_resolution,
    image_to_tensor,
    list_images,
    load_image,
    load_skipping_corrupt,
    note_small,
    plan_crop,
    scan_headers,
)
from i2i.data.image_options import RESAMPLES, SMALL_IMAGES, ImageOptions, check_option
from i2i.data.scan import Findings
from i2i.errors import DataError
from i2i.io import atomic_write

log = logging.getLogger(__name__)

DIRECTIONS = ("AtoB", "BtoA")
EDGE_POLARITIES = ("black_on_white", "white_on_black")
# Two files of a pair may differ in size (e.g. edges stored at half size) but not in shape.
_ASPECT_TOLERANCE = 0.02
# An edge map is sparse lines: pix2pix edges are 1-6 % ink, Canny at 0.1/0.2 about 5-10 %.
MAX_EDGE_INK = 0.5  # above: almost surely inverted polarity (or a photo as the condition)
WARN_EDGE_INK = 0.15  # above: dense for an edge map; the condition may be the photo half


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Check an argument against its allowed values.

    Args:
        name: the argument's name, for the message.
        value: its value.
        choices: the allowed values.

    Raises:
        DataError: (a ValueError) the value is not one of the choices.
    """
    if value not in choices:
        raise DataError(f"{name} must be one of {choices}, got {value!r}")


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
    """The condition image -> "edges": (1, H, W) via :func:`edges_to_tensor` (+1 on the lines),
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


def split_side_by_side(
    img: Image.Image, direction: str, source: str | Path = "image"
) -> tuple[Image.Image, Image.Image]:
    """(condition, photo) halves of an A|B file.

    Args:
        img: the pair, exactly twice as wide as high.
        direction: "AtoB": A (left) is the condition; "BtoA": B (right) is.
        source: the file, named in errors.

    Raises:
        DataError: an unknown direction, or an image that is not twice as wide as high.
    """
    check_choice("direction", direction, DIRECTIONS)
    w, h = img.size
    if w != 2 * h:
        raise DataError(
            f"{source} is {w}x{h} (WxH) but a side-by-side pair must be exactly twice as wide as "
            f"high (two square halves, e.g. 512x256). Use layout='two_folders' for separate "
            "condition and photo files, or remove this file."
        )
    left, right = img.crop((0, 0, h, h)), img.crop((h, 0, w, h))
    return (left, right) if direction == "AtoB" else (right, left)


def transform_pair(
    photo: Image.Image,
    edges: torch.Tensor,
    resolution: tuple[int, int],
    train: bool,
    hflip: bool,
    small_images: str = "error",
    source: str | Path = "image",
    resample: str = "bicubic_antialias",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop/resize `photo` (`resample`: bicubic or PIL bilinear) and `edges` (C, h, w)
    (bilinear, antialiased) with ONE plan and one flip.

    `edges` may have a different size than `photo` when its aspect ratio is the same: it is
    resized straight to the photo's planned size, so the pixels still line up.

    Args:
        photo: the RGB photo.
        edges: (C, h, w) in [-1, 1].
        resolution: the output (H, W).
        train: random crop and optional flip; False: centre crop.
        hflip: flip both at random (one draw), only when `train`.
        small_images: a photo under the resolution: "error" or "upscale".
        source: the photo's file, named in errors.
        resample: the photo's filter: "bicubic_antialias" or "pil_bilinear".

    Returns:
        (image (3, H, W) in [-1, 1], edges (C, H, W) in [-1, 1]).
    """
    plan = plan_crop((photo.height, photo.width), resolution, train, small_images, source)
    image = image_to_tensor(apply_crop(photo, plan, resample=resample))
    e = apply_crop(edges, plan, InterpolationMode.BILINEAR).clamp_(-1.0, 1.0)
    # Draw once, apply to both: independent draws would mirror only one half of the pair.
    if train and hflip and torch.rand(()).item() < 0.5:
        image, e = image.flip(-1), e.flip(-1)
    return image, e


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
        hflip: random horizontal flip of both halves, only when `train`.
        edge_polarity: "black_on_white" (pix2pix edges) or "white_on_black".
        on_corrupt: "skip" warns and uses another file; "raise" raises CorruptImageError.
        small_images: halves smaller than the resolution: "error" or "upscale".
        edges_channels: 1: a grey edge map, +1 on the lines; 3: the RGB half as it is.
        resample: the photo's resize filter: "bicubic_antialias" or "pil_bilinear".

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


def _pair_key(path: Path, root: Path) -> str:
    # Relative path without extension: "shoes/12.png" pairs with "shoes/12.jpg" only.
    return path.relative_to(root).with_suffix("").as_posix()


def _keyed(files: Sequence[Path], root: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for f in files:
        key = _pair_key(Path(f), root)
        if key in out:
            raise DataError(
                f"{out[key]} and {f} have the same name without extension, so the pairing is "
                "ambiguous; rename or remove one of them."
            )
        out[key] = Path(f)
    return out


def _name_some(paths: list[Path], limit: int = 10) -> str:
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(str(p) for p in paths[:limit]) + more


def match_pairs(
    condition_dir: str | Path,
    image_dir: str | Path,
    condition_files: Sequence[Path] | None = None,
    image_files: Sequence[Path] | None = None,
) -> list[tuple[Path, Path]]:
    """(condition, photo) pairs matched by path relative to their folder, without extension.

    Args:
        condition_dir: the condition (edge) images.
        image_dir: the photos.
        condition_files: the condition files; None lists `condition_dir` recursively.
        image_files: the photos; None lists `image_dir` recursively.

    Returns:
        (condition, photo) pairs, sorted by their name.

    Raises:
        DataError: (a ValueError) files without a partner (named on both sides), or two files
            of one name without extension.
    """
    cdir, idir = Path(condition_dir), Path(image_dir)
    cond = _keyed(condition_files if condition_files is not None else list_images(cdir), cdir)
    imgs = _keyed(image_files if image_files is not None else list_images(idir), idir)
    lonely_c = [cond[k] for k in sorted(cond.keys() - imgs.keys())]
    lonely_i = [imgs[k] for k in sorted(imgs.keys() - cond.keys())]
    if lonely_c or lonely_i:
        parts = []
        if lonely_c:
            parts.append(
                f"{len(lonely_c)} condition file(s) without a photo: {_name_some(lonely_c)}"
            )
        if lonely_i:
            parts.append(f"{len(lonely_i)} photo(s) without a condition: {_name_some(lonely_i)}")
        raise DataError(
            f"Unpaired files between {cdir} (conditions) and {idir} (photos); files are matched "
            f"by name without extension, relative to their folder. {'; '.join(parts)}. Add the "
            "missing partners or remove these files."
        )
    return [(cond[k], imgs[k]) for k in sorted(cond)]


class TwoFolderDataset(_PairedDataset):
    """Condition (edge) images and photos in two folders, paired by :func:`match_pairs`.
    Samples are {"image": (3, H, W) in [-1, 1], "edges": (C, H, W) in [-1, 1], "index": int}.

    Args:
        condition_dir: the edge maps.
        image_dir: the photos (targets).
        resolution: as for `SideBySideDataset`.
        pairs: explicit (condition, photo) pairs; None: `match_pairs` of the two folders.
        train: as for `SideBySideDataset`.
        hflip: flip the edge map and the photo together at random, in training only.
        edge_polarity: how the edge maps are drawn; "white_on_black" for white lines.
        on_corrupt: an unreadable pair is skipped with a warning ("skip") or raised ("raise").
        small_images: a photo under the resolution raises ("error") or is enlarged ("upscale").
        edges_channels: 1 reads the edge file as grey (+1 on the lines); 3 keeps its RGB.
        resample: as for `SideBySideDataset`.

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


class CannyEdgesDataset(_PairedDataset):
    """Photos from a folder with Canny edge maps computed from them (optionally cached).
    Samples are {"image": (3, H, W) in [-1, 1], "edges": (1, H, W) in {-1, +1}, "index": int}.

    Args:
        root: the folder of photos; listed recursively unless `files` is given.
        resolution: the output size: an int (square) or (H, W), powers of two.
        files: an explicit file list (e.g. one part of a split); None lists `root`.
        train: random crop and optional flip; False: centre crop, deterministic.
        hflip: random horizontal flip of both, only when `train`.
        low_threshold: Canny's low hysteresis threshold (see `canny_edges`).
        high_threshold: its high threshold.
        sigma: the Gaussian blur before Canny; 0: none.
        cache_dir: where to keep computed edge maps; None: no cache.
        on_corrupt: "skip" warns and uses another file; "raise" raises CorruptImageError.
        small_images: photos smaller than the resolution: "error" or "upscale".

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
        rh, rw = plan.resized
        full = image_to_tensor(apply_crop(img, CropPlan(plan.resized, 0, 0, rh, rw)))
        edges = self.edges_for(path, full)
        image = TF.crop(full, plan.top, plan.left, plan.height, plan.width)
        edges = TF.crop(edges, plan.top, plan.left, plan.height, plan.width)
        if self.train and self.hflip and torch.rand(()).item() < 0.5:  # one draw for both
            image, edges = image.flip(-1), edges.flip(-1)
        return image, edges
