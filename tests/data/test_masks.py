"""Tests for i2i.data.masks (1 = known, 0 = hole)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from i2i.data.mask_drawing import random_mask, rectangle_mask, rectangle_sides
from i2i.data.mask_sets import KNOWN_MASK_SETS, judge_hole_ratios
from i2i.data.masks import (
    MaskFiles,
    MaskFolder,
    RandomMaskGenerator,
    RectangleMaskGenerator,
    load_mask,
    mask_hole_ratio,
    mask_source,
)

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _hole_ratios(n: int, size: int, seed: int, **kwargs) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array([mask_hole_ratio(random_mask(size, rng=rng, **kwargs)) for _ in range(n)])


# --- random_mask ---------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "shape"), [(64, (1, 64, 64)), ((48, 80), (1, 48, 80))])
def test_random_mask_shape_dtype_binary(size, shape):
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = random_mask(size, rng=rng)
        assert mask.shape == shape
        assert mask.dtype == torch.float32
        assert set(mask.unique().tolist()) <= {0.0, 1.0}


def test_random_mask_without_rng_works():
    assert random_mask(32).shape == (1, 32, 32)


# Reference: CoModGAN's RandomMask measured over 1,000 masks (mean hole 0.644 at 512,
# 0.722 at 256; strokes have absolute pixel widths, so smaller images get more hole).
@pytest.mark.parametrize(("size", "expected"), [(512, 0.644), (256, 0.722)])
def test_random_mask_large_statistics(size, expected):
    ratios = _hole_ratios(1000, size, seed=1234)
    assert abs(ratios.mean() - expected) < 0.02, ratios.mean()
    assert ratios.min() > 0.0 and ratios.max() < 1.0


def test_random_mask_small_variant_statistics():
    ratios = _hole_ratios(1000, 512, seed=1234, variant="small")
    assert abs(ratios.mean() - 0.396) < 0.03, ratios.mean()


def test_hole_range_respected():
    ratios = _hole_ratios(200, 128, seed=3, hole_range=(0.2, 0.4))
    assert np.all((ratios > 0.2) & (ratios < 0.4)), (ratios.min(), ratios.max())


def test_default_range_never_empty_or_full():
    ratios = _hole_ratios(300, 64, seed=4)
    assert np.all((ratios > 0.0) & (ratios < 1.0))


@pytest.mark.parametrize("hole_range", [(0.5, 0.5), (-0.1, 0.5), (0.2, 1.1), (0.6, 0.3)])
def test_invalid_hole_range(hole_range):
    with pytest.raises(ValueError, match="hole_range"):
        random_mask(32, hole_range=hole_range)


def test_invalid_variant_lists_valid_ones():
    with pytest.raises(ValueError, match="large.*small"):
        random_mask(32, variant="huge")


def test_reproducible_with_seed():
    a = random_mask(128, rng=np.random.default_rng(7))
    b = random_mask(128, rng=np.random.default_rng(7))
    c = random_mask(128, rng=np.random.default_rng(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_generator_sample_is_stable_and_picklable():
    gen = RandomMaskGenerator(hole_range=(0.1, 0.9), variant="small").at(96)
    clone = pickle.loads(pickle.dumps(gen))
    assert torch.equal(gen.sample(5), gen.sample(5))
    assert torch.equal(gen.sample(5), clone.sample(5))
    assert not torch.equal(gen.sample(5), gen.sample(6))
    assert gen(np.random.default_rng(0)).shape == (1, 96, 96)


def test_generator_validates_eagerly():
    with pytest.raises(ValueError, match="variant"):
        RandomMaskGenerator(variant="nope")


# --- load_mask -----------------------------------------------------------------------------


def _write_mask(path: Path, white: np.ndarray, mode: str = "L") -> Path:
    img = Image.fromarray(np.where(white, 255, 0).astype(np.uint8), "L").convert(mode)
    img.save(path)
    return path


@pytest.fixture
def white_square(tmp_path) -> tuple[Path, np.ndarray]:
    white = np.zeros((32, 40), dtype=bool)
    white[4:20, 10:30] = True  # 320 of 1280 pixels are white
    return _write_mask(tmp_path / "m.png", white), white


def test_load_mask_polarities_are_complementary(white_square):
    path, white = white_square
    known = load_mask(path, polarity="white_is_known")
    hole = load_mask(path, polarity="white_is_hole")
    assert known.shape == (1, 32, 40) and known.dtype == torch.float32
    assert torch.equal(known[0], torch.from_numpy(white).float())
    assert torch.equal(known + hole, torch.ones_like(known))
    assert mask_hole_ratio(hole) == pytest.approx(0.25)


def test_load_mask_rgba_and_rgb(tmp_path, white_square):
    _, white = white_square
    ref = load_mask(white_square[0], polarity="white_is_hole")
    for mode in ("RGBA", "RGB"):
        path = _write_mask(tmp_path / f"m_{mode}.png", white, mode)
        assert torch.equal(load_mask(path, polarity="white_is_hole"), ref)


def test_load_mask_resize(white_square):
    path, _ = white_square
    mask = load_mask(path, (64, 80), polarity="white_is_known")
    assert mask.shape == (1, 64, 80)
    assert set(mask.unique().tolist()) == {0.0, 1.0}  # NEAREST keeps it binary
    with pytest.raises(ValueError, match=r"m\.png.*32x40.*64x80"):
        load_mask(path, (64, 80), polarity="white_is_known", resize=False)
    assert load_mask(path, (32, 40), polarity="white_is_known", resize=False).shape[1:] == (32, 40)


def test_load_mask_polarity_required_and_validated(white_square):
    path, _ = white_square
    with pytest.raises(TypeError):
        load_mask(path)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="white_is_known.*white_is_hole"):
        load_mask(path, polarity="black_is_hole")


def test_load_mask_corrupt_file(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 200, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="broken.png"):
        load_mask(path, polarity="white_is_hole")


def test_load_mask_max_hole_ratio_trips_on_inverted_polarity(white_square):
    path, _ = white_square
    # 25% white: read as white_is_known it is 75% hole.
    assert mask_hole_ratio(load_mask(path, polarity="white_is_hole", max_hole_ratio=0.5)) == 0.25
    with pytest.raises(ValueError, match=r"m\.png.*0\.750.*white_is_hole"):
        load_mask(path, polarity="white_is_known", max_hole_ratio=0.5)


# --- MaskFolder ----------------------------------------------------------------------------


def test_mask_folder_empty_or_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="empty"):
        MaskFolder(tmp_path, polarity="white_is_hole")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        MaskFolder(tmp_path / "nowhere", polarity="white_is_hole")


def test_mask_folder_lists_recursively_sorted(tmp_path, white_square):
    _, white = white_square
    (tmp_path / "sub").mkdir()
    _write_mask(tmp_path / "sub" / "b.PNG", white)
    _write_mask(tmp_path / "a.jpg", white)
    (tmp_path / "notes.txt").write_text("not a mask")
    folder = MaskFolder(tmp_path, polarity="white_is_hole", size=16)
    assert [p.name for p in folder.files] == ["a.jpg", "m.png", "b.PNG"]
    assert len(folder) == 3
    assert folder[2].shape == (1, 16, 16)


def test_nvidia_irregular_masks_real_data():
    root = SHARED_DATA / "masks" / "nvidia_irregular_test"
    if not root.is_dir():
        pytest.skip(f"real mask data not available at {root}")
    folder = MaskFolder(root, polarity="white_is_hole")  # NVIDIA: white = hole, 512x512
    assert len(folder) >= 1
    for i in range(len(folder)):
        mask = folder[i]
        assert mask.shape == (1, 512, 512)
        assert 0.0 < mask_hole_ratio(mask) < 0.65, folder.files[i]


# --- alpha masks and known sets ------------------------------------------------------------


@pytest.mark.parametrize("colour", [(255, 255, 255), (0, 0, 0)])
def test_alpha_only_mask_reads_the_alpha_channel(tmp_path, colour):
    # One colour everywhere, the hole cut out as transparency (an editor's cut-out): grey
    # conversion ignores alpha and sees a blank mask; the alpha channel holds the shape.
    alpha = np.full((32, 40), 255, np.uint8)
    alpha[4:20, 10:30] = 0  # 320 of 1280 pixels transparent
    rgba = np.dstack([np.full((32, 40, 3), colour, np.uint8), alpha])
    path = tmp_path / "cutout.png"
    Image.fromarray(rgba, "RGBA").save(path)
    known = load_mask(path, polarity="white_is_known")  # alpha as grey: transparent = black
    assert mask_hole_ratio(known) == pytest.approx(0.25)
    assert torch.equal(known[0], torch.from_numpy(alpha > 127).float())
    hole = load_mask(path, polarity="white_is_hole")  # opaque = white = hole
    assert mask_hole_ratio(hole) == pytest.approx(0.75)
    la = tmp_path / "cutout_la.png"
    Image.fromarray(rgba, "RGBA").convert("LA").save(la)
    assert torch.equal(load_mask(la, polarity="white_is_known"), known)


def test_rgba_with_varying_colour_keeps_the_grey_level(tmp_path, white_square):
    _, white = white_square
    rgba = np.dstack([np.repeat(np.where(white, 255, 0)[..., None], 3, 2), np.zeros_like(white)])
    rgba[..., 3] = 0
    rgba[0, 0, 3] = 255  # alpha varies too, but the colour carries the mask
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba.astype(np.uint8), "RGBA").save(path)
    mask = load_mask(path, polarity="white_is_known")
    assert torch.equal(mask[0], torch.from_numpy(white).float())


def test_judge_hole_ratios_flags_inverted_sets():
    nvidia = np.linspace(0.02, 0.58, 24)  # NVIDIA irregular, read the right way
    assert judge_hole_ratios(nvidia, "white_is_hole") is None
    inverted = judge_hole_ratios(1 - nvidia, "white_is_known")  # 70% hole: passes the 75% limit
    assert inverted is not None and "nvidia_irregular" in inverted
    assert "'white_is_hole'" in inverted and "30.0%" in inverted and "70.0%" in inverted
    # CoModGAN-style masks of 73% hole on average, spread 20-95%, read as white_is_hole: 27%.
    comod = np.array([0.2, 0.35, 0.6, 0.8, 0.85, 0.9, 0.9, 0.95, 0.9, 0.85, 0.8, 0.65])
    assert judge_hole_ratios(comod, "white_is_known") is None
    msg = judge_hole_ratios(1 - comod, "white_is_hole")
    assert msg is not None and "comodgan" in msg
    assert f"{(1 - comod).mean():.1%}" in msg and f"{comod.mean():.1%}" in msg
    # A named set is checked on its own terms.
    assert judge_hole_ratios(comod, "white_is_known", mask_set="comodgan") is None
    named = judge_hole_ratios(nvidia, "white_is_known", mask_set="nvidia_irregular")
    assert named is not None and "white_is_hole" in named
    with pytest.raises(ValueError, match="nvidia_irregular"):
        judge_hole_ratios(nvidia, "white_is_hole", mask_set="nvidia")
    assert {s.polarity for s in KNOWN_MASK_SETS.values()} == {"white_is_hole", "white_is_known"}


def test_nvidia_irregular_masks_real_data_fit_the_table():
    root = SHARED_DATA / "masks" / "nvidia_irregular_test"
    if not root.is_dir():
        pytest.skip(f"real mask data not available at {root}")
    folder = MaskFolder(root, polarity="white_is_hole", size=64)
    ratios = np.array([mask_hole_ratio(folder[i]) for i in range(len(folder))])
    assert judge_hole_ratios(ratios, "white_is_hole") is None
    assert judge_hole_ratios(ratios, "white_is_hole", mask_set="nvidia_irregular") is None
    assert "nvidia_irregular" in judge_hole_ratios(1 - ratios, "white_is_known")


def test_deepfill_rgba_masks_real_data_unchanged():
    root = SHARED_DATA / "places" / "deepfillv2_places2" / "masks"
    if not root.is_dir():
        pytest.skip(f"real mask data not available at {root}")
    expected = {"case1_mask.png": 0.098, "case3_mask.png": 0.059, "case4_mask.png": 0.138}
    for name, ratio in expected.items():  # RGBA with varying colour: read as grey, white = hole
        mask = load_mask(root / name, polarity="white_is_hole")
        assert mask_hole_ratio(mask) == pytest.approx(ratio, abs=0.002), name


# ----------------------------------------------------------------------------- GLCIC rectangles


def _rectangle(mask: torch.Tensor) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the hole, asserting that it is exactly one rectangle."""
    ys, xs = torch.nonzero(mask[0] == 0, as_tuple=True)
    top, left = int(ys.min()), int(xs.min())
    h, w = int(ys.max()) - top + 1, int(xs.max()) - left + 1
    assert len(ys) == h * w  # every pixel of the bounding box is hole
    return top, left, h, w


