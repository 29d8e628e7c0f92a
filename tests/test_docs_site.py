"""The documentation site as a reader sees it: `mkdocs build --strict` into a temporary folder,
served over HTTP, opened in headless Chromium (Debian's package, driven by Selenium). The home
page must show its title and the newcomer's navigation; an API page must show a class rendered
from its docstring, with its Parameters table.

Screenshots go to the test's temporary folder, or to the folder named by I2I_SCREENSHOT_DIR
(`I2I_SCREENSHOT_DIR=docs pytest -m browser tests/test_docs_site.py` rewrites the two pictures
the documentation keeps: docs/site_home.png and docs/site_api.png)."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.clirun import REPO
from tests.inference.test_demo_browser import CHROMIUM, chromium_driver

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no Chromium at /usr/bin/chromium"),
]

# The nav in the order a newcomer reads it (mkdocs.yml): the top-level entries.
NAV = [
    "Home",
    "Getting started",
    "Your own data",
    "Systems",
    "Configuration",
    "Training",
    "Evaluation",
    "Inference, export and the web demo",
    "Published weights",
    "Troubleshooting",
    "Benchmarks",
    "Development",
    "API reference",
]
API_CLASS = "i2i.metrics.InceptionDiscriminativeScore"


@pytest.fixture(scope="module")
def site_url(tmp_path_factory):
    """The site built with --strict (a broken link or reference fails here) and served."""
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert build.returncode == 0, build.stdout + build.stderr
    handler = functools.partial(QuietHandler, directory=str(out))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # the test's output stays readable
        pass


@pytest.fixture
def driver():
    browser = chromium_driver()
    try:
        yield browser
    finally:
        browser.quit()


def screenshot_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("I2I_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def assert_a_drawn_page(path: Path) -> None:
    """Not blank and not an error page: many colours and text on it."""
    with Image.open(path) as img:
        pixels = np.asarray(img.convert("RGB")).astype(int)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    assert (pixels.sum(axis=2) < 300).mean() > 0.005  # dark text


def test_the_home_page_shows_its_title_and_the_newcomers_path(site_url, driver, tmp_path):
    from selenium.webdriver.common.by import By

    driver.get(f"{site_url}/")
    assert driver.title.startswith("i2i")
    assert driver.find_element(By.TAG_NAME, "h1").text == "i2i"
    # The primary navigation, top level, in order.
    labels = driver.execute_script(
        "return Array.from(document.querySelectorAll('nav.md-nav--primary > ul > li'))"
        ".map(li => li.querySelector(':scope > :is(a, label)').textContent.trim())"
    )
    assert labels == NAV, labels
    assert "Where to go next" in driver.find_element(By.TAG_NAME, "article").text
    shot = screenshot_dir(tmp_path) / "site_home.png"
    assert driver.save_screenshot(str(shot))
    assert_a_drawn_page(shot)


def test_an_api_page_renders_a_class_with_its_parameters_table(site_url, driver, tmp_path):
    from selenium.webdriver.common.by import By

    driver.get(f"{site_url}/api/metrics/")
    assert "i2i.metrics" in driver.title
    heading = driver.find_element(By.ID, API_CLASS)
    assert heading.tag_name in ("h2", "h3") and "InceptionDiscriminativeScore" in heading.text
    # The class's own documentation block: its Parameters table lists the constructor's
    # arguments, from the Args section of the docstring.
    block = heading.find_element(By.XPATH, "following-sibling::div[contains(@class, 'doc')][1]")
    titles = [e.text for e in block.find_elements(By.CSS_SELECTOR, ".doc-section-title")]
    assert "Parameters:" in titles
    table = block.find_element(By.XPATH, ".//span[.='Parameters:']/following::table[1]")
    names = [e.text for e in table.find_elements(By.CSS_SELECTOR, "tbody tr td:first-child")]
    assert {"feature", "compute_fid", "weights_path"} <= set(names), names
    driver.execute_script("arguments[0].scrollIntoView(); window.scrollBy(0, -72)", heading)
    time.sleep(0.5)  # the header's title slides to the page's name on scrolling: let it settle
    shot = screenshot_dir(tmp_path) / "site_api.png"
    assert driver.save_screenshot(str(shot))
    assert_a_drawn_page(shot)
