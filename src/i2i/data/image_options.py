"""What every image datamodule shares: how a file becomes a training or validation image.

One frozen dataclass, `ImageOptions`, that each image datamodule takes as its `images`
argument and passes down to its datasets; in YAML it is a nested group:

    data:
      init_args:
        images: {small_images: pad, train_crop: center}

(on the command line: ``--data.init_args.images.small_images pad``). A datamodule reads the
options its data allows (its ``IMAGE_CHOICES``); an option it does not read must keep the value
of its default, so that a setting is never silently ignored.

Geometry: "cover" resizes the shorter side to cover the resolution, then crops; "none" crops (or
pads) without resizing, as the official Places2 preprocessing does. Validation always crops at
the centre; `train_crop` concerns training only.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from i2i.errors import DataError

RESIZES = ("cover", "none")
RESAMPLES = ("bicubic_antialias", "pil_bilinear")
TRAIN_CROPS = ("random", "center")
SMALL_IMAGES = ("error", "upscale")
FOLDER_SMALL_IMAGES = (*SMALL_IMAGES, "pad")  # a plain image folder can also pad with black
ON_CORRUPT = ("skip", "raise")
FLIPS = (True, False)

# Every option and the values it takes (a datamodule may accept fewer: its IMAGE_CHOICES).
CHOICES: dict[str, tuple[Any, ...]] = {
    "resize": RESIZES,
    "resample": RESAMPLES,
    "train_crop": TRAIN_CROPS,
    "small_images": FOLDER_SMALL_IMAGES,
    "on_corrupt": ON_CORRUPT,
    "hflip": FLIPS,
}


@dataclass(frozen=True)
class ImageOptions:
    """How images are resized, cropped and flipped, and what happens to bad files."""

    resize: str = "cover"  # "cover": resize to cover the resolution, then crop; "none": crop only
    resample: str = "bicubic_antialias"  # PIL's bicubic (it antialiases) | "pil_bilinear"
    train_crop: str = "random"  # where training crops: "random" | "center" (validation: centre)
    small_images: str = "error"  # images under the resolution: "error" | "upscale" | "pad"
    on_corrupt: str = "skip"  # an unreadable file: "skip" with a warning naming it | "raise"
    hflip: bool = True  # random horizontal flips in training

    def __post_init__(self) -> None:
        for name, accepted in CHOICES.items():
            check_option(name, getattr(self, name), accepted)

    def for_validation(self) -> ImageOptions:
        """The options of a validation set: never flipped (it is also never randomly cropped)."""
        return replace(self, hflip=False)

    def check_for(
        self, owner: str, default: ImageOptions, choices: dict[str, tuple[Any, ...]]
    ) -> None:
        """DataError when `owner` cannot honour an option: a value outside `choices[name]`, or
        a change to an option `owner` does not read (those must keep `default`'s value).

        Args:
            owner: the datamodule's class name, for the message.
            default: the owner's default options.
            choices: {option: the values the owner accepts} for the options it reads.
        """
        for field in fields(self):
            value, fixed = getattr(self, field.name), getattr(default, field.name)
            if field.name in choices:
                check_option(field.name, value, choices[field.name], f" for {owner}")
            elif value != fixed:
                raise DataError(
                    f"images.{field.name}={value!r}: {owner} does not read this option; "
                    f"accepted values: ({fixed!r},)"
                )


def check_option(name: str, value: Any, accepted: tuple[Any, ...], where: str = "") -> None:
    """DataError naming the option, its value and the accepted values.

    Args:
        name: the option (a field of ImageOptions).
        value: its value.
        accepted: the values allowed; `hflip` must also be a bool.
        where: appended to the message (e.g. " for CocoStuffDataModule").
    """
    if value not in accepted or (name == "hflip" and not isinstance(value, bool)):
        raise DataError(f"images.{name} must be one of {accepted}{where}, got {value!r}")


def image_options(value: ImageOptions | dict[str, Any]) -> ImageOptions:
    """An ImageOptions from itself or from its plain form (hyper-parameters, a Python call).

    Args:
        value: an ImageOptions, or a dict of its fields.
    """
    return value if isinstance(value, ImageOptions) else ImageOptions(**value)


# The datamodule arguments that moved into `images` (old name -> option): the command line
# names the new key for an old one (`i2i.config_keys`). Only UnpairedDataModule had `crop`.
MOVED = {name: name for name in CHOICES} | {"crop": "train_crop"}


def take_images(datamodule: Any, images: ImageOptions | dict[str, Any]) -> ImageOptions:
    """`images` checked against what the datamodule's class reads (its ``IMAGE_CHOICES``;
    other options must keep the value of the class's default) and kept in its hparams in plain
    form: checkpoints load weights-only, and a shard manifest compares plain values.

    Args:
        datamodule: the datamodule being built (its class has IMAGE_CHOICES).
        images: the options it was given.

    Returns:
        The options as an ImageOptions.
    """
    options = image_options(images)
    cls = type(datamodule)
    default = image_options(inspect.signature(cls.__init__).parameters["images"].default)
    options.check_for(cls.__name__, default, cls.IMAGE_CHOICES)
    datamodule.hparams["images"] = asdict(options)
    return options


def flat_settings(datamodule: Any) -> dict[str, Any]:
    """The datamodule's hparams with `images` spread out as the separate arguments they were
    before (the options its class reads, under their old names), so that shard manifests and
    evaluation results written before read the same.

    Args:
        datamodule: a datamodule that took its options with `take_images`.

    Returns:
        Its hyper-parameters, `images` spread out.
    """
    cls = type(datamodule)
    renamed = getattr(cls, "IMAGE_OLD_NAMES", {})  # option -> its old argument, where it differs
    out: dict[str, Any] = {}
    for key, value in dict(datamodule.hparams).items():
        if key == "images" and isinstance(value, dict):
            out |= {renamed.get(k, k): v for k, v in value.items() if k in cls.IMAGE_CHOICES}
        else:
            out[key] = value
    return out
