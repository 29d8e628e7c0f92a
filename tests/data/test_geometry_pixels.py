"""Every dataset's joint geometry (resize, crop, flip of photo, label, instance and edge maps),
pinned pixel for pixel: the digests below were recorded before the geometry moved to
torchvision's v2 functional calls on tv_tensors, so any change of a pixel, dtype, shape or
random draw fails here. Samples are drawn as the training stream draws them, with torch's CPU
generator seeded per position."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from i2i.data.datasets import ImageFolderDataset
from i2i.data.image_options import ImageOptions
from i2i.data.labels import (
    CITYSCAPES_SUFFIXES,
    LabelFolderDataset,
    cityscapes_spec,
    coco_stuff_spec,
)
from i2i.data.paired import CannyEdgesDataset, SideBySideDataset, TwoFolderDataset
from i2i.data.unpaired import DomainFolder
from i2i.seeding import seeded_torch_cpu
from tests.conftest import shared_data

POSITIONS = 6  # stream positions per case: enough for both flip draws and several windows


def _photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth colour ramps plus noise and a sharp block: every filter leaves a trace."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], -1)
    img = base + rng.integers(-40, 40, (h, w, 3))
    img[h // 5 : h // 2, w // 7 : w // 3] = (250, 10, 120)
    return img.clip(0, 255).astype(np.uint8)


def _ids(rng: np.random.Generator, h: int, w: int, values: np.ndarray) -> np.ndarray:
    """A map of blocks of random ids: borders move visibly under a shifted resize or crop."""
    cells = rng.choice(values, (h // 7 + 1, w // 5 + 1))
    return np.kron(cells, np.ones((7, 5), cells.dtype))[:h, :w]


def _save(arr: np.ndarray, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kwargs)
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(27)
    root = tmp_path_factory.mktemp("geometry")
    # COCO-Stuff-like: SPADE ids 0..181 and 255; one JPEG large enough for a draft decode, one
    # photo under the resolution (upscaled).
    coco = np.r_[np.arange(182), 255].astype(np.uint8)
    for k, (h, w, ext) in enumerate([(75, 101, "png"), (160, 230, "jpg"), (50, 44, "png")]):
        _save(_photo(rng, h, w), root / "coco/img" / f"c{k}.{ext}", quality=90)
        _save(_ids(rng, h, w, coco), root / "coco/label" / f"c{k}.png")
    # Cityscapes-like: label ids 0..33 and instance ids up to 33999 (uint16).
    for k, (h, w) in enumerate([(70, 150), (96, 160)]):
        stem = f"city_{k}"
        _save(_photo(rng, h, w), root / "city/img" / f"{stem}{CITYSCAPES_SUFFIXES[0]}.png")
        labels = _ids(rng, h, w, np.arange(34, dtype=np.uint8))
        _save(labels, root / "city/label" / f"{stem}{CITYSCAPES_SUFFIXES[1]}.png")
        inst = labels.astype(np.uint16) * 1000 + _ids(rng, h, w, np.arange(3, dtype=np.uint16))
        _save(inst, root / "city/inst" / f"{stem}{CITYSCAPES_SUFFIXES[2]}.png")
    # Paired edges -> photo: A|B files, and two folders with the edges at half size.
    for k, h in enumerate([80, 48]):
        edges = np.where(_ids(rng, h, h, np.arange(2, dtype=np.uint8)) > 0, 255, 0)
        pair = np.concatenate([np.repeat(edges[..., None], 3, -1), _photo(rng, h, h)], 1)
        _save(pair.astype(np.uint8), root / "sbs" / f"p{k}.png")
    for k, (h, w) in enumerate([(96, 120), (70, 70)]):
        _save(_photo(rng, h, w), root / "two/B" / f"t{k}.png")
        edges = np.where(_ids(rng, h // 2, w // 2, np.arange(2, dtype=np.uint8)) > 0, 255, 0)
        _save(edges.astype(np.uint8), root / "two/A" / f"t{k}.png")
    # Plain photos: larger, smaller and narrower than the resolution.
    for k, (h, w) in enumerate([(90, 70), (40, 100), (64, 64), (30, 20)]):
        _save(_photo(rng, h, w), root / "photos" / f"f{k}.png")
    return root


def _digest(ds, positions: int = POSITIONS, seed: int = 5) -> str:
    """sha256 over the samples at the first `positions` stream positions: keys, value types,
    dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for p in range(positions):
        with seeded_torch_cpu(seed, p):
            item = ds[p % len(ds)]
        for key, value in sorted(item.items()) if isinstance(item, dict) else [("", item)]:
            h.update(f"{key}:{type(value).__name__}".encode())
            if isinstance(value, torch.Tensor):
                h.update(f"{value.dtype}{tuple(value.shape)}".encode())
                h.update(value.contiguous().numpy().tobytes())
            else:
                h.update(repr(value).encode())
    return h.hexdigest()[:16]


