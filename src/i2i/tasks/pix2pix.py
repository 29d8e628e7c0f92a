"""pix2pix (Isola et al., CVPR 2017) on the adversarial layer: a U-Net generator G(x) and a
PatchGAN discriminator D(x, y) that judges concat(condition, image) patch by patch.

One iteration, one batch, two phases in the paper's order (one gradient step on D, then one on G):
- "d_step": D learns (x, y) -> real and (x, G(x)) -> fake, G's output detached; the loss is
  averaged over the patch map and halved ("we divide the objective by 2 while optimizing D, which
  slows down the rate at which D learns relative to G", section 3.3);
- "g_step": the GAN loss of the same output through the updated D, plus lambda x L1(G(x), y),
  lambda = 100.
G runs once per iteration (in the D phase, with its graph, which the G phase backpropagates
through), so both steps see the same output and the same dropout draw. The objective is chosen by
name: "nonsaturating" (the paper's: D's binary cross-entropy, G maximising log D) or "lsgan".
Adam lr 2e-4, betas (0.5, 0.999) for both networks; constant lr, then a linear decay to 0 (the
adversarial layer's `lr_constant_iterations` / `lr_decay_iterations`; the configs give the epochs
in iterations). N(0, 0.02) initialisation is the networks' own. No EMA: sampling uses G.

Inference ("we run the generator net in exactly the same manner as during the training phase"):
dropout stays on (the U-Net's `dropout_at_inference`, pix2pix's only noise, seeded per variant by
`sample`) and BatchNorm uses the statistics of the test batch, which at the official test batch
size of 1 is instance normalisation. `eval_norm` chooses: "per_sample" (that: each output
normalised by its own statistics, whatever the evaluation batch), "batch" (the statistics of the
evaluation batch), or "running" (BatchNorm's running averages, the usual eval()). None of them
changes the running averages.

For pix2pix every condition is an image: `Pix2PixTask` (the EdgesToPhoto problem) serves edge maps
and the colour label maps of the pix2pix facades and cityscapes archives alike (`edges_channels:
3`, the condition half passed as it is). `Pix2PixLabelsTask` takes one-hot label maps instead
(the label datamodules, num_classes channels).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from i2i.data import batch as B
from i2i.tasks.adversarial import AdversarialTask, OptimizerCallable, Phase
from i2i.tasks.translation import EdgesToPhoto, LabelsToPhoto

EVAL_NORMS = ("per_sample", "batch", "running")


def pix2pix_adam(params: Iterable) -> torch.optim.Optimizer:
    """The paper's solver for G and D: Adam, lr 0.0002, momentum parameters 0.5 and 0.999.

    Args:
        params: the parameters to optimise.
    """
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))


@contextmanager
def inference_mode_norm(module: nn.Module, norm: str) -> Iterator[None]:
    """`module` in eval mode, its BatchNorm layers normalising as `norm` says.

    With the statistics of the batch they see (`norm` "batch" or "per_sample") or with their
    running averages ("running"). The running averages are never updated; every module's mode is
    restored afterwards.

    Args:
        module: the network.
        norm: `"per_sample"`, `"batch"` or `"running"` (the first two act the same here; the
            caller feeds one sample at a time for "per_sample").

    Raises:
        ValueError: an unknown `norm`.
    """
    if norm not in EVAL_NORMS:
        raise ValueError(f"eval_norm must be one of {EVAL_NORMS}, got {norm!r}")
    saved = [(m, m.training, getattr(m, "track_running_stats", None)) for m in module.modules()]
    module.eval()
    if norm != "running":
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                # Training mode without tracking: batch statistics, running buffers untouched.
                m.train()
                m.track_running_stats = False
    try:
        yield
    finally:
        for m, training, track in saved:
            m.training = training
            if track is not None:
                m.track_running_stats = track


class Pix2Pix(AdversarialTask):
    """The pix2pix system; a problem mixin (EdgesToPhoto, LabelsToPhoto) gives the condition.

    Args:
        generator: G(condition) -> image, e.g. `i2i.networks.UNetGenerator`.
        discriminator: D(image, condition) -> patch logits, e.g.
            `i2i.networks.PatchDiscriminator`.
        optimizer_g: builds G's optimizer from its parameters.
        optimizer_d: builds D's optimizer likewise.
        l1_weight: lambda of the L1 term in G's loss (0 = cGAN alone).
        d_loss_weight: factor on D's objective (the paper halves it: 0.5).
        eval_norm: BatchNorm at inference: `"per_sample"`, `"batch"` or `"running"` (see the
            module docstring).
        **kwargs (Any): the GAN objective, the lr schedule and what every task takes.

    Raises:
        ValueError: an unknown `eval_norm`.
    """

    batches_per_step = 1  # the D and the G step share one batch, as pix2pix trains
    not_hyperparameters = ("generator", "discriminator", "optimizer_g", "optimizer_d")

    def __init__(
        self,
        generator: nn.Module,  # G(condition) -> image, e.g. UNetGenerator
        discriminator: nn.Module,  # D(image, condition) -> patch logits, e.g. PatchDiscriminator
        optimizer_g: OptimizerCallable = pix2pix_adam,
        optimizer_d: OptimizerCallable = pix2pix_adam,
        l1_weight: float = 100.0,  # lambda of the L1 term in G's loss (0 = cGAN alone)
        d_loss_weight: float = 0.5,  # the paper halves D's objective
        eval_norm: str = "per_sample",  # BatchNorm at inference: per_sample | batch | running
        **kwargs,  # the GAN objective, the lr schedule and what every task takes
    ):
        super().__init__(**kwargs)
        if eval_norm not in EVAL_NORMS:
            raise ValueError(f"eval_norm must be one of {EVAL_NORMS}, got {eval_norm!r}")
        self.add_network("generator", generator, optimizer_g)
        self.add_network("discriminator", discriminator, optimizer_d)
        self._fake: torch.Tensor | None = None  # G's output, from the D phase to the G phase

    def phases(self) -> list[Phase]:
        """The D step, then the G step, on the same batch."""
        return [
            Phase("d_step", "discriminator", "discriminator_loss"),
            Phase("g_step", "generator", "generator_loss"),
        ]

    def setup(self, stage: str) -> None:
        """Check that the networks fit the data's channels and size (`check_pix2pix_networks`)."""
        super().setup(stage)
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        check_pix2pix_networks(
            self.generator,
            self.discriminator,
            getattr(self, "cond_channels", None) or getattr(datamodule, "cond_channels", None),
            getattr(datamodule, "resolution", None),
        )

    # ---- the two losses ----------------------------------------------------------------------

    def _generator_output(self, batch: dict) -> torch.Tensor:
        # The layer freezes G during D's phase; pix2pix computes G(x) once, before both steps, so
        # G's parameters take part here and the G phase backpropagates through this graph. D's
        # loss sees the output detached: G gets no gradient from it.
        self.generator.requires_grad_(True)
        try:
            self._fake = self.generate(self.generator, batch)
        finally:
            self.generator.requires_grad_(False)
        return self._fake

    def discriminator_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """D's loss on (condition, real) and (condition, G's output detached), weighted.

        G runs here, once per iteration; the G phase reuses its output.

        Args:
            batch: a batch dict.

        Returns:
            The loss and the logged loss and mean real / fake logits.
        """
        fake = self._generator_output(batch).detach()
        d_cond = self.d_condition(batch)
        fake_logits = self.discriminator(fake, d_cond)  # fakes first, as the reference code
        real_logits = self.discriminator(batch[B.IMAGE], d_cond)
        loss = self.hparams.d_loss_weight * self.d_loss_fn(real_logits, fake_logits).mean()
        return loss, {
            "train/loss_d": loss,
            "train/logits_real": real_logits.float().mean(),
            "train/logits_fake": fake_logits.float().mean(),
        }

    def generator_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """G's GAN loss through the updated D, plus l1_weight x L1 to the target.

        Args:
            batch: a batch dict.

        Returns:
            The loss and its terms to log.
        """
        fake, self._fake = self._fake, None
        if fake is None:  # no D phase ran this iteration
            fake = self.generate(self.generator, batch)
        gan = self.g_loss_fn(self.discriminator(fake, self.d_condition(batch))).mean()
        l1 = self.reconstruction_loss(fake, batch).mean()
        loss = gan + self.hparams.l1_weight * l1
        return loss, {"train/loss_g": loss, "train/loss_g_gan": gan, "train/l1": l1}

    # ---- sampling ----------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, batch: dict, variant: int = 0) -> torch.Tensor:
        """G's output with the dropout of `variant` and the BatchNorm of `eval_norm`.

        With "per_sample" every output depends on its own input, index and variant alone.

        Args:
            batch: a batch dict with "index".
            variant: which dropout draw (0 for the default).

        Returns:
            (N, 3, H, W) in [-1, 1].
        """
        norm = self.hparams.eval_norm
        with inference_mode_norm(self.sampling_network, norm):
            if norm != "per_sample":
                return super().sample(batch, variant)
            n = batch[B.INDEX].shape[0]
            parts = [{k: v[i : i + 1] for k, v in batch.items()} for i in range(n)]
            return torch.cat([super(Pix2Pix, self).sample(part, variant) for part in parts])


