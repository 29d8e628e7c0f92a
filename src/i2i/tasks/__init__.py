"""LightningModules: thin tasks over the shared GAN training recipe."""

from i2i.tasks.base import GANTask
from i2i.tasks.inpainting import InpaintingTask
from i2i.tasks.translation import EdgesToPhotoTask, LabelsToPhotoTask, TranslationTask

__all__ = ["EdgesToPhotoTask", "GANTask", "InpaintingTask", "LabelsToPhotoTask", "TranslationTask"]
