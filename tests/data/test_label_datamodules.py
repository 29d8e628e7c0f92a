"""Tests for the labels -> photo datamodules: layouts, batches, condition channels, errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from i2i.data import batch as B
from i2i.data.label_datamodules import (
    ADE20KDataModule,
    CityscapesDataModule,
    CocoStuffDataModule,
    LabelDataModule,
    LabelFolderDataModule,
)
from i2i.data.labels import CITYSCAPES_SUFFIXES, LABEL_DATASETS, split_records
from tests.conftest import shared_data

LOADER = dict(batch_size=1, val_batch_size=2, num_workers=0)


def _blocks(h: int, w: int, values: np.ndarray, seed: int) -> np.ndarray:
    """A blocky map of `values` (8x8 blocks), like a coarse label map."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), (h // 8, w // 8)).repeat(8, 0).repeat(8, 1)
    return values[idx]


def _write(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_cityscapes(root: Path, h: int = 64, w: int = 128) -> Path:
    ids = np.array([7, 11, 23, 26, 33], np.uint8)
    for split, city, n in (("train", "aachen", 3), ("val", "frankfurt", 2)):
        for i in range(n):
            stem = f"{city}_{i:06d}_000019"
            label = _blocks(h, w, ids, i)
            inst = label.astype(np.uint16) * 1000 + (np.arange(w) >= w // 2).astype(np.uint16)
            _write(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", _photo(h, w, i))
            gt = root / "gtFine" / split / city
            _write(gt / f"{stem}_gtFine_labelIds.png", label)
            _write(gt / f"{stem}_gtFine_instanceIds.png", inst)
            _write(gt / f"{stem}_gtFine_color.png", _photo(h, w, 99))  # must be ignored
    return root


def _write_coco(root: Path) -> Path:
    ids = np.array([0, 57, 181, 255], np.uint8)
    for split, n in (("train", 3), ("val", 2)):
        for i in range(n):
            label = _blocks(48, 64, ids, i)
            _write(root / f"{split}_img" / f"{i:012d}.png", _photo(48, 64, i))
            _write(root / f"{split}_label" / f"{i:012d}.png", label)
            _write(root / f"{split}_inst" / f"{i:012d}.png", label)
    return root


def _write_ade(root: Path) -> Path:
    ids = np.arange(151, dtype=np.uint8)
    for split, n in (("training", 3), ("validation", 2)):
        for i in range(n):
            stem = f"ADE_{split[:5]}_{i:08d}"
            _write(root / "images" / split / f"{stem}.png", _photo(64, 96, i))
            _write(root / "annotations" / split / f"{stem}.png", _blocks(64, 96, ids, i))
    return root


def _write_folder(root: Path, n: int = 5) -> Path:
    ids = np.array([0, 1, 2, 255], np.uint8)
    for i in range(n):
        _write(root / "photos" / f"p{i}.png", _photo(64, 64, i))
        _write(root / "labels" / f"p{i}.png", _blocks(64, 64, ids, i))
        _write(root / "inst" / f"p{i}.png", _blocks(64, 64, ids, i + 7))
    return root


def _check(dm: LabelDataModule, size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """setup, one training batch and sample_batch(2): keys, shapes, dtypes, value ranges."""
    dm.setup("fit")
    dm.batches_per_step = 2  # as the CLI sets it for CoModGAN: a G half and a D half
    train = next(iter(dm.train_dataloader()))
    sample = dm.sample_batch(2)
    for b, n in ((train, 2 * dm.batch_size), (sample, 2)):
        assert set(b) == set(dm.keys)
        assert b[B.IMAGE].shape == (n, 3, *size) and b[B.IMAGE].dtype == torch.float32
        assert b[B.LABEL].shape == (n, *size) and b[B.LABEL].dtype == torch.int64
        assert 0 <= b[B.LABEL].min() and b[B.LABEL].max() < dm.num_classes
        if dm.instance_edges:
            assert b[B.INSTANCE_EDGES].shape == (n, 1, *size)
            assert set(b[B.INSTANCE_EDGES].unique().tolist()) <= {-1.0, 1.0}
    assert dm.cond_channels == dm.num_classes + int(dm.instance_edges)
    assert sample[B.INDEX].tolist() == [0, 1]
    return train


def test_cityscapes_datamodule_official_layout(tmp_path: Path) -> None:
    root = _write_cityscapes(tmp_path / "cityscapes")
    dm = CityscapesDataModule(str(root), resolution=(32, 64), **LOADER)
    assert dm.num_classes == 35 and dm.cond_channels == 36 and B.INSTANCE_EDGES in dm.keys
    assert dm.spec.class_names[26] == "car"
    batch = _check(dm, (32, 64))
    assert set(batch[B.LABEL].unique().tolist()) <= {7, 11, 23, 26, 33}
    assert CityscapesDataModule(str(root), instance_edges=False).cond_channels == 35
    assert CityscapesDataModule(str(root)).resolution == (256, 512)


def test_datamodule_stream_is_deterministic(tmp_path: Path) -> None:
    root = _write_cityscapes(tmp_path / "cityscapes")
    batches = []
    for _ in range(2):
        dm = CityscapesDataModule(str(root), resolution=(32, 64), **LOADER)
        dm.setup("fit")
        batches.append(next(iter(dm.train_dataloader())))
    for key in (B.IMAGE, B.LABEL, B.INSTANCE_EDGES, B.INDEX):
        assert torch.equal(batches[0][key], batches[1][key])


def test_coco_stuff_datamodule_spade_layout(tmp_path: Path) -> None:
    dm = CocoStuffDataModule(str(_write_coco(tmp_path / "coco")), resolution=32, **LOADER)
    assert (dm.num_classes, dm.cond_channels) == (183, 184)
    batch = _check(dm, (32, 32))
    assert set(batch[B.LABEL].unique().tolist()) <= {0, 57, 181, 182}  # 255 -> 182


def test_ade20k_datamodule(tmp_path: Path) -> None:
    root = _write_ade(tmp_path / "ADEChallengeData2016")
    dm = ADE20KDataModule(str(root), resolution=32, **LOADER)
    assert (dm.num_classes, dm.cond_channels) == (151, 151) and B.INSTANCE_EDGES not in dm.keys
    _check(dm, (32, 32))
    assert ADE20KDataModule(str(tmp_path)).num_classes == 151  # the parent folder works too


def test_label_folder_datamodule_generic_split(tmp_path: Path) -> None:
    root = _write_folder(tmp_path)
    dm = LabelFolderDataModule(
        str(root / "photos"),
        str(root / "labels"),
        num_classes=3,
        ignore_value=255,
        instance_dir=str(root / "inst"),
        instance_edges=True,
        resolution=32,
        val_fraction=0.4,
        **LOADER,
    )
    assert (dm.num_classes, dm.cond_channels) == (4, 5)
    _check(dm, (32, 32))
    assert len(dm.train_dataset) == 3 and len(dm.val_dataset) == 2
    train_files = {r.image for r in dm.train_dataset.records}
    val_files = {r.image for r in dm.val_dataset.dataset.records}
    assert not train_files & val_files


def test_label_folder_datamodule_errors(tmp_path: Path) -> None:
    root = _write_folder(tmp_path)
    photos, labels = str(root / "photos"), str(root / "labels")
    with pytest.raises(ValueError, match="needs num_classes"):
        LabelFolderDataModule(photos, labels)
    with pytest.raises(ValueError, match="num_classes=3 but label_set 'cityscapes' has 35"):
        LabelFolderDataModule(photos, labels, num_classes=3, label_set="cityscapes")
    # A missing folder stops setup (the shards build this datamodule where it is absent).
    missing = LabelFolderDataModule(photos, str(tmp_path / "nope"), num_classes=3)
    with pytest.raises(FileNotFoundError, match=r"label_dir .*nope does not exist"):
        missing.setup("fit")
    with pytest.raises(ValueError, match="instance_dir"):
        LabelFolderDataModule(photos, labels, num_classes=3, instance_edges=True)
    with pytest.raises(ValueError, match="both val_image_dir and val_label_dir"):
        LabelFolderDataModule(photos, labels, num_classes=3, val_image_dir=photos)
    dm = LabelFolderDataModule(photos, labels, num_classes=3, resolution=32, **LOADER)
    # Found at setup for every file, before any sample is drawn; 255 needs ignore_value.
    with pytest.raises(ValueError, match=r"5 label map\(s\) with values outside") as info:
        dm.setup("fit")
    msg = str(info.value)
    assert "p0.png (values 255)" in msg and "valid raw values are 0..2" in msg
    assert "ignore_value: 255" in msg


@pytest.mark.parametrize(
    ("cls", "layout", "url"),
    [
        (CocoStuffDataModule, "train_img", r"github\.com/nightrome/cocostuff"),
        (CityscapesDataModule, "leftImg8bit", r"cityscapes-dataset\.com \(login required\)"),
        (ADE20KDataModule, "images", r"sceneparsing\.csail\.mit\.edu"),
    ],
)
def test_missing_dataset_folder(tmp_path: Path, cls, layout: str, url: str) -> None:
    missing = tmp_path / "not_here"
    dm = cls(str(missing))  # construction is cheap (configs instantiate without the data)
    with pytest.raises(FileNotFoundError, match=rf"{missing}.*does not exist.*{layout}.*{url}"):
        dm.setup("fit")


def test_coco_stuff_without_instance_maps(tmp_path: Path) -> None:
    root = _write_coco(tmp_path / "coco")
    for split in ("train", "val"):
        for f in (root / f"{split}_inst").iterdir():
            f.unlink()
        (root / f"{split}_inst").rmdir()
    with pytest.raises(FileNotFoundError, match="instance_edges: false"):
        CocoStuffDataModule(str(root)).setup("fit")
    assert CocoStuffDataModule(str(root), instance_edges=False).cond_channels == 183


def test_named_datamodules_are_rows_of_one_table() -> None:
    """Each named datamodule reads its row: label set, layout and suffixes come from the table."""
    for cls, key in (
        (CocoStuffDataModule, "coco_stuff"),
        (CityscapesDataModule, "cityscapes"),
        (ADE20KDataModule, "ade20k"),
    ):
        dm = cls("unused")
        assert dm.row is LABEL_DATASETS[key] and dm.spec.name == key
        folder = LabelFolderDataModule("img", "lab", label_set=key)
        assert (
            folder.suffixes == LABEL_DATASETS[key].suffixes and folder.num_classes == dm.num_classes
        )
    assert LABEL_DATASETS["cityscapes"].suffixes == CITYSCAPES_SUFFIXES
    assert LabelFolderDataModule("img", "lab", num_classes=3).suffixes == ("", "", "")
    with pytest.raises(ValueError, match="no instance maps"):
        split_records(LABEL_DATASETS["ade20k"], "unused", "train", instance_edges=True)


# ----------------------------------------------------------------------------- real samples


def test_cityscapes_datamodule_real_samples(tmp_path: Path) -> None:
    """The shared samples linked into the official layout, at the default 256x512."""
    shared = shared_data("cityscapes")
    for split, src, city in (
        ("train", "pix2pixHD_train", "aachen"),
        ("val", "val_frankfurt", "frankfurt"),
    ):
        for sub, dst in (("img", "leftImg8bit"), ("label", "gtFine"), ("inst", "gtFine")):
            for f in sorted((shared / src / f"{sub}_1024x512").iterdir())[:2]:
                link = tmp_path / dst / split / city / f.name
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(f)
    dm = CityscapesDataModule(str(tmp_path), **LOADER)
    batch = _check(dm, (256, 512))
    assert (batch[B.INSTANCE_EDGES] > 0).float().mean() > 0.01  # many instance borders


def test_coco_stuff_datamodule_real_samples() -> None:
    dm = CocoStuffDataModule(str(shared_data("coco_stuff", "spade")), resolution=64, **LOADER)
    _check(dm, (64, 64))
    assert len(dm.train_dataset) == 13 and len(dm.val_dataset) == 8


def test_label_folder_datamodule_cityscapes_sample_folders() -> None:
    """The shared sample layout works through LabelFolderDataModule with label_set cityscapes
    (its default name suffixes pair *_leftImg8bit with *_gtFine_labelIds)."""
    train = shared_data("cityscapes", "pix2pixHD_train")
    val = shared_data("cityscapes", "val_frankfurt")
    dm = LabelFolderDataModule(
        str(train / "img_1024x512"),
        str(train / "label_1024x512"),
        label_set="cityscapes",
        instance_dir=str(train / "inst_1024x512"),
        val_image_dir=str(val / "img_1024x512"),
        val_label_dir=str(val / "label_1024x512"),
        val_instance_dir=str(val / "inst_1024x512"),
        instance_edges=True,
        resolution=(64, 128),
        **LOADER,
    )
    assert dm.cond_channels == 36
    _check(dm, (64, 128))
    assert len(dm.train_dataset) == 8 and len(dm.val_dataset) == 3


# ----------------------------------------------------------------------------- setup checks


def test_label_problems_found_at_setup_for_every_file(tmp_path: Path) -> None:
    root = _write_folder(tmp_path, n=6)
    _write(root / "labels" / "p3.png", _blocks(32, 64, np.array([0, 1], np.uint8), 3))  # size
    _write(root / "labels" / "p4.png", _blocks(64, 64, np.array([0, 7, 9], np.uint8), 4))
    dm = LabelFolderDataModule(
        str(root / "photos"),
        str(root / "labels"),
        num_classes=3,
        ignore_value=255,
        resolution=32,
        val_fraction=0.4,
        **LOADER,
    )
    with pytest.raises(ValueError) as info:
        dm.setup("fit")
    msg = str(info.value)
    assert "1 photo(s) whose label map has a different size" in msg
    assert "p3.png (photo 64x64, label map" in msg and "64x32 WxH" in msg
    assert "1 label map(s) with values outside the generic label set" in msg
    assert "p4.png (values 7, 9)" in msg and "num_classes: 10" in msg


def test_label_values_are_read_once_then_cached(tmp_path: Path, monkeypatch) -> None:
    import i2i.data.labels as labels_module

    root = _write_folder(tmp_path, n=4)
    reads: list[str] = []
    real = labels_module.read_label_map

    def counting(path):
        reads.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(labels_module, "read_label_map", counting)

    def setup() -> LabelFolderDataModule:
        dm = LabelFolderDataModule(
            str(root / "photos"),
            str(root / "labels"),
            num_classes=3,
            ignore_value=255,
            resolution=32,
            val_fraction=0.5,
            **LOADER,
        )
        dm.setup("fit")
        return dm

    setup()
    assert sorted(reads) == ["p0.png", "p1.png", "p2.png", "p3.png"]
    caches = list((Path(os.environ["I2I_CACHE_DIR"]) / "label_stats").glob("labels-*.json"))
    assert len(caches) == 1
    reads.clear()
    setup()
    assert reads == []  # the second run reads no label map
    _write(root / "labels" / "p2.png", _blocks(64, 64, np.array([0, 5], np.uint8), 2))
    with pytest.raises(ValueError, match=r"p2\.png \(values 5\)"):
        setup()
    assert reads == ["p2.png"]  # only the changed file is read again


def test_label_folder_one_pair_says_validation_needs_two(tmp_path: Path) -> None:
    root = _write_folder(tmp_path, n=1)
    dm = LabelFolderDataModule(
        str(root / "photos"), str(root / "labels"), num_classes=3, ignore_value=255, **LOADER
    )
    with pytest.raises(ValueError) as info:
        dm.setup("fit")
    msg = str(info.value)
    assert f"{root / 'photos'} has 1 photo/label pair(s)" in msg and "at least two" in msg
    assert "val_image_dir and val_label_dir" in msg
