"""Keep freed memory in the process for reuse instead of returning it to the kernel (glibc), as
the `i2i` command does unless `I2I_MALLOC=system`.

glibc's malloc serves each large block (above 32 MiB always, above a threshold from 128 KiB
otherwise) with a fresh mmap and unmaps it when freed, so every such tensor pays one page fault
per 4 KiB page when first written. A 256x256 feature map of 128 channels is 32 MiB at batch 1
and 256 MiB at batch 8, so a CoModGAN step at 256 pays millions of page faults, and on some
machines (a VM among them) about half its time goes to the kernel. Keeping freed memory removes
that time, and the training iteration at 256 runs markedly faster; how much depends on the
machine. PyTorch keeps no CPU cache of its own. Measured in docs/benchmarks.md, "Freed memory
kept for reuse".

`keep_freed_memory` tells malloc to serve large blocks from its heap and to keep what is freed
(`mallopt`: no mmap, trim only above 2 GiB), as a GPU caching allocator does. The price is
memory: the heap grows to the largest working set and holds it (about a fifth more peak memory
for a step at 256, held flat from step to step: it does not creep). Two different models in one
process do not share it well: the benchmark against the PyTorch port of CoModGAN (whose filters
make GiB-sized temporaries) ran out of memory with it in the port's first step, after i2i's, so
that benchmark runs with `system`. GPU runs gain nothing and lose nothing: their large tensors
are not in this heap."""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_MAX = -4
KEEP_UP_TO = 2**31 - 1  # bytes free at the heap's top before it is given back (mallopt: an int)
ENV = "I2I_MALLOC"
CHOICES = ("keep", "system")


def keep_freed_memory() -> bool:
    """Unless I2I_MALLOC=system, apply it to this process (and the loader workers it forks). True
    when applied; False when not, or off glibc. Call before the large allocations."""
    choice = os.environ.get(ENV, "keep")
    if choice not in CHOICES:
        raise ValueError(f"{ENV}={choice!r}: use 'keep' (the default) or 'system'")
    if choice == "system" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_UP_TO))
