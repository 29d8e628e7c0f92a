"""Datamodules for labels -> photo: COCO-Stuff, Cityscapes, ADE20K and any label folder.

Each yields batches with "image", "label" (int64 class ids) and "index", plus "instance_edges"
(instance boundaries in [-1, 1]) when `instance_edges` is on, through the deterministic
training stream of `StreamDataModule`. Each exposes the label set (`.spec`),
`.num_classes` and `.cond_channels` (num_classes, + 1 for the instance-edge channel): the
generator and the discriminator need those numbers as their `cond_channels`.

Folder layouts and conventions follow SPADE (see `i2i.data.labels`); dataset folders are
checked when the datamodule is built, so a wrong path fails before any training starts.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset, Subset

from i2i.data import batch as B
from i2i.data.crop import check_resolution
from i2i.data.folders import split_files
from i2i.data.image_options import FLIPS, SMALL_IMAGES, ImageOptions, take_images
from i2i.data.label_specs import LABEL_DATASETS, LabelDatasetRow
from i2i.data.labels import (
    LabelRecord,
    LabelSpec,
    PairedLabelDataset,
    generic_spec,
    get_spec,
    pair_files,
    split_records,
)
from i2i.data.stream import StreamDataModule
from i2i.errors import DataError


class LabelDataModule(StreamDataModule):
    """What the labels -> photo datamodules share: keys, label set, condition channels, and
    train / val datasets built from (photo, label, instance) records.

    Args:
        spec: the label set.
        instance_edges: batches also carry "instance_edges" (1, H, W) in [-1, 1], and the
            condition has one more channel.
        resolution: (H, W) or H = W, powers of two.
        batch_size: samples per batch, per process and use.
        val_batch_size: samples per validation batch.
        num_workers: loader worker processes.
        seed: seeds the training stream.
    """

    # Photos and their maps are cover-resized and cropped at random in training; a photo that
    # cannot be decoded stops the run (a label map without its photo cannot be skipped).
    IMAGE_CHOICES = {"hflip": FLIPS, "small_images": SMALL_IMAGES}

    def __init__(
        self,
        spec: LabelSpec,
        instance_edges: bool,
        resolution: int | tuple[int, int],
        batch_size: int,
        val_batch_size: int,
        num_workers: int,
        seed: int,
    ):
        super().__init__(batch_size, val_batch_size, num_workers, seed)
        self._spec, self.instance_edges = spec, bool(instance_edges)
        self.resolution = check_resolution(resolution)
        # An instance (not class) attribute: the stream and the val set keep only these keys.
        extra = (B.INSTANCE_EDGES,) if self.instance_edges else ()
        self.keys = (B.IMAGE, B.LABEL, B.INDEX, *extra)

    @property
    def spec(self) -> LabelSpec:
        """The label set: class names, palette, raw-value mapping."""
        return self._spec

    @property
    def num_classes(self) -> int:
        """Classes of the label set (ids 0..num_classes - 1)."""
        return self._spec.num_classes

    @property
    def cond_channels(self) -> int:
        """Channels of the condition the task builds: one-hot classes (+ instance edges)."""
        return self.num_classes + int(self.instance_edges)

    def _datasets(
        self, train: list[LabelRecord], val: list[LabelRecord]
    ) -> tuple[Dataset, Dataset]:
        hp, images = self.hparams, self.images
        common = dict(
            spec=self._spec, resolution=self.resolution, instance_edges=self.instance_edges
        )
        train_ds = PairedLabelDataset(train, train=True, images=images, **common)
        val_ds: Dataset = PairedLabelDataset(
            val, train=False, images=images.for_validation(), **common
        )
        if hp.max_val_images is not None and len(val) > hp.max_val_images:
            # A prefix subset: sample k of the subset is sample k of the dataset ("index" agrees).
            val_ds = Subset(val_ds, range(hp.max_val_images))
        return train_ds, val_ds


class NamedLabelDataModule(LabelDataModule):
    """A row of `i2i.data.labels.LABEL_DATASETS` under data_dir; each subclass binds its
    row by key and declares the init arguments (and their defaults) that configs give it."""

    dataset = ""  # the key in LABEL_DATASETS

    @property
    def row(self) -> LabelDatasetRow:
        """This datamodule's row of `LABEL_DATASETS`."""
        return LABEL_DATASETS[self.dataset]

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        """(train, val) paired label datasets from the row's split folders under data_dir."""
        root, ie = self.hparams.data_dir, self.instance_edges
        if ie:
            self.row.check_instances(root)
        return self._datasets(
            split_records(self.row, root, "train", ie), split_records(self.row, root, "val", ie)
        )


