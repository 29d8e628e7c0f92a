"""A procedural scenes dataset built into the package: no download, one source for all tasks.

Each sample is a small scene: a sky-to-ground vertical gradient (class 0, "background") with 2-5
overlapping shapes on top (classes 1.., later shapes drawn over earlier ones). Colour follows
class (each class has its own hue family, with random variation and a linear shading inside the
shape), so labels -> photo is learnable, while random layout, overlap and shading keep inpainting
non-trivial. The same sample gives the photo ("image"), its label map ("label") and the label
boundaries ("edges"), so it serves inpainting, edges -> photo and labels -> photo.

Rendering: each shape's coverage is drawn with PIL at 4x and box-downsampled (antialiasing);
colours are composited at 1x in numpy. The label map is the topmost shape whose 1x coverage is
>= 1/2, i.e. hard (no antialias) and pixel-consistent with the photo. Every sample is a pure
function of (seed, index).
"""

from __future__ import annotations

import colorsys
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

from i2i.data import batch
from i2i.data.crop import check_resolution
from i2i.data.label_maps import label_edges
from i2i.data.label_specs import LabelSpec
from i2i.data.stream import StreamDataModule
from i2i.images import to_uint8
from i2i.resolution import as_hw
from i2i.seeding import derive_seed, numpy_rng

CLASS_NAMES = ("background", "circle", "square", "triangle", "ellipse", "stripe")
NUM_CLASSES = len(CLASS_NAMES)

# Visualisation colours for label maps, one row per class (close to each class's hue family).
PALETTE = np.array(
    [
        [64, 64, 64],  # background
        [230, 40, 40],  # circle: red
        [235, 200, 20],  # square: yellow
        [40, 180, 60],  # triangle: green
        [40, 100, 230],  # ellipse: blue
        [200, 50, 200],  # stripe: magenta
    ],
    dtype=np.uint8,
)

# Base hue per shape class, spread around the colour wheel so classes are told apart by colour.
_HUES = (0.0, 0.0, 0.14, 0.33, 0.61, 0.83)
_SUPERSAMPLE = 4  # shapes are drawn at 4x and box-filtered down: antialiased edges


def _polygon(cx: float, cy: float, radii: np.ndarray, angles: np.ndarray) -> list[float]:
    xs = cx + radii * np.cos(angles)
    ys = cy + radii * np.sin(angles)
    return np.stack([xs, ys], 1).ravel().tolist()


