"""`i2i inpaint` and `i2i translate` as the user runs them (the console script in a subprocess;
its function in-process for the variants not marked slow):
folders, masks matched by relative path, corrupt inputs skipped and named, outputs never overwritten
silently, inverted masks caught; the bytes are those of the in-process API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from i2i.data.mask_drawing import random_mask
from i2i.data.masks import load_mask
from i2i.inference.model import load_model
from i2i.inference.run import inpaint_image, translate_image
from i2i.seeding import numpy_rng
from tests.clirun import MODES, run_i2i


def png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def hole_mask(h: int, w: int, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """A white_is_hole mask file's pixels: 255 in the boxes (top, left, height, width)."""
    m = np.zeros((h, w), np.uint8)
    for t, left, bh, bw in boxes:
        m[t : t + bh, left : left + bw] = 255
    return m


def test_inpaint_folders_skip_corrupt_inputs_and_never_overwrite(model_files, tmp_path):
    rng = np.random.default_rng(0)
    images, masks, out = tmp_path / "images", tmp_path / "masks", tmp_path / "out"
    a = png(images / "a.png", rng.integers(0, 256, (301, 187, 3), dtype=np.uint8))
    b = png(images / "sub" / "b.jpg", rng.integers(0, 256, (120, 333, 3), dtype=np.uint8))
    (images / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # corrupt
    png(masks / "a.png", hole_mask(301, 187, [(10, 20, 9, 13), (200, 100, 31, 7)]))
    png(masks / "sub" / "b.png", hole_mask(120, 333, [(50, 300, 20, 20)]))
    png(masks / "c.png", hole_mask(8, 8, [(0, 0, 2, 2)]))
    model = model_files["inpainting"]
    args = [
        "inpaint",
        str(model),
        "--image",
        str(images),
        "--mask",
        str(masks),
        "--mask-polarity",
        "white_is_hole",
        "--out",
        str(out),
        "--seed",
        "3",
        "--num-samples",
        "2",
        "--panel",
    ]
    code, text = run_i2i("in_process", *args)
    assert code == 1, text  # one input failed
    assert f"skipped {images / 'c.png'}" in text
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == [
        "a_0.png",
        "a_1.png",
        "a_panel.png",
        "sub/b_0.png",
        "sub/b_1.png",
        "sub/b_panel.png",
    ]

    # The same bytes as the API; inputs are indexed in sorted order: a.png, c.png, sub/b.jpg.
    loaded = load_model(model)
    for index, (image_file, mask_file, name) in enumerate(
        [(a, masks / "a.png", "a"), (None, None, None), (b, masks / "sub" / "b.png", "sub/b")]
    ):
        if image_file is None:
            continue
        image = np.asarray(Image.open(image_file).convert("RGB"))
        known = load_mask(mask_file, polarity="white_is_hole")[0].numpy() > 0.5
        expected = inpaint_image(loaded, image, known, seed=3, num_samples=2, index=index)
        for k in range(2):
            got = read(out / f"{name}_{k}.png")
            assert np.array_equal(got, expected[k]), (name, k)
            assert np.array_equal(got[known], image[known])
        assert not np.array_equal(expected[0], expected[1])
        panel = read(out / f"{name}_panel.png")
        assert panel.shape == (image.shape[0] + 4, 4 * image.shape[1] + 10, 3)

    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    code, text = run_i2i("in_process", *args)
    assert code == 1
    assert "already exists" in text and "--overwrite" in text and str(out / "a_0.png") in text
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == before


@pytest.mark.parametrize("mode", MODES)
def test_random_masks_the_resize_fit_and_overwrite(model_files, tmp_path, mode):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (97, 61, 3), dtype=np.uint8)
    path = png(tmp_path / "photo.png", image)
    out = tmp_path / "out"
    png(out / "photo.png", np.zeros((4, 4, 3), np.uint8))  # an old output
    result = run_i2i(
        mode,
        "inpaint",
        str(model_files["inpainting"]),
        "--image",
        str(path),
        "--mask",
        "random",
        "--out",
        str(out),
        "--seed",
        "9",
        "--fit",
        "resize",
        "--truncation",
        "0.5",
        "--overwrite",
    )
    assert result[0] == 0, result[1]
    known = random_mask((97, 61), (0.1, 0.5), numpy_rng(9, 0))[0].numpy() > 0.5
    expected = inpaint_image(
        load_model(model_files["inpainting"]),
        image,
        known,
        seed=9,
        truncation_psi=0.5,
        fit="resize",
    )[0]
    got = read(out / "photo.png")
    assert np.array_equal(got, expected) and np.array_equal(got[known], image[known])
    assert (got[~known] != image[~known]).any()


