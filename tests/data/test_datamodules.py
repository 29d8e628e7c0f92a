"""InpaintingDataModule at setup: file checks, mask-folder checks, splits, preprocessing options,
and the data sections of the shipped configs."""

from __future__ import annotations

import importlib
import logging
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from i2i.config_files import load_config
from i2i.data import batch
from i2i.data.image_options import ImageOptions
from i2i.data.inpainting import InpaintingDataModule
from i2i.data.masks import MaskFiles, RectangleMaskGenerator
from i2i.errors import CorruptImageError

# Tiny tensors: on a busy 2-core machine, more threads than free cores mostly wait.
pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[2]
LOADER = dict(batch_size=1, val_batch_size=2, num_workers=0)


def _image(path: Path, h: int, w: int, seed: int = 0, **save) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, **save)
    return path


def _photos(root: Path, n: int, h: int = 64, w: int = 64) -> Path:
    for i in range(n):
        _image(root / f"p{i:02d}.png", h, w, seed=i)
    return root


def _masks(root: Path, holes: list[float], white_is_known: bool, size: int = 32) -> Path:
    """Mask files whose hole ratios are `holes` (the top rows are the hole), drawn with the
    given polarity."""
    root.mkdir(parents=True, exist_ok=True)
    for i, ratio in enumerate(holes):
        hole = np.zeros((size, size), bool)
        hole[: round(ratio * size)] = True
        white = ~hole if white_is_known else hole
        Image.fromarray(np.where(white, 255, 0).astype(np.uint8)).save(root / f"m{i:02d}.png")
    return root


# ----------------------------------------------------------------------------- file checks


def test_small_images_found_at_setup_listing_files_sizes_and_fix(tmp_path: Path) -> None:
    root = _photos(tmp_path / "imgs", 3)
    for i in range(12):
        _image(root / "small" / f"s{i:02d}.png", 20, 30, seed=i)
    dm = InpaintingDataModule(str(root), resolution=64, val_fraction=0.3, **LOADER)
    with pytest.raises(ValueError) as info:
        dm.setup("fit")  # before any sample is drawn
    msg = str(info.value)
    assert "12 image(s) smaller than the resolution 64x64" in msg
    assert "s00.png (20x30)" in msg and "... and 2 more" in msg  # first 10 named, then a count
    assert "images: {small_images: upscale}" in msg and "fit 16" in msg
    assert not isinstance(info.value, CorruptImageError)
    upscale = ImageOptions(small_images="upscale")
    ok = InpaintingDataModule(str(root), resolution=64, val_fraction=0.3, images=upscale)
    ok.setup("fit")
    assert len(ok.train_dataset) + len(ok.val_dataset) == 15


def test_exif_rotation_counts_for_the_size_check(tmp_path: Path) -> None:
    # Stored 40 high x 80 wide; EXIF orientation 6 (rotate 90) makes it 80 high x 40 wide,
    # which covers (64, 32) (HxW); read without the tag it would be too small.
    exif = Image.Exif()
    exif[0x0112] = 6
    _image(tmp_path / "rot" / "a.jpg", 40, 80, exif=exif.tobytes())
    _image(tmp_path / "rot" / "b.jpg", 40, 80, seed=1, exif=exif.tobytes())
    dm = InpaintingDataModule(str(tmp_path / "rot"), resolution=(64, 32), val_fraction=0.5)
    dm.setup("fit")
    assert dm.val_dataset[0][batch.IMAGE].shape == (3, 64, 32)
    _image(tmp_path / "plain" / "a.jpg", 40, 80)
    _image(tmp_path / "plain" / "b.jpg", 40, 80, seed=1)
    plain = InpaintingDataModule(str(tmp_path / "plain"), resolution=(64, 32), val_fraction=0.5)
    with pytest.raises(ValueError, match=r"a\.jpg \(40x80\)"):
        plain.setup("fit")


def test_unreadable_header_skipped_at_setup_or_raised(tmp_path: Path) -> None:
    root = _photos(tmp_path / "imgs", 4)
    bad = root / "bad.jpg"
    bad.write_bytes(np.random.default_rng(0).bytes(500))
    dm = InpaintingDataModule(str(root), resolution=64, val_fraction=0.2, **LOADER)
    with pytest.warns(UserWarning, match=re.escape(str(bad))):
        dm.setup("fit")
    files = dm.train_dataset.files + dm.val_dataset.dataset.files
    assert bad not in files and len(files) == 4
    raise_ = ImageOptions(on_corrupt="raise")
    strict = InpaintingDataModule(str(root), resolution=64, val_fraction=0.2, images=raise_)
    with pytest.raises(CorruptImageError, match=re.escape(str(bad))) as info:
        strict.setup("fit")
    assert "images: {on_corrupt: skip}" in str(info.value)


