"""`i2i inpaint` / `i2i translate` never destroy or mix inputs, as the user meets it: an --out
that is an input, two inputs writing one output, masks matched by another folder's name, Ctrl-C
in the middle of a folder, EXIF-rotated masks and label maps, images too small for random masks."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from i2i.data.datasets import load_image
from tests.clirun import MODES, PROCESSES, REPO, as_from_a_terminal, env, run_i2i, start
from tests.inference.test_files import hole_mask, png, read

ORIENTATION = 0x0112  # the EXIF tag; 6: the pixels are stored turned 90 degrees


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def inpaint(mode: str, model: Path, image: Path, mask: Path | str, out: Path, *more: str):
    polarity = [] if mask == "random" else ["--mask-polarity", "white_is_hole"]
    return run_i2i(
        mode,
        "inpaint",
        str(model),
        "--image",
        str(image),
        "--mask",
        str(mask),
        *polarity,
        "--out",
        str(out),
        *more,
    )


@pytest.mark.parametrize("mode", MODES)
def test_an_out_that_is_an_input_is_refused(model_files, tmp_path, mode):
    rng = np.random.default_rng(0)
    images, masks = tmp_path / "images", tmp_path / "masks"
    png(images / "a.png", rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    png(masks / "a.png", hole_mask(30, 40, [(5, 5, 8, 8)]))
    before = {"images": snapshot(images), "masks": snapshot(masks)}
    model = model_files["inpainting"]
    for out in (images, masks, images / "done"):
        code, text = inpaint(mode, model, images, masks, out, "--overwrite")
        assert code == 1, text
        assert f"--out {out} is" in text and "choose an --out outside it" in text
    # One file given: an --out holding it would replace it.
    code, text = inpaint(mode, model, images / "a.png", "random", images, "--overwrite")
    assert code == 1 and f"would replace the input {images / 'a.png'}" in text, text
    assert {"images": snapshot(images), "masks": snapshot(masks)} == before


@pytest.mark.parametrize("mode", MODES)
def test_an_out_that_is_a_file_is_named_and_kept(model_files, tmp_path, mode):
    image, out = tmp_path / "a.png", tmp_path / "notes.txt"
    png(image, np.full((20, 20, 3), 90, dtype=np.uint8))
    out.write_text("mine")
    code, text = inpaint(mode, model_files["inpainting"], image, "random", out, "--overwrite")
    assert code == 1 and f"--out {out} is a file: give a folder" in text, text
    assert "Traceback" not in text and out.read_text() == "mine"


@pytest.mark.parametrize("mode", MODES)
def test_two_inputs_writing_one_output_are_refused_before_writing(model_files, tmp_path, mode):
    rng = np.random.default_rng(1)
    images, out = tmp_path / "images", tmp_path / "out"
    png(images / "x.png", rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(images / "x.jpg")
    png(images / "y.png", rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    code, text = inpaint(mode, model_files["inpainting"], images, "random", out)
    assert code == 1, text
    assert f"{images / 'x.jpg'} and {images / 'x.png'} -> {out / 'x.png'}" in text
    assert "Nothing was written" in text and not out.exists()


@pytest.mark.parametrize("mode", MODES)
def test_masks_are_matched_by_relative_path_only(model_files, tmp_path, mode):
    rng = np.random.default_rng(2)
    images, masks, out = tmp_path / "images", tmp_path / "masks", tmp_path / "out"
    for kind in ("cats", "dogs"):
        png(images / kind / "1.png", rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    png(masks / "cats" / "1.png", hole_mask(24, 24, [(2, 2, 6, 6)]))
    code, text = inpaint(mode, model_files["inpainting"], images, masks, out)
    assert code == 1, text
    assert f"{images / 'dogs' / '1.png'} needs {masks / 'dogs' / '1'}.* (png|jpg" in text
    assert f"{masks / 'cats' / '1.png'} has the name of {images / 'dogs' / '1.png'}" in text
    assert not out.exists()
    # Two masks for one image (x.png and x.jpg): which one is meant is not guessed.
    png(masks / "dogs" / "1.png", hole_mask(24, 24, [(2, 2, 6, 6)]))
    png(masks / "dogs" / "1.jpg", hole_mask(24, 24, [(9, 9, 6, 6)]))
    code, text = inpaint(mode, model_files["inpainting"], images, masks, out)
    assert code == 1 and "2 masks for one image" in text and str(masks / "dogs" / "1.jpg") in text
    assert not out.exists()


@pytest.mark.parametrize("how", PROCESSES)
def test_ctrl_c_leaves_complete_files_and_a_rerun_writes_the_rest(model_files, tmp_path, how):
    rng = np.random.default_rng(3)
    images, out = tmp_path / "images", tmp_path / "out"
    for i in range(12):  # ~0.5 s each on a 2-core machine: Ctrl-C lands in the middle
        png(images / f"{i:02d}.png", rng.integers(0, 256, (384, 384, 3), dtype=np.uint8))
    args = [
        "inpaint",
        str(model_files["inpainting"]),
        "--image",
        str(images),
        "--mask",
        "random",
        "--out",
        str(out),
        "--num-samples",
        "2",
    ]
    process = start(how, *args)  # with a terminal's SIGINT (tests.clirun.as_from_a_terminal)
    deadline = time.monotonic() + 300
    while not list(out.glob("*.png")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    text, _ = process.communicate(timeout=120)
    assert process.returncode == 130, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    assert "interrupted" in text and "--skip-existing" in text
    files = sorted(out.iterdir())
    assert 0 < len(files) < 24 and all(p.suffix == ".png" for p in files), files  # no temp file
    for p in files:
        with Image.open(p) as image:
            image.load()  # a truncated PNG raises here
    kept = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}

    code, text = run_i2i("in_process", *args)  # without a flag: refused, the flags named
    assert code == 1 and "--skip-existing" in text and "--overwrite" in text
    code, text = run_i2i("in_process", *args, "--skip-existing")
    assert code == 0, text
    assert f"wrote {24 - len(files)} file(s)" in text and f"kept {len(files)} existing" in text
    assert sorted(p.name for p in out.iterdir()) == [
        f"{i:02d}_{k}.png" for i in range(12) for k in range(2)
    ]
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files} == kept


SIGINT_IS_PYTHONS = (
    "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
)


def test_the_ctrl_c_test_gives_its_command_a_terminals_sigint():
    """Where this process ignores SIGINT (a `make test &` from a script), a command inherits the
    ignore and Python turns no Ctrl-C into KeyboardInterrupt; the Ctrl-C test above starts its
    command with SIGINT as a terminal leaves it."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        probe = [sys.executable, "-c", SIGINT_IS_PYTHONS]
        inherited = subprocess.run(probe, capture_output=True, text=True, check=True).stdout
        given = subprocess.run(
            probe, capture_output=True, text=True, check=True, preexec_fn=as_from_a_terminal
        ).stdout
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (inherited.strip(), given.strip()) == ("False", "True")