@pytest.mark.parametrize("mode", MODES)
def test_inverted_mask_polarity_is_caught(model_files, tmp_path, mode):
    image = png(tmp_path / "x.png", np.full((40, 50, 3), 128, np.uint8))
    # A white_is_known mask (small black hole) read as white_is_hole: 97% hole.
    mask = png(tmp_path / "x_mask.png", 255 - hole_mask(40, 50, [(10, 10, 6, 8)]))
    result = run_i2i(
        mode,
        "inpaint",
        str(model_files["inpainting"]),
        "--image",
        str(image),
        "--mask",
        str(mask),
        "--mask-polarity",
        "white_is_hole",
        "--out",
        str(tmp_path / "out"),
    )
    assert result[0] == 1
    assert str(mask) in result[1] and "polarity is probably inverted" in result[1]
    assert "white_is_known" in result[1]
    assert not (tmp_path / "out" / "x.png").exists()


@pytest.mark.parametrize("mode", MODES)
def test_mask_files_need_a_polarity(model_files, tmp_path, mode):
    image = png(tmp_path / "x.png", np.full((40, 50, 3), 128, np.uint8))
    mask = png(tmp_path / "x_mask.png", hole_mask(40, 50, [(10, 10, 6, 8)]))
    no_polarity = run_i2i(
        mode,
        "inpaint",
        str(model_files["inpainting"]),
        "--image",
        str(image),
        "--mask",
        str(mask),
        "--out",
        str(tmp_path / "out"),
    )
    assert no_polarity[0] == 1 and "--mask-polarity" in no_polarity[1]


@pytest.mark.parametrize("mode", MODES)
def test_translate_edge_maps(model_files, tmp_path, mode):
    drawing = np.full((70, 90), 255, np.uint8)
    drawing[10:60, 30:33] = 0
    path = png(tmp_path / "in" / "shoe.png", drawing)
    out = tmp_path / "out"
    result = run_i2i(
        mode,
        "translate",
        str(model_files["edges"]),
        "--input",
        str(tmp_path / "in"),
        "--out",
        str(out),
        "--seed",
        "2",
        "--num-samples",
        "2",
        "--panel",
    )
    assert result[0] == 0, result[1]
    expected = translate_image(
        load_model(model_files["edges"]),
        np.asarray(Image.open(path).convert("RGB")),
        seed=2,
        num_samples=2,
    )
    for k in range(2):
        assert np.array_equal(read(out / f"shoe_{k}.png"), expected[k])
    assert read(out / "shoe_panel.png").shape == (74, 3 * 90 + 8, 3)


@pytest.mark.parametrize("mode", MODES)
def test_translate_label_maps(model_files, tmp_path, mode):
    label = np.zeros((40, 64), np.uint8)
    label[:, 20:] = 2
    label[30:, :] = 4
    path = png(tmp_path / "street.png", label)
    out = tmp_path / "out"
    result = run_i2i(
        mode, "translate", str(model_files["labels"]), "--input", str(path), "--out", str(out)
    )
    assert result[0] == 0, result[1]
    expected = translate_image(load_model(model_files["labels"]), label, seed=0)[0]
    assert np.array_equal(read(out / "street.png"), expected)
    # A class the model does not know: named and skipped.
    bad = png(tmp_path / "bad" / "b.png", np.full((8, 8), 9, np.uint8))
    result = run_i2i(
        mode, "translate", str(model_files["labels"]), "--input", str(bad), "--out", str(out)
    )
    assert result[0] == 1 and str(bad) in result[1] and "outside 0..4" in result[1]


@pytest.mark.parametrize("mode", MODES)
def test_translate_edges_from_photos(model_files, tmp_path, mode):
    photo = np.zeros((48, 40, 3), np.uint8)
    photo[10:30, 8:25] = (200, 180, 40)  # a box: Canny finds its outline
    path = png(tmp_path / "p.png", photo)
    out = tmp_path / "out"
    result = run_i2i(
        mode,
        "translate",
        str(model_files["edges"]),
        "--input",
        str(path),
        "--out",
        str(out),
        "--edges-from-photo",
    )
    assert result[0] == 0, result[1]
    expected = translate_image(load_model(model_files["edges"]), photo, edges_from_photo=True)[0]
    assert np.array_equal(read(out / "p.png"), expected)
    wrong = run_i2i(
        mode,
        "translate",
        str(model_files["inpainting"]),
        "--input",
        str(path),
        "--out",
        str(tmp_path / "o2"),
    )
    assert wrong[0] == 1 and "is a model for inpainting" in wrong[1]
