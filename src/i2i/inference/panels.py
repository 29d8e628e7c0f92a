"""Pictures of a model's work: an image with its hole tinted, images side by side, and a
translation input in colour (the commands' `--panel`, the prediction writer and the web demo).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.utils import make_grid

from i2i.inference.model import InferenceModel
from i2i.inference.run import resize_tensor
from i2i.tasks.translation import default_palette

HOLE_TINT = (0.2, 0.6, 1.0)  # the hole's colour in panels, as the sample grids show it


def overlay(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """The image with its hole tinted, as the sample grids show masks.

    Args:
        image: (H, W, 3) uint8; not changed.
        known: (H, W) bool, True = known.

    Returns:
        A new (H, W, 3) uint8 image.
    """
    tint = np.array(HOLE_TINT) * 255
    out = image.copy()
    out[~known] = np.round(tint).astype(np.uint8)
    return out


def panel_image(images: Sequence[np.ndarray]) -> np.ndarray:
    """Images side by side (torchvision's grid, quantised as its save_image does).

    Args:
        images: (H, W, 3) uint8 each; those of another size than the first are resized to it.

    Returns:
        (H + 4, n (W + 2) + 2, 3) uint8, white between the tiles.
    """
    h, w = images[0].shape[:2]
    tiles = []
    for image in images:
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255  # a writable copy
        tiles.append(resize_tensor(x, (h, w), InterpolationMode.BICUBIC).clamp(0, 1))
    grid = make_grid(tiles, nrow=len(tiles), padding=2, pad_value=1.0)
    return grid.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def condition_rgb(model: InferenceModel, condition: np.ndarray) -> np.ndarray:
    """A translation input as a picture: label maps in the task's colours.

    Args:
        model: the model it is for (a labels model gives the palette).
        condition: a label map (H, W) of class ids, or an edge map or photo (H, W) or
            (H, W, 3) uint8.

    Returns:
        (H, W, 3) uint8.
    """
    condition = np.asarray(condition)
    if model.kind == "labels" and condition.ndim == 2:
        palette = getattr(model.task, "palette", None)
        if palette is None:
            palette = default_palette(model.num_classes or int(condition.max()) + 1)
        colours = palette.float().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)
        return colours.numpy()[condition.clip(0, len(colours) - 1)]
    if condition.ndim == 2:
        return np.repeat(condition[..., None], 3, axis=2).astype(np.uint8)
    return condition.astype(np.uint8)