@pytest.mark.parametrize(
    "size,expected",
    [(160, ((46, 92), (46, 92))), (64, ((18, 37), (18, 37))), ((256, 128), ((74, 147), (37, 74)))],
)
def test_rectangle_sides_scale_with_each_side(size, expected) -> None:
    assert rectangle_sides(size) == expected


@pytest.mark.parametrize("size", [160, 64, (64, 128)])
def test_rectangle_masks_sizes_in_range_inside_the_image(size) -> None:
    generator = RectangleMaskGenerator().at(size)
    (h_lo, h_hi), (w_lo, w_hi) = rectangle_sides(size)
    heights, widths, tops, lefts = [], [], [], []
    for seed in range(300):
        mask = generator.sample(seed)
        assert mask.dtype == torch.float32 and mask.shape == (1, *generator.size)
        assert set(mask.unique().tolist()) == {0.0, 1.0}
        top, left, h, w = _rectangle(mask)
        assert h_lo <= h <= h_hi and w_lo <= w <= w_hi
        assert top + h <= generator.size[0] and left + w <= generator.size[1]  # wholly inside
        heights.append(h), widths.append(w), tops.append(top), lefts.append(left)
    # Uniform sides reach both ends; placement reaches both borders.
    assert min(heights) <= h_lo + 2 and max(heights) >= h_hi - 2
    assert min(widths) <= w_lo + 2 and max(widths) >= w_hi - 2
    assert min(tops) == 0 or min(tops) <= 2
    assert min(lefts) <= 2


