"""Image sizes: the project's one parser of a resolution, for networks and data alike.

A resolution is an int (a square) or an (H, W) pair; every network that halves its input down to
4x4 needs each side a power of two >= 4 (or, for fully convolutional systems such as GLCIC at
160 px, a multiple of its stride), and the aspect ratio is at most 4:1.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_ASPECT = 4


def as_hw(size: int | Sequence[int], minimum: int = 1, name: str = "size") -> tuple[int, int]:
    """(H, W) from an int (a square) or a pair of ints, each side at least `minimum`; any size
    otherwise (masks, patches, procedural scenes)."""
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if int(h) != h or int(w) != w or h < minimum or w < minimum:
        raise ValueError(
            f"{name} must be an int or (H, W) of ints >= {minimum} on each side, got {size!r}"
        )
    return int(h), int(w)


def _pow2_neighbours(v: int) -> str:
    if v < 4:
        return "4"
    lo = 1 << (v.bit_length() - 1)
    return f"{lo} or {lo * 2}"


def parse_resolution(
    resolution: int | Sequence[int],
    multiple_of: int | None = None,  # any multiple of this instead of a power of two
    name: str = "resolution",  # how the message names the value (e.g. "img_resolution")
) -> tuple[int, int]:
    """Normalise an int or (H, W) to (H, W); each side a power of two >= 4 (or, with
    `multiple_of`, any multiple of it: GLCIC's 160 px with 4), aspect <= 4:1. A bad value raises
    a ValueError that says which side is wrong and the nearest valid sizes."""
    if isinstance(resolution, int) and not isinstance(resolution, bool):
        sides = (resolution, resolution)
    elif (
        isinstance(resolution, Sequence)
        and not isinstance(resolution, str)
        and len(resolution) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) for s in resolution)
    ):
        sides = (int(resolution[0]), int(resolution[1]))
    else:
        raise ValueError(f"{name} must be an int or an (H, W) pair of ints, got {resolution!r}")
    for side_name, s in zip(("height", "width"), sides, strict=True):
        if multiple_of is not None:
            if s < multiple_of or s % multiple_of:
                raise ValueError(
                    f"{name} {resolution!r}: {side_name} {s} is not a multiple of {multiple_of}"
                )
        elif s < 4 or s & (s - 1):
            raise ValueError(
                f"{name} {resolution!r}: {side_name} {s} is not a power of two >= 4 (the network "
                f"halves it down to 4x4); nearest valid: {_pow2_neighbours(max(s, 1))}"
            )
    h, w = sides
    if max(h, w) > MAX_ASPECT * min(h, w):
        raise ValueError(
            f"{name} {resolution!r}: aspect ratio {max(h, w) // min(h, w)}:1 exceeds "
            f"{MAX_ASPECT}:1; use e.g. ({min(h, w)}, {min(h, w) * MAX_ASPECT}) or crop your images"
        )
    return h, w