class CocoStuffDataModule(NamedLabelDataModule):
    """COCO-Stuff 2017 (183 classes: 0..181 and 255 = unlabeled -> 182), SPADE layout
    data_dir/{train,val}_{img,label,inst}, or the cocostuff release layout
    data_dir/images/{train,val}2017 + data_dir/annotations/{train,val}2017 (no instance maps).
    Download: https://github.com/nightrome/cocostuff.

    Args:
        data_dir: the COCO-Stuff folder, in one of the two layouts.
        resolution: (H, W) or H = W; the paper used 512.
        batch_size: samples per batch, per process and use (CoModGAN: G and D each; see
            `batches_per_step`).
        val_batch_size: samples per validation batch.
        num_workers: loader worker processes.
        instance_edges: add the instance-boundary channel (SPADE's default); needs the SPADE
            layout's instance maps.
        max_val_images: the first this many validation pairs; None: all 5000.
        seed: seeds the training stream.
    """

    dataset = "coco_stuff"

    def __init__(
        self,
        data_dir: str,  # COCO-Stuff root (see the class doc for the layouts)
        resolution: int | tuple[int, int] = 256,  # (H, W) or H = W; the paper used 512
        batch_size: int = 4,  # per process, per use (CoModGAN: G and D each; see batches_per_step)
        val_batch_size: int = 8,  # validation batch size
        num_workers: int = 2,  # loader worker processes
        instance_edges: bool = True,  # add the instance-boundary channel (SPADE's default)
        max_val_images: int | None = 2000,  # cap on validation images (None = all 5000)
        images: ImageOptions = ImageOptions(small_images="upscale"),  # flips, small photos
        seed: int = 0,  # seeds the training stream
    ):
        super().__init__(
            self.row.spec(),
            instance_edges,
            resolution,
            batch_size,
            val_batch_size,
            num_workers,
            seed,
        )
        self.save_hyperparameters()
        self.images = take_images(self, images)


class CityscapesDataModule(NamedLabelDataModule):
    """Cityscapes raw labelIds (35 classes), 2:1 aspect. Layout data_dir/leftImg8bit/{split}/
    <city>/*_leftImg8bit.png + data_dir/gtFine/{split}/<city>/*_gtFine_{labelIds,instanceIds}.png
    (or pix2pixHD's {train,test}_{img,label,inst}). Download (login required):
    https://www.cityscapes-dataset.com.

    Args:
        data_dir: the Cityscapes folder with leftImg8bit/ and gtFine/.
        resolution: (H, W); keep 1:2 for Cityscapes.
        batch_size: as for `CocoStuffDataModule`.
        val_batch_size: validation samples per batch.
        num_workers: worker processes of each loader.
        instance_edges: add the boundaries of the *_gtFine_instanceIds maps as a channel
            (SPADE's default).
        max_val_images: keep the first this many validation pairs; None: all 500.
        seed: the training stream's seed.
    """

    dataset = "cityscapes"

    def __init__(
        self,
        data_dir: str,  # Cityscapes root with leftImg8bit/ and gtFine/
        resolution: int | tuple[int, int] = (256, 512),  # (H, W); keep 1:2 for Cityscapes
        batch_size: int = 4,  # per process, per use (CoModGAN: G and D each; see batches_per_step)
        val_batch_size: int = 8,  # validation batch size
        num_workers: int = 2,  # loader worker processes
        instance_edges: bool = True,  # add the instance-boundary channel (SPADE's default)
        max_val_images: int | None = 2000,  # cap on validation images (None = all 500)
        images: ImageOptions = ImageOptions(),  # flips, small photos
        seed: int = 0,  # seeds the training stream
    ):
        super().__init__(
            self.row.spec(),
            instance_edges,
            resolution,
            batch_size,
            val_batch_size,
            num_workers,
            seed,
        )
        self.save_hyperparameters()
        self.images = take_images(self, images)