def test_scan_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _photos(tmp_path / "imgs", 3)
    _image(root / "tiny.png", 20, 30)
    monkeypatch.setenv("I2I_SKIP_SCAN", "1")
    dm = InpaintingDataModule(str(root), resolution=64, val_fraction=0.3)
    dm.setup("fit")  # found only when drawn, as before
    tiny = dm.train_dataset.files.index(root / "tiny.png")
    with pytest.raises(ValueError, match="tiny.png"):
        dm.train_dataset[tiny]


# ----------------------------------------------------------------------------- one image


def test_one_image_says_validation_needs_two_or_a_val_folder(tmp_path: Path) -> None:
    root = _photos(tmp_path / "single", 1)
    dm = InpaintingDataModule(str(root), resolution=64, **LOADER)
    with pytest.raises(ValueError) as info:
        dm.setup("fit")
    msg = str(info.value)
    assert f"{root} has 1 image(s)" in msg and "at least two" in msg and f"{root}/val/" in msg
    assert "file list is empty" not in msg


# ----------------------------------------------------------------------------- mask folders


def _dm(tmp_path: Path, masks: Path, polarity: str, **kwargs) -> InpaintingDataModule:
    root = _photos(tmp_path / "imgs", 4)
    return InpaintingDataModule(
        str(root),
        resolution=32,
        val_fraction=0.5,
        masks=MaskFiles(str(masks), polarity, **kwargs),
        **LOADER,
    )


def test_masks_hiding_nothing_stop_with_causes(tmp_path: Path) -> None:
    masks = _masks(tmp_path / "blank", [0.0] * 5, white_is_known=True)
    dm = _dm(tmp_path, masks, "white_is_known")
    with pytest.raises(ValueError) as info:
        dm.setup("fit")
    msg = str(info.value)
    assert str(masks) in msg and "0.00% hole" in msg and "hide almost nothing" in msg
    assert "alpha" in msg and "polarity" in msg and "'white_is_hole' would give 100.0%" in msg


def test_alpha_cutout_masks_are_read_from_alpha(tmp_path: Path) -> None:
    # White everywhere, the hole transparent: read as grey they hide nothing (the error above).
    root = tmp_path / "cutouts"
    root.mkdir()
    for i in range(4):
        alpha = np.full((32, 32), 255, np.uint8)
        alpha[: 8 + 2 * i] = 0
        rgba = np.dstack([np.full((32, 32, 3), 255, np.uint8), alpha])
        Image.fromarray(rgba, "RGBA").save(root / f"m{i}.png")
    dm = _dm(tmp_path, root, "white_is_known")
    dm.setup("fit")
    masks = dm.train_masks()
    ratio = 1 - float(masks(np.random.default_rng(0)).mean())
    assert ratio in {(8 + 2 * i) / 32 for i in range(4)}


def test_every_mask_folder_logs_its_hole_ratio(tmp_path: Path, caplog) -> None:
    masks = _masks(tmp_path / "nv", [0.05, 0.2, 0.35, 0.5], white_is_known=False)
    dm = _dm(tmp_path, masks, "white_is_hole")
    with caplog.at_level(logging.INFO, logger="i2i.data"), warnings.catch_warnings():
        warnings.simplefilter("error")  # plausible NVIDIA-like masks: no warning
        dm.setup("fit")
    lines = [r.getMessage() for r in caplog.records if str(masks) in r.getMessage()]
    assert lines and "27.3%" in lines[0] and "'white_is_hole'" in lines[0]
    assert "'white_is_known'" in lines[0] and "72.7%" in lines[0]


def test_masks_read_with_the_wrong_polarity_warn(tmp_path: Path) -> None:
    # CoModGAN-style masks (white = known) of ~73% hole, configured as white_is_hole: 27% hole,
    # under the 75% error, so only the known-set table can tell.
    holes = [0.2, 0.35, 0.6, 0.8, 0.85, 0.9, 0.9, 0.95, 0.9, 0.85, 0.8, 0.65]
    masks = _masks(tmp_path / "comod", holes, white_is_known=True)
    dm = _dm(tmp_path, masks, "white_is_hole")
    with pytest.warns(UserWarning) as warned:
        dm.setup("fit")
    msg = " ".join(str(w.message) for w in warned)
    assert str(masks) in msg and "white_is_hole" in msg and "comodgan" in msg
    mean = float(np.mean([round(h * 32) / 32 for h in holes]))
    assert f"{1 - mean:.1%}" in msg and f"{mean:.1%}" in msg
    quiet = _dm(tmp_path, masks, "white_is_known")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet.setup("fit")


