"""`i2i compare` as the user runs it: a subprocess, a table, the raw numbers, exit status 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_compare_trains_each_system_and_prints_one_table(tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    out = tmp_path / "cmp"
    cmd = [sys.executable, "-m", "i2i", "compare", "--configs", "demo", "demo_labels",
           "--kimg", "0.032", "--val-batches", "1", "--out", str(out)]  # fmt: skip
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((out / "compare.json").read_text())
    assert [r["config"] for r in rows] == ["demo", "demo_labels"]
    for row in rows:
        assert row["images"] >= 32 and row["iterations"] >= 1
        assert row["images_per_second"] > 0
        assert 0 < row["parameters_sampling"] < row["parameters_trained"]
    assert set(rows[0]["metrics"]) == {"val/l1_hole", "val/psnr_hole"}
    assert set(rows[1]["metrics"]) == {"val/l1", "val/psnr"}
    table = (out / "compare.md").read_text()
    assert table in result.stdout and "| demo | InpaintingTask | inpainting |" in table


def test_compare_names_an_unknown_config(tmp_path):
    cmd = [sys.executable, "-m", "i2i", "compare", "--configs", "no_such_demo"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "no_such_demo" in result.stderr and "demo" in result.stderr