class ADE20KDataModule(NamedLabelDataModule):
    """ADE20K SceneParsing, ADEChallengeData2016 (151 classes, 0 = other; no instance maps):
    data_dir/images/{training,validation}/*.jpg + data_dir/annotations/.../*.png.
    Download: http://sceneparsing.csail.mit.edu.

    Args:
        data_dir: ADEChallengeData2016, or the folder containing it.
        resolution: (H, W) or H = W, powers of two.
        batch_size: as for `CocoStuffDataModule`.
        val_batch_size: how many validation samples a batch holds.
        num_workers: how many processes each loader reads with.
        max_val_images: only the first this many validation pairs; None: all.
        seed: what the training stream is seeded with.
    """

    dataset = "ade20k"

    def __init__(
        self,
        data_dir: str,  # ADEChallengeData2016 (or the folder containing it)
        resolution: int | tuple[int, int] = 256,  # (H, W) or H = W; powers of two
        batch_size: int = 4,  # per process, per use (CoModGAN: G and D each; see batches_per_step)
        val_batch_size: int = 8,  # validation batch size
        num_workers: int = 2,  # loader worker processes
        max_val_images: int | None = 2000,  # cap on validation images (None = all)
        images: ImageOptions = ImageOptions(small_images="upscale"),  # flips, small photos
        seed: int = 0,  # seeds the training stream
    ):
        super().__init__(
            self.row.spec(), False, resolution, batch_size, val_batch_size, num_workers, seed
        )
        self.save_hyperparameters()
        self.images = take_images(self, images)


