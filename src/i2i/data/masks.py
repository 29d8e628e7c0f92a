"""Inpainting masks: the CoModGAN/MAT free-form generator and loaders for mask files.

Convention used everywhere in ``i2i``: a mask is a float32 tensor of shape ``(1, H, W)``
holding exactly 0 or 1, where **1 marks a KNOWN pixel and 0 marks the HOLE** to be filled.
The hole ratio of a mask is therefore ``1 - mask.mean()``.

Mask files on disk disagree about polarity (NVIDIA irregular masks, DeepFill v2, FcF and
AOT-GAN paint the hole white; MAT, MI-GAN and the CoModGAN demo paint the known region
white), so :func:`load_mask` and :class:`MaskFolder` make the caller state it explicitly.

Mask files are turned upright by their EXIF orientation, exactly as images are
(`i2i.data.datasets.load_image`), so a mask saved with its photo's orientation tag lines up.

A mask with transparency whose colour is the same everywhere and whose alpha varies (a cut-out
painted in an editor) is read from its alpha channel: alpha is taken as the grey level, so
opaque (255) is "white" and transparent (0) is "black", and the stated polarity applies to it
as to any grey mask (white_is_known: transparent = hole; white_is_hole: opaque = hole).

The masks are drawn by :mod:`i2i.data.mask_drawing`; the polarities and the published mask
sets, with the check of a folder's hole ratios against them, are in :mod:`i2i.data.mask_sets`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from i2i.data.folders import walk_files
from i2i.data.mask_drawing import (
    _check_hole_range,
    _check_variant,
    random_mask,
    rectangle_mask,
    rectangle_sides,
)
from i2i.data.mask_sets import (
    POLARITIES,
    _check_polarity,
)
from i2i.errors import DataError
from i2i.resolution import as_hw

__all__ = [
    "MASK_EXTENSIONS",
    "MaskFolder",
    "RandomMaskGenerator",
    "RectangleMaskGenerator",
    "load_known",
    "load_mask",
    "mask_hole_ratio",
]

MASK_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class RandomMaskGenerator:
    """Picklable callable holding the settings of :func:`random_mask` (for DataLoaders):
    `generator(rng)` draws a (1, H, W) mask, 1 = known.

    Args:
        size: (H, W), or one int for a square.
        hole_range: (lo, hi) with 0 <= lo < hi <= 1: the hole ratio is strictly inside.
        variant: "large" (the official masks) or "small" (MAT's lighter variant).

    Raises:
        DataError: a bad hole_range or variant (checked here, not inside a worker).
    """

    def __init__(
        self,
        size: int | tuple[int, int],
        hole_range: tuple[float, float] = (0.0, 1.0),
        variant: str = "large",
    ) -> None:
        # Validate eagerly so a bad config fails at construction, not inside a worker.
        self.size = as_hw(size)
        self.hole_range = _check_hole_range(hole_range)
        _check_variant(variant)
        self.variant = variant

    def __call__(self, rng: np.random.Generator | None = None) -> torch.Tensor:
        return random_mask(self.size, self.hole_range, rng, self.variant)

    def sample(self, seed: int) -> torch.Tensor:
        """Deterministic mask for ``seed`` (e.g. the validation image index).

        Args:
            seed: seeds a fresh generator.

        Returns:
            float32 (1, H, W) in {0, 1}, 1 = known.
        """
        return self(np.random.default_rng(seed))

    def __repr__(self) -> str:
        return (
            f"RandomMaskGenerator(size={self.size}, hole_range={self.hole_range}, "
            f"variant={self.variant!r})"
        )


class RectangleMaskGenerator:
    """Picklable callable holding the settings of :func:`rectangle_mask` (for DataLoaders):
    `generator(rng)` draws a (1, H, W) mask, 1 = known.

    Args:
        size: (H, W), or one int for a square.
        sides: hole sides (lo, hi) in pixels at `sides_at` (GLCIC: 46-92).
        sides_at: the resolution `sides` are given at; scaled to `size`.

    Raises:
        DataError: sides or sides_at out of range (checked here).
    """

    def __init__(
        self,
        size: int | tuple[int, int],
        sides: tuple[int, int] = (46, 92),  # hole sides in pixels at `sides_at` (GLCIC)
        sides_at: int = 160,  # the resolution `sides` are given at; scaled to `size`
    ) -> None:
        self.size = as_hw(size)
        self.sides, self.sides_at = (int(sides[0]), int(sides[1])), int(sides_at)
        rectangle_sides(self.size, self.sides, self.sides_at)  # fail at construction

    def __call__(self, rng: np.random.Generator | None = None) -> torch.Tensor:
        return rectangle_mask(self.size, rng, self.sides, self.sides_at)

    def sample(self, seed: int) -> torch.Tensor:
        """Deterministic mask for ``seed`` (e.g. the validation image index).

        Args:
            seed: seeds a fresh generator.

        Returns:
            float32 (1, H, W) in {0, 1}, 1 = known.
        """
        return self(np.random.default_rng(seed))

    def __repr__(self) -> str:
        return (
            f"RectangleMaskGenerator(size={self.size}, sides={self.sides}, "
            f"sides_at={self.sides_at})"
        )


def mask_hole_ratio(mask: torch.Tensor | np.ndarray) -> float:
    """Fraction of hole pixels (0 = fully known, 1 = all hole) of a mask.

    Args:
        mask: a tensor or array of any shape, 1 = known, 0 = hole.
    """
    return 1.0 - float(mask.float().mean() if torch.is_tensor(mask) else np.mean(mask))


def rotation_hint(mask_hw: tuple[int, int], image_hw: tuple[int, int]) -> str:
    """A sentence when two sizes differ only by a quarter turn, else ''.

    Args:
        mask_hw: the mask's (H, W).
        image_hw: the image's (H, W).
    """
    if tuple(mask_hw) != tuple(image_hw) and tuple(mask_hw) == tuple(image_hw)[::-1]:
        return (
            " The sides are swapped: the likely cause is an EXIF orientation tag on one file and "
            "not the other (i2i turns images and masks upright by it, as viewers do); save the "
            "mask upright as the photo is shown, without the tag."
        )
    return ""


def load_known(
    path: str | Path,
    size: int | tuple[int, int] | None = None,
    *,
    polarity: str,
    resize: bool = True,
    max_hole_ratio: float | None = None,
) -> np.ndarray:
    """:func:`load_mask` as an (H, W) bool array, True = known (1 byte a pixel).

    Args:
        path: the mask file.
        size: (H, W) the mask must have; None: the file's own size.
        polarity: "white_is_hole" or "white_is_known".
        resize: resize a file of another size with NEAREST; False: refuse it.
        max_hole_ratio: refuse a mask with a larger hole ratio (an inverted polarity?); None:
            no limit.

    Raises:
        FileNotFoundError: no file at path.
        DataError: an unknown polarity, an unreadable file, another size without `resize`, or
            a hole over max_hole_ratio.
    """
    _check_polarity(polarity)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask file not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            gray = _grey(ImageOps.exif_transpose(img))  # upright, as load_image turns images
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise DataError(f"cannot read mask file {path}: {err}") from err
    if size is not None:
        h, w = as_hw(size)
        if gray.size != (w, h):
            if not resize:
                raise DataError(
                    f"mask {path} is {gray.height}x{gray.width} (HxW) but {h}x{w} was "
                    "expected; resize the file, or pass resize=True to resize it with NEAREST."
                    + rotation_hint((gray.height, gray.width), (h, w))
                )
            gray = gray.resize((w, h), Image.Resampling.NEAREST)
    white = np.asarray(gray) > 127
    known = white if polarity == "white_is_known" else ~white
    if max_hole_ratio is not None:
        hole = 1.0 - np.count_nonzero(known) / max(known.size, 1)
        if hole > max_hole_ratio:
            other = POLARITIES[1 - POLARITIES.index(polarity)]
            raise DataError(
                f"mask {path} has hole ratio {hole:.3f} > max_hole_ratio={max_hole_ratio} "
                f"with polarity={polarity!r}; the polarity is probably inverted, "
                f"try polarity={other!r}"
            )
    return known


def load_mask(
    path: str | Path,
    size: int | tuple[int, int] | None = None,
    *,
    polarity: str,
    resize: bool = True,
    max_hole_ratio: float | None = None,
) -> torch.Tensor:
    """Load a mask file as a float32 ``(1, H, W)`` tensor with 1 = known, 0 = hole.

    The file's EXIF orientation is applied first, as to images. Any PIL mode (L, RGB, RGBA, ...)
    is converted to grayscale and thresholded at 127
    (values > 127 are "white"), which also cleans up JPEG artefacts; a file of one colour with
    a varying alpha channel is read from its alpha (opaque = white, see the module doc).
    ``polarity`` must be given: ``"white_is_hole"`` (NVIDIA irregular, DeepFill, FcF, AOT-GAN) or
    ``"white_is_known"`` (MAT, MI-GAN, CoModGAN demo). If ``size`` differs from the file,
    the mask is resized with NEAREST (keeps it binary) or, with ``resize=False``, rejected.
    ``max_hole_ratio`` guards against an inverted polarity.

    Args:
        path: the mask file.
        size: (H, W) the mask must have; None: the file's own size.
        polarity: "white_is_hole" or "white_is_known".
        resize: resize a file of another size with NEAREST; False: refuse it.
        max_hole_ratio: refuse a mask with a larger hole ratio; None: no limit.

    Raises:
        FileNotFoundError: no file at path.
        DataError: see `load_known`.
    """
    known = load_known(path, size, polarity=polarity, resize=resize, max_hole_ratio=max_hole_ratio)
    return torch.from_numpy(known.astype(np.float32))[None]


def _grey(img: Image.Image) -> Image.Image:
    """The grey level of a mask file: its alpha channel when only alpha varies (see the module
    doc), else PIL's grey conversion."""
    if "A" in img.getbands() or (img.mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"))
        colour, alpha = rgba[..., :3], rgba[..., 3]
        if alpha.min() != alpha.max() and (colour == colour[:1, :1]).all():
            return Image.fromarray(np.ascontiguousarray(alpha), "L")
    return img.convert("L")


class MaskFolder:
    """Mask files found recursively under ``root`` (sorted), loaded with :func:`load_mask`:
    `folder[i]` is file i's mask, float32 (1, H, W), 1 = known.

    Args:
        root: the folder of mask files.
        polarity: "white_is_hole" or "white_is_known".
        size: (H, W) the masks are loaded at; None: each file's own size.
        resize: resize files of another size with NEAREST; False: refuse them.
        max_hole_ratio: refuse a mask with a larger hole ratio; None: no limit.

    Raises:
        DataError: an unknown polarity.
        FileNotFoundError: no mask file under root.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        polarity: str,
        size: int | tuple[int, int] | None = None,
        resize: bool = True,
        max_hole_ratio: float | None = None,
    ) -> None:
        _check_polarity(polarity)
        self.root = Path(root)
        self.polarity = polarity
        self.size = size
        self.resize = resize
        self.max_hole_ratio = max_hole_ratio
        self.files = walk_files(self.root, MASK_EXTENSIONS) if self.root.is_dir() else []
        if not self.files:
            raise FileNotFoundError(
                f"no mask files found under {self.root} (missing or empty folder); place "
                f"mask images ({', '.join(MASK_EXTENSIONS)}) there, with {polarity!r} polarity"
            )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        return load_mask(
            self.files[index],
            self.size,
            polarity=self.polarity,
            resize=self.resize,
            max_hole_ratio=self.max_hole_ratio,
        )
