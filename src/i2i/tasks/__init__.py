"""LightningModules: thin tasks over plain networks.

- `ImageTask` (base.py): what every system shares (counters, run length, sampling with fixed
  seeds, evaluation hooks, grid panels, `batches_per_step`).
- `AdversarialTask` (adversarial.py): networks, optimizers and training phases as data, the GAN
  objective by name.
- `CoModGANTask` (comod.py): the official CoModGAN recipe on top.
- `Pix2Pix` (pix2pix.py): U-Net + PatchGAN, cGAN + L1; `Pix2PixTask` = EdgesToPhoto + Pix2Pix
  (any image condition), `Pix2PixLabelsTask` = LabelsToPhoto + Pix2Pix (one-hot label maps).
- `CycleGANTask` (cyclegan.py): unpaired translation, two generators and two discriminators.
- `VAEInpaintingTask` (vae.py): variational inpainting on the base task alone (no adversary).
- Classical baselines with no training (classical.py): `ClassicalInpaintingTask(method=...)`
  (harmonic, biharmonic, Telea, Navier-Stokes fills), `NearestNeighbourEdgesTask` /
  `NearestNeighbourLabelsTask` (retrieval of the closest training pair).
- Problems as mixins: `Inpainting`, `EdgesToPhoto`, `LabelsToPhoto`; a task is a problem over a
  system (`InpaintingTask` = Inpainting + CoModGAN, `GLCICTask` = Inpainting + GLCIC).
"""

from i2i.tasks.adversarial import AdversarialTask, Phase
from i2i.tasks.base import ImageTask
from i2i.tasks.classical import (
    ClassicalInpaintingTask,
    NearestNeighbourEdgesTask,
    NearestNeighbourLabelsTask,
)
from i2i.tasks.comod import CoModGANTask
from i2i.tasks.cyclegan import CycleGANTask, ImagePool
from i2i.tasks.glcic import GLCICTask
from i2i.tasks.inpainting import Inpainting, InpaintingTask
from i2i.tasks.pix2pix import Pix2Pix, Pix2PixLabelsTask, Pix2PixTask
from i2i.tasks.translation import (
    EdgesToPhoto,
    EdgesToPhotoTask,
    LabelsToPhoto,
    LabelsToPhotoTask,
    Translation,
)
from i2i.tasks.vae import VAEInpaintingTask

__all__ = [
    "AdversarialTask",
    "ClassicalInpaintingTask",
    "CoModGANTask",
    "CycleGANTask",
    "EdgesToPhoto",
    "EdgesToPhotoTask",
    "GLCICTask",
    "ImagePool",
    "ImageTask",
    "Inpainting",
    "InpaintingTask",
    "LabelsToPhoto",
    "LabelsToPhotoTask",
    "NearestNeighbourEdgesTask",
    "NearestNeighbourLabelsTask",
    "Phase",
    "Pix2Pix",
    "Pix2PixLabelsTask",
    "Pix2PixTask",
    "Translation",
    "VAEInpaintingTask",
]
