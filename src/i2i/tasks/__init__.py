"""LightningModules: thin tasks over the shared GAN training recipe."""

from i2i.tasks.base import GANTask
from i2i.tasks.inpainting import InpaintingTask

__all__ = ["GANTask", "InpaintingTask"]
