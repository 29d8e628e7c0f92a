"""The CoModGAN recipe (Zhao et al., ICLR 2021) on the adversarial layer, as the official code runs
it (`shared/docs/comodgan.md`, section 3).

One iteration, three phases:
- "g": the non-saturating logistic loss on its own real batch and masks, style mixing 0.5 (one
  coin and one crossover layer per minibatch and process), truncation psi 0.5 during training
  (the official quirk);
- "d": the logistic loss on another real batch with its own masks and fresh latents; then G_ema;
- "r1": every `r1_interval`-th iteration, the lazy R1 as its OWN Adam step of D, on the D phase's
  reals, with the penalty alone (gamma / 2 x interval, in fp32 under mixed precision), sharing D's
  optimizer state: 17 D updates per 16 iterations, which is what the lazy-regularization
  correction of lr and beta2 assumes (applied to both networks, G as if regularized every 4
  iterations, as the official code does).
w_avg moves on every training-mode generator pass (the g and the d phase), from the batch mean of
w before mixing and truncation. Evaluation and sampling use G_ema.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

from i2i.data import batch as B
from i2i.losses import r1_penalty
from i2i.tasks.adversarial import AdversarialTask, OptimizerCallable, Phase


def default_adam(params: Iterable) -> torch.optim.Optimizer:
    """The official base optimizer (before the lazy-regularization correction).

    Args:
        params: the parameters to optimise.

    Returns:
        Adam with lr 0.002, betas (0, 0.99), eps 1e-8.
    """
    return torch.optim.Adam(params, lr=0.002, betas=(0.0, 0.99), eps=1e-8)


def lazy_regularization_correction(optimizer: torch.optim.Optimizer, interval: int) -> None:
    """StyleGAN2's correction for a penalty applied every `interval` steps.

    lr * c, betas ** c, with c = interval / (interval + 1). Both networks get it in the official
    recipe.

    Args:
        optimizer: changed in place (every parameter group).
        interval: the regularization interval; 0 or less leaves the optimizer unchanged.
    """
    if interval <= 0:
        return
    c = interval / (interval + 1)
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * c
        if "betas" in group:
            group["betas"] = tuple(beta**c for beta in group["betas"])


class CoModGANTask(AdversarialTask):
    """The co-modulated generator and its discriminator trained by the official recipe.

    A problem mixin (inpainting, edges, labels) gives the condition and the composite.

    Args:
        generator: the generator, e.g. `i2i.networks.CoModGenerator`; G_ema is a copy of it.
        discriminator: the discriminator, e.g. `i2i.networks.CoModDiscriminator`.
        optimizer_g: builds G's optimizer from its parameters (base lr/betas; the lazy
            correction is applied on top).
        optimizer_d: builds D's optimizer likewise.
        r1_gamma: R1 weight; the penalty is gamma / 2 * ||grad||^2; 0 turns R1 off.
        r1_interval: lazy R1 every this many iterations (0 = never).
        r1_includes_condition: R1 also on the condition's gradient; None: when the condition is
            an image (edges).
        g_reg_interval: G's lr/beta2 corrected as if regularized every this many iterations
            (official: 4).
        ema_halflife_kimg: G_ema half-life in thousands of images (global batch).
        style_mixing_prob: probability of style mixing in training, in [0, 1].
        style_mixing_per_sample: one coin and crossover per sample (official: per minibatch).
        truncation_psi_train: truncation toward w_avg in training (the official quirk: 0.5).
        truncation_psi_eval: truncation in evaluation and sampling (1: none).
        l1_weight: weight of the reconstruction term in G's loss; 0 (off) in the official recipe.
        **kwargs (Any): `AdversarialTask`'s and `ImageTask`'s arguments (objective, run length,
            seeds, ...).
    """

    batches_per_step = 2  # the G and the D phase each take their own reals
    not_hyperparameters = ("generator", "discriminator", "optimizer_g", "optimizer_d")

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        optimizer_g: OptimizerCallable = default_adam,  # base lr/betas; the correction is applied
        optimizer_d: OptimizerCallable = default_adam,
        r1_gamma: float = 10.0,  # R1 weight; the penalty is gamma / 2 * ||grad||^2
        r1_interval: int = 16,  # lazy R1 every this many iterations (0 = never)
        r1_includes_condition: bool | None = None,  # None: when the condition is an image (edges)
        g_reg_interval: int = 4,  # official: G's lr/beta2 corrected as if regularized every 4
        ema_halflife_kimg: float = 10.0,  # G_ema half-life in thousands of images (global batch)
        style_mixing_prob: float = 0.5,
        style_mixing_per_sample: bool = False,  # official: one coin and crossover per minibatch
        truncation_psi_train: float = 0.5,  # official quirk: training truncates toward w_avg
        truncation_psi_eval: float = 1.0,  # evaluation and sampling: no truncation
        l1_weight: float = 0.0,  # reconstruction term, off in the official recipe
        **kwargs,  # the GAN objective and what every task takes (run length, seeds, ...)
    ):
        super().__init__(**kwargs)
        self.add_network("generator", generator, optimizer_g)
        self.add_network("discriminator", discriminator, optimizer_d)
        self.add_network("generator_ema", copy.deepcopy(generator).requires_grad_(False).eval())
        if r1_includes_condition is None:
            r1_includes_condition = self.condition_is_image
        self.r1_includes_condition = r1_includes_condition

    def phases(self) -> list[Phase]:
        """The G step (part 0), the D step (part 1), and D's lazy R1 every `r1_interval`."""
        hp = self.hparams
        every_r1 = hp.r1_interval if hp.r1_gamma > 0 else 0
        return [
            Phase("g_step", "generator", "generator_loss", part=0),
            Phase("d_step", "discriminator", "discriminator_loss", part=1),
            Phase("r1", "discriminator", "r1_loss", part=1, every=every_r1, keep_zero_grads=True),
        ]

    def adjust_optimizer(self, name: str, optimizer: torch.optim.Optimizer) -> None:
        """Apply the lazy-regularization correction (G: `g_reg_interval`, D: `r1_interval`).

        Args:
            name: "generator" or "discriminator".
            optimizer: its freshly built optimizer, changed in place.
        """
        interval = self.hparams.g_reg_interval if name == "generator" else self.hparams.r1_interval
        lazy_regularization_correction(optimizer, interval)

    def after_phase(self, phase: Phase, part: dict) -> None:
        """Update G_ema after the D phase.

        Args:
            phase: the phase that ran.
            part: the part of the batch it read (its size gives the global batch).
        """
        # G_ema after the D phase (the official loop runs it with the D step), so that its
        # buffers take this iteration's last w_avg.
        if phase.loss == "discriminator_loss":
            self.update_ema(part[B.IMAGE].shape[0] * self.world_size)

    # ---- the three losses ------------------------------------------------------------------

    def _training_output(self, batch: dict) -> torch.Tensor:
        hp = self.hparams
        return self.generate(
            self.generator,
            batch,
            truncation_psi=hp.truncation_psi_train,
            style_mixing_prob=hp.style_mixing_prob,
            style_mixing_per_sample=hp.style_mixing_per_sample,
            update_w_avg=True,  # every training-mode pass moves w_avg, as the official graph
        )

    def generator_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """G's loss: the objective on D's logits of the training output (+ the L1 term if weighted).

        Args:
            batch: the G phase's part of the batch.

        Returns:
            The loss and {"train/loss_g": loss}.
        """
        fake = self._training_output(batch)
        logits = self.discriminator(fake, self.d_condition(batch))
        loss = self.g_loss_fn(logits).mean()
        if self.hparams.l1_weight:
            loss = loss + self.hparams.l1_weight * self.reconstruction_loss(fake, batch).mean()
        return loss, {"train/loss_g": loss}

    def discriminator_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """D's loss on the batch's reals and fresh fakes (no gradient to G).

        Args:
            batch: the D phase's part of the batch.

        Returns:
            The loss and the logged loss and mean real / fake logits.
        """
        with torch.no_grad():
            fake = self._training_output(batch)
        d_cond = self.d_condition(batch)
        real_logits = self.discriminator(batch[B.IMAGE], d_cond)
        fake_logits = self.discriminator(fake, d_cond)
        loss = self.d_loss_fn(real_logits, fake_logits).mean()
        return loss, {
            "train/loss_d": loss,
            "train/logits_real": real_logits.float().mean(),
            "train/logits_fake": fake_logits.float().mean(),
        }

    def r1_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """The lazy R1 term: gamma / 2 x interval x the mean penalty on the reals.

        Args:
            batch: the D phase's part of the batch.

        Returns:
            The loss and {"train/r1": the mean penalty}.
        """
        hp = self.hparams
        penalty, _ = r1_penalty(
            self.discriminator,
            batch[B.IMAGE],
            self.d_condition(batch),
            include_condition=self.r1_includes_condition,
        )
        r1 = penalty.mean()
        return r1 * (hp.r1_gamma / 2) * hp.r1_interval, {"train/r1": r1}

    # ---- G_ema, sampling -------------------------------------------------------------------

    def iteration_settings(self) -> list[str]:
        """The adversarial layer's settings plus `r1_interval`."""
        return [*super().iteration_settings(), "r1_interval"]

    def shape_change_note(self, old_batch: int, new_batch: int) -> str:
        """The base note plus what happens to G_ema's half-life (it stays in images).

        Args:
            old_batch: the checkpoint's global batch.
            new_batch: this run's global batch.
        """
        halflife = self.hparams.ema_halflife_kimg
        return super().shape_change_note(old_batch, new_batch) + (
            f" G_ema's half-life is {halflife:g} thousand images (ema_halflife_kimg): its "
            "per-iteration decay follows the global batch, so it still averages over the same "
            "number of images."
        )

    def ema_beta(self, global_batch: int) -> float:
        """Per-step EMA decay for a half-life of `ema_halflife_kimg` thousand images.

        Args:
            global_batch: the images of one step over all processes.

        Returns:
            0.5 ** (global_batch / (ema_halflife_kimg * 1000)), in (0, 1].
        """
        return 0.5 ** (global_batch / max(self.hparams.ema_halflife_kimg * 1000, 1e-8))

    @torch.no_grad()
    def update_ema(self, global_batch: int) -> None:
        """Move G_ema's parameters toward G's and copy G's buffers (w_avg, constant noise).

        Args:
            global_batch: the images of this step over all processes (see `ema_beta`).
        """
        beta = self.ema_beta(global_batch)
        ema_params = list(self.generator_ema.parameters())
        torch._foreach_lerp_(ema_params, list(self.generator.parameters()), 1 - beta)
        for b_ema, b in zip(self.generator_ema.buffers(), self.generator.buffers(), strict=True):
            b_ema.copy_(b)  # w_avg and constant noise follow G

    @property
    def sampling_network(self) -> nn.Module:
        """G_ema."""
        return self.generator_ema

    def eval_kwargs(self) -> dict:
        """{"truncation_psi": truncation_psi_eval}."""
        return {"truncation_psi": self.hparams.truncation_psi_eval}

    def generate(
        self, G: nn.Module, batch: dict, z: torch.Tensor | None = None, **kwargs
    ) -> torch.Tensor:
        """G(condition, z, **kwargs), then the problem's composite.

        Args:
            G: the generator (G or G_ema).
            batch: a batch dict.
            z: latents (N, z_dim); None draws them inside G.
            **kwargs (Any): G's keyword arguments (truncation, style mixing, w_avg update).

        Returns:
            The output (N, 3, H, W), roughly in [-1, 1].
        """
        raw = G(self.condition(batch), z, **kwargs)
        return self.compose(raw, batch)
