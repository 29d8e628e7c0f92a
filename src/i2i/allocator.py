"""Optionally keep freed memory in the process for reuse instead of returning it to the kernel
(glibc; `I2I_MALLOC=keep`).

glibc's malloc serves each large block (above 32 MiB always, above a threshold from 128 KiB
otherwise) with a fresh mmap and unmaps it when freed, so every such tensor pays one page fault
per 4 KiB page when first written. A 256x256 feature map of 128 channels is 32 MiB at batch 1
and 256 MiB at batch 8: on the project's 2-core machine a G forward+backward at batch 8 took 3.8
million page faults and 7 s of kernel time, and ran 13-16% faster without them (G forward at
batch 1: 7-12%). PyTorch keeps no CPU cache of its own.

`keep_freed_memory` tells malloc to serve large blocks from its heap and to keep what is freed
(`mallopt`: no mmap, trim only above 2 GiB), as a GPU caching allocator does. It is off unless
asked for, because the heap can only grow: G forward+backward at batch 8 peaked at 9.0 GiB
instead of 7.3 and held it between steps, and the benchmark against the PyTorch port of
CoModGAN (another pattern of temporaries) ran out of the machine's 24 GiB in the port's first
step, after i2i's, where it fits without it. GPU runs gain nothing from it: their large tensors
are not in this process's heap.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_MAX = -4
KEEP_UP_TO = 2**31 - 1  # bytes free at the heap's top before it is given back (mallopt: an int)
ENV = "I2I_MALLOC"
CHOICES = ("system", "keep")


def keep_freed_memory() -> bool:
    """With I2I_MALLOC=keep, apply it to this process (and the loader workers it forks). True
    when applied; False when not asked for, or off glibc. Call before the large allocations."""
    choice = os.environ.get(ENV, "system")
    if choice not in CHOICES:
        raise ValueError(f"{ENV}={choice!r}: use 'system' (the default) or 'keep'")
    if choice == "system" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_UP_TO))
