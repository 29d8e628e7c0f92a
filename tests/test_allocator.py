"""Freed memory kept for reuse (i2i.allocator): once the `i2i` command has started, large tensors
stop costing a page fault per 4 KiB page; with I2I_MALLOC=system, glibc's own behaviour."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from i2i.allocator import keep_freed_memory
from tests.clirun import REPO, env, i2i, output

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")

# One process, started twice as the console script starts (`i2i convert --help` exits before any
# tensor): first with I2I_MALLOC=system, then with the default (the allocator's settings are a
# process's for good, so `system` must come first). Each time it prints the page faults of two
# 64 MiB activations per step, as a network's layers make and free them.
FAULTS = """
import os, resource, torch
from i2i.commands import main
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
x = torch.ones(2**24)
def step():
    y = x * 2
    z = y + 1
for malloc in ("system", None):
    if malloc is None:
        os.environ.pop("I2I_MALLOC", None)  # the default, whatever this shell has set
    else:
        os.environ["I2I_MALLOC"] = malloc
    try:
        main(["convert", "--help"])
    except SystemExit:
        pass
    for _ in range(3):  # the heap grows to the working set first (it may take a few steps more)
        step()
    counts = []
    for _ in range(9):
        before = faults()
        step()
        counts.append(faults() - before)
    print("faults", malloc, sorted(counts)[4] // 2)  # the median step, per tensor
"""


def faults_per_tensor() -> dict[str, int]:
    """{"system": page faults per tensor under I2I_MALLOC=system, "None": under the default}."""
    result = subprocess.run(
        [sys.executable, "-c", FAULTS],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, output(result)
    lines = [line.split()[1:] for line in result.stdout.splitlines() if line.startswith("faults ")]
    return {malloc: int(count) for malloc, count in lines}


def test_the_i2i_command_keeps_freed_memory_for_reuse_unless_told_not_to(monkeypatch):
    pages = 2**26 // 4096  # of one 64 MiB tensor
    faults = faults_per_tensor()
    assert faults["system"] >= pages // 2  # glibc maps it afresh each time
    assert faults["None"] < pages // 100  # the default
    # The default's name, said explicitly, is applied too (here: the i2i command does it anyway).
    monkeypatch.setenv("I2I_MALLOC", "keep")
    assert keep_freed_memory() is True
    monkeypatch.setenv("I2I_MALLOC", "system")
    assert keep_freed_memory() is False


def test_an_unknown_choice_is_refused_in_one_line():
    result = i2i("data", "--help", I2I_MALLOC="mmap")
    assert result.returncode == 2, output(result)
    assert "I2I_MALLOC='mmap': use 'keep' (the default) or 'system'" in result.stderr
    assert "Traceback" not in result.stderr