def _label_folder(
    folder: Path, spec, res, instances: bool = False, train: bool = True, **images
) -> LabelFolderDataset:
    """`folder`/img, /label (and /inst, Cityscapes' suffixes, with `instances`)."""
    suffixes = CITYSCAPES_SUFFIXES if instances else ("", "", "")
    return LabelFolderDataset(
        folder / "img",
        folder / "label",
        spec,
        res,
        instance_dir=folder / "inst" if instances else None,
        image_suffix=suffixes[0],
        label_suffix=suffixes[1],
        instance_suffix=suffixes[2],
        instance_edges=instances,
        train=train,
        images=ImageOptions(**images),
    )


CASES: dict[str, Callable[[Path], Callable[[bool], object]]] = {
    "labels_coco": lambda r: (
        lambda t: _label_folder(r / "coco", coco_stuff_spec(), 64, train=t, small_images="upscale")
    ),
    "labels_coco_noflip": lambda r: (
        lambda t: _label_folder(
            r / "coco", coco_stuff_spec(), 32, train=t, small_images="upscale", hflip=False
        )
    ),
    "labels_cityscapes": lambda r: (
        lambda t: _label_folder(r / "city", cityscapes_spec(), (32, 64), instances=True, train=t)
    ),
    "side_by_side": lambda r: (
        lambda t: SideBySideDataset(
            r / "sbs", 64, train=t, images=ImageOptions(small_images="upscale")
        )
    ),
    "side_by_side_rgb_btoa_bilinear": lambda r: (
        lambda t: SideBySideDataset(
            r / "sbs",
            32,
            direction="BtoA",
            edges_channels=3,
            train=t,
            images=ImageOptions(resample="pil_bilinear", small_images="upscale"),
        )
    ),
    "two_folders": lambda r: lambda t: TwoFolderDataset(r / "two/A", r / "two/B", 64, train=t),
    "canny": lambda r: (
        lambda t: CannyEdgesDataset(
            r / "photos", 32, train=t, images=ImageOptions(small_images="upscale")
        )
    ),
    "unpaired": lambda r: (
        lambda t: DomainFolder(sorted((r / "photos").iterdir()), (32, 32), load_size=40, train=t)
    ),
    "unpaired_center": lambda r: (
        lambda t: DomainFolder(
            sorted((r / "photos").iterdir()),
            (16, 32),
            train=t,
            images=ImageOptions(train_crop="center"),
        )
    ),
    "unpaired_no_load_size": lambda r: (
        lambda t: DomainFolder(sorted((r / "photos").iterdir()), (32, 32), load_size=None, train=t)
    ),
    "folder_upscale": lambda r: (
        lambda t: ImageFolderDataset(
            r / "photos", 64, train=t, images=ImageOptions(small_images="upscale")
        )
    ),
    "folder_center_bilinear": lambda r: (
        lambda t: ImageFolderDataset(
            r / "photos",
            32,
            train=t,
            images=ImageOptions(
                train_crop="center", resample="pil_bilinear", small_images="upscale"
            ),
        )
    ),
    "folder_pad": lambda r: (
        lambda t: ImageFolderDataset(
            r / "photos", 64, train=t, images=ImageOptions(small_images="pad")
        )
    ),
    "folder_resize_none_pad": lambda r: (
        lambda t: ImageFolderDataset(
            r / "photos", (32, 64), train=t, images=ImageOptions(resize="none", small_images="pad")
        )
    ),
}

