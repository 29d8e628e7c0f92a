"""How the paired datasets pair and transform their files: an A|B side-by-side file split into
(condition, photo) halves, two folders matched by name without extension (in any of the split
layouts that `i2i.data.translation.PairedDataModule` reads), and one crop plan and
one flip applied to both halves so that condition and target stay pixel-aligned.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode

from i2i.data.crop import apply_crop, plan_crop
from i2i.data.datasets import check_choice
from i2i.data.folders import find_split_folders, list_images, split_files
from i2i.errors import DataError

DIRECTIONS = ("AtoB", "BtoA")


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
    # Draw once, apply to both: independent draws would mirror only one half of the pair.
    flip = train and hflip and torch.rand(()).item() < 0.5
    edges = tv_tensors.Image(edges)
    bilinear = InterpolationMode.BILINEAR
    image, e = apply_crop(plan, flip, photo, edges, resample=resample, interpolation=bilinear)
    return image, e.clamp_(-1.0, 1.0)


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


def _two_folder_pairs(
    root: Path, cond: str, photo: str, val_fraction: float, seed: int, max_val: int | None
) -> tuple[tuple[Path, Path, list], tuple[Path, Path, list]]:
    """((cond_dir, photo_dir, pairs) for train, the same for val) from one of three layouts."""
    cdir, pdir = root / cond, root / photo
    csplit, psplit = find_split_folders(cdir), find_split_folders(pdir)
    if csplit and psplit:  # root/A/train, root/A/val, root/B/train, root/B/val (pix2pix)
        parts = [(c, p, match_pairs(c, p)) for c, p in zip(csplit, psplit, strict=True)]
    elif (split := find_split_folders(root)) and all(
        (s / d).is_dir() for s in split for d in (cond, photo)
    ):  # root/train/A, root/train/B, root/val/A, root/val/B
        parts = [(s / cond, s / photo, match_pairs(s / cond, s / photo)) for s in split]
    elif cdir.is_dir() and pdir.is_dir():  # root/A, root/B: split the pairs by seed
        pairs = dict(match_pairs(cdir, pdir))
        train, val = split_files(
            list(pairs),
            val_fraction,
            seed,
            cdir,
            "pair",
            f"{cdir}/{{train,val}}/ and {pdir}/{{train,val}}/ folders",
        )
        parts = [(cdir, pdir, [(c, pairs[c]) for c in part]) for part in (train, val)]
    else:
        raise FileNotFoundError(
            f"layout='two_folders' found no condition folder {cond!r} and photo folder {photo!r} "
            f"under {root}. Accepted layouts: {root}/{cond}/ + {root}/{photo}/ (split by "
            f"val_fraction), {root}/{cond}/{{train,val}}/ + {root}/{photo}/{{train,val}}/, or "
            f"{root}/{{train,val}}/{cond}/ + .../{photo}/. Set a_subdir / b_subdir to your names."
        )
    (tc, tp, tpairs), (vc, vp, vpairs) = parts
    return (tc, tp, tpairs), (vc, vp, vpairs[:max_val] if max_val is not None else vpairs)
