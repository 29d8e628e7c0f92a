"""A model on images of any size: pure functions on numpy uint8 arrays (the commands, the
prediction writer and the web demo share them).

Inpainting: the model runs at its resolution R on a window of the image, and only the hole's
pixels of the window are replaced by its output, so every known pixel of the input is returned
unchanged, bit for bit.
- fit="crop" (default): a window of R's aspect around the holes' bounding box, with context: the
  box takes at most half of each side (`CONTEXT`); while that fits in R, the window is R itself
  (the model sees the image's own pixels, no resampling). A larger box gives a larger window,
  resized to R (antialiased bicubic), and the output is resized back (bicubic) into the hole. A
  window that would leave the image is shifted inside, and clipped to it when the image is
  smaller than the window (then resized to R, changing its aspect a little).
- fit="resize": the whole image is resized to R, the output resized back into the hole.
A hole much larger than R is filled at R's detail and upsampled: blurrier than the image around it.

Translation: the condition (edge map, label map, or a photo's Canny edges) is resized to R
(NEAREST for label maps, antialiased bilinear for edges, as the data side does), and the output
is resized back to the condition's size (bicubic), so that it lines up with the drawing or the
label regions (a non-square input is squeezed to R and restored).

Seeding: sample k of the input with index i is the task's own seeded sampling
(`InferenceModel.sample`, what `i2i predict` returns): z from derive_seed(seed, i, k), noise and
dropout from derive_seed(seed, first index of the batch, k). The same seed, indices and batch
size give the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

from i2i.data import batch as B
from i2i.data.datasets import image_to_tensor
from i2i.data.edge_maps import canny_edges, condition_to_tensor
from i2i.images import to_uint8
from i2i.inference.model import InferenceModel

FITS = ("crop", "resize")
CONTEXT = 2.0  # the window's side is at least this many times the holes' bounding box


@dataclass(frozen=True)
class Window:
    """The part of the image the model sees: rows top..top+height, columns left..left+width."""

    top: int
    left: int
    height: int
    width: int

    @property
    def slices(self) -> tuple[slice, slice]:
        """(rows, columns) of the window, to index an (H, W, ...) array with."""
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)


# ---- conversions ---------------------------------------------------------------------------


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [-1, 1], exactly as the datasets read files.

    Args:
        image: (H, W, 3) uint8.
    """
    return image_to_tensor(Image.fromarray(np.ascontiguousarray(image)))


def _check_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"the {what} must be an (H, W, 3) uint8 array, got {image.dtype} {image.shape}"
        )
    return image


