"""Mask polarity and the published inpainting mask sets: `POLARITIES` names how a mask file
is painted (white_is_known or white_is_hole), `KNOWN_MASK_SETS` lists published sets with
their polarity and hole ratios, and `judge_hole_ratios` compares the ratios measured on a
mask folder with them to flag a polarity that looks inverted; `check_mask_folder` applies
these checks to the files a datamodule trains or validates with.
"""

from __future__ import annotations

import logging
import warnings
from typing import NamedTuple

import numpy as np

from i2i.errors import DataError

log = logging.getLogger(__name__)

POLARITIES = ("white_is_known", "white_is_hole")
# Mask sets hide a minority of the image on average (NVIDIA irregular: 1-60%; CoModGAN's large
# masks: 64% at 512, 72% at 256). A folder whose masks are mostly hole was probably read inverted.
MAX_MEAN_HOLE = 0.75
# Masks that hide (almost) nothing teach nothing: all-known files, a hole drawn only in an alpha
# channel that was dropped, or a polarity that turns the hole into the known part.
MIN_MEAN_HOLE = 0.005
MASK_PROBE = 64  # mask files measured when a folder is checked, spread evenly over it


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
        f"polarity={polarity!r}; with {other!r} they would be {1 - r.mean():.1%} "
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
            f"the polarity (the set's is {s.polarity!r}) and that these are its masks."
        )
    stated = [n for n, s in KNOWN_MASK_SETS.items() if s.polarity == polarity and _fits(s, r)]
    inverted = [n for n, s in KNOWN_MASK_SETS.items() if s.polarity == other and _fits(s, 1 - r)]
    narrow = [n for n in inverted if KNOWN_MASK_SETS[n].per_mask != (0.0, 1.0)]
    narrow_stated = [n for n in stated if KNOWN_MASK_SETS[n].per_mask != (0.0, 1.0)]
    if inverted and (not stated or (narrow and not narrow_stated)):
        looks = "; ".join(_describe_set(n, KNOWN_MASK_SETS[n]) for n in inverted)
        return (
            f"Masks {said}. Read with {other!r} they match {looks}, so the polarity is probably "
            f"inverted: set polarity: {other} (in i2i, 1 = known). If the polarity is right "
            "(hole ratios alone cannot always tell), name the set with mask_set (e.g. "
            "comodgan) or set check_polarity: false to silence this warning."
        )
    return None


def _check_polarity(polarity: str) -> None:
    if polarity not in POLARITIES:
        raise DataError(f"unknown mask polarity {polarity!r}; valid values: {list(POLARITIES)}")


def probe_indices(n: int) -> np.ndarray:
    """The files of a folder of n masks that are measured: up to MASK_PROBE, spread evenly.

    Args:
        n: the number of mask files (at least 1).
    """
    return np.unique(np.linspace(0, n - 1, min(MASK_PROBE, n)).round().astype(int))


def check_mask_folder(
    root: object,
    polarity: str,
    ratios: np.ndarray,
    n: int,
    check_polarity: bool,
    mask_set: str | None,
) -> None:
    """The sanity checks of a folder of training or validation masks, from the hole ratios of
    its `probe_indices` files: the mean is logged always; an error when (almost) nothing or
    (with `check_polarity`) most of the image is hole; a warning when the polarity looks
    inverted.

    Args:
        root: the folder, for the messages.
        polarity: how its files were read, "white_is_hole" or "white_is_known".
        ratios: the hole ratios measured on the probed files.
        n: how many files the folder holds.
        check_polarity: the mostly-hole error and the inverted-polarity warning; False: neither.
        mask_set: a key of KNOWN_MASK_SETS to compare with; None: every known set.

    Raises:
        DataError: masks that hide almost nothing, or mostly hole with `check_polarity`.
    """
    mean_hole = float(ratios.mean())
    other = POLARITIES[1 - POLARITIES.index(polarity)]
    log.info(
        "mask folder %s: mean hole ratio %.1f%% over %d of %d masks with polarity=%r "
        "(with %r it would be %.1f%%)",
        root,
        100 * mean_hole,
        len(ratios),
        n,
        polarity,
        other,
        100 * (1 - mean_hole),
    )
    if mean_hole < MIN_MEAN_HOLE:
        raise DataError(
            f"masks in {root} hide almost nothing: {mean_hole:.2%} hole on average over "
            f"{len(ratios)} of {n} files with polarity={polarity!r} (at least "
            f"{MIN_MEAN_HOLE:.1%} needed). Likely causes: the masks are all-known (blank) "
            "files; the hole is drawn only in an alpha channel over a varying colour (save "
            "the mask as a grey image); or the polarity is inverted and the hole is read as "
            f"known (polarity={other!r} would give {1 - mean_hole:.1%} hole)."
        )
    if check_polarity and mean_hole > MAX_MEAN_HOLE:
        raise DataError(
            f"masks in {root} are {mean_hole:.0%} hole on average with polarity={polarity!r}: "
            f"the polarity is probably inverted. Set the MaskFiles' polarity: {other} (in i2i, "
            "1 = known), or check_polarity: false if your masks really hide most of the image."
        )
    if check_polarity and (doubt := judge_hole_ratios(ratios, polarity, mask_set)):
        msg = f"{root}: {doubt}"
        warnings.warn(msg, stacklevel=3)
        log.warning(msg)
