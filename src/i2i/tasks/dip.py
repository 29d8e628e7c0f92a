"""Deep image prior as an inpainting task with no training, so that whatever scores a task
(`i2i compare`, `validate`) scores it with the same metrics on the same images and masks: each
evaluated image is completed by its own optimisation (`i2i.dip.deep_image_prior`), seeded by
`eval_seed` and the image's index.
"""

from __future__ import annotations

import torch
from torch import nn

from i2i.data import batch as B
from i2i.dip import deep_image_prior
from i2i.networks.hourglass import HourglassNetwork
from i2i.seeding import derive_seed
from i2i.tasks.base import ImageTask
from i2i.tasks.inpainting import Inpainting


class DeepImagePriorTask(Inpainting, ImageTask):
    """`sample(batch)`: every image of the batch inpainted by deep image prior.

    Args:
        iterations: Adam steps per image, >= 1.
        lr: Adam's learning rate.
        code_channels: channels of the fixed random input code.
        input_noise_std: standard deviation of the noise added to the code at every step.
        network: `HourglassNetwork` arguments (channels, skip_channels, levels, ...); None for
            its defaults.
        **kwargs (Any): `Inpainting`'s and `ImageTask`'s arguments (channels_last is always off).

    Raises:
        ValueError: `iterations` < 1.
    """

    #: No dataset to learn from: there is nothing to fit, only images to complete.
    trains = False

    def __init__(
        self,
        iterations: int = 3000,  # Adam steps per image
        lr: float = 0.01,
        code_channels: int = 32,  # channels of the fixed random input code
        input_noise_std: float = 1 / 30,  # noise added to the code at every step
        network: dict | None = None,  # HourglassNetwork arguments (channels, skip_channels, ...)
        **kwargs,
    ):
        super().__init__(channels_last=False, **kwargs)
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        # The architecture each image gets afresh: counted by the comparison, never trained.
        self.network = HourglassNetwork(in_channels=code_channels, **(network or {}))

    @property
    def sampling_network(self) -> nn.Module:
        """The hourglass architecture each image gets afresh (never trained as a whole)."""
        return self.network

    def eval_latents(self, batch: dict, variant: int = 0) -> None:
        """None: the random code is drawn inside each image's optimisation, from its seed.

        Args:
            batch: ignored.
            variant: ignored.
        """
        return None  # the random code is drawn inside the optimisation, from its seed

    def training_step(self, batch: dict, batch_idx: int) -> None:
        """Refuse: deep image prior has no training (each image is optimised when completed)."""
        raise RuntimeError(
            "deep image prior has no training: each image is optimised when it is completed "
            "(`i2i dip`, or validate / `i2i compare` with this task)"
        )

    def configure_optimizers(self) -> None:
        """No optimizer: nothing is trained."""
        return None

    def generate(self, G: nn.Module, batch: dict, z=None, **kwargs) -> torch.Tensor:
        """Complete each image by its own optimisation, seeded by (eval_seed, index).

        Images without a hole are returned as they are.

        Args:
            G: ignored (each image builds its own network from the hyperparameters).
            batch: a batch dict with "image" (N, 3, H, W) in [-1, 1], "mask" (1 = known) and
                "index".
            z (torch.Tensor | None): ignored.
            **kwargs (Any): ignored.

        Returns:
            (N, 3, H, W) completions in [-1, 1], in the image's dtype.
        """
        hp = self.hparams
        out = []
        # Evaluation runs under no_grad / inference mode; the optimisation needs autograd, and
        # plain copies of the (inference) input tensors.
        with torch.inference_mode(False), torch.enable_grad():
            items = zip(batch[B.IMAGE], batch[B.MASK], batch[B.INDEX], strict=True)
            for image, mask, index in items:
                image, mask = image.clone().float(), mask.clone().float()
                if float(mask.min()) == 1.0:  # no hole: nothing to complete
                    out.append(image.cpu())
                    continue
                result = deep_image_prior(
                    image,
                    mask,
                    iterations=hp.iterations,
                    lr=hp.lr,
                    code_channels=hp.code_channels,
                    input_noise_std=hp.input_noise_std,
                    network=hp.network,
                    seed=derive_seed(hp.eval_seed, int(index)),
                    device=self.device,
                )
                out.append(result.image)
        return torch.stack(out).to(self.device, batch[B.IMAGE].dtype)
