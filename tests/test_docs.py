"""`make docs` builds the documentation site with --strict, as CI does through this suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_make_docs_builds_the_site_with_an_api_page_per_package(tmp_path):
    result = subprocess.run(
        ["make", "docs"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)},
    )
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
