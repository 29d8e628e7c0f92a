"""`make try`: after `make train`, the trained model inpaints held-out demo scenes with the
`i2i inpaint` command and writes one picture of the results."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from i2i.data.synthetic import ShapesDataset, write_heldout
from tests.clirun import MODES, fit_args, make_dry_run, output, run_i2i, run_python_module
from tests.clirun import run as run_command


def test_heldout_scenes_are_unseen_and_masks_are_white_where_the_hole_is(tmp_path):
    images, masks = write_heldout(tmp_path, count=3, resolution=32, hole_range=(0.2, 0.4))
    names = sorted(p.name for p in images.iterdir())
    assert names == sorted(p.name for p in masks.iterdir())
    assert names == [f"scene_00{i}.png" for i in range(3)]
    train, val = ShapesDataset(32, length=3, seed=0), ShapesDataset(32, length=3, seed=1)
    for i, name in enumerate(names):
        image = np.asarray(Image.open(images / name))
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8
        for seen in (train, val):  # neither the training nor the validation scenes
            pixels = ((seen[i]["image"].permute(1, 2, 0) + 1) * 127.5).round().numpy()
            assert np.abs(pixels - image).mean() > 5
        mask = np.asarray(Image.open(masks / name))
        assert set(np.unique(mask)) <= {0, 255}
        assert 0.15 <= (mask == 255).mean() <= 0.45  # white = hole, within the range asked
        labels = np.asarray(Image.open(tmp_path / "labels" / name))
        assert labels.shape == (32, 32) and labels.max() < 6


@pytest.mark.parametrize("mode", MODES)
def test_make_try_inpaints_the_heldout_scenes_keeping_known_pixels(tmp_path, mode):
    run = tmp_path / "run"
    # `make train`'s part as a process is tested elsewhere: here it trains in the test process.
    code, text = run_i2i(
        "in_process", *fit_args(run, "--model.init_args.max_iterations=1", "--trainer.logger=false")
    )
    assert code == 0, text[-2000:]
    text = make_try(run, mode)
    sheet = Image.open(run / "inpainted.png")
    assert sheet.width >= 768  # enlarged for a screen
    for name in [f"scene_{i:03d}" for i in range(8)]:
        image = np.asarray(Image.open(run / "heldout" / "images" / f"{name}.png"))
        hole = np.asarray(Image.open(run / "heldout" / "masks" / f"{name}.png")) == 255
        for k in range(3):
            out = np.asarray(Image.open(run / "inpainted" / f"{name}_{k}.png"))
            assert out.shape == image.shape
            assert np.array_equal(out[~hole], image[~hole])  # known pixels, bit for bit
        assert (run / "inpainted" / f"{name}_panel.png").is_file()
        # The classical fill beside the samples: known pixels kept too.
        classical = np.asarray(Image.open(run / "classical" / f"{name}.png"))
        assert np.array_equal(classical[~hole], image[~hole])
    # The sheet's rows: the panel (input, masked, 3 samples) and one more column.
    panel = Image.open(run / "inpainted" / "scene_000_panel.png")
    assert panel.width == 5 * (64 + 2) + 2
    assert sheet.width % (panel.width + 64 + 2 + 8) == 0  # enlarged by a whole factor
    # Both scores printed, on the same scenes: the model's averaged over its samples.
    lines = {ln.split()[0]: ln for ln in text.splitlines() if "hole L1" in ln and "F1" in ln}
    assert "model" in lines and "classical:biharmonic" in lines, text[-2000:]
    names = [f"scene_{i:03d}" for i in range(8)]
    want = {
        "model": [[f"{n}_{k}.png" for k in range(3)] for n in names],
        "classical:biharmonic": [[f"{n}.png"] for n in names],
    }
    for label, files in want.items():
        folder = run / ("inpainted" if label == "model" else "classical")
        l1 = []
        for name, outs in zip(names, files, strict=True):
            real = np.asarray(Image.open(run / "heldout" / "images" / f"{name}.png")) / 127.5
            hole = np.asarray(Image.open(run / "heldout" / "masks" / f"{name}.png")) == 255
            for f in outs:
                fake = np.asarray(Image.open(folder / f)) / 127.5
                l1.append(np.abs(fake - real)[hole].mean())
        printed = lines[label].split("hole L1")[1].split()[0]
        assert float(printed) == pytest.approx(np.mean(l1), abs=1e-3), label
        assert 0 <= float(lines[label].split("edge F1")[1].split()[0]) <= 1


def make_try(run: Path, mode: str) -> str:
    """What `make try RUN=run` prints. In this process: the Python commands its recipe runs (as
    `make -n` prints them), in order, each exiting 0; as a process: `make try` itself."""
    if mode == "subprocess":
        result = run_command(["make", "try", f"RUN={run}"], timeout=600)
        assert result.returncode == 0, output(result)[-3000:]
        return output(result)
    texts = []
    recipe = make_dry_run("try", f"RUN={run}")
    assert [argv[2] for argv in recipe[:-1]] == [
        "i2i.data.synthetic",
        "i2i",
        "i2i",
        "i2i.inference.sheet",
    ]
    assert recipe[-1][:2] == ["if", "command"]  # opens the sheet where there is a display
    for argv in recipe[:-1]:
        code, text = run_python_module(argv)
        assert code == 0, f"{shlex.join(argv)} exited {code}: {text[-3000:]}"
        texts.append(text)
    return "".join(texts)