def test_rectangle_masks_are_deterministic_by_seed_and_picklable() -> None:
    generator = RectangleMaskGenerator().at(64)
    assert torch.equal(generator.sample(7), generator.sample(7))
    assert not all(torch.equal(generator.sample(7), generator.sample(s)) for s in range(8, 12))
    a = rectangle_mask(64, np.random.default_rng([0, 1, 5]))
    b = pickle.loads(pickle.dumps(generator))(np.random.default_rng([0, 1, 5]))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="sides"):
        RectangleMaskGenerator(sides=(92, 46))


# --- mask sources (what a datamodule takes by class_path) --------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        RandomMaskGenerator(hole_range=(0.2, 0.6), variant="small"),
        RectangleMaskGenerator(sides=(8, 16), sides_at=32),
    ],
)
def test_a_mask_source_is_written_without_a_size_and_bound_to_one(source) -> None:
    with pytest.raises(ValueError, match="no size"):
        source(np.random.default_rng(0))
    bound = source.at((32, 48))
    assert bound is not source and source.size is None and bound.size == (32, 48)
    assert type(bound) is type(source) and bound.settings() == source.settings()
    assert bound.fixed(3, 7, seed=2).shape == (1, 32, 48)
    assert torch.equal(bound.fixed(3, 7, seed=2), bound.sample(2 * 1_000_003 + 7))
    # The plain form (kept in hparams) makes the same source back.
    plain = source.plain()
    assert plain["class_path"] == f"i2i.data.masks.{type(source).__name__}"
    again = mask_source(plain).at((32, 48))
    assert torch.equal(again.sample(5), bound.sample(5))
    short = mask_source({"class_path": type(source).__name__, "init_args": plain["init_args"]})
    assert short.settings() == source.settings()


