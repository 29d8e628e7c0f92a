"""`i2i.images.to_uint8`: the bytes the inference commands, the deep image prior and the
synthetic scenes write, from one function."""

from __future__ import annotations

import numpy as np
import torch

from i2i.images import to_uint8


def test_every_byte_comes_back_as_itself_and_halves_round_away_from_the_grid():
    byte = torch.arange(256, dtype=torch.float32)
    x = (byte / 127.5 - 1).reshape(1, 1, 256)  # a grey image, one row
    assert np.array_equal(to_uint8(x), np.arange(256, dtype=np.uint8).reshape(1, 256))
    # The rounding the inpaint and translate outputs were written with: (x + 1) * 127.5, rounded
    # half to even, then saturated.
    values = torch.linspace(-1.2, 1.2, 3 * 4 * 1001).reshape(3, 4, 1001)
    reference = values.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)
    assert np.array_equal(to_uint8(values), reference.permute(1, 2, 0).numpy())


def test_channels_go_last_one_channel_is_dropped_and_other_types_are_converted():
    x = torch.rand(3, 5, 7, dtype=torch.float64) * 2 - 1
    u = to_uint8(x.requires_grad_())
    assert u.shape == (5, 7, 3) and u.dtype == np.uint8
    assert to_uint8(torch.zeros(1, 5, 7)).shape == (5, 7)
    assert (to_uint8(torch.full((3, 2, 2), 7.0)) == 255).all()
    assert (to_uint8(torch.full((3, 2, 2), -7.0, dtype=torch.bfloat16)) == 0).all()
