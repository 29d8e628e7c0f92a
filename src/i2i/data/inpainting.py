"""Inpainting data: any folder of images (or the embedded shapes scenes) with masks from the
official free-form generator, GLCIC's rectangles or mask files of a stated polarity, measured at
setup. Training batches come from the deterministic stream (`i2i.data.stream`).
"""

from __future__ import annotations

from pathlib import Path

from jsonargparse import lazy_instance
from torch.utils.data import Dataset

from i2i.data import batch as B
from i2i.data.attributes import (
    AttributeTable,
    WithAttributes,
    find_attributes_file,
    read_attributes,
)
from i2i.data.crop import check_resolution
from i2i.data.datasets import ImageFolderDataset
from i2i.data.folders import split_image_folder
from i2i.data.image_options import CHOICES, ImageOptions, take_images
from i2i.data.masks import MaskFiles, MaskSource, RandomMaskGenerator, mask_source
from i2i.data.stream import StreamDataModule
from i2i.errors import DataError

# The default training masks. Lazy (jsonargparse's): the parser then knows the default's class,
# so `--data.init_args.masks.init_args.hole_range` works on a config that names no masks.
OFFICIAL_MASKS = lazy_instance(RandomMaskGenerator)


class InpaintingDataModule(StreamDataModule):
    """Any folder of images (recursive; jpg/png/webp/bmp; grayscale and RGBA converted), or the
    embedded procedural shapes when `data_dir` is None. Masks: the official free-form generator,
    GLCIC's one rectangle per image, or mask files with an explicit polarity (`masks`).
    Batches: "image" (N, 3, H, W) in [-1, 1], "mask" (N, 1, H, W) with 1 = known,
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
        masks: the training masks (a `MaskSource`, chosen in YAML by class_path): the official
            free-form generator `RandomMaskGenerator` (its hole_range and variant), GLCIC's
            `RectangleMaskGenerator` (its sides at sides_at, scaled with the image) or
            `MaskFiles` (a folder of mask files with their polarity, checked at setup).
        val_masks: the validation masks, fixed per sample (generated ones seeded by the sample,
            files: sample i gets file i mod n); None: drawn as `masks` are, or the default
            free-form masks when `masks` are files.
        synthetic_length: images in the embedded training set.
        resolution_multiple: the sides must be multiples of this; None: powers of two (GLCIC:
            4, for 160 px).
        attributes: per-image attributes in the batch (`i2i.data.attributes`): True = every
            attribute of the file, a list = those names in that order (e.g. ["Smiling"]);
            False: none.
        attributes_file: the attribute file; None: list_attr_celeba.txt next to the images.
        seed: seeds the split, the training stream and the validation masks.

    Raises:
        DataError: an unknown option, or attributes without data_dir (the mask sources check
            their own settings when made, their files at setup).
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
        masks: MaskSource = OFFICIAL_MASKS,  # the official free-form masks; or a class_path
        val_masks: MaskSource | None = None,  # None: drawn as `masks` (free-form if files)
        synthetic_length: int = 4096,  # images in the embedded training set
        resolution_multiple: int | None = None,  # sides: None = powers of two; GLCIC: 4 (160 px)
        # Per-image attributes in the batch ("attributes", {0, 1}; i2i.data.attributes): true =
        # every attribute of the file, a list = those names in that order (e.g. [Smiling]).
        attributes: bool | list[str] = False,
        attributes_file: str | None = None,  # None: list_attr_celeba.txt next to the images
        seed: int = 0,
    ):
        super().__init__(batch_size, val_batch_size, num_workers, seed)
        self.save_hyperparameters(ignore=["masks", "val_masks"])  # kept plain, below
        self.resolution = check_resolution(resolution, resolution_multiple)
        self.images = take_images(self, images)  # a bad config fails here, not at setup
        masks = mask_source(masks)
        val_masks = None if val_masks is None else mask_source(val_masks)
        self.masks, self.given_val_masks = masks, val_masks
        # Plain in hparams: checkpoints load weights-only, shard manifests compare plain values.
        self.hparams["masks"] = masks.plain()
        self.hparams["val_masks"] = None if val_masks is None else val_masks.plain()
        self._bound: dict[str, MaskSource] = {}  # the sources at the resolution, made once
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
        """Check the images and validation masks (the base class), and the training masks."""
        super().setup(stage)  # checks the images and the validation masks
        self.train_masks()  # mask files are checked now, not at the first batch

    def _bind(self, use: str, source: MaskSource) -> MaskSource:
        if use not in self._bound:
            self._bound[use] = source.at(self.resolution)
        return self._bound[use]

    @property
    def mask_generator(self) -> RandomMaskGenerator:
        """The free-form masks at the resolution (the evaluation protocol draws its per-bucket
        masks with them): the training or validation source when it is one, else the default
        generator."""
        for source in (self.masks, self.given_val_masks):
            if isinstance(source, RandomMaskGenerator):
                return self._bind("free_form", source)
        return self._bind("free_form", RandomMaskGenerator())

    def train_masks(self) -> MaskSource:
        """The training masks at the resolution (`masks`)."""
        return self._bind("train", self.masks)

    def val_masks(self) -> MaskSource:
        """The validation masks at the resolution: `val_masks`, else drawn as `masks` are (the
        default free-form masks when `masks` are files)."""
        source = self.given_val_masks
        if source is None:
            source = RandomMaskGenerator() if isinstance(self.masks, MaskFiles) else self.masks
        return self._bind("val", source)

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
