"""Random inpainting masks drawn as arrays: CoModGAN's free-form masks (large and huge rectangles
plus brush strokes, in MAT's lighter "small" variant too) and single rectangles, each drawn
until its hole ratio falls in the asked range. A mask holds 1 on KNOWN pixels and 0 in the hole,
as everywhere in ``i2i`` (`i2i.data.masks`, whose generators sample these per item).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw

from i2i.errors import DataError
from i2i.resolution import as_hw

# Maximum number of tries (large rectangles, huge rectangles, brush strokes) per variant.
# "large" is CoModGAN's RandomMask; "small" is the lighter variant from MAT.
VARIANTS: dict[str, tuple[int, int, int]] = {"large": (10, 5, 20), "small": (5, 3, 9)}
# A hole_range that the generator can (almost) never satisfy, e.g. (0.0, 0.01), would
# otherwise spin forever; this many rejected draws is far beyond any sane range.
_MAX_ATTEMPTS = 10_000


def _check_hole_range(hole_range: tuple[float, float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in hole_range)
    except (TypeError, ValueError):
        raise DataError(f"hole_range must be a pair (lo, hi), got {hole_range!r}") from None
    if not 0.0 <= lo < hi <= 1.0:
        raise DataError(f"hole_range must satisfy 0 <= lo < hi <= 1, got {hole_range!r}")
    return lo, hi


def _check_variant(variant: str) -> tuple[int, int, int]:
    if variant not in VARIANTS:
        raise DataError(f"unknown mask variant {variant!r}; valid variants: {sorted(VARIANTS)}")
    return VARIANTS[variant]


def _count(rng: np.random.Generator, max_tries: int) -> int:
    # rng.integers(0) raises; a zero budget (tiny coef) simply means "draw nothing".
    return int(rng.integers(max_tries)) if max_tries > 0 else 0


def _fill_rectangles(
    known: np.ndarray, rng: np.random.Generator, max_tries: int, max_h: int, max_w: int
) -> None:
    """Punch up to ``max_tries - 1`` axis-aligned rectangular holes into ``known`` in place."""
    h_img, w_img = known.shape
    for _ in range(_count(rng, max_tries)):
        w = int(rng.integers(max_w)) if max_w > 0 else 0
        h = int(rng.integers(max_h)) if max_h > 0 else 0
        # The corner may lie up to half a side outside the image, so holes touch the border
        # as often as the centre; slicing clips them to the image.
        x = int(rng.integers(-(w // 2), w_img - w + w // 2))
        y = int(rng.integers(-(h // 2), h_img - h + h // 2))
        known[max(y, 0) : max(y + h, 0), max(x, 0) : max(x + w, 0)] = 0


def _brush_strokes(rng: np.random.Generator, max_tries: int, h: int, w: int) -> np.ndarray:
    """DeepFill v2 free-form strokes; returns a bool array that is True on stroke pixels."""
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    mean_angle, angle_range = 2 * math.pi / 5, 2 * math.pi / 15
    average_radius = math.sqrt(h * h + w * w) / 8
    for _ in range(_count(rng, max_tries)):
        num_vertex = int(rng.integers(4, 18))
        angle_min = mean_angle - rng.uniform(0, angle_range)
        angle_max = mean_angle + rng.uniform(0, angle_range)
        angles = rng.uniform(angle_min, angle_max, size=num_vertex)
        # Alternate the turning direction so strokes zig-zag instead of curling up.
        angles[::2] = 2 * math.pi - angles[::2]
        radii = np.clip(
            rng.normal(average_radius, average_radius // 2, size=num_vertex),
            0,
            2 * average_radius,
        )
        x, y = int(rng.integers(w)), int(rng.integers(h))
        vertices = [(x, y)]
        for angle, r in zip(angles.tolist(), radii.tolist(), strict=True):
            x = int(min(max(x + r * math.cos(angle), 0), w))
            y = int(min(max(y + r * math.sin(angle), 0), h))
            vertices.append((x, y))
        # Stroke width is in absolute pixels (not scaled with the image), as in the reference.
        width = int(rng.uniform(12, 48))
        draw.line(vertices, fill=255, width=width)
        half = width // 2
        for vx, vy in vertices:  # round joints and caps
            draw.ellipse((vx - half, vy - half, vx + half, vy + half), fill=255)
    strokes = np.asarray(canvas) > 0
    if rng.random() < 0.5:
        strokes = strokes[:, ::-1]
    if rng.random() < 0.5:
        strokes = strokes[::-1, :]
    return strokes


def _ratio_fits(n: int, lo: float, hi: float) -> bool:
    """Whether n pixels can have a hole ratio k / n strictly inside (lo, hi)."""
    k = math.floor(lo * n) + 1  # the fewest hole pixels above lo
    k += k / n <= lo  # lo * n rounded down below a whole number
    return k < n and k / n < hi


def random_known(
    size: int | tuple[int, int],
    hole_range: tuple[float, float] = (0.0, 1.0),
    rng: np.random.Generator | None = None,
    variant: str = "large",
) -> np.ndarray:
    """`random_mask` as an (H, W) bool array, True = known: 1 byte a pixel where the
    tensor takes 4 (a 12000x9000 photo's mask is 108 MB, not 432).

    Args:
        size: (H, W), or one int for a square.
        hole_range: (lo, hi) with 0 <= lo < hi <= 1: the hole ratio is strictly inside.
        rng: the generator to draw from; None: a fresh unseeded one.
        variant: "large" (the official masks) or "small" (MAT's lighter variant).

    Raises:
        DataError: a bad hole_range or variant, or a size too small for any ratio in the range.
        RuntimeError: no draw reached the range (a range the generator can hardly satisfy).
    """
    h, w = as_hw(size)
    lo, hi = _check_hole_range(hole_range)
    rect_tries, big_rect_tries, stroke_tries = _check_variant(variant)
    if not _ratio_fits(h * w, lo, hi):
        fewest = next(n for n in range(h * w + 1, 10**7) if _ratio_fits(n, lo, hi))
        raise DataError(
            f"a {h}x{w} (HxW) mask cannot have a hole ratio strictly inside {lo}..{hi}: it "
            f"needs at least {fewest} pixels"
        )
    rng = np.random.default_rng() if rng is None else rng
    coef = min(lo + hi, 1.0)
    for _ in range(_MAX_ATTEMPTS):
        known = np.ones((h, w), dtype=np.uint8)
        _fill_rectangles(known, rng, int(rect_tries * coef), h // 2, w // 2)
        _fill_rectangles(known, rng, int(big_rect_tries * coef), h, w)
        known[_brush_strokes(rng, int(stroke_tries * coef), h, w)] = 0
        hole = 1.0 - np.count_nonzero(known) / known.size
        if lo < hole < hi:
            return known.view(bool)  # 0 / 1 bytes: a valid bool array, no copy
    raise RuntimeError(
        f"random_mask could not reach a hole ratio inside hole_range={hole_range!r} in "
        f"{_MAX_ATTEMPTS} draws; widen the range (the generator's budget scales with lo + hi)"
    )


def random_mask(
    size: int | tuple[int, int],
    hole_range: tuple[float, float] = (0.0, 1.0),
    rng: np.random.Generator | None = None,
    variant: str = "large",
) -> torch.Tensor:
    """Draw a free-form mask as in CoModGAN's ``RandomMask`` (1 = known, 0 = hole).

    Rectangles (two passes, sides below ``side // 2`` then below ``side``) and DeepFill v2
    brush strokes are unioned into the hole; draws whose hole ratio is not strictly inside
    ``hole_range`` are rejected and redrawn. The budget of tries scales with
    ``min(lo + hi, 1)``. For a rectangular ``size=(H, W)`` the algorithm is applied on its
    own terms per axis: rectangle widths/x use ``W``, heights/y use ``H``, strokes are
    clipped to ``W x H`` and their segment length uses the diagonal ``sqrt(H^2 + W^2)``.
    A size too small for any ratio inside the range (1x1) is a ValueError.

    Args:
        size: the mask's (H, W); an int gives a square.
        hole_range: the accepted hole ratios, lo < ratio < hi, where 0 <= lo < hi <= 1.
        rng: draws the mask; None: a new unseeded generator.
        variant: the official "large" masks, or MAT's lighter "small" ones.

    Returns:
        float32 ``(1, H, W)`` in {0, 1}, 1 = known.

    Raises:
        DataError: see `random_known`.
        RuntimeError: see `random_known`.
    """
    return torch.from_numpy(random_known(size, hole_range, rng, variant).astype(np.float32))[None]


def rectangle_sides(
    size: int | tuple[int, int], sides: tuple[int, int] = (46, 92), sides_at: int = 160
) -> tuple[tuple[int, int], tuple[int, int]]:
    """The (lo, hi) range of a rectangle's height and of its width, in pixels, at `size`: `sides`
    are given at a `sides_at` resolution and scaled with each side of the image (GLCIC: 46-92 px
    at 160 px), rounded, at least 1 and at most the image's side.

    Args:
        size: the image's (H, W), or one int for a square.
        sides: (lo, hi) of a side in pixels at `sides_at`, 0 < lo <= hi.
        sides_at: the resolution `sides` are given at, >= 1.

    Returns:
        ((height lo, height hi), (width lo, width hi)).

    Raises:
        DataError: sides or sides_at out of range.
    """
    h, w = as_hw(size)
    lo, hi = (int(v) for v in sides)
    if not 0 < lo <= hi or sides_at < 1:
        raise DataError(f"need 0 < sides[0] <= sides[1] and sides_at >= 1, got {sides}, {sides_at}")

    def scaled(side: int) -> tuple[int, int]:
        a = min(max(round(lo * side / sides_at), 1), side)
        return a, min(max(round(hi * side / sides_at), a), side)

    return scaled(h), scaled(w)


def rectangle_mask(
    size: int | tuple[int, int],
    rng: np.random.Generator | None = None,
    sides: tuple[int, int] = (46, 92),
    sides_at: int = 160,
) -> torch.Tensor:
    """One rectangular hole, as GLCIC trains (1 = known, 0 = hole): height and width drawn
    independently and uniformly (integers, both ends included) from `sides` scaled from
    `sides_at` to the image (see `rectangle_sides`), the rectangle placed uniformly so that
    it lies wholly inside the image.

    Args:
        size: (H, W), or one int for a square.
        rng: the generator to draw from; None: a fresh unseeded one.
        sides: (lo, hi) of a side in pixels at `sides_at`.
        sides_at: the resolution `sides` are given at.

    Returns:
        float32 ``(1, H, W)`` in {0, 1}, 1 = known.

    Raises:
        DataError: sides or sides_at out of range.
    """
    h, w = as_hw(size)
    (h_lo, h_hi), (w_lo, w_hi) = rectangle_sides((h, w), sides, sides_at)
    rng = np.random.default_rng() if rng is None else rng
    rh, rw = int(rng.integers(h_lo, h_hi + 1)), int(rng.integers(w_lo, w_hi + 1))
    top, left = int(rng.integers(0, h - rh + 1)), int(rng.integers(0, w - rw + 1))
    known = torch.ones(1, h, w)
    known[:, top : top + rh, left : left + rw] = 0
    return known
