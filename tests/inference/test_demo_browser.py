"""The web demo in a real browser: headless Chromium (Debian's package) loads the page from the
real server and takes a screenshot, which becomes docs/demo.png for the README."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.clirun import REPO
from tests.inference.test_demo import serve

CHROMIUM = Path("/usr/bin/chromium")
SIZE = (1280, 1000)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no Chromium at /usr/bin/chromium"),
]


def screenshot(url: str, out: Path, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--screenshot={out}",
            f"--window-size={SIZE[0]},{SIZE[1]}",
            "--hide-scrollbars",
            # The page is built by JavaScript after load: give it time before the picture.
            "--virtual-time-budget=15000",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_page_renders_in_chromium(model_files, tmp_path):
    shot = tmp_path / "demo.png"
    with serve(model_files["inpainting"], tmp_path) as url:
        result = screenshot(url, shot, tmp_path / "profile")
    assert result.returncode == 0, result.stderr[-2000:]
    with Image.open(shot) as img:
        assert img.size == SIZE
        pixels = np.asarray(img.convert("RGB")).astype(int)
    # Not a blank or an error page: many colours, ink on the page, and the theme's orange
    # primary button (the "Inpaint" button), which only the mounted app draws.
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    assert (pixels.sum(axis=2) < 600).mean() > 0.01
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    assert ((r > 200) & (g > 80) & (g < 160) & (b < 80)).sum() > 2000
    (REPO / "docs").mkdir(exist_ok=True)
    shutil.copyfile(shot, REPO / "docs" / "demo.png")
