"""Tests for the paired edges -> photo datasets: shared geometry, direction, pairing, Canny."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from i2i.data import batch
from i2i.data.batch import validate_sample
from i2i.data.edge_maps import canny_edges, check_edge_maps, edge_ink, edges_to_tensor
from i2i.data.image_options import ImageOptions
from i2i.data.paired import CannyEdgesDataset, SideBySideDataset, TwoFolderDataset
from i2i.data.pairing import match_pairs
from tests.conftest import shared_data

# Tiny tensors: on a busy 2-core machine, more threads than free cores mostly wait.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


BOX = (20, 8, 44, 32)  # square rows [20, 44), cols [8, 32) of a 64x64 half: off-centre


def square_photo(h: int, w: int, box: tuple[int, int, int, int]) -> Image.Image:
    """White filled square on black: the photo whose square boundary is known."""
    arr = np.zeros((h, w, 3), np.uint8)
    top, left, bottom, right = box
    arr[top:bottom, left:right] = 255
    return Image.fromarray(arr)


def outline_edges(h: int, w: int, box: tuple[int, int, int, int], width: int = 2) -> Image.Image:
    """pix2pix-style edge image: black outline of the same square, drawn inside it, on white."""
    img = Image.new("RGB", (w, h), (255, 255, 255))
    top, left, bottom, right = box
    ImageDraw.Draw(img).rectangle(
        (left, top, right - 1, bottom - 1), outline=(0, 0, 0), width=width
    )
    return img


def side_by_side(left: Image.Image, right: Image.Image) -> Image.Image:
    out = Image.new("RGB", (left.width + right.width, left.height))
    out.paste(left, (0, 0))
    out.paste(right, (left.width, 0))
    return out


def save(img: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def dilate(m: torch.Tensor, r: int) -> torch.Tensor:
    return F.max_pool2d(m.float()[None, None], 2 * r + 1, 1, r)[0, 0] > 0


def erode(m: torch.Tensor, r: int) -> torch.Tensor:
    # Outside the image counts as outside the shape: where the crop cuts the square, the band
    # along the cut is allowed (lenient), but a line shifted by the crop still fails.
    x = F.pad(m.float()[None, None], (r, r, r, r), value=0.0)
    return -F.max_pool2d(-x, 2 * r + 1, 1)[0, 0] > 0.5


def assert_aligned(image: torch.Tensor, edges: torch.Tensor, tol: int = 0) -> None:
    """Every edge pixel lies on the photo square's boundary band (within `tol` px outside)."""
    square = image.mean(0) > 0
    lines = edges[0] > 0
    assert lines.sum() > 10, "the edge lines were lost"
    assert not (lines & ~dilate(square, tol)).any(), "edge pixels outside the photo's square"
    assert not (lines & erode(square, 3)).any(), "edge pixels deep inside the photo's square"


def flipped(image: torch.Tensor) -> bool:
    cols = torch.nonzero((image.mean(0) > 0).any(0))[:, 0]
    return bool(cols.float().mean() > image.shape[-1] / 2)  # the square starts left of centre


# ----------------------------------------------------------------------------- side by side


@pytest.mark.parametrize("resolution, tol", [((32, 64), 0), (32, 1)])
def test_side_by_side_keeps_pair_aligned(tmp_path: Path, resolution, tol: int) -> None:
    # (32, 64) crops 32 of 64 rows at random (no resize); 32 resizes both halves by 1/2.
    path = save(
        side_by_side(outline_edges(64, 64, BOX), square_photo(64, 64, BOX)), tmp_path / "p.png"
    )
    flip = ImageOptions(hflip=True)
    ds = SideBySideDataset(tmp_path, resolution, [path], train=True, images=flip)
    flips, offsets = set(), set()
    for seed in range(24):
        torch.manual_seed(seed)
        s = ds[0]
        validate_sample(s)
        assert_aligned(s[batch.IMAGE], s[batch.EDGES], tol)
        flips.add(flipped(s[batch.IMAGE]))
        offsets.add(int(torch.nonzero(s[batch.IMAGE].mean(0) > 0)[0, 0]))
    assert flips == {True, False}
    if resolution == (32, 64):
        assert len(offsets) > 3, "the random crop never moved"


def test_direction_picks_the_half(tmp_path: Path) -> None:
    left = Image.new("RGB", (16, 16), (255, 255, 255))
    ImageDraw.Draw(left).line((5, 0, 5, 15), fill=(0, 0, 0))
    right = Image.new("RGB", (16, 16), (100, 100, 100))
    path = save(side_by_side(left, right), tmp_path / "ab.png")

    a2b = SideBySideDataset(tmp_path, 16, [path], direction="AtoB", train=False)[0]
    assert torch.allclose(a2b[batch.IMAGE], torch.full((3, 16, 16), 100 / 127.5 - 1))
    expected = -torch.ones(1, 16, 16)
    expected[..., 5] = 1.0  # the black line, inverted to +1
    assert torch.equal(a2b[batch.EDGES], expected)

    b2a = SideBySideDataset(tmp_path, 16, [path], direction="BtoA", train=False)[0]
    assert torch.allclose(b2a[batch.EDGES], torch.full((1, 16, 16), 1 - 2 * 100 / 255))
    assert b2a[batch.IMAGE][:, :, 5].eq(-1).all() and b2a[batch.IMAGE][:, :, 6].eq(1).all()

    with pytest.raises(ValueError, match="direction"):
        SideBySideDataset(tmp_path, 16, [path], direction="AtoC")


