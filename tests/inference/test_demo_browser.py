"""The web demo in a real browser: headless Chromium (Debian's package) loads the page from the
real server; one test checks the empty page, another uses it as a person would (upload a photo,
paint a hole with the brush, press Inpaint) and reads the outputs back from the page.

Screenshots go to the test's temporary folder; with I2I_WRITE_DOCS_SCREENSHOT=1 the page in use
is also written to docs/demo_in_use.png (a plain test run never rewrites tracked files)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.clirun import REPO
from tests.inference.test_demo import serve

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SIZE = (1280, 1000)
DOCS_SCREENSHOT = REPO / "docs" / "demo_in_use.png"
WRITE_DOCS = os.environ.get("I2I_WRITE_DOCS_SCREENSHOT") == "1"

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
    with serve(model_files["inpainting"], tmp_path, how="fresh") as url:
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


# The photo is not the model's 32x32 and not square: the demo works at the upload's size. The
# brush's default radius is 25 image pixels, so the photo is large enough for a stroke to leave
# most of it known; scene 3 has no magenta shape that could be taken for paint.
PHOTO_HW = (180, 240)
STROKE_ROW = PHOTO_HW[0] // 2  # the stroke runs left to right through the editor's centre
FAR = 50  # rows further than this from the stroke are never painted (radius 25, anti-aliasing)


def photo(path: Path) -> np.ndarray:
    from i2i.data.synthetic import render_scene

    image, _ = render_scene(np.random.default_rng(3), PHOTO_HW)
    pixels = np.round(image * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def chromium_driver():
    """Selenium over Debian's chromedriver and Chromium: given both paths, Selenium Manager
    downloads nothing. The viewport is exactly SIZE, whatever the window's decorations take."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    if not CHROMEDRIVER.exists():
        pytest.skip("no chromedriver at /usr/bin/chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={SIZE[0]},{SIZE[1]}")
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    metrics = {"width": SIZE[0], "height": SIZE[1], "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    return driver


def block(driver, label: str):
    """The Gradio component whose label reads `label`."""
    from selenium.webdriver.common.by import By

    return driver.find_element(
        By.XPATH,
        "//div[contains(concat(' ', @class, ' '), ' block ')]"
        f"[.//label[@data-testid='block-label'][normalize-space()='{label}']]",
    )


def loaded_images(component) -> list[str]:
    """The URLs of the component's images that the browser has finished loading."""
    from selenium.webdriver.common.by import By

    return [
        img.get_attribute("src")
        for img in component.find_elements(By.TAG_NAME, "img")
        if img.get_attribute("src").startswith("http")
        and component.parent.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", img
        )
    ]


def fetch(url: str) -> np.ndarray:
    with urllib.request.urlopen(url, timeout=60) as response:
        return np.asarray(Image.open(io.BytesIO(response.read())))


def test_a_painted_hole_is_inpainted_in_the_page(model_files, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    image = photo(tmp_path / "photo.png")
    driver = chromium_driver()
    try:
        with serve(model_files["inpainting"], tmp_path, how="fresh") as url:
            driver.get(url)
            wait = WebDriverWait(driver, 300)
            editor = wait.until(lambda d: block(d, "image (paint the hole)"))
            editor.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(
                str(tmp_path / "photo.png")
            )
            # The photo is on the canvas once the editor stops asking for one.
            wait.until(lambda d: "Upload an image" not in editor.text)
            editor.find_element(By.CSS_SELECTOR, "button[aria-label=Brush]").click()
            canvas = editor.find_elements(By.TAG_NAME, "canvas")[-1]
            stroke = ActionChains(driver).move_to_element_with_offset(canvas, -150, 0)
            stroke.click_and_hold()
            for _ in range(6):
                stroke.move_by_offset(50, 0)
            stroke.release().perform()
            driver.find_element(By.XPATH, "//button[normalize-space()='Inpaint']").click()
            samples, preview = block(driver, "outputs"), block(driver, "input (hole tinted)")
            wait.until(lambda d: len(loaded_images(samples)) == 3 and loaded_images(preview))
            outputs = [fetch(src) for src in loaded_images(samples)]
            (tinted,) = [fetch(src) for src in loaded_images(preview)]
            driver.save_screenshot(str(tmp_path / "demo_in_use.png"))
    finally:
        driver.quit()

    # The server got the upload unchanged: the preview differs from it only in the painted hole,
    # which is filled with one tint and lies along the stroke.
    assert tinted.shape == image.shape
    hole = (tinted != image).any(axis=2)
    assert len(np.unique(tinted[hole], axis=0)) == 1
    rows = np.nonzero(hole.any(axis=1))[0]
    assert STROKE_ROW - FAR < rows.min() and rows.max() < STROKE_ROW + FAR
    assert hole.mean() > 0.1
    for out in outputs:
        assert out.shape == image.shape and out.dtype == np.uint8
        assert np.array_equal(out[~hole], image[~hole])  # bit for bit, through PNG both ways
        assert not np.array_equal(out[hole], image[hole])
    assert not np.array_equal(outputs[0], outputs[1])
    with Image.open(tmp_path / "demo_in_use.png") as shot:
        assert shot.size == SIZE
    if WRITE_DOCS:
        shutil.copyfile(tmp_path / "demo_in_use.png", DOCS_SCREENSHOT)
