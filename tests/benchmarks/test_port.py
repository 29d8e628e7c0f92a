"""`python -m benchmarks.port` without the port's checkout: it says where to get it, and
`--if-present` (what `make bench` runs) skips it with exit 0."""

from __future__ import annotations

import subprocess
import sys

from tests.clirun import REPO, env


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.port", *args],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_missing_port_checkout_names_the_folder_and_the_clone_command(tmp_path):
    missing = tmp_path / "nowhere"
    result = run("--port", str(missing))
    assert result.returncode == 1
    assert f"no CoModGAN port at {missing}" in result.stderr
    assert f"git clone https://github.com/zengxianyu/co-mod-gan-pytorch {missing}" in result.stderr
    assert "Traceback" not in result.stderr
    skipped = run("--port", str(missing), "--if-present")
    assert skipped.returncode == 0 and f"no CoModGAN port at {missing}" in skipped.stdout