def test_mask_options_validated(tmp_path: Path) -> None:
    masks = _masks(tmp_path / "m", [0.3], white_is_known=False)
    with pytest.raises(ValueError, match="nvidia_irregular"):
        _dm(tmp_path, masks, "white_is_hole", mask_set="nvidia")
    with pytest.raises(ValueError, match="polarity 'black_is_hole'"):
        _dm(tmp_path, masks, "black_is_hole")
    with pytest.raises(ValueError, match="need a polarity: 'white_is_hole'"):
        MaskFiles(str(masks))


# ----------------------------------------------------------------------------- preprocessing


def test_preprocessing_options_reach_both_datasets(tmp_path: Path) -> None:
    root = _photos(tmp_path / "imgs", 4, h=80, w=100)
    dm = InpaintingDataModule(
        str(root),
        resolution=64,
        val_fraction=0.5,
        images=ImageOptions(
            train_crop="center",
            resize="none",
            resample="pil_bilinear",
            small_images="pad",
            hflip=False,
        ),
        **LOADER,
    )
    dm.setup("fit")
    for ds in (dm.train_dataset, dm.val_dataset.dataset):
        assert (ds.train_crop, ds.resize, ds.resample, ds.small_images) == (
            "center",
            "none",
            "pil_bilinear",
            "pad",
        )
    path = dm.train_dataset.files[0]
    ref = np.asarray(Image.open(path))[8:72, 18:82]  # centre crop, no resize
    ref = torch.from_numpy(ref.copy()).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.equal(dm.train_dataset[0][batch.IMAGE], ref)
    with pytest.raises(ValueError, match="train_crop"):
        InpaintingDataModule(str(root), images={"train_crop": "centre"})


# ----------------------------------------------------------------------------- configs


def _data_section(name: str) -> dict:
    return load_config(REPO / "configs" / name)["data"]


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_config_data_sections_instantiate(name: str) -> None:
    data = _data_section(name)
    module, cls = data["class_path"].rsplit(".", 1)
    getattr(importlib.import_module(module), cls)(**data.get("init_args", {}))


def test_paper_configs_use_the_official_preprocessing() -> None:
    places = _data_section("places512.yaml")["init_args"]["images"]
    assert (places["train_crop"], places["resize"], places["resample"]) == (
        "center",
        "none",
        "pil_bilinear",
    )
    assert places["small_images"] == "pad" and places["hflip"] is False
    for name in ("ffhq512.yaml", "celebahq256.yaml"):
        args = _data_section(name)["init_args"]["images"]
        assert args["resample"] == "pil_bilinear" and args["hflip"] is True
    for name in ("edges2shoes.yaml", "edges2handbags.yaml"):
        args = _data_section(name)["init_args"]
        assert args["edges_channels"] == 3 and args["images"]["resample"] == "pil_bilinear"
    demo = _data_section("demo.yaml")["init_args"]
    assert not {"train_crop", "resize", "resample"} & set(demo.get("images", {}))


def test_glcic_preprocessing_160_centre_crops_and_rectangles(tmp_path: Path) -> None:
    # CelebA's aligned 178x218 (WxH) images, centre-cropped to 160 without resizing.
    for i in range(3):
        _image(tmp_path / "train" / f"{i}.png", 218, 178, seed=i)
    _image(tmp_path / "val" / "0.png", 218, 178, seed=9)
    with pytest.raises(ValueError, match="power of two"):
        InpaintingDataModule(str(tmp_path), resolution=160, **LOADER)
    celeba = _data_section("glcic_celeba.yaml")["init_args"]
    images = {k: celeba["images"][k] for k in ("resize", "train_crop", "hflip")}
    dm = InpaintingDataModule(
        str(tmp_path),
        resolution=160,
        resolution_multiple=celeba["resolution_multiple"],
        images=images,
        masks=RectangleMaskGenerator(),
        **LOADER,
    )
    dm.setup("fit")
    source = np.asarray(Image.open(tmp_path / "train" / "0.png"), dtype=np.float32)
    crop = source[29:189, 9:169] / 127.5 - 1  # (218 - 160) / 2 = 29, (178 - 160) / 2 = 9
    index = [p.name for p in dm.train_dataset.files].index("0.png")
    image = dm.train_dataset[index][batch.IMAGE]
    np.testing.assert_allclose(image.permute(1, 2, 0).numpy(), crop, atol=1e-5)
    mask = dm.val_dataset[0][batch.MASK]
    assert mask.shape == (1, 160, 160)
    ys, xs = torch.nonzero(mask[0] == 0, as_tuple=True)
    h, w = int(ys.max() - ys.min()) + 1, int(xs.max() - xs.min()) + 1
    assert len(ys) == h * w and 46 <= h <= 92 and 46 <= w <= 92
    with pytest.raises(TypeError, match="mask_shape"):  # moved into `masks`
        InpaintingDataModule(mask_shape="circle", **LOADER)
