"""Seeds derived from integers: the project's one way to seed a random stream from
(seed, rank, iteration), (seed, sample position), (eval_seed, index, variant), ...

Python's hash of a tuple of ints is the same in every process and run (only str hashes are
salted), so a stream derived here is reproducible across ranks, workers and resumed runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """A non-negative 63-bit seed for torch from integers."""
    return hash(tuple(int(p) for p in parts)) & 0x7FFF_FFFF_FFFF_FFFF


def numpy_rng(*parts: int) -> np.random.Generator:
    """A numpy Generator seeded by integers (numpy's SeedSequence mixes them)."""
    return np.random.default_rng([int(p) for p in parts])


@contextlib.contextmanager
def seeded_torch_cpu(*parts: int) -> Iterator[None]:
    """Torch's CPU generator seeded by integers inside the block, restored after it (for code
    that draws from the global generator, as torchvision's transforms do). The CPU generator
    alone: torch.manual_seed would also seed every lazily initialised accelerator and record a
    stack trace for each, about ten times the cost, paid per sample in a data loader
    (docs/benchmarks.md, Loading)."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(derive_seed(*parts) & 0x7FFF_FFFF)  # 31 bits, as ever
        yield
