"""Image I/O and the folder-of-images dataset.

Geometry follows the image options (`i2i.data.image_options`, where each is described):
cover-resize or not, a crop at the centre (validation, or `train_crop="center"`) or at random,
PIL's bicubic or the official tool's bilinear filter, and an image under the resolution refused,
upscaled or, for `ImageFolderDataset`, padded with black (-1 in [-1, 1]; TF pads uint8
images with 0) around its centre, as TF's ``resize_with_crop_or_pad``.
The crop is planned separately from the pixels and applied with torchvision's v2 functional calls
(`i2i.data.crop`), so that paired data (a photo and its label map) can share one geometry
with different interpolations.

Randomness (crop offsets, flips) comes from torch's CPU generator, which the training stream
seeds per sample (`i2i.data.stream`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from i2i.data import batch
from i2i.data.crop import _floor_pow2, apply_crop, check_resolution, plan_crop, to_unit_range
from i2i.data.folders import (
    list_images,
)
from i2i.data.image_options import (
    ImageOptions,
)
from i2i.data.scan import Findings, header_size, parallel_map
from i2i.errors import CorruptImageError, DataError

log = logging.getLogger(__name__)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Check an argument against its allowed values.

    Args:
        name: the argument's name, for the message.
        value: its value.
        choices: the allowed values.

    Raises:
        DataError: (a ValueError) the value is not one of the choices; the message names the
            argument and its allowed values.
    """
    if value not in choices:
        raise DataError(f"{name} must be one of {choices}, got {value!r}")


# --------------------------------------------------------------------------------------------
# Decoding


def read_from_disk(path: Path) -> BinaryIO:
    """A sample's file, opened as the datasets open it unless told otherwise: from the disk.

    Args:
        path: the file; the caller closes what is returned.
    """
    return open(path, "rb")  # the caller closes it


class FileDataset(Dataset):
    """A dataset whose samples are files: `open_file` opens one by path. Streaming shards set
    it on their datasets to open a record's bytes instead (`i2i.data.shards`), so every
    dataset decodes shard records with its own code."""

    open_file: Callable[[Path], BinaryIO] = staticmethod(read_from_disk)


