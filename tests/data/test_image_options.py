"""The image options every image datamodule shares: checked once, taken as one `images`
argument with each datamodule's old defaults, and spread out as the old separate arguments
where settings written before are compared (shard manifests, evaluation results)."""

from __future__ import annotations

import inspect
from dataclasses import asdict

import pytest

from i2i.data.image_options import MOVED, ImageOptions, flat_settings
from i2i.data.inpainting import InpaintingDataModule
from i2i.data.label_datamodules import (
    ADE20KDataModule,
    CityscapesDataModule,
    CocoStuffDataModule,
    LabelFolderDataModule,
)
from i2i.data.shards import dataset_settings, fingerprint
from i2i.data.translation import (
    CityscapesPix2PixDataModule,
    Edges2HandbagsDataModule,
    Edges2ShoesDataModule,
    EdgesFromPhotosDataModule,
    FacadesDataModule,
    PairedDataModule,
)
from i2i.data.unpaired import UnpairedDataModule
from i2i.errors import DataError

# Every image datamodule, with the options' default it had as separate arguments.
DEFAULTS = {
    InpaintingDataModule: ImageOptions(),
    CocoStuffDataModule: ImageOptions(small_images="upscale"),
    CityscapesDataModule: ImageOptions(),
    ADE20KDataModule: ImageOptions(small_images="upscale"),
    LabelFolderDataModule: ImageOptions(),
    PairedDataModule: ImageOptions(),
    Edges2ShoesDataModule: ImageOptions(),
    Edges2HandbagsDataModule: ImageOptions(),
    FacadesDataModule: ImageOptions(),
    CityscapesPix2PixDataModule: ImageOptions(),
    EdgesFromPhotosDataModule: ImageOptions(),
    UnpairedDataModule: ImageOptions(),
}


# A bad value of each option, and the accepted values its error must list.
BAD_VALUES = [
    ("resize", "stretch", "('cover', 'none')"),
    ("resample", "lanczos", "('bicubic_antialias', 'pil_bilinear')"),
    ("train_crop", "middle", "('random', 'center')"),
    ("small_images", "shrink", "('error', 'upscale', 'pad')"),
    ("on_corrupt", "ignore", "('skip', 'raise')"),
    ("hflip", "yes", "(True, False)"),
    ("hflip", 1, "(True, False)"),  # 1 == True, but not a flag
]


@pytest.mark.parametrize(("field", "value", "accepted"), BAD_VALUES)
def test_a_bad_option_is_named_with_its_value_and_the_accepted_ones(field, value, accepted):
    with pytest.raises(DataError) as info:
        ImageOptions(**{field: value})
    assert str(info.value) == f"images.{field} must be one of {accepted}, got {value!r}"


@pytest.mark.parametrize("cls", list(DEFAULTS), ids=lambda c: c.__name__)
def test_every_image_datamodule_takes_one_images_argument_with_its_old_defaults(cls):
    params = inspect.signature(cls.__init__).parameters
    assert not set(MOVED) & set(params), "a loose image option is declared again"
    assert params["images"].annotation in (ImageOptions, "ImageOptions")
    assert params["images"].default == DEFAULTS[cls]


def test_a_datamodule_refuses_an_option_it_cannot_honour():
    with pytest.raises(DataError, match=r"images\.resample='pil_bilinear': EdgesFromPhotos"):
        EdgesFromPhotosDataModule("photos", images=ImageOptions(resample="pil_bilinear"))
    with pytest.raises(DataError, match=r"images\.small_images must be one of \('error', 'up"):
        CocoStuffDataModule("coco", images={"small_images": "pad"})
    with pytest.raises(DataError, match=r"images\.resize='none': UnpairedDataModule"):
        UnpairedDataModule(images={"resize": "none"})
    with pytest.raises(DataError, match=r"images\.train_crop='center': PairedDataModule"):
        PairedDataModule("pairs", images={"train_crop": "center"})
    # The options each one reads pass, from an ImageOptions or its plain form (a config).
    dm = UnpairedDataModule(images={"train_crop": "center", "hflip": False}, resolution=64)
    assert dm.images == ImageOptions(train_crop="center", hflip=False)


def test_hparams_hold_the_plain_options_and_spread_out_as_the_old_arguments():
    images = ImageOptions(resize="none", train_crop="center", small_images="pad", hflip=False)
    dm = InpaintingDataModule(None, resolution=64, images=images)
    assert dm.hparams["images"] == asdict(images)  # plain: checkpoints load weights-only
    flat = flat_settings(dm)
    assert "images" not in flat and flat["small_images"] == "pad" and flat["hflip"] is False
    assert (flat["resize"], flat["train_crop"], flat["resample"]) == (
        "none",
        "center",
        "bicubic_antialias",
    )
    # Only the options a datamodule read as arguments, under their old names.
    unpaired = dataset_settings(UnpairedDataModule(resolution=64, load_size=72))["init_args"]
    assert {"crop": "random", "hflip": True, "on_corrupt": "skip"}.items() <= unpaired.items()
    assert not {"images", "train_crop", "resize", "resample", "small_images"} & set(unpaired)
    coco = flat_settings(CocoStuffDataModule("coco"))
    assert (coco["hflip"], coco["small_images"]) == (True, "upscale")
    assert not {"images", "on_corrupt", "resize", "resample", "train_crop"} & set(coco)


def test_shards_written_before_the_options_were_grouped_still_match():
    # The fingerprints that `i2i data optimize` wrote into manifests with separate arguments.
    places = InpaintingDataModule(
        "data/places2",
        resolution=64,
        images=ImageOptions(
            hflip=False,
            train_crop="center",
            resize="none",
            small_images="pad",
            resample="pil_bilinear",
        ),
    )
    assert fingerprint(dataset_settings(places)) == "db3f08bf097c3106"
    unpaired = UnpairedDataModule(
        "data/h2z", resolution=64, load_size=72, images={"train_crop": "center"}
    )
    assert fingerprint(dataset_settings(unpaired)) == "0e922cca9adde6d1"
    coco = CocoStuffDataModule("coco", images={"small_images": "error"})
    assert fingerprint(dataset_settings(coco)) == "f19347175f5e9e0e"


def test_validation_datasets_never_flip(tmp_path):
    from PIL import Image

    for i in range(4):
        Image.new("RGB", (64, 64), (i * 40, 0, 0)).save(tmp_path / f"{i}.png")
    dm = InpaintingDataModule(str(tmp_path), resolution=64, val_fraction=0.5, num_workers=0)
    dm.setup("fit")
    assert dm.train_dataset.hflip is True and dm.val_dataset.dataset.hflip is False
