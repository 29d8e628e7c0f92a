"""Deep image prior: the hourglass, the optimisation on a tensor, and `i2i dip` on files."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from i2i.dip import deep_image_prior
from i2i.networks import HourglassNetwork
from tests.clirun import MODES, PROCESSES, run_i2i, start
from tests.conftest import shared_data

# Tiny tensors: on a busy 2-core machine, more threads than free cores mostly wait.
pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
SMALL = {"channels": 16, "levels": 3, "skip_channels": 4}


def smooth_image(h: int = 32, w: int = 32) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    return torch.stack([0.6 * xx, 0.5 * yy, 0.3 * xx * yy]).clamp(-1, 1)


def box_mask(h: int, w: int, top: int, left: int, size: int) -> torch.Tensor:
    mask = torch.ones(1, h, w)
    mask[:, top : top + size, left : left + size] = 0
    return mask


def hole_errors(result: torch.Tensor, image: torch.Tensor, mask: torch.Tensor):
    """(mean abs error in the hole, the same for a fill with the mean known colour)."""
    hole = mask[0] < 0.5
    fill = image.clone()
    for c in range(3):
        fill[c][hole] = image[c][~hole].mean()
    return (result - image).abs()[:, hole].mean(), (fill - image).abs()[:, hole].mean()


def test_hourglass_shapes_gradients_and_sizes():
    net = HourglassNetwork(in_channels=8, channels=8, levels=3)
    out = net(torch.randn(2, 8, 16, 24))
    assert out.shape == (2, 3, 16, 24) and out.min() >= -1 and out.max() <= 1
    out.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    with pytest.raises(ValueError, match="divisible by 8"):
        net(torch.randn(1, 8, 20, 24))
    default = HourglassNetwork()
    assert len(default.down) == 5 and default.skip[0][-3].out_channels == 4


def test_dip_fills_a_smooth_image_far_better_than_a_mean_fill():
    image, mask = smooth_image(), box_mask(32, 32, 10, 12, 10)
    result = deep_image_prior(image, mask, iterations=150, network=SMALL, seed=0)
    error, fill_error = hole_errors(result.image, image, mask)
    assert error < 0.4 * fill_error, (error, fill_error)
    known = mask[0] > 0.5
    assert torch.equal(result.image[:, known], image[:, known])  # known pixels unchanged
    assert result.iterations == 150 and result.losses[-1] < result.losses[0] / 10


def test_dip_is_deterministic_by_seed():
    image, mask = smooth_image(), box_mask(32, 32, 4, 4, 8)
    a = deep_image_prior(image, mask, iterations=20, network=SMALL, seed=3)
    b = deep_image_prior(image, mask, iterations=20, network=SMALL, seed=3)
    c = deep_image_prior(image, mask, iterations=20, network=SMALL, seed=4)
    assert torch.equal(a.image, b.image) and a.losses == b.losses
    assert not torch.equal(a.image, c.image)


def test_dip_any_size_and_clear_errors():
    image, mask = smooth_image(37, 29), box_mask(37, 29, 5, 5, 9)  # odd sides: padded inside
    result = deep_image_prior(image, mask, iterations=5, network=SMALL)
    assert result.image.shape == (3, 37, 29)
    small = deep_image_prior(image, mask, iterations=5, network=SMALL, max_side=16)
    assert small.image.shape == (3, 37, 29)
    assert torch.equal(small.image[:, mask[0] > 0.5], image[:, mask[0] > 0.5])
    with pytest.raises(ValueError, match="no hole"):
        deep_image_prior(image, torch.ones(1, 37, 29), iterations=1)
    with pytest.raises(ValueError, match="mask must be"):
        deep_image_prior(image, torch.ones(1, 36, 29), iterations=1)


def test_dip_on_a_real_photo_beats_a_mean_fill():
    folder = shared_data("places", "fcf_places256", "images")
    photo = sorted(folder.glob("*.png"))[0]
    rgb = Image.open(photo).convert("RGB").resize((64, 64), Image.Resampling.BICUBIC)
    image = torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).float() / 127.5 - 1
    mask = box_mask(64, 64, 24, 24, 14)
    result = deep_image_prior(
        image, mask, iterations=300, network={"channels": 16, "levels": 4}, seed=0
    )
    error, fill_error = hole_errors(result.image, image, mask)
    assert error < fill_error, (photo.name, float(error), float(fill_error))


# ---- `i2i dip` on files (in this process; as a subprocess under make test-full) ---------


def _files(tmp_path: Path, h: int = 37, w: int = 29) -> tuple[Path, Path, np.ndarray]:
    image = ((smooth_image(h, w) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(image).save(tmp_path / "photo.png")
    hole = np.zeros((h, w), np.uint8)
    hole[8:20, 6:18] = 255  # white = hole
    Image.fromarray(hole).save(tmp_path / "photo_mask.png")
    return tmp_path / "photo.png", tmp_path / "photo_mask.png", image


def _dip(mode: str, *args: str) -> tuple[int, str]:
    """(exit status, output) of `i2i dip ARGS`, in this process or as a subprocess."""
    return run_i2i(mode, "dip", *args)


@pytest.mark.parametrize("mode", MODES)
def test_i2i_dip_writes_the_full_size_completion_with_known_pixels_unchanged(tmp_path, mode):
    image, mask, pixels = _files(tmp_path)
    out = tmp_path / "out" / "result.png"
    common = [
        "--image",
        str(image),
        "--mask",
        str(mask),
        "--mask-polarity",
        "white_is_hole",
        "--out",
        str(out),
        "--iterations",
        "30",
        "--channels",
        "8",
        "--snapshot-every",
        "10",
    ]
    code, text = _dip(mode, *common)
    assert code == 0, text[-2000:]
    written = np.asarray(Image.open(out))
    assert written.shape == pixels.shape
    hole = np.asarray(Image.open(mask)) > 127
    assert np.array_equal(written[~hole], pixels[~hole])  # bit for bit
    assert not np.array_equal(written[hole], pixels[hole])
    snapshots = sorted(p.name for p in out.parent.glob("result_iter*.png"))
    assert snapshots == ["result_iter000010.png", "result_iter000020.png", "result_iter000030.png"]
    code, text = _dip(mode, *common)  # nothing is overwritten without --overwrite
    assert code == 1 and "--overwrite" in text
    assert _dip(mode, *common, "--overwrite")[0] == 0


@pytest.mark.parametrize("mode", MODES)
def test_i2i_dip_folders_matched_by_name_and_a_wrong_polarity(tmp_path, mode):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    _files(images)
    (images / "photo_mask.png").rename(masks / "photo.png")
    out = tmp_path / "results"
    args = [
        "--image",
        str(images),
        "--mask",
        str(masks),
        "--out",
        str(out),
        "--iterations",
        "5",
        "--channels",
        "8",
    ]
    assert _dip(mode, *args, "--mask-polarity", "white_is_hole")[0] == 0
    assert (out / "photo.png").is_file()
    full = np.zeros((37, 29), np.uint8)  # all black: with white_is_known, all hole
    Image.fromarray(full + 255).save(masks / "photo.png")  # all white: no hole when white = known
    code, text = _dip(mode, *args, "--mask-polarity", "white_is_known", "--overwrite")
    assert code == 1 and "no hole" in text and "polarity" in text


@pytest.mark.parametrize("how", PROCESSES)
def test_ctrl_c_writes_the_current_result_and_exits_130(tmp_path, how):
    image, mask, pixels = _files(tmp_path)
    out = tmp_path / "result.png"
    args = [
        "dip",
        "--image",
        str(image),
        "--mask",
        str(mask),
        "--mask-polarity",
        "white_is_hole",
        "--out",
        str(out),
        "--iterations",
        "100000",
        "--channels",
        "8",
        "--snapshot-every",
        "5",
    ]
    proc = start(how, *args, module=True, merge_stderr=False)
    deadline = time.time() + 120
    while not list(tmp_path.glob("result_iter*.png")) and time.time() < deadline:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted" in stdout and out.is_file()
    written = np.asarray(Image.open(out))
    hole = np.asarray(Image.open(mask)) > 127
    assert np.array_equal(written[~hole], pixels[~hole])


@pytest.mark.parametrize("ignored", [False, True], ids=["from_a_terminal", "ignored"])
def test_ctrl_c_stops_dip_unless_the_process_was_started_to_ignore_it(
    tmp_path, monkeypatch, ignored
):
    """A script's `i2i dip ... &` is started with SIGINT ignored: the Ctrl-C that stops the
    script must not stop it, as it does not stop a command run from a terminal's prompt."""
    import i2i.dip as dip

    image, mask, _ = _files(tmp_path)
    optimise = dip.deep_image_prior

    def ctrl_c_at_the_start(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return optimise(*args, **kwargs)

    monkeypatch.setattr(dip, "deep_image_prior", ctrl_c_at_the_start)
    given = signal.SIG_IGN if ignored else signal.default_int_handler
    signal.signal(signal.SIGINT, given)  # conftest restores the worker's own after the test
    result = dip.complete_file(
        image,
        mask,
        tmp_path / "out.png",
        "white_is_hole",
        progress=False,
        iterations=3,
        network={"channels": 8},
    )
    assert signal.getsignal(signal.SIGINT) is given  # as it was before
    assert (result.interrupted, result.iterations) == ((False, 3) if ignored else (True, 0))
    assert (tmp_path / "out.png").is_file()
