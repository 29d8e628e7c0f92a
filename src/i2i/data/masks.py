"""Inpainting masks: the CoModGAN/MAT free-form generator and loaders for mask files.

Convention used everywhere in ``i2i``: a mask is a float32 tensor of shape ``(1, H, W)``
holding exactly 0 or 1, where **1 marks a KNOWN pixel and 0 marks the HOLE** to be filled.
The hole ratio of a mask is therefore ``1 - mask.mean()``.

Mask files on disk disagree about polarity (NVIDIA irregular masks, DeepFill v2, FcF and
AOT-GAN paint the hole white; MAT, MI-GAN and the CoModGAN demo paint the known region
white), so :func:`load_mask` and :class:`MaskFolder` make the caller state it explicitly.

Mask files are turned upright by their EXIF orientation, exactly as images are
(`i2i.data.datasets.load_image`), so a mask saved with its photo's orientation tag lines up.

A mask with transparency whose colour is the same everywhere and whose alpha varies (a cut-out
painted in an editor) is read from its alpha channel: alpha is taken as the grey level, so
opaque (255) is "white" and transparent (0) is "black", and the stated polarity applies to it
as to any grey mask (white_is_known: transparent = hole; white_is_hole: opaque = hole).

:data:`KNOWN_MASK_SETS` lists published mask sets with their polarity and hole ratios;
:func:`judge_hole_ratios` compares measured ratios with it to flag a polarity that looks wrong.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

from i2i.data.folders import walk_files
from i2i.errors import DataError
from i2i.resolution import as_hw

__all__ = [
    "KNOWN_MASK_SETS",
    "MASK_EXTENSIONS",
    "POLARITIES",
    "VARIANTS",
    "MaskFolder",
    "RandomMaskGenerator",
    "RectangleMaskGenerator",
    "judge_hole_ratios",
    "load_known",
    "load_mask",
    "mask_hole_ratio",
    "random_known",
    "random_mask",
    "rectangle_mask",
]

# Maximum number of tries (large rectangles, huge rectangles, brush strokes) per variant.
# "large" is CoModGAN's RandomMask; "small" is the lighter variant from MAT.
VARIANTS: dict[str, tuple[int, int, int]] = {"large": (10, 5, 20), "small": (5, 3, 9)}
POLARITIES = ("white_is_known", "white_is_hole")
MASK_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class KnownMaskSet(NamedTuple):
    """A published mask set: file polarity and hole ratios (hole / area, 0..1)."""

    polarity: str
    per_mask: tuple[float, float]  # range of one mask's hole ratio
    mean: tuple[float, float]  # plausible mean over a sample of the set
    about: str


KNOWN_MASK_SETS: dict[str, KnownMaskSet] = {
    "nvidia_irregular": KnownMaskSet(
        "white_is_hole",
        (0.01, 0.60),
        (0.05, 0.45),
        "NVIDIA irregular masks (PConv, Liu et al. 2018): 6 bins of 1-10% ... 50-60% hole",
    ),
    "comodgan": KnownMaskSet(
        "white_is_known",
        (0.0, 1.0),
        (0.40, 0.75),
        "CoModGAN free-form masks: 0-100% hole, mean 64% at 512 and 72% at 256",
    ),
    "mat": KnownMaskSet(
        "white_is_known",
        (0.0, 1.0),
        (0.30, 0.75),
        "MAT masks (CoModGAN's generator; its small variant averages 40% at 512)",
    ),
}
_PER_MASK_SLACK = 0.02  # resizing a mask to the resolution moves its ratio a little
_PER_MASK_SHARE = 0.9  # a set fits when this share of the sampled masks is in its range


def _fits(s: KnownMaskSet, ratios: np.ndarray) -> bool:
    lo, hi = s.per_mask[0] - _PER_MASK_SLACK, s.per_mask[1] + _PER_MASK_SLACK
    inside = float(np.mean((ratios >= lo) & (ratios <= hi)))
    return s.mean[0] <= float(ratios.mean()) <= s.mean[1] and inside >= _PER_MASK_SHARE


def _describe_set(name: str, s: KnownMaskSet) -> str:
    return (
        f"{name} ({s.about}; {s.polarity}, {s.per_mask[0]:.0%}-{s.per_mask[1]:.0%} hole per "
        f"mask, mean {s.mean[0]:.0%}-{s.mean[1]:.0%})"
    )


def judge_hole_ratios(
    ratios: np.ndarray | list[float], polarity: str, mask_set: str | None = None
) -> str | None:
    """A warning (or None) when hole ratios measured with `polarity` look inverted.

    With `mask_set` (a key of KNOWN_MASK_SETS) the ratios are compared with that set only.
    Without it: when no known set of the stated polarity fits but one of the other polarity
    fits the inverted ratios, or when the inverted ratios fit a set with a narrow per-mask range
    (NVIDIA's 1-60%) that the stated reading does not, the polarity is probably wrong.

    Args:
        ratios: hole ratios in [0, 1] of some masks, measured with `polarity`.
        polarity: "white_is_hole" or "white_is_known".
        mask_set: a key of KNOWN_MASK_SETS to compare with; None: every known set.

    Returns:
        The warning's text, or None when the reading looks right.

    Raises:
        DataError: an unknown polarity or mask_set.
    """
    _check_polarity(polarity)
    r = np.asarray(ratios, dtype=np.float64)
    other = POLARITIES[1 - POLARITIES.index(polarity)]
    said = (
        f"measured {r.mean():.1%} hole on average ({r.min():.0%}-{r.max():.0%} per mask) with "
        f"mask_polarity={polarity!r}; with {other!r} they would be {1 - r.mean():.1%} "
        f"({1 - r.max():.0%}-{1 - r.min():.0%})"
    )
    if mask_set is not None:
        if mask_set not in KNOWN_MASK_SETS:
            raise DataError(f"unknown mask_set {mask_set!r}; known: {sorted(KNOWN_MASK_SETS)}")
        s = KNOWN_MASK_SETS[mask_set]
        if s.polarity == polarity and _fits(s, r):
            return None
        return (
            f"Masks {said}, but mask_set={mask_set!r} is {_describe_set(mask_set, s)}. Check "
            f"mask_polarity (the set's is {s.polarity!r}) and that these are its masks."
        )
    stated = [n for n, s in KNOWN_MASK_SETS.items() if s.polarity == polarity and _fits(s, r)]
    inverted = [n for n, s in KNOWN_MASK_SETS.items() if s.polarity == other and _fits(s, 1 - r)]
    narrow = [n for n in inverted if KNOWN_MASK_SETS[n].per_mask != (0.0, 1.0)]
    narrow_stated = [n for n in stated if KNOWN_MASK_SETS[n].per_mask != (0.0, 1.0)]
    if inverted and (not stated or (narrow and not narrow_stated)):
        looks = "; ".join(_describe_set(n, KNOWN_MASK_SETS[n]) for n in inverted)
        return (
            f"Masks {said}. Read with {other!r} they match {looks}, so mask_polarity is probably "
            f"inverted: set mask_polarity={other!r} (in i2i, 1 = known). If the polarity is "
            "right (hole ratios alone cannot always tell), name the set with mask_set (e.g. "
            "comodgan) or set check_mask_polarity: false to silence this warning."
        )
    return None


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
    """:func:`random_mask` as an (H, W) bool array, True = known: 1 byte a pixel where the
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


class RandomMaskGenerator:
    """Picklable callable holding the settings of :func:`random_mask` (for DataLoaders):
    `generator(rng)` draws a (1, H, W) mask, 1 = known.

    Args:
        size: (H, W), or one int for a square.
        hole_range: (lo, hi) with 0 <= lo < hi <= 1: the hole ratio is strictly inside.
        variant: "large" (the official masks) or "small" (MAT's lighter variant).

    Raises:
        DataError: a bad hole_range or variant (checked here, not inside a worker).
    """

    def __init__(
        self,
        size: int | tuple[int, int],
        hole_range: tuple[float, float] = (0.0, 1.0),
        variant: str = "large",
    ) -> None:
        # Validate eagerly so a bad config fails at construction, not inside a worker.
        self.size = as_hw(size)
        self.hole_range = _check_hole_range(hole_range)
        _check_variant(variant)
        self.variant = variant

    def __call__(self, rng: np.random.Generator | None = None) -> torch.Tensor:
        return random_mask(self.size, self.hole_range, rng, self.variant)

    def sample(self, seed: int) -> torch.Tensor:
        """Deterministic mask for ``seed`` (e.g. the validation image index).

        Args:
            seed: seeds a fresh generator.

        Returns:
            float32 (1, H, W) in {0, 1}, 1 = known.
        """
        return self(np.random.default_rng(seed))

    def __repr__(self) -> str:
        return (
            f"RandomMaskGenerator(size={self.size}, hole_range={self.hole_range}, "
            f"variant={self.variant!r})"
        )


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
    `sides_at` to the image (see :func:`rectangle_sides`), the rectangle placed uniformly so that
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


class RectangleMaskGenerator:
    """Picklable callable holding the settings of :func:`rectangle_mask` (for DataLoaders):
    `generator(rng)` draws a (1, H, W) mask, 1 = known.

    Args:
        size: (H, W), or one int for a square.
        sides: hole sides (lo, hi) in pixels at `sides_at` (GLCIC: 46-92).
        sides_at: the resolution `sides` are given at; scaled to `size`.

    Raises:
        DataError: sides or sides_at out of range (checked here).
    """

    def __init__(
        self,
        size: int | tuple[int, int],
        sides: tuple[int, int] = (46, 92),  # hole sides in pixels at `sides_at` (GLCIC)
        sides_at: int = 160,  # the resolution `sides` are given at; scaled to `size`
    ) -> None:
        self.size = as_hw(size)
        self.sides, self.sides_at = (int(sides[0]), int(sides[1])), int(sides_at)
        rectangle_sides(self.size, self.sides, self.sides_at)  # fail at construction

    def __call__(self, rng: np.random.Generator | None = None) -> torch.Tensor:
        return rectangle_mask(self.size, rng, self.sides, self.sides_at)

    def sample(self, seed: int) -> torch.Tensor:
        """Deterministic mask for ``seed`` (e.g. the validation image index).

        Args:
            seed: seeds a fresh generator.

        Returns:
            float32 (1, H, W) in {0, 1}, 1 = known.
        """
        return self(np.random.default_rng(seed))

    def __repr__(self) -> str:
        return (
            f"RectangleMaskGenerator(size={self.size}, sides={self.sides}, "
            f"sides_at={self.sides_at})"
        )


def mask_hole_ratio(mask: torch.Tensor | np.ndarray) -> float:
    """Fraction of hole pixels (0 = fully known, 1 = all hole) of a mask.

    Args:
        mask: a tensor or array of any shape, 1 = known, 0 = hole.
    """
    return 1.0 - float(mask.float().mean() if torch.is_tensor(mask) else np.mean(mask))


def _check_polarity(polarity: str) -> None:
    if polarity not in POLARITIES:
        raise DataError(f"unknown mask polarity {polarity!r}; valid values: {list(POLARITIES)}")


def rotation_hint(mask_hw: tuple[int, int], image_hw: tuple[int, int]) -> str:
    """A sentence when two sizes differ only by a quarter turn, else ''.

    Args:
        mask_hw: the mask's (H, W).
        image_hw: the image's (H, W).
    """
    if tuple(mask_hw) != tuple(image_hw) and tuple(mask_hw) == tuple(image_hw)[::-1]:
        return (
            " The sides are swapped: the likely cause is an EXIF orientation tag on one file and "
            "not the other (i2i turns images and masks upright by it, as viewers do); save the "
            "mask upright as the photo is shown, without the tag."
        )
    return ""


def load_known(
    path: str | Path,
    size: int | tuple[int, int] | None = None,
    *,
    polarity: str,
    resize: bool = True,
    max_hole_ratio: float | None = None,
) -> np.ndarray:
    """:func:`load_mask` as an (H, W) bool array, True = known (1 byte a pixel).

    Args:
        path: the mask file.
        size: (H, W) the mask must have; None: the file's own size.
        polarity: "white_is_hole" or "white_is_known".
        resize: resize a file of another size with NEAREST; False: refuse it.
        max_hole_ratio: refuse a mask with a larger hole ratio (an inverted polarity?); None:
            no limit.

    Raises:
        FileNotFoundError: no file at path.
        DataError: an unknown polarity, an unreadable file, another size without `resize`, or
            a hole over max_hole_ratio.
    """
    _check_polarity(polarity)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask file not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            gray = _grey(ImageOps.exif_transpose(img))  # upright, as load_image turns images
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise DataError(f"cannot read mask file {path}: {err}") from err
    if size is not None:
        h, w = as_hw(size)
        if gray.size != (w, h):
            if not resize:
                raise DataError(
                    f"mask {path} is {gray.height}x{gray.width} (HxW) but {h}x{w} was "
                    "expected; resize the file, or pass resize=True to resize it with NEAREST."
                    + rotation_hint((gray.height, gray.width), (h, w))
                )
            gray = gray.resize((w, h), Image.Resampling.NEAREST)
    white = np.asarray(gray) > 127
    known = white if polarity == "white_is_known" else ~white
    if max_hole_ratio is not None:
        hole = 1.0 - np.count_nonzero(known) / max(known.size, 1)
        if hole > max_hole_ratio:
            other = POLARITIES[1 - POLARITIES.index(polarity)]
            raise DataError(
                f"mask {path} has hole ratio {hole:.3f} > max_hole_ratio={max_hole_ratio} "
                f"with polarity={polarity!r}; the polarity is probably inverted, "
                f"try polarity={other!r}"
            )
    return known


def load_mask(
    path: str | Path,
    size: int | tuple[int, int] | None = None,
    *,
    polarity: str,
    resize: bool = True,
    max_hole_ratio: float | None = None,
) -> torch.Tensor:
    """Load a mask file as a float32 ``(1, H, W)`` tensor with 1 = known, 0 = hole.

    The file's EXIF orientation is applied first, as to images. Any PIL mode (L, RGB, RGBA, ...)
    is converted to grayscale and thresholded at 127
    (values > 127 are "white"), which also cleans up JPEG artefacts; a file of one colour with
    a varying alpha channel is read from its alpha (opaque = white, see the module doc).
    ``polarity`` must be given: ``"white_is_hole"`` (NVIDIA irregular, DeepFill, FcF, AOT-GAN) or
    ``"white_is_known"`` (MAT, MI-GAN, CoModGAN demo). If ``size`` differs from the file,
    the mask is resized with NEAREST (keeps it binary) or, with ``resize=False``, rejected.
    ``max_hole_ratio`` guards against an inverted polarity.

    Args:
        path: the mask file.
        size: (H, W) the mask must have; None: the file's own size.
        polarity: "white_is_hole" or "white_is_known".
        resize: resize a file of another size with NEAREST; False: refuse it.
        max_hole_ratio: refuse a mask with a larger hole ratio; None: no limit.

    Raises:
        FileNotFoundError: no file at path.
        DataError: see `load_known`.
    """
    known = load_known(path, size, polarity=polarity, resize=resize, max_hole_ratio=max_hole_ratio)
    return torch.from_numpy(known.astype(np.float32))[None]


def _grey(img: Image.Image) -> Image.Image:
    """The grey level of a mask file: its alpha channel when only alpha varies (see the module
    doc), else PIL's grey conversion."""
    if "A" in img.getbands() or (img.mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"))
        colour, alpha = rgba[..., :3], rgba[..., 3]
        if alpha.min() != alpha.max() and (colour == colour[:1, :1]).all():
            return Image.fromarray(np.ascontiguousarray(alpha), "L")
    return img.convert("L")


class MaskFolder:
    """Mask files found recursively under ``root`` (sorted), loaded with :func:`load_mask`:
    `folder[i]` is file i's mask, float32 (1, H, W), 1 = known.

    Args:
        root: the folder of mask files.
        polarity: "white_is_hole" or "white_is_known".
        size: (H, W) the masks are loaded at; None: each file's own size.
        resize: resize files of another size with NEAREST; False: refuse them.
        max_hole_ratio: refuse a mask with a larger hole ratio; None: no limit.

    Raises:
        DataError: an unknown polarity.
        FileNotFoundError: no mask file under root.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        polarity: str,
        size: int | tuple[int, int] | None = None,
        resize: bool = True,
        max_hole_ratio: float | None = None,
    ) -> None:
        _check_polarity(polarity)
        self.root = Path(root)
        self.polarity = polarity
        self.size = size
        self.resize = resize
        self.max_hole_ratio = max_hole_ratio
        self.files = walk_files(self.root, MASK_EXTENSIONS) if self.root.is_dir() else []
        if not self.files:
            raise FileNotFoundError(
                f"no mask files found under {self.root} (missing or empty folder); place "
                f"mask images ({', '.join(MASK_EXTENSIONS)}) there, with {polarity!r} polarity"
            )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        return load_mask(
            self.files[index],
            self.size,
            polarity=self.polarity,
            resize=self.resize,
            max_hole_ratio=self.max_hole_ratio,
        )
