"""The datamodules under their first import path (configs and code written against it keep
working): the stream lives in `i2i.data.stream`, inpainting data in `i2i.data.inpainting`, the
embedded demo data in `i2i.data.synthetic`."""

from i2i.data.inpainting import (
    MASK_SHAPES,
    MAX_MEAN_HOLE,
    MIN_MEAN_HOLE,
    FolderMasks,
    InpaintingDataModule,
    image_folder_split,
)
from i2i.data.stream import (
    FixedMaskDataset,
    MaskSource,
    StreamDataModule,
    TrainStream,
    check_files,
    ignore_stop_signals,
)
from i2i.data.synthetic import ShapesDataModule

__all__ = [
    "MASK_SHAPES",
    "MAX_MEAN_HOLE",
    "MIN_MEAN_HOLE",
    "FixedMaskDataset",
    "FolderMasks",
    "InpaintingDataModule",
    "MaskSource",
    "ShapesDataModule",
    "StreamDataModule",
    "TrainStream",
    "check_files",
    "ignore_stop_signals",
    "image_folder_split",
]