class LabelFolderDataModule(LabelDataModule):
    """Your own data: a photo folder and a label folder (single-channel PNGs of class ids),
    matched by file stem, optionally an instance folder; validation from val_* folders or a
    seeded split. `label_set` reuses a named set's classes and conventions for such folders.

    Args:
        image_dir: the photos, any sub-folder depth.
        label_dir: the label maps, with the photos' stems (after removing label_suffix).
        num_classes: the classes of label_set "generic" (raw values 0..n-1), required there;
            None with a named set.
        label_set: "generic", "coco_stuff", "cityscapes" or "ade20k".
        class_names: generic only: the classes' names; None: class_0, class_1, ...
        ignore_value: generic only: the raw value of "unlabeled", which becomes class n; None:
            no such value.
        instance_dir: instance-id maps, needed for instance_edges; None: none.
        val_image_dir: validation photos; None: a seeded split of val_fraction.
        val_label_dir: validation label maps, given with val_image_dir.
        val_instance_dir: validation instance maps, given with val_image_dir and
            instance_edges.
        image_suffix: removed from photo stems; None: the set's default.
        label_suffix: removed from label stems (e.g. "_gtFine_labelIds"); None: the set's.
        instance_suffix: removed from instance stems; None: the set's.
        resolution: (H, W) or H = W, powers of two.
        val_fraction: the share held out when no val_image_dir is given.
        max_val_images: the first this many validation pairs; None: all.
        instance_edges: add the instance-boundary channel (needs instance_dir).
        batch_size: as for `CocoStuffDataModule`.
        val_batch_size: the validation loader's batch size.
        num_workers: the loaders' worker processes.
        seed: seeds the training stream and the train/val split.

    Raises:
        DataError: only one of val_image_dir and val_label_dir, instance_edges without the
            instance folders, or a label set that does not fit num_classes, class_names or
            ignore_value.
    """

    def __init__(
        self,
        image_dir: str,  # photos, any sub-folder depth
        label_dir: str,  # label maps with the photos' stems (after removing label_suffix)
        num_classes: int | None = None,  # required for label_set "generic": raw values 0..n-1
        label_set: str = "generic",  # "generic" | "coco_stuff" | "cityscapes" | "ade20k"
        class_names: list[str] | None = None,  # generic only: names, default class_0, ...
        ignore_value: int | None = None,  # generic only: raw value of "unlabeled" -> class n
        instance_dir: str | None = None,  # instance-id maps, needed for instance_edges
        val_image_dir: str | None = None,  # validation photos; None: split off val_fraction
        val_label_dir: str | None = None,  # validation label maps (with val_image_dir)
        val_instance_dir: str | None = None,  # validation instance maps (with instance_edges)
        image_suffix: str | None = None,  # stripped from photo stems; None: the set's default
        label_suffix: str | None = None,  # stripped from label stems ("_gtFine_labelIds")
        instance_suffix: str | None = None,  # stripped from instance stems
        resolution: int | tuple[int, int] = 256,  # (H, W) or H = W; powers of two
        val_fraction: float = 0.05,  # used when no val_image_dir is given
        max_val_images: int | None = 2000,  # cap on validation images (None = all)
        instance_edges: bool = False,  # add the instance-boundary channel (needs instance_dir)
        images: ImageOptions = ImageOptions(),  # flips, small photos
        batch_size: int = 4,  # per process, per use (CoModGAN: G and D each; see batches_per_step)
        val_batch_size: int = 8,  # validation batch size
        num_workers: int = 2,  # loader worker processes
        seed: int = 0,  # seeds the training stream and the train/val split
    ):
        spec = _folder_spec(label_set, num_classes, class_names, ignore_value)
        super().__init__(
            spec, instance_edges, resolution, batch_size, val_batch_size, num_workers, seed
        )
        self.save_hyperparameters()
        self.images = take_images(self, images)
        if (val_image_dir is None) != (val_label_dir is None):
            raise DataError("give both val_image_dir and val_label_dir, or neither")
        if instance_edges and (
            instance_dir is None or (val_image_dir is not None and val_instance_dir is None)
        ):
            raise DataError(
                "instance_edges=true needs instance_dir (and val_instance_dir with val_image_dir)"
            )
        row = LABEL_DATASETS.get(label_set)
        default = row.suffixes if row is not None else ("", "", "")
        given = (image_suffix, label_suffix, instance_suffix)
        self.suffixes = tuple(d if g is None else g for g, d in zip(given, default, strict=True))

    def check_folders(self) -> None:
        """FileNotFoundError naming the first folder that is missing. At setup, not when built:
        streaming shards build this datamodule on machines that have only the shards."""
        layout = "photos in image_dir, label maps (PNG class ids) with the same names in label_dir"
        for name in (
            "image_dir",
            "label_dir",
            "instance_dir",
            "val_image_dir",
            "val_label_dir",
            "val_instance_dir",
        ):
            folder = getattr(self.hparams, name)
            if folder is not None and not Path(folder).is_dir():
                raise FileNotFoundError(f"{name} {folder} does not exist; expected {layout}")

    def build_datasets(self) -> tuple[Dataset, Dataset]:
        """(train, val) paired label datasets from the folders: the val_* folders, or a seeded
        split of the pairs."""
        self.check_folders()
        hp, ie = self.hparams, self.instance_edges
        train = pair_files(
            hp.image_dir, hp.label_dir, hp.instance_dir if ie else None, *self.suffixes
        )
        if hp.val_image_dir is not None:
            val = pair_files(
                hp.val_image_dir,
                hp.val_label_dir,
                hp.val_instance_dir if ie else None,
                *self.suffixes,
            )
        else:
            _, val_images = split_files(
                [r.image for r in train],
                hp.val_fraction,
                hp.seed,
                hp.image_dir,
                "photo/label pair",
                "val_image_dir and val_label_dir",
            )
            chosen = set(val_images)
            val = [r for r in train if r.image in chosen]
            train = [r for r in train if r.image not in chosen]
        return self._datasets(train, val)


def _folder_spec(
    label_set: str, num_classes: int | None, class_names: list[str] | None, ignore: int | None
) -> LabelSpec:
    if label_set == "generic":
        if num_classes is None:
            raise DataError("label_set 'generic' needs num_classes (label values 0..num_classes-1)")
        return generic_spec(num_classes, class_names, ignore)
    spec = get_spec(label_set)
    if class_names is not None or ignore is not None:
        raise DataError(
            f"class_names and ignore_value are for label_set 'generic'; {label_set!r} fixes them"
        )
    if num_classes is not None and num_classes != spec.num_classes:
        raise DataError(
            f"num_classes={num_classes} but label_set {label_set!r} has {spec.num_classes} "
            "classes; leave num_classes unset"
        )
    return spec
