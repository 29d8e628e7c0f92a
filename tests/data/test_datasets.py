"""Tests for image listing, decoding, cropping, splits and ImageFolderDataset."""

from __future__ import annotations

import io
import logging
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from i2i.data import batch
from i2i.data.batch import validate_sample
from i2i.data.crop import check_resolution
from i2i.data.datasets import FileDataset, ImageFolderDataset, load_image
from i2i.data.folders import IMAGE_EXTENSIONS, find_split_folders, list_images, split_files
from i2i.data.image_options import ImageOptions
from i2i.errors import CorruptImageError

FACES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "faces"


def _noise(h: int, w: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    return Image.fromarray(arr[..., 0] if channels == 1 else arr, mode)


def _save(img: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def _check_image(x: torch.Tensor, h: int = 64, w: int = 64) -> None:
    assert x.shape == (3, h, w)
    assert x.dtype == torch.float32
    assert x.min() >= -1.0 and x.max() <= 1.0


# ----------------------------------------------------------------------------- listing


def test_list_images_recursive_filtered_sorted(tmp_path: Path) -> None:
    made = [
        _save(_noise(8, 8), tmp_path / "b.png"),
        _save(_noise(8, 8), tmp_path / "a.JPG"),
        _save(_noise(8, 8), tmp_path / "sub" / "deep" / "c.webp"),
        _save(_noise(8, 8), tmp_path / "sub" / "d.Jpeg"),
        _save(_noise(8, 8), tmp_path / "e.bmp"),
    ]
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub" / "labels.npy").write_bytes(b"\x00")
    _save(_noise(8, 8), tmp_path / ".hidden" / "x.png")
    found = list_images(tmp_path)
    assert found == sorted(made)
    assert [p.name for p in found] == ["a.JPG", "b.png", "e.bmp", "d.Jpeg", "c.webp"]


def test_list_images_missing_folder_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))) as info:
        list_images(missing)
    assert "does not exist" in str(info.value)


def test_list_images_empty_folder_names_it_and_extensions(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path))) as info:
        list_images(tmp_path)
    msg = str(info.value)
    assert "no images" in msg
    assert all(ext in msg for ext in IMAGE_EXTENSIONS)


# ----------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16"])
def test_image_modes_load_as_rgb(tmp_path: Path, mode: str) -> None:
    base = _noise(40, 48)
    if mode == "RGBA":
        img = _noise(40, 48, mode="RGBA")
        img.putalpha(0)  # fully transparent: the colour must survive, alpha is just dropped
    elif mode == "P":
        img = base.quantize(16)
    elif mode == "I;16":
        img = Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257)
    else:
        img = base.convert(mode)
    path = _save(img, tmp_path / ("x.jpg" if mode == "CMYK" else "x.png"))
    loaded = load_image(path)
    assert loaded.mode == "RGB" and loaded.size == (48, 40)
    if mode == "RGBA":
        assert np.array_equal(np.asarray(loaded), np.asarray(img)[..., :3])
    if mode in ("L", "I;16"):  # 16-bit grey is rescaled, not clipped to white
        arr = np.asarray(loaded)
        assert np.array_equal(arr[..., 0], arr[..., 2])
        assert np.array_equal(arr[..., 0], np.asarray(base.convert("L")))

    ds = ImageFolderDataset(tmp_path, 32, train=False)
    sample = ds[0]
    _check_image(sample[batch.IMAGE], 32, 32)
    validate_sample(sample, str(path))


def test_corrupt_file_skipped_with_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(np.random.default_rng(0).bytes(2000))
    _save(_noise(64, 64), tmp_path / "good.png")
    ds = ImageFolderDataset(tmp_path, 64, images=ImageOptions(on_corrupt="skip"))
    assert ds.files[0] == bad
    with caplog.at_level(logging.WARNING), pytest.warns(UserWarning, match="bad.jpg"):
        sample = ds[0]
    assert any("bad.jpg" in r.getMessage() for r in caplog.records)
    _check_image(sample[batch.IMAGE])
    assert sample[batch.INDEX] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # known-bad files are skipped quietly the second time
        assert ds[0][batch.INDEX] == 1