def test_side_by_side_rejects_non_pairs(tmp_path: Path) -> None:
    path = save(square_photo(16, 24, (2, 2, 8, 8)), tmp_path / "lonely.png")
    with pytest.raises(ValueError, match="lonely.png.*twice as wide"):
        SideBySideDataset(tmp_path, 8, [path], train=False)[0]


def test_edge_polarity() -> None:
    img = Image.fromarray(np.array([[0, 255]], np.uint8))
    assert edges_to_tensor(img, "black_on_white").flatten().tolist() == [1.0, -1.0]
    assert edges_to_tensor(img, "white_on_black").flatten().tolist() == [-1.0, 1.0]


# ----------------------------------------------------------------------------- two folders


def test_match_pairs_by_name(tmp_path: Path) -> None:
    for stem in ("a", "b", "sub/c"):
        save(outline_edges(8, 8, (1, 1, 7, 7)), tmp_path / "A" / f"{stem}.png")
        save(square_photo(8, 8, (1, 1, 7, 7)), tmp_path / "B" / f"{stem}.jpg")
    pairs = match_pairs(tmp_path / "A", tmp_path / "B")
    assert [(c.relative_to(tmp_path).as_posix(), p.name) for c, p in pairs] == [
        ("A/a.png", "a.jpg"),
        ("A/b.png", "b.jpg"),
        ("A/sub/c.png", "c.jpg"),
    ]

    save(outline_edges(8, 8, (1, 1, 7, 7)), tmp_path / "A" / "only_edges.png")
    save(square_photo(8, 8, (1, 1, 7, 7)), tmp_path / "B" / "only_photo.jpg")
    with pytest.raises(ValueError, match="only_edges.png.*only_photo.jpg"):
        match_pairs(tmp_path / "A", tmp_path / "B")

    save(outline_edges(8, 8, (1, 1, 7, 7)), tmp_path / "A" / "a.jpg")
    with pytest.raises(ValueError, match="a.jpg and .*a.png"):
        match_pairs(tmp_path / "A", tmp_path / "B")


