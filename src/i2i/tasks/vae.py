"""Variational image inpainting (Ham et al., NeurIPS 2018 workshop): inpainting without an
adversary, on the base task alone (no G_ema, one optimizer, Lightning's automatic optimization).

Training maximises the ELBO with a perceptual term: per sample

    ||x_gen - x||^2 / D + sum_l lambda_l ||VGG16_l(x_gen) - VGG16_l(x)||^2 / D_l
        + beta KL(q(z | .) || N(0, I)) / D

with D = C x H x W and D_l the size of layer l (so beta = 1 is the ELBO of a Gaussian decoder
of variance 1/2 per pixel). The encoder sees the complete image (`observed: full`) or the
partially observed one x' = x * m (`observed: partial`). Completion at test time is the
paper's iterative sampling

    z_t ~ q(z | x'_t),  x_t ~ p(x | z_t),  x'_{t+1} = m * x'_t + (1 - m) * x_t

for `sampling_steps` steps (x'_0 = x * m), or, with `one_shot: true`, one pass of a decoder that
also sees x' and the mask. Known pixels are kept exactly (the Inpainting problem's composite).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from i2i.data import batch as B
from i2i.losses import kl_to_standard_normal
from i2i.seeding import derive_seed
from i2i.tasks.base import ImageTask
from i2i.tasks.inpainting import Inpainting


def vae_adam(params: Iterable) -> torch.optim.Optimizer:
    """The default optimizer: Adam with lr 1e-3.

    Args:
        params: the parameters to optimise.
    """
    return torch.optim.Adam(params, lr=1e-3)


class VAEInpaintingTask(Inpainting, ImageTask):
    """A `ConvVAE` trained and sampled as the variational inpainting paper describes.

    Args:
        vae: the VAE (`i2i.networks.ConvVAE`).
        optimizer: builds the optimizer from the VAE's parameters.
        observed: what the encoder sees: the `"full"` image or the `"partial"` x * m.
        one_shot: the decoder also sees x' and the mask (needs `decoder_cond_channels: 4`).
        beta: weight of the KL term (per image element, see the module doc).
        pixel_weight: weight of the pixel MSE.
        perceptual: a perceptual distance (fake, real) -> (N,), e.g.
            `i2i.losses.PerceptualLoss(distance="l2")`; None for none.
        sampling_steps: iterative sampling steps at test time, >= 1.
        **kwargs (Any): `Inpainting`'s and `ImageTask`'s arguments.

    Raises:
        ValueError: an unknown `observed`, a one-shot VAE without 4 decoder condition channels,
            or `sampling_steps` < 1.
    """

    not_hyperparameters = ("vae", "optimizer", "perceptual")

    def __init__(
        self,
        vae: nn.Module,
        optimizer: Callable[[Iterable], torch.optim.Optimizer] = vae_adam,
        observed: str = "partial",  # what the encoder sees: "full" image or "partial" x * m
        one_shot: bool = False,  # the decoder also sees x' and the mask (needs cond channels 4)
        beta: float = 1.0,  # weight of the KL term (per image element, see the module doc)
        pixel_weight: float = 1.0,  # weight of the pixel MSE
        perceptual: nn.Module | None = None,  # e.g. i2i.losses.PerceptualLoss(distance="l2")
        sampling_steps: int = 5,  # iterative sampling steps at test time
        **kwargs,
    ):
        super().__init__(**kwargs)
        if observed not in ("full", "partial"):
            raise ValueError(f"observed must be 'full' or 'partial', got {observed!r}")
        if one_shot and getattr(vae, "decoder_cond_channels", 4) != 4:
            raise ValueError("one_shot needs vae.decoder_cond_channels: 4 (x' and the mask)")
        if sampling_steps < 1:
            raise ValueError(f"sampling_steps must be >= 1, got {sampling_steps}")
        self.vae, self.optimizer_factory, self.perceptual = vae, optimizer, perceptual
        if perceptual is not None:
            perceptual.requires_grad_(False)

    def setup(self, stage: str) -> None:
        """Load the perceptual network's weights and check the attributes before training."""
        super().setup(stage)
        if self.perceptual is not None and hasattr(self.perceptual, "load_weights"):
            self.perceptual.load_weights()  # a missing weights file stops before training
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if datamodule is not None:
            self.check_attributes(getattr(datamodule, "attribute_names", []))

    def check_attributes(self, names: list[str]) -> None:
        """The VAE takes as many attributes as the data gives (or none): stop before training.

        Args:
            names: the data's attribute names.

        Raises:
            ValueError: the VAE's attribute count differs from the data's.
        """
        where = getattr(self.vae, "attributes_in", "none")
        wanted = getattr(self.vae, "attr_dim", 0) if where != "none" else 0
        if wanted != len(names):
            raise ValueError(
                f"the VAE takes {wanted} attributes (attr_dim, attributes_in: {where!r}) but "
                f"the data gives {len(names)}"
                f"{': ' + ', '.join(names) if names else ''}. Set the VAE's attr_dim to "
                f"{len(names)} and attributes_in, or the data's attributes (true: every attribute "
                "of list_attr_celeba.txt, or a list of names)"
            )

    def configure_optimizers(self):
        """One optimizer over the VAE."""
        return self.optimizer_factory(self.vae.parameters())

    @property
    def sampling_network(self) -> nn.Module:
        """The VAE."""
        return self.vae

    def eval_latents(self, batch: dict, variant: int = 0) -> None:
        """None: z is drawn from the encoder's posterior, seeded by `sample`.

        Args:
            batch: ignored.
            variant: ignored.
        """
        return None  # z is drawn from the encoder's posterior, seeded by `sample`

    # ---- training ----------------------------------------------------------------------------

    def _observed(self, batch: dict) -> torch.Tensor:
        return batch[B.IMAGE] * batch[B.MASK].to(batch[B.IMAGE].dtype)

    def _decoder_condition(self, observed: torch.Tensor, batch: dict) -> torch.Tensor | None:
        if not self.hparams.one_shot:
            return None
        return torch.cat([observed, batch[B.MASK].to(observed.dtype)], dim=1)

    def elbo_terms(self, batch: dict) -> dict[str, torch.Tensor]:
        """Per-sample loss terms of a batch (one posterior sample each).

        Args:
            batch: a batch dict with "image" (N, 3, H, W) in [-1, 1], "mask" (1 = known) and, for
                a VAE with attributes, "attributes".

        Returns:
            {"mse", "kl", "loss"} (and "perceptual" when set), each (N,).
        """
        hp = self.hparams
        x = batch[B.IMAGE]
        observed = self._observed(batch)
        encoder_input = x if hp.observed == "full" else observed
        recon, mu, logvar = self.vae(
            encoder_input, self._decoder_condition(observed, batch), batch.get(B.ATTRIBUTES)
        )
        elements = x[0].numel()
        terms = {
            "mse": (recon.float() - x.float()).square().flatten(1).mean(1),
            "kl": kl_to_standard_normal(mu, logvar) / elements,
        }
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual(recon, x)
        terms["loss"] = (
            hp.pixel_weight * terms["mse"] + terms.get("perceptual", 0.0) + hp.beta * terms["kl"]
        )
        return terms

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """Maximise the ELBO: log the batch means of the terms and return the loss."""
        batch = self.prepare(batch)
        terms = {k: v.mean() for k, v in self.elbo_terms(batch).items()}
        n = batch[B.IMAGE].shape[0]
        self.log_dict(
            {f"train/{k}": v.detach() for k, v in terms.items()}, prog_bar=True, batch_size=n
        )
        self.count_iteration(n)
        return terms["loss"]

    # ---- completion --------------------------------------------------------------------------

    def complete(self, batch: dict, steps: int | None = None) -> list[torch.Tensor]:
        """Every step of the completion (the last is the result), known pixels exact.

        The iterative sampling, or one pass of the one-shot decoder.

        Args:
            batch: a batch dict with "image", "mask" (1 = known) (and "attributes" when used).
            steps: the number of sampling steps; None uses `sampling_steps` (one-shot: always 1).

        Returns:
            One composite (N, 3, H, W) in [-1, 1] per step.
        """
        hp = self.hparams
        mask = batch[B.MASK].to(batch[B.IMAGE].dtype)
        current = self._observed(batch)  # x'_0: the hole is 0
        cond = self._decoder_condition(current, batch)
        attributes = batch.get(B.ATTRIBUTES)
        outputs = []
        for _ in range(1 if hp.one_shot else (steps or hp.sampling_steps)):
            mu, logvar = self.vae.encode(current, attributes)
            x_t = self.vae.decode(self.vae.reparameterize(mu, logvar), cond, attributes)
            current = mask * current + (1 - mask) * x_t
            outputs.append(self.compose(x_t, batch))
        return outputs

    def generate(self, G: nn.Module, batch: dict, z=None, **kwargs) -> torch.Tensor:
        """The last step of `complete`.

        Args:
            G: ignored (the task's VAE is used).
            batch: a batch dict.
            z (torch.Tensor | None): ignored (z comes from the posterior).
            **kwargs (Any): ignored.

        Returns:
            (N, 3, H, W) in [-1, 1].
        """
        return self.complete(batch)[-1]

    @contextmanager
    def _inference(self) -> Iterator[None]:
        """BatchNorm on its running statistics, which sampling leaves alone: a sample grid taken
        in training mode must neither see batch statistics nor move the running ones."""
        was_training = self.vae.training
        self.vae.eval()
        try:
            yield
        finally:
            self.vae.train(was_training)

    def sample(self, batch: dict, variant: int = 0) -> torch.Tensor:
        """The base `sample` with BatchNorm on its running statistics.

        Args:
            batch: a batch dict with "index".
            variant: which of several samples of one input.

        Returns:
            (N, 3, H, W) in [-1, 1].
        """
        with self._inference():
            return super().sample(batch, variant)

    @torch.no_grad()
    def sample_steps(self, batch: dict) -> list[torch.Tensor]:
        """`complete` with the seeds of `sample`: its last step is `sample(batch)`.

        Args:
            batch: a batch dict with "index".

        Returns:
            One composite (N, 3, H, W) per step.
        """
        batch = self.prepare(batch)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(derive_seed(self.hparams.eval_seed, int(batch[B.INDEX][0]), 0))
            with self._inference():
                return self.complete(batch)

    def visual_panels(self, batch: dict, fake: torch.Tensor) -> list[torch.Tensor]:
        """The masked input | a few steps of the iterative sampling | the result | the real.

        Args:
            batch: a batch dict.
            fake: the output for the default latents.
        """
        masked, _, real = super().visual_panels(batch, fake)
        steps = self.sample_steps(batch)
        shown = steps[:-1][:: max(1, len(steps) // 3)][:2]
        return [masked, *(s.float() for s in shown), steps[-1].float(), real]
