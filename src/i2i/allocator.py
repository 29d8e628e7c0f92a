"""Keep freed memory in the process for reuse instead of returning it to the kernel (glibc), as
the `i2i` command does unless `I2I_MALLOC=system`.

glibc's malloc serves each large block (above 32 MiB always, above a threshold from 128 KiB
otherwise) with a fresh mmap and unmaps it when freed, so every such tensor pays one page fault
per 4 KiB page when first written. A 256x256 feature map of 128 channels is 32 MiB at batch 1
and 256 MiB at batch 8: a G forward+backward at 256, batch 8 took 3.9 million page faults per
step. On the AMD EPYC (Zen 4, a VM) that was 18-20 s of its 36 s in the kernel; with freed
memory kept the step took 25 s, and a full CoModGAN training iteration at 256, batch 4 ran
1.59x faster (33.6 s against 53.4). On a Xeon it was 13-16%. PyTorch keeps no CPU cache of its
own.

`keep_freed_memory` tells malloc to serve large blocks from its heap and to keep what is freed
(`mallopt`: no mmap, trim only above 2 GiB), as a GPU caching allocator does. The price is
memory: the heap grows to the largest working set and holds it. That step peaked at 8.8 GiB
instead of 7.3 and stayed there over 8 steps (it does not creep); the training iteration at 8.6
GB instead of 7.3. Two different models in one process do not share it well: the benchmark
against the PyTorch port of CoModGAN (whose filters make 4 GiB temporaries) ran out of 24 GiB
with it in the port's first step, after i2i's, so that benchmark runs with `system`. GPU runs
gain nothing and lose nothing: their large tensors are not in this heap."""

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
