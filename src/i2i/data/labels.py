"""Paired datasets for labels -> photo: the files paired per sample and the datasets over them.

A sample is {"image": (3, H, W) float in [-1, 1], "label": (H, W) int64 class ids, "index"},
plus "instance_edges": (1, H, W) float in [-1, 1], +1 on instance boundaries, when `instance_edges`.

Geometry: photo, label map and instance map share one crop plan (`plan_crop`) and one flip
draw; the photo is resized bicubic, label and instance maps with NEAREST only (so no new class
ids appear) and stay integers. Instance boundaries are computed after resizing, at the output
resolution, so they are one pixel wide as in SPADE.

Photos are read WITHOUT applying EXIF orientation (unlike `load_image`): label maps are
annotated on the stored pixels and carry no EXIF, so rotating only the photo would misalign them.

Label sets (class names, colours, raw-value mapping) and the published datasets' table
(LABEL_DATASETS: label set, folder layouts, file suffixes) live in `i2i.data.label_specs`;
reading and colouring the maps themselves in `i2i.data.label_maps`, their geometry in
`i2i.data.crop`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

from i2i.data import batch
from i2i.data.crop import apply_crop, check_resolution, plan_crop
from i2i.data.datasets import FileDataset, note_small, scan_headers
from i2i.data.folders import list_images
from i2i.data.image_options import SMALL_IMAGES, ImageOptions, check_option
from i2i.data.label_maps import (
    instance_edges,
    read_label_map,
)
from i2i.data.label_specs import (
    CITYSCAPES_SUFFIXES,
    LABEL_DATASETS,
    LabelDatasetRow,
    LabelSpec,
    ade20k_folders,
    ade20k_spec,
    cityscapes_folders,
    cityscapes_spec,
    coco_stuff_folders,
    coco_stuff_spec,
    distinct_palette,
    generic_spec,
    get_spec,
)
from i2i.data.scan import Findings, label_stats
from i2i.errors import CorruptImageError, DataError

__all__ = [
    "CITYSCAPES_SUFFIXES",
    "LabelSpec",
    "ade20k_spec",
    "cityscapes_spec",
    "coco_stuff_spec",
    "distinct_palette",
    "generic_spec",
    "get_spec",
    "LabelRecord",
    "pair_files",
    "PairedLabelDataset",
    "LabelFolderDataset",
    "CocoStuffDataset",
    "CityscapesDataset",
    "ADE20KDataset",
    "LABEL_DATASETS",
    "LabelDatasetRow",
    "NamedLabelDataset",
    "split_records",
    "coco_stuff_folders",
    "cityscapes_folders",
    "ade20k_folders",
]


# ---------------------------------------------------------------------------------------------
# Pairing files


class LabelRecord(NamedTuple):
    """One sample's files: the photo, its label map and (optionally) its instance map."""

    image: Path
    label: Path
    instance: Path | None = None


def _keyed(files: list[Path], suffix: str, folder: Path) -> dict[str, Path]:
    """{stem without `suffix`: path}; files whose stem lacks the suffix are ignored (Cityscapes
    keeps labelIds, instanceIds and colour maps in one folder)."""
    out: dict[str, Path] = {}
    for f in files:
        if suffix and not f.stem.endswith(suffix):
            continue
        key = f.stem[: len(f.stem) - len(suffix)] if suffix else f.stem
        if key in out:
            raise DataError(
                f"Two files in {folder} have the same name key {key!r}: {out[key]} and {f}; "
                "files are matched by name, so keep names unique"
            )
        out[key] = f
    if not out:
        raise FileNotFoundError(f"No files ending in {suffix!r} (before the extension) in {folder}")
    return out


def _missing(what: str, keys: Sequence[str], have: dict[str, Path], where: Path, pattern: str):
    names = ", ".join(str(have[k]) for k in keys[:5]) + (" ..." if len(keys) > 5 else "")
    return ValueError(
        f"{len(keys)} {what} without a partner in {where} (expected {pattern}): {names}. "
        "Every photo needs a label map (and instance map) of the same name, and vice versa."
    )