def resize_tensor(x: torch.Tensor, size: tuple[int, int], mode: InterpolationMode) -> torch.Tensor:
    """`x` (..., H, W) resized to `size` with `mode`, antialiased; unchanged when it has that
    size.

    Args:
        x: a float tensor.
        size: (H, W).
        mode: torchvision's interpolation.
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return TF.resize(x, list(size), interpolation=mode, antialias=True)


# ---- inpainting ----------------------------------------------------------------------------


def plan_window(known: np.ndarray, resolution: tuple[int, int], fit: str = "crop") -> Window:
    """The window the model sees for a mask (see the module doc).

    Args:
        known: (H, W) bool, True = known.
        resolution: (H, W) the model runs at.
        fit: "crop" (a window around the holes) or "resize" (the whole image).

    Returns:
        The window; the whole image for "resize" or a mask without a hole.

    Raises:
        ValueError: an unknown fit.
    """
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    h, w = known.shape
    if fit == "resize":
        return Window(0, 0, h, w)
    # Per row and column, not np.nonzero: its indices take 16 bytes per hole pixel.
    hole_rows, hole_cols = ~known.all(axis=1), ~known.all(axis=0)
    if not hole_rows.any():
        return Window(0, 0, h, w)
    y0, y1 = int(hole_rows.argmax()), h - int(hole_rows[::-1].argmax())
    x0, x1 = int(hole_cols.argmax()), w - int(hole_cols[::-1].argmax())
    rh, rw = resolution
    scale = max(1.0, CONTEXT * (y1 - y0) / rh, CONTEXT * (x1 - x0) / rw)
    wh, ww = min(h, math.ceil(rh * scale)), min(w, math.ceil(rw * scale))
    top = min(max(int(round((y0 + y1 - wh) / 2)), 0), h - wh)
    left = min(max(int(round((x0 + x1 - ww) / 2)), 0), w - ww)
    return Window(top, left, wh, ww)


def _any_under(hole: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool -> `size` bool: True where any pixel under the cell is, over the cells of
    `F.interpolate(mode="area")` (adaptive pooling: rows floor(i H / h) to ceil((i + 1) H / h)),
    in bytes, not in a float copy of the window."""
    (h, w), (rh, rw) = hole.shape, size
    rows = np.stack([hole[i * h // rh : -(-(i + 1) * h // rh)].any(0) for i in range(rh)])
    return np.stack([rows[:, j * w // rw : -(-(j + 1) * w // rw)].any(1) for j in range(rw)], 1)


def inpainting_input(
    image: np.ndarray, known: np.ndarray, window: Window, resolution: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's inputs for the window, at the model's resolution. Resized, a model pixel is a
    hole when any image pixel under it is, and the hole is first filled with the mean known
    colour so that whatever the file holds there does not bleed into the context. A large window
    is resized one channel at a time: a 12000x9000 window in float is 1.3 GB.

    Args:
        image: (H, W, 3) uint8.
        known: (H, W) bool, True = known.
        window: the part of the image the model sees (`plan_window`).
        resolution: (h, w) the model runs at.

    Returns:
        (image (3, h, w) in [-1, 1], mask (1, h, w) with 1 = known, 0 = hole).
    """
    rows, cols = window.slices
    crop, hole = image[rows, cols], ~known[rows, cols]
    if (window.height, window.width) == tuple(resolution):
        return to_tensor(crop), torch.from_numpy(~hole)[None].float()
    hole_t, n_known = torch.from_numpy(hole), max(hole.size - np.count_nonzero(hole), 1)
    channels = []
    for c in range(3):
        sums = int(crop[..., c].sum(dtype=np.int64)) - int(crop[..., c][hole].sum(dtype=np.int64))
        x = torch.from_numpy(crop[..., c].astype(np.float32)).div_(127.5).sub_(1.0)  # to_tensor
        x.masked_fill_(hole_t, sums / n_known / 127.5 - 1.0)
        channels.append(resize_tensor(x[None], resolution, InterpolationMode.BICUBIC).clamp(-1, 1))
        del x  # before the next channel's copy
    small_hole = torch.from_numpy(_any_under(hole, tuple(resolution)))[None].float()
    return torch.cat(channels), 1 - small_hole


def paste(image: np.ndarray, known: np.ndarray, window: Window, output: torch.Tensor) -> np.ndarray:
    """The image with the window's hole pixels taken from the model's output resized to the
    window; every known pixel stays the input's byte. One channel at a time, as the input.

    Args:
        image: (H, W, 3) uint8; not changed.
        known: (H, W) bool, True = known.
        window: the part of the image the model saw.
        output: (3, h, w) in [-1, 1] at the model's resolution (values outside are clamped).

    Returns:
        A new (H, W, 3) uint8 image.
    """
    result = image.copy()
    rows, cols = window.slices
    hole = ~known[rows, cols]
    region = result[rows, cols]  # a view: writing it writes `result`
    for c in range(3):
        y = output[c : c + 1].detach().float().cpu()
        if tuple(y.shape[-2:]) != (window.height, window.width):
            size = (window.height, window.width)
            y = F.interpolate(y[None], size=size, mode="bicubic", align_corners=False)[0]
        else:
            y = y.clone()  # the in-place steps below must not change `output`
        # to_uint8, in place
        y = y.clamp_(-1, 1).add_(1).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)
        region[..., c][hole] = y[0].numpy()[hole]
    return result


def inpaint_batch(
    model: InferenceModel,
    items: Sequence[tuple[np.ndarray, np.ndarray, int]],
    *,
    seed: int = 0,
    num_samples: int = 1,
    truncation_psi: float = 1.0,
    fit: str = "crop",
) -> list[list[np.ndarray]]:
    """`inpaint_image` on several items in ONE batch of the model (a GPU's way).

    A classical fill (a task with `any_size`) fills each whole image at its own size instead.

    Args:
        model: an inpainting model from `load_model`.
        items: (image (H, W, 3) uint8, known (H, W) bool with True = known, dataset index)
            triples; the index seeds the item's latents.
        seed: the evaluation seed (see the module doc).
        num_samples: completions per item.
        truncation_psi: truncation toward the average w (1 = none).
        fit: "crop" or "resize" (see the module doc).

    Returns:
        Per item, `num_samples` completions (H, W, 3) uint8 at its size, known pixels unchanged.

    Raises:
        ValueError: an image that is not (H, W, 3) uint8, a mask of another size, an unknown fit.
    """
    if getattr(model.task, "any_size", False):  # a classical fill: the whole image, its size
        return [
            _fill_whole(model, image, np.asarray(known, bool), num_samples)
            for image, known, _ in items
        ]
    windows, xs, masks = [], [], []
    for image, known, _ in items:
        _check_image(image)
        known = np.asarray(known, dtype=bool)
        if known.shape != image.shape[:2]:
            raise ValueError(f"the mask is {known.shape} (H, W), the image {image.shape[:2]}")
        window = plan_window(known, model.resolution, fit)
        x, m = inpainting_input(image, known, window, model.resolution)
        windows.append(window)
        xs.append(x)
        masks.append(m)
    batch = {
        B.IMAGE: torch.stack(xs),
        B.MASK: torch.stack(masks),
        B.INDEX: torch.tensor([int(i) for _, _, i in items], dtype=torch.int64),
    }
    results: list[list[np.ndarray]] = [[] for _ in items]
    for k in range(num_samples):
        out = model.sample(batch, seed=seed, variant=k, truncation_psi=truncation_psi).cpu()
        for j, (image, known, _) in enumerate(items):
            results[j].append(paste(image, np.asarray(known, bool), windows[j], out[j]))
    return results


def _fill_whole(
    model: InferenceModel, image: np.ndarray, known: np.ndarray, num_samples: int
) -> list[np.ndarray]:
    _check_image(image)
    if known.shape != image.shape[:2]:
        raise ValueError(f"the mask is {known.shape} (H, W), the image {image.shape[:2]}")
    x, m = to_tensor(image)[None], torch.from_numpy(known)[None, None].float()
    out = model.task.sampling_network(x, m)[0]
    result = paste(image, known, Window(0, 0, *known.shape), out)
    return [result] * num_samples  # deterministic: every sample is the same


def inpaint_image(
    model: InferenceModel,
    image: np.ndarray,
    known: np.ndarray,
    *,
    seed: int = 0,
    num_samples: int = 1,
    truncation_psi: float = 1.0,
    fit: str = "crop",
    index: int = 0,
) -> list[np.ndarray]:
    """Completions of one image, each at the input's size with every known pixel unchanged.

    Args:
        model: an inpainting model from `load_model`.
        image: (H, W, 3) uint8.
        known: (H, W) bool, True = known, False = hole.
        seed: the evaluation seed (see the module doc).
        num_samples: how many completions.
        truncation_psi: truncation toward the average w (1 = none).
        fit: "crop" or "resize" (see the module doc).
        index: the image's dataset index, which seeds its latents.

    Returns:
        `num_samples` images (H, W, 3) uint8.

    Raises:
        ValueError: see `inpaint_batch`.
    """
    return inpaint_batch(
        model,
        [(image, known, index)],
        seed=seed,
        num_samples=num_samples,
        truncation_psi=truncation_psi,
        fit=fit,
    )[0]


# ---- translation ---------------------------------------------------------------------------


def translation_input(
    model: InferenceModel,
    condition: np.ndarray,
    *,
    edge_polarity: str = "black_on_white",
    edges_from_photo: bool = False,
) -> tuple[str, torch.Tensor]:
    """The batch entry of one translation input, at the model's resolution.

    Args:
        model: an edges or labels model from `load_model`.
        condition: a label map (H, W) of integer class ids; an edge map (H, W) or (H, W, 3)
            uint8; or, with `edges_from_photo`, a photo (H, W, 3) uint8.
        edge_polarity: "black_on_white" or "white_on_black": the lines of a 1-channel edge map.
        edges_from_photo: the condition is a photo whose Canny edges the model takes.

    Returns:
        (batch key, tensor): ("label", (h, w) int64 class ids, resized NEAREST) or
            ("edges", (C, h, w) in [-1, 1]), C the model's condition channels.

    Raises:
        ValueError: a condition of the wrong dtype or shape, a model that is neither edges nor
            labels, or a labels model that also takes instance edges.
    """
    condition = np.asarray(condition)
    size = model.resolution
    if model.kind == "labels":
        if condition.ndim != 2 or not np.issubdtype(condition.dtype, np.integer):
            raise ValueError(
                f"a label map must be an (H, W) array of integer class ids, got "
                f"{condition.dtype} {condition.shape}"
            )
        if getattr(model.task, "instance_edges", False):
            raise ValueError(
                "this model also takes instance boundaries (instance_edges), which file "
                "inference does not read: use a model trained without them"
            )
        label = torch.from_numpy(condition.astype(np.int64))[None]
        return B.LABEL, TF.resize(label, list(size), InterpolationMode.NEAREST)[0]
    if model.kind != "edges":
        raise ValueError(f"translation needs an edges or labels model, this one is {model.kind}")
    channels = model.cond_channels or 1
    if edges_from_photo:
        photo = resize_tensor(
            to_tensor(_check_image(condition, "photo")), size, InterpolationMode.BICUBIC
        )
        edges = canny_edges(photo.clamp(-1, 1))  # +1 on the lines, as the Canny datasets
        # A 3-channel model takes the RGB edges image as drawn: black lines on white.
        return B.EDGES, edges if channels == 1 else (-edges).expand(3, -1, -1).contiguous()
    if condition.dtype != np.uint8 or condition.ndim not in (2, 3):
        raise ValueError(
            f"an edge map must be an (H, W) or (H, W, 3) uint8 array, got "
            f"{condition.dtype} {condition.shape}"
        )
    img = Image.fromarray(np.ascontiguousarray(condition))
    edges = condition_to_tensor(img, edge_polarity, channels)
    return B.EDGES, resize_tensor(edges, size, InterpolationMode.BILINEAR).clamp(-1, 1)


def translate_batch(
    model: InferenceModel,
    items: Sequence[tuple[np.ndarray, int]],
    *,
    seed: int = 0,
    num_samples: int = 1,
    truncation_psi: float = 1.0,
    edge_polarity: str = "black_on_white",
    edges_from_photo: bool = False,
) -> list[list[np.ndarray]]:
    """`translate_image` on several items in one batch of the model.

    Args:
        model: an edges or labels model from `load_model`.
        items: (condition, dataset index) pairs (see `translation_input`); the index seeds the
            item's latents.
        seed: the evaluation seed (see the module doc).
        num_samples: outputs per item.
        truncation_psi: truncation toward the average w (1 = none).
        edge_polarity: the lines of a 1-channel edge map.
        edges_from_photo: the conditions are photos whose Canny edges the model takes.

    Returns:
        Per item, `num_samples` photos (H, W, 3) uint8 at the condition's size.

    Raises:
        ValueError: see `translation_input`.
    """
    keys, conds = set(), []
    for condition, _ in items:
        key, cond = translation_input(
            model, condition, edge_polarity=edge_polarity, edges_from_photo=edges_from_photo
        )
        keys.add(key)
        conds.append(cond)
    batch = {
        keys.pop(): torch.stack(conds),
        B.IMAGE: model.placeholder_image(len(items)),
        B.INDEX: torch.tensor([int(i) for _, i in items], dtype=torch.int64),
    }
    results: list[list[np.ndarray]] = [[] for _ in items]
    for k in range(num_samples):
        out = model.sample(batch, seed=seed, variant=k, truncation_psi=truncation_psi).cpu()
        for j, (condition, _) in enumerate(items):
            h, w = np.asarray(condition).shape[:2]
            y = resize_tensor(out[j].float(), (h, w), InterpolationMode.BICUBIC).clamp(-1, 1)
            results[j].append(to_uint8(y))
    return results


def translate_image(
    model: InferenceModel,
    condition: np.ndarray,
    *,
    seed: int = 0,
    num_samples: int = 1,
    truncation_psi: float = 1.0,
    edge_polarity: str = "black_on_white",
    edges_from_photo: bool = False,
    index: int = 0,
) -> list[np.ndarray]:
    """Photos at the input's size for an edge map, a label map or, with `edges_from_photo`, a
    photo whose Canny edges are the condition.

    Args:
        model: an edges or labels model from `load_model`.
        condition: an edge map (H, W) or (H, W, 3) uint8, a label map (H, W) of integer class
            ids, or a photo (H, W, 3) uint8.
        seed: the evaluation seed (see the module doc).
        num_samples: how many photos.
        truncation_psi: truncation toward the average w (1 = none).
        edge_polarity: "black_on_white" or "white_on_black": the lines of a 1-channel edge map.
        edges_from_photo: the condition is a photo.
        index: the input's dataset index, which seeds its latents.

    Returns:
        `num_samples` images (H, W, 3) uint8.

    Raises:
        ValueError: see `translation_input`.
    """
    return translate_batch(
        model,
        [(condition, index)],
        seed=seed,
        num_samples=num_samples,
        truncation_psi=truncation_psi,
        edge_polarity=edge_polarity,
        edges_from_photo=edges_from_photo,
    )[0]