def check_pix2pix_networks(
    generator: nn.Module,
    discriminator: nn.Module,
    cond_channels: int | None,
    resolution: tuple[int, int] | None,
) -> None:
    """Name the setting to change when the networks do not fit the data.

    G's input channels, D's (condition + image), and a size the U-Net cannot halve `num_downs`
    times. A value the networks or data do not give (None, or no such attribute) is not checked.

    Args:
        generator: G (its in_channels, out_channels, num_downs are read).
        discriminator: D (its in_channels is read).
        cond_channels: the condition's channels, or None.
        resolution: the data's (H, W), or None.

    Raises:
        ValueError: naming the setting that does not fit.
    """
    g_in = getattr(generator, "in_channels", None)
    g_out = getattr(generator, "out_channels", 3)
    d_in = getattr(discriminator, "in_channels", None)
    if cond_channels is not None and g_in is not None and g_in != cond_channels:
        raise ValueError(
            f"generator.in_channels is {g_in}, but the condition has {cond_channels} channels: "
            f"set generator.init_args.in_channels: {cond_channels}"
        )
    if g_in is not None and d_in is not None and d_in != g_in + g_out:
        raise ValueError(
            f"discriminator.in_channels is {d_in}, but D sees the condition and the image, "
            f"{g_in} + {g_out} channels: set discriminator.init_args.in_channels: {g_in + g_out}"
        )
    num_downs = getattr(generator, "num_downs", None)
    if resolution is not None and num_downs is not None:
        if any(side % 2**num_downs for side in resolution):
            raise ValueError(
                f"the U-Net halves its input {num_downs} times, so the image sides must be "
                f"multiples of {2**num_downs}; the data is {tuple(resolution)}: set "
                "generator.init_args.num_downs to fit (8 for 256 px, 6 for 64 px)"
            )


class Pix2PixTask(EdgesToPhoto, Pix2Pix):
    """pix2pix with an image condition: edge maps (1 channel, or the RGB edges half with
    `edges_channels: 3`) or the colour label maps of the facades and cityscapes archives (3
    channels, as they are in the file). G's in_channels = the condition's channels; D's =
    those + 3."""


class Pix2PixLabelsTask(LabelsToPhoto, Pix2Pix):
    """pix2pix on one-hot label maps (num_classes channels, + 1 with `instance_edges`), for the
    label datamodules; G's in_channels = cond_channels, D's = cond_channels + 3."""