def pair_files(
    image_dir: str | Path,
    label_dir: str | Path,
    instance_dir: str | Path | None = None,
    image_suffix: str = "",
    label_suffix: str = "",
    instance_suffix: str = "",
) -> list[LabelRecord]:
    """Match photos, label maps and instance maps (any sub-folder depth) by file stem, after
    removing the given name suffixes.

    Args:
        image_dir: the photos.
        label_dir: the label maps.
        instance_dir: the instance maps; None: no instance maps.
        image_suffix: removed from photo stems before matching ("_leftImg8bit").
        label_suffix: removed from label stems; files without it are ignored.
        instance_suffix: removed from instance stems; files without it are ignored.

    Returns:
        One record per photo, sorted by the matched name.

    Raises:
        ValueError: a photo without its label or instance map, or a label map without its photo
            (the message names the first five).
        DataError: two files of one folder with the same name.
        FileNotFoundError: a folder missing or without matching files.
    """
    image_dir, label_dir = Path(image_dir), Path(label_dir)
    images = _keyed(list_images(image_dir), image_suffix, image_dir)
    labels = _keyed(list_images(label_dir), label_suffix, label_dir)
    lonely = sorted(set(images) - set(labels))
    if lonely:
        raise _missing("photo(s)", lonely, images, label_dir, f"<name>{label_suffix}.png")
    lonely = sorted(set(labels) - set(images))
    if lonely:
        raise _missing("label map(s)", lonely, labels, image_dir, f"<name>{image_suffix}.jpg/png")
    instances: dict[str, Path] = {}
    if instance_dir is not None:
        instance_dir = Path(instance_dir)
        instances = _keyed(list_images(instance_dir), instance_suffix, instance_dir)
        lonely = sorted(set(images) - set(instances))
        if lonely:
            raise _missing("photo(s)", lonely, images, instance_dir, f"<name>{instance_suffix}.png")
    return [LabelRecord(images[k], labels[k], instances.get(k)) for k in sorted(images)]


# ---------------------------------------------------------------------------------------------
# Datasets


def _load_photo(
    path: Path, draft: tuple[int, int], open_file: Callable[[Path], BinaryIO]
) -> tuple[Image.Image, tuple[int, int]]:
    """(RGB photo, its stored size (H, W)); JPEGs may decode at a reduced scale covering `draft`
    (the crop plan resizes the photo to the label's geometry anyway)."""
    try:
        with open_file(path) as file, Image.open(file) as img:
            size = (img.height, img.width)
            if img.format == "JPEG":
                side = max(draft)
                img.draft(None, (side, side))
            img.load()
            return img.convert("RGB"), size
    except (FileNotFoundError, Image.DecompressionBombError):
        raise
    except Exception as e:
        raise CorruptImageError(
            f"Cannot decode photo {path} ({type(e).__name__}: {e}); replace this file"
        ) from e


