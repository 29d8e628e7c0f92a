"""Inpainting masks: the CoModGAN/MAT free-form generator and loaders for mask files.

Convention used everywhere in ``i2i``: a mask is a float32 tensor of shape ``(1, H, W)``
holding exactly 0 or 1, where **1 marks a KNOWN pixel and 0 marks the HOLE** to be filled.
The hole ratio of a mask is therefore ``1 - mask.mean()``.

Mask files on disk disagree about polarity (NVIDIA irregular masks, DeepFill v2, FcF and
AOT-GAN paint the hole white; MAT, MI-GAN and the CoModGAN demo paint the known region
white), so `load_mask` and `MaskFolder` make the caller state it explicitly.

Mask files are turned upright by their EXIF orientation, exactly as images are
(`i2i.data.datasets.load_image`), so a mask saved with its photo's orientation tag lines up.

A mask with transparency whose colour is the same everywhere and whose alpha varies (a cut-out
painted in an editor) is read from its alpha channel: alpha is taken as the grey level, so
opaque (255) is "white" and transparent (0) is "black", and the stated polarity applies to it
as to any grey mask (white_is_known: transparent = hole; white_is_hole: opaque = hole).

The masks are drawn by `i2i.data.mask_drawing`; the polarities and the published mask
sets, with the check of a folder's hole ratios against them, are in `i2i.data.mask_sets`.

An inpainting datamodule takes its masks as a `MaskSource`, chosen in YAML by class_path
(the free-form generator, GLCIC's rectangles, or mask files of a stated polarity):

    data:
      init_args:
        masks:
          class_path: i2i.data.masks.RectangleMaskGenerator
          init_args: {sides: [46, 92], sides_at: 160}

The datamodule gives the size: a source is written without it and bound with `MaskSource.at`.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from i2i.data.folders import walk_files
from i2i.data.mask_drawing import (
    _check_hole_range,
    _check_variant,
    random_mask,
    rectangle_mask,
    rectangle_sides,
)
from i2i.data.mask_sets import (
    KNOWN_MASK_SETS,
    POLARITIES,
    _check_polarity,
    check_mask_folder,
    probe_indices,
)
from i2i.errors import DataError
from i2i.resolution import as_hw

__all__ = [
    "MASK_EXTENSIONS",
    "mask_source",
    "MaskFiles",
    "MaskFolder",
    "MaskSource",
    "RandomMaskGenerator",
    "RectangleMaskGenerator",
    "load_known",
    "load_mask",
    "mask_hole_ratio",
]

MASK_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class MaskSource:
    """Where a datamodule's masks come from: `source(rng)` draws a training mask and
    `source.fixed(position, index, seed)` gives validation sample `index`'s mask, always the same;
    both float32 (1, H, W), 1 = known. Written without a size (in YAML), bound to the
    datamodule's resolution with `at`.
    """

    size: tuple[int, int] | None = None

    def at(self, size: int | tuple[int, int]) -> MaskSource:
        """This source's settings at `size` (a new object; this one is left as it is).

        Args:
            size: (H, W), or one int for a square.
        """
        bound = copy.copy(self)
        bound.size = as_hw(size)
        bound.check_size()  # what depends on the size: rectangle sides, mask files
        return bound

    def check_size(self) -> None:
        """Called by `at` once `size` is set (nothing to check by default)."""

    def settings(self) -> dict[str, Any]:
        """The constructor arguments that made this source."""
        names = inspect.signature(type(self).__init__).parameters
        return {n: getattr(self, n) for n in names if n != "self"}

    def plain(self) -> dict[str, Any]:
        """{"class_path", "init_args"}: this source in the plain form of a config (kept in
        hyper-parameters, so that checkpoints load weights-only)."""
        cls = type(self)
        init = {k: list(v) if isinstance(v, tuple) else v for k, v in self.settings().items()}
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init}

    def _sized(self) -> tuple[int, int]:
        if self.size is None:
            raise DataError(
                f"{type(self).__name__} has no size: bind it with .at((H, W)) (a datamodule "
                "binds its masks to its resolution)"
            )
        return self.size

    def __call__(self, rng: np.random.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def fixed(self, position: int, index: int, seed: int) -> torch.Tensor:
        """The validation mask of a sample, the same in every epoch and run: drawn sources seed
        it with (seed, index).

        Args:
            position: the sample's position in the validation set.
            index: the sample's "index".
            seed: the datamodule's seed.
        """
        return self.sample(seed * 1_000_003 + index)

    def sample(self, seed: int) -> torch.Tensor:
        """Deterministic mask for ``seed`` (e.g. the validation image index).

        Args:
            seed: seeds a fresh generator.

        Returns:
            float32 (1, H, W) in {0, 1}, 1 = known.
        """
        return self(np.random.default_rng(seed))


def mask_source(value: MaskSource | dict[str, Any]) -> MaskSource:
    """A mask source from itself or from its plain form ({"class_path", "init_args"}, as in a
    config section or hyper-parameters; a bare class name means one of this module's).

    Args:
        value: a MaskSource, or its plain form.

    Raises:
        DataError: a class_path that names no MaskSource.
    """
    lazy = getattr(value, "lazy_get_init_data", None)
    if lazy is not None:  # jsonargparse's lazy_instance (a signature's default): its real class
        value = lazy().as_dict()
    if isinstance(value, MaskSource):
        return value
    class_path = str(value.get("class_path", ""))
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name or __name__), name)
    except (ImportError, AttributeError, ValueError):
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, MaskSource)):
        raise DataError(
            f"masks: class_path {class_path!r} names no mask source; use one of "
            "RandomMaskGenerator, RectangleMaskGenerator, MaskFiles (i2i.data.masks)"
        )
    return cls(**(value.get("init_args") or {}))


class RandomMaskGenerator(MaskSource):
    """The official free-form masks (`random_mask`; picklable, for DataLoaders):
    `generator(rng)` draws a (1, H, W) mask, 1 = known.

    Args:
        hole_range: (lo, hi) with 0 <= lo < hi <= 1: the hole ratio is strictly inside.
        variant: "large" (the official masks) or "small" (MAT's lighter variant).

    Raises:
        DataError: a bad hole_range or variant (checked here, not inside a worker).
    """

    def __init__(
        self,
        hole_range: tuple[float, float] = (0.0, 1.0),
        variant: str = "large",  # the official masks; "small": MAT's lighter variant
    ) -> None:
        # Validate eagerly so a bad config fails at construction, not inside a worker.
        self.hole_range = _check_hole_range(hole_range)
        _check_variant(variant)
        self.variant = variant

    def __call__(self, rng: np.random.Generator | None = None) -> torch.Tensor:
        return random_mask(self._sized(), self.hole_range, rng, self.variant)

    def __repr__(self) -> str:
        return (
            f"RandomMaskGenerator(size={self.size}, hole_range={self.hole_range}, "
            f"variant={self.variant!r})"
        )


class RectangleMaskGenerator(MaskSource):
    """GLCIC's one rectangular hole (`rectangle_mask`; picklable, for DataLoaders):
    `generator(rng)` draws a (1, H, W) mask, 1 = known.

    Args:
        sides: hole sides (lo, hi) in pixels at `sides_at` (GLCIC: 46-92).
        sides_at: the resolution `sides` are given at; scaled to the size.

    Raises:
        DataError: sides or sides_at out of range (checked here, and at the size by `at`).
    """

    def __init__(
        self,
        sides: tuple[int, int] = (46, 92),  # hole sides in pixels at `sides_at` (GLCIC)
        sides_at: int = 160,  # the resolution `sides` are given at; scaled with the image
    ) -> None:
        self.sides, self.sides_at = (int(sides[0]), int(sides[1])), int(sides_at)
        rectangle_sides((self.sides_at, self.sides_at), self.sides, self.sides_at)  # fail now

    def check_size(self) -> None:
        """The sides at the bound size (they must fit the image)."""
        rectangle_sides(self._sized(), self.sides, self.sides_at)

    def __call__(self, rng: np.random.Generator | None = None) -> torch.Tensor:
        return rectangle_mask(self._sized(), rng, self.sides, self.sides_at)

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
    """`load_mask` as an (H, W) bool array, True = known (1 byte a pixel).

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
    """Mask files found recursively under ``root`` (sorted), loaded with `load_mask`:
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


class MaskFiles(MaskSource):
    """Masks from files of a stated polarity, resized with NEAREST to the datamodule's
    resolution: training draws a file uniformly with the stream's rng, validation sample k gets
    file k mod n. Bound to a size (`at`), the folder is listed and its hole ratios are
    measured on a sample of files (`i2i.data.mask_sets.check_mask_folder`): logged always,
    an error when (almost) nothing or most of the image is hole, a warning when the polarity looks
    inverted.

    Args:
        folder: the folder of mask files (searched recursively).
        polarity: "white_is_known" (CoModGAN, MAT) or "white_is_hole" (NVIDIA irregular masks,
            DeepFill): how the files are painted; required (None fails with the choices).
        check_polarity: the hole-ratio checks above; False: neither the error for mostly-hole
            masks nor the warning.
        mask_set: a known set to check the files against (a key of `KNOWN_MASK_SETS`, e.g.
            "comodgan"); None: every known set.

    Raises:
        DataError: an unknown polarity or mask_set; at binding, masks that fail the checks.
        FileNotFoundError: at binding, no mask file in the folder.
    """

    def __init__(
        self,
        folder: str,
        polarity: str | None = None,  # required: how the files are painted (white_is_known|hole)
        check_polarity: bool = True,  # stop if the files average > 75% hole (inverted?)
        mask_set: str | None = None,  # a known set to check the files against, e.g. comodgan
    ) -> None:
        if polarity is None:
            raise DataError(
                f"mask files ({folder}) need a polarity: 'white_is_hole' (NVIDIA irregular "
                "masks, DeepFill) or 'white_is_known' (CoModGAN, MAT)"
            )
        _check_polarity(polarity)
        if mask_set is not None and mask_set not in KNOWN_MASK_SETS:
            raise DataError(f"unknown mask_set {mask_set!r}; known: {sorted(KNOWN_MASK_SETS)}")
        self.folder, self.polarity = str(folder), polarity
        self.check_polarity, self.mask_set = check_polarity, mask_set
        self.files: MaskFolder | None = None

    def check_size(self) -> None:
        """List the files at the bound size and check their hole ratios."""
        files = self.files = MaskFolder(self.folder, polarity=self.polarity, size=self.size)
        ratios = [mask_hole_ratio(files[int(i)]) for i in probe_indices(len(files))]
        check_mask_folder(
            files.root,
            self.polarity,
            np.array(ratios),
            len(files),
            self.check_polarity,
            self.mask_set,
        )

    def _folder(self) -> MaskFolder:
        self._sized()
        assert self.files is not None  # set with the size
        return self.files

    def __call__(self, rng: np.random.Generator | None = None) -> torch.Tensor:
        files = self._folder()
        rng = rng if rng is not None else np.random.default_rng()
        return files[int(rng.integers(len(files)))]

    def fixed(self, position: int, index: int, seed: int) -> torch.Tensor:
        """File `position` mod the number of files (the same in every run).

        Args:
            position: the sample's position in the validation set.
            index: the sample's "index" (unused: files follow the positions).
            seed: unused (files are not drawn).
        """
        files = self._folder()
        return files[position % len(files)]
