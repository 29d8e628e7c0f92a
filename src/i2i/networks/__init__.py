"""Plain PyTorch networks (no Lightning): CoModGAN's co-modulated generator and discriminator,
pix2pix's U-Net and PatchGAN, CycleGAN's ResNet generator, GLCIC's completion network and
context discriminator, and deep image prior's hourglass."""

from i2i.networks.comod import CoModDiscriminator, CoModGenerator
from i2i.networks.glcic import CompletionNetwork, ContextDiscriminator
from i2i.networks.hourglass import HourglassNetwork
from i2i.networks.patchgan import PatchDiscriminator
from i2i.networks.resnet import ResnetGenerator
from i2i.networks.unet import UNetGenerator

__all__ = [
    "CoModDiscriminator",
    "CoModGenerator",
    "CompletionNetwork",
    "ContextDiscriminator",
    "HourglassNetwork",
    "PatchDiscriminator",
    "ResnetGenerator",
    "UNetGenerator",
]