class PairedLabelDataset(FileDataset):
    """Photo + label map (+ instance map) samples from a list of `LabelRecord`:
    {"image": (3, H, W) in [-1, 1], "label": (H, W) int64 class ids, "index": int, and
    "instance_edges": (1, H, W), 1 on instance boundaries and -1 elsewhere, when asked}.

    Args:
        records: the files, one record per sample.
        spec: the label set: maps raw file values to class ids 0..num_classes-1.
        resolution: the output size: an int (square) or (H, W), powers of two.
        train: random crop and optional flip; False: centre crop, deterministic.
        images: resize, crop, filter, flips (in training only) and what small or unreadable
            files do (`ImageOptions`; a dataset refuses an option it cannot honour).
        instance_edges: add "instance_edges" (every record needs an instance map).

    Raises:
        DataError: an unknown small_images, no records, or records without instance maps when
            `instance_edges`.
    """

    def __init__(
        self,
        records: Sequence[LabelRecord],  # the files, one record per sample
        spec: LabelSpec,  # label set: maps raw file values to class ids 0..num_classes-1
        resolution: int | Sequence[int],  # output size: int or (H, W), powers of two
        train: bool = True,  # random crop + optional flip; False: centre crop, deterministic
        instance_edges: bool = False,  # add "instance_edges" (needs instance maps)
        images: ImageOptions = ImageOptions(),  # reads hflip and small_images (error|upscale)
    ) -> None:
        check_option("small_images", images.small_images, SMALL_IMAGES)
        self.records = list(records)
        if not self.records:
            raise DataError(f"{type(self).__name__}: no samples (the file list is empty)")
        if instance_edges:
            lacking = [r.image for r in self.records if r.instance is None]
            if lacking:
                raise DataError(
                    f"instance_edges=True but {len(lacking)} photo(s) have no instance map, e.g. "
                    f"{lacking[0]}; give the instance folder or set instance_edges=false"
                )
        self.spec, self.resolution = spec, check_resolution(resolution)
        self.train, self.hflip, self.instance_edges = train, images.hflip, instance_edges
        self.small_images = images.small_images

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        n = len(self.records)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} samples")
        i %= n
        rec = self.records[i]
        raw = read_label_map(rec.label, open_file=self.open_file)
        photo, photo_size = _load_photo(rec.image, self.resolution, self.open_file)
        if photo_size != raw.shape:
            raise DataError(
                f"Photo {rec.image} is {photo_size[1]}x{photo_size[0]} (WxH) but its label map "
                f"{rec.label} is {raw.shape[1]}x{raw.shape[0]}: the pair does not match (wrong "
                "file, or one of them was resized). Label maps must have the photo's size."
            )
        label = self.spec.to_class_ids(raw, rec.label)
        inst = None
        if self.instance_edges:
            inst = read_label_map(rec.instance, open_file=self.open_file)
            if inst.shape != raw.shape:
                raise DataError(
                    f"Instance map {rec.instance} is {inst.shape[1]}x{inst.shape[0]} (WxH) but "
                    f"label map {rec.label} is {raw.shape[1]}x{raw.shape[0]}: they must match"
                )

        # One crop plan and one flip draw for all maps, so they stay pixel-aligned.
        plan = plan_crop(raw.shape, self.resolution, self.train, self.small_images, rec.image)
        flip = self.train and self.hflip and torch.rand(()).item() < 0.5
        maps = [tv_tensors.Mask(m.astype(np.int64)) for m in (label, inst) if m is not None]
        image, label_t, *inst_t = apply_crop(plan, flip, photo, *maps)
        sample = {batch.IMAGE: image, batch.LABEL: label_t, batch.INDEX: i}
        if inst_t:  # boundaries are mirror-symmetric: those of the flipped map are flipped
            edges = torch.from_numpy(instance_edges(inst_t[0].numpy())).unsqueeze(0)
            sample[batch.INSTANCE_EDGES] = edges.float() * 2 - 1
        return sample

    def scan(self, findings: Findings, indices: Sequence[int] | None = None) -> None:
        """Check the records at setup: photo, label and instance map sizes from the headers,
        and the label values, read once and cached (see `i2i.data.scan`), against the
        label set.

        Args:
            findings: where problems are collected, to be raised together.
            indices: only the records at these indices; None: every record.
        """
        recs = self.records if indices is None else [self.records[k] for k in indices]
        where = str(recs[0].image.parent) if recs else "the label dataset"
        photos = scan_headers(
            [r.image for r in recs], "raise", findings, where, exif=False, item="photo"
        )
        stats = label_stats([r.label for r in recs], read_label_map)
        inst_sizes: dict[Path, tuple[int, int]] = {}
        if self.instance_edges:
            inst_sizes = scan_headers(
                [r.instance for r in recs],
                "raise",
                findings,
                where,
                exif=False,
                item="instance map",
            )
        spec = self.spec
        for rec, st in zip(recs, stats, strict=True):
            if isinstance(st, Exception):
                findings.add(
                    "label_unreadable",
                    "label map(s) that cannot be used",
                    "Fix: label maps must be lossless single-channel PNGs of class ids; replace "
                    "these files.",
                    rec.label,
                    f"{type(st).__name__}: {st}",
                )
                continue
            size = (st.height, st.width)
            photo = photos.get(rec.image)
            if photo is not None and photo != size:
                findings.add(
                    "size_mismatch",
                    "photo(s) whose label map has a different size",
                    "Fix: label maps must have their photo's size (wrong file, or one of the "
                    "two was resized); replace the label map or the photo.",
                    rec.image,
                    f"photo {photo[1]}x{photo[0]}, label map {rec.label} "
                    f"{st.width}x{st.height} WxH",
                )
            inst = inst_sizes.get(rec.instance) if rec.instance is not None else None
            if inst is not None and inst != size:
                findings.add(
                    "instance_mismatch",
                    "instance map(s) of a different size than the label map",
                    "Fix: instance maps must have the label map's size; replace them.",
                    rec.instance,
                    f"{inst[1]}x{inst[0]} vs {st.width}x{st.height} WxH",
                )
            bad = [v for v in st.values if not (0 <= v < spec.identity_range or v in spec.special)]
            if bad:
                top = max(findings.extra.get("label_max", 0), max(st.values))
                findings.extra["label_max"] = top
                shown = ", ".join(str(v) for v in bad[:10]) + (" ..." if len(bad) > 10 else "")
                if spec.name == "generic" and 255 in bad:
                    fix = "If 255 marks unlabeled pixels, set ignore_value: 255."
                elif spec.name == "generic":
                    fix = (
                        f"Set num_classes to hold them (the largest value found is {top}: "
                        f"num_classes: {top + 1}), or ignore_value for an 'unlabeled' value."
                    )
                else:
                    fix = spec.hint or "Check the dataset choice."
                findings.add(
                    "label_range",
                    f"label map(s) with values outside the {spec.name} label set",
                    f"Fix: valid raw values are {spec.valid_values()} ({spec.num_classes} "
                    f"classes). {fix}",
                    rec.label,
                    f"values {shown}",
                )
            note_small(findings, rec.label, size, self.resolution, self.small_images, "sample")


