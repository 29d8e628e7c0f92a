"""benchmarks.real_inpainting: the selection, each source's mask polarity, the scores against a
naive reference, and the script end to end on a tiny made-up folder (and on ../shared/data)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import real_inpainting as ri
from tests.conftest import shared_data

REPO = Path(__file__).resolve().parents[2]
# What white is in each source's masks, as the MANIFEST's notes say (written out here, not read
# from SOURCES, so that a swapped polarity there fails).
WHITE_IS = {
    "places/migan_places256": "known",
    "places/fcf_places256": "hole",
    "faces/migan_ffhq256": "known",
    "faces/fcf_celebahq256": "hole",
}


def white_top(h: int, w: int, mode: str) -> Image.Image:
    """A mask file whose top half is white, in a mode the sources use (L, RGB, opaque RGBA)."""
    grey = np.zeros((h, w), np.uint8)
    grey[: h // 2] = 255
    if mode == "L":
        return Image.fromarray(grey)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    if mode == "RGB":
        return Image.fromarray(rgb)
    alpha = np.full((h, w, 1), 255, np.uint8)
    return Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA")


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_each_source_mask_is_read_with_its_own_polarity(tmp_path, mode):
    assert {s.folder for s in ri.SOURCES} == set(WHITE_IS)
    for source in ri.SOURCES:
        path = tmp_path / f"{source.short}_{source.group}.png"
        white_top(8, 6, mode).save(path)
        known = ri.known_of(path, source.polarity)
        top_known = WHITE_IS[source.folder] == "known"
        assert known.dtype == bool and known.shape == (8, 6)
        assert known[:4].all() == top_known and (~known[4:]).all() == top_known, source.folder


def make_folder(root: Path, side: int = 48, per_source: int = 2, seed: int = 0) -> dict:
    """A data folder in the shared layout: each source with `per_source` textured images and
    masks in its own polarity (a box hole), and a MANIFEST listing each mask's hole ratio.
    Returns {mask path under root: known (H, W) bool}."""
    rng = np.random.default_rng(seed)
    rows, knowns = [], {}
    for source in ri.SOURCES:
        for i in range(per_source):
            stem = f"img{i}"
            image = (rng.random((side, side, 3)) * 255).astype(np.uint8)
            image[:, : side // 2] = np.linspace(0, 255, side // 2, dtype=np.uint8)[None, :, None]
            known = np.ones((side, side), bool)
            known[side // 4 : side // 4 + side // 3, 5 + 3 * i : side - 4] = False
            white = known if source.polarity == "white_is_known" else ~known
            folder = root / source.folder
            (folder / "images").mkdir(parents=True, exist_ok=True)
            (folder / "masks").mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / "images" / f"{stem}.png")
            mask_rel = f"{source.folder}/masks/{stem}{source.mask_suffix}.png"
            Image.fromarray(white.astype(np.uint8) * 255).save(root / mask_rel)
            hole = 100 * (1 - known.mean())
            rows.append(f"| `{mask_rel}` | x | 1 | r | p | c | mask; measured hole = {hole:.1f}% |")
            knowns[mask_rel] = known
    (root / "MANIFEST.md").write_text("# made up\n\n" + "\n".join(rows) + "\n")
    return knowns


def test_selection_takes_each_groups_sources_in_turn_and_checks_the_manifest(tmp_path):
    knowns = make_folder(tmp_path, side=16)
    chosen = ri.pairs(tmp_path, 3)
    assert [p.name for p in chosen] == [
        "places_migan_img0",
        "places_fcf_img0_mask",
        "places_migan_img1",
        "faces_migan_img0",
        "faces_fcf_img0_mask",
        "faces_migan_img1",
    ]
    holes = ri.manifest_holes(tmp_path)
    for pair in chosen:
        known = ri.known_of(pair.mask, pair.polarity)
        rel = pair.mask.relative_to(tmp_path).as_posix()
        assert (known == knowns[rel]).all()
        assert ri.check_hole(pair, known, tmp_path, holes) == pytest.approx(
            1 - knowns[rel].mean(), abs=1e-3
        )
    # The mask read with the other polarity disagrees with the MANIFEST: the run stops.
    with pytest.raises(SystemExit, match="the MANIFEST says"):
        ri.check_hole(chosen[0], ~ri.known_of(chosen[0].mask, chosen[0].polarity), tmp_path, holes)


def naive_textured(real: np.ndarray) -> np.ndarray:
    """Local grey std over the WINDOW around each pixel (the part inside the image) > threshold."""
    grey = real.mean(0)
    h, w = grey.shape
    r = ri.WINDOW // 2
    out = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            patch = grey[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1]
            out[y, x] = patch.std() > ri.TEXTURE_STD
    return out


def test_region_scores_match_a_naive_numpy_reference():
    rng = np.random.default_rng(1)
    h, w = 20, 24
    real = np.zeros((3, h, w))
    real[:, :, :12] = np.linspace(0.5, 0.7, 12)  # smooth left half, far from 0 (padding)
    real[:, :, 12:] = rng.uniform(-1, 1, (3, h, 12))  # textured right half
    fake = np.clip(real + rng.normal(0, 0.2, real.shape), -1, 1)
    known = np.ones((h, w), bool)
    known[4:16, 6:20] = False
    scores = ri.region_scores(
        torch.tensor(fake[None]).float(),
        torch.tensor(real[None]).float(),
        torch.tensor(known[None, None]),
    )
    textured = naive_textured(real)
    assert (ri.textured_region(torch.tensor(real[None]).float())[0, 0].numpy() == textured).all()
    hole = ~known
    err = np.abs(fake - real)
    for suffix, region in (
        ("", hole),
        ("_textured", hole & textured),
        ("_smooth", hole & ~textured),
    ):
        assert region.any()
        assert scores["l1_hole" + suffix] == pytest.approx(err[:, region].mean(), abs=1e-5)
        mse = ((fake - real) ** 2)[:, region].mean()
        assert scores["psnr_hole" + suffix] == pytest.approx(10 * np.log10(4 / mse), abs=1e-3)
    assert scores["textured_share"] == pytest.approx((hole & textured).sum() / hole.sum())
    # A perfect output scores perfectly in every part.
    same = ri.region_scores(
        torch.tensor(real[None]).float(),
        torch.tensor(real[None]).float(),
        torch.tensor(known[None, None]),
    )
    assert same["l1_hole_textured"] == 0 and same["ssim_hole_smooth"] == pytest.approx(1, abs=1e-4)
    assert same["edge_f1_hole_textured"] == 1


ARGS = ["--iterations", "3", "--channels", "8"]


def run_in_process(argv: list[str]) -> None:
    """`i2i ARGV` in this process: the same commands without a Python start each."""
    from i2i.commands import run_file_command

    assert run_file_command(argv) == 0, argv


def run_script(data: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "benchmarks.real_inpainting",
        "--data",
        str(data),
        "--out",
        str(out),
        *ARGS,
        *args,
    ]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def check_outputs(out: Path, expected_names: list[str]) -> dict:
    assert (out / "table.md").is_file() and (out / "sheet.png").is_file()
    payload = json.loads((out / "scores.json").read_text())
    names = [i["name"] for i in payload["images"]]
    assert names == expected_names
    table = (out / "table.md").read_text()
    for method in ri.METHODS:
        assert f"| {method} |" in table
        for name in names:  # known pixels are the work image's, bit for bit (read here again)
            real = np.asarray(Image.open(out / "work" / "images" / f"{name}.png"))
            hole = np.asarray(Image.open(out / "work" / "masks" / f"{name}.png")) > 127
            got = np.asarray(Image.open(out / "outputs" / method / f"{name}.png").convert("RGB"))
            assert got.shape == real.shape and (got[~hole] == real[~hole]).all(), (method, name)
            assert payload["scores"][method][name]["known_unchanged"] is True
    assert "Textured hole pixels" in table
    assert ("weights absent" in table) != _lpips_present()
    sheet = Image.open(out / "sheet.png")
    assert sheet.height >= len(ri.METHODS) + 2  # a row per method, the input and the real image
    return payload


def _lpips_present() -> bool:
    from i2i.compare import paper_metric_files

    return paper_metric_files()["lpips"].is_file()


@pytest.mark.usefixtures("one_torch_thread")
def test_pipeline_on_a_tiny_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # main sets it: restored after the test
    knowns = make_folder(tmp_path / "data", side=40, per_source=1)
    out = tmp_path / "out"
    argv = ["--data", str(tmp_path / "data"), "--out", str(out), *ARGS, "--max-side", "0"]
    assert ri.main([*argv, "--images", "1"], run_command=run_in_process) == 0
    payload = check_outputs(out, ["places_migan_img0", "faces_migan_img0"])
    for name, rel in (
        ("places_migan_img0", "places/migan_places256/masks/img0.png"),
        ("faces_migan_img0", "faces/migan_ffhq256/masks/img0.png"),
    ):
        hole = np.asarray(Image.open(out / "work" / "masks" / f"{name}.png")) > 127
        assert (hole == ~knowns[rel]).all()  # written white = hole, from white = known
    assert payload["settings"]["iterations"] == 3
    assert set(payload["means"]) == {"all", "places", "faces"}


@pytest.mark.slow  # six Python starts (the script and the five `i2i` commands): ~60 s on 2 cores
def test_script_end_to_end_as_a_subprocess(tmp_path):
    make_folder(tmp_path / "data", side=40, per_source=1)
    out = tmp_path / "out"
    result = run_script(tmp_path / "data", out, "--images", "1", "--max-side", "0")
    assert result.returncode == 0, result.stderr[-2000:]
    check_outputs(out, ["places_migan_img0", "faces_migan_img0"])
    assert "$ i2i dip" in result.stdout and "| dip |" in result.stdout


@pytest.mark.usefixtures("one_torch_thread")
def test_pipeline_on_the_shared_photos(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # main sets it: restored after the test
    data = shared_data("places", "fcf_places256").parents[1]
    out = tmp_path / "out"
    argv = ["--data", str(data), "--out", str(out), *ARGS, "--max-side", "32"]
    assert ri.main([*argv, "--images", "2", "--sheet-images", "2"], run_command=run_in_process) == 0
    expected = [
        "places_migan_Places365_val_00000262",
        "places_fcf_082_Places365_val_00021838_mask",
        "faces_migan_1",
        "faces_fcf_facea_mask",
    ]
    payload = check_outputs(out, expected)
    for image in payload["images"]:  # each mask read as the MANIFEST measured it
        assert image["manifest_hole"] is not None
        assert image["hole"] == pytest.approx(image["manifest_hole"], abs=ri.HOLE_TOLERANCE)


def test_why_depth_parts_split_the_textured_hole_by_distance_to_a_known_pixel():
    from benchmarks.real_inpainting_why import BAND, textured_scores

    rng = np.random.default_rng(2)
    real = (rng.random((40, 40, 3)) * 255).astype(np.uint8)  # textured everywhere
    known = np.ones((40, 40), bool)
    known[5:35, 5:35] = False  # a 30 px square: a ring of BAND px near, a 14 px core deep
    parts = {d: textured_scores(real, real, known, d) for d in (None, "near", "deep")}
    assert parts["deep"]["pixels"] == (30 - 2 * BAND) ** 2
    assert parts["near"]["pixels"] + parts["deep"]["pixels"] == parts[None]["pixels"] == 900
    assert parts["deep"]["l1"] == 0 and parts["near"]["edge_f1"] == 1
