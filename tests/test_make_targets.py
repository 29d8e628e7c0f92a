"""`make lint` and `make docs` run inside the suite, so CI (which runs `make test`) holds the house
format and builds the documentation site with --strict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make(target: str, home: Path) -> subprocess.CompletedProcess:
    """`make TARGET` in the checkout, with this environment's tools (ruff, mkdocs) on the PATH."""
    return subprocess.run(
        ["make", target],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(home)},
    )


def test_make_lint_passes(tmp_path):
    result = make("lint", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_make_docs_builds_the_site_with_an_api_page_per_package(tmp_path):
    result = make("docs", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    site = REPO / "site"
    assert "Where to go next" in (site / "index.html").read_text()
    # The API pages are generated from the code: a public class of each package appears.
    for page, name in [
        ("networks", "CoModGenerator"),
        ("tasks", "InpaintingTask"),
        ("data", "InpaintingDataModule"),
        ("metrics", "InceptionDiscriminativeScore"),
        ("inference", "load_model"),
    ]:
        assert name in (site / "api" / page / "index.html").read_text(), (page, name)