def _shape_outline(kind: int, rng: np.random.Generator, h: int, w: int) -> tuple:
    """Geometry of one shape in 1x pixel coordinates: ("ellipse", box) or ("polygon", xy)."""
    s = min(h, w)
    r = rng.uniform(0.10, 0.22) * s
    cx = rng.uniform(0.5 * r, w - 0.5 * r)
    cy = rng.uniform(0.5 * r, h - 0.5 * r)
    theta = rng.uniform(0, 2 * math.pi)
    name = CLASS_NAMES[kind]
    if name == "circle":
        return "ellipse", [cx - r, cy - r, cx + r, cy + r], (cx, cy, r)
    if name == "square":
        # A square of half-side 0.9 r has its corners at 0.9 r * sqrt(2).
        k = np.arange(4)
        pts = _polygon(cx, cy, np.full(4, 0.9 * r * math.sqrt(2)), theta + k * math.pi / 2)
        return "polygon", pts, (cx, cy, r)
    if name == "triangle":
        k = np.arange(3)
        radii = 1.2 * r * rng.uniform(0.85, 1.15, 3)
        angles = theta + k * 2 * math.pi / 3 + rng.uniform(-0.25, 0.25, 3)
        return "polygon", _polygon(cx, cy, radii, angles), (cx, cy, r)
    if name == "ellipse":
        # Elongated (axis ratio ~1:2.3) and rotated, so it never looks like a circle.
        a, b = 1.35 * r, 1.35 * r * rng.uniform(0.35, 0.55)
        t = np.linspace(0, 2 * math.pi, 28, endpoint=False)
        x, y = a * np.cos(t), b * np.sin(t)
        c, si = math.cos(theta), math.sin(theta)
        pts = np.stack([cx + c * x - si * y, cy + si * x + c * y], 1).ravel().tolist()
        return "polygon", pts, (cx, cy, a)
    if name == "stripe":
        # A thick bar crossing much of the image.
        half_len = rng.uniform(0.45, 0.7) * s
        half_thick = rng.uniform(0.05, 0.09) * s
        d = np.array([math.cos(theta), math.sin(theta)])
        n = np.array([-d[1], d[0]])
        c0 = np.array([cx, cy])
        corners = [
            c0 + sl * half_len * d + st * half_thick * n
            for sl, st in ((-1, -1), (1, -1), (1, 1), (-1, 1))
        ]
        return "polygon", np.concatenate(corners).tolist(), (cx, cy, half_len)
    raise AssertionError(f"unknown shape class {kind}")


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def render_scene(
    rng: np.random.Generator, size: tuple[int, int], num_classes: int = NUM_CLASSES
) -> tuple[np.ndarray, np.ndarray]:
    """Render one scene: a sky-to-ground background and 2 to 5 shaded shapes.

    Args:
        rng: the generator the scene is drawn from (its seed decides the scene).
        size: (H, W).
        num_classes: background + the first num_classes - 1 shape classes are drawn.

    Returns:
        (image float32 (H, W, 3) in [0, 1], label int64 (H, W) class ids, 0 = background).
    """
    h, w = size
    ss = _SUPERSAMPLE
    yy = (np.arange(h, dtype=np.float32) + 0.5)[:, None]
    xx = (np.arange(w, dtype=np.float32) + 0.5)[None, :]

    # Background: pale sky colour on top blending smoothly into a duller ground colour.
    sky = _hsv(rng.uniform(0.50, 0.68), rng.uniform(0.10, 0.40), rng.uniform(0.70, 1.00))
    ground = _hsv(rng.uniform(0.06, 0.30), rng.uniform(0.20, 0.50), rng.uniform(0.30, 0.60))
    horizon, softness = rng.uniform(0.35, 0.75), rng.uniform(0.05, 0.25)
    t = 1.0 / (1.0 + np.exp(-(yy / h - horizon) / softness))  # (H, 1)
    image = np.broadcast_to(sky * (1 - t[..., None]) + ground * t[..., None], (h, w, 3)).copy()
    label = np.zeros((h, w), dtype=np.int64)

    for cls in rng.integers(1, num_classes, rng.integers(2, 6)):
        kind, geom, (cx, cy, extent) = _shape_outline(int(cls), rng, h, w)
        canvas = Image.new("L", (w * ss, h * ss), 0)
        draw = ImageDraw.Draw(canvas)
        scaled = [c * ss for c in geom]
        if kind == "ellipse":
            draw.ellipse(scaled, fill=255)
        else:
            draw.polygon(scaled, fill=255)
        cover = np.asarray(canvas.reduce(ss), dtype=np.float32) * (1.0 / 255.0)

        # Class hue with jitter; a linear shading ramp across the shape in a random direction.
        base = _hsv(
            _HUES[cls] + rng.uniform(-0.03, 0.03), rng.uniform(0.6, 0.95), rng.uniform(0.6, 0.9)
        )
        phi = rng.uniform(0, 2 * math.pi)
        ramp = ((xx - cx) * math.cos(phi) + (yy - cy) * math.sin(phi)) / extent
        shade = 1.0 + rng.uniform(0.15, 0.35) * np.clip(ramp, -1.0, 1.0)
        colour = np.clip(base * shade[..., None], 0.0, 1.0)
        a = cover[..., None]
        image = image * (1.0 - a) + colour * a
        label[cover >= 0.5] = cls
    return image.astype(np.float32, copy=False), label


class ShapesDataset(Dataset):
    """Procedural scenes, deterministic in (seed, index): {"image": (3, H, W) in [-1, 1],
    "edges": (1, H, W) in {-1, +1} (+1 on the label boundaries), "label": (H, W) int64,
    "index": int}.

    Args:
        size: the output size: an int or (H, W), each side >= 8.
        length: the number of distinct samples (the epoch length), >= 1.
        seed: >= 0; different seeds give disjoint-looking datasets (e.g. train vs val).
        num_classes: 2..NUM_CLASSES: background + the first shape classes.

    Raises:
        ValueError: a size, length, seed or num_classes out of range.
    """

    def __init__(
        self,
        size: int | tuple[int, int] = 64,  # output size: int or (H, W), each side >= 8
        length: int = 2048,  # number of distinct samples (the epoch length)
        seed: int = 0,  # different seeds give disjoint-looking datasets (e.g. train vs val)
        num_classes: int = NUM_CLASSES,  # 2..NUM_CLASSES: background + the first shape classes
    ) -> None:
        self.size = as_hw(size, minimum=8, name="ShapesDataset size")
        if length < 1:
            raise ValueError(f"ShapesDataset length must be >= 1, got {length}")
        if seed < 0:
            raise ValueError(f"ShapesDataset seed must be >= 0, got {seed}")
        if not 2 <= num_classes <= NUM_CLASSES:
            raise ValueError(
                f"ShapesDataset num_classes must be in [2, {NUM_CLASSES}] (background + up to "
                f"{NUM_CLASSES - 1} shape classes {CLASS_NAMES[1:]}), got {num_classes}"
            )
        self.length = length
        self.seed = seed
        self.num_classes = num_classes

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -self.length <= i < self.length:
            raise IndexError(f"index {i} out of range for a ShapesDataset of length {self.length}")
        i %= self.length
        image, label = render_scene(numpy_rng(self.seed, i), self.size, self.num_classes)
        edges = np.where(label_edges(label), 1.0, -1.0).astype(np.float32)
        return {
            batch.IMAGE: torch.from_numpy(image.transpose(2, 0, 1) * 2.0 - 1.0),
            batch.EDGES: torch.from_numpy(edges)[None],
            batch.LABEL: torch.from_numpy(label),
            batch.INDEX: i,
        }


