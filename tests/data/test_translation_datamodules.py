"""Tests for the edges -> photo datamodules on small data built in tmp_path."""

from __future__ import annotations

import io
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from i2i.data import batch
from i2i.data.batch import validate_sample
from i2i.data.download import PIX2PIX_DATASETS
from i2i.data.translation import (
    Edges2HandbagsDataModule,
    Edges2ShoesDataModule,
    EdgesFromPhotosDataModule,
    PairedDataModule,
)
from tests.conftest import shared_data

# Tiny tensors: on a busy 2-core machine, more threads than free cores mostly wait.
pytestmark = pytest.mark.usefixtures("one_torch_thread")

RES = 32


def _pair(seed: int, size: int = 64) -> tuple[Image.Image, Image.Image]:
    """(edges: black outline on white, photo: coloured square on grey) of one random square."""
    rng = np.random.default_rng(seed)
    top, left = (int(v) for v in rng.integers(4, size // 2, 2))
    box = (left, top, left + size // 3, top + size // 3)
    photo = Image.new("RGB", (size, size), (90, 90, 90))
    ImageDraw.Draw(photo).rectangle(box, fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    edges = Image.new("RGB", (size, size), (255, 255, 255))
    ImageDraw.Draw(edges).rectangle(box, outline=(0, 0, 0), width=1)
    return edges, photo


def _ab(seed: int) -> Image.Image:
    edges, photo = _pair(seed)
    out = Image.new("RGB", (2 * edges.width, edges.height))
    out.paste(edges, (0, 0))
    out.paste(photo, (edges.width, 0))
    return out


def _write_ab_splits(root: Path, n_train: int = 5, n_val: int = 3) -> Path:
    for split, n in (("train", n_train), ("val", n_val)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            _ab(100 * (split == "val") + i).save(root / split / f"{i}_AB.jpg", quality=95)
    return root


def _check_batch(b: dict[str, torch.Tensor], n: int) -> None:
    assert set(b) == {batch.IMAGE, batch.EDGES, batch.INDEX}
    assert b[batch.IMAGE].shape == (n, 3, RES, RES) and b[batch.IMAGE].dtype == torch.float32
    assert b[batch.EDGES].shape == (n, 1, RES, RES) and b[batch.EDGES].dtype == torch.float32
    assert b[batch.INDEX].shape == (n,) and b[batch.INDEX].dtype == torch.int64
    for x in (b[batch.IMAGE], b[batch.EDGES]):
        assert x.min() >= -1 and x.max() <= 1
    assert (b[batch.EDGES] > -0.5).any()  # thin lines downscaled 2x: grey, not lost


def _run(dm) -> None:
    dm.setup("fit")
    dm.batches_per_step = 2  # as the CLI sets it for CoModGAN: a G half and a D half
    _check_batch(next(iter(dm.train_dataloader())), 2 * dm.batch_size)
    _check_batch(dm.sample_batch(2), 2)
    _check_batch(next(iter(dm.val_dataloader())), min(dm.val_batch_size, len(dm.val_dataset)))
    validate_sample(dm.val_dataset[0], type(dm).__name__)


def test_paired_side_by_side(tmp_path: Path) -> None:
    root = _write_ab_splits(tmp_path / "pairs")
    dm = PairedDataModule(str(root), resolution=RES, batch_size=2, val_batch_size=2, num_workers=0)
    _run(dm)
    assert len(dm.train_dataset) == 5 and len(dm.val_dataset) == 3


def test_paired_side_by_side_seeded_split(tmp_path: Path) -> None:
    for i in range(8):
        (tmp_path / "flat").mkdir(exist_ok=True)
        _ab(i).save(tmp_path / "flat" / f"{i}.png")
    dm = PairedDataModule(
        str(tmp_path / "flat"), resolution=RES, batch_size=1, num_workers=0, val_fraction=0.25
    )
    _run(dm)
    assert (len(dm.train_dataset), len(dm.val_dataset)) == (6, 2)


@pytest.mark.parametrize("layout", ["flat", "pix2pix", "splits_first"])
def test_paired_two_folders(tmp_path: Path, layout: str) -> None:
    # Edges in B and photos in A: direction BtoA makes B the condition.
    for i in range(6):
        split = "val" if i >= 4 else "train"
        edges, photo = _pair(i)
        for sub, img in (("B", edges), ("A", photo)):
            folder = {
                "flat": tmp_path / sub,
                "pix2pix": tmp_path / sub / split,
                "splits_first": tmp_path / split / sub,
            }[layout]
            folder.mkdir(parents=True, exist_ok=True)
            img.save(folder / f"{i:03d}.png")
    kwargs = dict(resolution=RES, batch_size=2, val_batch_size=2, num_workers=0, val_fraction=0.3)
    dm = PairedDataModule(str(tmp_path), layout="two_folders", direction="BtoA", **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the edge check must be quiet on real edge maps
        _run(dm)
    assert len(dm.train_dataset) + len(dm.val_dataset) == 6

    # AtoB takes the photos (grey, mostly dark) as edge maps: caught at setup.
    wrong = PairedDataModule(str(tmp_path), layout="two_folders", direction="AtoB", **kwargs)
    with pytest.raises(ValueError, match="polarity.*direction"):
        wrong.setup("fit")


def test_paired_two_folders_missing_partner(tmp_path: Path) -> None:
    for i in range(3):
        edges, photo = _pair(i)
        for sub, img in (("A", edges), ("B", photo)):
            (tmp_path / sub).mkdir(exist_ok=True)
            img.save(tmp_path / sub / f"{i}.png")
    (tmp_path / "B" / "2.png").unlink()
    dm = PairedDataModule(str(tmp_path), layout="two_folders", resolution=RES, num_workers=0)
    with pytest.raises(ValueError, match=r"2\.png"):
        dm.setup("fit")
    no_folders = PairedDataModule(str(tmp_path), layout="two_folders", a_subdir="edges")
    with pytest.raises(FileNotFoundError, match="a_subdir"):
        no_folders.setup("fit")


def test_paired_argument_checks() -> None:
    with pytest.raises(ValueError, match="layout"):
        PairedDataModule("x", layout="stacked")
    with pytest.raises(ValueError, match="direction"):
        PairedDataModule("x", direction="left")
    with pytest.raises(ValueError, match="edge_polarity"):
        PairedDataModule("x", edge_polarity="white")
    with pytest.raises(ValueError, match="power of two"):
        PairedDataModule("x", resolution=100)


def test_edges2shoes_from_local_folder(tmp_path: Path) -> None:
    root = _write_ab_splits(tmp_path / "data" / "edges2shoes")
    dm = Edges2ShoesDataModule(
        str(root), download=False, resolution=RES, batch_size=2, val_batch_size=2, num_workers=0
    )
    dm.prepare_data()  # finds the data: nothing to download
    _run(dm)
    assert dm.hparams.root == str(root) and dm.hparams.direction == "AtoB"
    assert Edges2ShoesDataModule().hparams.root == "data/edges2shoes"
    assert Edges2HandbagsDataModule().hparams.root == "data/edges2handbags"


def test_edges2shoes_missing_without_download(tmp_path: Path) -> None:
    root = tmp_path / "nothing" / "edges2shoes"
    dm = Edges2ShoesDataModule(str(root), download=False, num_workers=0)
    for call in (dm.prepare_data, lambda: dm.setup("fit")):
        with pytest.raises(FileNotFoundError) as info:
            call()
        msg = str(info.value)
        assert PIX2PIX_DATASETS["edges2shoes"].url in msg and str(root) in msg
    other = Edges2ShoesDataModule(str(tmp_path / "shoes"), download=True)
    with pytest.raises(FileNotFoundError, match="ending in 'edges2shoes'"):
        other.setup("fit")


def test_edges2handbags_downloads_from_mirror(tmp_path: Path) -> None:
    # A file:// mirror holding a tiny archive with the official layout.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for split, n in (("train", 3), ("val", 2)):
            for i in range(n):
                data = io.BytesIO()
                _ab(i + 10 * (split == "val")).save(data, format="JPEG", quality=95)
                info = tarfile.TarInfo(f"edges2handbags/{split}/{i}_AB.jpg")
                info.size = len(data.getvalue())
                tar.addfile(info, io.BytesIO(data.getvalue()))
    mirror = tmp_path / "mirror" / "edges2handbags.tar.gz"
    mirror.parent.mkdir()
    mirror.write_bytes(buf.getvalue())
    root = tmp_path / "data" / "edges2handbags"
    dm = Edges2HandbagsDataModule(
        str(root),
        url=mirror.as_uri(),
        resolution=RES,
        batch_size=1,
        val_batch_size=2,
        num_workers=0,
    )
    dm.prepare_data()
    assert sorted(p.name for p in root.iterdir()) == ["train", "val"]
    _run(dm)


def test_edges_from_photos(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / "photos").mkdir(exist_ok=True)
        _pair(i)[1].save(tmp_path / "photos" / f"{i}.png")
    cache = tmp_path / "cache"
    dm = EdgesFromPhotosDataModule(
        str(tmp_path / "photos"),
        cache_dir=str(cache),
        resolution=RES,
        batch_size=2,
        val_batch_size=2,
        num_workers=0,
        val_fraction=0.4,
    )
    _run(dm)
    assert len(dm.val_dataset) == 2 and len(list(cache.rglob("*.png"))) >= 3
    with pytest.raises(ValueError, match="low_threshold <= high_threshold"):
        EdgesFromPhotosDataModule("x", low_threshold=0.5, high_threshold=0.1)


def test_real_edges2shoes_via_paired_datamodule() -> None:
    root = shared_data("edges2shoes", "hzycool_val")
    dm = PairedDataModule(str(root), resolution=256, batch_size=1, num_workers=0, val_fraction=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dm.setup("fit")
    b = dm.sample_batch(2)
    assert b[batch.IMAGE].shape == (2, 3, 256, 256) and b[batch.EDGES].shape == (2, 1, 256, 256)
    assert (b[batch.EDGES] > 0).float().mean() < 0.1  # the sparse edge half is the condition
    flipped = PairedDataModule(str(root), direction="BtoA", num_workers=0, val_fraction=0.5)
    with pytest.warns(UserWarning, match="direction"):
        flipped.setup("fit")


# ----------------------------------------------------------------------------- 3-channel edges


def test_edges_channels_3_is_the_rgb_half_as_it_is(tmp_path: Path) -> None:
    root = _write_ab_splits(tmp_path / "data" / "edges2shoes", n_train=2, n_val=2)
    kwargs = dict(download=False, resolution=64, batch_size=1, val_batch_size=2, num_workers=0)
    dm = Edges2ShoesDataModule(str(root), edges_channels=3, **kwargs)
    assert dm.cond_channels == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the edge check reads black-on-white RGB correctly
        dm.setup("fit")
    sample = dm.val_dataset[0]
    validate_sample(sample, "edges_channels=3")
    left = np.asarray(Image.open(dm.val_dataset.dataset.files[0]).convert("RGB"))[:, :64]
    ref = torch.from_numpy(left.copy()).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.equal(sample[batch.EDGES], ref)  # not inverted, not grey: the file's pixels
    assert sample[batch.EDGES].mean() > 0.5  # white paper is +1
    dm.batches_per_step = 2
    b = next(iter(dm.train_dataloader()))
    assert b[batch.EDGES].shape == (2 * dm.batch_size, 3, 64, 64)
    grey = Edges2ShoesDataModule(str(root), **kwargs)
    assert grey.cond_channels == 1
    grey.setup("fit")
    assert grey.val_dataset[0][batch.EDGES].shape == (1, 64, 64)
    with pytest.raises(ValueError, match="edges_channels"):
        Edges2ShoesDataModule(str(root), edges_channels=2)


def test_edges_channels_3_two_folders(tmp_path: Path) -> None:
    for i in range(4):
        edges, photo = _pair(i)
        for sub, img in (("A", edges), ("B", photo)):
            (tmp_path / sub).mkdir(exist_ok=True)
            img.save(tmp_path / sub / f"{i}.png")
    dm = PairedDataModule(
        str(tmp_path),
        layout="two_folders",
        edges_channels=3,
        resolution=64,
        num_workers=0,
        val_fraction=0.5,
    )
    dm.setup("fit")
    s = dm.val_dataset[0]
    cpath = dm.val_dataset.dataset.pairs[0][0]
    ref = np.asarray(Image.open(cpath).convert("RGB"))
    assert torch.equal(s[batch.EDGES], torch.from_numpy(ref.copy()).permute(2, 0, 1) / 127.5 - 1)


def test_batch_contract_allows_1_or_3_edge_channels() -> None:
    for c in (1, 3):
        validate_sample({batch.EDGES: torch.zeros(c, 8, 8)}, "ok")
    with pytest.raises(ValueError, match=r"C = 1 or 3.*\(2, 8, 8\)"):
        validate_sample({batch.EDGES: torch.zeros(2, 8, 8)}, "bad")


# ----------------------------------------------------------------------------- setup checks


def test_side_by_side_problems_found_at_setup(tmp_path: Path) -> None:
    root = _write_ab_splits(tmp_path / "pairs", n_train=3, n_val=2)
    Image.new("RGB", (100, 64)).save(root / "train" / "odd.png")  # not two square halves
    Image.new("RGB", (32, 16)).save(root / "train" / "tiny_AB.png")  # halves of 16 < 32
    dm = PairedDataModule(str(root), resolution=RES, num_workers=0)
    with pytest.raises(ValueError) as info:
        dm.setup("fit")
    msg = str(info.value)
    assert "1 file(s) that are not side-by-side pairs" in msg and "odd.png (100x64 WxH)" in msg
    assert "layout='two_folders'" in msg
    assert "1 pair(s) smaller than the resolution 32x32" in msg and "tiny_AB.png (16x16)" in msg
    assert "images: {small_images: upscale}" in msg


def test_two_folder_aspect_mismatch_found_at_setup(tmp_path: Path) -> None:
    for i in range(3):
        edges, photo = _pair(i)
        for sub, img in (("A", edges), ("B", photo)):
            (tmp_path / sub).mkdir(exist_ok=True)
            img.save(tmp_path / sub / f"{i}.png")
    Image.new("RGB", (64, 32), (255, 255, 255)).save(tmp_path / "A" / "1.png")
    dm = PairedDataModule(
        str(tmp_path), layout="two_folders", resolution=RES, num_workers=0, val_fraction=0.3
    )
    with pytest.raises(ValueError, match=r"1 pair\(s\) whose condition and photo differ") as info:
        dm.setup("fit")
    assert "1.png" in str(info.value) and "64x32 vs 64x64 WxH" in str(info.value)


@pytest.mark.parametrize("layout", ["side_by_side", "two_folders", "photos"])
def test_one_sample_says_validation_needs_two(tmp_path: Path, layout: str) -> None:
    edges, photo = _pair(0)
    if layout == "side_by_side":
        _ab(0).save(tmp_path / "0_AB.png")
        dm = PairedDataModule(str(tmp_path), num_workers=0)
        where, what = tmp_path, "1 image(s)"
    elif layout == "two_folders":
        for sub, img in (("A", edges), ("B", photo)):
            (tmp_path / sub).mkdir()
            img.save(tmp_path / sub / "0.png")
        dm = PairedDataModule(str(tmp_path), layout="two_folders", num_workers=0)
        where, what = tmp_path / "A", "1 pair(s)"
    else:
        photo.save(tmp_path / "0.png")
        dm = EdgesFromPhotosDataModule(str(tmp_path), num_workers=0)
        where, what = tmp_path, "1 image(s)"
    with pytest.raises(ValueError) as info:
        dm.setup("fit")
    msg = str(info.value)
    assert f"{where} has {what}" in msg and "at least two" in msg and "val" in msg


def test_real_edges2shoes_three_channel_condition() -> None:
    root = shared_data("edges2shoes", "hzycool_val")
    dm = PairedDataModule(
        str(root),
        resolution=256,
        num_workers=0,
        val_fraction=0.5,
        edges_channels=3,
        images={"resample": "pil_bilinear"},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sparse black lines on white: the check stays quiet
        dm.setup("fit")
    s = dm.val_dataset[0]
    left = np.asarray(Image.open(dm.val_dataset.dataset.files[0]).convert("RGB"))[:, :256]
    assert torch.equal(s[batch.EDGES], torch.from_numpy(left.copy()).permute(2, 0, 1) / 127.5 - 1)
