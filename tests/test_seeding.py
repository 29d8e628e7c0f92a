"""Seeds derived from integers: the per-sample torch stream of the data loaders."""

from __future__ import annotations

import torch

from i2i.seeding import derive_seed, seeded_torch_cpu


def test_seeded_torch_cpu_draws_torch_manual_seeds_stream_and_restores_the_callers():
    """The same draws as torch.manual_seed(derive_seed(...) 31 bits), which the loaders used
    before (crops of old runs are unchanged), and the caller's generator continues untouched."""
    torch.manual_seed(0)
    expected_outer = torch.rand(4)
    torch.manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(7, 123) & 0x7FFF_FFFF)
        want = torch.rand(6), torch.randint(1000, (3,))
    with seeded_torch_cpu(7, 123):
        got = torch.rand(6), torch.randint(1000, (3,))
    with seeded_torch_cpu(7, 124):
        other = torch.rand(6)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert not torch.equal(other, got[0])
    assert torch.equal(torch.rand(4), expected_outer)
