"""The one resolution parser, shared by networks and data."""

import pytest

from i2i.data.crop import check_resolution
from i2i.networks import CoModGenerator
from i2i.resolution import as_hw, parse_resolution


def test_parse_resolution_accepts_powers_of_two_and_names_the_fix():
    assert parse_resolution(64) == (64, 64) and parse_resolution([256, 512]) == (256, 512)
    assert parse_resolution(160, multiple_of=4) == (160, 160)
    with pytest.raises(ValueError, match=r"height 48 is not a power of two.*32 or 64"):
        parse_resolution(48)
    with pytest.raises(ValueError, match="aspect ratio 8:1 exceeds 4:1"):
        parse_resolution((16, 128))
    with pytest.raises(ValueError, match="not a multiple of 4"):
        parse_resolution(162, multiple_of=4)
    with pytest.raises(ValueError, match="an int or an .H, W. pair"):
        parse_resolution("64")


def test_networks_and_data_share_the_parser():
    assert check_resolution is parse_resolution
    with pytest.raises(ValueError, match=r"img_resolution 48: height 48 is not a power of two"):
        CoModGenerator(48)


def test_as_hw():
    assert as_hw(5) == (5, 5) and as_hw((3, 7)) == (3, 7)
    with pytest.raises(ValueError, match="size must be an int or .H, W. of ints >= 8"):
        as_hw((4, 16), minimum=8)


def test_one_seed_derivation():
    from i2i.seeding import derive_seed, numpy_rng

    assert derive_seed(3, 7) == derive_seed(3, 7) == hash((3, 7)) & 0x7FFF_FFFF_FFFF_FFFF
    assert derive_seed(3, 7) != derive_seed(7, 3) and derive_seed(-1) >= 0
    assert numpy_rng(1, 2).integers(1 << 30) == numpy_rng(1, 2).integers(1 << 30)
