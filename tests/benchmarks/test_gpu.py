"""benchmarks/gpu.py: the GPU rows print "no CUDA device" without one, and the same code runs on CPU
at 32 px (`--device cpu --tiny`) so that it is exercised where there is no GPU."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from benchmarks.common import FlopCount
from benchmarks.gpu import MODES, peak_tflops

from tests.clirun import REPO, env


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", *args],
        cwd=REPO,
        env=env(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_without_cuda_every_row_says_so(monkeypatch, capsys):
    from benchmarks.gpu import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without
    main([])
    printed = capsys.readouterr().out
    for mode in MODES:
        assert re.search(rf"\| {re.escape(mode)} +\| no CUDA device \|", printed), mode


@pytest.mark.slow  # a real 32 px training run in a subprocess; the next test runs the rows too
def test_tiny_cpu_run_prints_a_measured_row(one_torch_thread):
    result = bench("--device", "cpu", "--tiny", "--modes", "bf16-cl", "--iterations", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    gflop = float(re.search(r"model FLOPs per iteration: ([0-9.]+) GFLOP", result.stdout)[1])
    assert gflop > 0
    row = next(line for line in result.stdout.splitlines() if line.startswith("| bf16-cl "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:5] == ["bf16-mixed", "on", "channels_last", "-"]
    assert float(cells[11]) > 0  # images/s


def test_flop_count_covers_double_backward():
    # R1 differentiates a gradient: torch's FlopCounterMode fails there (its module hooks), ours
    # counts it. conv forward = 2 * Cout * Cin * k^2 * H' * W' * N; its input gradient the same.
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    fwd = 2 * 4 * 3 * 9 * 6 * 6 * 2
    with FlopCount() as counter:
        (grad,) = torch.autograd.grad(F.conv2d(x, w).sum(), x, create_graph=True)
    assert counter.total == 2 * fwd  # forward + input gradient
    with FlopCount() as counter:
        grad.square().sum().backward()
    assert counter.total >= fwd  # the second-order pass runs at least one conv again


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", 989.4),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H200", 989.4),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA L40S", 362.1),
        ("Some Future GPU", None),
    ],
)
def test_peak_by_device_name(name, peak):
    assert peak_tflops(name) == peak
