"""Inpainting data: any folder of images (or the embedded shapes scenes) with masks from the
official free-form generator, GLCIC's rectangles or mask files of a stated polarity, measured at
setup. Training batches come from the deterministic stream (`i2i.data.stream`).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from i2i.data import batch as B
from i2i.data.attributes import (
    AttributeTable,
    WithAttributes,
    find_attributes_file,
    read_attributes,
)
from i2i.data.crop import check_resolution
from i2i.data.datasets import ImageFolderDataset, check_choice
from i2i.data.folders import split_image_folder
from i2i.data.image_options import CHOICES, ImageOptions, take_images
from i2i.data.mask_sets import KNOWN_MASK_SETS, POLARITIES, judge_hole_ratios
from i2i.data.masks import MaskFolder, RandomMaskGenerator, RectangleMaskGenerator, mask_hole_ratio
from i2i.data.stream import MaskSource, StreamDataModule
from i2i.errors import DataError

log = logging.getLogger(__name__)

# Mask sets hide a minority of the image on average (NVIDIA irregular: 1-60%; CoModGAN's large
# masks: 64% at 512, 72% at 256). A folder whose masks are mostly hole was probably read inverted.
MAX_MEAN_HOLE = 0.75
# Masks that hide (almost) nothing teach nothing: all-known files, a hole drawn only in an alpha
# channel that was dropped, or a polarity that turns the hole into the known part.
MIN_MEAN_HOLE = 0.005
MASK_PROBE = 64  # mask files measured at setup, spread evenly over the folder
MASK_SHAPES = ("free_form", "rectangle")


class FolderMasks:
    """Draws training masks from a MaskFolder with the stream's rng: `masks(rng)` is a
    uniformly drawn file's mask (1, H, W), 1 = known.

    Args:
        folder: the mask files.
    """

    def __init__(self, folder: MaskFolder):
        self.folder = folder

    def __call__(self, rng: np.random.Generator) -> torch.Tensor:
        return self.folder[int(rng.integers(len(self.folder)))]


class InpaintingDataModule(StreamDataModule):
    """Any folder of images (recursive; jpg/png/webp/bmp; grayscale and RGBA converted), or the
    embedded procedural shapes when `data_dir` is None. Masks: the official free-form generator,
    GLCIC's one rectangle per image (`mask_shape: rectangle`), or mask files with an explicit
    polarity. Batches: "image" (N, 3, H, W) in [-1, 1], "mask" (N, 1, H, W) with 1 = known,
    "index", and "attributes" (N, A) in {0, 1} when asked for.

    Args:
        data_dir: the image folder; None: the embedded shapes scenes, no download.
        resolution: (H, W) or H = W; powers of two unless `resolution_multiple`.
        batch_size: samples per batch, per process and use (CoModGAN: G and D each; see
            `batches_per_step`).
        val_batch_size: samples per validation batch.
        num_workers: loader worker processes.
        val_fraction: the share held out when data_dir has no train/ and val/ sub-folders.
        max_val_images: at most this many validation images; None: all.
        hole_range: the free-form masks' hole ratios (lo, hi), 0 <= lo < hi <= 1.
        mask_variant: "large" (the official masks) or "small" (MAT's lighter variant).
        mask_shape: "free_form" (the official generator) or "rectangle" (GLCIC's one
            rectangular hole).
        rectangle_sides: the rectangle's sides (lo, hi) in pixels at `rectangle_sides_at`.
        rectangle_sides_at: the resolution rectangle_sides are given at; they are scaled with
            the image (GLCIC: 46-92 px at 160).
        mask_dir: training masks from these files instead of the generator; None: generated.
        val_mask_dir: validation masks from these files (sample i gets file i mod n); None:
            generated, fixed per sample.
        mask_polarity: required with mask files: "white_is_known" or "white_is_hole".
        check_mask_polarity: stop when the mask files average more than `MAX_MEAN_HOLE` hole
            (an inverted polarity?), and warn when their hole ratios fit a known set only
            inverted; False: neither.
        mask_set: a known set to check the mask files against (a key of `KNOWN_MASK_SETS`,
            e.g. "comodgan"); None: every known set.
        synthetic_length: images in the embedded training set.
        resolution_multiple: the sides must be multiples of this; None: powers of two (GLCIC:
            4, for 160 px).
        attributes: per-image attributes in the batch (`i2i.data.attributes`): True = every
            attribute of the file, a list = those names in that order (e.g. ["Smiling"]);
            False: none.
        attributes_file: the attribute file; None: list_attr_celeba.txt next to the images.
        seed: seeds the split, the training stream and the validation masks.

    Raises:
        DataError: mask files without mask_polarity; an unknown polarity, mask_set,
            mask_shape, mask_variant or option; a bad hole_range or rectangle; or attributes
            without data_dir.
    """

    IMAGE_CHOICES = CHOICES  # a folder of images honours every image option

    def __init__(
        self,
        data_dir: str | None = None,  # None: the embedded shapes data, no download
        resolution: int | tuple[int, int] = 256,  # (H, W) or H = W; powers of two
        batch_size: int = 4,  # per process, per use (CoModGAN: G and D each; see batches_per_step)
        val_batch_size: int = 8,
        num_workers: int = 2,
        val_fraction: float = 0.05,  # used when data_dir has no train/ and val/ sub-folders
        max_val_images: int | None = 2000,  # cap on validation images (None = all)
        images: ImageOptions = ImageOptions(),  # resize, crop, filter, flips, bad or small files
        hole_range: tuple[float, float] = (0.0, 1.0),
        mask_variant: str = "large",  # the official masks; "small": MAT's lighter variant
        mask_shape: str = "free_form",  # or "rectangle": GLCIC's one rectangular hole
        rectangle_sides: tuple[int, int] = (46, 92),  # its sides in px at rectangle_sides_at...
        rectangle_sides_at: int = 160,  # ... scaled with the image (GLCIC: 46-92 px at 160)
        mask_dir: str | None = None,  # training masks from files instead of the generator
        val_mask_dir: str | None = None,  # validation masks from files (index i -> file i mod n)
        mask_polarity: str | None = None,  # required with mask files: white_is_known|white_is_hole
        check_mask_polarity: bool = True,  # stop if mask files average > 75% hole (inverted?)
        mask_set: str | None = None,  # a known set to check the masks against, e.g. comodgan
        synthetic_length: int = 4096,  # images in the embedded training set
        resolution_multiple: int | None = None,  # sides: None = powers of two; GLCIC: 4 (160 px)
        # Per-image attributes in the batch ("attributes", {0, 1}; i2i.data.attributes): true =
        # every attribute of the file, a list = those names in that order (e.g. [Smiling]).
        attributes: bool | list[str] = False,
        attributes_file: str | None = None,  # None: list_attr_celeba.txt next to the images
        seed: int = 0,
    ):
        super().__init__(batch_size, val_batch_size, num_workers, seed)
        self.save_hyperparameters()
        self.resolution = check_resolution(resolution, resolution_multiple)
        if (mask_dir or val_mask_dir) and mask_polarity is None:
            raise DataError(
                "mask_dir/val_mask_dir need mask_polarity: 'white_is_hole' (NVIDIA irregular "
                "masks, DeepFill) or 'white_is_known' (CoModGAN, MAT)"
            )
        self.images = take_images(self, images)  # a bad config fails here, not at setup
        if mask_polarity is not None and mask_polarity not in POLARITIES:
            raise DataError(f"mask_polarity must be one of {POLARITIES}, got {mask_polarity!r}")
        if mask_set is not None and mask_set not in KNOWN_MASK_SETS:
            raise DataError(f"unknown mask_set {mask_set!r}; known: {sorted(KNOWN_MASK_SETS)}")
        # The free-form generator is kept with rectangles too: the evaluation protocol's
        # per-bucket runs draw free-form masks with each bucket's hole_range.
        self.mask_generator = RandomMaskGenerator(self.resolution, tuple(hole_range), mask_variant)
        check_choice("mask_shape", mask_shape, MASK_SHAPES)
        self.rectangle_masks = RectangleMaskGenerator(
            self.resolution, tuple(rectangle_sides), rectangle_sides_at
        )
        self._mask_folders: dict[str, MaskFolder] = {}  # checked once per folder
        if attributes is not False and data_dir is None:
            raise DataError(
                "attributes need image files with an attribute file (data_dir and CelebA's "
                "list_attr_celeba.txt); the embedded shapes (data_dir: null) have none"
            )
        self._attributes: AttributeTable | None = None
        if attributes is not False:
            self.keys = (*self.keys, B.ATTRIBUTES)

    def attribute_table(self) -> AttributeTable | None:
        """The attributes the batches carry (read once), or None without `attributes`."""
        hp = self.hparams
        if hp.attributes is False:
            return None
        if self._attributes is None:
            path = hp.attributes_file or find_attributes_file(hp.data_dir)
            names = None if hp.attributes is True else list(hp.attributes)
            self._attributes = read_attributes(path).select(names)
        return self._attributes

    @property
    def attribute_names(self) -> list[str]:
        """The attribute of each position of a batch's "attributes" ([] without attributes)."""
        table = self.attribute_table()
        return table.names if table is not None else []

    def setup(self, stage: str | None = None) -> None:
        """Check the images and validation masks (the base class), and the training mask files."""
        super().setup(stage)  # checks the images and the validation masks
        if self.hparams.mask_dir:
            self.train_masks()  # and the training masks now, not at the first batch

    def _mask_folder(self, root: str) -> MaskFolder:
        """Mask files, resized with NEAREST to the resolution, with sanity checks of their hole
        ratio measured on up to MASK_PROBE files: logged always, an error when (almost) nothing
        or most of the image is hole, a warning when the polarity looks inverted."""
        hp = self.hparams
        if root in self._mask_folders:
            return self._mask_folders[root]
        folder = MaskFolder(root, polarity=hp.mask_polarity, size=self.resolution)
        n = len(folder)
        picks = np.unique(np.linspace(0, n - 1, min(MASK_PROBE, n)).round().astype(int))
        ratios = np.array([mask_hole_ratio(folder[int(i)]) for i in picks])
        mean_hole = float(ratios.mean())
        polarity = hp.mask_polarity
        other = POLARITIES[1 - POLARITIES.index(polarity)]
        log.info(
            "mask folder %s: mean hole ratio %.1f%% over %d of %d masks with mask_polarity=%r "
            "(with %r it would be %.1f%%)",
            root,
            100 * mean_hole,
            len(picks),
            n,
            polarity,
            other,
            100 * (1 - mean_hole),
        )
        if mean_hole < MIN_MEAN_HOLE:
            raise DataError(
                f"masks in {root} hide almost nothing: {mean_hole:.2%} hole on average over "
                f"{len(picks)} of {n} files with mask_polarity={polarity!r} (at least "
                f"{MIN_MEAN_HOLE:.1%} needed). Likely causes: the masks are all-known (blank) "
                "files; the hole is drawn only in an alpha channel over a varying colour (save "
                "the mask as a grey image); or the polarity is inverted and the hole is read as "
                f"known (mask_polarity={other!r} would give {1 - mean_hole:.1%} hole)."
            )
        if hp.check_mask_polarity and mean_hole > MAX_MEAN_HOLE:
            raise DataError(
                f"masks in {root} are {mean_hole:.0%} hole on average with mask_polarity="
                f"{polarity!r}: the polarity is probably inverted. Set "
                f"mask_polarity={other!r} (in i2i, 1 = known), or "
                "check_mask_polarity=false if your masks really hide most of the image."
            )
        if hp.check_mask_polarity and (doubt := judge_hole_ratios(ratios, polarity, hp.mask_set)):
            msg = f"{root}: {doubt}"
            warnings.warn(msg, stacklevel=2)
            log.warning(msg)
        self._mask_folders[root] = folder
        return folder

    @property
    def drawn_masks(self) -> RandomMaskGenerator | RectangleMaskGenerator:
        """The generator of training and validation masks when no mask files are given."""
        rectangles = self.hparams.mask_shape == "rectangle"
        return self.rectangle_masks if rectangles else self.mask_generator

    def train_masks(self) -> MaskSource:
        """Training masks: drawn from `mask_dir`'s files when given, else `drawn_masks`."""
        hp = self.hparams
        return FolderMasks(self._mask_folder(hp.mask_dir)) if hp.mask_dir else self.drawn_masks

    def val_masks(self) -> RandomMaskGenerator | RectangleMaskGenerator | MaskFolder:
        """Validation masks by index: `val_mask_dir`'s files when given, else `drawn_masks`."""
        hp = self.hparams
        return self._mask_folder(hp.val_mask_dir) if hp.val_mask_dir else self.drawn_masks

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        """(train, val) image datasets: the folder's split, or the embedded shapes without
        `data_dir`; with their attributes when asked for."""
        hp = self.hparams
        if hp.data_dir is None:
            from i2i.data.synthetic import ShapesDataset  # the demo's data only: imported here

            train = ShapesDataset(self.resolution, length=hp.synthetic_length, seed=hp.seed)
            val = ShapesDataset(self.resolution, length=hp.max_val_images or 256, seed=hp.seed + 1)
            return train, val
        train, val = image_folder_split(
            hp.data_dir,
            self.resolution,
            hp.val_fraction,
            hp.max_val_images,
            hp.seed,
            self.images,
            hp.resolution_multiple,
        )
        table = self.attribute_table()
        if table is None:
            return train, val
        return WithAttributes(train, table), WithAttributes(val, table)


def image_folder_split(
    data_dir: str | Path,
    resolution: tuple[int, int],
    val_fraction: float,
    max_val_images: int | None,
    seed: int,
    images: ImageOptions,
    resolution_multiple: int | None = None,
) -> tuple[ImageFolderDataset, ImageFolderDataset]:
    """Train and val ImageFolderDatasets: `train/` + `val/` sub-folders when present, otherwise a
    seeded split of every image under `data_dir`.

    Args:
        data_dir: the image folder.
        resolution: (H, W) of the images.
        val_fraction: the share held out when there are no split folders.
        max_val_images: at most this many validation images; None: all.
        seed: seeds the split.
        images: the image options of both `ImageFolderDataset`s; validation never flips and
            always centre-crops.
        resolution_multiple: the sides must be multiples of this; None: powers of two.

    Returns:
        (train dataset, validation dataset).
    """
    root = Path(data_dir)
    train_files, val_files = split_image_folder(root, val_fraction, seed, max_val_images)
    common = dict(resolution=resolution, resolution_multiple=resolution_multiple)
    train = ImageFolderDataset(root, files=train_files, train=True, images=images, **common)
    # Validation always centre-crops (train_crop only concerns training) and never flips.
    val = ImageFolderDataset(
        root, files=val_files, train=False, images=images.for_validation(), **common
    )
    return train, val