def test_a_class_path_that_is_no_mask_source_is_refused() -> None:
    with pytest.raises(ValueError, match="'os.system' names no mask source"):
        mask_source({"class_path": "os.system", "init_args": {}})
    with pytest.raises(ValueError, match="'Nope' names no mask source"):
        mask_source({"class_path": "Nope"})


def test_mask_files_draw_uniformly_and_fix_validation_by_position(tmp_path) -> None:
    for i, width in enumerate((4, 8, 12)):  # white = hole: the left 4, 8, 12 columns of 32
        known = np.full((32, 32), 0, np.uint8)
        known[:, :width] = 255
        Image.fromarray(known).save(tmp_path / f"m{i}.png")
    files = MaskFiles(str(tmp_path), "white_is_hole")
    with pytest.raises(ValueError, match="no size"):
        files.fixed(0, 0, seed=0)
    bound = files.at(16)  # resized with NEAREST
    holes = [1 - bound.fixed(p, 99, seed=0).mean().item() for p in range(4)]
    assert holes == [0.125, 0.25, 0.375, 0.125]  # file p mod 3, whatever the index and seed
    drawn = {1 - bound(np.random.default_rng(s)).mean().item() for s in range(30)}
    assert drawn == {0.125, 0.25, 0.375}
    assert bound.plain() == {
        "class_path": "i2i.data.masks.MaskFiles",
        "init_args": {
            "folder": str(tmp_path),
            "polarity": "white_is_hole",
            "check_polarity": True,
            "mask_set": None,
        },
    }
    with pytest.raises(FileNotFoundError, match="no mask files"):
        MaskFiles(str(tmp_path / "none"), "white_is_hole").at(16)
