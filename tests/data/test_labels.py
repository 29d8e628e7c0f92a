"""Tests for label sets, label-map reading, instance edges, the paired datasets and colorize."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from i2i.data import batch
from i2i.data.batch import validate_sample
from i2i.data.image_options import ImageOptions
from i2i.data.label_maps import (
    colorize,
    decode_ade20k_full_seg,
    instance_edges,
    read_label_map,
    wandb_class_labels,
)
from i2i.data.labels import (
    CITYSCAPES_SUFFIXES,
    ADE20KDataset,
    CityscapesDataset,
    CocoStuffDataset,
    LabelFolderDataset,
    ade20k_spec,
    cityscapes_spec,
    coco_stuff_spec,
    generic_spec,
    get_spec,
)
from tests.conftest import shared_data

# Scene colours: class 0 grey background, class 1 red, class 2 blue.
COLOURS = np.array([[90, 90, 90], [220, 30, 30], [30, 30, 220]], dtype=np.uint8)


def _scene(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(photo uint8 (H, W, 3), label uint8 (H, W), instance uint16 (H, W)): asymmetric
    rectangles, so a crop or flip applied to only one of them would show."""
    label = np.zeros((h, w), np.uint8)
    label[h // 8 : h // 2, w // 10 : w // 3] = 1  # red block, upper left
    label[h // 2 : h - h // 6, w // 2 : w - w // 8] = 2  # blue block, lower right
    inst = label.astype(np.uint16) * 1000
    inst[h // 2 : h - h // 6, w // 2 : 5 * w // 8] += 1  # two touching instances of class 2
    return COLOURS[label], label, inst


def _save(arr: np.ndarray, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kwargs)
    return path


def _folders(root: Path, n: int = 2, h: int = 80, w: int = 120, ext: str = "png") -> Path:
    for i in range(n):
        photo, label, inst = _scene(h, w)
        _save(photo, root / "img" / f"s{i}.{ext}", **({"quality": 95} if ext == "jpg" else {}))
        _save(label, root / "label" / f"s{i}.png")
        _save(inst, root / "inst" / f"s{i}.png")
    return root


def _dataset(root: Path, resolution=64, **kwargs) -> LabelFolderDataset:
    return LabelFolderDataset(
        root / "img",
        root / "label",
        generic_spec(3),
        resolution,
        instance_dir=root / "inst",
        **kwargs,
    )


# ----------------------------------------------------------------------------- label sets


def test_spec_tables() -> None:
    coco, city, ade = coco_stuff_spec(), cityscapes_spec(), ade20k_spec()
    assert (coco.num_classes, city.num_classes, ade.num_classes) == (183, 35, 151)
    # COCO-Stuff PNG values are labels.txt ids - 1: 0 person, 90 hair brush, 91 banner, 181 wood.
    assert coco.class_names[0] == "person" and coco.class_names[90] == "hair brush"
    assert coco.class_names[91] == "banner" and coco.class_names[181] == "wood"
    assert coco.class_names[182] == "unlabeled"
    assert city.class_names[7] == "road" and city.class_names[26] == "car"
    assert tuple(city.palette[26]) == (0, 0, 142) and tuple(city.palette[7]) == (128, 64, 128)
    assert city.class_names[33] == "bicycle"
    assert ade.class_names[0] == "other" and ade.class_names[1] == "wall"
    assert ade.class_names[150] == "flag"
    for spec in (coco, city, ade):
        assert spec.palette.dtype == np.uint8 and spec.palette.shape == (spec.num_classes, 3)
        assert len(set(spec.class_names)) == spec.num_classes
    for spec in (coco, ade):  # generated palettes: every class tells apart
        assert len({tuple(c) for c in spec.palette.tolist()}) == spec.num_classes
    assert get_spec("cityscapes").num_classes == 35
    with pytest.raises(ValueError, match="unknown label set"):
        get_spec("pascal")


def test_to_class_ids_mapping_and_errors() -> None:
    coco = coco_stuff_spec()
    raw = np.array([[0, 181, 255], [7, 255, 100]], np.uint8)
    ids = coco.to_class_ids(raw, "x.png")
    assert ids.dtype == np.int64
    assert ids.tolist() == [[0, 181, 182], [7, 182, 100]]
    with pytest.raises(ValueError, match=r"coco/a\.png.*200.*0\.\.181.*255"):
        coco.to_class_ids(np.array([[3, 200, 201]], np.uint8), "coco/a.png")
    with pytest.raises(ValueError, match=r"b\.png.*\b35\b.*0\.\.34"):
        cityscapes_spec().to_class_ids(np.array([[1, 35]], np.uint8), "b.png")
    with pytest.raises(ValueError, match="integers"):
        coco.to_class_ids(np.zeros((2, 2), np.float32), "f.png")

    spec = generic_spec(3, ignore_value=255)
    assert spec.num_classes == 4 and spec.class_names[-1] == "unlabeled"
    assert spec.to_class_ids(np.array([0, 2, 255], np.uint8), "g").tolist() == [0, 2, 3]
    with pytest.raises(ValueError, match=r"g\.png.*\b3\b"):
        spec.to_class_ids(np.array([3], np.uint8), "g.png")
    with pytest.raises(ValueError, match="ignore_value 1"):
        generic_spec(3, ignore_value=1)
    with pytest.raises(ValueError, match="class_names"):
        generic_spec(3, class_names=["a", "b"])


# ----------------------------------------------------------------------------- label maps


def _naive_edges(m: np.ndarray) -> np.ndarray:
    h, w = m.shape
    out = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                ny, nx = y + dy, x + dx
                if 0 <= ny < h and 0 <= nx < w and m[ny, nx] != m[y, x]:
                    out[y, x] = True
    return out


def test_instance_edges_matches_naive_loop() -> None:
    rng = np.random.default_rng(0)
    inst = rng.integers(0, 3, (6, 9)).repeat(3, 0).repeat(2, 1) * 1000 + 7  # blocky ids
    got = instance_edges(inst)
    assert got.dtype == bool and got.shape == inst.shape
    np.testing.assert_array_equal(got, _naive_edges(inst))
    assert not instance_edges(np.full((4, 5), 26001)).any()
    with pytest.raises(ValueError, match="2-D"):
        instance_edges(np.zeros((2, 3, 3)))


def test_read_label_map_modes(tmp_path: Path) -> None:
    ids = np.array([[0, 5], [7, 2]], np.uint8)
    p = Image.fromarray(ids, "L").convert("P")  # palette PNG: the indices are the class ids
    p.putpalette([255, 0, 0] * 256)
    p.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_label_map(tmp_path / "p.png"), ids)
    _save(np.stack([ids] * 3, -1), tmp_path / "grey_rgb.png")  # grey saved as RGB: accepted
    np.testing.assert_array_equal(read_label_map(tmp_path / "grey_rgb.png"), ids)
    inst = np.array([[0, 26001], [33000, 7]], np.uint16)
    _save(inst, tmp_path / "inst.png")
    np.testing.assert_array_equal(read_label_map(tmp_path / "inst.png"), inst)
    _save(COLOURS[np.array([[0, 1], [2, 0]])], tmp_path / "colour.png")
    with pytest.raises(ValueError, match=r"colour\.png.*single-channel"):
        read_label_map(tmp_path / "colour.png")
    _save(ids, tmp_path / "lossy.jpg")
    with pytest.raises(ValueError, match=r"lossy\.jpg.*lossless"):
        read_label_map(tmp_path / "lossy.jpg")


def test_decode_ade20k_full_seg() -> None:
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (20, 5, 9)  # 20 // 10 * 256 + 5
    rgb[1, 1] = (255, 255, 0)  # 25 * 256 + 255
    out = decode_ade20k_full_seg(rgb)
    assert out.dtype == np.int64 and out.tolist() == [[517, 0], [0, 6655]]


def test_decode_ade20k_full_seg_real_samples() -> None:
    files = sorted(shared_data("ade20k").rglob("*_seg.png"))
    assert files
    for f in files:
        rgb = np.asarray(Image.open(f).convert("RGB"))
        classes = decode_ade20k_full_seg(rgb)
        with Image.open(f.with_name(f.name.replace("_seg.png", ".jpg"))) as photo:
            assert classes.shape == (photo.height, photo.width) and classes.dtype == np.int64
        # ADE20K 2021 indexes 3688 object classes; a street scene shows a handful of them.
        assert classes.min() >= 0 and classes.max() < 3700
        assert 3 <= len(np.unique(classes)) <= 200
        assert (classes == 0).mean() < 0.5  # mostly annotated
        for inst in np.unique(rgb[..., 2])[:30]:  # each instance (B) has a single class
            assert len(np.unique(classes[rgb[..., 2] == inst])) == 1


# ----------------------------------------------------------------------------- datasets


def test_label_resize_is_nearest_and_integer(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    values = np.array([0, 3, 7, 11], np.uint8)
    for name, (h, w) in {"small": (37, 53), "large": (150, 230)}.items():
        label = values[rng.integers(0, 4, (h // 4 + 1, w // 4 + 1))].repeat(4, 0).repeat(4, 1)
        _save(label[:h, :w], tmp_path / "label" / f"{name}.png")
        _save(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), tmp_path / "img" / f"{name}.png")
    ds = LabelFolderDataset(
        tmp_path / "img",
        tmp_path / "label",
        generic_spec(12),
        64,
        images=ImageOptions(small_images="upscale"),
    )
    for i in range(len(ds)):
        sample = ds[i]
        validate_sample(sample)
        y = sample[batch.LABEL]
        assert y.dtype == torch.int64 and y.shape == (64, 64)
        assert set(y.unique().tolist()) <= set(values.tolist())  # no blended ids


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_crop_and_flip_keep_photo_label_and_edges_aligned(tmp_path: Path, ext: str) -> None:
    # 160x240 at 64: resized to 64x96, then a random 64-wide crop; JPEGs take the draft path.
    ds = _dataset(_folders(tmp_path, n=1, h=160, w=240, ext=ext), instance_edges=True)
    flips = set()
    for seed in range(10):
        torch.manual_seed(seed)
        s = ds[0]
        validate_sample(s)
        label, photo = s[batch.LABEL].numpy(), s[batch.IMAGE].numpy()
        rgb = (photo.transpose(1, 2, 0) + 1) * 127.5
        nearest = np.argmin(((rgb[:, :, None, :] - COLOURS[None, None]) ** 2).sum(-1), -1)
        # Away from label borders (bicubic blur) the photo's colour gives the label.
        border = instance_edges(label)
        for _ in range(2):
            border = border | np.roll(border, 1, 0) | np.roll(border, -1, 0)
            border = border | np.roll(border, 1, 1) | np.roll(border, -1, 1)
        np.testing.assert_array_equal(nearest[~border], label[~border])
        # Instance edges: all label borders, plus the seam between the two class-2 instances.
        edges = s[batch.INSTANCE_EDGES][0].numpy() > 0
        assert (edges | ~instance_edges(label)).all()
        assert (edges & ~instance_edges(label)).any()
        flips.add(bool(label[16, :32].any()))  # red block is left unless flipped
    assert flips == {True, False}  # both flip states were seen


def test_val_samples_are_deterministic(tmp_path: Path) -> None:
    ds = _dataset(_folders(tmp_path), train=False, instance_edges=True)
    a, b = ds[1], ds[1]
    for key in (batch.IMAGE, batch.LABEL, batch.INSTANCE_EDGES):
        assert torch.equal(a[key], b[key])
    assert a[batch.INDEX] == 1 and batch.INSTANCE_EDGES not in _dataset(tmp_path, train=False)[0]


def test_mismatched_pairs_fail_with_file_names(tmp_path: Path) -> None:
    root = _folders(tmp_path)
    _save(np.zeros((40, 60), np.uint8), root / "label" / "s1.png")  # wrong size
    with pytest.raises(ValueError, match=r"s1\.png.*120x80.*s1\.png.*60x40"):
        _dataset(root)[1]
    _save(np.full((80, 120), 5, np.uint8), root / "label" / "s1.png")  # too many classes
    with pytest.raises(ValueError, match=r"label.s1\.png.*value\(s\) 5.*0\.\.2"):
        _dataset(root)[1]
    _save(_scene(80, 120)[0], root / "img" / "extra.png")  # photo without label
    with pytest.raises(ValueError, match=r"1 photo\(s\) without a partner.*extra\.png"):
        _dataset(root)
    (root / "img" / "extra.png").unlink()
    _save(_scene(80, 120)[1], root / "label" / "orphan.png")  # label without photo
    with pytest.raises(ValueError, match=r"label map\(s\) without a partner.*orphan\.png"):
        _dataset(root)
    (root / "label" / "orphan.png").unlink()
    with pytest.raises(ValueError, match="no instance map"):
        LabelFolderDataset(root / "img", root / "label", generic_spec(3), 64, instance_edges=True)


def test_ade20k_challenge_format(tmp_path: Path) -> None:
    root = tmp_path / "ADEChallengeData2016"
    rng = np.random.default_rng(0)
    for split, stem in (("training", "ADE_train_00000001"), ("validation", "ADE_val_00000001")):
        label = rng.integers(0, 151, (9, 12)).astype(np.uint8).repeat(8, 0).repeat(8, 1)
        _save(label, root / "annotations" / split / f"{stem}.png")
        photo = rng.integers(0, 256, (72, 96, 3), dtype=np.uint8)
        _save(photo, root / "images" / split / f"{stem}.jpg")
    for where, split in ((root, "train"), (tmp_path, "val"), (root, "validation")):
        ds = ADE20KDataset(where, split, 64)
        s = ds[0]
        validate_sample(s)
        assert s[batch.LABEL].max() <= 150 and batch.INSTANCE_EDGES not in s
    with pytest.raises(ValueError, match="no instance maps"):
        ADE20KDataset(root, "train", 64, instance_edges=True)
    with pytest.raises(FileNotFoundError, match=r"sceneparsing\.csail\.mit\.edu"):
        ADE20KDataset(tmp_path / "nope", "train", 64)


def test_named_datasets_name_layout_and_download_page(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"train_img.*github\.com/nightrome/cocostuff"):
        CocoStuffDataset(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match=r"leftImg8bit.*cityscapes-dataset\.com"):
        CityscapesDataset(tmp_path / "missing", "train")


# ----------------------------------------------------------------------------- real samples


def test_cityscapes_real_pair_one_hot_and_instance_edges() -> None:
    root = shared_data("cityscapes", "pix2pixHD_train")
    ds = LabelFolderDataset(
        root / "img_1024x512",
        root / "label_1024x512",
        cityscapes_spec(),
        (256, 512),
        instance_dir=root / "inst_1024x512",
        instance_edges=True,
        train=False,
        image_suffix=CITYSCAPES_SUFFIXES[0],
        label_suffix=CITYSCAPES_SUFFIXES[1],
        instance_suffix=CITYSCAPES_SUFFIXES[2],
    )
    assert len(ds) == 8
    s = ds[0]
    validate_sample(s)
    assert s[batch.IMAGE].shape == (3, 256, 512) and s[batch.INSTANCE_EDGES].shape == (1, 256, 512)
    one_hot = F.one_hot(s[batch.LABEL], 35)
    assert one_hot.shape == (256, 512, 35)
    assert (one_hot.sum(-1) == 1).all()
    # Instance edges include every class border and split adjacent cars (instance ids).
    edges, label = s[batch.INSTANCE_EDGES][0].numpy() > 0, s[batch.LABEL].numpy()
    assert (edges | ~instance_edges(label)).all() and (edges & ~instance_edges(label)).any()
    # Every raw labelIds file (train, val, label-only val) is within the 35 classes.
    for f in sorted(shared_data("cityscapes").rglob("*_gtFine_labelIds.png")):
        assert cityscapes_spec().to_class_ids(read_label_map(f), f).max() < 35


def test_coco_stuff_real_unlabeled_255_is_class_182() -> None:
    root = shared_data("coco_stuff", "spade")
    spec = coco_stuff_spec()
    labels = sorted((root / "val_label").glob("*.png"))
    with_255 = [f for f in labels if (read_label_map(f) == 255).any()]
    assert with_255, "expected a sample with unlabeled (255) pixels"
    raw = read_label_map(with_255[0])
    ids = spec.to_class_ids(raw, with_255[0])
    np.testing.assert_array_equal(ids == 182, raw == 255)
    np.testing.assert_array_equal(ids[raw != 255], raw[raw != 255])

    ds = CocoStuffDataset(
        root,
        "val",
        256,
        train=False,
        instance_edges=True,
        images=ImageOptions(small_images="upscale"),
    )
    k = [r.label for r in ds.records].index(with_255[0])
    s = ds[k]
    validate_sample(s)
    assert s[batch.LABEL].max() == 182 and s[batch.INSTANCE_EDGES].shape == (1, 256, 256)


# ----------------------------------------------------------------------------- visualisation


def test_colorize_and_wandb_labels() -> None:
    spec = cityscapes_spec()
    label = torch.tensor([[[7, 26], [0, 33]]])
    img = colorize(label, spec.palette)
    assert img.shape == (1, 3, 2, 2) and img.dtype == torch.float32
    assert img.min() >= -1 and img.max() <= 1
    expect = torch.tensor([128, 64, 128]) / 127.5 - 1  # road
    assert torch.allclose(img[0, :, 0, 0], expect)
    assert colorize(label[0], spec.palette).shape == (1, 3, 2, 2)
    with pytest.raises(ValueError, match="palette of 35"):
        colorize(torch.tensor([[35]]), spec.palette)
    names = wandb_class_labels(spec)
    assert names[26] == "car" and len(names) == 35 and all(isinstance(k, int) for k in names)
