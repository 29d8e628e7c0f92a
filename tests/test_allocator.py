"""Freed memory kept for reuse (i2i.allocator): once the `i2i` command has started, large tensors
stop costing a page fault per 4 KiB page; with I2I_MALLOC=system, glibc's own behaviour."""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import platform
import resource

import pytest
import torch

from i2i.allocator import keep_freed_memory
from i2i.commands import main
from tests.clirun import i2i, output

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")


def _count_faults(malloc: str | None, answer) -> None:
    """In a process forked from the test process: start as the console script does (`i2i data
    --help` exits before any tensor), then send the page faults of two 64 MiB activations per
    step, as a network's layers make and free them (the median step, per tensor)."""
    if malloc is None:
        os.environ.pop("I2I_MALLOC", None)  # the default, whatever this shell has set
    else:
        os.environ["I2I_MALLOC"] = malloc
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main(["data", "--help"])

    def faults() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    x = torch.ones(2**24)

    def step() -> None:
        y = x * 2
        z = y + 1  # noqa: F841 - allocated and freed, as a layer's output is

    for _ in range(3):  # the heap grows to the working set first (it may take a few steps more)
        step()
    counts = []
    for _ in range(9):
        before = faults()
        step()
        counts.append(faults() - before)
    answer.send(sorted(counts)[4] // 2)


def faults_per_tensor(malloc: str | None = None) -> int:
    """`_count_faults` in a fresh process forked from this one (the allocator's settings are a
    process's for good; forking spares the imports)."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_count_faults, args=(malloc, send))
    child.start()
    try:
        assert receive.poll(120), "the child sent no count"
        return receive.recv()
    finally:
        child.join(timeout=60)
        assert child.exitcode == 0


def test_the_i2i_command_keeps_freed_memory_for_reuse_unless_told_not_to(monkeypatch):
    pages = 2**26 // 4096  # of one 64 MiB tensor
    assert faults_per_tensor() < pages // 100  # the default
    assert faults_per_tensor("system") >= pages // 2  # glibc maps it afresh each time
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
