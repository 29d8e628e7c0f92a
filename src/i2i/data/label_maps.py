"""Label and instance maps as arrays: reading a map file into raw ids (refusing lossy formats,
decoding ADE20K's full-format RGB maps), the boundaries of instances, and the colours and class
names that show a map in a grid or a W&B overlay (`i2i.data.crop.apply_crop` resizes and
crops a map with its photo).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps

from i2i.data.datasets import read_from_disk
from i2i.data.label_specs import (
    LabelSpec,
)
from i2i.errors import CorruptImageError, DataError

LOSSY_EXTENSIONS = (".jpg", ".jpeg", ".webp")


def label_edges(label: np.ndarray) -> np.ndarray:
    """Boolean (H, W): True where any 4-neighbour (inside the image) has a different label.

    Args:
        label: (H, W) label or instance ids.
    """
    e = np.zeros(label.shape, dtype=bool)
    dy = label[1:, :] != label[:-1, :]
    dx = label[:, 1:] != label[:, :-1]
    e[1:, :] |= dy
    e[:-1, :] |= dy
    e[:, 1:] |= dx
    e[:, :-1] |= dx
    return e


def instance_edges(instance: np.ndarray) -> np.ndarray:
    """Boolean (H, W) boundary map of an instance map: True where any 4-neighbour inside the
    image has a different id (SPADE's instance-edge channel).

    Args:
        instance: (H, W) instance ids.

    Raises:
        ValueError: a map that is not 2-D.
    """
    instance = np.asarray(instance)
    if instance.ndim != 2:
        raise ValueError(f"instance map must be 2-D (H, W), got shape {instance.shape}")
    return label_edges(instance)


def decode_ade20k_full_seg(rgb: np.ndarray) -> np.ndarray:
    """Class indices (H, W) int64 of a FULL-format ADE20K ``*_seg.png`` (H, W, 3) uint8.

    The full format stores class = R // 10 * 256 + G (an index into the release's objects list,
    0 = unlabeled) and the instance in B. These are not the 150 SceneParsing classes.

    Args:
        rgb: (H, W, 3) uint8 (more channels are ignored).

    Raises:
        ValueError: an array that is not (H, W, 3).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"expected an (H, W, 3) RGB array of a _seg.png, got shape {rgb.shape}")
    r, g = rgb[..., 0].astype(np.int64), rgb[..., 1].astype(np.int64)
    return r // 10 * 256 + g


def read_label_map(
    path: str | Path, exif: bool = False, open_file: Callable[[Path], BinaryIO] = read_from_disk
) -> np.ndarray:
    """The raw integer values of a single-channel label / instance file (PNG modes L, P, I;16,
    I, 1; an RGB file is accepted only when its three channels are equal).

    Args:
        path: the file; lossy formats (JPEG, WebP) are refused.
        exif: turn it upright by its EXIF orientation as `load_image` turns images (the
            inference commands, where the label map is the input); False: as stored, as the
            datasets read their photos.
        open_file: path -> its bytes as a file object, closed here (shards open a record).

    Returns:
        (H, W) of the file's integer dtype (a 1-bit file as uint8).

    Raises:
        DataError: a lossy file, or a colour image.
        CorruptImageError: a file that cannot be decoded.
        FileNotFoundError: no file at path.
    """
    path = Path(path)
    if path.suffix.lower() in LOSSY_EXTENSIONS:
        raise DataError(
            f"Label map {path} is {path.suffix} (lossy): compression changes class ids at region "
            "borders. Use lossless single-channel PNGs of class ids."
        )
    try:
        with open_file(path) as file, Image.open(file) as img:
            img.load()
            mode = img.mode
            # A transpose moves pixels, never changes their values or the mode.
            # "P" keeps the palette INDICES, which are the class ids; never convert it to RGB.
            arr = np.asarray(ImageOps.exif_transpose(img) if exif else img)
    except FileNotFoundError:
        raise
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... on bad data
        raise CorruptImageError(
            f"Cannot decode label map {path} ({type(e).__name__}: {e}); replace this file"
        ) from e
    if arr.ndim == 3:
        if (
            arr.shape[2] >= 3
            and (arr[..., 0] == arr[..., 1]).all()
            and (arr[..., 0] == arr[..., 2]).all()
        ):
            return arr[..., 0]
        raise DataError(
            f"Label map {path} is a colour image (mode {mode}): labels must be single-channel "
            "class ids (for ADE20K full-format _seg.png use decode_ade20k_full_seg; for Cityscapes "
            "the *_gtFine_labelIds.png files, not *_color.png)"
        )
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    return arr


def colorize(label: torch.Tensor, palette: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Label maps of class ids -> colour images.

    Args:
        label: (N, H, W) or (H, W) integer class ids.
        palette: (num_classes, 3) uint8 colours.

    Returns:
        (N, 3, H, W) in [-1, 1] on the label's device ((H, W) gives N = 1).

    Raises:
        ValueError: labels that are not integer (N, H, W) or (H, W), or ids outside the palette.
    """
    if label.ndim == 2:
        label = label.unsqueeze(0)
    if label.ndim != 3 or label.dtype.is_floating_point:
        raise ValueError(
            f"colorize expects integer labels (N, H, W) or (H, W), got {label.dtype} "
            f"{tuple(label.shape)}"
        )
    colours = torch.as_tensor(np.asarray(palette), dtype=torch.float32, device=label.device)
    label = label.long()
    if label.numel() and (int(label.min()) < 0 or int(label.max()) >= len(colours)):
        raise ValueError(
            f"label values {int(label.min())}..{int(label.max())} do not fit a palette of "
            f"{len(colours)} colours"
        )
    return (colours[label] / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()


def wandb_class_labels(spec: LabelSpec) -> dict[int, str]:
    """{class id: name}, the `class_labels` of a W&B mask overlay.

    Args:
        spec: the label set.
    """
    return dict(enumerate(spec.class_names))