class ShapesDataModule(StreamDataModule):
    """The embedded procedural scenes for the translation tasks: `condition="edges"` gives
    {"image", "edges"} for edges -> photo, `"labels"` gives {"image", "label"} for labels ->
    photo (6 classes, with `class_names` and `palette`). No download.

    Args:
        condition: "edges" or "labels".
        resolution: (H, W) or H = W, powers of two.
        batch_size: samples per batch, per process and use (CoModGAN: G and D each; see
            `batches_per_step`).
        val_batch_size: samples per validation batch.
        num_workers: loader worker processes.
        length: training scenes.
        val_length: validation scenes.
        seed: seeds the training scenes and stream; validation uses seed + 1.

    Raises:
        ValueError: another condition.
    """

    def __init__(
        self,
        condition: str = "edges",  # "edges" or "labels"
        resolution: int | tuple[int, int] = 64,
        batch_size: int = 8,  # per process, per use (CoModGAN: G and D each; see batches_per_step)
        val_batch_size: int = 16,
        num_workers: int = 1,
        length: int = 4096,  # training scenes
        val_length: int = 256,
        seed: int = 0,
    ):
        super().__init__(batch_size, val_batch_size, num_workers, seed)
        if condition not in ("edges", "labels"):
            raise ValueError(f"condition must be 'edges' or 'labels', got {condition!r}")
        self.save_hyperparameters()
        self.resolution = check_resolution(resolution)
        self.keys = (batch.IMAGE, batch.EDGES if condition == "edges" else batch.LABEL, batch.INDEX)
        self.spec = LabelSpec("shapes", NUM_CLASSES, CLASS_NAMES, PALETTE)
        self.num_classes = NUM_CLASSES

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        """(train, val) scenes, seeded seed and seed + 1."""
        hp = self.hparams
        train = ShapesDataset(self.resolution, length=hp.length, seed=hp.seed)
        val = ShapesDataset(self.resolution, length=hp.val_length, seed=hp.seed + 1)
        return train, val


HELDOUT_SEED = 2  # training draws scenes with seed 0 and validation with 1: 2 is never seen


def write_heldout(
    out: str | Path,
    count: int = 8,  # scenes to write
    resolution: int = 64,  # the demo model's size
    hole_range: tuple[float, float] = (0.1, 0.5),  # as configs/demo.yaml
    seed: int = HELDOUT_SEED,
) -> tuple[Path, Path]:
    """Scenes no demo run has seen, as files: `out/images/scene_NNN.png` and
    `out/masks/scene_NNN.png` (white = hole), for `i2i inpaint` after `make train`; also the
    label maps (`out/labels`, class ids) and edge maps (`out/edges`) for `i2i translate`.

    Args:
        out: the folder (created).
        count: how many scenes.
        resolution: their size (the demo model's).
        hole_range: the masks' hole ratio range, as configs/demo.yaml.
        seed: seeds the scenes and masks; the default is one training and validation never use.

    Returns:
        (the images' folder, the masks' folder).
    """
    from i2i.data.masks import RandomMaskGenerator  # masks are not part of the scenes

    out = Path(out)
    folders = {name: out / name for name in ("images", "masks", "labels", "edges")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    scenes = ShapesDataset(resolution, length=count, seed=seed)
    masks = RandomMaskGenerator(tuple(hole_range)).at(resolution)
    for i in range(count):
        item, name = scenes[i], f"scene_{i:03d}.png"

        Image.fromarray(to_uint8(item[batch.IMAGE])).save(folders["images"] / name)
        known = masks.sample(derive_seed(seed, i)).squeeze(0).numpy() > 0.5
        Image.fromarray(np.where(known, 0, 255).astype(np.uint8)).save(folders["masks"] / name)
        label = item[batch.LABEL].squeeze(0).numpy().astype(np.uint8)
        Image.fromarray(label).save(folders["labels"] / name)
        Image.fromarray(to_uint8(item[batch.EDGES])).save(folders["edges"] / name)
    return folders["images"], folders["masks"]


def main(argv: list[str] | None = None) -> int:
    """`python -m i2i.data.synthetic --out DIR`: write held-out scenes (`write_heldout`).

    Args:
        argv: the command's arguments (None: `sys.argv[1:]`).

    Returns:
        The exit status, 0.
    """
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m i2i.data.synthetic",
        description="Write held-out demo scenes and masks (white = hole) as PNG files.",
    )
    parser.add_argument("--out", required=True, help="folder for images/, masks/, labels/, edges/")
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=64)
    args = parser.parse_args(argv)
    images, masks = write_heldout(args.out, args.count, args.resolution)
    print(f"{args.count} held-out scenes: {images} (masks: {masks}, white = hole)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
