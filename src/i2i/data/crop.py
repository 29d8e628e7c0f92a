"""Crop geometry, planned apart from the pixels: :func:`plan_crop` decides the cover-resize and the
crop window from an image's size alone, and :func:`apply_crop` applies that plan to a PIL image
or a tensor with any interpolation, so that paired data (a photo and its label or edge map)
share one geometry with different filters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

from i2i.data.image_options import (
    FOLDER_SMALL_IMAGES,
    RESAMPLES,
    RESIZES,
    check_option,
)
from i2i.errors import DataError
from i2i.resolution import parse_resolution

# The project's one resolution parser (for networks and data alike).
check_resolution = parse_resolution


class CropPlan(NamedTuple):
    """Resize the whole image to `resized` (H, W), then crop (top, left, height, width)."""

    resized: tuple[int, int]
    top: int
    left: int
    height: int
    width: int


def plan_crop(
    size: tuple[int, int],
    resolution: int | Sequence[int],
    random_crop: bool,
    small_images: str = "error",
    source: str | Path = "image",
    resize: str = "cover",
    multiple_of: int | None = None,  # sides: None = powers of two; else multiples of this
) -> CropPlan:
    """Plan the resize and crop of an image of `size` (H, W) to `resolution`.

    resize="cover" resizes the image so that it just covers the resolution; "none" keeps its
    size. An image smaller than the resolution raises ValueError with small_images="error", is
    cover-resized with "upscale", or with "pad" keeps its size and the plan's top/left are
    negative along the short sides: the crop reaches outside the image, centred as in TF's
    ``resize_with_crop_or_pad``, and a PIL crop fills the outside with black.
    `random_crop` draws the offset from the global torch RNG; otherwise the crop is centred.

    Args:
        size: the image's (H, W).
        resolution: the output size: an int (square) or (H, W).
        random_crop: draw the offset at random; False: centre it.
        small_images: "error", "upscale" or "pad" (see above).
        source: the image, named in errors.
        resize: "cover" or "none" (see above).
        multiple_of: the resolution's sides must be multiples of this; None: powers of two.

    Returns:
        The plan for `apply_crop`.

    Raises:
        DataError: an image under the resolution with small_images="error", or an unknown
            small_images or resize.
    """
    th, tw = check_resolution(resolution, multiple_of)
    h, w = size
    check_option("small_images", small_images, FOLDER_SMALL_IMAGES)
    check_option("resize", resize, RESIZES)
    small = h < th or w < tw
    if small and small_images == "error":
        raise DataError(
            f"Image {source} is {h}x{w} (HxW), smaller than the resolution {th}x{tw}. Use a lower "
            f"resolution (this image fits {_floor_pow2(min(h, w))}) or set "
            "images.small_images='upscale' to enlarge small images (they will look blurry)."
        )
    if (resize == "none" and not small) or (small and small_images == "pad"):
        top = _offset(h, th, random_crop)
        left = _offset(w, tw, random_crop)
        return CropPlan((h, w), top, left, th, tw)
    scale = max(th / h, tw / w)
    # ceil with a guard against float error so both sides always cover the target
    rh, rw = max(th, math.ceil(h * scale - 1e-6)), max(tw, math.ceil(w * scale - 1e-6))
    if random_crop:
        top = int(torch.randint(rh - th + 1, ()).item())
        left = int(torch.randint(rw - tw + 1, ()).item())
    else:
        top, left = (rh - th) // 2, (rw - tw) // 2
    return CropPlan((rh, rw), top, left, th, tw)


def _offset(have: int, want: int, random_crop: bool) -> int:
    if have < want:  # pad: centred, the extra pixel of an odd difference at the end (as TF)
        return -((want - have) // 2)
    if random_crop:
        return int(torch.randint(have - want + 1, ()).item())
    return (have - want) // 2


def _floor_pow2(v: int) -> int:
    return 1 << (max(v, 4).bit_length() - 1)


def apply_crop(
    img: Image.Image | torch.Tensor,
    plan: CropPlan,
    interpolation: InterpolationMode = InterpolationMode.BICUBIC,
    resample: str = "bicubic_antialias",
) -> Image.Image | torch.Tensor:
    """Apply a CropPlan. A crop reaching outside a PIL image fills it with black.

    Args:
        img: a PIL image, or a tensor (..., H, W).
        plan: from `plan_crop`.
        interpolation: the resize filter; NEAREST for label maps (no antialiasing then).
        resample: "bicubic_antialias" follows `interpolation`; "pil_bilinear" resizes a PIL
            image with PIL's bilinear filter instead (the official dataset tool's choice).

    Returns:
        The same type as `img`, of the plan's (height, width).

    Raises:
        DataError: an unknown resample.
    """
    check_option("resample", resample, RESAMPLES)
    size = TF.get_size(img)  # [H, W] for PIL images and tensors alike
    if tuple(size) != plan.resized:
        if resample == "pil_bilinear" and isinstance(img, Image.Image):
            img = img.resize((plan.resized[1], plan.resized[0]), Image.Resampling.BILINEAR)
        else:
            antialias = interpolation != InterpolationMode.NEAREST
            img = TF.resize(
                img, list(plan.resized), interpolation=interpolation, antialias=antialias
            )
    if isinstance(img, Image.Image):  # PIL fills outside the image with 0: black for RGB
        t, left = plan.top, plan.left
        return img.crop((left, t, left + plan.width, t + plan.height))
    return TF.crop(img, plan.top, plan.left, plan.height, plan.width)