def test_corrupt_file_raises_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(np.random.default_rng(0).bytes(2000))
    _save(_noise(64, 64), tmp_path / "good.png")
    ds = ImageFolderDataset(tmp_path, 64, images=ImageOptions(on_corrupt="raise"))
    with pytest.raises(CorruptImageError, match=re.escape(str(bad))) as info:
        ds[0]
    assert "images.on_corrupt='skip'" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_truncated_png_is_corrupt(tmp_path: Path) -> None:
    good = _save(_noise(64, 64), tmp_path / "full.png")
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CorruptImageError, match="cut.png"):
        load_image(cut)


def test_all_corrupt_gives_up(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.png"):
        (tmp_path / name).write_bytes(b"not an image at all")
    ds = ImageFolderDataset(tmp_path, 64, images=ImageOptions(on_corrupt="skip"))
    with pytest.warns(UserWarning), pytest.raises(CorruptImageError, match="All 2 images"):
        ds[1]


def test_small_image_errors_or_upscales(tmp_path: Path) -> None:
    path = _save(_noise(32, 48), tmp_path / "tiny.png")
    ds = ImageFolderDataset(tmp_path, 64)
    with pytest.raises(ValueError, match="tiny.png") as info:
        ds[0]
    msg = str(info.value)
    assert "32x48" in msg and "64x64" in msg
    assert "lower resolution" in msg and "images.small_images='upscale'" in msg
    assert not isinstance(info.value, CorruptImageError)
    up = ImageFolderDataset(tmp_path, 64, images=ImageOptions(small_images="upscale"), train=False)
    _check_image(up[0][batch.IMAGE])
    assert path.exists()


@pytest.mark.parametrize(
    ("kwargs", "word"), [({"on_corrupt": "ignore"}, "on_corrupt"), ({"small_images": "x"}, "small")]
)
def test_invalid_options_rejected(tmp_path: Path, kwargs: dict, word: str) -> None:
    _save(_noise(64, 64), tmp_path / "a.png")
    with pytest.raises(ValueError, match=word):
        ImageFolderDataset(tmp_path, 64, images=ImageOptions(**kwargs))


# ----------------------------------------------------------------------------- geometry


def test_check_resolution() -> None:
    assert check_resolution(64) == (64, 64)
    assert check_resolution((256, 512)) == (256, 512)
    assert check_resolution([512, 128]) == (512, 128)
    with pytest.raises(ValueError, match=r"100.*64 or 128"):
        check_resolution(100)
    with pytest.raises(ValueError, match="aspect"):
        check_resolution((64, 512))
    for bad in (2, 0, (64, 48), "64", 64.0, (64,), True):
        with pytest.raises(ValueError):
            check_resolution(bad)


def test_rectangular_resolution_and_cover_resize(tmp_path: Path) -> None:
    _save(_noise(300, 200), tmp_path / "portrait.png")
    ds = ImageFolderDataset(tmp_path, (32, 64), train=False)
    _check_image(ds[0][batch.IMAGE], 32, 64)


def test_train_varies_val_deterministic(tmp_path: Path) -> None:
    # Wide image: the crop offset can vary horizontally; left/right halves differ.
    _save(_noise(64, 160, seed=3), tmp_path / "wide.png")
    val = ImageFolderDataset(tmp_path, 64, train=False)
    a, b = val[0][batch.IMAGE], val[0][batch.IMAGE]
    assert torch.equal(a, b)
    full = torch.from_numpy(np.array(Image.open(tmp_path / "wide.png"))).permute(2, 0, 1)
    centre = full[:, :, 48:112].float() / 127.5 - 1  # no resize needed: height already 64
    assert torch.allclose(a, centre)

    train = ImageFolderDataset(tmp_path, 64, train=True)
    torch.manual_seed(0)
    outs = [train[0][batch.IMAGE] for _ in range(16)]
    distinct = {o.numpy().tobytes() for o in outs}
    assert len(distinct) > 4
    torch.manual_seed(0)  # reproducible from the global torch seed
    again = [train[0][batch.IMAGE] for _ in range(16)]
    assert all(torch.equal(x, y) for x, y in zip(outs, again, strict=True))


def test_open_file_hook_reads_the_bytes_it_is_given(tmp_path: Path) -> None:
    """A dataset opens its files through `open_file` (the disk unless set): streaming shards
    set it to a record's bytes, which must decode as the file would."""
    path = _save(_noise(64, 96, seed=5), tmp_path / "a.png")
    dataset = ImageFolderDataset(tmp_path, 64, train=False)
    assert "open_file" not in vars(dataset)  # a class default: never written to datasets.json
    from_disk = dataset[0][batch.IMAGE]
    data, opened = path.read_bytes(), []
    path.unlink()  # from here on only the hook has the bytes
    dataset.open_file = lambda p: opened.append(p) or io.BytesIO(data)
    assert torch.equal(dataset[0][batch.IMAGE], from_disk) and opened == [path]
    with pytest.raises(FileNotFoundError):
        FileDataset.open_file(path)


def test_train_flip_only_when_enabled(tmp_path: Path) -> None:
    _save(_noise(64, 64, seed=5), tmp_path / "sq.png")  # square: the crop cannot vary
    ref = ImageFolderDataset(tmp_path, 64, train=False)[0][batch.IMAGE]
    torch.manual_seed(1)
    flips = [ImageFolderDataset(tmp_path, 64, train=True)[0][batch.IMAGE] for _ in range(20)]
    assert any(torch.equal(x, ref) for x in flips)
    assert any(torch.equal(x, ref.flip(-1)) for x in flips)
    no_flip = ImageFolderDataset(tmp_path, 64, train=True, images=ImageOptions(hflip=False))
    assert all(torch.equal(no_flip[0][batch.IMAGE], ref) for _ in range(10))


# ----------------------------------------------------------------------------- splits


def test_split_files_deterministic_disjoint_complete() -> None:
    files = [Path(f"img_{i:03d}.png") for i in range(100)]
    train, val = split_files(files, val_fraction=0.1, seed=0)
    assert len(val) == 10 and len(train) == 90
    assert set(train).isdisjoint(val)
    assert set(train) | set(val) == set(files)
    assert (train, val) == split_files(list(reversed(files)), val_fraction=0.1, seed=0)
    assert val != split_files(files, val_fraction=0.1, seed=1)[1]
    assert val != files[-10:]  # shuffled, not just the tail
    t2, v2 = split_files(files[:3], val_fraction=0.05)
    assert len(v2) == 1 and len(t2) == 2  # never an empty val split
    with pytest.raises(ValueError, match="val_fraction"):
        split_files(files, val_fraction=1.0)


def test_find_split_folders(tmp_path: Path) -> None:
    assert find_split_folders(tmp_path) is None
    (tmp_path / "train").mkdir()
    assert find_split_folders(tmp_path) is None
    (tmp_path / "Validation").mkdir()
    assert find_split_folders(tmp_path) == (tmp_path / "train", tmp_path / "Validation")
    (tmp_path / "val").mkdir()
    assert find_split_folders(tmp_path) == (tmp_path / "train", tmp_path / "val")
    assert find_split_folders(tmp_path / "missing") is None


# ----------------------------------------------------------------------------- batch contract


def test_validate_sample_names_source() -> None:
    good = {
        batch.IMAGE: torch.zeros(3, 8, 8),
        batch.MASK: torch.ones(1, 8, 8),
        batch.EDGES: -torch.ones(1, 8, 8),
        batch.LABEL: torch.zeros(8, 8, dtype=torch.int64),
        batch.INDEX: 3,
    }
    validate_sample(good, "ok.png")
    bad_cases = [
        {batch.IMAGE: torch.full((3, 8, 8), 2.0)},  # out of range
        {batch.IMAGE: torch.zeros(3, 8, 8, dtype=torch.float64)},
        {batch.IMAGE: torch.zeros(1, 8, 8)},
        {batch.MASK: torch.full((1, 8, 8), -1.0)},
        {batch.LABEL: torch.zeros(8, 8, dtype=torch.int32)},
        {batch.LABEL: torch.full((8, 8), -1, dtype=torch.int64)},
        {batch.INDEX: 1.5},
        {batch.IMAGE: torch.zeros(3, 8, 8), batch.MASK: torch.ones(1, 4, 4)},
        {"photo": torch.zeros(3, 8, 8)},
    ]
    for case in bad_cases:
        with pytest.raises(ValueError, match="some/file.png"):
            validate_sample(case, "some/file.png")


# ----------------------------------------------------------------------------- real data


def test_real_faces_folder_loads() -> None:
    if not FACES.is_dir():
        pytest.skip(f"real sample data not found at {FACES}")
    ds = ImageFolderDataset(FACES, 64, train=False, images=ImageOptions(on_corrupt="raise"))
    assert len(ds) >= 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for i in range(len(ds)):
            sample = ds[i]
            validate_sample(sample, str(ds.files[i]))
            _check_image(sample[batch.IMAGE])
            assert sample[batch.INDEX] == i
    rgba = [f for f in ds.files if Image.open(f).mode == "RGBA"]
    assert rgba, "the faces folder is expected to hold RGBA PNGs"


# ----------------------------------------------------------------------------- unreadable folders


def test_unreadable_subfolder_is_named_not_dropped_silently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # chmod 000 does not stop root (the tests may run as root), so the OS refusal is simulated
    # where os.walk meets it: os.scandir raising PermissionError for one folder.
    kept = _save(_noise(8, 8), tmp_path / "ok" / "a.png")
    _save(_noise(8, 8), tmp_path / "locked" / "b.png")
    locked = tmp_path / "locked"
    real_scandir = os.scandir

    def scandir(path=".", *args, **kwargs):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    with caplog.at_level(logging.WARNING), pytest.warns(UserWarning) as warned:
        files = list_images(tmp_path)
    assert files == [kept]
    msg = " ".join(str(w.message) for w in warned)
    assert str(locked) in msg and "Permission denied" in msg and "chmod" in msg
    assert any(str(locked) in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads folders despite chmod 000"
)
def test_chmod_000_subfolder_warns(tmp_path: Path) -> None:
    kept = _save(_noise(8, 8), tmp_path / "ok" / "a.png")
    locked = tmp_path / "locked"
    _save(_noise(8, 8), locked / "b.png")
    locked.chmod(0)
    try:
        with pytest.warns(UserWarning, match=re.escape(str(locked))):
            assert list_images(tmp_path) == [kept]
    finally:
        locked.chmod(0o755)


# ----------------------------------------------------------------------------- one image


@pytest.mark.parametrize(("n", "fraction", "why"), [(1, 0.05, "at least two"), (5, 0.0, "none")])
def test_split_without_validation_names_folder_count_and_fix(n, fraction, why) -> None:
    files = [Path(f"img_{i}.png") for i in range(n)]
    with pytest.raises(ValueError) as info:
        split_files(files, fraction, where="data/mine")
    msg = str(info.value)
    assert f"data/mine has {n} image(s)" in msg and why in msg
    assert "data/mine/val/" in msg


# ----------------------------------------------------------------------------- preprocessing


def _tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 127.5 - 1


def test_center_crop_without_resize_matches_slicing(tmp_path: Path) -> None:
    img = _noise(100, 80)
    _save(img, tmp_path / "a.png")
    ds = ImageFolderDataset(
        tmp_path, 64, train=True, images=ImageOptions(train_crop="center", resize="none")
    )
    ref = _tensor(np.asarray(img)[18:82, 8:72])  # (100-64)//2, (80-64)//2: no resize at all
    for seed in range(3):  # the centre crop does not move in training
        torch.manual_seed(seed)
        x = ds[0][batch.IMAGE]
        assert torch.equal(x, ref) or torch.equal(x, ref.flip(-1))
    rand = ImageFolderDataset(
        tmp_path, 64, train=True, images=ImageOptions(hflip=False, resize="none")
    )
    crops = set()
    for seed in range(8):
        torch.manual_seed(seed)
        crops.add(rand[0][batch.IMAGE].sum().item())
    assert len(crops) > 1, "train_crop='random' (the default) should move the crop"


def test_crop_or_pad_pads_black_like_tf(tmp_path: Path) -> None:
    img = _noise(40, 100)  # shorter than 64: padded; wider: centre-cropped
    _save(img, tmp_path / "a.png")
    ds = ImageFolderDataset(
        tmp_path,
        64,
        train=False,
        images=ImageOptions(resize="none", small_images="pad", train_crop="center"),
    )
    x = ds[0][batch.IMAGE]
    # Naive reference: tf.image.resize_with_crop_or_pad on uint8 pads with 0 -> -1 in [-1, 1].
    canvas = np.zeros((64, 64, 3), np.uint8)
    canvas[12:52] = np.asarray(img)[:, 18:82]  # pad (64-40)//2 = 12 on top, crop (100-64)//2
    assert torch.equal(x, _tensor(canvas))
    assert x[:, :12].eq(-1).all() and x[:, 52:].eq(-1).all()
    with pytest.raises(ValueError, match="smaller than the resolution"):
        ImageFolderDataset(tmp_path, 64, train=False, images=ImageOptions(resize="none"))[0]


@pytest.mark.parametrize("resize", ["cover", "none"])
def test_pil_bilinear_matches_pil(tmp_path: Path, resize: str) -> None:
    img = _noise(100, 80)
    _save(img, tmp_path / "a.png")
    small = "upscale" if resize == "none" else "error"
    options = ImageOptions(resize=resize, small_images=small)
    pil_options = ImageOptions(resize=resize, small_images=small, resample="pil_bilinear")
    pil = ImageFolderDataset(tmp_path, 32, train=False, images=pil_options)[0][batch.IMAGE]
    bic = ImageFolderDataset(tmp_path, 32, train=False, images=options)[0][batch.IMAGE]
    if resize == "cover":  # cover 32: 100x80 -> 40x32 (HxW), centre crop rows 4..36
        ref = np.asarray(img.resize((32, 40), Image.Resampling.BILINEAR))[4:36]
        assert torch.equal(pil, _tensor(ref))
        ref_bic = np.asarray(img.resize((32, 40), Image.Resampling.BICUBIC))[4:36]
        assert torch.equal(bic, _tensor(ref_bic))  # today's default: PIL bicubic (antialiased)
        assert not torch.equal(pil, bic)
    else:  # no resize: 100x80 is larger than 32, so both filters give the same plain crop
        assert torch.equal(pil, bic) and torch.equal(pil, _tensor(np.asarray(img)[34:66, 24:56]))


def test_preprocessing_options_validated(tmp_path: Path) -> None:
    _save(_noise(64, 64), tmp_path / "a.png")
    for kwargs, word in (
        ({"train_crop": "middle"}, "train_crop"),
        ({"resize": "stretch"}, "resize"),
        ({"resample": "lanczos"}, "resample"),
    ):
        with pytest.raises(ValueError, match=word):
            ImageFolderDataset(tmp_path, 64, images=ImageOptions(**kwargs))