def exif_orientation(value: int) -> Image.Exif:
    exif = Image.Exif()
    exif[ORIENTATION] = value
    return exif


@pytest.mark.parametrize("mode", MODES)
def test_masks_are_turned_upright_as_their_photos(model_files, tmp_path, mode):
    """A square JPEG photo and its JPEG mask, both stored turned with the same orientation tag:
    the fill lands where the mask shows it, every other pixel unchanged."""
    rng = np.random.default_rng(4)
    stored = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    photo, mask, out = tmp_path / "p.jpg", tmp_path / "m.jpg", tmp_path / "out"
    Image.fromarray(stored).save(photo, exif=exif_orientation(6), quality=95)
    hole = hole_mask(48, 48, [(0, 0, 16, 16)])  # a corner of the stored pixels
    Image.fromarray(hole).save(mask, exif=exif_orientation(6), quality=95)
    code, text = inpaint(mode, model_files["inpainting"], photo, mask, out)
    assert code == 0, text
    upright = np.asarray(load_image(photo))
    known = np.rot90(hole, -1) <= 127  # orientation 6: turned 90 degrees clockwise to view
    got = read(out / "p.png")
    assert np.array_equal(got[known], upright[known])
    assert (got[~known] != upright[~known]).any()


@pytest.mark.parametrize("mode", MODES)
def test_a_mask_turned_against_its_photo_names_the_exif_orientation(model_files, tmp_path, mode):
    stored = np.zeros((30, 50, 3), np.uint8)
    photo = tmp_path / "p.jpg"
    Image.fromarray(stored).save(photo, exif=exif_orientation(6))  # viewed 50x30 (HxW)
    mask = png(tmp_path / "m.png", hole_mask(30, 50, [(3, 3, 5, 5)]))  # no tag: 30x50
    code, text = inpaint(mode, model_files["inpainting"], photo, mask, tmp_path / "out")
    assert code == 1 and "is 30x50 (HxW) but the image is 50x30" in text, text
    assert "EXIF orientation" in text