def load_image(
    path: str | Path,
    draft_size: tuple[int, int] | None = None,
    open_file: Callable[[Path], BinaryIO] = read_from_disk,  # path -> its bytes, to be closed
) -> Image.Image:
    """Decode `path` into an RGB PIL image (grayscale, palette, CMYK converted; alpha dropped).

    EXIF orientation is applied so phone photos are upright.

    Args:
        path: the image file.
        draft_size: (H, W) lets JPEG decode at a reduced scale that still covers that size (a
            large speed-up for big photos); None decodes at full size.
        open_file: path -> its bytes as a file object, closed here (shards open a record).

    Raises:
        CorruptImageError: the file cannot be decoded.
        FileNotFoundError: no file at path.
        PIL.Image.DecompressionBombError: an image over PIL's pixel limit.
    """
    path = Path(path)
    try:
        with open_file(path) as file, Image.open(file) as img:
            if draft_size is not None and img.format == "JPEG":
                # Square request: EXIF rotation may swap the sides after decoding. JPEG draft
                # never goes below the requested size, so the small-image check stays exact.
                side = max(draft_size)
                img.draft(None, (side, side))
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except Image.DecompressionBombError:
        raise  # a huge but valid image is not corrupt; PIL's message explains the limit
    except FileNotFoundError:
        raise
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, EOFError... on bad data
        raise CorruptImageError(
            f"Cannot decode image {path} ({type(e).__name__}: {e}). Delete or replace this file, "
            "or set images.on_corrupt='skip' to skip unreadable files with a warning."
        ) from e


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode.startswith("I"):
        # 16-bit grayscale (PNG "I;16" / "I"): PIL's convert would clip it to white; rescale.
        arr = np.asarray(img, dtype=np.int64)
        if arr.max(initial=0) > 255:
            arr = arr >> 8
        img = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    return img.convert("RGB")


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32 tensor (3, H, W) in [-1, 1].

    Args:
        img: an RGB PIL image (uint8 channels).
    """
    return to_unit_range(TF.pil_to_tensor(img))


# --------------------------------------------------------------------------------------------
# Dataset


class ImageFolderDataset(FileDataset):
    """Images from a folder (any depth) as {"image": (3, H, W) in [-1, 1], "index": int}.

    Args:
        root: the folder of images; listed recursively unless `files` is given.
        resolution: the output size: an int (square) or (H, W), powers of two unless
            `resolution_multiple`.
        files: an explicit file list (e.g. one half of `split_files`); None lists `root`.
        train: random crop and optional flip; False: centre crop, deterministic.
        images: resize, crop, filter, flips (in training only) and what small or unreadable
            files do (`ImageOptions`; a dataset refuses an option it cannot honour).
        resolution_multiple: the sides must be multiples of this; None: powers of two.

    Raises:
        DataError: an unknown choice, or an empty file list.
        FileNotFoundError: `root` holds no image (when `files` is None).
    """

    def __init__(
        self,
        root: str | Path,  # folder of images; listed recursively unless `files` is given
        resolution: int | Sequence[int],  # output size: int or (H, W), powers of two
        files: list[Path] | None = None,  # explicit file list (e.g. one half of split_files)
        train: bool = True,  # random crop + optional flip; False: centre crop, deterministic
        images: ImageOptions = ImageOptions(),  # resize, crop, filter, flips, bad files
        resolution_multiple: int | None = None,  # sides: None = powers of two; else multiples
    ) -> None:
        self.root = Path(root)
        self.resolution_multiple = resolution_multiple
        self.resolution = check_resolution(resolution, resolution_multiple)
        self.files = [Path(f) for f in files] if files is not None else list_images(self.root)
        if not self.files:
            raise DataError(f"ImageFolderDataset over {self.root}: the file list is empty")
        self.train = train
        # Plain attributes: a shard folder's datasets.json stores them, and reads them back.
        self.train_crop, self.resize, self.resample = (
            images.train_crop,
            images.resize,
            images.resample,
        )
        self.hflip, self.on_corrupt, self.small_images = (
            images.hflip,
            images.on_corrupt,
            images.small_images,
        )
        self._bad: set[int] = set()  # per worker process; avoids re-decoding known-bad files

    def __len__(self) -> int:
        return len(self.files)

    def load(self, i: int) -> torch.Tensor:
        """Decode, crop and (maybe) flip one file.

        Args:
            i: the file's index in `files`.

        Returns:
            (3, H, W) in [-1, 1].

        Raises:
            CorruptImageError: the file cannot be decoded.
        """
        path = self.files[i]
        # JPEG draft decodes at a reduced scale: only where we resize anyway and the filter is
        # ours; pil_bilinear reproduces the official tool, which resized the full decode.
        draft = self.resize == "cover" and self.resample == "bicubic_antialias"
        img = load_image(path, self.resolution if draft else None, self.open_file)
        random_crop = self.train and self.train_crop == "random"
        plan = plan_crop(
            (img.height, img.width),
            self.resolution,
            random_crop,
            self.small_images,
            path,
            self.resize,
            self.resolution_multiple,
        )
        flip = self.train and self.hflip and torch.rand(()).item() < 0.5
        return apply_crop(plan, flip, img, resample=self.resample)[0]

    def __getitem__(self, i: int) -> dict[str, Any]:
        j, image = load_skipping_corrupt(
            i,
            len(self.files),
            self.load,
            self._bad,
            self.on_corrupt,
            describe=lambda k: str(self.files[k]),
            item="image",
            where=str(self.root),
        )
        return {batch.IMAGE: image, batch.INDEX: j}

    def scan(self, findings: Findings, indices: Sequence[int] | None = None) -> None:
        """Check every file's header at setup: unreadable ones are dropped (on_corrupt="skip",
        with a warning) or reported, images under the resolution are reported.

        Args:
            findings: where problems are collected, to be raised together.
            indices: unused: every file is checked.
        """
        sizes = scan_headers(self.files, self.on_corrupt, findings, str(self.root))
        self.files = [f for f in self.files if f in sizes]
        for path, size in sizes.items():
            note_small(findings, path, size, self.resolution, self.small_images)


def scan_headers(
    files: Sequence[Path],
    on_corrupt: str,
    findings: Findings,
    where: str,
    exif: bool = True,
    item: str = "image",
) -> dict[Path, tuple[int, int]]:
    """The sizes of files from their headers, without decoding them.

    A file whose header cannot be read is left out with a warning (on_corrupt="skip"), or
    reported in `findings` ("raise"); a missing file is always reported.

    Args:
        files: the image files.
        on_corrupt: "skip" or "raise".
        findings: where problems are collected.
        where: the dataset's folder, named in the error.
        exif: the sizes after EXIF rotation (as the images are loaded).
        item: what a file is ("image", "mask"), named in messages.

    Returns:
        {file: (H, W)} for each readable file.

    Raises:
        CorruptImageError: every file is unreadable (with on_corrupt="skip").
    """
    sizes: dict[Path, tuple[int, int]] = {}
    results = parallel_map(lambda f: header_size(f, exif), list(files), f"{item} headers")
    for path, size in zip(files, results, strict=True):
        if not isinstance(size, Exception):
            sizes[Path(path)] = size
            continue
        if isinstance(size, FileNotFoundError):
            findings.add("missing", "file(s) missing", "Fix: check the paths.", path)
        elif on_corrupt == "raise":
            findings.add(
                "corrupt",
                f"{item}(s) whose header cannot be read",
                "Fix: delete or replace these files, or set images: {on_corrupt: skip} to leave "
                "them out.",
                path,
                f"{type(size).__name__}: {size}",
            )
        else:
            msg = f"Skipping corrupt {item} {path}: cannot read its header ({size})"
            warnings.warn(msg, stacklevel=3)
            log.warning(msg)
    if files and not sizes and on_corrupt == "skip":
        raise CorruptImageError(
            f"All {len(files)} {item}s of {where} failed to decode; delete or replace the "
            "corrupt files."
        )
    return sizes


def note_small(
    findings: Findings,
    path: str | Path,
    size: tuple[int, int],
    resolution: tuple[int, int],
    small_images: str,
    item: str = "image",
) -> None:
    """Report `path` when it is smaller than `resolution` and small_images is "error".

    Args:
        findings: where the report goes; its `extra["small_fit"]` keeps the largest power of
            two that every small image fits.
        path: the file.
        size: its (H, W).
        resolution: the target (H, W).
        small_images: the dataset's setting; only "error" reports.
        item: what the file is, named in the report.
    """
    (h, w), (th, tw) = size, resolution
    if small_images != "error" or (h >= th and w >= tw):
        return
    fit = min(findings.extra.get("small_fit", 1 << 30), _floor_pow2(min(h, w)))
    findings.extra["small_fit"] = fit
    findings.add(
        "small",
        f"{item}(s) smaller than the resolution {th}x{tw} (HxW)",
        f"Fix: set images: {{small_images: upscale}} (they are enlarged and look blurry), a "
        f"lower resolution (all of them fit {fit}), or remove these files.",
        path,
        f"{h}x{w}",
    )


def load_skipping_corrupt(
    i: int,
    n: int,
    load: Callable[[int], Any],
    bad: set[int],
    on_corrupt: str,
    describe: Callable[[int], str],
    item: str = "image",
    where: str = "the dataset",
) -> tuple[int, Any]:
    """(j, load(j)) for the item at i. On a corrupt file (CorruptImageError) with
    on_corrupt="skip", warn once naming it (it is remembered in `bad`, per worker process) and
    walk forward, wrapping, to the next decodable item: j names the item actually returned, so
    fixed validation masks follow the image. With on_corrupt="raise", the error propagates.

    Args:
        i: the index asked for, in [-n, n).
        n: the dataset's length.
        load: index -> the item; raises CorruptImageError for a bad file.
        bad: indices known to be corrupt; changed in place.
        on_corrupt: "skip" or "raise".
        describe: index -> the file's name, for the warning.
        item: what an item is, for messages.
        where: the dataset, for the error when all fail.

    Raises:
        IndexError: i out of range.
        CorruptImageError: with "raise", the first bad file; with "skip", when every item fails.
    """
    if not -n <= i < n:
        raise IndexError(f"index {i} out of range for a dataset of {n} {item}s")
    i %= n
    for j in (k % n for k in range(i, i + n)):
        if j in bad:
            continue
        try:
            return j, load(j)
        except CorruptImageError as e:
            if on_corrupt == "raise":
                raise
            bad.add(j)
            msg = f"Skipping corrupt {item} {describe(j)}: {e}"
            warnings.warn(msg, stacklevel=3)
            log.warning(msg)
    raise CorruptImageError(
        f"All {n} {item}s of {where} failed to decode; delete or replace the corrupt files."
    )
