"""Joint geometry, planned apart from the pixels: `plan_crop` decides the cover-resize and
the crop window from an image's size alone, and `apply_crop` applies that plan and one flip
decision to a photo and its maps with torchvision's v2 functional calls, which pick each item's
kernel by its type (a `tv_tensors.Mask` is never interpolated), so that paired data (a photo and
its label, instance or edge map) share one geometry with different filters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torchvision import tv_tensors
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
    ``resize_with_crop_or_pad``, and `apply_crop` fills the outside with black.
    `random_crop` draws the offsets from torch's CPU generator (which the training stream seeds
    per sample); otherwise the crop is centred.

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
        return crop_window((h, w), (th, tw), random_crop)
    scale = max(th / h, tw / w)
    # ceil with a guard against float error so both sides always cover the target
    rh, rw = max(th, math.ceil(h * scale - 1e-6)), max(tw, math.ceil(w * scale - 1e-6))
    return crop_window((rh, rw), (th, tw), random_crop)


def crop_window(resized: tuple[int, int], size: tuple[int, int], random_crop: bool) -> CropPlan:
    """Resize to `resized` (H, W), then crop `size` (H, W): see `plan_crop` for the offsets.

    Args:
        resized: the size after the resize.
        size: the crop's size.
        random_crop: draw the offsets (top, then left); False: centre them.
    """
    (rh, rw), (th, tw) = resized, size
    return CropPlan(resized, _offset(rh, th, random_crop), _offset(rw, tw, random_crop), th, tw)


def _offset(have: int, want: int, random_crop: bool) -> int:
    if have < want:  # pad: centred, the extra pixel of an odd difference at the end (as TF)
        return -((want - have) // 2)
    if random_crop:
        return int(torch.randint(have - want + 1, ()).item())
    return (have - want) // 2


def _floor_pow2(v: int) -> int:
    return 1 << (max(v, 4).bit_length() - 1)


def apply_crop(
    plan: CropPlan,
    flip: bool,
    *items: Image.Image | tv_tensors.Image | tv_tensors.Mask,
    resample: str = "bicubic_antialias",
    interpolation: InterpolationMode = InterpolationMode.BICUBIC,
) -> list[torch.Tensor]:
    """Resize every item to the plan's size, crop the plan's window (0, black, outside the
    image) and mirror them all when `flip`, with v2's functional calls, so they stay aligned.

    Args:
        plan: from `plan_crop`.
        flip: mirror left-right (decided once by the caller, for all items).
        *items: RGB PIL photos, float `tv_tensors.Image`s (C, H, W), integer
            `tv_tensors.Mask`s (H, W) of label or instance ids.
        resample: a PIL photo's filter: "bicubic_antialias" (PIL's bicubic) or "pil_bilinear"
            (the official dataset tool's choice).
        interpolation: a tensor image's filter (antialiased).

    Returns:
        Plain tensors of the plan's (height, width), in the items' order: a photo as float32
        (3, H, W) in [-1, 1], an image as float, a mask as int64.

    Raises:
        DataError: an unknown resample.
    """
    check_option("resample", resample, RESAMPLES)
    out = []
    for x in items:
        photo = isinstance(x, Image.Image)
        if photo:  # PIL's own filters on uint8, as the official dataset tools resize: a tensor
            # resize of a tv_tensors.Image differs from PIL's by a level or two on some pixels.
            bilinear = resample == "pil_bilinear"
            mode = InterpolationMode.BILINEAR if bilinear else InterpolationMode.BICUBIC
            x = TF.to_image(TF.resize(x, list(plan.resized), interpolation=mode))
        elif isinstance(x, tv_tensors.Mask):
            x = tv_tensors.Mask(_resize_ids(x.numpy(), plan.resized))
        elif tuple(x.shape[-2:]) != plan.resized:
            x = TF.resize(x, list(plan.resized), interpolation=interpolation, antialias=True)
        x = TF.crop(x, plan.top, plan.left, plan.height, plan.width)
        x = (TF.horizontal_flip(x) if flip else x).as_subclass(torch.Tensor)
        out.append(to_unit_range(x) if photo else x.contiguous())
    return out


def _resize_ids(ids: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    # PIL's NEAREST samples pixel centres, aligned with the photo's filter; v2's resize of a
    # Mask (torch "nearest") picks top-left samples, and "nearest_exact" rounds differently
    # from PIL at some pixels. PIL mode "I" (int32) holds every id (Cityscapes: up to 33999).
    if ids.shape != size:
        img = Image.fromarray(ids.astype(np.int32))
        ids = np.asarray(TF.resize(img, list(size), interpolation=InterpolationMode.NEAREST))
    return torch.from_numpy(ids.astype(np.int64))


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> a new float32 tensor in [-1, 1].

    Args:
        x: uint8 (..., H, W).
    """
    return x.to(torch.float32).div_(127.5).sub_(1.0)