class LabelFolderDataset(PairedLabelDataset):
    """A folder of photos and a folder of label maps (and optionally instance maps), matched by
    file stem after removing the given suffixes (see `pair_files`).

    Args:
        image_dir: the photos (jpg/png/...), any sub-folder depth.
        label_dir: single-channel PNG label maps, same stems as the photos.
        spec: the label set, e.g. `generic_spec(num_classes)` or `cityscapes_spec()`.
        resolution: the output size: an int (square) or (H, W).
        instance_dir: instance-id maps, same stems; None: none.
        image_suffix: removed from photo stems before matching ("_leftImg8bit").
        label_suffix: removed from label stems ("_gtFine_labelIds").
        instance_suffix: removed from instance stems ("_gtFine_instanceIds").
        **kwargs: train, hflip, instance_edges, small_images: see `PairedLabelDataset`.
    """

    def __init__(
        self,
        image_dir: str | Path,  # photos (jpg/png/...), any sub-folder depth
        label_dir: str | Path,  # single-channel PNG label maps, same stems as the photos
        spec: LabelSpec,  # e.g. generic_spec(num_classes) or cityscapes_spec()
        resolution: int | Sequence[int],
        instance_dir: str | Path | None = None,  # instance-id maps, same stems
        image_suffix: str = "",  # removed from photo stems before matching ("_leftImg8bit")
        label_suffix: str = "",  # removed from label stems ("_gtFine_labelIds")
        instance_suffix: str = "",  # removed from instance stems ("_gtFine_instanceIds")
        **kwargs: Any,  # train, instance_edges, images: see PairedLabelDataset
    ) -> None:
        records = pair_files(
            image_dir, label_dir, instance_dir, image_suffix, label_suffix, instance_suffix
        )
        super().__init__(records, spec, resolution, **kwargs)


def split_records(
    row: LabelDatasetRow, root: str | Path, split: str, instance_edges: bool
) -> list[LabelRecord]:
    """The (photo, label, instance) records of one split of a LABEL_DATASETS row.

    Args:
        row: the dataset's row.
        root: its folder.
        split: "train" or "val".
        instance_edges: pair instance maps too; False leaves them out.

    Raises:
        DataError: instance maps asked of a dataset that has none.
        FileNotFoundError: the split's folders are missing.
    """
    if instance_edges and not row.has_instances:
        raise DataError(
            f"{row.title} has no instance maps: set instance_edges=false (as SPADE does for ADE20K)"
        )
    img, lab, inst = row.folders(root, split)
    return pair_files(img, lab, inst if instance_edges else None, *row.suffixes)


class NamedLabelDataset(PairedLabelDataset):
    """One split of a row of LABEL_DATASETS; each subclass binds its row by key.

    Args:
        root: the dataset's folder (see the row's folder layouts).
        split: "train" or "val".
        resolution: the output size: an int (square) or (H, W).
        **kwargs: train, hflip, instance_edges, small_images: see `PairedLabelDataset`.
    """

    dataset = ""  # the key in LABEL_DATASETS

    def __init__(
        self,
        root: str | Path,  # the dataset's root folder (see the row's folder layouts)
        split: str = "train",  # "train" or "val"
        resolution: int | Sequence[int] = 256,
        **kwargs: Any,  # train, instance_edges, images: see PairedLabelDataset
    ) -> None:
        row = LABEL_DATASETS[self.dataset]
        records = split_records(row, root, split, bool(kwargs.get("instance_edges")))
        super().__init__(records, row.spec(), resolution, **kwargs)


class CocoStuffDataset(NamedLabelDataset):
    """COCO-Stuff (SPADE conventions: 0..181, 255 = unlabeled -> class 182; 183 classes);
    root holds train_img/, train_label/, train_inst/, val_... (SPADE) or the release layout."""

    dataset = "coco_stuff"


class CityscapesDataset(NamedLabelDataset):
    """Cityscapes raw labelIds (35 classes), instance boundaries from *_gtFine_instanceIds.png;
    root holds leftImg8bit/ and gtFine/ (or pix2pixHD's train_img/...).

    Args:
        root: the Cityscapes folder.
        split: "train" or "val".
        resolution: (H, W); the default keeps Cityscapes' 2:1 aspect.
        **kwargs: train, hflip, instance_edges, small_images: see `PairedLabelDataset`.
    """

    dataset = "cityscapes"

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        resolution: int | Sequence[int] = (256, 512),  # keep Cityscapes' 2:1 aspect
        **kwargs: Any,
    ) -> None:
        super().__init__(root, split, resolution, **kwargs)


class ADE20KDataset(NamedLabelDataset):
    """ADE20K SceneParsing, ADEChallengeData2016 format (151 classes, 0 = other; split may also
    be "training"/"validation"); the challenge release has no instance maps."""

    dataset = "ade20k"
