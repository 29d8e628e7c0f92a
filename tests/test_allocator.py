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

# Starts as the console script does (`i2i data --help` exits before any tensor), then counts the
# page faults of two 64 MiB activations per step, as a network's layers make and free them.
FAULTS = """
import resource, sys, torch
from i2i.commands import main
try:
    main(["data", "--help"])
except SystemExit:
    pass
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
x = torch.ones(2**24)
def step():
    y = x * 2
    z = y + 1
for _ in range(3):  # the heap grows to the working set first (it may take a few steps more)
    step()
counts = []
for _ in range(9):
    before = faults()
    step()
    counts.append(faults() - before)
print(sorted(counts)[4] // 2)  # the median step, per tensor
"""


def faults_per_tensor(**extra_env: str) -> int:
    environment = env(**extra_env)
    if not extra_env:
        environment.pop("I2I_MALLOC", None)  # the default, whatever this shell has set
    result = subprocess.run(
        [sys.executable, "-c", FAULTS],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, output(result)
    return int(result.stdout.split()[-1])


def test_the_i2i_command_keeps_freed_memory_for_reuse_unless_told_not_to(monkeypatch):
    pages = 2**26 // 4096  # of one 64 MiB tensor
    assert faults_per_tensor() < pages // 100  # the default
    assert faults_per_tensor(I2I_MALLOC="system") >= pages // 2  # glibc maps it afresh each time
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
