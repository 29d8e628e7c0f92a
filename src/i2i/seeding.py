"""Seeds derived from integers: the project's one way to seed a random stream from
(seed, rank, iteration), (seed, sample position), (eval_seed, index, variant), ...

Python's hash of a tuple of ints is the same in every process and run (only str hashes are
salted), so a stream derived here is reproducible across ranks, workers and resumed runs.
"""

from __future__ import annotations

import numpy as np


def derive_seed(*parts: int) -> int:
    """A non-negative 63-bit seed for torch from integers."""
    return hash(tuple(int(p) for p in parts)) & 0x7FFF_FFFF_FFFF_FFFF


def numpy_rng(*parts: int) -> np.random.Generator:
    """A numpy Generator seeded by integers (numpy's SeedSequence mixes them)."""
    return np.random.default_rng([int(p) for p in parts])