@pytest.mark.parametrize("mode", MODES)
def test_label_maps_are_turned_upright_as_photos(model_files, tmp_path, mode):
    label = np.zeros((20, 36), np.uint8)
    label[:, 18:] = 3
    path = tmp_path / "street.png"
    Image.fromarray(label).save(path, exif=exif_orientation(6))
    out = tmp_path / "out"
    code, text = run_i2i(
        mode,
        "translate",
        str(model_files["labels"]),
        "--input",
        str(path),
        "--out",
        str(out),
        "--panel",
    )
    assert code == 0, text
    assert read(out / "street.png").shape == (36, 20, 3)  # upright, as a viewer shows it


@pytest.mark.parametrize("mode", MODES)
def test_an_image_too_small_for_a_random_mask_is_named(model_files, tmp_path, mode):
    images = tmp_path / "images"
    tiny = png(images / "tiny.png", np.zeros((1, 1, 3), np.uint8))
    png(images / "ok.png", np.zeros((20, 20, 3), np.uint8))
    started = time.monotonic()
    code, text = inpaint(mode, model_files["inpainting"], images, "random", tmp_path / "out")
    assert code == 1, text
    assert f"skipped {tiny}: --mask random on this 1x1 (HxW) image" in text
    assert "at least 3 pixels" in text and "RuntimeError" not in text
    assert (tmp_path / "out" / "ok.png").is_file()
    assert time.monotonic() - started < 60  # not 10,000 hopeless draws


PEAK_SCRIPT = """
import re, sys
from pathlib import Path
from i2i.commands import main
model, small, large, out = sys.argv[1:]
def kib(field):
    return int(re.search(field + r":\\s+(\\d+) kB", Path("/proc/self/status").read_text())[1])
def added_peak_mb(image, folder):  # the peak above the memory in use when it starts
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
    start = kib("VmRSS")
    assert main(["inpaint", model, "--image", image, "--mask", "random", "--out", folder]) == 0
    return (kib("VmHWM") - start) / 1024
print(added_peak_mb(small, out + "/small"), added_peak_mb(large, out + "/large"))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux's peak reset")
def test_a_large_photo_with_a_random_mask_takes_bytes_not_floats_per_pixel(model_files, tmp_path):
    """The peak memory `i2i inpaint --mask random` adds for a 3000x2000 photo, once the imports
    and the model are paid by a tiny one: the mask and the window were float32 copies of the
    whole photo (about 75 bytes a pixel in all; 8.8 GB at 12000x9000), now about 17."""
    y, x = np.mgrid[0:2000, 0:3000]
    photo = np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "large.jpg", quality=90)
    Image.fromarray(photo[:40, :60]).save(tmp_path / "small.jpg")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            PEAK_SCRIPT,
            str(model_files["inpainting"]),
            str(tmp_path / "small.jpg"),
            str(tmp_path / "large.jpg"),
            str(tmp_path / "out"),
        ],
        cwd=REPO,
        env=env(OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    large_mb = float(result.stdout.split()[-1])  # the first run paid the imports and the model
    per_pixel = large_mb * 2**20 / photo[..., 0].size
    assert per_pixel < 40, f"{per_pixel:.0f} bytes a pixel ({large_mb:.0f} MB)"


def test_the_contact_sheet_never_replaces_a_panel(tmp_path, capsys):
    # In this process (`make try` runs the module as a process, tests/test_try.py).
    from i2i.inference.sheet import main as sheet

    panels = tmp_path / "inpainted"
    for name in ("a", "b"):
        png(panels / f"{name}_panel.png", np.full((8, 20, 3), 40, np.uint8))
    before = snapshot(panels)
    code = sheet([str(panels), "--out", str(panels / "a_panel.png")])
    printed = capsys.readouterr().out
    assert code == 1 and "is one of the panels" in printed, printed
    assert snapshot(panels) == before
    code = sheet([str(panels), "--out", str(panels / "sheet.png")])
    assert code == 0, capsys.readouterr()
    assert Image.open(panels / "sheet.png").width >= 768
    assert sorted(p.name for p in panels.iterdir()) == ["a_panel.png", "b_panel.png", "sheet.png"]