# Recorded on the code before the move to torchvision v2 (train, validation).
DIGESTS: dict[str, tuple[str, str]] = {
    "canny": ("87bf634a88bd62f5", "715003878a00b7e5"),
    "folder_center_bilinear": ("a4393bfbf32e44d8", "a05ab9067a48f8b4"),
    "folder_pad": ("2e349c6481f29596", "dd193f223ba52f61"),
    "folder_resize_none_pad": ("a7942ca000bbbafe", "6a857c2bb53ea2a4"),
    "folder_upscale": ("4941e0d9536151b6", "3aa58bfaccc549a6"),
    "labels_cityscapes": ("1d423dc3f01f96b9", "a7e55535d2f3cc8f"),
    "labels_coco": ("5b97b80ec3a769b1", "f66ef3c9c7ebe11c"),
    "labels_coco_noflip": ("51e88ca840ef03df", "2a99b58e4c630a3d"),
    "side_by_side": ("43efb3b663df1ef8", "940007b719b43172"),
    "side_by_side_rgb_btoa_bilinear": ("7de348424c2de179", "513cb16eace76f7c"),
    "two_folders": ("6eeda6d7a8df955e", "f86a1dfd45de1cc3"),
    "unpaired": ("ccccf20674cd36b4", "dffdf62a1fe9c7d6"),
    "unpaired_center": ("22cc5c898d865d71", "e68363c6a042cb95"),
    "unpaired_no_load_size": ("dffdf62a1fe9c7d6", "dffdf62a1fe9c7d6"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_geometry_pixels_unchanged(root: Path, case: str) -> None:
    build = CASES[case](root)
    got = (_digest(build(True)), _digest(build(False)))
    assert got == DIGESTS[case], f"{case}: {got}"


# The shared samples keep their sources' folder names: a label case links them as img/, label/
# (and inst/) for `_label_folder`.
REAL_CASES: dict[str, Callable[[Path], object]] = {
    "coco": lambda tmp: _label_folder(
        _linked(tmp, shared_data("coco_stuff", "spade"), "train_img", "train_label"),
        coco_stuff_spec(),
        128,
        small_images="upscale",
    ),
    "cityscapes": lambda tmp: _label_folder(
        _linked(
            tmp,
            shared_data("cityscapes", "pix2pixHD_train"),
            "img_1024x512",
            "label_1024x512",
            "inst_1024x512",
        ),
        cityscapes_spec(),
        (128, 256),
        instances=True,
    ),
    "edges2shoes": lambda tmp: SideBySideDataset(shared_data("edges2shoes", "hzycool_val"), 128),
    "places": lambda tmp: ImageFolderDataset(
        shared_data("places", "deepfillv2_places2", "raw"),
        256,
        images=ImageOptions(small_images="pad"),
    ),
}


def _linked(tmp: Path, root: Path, *folders: str) -> Path:
    """`tmp` with img, label (and inst) linked to root's `folders`."""
    for name, folder in zip(("img", "label", "inst"), folders, strict=False):
        (tmp / name).symlink_to(root / folder)
    return tmp


REAL_DIGESTS: dict[str, str] = {
    "coco": "28a417f41e5c4330",
    "cityscapes": "5bffec7e747ca878",
    "edges2shoes": "cfd2af43e8aea968",
    "places": "a6967cc478a49d69",
}


@pytest.mark.parametrize("case", sorted(REAL_CASES))
def test_geometry_pixels_unchanged_on_real_samples(tmp_path: Path, case: str) -> None:
    ds = REAL_CASES[case](tmp_path)
    got = _digest(ds, positions=4)
    assert got == REAL_DIGESTS[case], f"{case}: {got}"