def test_two_folders_align_different_sizes(tmp_path: Path) -> None:
    # Photo 48x96, edges stored at half size: one plan (resize to 32x64, random 32-col crop).
    # The square spans the middle columns, so every crop window shows part of it.
    box = (12, 36, 40, 64)
    save(square_photo(48, 96, box), tmp_path / "B" / "x.png")
    save(outline_edges(24, 48, tuple(v // 2 for v in box), width=1), tmp_path / "A" / "x.png")
    flip, no_flip = ImageOptions(hflip=True), ImageOptions(hflip=False)
    ds = TwoFolderDataset(tmp_path / "A", tmp_path / "B", 32, train=True, images=flip)
    plain = TwoFolderDataset(tmp_path / "A", tmp_path / "B", 32, train=True, images=no_flip)
    flips, offsets = set(), set()
    for seed in range(16):
        torch.manual_seed(seed)
        s = ds[0]
        assert s[batch.IMAGE].shape == (3, 32, 32) and s[batch.EDGES].shape == (1, 32, 32)
        assert_aligned(s[batch.IMAGE], s[batch.EDGES], tol=1)
        torch.manual_seed(seed)  # same crop draw, no flip draw: tells whether `s` was flipped
        ref = plain[0][batch.IMAGE]
        flips.add(not torch.equal(s[batch.IMAGE], ref))
        offsets.add(int(torch.nonzero(ref.mean(0) > 0)[0, 1]))
    assert flips == {True, False} and len(offsets) > 3

    save(square_photo(48, 48, (4, 4, 20, 20)), tmp_path / "A" / "x.png")  # now 1:1 vs 2:1
    with pytest.raises(ValueError, match="aspect ratios"):
        TwoFolderDataset(tmp_path / "A", tmp_path / "B", 32, train=False)[0]


# ----------------------------------------------------------------------------- Canny


def test_canny_edges_land_on_the_boundary() -> None:
    box = (16, 16, 48, 48)
    photo = torch.from_numpy(np.array(square_photo(64, 64, box))).permute(2, 0, 1)
    photo = photo.float() / 127.5 - 1
    edges = canny_edges(photo)
    assert edges.shape == (1, 64, 64) and set(edges.unique().tolist()) <= {-1.0, 1.0}
    square, lines = photo.mean(0) > 0, edges[0] > 0
    band = dilate(square, 1) & ~erode(square, 1)
    assert not (lines & ~band).any()
    assert lines.sum() >= 0.9 * (4 * 32 - 4)  # nearly the whole perimeter is found


def test_canny_dataset_aligned_under_crop_and_flip(tmp_path: Path) -> None:
    save(square_photo(64, 128, (16, 20, 48, 52)), tmp_path / "p.png")
    ds = CannyEdgesDataset(tmp_path, 64, train=True, images=ImageOptions(hflip=True))
    flips = set()
    for seed in range(12):
        torch.manual_seed(seed)
        s = ds[0]
        validate_sample(s)
        square, lines = s[batch.IMAGE].mean(0) > 0, s[batch.EDGES][0] > 0
        if square.any():
            assert lines.any()
            assert not (lines & ~(dilate(square, 1) & ~erode(square, 1))).any()
            flips.add(flipped(s[batch.IMAGE]))
    assert ds.computed == 12  # no cache: every call runs Canny
    assert flips == {True, False}


def test_canny_cache_reused_and_invalidated(tmp_path: Path) -> None:
    photo = save(square_photo(64, 96, (16, 16, 48, 48)), tmp_path / "photos" / "p.png")
    cache = tmp_path / "cache"
    first = CannyEdgesDataset(tmp_path / "photos", 64, train=False, cache_dir=cache)
    e1 = first[0][batch.EDGES]
    assert first.computed == 1
    (entry,) = cache.rglob("*.png")
    stamp = entry.stat().st_mtime_ns

    again = CannyEdgesDataset(tmp_path / "photos", 64, train=False, cache_dir=cache)
    assert torch.equal(again[0][batch.EDGES], e1)
    torch.manual_seed(3)
    train = CannyEdgesDataset(tmp_path / "photos", 64, train=True, cache_dir=cache)
    train[0]  # a random crop of the same resized photo: the same cache entry
    assert again.computed == 0 and train.computed == 0
    assert entry.stat().st_mtime_ns == stamp and len(list(cache.rglob("*.png"))) == 1

    other = CannyEdgesDataset(tmp_path / "photos", 64, train=False, cache_dir=cache, sigma=2.0)
    other[0]
    assert other.computed == 1 and len(list(cache.rglob("*.png"))) == 2

    os.utime(photo, ns=(stamp + 10**9, stamp + 10**9))  # the photo changed on disk
    again[0]
    assert again.computed == 1 and len(list(cache.rglob("*.png"))) == 3


def test_canny_thresholds_validated(tmp_path: Path) -> None:
    save(square_photo(8, 8, (2, 2, 6, 6)), tmp_path / "p.png")
    with pytest.raises(ValueError, match="low_threshold <= high_threshold"):
        CannyEdgesDataset(tmp_path, 8, low_threshold=0.3, high_threshold=0.2)


# ----------------------------------------------------------------------------- real data


def test_real_edges2shoes_left_half_is_the_edge_map() -> None:
    root = shared_data("edges2shoes", "hzycool_val")
    a2b = SideBySideDataset(root, 256, train=False)
    b2a = SideBySideDataset(root, 256, direction="BtoA", train=False)
    assert len(a2b) == 20
    inks_a, inks_b = [], []
    for i in range(len(a2b)):
        s = a2b[i]
        validate_sample(s, f"edges2shoes[{i}]")
        assert s[batch.IMAGE].shape == (3, 256, 256) and s[batch.EDGES].shape == (1, 256, 256)
        lines = (s[batch.EDGES] > 0).float().mean().item()
        assert 0.002 < lines < 0.1, "edges: mostly -1 with sparse +1 lines"
        assert s[batch.EDGES].mean() < -0.8
        inks_a.append(edge_ink(s[batch.EDGES]))
        inks_b.append(edge_ink(b2a[i][batch.EDGES]))
    assert np.mean(inks_a) < 0.06 < 0.15 < np.mean(inks_b)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_edge_maps(a2b, num=20)
    with pytest.warns(UserWarning, match="direction"):
        check_edge_maps(b2a, num=20)
    inverted = SideBySideDataset(root, 256, edge_polarity="white_on_black", train=False)
    with pytest.raises(ValueError, match="white_on_black"):
        check_edge_maps(inverted)


def test_real_edges2handbags_two_folders() -> None:
    root = shared_data("edges2handbags")
    ds = TwoFolderDataset(root / "munit_testA_edges", root / "munit_testB_photos", 128, train=False)
    assert len(ds) == 9
    for i in range(len(ds)):
        s = ds[i]
        validate_sample(s)
        assert s[batch.EDGES].shape == (1, 128, 128)
        assert edge_ink(s[batch.EDGES]) < 0.15


def test_side_by_side_pil_bilinear_matches_pil(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    path = save(side_by_side(outline_edges(64, 64, BOX), photo), tmp_path / "ab.png")
    pil = ImageOptions(resample="pil_bilinear")
    got = SideBySideDataset(tmp_path, 32, [path], train=False, images=pil)[0]
    ref = np.asarray(photo.resize((32, 32), Image.Resampling.BILINEAR))
    ref_t = torch.from_numpy(ref.copy()).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.equal(got[batch.IMAGE], ref_t)
    default = SideBySideDataset(tmp_path, 32, [path], train=False)[0]
    assert not torch.equal(default[batch.IMAGE], ref_t)  # bicubic by default
