"""Timing helpers shared by the benchmarks: median wall time and a markdown table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from i2i.allocator import keep_freed_memory

KEEPS_FREED_MEMORY = keep_freed_memory()  # as the `i2i` command does (I2I_MALLOC=system: not)


def seconds(fn: Callable[[], object], reps: int = 3, warmup: int = 1) -> float:
    """Median wall time of `fn` over `reps` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def seconds_interleaved(
    fns: dict[str, Callable[[], object]], reps: int = 3, warmup: int = 1
) -> dict[str, float]:
    """Median wall time of each function, called in turn within every repetition: on a shared
    machine the load changes between rows measured one after the other, much less within one
    round, so the ratio of two medians compares the functions rather than the moments."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


class FlopCount(TorchDispatchMode):
    """Sums the FLOPs of every op run inside it (a multiply-add counts 2) with the formulas of
    torch.utils.flop_counter. Unlike its FlopCounterMode it tracks no modules, whose hooks break
    `torch.autograd.grad` (R1's gradient penalty)."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call (a multiply-add counts 2), by torch.utils.flop_counter's formulas."""
    with FlopCount() as counter:
        fn()
    return counter.total


def seconds_and_ceiling(
    fn: Callable[[], object], reps: int = 3, device: str = "cpu"
) -> tuple[float, float]:
    """(median seconds of `fn`, the ceiling measured just before and just after it, averaged):
    the CPU's speed drifts by 30% within minutes on a shared machine, so a ratio to one ceiling
    measured at the start says more about the drift than about the code."""
    before = ceiling_gflops(device, reps=3)
    t = seconds(fn, reps=reps)
    return t, (before + ceiling_gflops(device, reps=3)) / 2


def ceiling_gflops(device: str = "cpu", reps: int = 5) -> float:
    """The machine's practical rate: one large 3x3 conv (512 -> 512 at 64x64), the better of the
    two memory formats, measured now so that it shares the machine's current load."""
    best = 0.0
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(1, 512, 64, 64, device=device).to(memory_format=fmt)
        w = torch.randn(512, 512, 3, 3, device=device).to(memory_format=fmt)
        with torch.no_grad():
            t = seconds(lambda x=x, w=w: F.conv2d(x, w, padding=1), reps=reps)
        best = max(best, 2 * 9 * 512 * 512 * 64 * 64 / t / 1e9)
    return best


def print_table(rows: list[dict], title: str) -> None:
    if not rows:
        return
    keys = list(rows[0])
    cells = [[str(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print(f"\n### {title}\n")
    print("| " + " | ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for c in cells:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)) + " |")
    print(flush=True)
